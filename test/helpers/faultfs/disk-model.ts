/**
 * The disk behind faultfs: a durable file plus a volatile write cache (the overlay, whole
 * 4 KiB blocks in a Map), a power switch, and injected faults. Every method is synchronous,
 * so each request is atomic with respect to the overlay and to cut(): JS runs one at a time.
 * Results are byte counts or negative errnos, ready for fuse-native.
 */
import fs from 'node:fs'
import { constants } from 'node:os'
import type { ByteRange, FaultOps, FaultSpec, IoOp, Mode, Stats } from './protocol'

export const BLOCK = 4096

const EIO = -constants.errno.EIO
const ENOSPC = -constants.errno.ENOSPC

/** Largest size accepted for the image: far beyond any test, well inside a double's integers. */
export const MAX_SIZE = 2 ** 46

interface Rule {
  readonly id: number
  readonly ops: ReadonlySet<IoOp>
  readonly start: number
  readonly end: number
}

interface FaultRule extends Rule {
  readonly errno: number
  remaining: number
}

interface LatencyRule extends Rule {
  readonly ms: number
}

export function opsOf (ops: FaultOps): Set<IoOp> {
  switch (ops) {
    case 'read': case 'write': case 'fsync': return new Set([ops])
    case 'both': return new Set(['read', 'write'])
    case 'all': return new Set(['read', 'write', 'fsync'])
    default: throw new Error(`ops must be read, write, fsync, both or all (got ${JSON.stringify(ops)})`)
  }
}

function isCount (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

function rangeOf (r: ByteRange): { start: number, end: number } {
  const start = r.offset ?? 0
  if (!isCount(start)) throw new Error(`offset must be a non-negative integer (got ${JSON.stringify(r.offset)})`)
  if (r.length === undefined) return { start, end: Infinity }
  if (!isCount(r.length) || r.length === 0) throw new Error(`length must be a positive integer (got ${JSON.stringify(r.length)})`)
  return { start, end: start + r.length }
}

export function emptyStats (): Omit<Stats, 'overlayBytes' | 'size' | 'mode' | 'powered'> {
  return {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    fsyncs: 0,
    fdatasyncs: 0,
    flushes: 0,
    opens: 0,
    directOpens: 0,
    releases: 0,
    forcedWrites: 0,
    blocksPersisted: 0,
    faultsInjected: 0,
    eioInjected: 0,
    enospcInjected: 0,
    powerOffErrors: 0,
    maxReadSize: 0,
    maxWriteSize: 0,
    inFlight: 0,
    maxInFlight: 0
  }
}

export class DiskModel {
  readonly overlay = new Map<number, Buffer>()
  counters = emptyStats()
  /** Bumped by cut() and restore(): a request that waited across either fails. */
  epoch = 0
  powered = true
  mtime = new Date()
  private faults: FaultRule[] = []
  private latencies: LatencyRule[] = []
  private nextRuleId = 1

  constructor (private readonly fd: number, public size: number, public mode: Mode = 'volatile') {}

  stats (): Stats {
    return { ...this.counters, overlayBytes: this.overlay.size * BLOCK, size: this.size, mode: this.mode, powered: this.powered }
  }

  resetStats (): void {
    const { inFlight } = this.counters
    this.counters = { ...emptyStats(), inFlight }
  }

  // --- the power switch and the cache mode ---

  cut (): void {
    this.overlay.clear()
    this.powered = false
    this.epoch++
  }

  restore (): void {
    this.powered = true
    this.epoch++
  }

  /** Write-through has no cache: what the overlay holds is persisted first. */
  setMode (mode: Mode): void {
    if (mode !== 'volatile' && mode !== 'writethrough') throw new Error(`mode must be volatile or writethrough (got ${JSON.stringify(mode)})`)
    if (mode === 'writethrough') this.persist()
    this.mode = mode
  }

  // --- faults ---

  addFault (kind: 'eio' | 'enospc', ops: FaultOps, spec: FaultSpec): number {
    const set = opsOf(ops)
    if (kind === 'enospc' && (set.has('read') || set.has('fsync'))) throw new Error('ENOSPC applies to writes only')
    if (spec.times !== undefined && (!isCount(spec.times) || spec.times === 0)) throw new Error(`times must be a positive integer (got ${JSON.stringify(spec.times)})`)
    const id = this.nextRuleId++
    this.faults.push({ id, ops: set, ...rangeOf(spec), errno: kind === 'eio' ? EIO : ENOSPC, remaining: spec.times ?? Infinity })
    return id
  }

  addLatency (ops: FaultOps, ms: number, range: ByteRange): number {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > 600_000) throw new Error(`ms must be a number from 0 to 600000 (got ${JSON.stringify(ms)})`)
    const id = this.nextRuleId++
    this.latencies.push({ id, ops: opsOf(ops), ...rangeOf(range), ms })
    return id
  }

  clearFaults (): void {
    this.faults = []
    this.latencies = []
  }

  /** Added delay for a request, summed over the matching latency rules. fsync has no range. */
  latencyOf (op: IoOp, position = 0, length = 0): number {
    let ms = 0
    for (const r of this.latencies) if (r.ops.has(op) && matches(r, op, position, length)) ms += r.ms
    return ms
  }

  /** The errno of the first matching fault (consuming one of its firings), or 0. */
  private injected (op: IoOp, position: number, length: number): number {
    const i = this.faults.findIndex(r => r.ops.has(op) && matches(r, op, position, length))
    if (i < 0) return 0
    const rule = this.faults[i]
    if (--rule.remaining <= 0) this.faults.splice(i, 1)
    this.counters.faultsInjected++
    if (rule.errno === EIO) this.counters.eioInjected++
    else this.counters.enospcInjected++
    return rule.errno
  }

  private powerOff (): number {
    this.counters.faultsInjected++
    this.counters.powerOffErrors++
    return EIO
  }

  // --- I/O requests ---

  read (into: Buffer, length: number, position: number): number {
    this.counters.reads++
    this.counters.maxReadSize = Math.max(this.counters.maxReadSize, length)
    if (!this.powered) return this.powerOff()
    const fault = this.injected('read', position, length)
    if (fault !== 0) return fault
    const n = Math.max(0, Math.min(length, this.size - position))
    if (n > 0) this.readCurrent(into, 0, n, position)
    this.counters.bytesRead += n
    return n
  }

  /**
   * A fixed-size disk: a write starting at or past the end fails with ENOSPC (what a
   * block device answers); one that runs past it is cut short there. A forced write (the
   * descriptor was opened O_SYNC/O_DSYNC) is durable when it returns, like a FUA write.
   */
  write (data: Buffer, length: number, position: number, forced = false): number {
    this.counters.writes++
    this.counters.maxWriteSize = Math.max(this.counters.maxWriteSize, length)
    if (!this.powered) return this.powerOff()
    const fault = this.injected('write', position, length)
    if (fault !== 0) return fault
    if (length === 0) return 0
    if (position >= this.size) return ENOSPC
    const n = Math.min(length, this.size - position)
    if (this.mode === 'writethrough' || forced) {
      writeFully(this.fd, data, 0, n, position)
      if (forced) {
        fs.fdatasyncSync(this.fd)
        this.counters.forcedWrites++
      }
      // Cached blocks it covers must not shadow it (they stay volatile elsewhere).
      if (this.overlay.size > 0) this.writeOverlay(data, n, position, true)
    } else {
      this.writeOverlay(data, n, position)
    }
    this.counters.bytesWritten += n
    this.mtime = new Date()
    return n
  }

  fsync (datasync: boolean): number {
    this.counters.fsyncs++
    if (datasync) this.counters.fdatasyncs++
    if (!this.powered) return this.powerOff()
    const fault = this.injected('fsync', 0, 0)
    if (fault !== 0) return fault
    this.persist()
    return 0
  }

  /** Changes the size at once, in the durable file too: blocks past the end leave the overlay. */
  resize (size: number): void {
    if (!isCount(size) || size > MAX_SIZE) throw new Error(`size must be an integer from 0 to ${MAX_SIZE} (got ${JSON.stringify(size)})`)
    fs.ftruncateSync(this.fd, size)
    const lastBlock = Math.floor(size / BLOCK)
    for (const b of this.overlay.keys()) if (b > lastBlock || (b === lastBlock && size % BLOCK === 0)) this.overlay.delete(b)
    // So that growing again shows zeros past the old end, as the durable file does.
    this.overlay.get(lastBlock)?.fill(0, size % BLOCK)
    this.size = size
    this.mtime = new Date()
  }

  /** The overlay into the durable file, then fdatasync, then the overlay is empty. */
  persist (): void {
    const blocks = [...this.overlay.keys()].sort((a, b) => a - b)
    for (const b of blocks) {
      const start = b * BLOCK
      const n = Math.min(BLOCK, this.size - start)
      if (n > 0) writeFully(this.fd, this.overlay.get(b)!, 0, n, start)
    }
    fs.fdatasyncSync(this.fd)
    this.counters.blocksPersisted += blocks.length
    this.overlay.clear()
  }

  /** What a read would return now, without faults or counters (control plane's peek). */
  peek (position: number, length: number): Buffer {
    const n = Math.max(0, Math.min(length, this.size - position))
    const out = Buffer.alloc(n)
    if (n > 0) this.readCurrent(out, 0, n, position)
    return out
  }

  /** The durable file's bytes: what a cut would leave. */
  durable (position: number, length: number): Buffer {
    const n = Math.max(0, Math.min(length, this.size - position))
    const out = Buffer.alloc(n)
    readDurable(this.fd, out, 0, n, position)
    return out
  }

  /** Fills into[at, at + length) with the overlay over the durable file, from `position`. */
  private readCurrent (into: Buffer, at: number, length: number, position: number): void {
    let done = 0
    while (done < length) {
      const block = Math.floor((position + done) / BLOCK)
      const cached = this.overlay.get(block)
      if (cached !== undefined) {
        const inBlock = position + done - block * BLOCK
        const n = Math.min(BLOCK - inBlock, length - done)
        cached.copy(into, at + done, inBlock, inBlock + n)
        done += n
        continue
      }
      // A run of blocks the overlay does not hold: one read of the durable file.
      let end = Math.min(length, (block + 1) * BLOCK - position)
      while (end < length && !this.overlay.has(Math.floor((position + end) / BLOCK))) end = Math.min(length, end + BLOCK)
      readDurable(this.fd, into, at + done, end - done, position + done)
      done = end
    }
  }

  /** Into the overlay; onlyCached: update the blocks it holds, add none. */
  private writeOverlay (data: Buffer, length: number, position: number, onlyCached = false): void {
    let done = 0
    while (done < length) {
      const block = Math.floor((position + done) / BLOCK)
      const inBlock = position + done - block * BLOCK
      const n = Math.min(BLOCK - inBlock, length - done)
      let cached = this.overlay.get(block)
      if (cached === undefined && onlyCached) {
        done += n
        continue
      }
      if (cached === undefined) {
        cached = Buffer.alloc(BLOCK)
        // A partial block keeps the rest of what is there (read-modify-write).
        if (n < BLOCK) readDurable(this.fd, cached, 0, BLOCK, block * BLOCK)
        this.overlay.set(block, cached)
      }
      data.copy(cached, inBlock, done, done + n)
      done += n
    }
  }
}

/** A request overlaps a rule's range; fsync (no range) matches any rule for fsync. */
function matches (r: Rule, op: IoOp, position: number, length: number): boolean {
  if (op === 'fsync') return true
  return position < r.end && position + Math.max(length, 1) > r.start
}

/** pread until `length` bytes or the end of the file; zeros past the end. */
function readDurable (fd: number, into: Buffer, at: number, length: number, position: number): void {
  let done = 0
  while (done < length) {
    const n = fs.readSync(fd, into, at + done, length - done, position + done)
    if (n === 0) break
    done += n
  }
  into.fill(0, at + done, at + length)
}

function writeFully (fd: number, data: Buffer, at: number, length: number, position: number): void {
  let done = 0
  while (done < length) done += fs.writeSync(fd, data, at + done, length - done, position + done)
}
