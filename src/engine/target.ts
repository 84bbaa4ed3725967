import type { TargetInfo } from '../control/control'
import type { AddressState } from './address-state'
import type { CommandTarget } from './commands'
import type { Export } from './export'
import { Latency } from './latency'

export const FIRMWARE_TEXT = 'kvb0.1'
export const DEFAULT_MODEL = 'kvblade AoE target'

/**
 * One exported disk on one interface: an AoE address (major.minor) there, the export
 * (backing slice) and per-address state it shares with the address's other
 * interfaces, and what is its own: who may see it, the buffer count it advertises,
 * IDENTIFY's strings, and counters bumped by the packet loop.
 */
export class Target implements CommandTarget {
  model = DEFAULT_MODEL
  serial: string
  readonly firmware = FIRMWARE_TEXT
  /** Initiator MACs allowed to see the target (the admin's list; empty: everyone). */
  acl: number[] = []
  /** Disk requests accepted and not yet answered. */
  busy = 0
  reads = 0
  readSectors = 0
  writes = 0
  writeSectors = 0
  flushes = 0
  errors = 0
  frames = 0
  /** Disk faults by kind ("read EIO", "write ENOSPC", "read short"...). */
  readonly faults = new Map<string, number>()
  /** Disk requests, received to answered. */
  readonly latency = new Latency()

  constructor (
    readonly major: number,
    readonly minor: number,
    readonly ifname: string,
    public disk: Export,
    readonly state: AddressState,
    public bufferCount: number,
    private readonly mtu: () => number,
  ) {
    this.serial = `KVB${major}.${minor}`
  }

  get sectors (): number {
    return this.disk.sectors
  }

  get readOnly (): boolean {
    return this.disk.readOnly
  }

  /** IDENTIFY says the disk has a volatile write cache (and FLUSH empties it) only in writeback mode. */
  get writeCache (): boolean {
    return this.disk.options.cache === 'writeback'
  }

  get name (): string {
    return `${this.major}.${this.minor}@${this.ifname}`
  }

  /** Whether a frame from `mac` is for this target at all (the admin's ACL; the AoE mask is separate). */
  allows (mac: number): boolean {
    return this.acl.length === 0 || this.acl.includes(mac)
  }

  info (): TargetInfo {
    const d = this.disk
    return {
      major: this.major,
      minor: this.minor,
      ifname: this.ifname,
      path: d.store.path,
      sectors: d.sectors,
      bdev: d.store.bdev,
      model: this.model,
      serial: this.serial,
      busy: this.busy,
      mtu: this.mtu(),
      readOnly: d.readOnly,
      offset: d.options.offset,
      length: d.sectors,
      acl: [...this.acl],
      cache: d.options.cache,
      bufferCount: this.bufferCount,
      direct: d.store.direct,
      shared: d.options.shared,
      faults: Object.fromEntries(this.faults),
      stats: {
        reads: this.reads,
        readSectors: this.readSectors,
        writes: this.writes,
        writeSectors: this.writeSectors,
        flushes: this.flushes,
        errors: this.errors,
        inFlight: this.busy,
        frames: this.frames,
        syncs: d.store.syncCounters.syncs,
        syncedWrites: d.store.syncCounters.syncedWrites,
      },
      latency: this.latency.snapshot(),
      state: 'serving',
    }
  }
}
