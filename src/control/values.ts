/**
 * The values an admin sets, checked in one place for every way of setting them: the
 * control plane's files, the command line, and calls into the engine.
 */
import { MODEL_LENGTH, SERIAL_LENGTH } from '../ata/identify'
import { formatMac, parseMac } from '../aoe/mac'
import { ControlError } from './errors'

/** How writes are acknowledged: after stable storage (default), or after the page cache. */
export type CacheMode = 'writethrough' | 'writeback'
export const CACHE_MODES: readonly CacheMode[] = ['writethrough', 'writeback']

/** IDENTIFY's model and serial fields (words 27–46 and 10–19). */
export const MODEL_MAX = MODEL_LENGTH
export const SERIAL_MAX = SERIAL_LENGTH

/** The Linux initiator keeps min(bufcnt, 64) frames in flight and cannot work with fewer than 2. */
export const BUFFER_COUNT_MIN = 2
export const BUFFER_COUNT_MAX = 0xffff
export const DEFAULT_BUFFER_COUNT = 64

/** A model or serial number as IDENTIFY carries it: printable ASCII, at most `max` characters. */
export function checkIdentity (text: string, what: string, max: number): string {
  if (!/^[\x20-\x7e]*$/.test(text)) throw new ControlError('EINVAL', `${what} must be one line of printable ASCII`)
  if (text.length > max) throw new ControlError('EINVAL', `${what} is ${text.length} characters, at most ${max} allowed`)
  return text
}

/** The text written to a `model` or `sn` file: one trailing newline (echo's) is not part of it. */
export function parseIdentity (text: string, what: string, max: number): string {
  return checkIdentity(text.replace(/\r?\n$/, ''), what, max)
}

export function checkModel (model: string): string {
  return checkIdentity(model, 'model', MODEL_MAX)
}

export function checkSerial (serial: string): string {
  return checkIdentity(serial, 'serial number', SERIAL_MAX)
}

/** `what` names the value in the message (an option, a file). */
export function checkBufferCount (n: number, what = 'the buffer count'): number {
  if (!Number.isInteger(n) || n < BUFFER_COUNT_MIN || n > BUFFER_COUNT_MAX) {
    throw new ControlError('EINVAL', `${what} must be ${BUFFER_COUNT_MIN}-${BUFFER_COUNT_MAX} (the Linux initiator cannot work with fewer than 2), not ${n}`)
  }
  return n
}

/** A buffer count as written (decimal digits only). */
export function parseBufferCount (text: string, what = 'the buffer count'): number {
  if (!/^[0-9]+$/.test(text)) throw new ControlError('EINVAL', `${what} takes a number, not "${text}"`)
  return checkBufferCount(Number(text), what)
}

/** An ACL as written to its file: MACs separated by newlines, spaces or commas; nothing at all clears it. */
export function parseAcl (text: string): number[] {
  const words = text.split(/[\s,]+/).filter(w => w.length > 0)
  const macs = words.map(w => {
    try {
      return parseMac(w)
    } catch {
      throw new ControlError('EINVAL', `"${w}" is not a MAC address (like 52:54:00:12:34:56)`)
    }
  })
  return [...new Set(macs)]
}

/** An ACL as its file shows it: one MAC per line. */
export function formatAcl (macs: readonly number[]): string {
  return macs.map(m => formatMac(m) + '\n').join('')
}

export function parseCacheMode (text: string): CacheMode {
  const mode = text.trim()
  if (!(CACHE_MODES as readonly string[]).includes(mode)) throw new ControlError('EINVAL', `the cache mode is writethrough or writeback, not "${mode}"`)
  return mode as CacheMode
}
