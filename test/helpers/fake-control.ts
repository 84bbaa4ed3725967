/**
 * An in-memory Control with kvblade's rules, for testing the control plane without the
 * engine: known interfaces, backing files that must exist and be non-empty (a directory is
 * EISDIR, anything else that is not a file ENOTBLK), EEXIST on a duplicate, ENOENT for an
 * unknown target, EBUSY while requests are in flight.
 */
import { stat } from 'node:fs/promises'
import type { AddCommand, CacheMode, TargetAddress } from '../../src/control/command'
import { targetName } from '../../src/control/command'
import type { Control, InterfaceStats, TargetInfo } from '../../src/control/control'
import { ControlError } from '../../src/control/errors'

export const DEFAULT_MODEL = 'EtherDrive(R) kvblade'
export const DEFAULT_SERIAL = 'SN HERE'

export interface FakeCall {
  op: 'add' | 'del' | 'readd' | 'announce' | 'setModel' | 'setSerial' | 'setAcl' | 'setCache' | 'setBufferCount'
  arg?: unknown
}

function zeroStats (): TargetInfo['stats'] {
  return { reads: 0, readSectors: 0, writes: 0, writeSectors: 0, flushes: 0, errors: 0, inFlight: 0, frames: 0, syncs: 0, syncedWrites: 0 }
}

export class FakeControl implements Control {
  readonly targets = new Map<string, TargetInfo>()
  readonly ifaces = new Map<string, InterfaceStats>()
  readonly calls: FakeCall[] = []
  announcements = 0
  /** Milliseconds add/del/readd take, to let concurrent commands overlap. */
  delayMs = 0

  constructor (ifnames: string[] = ['eth0', 'lo'], readonly mtu = 1500) {
    for (const ifname of ifnames) {
      this.ifaces.set(ifname, { ifname, link: 'up', mtu, framesIn: 0, framesOut: 0, kernelDrops: 0, ignored: 0, malformed: 0, sendErrors: 0 })
    }
  }

  private async pause (): Promise<void> {
    await new Promise(resolve => this.delayMs > 0 ? setTimeout(resolve, this.delayMs) : setImmediate(resolve))
  }

  private async backing (path: string): Promise<{ sectors: number, bdev: string }> {
    let st
    try {
      st = await stat(path)
    } catch (e) {
      throw new ControlError('ENOENT', `cannot open ${path}: ${(e as Error).message}`)
    }
    if (st.isBlockDevice()) {
      // The fake does not size block devices; the tests use regular files.
      return { sectors: 1, bdev: `${Math.floor(st.rdev / 256)}:${st.rdev % 256}` }
    }
    if (st.isDirectory()) throw new ControlError('EISDIR', `${path} is a directory`)
    if (!st.isFile()) throw new ControlError('ENOTBLK', `${path} is neither a file nor a block device`)
    const sectors = Math.floor(st.size / 512)
    if (sectors === 0) throw new ControlError('ENOENT', `${path} has zero size`)
    return { sectors, bdev: '0:0' }
  }

  async add (cmd: AddCommand): Promise<TargetInfo> {
    this.calls.push({ op: 'add', arg: cmd })
    await this.pause()
    if (!this.ifaces.has(cmd.ifname)) throw new ControlError('ENOENT', `interface ${cmd.ifname} not found`)
    const { sectors, bdev } = await this.backing(cmd.path)
    const name = targetName(cmd)
    if (this.targets.has(name)) throw new ControlError('EEXIST', `${name} already exists`)
    const info: TargetInfo = {
      major: cmd.major,
      minor: cmd.minor,
      ifname: cmd.ifname,
      path: cmd.path,
      sectors,
      bdev,
      model: DEFAULT_MODEL,
      serial: DEFAULT_SERIAL,
      busy: 0,
      mtu: this.mtu,
      readOnly: cmd.options?.readOnly === true,
      offset: cmd.options?.offset ?? 0,
      length: cmd.options?.length ?? sectors - (cmd.options?.offset ?? 0),
      acl: cmd.options?.acl ?? [],
      cache: cmd.options?.cache ?? 'writethrough',
      bufferCount: cmd.options?.bufferCount ?? 64,
      direct: cmd.options?.direct === true,
      shared: cmd.options?.shared === true,
      faults: {},
      stats: zeroStats(),
      latency: { bounds: [0.001, Infinity], counts: [0, 0], sum: 0, count: 0 }
    }
    this.targets.set(name, info)
    return info
  }

  async del (addr: TargetAddress): Promise<void> {
    this.calls.push({ op: 'del', arg: addr })
    await this.pause()
    const name = targetName(addr)
    const info = this.targets.get(name)
    if (info === undefined) throw new ControlError('ENOENT', `${name} not found`)
    if (info.busy > 0) throw new ControlError('EBUSY', `${name} is busy`)
    this.targets.delete(name)
  }

  async readd (cmd: AddCommand): Promise<TargetInfo> {
    this.calls.push({ op: 'readd', arg: cmd })
    await this.pause()
    const name = targetName(cmd)
    const info = this.targets.get(name)
    if (info === undefined) throw new ControlError('ENOENT', `${name} not found`)
    const { sectors, bdev } = await this.backing(cmd.path)
    const updated = { ...info, path: cmd.path, sectors, bdev }
    this.targets.set(name, updated)
    return updated
  }

  announce (): void {
    this.calls.push({ op: 'announce' })
    this.announcements++
  }

  list (): TargetInfo[] {
    return [...this.targets.values()]
  }

  get (addr: TargetAddress): TargetInfo | undefined {
    return this.targets.get(targetName(addr))
  }

  private target (addr: TargetAddress): TargetInfo {
    const info = this.get(addr)
    if (info === undefined) throw new ControlError('ENOENT', `${targetName(addr)} not found`)
    return info
  }

  async setModel (addr: TargetAddress, model: string): Promise<void> {
    this.calls.push({ op: 'setModel', arg: model })
    if (model.length > 40) throw new ControlError('EINVAL', 'model longer than 40 characters')
    this.target(addr).model = model
  }

  async setSerial (addr: TargetAddress, serial: string): Promise<void> {
    this.calls.push({ op: 'setSerial', arg: serial })
    if (serial.length > 20) throw new ControlError('EINVAL', 'serial number longer than 20 characters')
    this.target(addr).serial = serial
  }

  async setAcl (addr: TargetAddress, macs: number[]): Promise<void> {
    this.calls.push({ op: 'setAcl', arg: macs })
    this.target(addr).acl = [...macs]
  }

  async setCache (addr: TargetAddress, mode: CacheMode): Promise<void> {
    this.calls.push({ op: 'setCache', arg: mode })
    this.target(addr).cache = mode
  }

  async setBufferCount (addr: TargetAddress, count: number): Promise<void> {
    this.calls.push({ op: 'setBufferCount', arg: count })
    this.target(addr).bufferCount = count
  }

  interfaces (): InterfaceStats[] {
    return [...this.ifaces.values()]
  }

  /** For tests: a snapshot of the targets, comparable with t.same. */
  snapshot (): Array<Omit<TargetInfo, 'stats'>> {
    return this.list().map(({ stats: _stats, ...rest }) => ({ ...rest })).sort((a, b) => targetName(a).localeCompare(targetName(b)))
  }
}
