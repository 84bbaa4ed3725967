// Real-kernel tests of the io_uring disk ring (native/src/disk_ring.cc).
// If the kernel refuses io_uring (ENOSYS, EPERM...) every test is skipped
// with the reason; any other failure to open is a failure.
import t from 'tap'
import { execFileSync, spawn } from 'child_process'
import { randomBytes } from 'crypto'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { Uring, uringLayout } from '../../src/native/uring'
import { mapFile, type FileMap } from '../../src/native/memory'

// Rows are written through the addon's own layout: the test restates no column numbers.
const layout = uringLayout()
const DISK_ROW = layout.rowWidth
const DiskOp = { Read: layout.ops.read, Write: layout.ops.write, Fdatasync: layout.ops.fdatasync }
const DiskCol = { Map: layout.columns.map }
/** The same names inside a child process's script: Uring, DISK_ROW, DiskOp and rowOf. */
const CHILD_URING = `
    const { Uring, uringLayout } = require(${JSON.stringify(path.resolve(__dirname, '../../src/native/uring.js'))})
    const layout = uringLayout()
    const DISK_ROW = layout.rowWidth
    const DiskOp = { Read: layout.ops.read, Write: layout.ops.write }
    const rowOf = (op, fd, arena, offset, length, position, map = 0) => {
      const row = new Array(DISK_ROW).fill(0), c = layout.columns
      Object.assign(row, { [c.op]: op, [c.fd]: fd, [c.arena]: arena, [c.offset]: offset, [c.length]: length, [c.position]: position, [c.map]: map })
      return row
    }`
/** A row [op, fd, arena, offset, length, position, map] in the addon's column order. */
function rowOf (op: number, fd: number, arena: number, offset: number, length: number, position: number, map = 0): number[] {
  const row = new Array<number>(DISK_ROW).fill(0)
  const c = layout.columns
  row[c.op] = op
  row[c.fd] = fd
  row[c.arena] = arena
  row[c.offset] = offset
  row[c.length] = length
  row[c.position] = position
  row[c.map] = map
  return row
}

const EBADF = os.constants.errno.EBADF

let unavailable: string | false = false
try {
  Uring.open(8).close()
} catch (err) {
  const e = err as NodeJS.ErrnoException
  if (!['ENOSYS', 'EPERM', 'EACCES', 'ENOMEM', 'EOPNOTSUPP'].includes(e.code ?? '')) throw err
  unavailable = `io_uring unavailable here (${e.message}); the disk ring is NOT tested`
  console.error(`\n*** SKIPPING io_uring tests: ${unavailable} ***\n`)
  t.comment(`SKIPPING io_uring tests: ${unavailable}`)
}

/** t.test that skips, with the reason, when io_uring is unavailable. */
function test (name: string, fn: (t: tap.Test) => Promise<void> | void): void {
  void t.test(name, { skip: unavailable }, fn)
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvb-ring-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

function setRow (ring: Uring, i: number, op: number, fd: number, arena: number, offset: number, length: number, position: number, tag: number): void {
  ring.ops.set(rowOf(op, fd, arena, offset, length, position, 0), i * DISK_ROW)
  ring.tags[i] = tag
}

/** Reaps until `want` completions (tag -> result) are in `into`, waiting on onComplete when needed. */
async function drain (ring: Uring, want: number, into = new Map<number, number>()): Promise<Map<number, number>> {
  const take = (): void => {
    for (let n = ring.reap(); n > 0; n = ring.reap()) {
      for (let i = 0; i < n; i++) into.set(ring.doneTags[i], ring.doneResults[i])
    }
  }
  take()
  if (into.size >= want) return into
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: ${into.size}/${want} completions`)), 10000)
    ring.onComplete(() => {
      take()
      if (into.size >= want) { clearTimeout(timer); resolve() }
    })
  })
  return into
}

const places = [dir]
if (fs.existsSync('/dev/shm')) places.push(fs.mkdtempSync('/dev/shm/kvb-ring-'))
t.teardown(() => { for (const p of places.slice(1)) fs.rmSync(p, { recursive: true, force: true }) })

for (const where of places) {
  test(`200 x 4 KiB writes at random offsets, fdatasync, read back identical (${where})`, async t => {
    const ring = Uring.open(256)
    t.teardown(() => ring.close())
    t.equal(ring.capacity, 256)
    const file = path.join(where, 'data.bin')
    const fd = fs.openSync(file, 'w+')
    t.teardown(() => fs.closeSync(fd))
    const N = 200
    const data = randomBytes(N * 4096)
    const back = Buffer.alloc(N * 4096)
    const wa = ring.registerArena(data)
    const ra = ring.registerArena(back)
    // Distinct 8 KiB slots, random start within each: no two writes overlap.
    const slots = [...Array(512).keys()].sort(() => Math.random() - 0.5).slice(0, N)
    const pos = slots.map(s => s * 8192 + Math.floor(Math.random() * 4096))

    for (let i = 0; i < N; i++) setRow(ring, i, DiskOp.Write, fd, wa, i * 4096, 4096, pos[i], 1000 + i)
    t.equal(ring.submit(N), N, 'all 200 queued in one submit')
    let done = await drain(ring, N)
    t.same([...Array(N).keys()].map(i => done.get(1000 + i)), Array(N).fill(4096), 'every write returns 4096')

    setRow(ring, 0, DiskOp.Fdatasync, fd, 0, 0, 0, 0, 7)
    t.equal(ring.submit(1), 1)
    t.same([...(await drain(ring, 1))], [[7, 0]], 'fdatasync completes with 0')

    for (let i = 0; i < N; i++) setRow(ring, i, DiskOp.Read, fd, ra, i * 4096, 4096, pos[i], 5000 + i)
    t.equal(ring.submit(N), N)
    done = await drain(ring, N)
    t.ok([...done.values()].every(r => r === 4096), 'every read returns 4096')
    t.ok(back.equals(data), 'read back byte-identical')
    const disk = fs.readFileSync(file)
    t.ok(pos.every((p, i) => disk.subarray(p, p + 4096).equals(data.subarray(i * 4096, (i + 1) * 4096))), 'file content matches')
    t.same(JSON.parse(JSON.stringify(ring.counters)), { submitted: 2 * N + 1, completed: 2 * N + 1, submitCalls: 3, inFlight: 0, ranInline: 0, mapped: 0, mapFallbacks: 0 })
  })
}

/** A zeroed file in RAM (where runInline is used), a ring and a registered arena, all undone at teardown. */
function nowFixture (t: tap.Test, name: string, fileBytes: number, entries: number, arenaBytes: number): {
  file: string, fd: number, ring: Uring, arena: Buffer, id: number
} {
  const file = path.join(places[places.length - 1], name)
  fs.writeFileSync(file, Buffer.alloc(fileBytes))
  const fd = fs.openSync(file, 'r+')
  t.teardown(() => fs.closeSync(fd))
  const ring = Uring.open(entries)
  t.teardown(() => ring.close())
  const arena = Buffer.alloc(arenaBytes)
  return { file, fd, ring, arena, id: ring.registerArena(arena) }
}

test('runInline performs rows synchronously: writes, fdatasync, reads, short reads and errors', async t => {
  const { file, fd, ring, arena, id } = nowFixture(t, 'now.bin', 64 * 1024, 16, 8 * 4096)
  const data = randomBytes(4 * 4096)
  data.copy(arena)
  const rows = new Float64Array(8 * DISK_ROW)
  const results = new Int32Array(8).fill(12345)
  for (let i = 0; i < 4; i++) rows.set(rowOf(DiskOp.Write, fd, id, i * 4096, 4096, (15 - i) * 4096), i * DISK_ROW)
  rows.set(rowOf(DiskOp.Fdatasync, fd, 0, 0, 0, 0), 4 * DISK_ROW)
  ring.runInline(rows, results, 5)
  t.same([...results.subarray(0, 5)], [4096, 4096, 4096, 4096, 0], 'four writes and a flush, done on return')
  const disk = fs.readFileSync(file)
  for (let i = 0; i < 4; i++) t.ok(disk.subarray((15 - i) * 4096, (16 - i) * 4096).equals(data.subarray(i * 4096, (i + 1) * 4096)), `write ${i} is in the file`)
  arena.fill(0)
  rows.set(rowOf(DiskOp.Read, fd, id, 0, 4096, 15 * 4096), 0)
  rows.set(rowOf(DiskOp.Read, fd, id, 4096, 8192, 15 * 4096), DISK_ROW)
  rows.set(rowOf(DiskOp.Read, -1, id, 0, 512, 0), 2 * DISK_ROW)
  ring.runInline(rows, results, 3)
  t.same([...results.subarray(0, 3)], [4096, 4096, -EBADF], 'a read, a read short at EOF, a bad fd as -EBADF')
  t.ok(arena.subarray(0, 4096).equals(data.subarray(0, 4096)), 'read data lands in the arena')
  t.equal(ring.counters.ranInline, 8)
  t.equal(ring.counters.submitted, 0, 'the ring itself was not used')
  rows.set(rowOf(DiskOp.Read, fd, id + 1, 0, 1, 0), 0)
  t.throws(() => ring.runInline(rows, results, 1), RangeError, 'rows are validated like submit()')
  t.throws(() => ring.runInline(rows, results, 9), RangeError, 'count bounded by the arrays')
})

test('runInline does rows that continue each other in one vectored call, each with its own result', async t => {
  // Scattered arena slots, contiguous file positions: frames of a sequential stream.
  const { file, fd, ring, arena, id } = nowFixture(t, 'vector.bin', 40 * 1024, 64, 64 * 1024)
  const data = randomBytes(32 * 1024)
  const rows = new Float64Array(40 * DISK_ROW)
  const results = new Int32Array(40)
  const slotOf = (i: number): number => ((i * 7) % 32) * 2048
  for (let i = 0; i < 32; i++) {
    data.copy(arena, slotOf(i), i * 1024, (i + 1) * 1024)
    rows.set(rowOf(DiskOp.Write, fd, id, slotOf(i), 1024, 4096 + i * 1024), i * DISK_ROW)
  }
  // A gap, then a row on its own; then a flush ends the run.
  rows.set(rowOf(DiskOp.Write, fd, id, 63 * 1024, 512, 38 * 1024), 32 * DISK_ROW)
  arena.fill(0x5a, 63 * 1024, 63 * 1024 + 512)
  rows.set(rowOf(DiskOp.Fdatasync, fd, 0, 0, 0, 0), 33 * DISK_ROW)
  ring.runInline(rows, results, 34)
  t.same([...results.subarray(0, 34)], [...Array(32).fill(1024), 512, 0], 'each row reports its own length')
  const disk = fs.readFileSync(file)
  t.ok(disk.subarray(4096, 4096 + 32 * 1024).equals(data), 'the stream is in the file, in order')
  t.ok(disk.subarray(38 * 1024, 38 * 1024 + 512).every(b => b === 0x5a), 'the lone row too')
  t.ok(disk.subarray(0, 4096).every(b => b === 0), 'nothing before the stream')

  // Reads of the same stream run past the end of the file: the vector comes up
  // short, and every row still gets exactly what lies within the file.
  arena.fill(0)
  for (let i = 0; i < 40; i++) rows.set(rowOf(DiskOp.Read, fd, id, (i % 32) * 2048, 1024, 4096 + i * 1024), i * DISK_ROW)
  ring.runInline(rows, results, 40)
  t.same([...results.subarray(0, 40)], [...Array(36).fill(1024), 0, 0, 0, 0], 'rows past end of file read 0 bytes')
  // Rows 32-35 reuse the slots of rows 0-3; rows 36-39 read nothing.
  const expected = (slot: number): Buffer => slot < 4
    ? disk.subarray(4096 + (32 + slot) * 1024, 4096 + (33 + slot) * 1024)
    : data.subarray(slot * 1024, (slot + 1) * 1024)
  const wrong = [...Array(32).keys()].filter(k => !arena.subarray(k * 2048, k * 2048 + 1024).equals(expected(k)))
  t.same(wrong, [], 'every read landed in its own slot with its own data')
})

test('runInline copies write rows into a writable map of their file, and stamps its mtime', async t => {
  const { file, fd, ring, arena, id } = nowFixture(t, 'mapped.bin', 64 * 1024, 16, 8 * 4096)
  const map = mapFile(fd, 64 * 1024, true)
  t.teardown(() => map.close())
  t.equal(map.writable, true)
  const longAgo = new Date(Date.now() - 3600 * 1000)
  fs.utimesSync(file, longAgo, longAgo)
  const data = randomBytes(4 * 4096)
  data.copy(arena)
  const rows = new Float64Array(8 * DISK_ROW)
  const results = new Int32Array(8)
  // Three through the map (Map column 1 = maps[0]), scattered; one by pwrite (0).
  const positions = [12, 3, 7, 9].map(k => k * 4096)
  for (let i = 0; i < 4; i++) rows.set(rowOf(DiskOp.Write, fd, id, i * 4096, 4096, positions[i], i === 3 ? 0 : 1), i * DISK_ROW)
  ring.runInline(rows, results, 4, [map])
  t.same([...results.subarray(0, 4)], [4096, 4096, 4096, 4096], 'every row reports its length')
  t.same([ring.counters.mapped, ring.counters.mapFallbacks], [3, 0], 'three copied into the map')
  const disk = fs.readFileSync(file)
  const wrong = positions.filter((p, i) => !disk.subarray(p, p + 4096).equals(data.subarray(i * 4096, (i + 1) * 4096)))
  t.same(wrong, [], 'every write is in the file, read back with read(2)')
  t.ok(fs.statSync(file).mtimeMs > longAgo.getTime() + 1000, 'the mtime moved, as pwrite would have moved it')

  rows[DiskCol.Map] = 2
  t.throws(() => ring.runInline(rows, results, 1, [map]), RangeError, 'a map index past the maps given is refused')
  rows[DiskCol.Map] = 0.5
  t.throws(() => ring.runInline(rows, results, 1, [map]), RangeError, 'a fractional map column is refused')
})

test('a mapped write never grows a file that shrank; one the map cannot take is done by pwrite: map closed, read-only or too small', async t => {
  const { file, fd, ring, arena, id } = nowFixture(t, 'shrunk.bin', 64 * 1024, 16, 8 * 4096)
  const map = mapFile(fd, 64 * 1024, true)
  t.teardown(() => map.close())
  const rows = new Float64Array(4 * DISK_ROW)
  const results = new Int32Array(4)
  const write = (position: number, fill: number, maps: FileMap[]): number => {
    arena.fill(fill, 0, 4096)
    rows.set(rowOf(DiskOp.Write, fd, id, 0, 4096, position, 1), 0)
    ring.runInline(rows, results, 1, maps)
    return results[0]
  }
  // A mapped file's size is known to its store: a row past the end of the file means
  // the file shrank underneath. Nothing is written (0 bytes: the store answers with an
  // error and looks at the size again), neither into the map's tail nor by pwrite.
  fs.ftruncateSync(fd, 16 * 1024 + 512)
  t.equal(write(16 * 1024, 0x9f, [map]), 0, 'a write across the end of the file writes nothing')
  t.equal(fs.statSync(file).size, 16 * 1024 + 512, 'the file did not grow')
  fs.ftruncateSync(fd, 16 * 1024)
  t.equal(write(40 * 1024, 0xa1, [map]), 0, 'a write pages past the end writes nothing')
  t.equal(fs.statSync(file).size, 16 * 1024, 'the file did not grow')
  t.same([ring.counters.mapped, ring.counters.mapFallbacks], [0, 0], 'neither copied nor written by pwrite')
  // Within the file again, the map takes writes as before.
  t.equal(write(8 * 1024, 0xb2, [map]), 4096)
  t.equal(ring.counters.mapped, 1, 'copied into the map once the range is inside the file')
  t.ok(fs.readFileSync(file).subarray(8 * 1024, 12 * 1024).every(b => b === 0xb2))
  fs.ftruncateSync(fd, 64 * 1024)

  const readOnly = mapFile(fd, 64 * 1024)
  t.teardown(() => readOnly.close())
  t.equal(write(12 * 1024, 0xc3, [readOnly]), 4096, 'a read-only map: pwrite')
  map.close()
  t.equal(write(20 * 1024, 0xd4, [map]), 4096, 'a closed map: pwrite')
  const small = mapFile(fd, 8 * 1024, true)
  t.teardown(() => small.close())
  t.equal(write(20 * 1024, 0xe5, [small]), 4096, 'a range beyond the map (the file grew since): pwrite')
  t.same([ring.counters.mapped, ring.counters.mapFallbacks], [1, 3], 'three fallbacks')
  const disk = fs.readFileSync(file)
  t.ok(disk.subarray(12 * 1024, 16 * 1024).every(b => b === 0xc3) && disk.subarray(20 * 1024, 24 * 1024).every(b => b === 0xe5), 'each fallback wrote its data')
  t.equal(disk.length, 64 * 1024, 'and none grew the file')
})

// A fault inside the copy: a hole in a full tmpfs has no page to give the mapping, so
// the copy raises SIGBUS. It needs a tmpfs of our own (root); elsewhere, skipped loudly.
const noMount = process.getuid?.() === 0 ? false : 'not root: cannot mount a small tmpfs'
if (noMount !== false) console.error(`\n*** SKIPPING the faulting-copy test: ${noMount} ***\n`)

void t.test('a copy that faults (SIGBUS) is abandoned, and pwrite gives the real answer', { skip: unavailable || noMount }, async t => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'kvb-small-tmpfs-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt])
  t.teardown(() => {
    execFileSync('umount', [mnt])
    fs.rmdirSync(mnt)
  })
  const file = path.join(mnt, 'f.img')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024, 1))
  const fd = fs.openSync(file, 'r+')
  t.teardown(() => fs.closeSync(fd))
  const map = mapFile(fd, 64 * 1024, true)
  t.teardown(() => map.close())
  const ring = Uring.open(4)
  t.teardown(() => ring.close())
  const arena = Buffer.alloc(4096, 0x77)
  const id = ring.registerArena(arena)
  const rows = new Float64Array(DISK_ROW)
  const results = new Int32Array(1)
  // A hole at 16 KiB, and no free page left in the file system.
  execFileSync('fallocate', ['--punch-hole', '--offset', '16384', '--length', '4096', file])
  const filler = path.join(mnt, 'filler')
  const ffd = fs.openSync(filler, 'w')
  try {
    for (;;) fs.writeSync(ffd, Buffer.alloc(4096))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  }
  fs.closeSync(ffd)
  rows.set(rowOf(DiskOp.Write, fd, id, 0, 4096, 16384, 1))
  ring.runInline(rows, results, 1, [map])
  t.equal(results[0], -os.constants.errno.ENOSPC, 'ENOSPC, as pwrite reports it (and the process lives)')
  t.same([ring.counters.mapped, ring.counters.mapFallbacks], [0, 1], 'the copy faulted; pwrite answered')
  fs.rmSync(filler)
  ring.runInline(rows, results, 1, [map])
  t.equal(results[0], 4096, 'with room again, the write succeeds')
  t.equal(ring.counters.mapped, 1, 'through the map')
  t.ok(fs.readFileSync(file).subarray(16384, 20480).every(b => b === 0x77), 'and is in the file')
})

test('a SIGBUS outside a guarded copy still ends the process', async t => {
  // A child loads the addon, makes a guarded copy (which installs the handler), then
  // gets a SIGBUS of its own: the handler must not swallow it.
  const script = `
    const { mapFile } = require(${JSON.stringify(path.resolve(__dirname, '../../src/native/memory.js'))})
    ${CHILD_URING}
    const fs = require('fs')
    const file = ${JSON.stringify(path.join(dir, 'child.bin'))}
    fs.writeFileSync(file, Buffer.alloc(8192))
    const fd = fs.openSync(file, 'r+')
    const map = mapFile(fd, 8192, true)
    const ring = Uring.open(4)
    const arena = Buffer.alloc(4096, 7)
    const rows = new Float64Array(DISK_ROW)
    rows.set(rowOf(DiskOp.Write, fd, ring.registerArena(arena), 0, 4096, 0, 1))
    ring.runInline(rows, new Int32Array(1), 1, [map])
    console.log('mapped', ring.counters.mapped)
    process.kill(process.pid, 'SIGBUS')
    setTimeout(() => console.log('survived'), 500)
  `
  // No core file for the deliberate crash.
  const child = spawn('sh', ['-c', 'ulimit -c 0; exec "$0" -e "$1"', process.execPath, script],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.on('exit', (c, s) => resolve([c, s])))
  t.equal(out.trim(), 'mapped 1', 'the guarded copy ran, and nothing after the signal did')
  t.same([code, signal], [null, 'SIGBUS'], 'killed by SIGBUS')
})

test('reads beyond EOF are short, zero-length I/O completes with 0', async t => {
  const ring = Uring.open(16)
  t.teardown(() => ring.close())
  const file = path.join(dir, 'short.bin')
  fs.writeFileSync(file, Buffer.alloc(10000, 0xab))
  const fd = fs.openSync(file, 'r+')
  t.teardown(() => fs.closeSync(fd))
  const buf = Buffer.alloc(16384)
  const a = ring.registerArena(buf)
  setRow(ring, 0, DiskOp.Read, fd, a, 0, 4096, 8192, 1) // 1808 bytes left
  setRow(ring, 1, DiskOp.Read, fd, a, 4096, 4096, 20000, 2) // past EOF
  setRow(ring, 2, DiskOp.Read, fd, a, 8192, 100, 9990, 3) // 10 left
  setRow(ring, 3, DiskOp.Read, fd, a, 0, 0, 0, 4) // zero-length read
  setRow(ring, 4, DiskOp.Write, fd, a, 0, 0, 0, 5) // zero-length write
  setRow(ring, 5, DiskOp.Read, fd, a, 12288, 4096, 2 ** 52, 6) // far past EOF, large position
  setRow(ring, 6, DiskOp.Read, fd, a, buf.length, 0, 0, 7) // empty range at the arena's very end
  t.equal(ring.submit(7), 7)
  const done = await drain(ring, 7)
  t.same(Object.fromEntries(done), { 1: 1808, 2: 0, 3: 10, 4: 0, 5: 0, 6: 0, 7: 0 })
  t.ok(buf.subarray(0, 1808).every(b => b === 0xab))
  t.equal(fs.statSync(file).size, 10000, 'zero-length write changed nothing')
})

test('a bad fd completes with -EBADF instead of throwing', async t => {
  const ring = Uring.open(8)
  t.teardown(() => ring.close())
  const a = ring.registerArena(Buffer.alloc(4096))
  const roFd = fs.openSync(path.join(dir, 'ro'), 'w+')
  fs.closeSync(roFd)
  const ro = fs.openSync(path.join(dir, 'ro'), 'r')
  t.teardown(() => fs.closeSync(ro))
  // Never open: above any RLIMIT_NOFILE. (A just-closed fd number is not
  // safe: libuv or tap threads may reuse it before the ring looks it up.)
  const closedFd = 0x7fffffff
  setRow(ring, 0, DiskOp.Read, closedFd, a, 0, 512, 0, 1)
  setRow(ring, 1, DiskOp.Write, -1, a, 0, 512, 0, 2)
  setRow(ring, 2, DiskOp.Fdatasync, closedFd, 0, 0, 0, 0, 3)
  setRow(ring, 3, DiskOp.Write, ro, a, 0, 512, 0, 4) // not open for writing
  t.equal(ring.submit(4), 4)
  t.same(Object.fromEntries(await drain(ring, 4)), { 1: -EBADF, 2: -EBADF, 3: -EBADF, 4: -EBADF })
})

test('the ring holds at most capacity requests: submit returns a prefix, the caller retries', async t => {
  const ring = Uring.open(8)
  t.teardown(() => ring.close())
  const file = path.join(dir, 'full.bin')
  const content = randomBytes(20 * 512)
  fs.writeFileSync(file, content)
  const fd = fs.openSync(file, 'r')
  t.teardown(() => fs.closeSync(fd))
  const buf = Buffer.alloc(20 * 512)
  const a = ring.registerArena(buf)

  t.throws(() => ring.submit(20), RangeError, 'there are only capacity rows')
  for (let i = 0; i < 8; i++) setRow(ring, i, DiskOp.Read, fd, a, i * 512, 512, i * 512, i)
  t.equal(ring.submit(8), 8)
  t.equal(ring.counters.inFlight, 8, 'in flight until reaped, even if already complete')
  t.equal(ring.submit(8), 0, 'full: nothing queued')
  t.equal(ring.counters.submitted, 8)

  // The engine's loop: keep the unqueued rest, reap, retry.
  const pending = [...Array(12).keys()].map(i => i + 8)
  const done = new Map<number, number>()
  while (done.size < 20) {
    const k = Math.min(pending.length, ring.capacity)
    pending.slice(0, k).forEach((j, i) => setRow(ring, i, DiskOp.Read, fd, a, j * 512, 512, j * 512, j))
    const n = ring.submit(k)
    t.ok(n <= ring.capacity - (ring.counters.inFlight - n), 'never more than capacity in flight')
    pending.splice(0, n)
    await drain(ring, Math.min(20, done.size + 1), done)
  }
  t.same([...done.values()], Array(20).fill(512))
  t.ok(buf.equals(content))
  t.equal(ring.counters.inFlight, 0)
  t.equal(ring.counters.completed, 20)
})

function fifo (name: string): string {
  const p = path.join(dir, name)
  execFileSync('mkfifo', [p])
  return p
}

test('a stalled read does not hold up the requests submitted with it', async t => {
  const ring = Uring.open(16)
  t.teardown(() => ring.close())
  const stalled = fs.openSync(fifo('stall'), 'r+')
  t.teardown(() => fs.closeSync(stalled))
  const file = path.join(dir, 'beside.bin')
  const content = randomBytes(8 * 4096)
  fs.writeFileSync(file, content)
  const fd = fs.openSync(file, 'r')
  t.teardown(() => fs.closeSync(fd))
  const buf = Buffer.alloc(9 * 4096)
  const a = ring.registerArena(buf)
  setRow(ring, 0, DiskOp.Read, stalled, a, 8 * 4096, 64, 0, 100) // first in the batch, never answered
  for (let i = 0; i < 8; i++) setRow(ring, i + 1, DiskOp.Read, fd, a, i * 4096, 4096, (7 - i) * 4096, i)
  t.equal(ring.submit(9), 9)
  const done = await drain(ring, 8)
  t.same([...done.keys()].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7], 'all eight file reads completed')
  t.notOk(done.has(100), 'while the pipe read is still waiting')
  for (let i = 0; i < 8; i++) t.ok(buf.subarray(i * 4096, (i + 1) * 4096).equals(content.subarray((7 - i) * 4096, (8 - i) * 4096)), `read ${i} data`)
  t.equal(ring.counters.inFlight, 1)
})

test('onComplete fires for a completion that was not inline (pipe read)', async t => {
  const ring = Uring.open(8)
  t.teardown(() => ring.close())
  const fd = fs.openSync(fifo('p1'), 'r+') // O_RDWR: open does not block; blocking fd, so the ring polls it
  t.teardown(() => fs.closeSync(fd))
  const buf = Buffer.alloc(64)
  const a = ring.registerArena(buf)
  setRow(ring, 0, DiskOp.Read, fd, a, 0, 64, 0, 42)
  t.equal(ring.submit(1), 1)
  t.equal(ring.reap(), 0, 'nothing yet: the pipe is empty')
  t.equal(ring.counters.inFlight, 1)
  let calls = 0
  const fired = new Promise<void>(resolve => ring.onComplete(() => { calls++; resolve() }))
  setTimeout(() => fs.writeSync(fd, 'hello'), 50)
  await fired
  t.equal(ring.reap(), 1)
  t.equal(ring.doneTags[0], 42)
  t.equal(ring.doneResults[0], 5)
  t.equal(buf.toString('latin1', 0, 5), 'hello')
  t.equal(ring.counters.inFlight, 0)
  t.equal(calls, 1)
})

test('an arena is unregistered only once the kernel is done with it; its id is reused', async t => {
  const ring = Uring.open(8)
  t.teardown(() => ring.close())
  const fd = fs.openSync(fifo('p-unreg'), 'r+')
  t.teardown(() => fs.closeSync(fd))
  const buf = Buffer.alloc(64)
  const a = ring.registerArena(buf)
  setRow(ring, 0, DiskOp.Read, fd, a, 0, 64, 0, 7)
  t.equal(ring.submit(1), 1)
  t.throws(() => ring.unregisterArena(a), { code: 'EBUSY' }, 'refused while a read may still write into it')
  fs.writeSync(fd, 'done')
  await drain(ring, 1)
  ring.unregisterArena(a)
  t.throws(() => ring.unregisterArena(a), RangeError, 'twice is an error')
  setRow(ring, 0, DiskOp.Read, fd, a, 0, 64, 0, 8)
  t.throws(() => ring.submit(1), RangeError, 'a row naming it is refused')
  t.equal(ring.registerArena(Buffer.alloc(16)), a, 'the id goes to the next arena')
})

test('onComplete registered after completions are already queued still fires', async t => {
  const ring = Uring.open(8)
  t.teardown(() => ring.close())
  const file = path.join(dir, 'late.bin')
  fs.writeFileSync(file, 'abc')
  const fd = fs.openSync(file, 'r')
  t.teardown(() => fs.closeSync(fd))
  const a = ring.registerArena(Buffer.alloc(16))
  setRow(ring, 0, DiskOp.Read, fd, a, 0, 16, 0, 9)
  t.equal(ring.submit(1), 1)
  // Give a possibly async completion time to land before the eventfd exists.
  await new Promise(resolve => setTimeout(resolve, 50))
  await new Promise<void>(resolve => ring.onComplete(resolve))
  t.equal(ring.reap(), 1)
  t.equal(ring.doneResults[0], 3)
})

test('the process stays alive while I/O is in flight and exits by itself when idle', async t => {
  const pipe = fifo('p2')
  const child = spawn(process.execPath, ['-e', `
    const fs = require('fs')
    ${CHILD_URING}
    const ring = Uring.open(32) // room for the pipe read even if the writes are not reaped yet
    const buf = Buffer.alloc(65536)
    const a = ring.registerArena(buf)
    const file = fs.openSync(${JSON.stringify(path.join(dir, 'child.bin'))}, 'w+')
    const pipe = fs.openSync(${JSON.stringify(pipe)}, 'r+')
    let reads = 0
    ring.onComplete(() => {
      for (let n = ring.reap(); n > 0; n = ring.reap())
        for (let i = 0; i < n; i++) {
          if (ring.doneTags[i] === 99) console.log('pipe', buf.toString('latin1', 0, ring.doneResults[i]))
          else reads++
        }
    })
    // Regular-file I/O first (mostly inline), reaped by the callback...
    for (let i = 0; i < 16; i++) { ring.ops.set(rowOf(DiskOp.Write, file, a, i * 4096, 4096, i * 4096), i * DISK_ROW); ring.tags[i] = i }
    ring.submit(16)
    // ...then a read only the parent can complete. Nothing else holds the loop.
    setImmediate(() => {
      ring.ops.set(rowOf(DiskOp.Read, pipe, a, 0, 100, 0), 0); ring.tags[0] = 99
      console.log('submitted', ring.submit(1))
    })
    process.on('exit', () => console.log('exit', ring.counters.inFlight, ring.counters.completed))
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (s: string) => { out += s })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  const deadline = Date.now() + 5000
  while (!out.includes('submitted') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
  t.match(out, /submitted 1\n/)
  await new Promise(resolve => setTimeout(resolve, 700))
  t.equal(child.exitCode, null, 'alive while a read is in flight')
  const w = fs.openSync(pipe, 'r+') // never blocks, even if the child is gone
  fs.writeSync(w, 'wake')
  fs.closeSync(w)
  const timer = setTimeout(() => child.kill('SIGKILL'), 4000)
  const code = await exited
  clearTimeout(timer)
  t.equal(code, 0, 'exited by itself once idle')
  t.match(out, /pipe wake\n/)
  t.match(out, /exit 0 17\n/)
})

test('an idle ring with onComplete registered does not keep the process alive', async t => {
  const started = Date.now()
  const child = spawn(process.execPath, ['-e', `
    ${CHILD_URING}
    const ring = Uring.open(8)
    ring.onComplete(() => {})
  `], { stdio: 'inherit' })
  const timer = setTimeout(() => child.kill('SIGKILL'), 4000)
  const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  clearTimeout(timer)
  t.equal(code, 0)
  t.ok(Date.now() - started < 4000)
})

test('close() is idempotent, cancels a stuck read, and later use fails with EBADF', async t => {
  const ring = Uring.open(8)
  const fd = fs.openSync(fifo('p3'), 'r+')
  t.teardown(() => fs.closeSync(fd))
  const a = ring.registerArena(Buffer.alloc(64))
  let called = false
  ring.onComplete(() => { called = true })
  setRow(ring, 0, DiskOp.Read, fd, a, 0, 64, 0, 1)
  t.equal(ring.submit(1), 1)
  const t0 = Date.now()
  ring.close()
  t.ok(Date.now() - t0 < 2000, 'close did not hang on the never-completing read')
  t.equal(ring.counters.inFlight, 0)
  t.equal(ring.counters.completed, 1)
  ring.close()
  t.equal(ring.reap(), 0, 'reap after close is a no-op')
  t.throws(() => ring.submit(0), { code: 'EBADF' })
  t.throws(() => ring.registerArena(Buffer.alloc(1)), { code: 'EBADF' })
  t.throws(() => ring.onComplete(() => {}), { code: 'EBADF' })
  await new Promise(resolve => setTimeout(resolve, 20))
  t.notOk(called, 'no callback after close')
})

test('bad rows throw RangeError and queue nothing', t => {
  const ring = Uring.open(8)
  t.teardown(() => ring.close())
  const fd = fs.openSync(path.join(dir, 'bounds.bin'), 'w+')
  t.teardown(() => fs.closeSync(fd))
  const a = ring.registerArena(Buffer.alloc(4096))
  t.equal(ring.registerArena(Buffer.alloc(10)), a + 1, 'ids are sequential')
  t.throws(() => ring.registerArena('nope' as unknown as Buffer), TypeError)
  t.throws(() => ring.registerArena(new Uint32Array(4) as unknown as Buffer), TypeError)
  const bad: Array<[string, number[]]> = [
    ['unregistered arena', [DiskOp.Read, fd, 5, 0, 10, 0]],
    ['negative arena id', [DiskOp.Read, fd, -1, 0, 10, 0]],
    ['past the end', [DiskOp.Read, fd, a, 4000, 97, 0]],
    ['offset past the end', [DiskOp.Write, fd, a, 4097, 0, 0]],
    ['small arena', [DiskOp.Write, fd, a + 1, 0, 11, 0]],
    ['negative offset', [DiskOp.Read, fd, a, -1, 10, 0]],
    ['fractional length', [DiskOp.Read, fd, a, 0, 1.5, 0]],
    ['NaN position', [DiskOp.Read, fd, a, 0, 10, NaN]],
    ['negative position', [DiskOp.Read, fd, a, 0, 10, -1]],
    ['position beyond 2^53', [DiskOp.Read, fd, a, 0, 10, 2 ** 54]],
    ['unknown op', [3, fd, a, 0, 10, 0]],
    ['fd out of int32 range', [DiskOp.Fdatasync, 2 ** 31, 0, 0, 0, 0]],
    ['negative map column', [DiskOp.Write, fd, a, 0, 10, 0, -1]]
  ]
  for (const [what, row] of bad) {
    setRow(ring, 0, DiskOp.Read, fd, a, 0, 10, 0, 1) // good rows first:
    setRow(ring, 1, DiskOp.Write, fd, a, 0, 10, 0, 2) // nothing of the batch may be queued
    ring.ops.set(row, 2 * DISK_ROW)
    t.throws(() => ring.submit(3), RangeError, what)
  }
  t.throws(() => ring.submit(9), RangeError, 'count > capacity')
  t.throws(() => ring.submit(-1), RangeError)
  t.same(JSON.parse(JSON.stringify(ring.counters)), { submitted: 0, completed: 0, submitCalls: 0, inFlight: 0, ranInline: 0, mapped: 0, mapFallbacks: 0 })
  t.equal(ring.reap(), 0)
  t.end()
})

test('open() validates entries', t => {
  for (const n of [0, 3, 6, 8192, 1.5, -8]) t.throws(() => Uring.open(n), RangeError, String(n))
  const r = Uring.open()
  t.equal(r.capacity, 256)
  t.equal(r.ops.length, 256 * DISK_ROW)
  t.equal(r.doneResults.length, 256)
  r.close()
  Uring.open(1).close()
  Uring.open(4096).close()
  t.end()
})
