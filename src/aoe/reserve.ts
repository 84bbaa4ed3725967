import { HEADER_LENGTH } from './constants'
import { readMac, writeMac } from './mac'

/** Reserve/Release block: 2 bytes after the common header; 6-byte MACs follow at 26. */
export const RESERVE_HEADER_LENGTH = HEADER_LENGTH + 2

export const enum ReserveCommand { Read = 0, Set = 1, ForceSet = 2 }

export interface ReserveMessage {
  rcmd: number
  macs: number[]
}

/** Decodes a Reserve/Release message; nmacs decides how many MACs are read. */
export function decodeReserve (buf: Buffer, base: number, length: number): ReserveMessage | 'truncated' {
  if (length < RESERVE_HEADER_LENGTH) return 'truncated'
  const count = buf[base + 25]
  if (RESERVE_HEADER_LENGTH + count * 6 > length) return 'truncated'
  const macs: number[] = []
  for (let i = 0; i < count; i++) macs.push(readMac(buf, base + RESERVE_HEADER_LENGTH + i * 6))
  return { rcmd: buf[base + 24], macs }
}

/** Writes a Reserve/Release block; returns the frame length. */
export function encodeReserve (buf: Buffer, base: number, m: ReserveMessage): number {
  if (m.macs.length > 255) throw new RangeError('at most 255 MACs fit the count field')
  buf[base + 24] = m.rcmd
  buf[base + 25] = m.macs.length
  let p = base + RESERVE_HEADER_LENGTH
  for (const mac of m.macs) {
    writeMac(buf, p, mac)
    p += 6
  }
  return p - base
}
