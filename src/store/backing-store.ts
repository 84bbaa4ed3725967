import fs from 'node:fs'
import createDebug from 'debug'
import { blockDeviceSize } from '../native/block-device'
import { mapFile, type FileMap } from '../native/memory'
import { BlockRequest, type RequestOwner } from './block-request'
import { IO_KIND_NAMES, IoKind, OrderedScheduler } from './ordering'
import type { DiskEngine, DiskFile } from './disk-engine'

const debug = createDebug('kvblade:store')

export const SECTOR_SIZE = 512
/** statfs f_type of tmpfs and ramfs. */
const RAM_FS_MAGIC = [0x01021994, 0x858458f6]
/**
 * File systems that answer io_uring's "would block" honestly (ext4, xfs, btrfs, f2fs,
 * bcachefs). Others (FUSE, NFS, CIFS, overlayfs...) may do the whole I/O inside the
 * submit call, which would stall the packet loop: their requests go to io_uring's
 * workers at once.
 */
const NOWAIT_FS_MAGIC = [0xef53, 0x58465342, 0x9123683e, 0xf2f52010, 0xca451a4e]
/** brd, /dev/ram*. */
const RAMDISK_MAJOR = 1

/**
 * When a write is acknowledged: "writethrough" once it is on stable storage (after an
 * fdatasync that covers it), "writeback" once it is in the backing file (page cache).
 */
export type AckMode = 'writethrough' | 'writeback'

/** The fdatasync of a group commit: one for every write that completed before it started. */
class GroupSync extends BlockRequest {
  constructor (private readonly done: (err: NodeJS.ErrnoException | null) => void) {
    super()
    this.kind = IoKind.Flush
  }

  ioComplete (err: NodeJS.ErrnoException | null): void {
    this.done(err)
  }
}

/** Group commit counters: syncs issued for it, and the writes they made durable. */
export interface SyncCounters {
  syncs: number
  syncedWrites: number
}

export interface BackingStoreInfo {
  path: string
  /** Size in bytes, a multiple of 512 (a trailing partial sector is not exported). */
  size: number
  /** "MAJ:MIN" of a block device, "0:0" for a regular file. */
  bdev: string
}

export interface OpenOptions {
  /**
   * O_DIRECT (vblade's -d): the page cache is bypassed, for backing disks other hosts
   * may also write or to keep the cache for something else. A file system that refuses
   * it (EINVAL) gets buffered I/O; `store.direct` tells which.
   */
  direct?: boolean
  /** Opened read-only (so read-only files, devices and mounts can be exported); writes are refused above. */
  readOnly?: boolean
}

/** Linux dev_t encoding (glibc's gnu_dev_major/minor). */
export function devMajor (dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn))
}
export function devMinor (dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn))
}

function storeError (code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code })
}

/** A refused open keeps the errno the system gave (EROFS, EACCES, EISDIR, ENXIO...). */
function openError (err: unknown, what: string): NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException
  return storeError(e.code ?? 'EIO', `${what}: ${e.message}`)
}

function openFd (path: string, flags: number): Promise<number> {
  return new Promise<number>((resolve, reject) => fs.open(path, flags, (err, fd) => err ? reject(err) : resolve(fd)))
}

function fstat (fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => err ? reject(err) : resolve(st)))
}

/** Whole sectors of the file or device open as `fd`, in bytes. */
async function sizeOf (fd: number, st?: fs.Stats): Promise<number> {
  const s = st ?? await fstat(fd)
  const bytes = s.isBlockDevice() ? blockDeviceSize(fd) : s.size
  return bytes - (bytes % SECTOR_SIZE)
}

/**
 * A regular file (sparse is fine) or a block device. Requests run concurrently (on
 * io_uring or the thread pool, see disk-engine.ts), ordered only where they overlap
 * (see ordering.ts). In writethrough (the default above us) a write is acknowledged
 * once it is on stable storage: the writes that complete together share one
 * fdatasync (group commit), and while it runs new writes gather for the next. In
 * writeback a write is acknowledged once it is in the file (the page cache; a daemon
 * crash cannot lose it, a power cut can), and FLUSH CACHE makes it durable.
 *
 * A file in RAM on an engine that can run it inline (see DiskEngine) is also mapped:
 * its reads are answered from the map (the kernel copies the data into the reply when
 * it is sent), and its writes are copied into it. Such a read is outstanding until its
 * reply has left, so a later write of the same sectors first fixes the read's data
 * (fixFromFile): a read never sees a write that came after it.
 *
 * The size is read again by checkSize() (the engine calls it periodically and after
 * errors); a file or device that grew or shrank is then served at its new size.
 */
export class BackingStore implements BackingStoreInfo, RequestOwner, DiskFile {
  private readonly scheduler: OrderedScheduler<BlockRequest>
  private closed = false
  /** Who waits for the store to have nothing in flight (whenIdle). */
  private idleWaiters: Array<() => void> = []
  /** Requests held back until an earlier store of the same target is idle (see holdUntil); null when not holding. */
  private holding: BlockRequest[] | null = null
  /** Reads answered from `map` whose replies have not left yet, in no particular order. */
  private readonly mappedReads: BlockRequest[] = []
  /** Those of them the scheduler does not hold (answered at once: no write was outstanding). */
  private mappedOutside = 0
  private fileMap: FileMap | null = null
  /** fileMap's length, kept here: reading it from the native object on every read cost a few per cent. */
  private mapBytes = 0
  /** Maps of an earlier size: replies still queued may take data from them; unmapped at close. */
  private readonly oldMaps: FileMap[] = []
  /** The store's requests complete inside the disk engine's next kick (see DiskEngine). */
  readonly inline: boolean
  /** Requests go to io_uring's workers at once (see NOWAIT_FS_MAGIC). */
  readonly async: boolean
  private bytes: number
  /** How writes are acknowledged (see AckMode); files in RAM have nothing to sync either way. */
  ackMode: AckMode = 'writeback'
  /** Group commit: writes in the page cache whose acknowledgement waits for the next sync. */
  private unsynced: BlockRequest[] = []
  /** The writes the sync in flight covers (null: none in flight). */
  private syncing: BlockRequest[] | null = null
  private syncScheduled = false
  private readonly groupSync = new GroupSync(err => this.synced(err))
  private readonly syncOwner: RequestOwner = {
    path: '',
    continueTransfer: () => {},
    finish: (req, err) => req.ioComplete(err),
  }
  readonly syncCounters: SyncCounters = { syncs: 0, syncedWrites: 0 }

  private constructor (
    readonly path: string,
    readonly fd: number,
    size: number,
    readonly bdev: string,
    /** In RAM (tmpfs/ramfs file, brd ram disk): I/O never waits on a device. */
    readonly inRam: boolean,
    /** Opened with O_DIRECT. */
    readonly direct: boolean,
    /** Opened read-only. */
    readonly readOnly: boolean,
    private readonly disk: DiskEngine,
    /** Every byte has its storage (not sparse): reading it through a map allocates nothing. */
    private readonly allocated: boolean,
    async: boolean,
  ) {
    this.bytes = size
    this.scheduler = new OrderedScheduler(req => this.start(req))
    this.inline = inRam && disk.inline
    this.async = async && !this.inline
    this.remap()
  }

  /** Opens a backing path; a refusal carries the errno that says why (.code) and names the path. */
  static async open (path: string, disk: DiskEngine, options: OpenOptions = {}): Promise<BackingStore> {
    let st: fs.Stats
    try {
      st = await fs.promises.stat(path)
    } catch (err) {
      throw openError(err, `cannot open ${path}`)
    }
    if (st.isDirectory()) throw storeError('EISDIR', `cannot export ${path}: it is a directory`)
    if (!st.isFile() && !st.isBlockDevice()) {
      throw storeError('ENOTBLK', `cannot export ${path}: neither a regular file nor a block device`)
    }
    const readOnly = options.readOnly === true
    const mode = readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR
    const direct = options.direct === true
    let fd: number
    let isDirect = direct
    try {
      try {
        fd = await openFd(path, mode | (direct ? fs.constants.O_DIRECT : 0))
      } catch (err) {
        if (!direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        debug('%s: O_DIRECT refused, using buffered I/O', path)
        isDirect = false
        fd = await openFd(path, mode)
      }
    } catch (err) {
      throw openError(err, `cannot open ${path} ${readOnly ? 'read-only' : 'read-write'}`)
    }
    try {
      // Asynchronous even here: a synchronous call must never hold up the packet loop.
      const fst = await fstat(fd)
      const size = await sizeOf(fd, fst)
      // kvblade's answer to an empty backing.
      if (size === 0) throw storeError('ENOENT', `${path} has no whole sector to export (size ${fst.size})`)
      const bdev = fst.isBlockDevice() ? `${devMajor(fst.rdev)}:${devMinor(fst.rdev)}` : '0:0'
      const fsType = fst.isBlockDevice() ? 0 : (await fs.promises.statfs(path)).type
      const inRam = fst.isBlockDevice() ? devMajor(fst.rdev) === RAMDISK_MAJOR : RAM_FS_MAGIC.includes(fsType)
      const async = !fst.isBlockDevice() && !inRam && !NOWAIT_FS_MAGIC.includes(fsType)
      debug('opened %s: %d bytes, bdev %s%s%s%s%s', path, size, bdev, inRam ? ', in RAM' : '', isDirect ? ', O_DIRECT' : '',
        readOnly ? ', read-only' : '', async ? `, file system 0x${fsType.toString(16)}: async submission` : '')
      const allocated = fst.isBlockDevice() || fst.blocks * 512 >= size
      return new BackingStore(path, fd, size, bdev, inRam, isDirect, readOnly, disk, allocated, async)
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  /** Size in bytes, whole sectors, as last read. */
  get size (): number {
    return this.bytes
  }

  get sectors (): number {
    return this.bytes / SECTOR_SIZE
  }

  /** The file's map while reads are answered from it (see the class comment); null otherwise and once closing. */
  get map (): FileMap | null {
    return this.closed ? null : this.fileMap
  }

  /** DiskFile: where an inline engine may copy write data. */
  get writeMap (): FileMap | null {
    return this.readOnly ? null : this.fileMap
  }

  /** Maps the file at its current size (a file in RAM, not sparse: see the class comment). */
  private remap (): void {
    if (!this.inline || !this.allocated) return
    if (this.fileMap !== null) this.oldMaps.push(this.fileMap)
    this.fileMap = null
    this.mapBytes = 0
    // Not for sparse files: a read fault on a tmpfs hole allocates a page, where pread
    // returns zeros for free, so reading a thin export through a map would fill RAM.
    try {
      this.fileMap = mapFile(this.fd, this.bytes, !this.readOnly)
      this.mapBytes = this.fileMap.length
    } catch (err) {
      debug('%s: cannot map (%s); reads and writes use pread/pwrite', this.path, (err as Error).message)
    }
  }

  /**
   * Reads the size again. Returns the new size in bytes if it changed (then the store
   * serves it from now on), else null. A size that cannot be read is left as it was.
   */
  async checkSize (): Promise<number | null> {
    if (this.closed) return null
    let size: number
    try {
      size = await sizeOf(this.fd)
    } catch (err) {
      debug('%s: cannot read the size: %s', this.path, (err as Error).message)
      return null
    }
    if (size === this.bytes || this.closed) return null
    debug('%s: size %d → %d bytes', this.path, this.bytes, size)
    this.bytes = size
    if (size > 0) this.remap()
    return size
  }

  /** Requests accepted and not yet answered (mapped reads until their replies leave, writes until synced). */
  get inFlight (): number {
    return this.scheduler.outstanding + this.mappedOutside + this.unsynced.length + (this.syncing?.length ?? 0) + (this.holding?.length ?? 0)
  }

  /**
   * Starts a request. The caller has checked the range; the buffer must stay untouched
   * until ioComplete (or, for a read answered from the map, until mappedReadDone).
   */
  submit (req: BlockRequest): void {
    if (this.closed) {
      req.ioComplete(storeError('EIO', `${this.path} is closed`))
      return
    }
    if (this.holding !== null) {
      // Counted as blocked: a write holding the receive ring gets its data copied out at the batch's end.
      req.blockers++
      this.holding.push(req)
      return
    }
    this.admit(req)
  }

  /** A request accepted: into the ordering (or answered from the map at once). */
  private admit (req: BlockRequest): void {
    if (req.kind === IoKind.Write && this.mappedReads.length > 0) this.fixMappedReads(req)
    req.begin(this)
    // With no write outstanding a read conflicts with nothing: answered from the map at
    // once, without the scheduler (a later write still fixes it first).
    if (req.kind === IoKind.Read && this.scheduler.writesOutstanding === 0) {
      const map = this.map
      if (map !== null && req.offset + req.length <= this.mapBytes && req.sendFromMap(map)) {
        this.listMapped(req, false)
        return
      }
    }
    this.scheduler.submit(req)
  }

  private listMapped (req: BlockRequest, inOrder: boolean): void {
    req.mappedAt = this.mappedReads.push(req) - 1
    req.mappedInOrder = inOrder
    if (!inOrder) this.mappedOutside++
  }

  /** Runs once every earlier request this one overlaps is done. Every started request gets exactly one finish(). */
  private start (req: BlockRequest): void {
    try {
      if (req.kind === IoKind.Flush) return this.disk.sync(this, req)
      // A read whose data cannot change before its reply leaves, because nothing later
      // waits for it, can be answered from the map without reading.
      const map = this.map
      if (req.kind === IoKind.Read && map !== null && req.offset + req.length <= this.mapBytes &&
          !this.scheduler.blocksLater(req) && req.sendFromMap(map)) {
        this.listMapped(req, true)
        return
      }
      this.disk.transfer(this, req, 0)
    } catch (err) {
      this.finish(req, Object.assign(new Error(`${IO_KIND_NAMES[req.kind]} not started: ${(err as Error).message}`), { code: 'EIO' }))
    }
  }

  /** A write is coming: mapped reads of the same sectors take their data now, before it lands. */
  private fixMappedReads (write: BlockRequest): void {
    const reads = this.mappedReads
    for (let i = reads.length - 1; i >= 0; i--) {
      const read = reads[i]
      if (read.offset < write.offset + write.length && write.offset < read.offset + read.length) {
        if (!read.fixFromFile(this.fd)) debug('%s: a mapped read at byte %d found the file shorter', this.path, read.offset)
        this.mappedReadDone(read)
      }
    }
  }

  /** A read answered from the map is over: its reply left, was dropped, or was fixed. */
  mappedReadDone (req: BlockRequest): void {
    const at = req.mappedAt
    if (at < 0 || this.mappedReads[at] !== req) return
    req.mappedAt = -1
    const last = this.mappedReads.pop()!
    if (last !== req) {
      this.mappedReads[at] = last
      last.mappedAt = at
    }
    if (req.mappedInOrder) this.scheduler.complete(req)
    else this.mappedOutside--
    this.checkDrained()
  }

  private checkDrained (): void {
    if (this.idleWaiters.length === 0 || this.inFlight > 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** Resolves once nothing is in flight (answered, synced, and every mapped reply gone). */
  whenIdle (): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise<void>(resolve => { this.idleWaiters.push(resolve) })
  }

  /**
   * Holds every request submitted from now on until `before` resolves, then starts them
   * in arrival order. A readd: the target's new store must not run a request ahead of
   * one the old store still has (the same sectors, often the same file), nor a write
   * ahead of an old mapped read whose reply has not left.
   */
  holdUntil (before: Promise<void>): void {
    if (this.holding !== null) return
    this.holding = []
    const release = (): void => {
      const held = this.holding ?? []
      this.holding = null
      for (const req of held) {
        req.blockers--
        try {
          this.admit(req)
        } catch (err) {
          // Never out of this promise callback (an unhandled rejection ends the process): answered as failed.
          req.ioComplete(storeError('EIO', `${IO_KIND_NAMES[req.kind]} not started after a readd: ${(err as Error).message}`))
        }
      }
    }
    before.then(release, release)
  }

  /** @internal */ continueTransfer (req: BlockRequest, done: number): void {
    try {
      this.disk.transfer(this, req, done)
    } catch (err) {
      this.finish(req, Object.assign(new Error(`${IO_KIND_NAMES[req.kind]} not continued: ${(err as Error).message}`), { code: 'EIO' }))
    }
  }

  /** @internal */ finish (req: BlockRequest, err: NodeJS.ErrnoException | null): void {
    // Done as far as ordering goes (it is in the file): later overlapping requests may run.
    this.scheduler.complete(req)
    if (err !== null) debug('%s: %s failed: %s', this.path, IO_KIND_NAMES[req.kind], err.message)
    if (err === null && req.kind === IoKind.Write && this.ackMode === 'writethrough' && !this.inline) {
      // Acknowledged only once on stable storage, with the writes that completed with it.
      this.unsynced.push(req)
      this.scheduleSync()
      return
    }
    req.ioComplete(err)
    this.checkDrained()
  }

  /**
   * Starts the next group sync once the current turn is over, so that writes completing
   * together (one receive batch, one reap) share it; while one runs, new writes wait
   * for the next.
   */
  private scheduleSync (): void {
    if (this.syncScheduled || this.syncing !== null) return
    this.syncScheduled = true
    queueMicrotask(() => {
      this.syncScheduled = false
      this.startSync()
    })
  }

  private startSync (): void {
    if (this.syncing !== null || this.unsynced.length === 0) return
    this.syncing = this.unsynced
    this.unsynced = []
    this.syncCounters.syncs++
    this.groupSync.begin(this.syncOwner)
    try {
      this.disk.sync(this, this.groupSync)
    } catch (err) {
      this.synced(Object.assign(new Error(`sync not started: ${(err as Error).message}`), { code: 'EIO' }))
    }
  }

  /** The group sync is done: its writes are acknowledged (as failed, if it failed), and the next one starts. */
  private synced (err: NodeJS.ErrnoException | null): void {
    const writes = this.syncing ?? []
    this.syncing = null
    if (err !== null) debug('%s: group sync of %d writes failed: %s', this.path, writes.length, err.message)
    else this.syncCounters.syncedWrites += writes.length
    for (const req of writes) req.ioComplete(err)
    if (this.unsynced.length > 0) this.startSync()
    this.checkDrained()
  }

  /**
   * Closes the file once every outstanding request has completed, after an fdatasync
   * if writable: writes acknowledged in writeback are in the page cache only until then.
   * A failed sync is reported to `warn` (the file is closed all the same).
   */
  async close (warn: (message: string) => void = msg => debug('%s', msg)): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.whenIdle()
    if (!this.readOnly) {
      // Directly, not through the disk engine: nothing else is outstanding, and the engine may need kicks no one gives now.
      const err = await new Promise<NodeJS.ErrnoException | null>(resolve => fs.fdatasync(this.fd, resolve))
      if (err !== null) warn(`${this.path}: the last sync before closing failed; writes acknowledged in writeback may be lost: ${err.message}`)
    }
    this.fileMap?.close()
    for (const map of this.oldMaps) map.close()
    await new Promise<void>(resolve => fs.close(this.fd, () => resolve()))
  }
}
