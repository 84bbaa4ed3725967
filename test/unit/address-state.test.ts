/**
 * Query Config, Mac Mask List and Reserve/Release state (AoE r11 §3.2–3.4 as condensed in
 * aoe-notes). Error codes: 2 bad argument, 4 config string present, 6 target reserved.
 * merror: 2 bad directive, 3 list full.
 */
import t from 'tap'
import { AddressState, MASK_LIST_MAX, RESERVE_LIST_MAX } from '../../src/engine/address-state'
import type { ConfigQuery } from '../../src/aoe/config'
import type { MacMaskMessage, MaskDirective } from '../../src/aoe/macmask'

const BAD_ARGUMENT = 2
const CONFIG_PRESENT = 4
const RESERVED = 6
const MERROR_NONE = 0
const MERROR_BAD_DIRECTIVE = 2
const MERROR_LIST_FULL = 3

const A = 0x001122334455
const B = 0x020000000002
const C = 0x020000000003
const D = 0x020000000004

function q (ccmd: number, config = ''): ConfigQuery {
  return { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 1, ccmd, config: Buffer.from(config) }
}

function withConfig (config: string): AddressState {
  const s = new AddressState()
  if (config !== '') s.config = Buffer.from(config)
  return s
}

t.test('Query Config subcommands', t => {
  const cases: Array<{ name: string, ours: string, ccmd: number, theirs: string, respond: boolean, error: number, after: string }> = [
    { name: 'read, empty', ours: '', ccmd: 0, theirs: '', respond: true, error: 0, after: '' },
    { name: 'read, set', ours: 'abc', ccmd: 0, theirs: '', respond: true, error: 0, after: 'abc' },
    { name: 'read with a string does not change ours', ours: 'abc', ccmd: 0, theirs: 'zzz', respond: true, error: 0, after: 'abc' },

    { name: 'test, equal', ours: 'abc', ccmd: 1, theirs: 'abc', respond: true, error: 0, after: 'abc' },
    { name: 'test, both empty', ours: '', ccmd: 1, theirs: '', respond: true, error: 0, after: '' },
    { name: 'test, a prefix is not equal', ours: 'abc', ccmd: 1, theirs: 'ab', respond: false, error: 0, after: 'abc' },
    { name: 'test, longer', ours: 'abc', ccmd: 1, theirs: 'abcd', respond: false, error: 0, after: 'abc' },
    { name: 'test, different', ours: 'abc', ccmd: 1, theirs: 'abd', respond: false, error: 0, after: 'abc' },
    { name: 'test, case matters', ours: 'abc', ccmd: 1, theirs: 'ABC', respond: false, error: 0, after: 'abc' },
    { name: 'test, empty vs set', ours: 'abc', ccmd: 1, theirs: '', respond: false, error: 0, after: 'abc' },

    { name: 'prefix, proper prefix', ours: 'abcdef', ccmd: 2, theirs: 'abc', respond: true, error: 0, after: 'abcdef' },
    { name: 'prefix, whole string', ours: 'abcdef', ccmd: 2, theirs: 'abcdef', respond: true, error: 0, after: 'abcdef' },
    { name: 'prefix, empty is a prefix of anything', ours: 'abc', ccmd: 2, theirs: '', respond: true, error: 0, after: 'abc' },
    { name: 'prefix, empty of empty', ours: '', ccmd: 2, theirs: '', respond: true, error: 0, after: '' },
    { name: 'prefix, longer than ours', ours: 'abc', ccmd: 2, theirs: 'abcd', respond: false, error: 0, after: 'abc' },
    { name: 'prefix, mismatch', ours: 'abcdef', ccmd: 2, theirs: 'abx', respond: false, error: 0, after: 'abcdef' },
    { name: 'prefix, suffix is not a prefix', ours: 'abcdef', ccmd: 2, theirs: 'def', respond: false, error: 0, after: 'abcdef' },

    { name: 'set when empty stores', ours: '', ccmd: 3, theirs: 'new', respond: true, error: 0, after: 'new' },
    { name: 'set same value succeeds', ours: 'same', ccmd: 3, theirs: 'same', respond: true, error: 0, after: 'same' },
    { name: 'set different value: error 4, unchanged', ours: 'old', ccmd: 3, theirs: 'new', respond: true, error: CONFIG_PRESENT, after: 'old' },
    { name: 'set prefix of ours: error 4', ours: 'old', ccmd: 3, theirs: 'ol', respond: true, error: CONFIG_PRESENT, after: 'old' },
    { name: 'set empty when set: error 4', ours: 'old', ccmd: 3, theirs: '', respond: true, error: CONFIG_PRESENT, after: 'old' },

    { name: 'force set replaces', ours: 'old', ccmd: 4, theirs: 'new', respond: true, error: 0, after: 'new' },
    { name: 'force set when empty', ours: '', ccmd: 4, theirs: 'x', respond: true, error: 0, after: 'x' },
    { name: 'force set empty clears', ours: 'old', ccmd: 4, theirs: '', respond: true, error: 0, after: '' },

    { name: 'ccmd 5: bad argument', ours: 'abc', ccmd: 5, theirs: 'zzz', respond: true, error: BAD_ARGUMENT, after: 'abc' },
    { name: 'ccmd 15: bad argument', ours: '', ccmd: 15, theirs: 'zzz', respond: true, error: BAD_ARGUMENT, after: '' },
  ]
  for (const c of cases) {
    const s = withConfig(c.ours)
    const got = s.queryConfig(q(c.ccmd, c.theirs))
    t.same(got, { respond: c.respond, error: c.error }, `${c.name}: outcome`)
    t.equal(s.config.toString(), c.after, `${c.name}: string afterwards`)
  }
  t.end()
})

t.test('Query Config: set then set-same then set-different, and binary strings', t => {
  const s = new AddressState()
  t.same(s.queryConfig(q(3, 'host=a')), { respond: true, error: 0 })
  t.same(s.queryConfig(q(3, 'host=a')), { respond: true, error: 0 }, 'same again')
  t.same(s.queryConfig(q(3, 'host=b')), { respond: true, error: CONFIG_PRESENT })
  t.same(s.queryConfig(q(1, 'host=a')), { respond: true, error: 0 }, 'test still matches the first')
  const bin = new AddressState()
  const value = Buffer.from([0, 1, 0xff, 0])
  t.same(bin.queryConfig({ ...q(4), config: value }), { respond: true, error: 0 })
  t.same(bin.queryConfig({ ...q(1), config: Buffer.from([0, 1, 0xff, 0]) }), { respond: true, error: 0 }, 'byte-exact test')
  t.same(bin.queryConfig({ ...q(1), config: Buffer.from([0, 1, 0xff]) }), { respond: false, error: 0 }, 'trailing NUL matters')
  t.end()
})

function edit (...directives: Array<[number, number]>): MacMaskMessage {
  return { mcmd: 1, merror: 0, directives: directives.map(([dcmd, mac]): MaskDirective => ({ dcmd, mac })) }
}

t.test('Mac Mask List edits', t => {
  const cases: Array<{
    name: string, before: number[], m: MacMaskMessage, error: number, merror: number, count: number, list: boolean, after: number[]
  }> = [
    { name: 'read an empty mask', before: [], m: { mcmd: 0, merror: 0, directives: [] }, error: 0, merror: MERROR_NONE, count: 0, list: true, after: [] },
    { name: 'read a mask of two', before: [A, B], m: { mcmd: 0, merror: 0, directives: [] }, error: 0, merror: MERROR_NONE, count: 2, list: true, after: [A, B] },
    { name: 'read ignores directives', before: [A], m: { mcmd: 0, merror: 0, directives: [{ dcmd: 1, mac: B }] }, error: 0, merror: MERROR_NONE, count: 1, list: true, after: [A] },
    { name: 'add one', before: [], m: edit([1, A]), error: 0, merror: MERROR_NONE, count: 1, list: true, after: [A] },
    { name: 'add two in order', before: [], m: edit([1, A], [1, B]), error: 0, merror: MERROR_NONE, count: 2, list: true, after: [A, B] },
    { name: 'add an existing MAC: no duplicate', before: [A], m: edit([1, A]), error: 0, merror: MERROR_NONE, count: 1, list: true, after: [A] },
    { name: 'delete', before: [A, B, C], m: edit([2, B]), error: 0, merror: MERROR_NONE, count: 2, list: true, after: [A, C] },
    { name: 'delete an absent MAC is not an error', before: [A], m: edit([2, B]), error: 0, merror: MERROR_NONE, count: 1, list: true, after: [A] },
    { name: 'no-op directive', before: [A], m: edit([0, B]), error: 0, merror: MERROR_NONE, count: 1, list: true, after: [A] },
    { name: 'add then delete the same MAC', before: [], m: edit([1, A], [2, A]), error: 0, merror: MERROR_NONE, count: 0, list: true, after: [] },
    { name: 'delete then add back', before: [A, B], m: edit([2, A], [1, A]), error: 0, merror: MERROR_NONE, count: 2, list: true, after: [B, A] },
    { name: 'edit with no directives', before: [A], m: edit(), error: 0, merror: MERROR_NONE, count: 1, list: true, after: [A] },
    {
      name: 'bad directive first: nothing applied, count 0',
      before: [A], m: edit([3, B], [1, C]), error: 0, merror: MERROR_BAD_DIRECTIVE, count: 0, list: false, after: [A],
    },
    {
      name: 'bad directive third: first two applied, count 2, rest skipped',
      before: [], m: edit([1, A], [1, B], [0xff, C], [1, D]), error: 0, merror: MERROR_BAD_DIRECTIVE, count: 2, list: false, after: [A, B],
    },
    {
      name: 'bad directive after a delete',
      before: [A, B], m: edit([2, A], [7, C], [2, B]), error: 0, merror: MERROR_BAD_DIRECTIVE, count: 1, list: false, after: [B],
    },
    { name: 'unknown mcmd: AoE bad argument', before: [A], m: { mcmd: 2, merror: 0, directives: [{ dcmd: 1, mac: B }] }, error: BAD_ARGUMENT, merror: 0, count: 0, list: false, after: [A] },
  ]
  for (const c of cases) {
    const s = new AddressState()
    s.mask.push(...c.before)
    const got = s.macMask(c.m)
    t.same(got, { error: c.error, merror: c.merror, count: c.count, list: c.list }, `${c.name}: outcome`)
    t.same(s.mask, c.after, `${c.name}: mask afterwards`)
  }
  t.end()
})

t.test('Mac Mask List: list full stops at the failing directive', t => {
  t.ok(MASK_LIST_MAX >= 1, 'a mask holds at least one MAC')
  t.ok(28 + 8 * MASK_LIST_MAX <= 1500, 'the whole mask fits one 1500-byte frame')
  const full = Array.from({ length: MASK_LIST_MAX }, (_, i) => 0x0a0000000000 + i)
  const cases: Array<{ name: string, before: number[], m: MacMaskMessage, merror: number, count: number, list: boolean, after: number[] }> = [
    {
      name: 'fill up to the limit in one edit',
      before: full.slice(0, MASK_LIST_MAX - 1), m: edit([1, A]), merror: MERROR_NONE, count: MASK_LIST_MAX, list: true, after: [...full.slice(0, MASK_LIST_MAX - 1), A],
    },
    { name: 'one more when full', before: full, m: edit([1, A]), merror: MERROR_LIST_FULL, count: 0, list: false, after: full },
    {
      name: 'second add overflows: count 1, the first stays',
      before: full.slice(0, MASK_LIST_MAX - 1), m: edit([1, A], [1, B], [1, C]), merror: MERROR_LIST_FULL, count: 1, list: false, after: [...full.slice(0, MASK_LIST_MAX - 1), A],
    },
    { name: 'adding a MAC already present is fine when full', before: full, m: edit([1, full[5]]), merror: MERROR_NONE, count: MASK_LIST_MAX, list: true, after: full },
    {
      name: 'delete makes room for the add that follows',
      before: full, m: edit([2, full[0]], [1, A]), merror: MERROR_NONE, count: MASK_LIST_MAX, list: true, after: [...full.slice(1), A],
    },
    {
      name: 'no-op, present add, then overflow: count 2',
      before: full, m: edit([0, A], [1, full[1]], [1, A]), merror: MERROR_LIST_FULL, count: 2, list: false, after: full,
    },
  ]
  for (const c of cases) {
    const s = new AddressState()
    s.mask.push(...c.before)
    t.same(s.macMask(c.m), { error: 0, merror: c.merror, count: c.count, list: c.list }, `${c.name}: outcome`)
    t.same(s.mask, c.after, `${c.name}: mask afterwards`)
  }
  t.end()
})

t.test('maskAllows', t => {
  const s = new AddressState()
  t.equal(s.maskAllows(A), true, 'empty mask allows everyone')
  t.equal(s.maskAllows(0xffffffffffff), true)
  s.macMask(edit([1, A]))
  t.equal(s.maskAllows(A), true, 'listed MAC allowed')
  t.equal(s.maskAllows(B), false, 'other MACs ignored')
  s.macMask(edit([2, A]))
  t.equal(s.maskAllows(B), true, 'empty again after deleting')
  t.end()
})

t.test('Reserve/Release', t => {
  const cases: Array<{ name: string, before: number[], rcmd: number, macs: number[], sender: number, error: number, after: number[] }> = [
    { name: 'read, unreserved', before: [], rcmd: 0, macs: [], sender: A, error: 0, after: [] },
    { name: 'read by a non-member changes nothing', before: [A], rcmd: 0, macs: [B], sender: B, error: 0, after: [A] },
    { name: 'set when unreserved', before: [], rcmd: 1, macs: [A], sender: A, error: 0, after: [A] },
    { name: 'set a list not including the sender', before: [], rcmd: 1, macs: [B, C], sender: A, error: 0, after: [B, C] },
    { name: 'member replaces the list', before: [A, B], rcmd: 1, macs: [B, C], sender: A, error: 0, after: [B, C] },
    { name: 'non-member set: error 6, unchanged', before: [A], rcmd: 1, macs: [B], sender: B, error: RESERVED, after: [A] },
    { name: 'non-member release: error 6, unchanged', before: [A, C], rcmd: 1, macs: [], sender: B, error: RESERVED, after: [A, C] },
    { name: 'member releases with nmacs 0', before: [A, B], rcmd: 1, macs: [], sender: B, error: 0, after: [] },
    { name: 'release when unreserved', before: [], rcmd: 1, macs: [], sender: D, error: 0, after: [] },
    { name: 'force set by a non-member', before: [A], rcmd: 2, macs: [B], sender: B, error: 0, after: [B] },
    { name: 'force release by a non-member', before: [A], rcmd: 2, macs: [], sender: C, error: 0, after: [] },
    { name: 'unknown rcmd: bad argument', before: [A], rcmd: 3, macs: [B], sender: A, error: BAD_ARGUMENT, after: [A] },
    { name: 'unknown rcmd 255', before: [], rcmd: 255, macs: [], sender: A, error: BAD_ARGUMENT, after: [] },
  ]
  for (const c of cases) {
    const s = new AddressState()
    s.reservation.push(...c.before)
    t.equal(s.reserve({ rcmd: c.rcmd, macs: c.macs }, c.sender), c.error, `${c.name}: error`)
    t.same(s.reservation, c.after, `${c.name}: reservation afterwards`)
  }
  t.end()
})

t.test('Reserve/Release: list size limit and reservationAllows', t => {
  t.ok(26 + 6 * RESERVE_LIST_MAX <= 1500, 'the reservation reply fits one 1500-byte frame')
  const tooMany = Array.from({ length: RESERVE_LIST_MAX + 1 }, (_, i) => 0x0b0000000000 + i)
  const s = new AddressState()
  t.equal(s.reserve({ rcmd: 1, macs: tooMany }, A), BAD_ARGUMENT, 'longer than the list')
  t.same(s.reservation, [], 'nothing stored')
  t.equal(s.reserve({ rcmd: 1, macs: tooMany.slice(0, RESERVE_LIST_MAX) }, A), 0, 'exactly the limit')
  t.equal(s.reservation.length, RESERVE_LIST_MAX)

  const r = new AddressState()
  t.equal(r.reservationAllows(A), true, 'unreserved: everyone')
  r.reserve({ rcmd: 1, macs: [A, B] }, C)
  t.equal(r.reservationAllows(A), true)
  t.equal(r.reservationAllows(B), true)
  t.equal(r.reservationAllows(C), false, 'the setter is not a member unless listed')
  t.equal(r.reserve({ rcmd: 1, macs: [C] }, C), RESERVED, 'and so cannot set it again')
  r.reserve({ rcmd: 1, macs: [] }, A)
  t.equal(r.reservationAllows(C), true, 'released')
  t.end()
})

t.test('the stored reservation is a copy of the request list', t => {
  const s = new AddressState()
  const macs = [A, B]
  s.reserve({ rcmd: 1, macs }, A)
  macs.push(C)
  t.same(s.reservation, [A, B])
  t.end()
})
