/** AoE r11 constants. Offsets are from the start of the Ethernet frame. */

export const AOE_ETHERTYPE = 0x88a2
export const AOE_VERSION = 1

/** Ethernet (14) + AoE common header (10). */
export const HEADER_LENGTH = 24
/** Minimum Ethernet frame without FCS: replies are padded to this. */
export const MIN_FRAME_LENGTH = 60

export const FLAG_RESPONSE = 0x08
export const FLAG_ERROR = 0x04

export const BROADCAST_MAJOR = 0xffff
export const BROADCAST_MINOR = 0xff
export const BROADCAST_MAC = 0xffffffffffff

export const enum Command {
  Ata = 0,
  QueryConfig = 1,
  MacMaskList = 2,
  ReserveRelease = 3,
}
/** Commands at or above this are vendor-specific: ignored silently. */
export const VENDOR_COMMAND_MIN = 0xf0

export const enum AoeError {
  UnrecognizedCommand = 1,
  BadArgument = 2,
  DeviceUnavailable = 3,
  ConfigStringPresent = 4,
  UnsupportedVersion = 5,
  TargetReserved = 6,
}

/** Header field offsets. */
export const OFF_DST = 0
export const OFF_SRC = 6
export const OFF_ETHERTYPE = 12
export const OFF_VERFLAGS = 14
export const OFF_ERROR = 15
export const OFF_MAJOR = 16
export const OFF_MINOR = 18
export const OFF_COMMAND = 19
export const OFF_TAG = 20
