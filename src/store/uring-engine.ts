import os from 'node:os'
import createDebug from 'debug'
import type { BlockRequest } from './block-request'
import type { DiskEngine, DiskFile } from './disk-engine'
import { IO_KIND_NAMES, IoKind } from './ordering'
import { Uring, type UringCounters, type UringLayout } from '../native/uring'
import type { FileMap } from '../native/memory'

const debug = createDebug('kvblade:store')

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

function errnoError (errno: number, req: BlockRequest): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`
  return Object.assign(new Error(`${code}: ${IO_KIND_NAMES[req.kind]} at byte ${req.offset} failed`), { code, errno: -errno })
}

/** An op column value of the addon's layout. */
type Op = number

/** A request that found its batch full; rare, so allocating for it is fine. */
interface Waiting { op: Op, file: DiskFile, req: BlockRequest, done: number }

/** The map column for a row copying into `map`: 1 + its index in the batch's maps. */
function mapColumnFor (maps: FileMap[], map: FileMap): number {
  // Almost always one map per batch (one busy target): a scan beats any index.
  let i = maps.indexOf(map)
  if (i < 0) i = maps.push(map) - 1
  return i + 1
}

/**
 * Requests on files in RAM, performed synchronously by runInline() at the next kick.
 * Two of these alternate, so completions can queue more while a batch is answered.
 */
class InlineBatch {
  readonly rows: Float64Array
  readonly results: Int32Array
  readonly requests: Array<BlockRequest | undefined>
  /** The mappings this batch's write rows copy into (row map column = 1 + index). */
  readonly maps: FileMap[] = []
  count = 0

  constructor (readonly capacity: number, rowWidth: number) {
    this.rows = new Float64Array(capacity * rowWidth)
    this.results = new Int32Array(capacity)
    this.requests = new Array(capacity)
  }
}

/** The native ring as the engine uses it; tests substitute one that fails. */
export type UringBinding = Pick<Uring, 'capacity' | 'ops' | 'tags' | 'doneTags' | 'doneResults' | 'counters' | 'layout' |
  'registerArena' | 'unregisterArena' | 'submit' | 'runInline' | 'reap' | 'onComplete' | 'close'>

/**
 * Disk I/O on io_uring: the requests of a receive batch are written as rows into memory
 * the native ring reads, and one io_uring_enter submits them all. Reads that hit the page
 * cache complete inside that call and are answered in the same turn; the others complete
 * later and wake the loop through an eventfd. No thread hand-off, no per-request object.
 * Requests on files in RAM are done inline instead (see DiskEngine).
 */
export class UringEngine implements DiskEngine {
  readonly inline = true
  /** The request each tag stands for while it is in the ring. */
  private readonly requests: Array<BlockRequest | undefined>
  private readonly freeTags: Int32Array
  private freeCount: number
  /** Registered arenas by buffer (in practice a transmit arena and a receive ring per interface). */
  private readonly arenas = new Map<Buffer, number>()
  /** Arenas to unregister once the ring no longer uses them, with who waits for that. */
  private readonly releasing = new Map<Buffer, () => void>()
  /** Rows filled and not yet submitted. */
  private queued = 0
  private readonly waiting: Waiting[] = []
  private inlineBatch: InlineBatch
  private spareBatch: InlineBatch
  private pumping = false
  private kickScheduled = false
  private readonly kickLater = (): void => {
    this.kickScheduled = false
    this.kick()
  }

  private readonly layout: UringLayout
  private readonly rowWidth: number
  private readonly opRead: Op
  private readonly opWrite: Op
  private readonly opSync: Op

  /** `warn`: where failures of the ring itself are reported (the CLI prints them on stderr). */
  constructor (private readonly ring: UringBinding, private readonly warn: (message: string) => void = msg => debug('%s', msg)) {
    this.layout = ring.layout
    this.rowWidth = ring.layout.rowWidth
    this.opRead = ring.layout.ops.read
    this.opWrite = ring.layout.ops.write
    this.opSync = ring.layout.ops.fdatasync
    this.requests = new Array(ring.capacity)
    this.freeTags = new Int32Array(ring.capacity)
    for (let i = 0; i < ring.capacity; i++) this.freeTags[i] = i
    this.freeCount = ring.capacity
    this.inlineBatch = new InlineBatch(ring.capacity, this.rowWidth)
    this.spareBatch = new InlineBatch(ring.capacity, this.rowWidth)
    ring.onComplete(() => this.kick())
  }

  /** The ring's live counters (requests, submits, writes copied into maps...). */
  get counters (): UringCounters {
    return this.ring.counters
  }

  /** Throws (with .code) where io_uring is not available. */
  static open (entries = 1024, warn?: (message: string) => void): UringEngine {
    return new UringEngine(Uring.open(entries), warn)
  }

  transfer (file: DiskFile, req: BlockRequest, done: number): void {
    this.queue(req.kind === IoKind.Read ? this.opRead : this.opWrite, file, req, done)
  }

  sync (file: DiskFile, req: BlockRequest): void {
    this.queue(this.opSync, file, req, 0)
  }

  private arenaId (buf: Buffer): number {
    let id = this.arenas.get(buf)
    if (id === undefined) this.arenas.set(buf, id = this.ring.registerArena(buf))
    return id
  }

  private writeRow (rows: Float64Array, row: number, op: Op, file: DiskFile, req: BlockRequest, done: number, mapColumn: number): void {
    const at = row * this.rowWidth
    const c = this.layout.columns
    rows[at + c.op] = op
    rows[at + c.fd] = file.fd
    rows[at + c.map] = mapColumn
    rows[at + c.async] = file.async ? 1 : 0
    if (op === this.opSync) {
      rows[at + c.arena] = 0
      rows[at + c.offset] = 0
      rows[at + c.length] = 0
      rows[at + c.position] = 0
    } else {
      rows[at + c.arena] = this.arenaId(req.buffer)
      rows[at + c.offset] = req.bufferOffset + done
      rows[at + c.length] = req.length - done
      rows[at + c.position] = req.offset + done
    }
  }

  private queue (op: Op, file: DiskFile, req: BlockRequest, done: number): void {
    const inline = file.inline
    if (inline && this.inlineBatch.count < this.inlineBatch.capacity) {
      const batch = this.inlineBatch
      batch.requests[batch.count] = req
      const map = op === this.opWrite ? file.writeMap : null
      this.writeRow(batch.rows, batch.count++, op, file, req, done, map === null ? 0 : mapColumnFor(batch.maps, map))
    } else if (inline || this.freeCount === 0) {
      this.waiting.push({ op, file, req, done })
    } else {
      const tag = this.freeTags[--this.freeCount]
      this.requests[tag] = req
      const row = this.queued++
      this.writeRow(this.ring.ops, row, op, file, req, done, 0)
      this.ring.tags[row] = tag
    }
    // The packet loop kicks after every batch; this covers requests started elsewhere.
    if (!this.pumping && !this.kickScheduled) {
      this.kickScheduled = true
      setImmediate(this.kickLater)
    }
  }

  /**
   * Submits what is queued and answers whatever has completed, until neither moves. A
   * failure of the ring itself fails the requests it concerns (ATA errors upstream) and
   * is logged; it never reaches the caller, whose batch must still be answered.
   */
  kick (): void {
    if (this.pumping) return
    this.pumping = true
    try {
      for (;;) {
        while (this.waiting.length > 0 && (this.waiting[0].file.inline ? this.inlineBatch.count < this.inlineBatch.capacity : this.freeCount > 0)) {
          const w = this.waiting.shift()!
          this.queue(w.op, w.file, w.req, w.done)
        }
        const ranInline = this.runInline()
        const submitted = this.submitQueued()
        // Nothing in the ring (files in RAM only): no call into C++ to find nothing.
        const n = this.ring.counters.inFlight > 0 ? this.reap() : 0
        for (let i = 0; i < n; i++) this.complete(this.ring.doneTags[i], this.ring.doneResults[i])
        if (n === 0 && submitted === 0 && ranInline === 0) break
      }
      if (this.releasing.size > 0) this.finishReleases()
    } finally {
      this.pumping = false
    }
  }

  private reap (): number {
    try {
      return this.ring.reap()
    } catch (err) {
      debug('io_uring reap failed: %s', (err as Error).message)
      return 0
    }
  }

  /** Submits the queued rows; returns how many went. Rows the ring refuses fail their requests. */
  private submitQueued (): number {
    if (this.queued === 0) return 0
    let submitted: number
    try {
      submitted = this.ring.submit(this.queued)
    } catch (err) {
      // Not "the ring is full" (that is a short count): the ring refused the batch
      // itself (a bad row is a bug here, ENOMEM, EBADF after close...). Fail the rows,
      // so every request gets its answer, and carry on.
      const e = err as NodeJS.ErrnoException
      this.warn(`io_uring submit failed, ${this.queued} disk requests fail: ${e.message}`)
      const failed = this.queued
      this.queued = 0
      for (let row = 0; row < failed; row++) this.complete(this.ring.tags[row], -(e.errno !== undefined ? Math.abs(e.errno) : os.constants.errno.EIO))
      return failed
    }
    if (submitted < this.queued) {
      this.ring.ops.copyWithin(0, submitted * this.rowWidth, this.queued * this.rowWidth)
      this.ring.tags.copyWithin(0, submitted, this.queued)
    }
    this.queued -= submitted
    return submitted
  }

  /** Performs the inline batch; returns how many requests it answered. */
  private runInline (): number {
    const batch = this.inlineBatch
    const count = batch.count
    if (count === 0) return 0
    // Completions may queue more: they go to the other batch.
    this.inlineBatch = this.spareBatch
    this.spareBatch = batch
    batch.count = 0
    let failure: NodeJS.ErrnoException | null = null
    try {
      this.ring.runInline(batch.rows, batch.results, count, batch.maps)
    } catch (err) {
      failure = err as NodeJS.ErrnoException
      this.warn(`inline disk batch failed, ${count} disk requests fail: ${failure.message}`)
    }
    batch.maps.length = 0
    const eio = -os.constants.errno.EIO
    for (let i = 0; i < count; i++) {
      const req = batch.requests[i]!
      batch.requests[i] = undefined
      this.finish(req, failure === null ? batch.results[i] : eio)
    }
    return count
  }

  private complete (tag: number, result: number): void {
    const req = this.requests[tag]!
    this.requests[tag] = undefined
    this.freeTags[this.freeCount++] = tag
    this.finish(req, result)
  }

  /** Answers one request. A throw from its owner (a bug) is logged: it must not strand the others answered with it. */
  private finish (req: BlockRequest, result: number): void {
    try {
      if (req.kind === IoKind.Flush) req.onSync(result < 0 ? errnoError(-result, req) : null)
      else if (result < 0) req.onTransfer(errnoError(-result, req), 0)
      else req.onTransfer(null, result)
    } catch (err) {
      this.warn(`answering a ${IO_KIND_NAMES[req.kind]} at byte ${req.offset} failed: ${(err as Error).stack}`)
    }
  }

  release (buffer: Buffer): Promise<void> {
    if (!this.arenas.has(buffer)) return Promise.resolve()
    return new Promise<void>(resolve => {
      this.releasing.set(buffer, resolve)
      this.finishReleases()
    })
  }

  /** Unregisters the arenas being released that the ring no longer uses. */
  private finishReleases (): void {
    for (const [buffer, resolve] of this.releasing) {
      try {
        this.ring.unregisterArena(this.arenas.get(buffer)!)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EBUSY') continue // requests still use it: after they complete
        debug('unregistering an arena: %s', (err as Error).message)
      }
      this.arenas.delete(buffer)
      this.releasing.delete(buffer)
      resolve()
    }
  }

  close (): void {
    this.ring.close()
    this.arenas.clear()
    for (const resolve of this.releasing.values()) resolve()
    this.releasing.clear()
  }
}
