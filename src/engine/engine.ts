/**
 * The device table (the aoedev of the Linux initiator's split): which targets exist, on
 * which interfaces, with which backing stores and shared per-address state; and the
 * control surface kvblade had in sysfs, as calls that run one at a time.
 */
import createDebug from 'debug'
import { ControlError, errnoNumber, type ControlErrno } from '../control/errors'
import { MAJOR_LINUX_REFUSES, targetName, type AddCommand, type TargetAddress } from '../control/command'
import type { Control, InterfaceStats, TargetInfo } from '../control/control'
import { DEFAULT_BUFFER_COUNT, checkBufferCount, checkModel, checkSerial } from '../control/values'
import { BackingStore } from '../store/backing-store'
import type { DiskEngine } from '../store/disk-engine'
import { openDiskEngine } from '../store/open-disk-engine'
import { AddressState } from './address-state'
import { LinkTable, SocketFrameIo } from './links'
import type { FrameIo } from './frame-io'
import { Port } from './port'
import { Target } from './target'

const debug = createDebug('kvblade:engine')

export { DEFAULT_BUFFER_COUNT }

export interface EngineOptions {
  /** Buffer count advertised in Query Config replies (the initiator's window). */
  bufferCount?: number
  /** Open interfaces inside this network namespace (tests). */
  netns?: string
  /** Open backing files with O_DIRECT (vblade's -d), where the file system allows it. */
  direct?: boolean
  /** How disk I/O is done: default io_uring where the kernel allows it, else the thread pool. */
  disk?: DiskEngine
  /** How an interface's frames are sent and received: default its packet socket (tests substitute their own). */
  openFrameIo?: (ifname: string) => FrameIo
  /** Where warnings go (the CLI prints them on stderr). */
  warn?: (message: string) => void
}

/** A refusal from below (an open, a socket) as the errno a sysfs write would give. */
function refusal (err: unknown, fallback: ControlErrno = 'EIO'): ControlError {
  const e = err as NodeJS.ErrnoException
  const code = e.code !== undefined && errnoNumber(e.code) !== undefined ? e.code as ControlErrno : fallback
  return new ControlError(code, e.message)
}

/**
 * The AoE target engine: any number of targets on any number of interfaces in one
 * process. Implements the control surface kvblade had in sysfs.
 */
export class Engine implements Control {
  private readonly ports = new Map<string, Port>()
  private readonly targets = new Map<string, Target>()
  /** Config string, mask and reservation per major.minor, shared across interfaces. */
  private readonly states = new Map<string, AddressState>()
  /** Control commands (and close) run one at a time, in order, as sysfs writes to one module would. */
  private commands: Promise<unknown> = Promise.resolve()
  private readonly bufferCount: number
  private readonly disk: DiskEngine
  private readonly warn: (message: string) => void
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
  }

  /** Queues a control command behind the others; refused once close() has been called. */
  private exclusive<T> (command: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new ControlError('EIO', 'the engine is shutting down'))
    const run = this.commands.then(command)
    this.commands = run.catch(() => {})
    return run
  }

  private find (addr: TargetAddress): Target {
    const t = this.targets.get(targetName(addr))
    if (t === undefined) throw new ControlError('ENOENT', `no target ${targetName(addr)}`)
    return t
  }

  private async openStore (path: string): Promise<BackingStore> {
    let store: BackingStore
    try {
      store = await BackingStore.open(path, this.disk, { direct: this.options.direct })
    } catch (err) {
      throw refusal(err)
    }
    if (this.options.direct === true && !store.direct) this.warn(`${path}: the file system refuses O_DIRECT; using buffered I/O`)
    return store
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
    debug('%s: mac %s mtu %d', ifname, io.link.mac.toString(16).padStart(12, '0'), io.link.mtu)
    port = new Port(io, { disk: this.disk, warn: this.warn })
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

  add (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const name = targetName(cmd)
      if (this.targets.has(name)) throw new ControlError('EEXIST', `target ${name} exists`)
      if (cmd.major === MAJOR_LINUX_REFUSES) {
        this.warn(`shelf ${cmd.major} (0x0fff) is refused by the Linux aoe initiator; ${name} is added anyway`)
      }
      const port = this.openPort(cmd.ifname)
      let store: BackingStore
      try {
        store = await this.openStore(cmd.path)
      } catch (err) {
        await this.closePortIfUnused(cmd.ifname)
        throw err
      }
      const key = `${cmd.major}.${cmd.minor}`
      let state = this.states.get(key)
      if (state === undefined) this.states.set(key, state = new AddressState())
      const target = new Target(cmd.major, cmd.minor, cmd.ifname, store, state, this.bufferCount, () => port.mtu)
      this.targets.set(name, target)
      port.addTarget(target)
      port.announce(target)
      debug('added %s: %s, %d sectors', name, cmd.path, store.sectors)
      return target.info()
    })
  }

  del (addr: TargetAddress): Promise<void> {
    return this.exclusive(async () => {
      const target = this.find(addr)
      const name = target.name
      if (target.busy > 0) throw new ControlError('EBUSY', `${name} has ${target.busy} requests in flight`)
      this.targets.delete(name)
      this.ports.get(target.ifname)?.removeTarget(target)
      const key = `${target.major}.${target.minor}`
      if (![...this.targets.values()].some(t => t.state === target.state)) this.states.delete(key)
      await this.closePortIfUnused(target.ifname)
      await target.store.close()
      debug('deleted %s', name)
    })
  }

  readd (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      const target = this.find(cmd)
      const name = target.name
      const store = await this.openStore(cmd.path)
      const old = target.store
      // New requests go to the new store; the old one closes once its requests are done.
      target.store = store
      this.ports.get(target.ifname)?.announce(target)
      debug('readded %s: %s, %d sectors', name, cmd.path, store.sectors)
      await old.close()
      return target.info()
    })
  }

  announce (): void {
    for (const t of this.targets.values()) this.ports.get(t.ifname)?.announce(t)
  }

  list (): TargetInfo[] {
    return [...this.targets.values()].map(t => t.info())
  }

  get (addr: TargetAddress): TargetInfo | undefined {
    return this.targets.get(targetName(addr))?.info()
  }

  setModel (addr: TargetAddress, model: string): void {
    this.find(addr).model = checkModel(model)
  }

  setSerial (addr: TargetAddress, serial: string): void {
    this.find(addr).serial = checkSerial(serial)
  }

  interfaces (): InterfaceStats[] {
    return [...this.ports.values()].map(p => p.stats())
  }

  /**
   * Stops serving, after the control commands already queued (an `add` opening its file
   * finishes first, so nothing it opens is left behind; later commands are refused):
   * closes every port, then every backing store once its I/O is done, then the disk engine.
   */
  close (): Promise<void> {
    this.closing = true
    this.closed ??= this.commands.then(async () => {
      const ports = [...this.ports.values()]
      this.ports.clear()
      const stores = [...new Set([...this.targets.values()].map(t => t.store))]
      this.targets.clear()
      // Ports first: no new requests; then the stores drain and close.
      const portsClosed = Promise.all(ports.map(p => p.close()))
      await Promise.all(stores.map(s => s.close()))
      await portsClosed
      this.disk.close()
      this.links?.close()
    })
    return this.closed
  }
}
