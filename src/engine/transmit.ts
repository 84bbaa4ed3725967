/**
 * The transmit side of a port: the slots replies are built in, and the queue they leave
 * from in batches (one send call for many frames). A reply may carry its data in its
 * slot, or take it from a file map when it is sent (a read of a file in RAM: one copy,
 * by the kernel, instead of two).
 */
import createDebug from 'debug'
import { ATA_HEADER_LENGTH } from '../aoe/ata'
import { MIN_FRAME_LENGTH } from '../aoe/constants'
import { alignedBuffer, releaseBuffer, type FileMap } from '../native/memory'
import type { FrameIo } from './frame-io'

const debug = createDebug('kvblade:port')

/**
 * Every reply is built in a slot of this size, its frame starting FRAME_OFFSET in, so
 * that the data area (36 bytes into the frame) starts on a page boundary: disk reads
 * land straight in the reply and writes leave from it, with O_DIRECT too.
 */
export const TX_SLOT_SIZE = 16384
const FRAME_OFFSET = 4096 - ATA_HEADER_LENGTH
/**
 * Replies that may be outstanding at once on one interface. The arena (64 MiB) is
 * reserved, not touched: slots are reused last-freed-first, so only the working set
 * becomes resident.
 */
export const TX_SLOTS = 4096

/** Where the frame built in a transmit slot starts. */
export function frameAt (slot: number): number {
  return slot * TX_SLOT_SIZE + FRAME_OFFSET
}

/** A reply whose data the kernel takes from a file map when it is sent. */
export interface MappedReply {
  /** It has left, or was dropped: its slot is free again. */
  mappedSent (): void
  /** The send failed (errno; EFAULT: the range is no longer in the file). The slot is still the owner's: queue an answer in it. */
  mappedFailed (errno: number): void
}

export class TxQueue {
  /** The slots; page-aligned (O_DIRECT reads land in it). Empty once closed. */
  readonly arena: Buffer
  /** Replies dropped because every slot was taken (the initiator retransmits). */
  noBuffers = 0
  /** Set by the port while it handles a receive batch: replies queued then leave with the batch's own flush. */
  inBatch = false

  private readonly freeSlots = new Int32Array(TX_SLOTS)
  private freeCount = TX_SLOTS
  private readonly sendOffsets = new Uint32Array(TX_SLOTS)
  private readonly sendLengths = new Uint32Array(TX_SLOTS)
  /**
   * For replies whose data the kernel copies from a map: where (length 0 for none), and
   * whose (an index into sendMaps, which lists each map of the queued replies once and
   * is emptied when the queue is).
   */
  private readonly sendMapIndex = new Uint16Array(TX_SLOTS)
  private readonly sendMapOffsets = new Float64Array(TX_SLOTS)
  private readonly sendMapLengths = new Uint32Array(TX_SLOTS)
  private readonly sendMaps: FileMap[] = []
  /** The owner of each slot queued with map data. */
  private readonly mappedOwners: Array<MappedReply | undefined> = new Array(TX_SLOTS)
  private sendCount = 0
  private flushScheduled = false
  private waitingWritable = false
  private closed = false
  private readonly flushLater = (): void => this.flush()

  /** `warn`: where failures that are not the initiator's are reported. */
  constructor (private io: FrameIo, private readonly warn: (message: string) => void = msg => debug('%s', msg)) {
    this.arena = alignedBuffer(TX_SLOTS * TX_SLOT_SIZE)
    // Slot 0 on top of the stack: low slots are reused first.
    for (let i = 0; i < TX_SLOTS; i++) this.freeSlots[i] = TX_SLOTS - 1 - i
  }

  /** From now on replies leave through `io` (the interface came back with a new socket). */
  setIo (io: FrameIo): void {
    this.io = io
    this.waitingWritable = false
    this.requestFlush()
  }

  /** Slots taken: replies being built, waiting on the disk, or queued. */
  get busySlots (): number {
    return TX_SLOTS - this.freeCount
  }

  /** Replies queued and not yet handed to the socket. */
  get queued (): number {
    return this.sendCount
  }

  /** A free slot, or -1 when every one is taken (counted: the request is dropped). */
  alloc (): number {
    if (this.freeCount === 0) {
      this.noBuffers++
      return -1
    }
    return this.freeSlots[--this.freeCount]
  }

  free (slot: number): void {
    this.freeSlots[this.freeCount++] = slot
  }

  /** Adds the reply built in `slot` to the next send batch, padded to the Ethernet minimum. */
  queue (slot: number, length: number): void {
    if (this.closed) return
    const out = frameAt(slot)
    if (length < MIN_FRAME_LENGTH) {
      this.arena.fill(0, out + length, out + MIN_FRAME_LENGTH)
      length = MIN_FRAME_LENGTH
    }
    this.sendOffsets[this.sendCount] = out
    this.sendLengths[this.sendCount] = length
    this.sendMapLengths[this.sendCount] = 0
    this.sendCount++
  }

  /**
   * Adds a reply that is the ATA header built in `slot` followed by `length` bytes at
   * `offset` of `map`, copied when it is sent. Its owner hears when it has gone.
   */
  queueMapped (slot: number, owner: MappedReply, map: FileMap, offset: number, length: number): void {
    let index = this.sendMaps.indexOf(map)
    if (index < 0) index = this.sendMaps.push(map) - 1
    const at = this.sendCount++
    this.sendOffsets[at] = frameAt(slot)
    this.sendLengths[at] = ATA_HEADER_LENGTH
    this.sendMapIndex[at] = index
    this.sendMapOffsets[at] = offset
    this.sendMapLengths[at] = length
    this.mappedOwners[slot] = owner
  }

  /**
   * Turns a queued mapped reply into an ordinary one of `length` bytes from its slot
   * (its owner has put the data there); the owner hears nothing more from the queue.
   */
  unmap (slot: number, length: number): void {
    const out = frameAt(slot)
    for (let i = 0; i < this.sendCount; i++) {
      if (this.sendOffsets[i] !== out || this.sendMapLengths[i] === 0) continue
      this.sendMapLengths[i] = 0
      if (length < MIN_FRAME_LENGTH) {
        this.arena.fill(0, out + length, out + MIN_FRAME_LENGTH)
        length = MIN_FRAME_LENGTH
      }
      this.sendLengths[i] = length
      this.mappedOwners[slot] = undefined
      return
    }
  }

  /** Replies completed outside a receive batch leave together, once this turn of the event loop is over. */
  requestFlush (): void {
    if (this.flushScheduled || this.inBatch || this.closed) return
    this.flushScheduled = true
    setImmediate(this.flushLater)
  }

  /** Sends every queued reply in as few system calls as the socket allows. */
  flush (): void {
    this.flushScheduled = false
    const count = this.sendCount
    if (count === 0 || this.waitingWritable || this.closed) return
    let sent: number
    let failures: Int32Array | null = this.io.sendFailures
    try {
      sent = this.io.send(this.arena, this.sendOffsets, this.sendLengths, count,
        this.sendMaps, this.sendMapIndex, this.sendMapOffsets, this.sendMapLengths)
    } catch (err) {
      // A batch the socket refuses (a bug, never input) is dropped, not retried forever.
      debug('%s: %d replies dropped: %s', this.io.link.name, count, (err as Error).message)
      this.noBuffers += count
      sent = count
      failures = null
    }
    const failed = this.retire(sent, failures)
    // Keep what is left in order: the rest of a short send, and anything an owner
    // queued while hearing that its reply had gone.
    const total = this.sendCount
    if (sent < total) {
      this.sendOffsets.copyWithin(0, sent, total)
      this.sendLengths.copyWithin(0, sent, total)
      this.sendMapIndex.copyWithin(0, sent, total)
      this.sendMapOffsets.copyWithin(0, sent, total)
      this.sendMapLengths.copyWithin(0, sent, total)
      this.sendCount = total - sent
    } else {
      this.sendCount = 0
      this.sendMaps.length = 0
    }
    if (sent < count) {
      // Socket buffer full: try again once it drains.
      this.waitingWritable = true
      this.io.onWritable(() => {
        this.waitingWritable = false
        this.flush()
      })
    } else if (this.sendCount > 0) {
      this.requestFlush()
    }
    if (failed !== null) {
      // Answered now, in the slots the failed replies had.
      for (const [owner, errno] of failed) {
        try {
          owner.mappedFailed(errno)
        } catch (err) {
          this.warn(`${this.io.link.name}: answering a failed mapped send: ${(err as Error).stack}`)
        }
      }
      this.requestFlush()
    }
  }

  /**
   * The first `count` queued replies are gone (sent, or dropped): frees their slots and
   * tells the owners of mapped ones. Returns the mapped replies that failed, whose
   * owners answer again once the queue is in order.
   */
  private retire (count: number, failures: Int32Array | null): Array<[MappedReply, number]> | null {
    let failed: Array<[MappedReply, number]> | null = null
    const failureCount = failures === null ? 0 : Math.min(failures[0], (failures.length - 1) >> 1)
    for (let i = 0; i < count; i++) {
      const slot = Math.floor(this.sendOffsets[i] / TX_SLOT_SIZE)
      if (this.sendMapLengths[i] === 0) {
        this.free(slot)
        continue
      }
      const owner = this.mappedOwners[slot]!
      this.mappedOwners[slot] = undefined
      const errno = failureCount === 0 ? 0 : errnoOf(failures!, failureCount, i)
      if (errno !== 0) {
        (failed ??= []).push([owner, errno])
      } else {
        this.free(slot)
        owner.mappedSent()
      }
    }
    return failed
  }

  /** Drops what is queued (telling mapped replies' owners) and frees the arena; later calls do nothing. */
  close (): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    this.retire(this.sendCount, null)
    this.sendCount = 0
    this.sendMaps.length = 0
  }

  /** Unmaps the arena; only once nothing (the disk) can still use it. */
  releaseArena (): void {
    releaseBuffer(this.arena)
  }
}

/** The errno of frame `index` in a send's failure list, 0 if it did not fail. */
function errnoOf (failures: Int32Array, count: number, index: number): number {
  for (let k = 0; k < count; k++) if (failures[1 + 2 * k] === index) return failures[2 + 2 * k]
  return 0
}
