import createDebug from 'debug'
import { ControlError } from '../control/errors'
import { MAJOR_LINUX_REFUSES, targetName, type AddCommand, type TargetAddress } from '../control/command'
import type { Control, InterfaceStats, TargetInfo } from '../control/control'
import { isIdentifyText, MODEL_LENGTH, SERIAL_LENGTH } from '../ata/identify'
import { BackingStore } from '../store/backing-store'
import type { DiskEngine } from '../store/disk-engine'
import { openDiskEngine } from '../store/open-disk-engine'
import { AddressState } from './address-state'
import { Port } from './port'
import { Target } from './target'

const debug = createDebug('kvblade:engine')

export interface EngineOptions {
  /** Buffer count advertised in Query Config replies (the initiator's window). */
  bufferCount?: number
  /** Open interfaces inside this network namespace (tests). */
  netns?: string
  /** Open backing files with O_DIRECT (vblade's -d), where the file system allows it. */
  direct?: boolean
  /** How disk I/O is done: default io_uring where the kernel allows it, else the thread pool. */
  disk?: DiskEngine
  /** Where warnings go (the CLI prints them on stderr). */
  warn?: (message: string) => void
}

export const DEFAULT_BUFFER_COUNT = 64

/**
 * The AoE target engine: any number of targets on any number of interfaces in one
 * process. Implements the control surface kvblade had in sysfs.
 */
export class Engine implements Control {
  private readonly ports = new Map<string, Port>()
  private readonly targets = new Map<string, Target>()
  /** Config string, mask and reservation per major.minor, shared across interfaces. */
  private readonly states = new Map<string, AddressState>()
  /** Control commands run one at a time, in order, as sysfs writes to one module would. */
  private commands: Promise<unknown> = Promise.resolve()
  private readonly bufferCount: number
  private readonly disk: DiskEngine
  private readonly warn: (message: string) => void
  private closed = false

  constructor (private readonly options: EngineOptions = {}) {
    this.bufferCount = options.bufferCount ?? DEFAULT_BUFFER_COUNT
    if (!Number.isInteger(this.bufferCount) || this.bufferCount < 2 || this.bufferCount > 0xffff) {
      throw new RangeError(`buffer count must be 2-65535 (the Linux initiator cannot use fewer than 2), got ${this.bufferCount}`)
    }
    this.warn = options.warn ?? (msg => debug('warning: %s', msg))
    this.disk = options.disk ?? openDiskEngine()
  }

  private exclusive<T> (command: () => Promise<T>): Promise<T> {
    const run = this.commands.then(command, command)
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
      store = await BackingStore.open(path, this.disk, this.options.direct)
    } catch (err) {
      throw new ControlError('ENOENT', (err as Error).message)
    }
    if (this.options.direct === true && !store.direct) this.warn(`${path}: the file system refuses O_DIRECT; using buffered I/O`)
    return store
  }

  private openPort (ifname: string): Port {
    let port = this.ports.get(ifname)
    if (port !== undefined) return port
    try {
      port = Port.open(ifname, { bufferCount: this.bufferCount, netns: this.options.netns, disk: this.disk })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENODEV' || e.code === 'ENXIO') throw new ControlError('ENOENT', `no interface ${ifname}`)
      throw new ControlError('EIO', `cannot open interface ${ifname}: ${e.message}`)
    }
    this.ports.set(ifname, port)
    return port
  }

  private closePortIfUnused (ifname: string): void {
    const port = this.ports.get(ifname)
    if (port !== undefined && port.targets.length === 0) {
      port.close()
      this.ports.delete(ifname)
    }
  }

  add (cmd: AddCommand): Promise<TargetInfo> {
    return this.exclusive(async () => {
      if (this.closed) throw new ControlError('EIO', 'the engine is shutting down')
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
        this.closePortIfUnused(cmd.ifname)
        throw err
      }
      const key = `${cmd.major}.${cmd.minor}`
      let state = this.states.get(key)
      if (state === undefined) this.states.set(key, state = new AddressState())
      const target = new Target(cmd.major, cmd.minor, cmd.ifname, store, state, () => port.mtu)
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
      this.closePortIfUnused(target.ifname)
      const key = `${target.major}.${target.minor}`
      if (![...this.targets.values()].some(t => t.state === target.state)) this.states.delete(key)
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
    if (!isIdentifyText(model, MODEL_LENGTH)) {
      throw new ControlError('EINVAL', `model must be at most ${MODEL_LENGTH} printable ASCII characters`)
    }
    this.find(addr).model = model
  }

  setSerial (addr: TargetAddress, serial: string): void {
    if (!isIdentifyText(serial, SERIAL_LENGTH)) {
      throw new ControlError('EINVAL', `serial must be at most ${SERIAL_LENGTH} printable ASCII characters`)
    }
    this.find(addr).serial = serial
  }

  interfaces (): InterfaceStats[] {
    return [...this.ports.values()].map(p => p.stats())
  }

  /** Stops serving: closes every socket, then every backing store once its I/O is done. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const port of this.ports.values()) port.close()
    this.ports.clear()
    const stores = [...this.targets.values()].map(t => t.store)
    this.targets.clear()
    await Promise.all(stores.map(s => s.close()))
    this.disk.close()
  }
}
