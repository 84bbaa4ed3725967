import fs from 'node:fs'
import { must, run } from './exec'
import { parseMac } from '../../src/aoe/mac'

/** Why a network test cannot run here, or null if it can (root, iproute2, netns support). */
export function networkTestsUnavailable (): string | null {
  if (process.getuid?.() !== 0) return 'network tests need root (they create namespaces and veth pairs)'
  if (!fs.existsSync('/sbin/ip') && !fs.existsSync('/usr/sbin/ip') && !fs.existsSync('/bin/ip')) return 'iproute2 (ip) is not installed'
  return null
}

/**
 * A test that cannot run says so where nobody can miss it: a tap skip (counted in the
 * summary) and a banner on stderr.
 */
export function skipLoudly (t: { skip: (name: string, fn: () => void) => unknown }, what: string, why: string): void {
  process.stderr.write(`\n*** SKIPPING ${what}: ${why} ***\n\n`)
  t.skip(`${what}: ${why}`, () => {})
}

/** The MAC of an interface in the root namespace, as a number (see aoe/mac.ts). */
export function interfaceMac (ifname: string): number {
  return parseMac(fs.readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim())
}

let counter = 0

export interface VethPair {
  /** The end left in the root namespace, where the target serves. */
  target: string
  /** The end inside the test's namespace, where the initiator talks. */
  initiator: string
}

/**
 * A network namespace and veth pairs made for one test and removed by destroy(): the
 * target's ends stay in the root namespace, the initiator's ends go into the namespace.
 * IPv6 is disabled on every end so nothing but our own frames crosses the links.
 */
export class TestNetwork {
  readonly nsPath: string
  private destroyed = false

  private constructor (readonly ns: string, readonly links: VethPair[]) {
    this.nsPath = `/var/run/netns/${ns}`
  }

  static async create (pairs = 1, mtu = 1500): Promise<TestNetwork> {
    const id = `${process.pid % 100000}${counter++}`
    const ns = `kvt-${id}`
    const links: VethPair[] = []
    for (let i = 0; i < pairs; i++) links.push({ target: `kt${id}${i}t`, initiator: `kt${id}${i}i` })
    const net = new TestNetwork(ns, links)
    try {
      await must('ip', ['netns', 'add', ns])
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      for (const l of links) await net.addLink(l, mtu)
    } catch (err) {
      await net.destroy()
      throw err
    }
    return net
  }

  private async addLink (l: VethPair, mtu: number, targetUp = true): Promise<void> {
    await must('ip', ['link', 'add', l.target, 'type', 'veth', 'peer', 'name', l.initiator, 'netns', this.ns])
    await run('sysctl', ['-qw', `net.ipv6.conf.${l.target}.disable_ipv6=1`])
    await run('ip', ['netns', 'exec', this.ns, 'sysctl', '-qw', `net.ipv6.conf.${l.initiator}.disable_ipv6=1`])
    await this.setMtu(l, mtu)
    if (targetUp) await must('ip', ['link', 'set', l.target, 'up'])
    await must('ip', ['-n', this.ns, 'link', 'set', l.initiator, 'up'])
  }

  /** Deletes a pair (both ends): its interfaces are gone, as when a NIC is unplugged. */
  async removeLink (l: VethPair): Promise<void> {
    await must('ip', ['link', 'del', l.target])
  }

  /**
   * Makes a pair of the same names again (new interfaces, new index and MAC), up — or
   * with the target's end left down, for a test that must listen before it comes up.
   */
  async recreateLink (l: VethPair, mtu = 1500, targetUp = true): Promise<void> {
    await this.addLink(l, mtu, targetUp)
  }

  async setLinkUp (l: VethPair, up: boolean): Promise<void> {
    await must('ip', ['link', 'set', l.target, up ? 'up' : 'down'])
  }

  async setMtu (l: VethPair, mtu: number): Promise<void> {
    await must('ip', ['link', 'set', l.target, 'mtu', String(mtu)])
    await must('ip', ['-n', this.ns, 'link', 'set', l.initiator, 'mtu', String(mtu)])
  }

  /** Runs a program inside the namespace (e.g. aoeping, tshark). */
  exec (file: string, args: string[], timeoutMs?: number): ReturnType<typeof run> {
    return run('ip', ['netns', 'exec', this.ns, file, ...args], { timeoutMs })
  }

  async destroy (): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    // Deleting one end of a veth deletes its peer; deleting the namespace removes the rest.
    for (const l of this.links) await run('ip', ['link', 'del', l.target])
    await run('ip', ['netns', 'del', this.ns])
  }
}
