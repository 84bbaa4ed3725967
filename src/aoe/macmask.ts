import { HEADER_LENGTH } from './constants'
import { readMac, writeMac } from './mac'

/** Mac Mask List block: 4 bytes after the common header; 8-byte directives follow at 28. */
export const MACMASK_HEADER_LENGTH = HEADER_LENGTH + 4
export const DIRECTIVE_LENGTH = 8

export const enum MaskCommand { Read = 0, Edit = 1 }
export const enum MaskError { None = 0, Unspecified = 1, BadDirective = 2, ListFull = 3 }
export const enum DirectiveCommand { None = 0, Add = 1, Delete = 2 }

export interface MaskDirective {
  dcmd: number
  mac: number
}

export interface MacMaskMessage {
  mcmd: number
  merror: number
  directives: MaskDirective[]
}

/**
 * Decodes a Mac Mask List message; the directive count decides how many directives are
 * read, and a frame too short to hold them is 'truncated'.
 */
export function decodeMacMask (buf: Buffer, base: number, length: number): MacMaskMessage | 'truncated' {
  if (length < MACMASK_HEADER_LENGTH) return 'truncated'
  const count = buf[base + 27]
  if (MACMASK_HEADER_LENGTH + count * DIRECTIVE_LENGTH > length) return 'truncated'
  const directives: MaskDirective[] = []
  for (let i = 0; i < count; i++) {
    const d = base + MACMASK_HEADER_LENGTH + i * DIRECTIVE_LENGTH
    directives.push({ dcmd: buf[d + 1], mac: readMac(buf, d + 2) })
  }
  return { mcmd: buf[base + 25], merror: buf[base + 26], directives }
}

/**
 * Writes a Mac Mask List block. `count` is the directive-count field: the number of
 * directives, or on a failed edit the index of the failing one (then no list follows).
 * Returns the frame length.
 */
export function encodeMacMask (
  buf: Buffer, base: number, m: MacMaskMessage, count = m.directives.length,
): number {
  buf[base + 24] = 0
  buf[base + 25] = m.mcmd
  buf[base + 26] = m.merror
  buf[base + 27] = count
  let d = base + MACMASK_HEADER_LENGTH
  for (const dir of m.directives) {
    buf[d] = 0
    buf[d + 1] = dir.dcmd
    writeMac(buf, d + 2, dir.mac)
    d += DIRECTIVE_LENGTH
  }
  return d - base
}
