/**
 * Request frames built in memory (what an initiator would send), and replies read back,
 * for tests that need no socket: the command module's and the packet loop's.
 */
import { AOE_VERSION, Command, MIN_FRAME_LENGTH } from '../../src/aoe/constants'
import { decodeHeader, emptyHeader, encodeHeader, type Header } from '../../src/aoe/header'
import { AFLAG_LBA48, AFLAG_WRITE, ATA_HEADER_LENGTH, decodeAta, emptyAtaRequest, encodeAtaRequest } from '../../src/aoe/ata'
import { decodeConfig, encodeConfig, type ConfigQuery } from '../../src/aoe/config'

export const INITIATOR_MAC = 0x020000000099

let nextTag = 1

export function requestHeader (major: number, minor: number, command: number, opts: Partial<Header> = {}): Header {
  return { dst: 0xffffffffffff, src: INITIATOR_MAC, version: AOE_VERSION, flags: 0, error: 0, major, minor, command, tag: nextTag++, ...opts }
}

/** An ATA request: READ/WRITE (EXT for 0x24/0x34), IDENTIFY, FLUSH... */
export function ataFrame (major: number, minor: number, command: number, lba: number, count: number,
  opts: { data?: Buffer, src?: number, tag?: number, aflags?: number } = {}): { frame: Buffer, tag: number } {
  const h = requestHeader(major, minor, Command.Ata, { ...(opts.src !== undefined ? { src: opts.src } : {}), ...(opts.tag !== undefined ? { tag: opts.tag } : {}) })
  const data = opts.data ?? Buffer.alloc(0)
  const frame = Buffer.alloc(Math.max(MIN_FRAME_LENGTH, ATA_HEADER_LENGTH + data.length))
  encodeHeader(frame, 0, h)
  const ext = command === 0x24 || command === 0x34
  const aflags = opts.aflags ?? ((ext ? AFLAG_LBA48 : 0) | (data.length > 0 ? AFLAG_WRITE : 0))
  encodeAtaRequest(frame, 0, { aflags, feature: 0, sectorCount: count, command, lba: ext ? lba : lba + 0xe0000000 })
  data.copy(frame, ATA_HEADER_LENGTH)
  return { frame, tag: h.tag }
}

export function configFrame (major: number, minor: number, q: Partial<ConfigQuery> = {}, opts: Partial<Header> = {}): { frame: Buffer, tag: number } {
  const h = requestHeader(major, minor, Command.QueryConfig, opts)
  const frame = Buffer.alloc(Math.max(MIN_FRAME_LENGTH, 32 + (q.config?.length ?? 0)))
  encodeHeader(frame, 0, h)
  encodeConfig(frame, 0, { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, ccmd: q.ccmd ?? 0, config: q.config ?? Buffer.alloc(0) })
  return { frame, tag: h.tag }
}

export interface DecodedReply {
  header: Header
  frame: Buffer
  /** ATA replies: status, error, count register and the data after the ATA header. */
  status: number
  error: number
  sectorCount: number
  data: Buffer
}

export function decodeReply (frame: Buffer): DecodedReply {
  const header = emptyHeader()
  if (!decodeHeader(frame, 0, frame.length, header)) throw new Error(`not an AoE frame (${frame.length} bytes)`)
  const reply: DecodedReply = { header, frame, status: 0, error: 0, sectorCount: 0, data: Buffer.alloc(0) }
  if (header.command === Command.Ata) {
    const ata = emptyAtaRequest()
    if (decodeAta(frame, 0, frame.length, ata)) {
      reply.status = ata.command
      reply.error = ata.feature
      reply.sectorCount = ata.sectorCount
      reply.data = frame.subarray(ATA_HEADER_LENGTH)
    }
  }
  return reply
}

/** The config string of a Query Config reply. */
export function configOf (frame: Buffer): ConfigQuery {
  const q = decodeConfig(frame, 0, frame.length, false)
  if (typeof q === 'string') throw new Error(`bad config reply: ${q}`)
  return q
}
