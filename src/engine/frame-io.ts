import type { FileMap } from '../native/memory'

/**
 * An interface as the packet loop needs to know it, kept current from the kernel's
 * link messages (see links.ts): reading it costs no system call.
 */
export interface LinkState {
  readonly name: string
  /** The interface's MAC as a number (see aoe/mac.ts). */
  mac: number
  mtu: number
  /** Administratively up and with carrier. */
  up: boolean
  /** The interface exists (it may have been unplugged or deleted). */
  present: boolean
  /** The kernel's ifindex, where known: a new one under the same name is a new interface. */
  readonly index?: number
}

/** What the socket counted, for the control plane's `stat`. */
export interface FrameCounters {
  framesIn: number
  framesOut: number
  /** Frames the kernel dropped because the receive ring was full. */
  kernelDrops: number
  /** Frames the socket gave up sending (too long, link down, a map range gone). */
  sendErrors: number
}

/**
 * Frames in and out of one interface: what the packet loop (port.ts) runs on. The native
 * packet socket implements it (links.ts), and tests implement it in memory, so the loop's
 * behaviour can be checked without root or a network.
 *
 * Frame i of the last receive() is rx[rxOffsets[i] .. + rxLengths[i]); those bytes are
 * valid until the next receive() (the ring hands them back to the kernel then).
 */
export interface FrameIo {
  readonly link: LinkState
  readonly rx: Buffer
  readonly rxOffsets: Uint32Array
  readonly rxLengths: Uint32Array
  /** Most frames one receive() returns. */
  readonly rxSlots: number
  /** Takes the next batch of frames; 0 when none are pending. */
  receive (): number
  /**
   * Sends frame j = arena[offsets[j] .. + lengths[j]) for j < count, followed, where
   * mapLengths[j] > 0, by mapLengths[j] bytes at mapOffsets[j] of maps[mapIndex[j]] (read
   * at this moment). Returns how many frames were consumed: fewer than count only when
   * the socket is full (then wait for onWritable). Consumed frames that could not be
   * sent are listed in sendFailures.
   */
  send (arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number,
    maps: FileMap[], mapIndex: Uint16Array, mapOffsets: Float64Array, mapLengths: Uint32Array): number
  /** After send(): [count, index0, errno0, index1, errno1, ...], as many as fit. */
  readonly sendFailures: Int32Array
  /** cb runs whenever frames may be pending, until close() or stopReceiving(). */
  onReadable (cb: () => void): void
  /** No more readable callbacks: frames are left unread (a daemon shutting down). */
  stopReceiving (): void
  /** cb runs once, the next time the socket can take frames again. */
  onWritable (cb: () => void): void
  counters (): FrameCounters
  /** Brings `link` up to date with what the kernel has said since (at most one system call). */
  syncLink? (): void
  close (): void
}

/**
 * The FrameIo of an interface that has gone away: nothing arrives, what is sent is lost
 * (the initiator retransmits once the interface is back). Its link state stays the
 * interface's own, so the port sees it come back.
 */
export class DetachedFrameIo implements FrameIo {
  readonly rx = Buffer.alloc(0)
  readonly rxOffsets = new Uint32Array(0)
  readonly rxLengths = new Uint32Array(0)
  readonly sendFailures = new Int32Array(1)

  constructor (readonly link: LinkState, readonly rxSlots: number) {}

  receive (): number { return 0 }
  send (_arena: Buffer, _offsets: Uint32Array, _lengths: Uint32Array, count: number): number { return count }
  onReadable (): void {}
  stopReceiving (): void {}
  onWritable (): void {}
  counters (): FrameCounters { return { framesIn: 0, framesOut: 0, kernelDrops: 0, sendErrors: 0 } }
  close (): void {}
}
