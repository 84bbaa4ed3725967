/**
 * Errors of the file-system layer and their translation to the negative errno values
 * fuse-native expects. ControlError (src/control/errors.ts) carries the engine's errno;
 * FsError covers what only the file system can refuse (E2BIG, EACCES, EPERM, ...).
 */
import { constants } from 'node:os'
import { ControlError } from '../src/control/errors'

/** A refusal only the file system can make; the same shape as the engine's ControlError. */
export class FsError extends ControlError {
  override readonly name = 'FsError'
}

/** The negative errno for fuse-native; anything unexpected becomes -EIO. */
export function toNegativeErrno (err: unknown): number {
  if (err instanceof ControlError) return -err.errno
  return -constants.errno.EIO
}

/** True for the errors we expect from writers (bad commands); false for bugs worth a stack. */
export function isExpected (err: unknown): err is ControlError {
  return err instanceof ControlError
}
