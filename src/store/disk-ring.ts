/**
 * Batched disk I/O on io_uring. JS fills submission rows in `ops`/`tags`,
 * submit() queues them with one io_uring_enter, reap() copies completions
 * into `doneTags`/`doneResults`: one native call per batch, never per
 * request. Reads that hit the page cache complete inside submit(), so call
 * reap() right after it; onComplete() covers the rest.
 *
 * If io_uring is unavailable, open() throws with .code (ENOSYS, EPERM,
 * ENOMEM...) and the caller falls back to the thread pool.
 */
import { loadNative, type NativeDiskRing } from '../net/native'
import type { FileMap } from '../net/memory'

export const enum DiskOp { Read = 0, Write = 1, Fdatasync = 2 }

/** Width of one submission row in `ops` (see disk_ring.cc). */
export const DISK_ROW = 7
/**
 * Column indices within a row: ops[i * DISK_ROW + DiskCol.X]. Map, for a write row
 * given to runNow(): 1 + the index in its `maps` of the mapping to copy into, or 0 for
 * pwrite; submit() ignores it.
 */
export const enum DiskCol { Op = 0, Fd = 1, Arena = 2, Offset = 3, Length = 4, Position = 5, Map = 6 }

export interface DiskRingCounters {
  submitted: number
  completed: number
  submitCalls: number
  inFlight: number
  /** Requests performed synchronously by runNow(). */
  ranNow: number
  /** runNow() writes copied into a map of their file. */
  mapped: number
  /** runNow() writes given a map that pwrite did instead (the file shrank under it, the map was closed). */
  mapFallbacks: number
}

// Index of each counter in the Float64Array the addon writes (see disk_ring.cc).
const SUBMITTED = 0
const COMPLETED = 1
const SUBMIT_CALLS = 2
const IN_FLIGHT = 3
const RAN_NOW = 4
const MAPPED = 5
const MAP_FALLBACKS = 6

/** Read-only getters over the shared array: reading costs no native call. */
class LiveCounters implements DiskRingCounters {
  constructor (private readonly a: Float64Array) {}
  get submitted (): number { return this.a[SUBMITTED] }
  get completed (): number { return this.a[COMPLETED] }
  get submitCalls (): number { return this.a[SUBMIT_CALLS] }
  get inFlight (): number { return this.a[IN_FLIGHT] }
  get ranNow (): number { return this.a[RAN_NOW] }
  get mapped (): number { return this.a[MAPPED] }
  get mapFallbacks (): number { return this.a[MAP_FALLBACKS] }
  [Symbol.for('nodejs.util.inspect.custom')] (): DiskRingCounters { return this.toJSON() }
  toJSON (): DiskRingCounters {
    return {
      submitted: this.submitted,
      completed: this.completed,
      submitCalls: this.submitCalls,
      inFlight: this.inFlight,
      ranNow: this.ranNow,
      mapped: this.mapped,
      mapFallbacks: this.mapFallbacks,
    }
  }
}

export class DiskRing {
  /**
   * io_uring_queue_init(entries); entries is a power of two in 1..4096
   * (RangeError otherwise). Throws an Error with .code (ENOSYS, EPERM,
   * ENOMEM...) if io_uring is unavailable.
   */
  static open (entries = 256): DiskRing {
    return new DiskRing(new (loadNative().DiskRing)(entries))
  }

  /** = entries: rows per submit, completions per reap, and requests in flight at most. */
  readonly capacity: number
  /** Row i = ops[i*7 .. i*7+6] = [op, fd, arenaId, arenaOffset, length, position, map]. */
  readonly ops: Float64Array
  /** tags[i] comes back in doneTags with row i's completion. */
  readonly tags: Uint32Array
  /** Filled by reap(): doneTags[i], doneResults[i] (bytes, or -errno). */
  readonly doneTags: Uint32Array
  readonly doneResults: Int32Array
  /** Live view of the shared counters. */
  readonly counters: DiskRingCounters
  private closed = false

  private constructor (private readonly native: NativeDiskRing) {
    this.ops = native.ops
    this.tags = native.tags
    this.doneTags = native.doneTags
    this.doneResults = native.doneResults
    this.capacity = native.tags.length
    this.counters = new LiveCounters(native.counters)
  }

  /**
   * Registers a buffer the ring may read into / write from; returns its id.
   * Held strongly until close(). Do not transfer/detach it afterwards.
   */
  registerArena (buf: Buffer): number {
    return this.native.registerArena(buf)
  }

  /**
   * Queues rows 0..count-1 and calls io_uring_submit once. Returns how many
   * were queued, always a prefix: fewer than count only when the ring is
   * full (capacity requests in flight, i.e. not yet reaped) or the kernel
   * is short of memory; keep the rest and retry after completions.
   * Throws RangeError (queuing nothing) on a bad row: unknown op, non-int32
   * fd, unregistered arena, offset+length outside the arena, bad position.
   */
  submit (count: number): number {
    return this.native.submit(count)
  }

  /**
   * Performs rows 0..count-1 of `rows` (the layout of `ops`, arenas from registerArena)
   * synchronously with pread/pwrite/fdatasync, results (bytes or -errno) into
   * results[i]. Only for files that cannot wait on a device (tmpfs): io_uring cannot
   * complete those inline and would hand each to a kernel worker thread. A write row
   * whose Map column is 1 + k is copied into maps[k], a writable FileMap of its file
   * (no system call per write); pwrite does it where the mapping cannot (the file
   * shrank under it, the map is closed). The file's mtime moves as with pwrite.
   */
  runNow (rows: Float64Array, results: Int32Array, count: number, maps?: FileMap[]): void {
    this.native.runNow(rows, results, count, maps)
  }

  /** Non-blocking: copies up to capacity completions into doneTags/doneResults; returns the count (0 after close()). */
  reap (): number {
    return this.native.reap()
  }

  /**
   * cb runs on the JS thread whenever completions may be pending; call
   * reap() until it returns 0. Keeps the process alive only while requests
   * are in flight. A second call replaces cb.
   */
  onComplete (cb: () => void): void {
    this.native.onComplete(cb)
  }

  /**
   * Idempotent. Cancels what can be cancelled, waits (blocking) until the
   * kernel is done with every in-flight request, then frees the ring; their
   * completions are discarded. Later submit()/registerArena() throw EBADF.
   */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.native.close()
  }
}
