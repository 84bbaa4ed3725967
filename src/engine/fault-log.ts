/**
 * Disk faults, logged so an admin sees them without DEBUG: one line per target and kind
 * of fault at once, then, while it goes on, one line per interval with how many more
 * there were. A failing disk answers thousands of requests a second with errors; this
 * keeps the log readable and still says how bad it is.
 */

/** What kind of fault a disk error is: "read EIO", "write ENOSPC", "read short"... */
export function faultKind (op: string, err: NodeJS.ErrnoException): string {
  if ((err as { short?: boolean }).short === true) return `${op} short`
  return `${op} ${err.code ?? 'error'}`
}

interface Pending { target: string, kind: string, count: number }

/** "10 s"; under a second (tests) in ms, not "0 s". */
function duration (ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`
}

export class FaultLog {
  private readonly pending = new Map<string, Pending>()
  private timer: NodeJS.Timeout | null = null

  constructor (
    private readonly warn: (message: string) => void,
    readonly intervalMs = 10_000,
  ) {}

  /** A fault of `kind` on `target`; `detail` says where (the first of each kind is logged with it). */
  report (target: string, kind: string, detail: string): void {
    const key = `${target}\0${kind}`
    const p = this.pending.get(key)
    if (p !== undefined) {
      p.count++
      return
    }
    this.pending.set(key, { target, kind, count: 0 })
    this.warn(`${target}: ${kind}: ${detail} (more of these are counted and logged every ${duration(this.intervalMs)})`)
    this.timer ??= setInterval(() => this.tick(), this.intervalMs).unref()
  }

  /** Logs the counts of the interval; a kind that stayed quiet is forgotten (its next fault is logged at once). */
  tick (): void {
    for (const [key, p] of this.pending) {
      if (p.count === 0) {
        this.pending.delete(key)
        continue
      }
      this.warn(`${p.target}: ${p.kind}: ${p.count} more in the last ${duration(this.intervalMs)}`)
      p.count = 0
    }
    if (this.pending.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  close (): void {
    this.tick()
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
