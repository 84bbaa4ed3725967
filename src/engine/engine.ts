/**
 * The device table (the aoedev of the Linux initiator's split): which targets exist, on
 * which interfaces, with which exports (backing slices) and shared per-address state;
 * and the control surface kvblade had in sysfs, as calls that run one at a time.
 */
import fs from 'node:fs'
import createDebug from 'debug'
import { formatMac } from '../aoe/mac'
import { ControlError, errnoNumber, type ControlErrno } from '../control/errors'
import {
  MAJOR_LINUX_REFUSES, formatOptions, targetName, type AddCommand, type CacheMode, type TargetAddress,
} from '../control/command'
import type { Control, InterfaceStats, TargetInfo } from '../control/control'
import { DEFAULT_BUFFER_COUNT, checkBufferCount, checkModel, checkSerial } from '../control/values'
import { BackingStore } from '../store/backing-store'
import type { DiskEngine } from '../store/disk-engine'
import { openDiskEngine } from '../store/open-disk-engine'
import { AddressState } from './address-state'
import { Export, diskOptions, sameDisk, type DiskOptions } from './export'
import { FaultLog, faultKind } from './fault-log'
import { LinkTable, SocketFrameIo } from './links'
import { BackingLocks, FileClaims, fileIdentity, netnsIdentity, type AddressClaims, type Claim } from './locks'
import type { FrameIo } from './frame-io'
import { Port } from './port'
import { Target } from './target'

const debug = createDebug('kvblade:engine')

export { DEFAULT_BUFFER_COUNT }

export interface EngineOptions {
  /** Buffer count advertised in Query Config replies (the initiator's window), unless a target sets its own. */
  bufferCount?: number
  /** Open interfaces inside this network namespace (tests). */
  netns?: string
  /** Open backing files with O_DIRECT (vblade's -d), where the file system allows it. */
  direct?: boolean
  /** The cache mode of targets that do not name one. */
  cache?: CacheMode
  /** How disk I/O is done: default io_uring where the kernel allows it, else the thread pool. */
  disk?: DiskEngine
  /** How an interface's frames are sent and received: default its packet socket (tests substitute their own). */
  openFrameIo?: (ifname: string) => FrameIo
  /** Claims on addresses shared with other processes on this host (default: lock files under /run/kvblade). */
  claims?: AddressClaims
  /** How long an add listens for other targets serving its address (ms; 0: not at all). */
  probeMs?: number
  /** How often backing sizes are read again (ms). */
  sizeCheckMs?: number
  /** Where warnings go (the CLI prints them on stderr). */
  warn?: (message: string) => void
}

export const DEFAULT_PROBE_MS = 100
export const DEFAULT_SIZE_CHECK_MS = 2000

/** A refusal from below (an open, a socket) as the errno a sysfs write would give. */
function refusal (err: unknown, fallback: ControlErrno = 'EIO'): ControlError {
  if (err instanceof ControlError) return err
  const e = err as NodeJS.ErrnoException
  const code = e.code !== undefined && errnoNumber(e.code) !== undefined ? e.code as ControlErrno : fallback
  return new ControlError(code, e.message)
}

/** A target's export and claim, as the table keeps them. */
interface Entry { target: Target, claim: Claim }

/**
 * The AoE target engine: any number of targets on any number of interfaces in one
 * process. Implements the control surface kvblade had in sysfs.
 */
export class Engine implements Control {
  private readonly ports = new Map<string, Port>()
  private readonly targets = new Map<string, Entry>()
  /** Per major.minor: the config string, mask and reservation, and the export, shared across interfaces. */
  private readonly states = new Map<string, AddressState>()
  private readonly exports = new Map<string, Export>()
  /** Control commands (and close) run one at a time, in order, as sysfs writes to one module would. */
  private commands: Promise<unknown> = Promise.resolve()
  private readonly bufferCount: number
  private readonly disk: DiskEngine
  private readonly warn: (message: string) => void
  private readonly locks = new BackingLocks()
  private readonly claims: AddressClaims
  private readonly netns: string
  private readonly faults: FaultLog
  private readonly sizeTimer: NodeJS.Timeout
  private links: LinkTable | null = null
  /** close() was called: commands from now on are refused (those queued before still run). */
  private closing = false
  private closed: Promise<void> | null = null

  constructor (private readonly options: EngineOptions = {}) {
    this.bufferCount = options.bufferCount ?? DEFAULT_BUFFER_COUNT
    try {
      checkBufferCount(this.bufferCount)
    } catch (err) {
      throw new RangeError((err as Error).message)
    }
    this.warn = options.warn ?? (msg => debug('warning: %s', msg))
    this.disk = options.disk ?? openDiskEngine(undefined, this.warn)
    this.claims = options.claims ?? new FileClaims('/run/kvblade')
    this.netns = netnsIdentity(options.netns)
    this.faults = new FaultLog(this.warn)
    this.sizeTimer = setInterval(() => { void this.checkSizes() }, options.sizeCheckMs ?? DEFAULT_SIZE_CHECK_MS).unref()
  }

  /** Queues a control command behind the others; refused once close() has been called. */
  private exclusive<T> (command: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new ControlError('EIO', 'the engine is shutting down'))
    const run = this.commands.then(command)
    this.commands = run.catch(() => {})
    return run
  }

  private find (addr: TargetAddress): Target {
    const e = this.targets.get(targetName(addr))
    if (e === undefined) throw new ControlError('ENOENT', `no target ${targetName(addr)}`)
    return e.target
  }

  private targetsOf (disk: Export): Target[] {
    return [...this.targets.values()].map(e => e.target).filter(t => t.disk === disk)
  }

  /** The disk options of an add line, with the daemon's defaults. */
  private diskOptionsOf (cmd: AddCommand): DiskOptions {
    return diskOptions(cmd.options ?? {}, { direct: this.options.direct === true, cache: this.options.cache ?? 'writethrough' })
  }

  /** Opens and locks a backing for an export; the slice must lie inside it. */
  private async openExport (path: string, o: DiskOptions): Promise<Export> {
    let store: BackingStore
    try {
      store = await BackingStore.open(path, this.disk, { direct: o.direct, readOnly: o.readOnly })
    } catch (err) {
      throw refusal(err)
    }
    store.ackMode = o.cache
    const disk = new Export(store, '', o)
    try {
      if (!disk.fits()) {
        throw new ControlError('EINVAL', `offset=${o.offset}${o.length === undefined ? '' : ` length=${o.length}`} lies past the end of ${path} (${store.sectors} sectors)`)
      }
      disk.identity = await this.locks.acquire(path, disk, !o.readOnly && !o.shared)
    } catch (err) {
      await store.close()
      throw refusal(err)
    }
    if (o.direct && !store.direct) this.warn(`${path}: the file system refuses O_DIRECT; using buffered I/O`)
    return disk
  }

  private async closeExport (disk: Export): Promise<void> {
    this.locks.release(disk.identity, disk)
    await disk.store.close()
  }

  private openFrameIo (ifname: string): FrameIo {
    if (this.options.openFrameIo !== undefined) return this.options.openFrameIo(ifname)
    this.links ??= LinkTable.open(this.options.netns)
    return SocketFrameIo.open(ifname, this.links, this.options.netns)
  }

  private openPort (ifname: string): Port {
    let port = this.ports.get(ifname)
    if (port !== undefined) return port
    let io: FrameIo
    try {
      io = this.openFrameIo(ifname)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENODEV' || e.code === 'ENXIO') throw new ControlError('ENOENT', `no interface ${ifname}`)
      throw new ControlError('EIO', `cannot open interface ${ifname}: ${e.message}`)
    }
    debug('%s: mac %s mtu %d', ifname, formatMac(io.link.mac), io.link.mtu)
    port = new Port(io, { disk: this.disk, warn: this.warn, onFault: (t, store, op, err, offset) => this.fault(t, store, op, err, offset) })
    this.ports.set(ifname, port)
    return port
  }

  /** Closes the port of `ifname` if no target uses it any more (its memory goes once its requests are done). */
  private async closePortIfUnused (ifname: string): Promise<void> {
    const port = this.ports.get(ifname)
    if (port !== undefined && port.targets.length === 0) {
      this.ports.delete(ifname)
      await port.close()
    }
  }

  /**
   * Before a new address is served on a port: who else answers for it there? Our own
   * MAC means another process on this host serves it; another MAC is worth a warning
   * (it may be a multipath peer on shared storage, or a mistake).
   */
  private async probe (port: Port, major: number, minor: number): Promise<void> {
    const ms = this.options.probeMs ?? DEFAULT_PROBE_MS
    if (ms <= 0) return
    const ours = new Set([...this.ports.values()].map(p => p.io.link.mac))
    for (const mac of await port.probe(major, minor, ms)) {
      if (mac === port.io.link.mac) throw new ControlError('EEXIST', `${major}.${minor} is already served on ${port.ifname} by another process of this host`)
      if (!ours.has(mac)) this.warn(`${major}.${minor}@${port.ifname}: ${formatMac(mac)} serves this address too (a multipath peer on shared storage? otherwise one of the two is a mistake)`)
    }
  }

  add (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const name = targetName(cmd)
      if (this.targets.has(name)) throw new ControlError('EEXIST', `target ${name} exists`)
      if (cmd.major === MAJOR_LINUX_REFUSES) {
        this.warn(`shelf ${cmd.major} (0x0fff) is refused by the Linux aoe initiator; ${name} is added anyway`)
      }
      const key = `${cmd.major}.${cmd.minor}`
      const o = this.diskOptionsOf(cmd)
      let disk = this.exports.get(key)
      if (disk !== undefined) await this.checkSameDisk(disk, cmd, o)
      const claim = this.claims.claim(this.netns, cmd.ifname, cmd.major, cmd.minor)
      let port: Port | undefined
      let opened: Export | undefined
      try {
        port = this.openPort(cmd.ifname)
        await this.probe(port, cmd.major, cmd.minor)
        disk ??= opened = await this.openExport(cmd.path, o)
      } catch (err) {
        claim.release()
        if (port !== undefined) await this.closePortIfUnused(cmd.ifname)
        throw err
      }
      let state = this.states.get(key)
      if (state === undefined) this.states.set(key, state = new AddressState())
      if (opened !== undefined) this.exports.set(key, opened)
      const p = port
      const target = new Target(cmd.major, cmd.minor, cmd.ifname, disk, state, cmd.options?.bufferCount ?? this.bufferCount, () => p.mtu)
      target.acl = cmd.options?.acl ?? []
      this.targets.set(name, { target, claim })
      port.addTarget(target)
      port.announce(target)
      debug('added %s: %s%s, %d sectors', name, cmd.path, formatOptions(cmd.options) === '' ? '' : ` ${formatOptions(cmd.options)}`, disk.sectors)
      return target.info()
    })
  }

  /** One address, one disk: another interface may serve the address only with the same backing slice. */
  private async checkSameDisk (disk: Export, cmd: AddCommand, o: DiskOptions): Promise<void> {
    let same = sameDisk(disk.options, o)
    if (same) {
      try {
        const st = await fs.promises.stat(cmd.path)
        same = fileIdentity(st) === disk.identity
      } catch (err) {
        throw refusal(err)
      }
    }
    if (!same) {
      const other = this.targetsOf(disk)[0]
      throw new ControlError('EEXIST', `${cmd.major}.${cmd.minor} is already exported as "${other === undefined ? '' : targetName(other) + ' '}${disk.store.path}` +
        `${describeDisk(disk.options)}": an address is one disk, so every interface must export the same backing with the same options`)
    }
  }

  del (addr: TargetAddress): Promise<void> {
    return this.exclusive(async () => {
      const target = this.find(addr)
      const name = target.name
      if (target.busy > 0) throw new ControlError('EBUSY', `${name} has ${target.busy} requests in flight`)
      const entry = this.targets.get(name)!
      this.targets.delete(name)
      entry.claim.release()
      this.ports.get(target.ifname)?.removeTarget(target)
      const key = `${target.major}.${target.minor}`
      const last = this.targetsOf(target.disk).length === 0
      if (last) {
        this.states.delete(key)
        this.exports.delete(key)
      }
      await this.closePortIfUnused(target.ifname)
      if (last) await this.closeExport(target.disk)
      debug('deleted %s', name)
    })
  }

  /**
   * Swaps the backing of a target — of its address, on every interface serving it (one
   * address, one disk). Options on the line replace the disk's; without any, it keeps them.
   */
  readd (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const target = this.find(cmd)
      const old = target.disk
      const o = cmd.options === undefined ? old.options : this.diskOptionsOf(cmd)
      const disk = await this.openExport(cmd.path, o)
      // New requests go to the new store; the old one closes once its requests are done.
      const key = `${target.major}.${target.minor}`
      this.exports.set(key, disk)
      for (const t of this.targetsOf(old)) {
        t.disk = disk
        if (cmd.options?.bufferCount !== undefined && t === target) t.bufferCount = cmd.options.bufferCount
        if (cmd.options?.acl !== undefined && t === target) t.acl = cmd.options.acl
        this.ports.get(t.ifname)?.announce(t)
      }
      debug('readded %s: %s, %d sectors', target.name, cmd.path, disk.sectors)
      await this.closeExport(old)
      return target.info()
    })
  }

  announce (): void {
    for (const { target } of this.targets.values()) this.ports.get(target.ifname)?.announce(target)
  }

  list (): TargetInfo[] {
    return [...this.targets.values()].map(e => e.target.info())
  }

  get (addr: TargetAddress): TargetInfo | undefined {
    return this.targets.get(targetName(addr))?.target.info()
  }

  setModel (addr: TargetAddress, model: string): void {
    this.find(addr).model = checkModel(model)
  }

  setSerial (addr: TargetAddress, serial: string): void {
    this.find(addr).serial = checkSerial(serial)
  }

  setAcl (addr: TargetAddress, macs: number[]): Promise<void> {
    return this.exclusive(async () => {
      this.find(addr).acl = [...new Set(macs)]
    })
  }

  setCache (addr: TargetAddress, mode: CacheMode): Promise<void> {
    return this.exclusive(async () => {
      const disk = this.find(addr).disk
      disk.options = { ...disk.options, cache: mode }
      disk.store.ackMode = mode
    })
  }

  setBufferCount (addr: TargetAddress, count: number): Promise<void> {
    return this.exclusive(async () => {
      this.find(addr).bufferCount = checkBufferCount(count, 'bufcnt')
    })
  }

  interfaces (): InterfaceStats[] {
    return [...this.ports.values()].map(p => p.stats())
  }

  /** A disk request failed: logged (rate-limited), counted, and the backing's size looked at again. */
  private fault (t: Target, store: BackingStore, op: string, err: NodeJS.ErrnoException, offset: number): void {
    const kind = faultKind(op, err)
    t.faults.set(kind, (t.faults.get(kind) ?? 0) + 1)
    this.faults.report(t.name, kind, `${err.message} (${store.path}, byte ${offset})`)
    void this.checkSize(store)
  }

  /** Reads the sizes of every backing again; a target whose size changed is served and announced at it. */
  private async checkSizes (): Promise<void> {
    await Promise.all([...new Set(this.exports.values())].map(d => this.checkSize(d.store)))
  }

  private async checkSize (store: BackingStore): Promise<void> {
    const before = [...this.exports.values()].filter(d => d.store === store).map(d => d.sectors)
    const size = await store.checkSize()
    if (size === null) return
    for (const disk of this.exports.values()) {
      if (disk.store !== store) continue
      if (disk.options.offset + (disk.options.length ?? 0) > store.sectors) {
        this.warn(`${store.path} shrank to ${store.sectors} sectors, below the slice exported (offset=${disk.options.offset} length=${disk.options.length ?? disk.sectors})`)
      }
      for (const t of this.targetsOf(disk)) {
        this.warn(`${t.name}: ${store.path} is now ${store.sectors} sectors (was ${before.join('/')}): serving ${t.sectors}`)
        this.ports.get(t.ifname)?.announce(t)
      }
    }
  }

  /**
   * Stops serving, after the control commands already queued (an `add` opening its file
   * finishes first, so nothing it opens is left behind; later commands are refused):
   * closes every port, then every backing store once its I/O is done, then the disk engine.
   */
  close (): Promise<void> {
    this.closing = true
    this.closed ??= this.commands.then(async () => {
      clearInterval(this.sizeTimer)
      const ports = [...this.ports.values()]
      this.ports.clear()
      const exports = [...new Set(this.exports.values())]
      for (const e of this.targets.values()) e.claim.release()
      this.targets.clear()
      this.exports.clear()
      // Ports first: no new requests; then the stores drain and close.
      const portsClosed = Promise.all(ports.map(p => p.close()))
      await Promise.all(exports.map(d => this.closeExport(d)))
      await portsClosed
      await this.locks.close()
      this.faults.close()
      this.disk.close()
      this.links?.close()
    })
    return this.closed
  }
}

function describeDisk (o: DiskOptions): string {
  const words = formatOptions({
    readOnly: o.readOnly, shared: o.shared, direct: o.direct,
    offset: o.offset === 0 ? undefined : o.offset, length: o.length, cache: o.cache,
  })
  return words === '' ? '' : ` ${words}`
}
