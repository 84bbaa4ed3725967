import {
  AOE_ETHERTYPE, AOE_VERSION, FLAG_ERROR, FLAG_RESPONSE, HEADER_LENGTH, OFF_COMMAND, OFF_DST,
  OFF_ERROR, OFF_ETHERTYPE, OFF_MAJOR, OFF_MINOR, OFF_SRC, OFF_TAG, OFF_VERFLAGS,
} from './constants'
import { readMac, writeMac } from './mac'

/** The Ethernet + AoE common header. MACs are 48-bit numbers (see mac.ts). */
export interface Header {
  dst: number
  src: number
  version: number
  flags: number
  error: number
  major: number
  minor: number
  command: number
  tag: number
}

export function emptyHeader (): Header {
  return { dst: 0, src: 0, version: 0, flags: 0, error: 0, major: 0, minor: 0, command: 0, tag: 0 }
}

// Big-endian fields by hand, on bytes the caller has checked are there: Buffer's own
// methods validate their arguments at a cost that shows per frame.
function u16 (buf: Uint8Array, at: number): number {
  return (buf[at] << 8) | buf[at + 1]
}
function u32 (buf: Uint8Array, at: number): number {
  return buf[at] * 0x1000000 + ((buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3])
}
function putU16 (buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 8
  buf[at + 1] = value
}
function putU32 (buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24
  buf[at + 1] = value >>> 16
  buf[at + 2] = value >>> 8
  buf[at + 3] = value
}

/**
 * Decodes the header of the frame at buf[base, base+length) into `out` (reused by the packet
 * loop, so nothing is allocated per frame). Returns false if the frame is too short or not AoE.
 */
export function decodeHeader (buf: Buffer, base: number, length: number, out: Header): boolean {
  if (length < HEADER_LENGTH || base < 0 || base + length > buf.length) return false
  if (u16(buf, base + OFF_ETHERTYPE) !== AOE_ETHERTYPE) return false
  const verFlags = buf[base + OFF_VERFLAGS]
  out.dst = readMac(buf, base + OFF_DST)
  out.src = readMac(buf, base + OFF_SRC)
  out.version = verFlags >> 4
  out.flags = verFlags & 0x0f
  out.error = buf[base + OFF_ERROR]
  out.major = u16(buf, base + OFF_MAJOR)
  out.minor = buf[base + OFF_MINOR]
  out.command = buf[base + OFF_COMMAND]
  out.tag = u32(buf, base + OFF_TAG)
  return true
}

export function encodeHeader (buf: Buffer, base: number, h: Header): void {
  writeMac(buf, base + OFF_DST, h.dst)
  writeMac(buf, base + OFF_SRC, h.src)
  buf.writeUInt16BE(AOE_ETHERTYPE, base + OFF_ETHERTYPE)
  buf[base + OFF_VERFLAGS] = (h.version << 4) | (h.flags & 0x0f)
  buf[base + OFF_ERROR] = h.error
  buf.writeUInt16BE(h.major, base + OFF_MAJOR)
  buf[base + OFF_MINOR] = h.minor
  buf[base + OFF_COMMAND] = h.command
  buf.writeUInt32BE(h.tag >>> 0, base + OFF_TAG)
}

/**
 * Writes the header of a reply to `req` into buf at `base`: addressed back to the sender,
 * from `ourMac`, carrying the target's own address (never the broadcast one) and the
 * request's tag byte for byte. `error` > 0 sets the E flag.
 */
export function encodeResponseHeader (
  buf: Buffer, base: number, req: Header, ourMac: number, major: number, minor: number, error = 0,
): void {
  if (!(base >= 0 && base + HEADER_LENGTH <= buf.length)) throw new RangeError(`no room for a header at ${base} of ${buf.length} bytes`)
  writeMac(buf, base + OFF_DST, req.src)
  writeMac(buf, base + OFF_SRC, ourMac)
  putU16(buf, base + OFF_ETHERTYPE, AOE_ETHERTYPE)
  buf[base + OFF_VERFLAGS] = (AOE_VERSION << 4) | FLAG_RESPONSE | (error > 0 ? FLAG_ERROR : 0)
  buf[base + OFF_ERROR] = error
  putU16(buf, base + OFF_MAJOR, major)
  buf[base + OFF_MINOR] = minor
  buf[base + OFF_COMMAND] = req.command
  putU32(buf, base + OFF_TAG, req.tag)
}
