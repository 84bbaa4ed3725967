/**
 * The backing-faults row: a target on faultfs (a FUSE disk whose faults are injected at
 * run time) next to two healthy ones on the same interface: one in /dev/shm (served
 * inline, it never touches io_uring) and one on a disk file through io_uring, which
 * shares the ring and its workers with the faulty target, so a stall there shows too.
 * Each round injects, on a random range: read EIO, write EIO, ENOSPC, latency, and a
 * shrink of the image. Every request into a failing range must get an ATA error (never
 * silence, never success), requests elsewhere must succeed, the daemon must say so on
 * stderr, and each healthy target must keep its throughput (at least KEEP of it) with
 * zero errors while it lasts.
 */
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac } from '../../helpers/netns'
import { TestInitiator, type TargetRef } from '../../helpers/initiator'
import { Daemon } from '../../helpers/daemon'
import { fuseSkipReason } from '../../helpers/fuse-harness'
import { FaultFs } from '../../helpers/faultfs'
import { Findings, type CheckResult, type TortureCheck, type TortureOptions } from '../check'
import { between, deriveSeed, int, prng } from '../random'
import { Cleanup, SECTOR, confirmStorePath, stopDaemon, storePath, tempDir } from '../rig'

const ROUNDS = { full: 5, reduced: 1 }
const REQUESTS = { full: 200, reduced: 40 }
const IMAGE_SECTORS = 16384 // 8 MiB
/**
 * The healthy target must keep this share of its rate while the other one fails. Not 1:
 * on a 2-core machine the fault simulator (faultfs, a FUSE server in Node) and the
 * failing requests take CPU the healthy target had before; a stalled loop would show
 * as next to nothing.
 */
const KEEP = 0.2
/** How long the healthy targets' rates are measured, with and without a fault. */
const WINDOW_MS = 600
const KINDS = ['read EIO', 'write EIO', 'write ENOSPC', 'latency', 'shrink'] as const

const fmt = (n: number): string => n.toLocaleString('en-US')

interface Ata { status: number, error: number }

async function run (opts: TortureOptions): Promise<CheckResult> {
  const name = 'backing faults'
  const seed = deriveSeed(opts.seed, name)
  const rand = prng(seed)
  const findings = new Findings()
  const notes: string[] = [`seed ${seed}`]
  const cleanup = new Cleanup()
  let tried = 0
  /** Per healthy target: its rate during each fault as a share of its rate before. */
  const rates: number[][] = [[], []]
  try {
    const net = await TestNetwork.create(1)
    cleanup.defer(() => net.destroy())
    const link = net.links[0]
    const ffs = await FaultFs.start({ size: IMAGE_SECTORS * SECTOR, mode: 'writethrough' })
    cleanup.defer(() => ffs.stop())
    const ramFile = path.join(tempDir(cleanup, '/dev/shm', 'faults'), 'healthy.img')
    // On a real disk, not tmpfs: its requests go through io_uring like the faulty target's.
    const diskFile = path.join(tempDir(cleanup, '/var/tmp', 'faults'), 'healthy.img')
    for (const f of [ramFile, diskFile]) fs.writeFileSync(f, Buffer.alloc(4 << 20))
    const daemon = await Daemon.start(['--no-mount', '--add', `9 0 ${link.target} ${ffs.path}`,
      '--add', `9 1 ${link.target} ${ramFile}`, '--add', `9 2 ${link.target} ${diskFile}`])
    cleanup.defer(() => stopDaemon(daemon))
    for (const p of await confirmStorePath(daemon.child.pid!, diskFile, storePath('uring'))) findings.add('the disk-file healthy target is not on io_uring', p)
    const a = TestInitiator.open(link.initiator, net.nsPath)
    cleanup.defer(() => a.close())
    const faulty: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    const healthy: Array<{ name: string, ref: TargetRef }> = [
      { name: 'in RAM', ref: { major: 9, minor: 1, mac: faulty.mac } },
      { name: 'on disk (io_uring)', ref: { major: 9, minor: 2, mac: faulty.mac } },
    ]
    const ata = async (tg: TargetRef, cmd: number, lba: number, timeoutMs = 1000): Promise<Ata | null> => {
      try {
        return await a.ata(tg, cmd, lba, 2, { tries: 1, timeoutMs, data: cmd === 0x34 ? Buffer.alloc(2 * SECTOR, 0x5a) : undefined })
      } catch {
        return null
      }
    }
    /** Each healthy target's reads per second over the same WINDOW_MS, and its errors. */
    const healthyRates = async (): Promise<Array<{ rate: number, errors: number }>> => {
      const end = Date.now() + WINDOW_MS
      return await Promise.all(healthy.map(async h => {
        let done = 0
        let errors = 0
        const worker = async (): Promise<void> => {
          while (Date.now() < end) {
            const r = await ata(h.ref, 0x24, int(rand, 4000) * 2, 500)
            done++
            if (r === null || r.status !== 0x40) errors++
          }
        }
        await Promise.all(Array.from({ length: 8 }, worker))
        return { rate: done / (WINDOW_MS / 1000), errors }
      }))
    }
    const logged = new Set<string>()
    for (let round = 0; round < ROUNDS[opts.scale]; round++) {
      for (const kind of KINDS) {
        const baseline = await healthyRates()
        const start = between(rand, 0, IMAGE_SECTORS / 2 - 128) & ~1
        const length = between(rand, 16, 64) & ~1
        const inRange = (lba: number): boolean => kind === 'shrink' ? lba + 2 > IMAGE_SECTORS / 2 : lba + 2 > start && lba < start + length
        switch (kind) {
          case 'read EIO': await ffs.injectEio({ op: 'read', offset: start * SECTOR, length: length * SECTOR }); break
          case 'write EIO': await ffs.injectEio({ op: 'write', offset: start * SECTOR, length: length * SECTOR }); break
          case 'write ENOSPC': await ffs.injectEnospc({ offset: start * SECTOR, length: length * SECTOR }); break
          case 'latency': await ffs.setLatency({ op: 'read', ms: 300, offset: start * SECTOR, length: length * SECTOR }); break
          case 'shrink': await ffs.resize(IMAGE_SECTORS / 2 * SECTOR); break
        }
        const cmd = kind.startsWith('write') ? 0x34 : 0x24
        // Requests to the faulty disk, half into the failing range, while the healthy targets are measured.
        const during = healthyRates()
        const faultyWork = (async () => {
          for (let i = 0; i < REQUESTS[opts.scale]; i++) {
            const lba = i % 2 === 0
              ? (kind === 'shrink' ? IMAGE_SECTORS / 2 + int(rand, IMAGE_SECTORS / 4) * 2 : start + (int(rand, length / 2) * 2))
              : int(rand, (kind === 'shrink' ? IMAGE_SECTORS / 2 : start) / 2 - 1) * 2
            const r = await ata(faulty, cmd, lba, kind === 'latency' ? 3000 : 1000)
            tried++
            const bad = inRange(lba) && kind !== 'latency'
            if (r === null) findings.add(`${kind}: a request got no answer`, `lba ${lba}`)
            else if (bad && (r.status & 0x01) === 0) findings.add(`${kind}: a request into the failing range succeeded`, `lba ${lba}`)
            else if (!bad && r.status !== 0x40) findings.add(`${kind}: a request outside the fault failed`, `lba ${lba} status 0x${r.status.toString(16)}`)
          }
        })()
        const [d] = await Promise.all([during, faultyWork])
        healthy.forEach((h, i) => {
          const [now, before] = [d[i], baseline[i]]
          rates[i].push(now.rate / Math.max(1, before.rate))
          if (now.errors > 0 || before.errors > 0) findings.add(`${kind}: the healthy target ${h.name} had errors`, `${now.errors} during, ${before.errors} before`)
          if (now.rate < before.rate * KEEP) findings.add(`${kind}: the healthy target ${h.name} lost its throughput during the fault`, `${fmt(Math.round(now.rate))}/s vs ${fmt(Math.round(before.rate))}/s before`)
        })
        if (kind !== 'latency' && kind !== 'shrink') logged.add(kind)
        await ffs.clearFaults()
        if (kind === 'shrink') await ffs.resize(IMAGE_SECTORS * SECTOR)
        opts.log(`faults: round ${round + 1} ${kind}: healthy targets at ${healthy.map((h, i) => `${Math.round(100 * d[i].rate / Math.max(1, baseline[i].rate))}% (${h.name})`).join(', ')} of their rates`)
      }
    }
    for (const kind of logged) {
      if (!new RegExp(`warning: 9\\.0@\\S+: ${kind}:`).test(daemon.stderr)) findings.add('a fault kind was never logged', kind)
    }
    if (!/warning: 9\.0@\S+: read short:|is now \d+ sectors/.test(daemon.stderr)) findings.add('the shrink was neither logged as a fault nor noticed', '')
    const lines = daemon.stderr.split('\n').filter(l => /warning: 9\.0@/.test(l)).length
    notes.push(`${lines} warning lines on stderr for ${fmt(tried)} requests into faults`)
    if (!daemon.alive) findings.add('the daemon died', JSON.stringify(daemon.exit))
  } catch (err) {
    findings.add('the check could not complete', (err as Error).stack ?? String(err))
  }
  for (const p of await cleanup.run()) notes.push(`cleanup: ${p}`)
  const worst = rates.map(r => r.length > 0 ? `${Math.round(Math.min(...r) * 100)}%` : 'n/a')
  notes.push(`healthy targets' rates during the faults: worst ${worst[0]} (/dev/shm, inline) and ${worst[1]} (/var/tmp, io_uring) of before`)
  return {
    tried: `${ROUNDS[opts.scale]} rounds of ${KINDS.join(', ')} on faultfs, ${fmt(tried)} requests; two healthy targets beside it measured throughout (worst ${worst[0]} inline, ${worst[1]} io_uring of their rates)`,
    count: tried,
    found: findings.found,
    failures: findings.lines(),
    notes,
  }
}

export const backingFaultsCheck: TortureCheck = { name: 'backing faults', unavailable: () => fuseSkipReason() ?? null, run }
