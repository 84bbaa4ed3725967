/**
 * Request latencies of a target, request received to reply queued, in fixed buckets:
 * recording one is a short scan, no allocation (the caller reads the clock, once per
 * receive batch where it can: see ata-exchange.ts).
 */
import { performance } from 'node:perf_hooks'
import type { LatencyHistogram } from '../control/control'

/** Bucket upper bounds in seconds: 50 µs to 10 s, then everything. */
export const LATENCY_BOUNDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, Infinity,
]

/** The clock requests are timed with, in milliseconds. */
export const now = (): number => performance.now()

export class Latency {
  private readonly counts = new Float64Array(LATENCY_BOUNDS.length)
  private sum = 0
  private count = 0

  /** A request received at `startMs` was answered at `endMs` (both from now()). */
  record (startMs: number, endMs: number): void {
    const seconds = (endMs - startMs) / 1000
    let i = 0
    while (seconds > LATENCY_BOUNDS[i]) i++
    this.counts[i]++
    this.sum += seconds
    this.count++
  }

  snapshot (): LatencyHistogram {
    const counts: number[] = []
    let total = 0
    for (let i = 0; i < this.counts.length; i++) counts.push(total += this.counts[i])
    return { bounds: LATENCY_BOUNDS, counts, sum: this.sum, count: this.count }
  }
}
