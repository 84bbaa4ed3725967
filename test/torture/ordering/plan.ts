/**
 * The ordering check's bursts (pure): pairs of commands on the same sectors, sent back
 * to back, and what each must return. A target applies overlapping requests in the
 * order they arrive (README), so:
 * - read-then-write: the READ returns the data from before the WRITE;
 * - write-then-read: the READ returns the WRITE's data;
 * - write-then-write: the file ends up with the second WRITE's data.
 */
import { chance, type Rand } from '../random'
import { disjointRanges, writeData, type Range } from '../patterns'

export const DIRECTIONS = ['read-then-write', 'write-then-read', 'write-then-write'] as const
export type Direction = typeof DIRECTIONS[number]

/** Pairs per burst, trial after trial. */
export const BURST_SIZES = [1, 16, 64] as const

export interface Command {
  write: boolean
  /** READ/WRITE SECTORS EXT (LBA48) or the LBA28 forms. */
  ext: boolean
  /** The write's id (its data is writeData(salt, id, count)); 0 for a read. */
  writeId: number
}

export interface Pair extends Range {
  first: Command
  second: Command
}

export interface Burst {
  direction: Direction
  pairs: Pair[]
}

/** A burst of `size` pairs on disjoint ranges; write ids are taken from nextId onwards. */
export function planBurst (r: Rand, direction: Direction, size: number, sectors: number, maxSectors: number, nextId: () => number): Burst {
  const command = (write: boolean): Command => ({ write, ext: chance(r, 0.5), writeId: write ? nextId() : 0 })
  const pairs = disjointRanges(r, size, sectors, maxSectors).map(range => {
    switch (direction) {
      case 'read-then-write': { const first = command(false); return { ...range, first, second: command(true) } }
      case 'write-then-read': { const first = command(true); return { ...range, first, second: command(false) } }
      case 'write-then-write': { const first = command(true); return { ...range, first, second: command(true) } }
    }
  })
  return { direction, pairs }
}

export function commandData (salt: number, c: Command, count: number): Buffer | undefined {
  return c.write ? writeData(salt, c.writeId, count) : undefined
}

/** The write whose data the pair's READ must return: 0 means the data from before the burst. */
export function expectedRead (p: Pair, direction: Direction): number {
  return direction === 'write-then-read' ? p.first.writeId : 0
}

/** The write the file must hold after the pair. */
export function expectedFinal (p: Pair): number {
  return p.second.write ? p.second.writeId : p.first.writeId
}

export type ReadOutcome = 'as expected' | 'the old data' | 'the new data' | 'part old, part new' | 'other data'

/**
 * What a READ returned, sector by sector, given the data from before the pair (`old`)
 * and the pair's write (`written`).
 */
export function classifyRead (got: Buffer, old: Buffer, written: Buffer, expectOld: boolean): ReadOutcome {
  if (got.length < old.length) return 'other data'
  let olds = 0
  let news = 0
  for (let o = 0; o < old.length; o += 512) {
    const s = got.subarray(o, o + 512)
    if (s.equals(old.subarray(o, o + 512))) olds++
    else if (s.equals(written.subarray(o, o + 512))) news++
    else return 'other data'
  }
  const n = old.length / 512
  if (olds === n) return expectOld ? 'as expected' : 'the old data'
  if (news === n) return expectOld ? 'the new data' : 'as expected'
  return 'part old, part new'
}
