/**
 * Small helpers over the seeded PRNG (test/helpers/prng.ts): every random choice the
 * torture suite makes goes through one of these, so a run is replayed by its seed.
 */
import { prng } from '../helpers/prng'

export type Rand = () => number

export { prng }

/** An integer in [0, n). */
export function int (r: Rand, n: number): number {
  return Math.floor(r() * n)
}

/** An integer in [lo, hi]. */
export function between (r: Rand, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1))
}

export function chance (r: Rand, p: number): boolean {
  return r() < p
}

export function pick<T> (r: Rand, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]
}

/** Picks by weight; weights need not sum to anything in particular. */
export function weighted<T> (r: Rand, xs: ReadonlyArray<readonly [T, number]>): T {
  let total = 0
  for (const [, w] of xs) total += w
  let x = r() * total
  for (const [v, w] of xs) {
    x -= w
    if (x < 0) return v
  }
  return xs[xs.length - 1][0]
}

/** Random bytes into buf[start, end), four per PRNG call (a million frames need speed). */
export function fill (r: Rand, buf: Buffer, start = 0, end = buf.length): void {
  let i = start
  while (i + 4 <= end) {
    const x = (r() * 0x100000000) >>> 0
    buf[i] = x
    buf[i + 1] = x >>> 8
    buf[i + 2] = x >>> 16
    buf[i + 3] = x >>> 24
    i += 4
  }
  for (; i < end; i++) buf[i] = int(r, 256)
}

export function randomBytes (r: Rand, n: number): Buffer {
  const b = Buffer.alloc(n)
  fill(r, b)
  return b
}

/** A random 48-bit MAC. */
export function randomMac (r: Rand): number {
  return int(r, 0x1000000) * 0x1000000 + int(r, 0x1000000)
}

/**
 * A check's own seed from the run's seed and its name, so that adding or reordering
 * checks does not change what the others generate (FNV-1a over the name).
 */
export function deriveSeed (seed: number, name: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193)
  return (h ^ seed) >>> 0
}
