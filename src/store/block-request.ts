import type { FileMap } from '../native/memory'
import { IO_KIND_NAMES, IoKind, type ScheduledIo } from './ordering'

/** What a request reports its progress to: the store it was submitted to. */
export interface RequestOwner {
  readonly path: string
  /** Moves the rest of a short transfer (bytes [done, length)). */
  continueTransfer (req: BlockRequest, done: number): void
  /** The request is over, successfully (err null) or not. */
  finish (req: BlockRequest, err: NodeJS.ErrnoException | null): void
}

/**
 * One disk request. The packet loop keeps a fixed set of these and reuses them, so the
 * callbacks are bound once here rather than allocated per frame.
 */
export abstract class BlockRequest implements ScheduledIo {
  kind: IoKind = IoKind.Read
  offset = 0
  length = 0
  blockers = 0
  buffer: Buffer = Buffer.alloc(0)
  bufferOffset = 0
  /** @internal Where the store lists it while it is a read answered from the map; -1 otherwise. */
  mappedAt = -1
  /** @internal That read is also in the store's ordering scheduler (it had to wait for a write first). */
  mappedInOrder = false
  /** Bytes transferred so far (pread/pwrite may return short). */
  private transferred = 0
  private owner: RequestOwner | null = null

  /** Called once the request has finished; err is null on success. */
  abstract ioComplete (err: NodeJS.ErrnoException | null): void

  /**
   * A read of a file in RAM may be answered without reading: the reply is sent with
   * its data taken from `map` by the kernel at send time. Returns false to be read the
   * ordinary way; true if the reply is queued, and then the request must later call
   * the store's mappedReadDone() (sent or dropped) unless the store fixes it first
   * (fixFromFile). Only the packet loop's requests can do this.
   */
  sendFromMap (_map: FileMap): boolean {
    return false
  }

  /**
   * A later write is about to change the sectors this mapped read's reply will take
   * from the map: read them into the reply now, from `fd`, so it carries the data as
   * of its arrival. Returns false if the file no longer holds them (the reply becomes
   * an error).
   */
  fixFromFile (_fd: number): boolean {
    throw new Error('fixFromFile on a request that was never sent from a map')
  }

  /** @internal */ begin (owner: RequestOwner): void {
    this.owner = owner
    this.transferred = 0
  }

  /** @internal */ readonly onTransfer = (err: NodeJS.ErrnoException | null, bytes: number): void => {
    const owner = this.owner!
    if (err === null) {
      this.transferred += bytes
      if (this.transferred < this.length) {
        if (bytes > 0) return owner.continueTransfer(this, this.transferred)
        // Marked, so that a fault log can tell a short transfer (the file ends early) from a failing disk.
        err = Object.assign(new Error(`short ${IO_KIND_NAMES[this.kind]} at byte ${this.offset + this.transferred} of ${owner.path}`), { code: 'EIO', short: true })
      }
    }
    owner.finish(this, err)
  }

  /** @internal */ readonly onSync = (err: NodeJS.ErrnoException | null): void => {
    this.owner!.finish(this, err)
  }
}
