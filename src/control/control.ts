import type { AddCommand, CacheMode, TargetAddress } from './command'

/**
 * Per-target counters, in the order `stat` prints them (see fuse/README or the README's
 * control-plane section). Modelled on /sys/block/<dev>/stat: requests and sectors per
 * direction, then flushes, ATA errors, requests in flight, AoE frames handled, and the
 * group commit's syncs and the writes they covered.
 */
export interface TargetStats {
  reads: number
  readSectors: number
  writes: number
  writeSectors: number
  flushes: number
  errors: number
  inFlight: number
  frames: number
  /** Group commit (writethrough): fdatasyncs issued, and the writes they made durable (their ratio: writes per sync). */
  syncs: number
  syncedWrites: number
}

/** What the control plane shows of one target (one `major.minor@netif` directory). */
export interface TargetInfo extends TargetAddress {
  /** Backing path as given to add/readd. */
  path: string
  /** Size in 512-byte sectors. */
  sectors: number
  /** "MAJ:MIN" of the backing block device; "0:0" for a regular file. */
  bdev: string
  model: string
  serial: string
  /** Requests accepted and not yet answered. */
  busy: number
  /** MTU of the interface now. */
  mtu: number
  /** `ro`: writes are refused. */
  readOnly: boolean
  /** The slice of the backing exported: first sector, and sectors (the size). */
  offset: number
  length: number
  /** Initiator MACs that may see the target (empty: all). */
  acl: number[]
  cache: CacheMode
  /** Buffer count advertised in Query Config replies. */
  bufferCount: number
  /** The backing is open with O_DIRECT. */
  direct: boolean
  /** Another exporter may serve the same backing. */
  shared: boolean
  /** Disk faults so far, by kind ("read EIO", "write ENOSPC", "read short"...). */
  faults: Record<string, number>
  stats: TargetStats
  /** How long disk requests took, request to reply, as a cumulative histogram. */
  latency: LatencyHistogram
  /** serving, or waiting (restored or from the exports file: its interface or backing is not there yet). */
  state?: 'serving' | 'waiting'
  /** Why it is waiting. */
  waiting?: string
}

/**
 * Request latencies (seconds): counts[i] requests took at most bounds[i] (the last
 * bound is +Infinity), cumulative as Prometheus histograms are; sum in seconds.
 */
export interface LatencyHistogram {
  bounds: readonly number[]
  counts: number[]
  sum: number
  count: number
}

/** Counters for one interface the engine serves. */
export interface InterfaceStats {
  ifname: string
  /** up, down (present but down or without carrier), or gone (no such interface now). */
  link: 'up' | 'down' | 'gone'
  /** The interface's MTU now (the last one known when it is gone). */
  mtu: number
  framesIn: number
  framesOut: number
  /** Frames the kernel dropped because the socket buffer was full. */
  kernelDrops: number
  /** Frames we dropped: not for any target, masked, responses, vendor commands. */
  ignored: number
  /** Frames too short or inconsistent to answer. */
  malformed: number
  /** Replies we could not send. */
  sendErrors: number
}

/**
 * The engine's control surface: what kvblade's sysfs files do, as calls. Failures reject
 * with ControlError carrying the errno a sysfs write would give.
 */
export interface Control {
  add (cmd: AddCommand): Promise<TargetInfo>
  del (addr: TargetAddress): Promise<void>
  readd (cmd: AddCommand): Promise<TargetInfo>
  /** Broadcast a Query Config reply for every target. */
  announce (): void
  list (): TargetInfo[]
  get (addr: TargetAddress): TargetInfo | undefined
  /** Set what IDENTIFY returns; longer values are refused with EINVAL (40 / 20 chars). */
  setModel (addr: TargetAddress, model: string): Promise<void>
  setSerial (addr: TargetAddress, serial: string): Promise<void>
  /** Replace the target's ACL (empty: everyone may see it). */
  setAcl (addr: TargetAddress, macs: number[]): Promise<void>
  /** The cache mode of the target's disk (every interface serving its address). */
  setCache (addr: TargetAddress, mode: CacheMode): Promise<void>
  setBufferCount (addr: TargetAddress, count: number): Promise<void>
  interfaces (): InterfaceStats[]
  /** Applies the exports file again (kvblade reload, SIGHUP); resolves with what it did, ok or not. */
  reload? (): Promise<{ ok: boolean, summary: string }>
  /** The last reload's result. */
  lastReloadResult? (): { ok: boolean, summary: string }
}
