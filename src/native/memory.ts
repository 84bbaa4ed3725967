import { loadNative, type NativeFileMap } from './addon'

/**
 * A page-aligned, zeroed Buffer of fresh anonymous memory (only touched pages become
 * resident). O_DIRECT needs aligned memory, which JS cannot allocate itself.
 */
export function alignedBuffer (size: number): Buffer {
  return loadNative().alignedBuffer(size)
}

/**
 * Unmaps an alignedBuffer() now rather than whenever it is garbage collected (a
 * transmit arena reserves 64 MiB of address space): the Buffer is detached (length 0)
 * first, so JS can never reach the freed pages. Nothing else may still use the memory
 * (unregister it from io_uring first). False if it was not a live aligned buffer.
 */
export function releaseBuffer (buf: Buffer): boolean {
  return loadNative().releaseBuffer(buf)
}

/**
 * Copies of a few dozen bytes (frame headers) in plain JS: Buffer#copy allocates a view
 * per call on Node 20, and a call into C++ costs more than the copy.
 */
export function copySmall (dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void {
  for (let i = 0; i < length; i++) dst[dstOffset + i] = src[srcOffset + i]
}

/**
 * Larger copies (sector data) gathered during a receive batch and done by one native
 * call at its end: per-frame calls into C++, or Buffer#copy, cost more than the bytes.
 */
export class CopyBatch {
  private readonly ranges: Uint32Array
  private readonly rowWidth = loadNative().layout.copyRanges.rowWidth
  private count = 0

  constructor (readonly capacity: number) {
    this.ranges = new Uint32Array(capacity * this.rowWidth)
  }

  get length (): number {
    return this.count
  }

  /** Queues dst[dstOffset ..] = src[srcOffset .. +length); false when the batch is full. */
  add (dstOffset: number, srcOffset: number, length: number): boolean {
    if (this.count === this.capacity) return false
    const at = this.count++ * this.rowWidth
    this.ranges[at] = dstOffset
    this.ranges[at + 1] = srcOffset
    this.ranges[at + 2] = length
    return true
  }

  /** Performs and forgets every queued copy. Throws RangeError (copying nothing) if a range lies outside its buffer. */
  run (dst: Uint8Array, src: Uint8Array): void {
    if (this.count === 0) return
    const count = this.count
    this.count = 0
    loadNative().copyRanges(dst, src, this.ranges, count)
  }
}

/**
 * A shared mapping of a file (or block device) that JavaScript never touches: it is
 * handed to PacketSocket.send() so the kernel copies reply data straight from the page
 * cache into the frame, and, when writable, to Uring.runInline() to copy write data
 * into. A file truncated under the mapping cannot crash the process: the send fails
 * with EFAULT, and runInline's guarded copy falls back to pwrite.
 */
export type FileMap = NativeFileMap

/** Maps `length` bytes of `fd` from offset 0. Throws (with .code) where mmap refuses. */
export function mapFile (fd: number, length: number, writable = false): FileMap {
  return new (loadNative().FileMap)(fd, length, writable)
}
