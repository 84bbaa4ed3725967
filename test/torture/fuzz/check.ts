/**
 * The wire fuzz row: a million generated frames (a tenth in `make test`) at one daemon
 * serving two targets — a /dev/shm file (the mapped path) and a /var/tmp file (io_uring)
 * — in bursts of 64, each burst followed by a Query Config both targets must answer
 * before the next is sent (so nothing is lost to a full ring and the daemon is known to
 * be alive throughout). Afterwards: every byte outside the write window is as it was, the
 * daemon still serves, its memory grew by less than RSS_BOUND_KIB, and its counters (read
 * through the FUSE control plane) keep the relations in accounting.ts.
 */
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { BROADCAST_MAC, BROADCAST_MAJOR, BROADCAST_MINOR, FLAG_ERROR } from '../../../src/aoe/constants'
import { TestNetwork, interfaceMac } from '../../helpers/netns'
import { TestInitiator, type Reply, type TargetRef } from '../../helpers/initiator'
import { run as exec } from '../../helpers/exec'
import { fuseSkipReason } from '../../helpers/fuse-harness'
import { Findings, type CheckResult, type TortureCheck, type TortureOptions } from '../check'
import { deriveSeed, prng, randomBytes } from '../random'
import { Cleanup, SECTOR, confirmStorePath, makeImage, memoryUse, startDaemon, stopDaemon, storePath, tempDir } from '../rig'
import { delta, readInterfaceStats, readTargetStats, type TargetCounters } from '../stats'
import { Accounting, checkCounters } from './accounting'
import { FrameGenerator, MUTATIONS, describe, judgeReply, restoreFrames, stampTag, type FrameInfo, type FuzzSetup, type Mutation, type ReplyView, type RestoreWhat } from './generate'

const FRAMES = { full: 1_000_000, reduced: 100_000 }
const BURST = 64
const DISK_SECTORS = 32768 // 16 MiB
const WINDOW = { start: 8192, end: 8192 + 4096 }
/** How much the daemon's resident memory may grow over the run: generous, it should stay flat. */
const RSS_BOUND_KIB = 64 * 1024
const MAJOR = 7
/** Tags of frames that are not fuzz (sentinels, restores, the final checks) stay out of the fuzz range. */
const CONTROL_TAG = 0x40000000
/** Replies are matched to requests this many frames back (late disk completions included). */
const REMEMBER = 65536
const MASK: RestoreWhat = { mask: true, reservation: false, config: false }
const EVERYTHING: RestoreWhat = { mask: true, reservation: true, config: true }

/**
 * The last REMEMBER requests of one tag sequence, by tag (a ring: the tag picks the
 * slot), and which targets have answered each. A ring, not a Map trimmed from the front:
 * V8 leaves deleted entries at the front of a Map for its iterator to skip.
 */
class RecentRequests {
  private readonly infos: Array<FrameInfo | undefined> = new Array(REMEMBER)
  private readonly tags = new Float64Array(REMEMBER).fill(-1)
  private readonly answered = new Uint32Array(REMEMBER)

  put (tag: number, info: FrameInfo): void {
    const i = tag % REMEMBER
    this.infos[i] = info
    this.tags[i] = tag
    this.answered[i] = 0
  }

  get (tag: number): FrameInfo | undefined {
    const i = tag % REMEMBER
    return this.tags[i] === tag ? this.infos[i] : undefined
  }

  /** Notes a reply from target number `target`; false if it had answered this request already. */
  answer (tag: number, target: number): boolean {
    const i = tag % REMEMBER
    if (this.tags[i] !== tag || target < 0) return true
    const bit = 1 << target
    const first = (this.answered[i] & bit) === 0
    this.answered[i] |= bit
    return first
  }
}

function replyView (r: Reply): ReplyView {
  const f = r.frame
  return {
    length: f.length,
    src: r.header.src,
    flags: r.header.flags,
    error: r.header.error,
    major: r.header.major,
    minor: r.header.minor,
    command: r.header.command,
    status: f.length > 27 ? f[27] : 0,
    ataError: f.length > 25 ? f[25] : 0,
  }
}

/**
 * The veth's own counts: frames that reached the target end, and frames the initiator
 * end dropped on the way (veth_xmit counts a full backlog as a tx drop of the sender;
 * the target end's rx_dropped also counts frames no protocol took, so it says nothing).
 */
async function vethCounters (net: TestNetwork): Promise<{ rxPackets: number, txDropped: number }> {
  const link = net.links[0]
  const rxPackets = Number((await fsp.readFile(`/sys/class/net/${link.target}/statistics/rx_packets`, 'utf8')).trim())
  const r = await net.exec('cat', [`/sys/class/net/${link.initiator}/statistics/tx_dropped`])
  if (r.code !== 0) throw new Error(`cannot read the initiator end's tx_dropped: ${r.stderr}`)
  return { rxPackets, txDropped: Number(r.stdout.trim()) }
}

const plural = (n: number, what: string): string => `${n.toLocaleString('en-US')} ${what}`

async function run (opts: TortureOptions): Promise<CheckResult> {
  const seed = deriveSeed(opts.seed, 'wire fuzz')
  const rand = prng(seed)
  const total = FRAMES[opts.scale]
  const findings = new Findings()
  const notes: string[] = [`seed ${seed} (derived from ${opts.seed})`]
  const cleanup = new Cleanup()
  const mutations = new Map<Mutation, number>(MUTATIONS.map(m => [m, 0]))
  let sentFuzz = 0
  let restores = 0
  let foreignDst = 0
  let retried = 0
  try {
    const net = await TestNetwork.create(1)
    cleanup.defer(() => net.destroy())
    const link = net.links[0]
    const shm = tempDir(cleanup, '/dev/shm', 'fuzz')
    const disk = tempDir(cleanup, '/var/tmp', 'fuzz')
    // Made before the mount and removed after it, asynchronously (never a sync call on a FUSE mount point).
    const mount = await fsp.mkdtemp(path.join(os.tmpdir(), 'kvblade-torture-fuzz-mnt-'))
    cleanup.defer(() => fsp.rm(mount, { recursive: true, force: true }))
    const files = [path.join(shm, 'a.img'), path.join(disk, 'b.img')]
    const before = files.map(f => makeImage(f, DISK_SECTORS, false, rand))
    const targets = [{ major: MAJOR, minor: 0 }, { major: MAJOR, minor: 1 }]
    // After the daemon has gone (it unmounts on SIGTERM), in case it died holding the mount.
    cleanup.defer(() => exec('fusermount', ['-uz', mount]))
    const daemon = await startDaemon(link.target, targets.map((t, i) => ({ ...t, file: files[i] })), null, mount)
    cleanup.defer(() => stopDaemon(daemon))
    const pid = daemon.child.pid!
    for (const p of await confirmStorePath(pid, files[0], storePath('mapped'))) findings.add('a target not on the store path intended', p)
    for (const p of await confirmStorePath(pid, files[1], storePath('uring'))) findings.add('a target not on the store path intended', p)
    const a = TestInitiator.open(link.initiator, net.nsPath)
    cleanup.defer(() => a.close())
    const setup: FuzzSetup = {
      ourMac: a.mac,
      targetMac: interfaceMac(link.target),
      peerMacs: [0x020000000001, 0x020000000002, 0x020000000003, 0xffffffffffff],
      targets,
      diskSectors: DISK_SECTORS,
      window: WINDOW,
      maxSectors: Math.floor((a.mtu - 22) / SECTOR),
      mtu: a.mtu,
    }
    const gen = new FrameGenerator(setup, rand)
    let acc = new Accounting(setup)
    // Fuzz tags count up from 1, control tags from CONTROL_TAG: a ring each.
    const fuzzRequests = new RecentRequests()
    const controlRequests = new RecentRequests()
    const requests = (tag: number): RecentRequests => tag >= CONTROL_TAG ? controlRequests : fuzzRequests
    let controlTag = CONTROL_TAG
    let fuzzTag = 1

    const remember = (frame: Buffer, tag: number): void => {
      stampTag(frame, tag)
      const info = describe(frame)
      acc.sent(info)
      requests(tag).put(tag, info)
    }
    const control = (frames: Buffer[]): Buffer[] => {
      for (const f of frames) remember(f, controlTag++)
      return frames
    }
    const drain = (): void => {
      for (const r of a.received) {
        const view = replyView(r)
        const tag = r.header.tag
        const req = requests(tag).get(tag)
        acc.replied(view, req)
        const from = targets.findIndex(t => t.major === view.major && t.minor === view.minor)
        if (!requests(tag).answer(tag, from)) findings.add('a second reply from one target to one request', `tag 0x${tag.toString(16)} from ${view.major}.${view.minor}, command ${view.command}`)
        if (req === undefined) {
          findings.add('a reply carrying a tag never sent (or sent more than 65,536 frames earlier)', `tag 0x${r.header.tag.toString(16)} from ${view.major}.${view.minor}`)
          continue
        }
        if (req.dst !== setup.targetMac && req.dst !== BROADCAST_MAC) foreignDst++
        for (const v of judgeReply(req, view, setup)) findings.add(v, `request tag 0x${r.header.tag.toString(16)} cmd ${req.command} len ${req.length}`)
      }
      a.received.length = 0
    }
    /** Query Config read from our MAC to every target: all must answer (or the mask locks us out). */
    const sentinel = (): { frame: Buffer, replies: Promise<Reply[]> } => {
      const tag = controlTag
      const { frame } = a.configFrame(setup.targetMac, BROADCAST_MAJOR, BROADCAST_MINOR, {}, tag)
      control([frame])
      return { frame, replies: a.expect(tag, targets.length, 2000) }
    }
    const restore = async (what: RestoreWhat): Promise<boolean> => {
      const s = sentinel()
      a.sendFrames([...control(restoreFrames(setup, what)), s.frame])
      const ok = (await s.replies).length === targets.length
      drain()
      return ok
    }

    if (!await restore(EVERYTHING)) throw new Error('the daemon does not answer Query Config before the run')
    const mem0 = await memoryUse(pid)
    const iface0 = await readInterfaceStats(mount, link.target)
    const t0 = await Promise.all(targets.map(t => readTargetStats(mount, t.major, t.minor, link.target)))
    const veth0 = await vethCounters(net)
    const txErrors0 = a.socket.counters.txErrors
    // Count from the baseline on: the first restore's frames came before it.
    acc = new Accounting(setup)
    const started = Date.now()
    let lastLog = started

    while (sentFuzz < total) {
      const frames: Buffer[] = []
      let maskFrames = false
      for (let i = 0; i < BURST && sentFuzz < total; i++, sentFuzz++) {
        const { frame, mutation } = gen.next()
        mutations.set(mutation, mutations.get(mutation)! + 1)
        remember(frame, fuzzTag++)
        if (frame.length >= 28 && frame[19] === 2) maskFrames = true
        frames.push(frame)
      }
      // A mask edit may have locked our MAC out: undo masks after any burst that had one.
      if (maskFrames) { frames.push(...control(restoreFrames(setup, MASK))); restores++ }
      const s = sentinel()
      frames.push(s.frame)
      a.sendFrames(frames)
      const replies = await s.replies
      drain()
      if (replies.length < targets.length) retried++
      if (replies.length < targets.length && !await restore(MASK) && !await restore(MASK)) {
        findings.add('the daemon stopped answering Query Config', `after ${sentFuzz} frames (${replies.length} of ${targets.length} targets answered)`)
        break
      }
      if (Date.now() - lastLog > 10_000) {
        lastLog = Date.now()
        opts.log(`wire fuzz: ${plural(sentFuzz, 'frames')} of ${plural(total, '')}in ${((lastLog - started) / 1000).toFixed(0)} s`)
      }
    }
    const seconds = (Date.now() - started) / 1000

    // Back to a known state, then wait until nothing is in flight (late disk completions).
    if (!await restore(EVERYTHING)) findings.add('the daemon did not answer after the final restore')
    let t1: TargetCounters[] = []
    for (let i = 0; i < 50; i++) {
      t1 = await Promise.all(targets.map(tg => readTargetStats(mount, tg.major, tg.minor, link.target)))
      if (t1.every(c => c.inFlight === 0)) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    await new Promise(resolve => setTimeout(resolve, 100))
    drain()
    const iface1 = await readInterfaceStats(mount, link.target)
    const veth1 = await vethCounters(net)
    const txErrors = a.socket.counters.txErrors - txErrors0
    if (txErrors !== 0) findings.add('frames the fuzzer could not send (the counts below are off by these)', `${txErrors} send errors`)
    const vethDrops = veth1.txDropped - veth0.txDropped
    const vethIn = veth1.rxPackets - veth0.rxPackets
    if (vethIn + vethDrops !== acc.sentFrames - txErrors) notes.push(`veth counted ${vethIn} frames in and ${vethDrops} dropped, for ${acc.sentFrames} sent`)
    const ifaceDelta = delta(iface1, iface0)
    const targetDeltas = t1.map((c, i) => delta(c, t0[i]))
    for (const line of checkCounters(acc, ifaceDelta, targetDeltas, t1.map(c => c.inFlight), vethDrops)) findings.add('a counter relation that does not hold', line)
    notes.push(`interface: framesIn ${ifaceDelta.framesIn}, framesOut ${ifaceDelta.framesOut}, kernelDrops ${ifaceDelta.kernelDrops}, ignored ${ifaceDelta.ignored}, malformed ${ifaceDelta.malformed}, sendErrors ${ifaceDelta.sendErrors}; sent ${acc.sentFrames} frames (${acc.sentAoe} AoE), ${acc.repliesSeen} replies seen; veth drops ${vethDrops}`)
    targets.forEach((t, i) => {
      const c = targetDeltas[i]
      const s = acc.targets[i]
      notes.push(`${t.major}.${t.minor}: frames ${c.frames} (addressed ${s.addressed}, replies ${s.replies}), writes ${c.writes} (ok replies ${s.okWrites}, sent ${s.sentWrites}), reads ${c.reads} (ok ${s.okReads}, sent ${s.sentReads}), errors ${c.errors} (ATA error replies ${s.ataErrors})`)
    })

    // Memory: the mapped image's pages count in RssShmem and are the file's own.
    const mem1 = await memoryUse(pid)
    const grew = mem1.vmRssKiB - mem0.vmRssKiB
    notes.push(`VmRSS ${mem0.vmRssKiB} → ${mem1.vmRssKiB} KiB (RssAnon ${mem0.rssAnonKiB} → ${mem1.rssAnonKiB}, RssShmem ${mem0.rssShmemKiB} → ${mem1.rssShmemKiB}); bound +${RSS_BOUND_KIB} KiB`)
    findings.expect(grew <= RSS_BOUND_KIB, 'resident memory grew past the bound', `+${grew} KiB`)
    // Not a failure (the protocol notes say nothing of it), but on a bridge in promiscuous
    // mode this target would answer requests sent to another target's MAC.
    notes.push(`${foreignDst} replies to requests whose Ethernet destination was neither the target's MAC nor broadcast`)
    notes.push(`${plural(sentFuzz, 'fuzz frames')} in ${seconds.toFixed(1)} s; mask restores after ${restores} bursts; Query Configs retried after 2 s without an answer: ${retried}; by class: ${[...mutations].map(([m, n]) => `${m} ${n}`).join(', ')}`)

    // The daemon still serves: a write and read back on each target (inside the window), a Query Config answer.
    for (let i = 0; i < targets.length; i++) {
      const ref: TargetRef = { ...targets[i], mac: setup.targetMac }
      const lba = WINDOW.start + 100
      const data = randomBytes(rand, 2 * SECTOR)
      const ata = async (command: number, body?: Buffer): Promise<Reply | undefined> => {
        const f = a.ataFrame(ref, command, lba, 2, { data: body, tag: controlTag++ })
        return (await a.request(f.frame, f.tag, 1, 2000))[0]
      }
      const w = await ata(0x34, data)
      const r = await ata(0x24)
      const wrote = w !== undefined && (w.header.flags & FLAG_ERROR) === 0 && TestInitiator.ataResult(w).status === 0x40
      const readBack = r !== undefined && (r.header.flags & FLAG_ERROR) === 0 && TestInitiator.ataResult(r).data.subarray(0, data.length).equals(data)
      findings.expect(wrote && readBack, 'the daemon does not serve after the fuzzing', `${ref.major}.${ref.minor}: write ${wrote ? 'ok' : 'failed'}, read back ${readBack ? 'ok' : 'wrong'}`)
      const qc = a.configFrame(ref.mac, ref.major, ref.minor, {}, controlTag++)
      const q = await a.request(qc.frame, qc.tag, 1, 2000)
      findings.expect(q.length === 1, 'the daemon does not answer Query Config after the fuzzing', `${ref.major}.${ref.minor}`)
      const inFile = Buffer.alloc(data.length)
      const fh = await fsp.open(files[i], 'r')
      await fh.read(inFile, 0, inFile.length, lba * SECTOR)
      await fh.close()
      findings.expect(inFile.equals(data), 'a final write not in the image', files[i])
    }

    // Nothing outside the window changed, on either image.
    for (let i = 0; i < files.length; i++) {
      const after = await fsp.readFile(files[i])
      findings.expect(after.length === before[i].length, 'an image changed size', `${files[i]}: ${before[i].length} → ${after.length}`)
      let changed = 0
      const first: number[] = []
      for (let s = 0; s < DISK_SECTORS; s++) {
        if (s >= WINDOW.start && s < WINDOW.end) continue
        const o = s * SECTOR
        if (after.subarray(o, o + SECTOR).equals(before[i].subarray(o, o + SECTOR))) continue
        changed++
        if (first.length < 5) first.push(s)
      }
      if (changed > 0) findings.add('sectors outside the write window changed', `${changed} on ${targets[i].major}.${targets[i].minor} (first: ${first.join(', ')})`, changed)
    }
    findings.expect(daemon.alive, 'the daemon died', daemon.stderr.slice(-500))
    const exit = await daemon.stop()
    findings.expect(exit.code === 0, 'the daemon did not exit cleanly on SIGTERM', JSON.stringify(exit))
  } catch (err) {
    findings.add('the check could not complete', (err as Error).stack ?? String(err))
  }
  for (const p of await cleanup.run()) notes.push(`cleanup: ${p}`)
  return {
    tried: `${plural(sentFuzz, 'frames')} in ${MUTATIONS.length} mutation classes (seed ${seed}), 2 targets (mapped /dev/shm, io_uring /var/tmp); window, liveness, RSS, counters checked`,
    count: sentFuzz,
    found: findings.found,
    failures: findings.lines(),
    notes,
  }
}

export const wireFuzz: TortureCheck = {
  name: 'wire fuzz',
  // The counters are only visible through the FUSE control plane.
  unavailable: () => fuseSkipReason() ?? null,
  run,
}
