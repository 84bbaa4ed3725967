// The real daemon (`bin/kvblade start --mount DIR`) with the real engine on the loopback
// interface: the control plane works end to end, refused adds give their errno (also as
// /bin/sh reports them), SIGTERM unmounts it, and after a SIGKILL the next daemon
// recovers the stale mount.
import t from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, realpathSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { errnoOf, exec, fuseSkipReason, isMountPoint, kvstatLine, REPO, removeDir, SCRIPTS, sh, tempDir } from '../helpers/fuse-harness'
import { TestInitiator } from '../helpers/initiator'
import { Daemon, KVBLADE } from '../helpers/daemon'

const CLI = join(REPO, 'bin', 'kvblade')

/** glibc's strerror for the errnos a refused add gives, as coreutils prints them. */
const STRERROR: Record<string, string> = {
  EROFS: 'Read-only file system',
  EISDIR: 'Is a directory',
  ENOTBLK: 'Block device required',
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
}
const shIsDash = realpathSync('/bin/sh').endsWith('/dash')

/**
 * A refused add as /bin/sh sees it. The shell's own echo (as admins and kvadd write) exits
 * non-zero, but dash says "I/O error" whatever the errno (fuse/README.md); coreutils'
 * echo, redirected by the same shell, names the errno.
 */
async function checkRefusedFromSh (t: tap.Test, mnt: string, line: string, errno: string, what: string): Promise<void> {
  const builtin = await sh('echo "$2" >"$1/add"', [mnt, line])
  t.not(builtin.code, 0, `sh: echo of ${what} exits non-zero`)
  if (shIsDash) t.match(builtin.stderr, /echo: I\/O error/, `sh: dash's message for ${what}`)
  const coreutils = await sh('/bin/echo "$2" >"$1/add"', [mnt, line])
  t.not(coreutils.code, 0, `sh: /bin/echo of ${what} exits non-zero`)
  t.match(coreutils.stderr, `write error: ${STRERROR[errno]}`, `sh: /bin/echo of ${what} says ${errno}`)
}
const built = existsSync(join(REPO, 'dist', 'src', 'cli', 'main.js')) && existsSync(join(REPO, 'dist', 'src', 'engine', 'engine.js'))
const reason = fuseSkipReason() ?? (built ? undefined : 'the daemon is not built (dist/src/cli/main.js, dist/src/engine/engine.js)')
if (reason !== undefined) {
  process.stderr.write(`\n*** SKIPPING the daemon control-plane integration test: ${reason} ***\n\n`)
  t.skip(`kvblade daemon with its control plane: SKIPPED because ${reason}`, () => {})
} else {
  const work = tempDir('fuse-daemon')
  const mnt = join(work, 'kvblade')
  const img = join(work, 'disk.img')
  const img2 = join(work, 'disk2.img')
  for (const f of [img, img2]) {
    writeFileSync(f, '')
    truncateSync(f, 64 << 20) // 131072 sectors
  }
  const daemons: ChildProcess[] = []
  t.teardown(async () => {
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL')
    if (isMountPoint(mnt)) await exec('fusermount', ['-uz', mnt])
    removeDir(work)
  })

  /** Starts the daemon and waits until the control plane answers. */
  async function start (): Promise<{ proc: ChildProcess, log: () => string, exited: Promise<number | null> }> {
    const proc = spawn(process.execPath, [CLI, 'start', '--no-state', '--mount', mnt, '--add', `9 0 lo ${img}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    daemons.push(proc)
    let log = ''
    proc.stdout!.on('data', d => { log += String(d) })
    proc.stderr!.on('data', d => { log += String(d) })
    const exited = new Promise<number | null>(resolve => proc.on('exit', code => resolve(code)))
    for (let i = 0; i < 200; i++) {
      if (proc.exitCode !== null) throw new Error(`daemon exited: ${log}`)
      if (isMountPoint(mnt) && (await sh('[ -d "$1/9.0@lo" ]', [mnt])).code === 0) return { proc, log: () => log, exited }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    throw new Error(`daemon did not come up: ${log}`)
  }

  t.test('end to end with the engine', async t => {
    const d = await start()
    t.equal((await sh('cat "$1/9.0@lo/scnt" "$1/9.0@lo/bdev" "$1/9.0@lo/bpath"', [mnt])).stdout, `131072\n0:0\n${img}\n`)
    t.equal((await sh('echo 9 1 lo "$2" >"$1/add"', [mnt, img2])).code, 0, 'add through the engine')
    const dup = await exec('/bin/bash', ['-c', 'echo 9 1 lo "$2" >"$1/add"', 'bash', mnt, img2])
    t.match(dup.stderr, /File exists/, 'EEXIST from the engine')
    const twice = await exec('/bin/bash', ['-c', 'echo 9 3 lo "$2" >"$1/add"', 'bash', mnt, img])
    t.match(twice.stderr, /Device or resource busy/, 'EBUSY for a second address on a file this daemon exports')
    const bad = await exec('/bin/bash', ['-c', 'echo 9 2 nosuchif0 "$2" >"$1/add"', 'bash', mnt, img])
    t.match(bad.stderr, /No such file or directory/, 'ENOENT for an unknown interface')
    t.equal((await sh('echo "Test Model" >"$1/9.1@lo/model"; cat "$1/9.1@lo/model"', [mnt])).stdout, 'Test Model\n')
    // A refused add says why with the errno its open gave, not ENOENT for everything.
    const ro = join(work, 'ro')
    mkdirSync(ro)
    t.equal((await exec('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'kvblade-test', ro])).code, 0, 'a tmpfs to make read-only')
    const roContent = randomBytes(4096)
    writeFileSync(join(ro, 'disk.img'), roContent)
    t.equal((await exec('mount', ['-o', 'remount,ro', ro])).code, 0, 'remounted read-only')
    t.teardown(() => exec('umount', ['-l', ro]))
    const refused: Array<[string, string, string]> = [
      ['a file on a read-only mount', join(ro, 'disk.img'), 'EROFS'],
      ['a directory', work, 'EISDIR'],
      ['a character device', '/dev/null', 'ENOTBLK'],
      ['a missing path', join(work, 'missing.img'), 'ENOENT'],
    ]
    for (const [what, path, errno] of refused) {
      t.equal(await errnoOf({ op: 'write', path: join(mnt, 'add'), chunks: [`9 5 lo ${path}\n`] }), errno, `add of ${what}: ${errno}`)
      await checkRefusedFromSh(t, mnt, `9 5 lo ${path}`, errno, what)
    }
    t.notOk(existsSync(join(mnt, '9.5@lo')), 'no refused add left a target')
    // ro opens the backing read-only, so the same file is exportable, and served.
    t.equal(await errnoOf({ op: 'write', path: join(mnt, 'add'), chunks: [`9 6 lo ${join(ro, 'disk.img')} ro\n`] }), 'OK', 'add of the read-only file with ro: OK')
    t.same((await sh('cat "$1/9.6@lo/ro" "$1/9.6@lo/scnt"', [mnt])).stdout, '1\n8\n', 'ro 1, 8 sectors')
    const initiator = TestInitiator.open('lo')
    try {
      const tg = { major: 9, minor: 6, mac: initiator.mac } // lo: one MAC for everyone
      t.ok((await initiator.read(tg, 0, 8, 2, 4)).equals(roContent), 'its sectors are served over lo')
      const w = await initiator.ata(tg, 0x34, 0, 1, { data: Buffer.alloc(512) })
      t.same([w.status, w.error], [0x41, 0x04], 'a write: DRDY|ERR, ABRT')
    } finally {
      initiator.close()
    }
    t.equal((await sh('echo 9 6 lo >"$1/del"', [mnt])).code, 0, 'del of the read-only export')
    const r = await exec(join(SCRIPTS, 'kvstat'), ['-d', mnt], { env: { ...process.env, LC_ALL: 'C' } })
    t.equal(r.stdout, kvstatLine('9.0', 'lo', 131072, img) + kvstatLine('9.1', 'lo', 131072, img2), 'kvstat')
    t.match((await sh('cat "$1/stat"', [mnt])).stdout, /^lo( \d+){6}\n/m, 'interface counters')
    t.match((await sh('cat "$1/9.0@lo/stat"', [mnt])).stdout, /^( *\d+){10}\n$/, 'target counters')
    t.equal((await sh('echo 9 1 lo >"$1/del"', [mnt])).code, 0, 'del through the engine')
    t.notOk((await sh('ls "$1"', [mnt])).stdout.includes('9.1@lo'))
    d.proc.kill('SIGTERM')
    t.equal(await d.exited, 0, 'SIGTERM: clean exit')
    t.notOk(isMountPoint(mnt), 'and the control plane is unmounted')
  })

  t.test('EACCES through the control plane: a daemon that may not open the backing says so', async t => {
    const locked = join(work, 'locked.img')
    writeFileSync(locked, Buffer.alloc(4096))
    chmodSync(locked, 0o000)
    const ctl = join(work, 'ctl-eacces')
    // Root without the capabilities that override file modes, as a hardened service may run.
    const d = await Daemon.startCommand('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', process.execPath, KVBLADE,
      'start', '--no-state', '--mount', ctl])
    t.teardown(async () => {
      await d.stop()
      if (isMountPoint(ctl)) await exec('fusermount', ['-uz', ctl])
    })
    t.equal(await errnoOf({ op: 'write', path: join(ctl, 'add'), chunks: [`9 7 lo ${locked}\n`] }), 'EACCES', 'add of a file mode 000: EACCES')
    await checkRefusedFromSh(t, ctl, `9 7 lo ${locked}`, 'EACCES', 'a file mode 000')
    t.match(d.stderr, /EACCES: permission denied/, 'the daemon logs the errno of the open')
    t.equal((await sh('ls "$1"', [ctl])).stdout, 'add\nannounce\ndel\ninterfaces\nreadd\nreload\nstat\n', 'and nothing was added')
  })

  t.test('a SIGKILLed daemon leaves a stale mount the next one recovers', async t => {
    const d1 = await start()
    d1.proc.kill('SIGKILL')
    await d1.exited
    t.ok(isMountPoint(mnt), 'stale mount left behind')
    const d2 = await start()
    t.match(d2.log(), /recovering the stale control plane/)
    t.equal((await sh('cat "$1/9.0@lo/scnt"', [mnt])).stdout, '131072\n')
    d2.proc.kill('SIGTERM')
    t.equal(await d2.exited, 0)
    t.notOk(isMountPoint(mnt))
  })
}
