/**
 * What the fuzzer sent and saw, and the relations the daemon's counters must keep with
 * it (pure). Every relation holds whatever the daemon did with each frame, so it can
 * be checked after a random run:
 *
 * - interface framesIn + kernelDrops = AoE frames sent (the daemon's socket hears the
 *   AoE ethertype only; nothing else sends on the test veth). If the veth itself dropped
 *   frames, only framesIn + kernelDrops ≤ sent ≤ framesIn + kernelDrops + vethDrops.
 * - framesOut ≥ replies the fuzzer received (a reply seen was sent), sendErrors = 0
 *   (the fuzzer keeps at most one burst, ~70 frames, in flight).
 * - malformed ≥ AoE frames too short for the header, ignored ≥ frames with the R flag or
 *   a vendor command (both must be dropped), when the kernel dropped nothing.
 * - per target: replies seen ≤ frames ≤ frames that addressed it; successful READ/WRITE
 *   replies seen ≤ reads/writes (and sectors) ≤ READs/WRITEs sent to it; ATA error
 *   replies seen ≤ errors; nothing in flight once the run is over.
 */
import type { InterfaceCounters, TargetCounters } from '../stats'
import { FLAG_ERROR } from '../../../src/aoe/constants'
import { addresses, type FrameInfo, type FuzzSetup, type ReplyView } from './generate'

export interface TargetTally {
  addressed: number
  sentWrites: number
  sentWriteSectors: number
  sentReads: number
  sentReadSectors: number
  replies: number
  okWrites: number
  okWriteSectors: number
  okReads: number
  okReadSectors: number
  ataErrors: number
}

function emptyTally (): TargetTally {
  return { addressed: 0, sentWrites: 0, sentWriteSectors: 0, sentReads: 0, sentReadSectors: 0, replies: 0, okWrites: 0, okWriteSectors: 0, okReads: 0, okReadSectors: 0, ataErrors: 0 }
}

export class Accounting {
  sentFrames = 0
  sentAoe = 0
  sentShortAoe = 0
  sentIgnorable = 0
  repliesSeen = 0
  readonly targets: TargetTally[]

  constructor (readonly setup: FuzzSetup) {
    this.targets = setup.targets.map(emptyTally)
  }

  sent (info: FrameInfo): void {
    this.sentFrames++
    if (!info.aoe) return
    this.sentAoe++
    if (!info.header) { this.sentShortAoe++; return }
    if (info.response || info.command >= 0xf0) { this.sentIgnorable++; return }
    this.setup.targets.forEach((t, i) => {
      if (!addresses(info, t)) return
      const tally = this.targets[i]
      tally.addressed++
      const count = info.ata?.count ?? 0
      if (count === 0) return
      if (info.diskOp === 'write') { tally.sentWrites++; tally.sentWriteSectors += count }
      if (info.diskOp === 'read') { tally.sentReads++; tally.sentReadSectors += count }
    })
  }

  /** A reply from the daemon; `req` is the frame whose tag it carries, if known. */
  replied (reply: ReplyView, req: FrameInfo | undefined): void {
    this.repliesSeen++
    const i = this.setup.targets.findIndex(t => t.major === reply.major && t.minor === reply.minor)
    if (i < 0) return
    const tally = this.targets[i]
    tally.replies++
    if (req === undefined || reply.command !== 0 || (reply.flags & FLAG_ERROR) !== 0) return
    if ((reply.status & 0x01) !== 0) tally.ataErrors++
    const count = req.ata?.count ?? 0
    if (reply.status !== 0x40 || count === 0) return
    if (req.diskOp === 'write') { tally.okWrites++; tally.okWriteSectors += count }
    if (req.diskOp === 'read') { tally.okReads++; tally.okReadSectors += count }
  }
}

/** The relations above; one line per one that does not hold. */
export function checkCounters (
  acc: Accounting, iface: InterfaceCounters, targets: TargetCounters[], inFlight: number[], vethDrops: number,
): string[] {
  const bad: string[] = []
  const heard = iface.framesIn + iface.kernelDrops
  if (vethDrops === 0) {
    if (heard !== acc.sentAoe) bad.push(`framesIn ${iface.framesIn} + kernelDrops ${iface.kernelDrops} = ${heard}, but ${acc.sentAoe} AoE frames were sent`)
  } else if (heard > acc.sentAoe || heard + vethDrops < acc.sentAoe) {
    bad.push(`framesIn + kernelDrops = ${heard} is not within [sent ${acc.sentAoe} − veth drops ${vethDrops}, sent]`)
  }
  if (iface.framesOut < acc.repliesSeen) bad.push(`framesOut ${iface.framesOut} < ${acc.repliesSeen} replies received`)
  if (iface.sendErrors !== 0) bad.push(`sendErrors ${iface.sendErrors} (replies lost inside the daemon)`)
  if (iface.kernelDrops === 0 && vethDrops === 0) {
    if (iface.malformed < acc.sentShortAoe) bad.push(`malformed ${iface.malformed} < ${acc.sentShortAoe} AoE frames shorter than the header`)
    if (iface.ignored < acc.sentIgnorable) bad.push(`ignored ${iface.ignored} < ${acc.sentIgnorable} frames with the R flag or a vendor command`)
  }
  acc.setup.targets.forEach((t, i) => {
    const name = `${t.major}.${t.minor}`
    const c = targets[i]
    const s = acc.targets[i]
    const within = (what: string, value: number, lo: number, hi: number): void => {
      if (value < lo || value > hi) bad.push(`${name}: ${what} ${value} not within [${lo}, ${hi}]`)
    }
    within('frames', c.frames, s.replies, s.addressed)
    within('writes', c.writes, s.okWrites, s.sentWrites)
    within('writeSectors', c.writeSectors, s.okWriteSectors, s.sentWriteSectors)
    within('reads', c.reads, s.okReads, s.sentReads)
    within('readSectors', c.readSectors, s.okReadSectors, s.sentReadSectors)
    if (c.errors < s.ataErrors) bad.push(`${name}: errors ${c.errors} < ${s.ataErrors} ATA error replies received`)
    if (inFlight[i] !== 0) bad.push(`${name}: ${inFlight[i]} requests still in flight after the run`)
  })
  return bad
}
