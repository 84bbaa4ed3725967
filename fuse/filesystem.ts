/**
 * fuse-native operations over the ControlTree, with sysfs's semantics:
 *  - opening a write-only file for reading, or a read-only file for writing, fails with
 *    EACCES even for root (kernfs' extra open check; verified on Linux 6.x sysfs);
 *  - each write(2) is one command, executed before the write returns; success returns the
 *    full length, failure the command's errno;
 *  - a read at offset 0 renders the value afresh (like seq_file); later offsets continue
 *    from that rendering, so one `cat` always sees one consistent value;
 *  - the name space cannot be changed: mkdir, rmdir, unlink, rename, link, symlink, chmod,
 *    chown give EPERM; creating a file gives EACCES; truncation of a writable file is a no-op.
 * See fuse/README.md for the full errno table.
 */
import type { FuseOps, FuseStat } from 'fuse-native'
import { constants as fsConstants } from 'node:fs'
import { constants } from 'node:os'
import { ControlTree, MODE_BITS } from './tree'
import type { FileNode, Node } from './tree'
import { FsError, isExpected, toNegativeErrno } from './errors'

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const O_ACCMODE = 3
const O_WRONLY = 1
const O_APPEND = fsConstants.O_APPEND

interface Handle {
  readonly path: string
  readonly node: FileNode
  readonly append: boolean
  /** The rendering reads are served from; refreshed by a read at offset 0. */
  snapshot?: Buffer
  /** Where the next sequential write lands (end of the last successful one). */
  nextOffset: number
}

export interface FilesystemOptions {
  log?: (msg: string) => void
  /** Owner reported for every node (default: the daemon's uid/gid). */
  uid?: number
  gid?: number
}

function err (code: keyof typeof constants.errno): number {
  return -constants.errno[code]
}

/** A FileNode, or the negative errno for anything else at that path. */
function fileAt (tree: ControlTree, path: string): FileNode | number {
  const node = tree.lookup(path)
  if (node === undefined) return err('ENOENT')
  if (node.kind === 'dir') return err('EISDIR')
  return node
}

export class ControlFilesystem {
  readonly tree: ControlTree
  private readonly handles = new Map<number, Handle>()
  private nextHandle = 1
  private readonly log: (msg: string) => void
  private readonly uid: number
  private readonly gid: number
  private readonly born = new Date()

  constructor (tree: ControlTree, opts: FilesystemOptions = {}) {
    this.tree = tree
    this.log = opts.log ?? (() => {})
    this.uid = opts.uid ?? (process.getuid?.() ?? 0)
    this.gid = opts.gid ?? (process.getgid?.() ?? 0)
  }

  /** Open file handles (for tests: every handle must be released). */
  get openHandles (): number {
    return this.handles.size
  }

  stat (node: Node): FuseStat {
    const times = { atime: this.born, mtime: this.born, ctime: this.born }
    if (node.kind === 'dir') {
      return { mode: S_IFDIR | 0o755, nlink: 2 + node.subdirs(), size: 0, uid: this.uid, gid: this.gid, ...times }
    }
    // The exact length of what a read would return now, so tools that trust st_size work.
    const size = node.access === 'wo' ? 0 : Buffer.byteLength(node.render())
    return { mode: S_IFREG | MODE_BITS[node.access], nlink: 1, size, uid: this.uid, gid: this.gid, blksize: 4096, blocks: Math.ceil(size / 512), ...times }
  }

  private allocHandle (h: Handle): number {
    for (;;) {
      const fd = this.nextHandle
      this.nextHandle = this.nextHandle >= 0xfffffff0 ? 1 : this.nextHandle + 1
      if (!this.handles.has(fd)) {
        this.handles.set(fd, h)
        return fd
      }
    }
  }

  /** Runs an operation, turning exceptions into errnos so a bug can never take the daemon down. */
  private guard (op: string, path: string, fail: (code: number) => void, fn: () => void): void {
    try {
      fn()
    } catch (e) {
      if (!isExpected(e)) this.log(`fuse ${op} ${path}: unexpected error: ${(e as Error)?.stack ?? String(e)}`)
      fail(toNegativeErrno(e))
    }
  }

  ops (): FuseOps {
    const tree = this.tree
    const refuse = (code: keyof typeof constants.errno) => (...args: unknown[]): void => {
      const cb = args[args.length - 1] as (code: number) => void
      cb(err(code))
    }
    return {
      init: cb => cb(0),

      getattr: (path, cb) => this.guard('getattr', path, cb, () => {
        const node = tree.lookup(path)
        if (node === undefined) return cb(err('ENOENT'))
        cb(0, this.stat(node))
      }),

      readdir: (path, cb) => this.guard('readdir', path, cb, () => {
        const node = tree.lookup(path)
        if (node === undefined) return cb(err('ENOENT'))
        if (node.kind !== 'dir') return cb(err('ENOTDIR'))
        cb(0, ['.', '..', ...node.entries()])
      }),

      open: (path, flags, cb) => this.guard('open', path, cb, () => {
        const node = fileAt(tree, path)
        if (typeof node === 'number') return cb(node)
        const acc = flags & O_ACCMODE
        const wantRead = acc !== O_WRONLY
        const wantWrite = acc !== 0
        if (wantRead && node.access === 'wo') return cb(err('EACCES'))
        if (wantWrite && node.access === 'ro') return cb(err('EACCES'))
        cb(0, this.allocHandle({ path, node, append: (flags & O_APPEND) !== 0, nextOffset: 0 }))
      }),

      release: (_path, fd, cb) => {
        this.handles.delete(fd)
        cb(0)
      },

      flush: (_path, _fd, cb) => cb(0),
      fsync: (_path, _fd, _datasync, cb) => cb(0),

      read: (path, fd, buf, len, pos, cb) => this.guard('read', path, cb, () => {
        const h = this.handles.get(fd)
        if (h === undefined) return cb(err('EBADF'))
        if (h.snapshot === undefined || pos === 0) h.snapshot = Buffer.from(h.node.render())
        if (pos >= h.snapshot.length) return cb(0)
        const n = h.snapshot.copy(buf, 0, pos, Math.min(h.snapshot.length, pos + len))
        cb(n)
      }),

      write: (path, fd, buf, len, pos, cb) => this.guard('write', path, cb, () => {
        const h = this.handles.get(fd)
        if (h === undefined) return cb(err('EBADF'))
        // One write(2) is one command. A later sequential write on the same descriptor is
        // another command (as in sysfs); a write anywhere else (pwrite, lseek) is refused.
        if (!h.append && pos !== 0 && pos !== h.nextOffset) {
          throw new FsError('EINVAL', `write at offset ${pos}: control files take whole commands at offset 0`)
        }
        const data = Buffer.from(buf.subarray(0, len)) // our own copy: the command runs asynchronously
        h.node.write(data).then(() => {
          h.nextOffset = pos + len
          cb(len)
        }, (e: unknown) => {
          if (isExpected(e)) {
            this.log(`write ${path}: ${JSON.stringify(data.subarray(0, 200).toString('latin1'))}: ${e.code}: ${e.message}`)
          } else {
            this.log(`write ${path}: unexpected error: ${(e as Error)?.stack ?? String(e)}`)
          }
          cb(toNegativeErrno(e))
        })
      }),

      truncate: (path, _size, cb) => this.guard('truncate', path, cb, () => {
        const node = fileAt(tree, path)
        if (typeof node === 'number') return cb(node)
        cb(node.access === 'ro' ? err('EACCES') : 0) // O_TRUNC on a control file: nothing to do
      }),

      ftruncate: (_path, fd, _size, cb) => {
        const h = this.handles.get(fd)
        if (h === undefined) return cb(err('EBADF'))
        cb(h.node.access === 'ro' ? err('EACCES') : 0)
      },

      statfs: (_path, cb) => cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 }),

      // sysfs' answers to attempts at changing the name space (verified on Linux 6.x).
      create: refuse('EACCES'),
      mknod: refuse('EACCES'),
      mkdir: refuse('EPERM'),
      rmdir: refuse('EPERM'),
      unlink: refuse('EPERM'),
      rename: refuse('EPERM'),
      link: refuse('EPERM'),
      symlink: refuse('EPERM'),
      chmod: refuse('EPERM'),
      chown: refuse('EPERM'),
      // `touch` on a control file is harmless: accept and ignore.
      utimens: (path, _atime, _mtime, cb) => this.guard('utimens', path, cb, () => {
        cb(tree.lookup(path) === undefined ? err('ENOENT') : 0)
      })
    }
  }
}
