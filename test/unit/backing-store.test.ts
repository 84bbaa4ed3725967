// Opening backing stores: sizes, device numbers, memory-backed detection, refusals.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BackingStore } from '../../src/store/backing-store'
import { BlockRequest } from '../../src/store/block-request'
import type { FileMap } from '../../src/native/memory'
import type { DiskEngine, DiskFile } from '../../src/store/disk-engine'
import { IoKind } from '../../src/store/ordering'
import { UringEngine } from '../../src/store/uring-engine'
import { ThreadPoolEngine } from '../../src/store/thread-pool-engine'
import { run } from '../helpers/exec'
import { HeldEngine } from '../helpers/held-engine'

const disk = new ThreadPoolEngine()
const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvb-store-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

t.test('a regular file: size in whole sectors, bdev 0:0', async t => {
  const file = path.join(dir, 'a.img')
  fs.writeFileSync(file, Buffer.alloc(10 * 512 + 100))
  const store = await BackingStore.open(file, disk)
  t.teardown(() => store.close())
  t.same([store.size, store.sectors, store.bdev], [10 * 512, 10, '0:0'], 'a trailing partial sector is not exported')
})

t.test('memory-backed files are recognised by their file system', async t => {
  const fsType = (p: string): Promise<string> => run('stat', ['-f', '-c', '%T', p]).then(r => r.stdout.trim())
  for (const where of [dir, '/dev/shm', os.tmpdir()]) {
    if (!fs.existsSync(where)) continue
    const file = fs.mkdtempSync(path.join(where, 'kvb-mem-')) + '/m.img'
    t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
    fs.writeFileSync(file, Buffer.alloc(4096))
    const store = await BackingStore.open(file, disk)
    const type = await fsType(where)
    t.equal(store.inRam, ['tmpfs', 'ramfs'].includes(type), `${where} (${type})`)
    await store.close()
  }
})

/** One request, its completion as a promise. */
class Request extends BlockRequest {
  private resolve: (err: NodeJS.ErrnoException | null) => void = () => {}
  readonly completed = new Promise<NodeJS.ErrnoException | null>(resolve => { this.resolve = resolve })
  ioComplete (err: NodeJS.ErrnoException | null): void { this.resolve(err) }
}

/** A read that, like the packet loop's, can be answered from a map, and records what happened to it. */
class MappableRead extends Request {
  mappedFrom: FileMap | null = null
  fixed = false
  constructor (offset: number, length: number) {
    super()
    this.kind = IoKind.Read
    this.offset = offset
    this.length = length
    this.buffer = Buffer.alloc(length)
  }

  override sendFromMap (map: FileMap): boolean {
    this.mappedFrom = map
    return true
  }

  override fixFromFile (fd: number): boolean {
    this.fixed = fs.readSync(fd, this.buffer, 0, this.length, this.offset) === this.length
    return this.fixed
  }
}

function write (offset: number, data: Buffer): Request {
  const req = new Request()
  req.kind = IoKind.Write
  req.offset = offset
  req.length = data.length
  req.buffer = data
  return req
}

t.test('a file in RAM under an inline engine gets a map; close() waits for reads answered from it', async t => {
  const where = fs.mkdtempSync('/dev/shm/kvb-map-')
  t.teardown(() => fs.rmSync(where, { recursive: true, force: true }))
  const file = path.join(where, 'm.img')
  fs.writeFileSync(file, Buffer.alloc(8192, 7))
  const inline = new HeldEngine(true, true)
  const store = await BackingStore.open(file, inline)
  t.ok(store.inRam)
  t.ok(store.inline, 'its requests complete inline')
  t.not(store.map, null, 'mapped')
  const map = store.map!
  t.equal(map.length, 8192, 'the whole export is mapped')
  t.equal(map.writable, true, 'for writing too')
  const reads = [new MappableRead(0, 512), new MappableRead(512, 512)]
  for (const r of reads) store.submit(r)
  t.same(reads.map(r => r.mappedFrom), [map, map], 'both answered from the map, without a disk request')
  t.equal(inline.held.length, 0, 'nothing went to the engine')
  t.equal(store.inFlight, 2, 'reads waiting to be sent count as in flight')
  let closed = false
  const closing = store.close().then(() => { closed = true })
  t.equal(store.map, null, 'no new reads from the map once closing')
  t.equal(map.length, 8192, 'but it stays mapped for the replies still queued')
  store.mappedReadDone(reads[0])
  await new Promise(resolve => setTimeout(resolve, 20))
  t.notOk(closed, 'close() waits while a reply still needs the map')
  store.mappedReadDone(reads[1])
  await closing
  t.equal(map.length, 0, 'unmapped once the last one is sent')

  const pooled = await BackingStore.open(file, disk)
  t.equal(pooled.map, null, 'no map when the engine may complete writes later (thread pool)')
  t.notOk(pooled.inline)
  await pooled.close()
  const sparse = path.join(where, 's.img')
  fs.writeFileSync(sparse, '')
  fs.truncateSync(sparse, 1 << 20)
  const thin = await BackingStore.open(sparse, inline)
  t.equal(thin.map, null, 'no map for a sparse file: reading its holes through a map would allocate RAM')
  await thin.close()
  const onDisk = path.join(dir, 'd.img')
  fs.writeFileSync(onDisk, Buffer.alloc(4096))
  const slow = await BackingStore.open(onDisk, inline)
  t.equal(slow.map, null, 'no map for a file on disk')
  await slow.close()
})

t.test('a read answered from the map never sees a later write, and always sees an earlier one', async t => {
  const where = fs.mkdtempSync('/dev/shm/kvb-order-')
  t.teardown(() => fs.rmSync(where, { recursive: true, force: true }))
  const file = path.join(where, 'o.img')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024, 1))
  const engine = new HeldEngine(true, true)
  const store = await BackingStore.open(file, engine)
  t.teardown(() => store.close())

  // Read, then a write of the same sectors: the read takes its data before the write lands.
  const read = new MappableRead(4096, 1024)
  store.submit(read)
  t.equal(read.mappedFrom, store.map, 'answered from the map')
  const later = write(4096 + 512, Buffer.alloc(1024, 2))
  store.submit(later)
  t.ok(read.fixed, 'the overlapping write made the read copy its data first')
  t.ok(read.buffer.every(b => b === 1), 'the old data')
  engine.kick()
  t.equal(await later.completed, null)
  t.equal(store.inFlight, 0, 'a fixed read is over')

  // A write elsewhere leaves a mapped read alone.
  const read2 = new MappableRead(0, 512)
  store.submit(read2)
  const elsewhere = write(8192, Buffer.alloc(512, 3))
  store.submit(elsewhere)
  engine.kick()
  await elsewhere.completed
  t.notOk(read2.fixed, 'no copy for a write that does not overlap')
  store.mappedReadDone(read2)

  // Write, then a read of the same sectors: the read waits, then comes from the map with the new data in it.
  const first = write(16384, Buffer.alloc(512, 4))
  store.submit(first)
  const after = new MappableRead(16384, 512)
  store.submit(after)
  t.equal(after.mappedFrom, null, 'not answered while the earlier write is pending')
  engine.kick()
  await first.completed
  t.equal(after.mappedFrom, store.map, 'answered from the map once it is done')
  t.ok(fs.readFileSync(file).subarray(16384, 16896).every(b => b === 4), 'and the map holds the write')
  store.mappedReadDone(after)

  // Read blocked behind a write, with another write behind it: it is read for real, not mapped.
  const w1 = write(32768, Buffer.alloc(512, 5))
  const r = new MappableRead(32768, 512)
  const w2 = write(32768, Buffer.alloc(512, 6))
  store.submit(w1)
  store.submit(r)
  store.submit(w2)
  engine.kick() // w1, then r (read into its buffer, since w2 waits for it), then w2
  t.equal(await r.completed, null)
  t.equal(r.mappedFrom, null, 'a read a later write waits for is not left to the map')
  t.ok(r.buffer.every(b => b === 5), 'it read the first write, not the second')
  t.equal(await w2.completed, null)
  t.equal(store.inFlight, 0)
})

let noRing: string | false = false
try {
  UringEngine.open(2).close()
} catch (err) {
  noRing = `io_uring unavailable: ${(err as Error).message}`
  console.error(`\n*** SKIPPING the mapped-write test: ${noRing} ***\n`)
}

t.test('writes to a file in RAM on the io_uring engine are copied into its map', { skip: noRing }, async t => {
  const engine = UringEngine.open(16)
  t.teardown(() => engine.close())
  const where = fs.mkdtempSync('/dev/shm/kvb-mapw-')
  t.teardown(() => fs.rmSync(where, { recursive: true, force: true }))
  const file = path.join(where, 'w.img')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024))
  const store = await BackingStore.open(file, engine)
  t.not(store.map, null, 'mapped')
  const data = Buffer.alloc(4096, 0x3c)
  const req = new Request()
  req.kind = IoKind.Write
  req.offset = 8192
  req.length = 4096
  req.buffer = data
  store.submit(req)
  engine.kick()
  t.equal(await req.completed, null, 'the write succeeds')
  t.equal(engine.counters.mapped, 1, 'copied into the map, no pwrite')
  t.ok(fs.readFileSync(file).subarray(8192, 12288).equals(data), 'read(2) sees it')
  await store.close()
})

t.test('refusals name the cause and carry the errno that says why', async t => {
  const empty = path.join(dir, 'empty.img')
  fs.writeFileSync(empty, '')
  const small = path.join(dir, 'small.img')
  fs.writeFileSync(small, Buffer.alloc(511))
  await t.rejects(BackingStore.open(path.join(dir, 'missing.img'), disk), { code: 'ENOENT', message: /cannot open .*missing\.img/ })
  await t.rejects(BackingStore.open(empty, disk), { code: 'ENOENT', message: /no whole sector/ })
  await t.rejects(BackingStore.open(small, disk), { code: 'ENOENT', message: /no whole sector .*511/ })
  await t.rejects(BackingStore.open(dir, disk), { code: 'EISDIR', message: /is a directory/ })
  await t.rejects(BackingStore.open('/dev/null', disk), { code: 'ENOTBLK', message: /neither a regular file nor a block device/ })
})

if (process.getuid?.() !== 0) {
  process.stderr.write('\n*** SKIPPING block-device store test: needs root for losetup ***\n\n')
  t.skip('block-device store test: needs root for losetup', () => {})
} else {
  t.test('a block device: size by ioctl, bdev MAJ:MIN', async t => {
    const file = path.join(dir, 'loop.img')
    fs.writeFileSync(file, Buffer.alloc(3 << 20))
    const r = await run('losetup', ['--find', '--show', file])
    t.equal(r.code, 0, `losetup: ${r.stderr}`)
    const loop = r.stdout.trim()
    t.teardown(() => run('losetup', ['-d', loop]))
    const store = await BackingStore.open(loop, disk)
    t.teardown(() => store.close())
    const st = fs.statSync(loop)
    t.equal(store.size, 3 << 20)
    const want = (await run('stat', ['-c', '%t:%T', loop])).stdout.trim().split(':').map(h => parseInt(h, 16)).join(':')
    t.equal(store.bdev, want, `bdev ${want}`)
    t.ok(st.isBlockDevice())
    t.equal(store.inRam, false, 'a loop device is not in RAM')
  })
}

/** An engine that does transfers and syncs only when told, each kind on its own. */
class StepEngine implements DiskEngine {
  readonly inline = false
  readonly transfers: Array<() => void> = []
  readonly syncs: Array<(err?: NodeJS.ErrnoException) => void> = []
  transfer (file: DiskFile, req: BlockRequest, done: number): void {
    this.transfers.push(() => {
      const n = req.kind === IoKind.Read
        ? fs.readSync(file.fd, req.buffer, req.bufferOffset + done, req.length - done, req.offset + done)
        : fs.writeSync(file.fd, req.buffer, req.bufferOffset + done, req.length - done, req.offset + done)
      req.onTransfer(null, n)
    })
  }

  sync (file: DiskFile, req: BlockRequest): void {
    this.syncs.push(err => {
      if (err === undefined) fs.fdatasyncSync(file.fd)
      req.onSync(err ?? null)
    })
  }

  runTransfers (): void { for (const run of this.transfers.splice(0)) run() }
  runSync (err?: NodeJS.ErrnoException): void { this.syncs.shift()!(err) }
  kick (): void {}
  async release (): Promise<void> {}
  close (): void {}
}

/** Lets queued microtasks (the group sync is started in one) run. */
const settle = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

t.test('writethrough: writes that complete together share one fdatasync and are acknowledged after it', async t => {
  const file = path.join(dir, 'group.img')
  fs.writeFileSync(file, Buffer.alloc(1 << 20))
  const engine = new StepEngine()
  const store = await BackingStore.open(file, engine)
  t.teardown(() => store.close())
  store.ackMode = 'writethrough'
  let acked = 0
  const writes = Array.from({ length: 8 }, (_, i) => write(i * 4096, Buffer.alloc(4096, i + 1)))
  for (const w of writes) { store.submit(w); void w.completed.then(() => acked++) }
  engine.runTransfers()
  await settle()
  t.equal(engine.syncs.length, 1, 'one sync for the eight writes that completed together')
  t.equal(acked, 0, 'none acknowledged before it')
  t.equal(store.inFlight, 8, 'they are still in flight')
  // While it runs, three more writes complete: they wait for the next sync.
  const later = Array.from({ length: 3 }, (_, i) => write((16 + i) * 4096, Buffer.alloc(4096, 0x40 + i)))
  for (const w of later) { store.submit(w); void w.completed.then(() => acked++) }
  engine.runTransfers()
  await settle()
  t.equal(engine.syncs.length, 1, 'no second sync while the first runs')
  engine.runSync()
  await settle()
  t.equal(acked, 8, 'the first eight are acknowledged together')
  t.equal(engine.syncs.length, 1, 'and the next sync, for the three, has started')
  engine.runSync()
  await settle()
  t.equal(acked, 11, 'then the three')
  t.same(store.syncCounters, { syncs: 2, syncedWrites: 11 }, 'counted: 2 syncs, 11 writes')
  t.equal(store.inFlight, 0)

  // A failed sync fails every write it covered: none of them is known to be durable.
  const doomed = [write(0, Buffer.alloc(512, 9)), write(8192, Buffer.alloc(512, 9))]
  for (const w of doomed) store.submit(w)
  engine.runTransfers()
  await settle()
  engine.runSync(Object.assign(new Error('injected: device lost its cache'), { code: 'EIO' }))
  t.same(await Promise.all(doomed.map(w => w.completed.then(e => e?.code))), ['EIO', 'EIO'], 'both fail with the sync')

  // Reads never wait for a sync.
  const w = write(65536, Buffer.alloc(512, 0x77))
  store.submit(w)
  engine.runTransfers()
  await settle()
  const r = new MappableRead(65536, 512)
  store.submit(r)
  engine.runTransfers()
  t.equal(await r.completed, null, 'a read of a written but unsynced sector completes')
  t.ok(r.buffer.every(b => b === 0x77), 'with the new data')
  engine.runSync()
  t.equal(await w.completed, null)

  // Writeback: acknowledged at once, no sync.
  store.ackMode = 'writeback'
  const wb = write(0, Buffer.alloc(512, 1))
  store.submit(wb)
  engine.runTransfers()
  t.equal(await wb.completed, null)
  t.equal(engine.syncs.length, 0, 'writeback issues no sync')
})

t.test('writethrough costs nothing for a file in RAM: no sync at all', { skip: noRing || !fs.existsSync('/dev/shm') }, async t => {
  const engine = UringEngine.open(16)
  t.teardown(() => engine.close())
  const where = fs.mkdtempSync('/dev/shm/kvb-wt-')
  t.teardown(() => fs.rmSync(where, { recursive: true, force: true }))
  const file = path.join(where, 'w.img')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024))
  const store = await BackingStore.open(file, engine)
  store.ackMode = 'writethrough'
  const w = write(0, Buffer.alloc(4096, 5))
  store.submit(w)
  engine.kick()
  t.equal(await w.completed, null)
  t.same(store.syncCounters, { syncs: 0, syncedWrites: 0 }, 'acknowledged without a sync')
  await store.close()
})

t.test('group commit keeps the arrival order of overlapping writes, in one group and across groups', async t => {
  const file = path.join(dir, 'order.img')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024))
  const engine = new StepEngine()
  const store = await BackingStore.open(file, engine)
  t.teardown(() => store.close())
  store.ackMode = 'writethrough'
  const a = write(0, Buffer.alloc(1024, 0xa1))
  const b = write(512, Buffer.alloc(1024, 0xb2))
  store.submit(a)
  store.submit(b)
  engine.runTransfers() // a, then b once a is in the file
  engine.runTransfers()
  await settle()
  const c = write(1024, Buffer.alloc(512, 0xc3)) // while their sync is pending
  store.submit(c)
  engine.runTransfers()
  await settle()
  engine.runSync()
  await settle()
  engine.runSync()
  await Promise.all([a.completed, b.completed, c.completed])
  const got = fs.readFileSync(file).subarray(0, 1536)
  t.ok(got.subarray(0, 512).every(x => x === 0xa1), 'the first write where only it wrote')
  t.ok(got.subarray(512, 1024).every(x => x === 0xb2), 'the second over the first')
  t.ok(got.subarray(1024, 1536).every(x => x === 0xc3), 'the third, from the next group, over the second')
})

t.test('close() syncs a writable store after its last request, before the file closes; a failed sync is a warning', async t => {
  // fs.fdatasync is what close() calls: recorded (and failed on demand) here, then restored.
  const real = fs.fdatasync
  const calls: Array<{ fd: number, open: boolean, inFlight: number }> = []
  let fail: NodeJS.ErrnoException | null = null
  let current: BackingStore | null = null
  fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    calls.push({ fd, open: (() => { try { fs.fstatSync(fd); return true } catch { return false } })(), inFlight: current?.inFlight ?? -1 })
    if (fail !== null) setImmediate(cb, fail)
    else real(fd, cb)
  }) as typeof fs.fdatasync
  t.teardown(() => { fs.fdatasync = real })

  const file = path.join(dir, 'close.img')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024))
  const engine = new StepEngine()
  const store = current = await BackingStore.open(file, engine)
  store.ackMode = 'writeback'
  const w = write(0, Buffer.alloc(4096, 0x5a))
  store.submit(w)
  const closing = store.close()
  await settle()
  t.same(calls, [], 'no sync while a write is still with the disk')
  engine.runTransfers()
  t.equal(await w.completed, null, 'the write completes (writeback: acknowledged from the page cache)')
  await closing
  t.same(calls, [{ fd: store.fd, open: true, inFlight: 0 }], 'then one fdatasync of its descriptor, still open, nothing in flight')
  t.equal(engine.syncs.length, 0, 'not through the disk engine (nothing would kick it now)')
  t.throws(() => fs.fstatSync(store.fd), { code: 'EBADF' }, 'and the file is closed after it')

  calls.length = 0
  const ro = current = await BackingStore.open(file, engine, { readOnly: true })
  await ro.close()
  t.same(calls, [], 'a read-only store has nothing to sync')

  fail = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })
  const warnings: string[] = []
  const failing = current = await BackingStore.open(file, engine)
  await failing.close(m => warnings.push(m))
  t.equal(calls.length, 1, 'synced')
  t.match(warnings, [/close\.img: the last sync before closing failed; .*EIO/], 'a failed sync is a warning naming the file')
  t.throws(() => fs.fstatSync(failing.fd), { code: 'EBADF' }, 'and the file is closed all the same')
})
