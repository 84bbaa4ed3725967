/**
 * The transmit side on its own (src/engine/transmit.ts): slot allocation, the send
 * queue and its batches, a socket that takes only part of a batch, replies whose data
 * comes from a file map at send time, and close. Over the in-memory FrameIo, which
 * captures every frame as the wire would carry it; no root, no network.
 */
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ATA_HEADER_LENGTH } from '../../src/aoe/ata'
import { MIN_FRAME_LENGTH } from '../../src/aoe/constants'
import { mapFile, type FileMap } from '../../src/native/memory'
import { TX_SLOTS, TX_SLOT_SIZE, TxQueue, frameAt, type MappedReply } from '../../src/engine/transmit'
import { FakeFrameIo } from '../helpers/fake-frame-io'

const EFAULT = 14

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvb-tx-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

function queueOver (t: { teardown: (fn: () => unknown) => void }, io = new FakeFrameIo()): { q: TxQueue, io: FakeFrameIo } {
  const q = new TxQueue(io)
  t.teardown(() => {
    q.close()
    q.releaseArena()
  })
  return { q, io }
}

/** Builds a reply of `length` bytes in `slot`, every byte `value`. */
function build (q: TxQueue, slot: number, length: number, value: number): void {
  q.arena.fill(value, frameAt(slot), frameAt(slot) + length)
}

/** A file of 64 KiB whose byte i is i & 0xff, mapped; the fake reads it through its fd at send time. */
function mappedFile (io: FakeFrameIo, name: string): { fd: number, map: FileMap } {
  const file = path.join(dir, name)
  fs.writeFileSync(file, Buffer.from(Array.from({ length: 65536 }, (_, i) => i & 0xff)))
  const fd = fs.openSync(file, 'r+')
  const map = mapFile(fd, 65536)
  io.mapFile(map, fd)
  t.teardown(() => {
    map.close()
    fs.closeSync(fd)
  })
  return { fd, map }
}

/** An owner of a mapped reply that records what it hears. */
function owner (): MappedReply & { heard: string[] } {
  const heard: string[] = []
  return { heard, mappedSent: () => heard.push('sent'), mappedFailed: errno => heard.push(`failed ${errno}`) }
}

t.test('slots: low ones first, the last freed reused first, -1 (counted) when all are taken', async t => {
  const { q } = queueOver(t)
  t.same([q.alloc(), q.alloc(), q.alloc()], [0, 1, 2])
  t.equal(q.busySlots, 3)
  q.free(1)
  q.free(0)
  t.equal(q.alloc(), 0, 'the slot freed last comes back first (its pages are the warm ones)')
  t.equal(q.alloc(), 1)
  t.equal(q.alloc(), 3, 'then the next unused one')
  for (let i = 4; i < TX_SLOTS; i++) q.alloc()
  t.equal(q.busySlots, TX_SLOTS)
  t.equal(q.alloc(), -1, 'nothing left')
  t.equal(q.alloc(), -1)
  t.equal(q.noBuffers, 2, 'each refusal counted')
  q.free(TX_SLOTS - 1)
  t.equal(q.alloc(), TX_SLOTS - 1, 'a freed slot is available again')
  t.equal(frameAt(1) - frameAt(0), TX_SLOT_SIZE, 'slots are TX_SLOT_SIZE apart')
  t.equal((frameAt(0) + ATA_HEADER_LENGTH) % 4096, 0, 'the data area of a reply starts on a page boundary (O_DIRECT)')
})

t.test('queued replies leave in order in one send, short ones padded with zeros, their slots freed', async t => {
  const { q, io } = queueOver(t)
  const slots = [q.alloc(), q.alloc(), q.alloc()]
  // Garbage past the end of the short reply: padding must not send it.
  q.arena.fill(0xee, frameAt(slots[0]), frameAt(slots[0]) + 100)
  build(q, slots[0], 40, 1)
  build(q, slots[1], 1000, 2)
  build(q, slots[2], MIN_FRAME_LENGTH, 3)
  slots.forEach((s, i) => q.queue(s, [40, 1000, MIN_FRAME_LENGTH][i]))
  t.equal(q.queued, 3)
  t.equal(io.sendCalls.length, 0, 'nothing sent before flush')
  q.flush()
  t.equal(io.sendCalls.length, 1, 'one send call')
  const [a, b, c] = io.sendCalls[0]
  t.same([a.length, b.length, c.length], [MIN_FRAME_LENGTH, 1000, MIN_FRAME_LENGTH], 'lengths: padded to 60, others as built')
  t.ok(a.subarray(0, 40).every(x => x === 1) && a.subarray(40).every(x => x === 0), 'the padding is zeros, not what the slot held')
  t.ok(b.every(x => x === 2) && c.every(x => x === 3), 'in the order queued')
  t.equal(q.queued, 0)
  t.equal(q.busySlots, 0, 'sent replies free their slots')
  q.flush()
  t.equal(io.sendCalls.length, 1, 'an empty queue makes no send call')
})

t.test('requestFlush: one send at the end of the turn for everything queued in it; none inside a batch', async t => {
  const { q, io } = queueOver(t)
  for (let i = 0; i < 5; i++) {
    const s = q.alloc()
    build(q, s, 60, i)
    q.queue(s, 60)
    q.requestFlush()
  }
  t.equal(io.sendCalls.length, 0, 'not sent synchronously')
  await new Promise(resolve => setImmediate(resolve))
  t.equal(io.sendCalls.length, 1, 'five requests, one send')
  t.equal(io.sendCalls[0].length, 5)

  q.inBatch = true
  const s = q.alloc()
  q.queue(s, 60)
  q.requestFlush()
  await new Promise(resolve => setImmediate(resolve))
  t.equal(io.sendCalls.length, 1, 'inside a batch the port flushes, not requestFlush')
  q.inBatch = false
  q.flush()
  t.equal(io.sendCalls.length, 2)
})

t.test('a full socket: the rest waits, in order, until it is writable; flush meanwhile sends nothing', async t => {
  const { q, io } = queueOver(t)
  io.room = 2
  const slots: number[] = []
  for (let i = 0; i < 5; i++) {
    const s = q.alloc()
    slots.push(s)
    build(q, s, 60, 10 + i)
    q.queue(s, 60)
  }
  q.flush()
  t.same(io.sent.map(f => f[0]), [10, 11], 'the socket took two')
  t.equal(q.queued, 3, 'three wait')
  t.equal(q.busySlots, 3, 'only the sent ones were freed')
  // More arrives while waiting: queued behind, not sent around the wait.
  const late = q.alloc()
  build(q, late, 60, 15)
  q.queue(late, 60)
  q.flush()
  q.requestFlush()
  await new Promise(resolve => setImmediate(resolve))
  t.equal(io.sendCalls.length, 1, 'no send while waiting for writability')
  io.drain(2)
  t.same(io.sent.map(f => f[0]), [10, 11, 12, 13], 'writable: two more, in order')
  io.drain()
  t.same(io.sent.map(f => f[0]), [10, 11, 12, 13, 14, 15], 'then the rest, the late one last')
  t.equal(q.busySlots, 0)
})

t.test('a mapped reply: its header from the slot, its data from the map as it is at send time', async t => {
  const { q, io } = queueOver(t)
  const { fd, map } = mappedFile(io, 'a.img')
  const o = owner()
  const s = q.alloc()
  build(q, s, ATA_HEADER_LENGTH, 0xab)
  q.queueMapped(s, o, map, 4096, 1024)
  // The file changes after the reply is queued: the kernel copies at send time.
  fs.writeSync(fd, Buffer.alloc(16, 0x77), 0, 16, 4096)
  t.same(o.heard, [], 'nothing heard before it is sent')
  t.equal(q.busySlots, 1)
  q.flush()
  const [frame] = io.sent
  t.equal(frame.length, ATA_HEADER_LENGTH + 1024)
  t.ok(frame.subarray(0, ATA_HEADER_LENGTH).every(x => x === 0xab), 'header from the slot')
  t.ok(frame.subarray(ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + 16).every(x => x === 0x77), 'data as the file held it at send time')
  t.equal(frame[ATA_HEADER_LENGTH + 16], (4096 + 16) & 0xff, 'from the offset given')
  t.same(o.heard, ['sent'], 'the owner hears once that it has gone')
  t.equal(q.busySlots, 0, 'and the slot is free')
})

t.test('unmap: a queued mapped reply leaves from its slot instead, and its owner hears nothing', async t => {
  const { q, io } = queueOver(t)
  const { map } = mappedFile(io, 'b.img')
  const o = owner()
  const s = q.alloc()
  q.queueMapped(s, o, map, 0, 1024)
  // The owner fixed its data into the slot (a later write overlapped it).
  build(q, s, ATA_HEADER_LENGTH + 1024, 0x5c)
  q.unmap(s, ATA_HEADER_LENGTH + 1024)
  q.flush()
  t.equal(io.sent[0].length, ATA_HEADER_LENGTH + 1024)
  t.ok(io.sent[0].every(x => x === 0x5c), 'the slot\'s bytes, not the map\'s')
  t.same(o.heard, [], 'no mappedSent: the owner already finished with the map')
  t.equal(q.busySlots, 0, 'the slot is freed like any other reply')
  const sends = io.sent.length
  q.unmap(s, 100)
  q.flush()
  t.same([q.queued, q.busySlots, io.sent.length], [0, 0, sends], 'unmapping a slot that is not queued does nothing')
})

t.test('a mapped send that fails: that owner alone hears the errno, keeps its slot, and its answer leaves next', async t => {
  const { q, io } = queueOver(t)
  const { map } = mappedFile(io, 'c.img')
  const owners = [owner(), owner(), owner()]
  const slots = owners.map(() => q.alloc())
  const plain = q.alloc()
  build(q, plain, 60, 0x42)
  q.queueMapped(slots[0], owners[0], map, 0, 512)
  q.queueMapped(slots[1], owners[1], map, 65536 - 256, 512) // past the end of the file: EFAULT
  q.queue(plain, 60)
  q.queueMapped(slots[2], owners[2], map, 1024, 512)
  // What an owner does on mappedFailed: an error reply in the same slot.
  owners[1].mappedFailed = errno => {
    owners[1].heard.push(`failed ${errno}`)
    build(q, slots[1], 60, 0xe1)
    q.queue(slots[1], 60)
    t.equal(q.busySlots, 1, 'the slot is still the owner\'s when it hears')
  }
  q.flush()
  t.same(owners.map(o => o.heard), [['sent'], [`failed ${EFAULT}`], ['sent']], 'only the failed frame\'s owner hears the failure')
  t.equal(io.sendCalls[0].length, 3, 'the others left')
  t.equal(io.sendCalls[0][1][0], 0x42, 'in order')
  await new Promise(resolve => setImmediate(resolve))
  t.equal(io.sendCalls.length, 2, 'the answer queued in the failed slot leaves in a flush of its own')
  t.ok(io.sendCalls[1][0].every(x => x === 0xe1))
  t.equal(q.busySlots, 0)
})

t.test('a batch the socket refuses is dropped and counted, not retried; mapped owners are released', async t => {
  const io = new FakeFrameIo()
  const { q } = queueOver(t, io)
  const { map } = mappedFile(io, 'd.img')
  const o = owner()
  q.queue(q.alloc(), 60)
  q.queueMapped(q.alloc(), o, map, 0, 512)
  io.closed = true // the fake throws on send now
  q.flush()
  t.equal(q.noBuffers, 2, 'both counted as dropped')
  t.equal(q.queued, 0, 'nothing kept for a retry')
  t.equal(q.busySlots, 0)
  t.same(o.heard, ['sent'], 'the mapped owner is done with its map')
})

t.test('a new FrameIo takes what waited for the old one', async t => {
  const old = new FakeFrameIo()
  const { q } = queueOver(t, old)
  old.room = 0
  build(q, 0, 60, 9)
  q.queue(q.alloc(), 60)
  q.flush()
  t.equal(q.queued, 1, 'waiting for the old socket')
  const fresh = new FakeFrameIo()
  q.setIo(fresh)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fresh.sent.length, 1, 'sent on the new one without waiting for the old to drain')
  t.equal(fresh.sent[0][0], 9)
  t.equal(old.sent.length, 0)
})

t.test('close: sends what the socket takes, drops the rest, releases mapped owners; later calls do nothing', async t => {
  const io = new FakeFrameIo()
  const q = new TxQueue(io)
  t.teardown(() => q.releaseArena())
  const { map } = mappedFile(io, 'e.img')
  const o = owner()
  io.room = 1
  q.queue(q.alloc(), 60)
  q.flush()
  t.equal(io.sent.length, 1)
  q.queue(q.alloc(), 60)
  q.queueMapped(q.alloc(), o, map, 0, 512)
  io.room = 0
  q.close()
  t.equal(io.sent.length, 1, 'the full socket took nothing more')
  t.equal(q.queued, 0, 'the rest is dropped')
  t.equal(q.busySlots, 0, 'and its slots freed')
  t.same(o.heard, ['sent'], 'the mapped owner hears it has gone')
  q.queue(q.alloc(), 60)
  t.equal(q.queued, 0, 'a reply queued after close is ignored')
  io.drain()
  q.flush()
  q.close()
  t.equal(io.sent.length, 1, 'nothing is sent after close')
})
