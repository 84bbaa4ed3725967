/** `kvblade status` and `monitor`: parsing the control files, the tables, the rates (pure). */
import t from 'tap'
import {
  chooseControlPlane, compareTargets, parseInterfaces, parseLatency, parseTargetStat, type TargetView,
} from '../../src/cli/control-files'
import {
  computeRates, formatMonitorReport, formatSize, formatStatus, formatTable, formatTargetOptions, type TargetRates,
} from '../../src/cli/status'
import { parseMountinfo } from '../../fuse/mountinfo'

function target (name: string, over: Partial<TargetView> = {}): TargetView {
  const [major, minor, ifname] = name.split(/[.@]/)
  return {
    name,
    major: Number(major),
    minor: Number(minor),
    ifname,
    sectors: 131072,
    path: '/srv/disk.img',
    busy: 0,
    readOnly: false,
    shared: false,
    direct: false,
    offset: 0,
    aclCount: 0,
    cache: 'writethrough',
    bufferCount: 64,
    counters: { reads: 0, readSectors: 0, writes: 0, writeSectors: 0, flushes: 0, errors: 0, inFlight: 0, frames: 0, syncs: 0, syncedWrites: 0 },
    latency: { count: 0, sum: 0 },
    ...over,
  }
}

t.test('parseTargetStat: the ten counters by position, an older eight-field line reads syncs as 0, more fields ignored', async t => {
  const cases: Array<[string, string, number[]]> = [
    ['eight (a daemon without sync counters)', '      10       80        3       24        1        2        0       17\n', [10, 80, 3, 24, 1, 2, 0, 17, 0, 0]],
    ['ten (syncs, syncedWrites)', '       1        2        3        4        5        6        7        8        9       10\n', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
    ['eleven: the unknown one is ignored', '1 2 3 4 5 6 7 8 9 10 11\n', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
    ['single spaces, no newline', '1 2 3 4 5 6 7 8', [1, 2, 3, 4, 5, 6, 7, 8, 0, 0]],
  ]
  for (const [name, text, want] of cases) {
    const c = parseTargetStat(text)
    t.same([c.reads, c.readSectors, c.writes, c.writeSectors, c.flushes, c.errors, c.inFlight, c.frames, c.syncs, c.syncedWrites], want, name)
  }
  t.throws(() => parseTargetStat('1 2 3\n'), /expected at least 8 counters/)
  t.throws(() => parseTargetStat('1 2 3 4 5 6 7 x\n'), /not a number/)
  t.throws(() => parseTargetStat('1 2 3 4 5 6 7 8 9 y\n'), /not a number/)
})

t.test('parseLatency and parseInterfaces', async t => {
  t.same(parseLatency('5 0.003500000\n0.001 4\n+Inf 5\n'), { count: 5, sum: 0.0035 })
  t.same(parseLatency('0 0\n'), { count: 0, sum: 0 })
  t.throws(() => parseLatency(''), /not a number/)
  t.same([...parseInterfaces('eth0 up 1500\nveth1 down 9000\nusb0 gone 1500\n\n')], [
    ['eth0', { link: 'up', mtu: 1500 }], ['veth1', { link: 'down', mtu: 9000 }], ['usb0', { link: 'gone', mtu: 1500 }],
  ])
  t.same([...parseInterfaces('')], [])
})

t.test('chooseControlPlane: --mount, else the one mounted, else /mnt/kvblade', async t => {
  const mounts = (...dirs: Array<[string, string]>): ReturnType<typeof parseMountinfo> =>
    parseMountinfo(dirs.map(([dir, dev], i) => `${40 + i} 1 ${dev} / ${dir} rw - fuse.kvblade kvblade rw`).join('\n'))
  const cases: Array<[string, string | undefined, ReturnType<typeof parseMountinfo>, string]> = [
    ['explicit wins', '/srv/kv', mounts(['/mnt/a', '0:50'], ['/mnt/b', '0:51']), '/srv/kv'],
    ['none mounted', undefined, [], '/mnt/kvblade'],
    ['one mounted', undefined, mounts(['/tmp/kvblade-x', '0:50']), '/tmp/kvblade-x'],
    ['one, bind-mounted again', undefined, mounts(['/tmp/kv', '0:50'], ['/sys/kvblade', '0:50']), '/tmp/kv'],
  ]
  for (const [name, explicit, m, want] of cases) t.equal(chooseControlPlane(explicit, m), want, name)
  t.throws(() => chooseControlPlane(undefined, mounts(['/mnt/a', '0:50'], ['/mnt/b', '0:51'])),
    /2 kvblade control planes are mounted \(\/mnt\/a, \/mnt\/b\): choose one with --mount DIR/)
})

t.test('formatSize', async t => {
  const cases: Array<[number, string]> = [
    [1, '512B'], [2, '1.0KiB'], [3, '1.5KiB'], [2047, '1023.5KiB'], [2048, '1.0MiB'], [131072, '64.0MiB'],
    [2097151, '1.0GiB'], [2097152, '1.0GiB'], [3 * 2097152, '3.0GiB'], [2147483648, '1.0TiB'], [1e12, '465.7TiB'],
  ]
  for (const [sectors, want] of cases) t.equal(formatSize(sectors), want, `${sectors} sectors`)
})

t.test('formatTargetOptions', async t => {
  const cases: Array<[string, Partial<TargetView>, string]> = [
    ['plain', {}, 'rw,cache=writethrough,bufcnt=64'],
    ['everything', { readOnly: true, offset: 2048, aclCount: 2, cache: 'writeback', bufferCount: 16, shared: true, direct: true },
      'ro,offset=2048,acl=2,cache=writeback,bufcnt=16,shared,direct'],
    ['direct only', { direct: true }, 'rw,cache=writethrough,bufcnt=64,direct'],
  ]
  for (const [name, over, want] of cases) t.equal(formatTargetOptions(target('9.0@eth0', over)), want, name)
})

t.test('formatTable: aligned columns, numbers to the right, the last column unpadded', async t => {
  const cols = [{ header: 'A', align: 'left' as const }, { header: 'NUM', align: 'right' as const }, { header: 'LAST', align: 'left' as const }]
  t.equal(formatTable(cols, [['x', '1', 'p'], ['longer', '12345', 'q q']]),
    'A         NUM  LAST\n' +
    'x           1  p\n' +
    'longer  12345  q q\n')
  t.equal(formatTable(cols, []), 'A  NUM  LAST\n', 'a header even with no rows')
  t.equal(formatTable([{ header: 'N', align: 'right', min: 4 }], [['7']]), '   N\n   7\n', 'minimum width')
})

t.test('formatStatus: one line per target, header, link state from interfaces', async t => {
  const view = {
    targets: [
      target('9.0@eth0', { busy: 3, path: '/var/lib/aoe/disk0.img' }),
      target('9.1@eth1', { sectors: 2097152, readOnly: true, aclCount: 1, path: '/dev/vg0/vm1' }),
      target('10.0@veth9', { sectors: 1, path: '/tmp/tiny' }),
    ],
    interfaces: new Map([['eth0', { link: 'up' as const, mtu: 1500 }], ['eth1', { link: 'down' as const, mtu: 9000 }]]),
  }
  t.equal(formatStatus(view),
    'TARGET      LINK     SIZE  BUSY  OPTIONS                                BACKING\n' +
    '9.0@eth0    up    64.0MiB     3  rw,cache=writethrough,bufcnt=64        /var/lib/aoe/disk0.img\n' +
    '9.1@eth1    down   1.0GiB     0  ro,acl=1,cache=writethrough,bufcnt=64  /dev/vg0/vm1\n' +
    '10.0@veth9  -        512B     0  rw,cache=writethrough,bufcnt=64        /tmp/tiny\n')
  t.equal(formatStatus({ targets: [], interfaces: new Map() }), 'TARGET  LINK  SIZE  BUSY  OPTIONS  BACKING\n', 'no targets: the header alone')
  t.equal(formatStatus({ targets: [target('9.2@eth7', { sectors: 0, path: '/srv/x.img', waiting: 'no interface eth7' })], interfaces: new Map() }),
    'TARGET    LINK     SIZE  BUSY  OPTIONS                          BACKING\n' +
    '9.2@eth7  waiting    0B     0  rw,cache=writethrough,bufcnt=64  /srv/x.img\n' +
    '9.2@eth7: waiting: no interface eth7\n', 'a waiting target, and why')
})

t.test('compareTargets: numeric major, minor, then interface', async t => {
  const names = ['10.0@eth0', '9.10@eth0', '9.2@eth1', '9.2@eth0', '65534.0@a']
  const sorted = names.map(n => target(n)).sort(compareTargets).map(v => v.name)
  t.same(sorted, ['9.2@eth0', '9.2@eth1', '9.10@eth0', '10.0@eth0', '65534.0@a'])
})

t.test('computeRates', async t => {
  const c = (reads: number, readSectors: number, writes: number, writeSectors: number, errors = 0): TargetView['counters'] =>
    ({ reads, readSectors, writes, writeSectors, flushes: 0, errors, inFlight: 0, frames: 0, syncs: 0, syncedWrites: 0 })
  const cases: Array<{ name: string, prev: TargetView[], cur: TargetView[], seconds: number, want: TargetRates[] }> = [
    {
      name: 'reads and writes over 2 s, latency average of the interval only',
      prev: [target('9.0@eth0', { counters: c(100, 200, 10, 20), latency: { count: 110, sum: 10 } })],
      cur: [target('9.0@eth0', { counters: c(300, 600, 50, 100, 4), latency: { count: 350, sum: 10.12 }, busy: 7 })],
      seconds: 2,
      want: [{ name: '9.0@eth0', readsPerSec: 100, readKiBPerSec: 100, writesPerSec: 20, writeKiBPerSec: 20, awaitMs: 0.5, busy: 7, errorsPerSec: 2 }],
    },
    {
      name: 'idle: zeros, and no division by zero for the latency',
      prev: [target('9.0@eth0')],
      cur: [target('9.0@eth0')],
      seconds: 1,
      want: [{ name: '9.0@eth0', readsPerSec: 0, readKiBPerSec: 0, writesPerSec: 0, writeKiBPerSec: 0, awaitMs: 0, busy: 0, errorsPerSec: 0 }],
    },
    {
      name: 'a target added or deleted in between has no rate yet / any more',
      prev: [target('9.0@eth0'), target('9.1@eth0')],
      cur: [target('9.0@eth0', { counters: c(0, 0, 4, 8) }), target('9.2@eth0', { counters: c(1000, 2000, 0, 0) })],
      seconds: 0.5,
      want: [{ name: '9.0@eth0', readsPerSec: 0, readKiBPerSec: 0, writesPerSec: 8, writeKiBPerSec: 8, awaitMs: 0, busy: 0, errorsPerSec: 0 }],
    },
    {
      name: 'counters that went backwards (deleted and added again): left out',
      prev: [target('9.0@eth0', { counters: c(500, 1000, 0, 0) })],
      cur: [target('9.0@eth0', { counters: c(3, 6, 0, 0) })],
      seconds: 1,
      want: [],
    },
    { name: 'no time passed', prev: [target('9.0@eth0')], cur: [target('9.0@eth0')], seconds: 0, want: [] },
  ]
  // Rounded to nanoseconds of latency: the sums are binary fractions.
  const round = (rows: TargetRates[]): TargetRates[] => rows.map(r => ({ ...r, awaitMs: Math.round(r.awaitMs * 1e6) / 1e6 }))
  for (const k of cases) t.same(round(computeRates(k.prev, k.cur, k.seconds)), k.want, k.name)
})

t.test('formatMonitorReport', async t => {
  const end = new Date(2026, 11, 3, 9, 5, 7)
  const rates: TargetRates[] = [
    { name: '9.0@eth0', readsPerSec: 100, readKiBPerSec: 100, writesPerSec: 20.125, writeKiBPerSec: 20.5, awaitMs: 0.5, busy: 7, errorsPerSec: 2 },
    { name: '9.1@eth0', readsPerSec: 0, readKiBPerSec: 0, writesPerSec: 0, writeKiBPerSec: 123456.78, awaitMs: 12.345, busy: 0, errorsPerSec: 0 },
  ]
  t.equal(formatMonitorReport(rates, 1.0004, end),
    '\n2026-12-03 09:05:07  interval 1.000 s\n' +
    'TARGET              r/s       rkB/s        w/s       wkB/s     await   busy     err/s\n' +
    '9.0@eth0         100.00      100.00      20.13       20.50      0.50      7      2.00\n' +
    '9.1@eth0           0.00        0.00       0.00   123456.78     12.35      0      0.00\n')
  t.equal(formatMonitorReport([], 2, end),
    '\n2026-12-03 09:05:07  interval 2.000 s\n' +
    'TARGET              r/s       rkB/s        w/s       wkB/s     await   busy     err/s\n', 'no targets')
})
