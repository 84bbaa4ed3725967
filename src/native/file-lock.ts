import { loadNative } from './addon'

export type LockMode = 'exclusive' | 'shared' | 'unlock'

/**
 * flock(fd, mode | LOCK_NB): true if taken (or released), false if another open file
 * holds a conflicting lock. Never blocks. Throws (with .code) on any other failure.
 */
export function lockFile (fd: number, mode: LockMode): boolean {
  return loadNative().lockFile(fd, mode)
}
