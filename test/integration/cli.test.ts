// The command line as a user meets it: help, bad arguments, bad --add lines, signals.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Daemon, KVBLADE } from '../helpers/daemon'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator } from '../helpers/initiator'

t.test('--help and usage errors', async t => {
  const help = Daemon.spawn(['--help'])
  t.same(await help.wait(), { code: 0, signal: null })
  const usage = Daemon.spawn(['start', '--frobnicate'])
  t.same(await usage.wait(), { code: 2, signal: null }, 'unknown option: exit 2')
  t.match(usage.stderr, /unknown option --frobnicate/)
  t.match(usage.stderr, /Usage:/)
  const bufcnt = Daemon.spawn(['start', '--no-mount', '--bufcnt', '1'])
  t.same(await bufcnt.wait(), { code: 2, signal: null }, 'a buffer count the Linux initiator cannot use is refused')
  t.match(bufcnt.stderr, /--bufcnt must be 2-65535/)
})

t.test('a daemon with nothing to serve yet keeps running until a signal, then exits 0', async t => {
  // Nothing open (no target, no control plane) must not mean nothing to wait for: a
  // reload (SIGHUP) or a waiting target may bring targets later.
  const d = await Daemon.start(['--no-mount', '--no-state'])
  await new Promise(resolve => setTimeout(resolve, 1000))
  t.ok(d.alive, 'still running a second later')
  t.same(await d.stop(), { code: 0, signal: null }, 'SIGTERM: exit 0')
})

/** A veth pair and a 1 MiB image, both removed when the test ends. */
async function setUp (t: { teardown: (fn: () => unknown) => void }): Promise<{ net: TestNetwork, dir: string, img: string }> {
  const net = await TestNetwork.create(1)
  t.teardown(() => net.destroy())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvblade-cli-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const img = path.join(dir, 'a.img')
  fs.writeFileSync(img, Buffer.alloc(1 << 20))
  return { net, dir, img }
}

const unavailable = networkTestsUnavailable()
if (unavailable !== null) {
  skipLoudly(t, 'CLI network tests', unavailable)
} else {
  t.test('bad --add lines fail with a message naming the cause', async t => {
    const { net, dir, img: good } = await setUp(t)
    const empty = path.join(dir, 'empty.img')
    fs.writeFileSync(empty, '')
    const iface = net.links[0].target
    const cases: Array<[string, string[], RegExp]> = [
      ['missing interface', ['--add', `9 0 kvnosuch0 ${good}`], /no interface kvnosuch0/],
      ['missing file', ['--add', `9 0 ${iface} ${dir}/nope.img`], /cannot open .*nope\.img/],
      ['zero size', ['--add', `9 0 ${iface} ${empty}`], /no whole sector/],
      ['directory', ['--add', `9 0 ${iface} ${dir}`], /is a directory/],
      ['duplicate', ['--add', `9 0 ${iface} ${good}`, '--add', `9 0 ${iface} ${good}`], /exists/],
      ['too few fields', ['--add', `9 0 ${iface}`], /expected 4 fields/],
      ['broadcast major', ['--add', `65535 0 ${iface} ${good}`], /major 65535 is out of range/],
      ['broadcast minor', ['--add', `9 255 ${iface} ${good}`], /minor 255 is out of range/],
      ['not a number', ['--add', `nine 0 ${iface} ${good}`], /major "nine" is not a number/],
    ]
    for (const [name, args, message] of cases) {
      const d = Daemon.spawn(['start', '--no-mount', ...args])
      const exit = await d.wait()
      t.same(exit, { code: 1, signal: null }, `${name}: exit status 1`)
      t.match(d.stderr, message, `${name}: message`)
      t.match(d.stderr, /^kvblade: cannot add "/m, `${name}: one clear line`)
    }
  })

  t.test('a backing the daemon may not open: EACCES, said as such', async t => {
    const { net, img } = await setUp(t)
    fs.chmodSync(img, 0o000)
    t.teardown(() => fs.chmodSync(img, 0o644))
    // Root without the capabilities that override file modes, as a hardened service may run.
    const d = Daemon.spawnCommand('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', process.execPath, KVBLADE,
      'start', '--no-mount', '--no-state', '--add', `9 0 ${net.links[0].target} ${img}`])
    const exit = await d.wait()
    t.same(exit, { code: 1, signal: null }, 'exit status 1')
    t.match(d.stderr, /cannot add .*: cannot open .* read-write: EACCES: permission denied/, 'the errno of the open, not ENOENT')
  })

  t.test('shelf 4095 is accepted with a warning (the Linux initiator refuses it)', async t => {
    const { net, img } = await setUp(t)
    const d = await Daemon.start(['--no-mount', '--add', `4095 0 ${net.links[0].target} ${img}`])
    t.match(d.stderr, /^kvblade: warning: shelf 4095 .* refused by the Linux aoe initiator/m)
    t.same(await d.stop(), { code: 0, signal: null })
  })

  t.test('SIGINT and SIGTERM stop the daemon cleanly; an add is announced', async t => {
    const { net, img } = await setUp(t)
    const link = net.links[0]
    const initiator = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => initiator.close())
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const before = initiator.received.length
      const d = await Daemon.start(['--no-mount', '--add', `0x9 010 ${link.target} ${img}`])
      // The announcement is an unsolicited Query Config reply to broadcast.
      for (let i = 0; i < 50 && initiator.received.length === before; i++) await new Promise(resolve => setTimeout(resolve, 20))
      const announced = initiator.received.slice(before)
      t.equal(announced.length, 1, `${signal} run: one announcement`)
      t.same(announced.map(r => [r.header.major, r.header.minor, r.header.dst, r.header.command]), [[9, 8, 0xffffffffffff, 1]],
        'from 9.8 (0x9 and octal 010 parsed as kvblade did), broadcast, Query Config')
      t.same(await d.stop(signal), { code: 0, signal: null }, `${signal}: exit 0`)
    }
  })
}
