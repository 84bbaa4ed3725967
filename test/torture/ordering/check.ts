/**
 * The ordering rows, one per store path: bursts of 1, 16 and 64 pairs of overlapping
 * commands (READ then WRITE, WRITE then READ, WRITE then WRITE of the same sectors),
 * each pair back to back on the wire, every pair on sectors of its own. After each
 * burst the replies and the file are checked against plan.ts; the file, read back,
 * is the "old" data of the next burst.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'
import { FLAG_ERROR } from '../../../src/aoe/constants'
import { TestNetwork, interfaceMac } from '../../helpers/netns'
import { TestInitiator, type Reply, type TargetRef } from '../../helpers/initiator'
import { Findings, type CheckResult, type TortureCheck, type TortureOptions } from '../check'
import { deriveSeed, prng } from '../random'
import { Cleanup, SECTOR, confirmStorePath, makeImage, readSectors, startDaemon, stopDaemon, tempDir, type StorePath } from '../rig'
import { identifySector } from '../patterns'
import { BURST_SIZES, DIRECTIONS, classifyRead, commandData, expectedFinal, expectedRead, planBurst } from './plan'

const TRIALS = { full: 1000, reduced: 50 }
const DISK_SECTORS = 16384 // 8 MiB
const REPLY_WINDOW_MS = 5000

const fmt = (n: number): string => n.toLocaleString('en-US')

export function orderingCheck (sp: StorePath): TortureCheck {
  const name = `ordering: ${sp.id}`
  const run = async (opts: TortureOptions): Promise<CheckResult> => {
    const seed = deriveSeed(opts.seed, name)
    const rand = prng(seed)
    const salt = seed
    const trials = TRIALS[opts.scale]
    // Per-pair failures, and those of the row as a whole (store path, daemon, the check itself).
    const findings = new Findings()
    const other = new Findings()
    const notes: string[] = [`${sp.label}; seed ${seed}`]
    const cleanup = new Cleanup()
    // Pairs tried and failed, per direction and burst size.
    const tried = new Map<string, number>()
    const failed = new Map<string, number>()
    const bump = (m: Map<string, number>, key: string): void => { m.set(key, (m.get(key) ?? 0) + 1) }
    let pairs = 0
    try {
      const net = await TestNetwork.create(1)
      cleanup.defer(() => net.destroy())
      const link = net.links[0]
      const dir = tempDir(cleanup, sp.dir, `order-${sp.id}`)
      const file = path.join(dir, 'disk.img')
      makeImage(file, DISK_SECTORS, sp.sparse, rand)
      const daemon = await startDaemon(link.target, [{ major: 8, minor: 0, file }], sp)
      cleanup.defer(() => stopDaemon(daemon))
      for (const p of await confirmStorePath(daemon.child.pid!, file, sp)) other.add('the target is not on the store path this row names', p)
      const a = TestInitiator.open(link.initiator, net.nsPath)
      cleanup.defer(() => a.close())
      const fh = await fsp.open(file, 'r')
      cleanup.defer(() => fh.close())
      const target: TargetRef = { major: 8, minor: 0, mac: interfaceMac(link.target) }
      const maxSectors = Math.floor((a.mtu - 22) / SECTOR)
      let writeId = 1
      const nextId = (): number => writeId++

      for (const direction of DIRECTIONS) {
        for (let trial = 0; trial < trials; trial++) {
          const size = BURST_SIZES[trial % BURST_SIZES.length]
          const key = `${direction}/${size}`
          const burst = planBurst(rand, direction, size, DISK_SECTORS, maxSectors, nextId)
          const olds = await Promise.all(burst.pairs.map(p => readSectors(fh, p.lba, p.count)))
          const frames: Buffer[] = []
          const replies: Array<Promise<Reply[]>> = []
          for (const p of burst.pairs) {
            for (const c of [p.first, p.second]) {
              const command = c.write ? (c.ext ? 0x34 : 0x30) : (c.ext ? 0x24 : 0x20)
              const f = a.ataFrame(target, command, p.lba, p.count, { data: commandData(salt, c, p.count) })
              frames.push(f.frame)
              replies.push(a.expect(f.tag, 1, REPLY_WINDOW_MS))
            }
          }
          a.sendFrames(frames) // every pair back to back, the whole burst at once
          const got = await Promise.all(replies)
          a.received.length = 0
          for (let j = 0; j < burst.pairs.length; j++) {
            const p = burst.pairs[j]
            pairs++
            bump(tried, key)
            let ok = true
            const where = `lba ${p.lba}+${p.count}, burst of ${size}, trial ${trial}`
            for (const [k, c] of [p.first, p.second].entries()) {
              const r = got[2 * j + k][0]
              if (r === undefined) { ok = false; findings.add(`${direction}: no reply`, where); continue }
              const res = TestInitiator.ataResult(r)
              if ((r.header.flags & FLAG_ERROR) !== 0 || res.status !== 0x40) {
                ok = false
                findings.add(`${direction}: a ${c.write ? 'WRITE' : 'READ'} failed`, `${where}: AoE error ${r.header.error}, status 0x${res.status.toString(16)}`)
                continue
              }
              if (c.write) continue
              const written = commandData(salt, direction === 'read-then-write' ? p.second : p.first, p.count)!
              const expectOld = expectedRead(p, direction) === 0
              const outcome = classifyRead(res.data.subarray(0, p.count * SECTOR), olds[j], written, expectOld)
              if (outcome !== 'as expected') {
                ok = false
                findings.add(`${direction}: the READ returned ${outcome}`, where)
              }
            }
            const inFile = await readSectors(fh, p.lba, p.count)
            const want = expectedFinal(p)
            for (let s = 0; s < p.count; s++) {
              const id = identifySector(salt, inFile, s * SECTOR)
              if (id !== null && id.writeId === want && id.index === s) continue
              ok = false
              const holds = id === null ? 'data of no write of this burst' : id.writeId === p.first.writeId ? 'the first WRITE' : `write ${id.writeId}`
              findings.add(`${direction}: the file does not hold the last WRITE`, `${where}, sector ${p.lba + s} holds ${holds}`)
              break
            }
            if (!ok) bump(failed, key)
          }
        }
      }
      other.expect(daemon.alive, 'the daemon died', daemon.stderr.slice(-500))
      const exit = await daemon.stop()
      other.expect(exit.code === 0, 'the daemon did not exit cleanly on SIGTERM', JSON.stringify(exit))
    } catch (err) {
      other.add('the check could not complete', (err as Error).stack ?? String(err))
    }
    for (const p of await cleanup.run()) notes.push(`cleanup: ${p}`)
    for (const d of DIRECTIONS) {
      const parts = BURST_SIZES.map(size => `burst ${size}: ${fmt(failed.get(`${d}/${size}`) ?? 0)}/${fmt(tried.get(`${d}/${size}`) ?? 0)}`)
      notes.push(`${d}: failing pairs ${parts.join(', ')}`)
    }
    const perDirection = BURST_SIZES.reduce((n, size) => n + size * Math.ceil((trials - BURST_SIZES.indexOf(size)) / BURST_SIZES.length), 0)
    return {
      tried: `${sp.label}: 3 directions × ${fmt(trials)} bursts of 1/16/64 pairs (${fmt(perDirection)} pairs each), ${fmt(pairs)} pairs in all`,
      count: pairs,
      found: [...failed.values()].reduce((x, y) => x + y, 0) + other.found,
      failures: [...findings.lines(), ...other.lines()],
      notes,
    }
  }
  return { name, run }
}
