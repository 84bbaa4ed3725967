import type { TargetInfo } from '../control/control'
import type { BackingStore } from '../store/backing-store'
import type { AddressState } from './address-state'
import type { CommandTarget } from './commands'

export const FIRMWARE_TEXT = 'kvb0.1'
export const DEFAULT_MODEL = 'kvblade AoE target'

/**
 * One exported disk: an AoE address (major.minor) on one interface, backed by a store.
 * Counters are plain fields bumped by the packet loop.
 */
export class Target implements CommandTarget {
  model = DEFAULT_MODEL
  serial: string
  readonly firmware = FIRMWARE_TEXT
  /** Disk requests accepted and not yet answered. */
  busy = 0
  reads = 0
  readSectors = 0
  writes = 0
  writeSectors = 0
  flushes = 0
  errors = 0
  frames = 0

  constructor (
    readonly major: number,
    readonly minor: number,
    readonly ifname: string,
    public store: BackingStore,
    readonly state: AddressState,
    readonly bufferCount: number,
    private readonly mtu: () => number,
  ) {
    this.serial = `KVB${major}.${minor}`
  }

  get sectors (): number {
    return this.store.sectors
  }

  get name (): string {
    return `${this.major}.${this.minor}@${this.ifname}`
  }

  info (): TargetInfo {
    return {
      major: this.major,
      minor: this.minor,
      ifname: this.ifname,
      path: this.store.path,
      sectors: this.store.sectors,
      bdev: this.store.bdev,
      model: this.model,
      serial: this.serial,
      busy: this.busy,
      mtu: this.mtu(),
      stats: {
        reads: this.reads,
        readSectors: this.readSectors,
        writes: this.writes,
        writeSectors: this.writeSectors,
        flushes: this.flushes,
        errors: this.errors,
        inFlight: this.busy,
        frames: this.frames,
      },
    }
  }
}
