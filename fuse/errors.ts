/**
 * Errors of the file-system layer and their translation to the negative errno values
 * fuse-native expects. ControlError (src/control/errors.ts) carries the engine's errno;
 * FsError covers what only the file system can refuse (E2BIG, EACCES, EPERM, ...).
 */
import { constants } from 'node:os'
import { ControlError } from '../src/control/errors'

export type FsErrno = keyof typeof constants.errno

export class FsError extends Error {
  readonly code: FsErrno
  readonly errno: number

  constructor (code: FsErrno, message: string) {
    super(message)
    this.name = 'FsError'
    this.code = code
    this.errno = constants.errno[code]
  }
}

/** The negative errno for fuse-native; anything unexpected becomes -EIO. */
export function toNegativeErrno (err: unknown): number {
  if (err instanceof ControlError || err instanceof FsError) return -err.errno
  return -constants.errno.EIO
}

/** True for the errors we expect from writers (bad commands); false for bugs worth a stack. */
export function isExpected (err: unknown): err is ControlError | FsError {
  return err instanceof ControlError || err instanceof FsError
}

export function errnoNumber (code: FsErrno): number {
  return constants.errno[code]
}
