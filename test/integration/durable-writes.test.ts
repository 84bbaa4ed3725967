// Durable acknowledgements: the Linux initiator never sends FLUSH and takes every
// acknowledged write as durable. The backing here is faultfs, a disk whose writes stay
// in a volatile cache until fsync/fdatasync, with a power switch. In writethrough (the
// default) every write acknowledged before a power cut must be on the disk after it; in
// writeback the same test must find the loss, unless the daemon was stopped (SIGTERM
// syncs) before the cut. And a SIGKILL of the daemon under load
// loses no acknowledged write in either mode.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'
import { fuseSkipReason } from '../helpers/fuse-harness'
import { FaultFs } from '../helpers/faultfs'
import { prng } from '../helpers/prng'

const SECTOR = 512
const IMAGE = 32 << 20
/** Writes are 4 KiB (8 sectors) at 4 KiB-aligned places in the first 16 MiB: overlaps happen. */
const PER_WRITE = 8
const SLOTS = 4096
const DEPTH = 64
const TRIALS = Number(process.env.KVBLADE_POWER_TRIALS ?? 20)
const MAGIC = 0x6b76626c

const unavailable = networkTestsUnavailable() ?? fuseSkipReason() ?? null

/** Every sector of a write names it: magic, write id, sector number; the rest is filler from the id. */
function pattern (id: number, lba: number): Buffer {
  const buf = Buffer.alloc(PER_WRITE * SECTOR)
  for (let s = 0; s < PER_WRITE; s++) {
    const at = s * SECTOR
    buf.writeUInt32LE(MAGIC, at)
    buf.writeUInt32LE(id, at + 4)
    buf.writeUInt32LE(lba + s, at + 8)
    buf.fill(id & 0xff, at + 12, at + SECTOR)
  }
  return buf
}

/** Which write a sector on the disk holds (0: none, -1: garbage). */
function writeIn (disk: Buffer, lba: number): number {
  const at = lba * SECTOR
  if (disk.readUInt32LE(at) !== MAGIC) return disk.subarray(at, at + SECTOR).every(b => b === 0) ? 0 : -1
  const id = disk.readUInt32LE(at + 4)
  if (disk.readUInt32LE(at + 8) !== lba) return -1
  for (let i = at + 12; i < at + SECTOR; i++) if (disk[i] !== (id & 0xff)) return -1
  return id
}

interface Load {
  /** Per slot, the ids of the writes sent there, in the order sent. */
  sent: Map<number, number[]>
  acked: Set<number>
  stop: () => Promise<void>
}

/** 64 writers sending unique 4 KiB patterns (random or sequential places) until stopped. */
function startLoad (a: TestInitiator, target: TargetRef, seed: number, sequential: boolean, firstId: number): Load {
  const random = prng(seed)
  const sent = new Map<number, number[]>()
  const acked = new Set<number>()
  let nextId = firstId
  let next = 0
  let running = true
  const worker = async (): Promise<void> => {
    while (running) {
      const slot = sequential ? next++ % SLOTS : Math.floor(random() * SLOTS)
      const id = nextId++
      const lba = slot * PER_WRITE
      if (!sent.has(slot)) sent.set(slot, [])
      sent.get(slot)!.push(id)
      try {
        const r = await a.ata(target, 0x34, lba, PER_WRITE, { data: pattern(id, lba), tries: 1, timeoutMs: 500 })
        if ((r.status & 0x01) === 0 && (r.header.flags & 0x04) === 0) acked.add(id)
      } catch {
        // no reply: not acknowledged
      }
    }
  }
  const workers = Array.from({ length: DEPTH }, worker)
  return { sent, acked, stop: async () => { running = false; await Promise.all(workers) } }
}

/** Acknowledged writes not on the disk: for each place, the disk must hold the last acked write or one sent after it. */
function lost (disk: Buffer, load: Load): string[] {
  const problems: string[] = []
  for (const [slot, ids] of load.sent) {
    let last = -1
    for (let i = 0; i < ids.length; i++) if (load.acked.has(ids[i])) last = i
    if (last < 0) continue
    const allowed = new Set(ids.slice(last))
    for (let s = 0; s < PER_WRITE; s++) {
      const lba = slot * PER_WRITE + s
      const got = writeIn(disk, lba)
      if (!allowed.has(got)) problems.push(`sector ${lba}: acknowledged write ${ids[last]} missing (found ${got})`)
    }
  }
  return problems
}

if (unavailable !== null) {
  skipLoudly(t, 'durable-write tests', unavailable)
} else {
  t.test('power cuts on a disk with a volatile write cache', async t => {
    const net = await TestNetwork.create(1, 9000) // a 4 KiB write in one frame
    t.teardown(() => net.destroy())
    const [link] = net.links
    const ffs = await FaultFs.start({ size: IMAGE })
    t.teardown(() => ffs.stop())
    const a = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => a.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    const random = prng(4242)

    /** One trial: serve, load, cut the power at a random moment, "reboot", check. */
    const trial = async (cache: string, sequential: boolean, cutAfterMs: number, idBase: number): Promise<{ acked: number, sent: number, lost: string[] }> => {
      await ffs.restore()
      const daemon = await Daemon.start(['--no-mount', '--add', `9 0 ${link.target} ${ffs.path} cache=${cache}`])
      const load = startLoad(a, target, idBase, sequential, idBase)
      await new Promise(resolve => setTimeout(resolve, cutAfterMs))
      await ffs.cut()
      await load.stop()
      await daemon.stop('SIGKILL') // the host lost power too
      await ffs.restore()
      const disk = await ffs.durable()
      let sent = 0
      for (const ids of load.sent.values()) sent += ids.length
      return { acked: load.acked.size, sent, lost: lost(disk, load) }
    }

    await t.test(`writethrough: every write acknowledged before the cut survives it (${TRIALS} trials)`, async t => {
      let acked = 0
      let sent = 0
      const problems: string[] = []
      for (let i = 0; i < TRIALS; i++) {
        // Mostly in the middle of the load; every fifth trial lets it run longer first.
        const ms = i % 5 === 4 ? 400 + random() * 400 : 20 + random() * 200
        const r = await trial('writethrough', i % 2 === 1, ms, (i + 1) * 1_000_000)
        acked += r.acked
        sent += r.sent
        problems.push(...r.lost.slice(0, 5).map(p => `trial ${i}: ${p}`))
      }
      t.ok(acked > 0, `${acked} of ${sent} writes were acknowledged before the cuts`)
      t.same(problems, [], 'none of them was lost')
    })

    await t.test('writeback: the same test finds the loss', async t => {
      const r = await trial('writeback', false, 300, 90_000_000)
      t.ok(r.acked > 0, `${r.acked} writes acknowledged`)
      t.ok(r.lost.length > 0, `the cut lost acknowledged writes (${r.lost.length} sectors), as writeback allows`)
    })

    await t.test('writeback: SIGTERM syncs before the daemon exits, so a cut after it loses nothing', async t => {
      await ffs.restore()
      const daemon = await Daemon.start(['--no-mount', '--add', `9 0 ${link.target} ${ffs.path} cache=writeback`])
      const load = startLoad(a, target, 95_000_000, false, 95_000_000)
      await new Promise(resolve => setTimeout(resolve, 300))
      await load.stop()
      t.same(await daemon.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: exit 0')
      await ffs.cut()
      await ffs.restore()
      t.ok(load.acked.size > 0, `${load.acked.size} writes acknowledged`)
      t.same(lost(await ffs.durable(), load).slice(0, 5), [], 'every one of them on the disk after the cut')
    })
  })

  t.test('a SIGKILL of the daemon under write load loses no acknowledged write, in either mode', async t => {
    const net = await TestNetwork.create(1, 9000) // a 4 KiB write in one frame
    t.teardown(() => net.destroy())
    const [link] = net.links
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvblade-kill-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'disk.img')
    fs.writeFileSync(file, '')
    fs.truncateSync(file, IMAGE)
    const a = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => a.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    for (const cache of ['writethrough', 'writeback']) {
      let acked = 0
      const problems: string[] = []
      for (let i = 0; i < 3; i++) {
        const daemon = await Daemon.start(['--no-mount', '--add', `9 0 ${link.target} ${file} cache=${cache}`])
        const base = (cache === 'writeback' ? 200 : 100) * 1_000_000 + i * 1_000_000
        const load = startLoad(a, target, base, i === 1, base)
        await new Promise(resolve => setTimeout(resolve, 150 + i * 100))
        await daemon.stop('SIGKILL')
        await load.stop()
        acked += load.acked.size
        problems.push(...lost(fs.readFileSync(file), load).slice(0, 5).map(p => `trial ${i}: ${p}`))
      }
      t.ok(acked > 0, `${cache}: ${acked} writes acknowledged before the kills`)
      t.same(problems, [], `${cache}: all of them in the file after the daemon died`)
    }
  })
}
