/**
 * ATA requests that need the disk: handed to their stores in arrival order (writes whose
 * data must first leave the receive ring, and whatever follows them, wait for the batch's
 * one copy call at its end), and answered as the disk completes them.
 *
 * Two timing rules make the zero-copy paths safe, and this module is where they hold:
 *  - Receive-ring data is valid only inside one batch scope (openBatch .. closeBatch).
 *    A write to a store that completes inline is given the ring's bytes directly; any
 *    such write still waiting when the batch closes gets its data copied into its own
 *    slot first, and one that has started but not finished is a broken contract (counted
 *    in ringViolations; the engines make it impossible).
 *  - A read answered from a file map is an outstanding read in its store's ordering
 *    until its reply has left, so it never shows a write that came after it (the store
 *    fixes its data first) and always shows the writes before it (it starts after them).
 */
import fs from 'node:fs'
import { ATA_HEADER_LENGTH, SECTOR_SIZE, encodeAtaStatus } from '../aoe/ata'
import { AtaStep, completeAta, emptyAtaPlan, type AtaPlan } from '../ata/handler'
import { BlockRequest } from '../store/block-request'
import type { BackingStore } from '../store/backing-store'
import { IO_KIND_NAMES, IoKind } from '../store/ordering'
import { CopyBatch, type FileMap } from '../native/memory'
import type { CommandResult } from './commands'
import type { Target } from './target'
import { frameAt, type MappedReply, type TxQueue } from './transmit'
import { now } from './latency'

const EIO = Object.assign(new Error('the request could not be handed to the disk'), { code: 'EIO' })

/** A disk request and its reply slot; one per slot, reused. */
class Exchange extends BlockRequest implements MappedReply {
  readonly plan: AtaPlan = emptyAtaPlan()
  step = AtaStep.Reply
  target: Target | null = null
  store: BackingStore | null = null
  /** Its buffer is the receive ring (a write to an inline store, this batch). */
  borrowsRing = false
  /** While its reply waits to be sent with data from a map: whose read it is. */
  mappedFor: Target | null = null
  /** When it was received (latency.ts clock). */
  started = 0

  constructor (private readonly exchanges: AtaExchanges, readonly slot: number) {
    super()
  }

  ioComplete (err: NodeJS.ErrnoException | null): void {
    this.exchanges.complete(this, err)
  }

  override sendFromMap (map: FileMap): boolean {
    return this.exchanges.sendFromMap(this, map)
  }

  override fixFromFile (fd: number): boolean {
    return this.exchanges.fixFromFile(this, fd)
  }

  mappedSent (): void {
    const store = this.store
    this.store = null
    this.mappedFor = null
    store?.mappedReadDone(this)
  }

  mappedFailed (errno: number): void {
    this.exchanges.mappedFailed(this, errno)
  }
}

export interface ExchangeCounters {
  /** Writes whose ring data was copied out at the end of their batch (they waited for an earlier request). */
  ringCopies: number
  /** Requests found still using the ring after their batch: a broken contract, never expected. */
  ringViolations: number
}

export class AtaExchanges implements ExchangeCounters {
  ringCopies = 0
  ringViolations = 0
  /** Requests handed to stores and not yet answered. */
  outstanding = 0

  private readonly exchanges: Array<Exchange | undefined>
  /** Requests of the batch being read, submitted together at its end. */
  private readonly staged: Array<Exchange | undefined>
  private stagedCount = 0
  /** Write data moved out of the ring into reply slots, once per batch (one native call). */
  private readonly copies: CopyBatch
  /** Writes of this batch whose buffer is the ring. */
  private readonly borrowing: Exchange[] = []
  private rx: Buffer | null = null
  private drained: (() => void) | null = null
  /**
   * Latency is timed with one clock read when a batch opens and one when it closes:
   * requests received in a batch share its start time, and those answered inside it
   * (mapped reads, files in RAM) are recorded at its close. A clock read per request
   * was a few per cent of the packet loop.
   */
  private batchStart = 0
  private readonly answeredTargets: Target[] = []
  private readonly answeredStarted: Float64Array

  /** `onFault`: a disk request failed (the reply is an ATA error all the same); `warn`: where our own failures go. */
  constructor (
    private readonly tx: TxQueue, slots: number, batchSize: number,
    private readonly onFault: (t: Target, store: BackingStore, op: string, err: NodeJS.ErrnoException, offset: number) => void = () => {},
    private readonly warn: (message: string) => void = () => {},
  ) {
    this.exchanges = new Array(slots)
    this.staged = new Array(batchSize)
    this.copies = new CopyBatch(batchSize)
    this.answeredStarted = new Float64Array(slots)
  }

  /** Opens the scope in which `rx` (the receive ring) may be handed to inline stores. */
  openBatch (rx: Buffer): void {
    this.rx = rx
    this.batchStart = now()
  }

  /**
   * Queues the disk part of an ATA request planned in `result`, whose reply is being
   * built in `slot`; `rx` holds the request.
   */
  stage (slot: number, t: Target, result: CommandResult, rx: Buffer): void {
    const ex = (this.exchanges[slot] ??= new Exchange(this, slot))
    const plan = ex.plan
    const p = result.plan
    plan.status = p.status
    plan.error = p.error
    plan.sectorCount = p.sectorCount
    plan.dataLength = p.dataLength
    plan.offset = p.offset
    plan.length = p.length
    ex.step = result.step
    ex.started = this.rx !== null ? this.batchStart : now()
    ex.target = t
    ex.store = t.disk.store
    // The plan is in the target's sectors; the store's are the backing's (the slice starts further in).
    ex.offset = plan.offset + t.disk.offsetBytes
    ex.length = plan.length
    ex.buffer = this.tx.arena
    ex.bufferOffset = frameAt(slot) + ATA_HEADER_LENGTH
    ex.borrowsRing = false
    let copied = false
    switch (result.step) {
      case AtaStep.Read:
        ex.kind = IoKind.Read
        break
      case AtaStep.Flush:
        ex.kind = IoKind.Flush
        break
      default:
        ex.kind = IoKind.Write
        if (ex.store.inline && rx === this.rx) {
          // Done inside the kick that ends this batch: written straight from the ring.
          ex.buffer = rx
          ex.bufferOffset = result.dataOffset
          ex.borrowsRing = true
          this.borrowing.push(ex)
        } else {
          if (!this.copies.add(ex.bufferOffset, result.dataOffset, plan.length)) {
            this.commit()
            this.copies.add(ex.bufferOffset, result.dataOffset, plan.length)
          }
          copied = true
        }
    }
    t.busy++
    // Staged only behind a copy still to be made (or what is staged behind one), so
    // stores see requests in arrival order; the rest go at once (the disk engine still
    // submits them together, at the kick that ends the batch).
    if (!copied && this.stagedCount === 0) return this.hand(ex)
    if (this.stagedCount === this.staged.length) this.commit()
    this.staged[this.stagedCount++] = ex
  }

  /** Gives a request to its store; one that cannot be handed over (a bug) is answered with an ATA error. */
  private hand (ex: Exchange): void {
    this.outstanding++
    try {
      ex.store!.submit(ex)
    } catch (err) {
      if (ex.target !== null) this.complete(ex, EIO)
      throw err
    }
  }

  /**
   * Ends the staging: copies the batch's write data out of the ring, then hands the
   * requests to their stores in arrival order. A request that cannot be handed over
   * (a bug) is answered with an ATA error; the others go on.
   */
  commit (): void {
    const count = this.stagedCount
    this.stagedCount = 0
    let copyFailure: Error | null = null
    if (this.rx !== null) {
      try {
        this.copies.run(this.tx.arena, this.rx)
      } catch (err) {
        copyFailure = err as Error
      }
    }
    let failure: Error | null = null
    for (let i = 0; i < count; i++) {
      const ex = this.staged[i]!
      this.staged[i] = undefined
      if (copyFailure !== null && ex.kind === IoKind.Write && !ex.borrowsRing) {
        this.outstanding++
        this.complete(ex, Object.assign(new Error(`write data not copied: ${copyFailure.message}`), { code: 'EIO' }))
        continue
      }
      try {
        this.hand(ex)
      } catch (err) {
        failure ??= err as Error
      }
    }
    if (failure !== null || copyFailure !== null) throw failure ?? copyFailure
  }

  /**
   * Closes the batch scope: a write that still needs the ring's bytes (it waits for an
   * earlier request) gets them copied into its slot; the ring then goes back to the kernel.
   */
  closeBatch (): void {
    const borrowing = this.borrowing
    for (let i = 0; i < borrowing.length; i++) {
      const ex = borrowing[i]
      if (!ex.borrowsRing) continue
      ex.borrowsRing = false
      if (ex.target === null) continue // done, as nearly always
      const to = frameAt(ex.slot) + ATA_HEADER_LENGTH
      ex.buffer.copy(this.tx.arena, to, ex.bufferOffset, ex.bufferOffset + ex.length)
      if (ex.blockers > 0) this.ringCopies++
      else this.ringViolations++
      ex.buffer = this.tx.arena
      ex.bufferOffset = to
    }
    borrowing.length = 0
    this.rx = null
    this.recordAnswered()
  }

  /** A request of `t` received at `started` is answered: timed now, or at the batch's close if inside one. */
  private answered (t: Target, started: number): void {
    const n = this.answeredTargets.length
    if (this.rx === null || n === this.answeredStarted.length) return t.latency.record(started, now())
    this.answeredTargets.push(t)
    this.answeredStarted[n] = started
  }

  private recordAnswered (): void {
    const targets = this.answeredTargets
    if (targets.length === 0) return
    const end = now()
    for (let i = 0; i < targets.length; i++) targets[i].latency.record(this.answeredStarted[i], end)
    targets.length = 0
  }

  /** Tells the engine of a failed request; the reply (an ATA error) goes whatever happens there. */
  private reportFault (t: Target, store: BackingStore, op: string, err: NodeJS.ErrnoException, offset: number): void {
    try {
      this.onFault(t, store, op, err, offset)
    } catch (e) {
      this.warn(`${t.name}: reporting a failed ${op} (${err.message}): ${(e as Error).stack}`)
    }
  }

  /** The disk answered: finish the reply and queue it. */
  complete (ex: Exchange, err: NodeJS.ErrnoException | null): void {
    const t = ex.target
    if (t === null) return
    const store = ex.store
    ex.target = null
    ex.store = null
    ex.borrowsRing = false
    t.busy--
    this.outstanding--
    const plan = ex.plan
    const sectors = plan.length / SECTOR_SIZE
    if (err !== null) {
      t.errors++
      if (store !== null) this.reportFault(t, store, IO_KIND_NAMES[ex.kind], err, ex.offset)
    } else if (ex.step === AtaStep.Read) {
      t.reads++
      t.readSectors += sectors
    } else if (ex.step === AtaStep.Write) {
      t.writes++
      t.writeSectors += sectors
    } else {
      t.flushes++
    }
    this.answered(t, ex.started)
    completeAta(ex.step, err !== null, plan)
    encodeAtaStatus(this.tx.arena, frameAt(ex.slot), plan.status, plan.error, plan.sectorCount)
    this.tx.queue(ex.slot, ATA_HEADER_LENGTH + plan.dataLength)
    this.tx.requestFlush()
    this.checkDrained()
  }

  /** A read of a file in RAM answered from its map: the reply goes now, the kernel copies the data. */
  sendFromMap (ex: Exchange, map: FileMap): boolean {
    const t = ex.target!
    ex.target = null
    ex.mappedFor = t
    t.busy--
    this.outstanding--
    t.reads++
    t.readSectors += ex.length / SECTOR_SIZE
    this.answered(t, ex.started)
    const plan = ex.plan
    completeAta(AtaStep.Read, false, plan)
    encodeAtaStatus(this.tx.arena, frameAt(ex.slot), plan.status, plan.error, plan.sectorCount)
    this.tx.queueMapped(ex.slot, ex, map, ex.offset, ex.length)
    this.tx.requestFlush()
    this.checkDrained()
    return true
  }

  /** A later write is coming: the mapped read's data goes into its slot now (pread: a file in RAM never waits). */
  fixFromFile (ex: Exchange, fd: number): boolean {
    const at = frameAt(ex.slot) + ATA_HEADER_LENGTH
    let bytes = -1
    try {
      bytes = fs.readSync(fd, this.tx.arena, at, ex.length, ex.offset)
    } catch {}
    const ok = bytes === ex.length
    const t = ex.mappedFor
    const store = ex.store
    if (!ok) this.encodeReadError(ex)
    this.tx.unmap(ex.slot, ATA_HEADER_LENGTH + (ok ? ex.length : 0))
    ex.store = null
    ex.mappedFor = null
    if (!ok && t !== null && store !== null) {
      this.reportFault(t, store, 'read', Object.assign(new Error(`short read at byte ${ex.offset}`), { code: 'EIO', short: true }), ex.offset)
    }
    return ok
  }

  /** A mapped reply could not be sent (its range left the file): it becomes an ATA error. */
  mappedFailed (ex: Exchange, errno: number): void {
    const store = ex.store
    const t = ex.mappedFor
    ex.store = null
    this.encodeReadError(ex)
    ex.mappedFor = null
    this.tx.queue(ex.slot, ATA_HEADER_LENGTH)
    if (store !== null) {
      store.mappedReadDone(ex)
      if (t !== null) this.reportFault(t, store, 'read', Object.assign(new Error(`no data at byte ${ex.offset}: the file ends before it`), { code: 'EFAULT', short: true, errno: -errno }), ex.offset)
    }
  }

  private encodeReadError (ex: Exchange): void {
    const plan = ex.plan
    completeAta(AtaStep.Read, true, plan)
    encodeAtaStatus(this.tx.arena, frameAt(ex.slot), plan.status, plan.error, plan.sectorCount)
    // Counted as a read when it was answered from the map; it is an error after all.
    const t = ex.mappedFor
    if (t !== null) {
      t.reads--
      t.readSectors -= ex.length / SECTOR_SIZE
      t.errors++
    }
  }

  /** Resolves once no request is with a store any more (the arena may then be freed). */
  drain (): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve()
    return new Promise<void>(resolve => { this.drained = resolve })
  }

  private checkDrained (): void {
    if (this.outstanding === 0 && this.drained !== null) {
      const resolve = this.drained
      this.drained = null
      resolve()
    }
  }
}
