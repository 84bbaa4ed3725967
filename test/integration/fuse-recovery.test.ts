// Mount-point handling: a stale mount left by a SIGKILLed daemon is recovered, a live one
// (or any other file system) is refused, and unmounting leaves nothing behind.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { mountControlPlane } from '../../fuse/mount'
import { FakeControl } from '../helpers/fake-control'
import { exec, fuseSkipReason, isMountPoint, removeDir, sh, tempDir } from '../helpers/fuse-harness'

const reason = fuseSkipReason()
if (reason !== undefined) {
  process.stderr.write(`\n*** SKIPPING the FUSE mount-recovery integration tests: ${reason} ***\n\n`)
  t.skip(`FUSE stale-mount recovery: SKIPPED because ${reason}`, () => {})
} else {
  const work = tempDir('fuse-recovery')
  const img = join(work, 'disk.img')
  writeFileSync(img, Buffer.alloc(512 * 8))
  const cleanups: string[] = []
  t.teardown(async () => {
    for (const dir of cleanups) if (isMountPoint(dir)) await exec('fusermount', ['-uz', dir])
    removeDir(work)
  })

  /** A separate daemon-like process that mounts the control plane at `dir` and waits. */
  function mountInChild (dir: string): Promise<{ pid: number, kill: () => Promise<void> }> {
    const code = `
      const { mountControlPlane } = require(${JSON.stringify(join(__dirname, '..', '..', 'fuse', 'mount.js'))})
      const { FakeControl } = require(${JSON.stringify(join(__dirname, '..', 'helpers', 'fake-control.js'))})
      const fake = new FakeControl(['eth0'])
      fake.add({ major: 7, minor: 1, ifname: 'eth0', path: ${JSON.stringify(img)} })
        .then(() => mountControlPlane(fake, ${JSON.stringify(dir)}))
        .then(() => process.stdout.write('ready\\n'), e => { process.stdout.write('error ' + e.message + '\\n'); process.exit(1) })
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
    return new Promise((resolve, reject) => {
      let out = ''
      child.stdout.on('data', d => {
        out += String(d)
        if (out.includes('ready\n')) {
          resolve({
            pid: child.pid!,
            kill: () => new Promise(res => { child.once('exit', () => res()); child.kill('SIGKILL') })
          })
        } else if (out.includes('error')) reject(new Error(out))
      })
      child.on('exit', code => reject(new Error(`child exited (${String(code)}): ${out}`)))
    })
  }

  t.test('a stale mount from a SIGKILLed daemon is recovered', async t => {
    const dir = join(work, 'stale')
    cleanups.push(dir)
    const child = await mountInChild(dir)
    t.ok(isMountPoint(dir), 'the child mounted')
    t.equal((await sh('ls "$1"', [dir])).stdout, '7.1@eth0\nadd\nannounce\ndel\ninterfaces\nreadd\nreload\nstat\n', 'served by the child')
    await child.kill()
    t.ok(isMountPoint(dir), 'still in mountinfo after SIGKILL')
    const r = await sh('ls "$1" 2>&1', [dir])
    t.match(r.stdout, /Transport endpoint is not connected/, 'stale: ENOTCONN')
    await t.rejects(stat(dir), { code: 'ENOTCONN' })

    const logs: string[] = []
    const fake = new FakeControl(['eth0'])
    const mp = await mountControlPlane(fake, dir, m => logs.push(m))
    t.match(logs.join('\n'), /recovering the stale control plane/, 'recovery is logged')
    t.equal((await sh('ls "$1"', [dir])).stdout, 'add\nannounce\ndel\ninterfaces\nreadd\nreload\nstat\n', 'the new daemon serves it')
    t.equal((await sh('echo 7 2 eth0 "$2" >"$1/add" && cat "$1/7.2@eth0/scnt"', [dir, img])).stdout, '8\n')
    const count = (await exec('grep', ['-c', ` ${dir} `, '/proc/self/mountinfo'])).stdout.trim()
    t.equal(count, '1', 'exactly one mount there, not stacked on the dead one')
    await mp.unmount()
    t.notOk(isMountPoint(dir), 'unmounted')
  })

  t.test('a live kvblade mount is refused', async t => {
    const dir = join(work, 'live')
    cleanups.push(dir)
    const child = await mountInChild(dir)
    await t.rejects(mountControlPlane(new FakeControl(), dir), /a live kvblade control plane is already mounted there/)
    t.equal((await sh('cat "$1/7.1@eth0/scnt"', [dir])).stdout, '8\n', 'the live one is untouched')
    await child.kill()
    // Same process, twice.
    const mp = await mountControlPlane(new FakeControl(), dir)
    await t.rejects(mountControlPlane(new FakeControl(), dir), /already mounted/)
    await mp.unmount()
    t.notOk(isMountPoint(dir))
  })

  t.test('another file system at the mount point is refused', async t => {
    const dir = join(work, 'tmpfs')
    mkdirSync(dir)
    t.equal((await exec('mount', ['-t', 'tmpfs', 'kvblade-test', dir])).code, 0)
    t.teardown(() => exec('umount', [dir]))
    await t.rejects(mountControlPlane(new FakeControl(), dir), /tmpfs is already mounted there/)
  })

  t.test('a file as mount point is refused; missing directories are created', async t => {
    const file = join(work, 'a-file')
    writeFileSync(file, '')
    await t.rejects(mountControlPlane(new FakeControl(), file), /not a directory/)
    const deep = join(work, 'x', 'y', 'z')
    cleanups.push(deep)
    const mp = await mountControlPlane(new FakeControl(), deep)
    t.ok(isMountPoint(deep))
    await mp.unmount()
    await mp.unmount()
    t.notOk(isMountPoint(deep), 'unmount twice is fine')
  })

  t.test('unmount after someone else unmounted it', async t => {
    const dir = join(work, 'external')
    cleanups.push(dir)
    const mp = await mountControlPlane(new FakeControl(), dir)
    t.equal((await exec('fusermount', ['-u', dir])).code, 0)
    await mp.unmount()
    t.notOk(isMountPoint(dir))
  })

  t.test('the daemon process can exit after unmount', async t => {
    const dir = join(work, 'exit')
    cleanups.push(dir)
    const code = `
      const { mountControlPlane } = require(${JSON.stringify(join(__dirname, '..', '..', 'fuse', 'mount.js'))})
      const { FakeControl } = require(${JSON.stringify(join(__dirname, '..', 'helpers', 'fake-control.js'))})
      mountControlPlane(new FakeControl(), ${JSON.stringify(dir)}).then(mp => mp.unmount()).then(() => console.log('done'))
    `
    const r = await exec(process.execPath, ['-e', code], { timeoutMs: 20000 })
    t.equal(r.stdout, 'done\n')
    t.equal(r.code, 0, 'exited by itself (nothing keeps the event loop alive)')
    t.notOk(isMountPoint(dir))
  })
}
