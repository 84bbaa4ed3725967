/**
 * The engine's device table over FrameIos in memory: control commands and close() run
 * one at a time, an interface's port goes when its last target does, and nothing opened
 * during a shutdown is left behind. No root, no network.
 */
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { Engine } from '../../src/engine/engine'
import { ThreadPoolEngine } from '../../src/store/thread-pool-engine'
import type { DiskEngine } from '../../src/store/disk-engine'
import { FakeFrameIo } from '../helpers/fake-frame-io'
import { HeldEngine } from '../helpers/held-engine'
import { ataFrame, decodeReply } from '../helpers/frames'

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
  await engine.add({ major: 9, minor: 0, ifname: 'fake1', path: file })
  t.pass('the same address on another interface is the same disk: allowed')
  await engine.readd({ major: 9, minor: 0, ifname: 'fake0', path: file })
  t.pass('a readd of the same file replaces the export, it does not compete with it')
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
