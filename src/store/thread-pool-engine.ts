import fs from 'node:fs'
import createDebug from 'debug'
import type { BlockRequest } from './block-request'
import type { DiskEngine, DiskFile } from './disk-engine'
import { IO_KIND_NAMES, IoKind } from './ordering'

const debug = createDebug('kvblade:store')

/** The asynchronous calls the thread-pool engine makes; tests substitute slow or failing ones. */
export interface BackingIo {
  read (fd: number, buffer: Buffer, offset: number, length: number, position: number,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void
  write (fd: number, buffer: Buffer, offset: number, length: number, position: number,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void
  fdatasync (fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void
}

export const nodeFsIo: BackingIo = {
  read: (fd, buffer, offset, length, position, cb) => fs.read(fd, buffer, offset, length, position, cb),
  write: (fd, buffer, offset, length, position, cb) => fs.write(fd, buffer, offset, length, position, cb),
  fdatasync: (fd, cb) => fs.fdatasync(fd, cb),
}

/**
 * Disk I/O in libuv's thread pool: every request is its own pread/pwrite on a pool
 * thread, so nothing waits for anything else, at the cost of two thread hand-offs each.
 */
export class ThreadPoolEngine implements DiskEngine {
  readonly inline = false

  /** `warn`: where a completion that throws (a bug above us) is reported. */
  constructor (private readonly io: BackingIo = nodeFsIo, private readonly warn: (message: string) => void = msg => debug('%s', msg)) {}

  transfer (file: DiskFile, req: BlockRequest, done: number): void {
    const op = req.kind === IoKind.Read ? this.io.read : this.io.write
    op(file.fd, req.buffer, req.bufferOffset + done, req.length - done, req.offset + done, (err, bytes) => {
      this.answer(req, () => req.onTransfer(err, bytes))
    })
  }

  sync (file: DiskFile, req: BlockRequest): void {
    this.io.fdatasync(file.fd, err => this.answer(req, () => req.onSync(err)))
  }

  /** A throw out of an fs callback would be uncaught (the end of the daemon): it is logged instead. */
  private answer (req: BlockRequest, complete: () => void): void {
    try {
      complete()
    } catch (err) {
      this.warn(`answering a ${IO_KIND_NAMES[req.kind]} at byte ${req.offset} failed: ${(err as Error).stack}`)
    }
  }

  kick (): void {}

  // Node's fs calls hold their own reference to a buffer while they run.
  async release (_buffer: Buffer): Promise<void> {}

  close (): void {}
}
