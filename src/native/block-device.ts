import { loadNative } from './addon'

/**
 * Size in bytes of the block device open as `fd` (ioctl BLKGETSIZE64).
 * Throws an Error whose .code is the errno name (ENOTTY for a regular file, EBADF, ...).
 */
export function blockDeviceSize (fd: number): number {
  return loadNative().blkGetSize64(fd)
}
