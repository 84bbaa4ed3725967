import type { BlockRequest } from './backing-store'
import type { FileMap } from '../net/memory'

/**
 * How a store's requests reach the disk. Two engines: io_uring (batched submission,
 * page-cache hits complete during the submit call, no thread hand-offs) and libuv's
 * thread pool (everywhere, and what tests wrap to make a disk slow or failing).
 */
export interface DiskEngine {
  /** Requests on memory-backed files complete within the kick() that follows them. */
  readonly memoryInline: boolean
  /**
   * Reads or writes req from byte `done` on; completion calls req.onTransfer(err, bytes).
   * `memory`: the file lives in RAM (tmpfs) and never waits on a device. `map`: a
   * writable mapping of the file that an engine may copy write data into instead.
   */
  transfer (fd: number, req: BlockRequest, done: number, memory: boolean, map: FileMap | null): void
  /** fdatasync; completion calls req.onSync(err). */
  sync (fd: number, req: BlockRequest, memory: boolean): void
  /** Hands queued requests to the kernel now; the packet loop calls it after each batch. */
  kick (): void
  close (): void
}
