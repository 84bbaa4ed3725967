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
import { FakeFrameIo } from '../helpers/fake-frame-io'

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
