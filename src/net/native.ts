/**
 * Loads the kvblade native addon (native/build/Release/kvblade_native.node).
 * It does only what needs C: raw packet sockets, a few ioctls, io_uring. The types
 * below describe the raw addon; use packet-socket.ts / block-device.ts.
 */
import * as path from 'path'

/** Raw link facts as read by ioctl on the socket. */
export interface NativeLink { index: number, mac: Buffer, mtu: number }

/** The addon's socket object; wrapped by PacketSocket. */
export interface NativePacketSocket {
  readonly fd: number
  /** The receive ring, mapped: frames are read in place. */
  readonly rx: Buffer
  readonly rxOffsets: Uint32Array
  readonly rxLengths: Uint32Array
  readonly ringFrames: number
  /** [rxFrames, rxBatches, txFrames, txBatches, txErrors, kernelDrops], written in place by C++. */
  readonly counters: Float64Array
  link (): NativeLink
  recv (): number
  send (arena: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number,
    maps?: NativeFileMap[], mapIndex?: Uint16Array, mapOffsets?: Float64Array, mapLengths?: Uint32Array): number
  onReadable (cb: () => void): void
  onWritable (cb: () => void): void
  stats (): void
  close (): void
}

/** A shared mapping of a file whose bytes only the kernel and C++ touch (see memory.ts). */
export interface NativeFileMap {
  /** Bytes mapped; 0 once closed. */
  readonly length: number
  /** Mapped for writing too (runNow copies write rows into it). */
  readonly writable: boolean
  close (): void
}

/** The addon's io_uring object; wrapped by DiskRing (src/store/disk-ring.ts). */
export interface NativeDiskRing {
  /** capacity rows of [op, fd, arenaId, arenaOffset, length, position, map], read by submit(). */
  readonly ops: Float64Array
  readonly tags: Uint32Array
  readonly doneTags: Uint32Array
  readonly doneResults: Int32Array
  /** [submitted, completed, submitCalls, inFlight, runNow, mapped, mapFallbacks], written in place by C++. */
  readonly counters: Float64Array
  registerArena (buf: Uint8Array): number
  submit (count: number): number
  runNow (rows: Float64Array, results: Int32Array, count: number, maps?: NativeFileMap[]): number
  reap (): number
  onComplete (cb: () => void): void
  close (): void
}

export interface NativeAddon {
  PacketSocket: new (ifname: string, netns: string, rxSlots: number, slotSize: number,
    socketBufferBytes: number, ringFrames: number) => NativePacketSocket
  ETH_P_AOE: number
  blkGetSize64 (fd: number): number
  alignedBuffer (size: number): Buffer
  copyRanges (dst: Uint8Array, src: Uint8Array, ranges: Uint32Array, count: number): void
  FileMap: new (fd: number, length: number, writable?: boolean) => NativeFileMap
  DiskRing: new (entries: number) => NativeDiskRing
}

/** Compiled JS lives in dist/src/net/; the addon is under native/ at the repo root. */
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
