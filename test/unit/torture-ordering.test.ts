// The torture suite's sector patterns and ordering bursts (test/torture/patterns.ts,
// ordering/plan.ts): patterns name their write and sector and nothing else matches
// them; bursts put pairs on disjoint sectors; reads are classified by sector.
import t from 'tap'
import { prng } from '../helpers/prng'
import { disjointRanges, identifySector, sectorPattern, writeData } from '../torture/patterns'
import { DIRECTIONS, classifyRead, expectedFinal, expectedRead, planBurst } from '../torture/ordering/plan'

t.test('a sector pattern names its write and index, and only under its salt', async t => {
  const s = sectorPattern(99, 1234, 1)
  t.equal(s.length, 512)
  t.same(identifySector(99, s), { writeId: 1234, index: 1 })
  t.equal(identifySector(98, s), null, 'another salt')
  const torn = Buffer.from(s)
  torn[300] ^= 1
  t.equal(identifySector(99, torn), null, 'one bit changed')
  t.equal(identifySector(99, Buffer.alloc(512)), null, 'zeros')
  t.equal(identifySector(99, s.subarray(0, 511)), null, 'short')
  t.notOk(sectorPattern(99, 1234, 0).equals(s), 'another index, another pattern')
  t.notOk(sectorPattern(99, 1235, 1).equals(s), 'another write, another pattern')
  const data = writeData(99, 77, 3)
  t.equal(data.length, 1536)
  t.same([0, 1, 2].map(i => identifySector(99, data, i * 512)), [0, 1, 2].map(index => ({ writeId: 77, index })))
})

t.test('disjoint ranges: inside the disk, no overlap, 1..max sectors', async t => {
  const r = prng(5)
  for (let round = 0; round < 200; round++) {
    const ranges = disjointRanges(r, 64, 1024, 2)
    const used = new Set<number>()
    let ok = true
    for (const { lba, count } of ranges) {
      if (count < 1 || count > 2 || lba < 0 || lba + count > 1024) ok = false
      for (let s = lba; s < lba + count; s++) {
        if (used.has(s)) ok = false
        used.add(s)
      }
    }
    if (!ok) { t.fail(`round ${round}: ${JSON.stringify(ranges)}`); return }
  }
  t.pass('200 bursts of 64 ranges')
  t.throws(() => disjointRanges(r, 600, 1024, 2), RangeError, 'more ranges than slots')
})

t.test('bursts: each direction, fresh write ids, what must be read and kept', async t => {
  let id = 1
  const next = (): number => id++
  const r = prng(9)
  const rw = planBurst(r, 'read-then-write', 16, 4096, 2, next)
  t.equal(rw.pairs.length, 16)
  t.ok(rw.pairs.every(p => !p.first.write && p.second.write && p.second.writeId > 0))
  t.ok(rw.pairs.every(p => expectedRead(p, 'read-then-write') === 0 && expectedFinal(p) === p.second.writeId), 'old data read, the write kept')
  const wr = planBurst(r, 'write-then-read', 4, 4096, 2, next)
  t.ok(wr.pairs.every(p => p.first.write && !p.second.write && expectedRead(p, 'write-then-read') === p.first.writeId && expectedFinal(p) === p.first.writeId), 'new data read')
  const ww = planBurst(r, 'write-then-write', 4, 4096, 2, next)
  t.ok(ww.pairs.every(p => p.first.write && p.second.write && p.second.writeId > p.first.writeId && expectedFinal(p) === p.second.writeId), 'the later write kept')
  const ids = [...rw.pairs, ...wr.pairs, ...ww.pairs].flatMap(p => [p.first.writeId, p.second.writeId]).filter(x => x > 0)
  t.equal(new Set(ids).size, ids.length, 'write ids are unique')
  t.same(DIRECTIONS, ['read-then-write', 'write-then-read', 'write-then-write'])
})

t.test('classifyRead: table', async t => {
  const old = Buffer.concat([sectorPattern(1, 1, 0), sectorPattern(1, 1, 1)])
  const written = writeData(1, 2, 2)
  const mixed = Buffer.concat([old.subarray(0, 512), written.subarray(512)])
  const cases = [
    { got: old, expectOld: true, want: 'as expected' },
    { got: written, expectOld: true, want: 'the new data' },
    { got: written, expectOld: false, want: 'as expected' },
    { got: old, expectOld: false, want: 'the old data' },
    { got: mixed, expectOld: true, want: 'part old, part new' },
    { got: Buffer.alloc(1024), expectOld: true, want: 'other data' },
    { got: old.subarray(0, 512), expectOld: true, want: 'other data' },
  ] as const
  for (const c of cases) t.equal(classifyRead(c.got, old, written, c.expectOld), c.want, `${c.want} (expect ${c.expectOld ? 'old' : 'new'})`)
})
