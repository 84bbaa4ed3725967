/**
 * The device table (the aoedev of the Linux initiator's split): which targets exist, on
 * which interfaces, with which exports (backing slices) and shared per-address state;
 * and the control surface kvblade had in sysfs, as calls that run one at a time.
 *
 * A target is serving, or waiting: restored from the state file or read from the
 * exports file while its interface or backing is missing (or taken), it is kept and
 * starts serving when that appears. Every change is saved to the state file before it
 * is acknowledged.
 */
import fs from 'node:fs'
import createDebug from 'debug'
import { formatMac } from '../aoe/mac'
import { ControlError, errnoNumber, type ControlErrno } from '../control/errors'
import {
  MAJOR_LINUX_REFUSES, formatAddCommand, formatOptions, targetName, type AddCommand, type CacheMode, type TargetAddress,
} from '../control/command'
import type { Control, InterfaceStats, TargetInfo } from '../control/control'
import { parseExports } from '../control/exports-file'
import { DEFAULT_BUFFER_COUNT, checkBufferCount, checkModel, checkSerial } from '../control/values'
import { BackingStore } from '../store/backing-store'
import type { DiskEngine } from '../store/disk-engine'
import { openDiskEngine } from '../store/open-disk-engine'
import { AddressState } from './address-state'
import { Export, diskOptions, sameDisk, type DiskOptions } from './export'
import { FaultLog, faultKind } from './fault-log'
import { LinkTable, SocketFrameIo, type KnownLink } from './links'
import { BackingLocks, FileClaims, fileIdentity, netnsIdentity, type AddressClaims, type Claim } from './locks'
import type { FrameIo } from './frame-io'
import { Port } from './port'
import { LATENCY_BOUNDS } from './latency'
import { StateWriter, encodeState, type Origin, type SavedState } from './state-file'
import { DEFAULT_MODEL, Target } from './target'

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
  /** Where every change is saved (see state-file.ts); none: nothing is kept. */
  stateFile?: string
  /** The exports file that reload() applies. */
  configFile?: string
  /** The interfaces, followed (default: from the kernel's link messages; tests feed their own). */
  links?: LinkTable
  /** How disk I/O is done: default io_uring where the kernel allows it, else the thread pool. */
  disk?: DiskEngine
  /** How an interface's frames are sent and received: default its packet socket (tests substitute their own). */
  openFrameIo?: (ifname: string) => FrameIo
  /** Claims on addresses shared with other processes on this host (default: lock files under runDir). */
  claims?: AddressClaims
  /** Where the default claims keep their lock files (default /run/kvblade). */
  runDir?: string
  /** How long an add listens for other targets serving its address (ms; 0: not at all). */
  probeMs?: number
  /** How often backing sizes are read again and waiting targets retried (ms). */
  sizeCheckMs?: number
  /** Where warnings go (the CLI prints them on stderr). */
  warn?: (message: string) => void
  /** Where notices go (a target waiting, serving again; the CLI prints them on stderr). */
  log?: (message: string) => void
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

/** An interface as its port last saw it; index 0: not known (a FrameIo that does not tell). */
interface LinkSeen { present: boolean, up: boolean, mtu: number, index: number }

/** One row of the device table. */
interface Entry {
  /** The add line as it stands now (options kept current by setAcl/setCache/setBufferCount/readd). */
  cmd: AddCommand
  origin: Origin
  /** IDENTIFY's strings while waiting (a serving target keeps them itself). */
  model: string | undefined
  serial: string | undefined
  /** Serving: the target and its claim on the address. */
  target: Target | null
  claim: Claim | null
  /** Waiting: why it is not serving. */
  waiting: string | null
}

export interface ReloadResult {
  ok: boolean
  /** One line: what was done, or what was wrong. */
  summary: string
}

/**
 * The AoE target engine: any number of targets on any number of interfaces in one
 * process. Implements the control surface kvblade had in sysfs.
 */
export class Engine implements Control {
  private readonly ports = new Map<string, Port>()
  private readonly entries = new Map<string, Entry>()
  /** Per major.minor: the config string, mask and reservation, and the export, shared across interfaces. */
  private readonly states = new Map<string, AddressState>()
  private readonly exports = new Map<string, Export>()
  /** Control commands (and close) run one at a time, in order, as sysfs writes to one module would. */
  private commands: Promise<unknown> = Promise.resolve()
  private readonly bufferCount: number
  private readonly disk: DiskEngine
  private readonly warn: (message: string) => void
  private readonly log: (message: string) => void
  private readonly locks = new BackingLocks()
  private readonly claims: AddressClaims
  private readonly netns: string
  private readonly faults: FaultLog
  private readonly timer: NodeJS.Timeout
  private readonly state: StateWriter | null
  /** Link facts as last seen, per interface with a port: what changed is acted on. */
  private readonly linksSeen = new Map<string, LinkSeen>()
  private links: LinkTable | null = null
  private lastReload: ReloadResult = { ok: true, summary: 'no reload yet' }
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
    this.log = options.log ?? (msg => debug('%s', msg))
    this.disk = options.disk ?? openDiskEngine(undefined, this.warn)
    this.claims = options.claims ?? new FileClaims(options.runDir ?? '/run/kvblade', this.warn)
    this.netns = netnsIdentity(options.netns)
    this.faults = new FaultLog(this.warn)
    this.state = options.stateFile === undefined ? null : new StateWriter(options.stateFile, () => this.snapshot())
    this.timer = setInterval(() => { void this.tick() }, options.sizeCheckMs ?? DEFAULT_SIZE_CHECK_MS).unref()
    // A table given is followed from the start (with FrameIos of the test's own, nothing else would open it).
    if (options.links !== undefined) this.linkTable()
  }

  /** Queues a control command behind the others; refused once close() has been called. */
  private exclusive<T> (command: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new ControlError('EIO', 'the engine is shutting down'))
    const run = this.commands.then(command)
    this.commands = run.catch(() => {})
    return run
  }

  /** Saves the state (if kept); a change is acknowledged only once this has resolved. */
  private async persist (): Promise<void> {
    if (this.state === null) return
    try {
      await this.state.save()
    } catch (err) {
      throw new ControlError('EIO', `the change is made but could not be saved: ${(err as Error).message}`)
    }
  }

  private entry (addr: TargetAddress): Entry {
    const e = this.entries.get(targetName(addr))
    if (e === undefined) throw new ControlError('ENOENT', `no target ${targetName(addr)}`)
    return e
  }

  private serving (): Target[] {
    const out: Target[] = []
    for (const e of this.entries.values()) if (e.target !== null) out.push(e.target)
    return out
  }

  private targetsOf (disk: Export): Target[] {
    return this.serving().filter(t => t.disk === disk)
  }

  /** The disk options of an add line, with the daemon's defaults. */
  private diskOptionsOf (cmd: AddCommand): DiskOptions {
    return diskOptions(cmd.options ?? {}, { direct: this.options.direct === true, cache: this.options.cache ?? 'writethrough' })
  }

  /**
   * Opens and locks a backing for an export; the slice must lie inside it, and no other
   * address of this daemon may export the same file unless both are read-only or
   * `shared` (`replacing`: the export a readd swaps out, which does not count).
   */
  private async openExport (path: string, o: DiskOptions, replacing?: Export): Promise<Export> {
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
      disk.identity = await this.locks.acquire(path, disk, disk.exclusive)
      this.checkOneExporter(disk, replacing)
    } catch (err) {
      if (disk.identity !== '') this.locks.release(disk.identity, disk)
      await store.close()
      throw refusal(err)
    }
    if (o.direct && !store.direct) this.warn(`${path}: the file system refuses O_DIRECT; using buffered I/O`)
    return disk
  }

  /**
   * The lock keeps other processes off a disk; within this daemon two addresses on one
   * file would be two disks to the initiators (each with its own ordering here), and a
   * host mounting both corrupts it. Allowed only where neither writes exclusively.
   */
  private checkOneExporter (disk: Export, replacing: Export | undefined): void {
    for (const [address, other] of this.exports) {
      if (other === replacing || other.identity !== disk.identity) continue
      if (!disk.exclusive && !other.exclusive) continue
      throw new ControlError('EBUSY', `${disk.store.path} is already exported by this daemon as ${address} (${other.store.path}): ` +
        'one disk, one address; export it at that address on another interface, or read-only or shared on both')
    }
  }

  private async closeExport (disk: Export): Promise<void> {
    this.locks.release(disk.identity, disk)
    await disk.store.close(this.warn)
  }

  private linkTable (): LinkTable {
    if (this.links === null) {
      this.links = this.options.links ?? LinkTable.open(this.options.netns)
      this.links.onChange(link => this.linkChanged(link))
    }
    return this.links
  }

  private openFrameIo (ifname: string): FrameIo {
    if (this.options.openFrameIo !== undefined) return this.options.openFrameIo(ifname)
    return SocketFrameIo.open(ifname, this.linkTable(), this.options.netns)
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
    port = new Port(io, {
      disk: this.disk,
      warn: this.warn,
      onFault: (t, store, op, err, offset) => this.fault(t, store, op, err, offset),
      onStateChange: () => this.persist(),
    })
    this.ports.set(ifname, port)
    this.linksSeen.set(ifname, { present: io.link.present, up: io.link.up, mtu: io.link.mtu, index: io.link.index ?? 0 })
    return port
  }

  /** Closes the port of `ifname` if no target uses it any more (its memory goes once its requests are done). */
  private async closePortIfUnused (ifname: string): Promise<void> {
    const port = this.ports.get(ifname)
    if (port !== undefined && port.targets.length === 0) {
      this.ports.delete(ifname)
      this.linksSeen.delete(ifname)
      await port.close()
    }
  }

  /**
   * Before a new address is served on a port: who else answers for it there? Our own
   * MAC means another process on this host serves it (heard where sent frames come back
   * in, a loopback; on a NIC a socket bound to AoE hears nothing this host sends, and
   * other kvblade daemons are refused by their address claims instead); another MAC is
   * worth a warning (it may be a multipath peer on shared storage, or a mistake).
   */
  private async probe (port: Port, major: number, minor: number): Promise<void> {
    const ms = this.options.probeMs ?? DEFAULT_PROBE_MS
    if (ms <= 0 || port.detached) return
    const ours = new Set([...this.ports.values()].map(p => p.io.link.mac))
    for (const mac of await port.probe(major, minor, ms)) {
      if (mac === port.io.link.mac) throw new ControlError('EEXIST', `${major}.${minor} is already served on ${port.ifname} by another process of this host`)
      if (!ours.has(mac)) this.warn(`${major}.${minor}@${port.ifname}: ${formatMac(mac)} serves this address too (a multipath peer on shared storage? otherwise one of the two is a mistake)`)
    }
  }

  /** One address, one disk: another interface may serve the address only with the same backing slice. */
  private async checkSameDisk (disk: Export, cmd: AddCommand, o: DiskOptions): Promise<void> {
    let same = sameDisk(disk.options, o)
    if (same) {
      try {
        same = fileIdentity(await fs.promises.stat(cmd.path)) === disk.identity
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

  /** Makes an entry serve: its claim, port, export (locked) and target. Throws, leaving nothing behind, if it cannot. */
  private async start (e: Entry): Promise<void> {
    const cmd = e.cmd
    const name = targetName(cmd)
    const key = `${cmd.major}.${cmd.minor}`
    const o = this.diskOptionsOf(cmd)
    let disk = this.exports.get(key)
    if (disk !== undefined) await this.checkSameDisk(disk, cmd, o)
    const claim = this.claims.claim(this.netns, cmd.ifname, cmd.major, cmd.minor)
    let port: Port | undefined
    let opened: Export | undefined
    try {
      port = this.openPort(cmd.ifname)
      // The backing is locked before the wire is asked: a second exporter of the same disk is refused first.
      if (disk === undefined) disk = opened = await this.openExport(cmd.path, o)
      await this.probe(port, cmd.major, cmd.minor)
    } catch (err) {
      claim.release()
      if (opened !== undefined) await this.closeExport(opened)
      if (port !== undefined) await this.closePortIfUnused(cmd.ifname)
      throw err
    }
    let state = this.states.get(key)
    if (state === undefined) this.states.set(key, state = new AddressState())
    if (opened !== undefined) this.exports.set(key, opened)
    const p = port
    const target = new Target(cmd.major, cmd.minor, cmd.ifname, disk, state, cmd.options?.bufferCount ?? this.bufferCount, () => p.mtu)
    target.acl = cmd.options?.acl ?? []
    if (e.model !== undefined) target.model = e.model
    if (e.serial !== undefined) target.serial = e.serial
    e.target = target
    e.claim = claim
    e.waiting = null
    port.addTarget(target)
    port.announce(target)
    debug('serving %s: %s%s, %d sectors', name, cmd.path, formatOptions(cmd.options) === '' ? '' : ` ${formatOptions(cmd.options)}`, disk.sectors)
  }

  /** Takes a serving entry out of service (to delete it, or to serve it anew). */
  private async stop (e: Entry): Promise<void> {
    const target = e.target
    if (target === null) return
    e.target = null
    e.model = target.model
    e.serial = target.serial
    e.claim?.release()
    e.claim = null
    this.ports.get(target.ifname)?.removeTarget(target)
    await this.closePortIfUnused(target.ifname)
    if (this.targetsOf(target.disk).length === 0) {
      this.exports.delete(`${target.major}.${target.minor}`)
      await this.closeExport(target.disk)
    }
  }

  /** Forgets an address's state once no entry of it is left. */
  private forgetAddress (major: number, minor: number): void {
    for (const e of this.entries.values()) if (e.cmd.major === major && e.cmd.minor === minor) return
    this.states.delete(`${major}.${minor}`)
  }

  /** A strict add: anything that stops it serving now is the caller's error. */
  private async addNow (cmd: AddCommand, origin: Origin): Promise<TargetInfo> {
    const name = targetName(cmd)
    if (this.entries.has(name)) throw new ControlError('EEXIST', `target ${name} exists`)
    if (cmd.major === MAJOR_LINUX_REFUSES) {
      this.warn(`shelf ${cmd.major} (0x0fff) is refused by the Linux aoe initiator; ${name} is added anyway`)
    }
    const e: Entry = { cmd, origin, model: undefined, serial: undefined, target: null, claim: null, waiting: null }
    await this.start(e)
    this.entries.set(name, e)
    return this.infoOf(e)
  }

  /**
   * A lenient add, for targets restored or read from the exports file: if it cannot
   * serve now (no such interface yet, a missing or taken backing), it is kept waiting,
   * said so in the log, and retried.
   */
  private async addOrWait (cmd: AddCommand, origin: Origin, model?: string, serial?: string): Promise<void> {
    const name = targetName(cmd)
    const e: Entry = { cmd, origin, model, serial, target: null, claim: null, waiting: null }
    this.entries.set(name, e)
    await this.retry(e)
  }

  private async retry (e: Entry): Promise<void> {
    try {
      await this.start(e)
      this.log(`${targetName(e.cmd)}: serving`)
    } catch (err) {
      const why = (err as Error).message
      if (e.waiting !== why) this.warn(`${targetName(e.cmd)}: waiting: ${why}`)
      e.waiting = why
    }
  }

  /** Retries the waiting targets (of one interface, or all). */
  private async retryWaiting (ifname?: string): Promise<void> {
    if (this.closing) return
    const waiting = [...this.entries.values()].filter(e => e.waiting !== null && (ifname === undefined || e.cmd.ifname === ifname))
    if (waiting.length === 0) return
    await this.exclusive(async () => {
      let changed = false
      for (const e of waiting) {
        if (this.entries.get(targetName(e.cmd)) !== e || e.waiting === null) continue
        await this.retry(e)
        changed ||= e.target !== null
      }
      if (changed) await this.persist().catch(err => this.warn((err as Error).message))
    }).catch(() => {})
  }

  add (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const info = await this.addNow(cmd, 'control')
      await this.persist()
      return info
    })
  }

  /**
   * An `--add` at start: merged with the restored targets — one already there with the
   * same line is kept as it is, one with another line is replaced; anything that stops
   * it serving is an error (the daemon does not start).
   */
  addFromCommandLine (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const e = this.entries.get(targetName(cmd))
      if (e !== undefined && formatAddCommand(e.cmd) === formatAddCommand(cmd) && e.target !== null) return this.infoOf(e)
      if (e !== undefined) await this.delNow(cmd)
      const info = await this.addNow(cmd, 'cli')
      await this.persist()
      return info
    })
  }

  del (addr: TargetAddress): Promise<void> {
    return this.exclusive(async () => {
      await this.delNow(addr)
      await this.persist()
    })
  }

  private async delNow (addr: TargetAddress): Promise<void> {
    const e = this.entry(addr)
    const name = targetName(addr)
    if (e.target !== null && e.target.busy > 0) throw new ControlError('EBUSY', `${name} has ${e.target.busy} requests in flight`)
    this.entries.delete(name)
    await this.stop(e)
    this.forgetAddress(e.cmd.major, e.cmd.minor)
    debug('deleted %s', name)
  }

  /**
   * Swaps the backing of a target — of its address, on every interface serving it (one
   * address, one disk). Options on the line replace the disk's; without any, it keeps them.
   */
  readd (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const info = await this.readdNow(cmd)
      await this.persist()
      return info
    })
  }

  private async readdNow (cmd: AddCommand): Promise<TargetInfo> {
    const e = this.entry(cmd)
    if (e.target === null) {
      const options = cmd.options ?? e.cmd.options
      // Not serving yet: the new line is what it will serve.
      e.cmd = { ...cmd, ...(options !== undefined ? { options } : {}) }
      await this.retry(e)
      return this.infoOf(e)
    }
    const target = e.target
    const old = target.disk
    const o = cmd.options === undefined ? old.options : this.diskOptionsOf(cmd)
    const disk = await this.openExport(cmd.path, o, old)
    // New requests go to the new store, and start once the old one has answered all of
    // its own (arrival order holds across the swap); then the old one closes.
    disk.store.holdUntil(old.store.whenIdle())
    this.exports.set(`${target.major}.${target.minor}`, disk)
    for (const other of this.entries.values()) {
      const t = other.target
      if (t === null || t.disk !== old) continue
      t.disk = disk
      let options = other.cmd.options
      if (cmd.options !== undefined) {
        // The disk's options come from the line; acl and bufcnt stay each target's own, but the readded one's may change.
        const acl = other === e && cmd.options.acl !== undefined ? cmd.options.acl : other.cmd.options?.acl
        const bufferCount = other === e && cmd.options.bufferCount !== undefined ? cmd.options.bufferCount : other.cmd.options?.bufferCount
        options = { ...diskOptionsAsGiven(cmd.options), ...(acl !== undefined ? { acl } : {}), ...(bufferCount !== undefined ? { bufferCount } : {}) }
        if (other === e) {
          if (acl !== undefined) t.acl = acl
          if (bufferCount !== undefined) t.bufferCount = bufferCount
        }
      }
      const { options: _old, ...address } = other.cmd
      other.cmd = { ...address, path: cmd.path, ...(options !== undefined && Object.keys(options).length > 0 ? { options } : {}) }
      this.ports.get(t.ifname)?.announce(t)
    }
    debug('readded %s: %s, %d sectors', target.name, cmd.path, disk.sectors)
    await this.closeExport(old)
    return target.info()
  }

  announce (): void {
    for (const t of this.serving()) this.ports.get(t.ifname)?.announce(t)
  }

  private infoOf (e: Entry): TargetInfo {
    if (e.target !== null) return e.target.info()
    const o = e.cmd.options ?? {}
    return {
      major: e.cmd.major,
      minor: e.cmd.minor,
      ifname: e.cmd.ifname,
      path: e.cmd.path,
      sectors: 0,
      bdev: '0:0',
      model: e.model ?? DEFAULT_MODEL,
      serial: e.serial ?? `KVB${e.cmd.major}.${e.cmd.minor}`,
      busy: 0,
      mtu: 0,
      readOnly: o.readOnly === true,
      offset: o.offset ?? 0,
      length: o.length ?? 0,
      acl: o.acl ?? [],
      cache: o.cache ?? this.options.cache ?? 'writethrough',
      bufferCount: o.bufferCount ?? this.bufferCount,
      direct: o.direct === true || this.options.direct === true,
      shared: o.shared === true,
      faults: {},
      state: 'waiting',
      waiting: e.waiting ?? '',
      stats: { reads: 0, readSectors: 0, writes: 0, writeSectors: 0, flushes: 0, errors: 0, inFlight: 0, frames: 0, syncs: 0, syncedWrites: 0 },
      latency: { bounds: LATENCY_BOUNDS, counts: LATENCY_BOUNDS.map(() => 0), sum: 0, count: 0 },
    }
  }

  list (): TargetInfo[] {
    return [...this.entries.values()].map(e => this.infoOf(e))
  }

  get (addr: TargetAddress): TargetInfo | undefined {
    const e = this.entries.get(targetName(addr))
    return e === undefined ? undefined : this.infoOf(e)
  }

  setModel (addr: TargetAddress, model: string): Promise<void> {
    return this.setIdentity(addr, checkModel(model), 'model')
  }

  setSerial (addr: TargetAddress, serial: string): Promise<void> {
    return this.setIdentity(addr, checkSerial(serial), 'serial')
  }

  private setIdentity (addr: TargetAddress, value: string, field: 'model' | 'serial'): Promise<void> {
    return this.exclusive(async () => {
      const e = this.entry(addr)
      if (e.target !== null) e.target[field] = value
      else e[field] = value
      await this.persist()
    })
  }

  setAcl (addr: TargetAddress, macs: number[]): Promise<void> {
    return this.exclusive(async () => {
      const e = this.entry(addr)
      const acl = [...new Set(macs)]
      if (e.target !== null) e.target.acl = acl
      e.cmd = withOption(e.cmd, 'acl', acl.length === 0 ? undefined : acl)
      await this.persist()
    })
  }

  setCache (addr: TargetAddress, mode: CacheMode): Promise<void> {
    return this.exclusive(async () => {
      const e = this.entry(addr)
      if (e.target !== null) {
        const disk = e.target.disk
        disk.options = { ...disk.options, cache: mode }
        disk.store.ackMode = mode
        // The disk's mode: every interface serving the address has it.
        for (const other of this.entries.values()) if (other.target?.disk === disk) other.cmd = withOption(other.cmd, 'cache', mode)
      } else {
        e.cmd = withOption(e.cmd, 'cache', mode)
      }
      await this.persist()
    })
  }

  setBufferCount (addr: TargetAddress, count: number): Promise<void> {
    return this.exclusive(async () => {
      const e = this.entry(addr)
      checkBufferCount(count, 'bufcnt')
      if (e.target !== null) e.target.bufferCount = count
      e.cmd = withOption(e.cmd, 'bufferCount', count)
      await this.persist()
    })
  }

  interfaces (): InterfaceStats[] {
    return [...this.ports.values()].map(p => p.stats())
  }

  // ---- state and the exports file --------------------------------------------------------

  /** The state as the state file keeps it. */
  private snapshot (): string {
    const saved: SavedState = {
      targets: [...this.entries.values()].map(e => ({
        cmd: e.cmd,
        model: e.target?.model ?? e.model,
        serial: e.target?.serial ?? e.serial,
        origin: e.origin,
      })),
      addresses: [...this.states].map(([key, s]) => {
        const [major, minor] = key.split('.').map(Number)
        return { major, minor, config: s.config, mask: [...s.mask], reservation: [...s.reservation] }
      }).filter(a => a.config.length > 0 || a.mask.length > 0 || a.reservation.length > 0),
    }
    return encodeState(saved, formatAddCommand)
  }

  /**
   * Restores a saved state before anything is served: the address states first, then
   * every target (waiting where it cannot serve yet), each one announced as it starts.
   */
  restore (saved: SavedState): Promise<void> {
    return this.exclusive(async () => {
      for (const a of saved.addresses) {
        const s = new AddressState()
        s.config = a.config
        s.mask.push(...a.mask)
        s.reservation.push(...a.reservation)
        this.states.set(`${a.major}.${a.minor}`, s)
      }
      for (const t of saved.targets) {
        if (this.entries.has(targetName(t.cmd))) continue
        await this.addOrWait(t.cmd, t.origin, t.model, t.serial)
      }
      await this.persist()
    })
  }

  /**
   * Applies the exports file: new lines are added, removed ones deleted, changed ones
   * served anew; exports made otherwise are left alone. A line that does not parse
   * applies nothing. The daemon serves throughout. `atStart`: a line naming a target
   * the control plane or --add made is skipped with a warning rather than failing the
   * reload (which would stop the daemon from starting, again at every restart).
   */
  reload (options: { atStart?: boolean } = {}): Promise<ReloadResult> {
    return this.exclusive(async () => {
      this.lastReload = await this.applyExports(options.atStart === true)
      if (this.lastReload.ok) this.log(`reload: ${this.lastReload.summary}`)
      else this.warn(`reload: ${this.lastReload.summary}`)
      return this.lastReload
    })
  }

  /** The result of the last reload, for the control plane's reload file. */
  lastReloadResult (): ReloadResult {
    return this.lastReload
  }

  private async applyExports (atStart: boolean): Promise<ReloadResult> {
    const file = this.options.configFile
    if (file === undefined) return { ok: false, summary: 'no exports file (start with --config FILE)' }
    let lines
    try {
      lines = parseExports(await fs.promises.readFile(file, 'utf8'), file)
    } catch (err) {
      return { ok: false, summary: `${(err as Error).message}; nothing was changed` }
    }
    const wanted = new Map(lines.map(l => [targetName(l.cmd), l]))
    let added = 0
    let removed = 0
    let changed = 0
    const failed: string[] = []
    const skipped: string[] = []
    for (const [name, e] of [...this.entries]) {
      if (e.origin !== 'config' || wanted.has(name)) continue
      try {
        await this.delNow(e.cmd)
        removed++
      } catch (err) {
        failed.push(`${name}: ${(err as Error).message}`)
      }
    }
    for (const [name, { line, cmd }] of wanted) {
      const e = this.entries.get(name)
      if (e !== undefined && e.origin !== 'config') {
        const why = `${name} (line ${line}): already exported through the control plane or --add; left as it is`
        if (atStart) this.warn(`${file}: ${why}, the line is skipped`)
        ;(atStart ? skipped : failed).push(why)
        continue
      }
      try {
        if (e === undefined) {
          await this.addOrWait(cmd, 'config')
          added++
        } else if (formatAddCommand(e.cmd) !== formatAddCommand(cmd)) {
          await this.delNow(e.cmd)
          await this.addOrWait(cmd, 'config', e.target?.model ?? e.model, e.target?.serial ?? e.serial)
          changed++
        }
      } catch (err) {
        failed.push(`${name}: ${(err as Error).message}`)
      }
    }
    await this.persist()
    const waiting = [...this.entries.values()].filter(e => e.origin === 'config' && e.waiting !== null).length
    const summary = `${file}: ${added} added, ${removed} removed, ${changed} changed` +
      `${waiting > 0 ? `, ${waiting} waiting` : ''}${skipped.length > 0 ? `; skipped: ${skipped.join('; ')}` : ''}` +
      `${failed.length > 0 ? `; failed: ${failed.join('; ')}` : ''}`
    return { ok: failed.length === 0, summary }
  }

  // ---- faults, sizes, interfaces ---------------------------------------------------------

  /** A disk request failed: logged (rate-limited), counted, and the backing's size looked at again. */
  private fault (t: Target, store: BackingStore, op: string, err: NodeJS.ErrnoException, offset: number): void {
    const kind = faultKind(op, err)
    t.faults.set(kind, (t.faults.get(kind) ?? 0) + 1)
    this.faults.report(t.name, kind, `${err.message} (${store.path}, byte ${offset})`)
    void this.checkSize(store)
  }

  /** Every few seconds: backing sizes read again, waiting targets retried. */
  private async tick (): Promise<void> {
    await Promise.all([...new Set(this.exports.values())].map(d => this.checkSize(d.store)))
    await this.retryWaiting()
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
   * An interface changed. Gone: its port lets go of the socket and its targets wait
   * for it. Back (a new interface of that name): a new socket, and every target is
   * announced. Up again, or a new MTU: announced, so initiators learn it at once.
   * A new index with the name still present means it was deleted and made again with
   * the removal unheard (link events lost): the old socket is dead, so it is replaced.
   */
  private linkChanged (link: KnownLink): void {
    const port = this.ports.get(link.name)
    const seen = this.linksSeen.get(link.name)
    let index = seen?.index ?? 0
    if (port !== undefined && seen !== undefined && !this.closing) {
      const replaced = link.present && !port.detached && seen.index !== 0 && link.index !== seen.index
      if (!link.present && !port.detached) {
        this.warn(`${link.name}: the interface is gone; its ${port.targets.length} targets wait for it`)
        void port.detach()
      } else if (link.present && (port.detached || replaced)) {
        if (replaced) void port.detach()
        try {
          port.attach(this.openFrameIo(link.name))
          index = link.index
          this.log(`${link.name}: the interface is ${replaced ? 'new (its index changed)' : 'back'}; serving and announcing ${port.targets.length} targets`)
        } catch (err) {
          this.warn(`${link.name}: the interface is back but cannot be opened: ${(err as Error).message}`)
        }
      } else if (link.present && ((link.up && !seen.up) || link.mtu !== seen.mtu)) {
        for (const t of port.targets) port.announce(t)
      }
      this.linksSeen.set(link.name, { present: link.present, up: link.up, mtu: link.mtu, index })
    }
    if (link.present) void this.retryWaiting(link.name)
  }

  /**
   * Stops serving, after the control commands already queued (an `add` opening its file
   * finishes first, so nothing it opens is left behind; later commands are refused):
   * no more requests are taken, those in flight finish (synced) and are answered, then
   * every port, store and the disk engine close.
   */
  close (): Promise<void> {
    this.closing = true
    this.closed ??= this.commands.then(async () => {
      clearInterval(this.timer)
      const ports = [...this.ports.values()]
      await Promise.all(ports.map(p => p.quiesce()))
      this.ports.clear()
      const exports = [...new Set(this.exports.values())]
      for (const e of this.entries.values()) e.claim?.release()
      this.entries.clear()
      this.exports.clear()
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

/** An add line with one option set (or removed, for undefined). */
function withOption<K extends keyof NonNullable<AddCommand['options']>> (cmd: AddCommand, key: K, value: NonNullable<AddCommand['options']>[K] | undefined): AddCommand {
  const options = { ...cmd.options }
  if (value === undefined) delete options[key]
  else options[key] = value
  const { options: _old, ...rest } = cmd
  return Object.keys(options).length === 0 ? rest : { ...rest, options }
}

/** The options of a readd line that make the disk (the rest belongs to the target readded). */
function diskOptionsAsGiven (o: AddCommand['options']): AddCommand['options'] {
  if (o === undefined) return {}
  const { acl: _acl, bufferCount: _b, ...disk } = o
  return disk
}

function describeDisk (o: DiskOptions): string {
  const words = formatOptions({
    readOnly: o.readOnly, shared: o.shared, direct: o.direct,
    offset: o.offset === 0 ? undefined : o.offset, length: o.length, cache: o.cache,
  })
  return words === '' ? '' : ` ${words}`
}
