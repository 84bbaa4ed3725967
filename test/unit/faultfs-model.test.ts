/**
 * The faultfs disk model without FUSE: the volatile overlay against a reference of what
 * a read must show and what a cut must leave, over a seeded random mix of unaligned
 * writes, fsyncs, resizes and cuts; faults, latency rules and the control lines.
 */
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BLOCK, DiskModel } from '../helpers/faultfs/disk-model'
import { answer } from '../helpers/faultfs/control'
import { prng } from '../helpers/prng'

const EIO = -os.constants.errno.EIO
const ENOSPC = -os.constants.errno.ENOSPC

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvb-faultfs-model-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
let files = 0

/** A model over a fresh durable file holding `initial`. */
function model (initial: Buffer, mode: 'volatile' | 'writethrough' = 'volatile'): { m: DiskModel, file: string } {
  const file = path.join(dir, `d${files++}.img`)
  fs.writeFileSync(file, initial)
  const fd = fs.openSync(file, 'r+')
  t.teardown(() => fs.closeSync(fd))
  return { m: new DiskModel(fd, initial.length, mode), file }
}

function readAll (m: DiskModel): Buffer {
  const out = Buffer.alloc(m.size)
  const n = m.read(out, m.size, 0)
  if (n !== m.size) throw new Error(`read of the whole image returned ${n}, not ${m.size}`)
  return out
}

t.test('random unaligned writes, fsyncs, resizes and cuts match a reference', async t => {
  const rand = prng(20240607)
  const size0 = 64 * 1024 + 1000 // not a whole number of blocks
  const initial = Buffer.alloc(size0)
  for (let i = 0; i < size0; i++) initial[i] = Math.floor(rand() * 256)
  const { m, file } = model(initial)
  let current: Buffer = Buffer.from(initial) // what a read must show
  let durable: Buffer = Buffer.from(initial) // what a cut must leave
  for (let step = 0; step < 600; step++) {
    const r = rand()
    if (r < 0.75) {
      const pos = Math.floor(rand() * (current.length + 100))
      const len = 1 + Math.floor(rand() * 3 * BLOCK)
      const data = Buffer.alloc(len)
      for (let i = 0; i < len; i++) data[i] = Math.floor(rand() * 256)
      const res = m.write(data, len, pos)
      if (pos >= current.length) {
        t.equal(res, ENOSPC, `write at ${pos} past the end (${current.length})`)
      } else {
        const n = Math.min(len, current.length - pos)
        t.equal(res, n, `write ${len}@${pos}`)
        data.copy(current, pos, 0, n)
      }
    } else if (r < 0.85) {
      t.equal(m.fsync(rand() < 0.5), 0)
      durable = Buffer.from(current)
      t.equal(m.overlay.size, 0, 'fsync empties the overlay')
    } else if (r < 0.92) {
      const size = Math.floor(rand() * 80 * 1024)
      m.resize(size)
      // Resizing is immediate and durable; growth shows zeros in both views.
      const grow = (b: Buffer): Buffer => Buffer.concat([b.subarray(0, size), Buffer.alloc(Math.max(0, size - b.length))])
      current = grow(current)
      durable = grow(durable)
    } else if (r < 0.96) {
      m.cut()
      const probe = Buffer.alloc(16)
      t.equal(m.read(probe, 16, 0), EIO, 'reads fail while cut')
      t.equal(m.write(probe, 16, 0), EIO, 'writes fail while cut')
      t.equal(m.fsync(false), EIO, 'fsyncs fail while cut')
      m.restore()
      current = Buffer.from(durable)
    }
    if (step % 25 === 0 || r >= 0.85) {
      if (!readAll(m).equals(current)) t.fail(`read view differs after step ${step}`)
      if (!fs.readFileSync(file).equals(durable)) t.fail(`durable file differs after step ${step}`)
      if (!m.durable(0, m.size).equals(durable)) t.fail(`durable() differs after step ${step}`)
    }
  }
  t.ok(readAll(m).equals(current), 'final read view')
  m.cut()
  m.restore()
  t.ok(readAll(m).equals(durable), 'a final cut leaves exactly what was fsynced')
})

t.test('a partial-block write keeps the rest of the block, and only fsync persists it', async t => {
  const initial = Buffer.alloc(3 * BLOCK, 0xaa)
  const { m, file } = model(initial)
  t.equal(m.write(Buffer.from('xyz'), 3, BLOCK - 1), 3, 'straddles two blocks')
  t.equal(m.write(Buffer.alloc(512, 0x55), 512, 2 * BLOCK + 512), 512, 'one sector')
  const want = Buffer.from(initial)
  want.write('xyz', BLOCK - 1, 'latin1')
  want.fill(0x55, 2 * BLOCK + 512, 2 * BLOCK + 1024)
  t.ok(readAll(m).equals(want), 'merged over the durable data')
  t.equal(m.stats().overlayBytes, 3 * BLOCK, 'three blocks cached')
  t.ok(fs.readFileSync(file).equals(initial), 'nothing durable yet')
  t.ok(m.peek(0, m.size).equals(want), 'peek shows the cache')
  t.equal(m.fsync(true), 0)
  t.ok(fs.readFileSync(file).equals(want), 'fsync persisted it')
  t.same({ fsyncs: m.counters.fsyncs, fdatasyncs: m.counters.fdatasyncs, blocks: m.counters.blocksPersisted }, { fsyncs: 1, fdatasyncs: 1, blocks: 3 })
})

t.test('writethrough, forced writes and switching modes', async t => {
  const { m, file } = model(Buffer.alloc(2 * BLOCK))
  m.write(Buffer.from('cached'), 6, 0)
  m.write(Buffer.from('forced'), 6, 3, true)
  t.equal(fs.readFileSync(file).subarray(0, 9).toString('latin1'), '\0\0\0forced', 'a forced write is durable at once')
  t.equal(m.peek(0, 9).toString('latin1'), 'cacforced', 'and not shadowed by the cached block')
  m.setMode('writethrough')
  t.equal(m.overlay.size, 0, 'switching to writethrough persists the overlay')
  t.equal(fs.readFileSync(file).subarray(0, 9).toString('latin1'), 'cacforced')
  m.write(Buffer.from('direct'), 6, BLOCK)
  t.equal(fs.readFileSync(file).subarray(BLOCK, BLOCK + 6).toString('latin1'), 'direct', 'writethrough writes the durable file')
  m.cut()
  m.restore()
  t.equal(m.peek(BLOCK, 6).toString('latin1'), 'direct', 'and survives a cut')
  t.throws(() => m.setMode('writeback' as never), /mode must be/)
})

t.test('faults: ranges, ops, times; latency rules add up', async t => {
  const { m } = model(Buffer.alloc(4 * BLOCK))
  const buf = Buffer.alloc(BLOCK)
  m.addFault('eio', 'read', { offset: BLOCK, length: 10 })
  t.equal(m.read(buf, BLOCK, 0), BLOCK, 'a read before the range')
  t.equal(m.read(buf, 1, BLOCK + 9), EIO, 'a read touching its last byte')
  t.equal(m.read(buf, 100, BLOCK + 10), 100, 'a read just after it')
  t.equal(m.write(buf, 100, BLOCK), 100, 'writes are not affected by a read fault')
  m.addFault('enospc', 'write', { times: 2 })
  t.equal(m.write(buf, 1, 0), ENOSPC)
  t.equal(m.write(buf, 1, 0), ENOSPC)
  t.equal(m.write(buf, 1, 0), 1, 'gone after two firings')
  m.addFault('eio', 'fsync', {})
  t.equal(m.fsync(false), EIO)
  t.equal(m.overlay.size, 2, 'a failed fsync keeps the cache')
  m.addLatency('both', 5, { offset: 0, length: BLOCK })
  m.addLatency('write', 7, {})
  t.equal(m.latencyOf('write', 0, 10), 12)
  t.equal(m.latencyOf('read', 0, 10), 5)
  t.equal(m.latencyOf('read', BLOCK, 10), 0)
  t.equal(m.latencyOf('fsync'), 0)
  t.same({ faults: m.counters.faultsInjected, eio: m.counters.eioInjected, enospc: m.counters.enospcInjected }, { faults: 4, eio: 2, enospc: 2 })
  m.clearFaults()
  t.equal(m.fsync(false), 0)
  t.equal(m.latencyOf('write', 0, 10), 0)
  t.throws(() => m.addFault('enospc', 'read', {}), /writes only/)
  t.throws(() => m.addFault('eio', 'sometimes' as never, {}), /ops must be/)
  t.throws(() => m.addFault('eio', 'read', { offset: -1 }), /offset/)
  t.throws(() => m.addFault('eio', 'read', { length: 0 }), /length/)
  t.throws(() => m.addLatency('read', -5, {}), /ms must be/)
  t.throws(() => m.resize(1.5), /size must be/)
})

t.test('control lines: every line gets one JSON answer, garbage gets ok:false', async t => {
  const { m } = model(Buffer.alloc(BLOCK))
  const ok = (line: string): Record<string, unknown> => JSON.parse(answer(m, line)) as Record<string, unknown>
  t.same(ok('{"op":"ping","id":7}'), { ok: true, id: 7 })
  for (const bad of ['', 'garbage', '[]', 'null', '42', '"ping"', '{}', '{"op":5}', '{"op":"nope"}',
    '{"op":"eio"}', '{"op":"eio","ops":"x"}', '{"op":"latency","ops":"read","ms":"slow"}', '{"op":"resize","size":-1}',
    '{"op":"resize","size":1e300}', '{"op":"durable","offset":0,"length":1e12}', '{"op":"mode","mode":null}', '{"op":"__proto__"}',
    '\u0000\u00ff', '{"op":"peek","offset":"0","length":1}']) {
    const res = ok(bad)
    t.equal(res.ok, false, `refused: ${JSON.stringify(bad)}`)
    t.type(res.error, 'string')
  }
  t.same(ok('{"op":"nope","id":"a"}').id, 'a', 'the id comes back on errors too')
  t.match(ok('{"op":"stats"}'), { ok: true, stats: { size: BLOCK, mode: 'volatile', powered: true } })
  t.equal(m.size, BLOCK, 'nothing changed')
})
