/**
 * The packet loop when its own machinery throws: a disk engine's kick, a completion's
 * reporting, a batch of failures. Every request must still be answered (an ATA error
 * where the disk part failed), the failure logged, nothing stranded (`busy` back to 0),
 * no exception out of the loop (it would kill the daemon), and the next request served.
 * Over a FrameIo in memory: no root, no network.
 */
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { BackingStore } from '../../src/store/backing-store'
import type { DiskEngine } from '../../src/store/disk-engine'
import { ThreadPoolEngine, nodeFsIo, type BackingIo } from '../../src/store/thread-pool-engine'
import { UringEngine, type UringBinding } from '../../src/store/uring-engine'
import { Uring } from '../../src/native/uring'
import { AddressState } from '../../src/engine/address-state'
import { Port } from '../../src/engine/port'
import { Target } from '../../src/engine/target'
import { Export, diskOptions } from '../../src/engine/export'
import { FakeFrameIo } from '../helpers/fake-frame-io'
import { ataFrame, decodeReply, type DecodedReply } from '../helpers/frames'
import { skipLoudly } from '../helpers/netns'

const READ = 0x24
const STATUS_ERR = 0x01
const STATUS_OK = 0x40

let uringMissing: string | null = null
try {
  Uring.open(2).close()
} catch (err) {
  uringMissing = `io_uring unavailable: ${(err as Error).message}`
}

const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvb-port-faults-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

interface Rig {
  io: FakeFrameIo
  target: Target
  warnings: string[]
  replies (n: number): Promise<DecodedReply[]>
}

/** One target on a 1 MiB disk file, on a port over a fake FrameIo; `onFault` as the engine would pass it. */
async function rig (t: { teardown: (fn: () => unknown) => void }, disk: DiskEngine, onFault?: () => void): Promise<Rig> {
  const file = path.join(dir, `disk-${Math.random().toString(36).slice(2)}.img`)
  fs.writeFileSync(file, Buffer.alloc(1 << 20, 0x11))
  const store = await BackingStore.open(file, disk)
  const io = new FakeFrameIo()
  const warnings: string[] = []
  const port = new Port(io, { disk, warn: m => warnings.push(m), ...(onFault !== undefined ? { onFault } : {}) })
  const target = new Target(9, 0, io.link.name, new Export(store, 'test', diskOptions({}, { direct: false, cache: 'writeback' })),
    new AddressState(), 64, () => io.link.mtu)
  port.addTarget(target)
  t.teardown(async () => {
    port.removeTarget(target)
    await port.close()
    await store.close()
  })
  const replies = async (n: number): Promise<DecodedReply[]> => {
    for (let i = 0; i < 500 && io.sent.length < n; i++) await new Promise(resolve => setTimeout(resolve, 4))
    if (io.sent.length < n) throw new Error(`${io.sent.length} replies, expected ${n}`)
    return io.sent.map(decodeReply)
  }
  return { io, target, warnings, replies }
}

function statusOf (replies: DecodedReply[], tag: number): number {
  const r = replies.find(x => x.header.tag === tag)
  if (r === undefined) throw new Error(`no reply with tag ${tag}`)
  return r.status
}

t.test('a disk engine whose kick throws: the batch is answered, the failure logged, the loop serves on', async t => {
  class ThrowingKick extends ThreadPoolEngine {
    kicks = 0
    override kick (): void {
      this.kicks++
      throw new Error('injected: kick failed')
    }
  }
  const engine = new ThrowingKick()
  const r = await rig(t, engine)
  const frames = [0, 2, 4].map(lba => ataFrame(9, 0, READ, lba, 2))
  t.doesNotThrow(() => r.io.deliver(frames.map(f => f.frame)), 'nothing escapes the packet loop')
  t.ok(engine.kicks > 0, 'the engine was kicked')
  const replies = await r.replies(3)
  t.ok(frames.every(f => statusOf(replies, f.tag) === STATUS_OK), 'every request of the batch was answered')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.match(r.warnings.join('\n'), /injected: kick failed/, 'the failure was logged')
  const again = ataFrame(9, 0, READ, 8, 2)
  t.doesNotThrow(() => r.io.deliver([again.frame]))
  t.equal(statusOf(await r.replies(4), again.tag), STATUS_OK, 'the next request is served')
})

t.test('a failed read whose fault report throws is still answered with an ATA error', async t => {
  const failing: BackingIo = {
    ...nodeFsIo,
    read: (_fd, _buf, _off, _len, _pos, cb) => setImmediate(() => cb(Object.assign(new Error('injected EIO'), { code: 'EIO' }), 0)),
  }
  let reports = 0
  const r = await rig(t, new ThreadPoolEngine(failing), () => {
    reports++
    throw new Error('injected: the fault log failed')
  })
  // Before the fix this throw surfaced in an fs callback: an uncaught exception, the end of the daemon.
  const frames = [0, 2].map(lba => ataFrame(9, 0, READ, lba, 2))
  r.io.deliver(frames.map(f => f.frame))
  const replies = await r.replies(2)
  t.equal(reports, 2, 'each failure was reported')
  t.ok(frames.every(f => (statusOf(replies, f.tag) & STATUS_ERR) !== 0), 'each got an ATA error')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.equal(r.target.errors, 2, 'both counted as errors')
  t.match(r.warnings.join('\n'), /injected: the fault log failed/, 'the reporting failure was logged')
})

t.test('io_uring: a completion that throws does not strand the others answered with it', async t => {
  if (uringMissing !== null) return skipLoudly(t, 'the io_uring completion test', uringMissing)
  const ring = Uring.open(64)
  let failSubmits = 1
  const failingRing: UringBinding = Object.assign(Object.create(ring) as Uring, {
    submit (count: number): number {
      if (failSubmits-- > 0) throw Object.assign(new Error('io_uring_submit: injected failure (ENOMEM)'), { code: 'ENOMEM', errno: -12 })
      return ring.submit(count)
    },
  })
  const engineWarnings: string[] = []
  const engine = new UringEngine(failingRing, m => engineWarnings.push(m))
  t.teardown(() => engine.close())
  let reports = 0
  const r = await rig(t, engine, () => {
    // The first of the batch's four failures throws while being reported.
    if (reports++ === 0) throw new Error('injected: the fault log failed')
  })
  const frames = [0, 2, 4, 6].map(lba => ataFrame(9, 0, READ, lba, 2))
  t.doesNotThrow(() => r.io.deliver(frames.map(f => f.frame)), 'nothing escapes the packet loop')
  const replies = await r.replies(4)
  t.ok(frames.every(f => (statusOf(replies, f.tag) & STATUS_ERR) !== 0), 'all four got an ATA error')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.match([...engineWarnings, ...r.warnings].join('\n'), /injected: the fault log failed/, 'the throw was logged')
  const again = ataFrame(9, 0, READ, 8, 2)
  r.io.deliver([again.frame])
  t.equal(statusOf(await r.replies(5), again.tag), STATUS_OK, 'the next request is served')
})
