// The benchmark's load generator (bench/aoeload.c) against our daemon over veth: what
// `make bench` relies on. Writes carry a pattern keyed by LBA, every written frame is
// read back, and reads check every byte, with the receive ring (the default), with
// recvmmsg (--no-rx-ring) and with both rings (--tx-ring, mapped together with the
// receive ring); the image is then checked on disk. nullblade, the
// no-disk responder, is checked the same way.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { Daemon, REPO } from '../helpers/daemon'
import { run } from '../helpers/exec'

const AOELOAD = path.join(REPO, '.cache/bench/aoeload')
const NULLBLADE = path.join(REPO, '.cache/bench/nullblade')
const unavailable = networkTestsUnavailable() ??
  (fs.existsSync(AOELOAD) && fs.existsSync(NULLBLADE) ? null : 'the bench tools are not built (make bench-tools)') ??
  (fs.existsSync('/dev/shm') ? null : 'no /dev/shm (tmpfs) here')

interface LoadResult { frames: number, errors: number, verify_errors: number, verified_sectors: number, retransmits: number }

async function load (net: TestNetwork, iface: string, minor: number, workload: string, extra: string[] = []): Promise<LoadResult> {
  const r = await net.exec(AOELOAD, ['-i', iface, '-e', '9', '-s', String(minor), '-w', workload, '-t', '1',
    '--verify', '--json', '-q', ...extra], 60_000)
  if (r.code !== 0) throw new Error(`aoeload ${workload} ${extra.join(' ')} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as LoadResult
}

if (unavailable !== null) {
  skipLoudly(t, 'bench tool tests', unavailable)
} else {
  t.test('aoeload verifies our daemon byte for byte, with each receive and send path', async t => {
    const net = await TestNetwork.create(1, 9000)
    t.teardown(() => net.destroy())
    const [link] = net.links
    const dir = fs.mkdtempSync('/dev/shm/kvblade-bench-it-')
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const disk = path.join(dir, 'disk.img')
    fs.writeFileSync(disk, Buffer.alloc(64 << 20))
    const daemon = await Daemon.start(['--no-mount', '--add', `9 1 ${link.target} ${disk}`])
    t.teardown(() => daemon.stop())

    for (const workload of ['seqwrite', 'randwrite', 'seqread', 'randread']) {
      for (const extra of [[], ['--no-rx-ring'], ['--tx-ring']]) {
        const r = await load(net, link.initiator, 1, workload, extra)
        const what = `${workload}${extra.length > 0 ? ' ' + extra.join(' ') : ''}`
        t.ok(r.frames > 1000, `${what}: ${r.frames} frames answered`)
        t.ok(r.verified_sectors > 0, `${what}: ${r.verified_sectors} sectors verified`)
        t.same([r.errors, r.verify_errors], [0, 0], `${what}: no errors, no mismatches`)
      }
    }
    const check = await run(AOELOAD, ['--check', disk])
    t.match(check.stdout, / 0 bad/, `every sector of the image holds the pattern: ${check.stdout.trim()}`)
    t.equal(check.code, 0)
  })

  t.test('nullblade answers aoeload like a target', async t => {
    const net = await TestNetwork.create(1, 1500)
    t.teardown(() => net.destroy())
    const [link] = net.links
    const server = await import('node:child_process').then(cp => cp.spawn(NULLBLADE, ['-i', link.target, '-e', '9', '-s', '2', '--size', String(16 << 20)], { stdio: 'ignore' }))
    t.teardown(() => { server.kill('SIGINT') })
    await new Promise(resolve => setTimeout(resolve, 300))
    const written = await load(net, link.initiator, 2, 'seqwrite')
    t.same([written.errors, written.verify_errors], [0, 0], 'writes read back intact')
    t.ok(written.verified_sectors > 0, `${written.verified_sectors} sectors verified`)
    const read = await load(net, link.initiator, 2, 'randread')
    t.ok(read.frames > 1000, `${read.frames} reads answered`)
    t.same([read.errors, read.verify_errors], [0, 0], 'reads hold what was written')
  })
}
