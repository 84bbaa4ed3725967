/**
 * faultfs: a FUSE file system holding one disk image whose writes sit in a volatile cache
 * until fsync, with a power switch and injected faults, for testing that an exporter keeps
 * every write it acknowledged. Run as its own process (never inside the process under
 * test: that one must be free to block on the mount):
 *
 *   node server.js --mount DIR --backing FILE [--size BYTES] [--mode volatile|writethrough] [--name disk.img]
 *
 * It prints one ready line (JSON) on stdout once mounted, then answers one JSON line per
 * JSON line on stdin (protocol.ts). It unmounts on SIGTERM, SIGINT and stdin EOF; what the
 * overlay holds then is lost, as in a power cut. Logs: DEBUG=faultfs:* on stderr.
 */
import Fuse from 'fuse-native'
import type { FuseOps, FuseStat } from 'fuse-native'
import createDebug from 'debug'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import { constants } from 'node:os'
import { dirname, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { answer } from './control'
import { DiskModel, MAX_SIZE } from './disk-model'
import type { IoOp, Mode, Ready } from './protocol'

const debug = createDebug('faultfs:server')

const FSNAME = 'faultfs'
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
function errno (code: keyof typeof constants.errno): number {
  return -constants.errno[code]
}

interface Options {
  mount: string
  backing: string
  size?: number
  mode: Mode
  name: string
}

const USAGE = 'usage: server.js --mount DIR --backing FILE [--size BYTES] [--mode volatile|writethrough] [--name NAME]'

/** BYTES: an integer with an optional k/m/g suffix (powers of 1024). */
export function parseSize (text: string): number {
  const m = /^(\d+)([kmg]?)$/i.exec(text)
  if (m === null) throw new Error(`bad size ${JSON.stringify(text)}`)
  const n = Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase())
  if (!Number.isSafeInteger(n) || n > MAX_SIZE) throw new Error(`size ${text} is too large`)
  return n
}

function parseArgs (argv: string[]): Options {
  const values = new Map<string, string>()
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]
    if (!['--mount', '--backing', '--size', '--mode', '--name'].includes(key) || i + 1 >= argv.length) throw new Error(USAGE)
    values.set(key, argv[i + 1])
  }
  const mount = values.get('--mount')
  const backing = values.get('--backing')
  if (mount === undefined || backing === undefined) throw new Error(USAGE)
  const mode = values.get('--mode') ?? 'volatile'
  if (mode !== 'volatile' && mode !== 'writethrough') throw new Error(`--mode must be volatile or writethrough (got ${mode})`)
  const name = values.get('--name') ?? 'disk.img'
  if (name === '' || name.includes('/') || name === '.' || name === '..') throw new Error(`bad --name ${JSON.stringify(name)}`)
  const size = values.get('--size')
  return { mount: resolve(mount), backing: resolve(backing), size: size === undefined ? undefined : parseSize(size), mode, name }
}

/**
 * libfuse options: nothing cached by the kernel (timeouts 0, direct_io: every read(2) and
 * write(2) reaches us, O_DIRECT opens work), big writes, the kernel applying mode bits.
 */
function fuseOptionString (): string {
  const opts = [
    `fsname=${FSNAME}`,
    `subtype=${FSNAME}`,
    'default_permissions',
    'direct_io',
    'entry_timeout=0',
    'attr_timeout=0',
    'negative_timeout=0',
    'big_writes',
    'max_write=131072'
  ]
  if (process.getuid?.() === 0) opts.push('allow_other')
  return '-o' + opts.join(',')
}

class FaultFuse extends Fuse {
  constructor (mnt: string, ops: FuseOps) {
    // No per-request time limit: injected latency may be long, and fuse-native's timeout
    // would answer while we still hold the kernel's buffer.
    super(mnt, ops, { timeout: false })
  }

  protected override _fuseOptions (): string {
    return fuseOptionString()
  }
}

// --- mounting ---

function run (cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10000 }, (err, _stdout, stderr) => {
      if (err === null) resolve()
      else reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`))
    })
  })
}

/** The file system type mounted exactly at dir, from /proc/self/mountinfo. */
function fstypeAt (dir: string): string | undefined {
  let found: string | undefined
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ')
    const point = fields[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    const dash = fields.indexOf('-')
    if (point === dir && dash > 0) found = fields[dash + 1] // the last one listed is on top
  }
  return found
}

/** Detaches a FUSE mount at dir lazily (a dead or busy one goes at once); done if none is left. */
async function lazyUnmount (dir: string): Promise<void> {
  const errors: string[] = []
  for (const [cmd, args] of [['fusermount', ['-uz', dir]], ['umount', ['-l', dir]]] as const) {
    if (fstypeAt(dir)?.startsWith('fuse') !== true) return
    await run(cmd, [...args]).catch((e: Error) => errors.push(e.message))
  }
  if (fstypeAt(dir)?.startsWith('fuse') === true) throw new Error(`cannot unmount ${dir}: ${errors.join('; ')}`)
}

// fuse-native unmounts through a shell and fails if the mount is already gone.
Fuse.unmount = (mnt: string, cb: (err: Error | null) => void): void => {
  lazyUnmount(mnt).then(() => cb(null), cb)
}

/** Clears what a killed faultfs left at dir (ENOTCONN), refuses anything else mounted there. */
async function prepareMountPoint (dir: string): Promise<void> {
  // Before mkdir: on a dead mount even that fails (ENOTCONN).
  const type = fstypeAt(dir)
  if (type !== undefined) {
    if (type !== `fuse.${FSNAME}`) throw new Error(`${dir}: ${type} is mounted there`)
    const alive = await fs.promises.stat(dir).then(() => true, () => false)
    debug('%s: unmounting a %s faultfs left there', dir, alive ? 'live' : 'stale')
    await lazyUnmount(dir)
  }
  await fs.promises.mkdir(dir, { recursive: true })
}

function openBacking (opts: Options): { fd: number, size: number } {
  fs.mkdirSync(dirname(opts.backing), { recursive: true })
  const fd = fs.openSync(opts.backing, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
  const size = opts.size ?? fs.fstatSync(fd).size
  if (fs.fstatSync(fd).size !== size) fs.ftruncateSync(fd, size)
  return { fd, size }
}

// --- the file system ---

function fuseOps (model: DiskModel, name: string): FuseOps {
  const file = '/' + name
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  const born = new Date()
  let nextHandle = 1
  /**
   * Handles opened O_SYNC/O_DSYNC. With direct_io the kernel never follows such a write
   * with an fsync (nor one with RWF_DSYNC, which we cannot see), so we make it durable.
   */
  const forcedHandles = new Set<number>()

  const dirStat = (): FuseStat => ({ mode: S_IFDIR | 0o755, nlink: 2, size: 0, uid, gid, atime: born, mtime: born, ctime: born })
  const fileStat = (): FuseStat => ({
    mode: S_IFREG | 0o644,
    nlink: 1,
    size: model.size,
    blocks: Math.ceil(model.size / 512),
    blksize: 4096,
    uid,
    gid,
    atime: model.mtime,
    mtime: model.mtime,
    ctime: model.mtime
  })

  /** Runs fn, turning a throw into EIO so the kernel always gets an answer. */
  const guarded = (what: string, cb: (code: number) => void, fn: () => number): void => {
    let code: number
    try {
      code = fn()
    } catch (e) {
      process.stderr.write(`faultfs: ${what} failed: ${(e as Error).stack ?? String(e)}\n`)
      code = errno('EIO')
    }
    cb(code)
  }

  /**
   * Serves an I/O request after its injected latency. One that waited across a cut or a
   * restore fails: a request from before a power cut never lands after it.
   */
  const serve = (op: IoOp, position: number, length: number, cb: (code: number) => void, fn: () => number): void => {
    const counters = model.counters
    counters.inFlight++
    counters.maxInFlight = Math.max(counters.maxInFlight, counters.inFlight)
    const done = (code: number): void => {
      model.counters.inFlight--
      cb(code)
    }
    const ms = model.powered ? model.latencyOf(op, position, length) : 0
    if (ms === 0) return guarded(op, done, fn)
    const epoch = model.epoch
    setTimeout(() => guarded(op, done, () => model.epoch === epoch ? fn() : lateAfterPowerChange()), ms)
  }

  const lateAfterPowerChange = (): number => {
    model.counters.faultsInjected++
    model.counters.powerOffErrors++
    return errno('EIO')
  }

  const isFile = (path: string): boolean => path === file

  return {
    init (cb) { cb(0) },
    getattr (path, cb) {
      if (path === '/') return cb(0, dirStat())
      if (isFile(path)) return cb(0, fileStat())
      cb(errno('ENOENT'))
    },
    readdir (path, cb) {
      if (path !== '/') return cb(errno(isFile(path) ? 'ENOTDIR' : 'ENOENT'))
      cb(0, [name], [fileStat()])
    },
    open (path, flags, cb) {
      if (path === '/') return cb(errno('EISDIR'))
      if (!isFile(path)) return cb(errno('ENOENT'))
      model.counters.opens++
      if ((flags & fs.constants.O_DIRECT) !== 0) model.counters.directOpens++
      const handle = nextHandle++
      if ((flags & fs.constants.O_DSYNC) !== 0) forcedHandles.add(handle) // O_SYNC includes O_DSYNC's bit
      cb(0, handle)
    },
    release (_path, fd, cb) {
      model.counters.releases++
      forcedHandles.delete(fd)
      cb(0)
    },
    // The kernel sends a flush on every close(2): a disk's cache does not care.
    flush (_path, _fd, cb) {
      model.counters.flushes++
      cb(0)
    },
    // fuse-native passes (path, datasync, fh), whatever its typings say.
    fsync (_path, datasync, _fd, cb) {
      serve('fsync', 0, 0, cb, () => model.fsync(Number(datasync) !== 0))
    },
    read (_path, _fd, buf, len, pos, cb) {
      serve('read', pos, len, cb, () => model.read(buf, len, pos))
    },
    write (_path, fd, buf, len, pos, cb) {
      serve('write', pos, len, cb, () => model.write(buf, len, pos, forcedHandles.has(fd)))
    },
    truncate (path, size, cb) {
      if (!isFile(path)) return cb(errno('ENOENT'))
      guarded('truncate', cb, () => model.powered ? (model.resize(size), 0) : errno('EIO'))
    },
    ftruncate (path, _fd, size, cb) {
      if (!isFile(path)) return cb(errno('ENOENT'))
      guarded('ftruncate', cb, () => model.powered ? (model.resize(size), 0) : errno('EIO'))
    },
    statfs (_path, cb) {
      const blocks = Math.ceil(model.size / 4096)
      cb(0, { bsize: 4096, frsize: 4096, blocks, bfree: 0, bavail: 0, files: 1, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 })
    },
    utimens (_path, _atime, _mtime, cb) { cb(0) },
    create (_path, _mode, cb) { cb(errno('EACCES')) },
    mknod (_path, _mode, _dev, cb) { cb(errno('EACCES')) },
    unlink (_path, cb) { cb(errno('EPERM')) },
    rename (_src, _dest, cb) { cb(errno('EPERM')) },
    link (_src, _dest, cb) { cb(errno('EPERM')) },
    symlink (_src, _dest, cb) { cb(errno('EPERM')) },
    mkdir (_path, _mode, cb) { cb(errno('EPERM')) },
    rmdir (_path, cb) { cb(errno('EPERM')) },
    chmod (_path, _mode, cb) { cb(errno('EPERM')) },
    chown (_path, _uid, _gid, cb) { cb(errno('EPERM')) }
  }
}

// --- main ---

async function main (): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const { fd, size } = openBacking(opts)
  const model = new DiskModel(fd, size, opts.mode)
  await prepareMountPoint(opts.mount)
  const fuse = new FaultFuse(opts.mount, fuseOps(model, opts.name))
  await new Promise<void>((resolve, reject) => {
    fuse.mount(err => err === null || err === undefined ? resolve() : reject(new Error(`cannot mount at ${opts.mount}: ${err.message}`)))
  })
  debug('mounted %s (backing %s, %d bytes, %s)', opts.mount, opts.backing, size, opts.mode)

  let stopping = false
  const stop = (why: string): void => {
    if (stopping) return
    stopping = true
    debug('unmounting: %s', why)
    fuse.unmount(err => {
      if (err !== null && err !== undefined) process.stderr.write(`faultfs: unmount failed: ${err.message}\n`)
      process.exit(err === null || err === undefined ? 0 : 1)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))

  const ready: Ready = { ready: true, pid: process.pid, mount: opts.mount, path: `${opts.mount}/${opts.name}`, backing: opts.backing, size, mode: opts.mode }
  process.stdout.write(JSON.stringify(ready) + '\n')
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  lines.on('line', line => process.stdout.write(answer(model, line) + '\n'))
  lines.on('close', () => stop('end of stdin'))
}

if (require.main === module) {
  // A bug in a callback must not take the mount down with it (a dead mount hangs its users).
  process.on('uncaughtException', err => process.stderr.write(`faultfs: uncaught: ${err.stack ?? String(err)}\n`))
  main().catch(err => {
    process.stderr.write(`faultfs: ${(err as Error).message}\n`)
    process.exit(2)
  })
}
