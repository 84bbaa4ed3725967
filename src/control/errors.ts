import { constants } from 'node:os'

/** Any errno name; the engine itself reports EINVAL, ENOENT, EEXIST, EBUSY and EIO. */
export type ControlErrno = keyof typeof constants.errno

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
