/**
 * The control plane's file tree as a pure model: path → node, directory listings, file
 * contents and what a write to each file does. No FUSE here (see filesystem.ts), so the
 * whole semantics can be unit-tested without a mount.
 *
 *   /add /del /readd /announce          write-only (0200): one command per write(2)
 *   /reload                             read-write: a write applies the exports file again; a read tells how the last went
 *   /stat                               read-only: one line per interface
 *   /interfaces                         read-only: each interface's link state and MTU
 *   /MAJOR.MINOR@IFACE/                 one directory per target
 *       scnt bdev bpath busy mtu stat   read-only (0444)
 *       ro offset length faults state   read-only (0444)
 *       shared direct latency           read-only (0444)
 *       model sn                        read-write (0644): what IDENTIFY returns
 *       acl cache bufcnt                read-write (0644): who sees it, how writes are acknowledged, its buffer count
 */
import { resolve } from 'node:path'
import type { Control, InterfaceStats, LatencyHistogram, TargetInfo, TargetStats } from '../src/control/control'
import { parseAddCommand, parseDelCommand, targetName } from '../src/control/command'
import { MODEL_MAX, SERIAL_MAX, formatAcl, parseAcl, parseBufferCount, parseCacheMode, parseIdentity } from '../src/control/values'
import type { TargetAddress } from '../src/control/command'
import { ControlError } from '../src/control/errors'
import { FsError } from './errors'

/** sysfs hands a store method at most one page; we refuse anything longer outright. */
export const MAX_WRITE = 4096
/** ATA IDENTIFY field widths (words 27–46 and 10–19). */
export { MODEL_MAX, SERIAL_MAX }

export type Access = 'wo' | 'ro' | 'rw'

export const MODE_BITS: Record<Access, number> = { wo: 0o200, ro: 0o444, rw: 0o644 }

export interface DirNode {
  readonly kind: 'dir'
  /** Names in the directory, without '.' and '..'. */
  entries (): string[]
  /** Number of subdirectories (for st_nlink). */
  subdirs (): number
}

export interface FileNode {
  readonly kind: 'file'
  readonly access: Access
  /** The file's current text; throws ControlError (ENOENT) if the target has gone. */
  render (): string
  /** Executes one write(2)'s worth of data; rejects with ControlError. */
  write (data: Buffer): Promise<void>
}

export type Node = DirNode | FileNode

/** The control files at the top, in listing order. */
export const ROOT_FILES = ['add', 'announce', 'del', 'interfaces', 'readd', 'reload', 'stat'] as const
/** The attribute files of a target directory, in listing order. */
export const TARGET_FILES = ['acl', 'bdev', 'bpath', 'bufcnt', 'busy', 'cache', 'direct', 'faults', 'latency', 'length', 'model', 'mtu', 'offset', 'ro', 'scnt', 'shared', 'sn', 'stat', 'state'] as const

/** Field order of a target's `stat` line; the same order as TargetStats. */
export const TARGET_STAT_FIELDS: ReadonlyArray<keyof TargetStats> =
  ['reads', 'readSectors', 'writes', 'writeSectors', 'flushes', 'errors', 'inFlight', 'frames', 'syncs', 'syncedWrites']

/** Field order of the top-level `stat` lines, after the interface name. */
export const INTERFACE_STAT_FIELDS: ReadonlyArray<Exclude<keyof InterfaceStats, 'ifname' | 'link' | 'mtu'>> =
  ['framesIn', 'framesOut', 'kernelDrops', 'ignored', 'malformed', 'sendErrors']

function num (n: number): string {
  return Number.isFinite(n) ? String(Math.trunc(n)) : '0'
}

/** A target's `stat` line: ten counters, each right-aligned in 8 columns like /sys/block/<dev>/stat. */
export function formatTargetStat (s: TargetStats): string {
  return TARGET_STAT_FIELDS.map(f => num(s[f]).padStart(8)).join(' ') + '\n'
}

/** The top-level `stat`: `IFACE framesIn framesOut kernelDrops ignored malformed sendErrors`, one line each. */
export function formatInterfaceStats (list: InterfaceStats[]): string {
  return list.map(i => [i.ifname, ...INTERFACE_STAT_FIELDS.map(f => num(i[f]))].join(' ') + '\n').join('')
}

/** The top-level `interfaces`: `IFACE STATE MTU`, one line each (STATE up, down or gone). */
export function formatInterfaces (list: InterfaceStats[]): string {
  return list.map(i => `${i.ifname} ${i.link} ${num(i.mtu)}\n`).join('')
}

/**
 * A target's `latency`: `COUNT SUM_SECONDS`, then one `BOUND CUMULATIVE_COUNT` line per
 * bucket (the last bound is +Inf), as a Prometheus histogram has them. Nanosecond digits,
 * so an average over a short interval does not round to zero.
 */
export function formatLatency (h: LatencyHistogram): string {
  const sum = Number.isFinite(h.sum) ? h.sum.toFixed(9) : '0'
  const buckets = h.bounds.map((b, i) => `${b === Infinity ? '+Inf' : String(b)} ${num(h.counts[i] ?? 0)}\n`)
  return `${num(h.count)} ${sum}\n` + buckets.join('')
}

const TARGET_DIR = /^(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,2})@([^/]+)$/

/** Parses a canonical `MAJOR.MINOR@IFACE` directory name (decimal, no leading zeros). */
export function parseTargetName (name: string): TargetAddress | undefined {
  const m = TARGET_DIR.exec(name)
  if (m === null) return undefined
  return { major: Number(m[1]), minor: Number(m[2]), ifname: m[3] }
}

/** E2BIG for a write longer than one sysfs page. */
export function checkWriteSize (data: Buffer): void {
  if (data.length > MAX_WRITE) throw new FsError('E2BIG', `a write of ${data.length} bytes exceeds ${MAX_WRITE}`)
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * The text of a write, or EINVAL for anything that is not a line of text: invalid UTF-8,
 * NUL, or control characters other than tab, CR and LF (the parsers deal with those).
 */
export function decodeWrite (data: Buffer): string {
  checkWriteSize(data)
  let text: string
  try {
    text = utf8.decode(data)
  } catch {
    throw new ControlError('EINVAL', 'not UTF-8 text')
  }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) throw new ControlError('EINVAL', 'control characters in command')
  return text
}

/** A model or serial value as written: text of one write, then the control plane's own check. */
export function parseIdentityValue (data: Buffer, what: string, max: number): string {
  return parseIdentity(decodeWrite(data), what, max)
}

function describe (cmd: TargetAddress & { path?: string }): string {
  return `${cmd.major} ${cmd.minor} ${cmd.ifname}${cmd.path === undefined ? '' : ' ' + cmd.path}`
}

export class ControlTree {
  /**
   * `mountDir`: where this tree is mounted. A backing path inside it is refused, since the
   * daemon opening a file it serves itself could deadlock it.
   */
  constructor (
    private readonly control: Control,
    private readonly log: (msg: string) => void = () => {},
    private readonly mountDir?: string
  ) {}

  /** The node at an absolute path such as '/', '/add' or '/9.0@eth0/scnt'; undefined if none. */
  lookup (path: string): Node | undefined {
    if (path === '/' || path === '') return this.rootDir()
    const parts = path.split('/')
    if (parts[0] !== '' || parts.some((p, i) => i > 0 && p === '')) return undefined
    if (parts.length === 2) return this.rootEntry(parts[1])
    if (parts.length === 3) {
      const addr = this.findTarget(parts[1])
      return addr === undefined ? undefined : this.targetFile(addr, parts[2])
    }
    return undefined
  }

  private findTarget (name: string): TargetAddress | undefined {
    const addr = parseTargetName(name)
    if (addr === undefined) return undefined
    const info = this.control.get(addr)
    // Only the canonical spelling exists, exactly as readdir lists it.
    if (info === undefined || targetName(info) !== name) return undefined
    return { major: info.major, minor: info.minor, ifname: info.ifname }
  }

  private rootDir (): DirNode {
    const control = this.control
    return {
      kind: 'dir',
      entries: () => [...ROOT_FILES, ...control.list().map(targetName).sort()],
      subdirs: () => control.list().length
    }
  }

  private rootEntry (name: string): Node | undefined {
    switch (name) {
      case 'add': return this.commandFile(data => this.add(data))
      case 'del': return this.commandFile(data => this.del(data))
      case 'readd': return this.commandFile(data => this.readd(data))
      case 'announce': return this.commandFile(async () => {
        this.control.announce() // any write at all, as in kvblade
        this.log('announce')
      })
      case 'stat': return this.readOnly(() => formatInterfaceStats(this.control.interfaces()))
      case 'reload': return {
        kind: 'file',
        access: 'rw',
        // What the last reload did (or why it applied nothing).
        render: () => {
          const r = this.control.lastReloadResult?.()
          return r === undefined ? 'no exports file\n' : `${r.ok ? 'ok' : 'failed'}: ${r.summary}\n`
        },
        // Any write applies the exports file again; a bad line is EINVAL and changes nothing.
        write: async data => {
          checkWriteSize(data)
          if (this.control.reload === undefined) throw new ControlError('EINVAL', 'this daemon has no exports file')
          const r = await this.control.reload()
          this.log(`reload: ${r.summary}`)
          if (!r.ok) throw new ControlError('EINVAL', r.summary)
        }
      }
      case 'interfaces': return this.readOnly(() => formatInterfaces(this.control.interfaces()))
    }
    const addr = this.findTarget(name)
    if (addr === undefined) return undefined
    return { kind: 'dir', entries: () => [...TARGET_FILES], subdirs: () => 0 }
  }

  private commandFile (run: (data: Buffer) => Promise<void>): FileNode {
    return {
      kind: 'file',
      access: 'wo',
      render: () => { throw new FsError('EACCES', 'write-only file') },
      write: async data => {
        checkWriteSize(data)
        await run(data)
      }
    }
  }

  private readOnly (render: () => string): FileNode {
    return {
      kind: 'file',
      access: 'ro',
      render,
      write: async () => { throw new FsError('EACCES', 'read-only file') }
    }
  }

  private info (addr: TargetAddress): TargetInfo {
    const info = this.control.get(addr)
    if (info === undefined) throw new ControlError('ENOENT', `${targetName(addr)} is gone`)
    return info
  }

  private targetFile (addr: TargetAddress, name: string): FileNode | undefined {
    const field = (get: (i: TargetInfo) => string): FileNode => this.readOnly(() => get(this.info(addr)) + '\n')
    switch (name) {
      case 'scnt': return field(i => num(i.sectors))
      case 'bdev': return field(i => i.bdev)
      case 'bpath': return field(i => i.path)
      case 'busy': return field(i => num(i.busy))
      case 'mtu': return field(i => num(i.mtu))
      case 'stat': return this.readOnly(() => formatTargetStat(this.info(addr).stats))
      case 'model': return {
        kind: 'file',
        access: 'rw',
        render: () => this.info(addr).model + '\n',
        write: async data => {
          const model = parseIdentityValue(data, 'model', MODEL_MAX)
          this.info(addr)
          await this.control.setModel(addr, model)
          this.log(`${targetName(addr)}: model set to "${model}"`)
        }
      }
      case 'sn': return {
        kind: 'file',
        access: 'rw',
        render: () => this.info(addr).serial + '\n',
        write: async data => {
          const serial = parseIdentityValue(data, 'serial number', SERIAL_MAX)
          this.info(addr)
          await this.control.setSerial(addr, serial)
          this.log(`${targetName(addr)}: serial number set to "${serial}"`)
        }
      }
      case 'ro': return field(i => i.readOnly ? '1' : '0')
      case 'state': return field(i => i.state === 'waiting' ? `waiting: ${i.waiting ?? ''}` : 'serving')
      case 'shared': return field(i => i.shared ? '1' : '0')
      case 'direct': return field(i => i.direct ? '1' : '0')
      case 'latency': return this.readOnly(() => formatLatency(this.info(addr).latency))
      case 'offset': return field(i => num(i.offset))
      case 'length': return field(i => num(i.length))
      case 'faults': return this.readOnly(() => Object.entries(this.info(addr).faults).map(([kind, n]) => `${kind} ${n}\n`).join(''))
      case 'acl': return {
        kind: 'file',
        access: 'rw',
        render: () => formatAcl(this.info(addr).acl),
        write: async data => {
          const macs = parseAcl(decodeWrite(data))
          this.info(addr)
          await this.control.setAcl(addr, macs)
          this.log(`${targetName(addr)}: acl ${macs.length === 0 ? 'cleared' : `set to ${macs.length} MACs`}`)
        }
      }
      case 'cache': return {
        kind: 'file',
        access: 'rw',
        render: () => this.info(addr).cache + '\n',
        write: async data => {
          const mode = parseCacheMode(decodeWrite(data))
          this.info(addr)
          await this.control.setCache(addr, mode)
          this.log(`${targetName(addr)}: cache ${mode}`)
        }
      }
      case 'bufcnt': return {
        kind: 'file',
        access: 'rw',
        render: () => num(this.info(addr).bufferCount) + '\n',
        write: async data => {
          const count = parseBufferCount(decodeWrite(data).replace(/\r?\n$/, ''), 'bufcnt')
          this.info(addr)
          await this.control.setBufferCount(addr, count)
          this.log(`${targetName(addr)}: bufcnt ${count}`)
        }
      }
    }
    return undefined
  }

  private checkBacking (path: string): void {
    if (this.mountDir === undefined) return
    const abs = resolve(path)
    if (abs === this.mountDir || abs.startsWith(this.mountDir.replace(/\/$/, '') + '/')) {
      throw new ControlError('ENOENT', `cannot open ${path}: it is inside the control plane`)
    }
  }

  private async add (data: Buffer): Promise<void> {
    const cmd = parseAddCommand(decodeWrite(data))
    this.checkBacking(cmd.path)
    await this.control.add(cmd)
    this.log(`add ${describe(cmd)}: added ${targetName(cmd)}`)
  }

  private async readd (data: Buffer): Promise<void> {
    const cmd = parseAddCommand(decodeWrite(data))
    this.checkBacking(cmd.path)
    await this.control.readd(cmd)
    this.log(`readd ${describe(cmd)}: ${targetName(cmd)} now backed by ${cmd.path}`)
  }

  private async del (data: Buffer): Promise<void> {
    const addr = parseDelCommand(decodeWrite(data))
    await this.control.del(addr)
    this.log(`del ${describe(addr)}: removed ${targetName(addr)}`)
  }
}
