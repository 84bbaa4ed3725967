import type { AtaRequest } from '../aoe/ata'
import { SECTOR_SIZE } from '../aoe/ata'
import { encodeIdentify, IDENTIFY_LENGTH, type IdentifyFields } from './identify'
import {
  ATA_CHECK_POWER_MODE, ATA_FLUSH_CACHE, ATA_FLUSH_CACHE_EXT, ATA_IDENTIFY_DEVICE, ATA_READ_SECTORS,
  ATA_READ_SECTORS_EXT, ATA_WRITE_SECTORS, ATA_WRITE_SECTORS_EXT, ERROR_ABRT, ERROR_IDNF, ERROR_UNC,
  LBA28_MAX_SECTORS, POWER_MODE_ACTIVE, STATUS_DRDY, STATUS_ERR,
} from './registers'

/** What the packet loop must do next with an ATA request. */
export const enum AtaStep {
  /** The reply is complete (plan holds status, error, count and data length). */
  Reply = 0,
  /** Read plan.length bytes at plan.offset into the reply's data area, then complete(). */
  Read = 1,
  /** Write the request's data (plan.length bytes at plan.offset), then complete(). */
  Write = 2,
  /** fdatasync the backing store, then complete(). */
  Flush = 3,
  /** The request cannot be carried in a frame: answer with AoE error 2 (bad argument). */
  BadArgument = 4,
}

/** The outcome of planning; reused by the packet loop, one per exchange. */
export interface AtaPlan {
  status: number
  error: number
  /** Count register in the reply: sectors not transferred (0 on success). */
  sectorCount: number
  /** Bytes of data the reply carries after the ATA header. */
  dataLength: number
  /** Byte offset and length of the disk transfer. */
  offset: number
  length: number
}

export function emptyAtaPlan (): AtaPlan {
  return { status: 0, error: 0, sectorCount: 0, dataLength: 0, offset: 0, length: 0 }
}

function reply (plan: AtaPlan, status: number, error: number, sectorCount: number, dataLength: number): AtaStep {
  plan.status = status
  plan.error = error
  plan.sectorCount = sectorCount
  plan.dataLength = dataLength
  plan.length = 0
  return AtaStep.Reply
}

function abort (plan: AtaPlan, req: AtaRequest, error: number): AtaStep {
  return reply(plan, STATUS_DRDY | STATUS_ERR, error, req.sectorCount, 0)
}

/**
 * Decides what an ATA request needs. Answers IDENTIFY and CHECK POWER MODE at once (the
 * IDENTIFY data goes to reply[replyData]); checks the range and size of reads and writes;
 * aborts writes to a read-only disk and every other command. `maxSectors` is what one frame on this link can carry.
 */
/** The disk as planning sees it: IDENTIFY's fields, and whether it may be written. */
export interface AtaDisk extends IdentifyFields {
  /** Writes are refused (ABRT); reads, IDENTIFY and FLUSH work. */
  readOnly?: boolean
}

export function planAta (
  req: AtaRequest, disk: AtaDisk, maxSectors: number, replyBuf: Buffer, replyData: number, plan: AtaPlan,
): AtaStep {
  let write: boolean
  let lba: number
  switch (req.command) {
    case ATA_IDENTIFY_DEVICE:
      encodeIdentify(replyBuf, replyData, disk)
      return reply(plan, STATUS_DRDY, 0, 0, IDENTIFY_LENGTH)
    case ATA_CHECK_POWER_MODE:
      return reply(plan, STATUS_DRDY, 0, POWER_MODE_ACTIVE, 0)
    case ATA_FLUSH_CACHE:
    case ATA_FLUSH_CACHE_EXT:
      plan.offset = 0
      plan.length = 0
      return AtaStep.Flush
    case ATA_READ_SECTORS:
    case ATA_WRITE_SECTORS:
      write = req.command === ATA_WRITE_SECTORS
      lba = req.lba % 0x100000000 & LBA28_MAX_SECTORS
      break
    case ATA_READ_SECTORS_EXT:
    case ATA_WRITE_SECTORS_EXT:
      write = req.command === ATA_WRITE_SECTORS_EXT
      lba = req.lba
      break
    default:
      return abort(plan, req, ERROR_ABRT)
  }
  const count = req.sectorCount
  if (count > maxSectors) return AtaStep.BadArgument
  if (write && req.dataLength < count * SECTOR_SIZE) return AtaStep.BadArgument
  if (write && disk.readOnly === true) return abort(plan, req, ERROR_ABRT)
  if (lba + count > disk.sectors) return abort(plan, req, ERROR_IDNF)
  if (count === 0) return reply(plan, STATUS_DRDY, 0, 0, 0)
  plan.offset = lba * SECTOR_SIZE
  plan.length = count * SECTOR_SIZE
  return write ? AtaStep.Write : AtaStep.Read
}

/**
 * Fills in the plan after the disk has answered. A failed transfer becomes an ATA error
 * (the Linux initiator fails the bio at once) — never an AoE error, which it would only
 * log and retransmit until it declared the device dead.
 */
export function completeAta (step: AtaStep, failed: boolean, plan: AtaPlan): void {
  const sectors = plan.length / SECTOR_SIZE
  if (failed) {
    reply(plan, STATUS_DRDY | STATUS_ERR, step === AtaStep.Read ? ERROR_UNC : ERROR_ABRT, sectors, 0)
    return
  }
  const dataLength = step === AtaStep.Read ? plan.length : 0
  reply(plan, STATUS_DRDY, 0, 0, dataLength)
}
