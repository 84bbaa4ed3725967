/** The AoE wire format: pure encode/decode, no I/O. */
export * from './constants'
export * from './mac'
export * from './header'
export * from './ata'
export * from './config'
export * from './macmask'
export * from './reserve'
