/**
 * Sector contents that say which write put them there (pure). Every sector a check
 * writes is unique: a header (magic, the run's salt, the write's id, the sector's index
 * within the write) and 496 bytes derived from those, so a sector read back or found in
 * a file names its write exactly, and a torn or foreign sector is recognised as such.
 */
import { between, int, type Rand } from './random'

export const SECTOR = 512
const MAGIC = 0x4b565453 // "KVTS"

/** xorshift32 from a seed mixed out of the three numbers (never 0). */
function stream (salt: number, writeId: number, index: number): () => number {
  let x = (Math.imul(salt ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(writeId + 0x632be5ab, 0xc2b2ae35) ^ Math.imul(index + 1, 0x27d4eb2f)) >>> 0
  if (x === 0) x = 0x6d2b79f5
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

function writeSector (buf: Buffer, at: number, salt: number, writeId: number, index: number): void {
  buf.writeUInt32BE(MAGIC, at)
  buf.writeUInt32BE(salt >>> 0, at + 4)
  buf.writeUInt32BE(writeId >>> 0, at + 8)
  buf.writeUInt32BE(index >>> 0, at + 12)
  const next = stream(salt, writeId, index)
  for (let i = 16; i < SECTOR; i += 4) buf.writeUInt32LE(next(), at + i)
}

export function sectorPattern (salt: number, writeId: number, index: number): Buffer {
  const b = Buffer.alloc(SECTOR)
  writeSector(b, 0, salt, writeId, index)
  return b
}

/** The data of write `writeId`: `count` sectors, each naming its index. */
export function writeData (salt: number, writeId: number, count: number): Buffer {
  const b = Buffer.alloc(count * SECTOR)
  for (let i = 0; i < count; i++) writeSector(b, i * SECTOR, salt, writeId, i)
  return b
}

export interface SectorIdentity { writeId: number, index: number }

/** Which write a sector holds (by its pattern), or null if it holds no intact pattern of this salt. */
export function identifySector (salt: number, sector: Buffer, at = 0): SectorIdentity | null {
  if (sector.length < at + SECTOR) return null
  if (sector.readUInt32BE(at) !== MAGIC || sector.readUInt32BE(at + 4) !== salt >>> 0) return null
  const writeId = sector.readUInt32BE(at + 8)
  const index = sector.readUInt32BE(at + 12)
  const next = stream(salt, writeId, index)
  for (let i = 16; i < SECTOR; i += 4) if (sector.readUInt32LE(at + i) !== next()) return null
  return { writeId, index }
}

export interface Range { lba: number, count: number }

/**
 * `n` ranges of 1..maxSectors sectors that do not overlap, anywhere on a disk of
 * `sectors` sectors: each in its own slot of maxSectors sectors, slots drawn at random.
 */
export function disjointRanges (r: Rand, n: number, sectors: number, maxSectors: number): Range[] {
  const slots = Math.floor(sectors / maxSectors)
  if (n > slots) throw new RangeError(`${n} disjoint ranges do not fit ${slots} slots`)
  const used = new Set<number>()
  const out: Range[] = []
  while (out.length < n) {
    const slot = int(r, slots)
    if (used.has(slot)) continue
    used.add(slot)
    const count = between(r, 1, maxSectors)
    out.push({ lba: slot * maxSectors + int(r, maxSectors - count + 1), count })
  }
  return out
}
