/**
 * The daemon's counters as its control plane shows them (fuse/README.md, "stat field
 * order"). Parsing is pure; reading goes through fs.promises, never a synchronous call
 * on a FUSE mount.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'

export interface InterfaceCounters {
  ifname: string
  framesIn: number
  framesOut: number
  kernelDrops: number
  ignored: number
  malformed: number
  sendErrors: number
}

export interface TargetCounters {
  reads: number
  readSectors: number
  writes: number
  writeSectors: number
  flushes: number
  errors: number
  inFlight: number
  frames: number
  /** Group commit: fdatasyncs, and the writes they covered. */
  syncs: number
  syncedWrites: number
}

const INTERFACE_FIELDS = ['framesIn', 'framesOut', 'kernelDrops', 'ignored', 'malformed', 'sendErrors'] as const
const TARGET_FIELDS = ['reads', 'readSectors', 'writes', 'writeSectors', 'flushes', 'errors', 'inFlight', 'frames', 'syncs', 'syncedWrites'] as const

function numbers (fields: string[], want: number, what: string): number[] {
  if (fields.length !== want || !fields.every(f => /^\d+$/.test(f))) throw new Error(`${what}: expected ${want} counters, got "${fields.join(' ')}"`)
  return fields.map(Number)
}

/** DIR/stat: one line per interface, "IFACE framesIn framesOut kernelDrops ignored malformed sendErrors". */
export function parseInterfaceStats (text: string): Map<string, InterfaceCounters> {
  const out = new Map<string, InterfaceCounters>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const [ifname, ...rest] = line.trim().split(/\s+/)
    const n = numbers(rest, INTERFACE_FIELDS.length, `interface stat line "${line}"`)
    const c: InterfaceCounters = { ifname, framesIn: 0, framesOut: 0, kernelDrops: 0, ignored: 0, malformed: 0, sendErrors: 0 }
    INTERFACE_FIELDS.forEach((f, i) => { c[f] = n[i] })
    out.set(ifname, c)
  }
  return out
}

/** DIR/MAJOR.MINOR@IFACE/stat: one line of ten counters. */
export function parseTargetStats (text: string): TargetCounters {
  const lines = text.split('\n').filter(l => l.trim() !== '')
  if (lines.length !== 1) throw new Error(`target stat: expected one line, got ${lines.length}`)
  const n = numbers(lines[0].trim().split(/\s+/), TARGET_FIELDS.length, `target stat "${lines[0]}"`)
  const c = {} as TargetCounters
  TARGET_FIELDS.forEach((f, i) => { c[f] = n[i] })
  return c
}

/** after − before, field by field. */
export function delta<T extends object> (after: T, before: T): T {
  const out = { ...after }
  for (const k of Object.keys(after) as Array<keyof T>) {
    if (typeof after[k] === 'number') (out[k] as number) = (after[k] as number) - (before[k] as number)
  }
  return out
}

export async function readInterfaceStats (mount: string, ifname: string): Promise<InterfaceCounters> {
  const all = parseInterfaceStats(await fsp.readFile(path.join(mount, 'stat'), 'utf8'))
  const c = all.get(ifname)
  if (c === undefined) throw new Error(`${mount}/stat has no line for ${ifname}`)
  return c
}

export async function readTargetStats (mount: string, major: number, minor: number, ifname: string): Promise<TargetCounters> {
  return parseTargetStats(await fsp.readFile(path.join(mount, `${major}.${minor}@${ifname}`, 'stat'), 'utf8'))
}
