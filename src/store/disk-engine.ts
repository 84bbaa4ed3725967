import type { BlockRequest } from './block-request'
import type { FileMap } from '../native/memory'

/**
 * How a store's requests reach the disk. Two engines: io_uring (the default: batched
 * submission, page-cache hits complete during the submit call, no thread hand-offs)
 * and libuv's thread pool (everywhere, and what tests wrap to make a disk slow or
 * failing).
 *
 * "Inline": a request on a file in RAM (tmpfs, ramfs, brd), which never waits on a
 * device, is done synchronously inside the engine's next kick(). An engine that can
 * do that says so in `inline`; the packet loop may then hand such requests buffers
 * that stay valid only until that kick returns (the receive ring).
 */
/** What an engine needs to know of the file a request is for (a BackingStore). */
export interface DiskFile {
  readonly fd: number
  /** In RAM: the request is done in the next kick(). */
  readonly inline: boolean
  /** A writable mapping of the file that an engine may copy write data into instead of calling pwrite. */
  readonly writeMap: FileMap | null
  /** Straight to the kernel's workers: the file system may block inside the submit call (FUSE, NFS). */
  readonly async: boolean
}

export interface DiskEngine {
  /** Requests on files with `inline` set complete within the kick() that follows them. */
  readonly inline: boolean
  /** Reads or writes req from byte `done` on; completion calls req.onTransfer(err, bytes). */
  transfer (file: DiskFile, req: BlockRequest, done: number): void
  /** fdatasync; completion calls req.onSync(err). */
  sync (file: DiskFile, req: BlockRequest): void
  /** Hands queued requests to the kernel now; the packet loop calls it after each batch. Never throws. */
  kick (): void
  /**
   * The buffer will not be given to the engine again: drop whatever refers to it once
   * the requests using it are done. Resolves when nothing does any more, so its memory
   * may be freed.
   */
  release (buffer: Buffer): Promise<void>
  close (): void
}
