/**
 * Loads the kvblade native addon (native/build/Release/kvblade_native.node). It does
 * only what needs C: raw and netlink sockets, a few ioctls, io_uring, memory maps. The
 * types below describe the raw addon; the other modules of this folder wrap it. This is
 * the only place that loads it.
 *
 * Layouts shared with C (row columns, counter slots) are exported by the addon as
 * `layout`: TypeScript reads the names, it never restates the numbers.
 */
import * as path from 'path'

/** {name: index} as the addon exports it. */
export type IndexOf<K extends string> = Readonly<Record<K, number>>

export type SocketCounterName = 'rxFrames' | 'rxBatches' | 'txFrames' | 'txBatches' | 'txErrors' | 'kernelDrops'
export type UringCounterName = 'submitted' | 'completed' | 'submitCalls' | 'inFlight' | 'ranInline' | 'mapped' | 'mapFallbacks'
export type UringColumn = 'op' | 'fd' | 'arena' | 'offset' | 'length' | 'position' | 'map' | 'async'
export type UringOp = 'read' | 'write' | 'fdatasync'

export interface NativeLayout {
  packetSocket: {
    counters: IndexOf<SocketCounterName>
    /** Failures send() lists in sendFailures ([count, index, errno, index, errno, ...]). */
    sendFailureCapacity: number
  }
  uring: {
    rowWidth: number
    columns: IndexOf<UringColumn>
    ops: IndexOf<UringOp>
    counters: IndexOf<UringCounterName>
  }
  copyRanges: { rowWidth: number }
}

/** Raw link facts as read by ioctl on the socket. */
export interface NativeLink { index: number, mac: Buffer, mtu: number }

/** The addon's socket object; wrapped by PacketSocket. */
export interface NativePacketSocket {
  readonly fd: number
  /** The receive ring, mapped: frames are read in place. Detached (length 0) by close(). */
  readonly rx: Buffer
  readonly rxOffsets: Uint32Array
  readonly rxLengths: Uint32Array
  readonly ringFrames: number
  /** Written in place by C++; slots in layout.packetSocket.counters. */
  readonly counters: Float64Array
  /** After send(): [count, index0, errno0, ...] of the frames it gave up on. */
  readonly sendFailures: Int32Array
  link (): NativeLink
  recv (): number
  send (arena: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number,
    maps?: NativeFileMap[], mapIndex?: Uint16Array, mapOffsets?: Float64Array, mapLengths?: Uint32Array): number
  onReadable (cb: () => void): void
  stopReading (): void
  onWritable (cb: () => void): void
  stats (): void
  close (): void
}

/** A shared mapping of a file whose bytes only the kernel and C++ touch (see memory.ts). */
export interface NativeFileMap {
  /** Bytes mapped; 0 once closed. */
  readonly length: number
  /** Mapped for writing too (runInline copies write rows into it). */
  readonly writable: boolean
  close (): void
}

/** The addon's io_uring object; wrapped by Uring (uring.ts). */
export interface NativeUring {
  /** capacity rows of layout.uring.rowWidth columns, read by submit(). */
  readonly ops: Float64Array
  readonly tags: Uint32Array
  readonly doneTags: Uint32Array
  readonly doneResults: Int32Array
  /** Written in place by C++; slots in layout.uring.counters. */
  readonly counters: Float64Array
  registerArena (buf: Uint8Array): number
  unregisterArena (id: number): void
  submit (count: number): number
  runInline (rows: Float64Array, results: Int32Array, count: number, maps?: NativeFileMap[]): number
  reap (): number
  onComplete (cb: () => void): void
  close (): void
}

/** One rtnetlink link message (see link_monitor.cc); fields absent when the kernel left them out. */
export interface NativeLinkRecord {
  removed?: boolean
  index?: number
  name?: string
  flags?: number
  /** IFF_UP and IFF_RUNNING. */
  up?: boolean
  mtu?: number
  mac?: Buffer
  /** Events were lost (socket buffer full): dump() again. */
  overflow?: boolean
}

export interface NativeLinkMonitor {
  dump (): NativeLinkRecord[]
  poll (): NativeLinkRecord[]
  onChange (cb: () => void): void
  close (): void
}

export interface NativeAddon {
  PacketSocket: new (ifname: string, netns: string, rxSlots: number, slotSize: number,
    socketBufferBytes: number, ringFrames: number) => NativePacketSocket
  ETH_P_AOE: number
  layout: NativeLayout
  blkGetSize64 (fd: number): number
  lockFile (fd: number, mode: 'exclusive' | 'shared' | 'unlock'): boolean
  alignedBuffer (size: number): Buffer
  releaseBuffer (buf: Buffer): boolean
  copyRanges (dst: Uint8Array, src: Uint8Array, ranges: Uint32Array, count: number): void
  FileMap: new (fd: number, length: number, writable?: boolean) => NativeFileMap
  Uring: new (entries: number) => NativeUring
  LinkMonitor: new (netns: string) => NativeLinkMonitor
}

/** Compiled JS lives in dist/src/native/; the addon is under native/ at the repo root. */
export const NATIVE_ADDON_PATH = path.resolve(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'kvblade_native.node')

let addon: NativeAddon | undefined

/** The addon, loaded on first use so that importing this module never fails. */
export function loadNative (): NativeAddon {
  if (addon !== undefined) return addon
  try {
    addon = require(NATIVE_ADDON_PATH) as NativeAddon
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'MODULE_NOT_FOUND' ? 'it is not built' : `loading failed: ${e.message}`
    throw new Error(`kvblade native addon ${NATIVE_ADDON_PATH}: ${why}; run make`, { cause: err })
  }
  return addon
}
