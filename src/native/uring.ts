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
import { loadNative, type NativeLayout, type NativeUring, type UringCounterName } from './addon'
import { liveCounters, type LiveCounters } from './live-counters'
import type { FileMap } from './memory'

/**
 * The shape of a submission row, from the addon: `rowWidth` numbers per row,
 * `columns.X` the index of column X within it, `ops.X` the value of the op column.
 * The map column, for a write row given to runInline(), is 1 + the index in its
 * `maps` of the mapping to copy into, or 0 for pwrite; submit() ignores it.
 */
export type UringLayout = NativeLayout['uring']

export function uringLayout (): UringLayout {
  return loadNative().layout.uring
}

export type UringCounters = LiveCounters<UringCounterName>

/** Read by name from the addon's layout; a unit test checks that the two lists match. */
export const URING_COUNTER_NAMES: readonly UringCounterName[] = ['submitted', 'completed', 'submitCalls', 'inFlight', 'ranInline', 'mapped', 'mapFallbacks']

export class Uring {
  /**
   * io_uring_queue_init(entries); entries is a power of two in 1..4096
   * (RangeError otherwise). Throws an Error with .code (ENOSYS, EPERM,
   * ENOMEM...) if io_uring is unavailable.
   */
  static open (entries = 256): Uring {
    return new Uring(new (loadNative().Uring)(entries))
  }

  /** = entries: rows per submit, completions per reap, and requests in flight at most. */
  readonly capacity: number
  /** Row i = ops[i * rowWidth ..] with the columns of uringLayout(). */
  readonly ops: Float64Array
  readonly layout: UringLayout = uringLayout()
  /** tags[i] comes back in doneTags with row i's completion. */
  readonly tags: Uint32Array
  /** Filled by reap(): doneTags[i], doneResults[i] (bytes, or -errno). */
  readonly doneTags: Uint32Array
  readonly doneResults: Int32Array
  /** Live view of the shared counters. */
  readonly counters: UringCounters
  private closed = false

  private constructor (private readonly native: NativeUring) {
    this.ops = native.ops
    this.tags = native.tags
    this.doneTags = native.doneTags
    this.doneResults = native.doneResults
    this.capacity = native.tags.length
    this.counters = liveCounters(native.counters, uringLayout().counters, URING_COUNTER_NAMES)
  }

  /**
   * Registers a buffer the ring may read into / write from; returns its id.
   * Held strongly until unregisterArena() or close(). Do not transfer/detach it meanwhile.
   */
  registerArena (buf: Buffer): number {
    return this.native.registerArena(buf)
  }

  /**
   * Lets the ring forget an arena (its id may be given to another). Throws EBUSY
   * while submitted requests that use it have not been reaped.
   */
  unregisterArena (id: number): void {
    this.native.unregisterArena(id)
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
  runInline (rows: Float64Array, results: Int32Array, count: number, maps?: FileMap[]): void {
    this.native.runInline(rows, results, count, maps)
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
