import { constants } from 'node:os'

/** The errno names the control surface reports, as sysfs would. */
export type ControlErrno = 'EINVAL' | 'ENOENT' | 'EEXIST' | 'EBUSY' | 'EIO' | 'ENODEV'

/**
 * A refused control command. `code` is the errno a sysfs write would fail with, so the
 * FUSE layer can hand it straight back to the writer and the CLI can print it.
 */
export class ControlError extends Error {
  readonly code: ControlErrno
  readonly errno: number

  constructor (code: ControlErrno, message: string) {
    super(message)
    this.name = 'ControlError'
    this.code = code
    this.errno = constants.errno[code]
  }
}
