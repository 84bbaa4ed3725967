/**
 * The command module (src/engine/commands.ts): what each request gets back, built from
 * bytes into bytes with no socket or disk. Expected values from AoE r11 and aoe-notes:
 * replies come from our MAC to the sender with the target's own address and the request's
 * tag; AoE errors 1 unrecognized, 2 bad argument, 4 config present, 5 version, 6 reserved.
 */
import t from 'tap'
import { FLAG_ERROR, FLAG_RESPONSE } from '../../src/aoe/constants'
import { decodeMacMask, encodeMacMask } from '../../src/aoe/macmask'
import { decodeReserve, encodeReserve } from '../../src/aoe/reserve'
import { decodeIdentify } from '../../src/ata/identify'
import { AtaStep } from '../../src/ata/handler'
import { AddressState } from '../../src/engine/address-state'
import {
  addresses, announceDestinations, emptyCommandResult, isRequest, Outcome, respond, sectorsForMtu, type CommandTarget,
} from '../../src/engine/commands'
import { decodeHeader, emptyHeader, encodeHeader, type Header } from '../../src/aoe/header'
import { INITIATOR_MAC, ataFrame, configFrame, configOf, decodeReply, requestHeader } from '../helpers/frames'

const OUR_MAC = 0x020000000001
const link = { mac: OUR_MAC, mtu: 1500 }

function target (over: Partial<CommandTarget> = {}): CommandTarget {
  return { major: 9, minor: 3, state: new AddressState(), bufferCount: 64, sectors: 1000, model: 'm', serial: 's', firmware: 'f', ...over }
}

/** Runs respond() on a frame; returns the result and the reply decoded. */
function answer (frame: Buffer, tg: CommandTarget = target(), l = link): { result: ReturnType<typeof emptyCommandResult>, reply: ReturnType<typeof decodeReply> | null } {
  const h = emptyHeader()
  if (!decodeHeader(frame, 0, frame.length, h)) throw new Error('test frame is not AoE')
  const out = Buffer.alloc(9216 + 64, 0xcc)
  const result = emptyCommandResult()
  respond(h, frame, 0, frame.length, tg, l, out, 64, result)
  const reply = result.outcome === Outcome.Reply ? decodeReply(Buffer.from(out.subarray(64, 64 + result.length))) : null
  return { result, reply }
}

function frameOf (h: Header, body: (buf: Buffer) => void, size = 60): Buffer {
  const buf = Buffer.alloc(Math.max(size, 60))
  encodeHeader(buf, 0, h)
  body(buf)
  return buf
}

t.test('every reply is addressed back, from us, with the target address and the tag', async t => {
  const tg = target()
  for (const [what, frame] of [
    ['query config to the broadcast address', configFrame(0xffff, 0xff).frame],
    ['IDENTIFY', ataFrame(9, 3, 0xec, 0, 1).frame],
    ['an unknown command', frameOf(requestHeader(9, 3, 9), () => {})],
  ] as const) {
    const { reply } = answer(frame, tg)
    const h = emptyHeader()
    decodeHeader(frame, 0, frame.length, h)
    t.ok(reply !== null, `${what}: a reply`)
    t.same([reply!.header.dst, reply!.header.src], [INITIATOR_MAC, OUR_MAC], `${what}: to the sender, from us`)
    t.same([reply!.header.major, reply!.header.minor], [9, 3], `${what}: our own address, never the broadcast one`)
    t.equal(reply!.header.tag, h.tag, `${what}: the tag comes back`)
    t.equal(reply!.header.flags & FLAG_RESPONSE, FLAG_RESPONSE, `${what}: R set`)
  }
})

t.test('Query Config', async t => {
  const cases: Array<{ name: string, ours: string, ccmd: number, theirs: string, reply: boolean, error: number, changed: boolean }> = [
    { name: 'read', ours: 'abc', ccmd: 0, theirs: '', reply: true, error: 0, changed: false },
    { name: 'test, equal', ours: 'abc', ccmd: 1, theirs: 'abc', reply: true, error: 0, changed: false },
    { name: 'test, different: no reply', ours: 'abc', ccmd: 1, theirs: 'abd', reply: false, error: 0, changed: false },
    { name: 'prefix, matching', ours: 'abcdef', ccmd: 2, theirs: 'abc', reply: true, error: 0, changed: false },
    { name: 'prefix, not matching: no reply', ours: 'abc', ccmd: 2, theirs: 'x', reply: false, error: 0, changed: false },
    { name: 'set when empty', ours: '', ccmd: 3, theirs: 'new', reply: true, error: 0, changed: true },
    { name: 'set when set: error 4', ours: 'old', ccmd: 3, theirs: 'new', reply: true, error: 4, changed: false },
    { name: 'force set', ours: 'old', ccmd: 4, theirs: 'new', reply: true, error: 0, changed: true },
    { name: 'unknown subcommand: error 2', ours: 'old', ccmd: 9, theirs: '', reply: true, error: 2, changed: false },
  ]
  for (const c of cases) {
    const state = new AddressState()
    state.config = Buffer.from(c.ours)
    const { result, reply } = answer(configFrame(9, 3, { ccmd: c.ccmd, config: Buffer.from(c.theirs) }).frame, target({ state }))
    t.equal(reply !== null, c.reply, `${c.name}: ${c.reply ? 'a reply' : 'no reply'}`)
    t.equal(result.stateChanged, c.changed, `${c.name}: state ${c.changed ? 'changed' : 'unchanged'}`)
    t.notOk(result.malformed, `${c.name}: well formed`)
    if (reply === null) continue
    t.equal(reply.header.error, c.error, `${c.name}: error ${c.error}`)
    t.equal((reply.header.flags & FLAG_ERROR) !== 0, c.error !== 0, `${c.name}: E flag`)
    const q = configOf(reply.frame)
    t.equal(q.config.toString(), state.config.toString(), `${c.name}: the reply carries our current string`)
    t.same([q.bufferCount, q.sectorsPerCommand, q.firmwareVersion], [64, 2, 1], `${c.name}: buffer count, sectors at MTU 1500, firmware`)
  }
  const long = configFrame(9, 3, { ccmd: 1 }).frame
  long.writeUInt16BE(1025, 30)
  t.same([answer(long).reply, answer(long).result.malformed], [null, true], 'a string longer than 1024: dropped, counted malformed')
  const truncated = configFrame(9, 3, { ccmd: 1, config: Buffer.from('x'.repeat(100)) }).frame.subarray(0, 60)
  t.same([answer(truncated).reply, answer(truncated).result.malformed], [null, true], 'a string past the frame: dropped')
  const { reply } = answer(configFrame(9, 3).frame, target({ bufferCount: 16 }), { mac: OUR_MAC, mtu: 9000 })
  t.same([configOf(reply!.frame).bufferCount, configOf(reply!.frame).sectorsPerCommand], [16, 17], "the target's buffer count, 17 sectors at MTU 9000")
})

// A frame holds MTU + 14 bytes, 36 of them headers: floor((MTU - 22) / 512), at most 17 (our slot).
t.test('sectors per frame follow the MTU exactly', async t => {
  const cases: Array<[number, number]> = [[1500, 2], [1046, 2], [1045, 1], [9000, 17], [8726, 17], [8725, 16], [65536, 17], [100, 0]]
  for (const [mtu, sectors] of cases) t.equal(sectorsForMtu(mtu), sectors, `MTU ${mtu}: ${sectors}`)
})

t.test('Mac Mask List', async t => {
  const state = new AddressState()
  const edit = frameOf(requestHeader(9, 3, 2), buf => encodeMacMask(buf, 0, { mcmd: 1, merror: 0, directives: [{ dcmd: 1, mac: 0x0a0000000001 }, { dcmd: 1, mac: INITIATOR_MAC }] }), 60 + 16)
  const { result, reply } = answer(edit, target({ state }))
  t.equal(result.stateChanged, true, 'an edit that adds changes the state')
  const m = decodeMacMask(reply!.frame, 0, reply!.frame.length)
  t.not(m, 'truncated')
  if (m !== 'truncated') t.same(m.directives.map(d => d.mac), [0x0a0000000001, INITIATOR_MAC], 'the reply lists the mask')
  t.same(state.mask, [0x0a0000000001, INITIATOR_MAC])
  const read = frameOf(requestHeader(9, 3, 2), buf => encodeMacMask(buf, 0, { mcmd: 0, merror: 0, directives: [] }))
  t.equal(answer(read, target({ state })).result.stateChanged, false, 'a read changes nothing')
  const short = frameOf(requestHeader(9, 3, 2), buf => encodeMacMask(buf, 0, { mcmd: 1, merror: 0, directives: [] }, 5))
  const bad = answer(short.subarray(0, 30))
  t.same([bad.reply?.header.error, bad.result.malformed], [2, true], 'directives past the frame: error 2, malformed')
})

t.test('Reserve/Release, and what a reservation refuses', async t => {
  const state = new AddressState()
  const other = 0x0b0000000002
  const set = frameOf(requestHeader(9, 3, 3, { src: other }), buf => encodeReserve(buf, 0, { rcmd: 1, macs: [other] }))
  const { result, reply } = answer(set, target({ state }))
  t.same([reply!.header.error, result.stateChanged], [0, true], 'set: accepted, state changed')
  const r = decodeReserve(reply!.frame, 0, reply!.frame.length)
  t.not(r, 'truncated')
  if (r !== 'truncated') t.same(r.macs, [other], 'the reply lists the reservation')
  const mine = answer(ataFrame(9, 3, 0x24, 0, 1).frame, target({ state }))
  t.same([mine.reply?.header.error, mine.result.outcome], [6, Outcome.Reply], 'a READ from someone else: error 6')
  t.equal(answer(ataFrame(9, 3, 0xec, 0, 1).frame, target({ state })).reply?.header.error, 0, 'IDENTIFY is still answered')
  const steal = frameOf(requestHeader(9, 3, 3), buf => encodeReserve(buf, 0, { rcmd: 1, macs: [] }))
  t.same([answer(steal, target({ state })).reply?.header.error, state.reservation], [6, [other]], 'set by a non-holder: error 6, unchanged')
})

t.test('ATA', async t => {
  const id = answer(ataFrame(9, 3, 0xec, 0, 1).frame)
  t.equal(id.result.outcome, Outcome.Reply, 'IDENTIFY is answered at once')
  t.equal(id.reply!.status, 0x40, 'DRDY')
  t.same(decodeIdentify(id.reply!.data).sectors, 1000, 'with the size')

  const read = answer(ataFrame(9, 3, 0x24, 10, 2).frame)
  t.same([read.result.outcome, read.result.step, read.result.plan.offset, read.result.plan.length], [Outcome.Disk, AtaStep.Read, 5120, 1024], 'READ EXT: to the disk, 2 sectors at LBA 10')
  const data = Buffer.alloc(1024, 7)
  const write = answer(ataFrame(9, 3, 0x34, 998, 2, { data }).frame)
  t.same([write.result.outcome, write.result.step, write.result.dataOffset], [Outcome.Disk, AtaStep.Write, 36], 'WRITE EXT: to the disk, data at 36')
  const flush = answer(ataFrame(9, 3, 0xea, 0, 0).frame)
  t.same([flush.result.outcome, flush.result.step], [Outcome.Disk, AtaStep.Flush], 'FLUSH CACHE EXT: to the disk')

  const past = answer(ataFrame(9, 3, 0x24, 999, 2).frame)
  t.same([past.reply?.status, past.reply?.error, past.result.ataError], [0x41, 0x10, true], 'past the end: ERR, IDNF, counted as an ATA error')
  const big = answer(ataFrame(9, 3, 0x24, 0, 3).frame)
  t.same([big.reply?.header.error, big.result.malformed], [2, true], 'more sectors than a frame carries: AoE error 2')
  const noData = answer(ataFrame(9, 3, 0x34, 0, 2, { data: Buffer.alloc(512) }).frame)
  t.same([noData.reply?.header.error, noData.result.malformed], [2, true], 'a write missing data: AoE error 2')
  const truncated = answer(ataFrame(9, 3, 0x24, 0, 1).frame.subarray(0, 30))
  t.same([truncated.reply?.header.error, truncated.result.malformed], [2, true], 'a truncated ATA header: AoE error 2')
  const unknown = answer(ataFrame(9, 3, 0x99, 0, 0).frame)
  t.same([unknown.reply?.status, unknown.reply?.error], [0x41, 0x04], 'an unknown ATA command: ABRT')
})

t.test('AoE-level errors', async t => {
  const v2 = configFrame(9, 3).frame
  v2[14] = 0x20
  t.equal(answer(v2).reply?.header.error, 5, 'version 2: error 5')
  t.equal(answer(frameOf(requestHeader(9, 3, 0x42), () => {})).reply?.header.error, 1, 'unknown command: error 1')
})

t.test('which frames are requests, and for whom', async t => {
  const tg = target()
  const cases: Array<[string, Partial<Header>, boolean, boolean]> = [
    ['our address', { major: 9, minor: 3 }, true, true],
    ['broadcast shelf and slot', { major: 0xffff, minor: 0xff }, true, true],
    ['broadcast slot on our shelf', { major: 9, minor: 0xff }, true, true],
    ['another slot', { major: 9, minor: 4 }, true, false],
    ['another shelf', { major: 8, minor: 3 }, true, false],
    ['a response', { major: 9, minor: 3, flags: FLAG_RESPONSE }, false, true],
    ['a vendor command', { major: 9, minor: 3, command: 0xf0 }, false, true],
  ]
  for (const [what, over, request, ours] of cases) {
    const h = requestHeader(9, 3, 1, over)
    t.equal(isRequest(h), request, `${what}: ${request ? 'a request' : 'not a request'}`)
    t.equal(addresses(h, tg), ours, `${what}: ${ours ? 'for us' : 'not for us'}`)
  }
})

// The Linux initiator makes a device from any config reply it hears: an announcement goes
// only to MACs that pass both the admin's ACL and the AoE mask, broadcast when neither is set.
t.test('where an announcement goes', async t => {
  const BROADCAST = 0xffffffffffff
  const [m1, m2, m3] = [0x0a0000000001, 0x0a0000000002, 0x0a0000000003]
  const cases: Array<[string, number[], number[], number[]]> = [
    ['neither ACL nor mask: broadcast', [], [], [BROADCAST]],
    ['a mask only: each masked MAC', [], [m1, m2], [m1, m2]],
    ['an ACL only: each ACL MAC, never broadcast', [m1, m2], [], [m1, m2]],
    ['ACL and mask: the MACs on both', [m1, m2], [m2, m3], [m2]],
    ['ACL and mask with nothing in common: nobody', [m1], [m3], []],
  ]
  for (const [what, acl, mask, expected] of cases) {
    const state = new AddressState()
    state.mask.push(...mask)
    t.same(announceDestinations({ acl, state }, BROADCAST), expected, what)
  }
})
