/**
 * The packet loop (src/engine/port.ts) over a FrameIo in memory: batching, replies after
 * the batch, arrival order of overlapping requests on every store path, the receive-ring
 * rule, slot exhaustion, a full socket, failures of the disk engine and of a mapped send,
 * and throws in the loop's own machinery (never fatal, every request still answered).
 * No root, no network: the frames are built in memory and the replies captured at send
 * time (map data included), the backing files are real. The paths that need a file in
 * RAM served inside the kick run on io_uring where the kernel has it and, everywhere, on
 * an engine doing the same with synchronous pread/pwrite, so they never depend on
 * io_uring being there; only what is about io_uring itself skips without it (loudly).
 */
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { BackingStore } from '../../src/store/backing-store'
import type { DiskEngine } from '../../src/store/disk-engine'
import { UringEngine, type UringBinding } from '../../src/store/uring-engine'
import { ThreadPoolEngine, nodeFsIo, type BackingIo } from '../../src/store/thread-pool-engine'
import { Uring } from '../../src/native/uring'
import { AddressState } from '../../src/engine/address-state'
import { Port } from '../../src/engine/port'
import { Target } from '../../src/engine/target'
import { Export, diskOptions } from '../../src/engine/export'
import { TX_SLOTS } from '../../src/engine/transmit'
import { FakeFrameIo } from '../helpers/fake-frame-io'
import { HeldEngine } from '../helpers/held-engine'
import { skipLoudly } from '../helpers/netns'
import { ataFrame, configFrame, configOf, decodeReply, type DecodedReply } from '../helpers/frames'

const SECTOR = 512
const READ = 0x24
const WRITE = 0x34

let uringMissing: string | false = false
try {
  Uring.open(2).close()
} catch (err) {
  uringMissing = `io_uring unavailable: ${(err as Error).message}`
}
const shmMissing = fs.existsSync('/dev/shm') ? false : 'no /dev/shm (tmpfs) here'

/** t.test, or a skip that says why on stderr and in the summary if `missing` is a reason. */
function testIf (name: string, missing: string | false, fn: (t: tap.Test) => Promise<void>): void {
  if (missing !== false) skipLoudly(t, name, missing)
  else void t.test(name, fn)
}

/**
 * Engines that do requests on files in RAM inside the kick (DiskEngine.inline): io_uring,
 * and one on synchronous pread/pwrite (what io_uring's inline path does), which runs
 * everywhere. `entries`: the io_uring's size.
 */
function inlineEngines (): Array<{ name: string, open: (entries: number) => DiskEngine, missing: string | false }> {
  return [
    { name: 'io_uring', open: entries => UringEngine.open(entries), missing: uringMissing },
    { name: 'synchronous pread/pwrite', open: () => new HeldEngine(true, true), missing: false },
  ]
}

interface Rig {
  io: FakeFrameIo
  port: Port
  target: Target
  store: BackingStore
  file: string
  warnings: string[]
  /** Waits until `n` replies have been sent in all (the disk may answer later). */
  replies (n: number): Promise<DecodedReply[]>
}

const dirs: string[] = []
t.teardown(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }) })

/** A file of `bytes` (filled with 0x11, or sparse), a store on it, one target on a port over a fake FrameIo. */
async function rig (t: { teardown: (fn: () => unknown) => void }, where: string, disk: DiskEngine,
  opts: { bytes?: number, sparse?: boolean, onFault?: () => void } = {}): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(where, 'kvb-port-'))
  dirs.push(dir)
  const file = path.join(dir, 'disk.img')
  const bytes = opts.bytes ?? 1 << 20
  if (opts.sparse === true) {
    fs.writeFileSync(file, '')
    fs.truncateSync(file, bytes)
  } else {
    fs.writeFileSync(file, Buffer.alloc(bytes, 0x11))
  }
  const store = await BackingStore.open(file, disk)
  const io = new FakeFrameIo()
  if (store.map !== null) io.mapFile(store.map, store.fd)
  const warnings: string[] = []
  const port = new Port(io, { disk, warn: m => warnings.push(m), ...(opts.onFault !== undefined ? { onFault: opts.onFault } : {}) })
  const exported = new Export(store, 'test', diskOptions({}, { direct: false, cache: 'writeback' }))
  const target = new Target(9, 0, io.link.name, exported, new AddressState(), 64, () => io.link.mtu)
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
  return { io, port, target, store, file, warnings, replies }
}

function byTag (replies: DecodedReply[], tag: number): DecodedReply {
  const r = replies.find(x => x.header.tag === tag)
  if (r === undefined) throw new Error(`no reply with tag ${tag}`)
  return r
}

/** The store paths: which engine, where the file lives, whether it is sparse and mapped. */
interface StorePath { name: string, where: string, engine: () => DiskEngine, sparse?: boolean, mapped: boolean, missing: string | false }
function paths (): StorePath[] {
  const out: StorePath[] = []
  for (const e of inlineEngines()) {
    out.push(
      { name: `a file in RAM, read from its map (${e.name}, inline)`, where: '/dev/shm', engine: () => e.open(256), mapped: true, missing: e.missing || shmMissing },
      { name: `a sparse file in RAM, pread inline (${e.name})`, where: '/dev/shm', engine: () => e.open(256), sparse: true, mapped: false, missing: e.missing || shmMissing })
  }
  out.push(
    { name: 'a file on disk through io_uring', where: '/var/tmp', engine: () => UringEngine.open(256), mapped: false, missing: uringMissing },
    { name: 'a file on disk through the thread pool', where: '/var/tmp', engine: () => new ThreadPoolEngine(), mapped: false, missing: false })
  return out
}

for (const e of inlineEngines()) {
  testIf(`a batch is answered after it is read, its replies in one send (${e.name})`, e.missing || shmMissing, async t => {
    const engine = e.open(256)
    t.teardown(() => engine.close())
    const r = await rig(t, '/dev/shm', engine)
    const frames = [configFrame(9, 0).frame]
    for (let i = 0; i < 40; i++) frames.push(ataFrame(9, 0, READ, i * 2, 2).frame)
    r.io.deliver(frames)
    t.equal(r.io.sendCalls.length, 1, 'one send call')
    t.equal(r.io.sendCalls[0].length, 41, 'carrying every reply of the batch')
    t.equal(r.port.exchangeCounters.ringViolations, 0)
  })
}

for (const p of paths()) {
  testIf(`arrival order of overlapping requests: ${p.name}`, p.missing, async t => {
    const engine = p.engine()
    t.teardown(() => engine.close())
    const r = await rig(t, p.where, engine, { sparse: p.sparse })
    if (p.mapped) t.not(r.store.map, null, 'the store is mapped')
    else t.equal(r.store.map, null, 'the store is not mapped')
    let expected = 0
    const checks: Array<{ tag: number, want: Buffer, what: string }> = []
    // Pairs in one batch, both directions, at distinct LBAs: read then write must return
    // the old bytes, write then read the new ones.
    for (let burst = 0; burst < 3; burst++) {
      const frames: Buffer[] = []
      for (let i = 0; i < 16; i++) {
        const lba = burst * 64 + i * 4
        const before = Buffer.from(fs.readFileSync(r.file).subarray(lba * SECTOR, (lba + 2) * SECTOR))
        const data = crypto.randomBytes(2 * SECTOR)
        if (i % 2 === 0) {
          const rd = ataFrame(9, 0, READ, lba, 2)
          frames.push(rd.frame, ataFrame(9, 0, WRITE, lba, 2, { data }).frame)
          checks.push({ tag: rd.tag, want: before, what: `read then write at ${lba}: the old data` })
        } else {
          const rd = ataFrame(9, 0, READ, lba, 2)
          frames.push(ataFrame(9, 0, WRITE, lba, 2, { data }).frame, rd.frame)
          checks.push({ tag: rd.tag, want: data, what: `write then read at ${lba}: the new data` })
        }
      }
      expected += frames.length
      r.io.deliver(frames)
      await r.replies(expected)
    }
    const replies = await r.replies(expected)
    const wrong = checks.filter(c => !byTag(replies, c.tag).data.subarray(0, 2 * SECTOR).equals(c.want)).map(c => c.what)
    t.same(wrong, [], `${checks.length} pairs in arrival order`)
    t.ok(replies.every(x => (x.status & 0x01) === 0), 'no errors')
    t.equal(r.port.exchangeCounters.ringViolations, 0, 'no request used the ring after its batch')
    t.equal(r.target.busy, 0, 'nothing left in flight')
  })
}

testIf('write data taken from the receive ring is used only inside its batch', shmMissing, async t => {
  // An engine that claims to complete inline but holds requests: the first write breaks
  // the ring rule (and is counted), the second, waiting for the first, is copied out of
  // the ring at the end of the batch and lands intact although the ring is reused.
  const engine = new HeldEngine(true)
  const r = await rig(t, '/dev/shm', engine)
  const first = crypto.randomBytes(2 * SECTOR)
  const second = crypto.randomBytes(2 * SECTOR)
  r.io.deliver([ataFrame(9, 0, WRITE, 8, 2, { data: first }).frame, ataFrame(9, 0, WRITE, 8, 2, { data: second }).frame])
  t.equal(r.port.exchangeCounters.ringViolations, 1, 'a started request still on the ring at the end of its batch is caught')
  t.equal(r.port.exchangeCounters.ringCopies, 1, 'the waiting one was copied out of the ring')
  r.io.deliver([]) // the ring goes back to the "kernel", which scribbles over it
  engine.runHeld()
  await r.replies(2)
  t.ok(fs.readFileSync(r.file).subarray(8 * SECTOR, 10 * SECTOR).equals(second), 'the later write is what the file holds, intact')
})

t.test('when every slot is taken, requests are dropped and counted, and serving resumes', async t => {
  const engine = new HeldEngine(false)
  const r = await rig(t, '/var/tmp', engine)
  let sent = 0
  for (let batch = 0; batch < TX_SLOTS / 256 + 1; batch++) {
    const frames = []
    for (let i = 0; i < 256; i++) frames.push(ataFrame(9, 0, READ, (i % 1000) * 2, 2).frame)
    r.io.deliver(frames)
    sent += frames.length
  }
  t.equal(r.target.busy, TX_SLOTS, 'every slot waits on the disk')
  t.equal(r.port.stats().sendErrors, sent - TX_SLOTS, 'the rest were dropped and counted')
  engine.runHeld()
  await r.replies(TX_SLOTS)
  t.equal(r.target.busy, 0)
  const again = ataFrame(9, 0, READ, 0, 2)
  r.io.deliver([again.frame])
  engine.runHeld()
  const replies = await r.replies(TX_SLOTS + 1)
  t.equal(byTag(replies, again.tag).status, 0x40, 'a new request is served')
})

for (const e of inlineEngines()) {
  testIf(`a full socket holds replies in order, and a held mapped read keeps its data (${e.name})`, e.missing || shmMissing, async t => {
    const engine = e.open(64)
    t.teardown(() => engine.close())
    const r = await rig(t, '/dev/shm', engine)
    t.not(r.store.map, null)
    r.io.room = 0
    const reads = [0, 2, 4].map(lba => ataFrame(9, 0, READ, lba, 2))
    r.io.deliver(reads.map(x => x.frame))
    t.equal(r.io.sent.length, 0, 'nothing left: the socket is full')
    // A later batch writes the sectors of the first read while its reply still waits.
    const data = crypto.randomBytes(2 * SECTOR)
    const w = ataFrame(9, 0, WRITE, 0, 2, { data })
    r.io.deliver([w.frame])
    r.io.drain()
    const replies = await r.replies(4)
    t.same(replies.map(x => x.header.tag), [...reads.map(x => x.tag), w.tag], 'replies leave in the order they were queued')
    t.ok(byTag(replies, reads[0].tag).data.subarray(0, 2 * SECTOR).every(b => b === 0x11), 'the held read still carries the data from before the write')
    t.ok(fs.readFileSync(r.file).subarray(0, 2 * SECTOR).equals(data), 'and the write landed')
  })
}

for (const e of inlineEngines()) {
  testIf(`a read from the map of a file truncated underneath gets an ATA error (${e.name})`, e.missing || shmMissing, async t => {
    const engine = e.open(64)
    t.teardown(() => engine.close())
    const r = await rig(t, '/dev/shm', engine)
    t.not(r.store.map, null)
    fs.truncateSync(r.file, 64 * 1024)
    const gone = ataFrame(9, 0, READ, 1000, 2)
    const kept = ataFrame(9, 0, READ, 10, 2)
    r.io.deliver([gone.frame, kept.frame])
    const replies = await r.replies(2)
    t.same([byTag(replies, gone.tag).status, byTag(replies, gone.tag).error], [0x41, 0x40], 'ERR with UNC, not silence')
    t.equal(byTag(replies, kept.tag).status, 0x40, 'a read of what is left still works')
    t.equal(r.target.errors, 1, 'counted as an error')
  })
}

/** A real io_uring whose first submit fails as the kernel would refuse it (ENOMEM). */
function ringFailingFirstSubmit (): UringBinding {
  const ring = Uring.open(64)
  let failSubmits = 1
  return Object.assign(Object.create(ring) as Uring, {
    submit (count: number): number {
      if (failSubmits-- > 0) throw Object.assign(new Error('io_uring_submit: injected failure (ENOMEM)'), { code: 'ENOMEM', errno: -12 })
      return ring.submit(count)
    },
  })
}

testIf('a failing io_uring becomes ATA errors, and the loop keeps serving', uringMissing, async t => {
  const warnings: string[] = []
  const engine = new UringEngine(ringFailingFirstSubmit(), m => warnings.push(m))
  t.teardown(() => engine.close())
  const r = await rig(t, '/var/tmp', engine)
  const frames = [0, 2, 4, 6].map(lba => ataFrame(9, 0, READ, lba, 2))
  r.io.deliver(frames.map(x => x.frame))
  const replies = await r.replies(4)
  t.ok(frames.every(f => (byTag(replies, f.tag).status & 0x01) !== 0), 'each request got an ATA error')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.match(warnings.join('\n'), /io_uring submit failed, 4 disk requests fail: .*injected failure/, 'and it was logged')
  const again = ataFrame(9, 0, READ, 0, 2)
  r.io.deliver([again.frame])
  t.equal(byTag(await r.replies(5), again.tag).status, 0x40, 'the next request is served')
})

t.test('a disk engine whose kick throws: the batch is answered, the failure logged, the loop serves on', async t => {
  class ThrowingKick extends ThreadPoolEngine {
    kicks = 0
    override kick (): void {
      this.kicks++
      throw new Error('injected: kick failed')
    }
  }
  const engine = new ThrowingKick()
  const r = await rig(t, '/var/tmp', engine)
  const frames = [0, 2, 4].map(lba => ataFrame(9, 0, READ, lba, 2))
  t.doesNotThrow(() => r.io.deliver(frames.map(f => f.frame)), 'nothing escapes the packet loop')
  t.ok(engine.kicks > 0, 'the engine was kicked')
  const replies = await r.replies(3)
  t.ok(frames.every(f => byTag(replies, f.tag).status === 0x40), 'every request of the batch was answered')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.match(r.warnings.join('\n'), /injected: kick failed/, 'the failure was logged')
  const again = ataFrame(9, 0, READ, 8, 2)
  t.doesNotThrow(() => r.io.deliver([again.frame]))
  t.equal(byTag(await r.replies(4), again.tag).status, 0x40, 'the next request is served')
})

t.test('a failed read whose fault report throws is still answered with an ATA error', async t => {
  const failing: BackingIo = {
    ...nodeFsIo,
    read: (_fd, _buf, _off, _len, _pos, cb) => setImmediate(() => cb(Object.assign(new Error('injected EIO'), { code: 'EIO' }), 0)),
  }
  let reports = 0
  const r = await rig(t, '/var/tmp', new ThreadPoolEngine(failing), {
    onFault: () => {
      reports++
      throw new Error('injected: the fault log failed')
    },
  })
  // Before the fix this throw surfaced in an fs callback: an uncaught exception, the end of the daemon.
  const frames = [0, 2].map(lba => ataFrame(9, 0, READ, lba, 2))
  r.io.deliver(frames.map(f => f.frame))
  const replies = await r.replies(2)
  t.equal(reports, 2, 'each failure was reported')
  t.ok(frames.every(f => (byTag(replies, f.tag).status & 0x01) !== 0), 'each got an ATA error')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.equal(r.target.errors, 2, 'both counted as errors')
  t.match(r.warnings.join('\n'), /injected: the fault log failed/, 'the reporting failure was logged')
})

testIf('io_uring: a completion that throws does not strand the others answered with it', uringMissing, async t => {
  const engineWarnings: string[] = []
  const engine = new UringEngine(ringFailingFirstSubmit(), m => engineWarnings.push(m))
  t.teardown(() => engine.close())
  let reports = 0
  const r = await rig(t, '/var/tmp', engine, {
    // The first of the batch's four failures throws while being reported.
    onFault: () => { if (reports++ === 0) throw new Error('injected: the fault log failed') },
  })
  const frames = [0, 2, 4, 6].map(lba => ataFrame(9, 0, READ, lba, 2))
  t.doesNotThrow(() => r.io.deliver(frames.map(f => f.frame)), 'nothing escapes the packet loop')
  const replies = await r.replies(4)
  t.ok(frames.every(f => (byTag(replies, f.tag).status & 0x01) !== 0), 'all four got an ATA error')
  t.equal(r.target.busy, 0, 'nothing is stranded')
  t.match([...engineWarnings, ...r.warnings].join('\n'), /injected: the fault log failed/, 'the throw was logged')
  const again = ataFrame(9, 0, READ, 8, 2)
  r.io.deliver([again.frame])
  t.equal(byTag(await r.replies(5), again.tag).status, 0x40, 'the next request is served')
})

t.test('link facts come from the link state: one sync per batch of queries, not one per frame', async t => {
  const r = await rig(t, '/var/tmp', new ThreadPoolEngine())
  const frames = []
  for (let i = 0; i < 200; i++) frames.push(configFrame(0xffff, 0xff).frame)
  r.io.deliver(frames)
  t.equal(r.io.sent.length, 200, '200 answers')
  t.equal(r.io.syncLinkCalls, 1, 'one link sync for the whole batch')
  r.io.link.mtu = 9000
  r.io.deliver([configFrame(9, 0).frame])
  t.equal(configOf(r.io.sent[200]).sectorsPerCommand, 17, 'a new MTU shows in the next answer')
})

for (const e of inlineEngines()) {
  testIf(`latency: every request answered inside its batch is recorded (${e.name})`, e.missing || shmMissing, async t => {
    // Answered inside its batch (reads from the map of a file in RAM).
    const engine = e.open(256)
    t.teardown(() => engine.close())
    const r = await rig(t, '/dev/shm', engine)
    const frames: Buffer[] = []
    for (let i = 0; i < 20; i++) frames.push(ataFrame(9, 0, READ, i * 2, 2).frame)
    r.io.deliver(frames)
    await r.replies(20)
    const inBatch = r.target.latency.snapshot()
    t.equal(inBatch.count, 20, 'each read of the batch is recorded')
    t.ok(inBatch.sum >= 0 && inBatch.sum < 20 * 0.05, `answered within the batch: ${inBatch.sum} s in all`)
  })
}

t.test('latency: a request held by the disk counts the time it was held', async t => {
  // Held by the disk for 60 ms after its batch closed: timed when it is answered.
  const held = new HeldEngine()
  const h = await rig(t, '/var/tmp', held)
  h.io.deliver([ataFrame(9, 0, READ, 0, 2).frame, ataFrame(9, 0, WRITE, 8, 2, { data: Buffer.alloc(2 * SECTOR, 7) }).frame])
  t.equal(h.target.latency.snapshot().count, 0, 'nothing recorded while the disk holds both')
  await new Promise(resolve => setTimeout(resolve, 60))
  held.runHeld()
  await h.replies(2)
  const after = h.target.latency.snapshot()
  t.equal(after.count, 2, 'both recorded once answered')
  t.ok(after.sum / 2 >= 0.055, `each took the time it was held (${(after.sum / 2 * 1000).toFixed(1)} ms average)`)
  t.equal(after.counts[after.counts.length - 1], 2, 'the cumulative buckets end at the count')
})
