import { HEADER_LENGTH } from './constants'

/** ATA argument block: 12 bytes after the common header; data follows at 36. */
export const ATA_HEADER_LENGTH = HEADER_LENGTH + 12
export const SECTOR_SIZE = 512

export const AFLAG_LBA48 = 0x40
export const AFLAG_DEVICE = 0x10
export const AFLAG_ASYNC = 0x02
export const AFLAG_WRITE = 0x01

const OFF_AFLAGS = 24
const OFF_FEATURE = 25
const OFF_SECTORS = 26
const OFF_CMD = 27
const OFF_LBA = 28

export interface AtaRequest {
  aflags: number
  /** Feature register (request) / error register (reply). */
  feature: number
  sectorCount: number
  /** ATA command (request) / status (reply). */
  command: number
  /**
   * The six LBA bytes as a 48-bit number, as they came. How many bits count depends on the
   * command (LBA28 commands carry the device register in the top nibble of LBA3), which
   * the ATA handler decides — as vblade does, by command rather than by the E flag.
   */
  lba: number
  /** Offset of the data area within the buffer. */
  dataOffset: number
  /** Bytes present after the ATA header (may include Ethernet padding). */
  dataLength: number
}

export function emptyAtaRequest (): AtaRequest {
  return { aflags: 0, feature: 0, sectorCount: 0, command: 0, lba: 0, dataOffset: 0, dataLength: 0 }
}

/** Reads the 48-bit little-endian LBA (bytes checked by the caller), without Buffer's argument checks. */
function readLba48 (buf: Buffer, offset: number): number {
  const low = buf[offset] | (buf[offset + 1] << 8) | (buf[offset + 2] << 16)
  const high = buf[offset + 3] | (buf[offset + 4] << 8) | (buf[offset + 5] << 16)
  return high * 0x1000000 + low
}

/**
 * Decodes the ATA argument block of the frame at buf[base, base+length) into `out`.
 * Returns false if the frame is truncated (shorter than the 36-byte ATA header). Whether
 * enough data follows for a write is the handler's question: the count decides, not the length.
 */
export function decodeAta (buf: Buffer, base: number, length: number, out: AtaRequest): boolean {
  if (length < ATA_HEADER_LENGTH || base < 0 || base + length > buf.length) return false
  out.aflags = buf[base + OFF_AFLAGS]
  out.feature = buf[base + OFF_FEATURE]
  out.sectorCount = buf[base + OFF_SECTORS]
  out.command = buf[base + OFF_CMD]
  out.lba = readLba48(buf, base + OFF_LBA)
  out.dataOffset = base + ATA_HEADER_LENGTH
  out.dataLength = length - ATA_HEADER_LENGTH
  return true
}

/**
 * Writes the outcome into a reply whose first 36 bytes are a copy of the request (so flags
 * and LBA registers go back exactly as they came): error register, remaining sector count
 * and status.
 */
export function encodeAtaStatus (buf: Buffer, base: number, status: number, error: number, sectorCount: number): void {
  buf[base + OFF_FEATURE] = error
  buf[base + OFF_SECTORS] = sectorCount
  buf[base + OFF_CMD] = status
}

/** Encodes an ATA request (used by initiators: the test initiator and tools). */
export function encodeAtaRequest (buf: Buffer, base: number, req: Omit<AtaRequest, 'dataOffset' | 'dataLength'>): void {
  buf[base + OFF_AFLAGS] = req.aflags
  buf[base + OFF_FEATURE] = req.feature
  buf[base + OFF_SECTORS] = req.sectorCount
  buf[base + OFF_CMD] = req.command
  buf.writeUInt32LE(req.lba % 0x100000000, base + OFF_LBA)
  buf.writeUInt16LE(Math.floor(req.lba / 0x100000000), base + OFF_LBA + 4)
  buf.writeUInt16LE(0, base + OFF_LBA + 6)
}
