import { AoeError } from '../aoe/constants'
import { ConfigCommand, type ConfigQuery } from '../aoe/config'
import { DirectiveCommand, MaskCommand, MaskError, type MacMaskMessage } from '../aoe/macmask'
import { ReserveCommand, type ReserveMessage } from '../aoe/reserve'

/** Longest mask list we keep: its reply (28 + 8·n bytes) must fit a 1500-byte frame. */
export const MASK_LIST_MAX = 64
/** Longest reservation list: 26 + 6·n bytes in a 1500-byte frame. */
export const RESERVE_LIST_MAX = 128

/** What to answer a Query Config request with. */
export interface ConfigOutcome {
  /** False when a test/test-prefix did not match: the spec says send nothing. */
  respond: boolean
  /** AoE error code, 0 for none. */
  error: number
}

export interface MaskOutcome {
  error: number
  merror: number
  /** Directive-count field of the reply. */
  count: number
  /** Whether the reply lists the mask (not after a failed edit). */
  list: boolean
}

/**
 * The Query Config string, Mac Mask List and reservation of one AoE address (major,
 * minor). It belongs to the address, not to an interface: every interface exporting the
 * same shelf.slot shares one, so an initiator sees the same disk whichever path it uses.
 */
export class AddressState {
  config: Buffer = Buffer.alloc(0)
  readonly mask: number[] = []
  readonly reservation: number[] = []

  /** A non-empty mask makes the target ignore every other MAC, silently. */
  maskAllows (mac: number): boolean {
    return this.mask.length === 0 || this.mask.includes(mac)
  }

  /** While reserved, only the listed MACs may use the disk. */
  reservationAllows (mac: number): boolean {
    return this.reservation.length === 0 || this.reservation.includes(mac)
  }

  queryConfig (q: ConfigQuery): ConfigOutcome {
    switch (q.ccmd) {
      case ConfigCommand.Read:
        return { respond: true, error: 0 }
      case ConfigCommand.Test:
        return { respond: q.config.equals(this.config), error: 0 }
      case ConfigCommand.TestPrefix:
        return {
          respond: q.config.length <= this.config.length && q.config.equals(this.config.subarray(0, q.config.length)),
          error: 0,
        }
      case ConfigCommand.Set:
        if (this.config.length > 0 && !q.config.equals(this.config)) {
          return { respond: true, error: AoeError.ConfigStringPresent }
        }
        this.config = q.config
        return { respond: true, error: 0 }
      case ConfigCommand.ForceSet:
        this.config = q.config
        return { respond: true, error: 0 }
      default:
        return { respond: true, error: AoeError.BadArgument }
    }
  }

  /** Applies an edit in order, stopping at the first directive that fails. */
  macMask (m: MacMaskMessage): MaskOutcome {
    if (m.mcmd === MaskCommand.Read) return { error: 0, merror: MaskError.None, count: this.mask.length, list: true }
    if (m.mcmd !== MaskCommand.Edit) return { error: AoeError.BadArgument, merror: 0, count: 0, list: false }
    for (let i = 0; i < m.directives.length; i++) {
      const { dcmd, mac } = m.directives[i]
      const at = this.mask.indexOf(mac)
      if (dcmd === DirectiveCommand.None) continue
      if (dcmd === DirectiveCommand.Delete) {
        if (at >= 0) this.mask.splice(at, 1)
        continue
      }
      if (dcmd !== DirectiveCommand.Add) return { error: 0, merror: MaskError.BadDirective, count: i, list: false }
      if (at >= 0) continue
      if (this.mask.length >= MASK_LIST_MAX) return { error: 0, merror: MaskError.ListFull, count: i, list: false }
      this.mask.push(mac)
    }
    return { error: 0, merror: MaskError.None, count: this.mask.length, list: true }
  }

  /** Returns the AoE error code (0 for success); the reply always lists the reservation. */
  reserve (m: ReserveMessage, sender: number): number {
    switch (m.rcmd) {
      case ReserveCommand.Read:
        return 0
      case ReserveCommand.Set:
      case ReserveCommand.ForceSet:
        if (m.rcmd === ReserveCommand.Set && !this.reservationAllows(sender)) return AoeError.TargetReserved
        if (m.macs.length > RESERVE_LIST_MAX) return AoeError.BadArgument
        this.reservation.splice(0, this.reservation.length, ...m.macs)
        return 0
      default:
        return AoeError.BadArgument
    }
  }
}
