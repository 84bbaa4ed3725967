import fs from 'node:fs'
import createDebug from 'debug'
import { blockDeviceSize } from '../net/block-device'
import { mapFile, type FileMap } from '../net/memory'
import { IO_KIND_NAMES, IoKind, OrderedScheduler, type ScheduledIo } from './ordering'
import type { DiskEngine } from './disk-engine'

const debug = createDebug('kvblade:store')

export const SECTOR_SIZE = 512
/** statfs f_type of tmpfs and ramfs. */
const MEMORY_FS_MAGIC = [0x01021994, 0x858458f6]
/** brd, /dev/ram*. */
const RAMDISK_MAJOR = 1

/**
 * One disk request. The packet loop keeps a fixed set of these and reuses them, so the
 * callbacks are bound once here rather than allocated per frame.
 */
export abstract class BlockRequest implements ScheduledIo {
  kind: IoKind = IoKind.Read
  offset = 0
  length = 0
  blockers = 0
  buffer: Buffer = Buffer.alloc(0)
  bufferOffset = 0
  /** Bytes transferred so far (pread/pwrite may return short). */
  private transferred = 0
  private store: BackingStore | null = null

  /** Called once the request has finished; err is null on success. */
  abstract ioComplete (err: NodeJS.ErrnoException | null): void

  /** @internal */ begin (store: BackingStore): void {
    this.store = store
    this.transferred = 0
  }

  /** @internal */ readonly onTransfer = (err: NodeJS.ErrnoException | null, bytes: number): void => {
    const store = this.store!
    if (err === null) {
      this.transferred += bytes
      if (this.transferred < this.length) {
        if (bytes > 0) return store.continueTransfer(this, this.transferred)
        err = Object.assign(new Error(`short ${IO_KIND_NAMES[this.kind]} at byte ${this.offset + this.transferred} of ${store.path}`), { code: 'EIO' })
      }
    }
    store.finish(this, err)
  }

  /** @internal */ readonly onSync = (err: NodeJS.ErrnoException | null): void => {
    this.store!.finish(this, err)
  }
}

export interface BackingStoreInfo {
  path: string
  /** Size in bytes, a multiple of 512 (a trailing partial sector is not exported). */
  size: number
  /** "MAJ:MIN" of a block device, "0:0" for a regular file. */
  bdev: string
}

/** Linux dev_t encoding (glibc's gnu_dev_major/minor). */
function devMajor (dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn))
}
function devMinor (dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn))
}

function storeError (code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code })
}

/**
 * A regular file (sparse is fine) or a block device, opened read-write. Requests run
 * concurrently in the thread pool, ordered only where they overlap (see ordering.ts).
 * A write is acknowledged once pwrite returned, i.e. it is in the page cache: a daemon
 * crash cannot lose it; FLUSH CACHE makes it durable with fdatasync.
 */
export class BackingStore implements BackingStoreInfo {
  private readonly scheduler: OrderedScheduler<BlockRequest>
  private closed = false
  private drained: (() => void) | null = null
  /** Replies still to be sent whose data comes from `map` (see beginMappedRead). */
  private mappedReads = 0
  private readonly fileMap: FileMap | null

  private constructor (
    readonly path: string,
    readonly fd: number,
    readonly size: number,
    readonly bdev: string,
    /** In RAM (tmpfs/ramfs file, brd ram disk): I/O never waits on a device. */
    readonly memory: boolean,
    /** Opened with O_DIRECT. */
    readonly direct: boolean,
    private readonly disk: DiskEngine,
    /** Every byte has its storage (not sparse): reading it through a map allocates nothing. */
    allocated: boolean,
  ) {
    this.scheduler = new OrderedScheduler(req => this.startTransfer(req))
    this.fileMap = null
    // Reads are sent from the map and writes copied into it (see map). Not for sparse
    // files: a read fault on a tmpfs hole allocates a page, where pread returns zeros
    // for free, so reading a thin export through a map would fill RAM.
    if (this.inline && allocated) {
      try {
        this.fileMap = mapFile(fd, size, true)
      } catch (err) {
        debug('%s: cannot map (%s); reads and writes use pread/pwrite', path, (err as Error).message)
      }
    }
  }

  /**
   * Every request completes within the disk engine's next kick (a file in RAM on the
   * io_uring engine): the packet loop may hand it buffers valid only until then.
   */
  get inline (): boolean {
    return this.memory && this.disk.memoryInline && !this.closed
  }

  /**
   * For a file in RAM on an engine that completes inline: a shared mapping the packet
   * loop can send reply data from without reading it first (the engine also copies
   * writes into it instead of calling pwrite). null otherwise, and once close() has
   * begun (new reads then fail like any other request).
   */
  get map (): FileMap | null {
    return this.closed ? null : this.fileMap
  }

  /** Opens a backing path; fails with ENOENT-style errors naming the cause. */
  /**
   * `direct` asks for O_DIRECT (vblade's -d): the page cache is bypassed, for backing
   * disks that other hosts may also write or to keep the cache for something else. A
   * file system that refuses it (EINVAL) gets buffered I/O; `store.direct` tells which.
   */
  static async open (path: string, disk: DiskEngine, direct = false): Promise<BackingStore> {
    let st: fs.Stats
    try {
      st = await fs.promises.stat(path)
    } catch (err) {
      throw storeError('ENOENT', `cannot open ${path}: ${(err as Error).message}`)
    }
    if (!st.isFile() && !st.isBlockDevice()) {
      throw storeError('ENOENT', `${path} is neither a regular file nor a block device`)
    }
    const openWith = (flags: number): Promise<number> => new Promise<number>((resolve, reject) =>
      fs.open(path, flags, (err, fd) => err ? reject(err) : resolve(fd)))
    let fd: number
    let isDirect = direct
    try {
      try {
        fd = await openWith(fs.constants.O_RDWR | (direct ? fs.constants.O_DIRECT : 0))
      } catch (err) {
        if (!direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        debug('%s: O_DIRECT refused, using buffered I/O', path)
        isDirect = false
        fd = await openWith(fs.constants.O_RDWR)
      }
    } catch (err) {
      throw storeError('ENOENT', `cannot open ${path} read-write: ${(err as Error).message}`)
    }
    try {
      // Asynchronous even here: a synchronous call must never hold up the packet loop.
      const fst = await new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, (err, st) => err ? reject(err) : resolve(st)))
      const bytes = fst.isBlockDevice() ? blockDeviceSize(fd) : fst.size
      const size = bytes - (bytes % SECTOR_SIZE)
      if (size === 0) throw storeError('ENOENT', `${path} has no whole sector to export (size ${bytes})`)
      const bdev = fst.isBlockDevice() ? `${devMajor(fst.rdev)}:${devMinor(fst.rdev)}` : '0:0'
      const memory = fst.isBlockDevice()
        ? devMajor(fst.rdev) === RAMDISK_MAJOR
        : MEMORY_FS_MAGIC.includes((await fs.promises.statfs(path)).type)
      debug('opened %s: %d bytes, bdev %s%s%s', path, size, bdev, memory ? ', in memory' : '', isDirect ? ', O_DIRECT' : '')
      const allocated = fst.isBlockDevice() || fst.blocks * 512 >= size
      return new BackingStore(path, fd, size, bdev, memory, isDirect, disk, allocated)
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  get sectors (): number {
    return this.size / SECTOR_SIZE
  }

  /**
   * A read served from `map`: its data is copied when the reply is sent, so the port
   * must send it after every write that arrived before it has completed (memory-backed
   * writes complete within the kick that follows their batch), and call endMappedRead()
   * once it is sent or dropped. close() waits for that, then unmaps.
   */
  beginMappedRead (): void {
    this.mappedReads++
  }

  endMappedRead (): void {
    this.mappedReads--
    this.checkDrained()
  }

  private checkDrained (): void {
    if (this.drained !== null && this.scheduler.outstanding === 0 && this.mappedReads === 0) this.drained()
  }

  /** Requests accepted and not yet complete. */
  get inFlight (): number {
    return this.scheduler.outstanding + this.mappedReads
  }

  /**
   * Starts a request. The caller has checked the range; the buffer must stay untouched
   * until ioComplete.
   */
  submit (req: BlockRequest): void {
    if (this.closed) {
      req.ioComplete(storeError('EIO', `${this.path} is closed`))
      return
    }
    req.begin(this)
    this.scheduler.submit(req)
  }

  private startTransfer (req: BlockRequest): void {
    if (req.kind === IoKind.Flush) this.disk.sync(this.fd, req, this.memory)
    else this.disk.transfer(this.fd, req, 0, this.memory, this.fileMap)
  }

  /** @internal */ continueTransfer (req: BlockRequest, done: number): void {
    this.disk.transfer(this.fd, req, done, this.memory, this.fileMap)
  }

  /** @internal */ finish (req: BlockRequest, err: NodeJS.ErrnoException | null): void {
    this.scheduler.complete(req)
    if (err !== null) debug('%s: %s failed: %s', this.path, IO_KIND_NAMES[req.kind], err.message)
    req.ioComplete(err)
    this.checkDrained()
  }

  /** Closes the file once every outstanding request has completed. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.scheduler.outstanding > 0 || this.mappedReads > 0) await new Promise<void>(resolve => { this.drained = resolve })
    this.fileMap?.close()
    await new Promise<void>(resolve => fs.close(this.fd, () => resolve()))
  }
}
