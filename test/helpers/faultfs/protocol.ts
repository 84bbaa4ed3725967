/**
 * The control protocol of the faultfs server (server.ts): one JSON object per line on its
 * stdin, exactly one JSON line back on its stdout for each, in order. The first stdout
 * line is the ready line. Shared by the server and the FaultFs wrapper (index.ts).
 */

/** volatile: writes stay in a RAM overlay until fsync; writethrough: straight to the durable file. */
export type Mode = 'volatile' | 'writethrough'

export type IoOp = 'read' | 'write' | 'fsync'

/** Which operations a fault or a latency applies to. */
export type FaultOps = IoOp | 'both' | 'all'

/** A byte range [offset, offset + length); absent fields mean "the whole image". */
export interface ByteRange {
  offset?: number
  length?: number
}

export interface FaultSpec extends ByteRange {
  /** Fire this many times, then disappear (default: until cleared). */
  times?: number
}

export type Request =
  | { op: 'ping' }
  | { op: 'cut' }
  | { op: 'restore' }
  | { op: 'mode', mode: Mode }
  /** Writes the overlay to the durable file, as an fsync of the image would. */
  | { op: 'sync' }
  /** ops: 'read' | 'write' | 'fsync' | 'both' (read and write) | 'all'. */
  | { op: 'eio', ops: FaultOps } & FaultSpec
  | { op: 'enospc' } & FaultSpec
  /** Adds ms before each matching request is carried out; ops as for eio. */
  | { op: 'latency', ops: FaultOps, ms: number } & ByteRange
  /** Removes every eio, enospc and latency rule. */
  | { op: 'clear' }
  | { op: 'resize', size: number }
  | { op: 'stats' }
  | { op: 'reset-stats' }
  /** Bytes of the durable file (base64), what survives a cut. */
  | { op: 'durable', offset: number, length: number }
  /** Bytes as a read of the image would return them now (overlay over durable), without faults. */
  | { op: 'peek', offset: number, length: number }

export interface Stats {
  /** Read and write requests received (failed ones too), and bytes actually moved. */
  reads: number
  writes: number
  bytesRead: number
  bytesWritten: number
  /** FUSE fsync requests; fdatasyncs counts those with the datasync flag set. */
  fsyncs: number
  fdatasyncs: number
  /** FUSE flush requests (one per close(2) of a descriptor): never make anything durable. */
  flushes: number
  opens: number
  /** Opens whose flags carried O_DIRECT. */
  directOpens: number
  releases: number
  /** Writes through a descriptor opened O_SYNC/O_DSYNC: made durable before they returned. */
  forcedWrites: number
  /** Bytes in the volatile overlay (whole 4 KiB blocks), lost by a cut. */
  overlayBytes: number
  /** Blocks written to the durable file by fsyncs (and sync, mode changes). */
  blocksPersisted: number
  /** Requests failed on purpose: injected EIO, injected ENOSPC, and EIO while the power is cut. */
  faultsInjected: number
  eioInjected: number
  enospcInjected: number
  powerOffErrors: number
  /** Largest single read/write request the kernel sent (bytes). */
  maxReadSize: number
  maxWriteSize: number
  /** Requests being served right now, and the most at once. */
  inFlight: number
  maxInFlight: number
  size: number
  mode: Mode
  powered: boolean
}

export interface Ready {
  ready: true
  pid: number
  mount: string
  path: string
  backing: string
  size: number
  mode: Mode
}

export type Response =
  | { ok: true, id?: unknown, [key: string]: unknown }
  | { ok: false, id?: unknown, error: string }
