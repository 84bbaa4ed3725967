/**
 * The link table (src/engine/links.ts): interfaces followed from the kernel's link
 * messages. Fed by hand here; the last test takes them from the kernel for a real veth.
 */
import t from 'tap'
import { LinkTable, type LinkSource } from '../../src/engine/links'
import type { LinkRecord } from '../../src/native/link-monitor'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'

/** Records the test hands out: a dump, then events. */
class Records implements LinkSource {
  pending: LinkRecord[] = []
  dumps = 0
  constructor (public all: LinkRecord[]) {}
  dump (): LinkRecord[] { this.dumps++; return this.all }
  poll (): LinkRecord[] { return this.pending.splice(0) }
  onChange (): void {}
  close (): void {}
}

const mac = (last: number): Buffer => Buffer.from([2, 0, 0, 0, 0, last])

t.test('interfaces as the kernel reports them', async t => {
  const src = new Records([
    { index: 1, name: 'lo', mtu: 65536, up: true, mac: mac(0) },
    { index: 4, name: 'eth0', mtu: 1500, up: true, mac: mac(1) },
  ])
  const links = new LinkTable(src)
  const changes: string[] = []
  links.onChange(l => changes.push(`${l.name} ${l.present ? 'present' : 'gone'} ${l.up ? 'up' : 'down'} ${l.mtu}`))
  const eth0 = links.state('eth0')
  t.same([eth0.present, eth0.index, eth0.mtu, eth0.up, eth0.mac], [true, 4, 1500, true, 0x020000000001], 'from the first dump')
  t.same(changes, [], 'the first reading is not a change')

  src.pending.push({ index: 4, name: 'eth0', mtu: 9000, up: true })
  links.sync()
  t.equal(eth0.mtu, 9000, 'a new MTU, on the same object its holders have')
  src.pending.push({ index: 4, name: 'eth0', mtu: 9000, up: false })
  links.sync()
  t.notOk(eth0.up, 'down')
  src.pending.push({ index: 4, name: 'eth0', removed: true })
  links.sync()
  t.notOk(eth0.present, 'gone')
  src.pending.push({ index: 9, name: 'eth0', mtu: 1500, up: true, mac: mac(9) })
  links.sync()
  t.same([eth0.present, eth0.index, eth0.mac], [true, 9, 0x020000000009], 'back, with a new index and MAC')
  src.pending.push({ index: 9, name: 'lan0', mtu: 1500, up: true })
  links.sync()
  t.notOk(eth0.present, 'renamed away')
  t.ok(links.state('lan0').present, 'under its new name')
  src.pending.push({ index: 9, name: 'lan0', mtu: 1500, up: true })
  links.sync()
  t.same(changes, ['eth0 present up 9000', 'eth0 present down 9000', 'eth0 gone down 9000', 'eth0 present up 1500', 'eth0 gone down 1500', 'lan0 present up 1500'], 'each change told once, repeats not at all')
  t.notOk(links.state('nope0').present, 'an interface never seen is not present')

  src.all = [{ index: 1, name: 'lo', mtu: 65536, up: true }, { index: 12, name: 'eth0', mtu: 1400, up: true }]
  src.pending.push({ overflow: true })
  links.sync()
  t.same([src.dumps, eth0.present, eth0.index, eth0.mtu, links.state('lan0').present], [2, true, 12, 1400, false], 'lost events: everything read again')
})

const unavailable = networkTestsUnavailable()
if (unavailable !== null) {
  skipLoudly(t, 'link table over a real veth', unavailable)
} else {
  t.test('the kernel tells the table about a veth: MTU, down, gone, back', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    const [link] = net.links
    const links = LinkTable.open()
    t.teardown(() => links.close())
    const state = links.state(link.target)
    t.same([state.present, state.mtu], [true, 1500], 'there from the start')
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 200 && !cond(); i++) {
        links.sync()
        if (!cond()) await new Promise(resolve => setTimeout(resolve, 5))
      }
      t.ok(cond(), what)
    }
    await net.setMtu(link, 9000)
    await until(() => state.mtu === 9000, 'MTU 9000 seen')
    await net.setLinkUp(link, false)
    await until(() => !state.up, 'down seen')
    await net.removeLink(link)
    await until(() => !state.present, 'removal seen')
    await net.recreateLink(link)
    await until(() => state.present && state.up, 'a new veth of the same name seen')
  })
}
