import os from 'node:os'
import type { BlockRequest } from './backing-store'
import type { DiskEngine } from './disk-engine'
import { DISK_ROW, DiskCol, DiskOp, DiskRing, type DiskRingCounters } from './disk-ring'
import { IO_KIND_NAMES, IoKind } from './ordering'
import type { FileMap } from '../net/memory'

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

function errnoError (errno: number, req: BlockRequest): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`
  return Object.assign(new Error(`${code}: ${IO_KIND_NAMES[req.kind]} at byte ${req.offset} failed`), { code, errno: -errno })
}

/** A request that found the ring full; rare, so allocating for it is fine. */
interface Waiting { op: DiskOp, fd: number, req: BlockRequest, done: number, now: boolean, map: FileMap | null }

/** The Map column for a row copying into `map`: 1 + its index in the batch's maps. */
function mapColumnFor (maps: FileMap[], map: FileMap): number {
  // Almost always one map per batch (one busy target): a scan beats any index.
  let i = maps.indexOf(map)
  if (i < 0) i = maps.push(map) - 1
  return i + 1
}

/**
 * Requests on memory-backed files, performed synchronously by runNow() at the next kick.
 * Two of these alternate, so completions can queue more while a batch is being answered.
 */
class NowBatch {
  readonly rows: Float64Array
  readonly results: Int32Array
  readonly requests: Array<BlockRequest | undefined>
  /** The mappings this batch's write rows copy into (row Map column = 1 + index). */
  readonly maps: FileMap[] = []
  count = 0

  constructor (readonly capacity: number) {
    this.rows = new Float64Array(capacity * DISK_ROW)
    this.results = new Int32Array(capacity)
    this.requests = new Array(capacity)
  }
}

/**
 * Disk I/O on io_uring: the requests of a receive batch are written as rows into memory
 * the native ring reads, and one io_uring_enter submits them all. Reads that hit the page
 * cache complete inside that call and are answered in the same turn; the others complete
 * later and wake the loop through an eventfd. No thread hand-off, no per-request object.
 */
export class RingDisk implements DiskEngine {
  readonly memoryInline = true
  /** The request each tag stands for while it is in the ring. */
  private readonly requests: Array<BlockRequest | undefined>
  private readonly freeTags: Int32Array
  private freeCount: number
  /** Registered arenas by buffer (in practice one transmit arena per interface). */
  private readonly arenas = new Map<Buffer, number>()
  /** Rows filled and not yet submitted. */
  private queued = 0
  private readonly waiting: Waiting[] = []
  private now: NowBatch
  private spare: NowBatch
  private pumping = false
  private kickScheduled = false
  private readonly kickLater = (): void => {
    this.kickScheduled = false
    this.kick()
  }

  private constructor (private readonly ring: DiskRing) {
    this.requests = new Array(ring.capacity)
    this.freeTags = new Int32Array(ring.capacity)
    for (let i = 0; i < ring.capacity; i++) this.freeTags[i] = i
    this.freeCount = ring.capacity
    this.now = new NowBatch(ring.capacity)
    this.spare = new NowBatch(ring.capacity)
    ring.onComplete(() => this.kick())
  }

  /** The ring's live counters (requests, submits, writes copied into maps...). */
  get counters (): DiskRingCounters {
    return this.ring.counters
  }

  /** Throws (with .code) where io_uring is not available. */
  static open (entries = 1024): RingDisk {
    return new RingDisk(DiskRing.open(entries))
  }

  transfer (fd: number, req: BlockRequest, done: number, memory: boolean, map: FileMap | null): void {
    if (req.kind === IoKind.Read) this.queue(DiskOp.Read, fd, req, done, memory, null)
    else this.queue(DiskOp.Write, fd, req, done, memory, map)
  }

  sync (fd: number, req: BlockRequest, memory: boolean): void {
    this.queue(DiskOp.Fdatasync, fd, req, 0, memory, null)
  }

  private arenaId (buf: Buffer): number {
    let id = this.arenas.get(buf)
    if (id === undefined) this.arenas.set(buf, id = this.ring.registerArena(buf))
    return id
  }

  private writeRow (rows: Float64Array, row: number, op: DiskOp, fd: number, req: BlockRequest, done: number, mapColumn: number): void {
    const at = row * DISK_ROW
    rows[at + DiskCol.Op] = op
    rows[at + DiskCol.Fd] = fd
    rows[at + DiskCol.Map] = mapColumn
    if (op === DiskOp.Fdatasync) {
      rows[at + DiskCol.Arena] = 0
      rows[at + DiskCol.Offset] = 0
      rows[at + DiskCol.Length] = 0
      rows[at + DiskCol.Position] = 0
    } else {
      rows[at + DiskCol.Arena] = this.arenaId(req.buffer)
      rows[at + DiskCol.Offset] = req.bufferOffset + done
      rows[at + DiskCol.Length] = req.length - done
      rows[at + DiskCol.Position] = req.offset + done
    }
  }

  private queue (op: DiskOp, fd: number, req: BlockRequest, done: number, now: boolean, map: FileMap | null): void {
    if (now && this.now.count < this.now.capacity) {
      const batch = this.now
      batch.requests[batch.count] = req
      this.writeRow(batch.rows, batch.count++, op, fd, req, done, map === null ? 0 : mapColumnFor(batch.maps, map))
    } else if (now || this.freeCount === 0) {
      this.waiting.push({ op, fd, req, done, now, map })
    } else {
      const tag = this.freeTags[--this.freeCount]
      this.requests[tag] = req
      const row = this.queued++
      this.writeRow(this.ring.ops, row, op, fd, req, done, 0)
      this.ring.tags[row] = tag
    }
    // The packet loop kicks after every batch; this covers requests started elsewhere.
    if (!this.pumping && !this.kickScheduled) {
      this.kickScheduled = true
      setImmediate(this.kickLater)
    }
  }

  /** Submits what is queued and answers whatever has completed, until neither moves. */
  kick (): void {
    if (this.pumping) return
    this.pumping = true
    try {
      for (;;) {
        while (this.waiting.length > 0 && (this.waiting[0].now ? this.now.count < this.now.capacity : this.freeCount > 0)) {
          const w = this.waiting.shift()!
          this.queue(w.op, w.fd, w.req, w.done, w.now, w.map)
        }
        const ranNow = this.runNow()
        let submitted = 0
        if (this.queued > 0) {
          submitted = this.ring.submit(this.queued)
          if (submitted < this.queued) {
            this.ring.ops.copyWithin(0, submitted * DISK_ROW, this.queued * DISK_ROW)
            this.ring.tags.copyWithin(0, submitted, this.queued)
          }
          this.queued -= submitted
        }
        // Nothing in the ring (files in RAM only): no call into C++ to find nothing.
        const n = this.ring.counters.inFlight > 0 ? this.ring.reap() : 0
        for (let i = 0; i < n; i++) this.complete(this.ring.doneTags[i], this.ring.doneResults[i])
        if (n === 0 && submitted === 0 && ranNow === 0) break
      }
    } finally {
      this.pumping = false
    }
  }

  /** Performs the memory-backed batch; returns how many requests it answered. */
  private runNow (): number {
    const batch = this.now
    const count = batch.count
    if (count === 0) return 0
    this.ring.runNow(batch.rows, batch.results, count, batch.maps)
    // Completions may queue more: they go to the other batch.
    this.now = this.spare
    this.spare = batch
    batch.count = 0
    batch.maps.length = 0
    for (let i = 0; i < count; i++) {
      const req = batch.requests[i]!
      batch.requests[i] = undefined
      this.finish(req, batch.results[i])
    }
    return count
  }

  private complete (tag: number, result: number): void {
    const req = this.requests[tag]!
    this.requests[tag] = undefined
    this.freeTags[this.freeCount++] = tag
    this.finish(req, result)
  }

  private finish (req: BlockRequest, result: number): void {
    if (req.kind === IoKind.Flush) req.onSync(result < 0 ? errnoError(-result, req) : null)
    else if (result < 0) req.onTransfer(errnoError(-result, req), 0)
    else req.onTransfer(null, result)
  }

  close (): void {
    this.ring.close()
  }
}
