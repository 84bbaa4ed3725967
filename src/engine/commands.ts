/**
 * What each AoE command does, as pure functions (the aoecmd of the Linux initiator's
 * split, seen from the target): given a decoded request, the target it addresses (with
 * its per-address state) and room for the reply, they build the reply — or say that
 * there is none, or that the disk must be read or written first. No socket, no disk,
 * no timers: the packet loop (port.ts) does the I/O around them.
 */
import {
  AOE_VERSION, AoeError, BROADCAST_MAC, BROADCAST_MAJOR, BROADCAST_MINOR, Command, FLAG_RESPONSE, VENDOR_COMMAND_MIN,
} from '../aoe/constants'
import { encodeHeader, encodeResponseHeader, type Header } from '../aoe/header'
import { ATA_HEADER_LENGTH, decodeAta, emptyAtaRequest, encodeAtaStatus } from '../aoe/ata'
import { decodeConfig, encodeConfig } from '../aoe/config'
import { decodeMacMask, encodeMacMask } from '../aoe/macmask'
import { decodeReserve, encodeReserve } from '../aoe/reserve'
import { copySmall } from '../native/memory'
import { AtaStep, emptyAtaPlan, planAta, type AtaDisk, type AtaPlan } from '../ata/handler'
import { ATA_IDENTIFY_DEVICE, STATUS_ERR } from '../ata/registers'
import type { AddressState } from './address-state'

/** The largest frame we build: a 9000-byte MTU frame fits (17 sectors). */
export const MAX_FRAME = 9216
/** The Query Config firmware version we report. */
export const FIRMWARE_VERSION = 0x0001

/** Sectors one frame carries at this MTU: floor((MTU + 14 − 36) / 512), capped by MAX_FRAME. */
export function sectorsForMtu (mtu: number): number {
  const limit = Math.min(mtu + 14, MAX_FRAME) - ATA_HEADER_LENGTH
  return Math.max(0, Math.min(255, Math.floor(limit / 512)))
}

/** A target as the command handlers see it. */
export interface CommandTarget extends AtaDisk {
  readonly major: number
  readonly minor: number
  /** Config string, Mac Mask List and reservation of the address (shared across interfaces). */
  readonly state: AddressState
  /** Buffer count advertised in Query Config replies. */
  readonly bufferCount: number
}

/** The interface a request came in on. */
export interface LinkFacts {
  /** Our MAC (the reply's source) as a number. */
  mac: number
  mtu: number
}

/** What the packet loop does with a frame once its handler has run. */
export const enum Outcome {
  /** Nothing to send (a test that did not match, a frame to drop). */
  None = 0,
  /** The reply is complete in the output buffer: `length` bytes. */
  Reply = 1,
  /** An ATA read, write or flush: the disk first (see `step` and `plan`), then the reply. */
  Disk = 2,
}

/** A handler's verdict; one per packet loop, reused for every frame. */
export interface CommandResult {
  outcome: Outcome
  /** Bytes of the reply (Outcome.Reply). */
  length: number
  /** The frame was too short or inconsistent to serve as sent (counted, whatever the reply). */
  malformed: boolean
  /** The reply is an ATA error (counted against the target). */
  ataError: boolean
  /** The address's state (config string, mask, reservation) changed. */
  stateChanged: boolean
  /** Outcome.Disk: Read, Write or Flush, with the transfer in `plan`. */
  step: AtaStep
  plan: AtaPlan
  /** Outcome.Disk, Write: where the request's data starts in the received frame. */
  dataOffset: number
}

export function emptyCommandResult (): CommandResult {
  return { outcome: Outcome.None, length: 0, malformed: false, ataError: false, stateChanged: false, step: AtaStep.Reply, plan: emptyAtaPlan(), dataOffset: 0 }
}

/** Whether the loop hands a frame with this header to targets at all (replies and vendor commands: no). */
export function isRequest (h: Header): boolean {
  return (h.flags & FLAG_RESPONSE) === 0 && h.command < VENDOR_COMMAND_MIN
}

/** Whether a request is for this target: its address or a broadcast one. Masks and ACLs are the loop's. */
export function addresses (h: Header, t: CommandTarget): boolean {
  return (h.major === t.major || h.major === BROADCAST_MAJOR) && (h.minor === t.minor || h.minor === BROADCAST_MINOR)
}

const ata = emptyAtaRequest()

function begin (r: CommandResult): CommandResult {
  r.outcome = Outcome.None
  r.length = 0
  r.malformed = false
  r.ataError = false
  r.stateChanged = false
  return r
}

function replied (r: CommandResult, length: number): void {
  r.outcome = Outcome.Reply
  r.length = length
}

/**
 * Answers one request (frame rx[base, base+length), header `h` already decoded) for
 * target `t`, building any reply at out[at..]. The reply goes from `link.mac` to the
 * request's source, with the target's own address.
 */
export function respond (
  h: Header, rx: Buffer, base: number, length: number, t: CommandTarget, link: LinkFacts,
  out: Buffer, at: number, result: CommandResult,
): void {
  begin(result)
  if (h.version !== AOE_VERSION) return replyError(h, rx, base, length, t, link, out, at, AoeError.UnsupportedVersion, result)
  switch (h.command) {
    case Command.Ata: return respondAta(h, rx, base, length, t, link, out, at, result)
    case Command.QueryConfig: return respondConfig(h, rx, base, length, t, link, out, at, result)
    case Command.MacMaskList: return respondMacMask(h, rx, base, length, t, link, out, at, result)
    case Command.ReserveRelease: return respondReserve(h, rx, base, length, t, link, out, at, result)
    default: return replyError(h, rx, base, length, t, link, out, at, AoeError.UnrecognizedCommand, result)
  }
}

/** An AoE-level error: the request echoed back (as much as a frame holds) with the E flag and the code. */
function replyError (
  h: Header, rx: Buffer, base: number, length: number, t: CommandTarget, link: LinkFacts,
  out: Buffer, at: number, error: number, result: CommandResult,
): void {
  const echoed = Math.min(length, MAX_FRAME, link.mtu + 14)
  rx.copy(out, at, base, base + echoed)
  encodeResponseHeader(out, at, h, link.mac, t.major, t.minor, error)
  replied(result, echoed)
}

function respondAta (
  h: Header, rx: Buffer, base: number, length: number, t: CommandTarget, link: LinkFacts,
  out: Buffer, at: number, result: CommandResult,
): void {
  if (!decodeAta(rx, base, length, ata)) {
    result.malformed = true
    return replyError(h, rx, base, length, t, link, out, at, AoeError.BadArgument, result)
  }
  if (ata.command !== ATA_IDENTIFY_DEVICE && !t.state.reservationAllows(h.src)) {
    return replyError(h, rx, base, length, t, link, out, at, AoeError.TargetReserved, result)
  }
  const plan = result.plan
  const step = planAta(ata, t, sectorsForMtu(link.mtu), out, at + ATA_HEADER_LENGTH, plan)
  if (step === AtaStep.BadArgument) {
    result.malformed = true
    return replyError(h, rx, base, length, t, link, out, at, AoeError.BadArgument, result)
  }
  // The reply starts as the request's header: flags and LBA registers go back as they came.
  copySmall(out, at, rx, base, ATA_HEADER_LENGTH)
  encodeResponseHeader(out, at, h, link.mac, t.major, t.minor)
  if (step === AtaStep.Reply) {
    result.ataError = (plan.status & STATUS_ERR) !== 0
    encodeAtaStatus(out, at, plan.status, plan.error, plan.sectorCount)
    return replied(result, ATA_HEADER_LENGTH + plan.dataLength)
  }
  result.outcome = Outcome.Disk
  result.step = step
  result.dataOffset = ata.dataOffset
}

/** A Query Config reply carrying the target's current string. */
export function encodeConfigReply (req: Header, t: CommandTarget, link: LinkFacts, ccmd: number, error: number, out: Buffer, at: number): number {
  encodeResponseHeader(out, at, req, link.mac, t.major, t.minor, error)
  return encodeConfig(out, at, {
    bufferCount: t.bufferCount,
    firmwareVersion: FIRMWARE_VERSION,
    sectorsPerCommand: sectorsForMtu(link.mtu),
    ccmd,
    config: t.state.config,
  })
}

function respondConfig (
  h: Header, rx: Buffer, base: number, length: number, t: CommandTarget, link: LinkFacts,
  out: Buffer, at: number, result: CommandResult,
): void {
  const q = decodeConfig(rx, base, length)
  if (q === 'truncated' || q === 'too-long') {
    // vblade drops these too ("if you can't play nice..."): there is no sane reply.
    result.malformed = true
    return
  }
  const before = t.state.config
  const outcome = t.state.queryConfig(q)
  result.stateChanged = !t.state.config.equals(before)
  if (!outcome.respond) return
  replied(result, encodeConfigReply(h, t, link, q.ccmd, outcome.error, out, at))
}

function respondMacMask (
  h: Header, rx: Buffer, base: number, length: number, t: CommandTarget, link: LinkFacts,
  out: Buffer, at: number, result: CommandResult,
): void {
  const m = decodeMacMask(rx, base, length)
  if (m === 'truncated') {
    result.malformed = true
    return replyError(h, rx, base, length, t, link, out, at, AoeError.BadArgument, result)
  }
  const before = t.state.mask.join()
  const outcome = t.state.macMask(m)
  result.stateChanged = t.state.mask.join() !== before
  encodeResponseHeader(out, at, h, link.mac, t.major, t.minor, outcome.error)
  const directives = outcome.list ? t.state.mask.map(mac => ({ dcmd: 0, mac })) : []
  replied(result, encodeMacMask(out, at, { mcmd: m.mcmd, merror: outcome.merror, directives }, outcome.count))
}

function respondReserve (
  h: Header, rx: Buffer, base: number, length: number, t: CommandTarget, link: LinkFacts,
  out: Buffer, at: number, result: CommandResult,
): void {
  const m = decodeReserve(rx, base, length)
  if (m === 'truncated') {
    result.malformed = true
    return replyError(h, rx, base, length, t, link, out, at, AoeError.BadArgument, result)
  }
  const before = t.state.reservation.join()
  const error = t.state.reserve(m, h.src)
  result.stateChanged = t.state.reservation.join() !== before
  encodeResponseHeader(out, at, h, link.mac, t.major, t.minor, error)
  replied(result, encodeReserve(out, at, { rcmd: m.rcmd, macs: t.state.reservation }))
}

/** A Query Config read of major.minor to everyone, from `mac`: who else serves this address? */
export function encodeProbe (major: number, minor: number, mac: number, out: Buffer, at: number): number {
  encodeHeader(out, at, { dst: BROADCAST_MAC, src: mac, version: AOE_VERSION, flags: 0, error: 0, major, minor, command: Command.QueryConfig, tag: PROBE_TAG })
  return encodeConfig(out, at, { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, ccmd: 0, config: Buffer.alloc(0) })
}

/** Tags with bit 31 set belong to user-space tools: the Linux initiator ignores answers to ours. */
const PROBE_TAG = 0x80000000 | 0x6b76

/** What announceDestinations needs of a target: the admin's ACL and the address's mask. */
export interface AnnouncedTarget {
  /** Initiator MACs the admin allows (empty: everyone). */
  readonly acl: readonly number[]
  readonly state: AddressState
}

/**
 * Where an announcement (an unsolicited Query Config reply) goes. The Linux initiator
 * makes a device from any config reply it hears, so it goes only to MACs that may use
 * the disk: with an ACL, to each ACL MAC (that the mask, if set, also allows); with only
 * a mask, to each masked MAC; with neither, broadcast.
 */
export function announceDestinations (t: AnnouncedTarget, broadcast: number): readonly number[] {
  const mask = t.state.mask
  if (t.acl.length === 0) return mask.length > 0 ? mask : [broadcast]
  return mask.length > 0 ? t.acl.filter(mac => mask.includes(mac)) : t.acl
}
