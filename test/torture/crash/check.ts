/**
 * The crash row: the daemon is SIGKILLed under write load (64 writes in flight, random
 * sectors, each sector of each write unique), restarted on the same file, and the file
 * must hold every acknowledged write (verify.ts). The restarted daemon must then serve
 * exactly what the file holds. Kills rotate over the store paths.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'
import { FLAG_ERROR } from '../../../src/aoe/constants'
import { TestNetwork, interfaceMac } from '../../helpers/netns'
import { TestInitiator, type TargetRef } from '../../helpers/initiator'
import type { Daemon } from '../../helpers/daemon'
import { Findings, type CheckResult, type TortureCheck, type TortureOptions } from '../check'
import { between, chance, deriveSeed, int, prng } from '../random'
import { Cleanup, SECTOR, confirmStorePath, makeImage, startDaemon, stopDaemon, storePath, tempDir, type StorePath } from '../rig'
import { identifySector, writeData } from '../patterns'
import { verifyAfterCrash, type LoggedWrite, type SectorContent } from './verify'

const KILLS = { full: 25, reduced: 3 }
/** Kills go to the paths in this order, round robin (so 3 kills cover mapped, io_uring and O_DIRECT). */
const ROTATION: ReadonlyArray<StorePath['id']> = ['mapped', 'uring', 'direct', 'sparse', 'threads']
const DEPTH = 64
const DISK_SECTORS = 8192 // 4 MiB: small enough that in-flight writes often overlap
/** The kill comes after this many acknowledgements (drawn per kill). */
const ACKS_BEFORE_KILL = { min: 500, max: 6000 }
const REPLY_WINDOW_MS = 1000

const fmt = (n: number): string => n.toLocaleString('en-US')

async function run (opts: TortureOptions): Promise<CheckResult> {
  const name = 'crash (SIGKILL)'
  const seed = deriveSeed(opts.seed, name)
  const rand = prng(seed)
  const salt = seed
  const findings = new Findings()
  const other = new Findings()
  const notes: string[] = [`seed ${seed}`]
  const cleanup = new Cleanup()
  const kills = KILLS[opts.scale]
  let killed = 0
  let sent = 0
  let acked = 0
  const perPath = new Map<string, number>()
  try {
    const net = await TestNetwork.create(1)
    cleanup.defer(() => net.destroy())
    const link = net.links[0]
    const a = TestInitiator.open(link.initiator, net.nsPath)
    cleanup.defer(() => a.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    const maxSectors = Math.floor((a.mtu - 22) / SECTOR)
    let writeId = 1
    let current: Daemon | null = null
    cleanup.defer(async () => { if (current !== null) await stopDaemon(current) })

    for (let p = 0; p < ROTATION.length && p < kills; p++) {
      const sp = storePath(ROTATION[p])
      const mine = Math.floor(kills / ROTATION.length) + (p < kills % ROTATION.length ? 1 : 0)
      const dir = tempDir(cleanup, sp.dir, `crash-${sp.id}`)
      const file = path.join(dir, 'disk.img')
      makeImage(file, DISK_SECTORS, sp.sparse, rand)
      const disks = [{ major: target.major, minor: target.minor, file }]
      let daemon: Daemon = current = await startDaemon(link.target, disks, sp)
      for (const problem of await confirmStorePath(daemon.child.pid!, file, sp)) other.add('a target not on the store path intended', problem)

      for (let k = 0; k < mine; k++) {
        const before = await fsp.readFile(file)
        const log: LoggedWrite[] = []
        const byTag = new Map<number, LoggedWrite>()
        const killAt = between(rand, ACKS_BEFORE_KILL.min, ACKS_BEFORE_KILL.max)
        let acks = 0
        let stop = false
        let killedUnderLoad = false
        a.received.length = 0
        const victim = daemon
        const worker = async (): Promise<void> => {
          while (!stop) {
            const count = between(rand, 1, maxSectors)
            const w: LoggedWrite = { id: writeId++, lba: int(rand, DISK_SECTORS - count + 1), count, acked: false }
            const f = a.ataFrame(target, chance(rand, 0.5) ? 0x34 : 0x30, w.lba, count, { data: writeData(salt, w.id, count) })
            const reply = a.expect(f.tag, 1, REPLY_WINDOW_MS)
            log.push(w)
            byTag.set(f.tag, w)
            a.sendFrames([f.frame])
            const [r] = await reply
            if (r === undefined || (r.header.flags & FLAG_ERROR) !== 0 || TestInitiator.ataResult(r).status !== 0x40) continue
            if (++acks >= killAt && !stop) {
              stop = true
              killedUnderLoad = true
              victim.child.kill('SIGKILL')
            }
          }
        }
        const workers = Promise.all(Array.from({ length: DEPTH }, worker))
        const exit = await victim.wait(60_000)
        stop = true
        await workers
        other.expect(killedUnderLoad, 'the write load stalled before the kill', `${sp.id}: ${acks} of ${killAt} acknowledgements`)
        other.expect(exit.signal === 'SIGKILL', 'the daemon ended otherwise than by the kill', `${sp.id}: ${JSON.stringify(exit)} ${victim.stderr.slice(-300)}`)
        killed++
        perPath.set(sp.id, (perPath.get(sp.id) ?? 0) + 1)
        // Every acknowledgement that reached us counts, also those after the reply window.
        for (const r of a.received) {
          const w = byTag.get(r.header.tag)
          if (w !== undefined && (r.header.flags & FLAG_ERROR) === 0 && r.frame.length > 27 && r.frame[27] === 0x40) w.acked = true
        }
        a.received.length = 0
        sent += log.length
        acked += log.filter(w => w.acked).length

        daemon = current = await startDaemon(link.target, disks, sp)
        const after = await fsp.readFile(file)
        const content = (s: number): SectorContent => {
          const o = s * SECTOR
          if (after.subarray(o, o + SECTOR).equals(before.subarray(o, o + SECTOR))) return { kind: 'before' }
          const id = identifySector(salt, after, o)
          return id === null ? { kind: 'other' } : { kind: 'write', writeId: id.writeId, index: id.index }
        }
        for (const v of verifyAfterCrash(log, DISK_SECTORS, content)) findings.add(v.problem, `${sp.id}, kill ${killed}: sector ${v.sector}: ${v.detail}`)
        const served = await a.read(target, 0, DISK_SECTORS, maxSectors, DEPTH)
        other.expect(served.equals(after), 'the restarted daemon serves other data than the file holds', `${sp.id}, kill ${killed}`)
        opts.log(`crash: kill ${killed}/${kills} (${sp.id}): ${fmt(log.length)} writes sent, ${fmt(log.filter(w => w.acked).length)} acknowledged`)
      }
      const exit = await daemon.stop()
      other.expect(exit.code === 0, 'the restarted daemon did not exit cleanly on SIGTERM', `${sp.id}: ${JSON.stringify(exit)}`)
      current = null
    }
  } catch (err) {
    other.add('the check could not complete', (err as Error).stack ?? String(err))
  }
  for (const p of await cleanup.run()) notes.push(`cleanup: ${p}`)
  notes.push(`kills per path: ${[...perPath].map(([p, n]) => `${p} ${n}`).join(', ')}; ${fmt(sent)} writes sent, ${fmt(acked)} acknowledged`)
  return {
    tried: `${killed} SIGKILLs under ${DEPTH}-deep random writes (${[...perPath].map(([p, n]) => `${p} ${n}`).join(', ')}), ${fmt(sent)} writes sent, ${fmt(acked)} acknowledged; every sector checked after each restart`,
    count: killed,
    found: findings.found + other.found,
    failures: [...findings.lines(), ...other.lines()],
    notes,
  }
}

export const crashCheck: TortureCheck = { name: 'crash (SIGKILL)', run }
