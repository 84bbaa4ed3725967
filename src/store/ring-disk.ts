import os from 'node:os'
import type { BlockRequest } from './backing-store'
import type { DiskEngine } from './disk-engine'
import { DISK_ROW, DiskCol, DiskOp, DiskRing } from './disk-ring'
import { IoKind } from './ordering'

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

function errnoError (errno: number, req: BlockRequest): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`
  return Object.assign(new Error(`${code}: ${['read', 'write', 'flush'][req.kind]} at byte ${req.offset} failed`), { code, errno: -errno })
}

/** A request that found the ring full; rare, so allocating for it is fine. */
interface Waiting { op: DiskOp, fd: number, req: BlockRequest, done: number }

/**
 * Disk I/O on io_uring: the requests of a receive batch are written as rows into memory
 * the native ring reads, and one io_uring_enter submits them all. Reads that hit the page
 * cache complete inside that call and are answered in the same turn; the others complete
 * later and wake the loop through an eventfd. No thread hand-off, no per-request object.
 */
export class RingDisk implements DiskEngine {
  /** The request each tag stands for while it is in the ring. */
  private readonly requests: Array<BlockRequest | undefined>
  private readonly freeTags: Int32Array
  private freeCount: number
  /** Registered arenas by buffer (in practice one transmit arena per interface). */
  private readonly arenas = new Map<Buffer, number>()
  /** Rows filled and not yet submitted. */
  private queued = 0
  private readonly waiting: Waiting[] = []
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
    ring.onComplete(() => this.kick())
  }

  /** Throws (with .code) where io_uring is not available. */
  static open (entries = 1024): RingDisk {
    return new RingDisk(DiskRing.open(entries))
  }

  transfer (fd: number, req: BlockRequest, done: number): void {
    this.queue(req.kind === IoKind.Read ? DiskOp.Read : DiskOp.Write, fd, req, done)
  }

  sync (fd: number, req: BlockRequest): void {
    this.queue(DiskOp.Fdatasync, fd, req, 0)
  }

  private arenaId (buf: Buffer): number {
    let id = this.arenas.get(buf)
    if (id === undefined) this.arenas.set(buf, id = this.ring.registerArena(buf))
    return id
  }

  private queue (op: DiskOp, fd: number, req: BlockRequest, done: number): void {
    if (this.freeCount === 0) {
      this.waiting.push({ op, fd, req, done })
    } else {
      const tag = this.freeTags[--this.freeCount]
      this.requests[tag] = req
      const row = this.queued++
      const ops = this.ring.ops
      const at = row * DISK_ROW
      ops[at + DiskCol.Op] = op
      ops[at + DiskCol.Fd] = fd
      if (op === DiskOp.Fdatasync) {
        ops[at + DiskCol.Arena] = 0
        ops[at + DiskCol.Offset] = 0
        ops[at + DiskCol.Length] = 0
        ops[at + DiskCol.Position] = 0
      } else {
        ops[at + DiskCol.Arena] = this.arenaId(req.buffer)
        ops[at + DiskCol.Offset] = req.bufferOffset + done
        ops[at + DiskCol.Length] = req.length - done
        ops[at + DiskCol.Position] = req.offset + done
      }
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
        while (this.waiting.length > 0 && this.freeCount > 0) {
          const w = this.waiting.shift()!
          this.queue(w.op, w.fd, w.req, w.done)
        }
        let submitted = 0
        if (this.queued > 0) {
          submitted = this.ring.submit(this.queued)
          if (submitted < this.queued) {
            this.ring.ops.copyWithin(0, submitted * DISK_ROW, this.queued * DISK_ROW)
            this.ring.tags.copyWithin(0, submitted, this.queued)
          }
          this.queued -= submitted
        }
        const n = this.ring.reap()
        for (let i = 0; i < n; i++) this.complete(this.ring.doneTags[i], this.ring.doneResults[i])
        if (n === 0 && submitted === 0) break
      }
    } finally {
      this.pumping = false
    }
  }

  private complete (tag: number, result: number): void {
    const req = this.requests[tag]!
    this.requests[tag] = undefined
    this.freeTags[this.freeCount++] = tag
    if (req.kind === IoKind.Flush) req.onSync(result < 0 ? errnoError(-result, req) : null)
    else if (result < 0) req.onTransfer(errnoError(-result, req), 0)
    else req.onTransfer(null, result)
  }

  close (): void {
    this.ring.close()
  }
}
