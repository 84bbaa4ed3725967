/** ATA command codes, status and error bits (ATA/ATAPI-7). */

export const ATA_READ_SECTORS = 0x20
export const ATA_READ_SECTORS_EXT = 0x24
export const ATA_WRITE_SECTORS = 0x30
export const ATA_WRITE_SECTORS_EXT = 0x34
export const ATA_CHECK_POWER_MODE = 0xe5
export const ATA_FLUSH_CACHE = 0xe7
export const ATA_FLUSH_CACHE_EXT = 0xea
export const ATA_IDENTIFY_DEVICE = 0xec

export const STATUS_ERR = 0x01
export const STATUS_DRDY = 0x40

export const ERROR_ABRT = 0x04
export const ERROR_IDNF = 0x10
export const ERROR_UNC = 0x40

/** CHECK POWER MODE's answer in the count register: active or idle. */
export const POWER_MODE_ACTIVE = 0xff

export const LBA28_MAX_SECTORS = 0x0fffffff
export const LBA48_MAX_SECTORS = 0xffffffffffff
