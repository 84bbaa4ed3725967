// Type declarations for the parts of fuse-native 2.2.x (CommonJS, no bundled types) that
// the control plane uses. See node_modules/fuse-native/index.js for the ground truth.
declare module 'fuse-native' {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Fuse {
  /** A return code: 0 (or a byte count for read/write) on success, a negative errno on failure. */
  type Code = number

  interface FuseStat {
    mode: number
    uid?: number
    gid?: number
    size?: number
    nlink?: number
    ino?: number
    dev?: number
    rdev?: number
    blksize?: number
    blocks?: number
    atime?: Date | number
    mtime?: Date | number
    ctime?: Date | number
  }

  interface FuseOps {
    init? (cb: (err: Code) => void): void
    getattr? (path: string, cb: (err: Code, stat?: FuseStat) => void): void
    access? (path: string, mode: number, cb: (err: Code) => void): void
    readdir? (path: string, cb: (err: Code, names?: string[], stats?: FuseStat[]) => void): void
    open? (path: string, flags: number, cb: (err: Code, fd?: number) => void): void
    opendir? (path: string, flags: number, cb: (err: Code, fd?: number) => void): void
    release? (path: string, fd: number, cb: (err: Code) => void): void
    releasedir? (path: string, fd: number, cb: (err: Code) => void): void
    read? (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: Code) => void): void
    write? (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: Code) => void): void
    truncate? (path: string, size: number, cb: (err: Code) => void): void
    ftruncate? (path: string, fd: number, size: number, cb: (err: Code) => void): void
    flush? (path: string, fd: number, cb: (err: Code) => void): void
    fsync? (path: string, fd: number, datasync: boolean, cb: (err: Code) => void): void
    create? (path: string, mode: number, cb: (err: Code, fd?: number) => void): void
    mknod? (path: string, mode: number, dev: number, cb: (err: Code) => void): void
    unlink? (path: string, cb: (err: Code) => void): void
    rename? (src: string, dest: string, cb: (err: Code) => void): void
    link? (src: string, dest: string, cb: (err: Code) => void): void
    symlink? (src: string, dest: string, cb: (err: Code) => void): void
    readlink? (path: string, cb: (err: Code, target?: string) => void): void
    mkdir? (path: string, mode: number, cb: (err: Code) => void): void
    rmdir? (path: string, cb: (err: Code) => void): void
    chmod? (path: string, mode: number, cb: (err: Code) => void): void
    chown? (path: string, uid: number, gid: number, cb: (err: Code) => void): void
    utimens? (path: string, atime: number, mtime: number, cb: (err: Code) => void): void
    setxattr? (path: string, name: string, value: Buffer, position: number, flags: number, cb: (err: Code) => void): void
    getxattr? (path: string, name: string, position: number, cb: (err: Code, value?: Buffer | null) => void): void
    listxattr? (path: string, cb: (err: Code, list?: string[]) => void): void
    removexattr? (path: string, name: string, cb: (err: Code) => void): void
    statfs? (path: string, cb: (err: Code, statfs?: Record<string, number>) => void): void
  }

  interface FuseOptions {
    debug?: boolean
    force?: boolean
    mkdir?: boolean
    allowOther?: boolean
    defaultPermissions?: boolean
    fsname?: string
    subtype?: string
    /** Per-operation time limit in ms (default 15000), or false, or { default, [op]: ms }. */
    timeout?: number | false | Record<string, number | false>
    [option: string]: unknown
  }
  }

  class Fuse {
    constructor (mnt: string, ops: Fuse.FuseOps, opts?: Fuse.FuseOptions)
    readonly mnt: string
    mount (cb: (err: Error | null) => void): void
    unmount (cb: (err: Error | null) => void): void
    /** The `-o...` string handed to libfuse; overridden by the control plane. */
    protected _fuseOptions (): string
    static unmount (mnt: string, cb: (err: Error | null) => void): void

    static EPERM: number
    static ENOENT: number
    static EIO: number
    static EBADF: number
    static EACCES: number
    static EBUSY: number
    static EEXIST: number
    static ENODEV: number
    static ENOTDIR: number
    static EISDIR: number
    static EINVAL: number
    static E2BIG: number
    static ENOSYS: number
    static ENODATA: number
    static ENOTCONN: number
    static ETIMEDOUT: number
    static EROFS: number
  }

  export = Fuse
}
