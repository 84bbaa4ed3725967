/**
 * MAC addresses as plain numbers (48 bits fit exactly in a double), so the hot path can
 * compare and store them without allocating. Read and written as two 24-bit halves by
 * hand: Buffer's 48-bit methods validate their arguments at a cost that shows per frame.
 */

function checkRange (buf: Uint8Array, offset: number): void {
  if (!(offset >= 0 && offset + 6 <= buf.length)) throw new RangeError(`no 6-byte MAC at offset ${offset} of ${buf.length} bytes`)
}

export function readMac (buf: Uint8Array, offset: number): number {
  checkRange(buf, offset)
  const high = (buf[offset] << 16) | (buf[offset + 1] << 8) | buf[offset + 2]
  const low = (buf[offset + 3] << 16) | (buf[offset + 4] << 8) | buf[offset + 5]
  return high * 0x1000000 + low
}

export function writeMac (buf: Uint8Array, offset: number, mac: number): void {
  checkRange(buf, offset)
  if (!(mac >= 0 && mac <= 0xffffffffffff && Number.isInteger(mac))) throw new RangeError(`${mac} is not a 48-bit MAC address`)
  const high = Math.floor(mac / 0x1000000)
  const low = mac - high * 0x1000000
  buf[offset] = high >>> 16
  buf[offset + 1] = high >>> 8
  buf[offset + 2] = high
  buf[offset + 3] = low >>> 16
  buf[offset + 4] = low >>> 8
  buf[offset + 5] = low
}

export function macFromBuffer (mac: Buffer): number {
  if (mac.length !== 6) throw new RangeError(`a MAC address has 6 bytes, not ${mac.length}`)
  return mac.readUIntBE(0, 6)
}

export function formatMac (mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:')
}

export function parseMac (text: string): number {
  if (!/^([0-9a-fA-F]{2}[:-]?){5}[0-9a-fA-F]{2}$/.test(text)) throw new RangeError(`"${text}" is not a MAC address`)
  return parseInt(text.replace(/[:-]/g, ''), 16)
}
