// `kvblade status` and `kvblade monitor` against the real daemon over a veth pair: what
// they print, the rates against the I/O done, and finding the control plane by itself.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Daemon, KVBLADE } from '../helpers/daemon'
import { run } from '../helpers/exec'
import { fuseSkipReason } from '../helpers/fuse-harness'
import { TestInitiator } from '../helpers/initiator'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'

/** A report of `kvblade monitor`: its interval and a row of numbers per target. */
interface Report { interval: number, rows: Map<string, number[]> }

function parseReports (text: string): Report[] {
  const reports: Report[] = []
  for (const block of text.split('\n\n').slice(1)) {
    const lines = block.split('\n').filter(l => l !== '')
    const m = /interval ([0-9.]+) s$/.exec(lines[0] ?? '')
    if (m === null) throw new Error(`not a report: ${block}`)
    const rows = new Map<string, number[]>()
    for (const line of lines.slice(2)) {
      const [name, ...values] = line.trim().split(/\s+/)
      rows.set(name, values.map(Number))
    }
    reports.push({ interval: Number(m[1]), rows })
  }
  return reports
}

// Unmounts, in a private mount namespace, every kvblade control plane but those named,
// then runs the command: discovery is tested without depending on what else is mounted
// on this host. The host's mounts are not touched.
const ONLY_THESE_MOUNTS = String.raw`
set -e
keep1=$1 keep2=$2
shift 2
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "fuse.kvblade") print $5; break } }' /proc/self/mountinfo |
while read -r m; do
  m=$(printf '%b' "$m")
  [ "$m" = "$keep1" ] || [ "$m" = "$keep2" ] || umount -l "$m"
done
exec "$@"
`

function withOnly (mounts: [string, string], argv: string[]): ReturnType<typeof run> {
  return run('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', ONLY_THESE_MOUNTS, 'sh', ...mounts, ...argv])
}

const unavailable = networkTestsUnavailable() ?? fuseSkipReason()
if (unavailable !== null && unavailable !== undefined) {
  skipLoudly(t, 'kvblade status and monitor against the daemon', unavailable)
} else {
  t.test('status and monitor', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    // Images in RAM: no fdatasync to wait for, so no request is ever retransmitted.
    const dir = mkdtempSync('/dev/shm/kvblade-status-')
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const img0 = join(dir, 'disk0.img')
    const img1 = join(dir, 'disk1.img')
    writeFileSync(img0, Buffer.alloc(1 << 20))
    writeFileSync(img1, Buffer.alloc(2 << 20))
    const mnt = join(dir, 'kv')
    const link = net.links[0]
    const d = await Daemon.start([
      '--mount', mnt,
      '--add', `9 0 ${link.target} ${img0}`,
      '--add', `9 1 ${link.target} ${img1} ro offset=8 acl=52:54:00:00:00:01,52:54:00:00:00:02 cache=writeback bufcnt=16`,
    ])
    t.teardown(() => d.stop())
    const t0 = `9.0@${link.target}`
    const t1 = `9.1@${link.target}`

    await t.test('status: a header and one aligned line per target', async t => {
      const r = await run(process.execPath, [KVBLADE, 'status', '--mount', mnt])
      t.equal(r.code, 0, r.stderr)
      const name = (n: string): string => n.padEnd(t0.length)
      const options = (o: string): string => o.padEnd('ro,offset=8,acl=2,cache=writeback,bufcnt=16'.length)
      t.equal(r.stdout,
        `${name('TARGET')}  LINK    SIZE  BUSY  ${options('OPTIONS')}  BACKING\n` +
        `${name(t0)}  up    1.0MiB     0  ${options('rw,cache=writethrough,bufcnt=64')}  ${img0}\n` +
        `${name(t1)}  up    2.0MiB     0  ro,offset=8,acl=2,cache=writeback,bufcnt=16  ${img1}\n`)
    })

    await t.test('the control plane is found without --mount; several are refused by name', async t => {
      const only = await withOnly([mnt, mnt], [process.execPath, KVBLADE, 'status'])
      t.equal(only.code, 0, only.stderr)
      t.match(only.stdout, new RegExp(`^TARGET .*\\n${t0} .*\\n${t1} `), 'the one mounted')
      const sysfs = await withOnly([mnt, mnt], [process.execPath, KVBLADE, 'sysfs', '--', 'cat', '/sys/kvblade/9.1@' + link.target + '/bufcnt'])
      t.equal(sysfs.code, 0, sysfs.stderr)
      t.equal(sysfs.stdout, '16\n', 'kvblade sysfs finds it the same way')

      const mnt2 = join(dir, 'kv2')
      const other = await Daemon.start(['--mount', mnt2])
      t.teardown(() => other.stop())
      const two = await withOnly([mnt, mnt2], [process.execPath, KVBLADE, 'status'])
      t.equal(two.code, 1)
      t.match(two.stderr, `kvblade: 2 kvblade control planes are mounted (${mnt}, ${mnt2}): choose one with --mount DIR`)
      const chosen = await withOnly([mnt, mnt2], [process.execPath, KVBLADE, 'status', '--mount', mnt2])
      t.equal(chosen.stdout, 'TARGET  LINK  SIZE  BUSY  OPTIONS  BACKING\n', '--mount picks one: no targets there')
      t.equal((await other.stop()).code, 0)

      const none = await run(process.execPath, [KVBLADE, 'status', '--mount', join(dir, 'nothing')])
      t.equal(none.code, 1)
      t.match(none.stderr, /^kvblade: no kvblade control plane at .*nothing: .*is the daemon running\?/)
    })

    await t.test('monitor: rates over each interval add up to the I/O done', async t => {
      const initiator = TestInitiator.open(link.initiator, net.nsPath)
      t.teardown(() => initiator.close())
      const [found] = await initiator.discover(9, 0)
      t.ok(found, 'target discovered')
      const target = { major: 9, minor: 0, mac: found.mac }

      const child = spawn(process.execPath, [KVBLADE, 'monitor', '1', '--count', '2', '--mount', mnt], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', d => { stdout += String(d) })
      child.stderr.on('data', d => { stderr += String(d) })
      const exited = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
      // Its first reading is taken once it names the control plane; the I/O comes after.
      while (!stdout.includes('\n')) {
        if (child.exitCode !== null) break
        await new Promise(resolve => setTimeout(resolve, 10))
      }
      t.equal(stdout, `kvblade monitor: ${mnt} every 1 s\n`)

      const data = Buffer.alloc(256 * 512, 0x5a)
      await initiator.write(target, 0, data) // 128 commands of 2 sectors
      const back = await initiator.read(target, 0, 192) // 96 commands
      t.ok(back.equals(data.subarray(0, 192 * 512)), 'read back what was written')

      t.equal(await exited, 0, stderr)
      const reports = parseReports(stdout)
      t.equal(reports.length, 2, 'two reports for --count 2')
      for (const r of reports) t.same([...r.rows.keys()], [t0, t1], 'a row per target, in order')
      // Columns: r/s rkB/s w/s wkB/s await busy err/s. rate x interval, summed, is what was
      // done, within the rounding of the printed figures.
      const total = (target: string, column: number): number => reports.reduce((sum, r) => sum + r.rows.get(target)![column] * r.interval, 0)
      const near = (got: number, want: number, what: string): void => { t.ok(Math.abs(got - want) < 1, `${what}: ${got.toFixed(3)} ≈ ${want}`) }
      near(total(t0, 0), 96, 'reads')
      near(total(t0, 1), 96, 'kB read')
      near(total(t0, 2), 128, 'writes')
      near(total(t0, 3), 128, 'kB written')
      t.ok(reports.some(r => r.rows.get(t0)![2] > 0 && r.rows.get(t0)![4] > 0), 'the interval with the writes shows them, with a latency')
      t.same(reports.map(r => r.rows.get(t0)![5]), [0, 0], 'nothing in flight when each reading was taken')
      t.equal(total(t0, 6), 0, 'no errors')
      for (const column of [0, 1, 2, 3, 4, 6]) t.equal(total(t1, column), 0, `the idle target: column ${column} is 0`)
    })
  })
}
