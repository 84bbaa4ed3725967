/**
 * MAC addresses as plain numbers (48 bits fit exactly in a double), so the hot path can
 * compare and store them without allocating.
 */

export function readMac (buf: Buffer, offset: number): number {
  return buf.readUIntBE(offset, 6)
}

export function writeMac (buf: Buffer, offset: number, mac: number): void {
  buf.writeUIntBE(mac, offset, 6)
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
