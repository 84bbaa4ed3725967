/**
 * A disk engine whose requests wait until the test lets them go, for looking at what a
 * store or the packet loop does meanwhile. `inline` claims the inline contract (done
 * within the kick) without keeping it unless the test kicks it: a way to break the
 * receive-ring rule on purpose.
 */
import fs from 'node:fs'
import type { BlockRequest } from '../../src/store/block-request'
import type { DiskEngine, DiskFile } from '../../src/store/disk-engine'
import { IoKind } from '../../src/store/ordering'

export class HeldEngine implements DiskEngine {
  readonly held: Array<() => void> = []
  /** With `runOnKick`, kick() runs what is held (as an inline engine must). */
  constructor (readonly inline = false, private readonly runOnKick = false) {}

  transfer (file: DiskFile, req: BlockRequest, done: number): void {
    const fd = file.fd
    this.held.push(() => {
      try {
        const n = req.kind === IoKind.Read
          ? fs.readSync(fd, req.buffer, req.bufferOffset + done, req.length - done, req.offset + done)
          : fs.writeSync(fd, req.buffer, req.bufferOffset + done, req.length - done, req.offset + done)
        req.onTransfer(null, n)
      } catch (err) {
        req.onTransfer(err as NodeJS.ErrnoException, 0)
      }
    })
  }

  sync (_file: DiskFile, req: BlockRequest): void {
    this.held.push(() => req.onSync(null))
  }

  async release (_buffer: Buffer): Promise<void> {}

  /** Lets every held request go, and those they start; returns how many rounds that took. */
  runHeld (): number {
    let n = 0
    while (this.held.length > 0) {
      for (const run of this.held.splice(0)) run()
      n++
    }
    return n
  }

  kick (): void {
    if (this.runOnKick) this.runHeld()
  }

  close (): void {}
}
