/**
 * What an AoE address exports: a slice of one backing store, with the options that
 * belong to the disk rather than to a path to it (read-only, cache mode, O_DIRECT,
 * shared). Every interface that serves the address serves this same object: the
 * initiator merges all the paths it finds for an address into one disk, so they must
 * never lead to two different ones.
 */
import type { CacheMode, ExportOptions } from '../control/command'
import { SECTOR_SIZE, type BackingStore } from '../store/backing-store'

/** The options that make the disk, as compared between two exports of one address. */
export interface DiskOptions {
  readOnly: boolean
  shared: boolean
  direct: boolean
  /** First sector of the backing exported. */
  offset: number
  /** Sectors exported; undefined: to the end of the backing, following its size. */
  length: number | undefined
  cache: CacheMode
}

export function diskOptions (o: ExportOptions, defaults: { direct: boolean, cache: CacheMode }): DiskOptions {
  return {
    readOnly: o.readOnly === true,
    shared: o.shared === true,
    direct: o.direct === true || defaults.direct,
    offset: o.offset ?? 0,
    length: o.length,
    cache: o.cache ?? defaults.cache,
  }
}

export function sameDisk (a: DiskOptions, b: DiskOptions): boolean {
  return a.readOnly === b.readOnly && a.shared === b.shared && a.direct === b.direct &&
    a.offset === b.offset && a.length === b.length && a.cache === b.cache
}

export class Export {
  constructor (
    public store: BackingStore,
    /** The backing file's identity (device and inode), to tell one file under two names. */
    public identity: string,
    public options: DiskOptions,
  ) {}

  /** Where the slice starts in the backing, in bytes. */
  get offsetBytes (): number {
    return this.options.offset * SECTOR_SIZE
  }

  /** Sectors exported now (a slice to the end follows the backing's size). */
  get sectors (): number {
    if (this.options.length !== undefined) return this.options.length
    return Math.max(0, this.store.sectors - this.options.offset)
  }

  get readOnly (): boolean {
    return this.options.readOnly
  }

  /** It writes and shares the backing with no one: an exclusive lock, and no other address of ours on the file. */
  get exclusive (): boolean {
    return !this.options.readOnly && !this.options.shared
  }

  /** The slice lies inside the backing. */
  fits (): boolean {
    return this.options.offset + (this.options.length ?? 1) <= this.store.sectors
  }
}
