// The torture suite's crash verdict (test/torture/crash/verify.ts), case by case.
import t from 'tap'
import { verifyAfterCrash, type LoggedWrite, type SectorContent } from '../torture/crash/verify'

const before: SectorContent = { kind: 'before' }
const holds = (writeId: number, index = 0): SectorContent => ({ kind: 'write', writeId, index })

function verdict (log: LoggedWrite[], contents: SectorContent[]): string[] {
  return verifyAfterCrash(log, contents.length, s => contents[s]).map(v => `${v.sector}: ${v.problem}`)
}

t.test('what a sector may hold after the kill', async t => {
  const w = (id: number, lba: number, count: number, acked: boolean): LoggedWrite => ({ id, lba, count, acked })
  const cases: Array<{ name: string, log: LoggedWrite[], contents: SectorContent[], want: string[] }> = [
    { name: 'nothing written, nothing changed', log: [], contents: [before, before], want: [] },
    { name: 'an acknowledged write in place', log: [w(1, 0, 2, true)], contents: [holds(1, 0), holds(1, 1)], want: [] },
    { name: 'an acknowledged write lost', log: [w(1, 0, 1, true)], contents: [before], want: ['0: an acknowledged write is lost (the sector holds its old data)'] },
    { name: 'an unacknowledged write may be missing', log: [w(1, 0, 1, false)], contents: [before], want: [] },
    { name: 'or present', log: [w(1, 0, 1, false)], contents: [holds(1)], want: [] },
    { name: 'a later unacknowledged write may have landed', log: [w(1, 0, 1, true), w(2, 0, 1, false)], contents: [holds(2)], want: [] },
    { name: 'the last acknowledged write wins over an earlier one', log: [w(1, 0, 1, true), w(2, 0, 1, true)], contents: [holds(1)], want: ['0: an acknowledged write is lost (the sector holds an older write)'] },
    { name: 'an earlier unacknowledged write must not land over a later acknowledged one', log: [w(1, 0, 1, false), w(2, 0, 1, true)], contents: [holds(1)], want: ['0: an acknowledged write is lost (the sector holds an older write)'] },
    { name: 'a sector of the wrong index', log: [w(1, 0, 2, true)], contents: [holds(1, 1), holds(1, 1)], want: ['0: a sector holds a write that did not cover it'] },
    { name: 'a write found where none was sent', log: [w(1, 0, 1, true)], contents: [holds(1), holds(1)], want: ['1: a sector no write covered has changed'] },
    { name: 'torn or foreign data', log: [w(1, 0, 1, false)], contents: [{ kind: 'other' }], want: ['0: a sector holds data no write put there'] },
    { name: 'an unknown write id', log: [w(1, 0, 1, false)], contents: [holds(7)], want: ['0: a sector holds a write that did not cover it'] },
  ]
  for (const c of cases) t.same(verdict(c.log, c.contents), c.want, c.name)
})
