/**
 * The interfaces of the namespace we serve in, kept current from the kernel's link
 * messages (native/link-monitor.ts) instead of asked for per frame; and the FrameIo of
 * one interface over the native packet socket.
 */
import createDebug from 'debug'
import { macFromBuffer } from '../aoe/mac'
import { LinkMonitor, type LinkRecord } from '../native/link-monitor'
import { PacketSocket } from '../native/packet-socket'
import type { FileMap } from '../native/memory'
import type { FrameCounters, FrameIo, LinkState } from './frame-io'

const debug = createDebug('kvblade:links')

/** A LinkState with the kernel's index of the interface. */
export interface KnownLink extends LinkState {
  index: number
}

/** Where link records come from: the kernel (LinkMonitor), or a test. */
export type LinkSource = Pick<LinkMonitor, 'dump' | 'poll' | 'onChange' | 'close'>

export class LinkTable {
  /** One object per name for the life of the table: holders see every change. */
  private readonly byName = new Map<string, KnownLink>()
  private readonly nameOf = new Map<number, string>()
  private readonly listeners: Array<(link: KnownLink) => void> = []

  constructor (private readonly monitor: LinkSource) {
    this.apply(monitor.dump(), false)
    monitor.onChange(() => this.sync())
  }

  /** Opens the monitor (in the namespace file `netns`, for tests) and reads every interface. */
  static open (netns?: string): LinkTable {
    return new LinkTable(LinkMonitor.open(netns))
  }

  /** The state of interface `name` (present false if it does not exist now). */
  state (name: string): KnownLink {
    let link = this.byName.get(name)
    if (link === undefined) this.byName.set(name, link = { name, index: 0, mac: 0, mtu: 0, up: false, present: false })
    return link
  }

  /** cb(link) after every change to an interface. */
  onChange (cb: (link: KnownLink) => void): void {
    this.listeners.push(cb)
  }

  /** Applies the events pending now; one system call when there are none. */
  sync (): void {
    this.apply(this.monitor.poll())
  }

  /** `tell`: report changes (not for the first reading). */
  private apply (records: LinkRecord[], tell = true): void {
    for (const r of records) {
      if (r.overflow === true) {
        debug('link events were lost: reading every interface again')
        for (const link of this.byName.values()) link.present = false
        this.nameOf.clear()
        this.apply(this.monitor.dump())
        for (const link of this.byName.values()) this.changed(link)
        continue
      }
      if (r.index === undefined) continue
      const oldName = this.nameOf.get(r.index)
      const name = r.name ?? oldName
      if (name === undefined) continue
      if (oldName !== undefined && oldName !== name) this.gone(oldName, r.index) // renamed
      const link = this.state(name)
      if (r.removed === true) {
        this.gone(name, r.index)
        continue
      }
      this.nameOf.set(r.index, name)
      const before = `${link.present} ${link.index} ${link.mac} ${link.mtu} ${link.up}`
      link.present = true
      link.index = r.index
      if (r.mac !== undefined) link.mac = macFromBuffer(r.mac)
      if (r.mtu !== undefined) link.mtu = r.mtu
      if (r.up !== undefined) link.up = r.up
      if (tell && `${link.present} ${link.index} ${link.mac} ${link.mtu} ${link.up}` !== before) {
        debug('%s: index %d mtu %d %s', name, link.index, link.mtu, link.up ? 'up' : 'down')
        this.changed(link)
      }
    }
  }

  private gone (name: string, index: number): void {
    const link = this.byName.get(name)
    this.nameOf.delete(index)
    if (link === undefined || link.index !== index || !link.present) return
    link.present = false
    link.up = false
    debug('%s: gone', name)
    this.changed(link)
  }

  private changed (link: KnownLink): void {
    for (const cb of this.listeners) cb(link)
  }

  close (): void {
    this.monitor.close()
  }
}

/** The FrameIo of one interface: its packet socket, with link facts from the table. */
export class SocketFrameIo implements FrameIo {
  readonly rx: Buffer
  readonly rxOffsets: Uint32Array
  readonly rxLengths: Uint32Array
  readonly rxSlots: number
  readonly sendFailures: Int32Array

  private constructor (private readonly socket: PacketSocket, readonly link: KnownLink, private readonly links: LinkTable) {
    this.rx = socket.rx
    this.rxOffsets = socket.rxOffsets
    this.rxLengths = socket.rxLengths
    this.rxSlots = socket.rxSlots
    this.sendFailures = socket.sendFailures
  }

  /** Opens a socket on `ifname` (errors carry .code: ENODEV for no such interface, EPERM...). */
  static open (ifname: string, links: LinkTable, netns?: string): SocketFrameIo {
    const socket = PacketSocket.open(ifname, { netns })
    links.sync() // an interface made a moment ago may not have been heard of yet
    const link = links.state(ifname)
    if (!link.present) {
      // The socket found it: trust the socket's own answer until the kernel's message arrives.
      Object.assign(link, { present: true, index: socket.link.index, mac: macFromBuffer(socket.link.mac), mtu: socket.link.mtu, up: true })
    }
    return new SocketFrameIo(socket, link, links)
  }

  receive (): number {
    return this.socket.recv()
  }

  send (arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number,
    maps: FileMap[], mapIndex: Uint16Array, mapOffsets: Float64Array, mapLengths: Uint32Array): number {
    return this.socket.send(arena, offsets, lengths, count, maps, mapIndex, mapOffsets, mapLengths)
  }

  onReadable (cb: () => void): void {
    this.socket.onReadable(cb)
  }

  stopReceiving (): void {
    this.socket.stopReading()
  }

  onWritable (cb: () => void): void {
    this.socket.onWritable(cb)
  }

  counters (): FrameCounters {
    const c = this.socket.stats()
    return { framesIn: c.rxFrames, framesOut: c.txFrames, kernelDrops: c.kernelDrops, sendErrors: c.txErrors }
  }

  syncLink (): void {
    this.links.sync()
  }

  close (): void {
    this.socket.close()
  }
}
