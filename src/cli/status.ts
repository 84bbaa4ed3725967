/**
 * `kvblade status` and `kvblade monitor`: what the control plane shows, as tables. The
 * formatting and the rates are pure functions of what was read (unit-tested); reading is
 * in control-files.ts.
 */
import type { ControlPlaneView, TargetView } from './control-files'

export interface Column {
  header: string
  /** Numbers are right-aligned, text left-aligned. */
  align: 'left' | 'right'
  /** At least this wide, so the columns of successive reports line up. */
  min?: number
}

/**
 * Aligned columns, two spaces apart; each as wide as its widest cell. The last column is
 * not padded (a backing path may be long and is last for that reason).
 */
export function formatTable (columns: Column[], rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.min ?? 0, c.header.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => {
    if (i === columns.length - 1 && columns[i].align === 'left') return cell
    return columns[i].align === 'right' ? cell.padStart(widths[i]) : cell.padEnd(widths[i])
  }).join('  ') + '\n'
  return [columns.map(c => c.header), ...rows].map(line).join('')
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']

/** A size in sectors as an admin reads it: 512B, 1.0KiB, 64.0MiB, 1.5TiB. */
export function formatSize (sectors: number): string {
  let value = sectors * 512
  if (value < 1024) return `${value}B`
  let unit = -1
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  // 1023.96 would print as 1024.0 of the smaller unit: round first, then pick.
  if (Number(value.toFixed(1)) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)}${UNITS[unit]}`
}

/** The export's options in one word: rw/ro, then what differs from a plain export. */
export function formatTargetOptions (t: TargetView): string {
  const words = [t.readOnly ? 'ro' : 'rw']
  if (t.offset > 0) words.push(`offset=${t.offset}`)
  if (t.aclCount > 0) words.push(`acl=${t.aclCount}`)
  words.push(`cache=${t.cache}`, `bufcnt=${t.bufferCount}`)
  if (t.shared) words.push('shared')
  if (t.direct) words.push('direct')
  return words.join(',')
}

export const STATUS_COLUMNS: Column[] = [
  { header: 'TARGET', align: 'left' },
  { header: 'LINK', align: 'left' },
  { header: 'SIZE', align: 'right' },
  { header: 'BUSY', align: 'right' },
  { header: 'OPTIONS', align: 'left' },
  { header: 'BACKING', align: 'left' },
]

/**
 * One line per target: address, link, size, requests in flight, options, backing path;
 * then, for each target that waits (its interface or backing is not there yet), why.
 */
export function formatStatus (view: Pick<ControlPlaneView, 'targets' | 'interfaces'>): string {
  const rows = view.targets.map(t => [
    t.name,
    t.waiting !== undefined ? 'waiting' : view.interfaces.get(t.ifname)?.link ?? '-',
    formatSize(t.sectors),
    String(t.busy),
    formatTargetOptions(t),
    t.path,
  ])
  const waiting = view.targets.filter(t => t.waiting !== undefined).map(t => `${t.name}: waiting: ${t.waiting ?? ''}\n`)
  return formatTable(STATUS_COLUMNS, rows) + waiting.join('')
}

/** One target's activity over an interval, per second (latency: average milliseconds). */
export interface TargetRates {
  name: string
  readsPerSec: number
  readKiBPerSec: number
  writesPerSec: number
  writeKiBPerSec: number
  /** Average request latency over the interval in ms; 0 when no request completed. */
  awaitMs: number
  /** Requests in flight at the end of the interval. */
  busy: number
  errorsPerSec: number
}

/**
 * Rates between two readings `seconds` apart. A target in only one of them (added or
 * deleted meanwhile), or whose counters went backwards (deleted and added again), has no
 * rate for this interval and is left out.
 */
export function computeRates (prev: TargetView[], cur: TargetView[], seconds: number): TargetRates[] {
  const before = new Map(prev.map(t => [t.name, t]))
  const out: TargetRates[] = []
  for (const t of cur) {
    const p = before.get(t.name)
    if (p === undefined || seconds <= 0) continue
    const d = {
      reads: t.counters.reads - p.counters.reads,
      readSectors: t.counters.readSectors - p.counters.readSectors,
      writes: t.counters.writes - p.counters.writes,
      writeSectors: t.counters.writeSectors - p.counters.writeSectors,
      errors: t.counters.errors - p.counters.errors,
      count: t.latency.count - p.latency.count,
      sum: t.latency.sum - p.latency.sum,
    }
    if (Object.values(d).some(v => v < 0)) continue
    out.push({
      name: t.name,
      readsPerSec: d.reads / seconds,
      readKiBPerSec: d.readSectors / 2 / seconds,
      writesPerSec: d.writes / seconds,
      writeKiBPerSec: d.writeSectors / 2 / seconds,
      awaitMs: d.count > 0 ? d.sum / d.count * 1000 : 0,
      busy: t.busy,
      errorsPerSec: d.errors / seconds,
    })
  }
  return out
}

export const MONITOR_COLUMNS: Column[] = [
  { header: 'TARGET', align: 'left', min: 12 },
  { header: 'r/s', align: 'right', min: 9 },
  { header: 'rkB/s', align: 'right', min: 10 },
  { header: 'w/s', align: 'right', min: 9 },
  { header: 'wkB/s', align: 'right', min: 10 },
  { header: 'await', align: 'right', min: 8 },
  { header: 'busy', align: 'right', min: 5 },
  { header: 'err/s', align: 'right', min: 8 },
]

function clock (date: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0')
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`
}

/**
 * One report, iostat -x style: a blank line, when it ended and how long the interval
 * really was (the sum of rate × interval over reports is what was done), the header, a
 * row per target.
 */
export function formatMonitorReport (rates: TargetRates[], seconds: number, end: Date): string {
  const f = (n: number): string => n.toFixed(2)
  const rows = rates.map(r => [
    r.name, f(r.readsPerSec), f(r.readKiBPerSec), f(r.writesPerSec), f(r.writeKiBPerSec), f(r.awaitMs), String(r.busy), f(r.errorsPerSec),
  ])
  return `\n${clock(end)}  interval ${seconds.toFixed(3)} s\n` + formatTable(MONITOR_COLUMNS, rows)
}
