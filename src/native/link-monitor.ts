/**
 * The kernel's news about network interfaces (rtnetlink link messages): appearing,
 * going up or down, a new MTU or MAC, going away. One netlink socket per network
 * namespace; the records are parsed in C with the kernel's own macros.
 */
import { loadNative, type NativeLinkMonitor, type NativeLinkRecord } from './addon'

export type LinkRecord = NativeLinkRecord

export class LinkMonitor {
  /** Opens a socket subscribed to link events (in `netns`, a namespace file, for tests). */
  static open (netns?: string): LinkMonitor {
    return new LinkMonitor(new (loadNative().LinkMonitor)(netns ?? ''))
  }

  private closed = false

  private constructor (private readonly native: NativeLinkMonitor) {}

  /** Every interface as it is now (blocks for the kernel's answer, which is immediate). */
  dump (): LinkRecord[] {
    return this.native.dump()
  }

  /** The events pending now, without blocking ([] when none); one system call when none. */
  poll (): LinkRecord[] {
    return this.closed ? [] : this.native.poll()
  }

  /** cb runs whenever events are pending (it should poll()). Does not keep the process alive. */
  onChange (cb: () => void): void {
    this.native.onChange(cb)
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.native.close()
  }
}
