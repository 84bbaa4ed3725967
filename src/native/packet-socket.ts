/**
 * Raw AoE frames on one interface: an AF_PACKET socket bound to ethertype
 * 0x88A2 (and a second one, hearing nothing, that sends), with batched receive
 * and send. Received frames are read in place in a memory-mapped ring the
 * kernel fills (no system call or copy per frame on our side). The C++ side
 * moves bytes only; all protocol logic lives in TypeScript.
 *
 * Frames are whole Ethernet frames (the caller writes MACs and ethertype).
 * The socket never hears its own transmissions, not even on `lo`.
 */
import { loadNative, type NativePacketSocket, type SocketCounterName } from './addon'
import { liveCounters, type LiveCounters } from './live-counters'
import type { FileMap } from './memory'

export const ETH_P_AOE = 0x88a2

export interface LinkInfo { name: string, index: number, mac: Buffer /* 6 bytes */, mtu: number }

export interface PacketSocketOptions {
  /** Network namespace file (e.g. '/var/run/netns/foo') to create the socket in; the calling thread returns to its own afterwards. */
  netns?: string
  /** Most frames one recv() returns (1..1024); default 256. */
  rxSlots?: number
  /** Longest frame received whole; default 9216. Must hold MTU+14: longer frames are truncated to it. */
  slotSize?: number
  /** Frames the receive ring holds (rounded up to whole ring blocks); default 1024. When it is full the kernel drops. */
  ringFrames?: number
  /** SO_SNDBUF(FORCE) (and SO_RCVBUF, unused by the ring); default 32 MiB. */
  socketBufferBytes?: number
}

export type PacketSocketCounters = LiveCounters<SocketCounterName>

/** Read by name from the addon's layout; a unit test checks that the two lists match. */
export const SOCKET_COUNTER_NAMES: readonly SocketCounterName[] = ['rxFrames', 'rxBatches', 'txFrames', 'txBatches', 'txErrors', 'kernelDrops']

export class PacketSocket {
  /**
   * Opens and binds a socket on `ifname`. Throws an Error whose .code is the
   * errno name (ENODEV for an unknown interface, EPERM without CAP_NET_RAW,
   * ENOENT for a missing netns file) and whose message names the interface.
   */
  static open (ifname: string, opts: PacketSocketOptions = {}): PacketSocket {
    const slotSize = opts.slotSize ?? 9216
    const native = new (loadNative().PacketSocket)(
      ifname,
      opts.netns ?? '',
      opts.rxSlots ?? 256,
      slotSize,
      opts.socketBufferBytes ?? 32 * 1024 * 1024,
      opts.ringFrames ?? 1024
    )
    try {
      return new PacketSocket(ifname, native, slotSize)
    } catch (err) {
      native.close()
      throw err
    }
  }

  readonly rxSlots: number
  /** Frames the receive ring holds. */
  readonly ringFrames: number
  /** The receive ring: frame i of the last recv() is rx[rxOffsets[i] .. rxOffsets[i]+rxLengths[i]). */
  readonly rx: Buffer
  readonly rxOffsets: Uint32Array
  readonly rxLengths: Uint32Array
  /** Live view; kernelDrops is brought up to date by stats() and refreshLink(). */
  readonly counters: PacketSocketCounters
  /**
   * After send(): sendFailures[0] frames were given up on (counted in txErrors); for
   * the first of them, up to failureCapacity, frame sendFailures[1 + 2i] of that call
   * failed with errno sendFailures[2 + 2i] (EFAULT: its map range is no longer in the file).
   */
  readonly sendFailures: Int32Array
  readonly failureCapacity = loadNative().layout.packetSocket.sendFailureCapacity
  private _link: LinkInfo
  private closed = false

  private constructor (readonly ifname: string, private readonly native: NativePacketSocket, readonly slotSize: number) {
    this.rx = native.rx
    this.rxOffsets = native.rxOffsets
    this.rxLengths = native.rxLengths
    this.rxSlots = native.rxLengths.length
    this.ringFrames = native.ringFrames
    this.counters = liveCounters(native.counters, loadNative().layout.packetSocket.counters, SOCKET_COUNTER_NAMES)
    this.sendFailures = native.sendFailures
    this._link = this.readLink()
  }

  /** Link facts as of open() or the last refreshLink(). */
  get link (): LinkInfo { return this._link }

  /** The socket's file descriptor (-1 once closed). */
  get fd (): number { return this.native.fd }

  /** Re-reads index, MAC and MTU (in the socket's namespace) and refreshes kernelDrops. */
  refreshLink (): LinkInfo {
    this._link = this.readLink()
    this.native.stats()
    return this._link
  }

  /** Folds the kernel's drop count into counters.kernelDrops and returns the counters. */
  stats (): PacketSocketCounters {
    this.native.stats()
    return this.counters
  }

  /**
   * Takes up to rxSlots pending frames from the ring (no system call); 0 when none are
   * pending. The frames stay valid until the next recv(), which returns them to the kernel.
   */
  recv (): number {
    return this.native.recv()
  }

  /**
   * Sends frames arena[offsets[j] .. offsets[j]+lengths[j]) for j < count in
   * as few syscalls as possible. With `maps`, frame j continues, when
   * mapLengths[j] > 0, with mapLengths[j] bytes at mapOffsets[j] of
   * maps[mapIndex[j]], copied by the kernel (`maps` lists each map once, so it
   * is looked up once per call). Returns how many frames were consumed: less
   * than count only when the socket buffer is full (then wait for onWritable
   * and send the rest). Frames failing for other reasons are skipped and
   * counted in txErrors. Throws RangeError (sending nothing) if a frame lies
   * outside the arena or its map.
   */
  send (arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number,
    maps?: FileMap[], mapIndex?: Uint16Array, mapOffsets?: Float64Array, mapLengths?: Uint32Array): number {
    return this.native.send(arena, offsets, lengths, count, maps, mapIndex, mapOffsets, mapLengths)
  }

  /** cb runs on every readability until close(); call recv() until it returns 0. A second call replaces cb. */
  onReadable (cb: () => void): void {
    this.native.onReadable(cb)
  }

  /** No more onReadable callbacks (frames keep arriving in the ring, unread). */
  stopReading (): void {
    if (!this.closed) this.native.stopReading()
  }

  /** cb runs once, the next time the socket is writable. */
  onWritable (cb: () => void): void {
    this.native.onWritable(cb)
  }

  /**
   * Stops polling, closes the socket and unmaps the receive ring (rx is then empty:
   * frames of the last recv() are gone); safe to call more than once.
   */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.native.close()
  }

  private readLink (): LinkInfo {
    const l = this.native.link()
    return { name: this.ifname, index: l.index, mac: l.mac, mtu: l.mtu }
  }
}
