/**
 * The control plane as another process sees it: finding the mount, reading a target's
 * files and parsing them. For `kvblade status`, `monitor` and `sysfs`, which run in their
 * own process: the daemon must never read its own mount synchronously (fuse/README.md).
 */
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { TARGET_STAT_FIELDS, parseTargetName } from '../../fuse/tree'
import type { TargetStats } from '../control/control'
import { kvbladeMounts, readMounts, type MountEntry } from '../../fuse/mountinfo'
import { DEFAULT_MOUNT } from './args'

/**
 * Where the control plane is: `explicit` (--mount) if given, else the one kvblade control
 * plane mounted, else DEFAULT_MOUNT. Several mounted and none chosen is an error naming them.
 */
export function chooseControlPlane (explicit: string | undefined, mounts: MountEntry[]): string {
  if (explicit !== undefined) return explicit
  const found = kvbladeMounts(mounts)
  if (found.length === 1) return found[0]
  if (found.length === 0) return DEFAULT_MOUNT
  throw new Error(`${found.length} kvblade control planes are mounted (${found.join(', ')}): choose one with --mount DIR`)
}

export async function findControlPlane (explicit?: string): Promise<string> {
  return chooseControlPlane(explicit, explicit === undefined ? await readMounts() : [])
}

/** A target's `stat` line, in the field order the control plane writes it. */
export type TargetCounters = TargetStats

function number (text: string, what: string): number {
  const n = Number(text)
  if (text === '' || !Number.isFinite(n)) throw new Error(`${what}: "${text}" is not a number`)
  return n
}

/** Fields a daemon older than the sync counters leaves out read as 0; unknown later ones are ignored. */
export function parseTargetStat (text: string): TargetCounters {
  const words = text.trim().split(/\s+/)
  const known = TARGET_STAT_FIELDS.indexOf('syncs')
  if (words.length < known) throw new Error(`stat: expected at least ${known} counters, got "${text.trim()}"`)
  const out = {} as TargetCounters
  TARGET_STAT_FIELDS.forEach((f, i) => { out[f] = i < words.length ? number(words[i], `stat ${f}`) : 0 })
  return out
}

/** The first line of a target's `latency`: requests timed and their total seconds. */
export interface LatencyTotals { count: number, sum: number }

export function parseLatency (text: string): LatencyTotals {
  const [count, sum] = (text.split('\n')[0] ?? '').trim().split(/\s+/)
  return { count: number(count ?? '', 'latency count'), sum: number(sum ?? '', 'latency sum') }
}

export type LinkState = 'up' | 'down' | 'gone'

/** The top-level `interfaces`: `IFACE STATE MTU` lines. */
export function parseInterfaces (text: string): Map<string, { link: LinkState, mtu: number }> {
  const out = new Map<string, { link: LinkState, mtu: number }>()
  for (const line of text.split('\n')) {
    const [ifname, link, mtu] = line.trim().split(/\s+/)
    if (ifname === undefined || ifname === '' || link === undefined) continue
    out.set(ifname, { link: link as LinkState, mtu: Number(mtu) })
  }
  return out
}

/** What status and monitor need of one target, read from its directory. */
export interface TargetView {
  name: string
  major: number
  minor: number
  ifname: string
  sectors: number
  path: string
  busy: number
  /** Why it is not serving (restored, or from the exports file, before its interface or backing appeared); undefined: serving. */
  waiting?: string
  readOnly: boolean
  shared: boolean
  direct: boolean
  offset: number
  aclCount: number
  cache: string
  bufferCount: number
  counters: TargetCounters
  latency: LatencyTotals
}

export interface ControlPlaneView {
  /** When the reading started, milliseconds on a monotonic clock. */
  timeMs: number
  targets: TargetView[]
  /** Link state per interface; empty for a daemon without the `interfaces` file. */
  interfaces: Map<string, { link: LinkState, mtu: number }>
}

function isGone (err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT'
}

/** A file that older daemons lack reads as `fallback`. */
async function optional (file: string, fallback: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if (isGone(err)) return fallback
    throw err
  }
}

async function readTarget (dir: string, name: string): Promise<TargetView | undefined> {
  const addr = parseTargetName(name)
  if (addr === undefined) return undefined
  const d = join(dir, name)
  const text = (file: string): Promise<string> => readFile(join(d, file), 'utf8')
  try {
    const [scnt, bpath, busy, stat, ro, shared, direct, offset, acl, cache, bufcnt, latency, state] = await Promise.all([
      text('scnt'), text('bpath'), text('busy'), text('stat'),
      optional(join(d, 'ro'), '0'), optional(join(d, 'shared'), '0'), optional(join(d, 'direct'), '0'),
      optional(join(d, 'offset'), '0'), optional(join(d, 'acl'), ''), optional(join(d, 'cache'), '-'),
      optional(join(d, 'bufcnt'), '0'), optional(join(d, 'latency'), '0 0'), optional(join(d, 'state'), 'serving'),
    ])
    const waiting = /^waiting: ?(.*)$/s.exec(state.trim())
    return {
      name,
      ...addr,
      sectors: number(scnt.trim(), `${name}/scnt`),
      path: bpath.replace(/\n$/, ''),
      busy: number(busy.trim(), `${name}/busy`),
      ...(waiting !== null ? { waiting: waiting[1] } : {}),
      readOnly: ro.trim() === '1',
      shared: shared.trim() === '1',
      direct: direct.trim() === '1',
      offset: number(offset.trim(), `${name}/offset`),
      aclCount: acl.split('\n').filter(l => l.trim() !== '').length,
      cache: cache.trim(),
      bufferCount: number(bufcnt.trim(), `${name}/bufcnt`),
      counters: parseTargetStat(stat),
      latency: parseLatency(latency),
    }
  } catch (err) {
    // Deleted while we read it: not an error, it is simply not there any more.
    if (isGone(err)) return undefined
    throw err
  }
}

/** Orders targets by major, minor, then interface, as an admin reads them. */
export function compareTargets (a: { major: number, minor: number, ifname: string }, b: { major: number, minor: number, ifname: string }): number {
  return a.major - b.major || a.minor - b.minor || (a.ifname < b.ifname ? -1 : a.ifname > b.ifname ? 1 : 0)
}

/** Reads every target of the control plane at `dir` (asynchronously: see the file comment). */
export async function readControlPlane (dir: string): Promise<ControlPlaneView> {
  const timeMs = performance.now()
  let names: string[]
  try {
    names = await readdir(dir)
    // A directory that is not a control plane (nothing mounted there) has no stat.
    await readFile(join(dir, 'stat'), 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'ENOTCONN' ? 'its daemon is gone (stale mount; clear it with fusermount -uz)' : e.message
    throw new Error(`no kvblade control plane at ${dir}: ${why} (is the daemon running? choose another with --mount DIR)`)
  }
  const [targets, interfaces] = await Promise.all([
    Promise.all(names.filter(n => n.includes('@')).map(n => readTarget(dir, n))),
    optional(join(dir, 'interfaces'), ''),
  ])
  return {
    timeMs,
    targets: targets.filter((v): v is TargetView => v !== undefined).sort(compareTargets),
    interfaces: parseInterfaces(interfaces),
  }
}
