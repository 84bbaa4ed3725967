/**
 * One network interface: the packet loop (the aoenet of the Linux initiator's split).
 * Frames arrive in batches through a FrameIo; each is handed to every target it
 * addresses (commands.ts says what to answer), disk requests go to their stores at the
 * end of the batch (ata-exchange.ts), and replies leave in batches (transmit.ts).
 */
import createDebug from 'debug'
import { BROADCAST_MAC, Command, FLAG_RESPONSE } from '../aoe/constants'
import { decodeHeader, emptyHeader } from '../aoe/header'
import { ConfigCommand } from '../aoe/config'
import type { DiskEngine } from '../store/disk-engine'
import type { BackingStore } from '../store/backing-store'
import type { InterfaceStats } from '../control/control'
import { AtaExchanges } from './ata-exchange'
import {
  addresses, announceDestinations, emptyCommandResult, encodeConfigReply, encodeProbe, isRequest, Outcome, respond, sectorsForMtu,
} from './commands'
import { DetachedFrameIo, type FrameIo } from './frame-io'
import type { Target } from './target'
import { TX_SLOTS, TxQueue, frameAt } from './transmit'

const debug = createDebug('kvblade:port')

/** Receive batches handled per readiness event before yielding to the event loop. */
const RX_BATCHES_PER_EVENT = 8

export interface PortOptions {
  /** Kicked after each receive batch, so a batch's disk requests go in one call. */
  disk: DiskEngine
  /** Where failures that are not the initiator's are reported. */
  warn?: (message: string) => void
  /** A disk request of a target here failed (it is answered with an ATA error all the same). */
  onFault?: (t: Target, store: BackingStore, op: string, err: NodeJS.ErrnoException, offset: number) => void
  /**
   * An initiator changed an address's state (config string, mask, reservation): the
   * reply waits until this resolves, so it is sent only once the change is persisted.
   */
  onStateChange?: (t: Target) => Promise<void>
}

/** Listening for other targets' answers to a Query Config we sent. */
interface Probe { major: number, minor: number, macs: Set<number> }

export class Port {
  readonly targets: Target[] = []
  /** Frames not for any target here: replies, vendor commands, other addresses, masked senders. */
  ignored = 0
  /** Frames too short or inconsistent to serve as sent. */
  malformed = 0

  private readonly tx: TxQueue
  private readonly exchanges: AtaExchanges
  private readonly header = emptyHeader()
  private readonly result = emptyCommandResult()
  private readonly warn: (message: string) => void
  private closed = false
  private closing: Promise<void> | null = null
  /** The link was brought up to date in this batch. */
  private linkSynced = false
  private readonly probes = new Set<Probe>()

  private frameIo: FrameIo

  constructor (io: FrameIo, private readonly options: PortOptions) {
    this.frameIo = io
    this.warn = options.warn ?? (msg => debug('%s', msg))
    this.tx = new TxQueue(io, this.warn)
    this.exchanges = new AtaExchanges(this.tx, TX_SLOTS, io.rxSlots, options.onFault, this.warn)
    io.onReadable(() => this.receive())
  }

  /** Frames in and out; a DetachedFrameIo while the interface is gone. */
  get io (): FrameIo {
    return this.frameIo
  }

  get ifname (): string {
    return this.io.link.name
  }

  get mtu (): number {
    return this.io.link.mtu
  }

  /** Sectors per frame at the current MTU. */
  get maxSectors (): number {
    return sectorsForMtu(this.io.link.mtu)
  }

  /** Requests handed to stores and not answered yet, and the counters of the ring rules (for tests). */
  get exchangeCounters (): { outstanding: number, ringCopies: number, ringViolations: number } {
    const { outstanding, ringCopies, ringViolations } = this.exchanges
    return { outstanding, ringCopies, ringViolations }
  }

  stats (): InterfaceStats {
    const c = this.io.counters()
    const link = this.io.link
    return {
      ifname: this.ifname,
      link: !link.present ? 'gone' : link.up ? 'up' : 'down',
      mtu: link.mtu,
      framesIn: c.framesIn,
      framesOut: c.framesOut,
      kernelDrops: c.kernelDrops,
      ignored: this.ignored,
      malformed: this.malformed,
      sendErrors: c.sendErrors + this.tx.noBuffers,
    }
  }

  addTarget (t: Target): void {
    this.targets.push(t)
  }

  removeTarget (t: Target): void {
    const i = this.targets.indexOf(t)
    if (i >= 0) this.targets.splice(i, 1)
  }

  // ---- receive -------------------------------------------------------------------------

  private receive (): void {
    for (let batch = 0; batch < RX_BATCHES_PER_EVENT && !this.closed; batch++) {
      let n: number
      try {
        n = this.io.receive()
      } catch (err) {
        debug('%s: receive failed: %s', this.ifname, (err as Error).message)
        break
      }
      if (n === 0) break
      this.runBatch(n)
    }
  }

  /**
   * One receive batch: every frame handled, the batch's disk requests handed over in one
   * go, then every reply that is ready (those that completed at once among them) sent
   * in one batch before the next is read, so the initiator's window keeps moving.
   */
  private runBatch (n: number): void {
    const io = this.io
    const rx = io.rx
    const offsets = io.rxOffsets
    const lengths = io.rxLengths
    this.tx.inBatch = true
    this.linkSynced = false
    this.exchanges.openBatch(rx)
    try {
      for (let i = 0; i < n; i++) {
        try {
          this.handleFrame(rx, offsets[i], lengths[i])
        } catch (err) {
          // A frame we failed to handle is a bug, never a reason to stop serving.
          this.malformed++
          this.warn(`${this.ifname}: frame of ${lengths[i]} bytes not handled: ${(err as Error).stack}`)
        }
      }
      try {
        this.exchanges.commit()
      } catch (err) {
        this.warn(`${this.ifname}: disk requests of a batch failed to start: ${(err as Error).message}`)
      }
      // Engines answer their own failures; a throw here is a bug, and the batch must still be answered.
      try {
        this.options.disk.kick()
      } catch (err) {
        this.warn(`${this.ifname}: the disk engine failed at the end of a batch: ${(err as Error).stack}`)
      }
    } finally {
      this.exchanges.closeBatch()
      this.tx.inBatch = false
      try {
        this.tx.flush()
      } catch (err) {
        this.warn(`${this.ifname}: sending the replies of a batch failed: ${(err as Error).stack}`)
      }
    }
  }

  /** Dispatches one received frame to every target it addresses. */
  private handleFrame (rx: Buffer, base: number, length: number): void {
    const h = this.header
    if (!decodeHeader(rx, base, length, h)) {
      this.malformed++
      return
    }
    // Replies (ours on lo, other targets') and vendor commands are not for us, and
    // neither is a frame to another station's MAC (a bridge in promiscuous mode).
    if (!isRequest(h) || (h.dst !== this.io.link.mac && h.dst !== BROADCAST_MAC)) {
      if (this.probes.size > 0 && (h.flags & FLAG_RESPONSE) !== 0 && h.command === Command.QueryConfig) this.heard(h.major, h.minor, h.src)
      this.ignored++
      return
    }
    // The link as it is now: pending link events are read once per batch with a query.
    if (h.command === Command.QueryConfig && !this.linkSynced) {
      this.linkSynced = true
      this.io.syncLink?.()
    }
    let matched = false
    const targets = this.targets
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]
      // The admin's ACL and the initiators' Mac Mask List: a frame must pass both.
      if (!addresses(h, t) || !t.allows(h.src) || !t.state.maskAllows(h.src)) continue
      matched = true
      t.frames++
      this.answer(t, rx, base, length)
    }
    if (!matched) this.ignored++
  }

  private answer (t: Target, rx: Buffer, base: number, length: number): void {
    const slot = this.tx.alloc()
    // Every slot is waiting on the disk or the wire: drop, the initiator retransmits.
    if (slot < 0) return
    const r = this.result
    respond(this.header, rx, base, length, t, this.io.link, this.tx.arena, frameAt(slot), r)
    if (r.malformed) this.malformed++
    if (r.ataError) t.errors++
    switch (r.outcome) {
      case Outcome.None:
        return this.tx.free(slot)
      case Outcome.Reply:
        if (r.stateChanged && this.options.onStateChange !== undefined) return this.replyWhenPersisted(t, slot, r.length)
        return this.tx.queue(slot, r.length)
      case Outcome.Disk:
        return this.exchanges.stage(slot, t, r, rx)
    }
  }

  /** The reply to a change of an address's state leaves once the change is on disk (or, if that fails, never: the initiator retries). */
  private replyWhenPersisted (t: Target, slot: number, length: number): void {
    this.options.onStateChange!(t).then(() => {
      this.tx.queue(slot, length)
      this.tx.requestFlush()
    }, err => {
      this.tx.free(slot)
      this.warn(`${t.name}: a change an initiator made could not be saved, so it was not answered: ${(err as Error).message}`)
    })
  }

  /**
   * The interface went away: its socket is closed (and its receive ring released), the
   * targets stay, and replies meanwhile are lost (initiators retransmit).
   */
  async detach (): Promise<void> {
    const old = this.frameIo
    if (old instanceof DetachedFrameIo || this.closed) return
    this.frameIo = new DetachedFrameIo(old.link, old.rxSlots)
    this.tx.setIo(this.frameIo)
    old.stopReceiving()
    await this.options.disk.release(old.rx)
    old.close()
  }

  /** The interface is back (a new socket on it): serve again, and tell the initiators. */
  attach (io: FrameIo): void {
    if (this.closed) {
      io.close()
      return
    }
    this.frameIo = io
    this.tx.setIo(io)
    io.onReadable(() => this.receive())
    for (const t of this.targets) this.announce(t)
  }

  get detached (): boolean {
    return this.frameIo instanceof DetachedFrameIo
  }

  /**
   * Stops reading requests (shutting down): those already taken still complete and
   * are answered. Resolves once none is left with the disk and every reply has gone.
   */
  async quiesce (): Promise<void> {
    this.frameIo.stopReceiving()
    await this.exchanges.drain()
    for (let i = 0; i < 100 && this.tx.queued > 0; i++) {
      this.tx.flush()
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  }

  /** Announces a target: an unsolicited Query Config reply (see announceDestinations). */
  announce (t: Target): void {
    if (this.closed) return
    this.io.syncLink?.()
    const h = emptyHeader()
    h.command = Command.QueryConfig
    for (const dst of announceDestinations(t, BROADCAST_MAC)) {
      const slot = this.tx.alloc()
      if (slot < 0) break
      h.src = dst
      this.tx.queue(slot, encodeConfigReply(h, t, this.io.link, ConfigCommand.Read, 0, this.tx.arena, frameAt(slot)))
    }
    this.tx.flush()
  }

  /**
   * Asks who else serves major.minor here: a Query Config sent to everyone, and the
   * MACs of the targets that answer within `ms`.
   */
  async probe (major: number, minor: number, ms: number): Promise<number[]> {
    if (this.closed) return []
    const probe: Probe = { major, minor, macs: new Set() }
    this.probes.add(probe)
    try {
      const slot = this.tx.alloc()
      if (slot < 0) return []
      this.tx.queue(slot, encodeProbe(major, minor, this.io.link.mac, this.tx.arena, frameAt(slot)))
      this.tx.flush()
      await new Promise(resolve => setTimeout(resolve, ms))
    } finally {
      this.probes.delete(probe)
    }
    return [...probe.macs]
  }

  private heard (major: number, minor: number, mac: number): void {
    for (const p of this.probes) if (p.major === major && p.minor === minor) p.macs.add(mac)
  }

  /**
   * Stops serving: no more frames are read, queued replies are dropped, the socket and
   * its receive ring go, and once the disk has answered every request this port handed
   * it, the transmit arena is released too.
   */
  close (): Promise<void> {
    if (this.closing !== null) return this.closing
    this.closed = true
    this.tx.close()
    this.closing = (async () => {
      // Nothing the disk still works on uses the ring (see ata-exchange.ts): it goes first.
      const io = this.frameIo
      io.stopReceiving()
      await this.options.disk.release(io.rx)
      io.close()
      await this.exchanges.drain()
      await this.options.disk.release(this.tx.arena)
      this.tx.releaseArena()
    })()
    return this.closing
  }
}
