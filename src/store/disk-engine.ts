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
export interface DiskEngine {
  /** Requests with `inline` set complete within the kick() that follows them. */
  readonly inline: boolean
  /**
   * Reads or writes req from byte `done` on; completion calls req.onTransfer(err, bytes).
   * `inline`: the file lives in RAM, do it in the next kick. `map`: a writable mapping
   * of the file that an engine may copy write data into instead of calling pwrite.
   */
  transfer (fd: number, req: BlockRequest, done: number, inline: boolean, map: FileMap | null): void
  /** fdatasync; completion calls req.onSync(err). */
  sync (fd: number, req: BlockRequest, inline: boolean): void
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
