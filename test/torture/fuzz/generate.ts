/**
 * The wire fuzzer's frames (pure: no I/O). Each frame comes from one mutation class —
 * well-formed commands, then the ways a frame can be wrong (truncated, padded, wrong
 * version, R/E flags, counts larger than the frame or the field allows, LBA28 device
 * bits, ranges past the end, broadcasts, vendor and unknown commands, random bytes).
 *
 * Two confinements are applied to every frame after it is made (confine): a WRITE only
 * ever touches sectors inside the window [start, end), whichever way a target might read
 * its LBA, so the image outside the window must come through unchanged; and a Mac Mask
 * add only ever names a MAC the fuzzer can send from, so it can always clear the mask.
 */
import { AOE_ETHERTYPE, BROADCAST_MAC, BROADCAST_MAJOR, BROADCAST_MINOR, FLAG_ERROR, FLAG_RESPONSE } from '../../../src/aoe/constants'
import { encodeHeader } from '../../../src/aoe/header'
import { ATA_HEADER_LENGTH, SECTOR_SIZE, encodeAtaRequest } from '../../../src/aoe/ata'
import { CONFIG_HEADER_LENGTH, CONFIG_STRING_MAX, encodeConfig } from '../../../src/aoe/config'
import { DIRECTIVE_LENGTH, MACMASK_HEADER_LENGTH, encodeMacMask, type MaskDirective } from '../../../src/aoe/macmask'
import { RESERVE_HEADER_LENGTH, encodeReserve } from '../../../src/aoe/reserve'
import { readMac, writeMac } from '../../../src/aoe/mac'
import { between, chance, fill, int, pick, randomMac, weighted, type Rand } from '../random'

export interface FuzzTarget { major: number, minor: number }

export interface FuzzSetup {
  /** The fuzzer's own MAC: most frames come from it, and the final checks use it. */
  ourMac: number
  /** The target interface's MAC (unicast destination). */
  targetMac: number
  /** Other MACs the fuzzer sends from. Mask adds name only ourMac or one of these. */
  peerMacs: number[]
  /** Every target the daemon exports on the interface (all are fuzzed). */
  targets: FuzzTarget[]
  /** Size of the smallest target, in sectors. */
  diskSectors: number
  /** WRITEs are confined to sectors [start, end). */
  window: { start: number, end: number }
  /** Sectors one frame carries at this MTU. */
  maxSectors: number
  mtu: number
}

export const MUTATIONS = [
  'ata', 'ata-opcode', 'ata-count', 'ata-lba28', 'ata-end', 'ata-short-data',
  'config', 'config-length', 'mask', 'mask-count', 'reserve', 'reserve-count',
  'version', 'flags', 'truncated', 'padded', 'broadcast', 'address',
  'vendor', 'unknown-command', 'random-aoe', 'random-bytes',
] as const
export type Mutation = typeof MUTATIONS[number]

const WEIGHTS: ReadonlyArray<readonly [Mutation, number]> = [
  ['ata', 20], ['ata-opcode', 5], ['ata-count', 5], ['ata-lba28', 5], ['ata-end', 5], ['ata-short-data', 3],
  ['config', 6], ['config-length', 4], ['mask', 3], ['mask-count', 2], ['reserve', 2], ['reserve-count', 1],
  ['version', 4], ['flags', 4], ['truncated', 6], ['padded', 5], ['broadcast', 5], ['address', 2],
  ['vendor', 3], ['unknown-command', 3], ['random-aoe', 3], ['random-bytes', 3],
]

// ATA opcodes that write (or otherwise change) the medium, by LBA form. A target may
// implement any of them; the fuzzer confines them all to the window.
export const LBA28_WRITE_OPCODES: ReadonlySet<number> = new Set([0x30, 0x31, 0x32, 0x33, 0x38, 0x3c, 0xc0, 0xc5, 0xca, 0xcb, 0xcc, 0xcd, 0xf9])
export const LBA48_WRITE_OPCODES: ReadonlySet<number> = new Set([0x06, 0x34, 0x35, 0x36, 0x37, 0x39, 0x3a, 0x3b, 0x3d, 0x3e, 0x3f, 0x57, 0xce, 0xe8])
const AFLAG_W = 0x01
const LBA28_MASK = 0x0fffffff
const TWO_32 = 0x100000000

/** The well-known strings Query Config test / test-prefix / set play with. */
const CONFIG_WORDS = ['kvblade', 'kvblade torture', 'k', 'host=a', 'host=b']

/** Reads the six LBA bytes (little-endian) as a number. */
export function rawLba (f: Buffer): number {
  return f.readUIntLE(28, 6)
}

function setRawLba (f: Buffer, lba: number): void {
  f.writeUIntLE(lba, 28, 6)
}

/** How a target reads the LBA of an ATA command, by the command (as the notes say). */
export function effectiveLba (opcode: number, raw: number): number {
  const lba28 = opcode === 0x20 || opcode === 0x30 || LBA28_WRITE_OPCODES.has(opcode)
  return lba28 ? ((raw % TWO_32) & LBA28_MASK) >>> 0 : raw
}

export function isWriteLike (opcode: number, aflags: number): boolean {
  return LBA28_WRITE_OPCODES.has(opcode) || LBA48_WRITE_OPCODES.has(opcode) || (aflags & AFLAG_W) !== 0
}

export class FrameGenerator {
  private readonly frameMax: number
  private readonly maskable: number[]

  constructor (readonly setup: FuzzSetup, private readonly r: Rand) {
    if (setup.window.end - setup.window.start < 512) throw new RangeError('the write window must hold at least 512 sectors')
    if (setup.window.end > setup.diskSectors) throw new RangeError('the write window must lie inside the disk')
    this.frameMax = setup.mtu + 14
    this.maskable = maskableMacs(setup)
  }

  /** The next frame, already confined (see confine); the caller stamps the tag. */
  next (): { frame: Buffer, mutation: Mutation } {
    const mutation = weighted(this.r, WEIGHTS)
    const frame = this.make(mutation)
    confine(frame, this.setup)
    return { frame, mutation }
  }

  make (m: Mutation): Buffer {
    const r = this.r
    switch (m) {
      case 'ata': return this.ata()
      case 'ata-opcode': return this.ataOpcode()
      case 'ata-count': return this.ataCount()
      case 'ata-lba28': return this.ataLba28()
      case 'ata-end': return this.ataEnd()
      case 'ata-short-data': return this.ataShortData()
      case 'config': return this.config()
      case 'config-length': return this.configLength()
      case 'mask': return this.mask()
      case 'mask-count': return this.maskCount()
      case 'reserve': return this.reserve()
      case 'reserve-count': return this.reserveCount()
      case 'version': {
        const f = this.valid()
        f[14] = (pick(r, [0, 2, 3, 4, 7, 8, 15]) << 4) | (f[14] & 0x0f)
        return f
      }
      case 'flags': {
        const f = this.valid()
        f[14] |= pick(r, [FLAG_RESPONSE, FLAG_ERROR, FLAG_RESPONSE | FLAG_ERROR])
        if (chance(r, 0.5)) f[15] = int(r, 256)
        return f
      }
      case 'truncated': {
        const f = this.valid(true)
        return Buffer.from(f.subarray(0, between(r, 14, f.length - 1)))
      }
      case 'padded': {
        const f = this.valid()
        if (f.length >= this.frameMax) return f
        const out = Buffer.alloc(between(r, f.length + 1, this.frameMax))
        f.copy(out)
        if (chance(r, 0.5)) fill(r, out, f.length)
        return out
      }
      case 'broadcast': {
        const f = this.valid()
        const which = int(r, 3)
        if (which !== 1) f.writeUInt16BE(BROADCAST_MAJOR, 16)
        if (which !== 0) f[18] = BROADCAST_MINOR
        if (chance(r, 0.5)) writeMac(f, 0, BROADCAST_MAC)
        return f
      }
      case 'address': {
        const f = this.valid()
        f.writeUInt16BE(int(r, 0xffff), 16)
        f[18] = int(r, 0xff)
        return f
      }
      case 'vendor': return this.raw(between(r, 0xf0, 0xff))
      case 'unknown-command': return this.raw(between(r, 4, 0xef))
      case 'random-aoe': {
        const f = Buffer.alloc(between(r, 14, this.frameMax))
        fill(r, f)
        f.writeUInt16BE(AOE_ETHERTYPE, 12)
        return f
      }
      case 'random-bytes': {
        const f = Buffer.alloc(between(r, 14, this.frameMax))
        fill(r, f)
        return f
      }
    }
  }

  // ---- parts --------------------------------------------------------------------------

  private dst (): number {
    const x = this.r()
    return x < 0.85 ? this.setup.targetMac : x < 0.95 ? BROADCAST_MAC : randomMac(this.r)
  }

  private src (): number {
    const x = this.r()
    return x < 0.8 ? this.setup.ourMac : x < 0.95 ? pick(this.r, this.setup.peerMacs) : randomMac(this.r)
  }

  /** A frame of `length` bytes (at least the 60-byte minimum) with a well-formed header. */
  private frame (length: number, command: number, src = this.src()): Buffer {
    const f = Buffer.alloc(Math.min(this.frameMax, Math.max(60, length)))
    const t = pick(this.r, this.setup.targets)
    encodeHeader(f, 0, { dst: this.dst(), src, version: 1, flags: 0, error: 0, major: t.major, minor: t.minor, command, tag: 0 })
    return f
  }

  /** A well-formed frame of one of the four commands; `withBody` prefers those with a body to cut. */
  private valid (withBody = false): Buffer {
    const kind = weighted(this.r, [['ata', withBody ? 3 : 5], ['config', 2], ['mask', 1], ['reserve', 1]] as const)
    switch (kind) {
      case 'ata': return withBody ? this.ata(true) : this.ata()
      case 'config': return this.config()
      case 'mask': return this.mask()
      case 'reserve': return this.reserve()
    }
  }

  private ata (preferWrite = false): Buffer {
    const r = this.r
    const s = this.setup
    const opcode = preferWrite && chance(r, 0.5)
      ? pick(r, [0x34, 0x30])
      : weighted(r, [[0x24, 30], [0x34, 25], [0x20, 10], [0x30, 10], [0xec, 8], [0xe7, 3], [0xea, 3], [0xe5, 3]] as const)
    const write = opcode === 0x34 || opcode === 0x30
    const count = chance(r, 0.05) ? 0 : between(r, 1, s.maxSectors)
    const lba = int(r, s.diskSectors - count + 1)
    const ext = opcode === 0x24 || opcode === 0x34
    const data = write ? count * SECTOR_SIZE : 0
    const f = this.frame(ATA_HEADER_LENGTH + data, 0)
    let aflags = (ext ? 0x40 : 0) | (write ? AFLAG_W : 0)
    if (chance(r, 0.1)) aflags |= 0x02
    if (chance(r, 0.1)) aflags |= 0x10
    // LBA28 commands carry the device register (LBA mode) in LBA3's top nibble, as Linux sends them.
    const field = !ext && (opcode === 0x20 || opcode === 0x30) && chance(r, 0.8) ? lba + 0xe0000000 : lba
    encodeAtaRequest(f, 0, { aflags, feature: 0, sectorCount: count, command: opcode, lba: field })
    if (data > 0) fill(r, f, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + data)
    return f
  }

  private ataOpcode (): Buffer {
    const r = this.r
    const s = this.setup
    const length = chance(r, 0.5) ? 60 : between(r, ATA_HEADER_LENGTH, this.frameMax)
    const f = this.frame(length, 0)
    fill(r, f, 24)
    f[26] = between(r, 0, 4)
    const lba = chance(r, 0.8) ? int(r, 2 * s.diskSectors) : int(r, 0x1000000) * 0x1000000 + int(r, 0x1000000)
    setRawLba(f, lba)
    return f
  }

  private ataCount (): Buffer {
    const r = this.r
    const s = this.setup
    const write = chance(r, 0.5)
    const ext = chance(r, 0.7)
    const opcode = write ? (ext ? 0x34 : 0x30) : (ext ? 0x24 : 0x20)
    const count = between(r, s.maxSectors + 1, 255)
    const room = this.frameMax - ATA_HEADER_LENGTH
    const data = write ? (chance(r, 0.5) ? Math.min(count * SECTOR_SIZE, room) : int(r, room + 1)) : 0
    const f = this.frame(ATA_HEADER_LENGTH + data, 0)
    const lba = int(r, s.diskSectors)
    encodeAtaRequest(f, 0, { aflags: (ext ? 0x40 : 0) | (write ? AFLAG_W : 0), feature: 0, sectorCount: count, command: opcode, lba: ext ? lba : lba + 0xe0000000 })
    fill(r, f, ATA_HEADER_LENGTH)
    return f
  }

  private ataLba28 (): Buffer {
    const r = this.r
    const s = this.setup
    const write = chance(r, 0.4)
    const count = between(r, 0, s.maxSectors)
    const data = write ? count * SECTOR_SIZE : 0
    const f = this.frame(ATA_HEADER_LENGTH + data, 0)
    const lba = int(r, s.diskSectors - count + 1)
    encodeAtaRequest(f, 0, { aflags: (chance(r, 0.2) ? 0x40 : 0) | (write ? AFLAG_W : 0), feature: 0, sectorCount: count, command: write ? 0x30 : 0x20, lba })
    // Whatever the device nibble and LBA4/LBA5 hold, an LBA28 command addresses lba.
    f[31] = (int(r, 16) << 4) | (f[31] & 0x0f)
    if (chance(r, 0.5)) { f[32] = int(r, 256); f[33] = int(r, 256) }
    if (data > 0) fill(r, f, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + data)
    return f
  }

  private ataEnd (): Buffer {
    const r = this.r
    const s = this.setup
    const write = chance(r, 0.4)
    const ext = chance(r, 0.6)
    const count = between(r, 1, s.maxSectors)
    const d = s.diskSectors
    const lba = ext
      ? pick(r, [d - count + 1, d - 1, d, d + 1, d + 1000, 2 ** 28 - 1, 2 ** 28, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 48 - 1, 2 ** 48 - count])
      : pick(r, [d - count + 1, d - 1, d, d + 1, 2 ** 28 - 1, 2 ** 28 - count])
    const data = write ? count * SECTOR_SIZE : 0
    const f = this.frame(ATA_HEADER_LENGTH + data, 0)
    const opcode = write ? (ext ? 0x34 : 0x30) : (ext ? 0x24 : 0x20)
    encodeAtaRequest(f, 0, { aflags: (ext ? 0x40 : 0) | (write ? AFLAG_W : 0), feature: 0, sectorCount: count, command: opcode, lba: ext ? lba : (lba & LBA28_MASK) + 0xe0000000 })
    if (data > 0) fill(r, f, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + data)
    return f
  }

  private ataShortData (): Buffer {
    const r = this.r
    const s = this.setup
    const count = between(r, 1, s.maxSectors)
    const data = int(r, count * SECTOR_SIZE)
    // Exactly as long as the data (the minimum-length padding is part of what is tested).
    const f = Buffer.alloc(Math.max(24, ATA_HEADER_LENGTH + data))
    const full = this.frame(ATA_HEADER_LENGTH, 0)
    full.copy(f, 0, 0, 24)
    const ext = chance(r, 0.5)
    const lba = s.window.start + int(r, s.window.end - s.window.start - count)
    const head = Buffer.alloc(ATA_HEADER_LENGTH)
    encodeAtaRequest(head, 0, { aflags: (ext ? 0x40 : 0) | AFLAG_W, feature: 0, sectorCount: count, command: ext ? 0x34 : 0x30, lba: ext ? lba : lba + 0xe0000000 })
    head.copy(f, 24, 24, Math.min(f.length, ATA_HEADER_LENGTH))
    if (f.length > ATA_HEADER_LENGTH) fill(r, f, ATA_HEADER_LENGTH)
    return f
  }

  private configString (): Buffer {
    const r = this.r
    const x = r()
    if (x < 0.2) return Buffer.alloc(0)
    if (x < 0.6) return Buffer.from(pick(r, CONFIG_WORDS))
    if (x < 0.75) {
      const w = pick(r, CONFIG_WORDS)
      return Buffer.from(w.slice(0, between(r, 0, w.length)))
    }
    const b = Buffer.alloc(chance(r, 0.2) ? CONFIG_STRING_MAX : between(r, 1, CONFIG_STRING_MAX))
    fill(r, b)
    return b
  }

  private config (): Buffer {
    const r = this.r
    const ccmd = weighted(r, [[0, 30], [1, 10], [2, 10], [3, 15], [4, 15], [-1, 5]] as const)
    const config = this.configString()
    const f = this.frame(CONFIG_HEADER_LENGTH + config.length, 1)
    encodeConfig(f, 0, {
      bufferCount: chance(r, 0.2) ? int(r, 0x10000) : 0,
      firmwareVersion: chance(r, 0.2) ? int(r, 0x10000) : 0,
      sectorsPerCommand: chance(r, 0.2) ? int(r, 256) : 0,
      version: chance(r, 0.1) ? int(r, 16) : 1,
      ccmd: ccmd < 0 ? between(r, 5, 15) : ccmd,
      config,
    })
    return f
  }

  private configLength (): Buffer {
    const r = this.r
    const f = this.config()
    if (chance(r, 0.5)) {
      // Longer than the protocol allows.
      f.writeUInt16BE(chance(r, 0.5) ? between(r, CONFIG_STRING_MAX + 1, CONFIG_STRING_MAX + 64) : between(r, CONFIG_STRING_MAX + 1, 0xffff), 30)
      return f
    }
    // Allowed, but longer than the frame holds.
    const claimed = between(r, 1, CONFIG_STRING_MAX)
    f.writeUInt16BE(claimed, 30)
    return Buffer.from(f.subarray(0, Math.min(f.length, CONFIG_HEADER_LENGTH + claimed - 1)))
  }

  private directive (): MaskDirective {
    const r = this.r
    const dcmd = weighted(r, [[0, 10], [1, 45], [2, 35], [-1, 10]] as const)
    const mac = dcmd === 1 || chance(r, 0.5) ? pick(r, this.maskable) : randomMac(r)
    return { dcmd: dcmd < 0 ? between(r, 3, 255) : dcmd, mac }
  }

  private mask (): Buffer {
    const r = this.r
    const n = between(r, 0, 12)
    const directives = Array.from({ length: n }, () => this.directive())
    const f = this.frame(MACMASK_HEADER_LENGTH + n * DIRECTIVE_LENGTH, 2)
    const mcmd = weighted(r, [[0, 30], [1, 60], [-1, 10]] as const)
    encodeMacMask(f, 0, { mcmd: mcmd < 0 ? between(r, 2, 255) : mcmd, merror: chance(r, 0.1) ? int(r, 256) : 0, directives })
    return f
  }

  private maskCount (): Buffer {
    const r = this.r
    const fits = Math.floor((this.frameMax - MACMASK_HEADER_LENGTH) / DIRECTIVE_LENGTH)
    const present = chance(r, 0.5) ? fits : between(r, 0, 20)
    const directives = Array.from({ length: present }, () => this.directive())
    const f = this.frame(MACMASK_HEADER_LENGTH + present * DIRECTIVE_LENGTH, 2)
    encodeMacMask(f, 0, { mcmd: pick(r, [0, 1, 1]), merror: 0, directives }, present)
    // More directives than the frame holds (255 is the most the field can say).
    const room = Math.floor((f.length - MACMASK_HEADER_LENGTH) / DIRECTIVE_LENGTH)
    f[27] = between(r, Math.min(255, room + 1), 255)
    return f
  }

  private reserveMacs (n: number): number[] {
    const r = this.r
    return Array.from({ length: n }, () => {
      const x = r()
      return x < 0.4 ? this.setup.ourMac : x < 0.7 ? pick(r, this.setup.peerMacs) : randomMac(r)
    })
  }

  private reserve (): Buffer {
    const r = this.r
    const rcmd = weighted(r, [[0, 30], [1, 30], [2, 25], [-1, 5]] as const)
    const macs = this.reserveMacs(chance(r, 0.4) ? 0 : between(r, 1, 4))
    const f = this.frame(RESERVE_HEADER_LENGTH + macs.length * 6, 3)
    encodeReserve(f, 0, { rcmd: rcmd < 0 ? between(r, 3, 255) : rcmd, macs })
    return f
  }

  private reserveCount (): Buffer {
    const r = this.r
    const fits = Math.floor((this.frameMax - RESERVE_HEADER_LENGTH) / 6)
    if (chance(r, 0.5)) {
      // A list that fits the frame but is longer than any target keeps (up to 248 at 1500).
      const macs = this.reserveMacs(between(r, 129, Math.min(255, fits)))
      const f = this.frame(RESERVE_HEADER_LENGTH + macs.length * 6, 3)
      encodeReserve(f, 0, { rcmd: pick(r, [1, 2]), macs })
      return f
    }
    // nmacs larger than the frame holds.
    const macs = this.reserveMacs(between(r, 0, 10))
    const f = this.frame(RESERVE_HEADER_LENGTH + macs.length * 6, 3)
    encodeReserve(f, 0, { rcmd: pick(r, [0, 1, 2]), macs })
    const room = Math.floor((f.length - RESERVE_HEADER_LENGTH) / 6)
    f[25] = between(r, Math.min(255, room + 1), 255)
    return f
  }

  /** A well-formed header with `command` and a random body. */
  private raw (command: number): Buffer {
    const r = this.r
    const f = this.frame(chance(r, 0.5) ? 60 : between(r, 24, this.frameMax), command)
    fill(r, f, 24)
    return f
  }
}

/** The MACs a Mac Mask add may name: the fuzzer can send from each, so it can always clear the mask. */
export function maskableMacs (s: FuzzSetup): number[] {
  return [s.ourMac, ...s.peerMacs]
}

export type Confinement = 'write-clamped' | 'write-to-read' | 'mask-add' | null

/**
 * Makes a frame safe to send, looking only at its bytes (whatever its ethertype, version,
 * flags or address say, in case a target ignores them):
 * - an ATA command that writes (a write opcode, or the W flag) must address sectors
 *   inside the window under every reading of its LBA a target could make. LBA28 opcodes
 *   address the low 28 bits; any other bits put them past the end of a disk smaller
 *   than 2^28 sectors. Other writes use all 48 bits, so they must be in the window as a
 *   whole (then the low 28 bits are the same number). A count of 0 is taken as 256 (what
 *   it means to a real drive). Out-of-window writes inside the disk are moved into the
 *   window; those past the end become reads (so ranges past the end are still tried).
 * - a Mac Mask add must name a maskable MAC (see maskableMacs).
 * Returns what was changed (the last change, for the tests).
 */
export function confine (f: Buffer, s: FuzzSetup): Confinement {
  let changed: Confinement = null
  if (f.length >= ATA_HEADER_LENGTH && f[19] === 0) {
    const aflags = f[24]
    const opcode = f[27]
    if (isWriteLike(opcode, aflags)) {
      const lba28 = LBA28_WRITE_OPCODES.has(opcode)
      const count = f[26] === 0 ? 256 : f[26]
      const raw = rawLba(f)
      const lba = effectiveLba(opcode, raw)
      const { start, end } = s.window
      if (!(lba >= start && lba + count <= end)) {
        if (lba + count > s.diskSectors) {
          f[27] = lba28 ? 0x20 : 0x24
          f[24] = aflags & ~AFLAG_W
          changed = 'write-to-read'
        } else {
          const moved = start + (lba % (end - start - count + 1))
          // LBA28: only the low 28 bits move; the device nibble and LBA4/LBA5 stay.
          setRawLba(f, lba28 ? raw - lba + moved : moved)
          changed = 'write-clamped'
        }
      }
    }
  }
  if (f.length >= MACMASK_HEADER_LENGTH && f[19] === 2) {
    const maskable = maskableMacs(s)
    const count = f[27]
    for (let i = 0; i < count; i++) {
      const d = MACMASK_HEADER_LENGTH + i * DIRECTIVE_LENGTH
      if (d + DIRECTIVE_LENGTH > f.length) break
      if (f[d + 1] !== 1) continue
      const mac = readMac(f, d + 2)
      if (maskable.includes(mac)) continue
      writeMac(f, d + 2, maskable[i % maskable.length])
      changed = 'mask-add'
    }
  }
  return changed
}

export function stampTag (f: Buffer, tag: number): void {
  if (f.length >= 24) f.writeUInt32BE(tag >>> 0, 20)
}

/** What a frame is, as far as counting and judging replies goes. */
export interface FrameInfo {
  length: number
  /** At least an Ethernet header, with the AoE ethertype. */
  aoe: boolean
  /** aoe, and the 24-byte AoE header is all there. */
  header: boolean
  response: boolean
  version: number
  major: number
  minor: number
  command: number
  tag: number
  dst: number
  src: number
  /** For ATA frames with the whole 12-byte ATA header. */
  ata: { opcode: number, aflags: number, count: number, lba: number, dataBytes: number } | null
  /** READ/WRITE SECTORS (EXT), the transfers the target implements. */
  diskOp: 'read' | 'write' | null
}

export function describe (f: Buffer): FrameInfo {
  const aoe = f.length >= 14 && f.readUInt16BE(12) === AOE_ETHERTYPE
  const header = aoe && f.length >= 24
  const info: FrameInfo = {
    length: f.length,
    aoe,
    header,
    response: header && (f[14] & FLAG_RESPONSE) !== 0,
    version: header ? f[14] >> 4 : 0,
    major: header ? f.readUInt16BE(16) : 0,
    minor: header ? f[18] : 0,
    command: header ? f[19] : 0,
    tag: header ? f.readUInt32BE(20) : 0,
    dst: f.length >= 6 ? readMac(f, 0) : 0,
    src: f.length >= 12 ? readMac(f, 6) : 0,
    ata: null,
    diskOp: null,
  }
  if (header && info.command === 0 && f.length >= ATA_HEADER_LENGTH) {
    const opcode = f[27]
    info.ata = { opcode, aflags: f[24], count: f[26], lba: effectiveLba(opcode, rawLba(f)), dataBytes: f.length - ATA_HEADER_LENGTH }
    if (opcode === 0x20 || opcode === 0x24) info.diskOp = 'read'
    if (opcode === 0x30 || opcode === 0x34) info.diskOp = 'write'
  }
  return info
}

export function addresses (info: FrameInfo, t: FuzzTarget): boolean {
  return info.header &&
    (info.major === t.major || info.major === BROADCAST_MAJOR) &&
    (info.minor === t.minor || info.minor === BROADCAST_MINOR)
}

/** The reply fields judgeReply looks at (decoded by the caller). */
export interface ReplyView {
  length: number
  src: number
  flags: number
  error: number
  major: number
  minor: number
  command: number
  /** ATA replies: status and error registers. */
  status: number
  ataError: number
}

/**
 * What is wrong with a reply to `req`, by the protocol rules (aoe-notes.md) and the
 * target's documented behaviour (README): one short phrase per violation, [] if none.
 * Only what holds whatever state the fuzzing left behind (masks, reservations, config
 * strings) is judged.
 */
export function judgeReply (req: FrameInfo, reply: ReplyView, s: FuzzSetup): string[] {
  const v: string[] = []
  if (!req.header) return ['a reply to a frame without an AoE header']
  if (req.response) v.push('a reply to a frame with the R flag set')
  if (req.command >= 0xf0) v.push('a reply to a vendor command')
  if (reply.major === BROADCAST_MAJOR || reply.minor === BROADCAST_MINOR) v.push('a reply from the broadcast address')
  const target = s.targets.find(t => t.major === reply.major && t.minor === reply.minor)
  if (target === undefined) v.push('a reply from an address not exported')
  else if (!addresses(req, target)) v.push('a reply from a target the request did not address')
  if (reply.src !== s.targetMac) v.push('a reply not from the interface MAC')
  if (reply.length < 60) v.push('a reply shorter than 60 bytes')
  if (reply.command !== req.command) v.push('a reply with another command than the request')
  const e = (reply.flags & FLAG_ERROR) !== 0
  if (req.version !== 1) {
    if (!e || reply.error !== 5) v.push('a wrong-version request not answered with error 5')
    return v
  }
  if (req.command > 3 && req.command < 0xf0 && (!e || reply.error !== 1)) v.push('an unknown command not answered with error 1')
  const a = req.ata
  if (a !== null && req.diskOp !== null && !e && a.count > 0 && a.count <= s.maxSectors) {
    const pastEnd = a.lba + a.count > s.diskSectors
    const data = req.diskOp === 'write' ? a.count * SECTOR_SIZE : 0
    if (pastEnd) {
      if ((reply.status & 0x01) === 0 || (reply.ataError & 0x10) === 0) v.push(`a ${req.diskOp} past the end not refused with ERR+IDNF`)
    } else if (a.dataBytes >= data) {
      if (reply.status !== 0x40) v.push(`an in-range ${req.diskOp} failed (status 0x${reply.status.toString(16)})`)
      else if (req.diskOp === 'read' && reply.length < ATA_HEADER_LENGTH + a.count * SECTOR_SIZE) v.push('a successful read reply without its data')
    }
  }
  return v
}

export interface RestoreWhat { mask: boolean, reservation: boolean, config: boolean }

/**
 * Frames that put the targets back in a known state, to every target: from every
 * maskable MAC, a Mac Mask edit deleting every maskable MAC (a non-empty mask holds only
 * those, so one of the edits is accepted and empties it); from our MAC, a forced release
 * of the reservation and a forced empty config string.
 */
export function restoreFrames (s: FuzzSetup, what: RestoreWhat): Buffer[] {
  const maskable = maskableMacs(s)
  const out: Buffer[] = []
  const header = (length: number, src: number, command: number): Buffer => {
    const f = Buffer.alloc(Math.max(60, length))
    encodeHeader(f, 0, { dst: s.targetMac, src, version: 1, flags: 0, error: 0, major: BROADCAST_MAJOR, minor: BROADCAST_MINOR, command, tag: 0 })
    return f
  }
  for (const src of what.mask ? maskable : []) {
    const f = header(MACMASK_HEADER_LENGTH + maskable.length * DIRECTIVE_LENGTH, src, 2)
    encodeMacMask(f, 0, { mcmd: 1, merror: 0, directives: maskable.map(mac => ({ dcmd: 2, mac })) })
    out.push(f)
  }
  if (what.reservation) {
    const release = header(RESERVE_HEADER_LENGTH, s.ourMac, 3)
    encodeReserve(release, 0, { rcmd: 2, macs: [] })
    out.push(release)
  }
  if (what.config) {
    const config = header(CONFIG_HEADER_LENGTH, s.ourMac, 1)
    encodeConfig(config, 0, { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, ccmd: 4, config: Buffer.alloc(0) })
    out.push(config)
  }
  return out
}
