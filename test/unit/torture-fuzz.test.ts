// The torture suite's wire fuzzer (test/torture/fuzz/generate.ts, accounting.ts): it is
// deterministic by seed, produces every mutation class, never sends a write outside
// the window (checked here by a reading of the bytes written independently of
// confine()), only adds maskable MACs to a mask, and judges replies and counters as
// the notes say.
import t from 'tap'
import { decodeMacMask } from '../../src/aoe/macmask'
import { decodeReserve } from '../../src/aoe/reserve'
import { decodeConfig } from '../../src/aoe/config'
import { encodeAtaRequest } from '../../src/aoe/ata'
import { encodeHeader } from '../../src/aoe/header'
import { prng } from '../helpers/prng'
import {
  FrameGenerator, LBA28_WRITE_OPCODES, MUTATIONS, confine, describe, judgeReply, maskableMacs, restoreFrames,
  stampTag, type FuzzSetup, type ReplyView,
} from '../torture/fuzz/generate'
import { Accounting, checkCounters } from '../torture/fuzz/accounting'
import type { InterfaceCounters, TargetCounters } from '../torture/stats'

const OUR = 0x0200000000aa
const TARGET_MAC = 0x0200000000bb
const setup: FuzzSetup = {
  ourMac: OUR,
  targetMac: TARGET_MAC,
  peerMacs: [0x020000000001, 0xffffffffffff],
  targets: [{ major: 7, minor: 0 }, { major: 7, minor: 1 }],
  diskSectors: 32768,
  window: { start: 8192, end: 12288 },
  maxSectors: 2,
  mtu: 1500,
}

/** An ATA frame with the given raw fields (LBA as the six bytes hold it). */
function ataFrame (opcode: number, rawLba: number, count: number, aflags = 0, dataBytes = 0): Buffer {
  const f = Buffer.alloc(Math.max(60, 36 + dataBytes))
  encodeHeader(f, 0, { dst: TARGET_MAC, src: OUR, version: 1, flags: 0, error: 0, major: 7, minor: 0, command: 0, tag: 1 })
  encodeAtaRequest(f, 0, { aflags, feature: 0, sectorCount: count, command: opcode, lba: rawLba })
  return f
}

const raw = (f: Buffer): number => f.readUIntLE(28, 6)

t.test('the same seed gives the same frames; another seed others', async t => {
  const a = new FrameGenerator(setup, prng(42))
  const b = new FrameGenerator(setup, prng(42))
  const c = new FrameGenerator(setup, prng(43))
  let same = true
  let differ = false
  for (let i = 0; i < 2000; i++) {
    const fa = a.next().frame
    same &&= fa.equals(b.next().frame)
    differ ||= !fa.equals(c.next().frame)
  }
  t.ok(same, '2000 frames identical for one seed')
  t.ok(differ, 'another seed differs')
})

t.test('every mutation class is produced, every frame fits the link', async t => {
  const gen = new FrameGenerator(setup, prng(7))
  const seen = new Map<string, number>()
  let bad = 0
  for (let i = 0; i < 50_000; i++) {
    const { frame, mutation } = gen.next()
    seen.set(mutation, (seen.get(mutation) ?? 0) + 1)
    if (frame.length < 14 || frame.length > setup.mtu + 14) bad++
  }
  t.same([...MUTATIONS].filter(m => (seen.get(m) ?? 0) === 0), [], 'no class missing in 50,000 frames')
  t.equal(bad, 0, 'lengths within [14, MTU + 14]')
})

t.test('the window holds for every write, whatever reading of the LBA a target makes', async t => {
  const LBA48_WRITES = new Set([0x06, 0x34, 0x35, 0x36, 0x37, 0x39, 0x3a, 0x3b, 0x3d, 0x3e, 0x3f, 0x57, 0xce, 0xe8])
  const { start, end } = setup.window
  let writes = 0
  let lba28Nibbles = 0
  const problems: string[] = []
  for (const seed of [1, 2, 3, 0xdecade]) {
    const gen = new FrameGenerator(setup, prng(seed))
    for (let i = 0; i < 60_000; i++) {
      const { frame: f } = gen.next()
      if (f.length < 36 || f[19] !== 0) continue
      const opcode = f[27]
      const lba28 = LBA28_WRITE_OPCODES.has(opcode)
      if (!lba28 && !LBA48_WRITES.has(opcode) && (f[24] & 1) === 0) continue
      writes++
      const count = f[26] === 0 ? 256 : f[26]
      const low28 = f.readUInt32LE(28) & 0x0fffffff
      const all48 = raw(f)
      const inWindow = (lba: number): boolean => lba >= start && lba + count <= end
      if (lba28) {
        if (all48 !== low28) lba28Nibbles++
        // The low 28 bits in the window; any other bits put every other reading past the end.
        if (!inWindow(low28) || (all48 !== low28 && all48 < setup.diskSectors)) problems.push(`seed ${seed} frame ${i}: opcode ${opcode} lba ${all48}`)
      } else if (!inWindow(all48)) {
        problems.push(`seed ${seed} frame ${i}: opcode ${opcode} lba ${all48} count ${count}`)
      }
    }
  }
  t.same(problems.slice(0, 5), [], 'no write addresses a sector outside the window')
  t.ok(writes > 20_000, `many writes were generated (${writes})`)
  t.ok(lba28Nibbles > 100, `LBA28 writes with device bits set are among them (${lba28Nibbles})`)
})

t.test('confine: table', async t => {
  const { start, end } = setup.window
  const d = setup.diskSectors
  const cases: Array<{ name: string, frame: Buffer, want: string | null, check?: (f: Buffer) => boolean }> = [
    { name: 'WRITE EXT inside the window', frame: ataFrame(0x34, start, 2, 0x41, 1024), want: null },
    { name: 'WRITE EXT just before the window', frame: ataFrame(0x34, start - 1, 2, 0x41, 1024), want: 'write-clamped', check: f => raw(f) >= start && raw(f) + 2 <= end },
    { name: 'WRITE EXT straddling the window end', frame: ataFrame(0x34, end - 1, 2, 0x41, 1024), want: 'write-clamped', check: f => raw(f) + 2 <= end },
    { name: 'WRITE EXT past the disk end becomes READ EXT', frame: ataFrame(0x34, d - 1, 2, 0x41, 1024), want: 'write-to-read', check: f => f[27] === 0x24 && (f[24] & 1) === 0 },
    { name: 'WRITE EXT whose low 28 bits are in the window but not its 48', frame: ataFrame(0x34, 2 ** 28 + start, 1, 0x41, 512), want: 'write-to-read', check: f => f[27] === 0x24 },
    { name: 'WRITE (LBA28) with the device nibble, in the window', frame: ataFrame(0x30, 0xe0000000 + start + 5, 2, 1, 1024), want: null },
    { name: 'WRITE (LBA28) with the device nibble, outside the window', frame: ataFrame(0x30, 0xe0000000 + 5, 2, 1, 1024), want: 'write-clamped', check: f => f[31] >> 4 === 0xe && (f.readUInt32LE(28) & 0x0fffffff) >= start },
    { name: 'WRITE (LBA28) past the end becomes READ', frame: ataFrame(0x30, 0xe0000000 + d, 1, 1, 512), want: 'write-to-read', check: f => f[27] === 0x20 },
    { name: 'a count of 0 is taken as 256 sectors', frame: ataFrame(0x34, end - 10, 0, 0x41), want: 'write-clamped', check: f => raw(f) + 256 <= end },
    { name: 'WRITE DMA (0xca), not implemented, still confined', frame: ataFrame(0xca, 3, 1, 0, 512), want: 'write-clamped' },
    { name: 'a READ with the W flag is confined too', frame: ataFrame(0x24, 3, 1, 0x41), want: 'write-clamped' },
    { name: 'READ EXT anywhere is left alone', frame: ataFrame(0x24, d + 5, 2, 0x40), want: null },
    { name: 'IDENTIFY is left alone', frame: ataFrame(0xec, 0, 1), want: null },
  ]
  for (const c of cases) {
    const got = confine(c.frame, setup)
    t.equal(got, c.want, c.name)
    if (c.check !== undefined) t.ok(c.check(c.frame), `${c.name}: fields after`)
  }
})

t.test('confine: mask adds name only maskable MACs', async t => {
  const f = Buffer.alloc(60)
  encodeHeader(f, 0, { dst: TARGET_MAC, src: OUR, version: 1, flags: 0, error: 0, major: 7, minor: 0, command: 2, tag: 1 })
  f[25] = 1
  f[27] = 3
  const dirs = [[1, 0x123456789abc], [2, 0x123456789abc], [1, OUR]] as const
  dirs.forEach(([dcmd, mac], i) => { f[29 + 8 * i] = dcmd; f.writeUIntBE(mac, 30 + 8 * i, 6) })
  t.equal(confine(f, setup), 'mask-add')
  const m = decodeMacMask(f, 0, f.length)
  if (m === 'truncated') throw new Error('truncated')
  t.ok(maskableMacs(setup).includes(m.directives[0].mac), 'the add of a foreign MAC now names a maskable one')
  t.equal(m.directives[1].mac, 0x123456789abc, 'a delete keeps its MAC')
  t.equal(m.directives[2].mac, OUR, 'an add of our MAC is kept')
})

t.test('describe: table', async t => {
  const short = Buffer.alloc(20)
  short.writeUInt16BE(0x88a2, 12)
  t.match(describe(short), { aoe: true, header: false, ata: null })
  const ip = Buffer.alloc(60)
  ip.writeUInt16BE(0x0800, 12)
  t.match(describe(ip), { aoe: false, header: false })
  const read = ataFrame(0x20, 0xe0000000 + 100, 2)
  stampTag(read, 0xdeadbeef)
  t.match(describe(read), { aoe: true, header: true, response: false, version: 1, major: 7, minor: 0, tag: 0xdeadbeef, diskOp: 'read', ata: { opcode: 0x20, count: 2, lba: 100 } })
  const ext = ataFrame(0x34, 2 ** 32 + 7, 1, 0x41, 512)
  t.match(describe(ext), { diskOp: 'write', ata: { lba: 2 ** 32 + 7, dataBytes: 512 } })
  read[14] |= 0x08
  t.equal(describe(read).response, true, 'R flag')
})

t.test('judgeReply: table', async t => {
  const ok = (over: Partial<ReplyView> = {}): ReplyView => ({ length: 60, src: TARGET_MAC, flags: 0x08, error: 0, major: 7, minor: 0, command: 0, status: 0x40, ataError: 0, ...over })
  const identify = describe(ataFrame(0xec, 0, 1))
  t.same(judgeReply(identify, ok({ length: 548 }), setup), [], 'a plain reply')
  t.match(judgeReply(identify, ok({ major: 0xffff }), setup), ['a reply from the broadcast address'])
  t.match(judgeReply(identify, ok({ src: 0x020000000099 }), setup), ['a reply not from the interface MAC'])
  t.match(judgeReply(identify, ok({ length: 40 }), setup), ['a reply shorter than 60 bytes'])
  t.match(judgeReply(identify, ok({ minor: 3 }), setup), ['a reply from an address not exported'])
  const vendor = ataFrame(0, 0, 0)
  vendor[19] = 0xf3
  t.ok(judgeReply(describe(vendor), ok({ command: 0xf3 }), setup).includes('a reply to a vendor command'))
  const v2 = ataFrame(0xec, 0, 1)
  v2[14] = 0x20
  t.same(judgeReply(describe(v2), ok({ flags: 0x0c, error: 5 }), setup), [], 'wrong version answered with error 5')
  t.match(judgeReply(describe(v2), ok(), setup), ['a wrong-version request not answered with error 5'])
  const unknown = ataFrame(0, 0, 0)
  unknown[19] = 0x42
  t.same(judgeReply(describe(unknown), ok({ command: 0x42, flags: 0x0c, error: 1 }), setup), [])
  t.match(judgeReply(describe(unknown), ok({ command: 0x42 }), setup), ['an unknown command not answered with error 1'])
  const pastEnd = describe(ataFrame(0x24, setup.diskSectors - 1, 2, 0x40))
  t.same(judgeReply(pastEnd, ok({ status: 0x41, ataError: 0x10 }), setup), [], 'past the end: ERR+IDNF')
  t.match(judgeReply(pastEnd, ok({ length: 36 + 1024 }), setup), ['a read past the end not refused with ERR+IDNF'])
  const inRange = describe(ataFrame(0x24, 100, 2, 0x40))
  t.same(judgeReply(inRange, ok({ length: 36 + 1024 }), setup), [])
  t.match(judgeReply(inRange, ok({ length: 60 }), setup), ['a successful read reply without its data'])
  t.match(judgeReply(inRange, ok({ status: 0x41, ataError: 0x04, length: 60 }), setup), ['an in-range read failed (status 0x41)'])
  t.same(judgeReply(inRange, ok({ flags: 0x0c, error: 6 }), setup), [], 'a reservation refusal is not judged')
  const broadcast = ataFrame(0xec, 0, 1)
  broadcast.writeUInt16BE(0xffff, 16)
  t.match(judgeReply(describe(broadcast), ok({ minor: 1, length: 548 }), setup), ['a reply from a target the request did not address'], 'major 0xffff, minor 0: not 7.1')
  broadcast[18] = 0xff
  t.same(judgeReply(describe(broadcast), ok({ minor: 1, length: 548 }), setup), [], 'each target answers a broadcast')
})

t.test('restoreFrames: mask cleared from every maskable MAC, then release and empty config', async t => {
  const frames = restoreFrames(setup, { mask: true, reservation: true, config: true })
  const maskable = maskableMacs(setup)
  t.equal(frames.length, maskable.length + 2)
  frames.slice(0, maskable.length).forEach((f, i) => {
    const h = describe(f)
    t.equal(h.src, maskable[i], 'sent from a maskable MAC')
    t.match(h, { major: 0xffff, minor: 0xff, command: 2 })
    const m = decodeMacMask(f, 0, f.length)
    if (m === 'truncated') throw new Error('truncated')
    t.equal(m.mcmd, 1)
    t.same(m.directives, maskable.map(mac => ({ dcmd: 2, mac })), 'deletes every maskable MAC')
  })
  const release = decodeReserve(frames[maskable.length], 0, 60)
  t.same(release, { rcmd: 2, macs: [] }, 'forced release')
  t.equal(describe(frames[maskable.length]).src, OUR)
  const config = decodeConfig(frames[maskable.length + 1], 0, 60)
  t.match(config, { ccmd: 4, config: Buffer.alloc(0) }, 'forced empty config string')
  t.equal(restoreFrames(setup, { mask: true, reservation: false, config: false }).length, maskable.length, 'mask only')
})

t.test('accounting and the counter relations', async t => {
  const acc = new Accounting(setup)
  const write = ataFrame(0x34, 9000, 2, 0x41, 1024)
  const read = ataFrame(0x24, 9000, 1, 0x40)
  const vendor = ataFrame(0, 0, 0)
  vendor[19] = 0xf5
  const short = Buffer.alloc(20)
  short.writeUInt16BE(0x88a2, 12)
  const ip = Buffer.alloc(60)
  for (const f of [write, read, vendor, short, ip]) acc.sent(describe(f))
  const view: ReplyView = { length: 60, src: TARGET_MAC, flags: 0x08, error: 0, major: 7, minor: 0, command: 0, status: 0x40, ataError: 0 }
  acc.replied(view, describe(write))
  acc.replied({ ...view, length: 548 }, describe(read))
  t.match(acc, { sentFrames: 5, sentAoe: 4, sentShortAoe: 1, sentIgnorable: 1, repliesSeen: 2 })
  t.match(acc.targets[0], { addressed: 2, sentWrites: 1, sentWriteSectors: 2, sentReads: 1, okWrites: 1, okWriteSectors: 2, okReads: 1, replies: 2 })
  t.match(acc.targets[1], { addressed: 0 })
  const iface: InterfaceCounters = { ifname: 'x', framesIn: 4, framesOut: 2, kernelDrops: 0, ignored: 1, malformed: 1, sendErrors: 0 }
  const zero: TargetCounters = { reads: 0, readSectors: 0, writes: 0, writeSectors: 0, flushes: 0, errors: 0, inFlight: 0, frames: 0, syncs: 0, syncedWrites: 0 }
  const t0: TargetCounters = { ...zero, reads: 1, readSectors: 1, writes: 1, writeSectors: 2, frames: 2 }
  t.same(checkCounters(acc, iface, [t0, zero], [0, 0], 0), [], 'consistent counters')
  t.match(checkCounters(acc, { ...iface, framesIn: 3 }, [t0, zero], [0, 0], 0), [/framesIn 3 \+ kernelDrops 0 = 3, but 4 AoE frames/])
  t.same(checkCounters(acc, { ...iface, framesIn: 3, kernelDrops: 1 }, [t0, zero], [0, 0], 0), [], 'kernel drops count as heard')
  t.same(checkCounters(acc, { ...iface, framesIn: 3 }, [t0, zero], [0, 0], 1), [], 'a veth drop leaves room for one')
  t.match(checkCounters(acc, { ...iface, framesOut: 1 }, [t0, zero], [0, 0], 0), [/framesOut 1 < 2/])
  t.match(checkCounters(acc, { ...iface, sendErrors: 2 }, [t0, zero], [0, 0], 0), [/sendErrors 2/])
  t.match(checkCounters(acc, { ...iface, ignored: 0 }, [t0, zero], [0, 0], 0), [/ignored 0 < 1/])
  t.match(checkCounters(acc, iface, [{ ...t0, writes: 2 }, zero], [0, 0], 0), [/7\.0: writes 2 not within \[1, 1\]/])
  t.match(checkCounters(acc, iface, [{ ...t0, frames: 3 }, zero], [0, 0], 0), [/7\.0: frames 3 not within \[2, 2\]/])
  t.match(checkCounters(acc, iface, [t0, zero], [0, 4], 0), [/7\.1: 4 requests still in flight/])
})
