import { constants } from 'node:os'

/** Linux errnos that Node's table lacks. */
const MORE_ERRNOS = { ENOTBLK: 15 } as const

/** Any errno name; the engine itself reports EINVAL, ENOENT, EEXIST, EBUSY, EIO and the errors of opening a backing. */
export type ControlErrno = keyof typeof constants.errno | keyof typeof MORE_ERRNOS

/** The number of an errno name, or undefined for a name that is not one. */
export function errnoNumber (code: string): number | undefined {
  return (constants.errno as Record<string, number>)[code] ?? (MORE_ERRNOS as Record<string, number>)[code]
}

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
    this.errno = errnoNumber(code)!
  }
}
