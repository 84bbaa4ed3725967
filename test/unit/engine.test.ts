/**
 * The engine's device table over FrameIos in memory: control commands and close() run
 * one at a time, an interface's port goes when its last target does, nothing opened
 * during a shutdown is left behind, and link changes reach the ports. No root, no network.
 */
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { Engine } from '../../src/engine/engine'
import { LinkTable, type LinkSource } from '../../src/engine/links'
import { privateClaims } from '../../src/engine/locks'
import type { LinkRecord } from '../../src/native/link-monitor'
import { ThreadPoolEngine } from '../../src/store/thread-pool-engine'
import { FakeFrameIo } from '../helpers/fake-frame-io'
import { configFrame, decodeReply } from '../helpers/frames'

const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvb-engine-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const file = path.join(dir, 'disk.img')
fs.writeFileSync(file, Buffer.alloc(1 << 20))

/** Descriptors of this process open on `target`. */
function openFds (target: string): number {
  return fs.readdirSync('/proc/self/fd').filter(fd => {
    try { return fs.readlinkSync(`/proc/self/fd/${fd}`) === target } catch { return false }
  }).length
}

function engineWithFakes (): { engine: Engine, ios: FakeFrameIo[] } {
  const ios: FakeFrameIo[] = []
  const engine = new Engine({
    disk: new ThreadPoolEngine(),
    openFrameIo: ifname => {
      const io = new FakeFrameIo(256, ifname)
      ios.push(io)
      return io
    },
  })
  return { engine, ios }
}

t.test('an add still opening its file when close() is called finishes first, then everything closes', async t => {
  const { engine, ios } = engineWithFakes()
  const adding = engine.add({ major: 9, minor: 0, ifname: 'fake0', path: file })
  const closing = engine.close()
  const info = await adding
  t.equal(info.sectors, 2048, 'the add completed')
  await closing
  t.equal(ios.length, 1, 'one interface was opened')
  t.ok(ios[0].closed, 'and closed by close()')
  t.equal(openFds(file), 0, 'the backing file is not left open')
  await t.rejects(engine.add({ major: 9, minor: 1, ifname: 'fake0', path: file }), { code: 'EIO', message: /shutting down/ }, 'later commands are refused')
  await engine.close()
  t.pass('close() twice is fine')
})

t.test('the port of an interface goes with its last target', async t => {
  const { engine, ios } = engineWithFakes()
  t.teardown(() => engine.close())
  await engine.add({ major: 9, minor: 0, ifname: 'fake0', path: file })
  await engine.add({ major: 9, minor: 1, ifname: 'fake0', path: file })
  t.equal(ios.length, 1, 'two targets, one port')
  await engine.del({ major: 9, minor: 0, ifname: 'fake0' })
  t.notOk(ios[0].closed, 'still in use')
  await engine.del({ major: 9, minor: 1, ifname: 'fake0' })
  t.ok(ios[0].closed, 'closed with its last target')
  t.same(engine.interfaces(), [], 'and no longer listed')
  await t.rejects(engine.add({ major: 9, minor: 2, ifname: 'fake0', path: path.join(dir, 'missing') }), { code: 'ENOENT' })
  t.ok(ios[1].closed, 'a port opened for an add that failed is closed again')
  t.equal(openFds(file), 0)
})

/** Link records the test hands out, as the kernel would: a dump, then events. */
class Records implements LinkSource {
  pending: LinkRecord[] = []
  constructor (public all: LinkRecord[]) {}
  dump (): LinkRecord[] { return this.all }
  poll (): LinkRecord[] { return this.pending.splice(0) }
  onChange (): void {}
  close (): void {}
}

t.test('an interface deleted and made again with the link events lost: a new index, so a new socket', async t => {
  const src = new Records([{ index: 4, name: 'eth0', mtu: 1500, up: true, mac: Buffer.from([2, 0, 0, 0, 0, 1]) }])
  const links = new LinkTable(src)
  const ios: FakeFrameIo[] = []
  const engine = new Engine({
    disk: new ThreadPoolEngine(),
    links,
    probeMs: 0,
    // Not the host's /run/kvblade: another run of this test at the same time would hold 9.0@eth0 there.
    claims: privateClaims,
    // Each socket is on the interface as it is when opened, index included (as SocketFrameIo's link is).
    openFrameIo: ifname => {
      const io = new FakeFrameIo(256, ifname)
      Object.assign(io.link, { index: links.state(ifname).index })
      ios.push(io)
      return io
    },
  })
  t.teardown(() => engine.close())
  await engine.add({ major: 9, minor: 0, ifname: 'eth0', path: file })
  t.equal(ios.length, 1, 'one socket')
  const announced = (io: FakeFrameIo): number => io.sent.map(decodeReply).filter(r => r.header.tag === 0 && r.header.minor === 0).length
  t.equal(announced(ios[0]), 1, 'announced when added')

  // The removal and the new interface were in the events that overflowed: only the index tells.
  src.all = [{ index: 9, name: 'eth0', mtu: 1500, up: true, mac: Buffer.from([2, 0, 0, 0, 0, 2]) }]
  src.pending.push({ overflow: true })
  links.sync()
  t.equal(ios.length, 2, 'a socket on the new interface')
  t.equal(announced(ios[1]), 1, 'the target announced on it')
  await new Promise(resolve => setImmediate(resolve))
  t.ok(ios[0].closed, 'the dead one closed')
  const q = configFrame(9, 0)
  ios[1].deliver([q.frame])
  t.equal(ios[1].sent.map(decodeReply).filter(r => r.header.tag === q.tag).length, 1, 'and the target answers there')

  // Changes that keep the index keep the socket.
  src.pending.push({ index: 9, name: 'eth0', mtu: 9000, up: true })
  links.sync()
  t.equal(ios.length, 2, 'a new MTU on the same interface: same socket')
  t.equal(announced(ios[1]), 2, 'announced again')
  src.pending.push({ index: 9, name: 'eth0', removed: true })
  links.sync()
  src.pending.push({ index: 12, name: 'eth0', mtu: 1500, up: true })
  links.sync()
  t.equal(ios.length, 3, 'a removal heard, then a new interface: reopened once, as before')
})
