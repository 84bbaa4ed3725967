/**
 * Keeps overlapping requests in arrival order while letting everything else run at once.
 *
 * The Linux initiator retransmits with a new tag, possibly through another NIC, so an old
 * write can arrive again after a newer write to the same sectors was issued. Running I/O
 * concurrently is what keeps one slow read from holding up the rest; this scheduler makes
 * a request wait only for earlier requests it conflicts with:
 *   - two requests conflict if their byte ranges overlap and at least one is a write;
 *   - a flush waits for every earlier write (it promises that acknowledged writes are
 *     durable), and nothing waits for a flush.
 * The number of outstanding requests is bounded by the initiators' windows (tens to a few
 * hundred), so a linear scan is cheaper than any index.
 */

export const enum IoKind { Read = 0, Write = 1, Flush = 2 }
/** IoKind by name, for messages. */
export const IO_KIND_NAMES = ['read', 'write', 'flush']

export interface ScheduledIo {
  kind: IoKind
  /** Byte range [offset, offset + length). */
  offset: number
  length: number
  /** Earlier conflicting requests still outstanding; owned by the scheduler. */
  blockers: number
}

function conflicts (earlier: ScheduledIo, later: ScheduledIo): boolean {
  if (later.kind === IoKind.Flush) return earlier.kind === IoKind.Write
  if (earlier.kind === IoKind.Flush) return false
  if (earlier.kind === IoKind.Read && later.kind === IoKind.Read) return false
  return earlier.offset < later.offset + later.length && later.offset < earlier.offset + earlier.length
}

export class OrderedScheduler<T extends ScheduledIo> {
  /** Outstanding requests (running or waiting) in arrival order. */
  private readonly active: T[] = []
  /** How many of them wait for an earlier one; while none do, completing needs no scan. */
  private waiting = 0
  /** How many of them are writes; while none are, a read conflicts with nothing. */
  private writes = 0

  constructor (private readonly start: (io: T) => void) {}

  get outstanding (): number {
    return this.active.length
  }

  /** Writes among them: while there are none, a read conflicts with nothing. */
  get writesOutstanding (): number {
    return this.writes
  }

  /**
   * Whether a request that came after `io` is waiting for it. Cheap while nothing
   * waits at all, which is almost always.
   */
  blocksLater (io: T): boolean {
    if (this.waiting === 0) return false
    const active = this.active
    let i = active.indexOf(io)
    if (i < 0) return false
    for (i++; i < active.length; i++) {
      if (active[i].blockers > 0 && conflicts(io, active[i])) return true
    }
    return false
  }

  /** Accepts a request; starts it now unless an earlier one conflicts. */
  submit (io: T): void {
    let blockers = 0
    // Reads only wait for writes: a read-only load never scans.
    if (io.kind !== IoKind.Read || this.writes > 0) {
      for (let i = 0; i < this.active.length; i++) {
        if (conflicts(this.active[i], io)) blockers++
      }
    }
    io.blockers = blockers
    if (io.kind === IoKind.Write) this.writes++
    this.active.push(io)
    if (blockers === 0) this.start(io)
    else this.waiting++
  }

  /** Marks a started request finished and starts whatever was waiting only for it. */
  complete (io: T): void {
    const index = this.active.indexOf(io)
    if (index < 0) throw new Error('completing a request the scheduler does not hold')
    // Requests mostly complete in arrival order: shift() is cheap where splice() copies.
    if (index === 0) this.active.shift()
    else this.active.splice(index, 1)
    if (io.kind === IoKind.Write) this.writes--
    if (this.waiting === 0) return
    // Collect first, start after: a start may complete synchronously and re-enter.
    let ready: T[] | undefined
    for (let i = index; i < this.active.length; i++) {
      const later = this.active[i]
      if (conflicts(io, later) && --later.blockers === 0) (ready ??= []).push(later)
    }
    if (ready !== undefined) {
      this.waiting -= ready.length
      for (const next of ready) this.start(next)
    }
  }
}
