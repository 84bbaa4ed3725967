/**
 * A FrameIo in memory, so the packet loop runs in a test without root or a network.
 * Frames given to deliver() arrive as one receive batch; the frames of a batch are
 * overwritten with garbage when the next receive() takes them back (as the kernel
 * reuses ring frames), so a request that uses ring bytes after its batch shows up as
 * wrong data. Replies are captured at send time, map data included, exactly as the
 * kernel would copy it then.
 */
import fs from 'node:fs'
import type { FrameCounters, FrameIo, LinkState } from '../../src/engine/frame-io'
import type { FileMap } from '../../src/native/memory'

const SLOT = 9216
const EFAULT = 14

/** How the fake reads a map's bytes at send time: the file behind it, which shares its pages. */
export type MapReader = (map: FileMap) => { fd: number } | undefined

export class FakeFrameIo implements FrameIo {
  readonly link: LinkState
  readonly rx: Buffer
  readonly rxOffsets: Uint32Array
  readonly rxLengths: Uint32Array
  readonly sendFailures: Int32Array
  /** Every send() call: the frames it took, as the wire would have carried them. */
  readonly sendCalls: Buffer[][] = []
  /** Frames the socket accepts per send() before it is "full" (Infinity: never full). */
  room = Infinity
  syncLinkCalls = 0
  closed = false
  private pending = 0
  private readable: (() => void) | null = null
  private writable: (() => void) | null = null
  private readonly maps = new Map<FileMap, number>()

  constructor (readonly rxSlots = 256, name = 'fake0', mac = 0x020000000001, mtu = 1500) {
    this.link = { name, mac, mtu, up: true, present: true }
    this.rx = Buffer.alloc(rxSlots * SLOT)
    this.rxOffsets = new Uint32Array(rxSlots)
    this.rxLengths = new Uint32Array(rxSlots)
    this.sendFailures = new Int32Array(1 + 2 * 64)
  }

  /** Tells the fake which file a map shows, so it can copy map data when a reply is sent. */
  mapFile (map: FileMap, fd: number): void {
    this.maps.set(map, fd)
  }

  /** Every reply sent so far, in order. */
  get sent (): Buffer[] {
    return this.sendCalls.flat()
  }

  /** Frames arrive as one batch; the loop handles them before this returns. */
  deliver (frames: Buffer[]): void {
    if (frames.length > this.rxSlots) throw new Error(`${frames.length} frames do not fit one batch of ${this.rxSlots}`)
    frames.forEach((f, i) => {
      this.rxOffsets[i] = i * SLOT
      this.rxLengths[i] = f.length
      f.copy(this.rx, i * SLOT)
    })
    this.pending = frames.length
    this.readable?.()
  }

  receive (): number {
    const n = this.pending
    this.pending = 0
    // The previous batch's frames go back to the "kernel": whatever still reads them sees garbage.
    if (n === 0) this.rx.fill(0xee)
    return n
  }

  send (arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number,
    maps: FileMap[], mapIndex: Uint16Array, mapOffsets: Float64Array, mapLengths: Uint32Array): number {
    if (this.closed) throw new Error('send after close')
    const n = Math.min(count, this.room)
    const frames: Buffer[] = []
    let failures = 0
    for (let j = 0; j < n; j++) {
      const head = Buffer.from(arena.subarray(offsets[j], offsets[j] + lengths[j]))
      if (mapLengths[j] === 0) {
        frames.push(head)
        continue
      }
      const fd = this.maps.get(maps[mapIndex[j]])
      if (fd === undefined) throw new Error('a reply from a map the test did not name')
      const data = Buffer.alloc(mapLengths[j])
      // The kernel copies from the map now; past the end of the file the copy faults.
      const got = fs.readSync(fd, data, 0, data.length, mapOffsets[j])
      if (got < data.length) {
        this.sendFailures[1 + 2 * failures] = j
        this.sendFailures[2 + 2 * failures] = EFAULT
        failures++
        continue
      }
      frames.push(Buffer.concat([head, data]))
    }
    this.sendFailures[0] = failures
    this.sendCalls.push(frames)
    return n
  }

  onReadable (cb: () => void): void {
    this.readable = cb
  }

  stopReceiving (): void {
    this.readable = null
  }

  onWritable (cb: () => void): void {
    this.writable = cb
  }

  /** The socket has room again: what waits for writability goes. */
  drain (room = Infinity): void {
    this.room = room
    const cb = this.writable
    this.writable = null
    cb?.()
  }

  counters (): FrameCounters {
    return { framesIn: 0, framesOut: this.sent.length, kernelDrops: 0, sendErrors: 0 }
  }

  syncLink (): void {
    this.syncLinkCalls++
  }

  close (): void {
    this.closed = true
  }
}
