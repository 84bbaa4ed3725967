// The torture suite's plumbing: findings grouped by kind, the table, the control
// plane's stat files parsed, seeds derived per check (test/torture/check.ts,
// report.ts, stats.ts, random.ts).
import t from 'tap'
import { Findings, passed, type CheckResult } from '../torture/check'
import { formatDetails, formatTable, wrap } from '../torture/report'
import { delta, parseInterfaceStats, parseTargetStats } from '../torture/stats'
import { deriveSeed, fill, prng, weighted } from '../torture/random'

t.test('findings: one line per kind, with the count and the first examples', async t => {
  const f = new Findings(2)
  t.equal(f.found, 0)
  t.same(f.lines(), [])
  f.add('a', 'x1')
  f.add('b')
  f.add('a', 'x2')
  f.add('a', 'x3')
  t.equal(f.expect(true, 'c'), true)
  t.equal(f.expect(false, 'c', 'y'), false)
  f.add('d', 'z', 10)
  t.equal(f.found, 15)
  t.equal(f.countOf('a'), 3)
  t.same(f.lines(), ['3 × a (e.g. x1; x2)', '1 × b', '1 × c (e.g. y)', '10 × d (e.g. z)'])
})

t.test('passed: nothing found, and something tried', async t => {
  const r: CheckResult = { tried: 'x', count: 3, found: 0, failures: [], notes: [] }
  t.equal(passed(r), true)
  t.equal(passed({ ...r, count: 0 }), false, 'nothing tried is no pass')
  t.equal(passed({ ...r, found: 1, failures: ['f'] }), false)
})

t.test('the table: a row per check, tried wrapped, FAIL where something was found', async t => {
  t.same(wrap('aa bb cc', 5), ['aa bb', 'cc'])
  t.same(wrap('averyveryverylongword x', 5), ['averyveryverylongword', 'x'])
  const rows = [
    { name: 'one', seconds: 1.25, result: { tried: '10 frames', count: 10, found: 0, failures: [], notes: [] } },
    { name: 'second row', seconds: 20, result: { tried: 'a b c d e f g h', count: 5, found: 3, failures: ['3 × bad'], notes: ['n'] } },
  ]
  const table = formatTable(rows, 9).split('\n')
  t.match(table[0], /^\| class +\| tried +\| found \| result \| time$/)
  t.match(table[2], /^\| one +\| 10 frames \| 0 +\| ok +\| 1\.3s$/)
  t.match(table[3], /^\| second row \| a b c d e \| 3 +\| FAIL +\| 20\.0s$/)
  t.match(table[4], /^\| +\| f g h +\| +\| +\| $/)
  t.equal(table.length, 5)
  t.equal(formatDetails(rows), 'second row:\n  FAIL 3 × bad\n  note n')
})

t.test('stat files of the control plane', async t => {
  const ifaces = parseInterfaceStats('eth0 100 90 1 5 2 3\nkt1 7 6 0 0 0 0\n')
  t.same(ifaces.get('eth0'), { ifname: 'eth0', framesIn: 100, framesOut: 90, kernelDrops: 1, ignored: 5, malformed: 2, sendErrors: 3 })
  t.equal(ifaces.get('kt1')?.framesIn, 7)
  t.throws(() => parseInterfaceStats('eth0 1 2 3\n'), /expected 6 counters/)
  const target = parseTargetStats('      10       80        3       24        1        2        0       17        4       12\n')
  t.same(target, { reads: 10, readSectors: 80, writes: 3, writeSectors: 24, flushes: 1, errors: 2, inFlight: 0, frames: 17, syncs: 4, syncedWrites: 12 })
  t.throws(() => parseTargetStats('1 2 3\n'), /expected 10 counters/)
  t.throws(() => parseTargetStats('1 2 3 4 5 6 7 8 9 10\n1 2 3 4 5 6 7 8 9 10\n'), /one line/)
  t.same(delta({ ...target, reads: 15 }, target), { reads: 5, readSectors: 0, writes: 0, writeSectors: 0, flushes: 0, errors: 0, inFlight: 0, frames: 0, syncs: 0, syncedWrites: 0 })
  t.same(delta(ifaces.get('eth0')!, ifaces.get('eth0')!), { ifname: 'eth0', framesIn: 0, framesOut: 0, kernelDrops: 0, ignored: 0, malformed: 0, sendErrors: 0 }, 'names are kept')
})

t.test('random helpers', async t => {
  t.equal(deriveSeed(1, 'wire fuzz'), deriveSeed(1, 'wire fuzz'), 'stable')
  t.not(deriveSeed(1, 'wire fuzz'), deriveSeed(1, 'crash'), 'per name')
  t.not(deriveSeed(1, 'wire fuzz'), deriveSeed(2, 'wire fuzz'), 'per seed')
  const a = Buffer.alloc(37)
  const b = Buffer.alloc(37)
  fill(prng(3), a)
  fill(prng(3), b)
  t.ok(a.equals(b), 'fill is seeded')
  t.ok(a.some(x => x !== 0), 'and fills')
  const r = prng(4)
  const seen = new Set<string>()
  for (let i = 0; i < 1000; i++) seen.add(weighted(r, [['x', 1], ['y', 0], ['z', 3]] as const))
  t.same([...seen].sort(), ['x', 'z'], 'a zero weight is never picked')
})
