import { LBA28_MAX_SECTORS, LBA48_MAX_SECTORS } from './registers'

export const IDENTIFY_LENGTH = 512
export const MODEL_LENGTH = 40
export const SERIAL_LENGTH = 20
export const FIRMWARE_LENGTH = 8

/** What IDENTIFY DEVICE describes. */
export interface IdentifyFields {
  sectors: number
  model: string
  serial: string
  firmware: string
  /** A volatile write cache that FLUSH CACHE empties (writeback mode); absent or false: none. */
  writeCache?: boolean
}

function setWord (buf: Buffer, base: number, word: number, value: number): void {
  buf.writeUInt16LE(value, base + word * 2)
}

/**
 * ATA strings: ASCII, space padded, with the two bytes of each word swapped (the
 * first character is the high byte of the word).
 */
function setString (buf: Buffer, base: number, word: number, length: number, text: string): void {
  const padded = text.padEnd(length, ' ').slice(0, length)
  for (let i = 0; i < length; i += 2) {
    buf[base + word * 2 + i] = padded.charCodeAt(i + 1) & 0x7f
    buf[base + word * 2 + i + 1] = padded.charCodeAt(i) & 0x7f
  }
}

/**
 * Writes the 512 bytes of IDENTIFY DEVICE data at buf[base]. The Linux initiator takes
 * LBA48 from word 83/86 bit 10 and the size from words 100–103 (else 60–61); WinAoE reads
 * 100–103 without looking at word 83, so both are always filled.
 */
export function encodeIdentify (buf: Buffer, base: number, f: IdentifyFields): void {
  buf.fill(0, base, base + IDENTIFY_LENGTH)
  setWord(buf, base, 0, 0x0040) // fixed (non-removable) device
  setString(buf, base, 10, SERIAL_LENGTH, f.serial)
  setString(buf, base, 23, FIRMWARE_LENGTH, f.firmware)
  setString(buf, base, 27, MODEL_LENGTH, f.model)
  setWord(buf, base, 47, 0x8000) // READ/WRITE MULTIPLE: none
  setWord(buf, base, 49, 0x0200) // LBA supported
  setWord(buf, base, 50, 0x4000)
  const lba28 = Math.min(f.sectors, LBA28_MAX_SECTORS)
  setWord(buf, base, 60, lba28 & 0xffff)
  setWord(buf, base, 61, Math.floor(lba28 / 0x10000))
  // 82–87: command sets supported / enabled. Bit 14 of 83/84/87 marks the word valid;
  // 83/86: bit 13 FLUSH CACHE EXT, 12 FLUSH CACHE, 10 LBA48; 82/85 bit 5: a write
  // cache, only in writeback mode (in writethrough an acknowledged write is durable, so
  // an initiator that flushes knows there is nothing to flush).
  const writeCache = f.writeCache === true ? 0x0020 : 0
  setWord(buf, base, 82, writeCache)
  setWord(buf, base, 85, writeCache)
  setWord(buf, base, 83, 0x4000 | 0x2000 | 0x1000 | 0x0400)
  setWord(buf, base, 84, 0x4000)
  setWord(buf, base, 86, 0x2000 | 0x1000 | 0x0400)
  setWord(buf, base, 87, 0x4000)
  setWord(buf, base, 93, 0x400b)
  const lba48 = Math.min(f.sectors, LBA48_MAX_SECTORS)
  setWord(buf, base, 100, lba48 % 0x10000)
  setWord(buf, base, 101, Math.floor(lba48 / 0x10000) % 0x10000)
  setWord(buf, base, 102, Math.floor(lba48 / 0x100000000) % 0x10000)
  setWord(buf, base, 103, 0)
}

/** Reads the fields back (used by tests and the test initiator). */
export function decodeIdentify (buf: Buffer, base = 0): IdentifyFields & { lba48: boolean, lba28Sectors: number } {
  const word = (w: number): number => buf.readUInt16LE(base + w * 2)
  const text = (w: number, len: number): string => {
    let s = ''
    for (let i = 0; i < len; i += 2) s += String.fromCharCode(buf[base + w * 2 + i + 1], buf[base + w * 2 + i])
    return s.trimEnd()
  }
  const lba48 = ((word(83) | word(86)) & 0x0400) !== 0
  const lba28Sectors = word(60) + word(61) * 0x10000
  const sectors = lba48 ? word(100) + word(101) * 0x10000 + word(102) * 0x100000000 : lba28Sectors
  const writeCache = (word(85) & 0x0020) !== 0
  return { sectors, lba48, lba28Sectors, model: text(27, MODEL_LENGTH), serial: text(10, SERIAL_LENGTH), firmware: text(23, FIRMWARE_LENGTH), writeCache }
}
