import createDebug from 'debug'
import {
  AOE_VERSION, AoeError, BROADCAST_MAC, BROADCAST_MAJOR, BROADCAST_MINOR, Command, FLAG_RESPONSE,
  MIN_FRAME_LENGTH, VENDOR_COMMAND_MIN,
} from '../aoe/constants'
import { emptyHeader, encodeResponseHeader, decodeHeader, type Header } from '../aoe/header'
import { ATA_HEADER_LENGTH, SECTOR_SIZE, decodeAta, emptyAtaRequest, encodeAtaStatus } from '../aoe/ata'
import { ConfigCommand, decodeConfig, encodeConfig } from '../aoe/config'
import { decodeMacMask, encodeMacMask } from '../aoe/macmask'
import { decodeReserve, encodeReserve } from '../aoe/reserve'
import { macFromBuffer } from '../aoe/mac'
import { AtaStep, completeAta, emptyAtaPlan, planAta, type AtaPlan } from '../ata/handler'
import { BlockRequest, type BackingStore } from '../store/backing-store'
import { IoKind } from '../store/ordering'
import type { DiskEngine } from '../store/disk-engine'
import { PacketSocket } from '../net/packet-socket'
import { CopyBatch, alignedBuffer, copySmall, type FileMap } from '../net/memory'
import type { InterfaceStats } from '../control/control'
import { FIRMWARE_VERSION, type Target } from './target'

const debug = createDebug('kvblade:port')

/** The largest frame we build: a 9000-byte MTU frame fits (17 sectors). */
export const MAX_FRAME = 9216
/**
 * Every reply is built in a slot of this size, its frame starting FRAME_OFFSET in, so
 * that the data area (36 bytes into the frame) starts on a page boundary: disk reads
 * land straight in the reply and writes leave from it, with O_DIRECT too.
 */
export const TX_SLOT_SIZE = 16384
const FRAME_OFFSET = 4096 - ATA_HEADER_LENGTH
/**
 * Replies that may be outstanding at once on one interface. The arena (64 MiB) is
 * reserved, not touched: slots are reused last-freed-first, so only the working set
 * becomes resident.
 */
export const TX_SLOTS = 4096
/** Receive batches handled per readiness event before yielding to the event loop. */
const RX_BATCHES_PER_EVENT = 8

/** Where the frame built in a transmit slot starts. */
function frameAt (slot: number): number {
  return slot * TX_SLOT_SIZE + FRAME_OFFSET
}

/** Sectors one frame carries at this MTU: floor((MTU − 36) / 512), capped by our slot. */
export function sectorsForMtu (mtu: number): number {
  const limit = Math.min(mtu + 14, MAX_FRAME) - ATA_HEADER_LENGTH
  return Math.max(0, Math.min(255, Math.floor(limit / SECTOR_SIZE)))
}

export interface PortOptions {
  /** Buffer count advertised in Query Config replies. */
  bufferCount: number
  /** Socket options, for tests (e.g. a network namespace). */
  netns?: string
  /** Told to submit after each receive batch, so a batch's disk requests go in one call. */
  disk: DiskEngine
}

/** A disk request and its reply slot; one per slot, reused. */
class Exchange extends BlockRequest {
  readonly plan = emptyAtaPlan()
  step = AtaStep.Reply
  target: Target | null = null

  constructor (private readonly port: Port, readonly slot: number) {
    super()
  }

  ioComplete (err: NodeJS.ErrnoException | null): void {
    this.port.completeDiskRequest(this, err)
  }
}

/**
 * One network interface: its packet socket, the targets exported on it, and the packet
 * loop. Frames arrive in batches into the socket's receive slots; each reply is built in a
 * transmit slot (disk data is read straight into it) and replies leave in batches.
 */
export class Port {
  readonly targets: Target[] = []
  /** Sectors per frame at the current MTU. */
  maxSectors: number
  ignored = 0
  malformed = 0
  noBuffers = 0

  private readonly tx: Buffer
  private readonly freeSlots = new Int32Array(TX_SLOTS)
  private freeCount = TX_SLOTS
  private readonly exchanges: Array<Exchange | undefined> = new Array(TX_SLOTS)
  private readonly sendOffsets = new Uint32Array(TX_SLOTS)
  private readonly sendLengths = new Uint32Array(TX_SLOTS)
  /**
   * For replies whose data the kernel copies from a store's map: where (length 0 for
   * none), and whose (an index into sendMaps and sendMapStores, which list each map of
   * the queued replies once and are emptied when the queue is).
   */
  private readonly sendMapIndex = new Uint16Array(TX_SLOTS)
  private readonly sendMapOffsets = new Float64Array(TX_SLOTS)
  private readonly sendMapLengths = new Uint32Array(TX_SLOTS)
  private readonly sendMaps: FileMap[] = []
  private readonly sendMapStores: BackingStore[] = []
  private sendCount = 0
  private flushScheduled = false
  /** Inside receive(): replies completed now leave with the batch's own flush. */
  private receiving = false
  private waitingWritable = false
  private closed = false
  /** Disk requests of the receive batch being read, submitted together at its end. */
  private readonly staged: Array<Exchange | undefined>
  private stagedCount = 0
  private readonly copies: CopyBatch
  private readonly header: Header = emptyHeader()
  private readonly ata = emptyAtaRequest()
  private readonly linkTimer: NodeJS.Timeout
  private readonly flushNow = (): void => this.flush()
  /** Our MAC as a number (see aoe/mac.ts), kept current by refreshLink. */
  private mac: number

  private constructor (readonly socket: PacketSocket, private readonly options: PortOptions) {
    this.tx = alignedBuffer(TX_SLOTS * TX_SLOT_SIZE)
    this.staged = new Array(socket.rxSlots)
    this.copies = new CopyBatch(socket.rxSlots)
    // Slot 0 on top of the stack: low slots are reused first.
    for (let i = 0; i < TX_SLOTS; i++) this.freeSlots[i] = TX_SLOTS - 1 - i
    this.maxSectors = sectorsForMtu(socket.link.mtu)
    this.mac = macFromBuffer(socket.link.mac)
    socket.onReadable(() => this.receive())
    // The MTU can change under us (ip link set mtu): re-read it every second.
    this.linkTimer = setInterval(() => this.refreshLink(), 1000)
    this.linkTimer.unref()
  }

  static open (ifname: string, options: PortOptions): Port {
    const socket = PacketSocket.open(ifname, { netns: options.netns })
    debug('%s: index %d mac %s mtu %d', ifname, socket.link.index, socket.link.mac.toString('hex'), socket.link.mtu)
    return new Port(socket, options)
  }

  get ifname (): string {
    return this.socket.ifname
  }

  get mtu (): number {
    return this.socket.link.mtu
  }

  refreshLink (): void {
    if (this.closed) return
    try {
      const link = this.socket.refreshLink()
      this.mac = macFromBuffer(link.mac)
      const mtu = link.mtu
      const sectors = sectorsForMtu(mtu)
      if (sectors !== this.maxSectors) debug('%s: mtu %d, %d sectors per frame', this.ifname, mtu, sectors)
      this.maxSectors = sectors
    } catch (err) {
      debug('%s: cannot read link: %s', this.ifname, (err as Error).message)
    }
  }

  stats (): InterfaceStats {
    const c = this.socket.counters
    return {
      ifname: this.ifname,
      framesIn: c.rxFrames,
      framesOut: c.txFrames,
      kernelDrops: c.kernelDrops,
      ignored: this.ignored,
      malformed: this.malformed,
      sendErrors: c.txErrors + this.noBuffers,
    }
  }

  // ---- receive -------------------------------------------------------------------------

  private receive (): void {
    this.receiving = true
    try {
      this.receiveBatches()
    } finally {
      this.receiving = false
    }
  }

  private receiveBatches (): void {
    const socket = this.socket
    for (let batch = 0; batch < RX_BATCHES_PER_EVENT && !this.closed; batch++) {
      let n: number
      try {
        n = socket.recv()
      } catch (err) {
        debug('%s: receive failed: %s', this.ifname, (err as Error).message)
        break
      }
      if (n === 0) break
      const offsets = socket.rxOffsets
      const lengths = socket.rxLengths
      for (let i = 0; i < n; i++) {
        try {
          this.handleFrame(socket.rx, offsets[i], lengths[i])
        } catch (err) {
          // A frame we failed to handle is a bug, never a reason to stop serving.
          this.malformed++
          debug('%s: frame of %d bytes not handled: %s', this.ifname, lengths[i], (err as Error).stack)
        }
      }
      this.commitStaged()
      this.answer()
    }
  }

  /**
   * After each receive batch: hands its disk requests to the kernel together, then sends
   * every reply that is ready (those that completed at once among them) in one batch,
   * before reading the next batch, so the initiator's window keeps moving.
   */
  private answer (): void {
    this.options.disk.kick()
    this.flush()
  }

  /** Dispatches one received frame to every target it addresses. */
  private handleFrame (rx: Buffer, base: number, length: number): void {
    const h = this.header
    if (!decodeHeader(rx, base, length, h)) {
      this.malformed++
      return
    }
    // Replies (ours on lo, other targets') and vendor commands are not for us.
    if ((h.flags & FLAG_RESPONSE) !== 0 || h.command >= VENDOR_COMMAND_MIN) {
      this.ignored++
      return
    }
    // Sectors per frame are advertised from the MTU as it is now, once per query frame
    // however many targets answer it (the timer alone could lag by a second).
    if (h.command === Command.QueryConfig) this.refreshLink()
    let matched = false
    const targets = this.targets
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]
      if ((h.major !== t.major && h.major !== BROADCAST_MAJOR) || (h.minor !== t.minor && h.minor !== BROADCAST_MINOR)) continue
      if (!t.state.maskAllows(h.src)) continue
      matched = true
      t.frames++
      this.handleForTarget(t, rx, base, length)
    }
    if (!matched) this.ignored++
  }

  private handleForTarget (t: Target, rx: Buffer, base: number, length: number): void {
    const h = this.header
    if (h.version !== AOE_VERSION) return this.replyError(t, rx, base, length, AoeError.UnsupportedVersion)
    switch (h.command) {
      case Command.Ata: return this.handleAta(t, rx, base, length)
      case Command.QueryConfig: return this.handleConfig(t, rx, base, length)
      case Command.MacMaskList: return this.handleMacMask(t, rx, base, length)
      case Command.ReserveRelease: return this.handleReserve(t, rx, base, length)
      default: return this.replyError(t, rx, base, length, AoeError.UnrecognizedCommand)
    }
  }

  private handleAta (t: Target, rx: Buffer, base: number, length: number): void {
    const req = this.ata
    if (!decodeAta(rx, base, length, req)) {
      this.malformed++
      return this.replyError(t, rx, base, length, AoeError.BadArgument)
    }
    if (req.command !== 0xec && !t.state.reservationAllows(this.header.src)) {
      return this.replyError(t, rx, base, length, AoeError.TargetReserved)
    }
    const slot = this.allocSlot()
    if (slot < 0) return
    const out = frameAt(slot)
    const tx = this.tx
    // The reply starts as the request's header: flags and LBA registers go back as they came.
    copySmall(tx, out, rx, base, ATA_HEADER_LENGTH)
    encodeResponseHeader(tx, out, this.header, this.mac, t.major, t.minor)
    const ex = (this.exchanges[slot] ??= new Exchange(this, slot))
    const plan = ex.plan
    const step = planAta(req, t, this.maxSectors, tx, out + ATA_HEADER_LENGTH, plan)
    switch (step) {
      case AtaStep.Reply:
        if ((plan.status & 0x01) !== 0) t.errors++
        encodeAtaStatus(tx, out, plan.status, plan.error, plan.sectorCount)
        return this.queue(slot, ATA_HEADER_LENGTH + plan.dataLength)
      case AtaStep.BadArgument:
        this.releaseSlot(slot)
        this.malformed++
        return this.replyError(t, rx, base, length, AoeError.BadArgument)
      case AtaStep.Write:
        ex.kind = IoKind.Write
        if (t.store.inline) {
          // Done by the kick that ends this batch, before the ring frame goes back to
          // the kernel: written straight from the ring.
          this.stage(ex, step, t, plan, rx, req.dataOffset)
          return
        }
        // The receive ring frame goes back to the kernel with the next batch: the data
        // moves to the reply slot (at the end of this batch, with the others).
        if (!this.copies.add(out + ATA_HEADER_LENGTH, req.dataOffset, plan.length)) {
          this.commitStaged()
          this.copies.add(out + ATA_HEADER_LENGTH, req.dataOffset, plan.length)
        }
        break
      case AtaStep.Read:
        if (t.store.map !== null) return this.replyFromMap(t, slot, plan)
        ex.kind = IoKind.Read
        break
      case AtaStep.Flush:
        ex.kind = IoKind.Flush
        break
    }
    this.stage(ex, step, t, plan, tx, out + ATA_HEADER_LENGTH)
  }

  /** Queues a disk request of this batch; `buffer` holds (or receives) its data. */
  private stage (ex: Exchange, step: AtaStep, t: Target, plan: AtaPlan, buffer: Buffer, bufferOffset: number): void {
    ex.step = step
    ex.target = t
    ex.offset = plan.offset
    ex.length = plan.length
    ex.buffer = buffer
    ex.bufferOffset = bufferOffset
    t.busy++
    if (this.stagedCount === this.staged.length) this.commitStaged()
    this.staged[this.stagedCount++] = ex
  }

  /**
   * Ends the staging of a receive batch: copies the write data out of the receive ring,
   * then hands the batch's disk requests to their stores in arrival order.
   */
  private commitStaged (): void {
    const count = this.stagedCount
    this.stagedCount = 0
    this.copies.run(this.tx, this.socket.rx)
    for (let i = 0; i < count; i++) {
      const ex = this.staged[i]!
      this.staged[i] = undefined
      ex.target!.store.submit(ex)
    }
  }

  /**
   * A read of a file in RAM: the reply carries no copy of the data, the kernel copies it
   * from the store's map when the reply is sent. Replies leave after the batch's disk
   * requests have run (see answer), so the data includes every write that arrived first.
   */
  private replyFromMap (t: Target, slot: number, plan: AtaPlan): void {
    const store = t.store
    const offset = plan.offset
    const length = plan.length
    t.reads++
    t.readSectors += length / SECTOR_SIZE
    completeAta(AtaStep.Read, false, plan)
    encodeAtaStatus(this.tx, frameAt(slot), plan.status, plan.error, plan.sectorCount)
    store.beginMappedRead()
    let index = this.sendMapStores.indexOf(store)
    if (index < 0) {
      index = this.sendMapStores.push(store) - 1
      this.sendMaps.push(store.map!)
    }
    // Queued by hand: the frame is the header here plus the data there (never short).
    const at = this.sendCount++
    this.sendOffsets[at] = frameAt(slot)
    this.sendLengths[at] = ATA_HEADER_LENGTH
    this.sendMapIndex[at] = index
    this.sendMapOffsets[at] = offset
    this.sendMapLengths[at] = length
  }

  /** @internal The disk answered: finish the reply and send it with the next batch. */
  completeDiskRequest (ex: Exchange, err: NodeJS.ErrnoException | null): void {
    const t = ex.target!
    ex.target = null
    t.busy--
    const plan = ex.plan
    const sectors = plan.length / SECTOR_SIZE
    if (err !== null) {
      t.errors++
      debug('%s: %s', t.name, err.message)
    } else if (ex.step === AtaStep.Read) {
      t.reads++
      t.readSectors += sectors
    } else if (ex.step === AtaStep.Write) {
      t.writes++
      t.writeSectors += sectors
    } else {
      t.flushes++
    }
    completeAta(ex.step, err !== null, plan)
    if (this.closed) return
    const out = frameAt(ex.slot)
    encodeAtaStatus(this.tx, out, plan.status, plan.error, plan.sectorCount)
    this.queue(ex.slot, ATA_HEADER_LENGTH + plan.dataLength)
    if (!this.flushScheduled && !this.receiving) {
      // Completions arriving in the same event-loop turn leave in one batch.
      this.flushScheduled = true
      setImmediate(this.flushNow)
    }
  }

  private handleConfig (t: Target, rx: Buffer, base: number, length: number): void {
    const q = decodeConfig(rx, base, length)
    if (q === 'truncated' || q === 'too-long') {
      // vblade drops these too ("if you can't play nice..."): there is no sane reply.
      this.malformed++
      return
    }
    const outcome = t.state.queryConfig(q)
    if (!outcome.respond) return
    this.sendConfig(t, this.header, q.ccmd, outcome.error)
  }

  private sendConfig (t: Target, req: Header, ccmd: number, error: number): void {
    const slot = this.allocSlot()
    if (slot < 0) return
    const out = frameAt(slot)
    encodeResponseHeader(this.tx, out, req, this.mac, t.major, t.minor, error)
    const end = encodeConfig(this.tx, out, {
      bufferCount: this.options.bufferCount,
      firmwareVersion: FIRMWARE_VERSION,
      sectorsPerCommand: this.maxSectors,
      ccmd,
      config: t.state.config,
    })
    this.queue(slot, end)
  }

  /**
   * Announces a target: an unsolicited Query Config reply, broadcast — or, when a mask
   * is set, sent to each allowed MAC only, since nobody else may use the disk.
   */
  announce (t: Target): void {
    if (this.closed) return
    this.refreshLink()
    const h = emptyHeader()
    h.command = Command.QueryConfig
    const destinations = t.state.mask.length > 0 ? t.state.mask : [BROADCAST_MAC]
    for (const dst of destinations) {
      h.src = dst
      this.sendConfig(t, h, ConfigCommand.Read, 0)
    }
    this.flush()
  }

  private handleMacMask (t: Target, rx: Buffer, base: number, length: number): void {
    const m = decodeMacMask(rx, base, length)
    if (m === 'truncated') {
      this.malformed++
      return this.replyError(t, rx, base, length, AoeError.BadArgument)
    }
    const outcome = t.state.macMask(m)
    const slot = this.allocSlot()
    if (slot < 0) return
    const out = frameAt(slot)
    encodeResponseHeader(this.tx, out, this.header, this.mac, t.major, t.minor, outcome.error)
    const directives = outcome.list ? t.state.mask.map(mac => ({ dcmd: 0, mac })) : []
    const end = encodeMacMask(this.tx, out, { mcmd: m.mcmd, merror: outcome.merror, directives }, outcome.count)
    this.queue(slot, end)
  }

  private handleReserve (t: Target, rx: Buffer, base: number, length: number): void {
    const m = decodeReserve(rx, base, length)
    if (m === 'truncated') {
      this.malformed++
      return this.replyError(t, rx, base, length, AoeError.BadArgument)
    }
    const error = t.state.reserve(m, this.header.src)
    const slot = this.allocSlot()
    if (slot < 0) return
    const out = frameAt(slot)
    encodeResponseHeader(this.tx, out, this.header, this.mac, t.major, t.minor, error)
    const end = encodeReserve(this.tx, out, { rcmd: m.rcmd, macs: t.state.reservation })
    this.queue(slot, end)
  }

  /** An AoE-level error: the request echoed back with the E flag and the code. */
  private replyError (t: Target, rx: Buffer, base: number, length: number, error: number): void {
    const slot = this.allocSlot()
    if (slot < 0) return
    const out = frameAt(slot)
    const echoed = Math.min(length, MAX_FRAME, this.mtu + 14)
    rx.copy(this.tx, out, base, base + echoed)
    encodeResponseHeader(this.tx, out, this.header, this.mac, t.major, t.minor, error)
    this.queue(slot, echoed)
  }

  // ---- transmit ------------------------------------------------------------------------

  private allocSlot (): number {
    if (this.freeCount === 0) {
      // Every slot is waiting on the disk or the wire: drop, the initiator retransmits.
      this.noBuffers++
      return -1
    }
    return this.freeSlots[--this.freeCount]
  }

  private releaseSlot (slot: number): void {
    this.freeSlots[this.freeCount++] = slot
  }

  /** Adds a finished reply to the next send batch, padded to the Ethernet minimum. */
  private queue (slot: number, length: number): void {
    const out = frameAt(slot)
    if (length < MIN_FRAME_LENGTH) {
      this.tx.fill(0, out + length, out + MIN_FRAME_LENGTH)
      length = MIN_FRAME_LENGTH
    }
    this.sendOffsets[this.sendCount] = out
    this.sendLengths[this.sendCount] = length
    this.sendMapLengths[this.sendCount] = 0
    this.sendCount++
  }

  /** Sends every queued reply in as few system calls as the socket allows. */
  flush (): void {
    this.flushScheduled = false
    const count = this.sendCount
    if (count === 0 || this.waitingWritable || this.closed) return
    let sent: number
    try {
      sent = this.socket.send(this.tx, this.sendOffsets, this.sendLengths, count,
        this.sendMaps, this.sendMapIndex, this.sendMapOffsets, this.sendMapLengths)
    } catch (err) {
      // A batch the socket refuses (a bug, never input) is dropped, not retried forever.
      debug('%s: %d replies dropped: %s', this.ifname, count, (err as Error).message)
      this.noBuffers += count
      sent = count
    }
    this.sent(sent)
    if (sent < count) {
      // Socket buffer full: keep the rest in order and try again once it drains.
      this.sendOffsets.copyWithin(0, sent, count)
      this.sendLengths.copyWithin(0, sent, count)
      this.sendMapIndex.copyWithin(0, sent, count)
      this.sendMapOffsets.copyWithin(0, sent, count)
      this.sendMapLengths.copyWithin(0, sent, count)
      this.sendCount = count - sent
      this.waitingWritable = true
      this.socket.onWritable(() => {
        this.waitingWritable = false
        this.flush()
      })
      return
    }
    this.sendCount = 0
    this.sendMaps.length = 0
    this.sendMapStores.length = 0
  }

  /** The first `count` queued replies are gone (sent, or dropped): free their slots, tell their maps' stores. */
  private sent (count: number): void {
    for (let i = 0; i < count; i++) {
      this.releaseSlot(Math.floor(this.sendOffsets[i] / TX_SLOT_SIZE))
      if (this.sendMapLengths[i] !== 0) this.sendMapStores[this.sendMapIndex[i]].endMappedRead()
    }
  }

  addTarget (t: Target): void {
    this.targets.push(t)
  }

  removeTarget (t: Target): void {
    const i = this.targets.indexOf(t)
    if (i >= 0) this.targets.splice(i, 1)
  }

  close (): void {
    if (this.closed) return
    const c = this.socket.counters
    debug('%s: %d frames in %d batches, %d out in %d batches', this.ifname, c.rxFrames, c.rxBatches, c.txFrames, c.txBatches)
    this.flush()
    this.closed = true
    // Replies that could not leave are dropped: their stores must not wait for them.
    this.sent(this.sendCount)
    this.sendCount = 0
    this.sendMaps.length = 0
    this.sendMapStores.length = 0
    clearInterval(this.linkTimer)
    this.socket.close()
  }
}
