// Opening backing stores: sizes, device numbers, memory-backed detection, refusals.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BackingStore, BlockRequest } from '../../src/store/backing-store'
import { IoKind } from '../../src/store/ordering'
import { RingDisk } from '../../src/store/ring-disk'
import { ThreadPoolDisk } from '../../src/store/thread-pool-disk'
import { run } from '../helpers/exec'

const disk = new ThreadPoolDisk()
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
    t.equal(store.memory, ['tmpfs', 'ramfs'].includes(type), `${where} (${type})`)
    await store.close()
  }
})

t.test('a file in RAM under an inline engine gets a map; close() waits for reads sent from it', async t => {
  const where = fs.mkdtempSync('/dev/shm/kvb-map-')
  t.teardown(() => fs.rmSync(where, { recursive: true, force: true }))
  const file = path.join(where, 'm.img')
  fs.writeFileSync(file, Buffer.alloc(8192, 7))
  const inline = { ...disk, memoryInline: true, transfer: disk.transfer.bind(disk), sync: disk.sync.bind(disk), kick: () => {}, close: () => {} }
  const store = await BackingStore.open(file, inline)
  t.ok(store.memory)
  t.not(store.map, null, 'mapped')
  const map = store.map!
  t.equal(map.length, 8192, 'the whole export is mapped')
  t.equal(map.writable, true, 'for writing too')
  store.beginMappedRead()
  store.beginMappedRead()
  t.equal(store.inFlight, 2, 'reads waiting to be sent count as in flight')
  let closed = false
  const closing = store.close().then(() => { closed = true })
  t.equal(store.map, null, 'no new reads from the map once closing')
  t.equal(map.length, 8192, 'but it stays mapped for the replies still queued')
  store.endMappedRead()
  await new Promise(resolve => setTimeout(resolve, 20))
  t.notOk(closed, 'close() waits while a reply still needs the map')
  store.endMappedRead()
  await closing
  t.equal(map.length, 0, 'unmapped once the last one is sent')

  const pooled = await BackingStore.open(file, disk)
  t.equal(pooled.map, null, 'no map when the engine may complete writes later (thread pool)')
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

/** One request, its completion as a promise. */
class Request extends BlockRequest {
  private resolve: (err: NodeJS.ErrnoException | null) => void = () => {}
  readonly completed = new Promise<NodeJS.ErrnoException | null>(resolve => { this.resolve = resolve })
  ioComplete (err: NodeJS.ErrnoException | null): void { this.resolve(err) }
}

let noRing: string | false = false
try {
  RingDisk.open(2).close()
} catch (err) {
  noRing = `io_uring unavailable: ${(err as Error).message}`
  console.error(`\n*** SKIPPING the mapped-write test: ${noRing} ***\n`)
}

t.test('writes to a file in RAM on the io_uring engine are copied into its map', { skip: noRing }, async t => {
  const engine = RingDisk.open(16)
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

t.test('refusals name the cause and carry ENOENT', async t => {
  const empty = path.join(dir, 'empty.img')
  fs.writeFileSync(empty, '')
  const small = path.join(dir, 'small.img')
  fs.writeFileSync(small, Buffer.alloc(511))
  await t.rejects(BackingStore.open(path.join(dir, 'missing.img'), disk), { code: 'ENOENT', message: /cannot open .*missing\.img/ })
  await t.rejects(BackingStore.open(empty, disk), { code: 'ENOENT', message: /no whole sector/ })
  await t.rejects(BackingStore.open(small, disk), { code: 'ENOENT', message: /no whole sector .*511/ })
  await t.rejects(BackingStore.open(dir, disk), { code: 'ENOENT', message: /neither a regular file nor a block device/ })
  await t.rejects(BackingStore.open('/dev/null', disk), { code: 'ENOENT', message: /neither/ })
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
    t.equal(store.memory, false, 'a loop device is not memory-backed')
  })
}
