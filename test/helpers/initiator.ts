import {
  AOE_VERSION, BROADCAST_MAC, Command, FLAG_ERROR, FLAG_RESPONSE, MIN_FRAME_LENGTH,
} from '../../src/aoe/constants'
import { decodeHeader, emptyHeader, encodeHeader, type Header } from '../../src/aoe/header'
import { ATA_HEADER_LENGTH, AFLAG_LBA48, AFLAG_WRITE, SECTOR_SIZE, decodeAta, emptyAtaRequest, encodeAtaRequest } from '../../src/aoe/ata'
import { decodeConfig, encodeConfig, type ConfigQuery } from '../../src/aoe/config'
import { macFromBuffer } from '../../src/aoe/mac'
import { decodeIdentify } from '../../src/ata/identify'
import { PacketSocket } from '../../src/native/packet-socket'

/** A reply as the test initiator saw it. */
export interface Reply {
  header: Header
  frame: Buffer
}

export interface AtaResult {
  header: Header
  status: number
  error: number
  sectorCount: number
  data: Buffer
}

export interface Discovered {
  major: number
  minor: number
  mac: number
  config: ConfigQuery
}

export interface TargetRef {
  major: number
  minor: number
  /** Unicast MAC of the target (or BROADCAST_MAC). */
  mac: number
}

interface Pending {
  replies: Reply[]
  /** Resolve after this many replies (Infinity: wait for the window). */
  want: number
  resolve: (replies: Reply[]) => void
  timer: NodeJS.Timeout
}

/**
 * An AoE initiator for the tests, in TypeScript over the same packet socket binding:
 * discovery, Query Config, raw frames, and ATA I/O with many commands in flight and
 * retransmission on timeout (with a new tag, as the Linux initiator does).
 */
export class TestInitiator {
  readonly mac: number
  private nextTag = 1
  private readonly pending = new Map<number, Pending>()
  /** Every reply received, for tests that look at the traffic as a whole. */
  readonly received: Reply[] = []
  private readonly txBuf = Buffer.alloc(9216 * 64)
  private readonly offsets = new Uint32Array(64)
  private readonly lengths = new Uint32Array(64)

  private constructor (readonly socket: PacketSocket) {
    this.mac = macFromBuffer(socket.link.mac)
    socket.onReadable(() => this.receive())
  }

  static open (ifname: string, netns?: string): TestInitiator {
    return new TestInitiator(PacketSocket.open(ifname, { netns }))
  }

  get mtu (): number {
    return this.socket.link.mtu
  }

  close (): void {
    for (const p of this.pending.values()) clearTimeout(p.timer)
    this.pending.clear()
    this.socket.close()
  }

  private receive (): void {
    for (;;) {
      const n = this.socket.recv()
      for (let i = 0; i < n; i++) {
        const base = this.socket.rxOffsets[i]
        const length = this.socket.rxLengths[i]
        const header = emptyHeader()
        if (!decodeHeader(this.socket.rx, base, length, header)) continue
        if ((header.flags & FLAG_RESPONSE) === 0) continue
        const reply = { header, frame: Buffer.from(this.socket.rx.subarray(base, base + length)) }
        this.received.push(reply)
        const p = this.pending.get(header.tag)
        if (p === undefined) continue
        p.replies.push(reply)
        if (p.replies.length >= p.want) this.settle(header.tag)
      }
      if (n === 0) break
    }
  }

  private settle (tag: number): void {
    const p = this.pending.get(tag)
    if (p === undefined) return
    this.pending.delete(tag)
    clearTimeout(p.timer)
    p.resolve(p.replies)
  }

  tag (): number {
    const t = this.nextTag
    this.nextTag = (this.nextTag + 1) & 0x7fffffff
    return t
  }

  /** A header for a request from us, with a fresh tag unless one is given. */
  header (dst: number, major: number, minor: number, command: number, tag = this.tag()): Header {
    return { dst, src: this.mac, version: AOE_VERSION, flags: 0, error: 0, major, minor, command, tag }
  }

  /** Sends frames as they are (padding short ones only if asked). */
  sendFrames (frames: Buffer[]): void {
    let i = 0
    while (i < frames.length) {
      const count = Math.min(64, frames.length - i)
      let off = 0
      for (let j = 0; j < count; j++) {
        const f = frames[i + j]
        f.copy(this.txBuf, off)
        this.offsets[j] = off
        this.lengths[j] = f.length
        off += 9216
      }
      let sent = 0
      while (sent < count) {
        sent += this.socket.send(this.txBuf, this.offsets.subarray(sent), this.lengths.subarray(sent), count - sent)
      }
      i += count
    }
  }

  /**
   * Sends a frame and collects replies carrying its tag: resolves after `want` replies, or
   * when `windowMs` passes with whatever arrived (possibly none).
   */
  request (frame: Buffer, tag: number, want = 1, windowMs = 1000): Promise<Reply[]> {
    const result = this.expect(tag, want, windowMs)
    this.sendFrames([frame])
    return result
  }

  /** Collects replies with this tag (for frames the caller sends itself, e.g. in one batch). */
  expect (tag: number, want = 1, windowMs = 1000): Promise<Reply[]> {
    return new Promise<Reply[]>(resolve => {
      const timer = setTimeout(() => this.settle(tag), windowMs)
      this.pending.set(tag, { replies: [], want, resolve, timer })
    })
  }

  configFrame (dst: number, major: number, minor: number, q: Partial<ConfigQuery> = {}, tag = this.tag()): { frame: Buffer, tag: number } {
    const frame = Buffer.alloc(Math.max(MIN_FRAME_LENGTH, 32 + (q.config?.length ?? 0)))
    encodeHeader(frame, 0, this.header(dst, major, minor, Command.QueryConfig, tag))
    encodeConfig(frame, 0, {
      bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, ccmd: q.ccmd ?? 0, config: q.config ?? Buffer.alloc(0),
    })
    return { frame, tag }
  }

  /** Query Config; collects every reply within the window (broadcasts get one per target). */
  async queryConfig (major: number, minor: number, q: Partial<ConfigQuery> = {}, opts: { dst?: number, want?: number, windowMs?: number } = {}): Promise<Reply[]> {
    const { frame, tag } = this.configFrame(opts.dst ?? BROADCAST_MAC, major, minor, q)
    return await this.request(frame, tag, opts.want ?? Infinity, opts.windowMs ?? 500)
  }

  /** Broadcast discovery: every target that answers, with its config reply. */
  async discover (major = 0xffff, minor = 0xff, windowMs = 500): Promise<Discovered[]> {
    const replies = await this.queryConfig(major, minor, {}, { windowMs })
    return replies.map(r => {
      const config = decodeConfig(r.frame, 0, r.frame.length, false)
      if (typeof config === 'string') throw new Error(`bad config reply: ${config}`)
      return { major: r.header.major, minor: r.header.minor, mac: r.header.src, config }
    })
  }

  ataFrame (t: TargetRef, command: number, lba: number, count: number, opts: { data?: Buffer, aflags?: number, tag?: number } = {}): { frame: Buffer, tag: number } {
    const tag = opts.tag ?? this.tag()
    const data = opts.data ?? Buffer.alloc(0)
    const frame = Buffer.alloc(Math.max(MIN_FRAME_LENGTH, ATA_HEADER_LENGTH + data.length))
    encodeHeader(frame, 0, this.header(t.mac, t.major, t.minor, Command.Ata, tag))
    const ext = command === 0x24 || command === 0x34
    const aflags = opts.aflags ?? ((ext ? AFLAG_LBA48 : 0) | (data.length > 0 ? AFLAG_WRITE : 0))
    // LBA28 commands carry the device register (LBA mode) in the top nibble of LBA3.
    const lbaField = ext ? lba : lba + 0xe0000000
    encodeAtaRequest(frame, 0, { aflags, feature: 0, sectorCount: count, command, lba: lbaField })
    data.copy(frame, ATA_HEADER_LENGTH)
    return { frame, tag }
  }

  static ataResult (r: Reply): AtaResult {
    const ata = emptyAtaRequest()
    if (!decodeAta(r.frame, 0, r.frame.length, ata)) throw new Error('short ATA reply')
    return {
      header: r.header,
      status: ata.command,
      error: ata.feature,
      sectorCount: ata.sectorCount,
      data: r.frame.subarray(ATA_HEADER_LENGTH),
    }
  }

  /** One ATA command, retransmitted with a new tag on timeout. */
  async ata (t: TargetRef, command: number, lba: number, count: number, opts: { data?: Buffer, aflags?: number, timeoutMs?: number, tries?: number } = {}): Promise<AtaResult> {
    const tries = opts.tries ?? 5
    for (let i = 0; i < tries; i++) {
      const { frame, tag } = this.ataFrame(t, command, lba, count, opts)
      const replies = await this.request(frame, tag, 1, opts.timeoutMs ?? 1000)
      if (replies.length > 0) return TestInitiator.ataResult(replies[0])
    }
    throw new Error(`no reply to ATA 0x${command.toString(16)} lba ${lba} after ${tries} tries`)
  }

  async identify (t: TargetRef): Promise<ReturnType<typeof decodeIdentify>> {
    const r = await this.ata(t, 0xec, 0, 1)
    if ((r.status & 0x01) !== 0) throw new Error(`IDENTIFY failed: status 0x${r.status.toString(16)}`)
    return decodeIdentify(r.data)
  }

  /**
   * Writes or reads a range with up to `depth` commands in flight, `perFrame` sectors each
   * (READ/WRITE EXT). Any ATA error fails the whole transfer.
   */
  async transfer (t: TargetRef, lba: number, sectors: number, perFrame: number, depth: number, data?: Buffer): Promise<Buffer> {
    const out = Buffer.alloc(sectors * SECTOR_SIZE)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < sectors) {
        const first = next
        const count = Math.min(perFrame, sectors - first)
        next += count
        const chunk = data?.subarray(first * SECTOR_SIZE, (first + count) * SECTOR_SIZE)
        const r = await this.ata(t, chunk !== undefined ? 0x34 : 0x24, lba + first, count, { data: chunk })
        if ((r.header.flags & FLAG_ERROR) !== 0) throw new Error(`AoE error ${r.header.error} at lba ${lba + first}`)
        if ((r.status & 0x01) !== 0) throw new Error(`ATA error status 0x${r.status.toString(16)} err 0x${r.error.toString(16)} at lba ${lba + first}`)
        if (chunk === undefined) r.data.copy(out, first * SECTOR_SIZE, 0, count * SECTOR_SIZE)
      }
    }
    await Promise.all(Array.from({ length: depth }, worker))
    return out
  }

  write (t: TargetRef, lba: number, data: Buffer, perFrame = 2, depth = 64): Promise<Buffer> {
    return this.transfer(t, lba, data.length / SECTOR_SIZE, perFrame, depth, data)
  }

  read (t: TargetRef, lba: number, sectors: number, perFrame = 2, depth = 64): Promise<Buffer> {
    return this.transfer(t, lba, sectors, perFrame, depth)
  }
}
