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
import type { DiskEngine } from '../../src/store/disk-engine'
import { FakeFrameIo } from '../helpers/fake-frame-io'
import { HeldEngine } from '../helpers/held-engine'
import { ataFrame, configFrame, decodeReply } from '../helpers/frames'

const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvb-engine-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const file = path.join(dir, 'disk.img')
fs.writeFileSync(file, Buffer.alloc(1 << 20))
const other = path.join(dir, 'other.img')
fs.writeFileSync(other, Buffer.alloc(1 << 20))

/** Descriptors of this process open on `target`. */
function openFds (target: string): number {
  return fs.readdirSync('/proc/self/fd').filter(fd => {
    try { return fs.readlinkSync(`/proc/self/fd/${fd}`) === target } catch { return false }
  }).length
}

function engineWithFakes (disk: DiskEngine = new ThreadPoolEngine()): { engine: Engine, ios: FakeFrameIo[] } {
  const ios: FakeFrameIo[] = []
  const engine = new Engine({
    disk,
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
  await engine.add({ major: 9, minor: 1, ifname: 'fake0', path: other })
  t.equal(ios.length, 1, 'two targets, one port')
  await engine.del({ major: 9, minor: 0, ifname: 'fake0' })
  t.notOk(ios[0].closed, 'still in use')
  await engine.del({ major: 9, minor: 1, ifname: 'fake0' })
  t.ok(ios[0].closed, 'closed with its last target')
  t.same(engine.interfaces(), [], 'and no longer listed')
  await t.rejects(engine.add({ major: 9, minor: 2, ifname: 'fake0', path: path.join(dir, 'missing') }), { code: 'ENOENT' })
  t.ok(ios[1].closed, 'a port opened for an add that failed is closed again')
  t.equal(openFds(file), 0)
  t.equal(openFds(other), 0)
})

t.test('one file is one address: a second address on it is refused unless neither writes exclusively', async t => {
  const { engine } = engineWithFakes()
  t.teardown(() => engine.close())
  await engine.add({ major: 9, minor: 0, ifname: 'fake0', path: file })
  const fds = openFds(file)
  await t.rejects(engine.add({ major: 9, minor: 1, ifname: 'fake0', path: file }),
    { code: 'EBUSY', message: /disk\.img is already exported by this daemon as 9\.0/ }, 'read-write beside read-write')
  await t.rejects(engine.add({ major: 9, minor: 1, ifname: 'fake0', path: file, options: { readOnly: true } }),
    { code: 'EBUSY' }, 'read-only beside an exclusive read-write export')
  t.equal(openFds(file), fds, 'the refused adds left nothing open')
  const multipath = await engine.add({ major: 9, minor: 0, ifname: 'fake1', path: file })
  t.same([multipath.ifname, multipath.path], ['fake1', file], 'the same address on another interface is the same disk: allowed')
  const readded = await engine.readd({ major: 9, minor: 0, ifname: 'fake0', path: file })
  t.equal(readded.path, file, 'a readd of the same file replaces the export, it does not compete with it')
  await engine.del({ major: 9, minor: 0, ifname: 'fake0' })
  await engine.del({ major: 9, minor: 0, ifname: 'fake1' })
  await engine.add({ major: 9, minor: 2, ifname: 'fake0', path: file, options: { shared: true } })
  await engine.add({ major: 9, minor: 3, ifname: 'fake0', path: file, options: { readOnly: true } })
  t.same(engine.list().map(i => `${i.major}.${i.minor}`).sort(), ['9.2', '9.3'], 'shared beside read-only: the admin said so')
})

t.test('a readd keeps arrival order: the new backing runs nothing before the old one has answered its requests', async t => {
  const held = new HeldEngine()
  const { engine, ios } = engineWithFakes(held)
  t.teardown(() => engine.close())
  await engine.add({ major: 9, minor: 0, ifname: 'fake0', path: file, options: { cache: 'writeback' } })
  const io = ios[0]
  const data = Buffer.alloc(1024, 0x5a)
  const write = ataFrame(9, 0, 0x34, 100, 2, { data })
  io.deliver([write.frame])
  t.equal(held.held.length, 1, 'the write is with the disk')
  // The same file readded (new options): the swap happens while the write is outstanding.
  const readding = engine.readd({ major: 9, minor: 0, ifname: 'fake0', path: file, options: { cache: 'writethrough' } })
  for (let i = 0; i < 200 && engine.get({ major: 9, minor: 0, ifname: 'fake0' })?.cache !== 'writethrough'; i++) await new Promise(resolve => setTimeout(resolve, 2))
  t.equal(engine.get({ major: 9, minor: 0, ifname: 'fake0' })?.cache, 'writethrough', 'the new backing serves')
  const read = ataFrame(9, 0, 0x24, 100, 2)
  io.deliver([read.frame])
  t.equal(held.held.length, 1, 'the read of the same sectors is held back: only the old write is with the disk')
  // The disk answers in the worst order it could: newest first.
  while (held.held.length > 0) for (const run of held.held.splice(0).reverse()) run()
  await readding
  const answered = (tag: number): boolean => io.sent.some(f => decodeReply(f).header.tag === tag)
  for (let i = 0; i < 200 && !answered(read.tag); i++) {
    while (held.held.length > 0) for (const run of held.held.splice(0).reverse()) run()
    await new Promise(resolve => setTimeout(resolve, 2))
  }
  const replies = io.sent.map(decodeReply)
  const readReply = replies.find(r => r.header.tag === read.tag)
  t.equal(replies.find(r => r.header.tag === write.tag)?.status, 0x40, 'the write succeeded')
  t.equal(readReply?.status, 0x40, 'the read succeeded')
  t.ok(readReply?.data.subarray(0, 1024).equals(data), 'and saw the write that arrived before it')
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
