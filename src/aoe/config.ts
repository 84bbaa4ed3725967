import { AOE_VERSION, HEADER_LENGTH } from './constants'

/** Query Config argument block: 8 bytes after the common header; the string follows at 32. */
export const CONFIG_HEADER_LENGTH = HEADER_LENGTH + 8
export const CONFIG_STRING_MAX = 1024

const OFF_BUFCNT = 24
const OFF_FIRMWARE = 26
const OFF_SECTORS = 28
const OFF_VERCMD = 29
const OFF_LENGTH = 30

export const enum ConfigCommand {
  Read = 0,
  Test = 1,
  TestPrefix = 2,
  Set = 3,
  ForceSet = 4,
}

export interface ConfigQuery {
  bufferCount: number
  firmwareVersion: number
  /** Max sectors per ATA command; 0 means 2 (by the spec). */
  sectorsPerCommand: number
  version: number
  ccmd: number
  /** The config string the request carries (empty for a read). */
  config: Buffer
}

export type ConfigDecodeResult = ConfigQuery | 'truncated' | 'too-long'

/**
 * Decodes a Query Config request or reply. Parsed by the string-length field: a string
 * longer than 1024 bytes, or longer than the frame holds, is refused — except on a read,
 * whose string is ignored (the Linux initiator never sets it).
 */
export function decodeConfig (buf: Buffer, base: number, length: number, isRequest = true): ConfigDecodeResult {
  if (length < CONFIG_HEADER_LENGTH) return 'truncated'
  const verCmd = buf[base + OFF_VERCMD]
  const ccmd = verCmd & 0x0f
  let stringLength = buf.readUInt16BE(base + OFF_LENGTH)
  if (isRequest && ccmd === ConfigCommand.Read) stringLength = 0
  else if (stringLength > CONFIG_STRING_MAX) return 'too-long'
  else if (CONFIG_HEADER_LENGTH + stringLength > length) return 'truncated'
  const start = base + CONFIG_HEADER_LENGTH
  return {
    bufferCount: buf.readUInt16BE(base + OFF_BUFCNT),
    firmwareVersion: buf.readUInt16BE(base + OFF_FIRMWARE),
    sectorsPerCommand: buf[base + OFF_SECTORS],
    version: verCmd >> 4,
    ccmd,
    config: Buffer.from(buf.subarray(start, start + stringLength)),
  }
}

/** Writes the Query Config block (request or reply) at base+24; returns the frame length. */
export function encodeConfig (buf: Buffer, base: number, q: Omit<ConfigQuery, 'version'> & { version?: number }): number {
  if (q.config.length > CONFIG_STRING_MAX) throw new RangeError('config string longer than 1024 bytes')
  buf.writeUInt16BE(q.bufferCount, base + OFF_BUFCNT)
  buf.writeUInt16BE(q.firmwareVersion, base + OFF_FIRMWARE)
  buf[base + OFF_SECTORS] = q.sectorsPerCommand
  buf[base + OFF_VERCMD] = ((q.version ?? AOE_VERSION) << 4) | (q.ccmd & 0x0f)
  buf.writeUInt16BE(q.config.length, base + OFF_LENGTH)
  q.config.copy(buf, base + CONFIG_HEADER_LENGTH)
  return CONFIG_HEADER_LENGTH + q.config.length
}
