/**
 * One exporter per disk and per address, across processes: advisory locks (flock) that
 * the kernel drops when a daemon dies.
 *
 *  - BackingLocks: every backing file is locked while it is exported, exclusively
 *    unless every export of it here is read-only or `shared` (then a shared lock), as
 *    QEMU does for its images. A second daemon that would write the same disk is refused.
 *  - AddressClaims: a lock file per (network namespace, interface, address) under a run
 *    directory. Two daemons on one host cannot hear each other's frames on an interface
 *    (a packet socket bound to AoE never sees outgoing frames), so this is how a second
 *    one on the same interface and address is refused.
 */
import fs from 'node:fs'
import path from 'node:path'
import createDebug from 'debug'
import { ControlError } from '../control/errors'
import { lockFile } from '../native/file-lock'
import { devMajor, devMinor } from '../store/backing-store'

const debug = createDebug('kvblade:locks')

/** "device:inode" of a file, as /proc/locks names it; for a block device, its device number. */
export function fileIdentity (st: fs.Stats): string {
  return st.isBlockDevice() ? `bdev:${st.rdev}` : `${st.dev}:${st.ino}`
}

/** Who holds a lock on the file `st` describes, from /proc/locks: "pid N (comm)", or '' if not found. */
export function lockHolder (st: fs.Stats): string {
  let locks: string
  try {
    locks = fs.readFileSync('/proc/locks', 'utf8')
  } catch {
    return ''
  }
  for (const line of locks.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:123456 0 EOF": the device (hex major:minor) and inode locked.
    const m = /^\d+: +\S+ +\S+ +(READ|WRITE) +(-?\d+) +([0-9a-f]+):([0-9a-f]+):(\d+) /.exec(line)
    if (m === null || Number(m[5]) !== st.ino || parseInt(m[3], 16) !== devMajor(st.dev) || parseInt(m[4], 16) !== devMinor(st.dev)) continue
    const pid = Number(m[2])
    if (pid === process.pid || pid <= 0) continue
    let comm = ''
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
    } catch {}
    return `pid ${pid}${comm === '' ? '' : ` (${comm})`}`
  }
  return ''
}

interface Held {
  fd: number
  handle: fs.promises.FileHandle
  mode: 'exclusive' | 'shared'
  /** Exports of this daemon using the file: true for those that need it exclusively. */
  users: Map<object, boolean>
  st: fs.Stats
}

export class BackingLocks {
  private readonly held = new Map<string, Held>()

  /**
   * Locks `file` for `user` (exclusive: a read-write export that is not `shared`).
   * Refuses (EBUSY, naming the file and the holder) if another process holds a lock
   * that conflicts.
   */
  async acquire (file: string, user: object, exclusive: boolean): Promise<string> {
    // Asynchronous: a backing on a slow file system must not hold up the packet loop.
    const st = await fs.promises.stat(file)
    const id = fileIdentity(st)
    let h = this.held.get(id)
    if (h === undefined) {
      const handle = await fs.promises.open(file, fs.constants.O_RDONLY)
      const fd = handle.fd
      h = this.held.get(id) // another add may have got here meanwhile
      if (h !== undefined) {
        await handle.close()
      } else {
        h = { fd, mode: 'shared', users: new Map(), st, handle }
        if (!this.take(h, exclusive ? 'exclusive' : 'shared')) {
          await handle.close()
          throw this.refusal(file, st, exclusive)
        }
        this.held.set(id, h)
      }
    }
    if (exclusive && h.mode !== 'exclusive' && !this.take(h, 'exclusive')) {
      throw this.refusal(file, st, true)
    }
    h.users.set(user, exclusive)
    return id
  }

  /** `user` no longer exports the file: the lock weakens or goes. */
  release (id: string, user: object): void {
    const h = this.held.get(id)
    if (h === undefined || !h.users.delete(user)) return
    if (h.users.size === 0) {
      this.held.delete(id)
      void h.handle.close() // drops the lock
      return
    }
    if (h.mode === 'exclusive' && ![...h.users.values()].some(x => x)) this.take(h, 'shared')
  }

  private take (h: Held, mode: 'exclusive' | 'shared'): boolean {
    if (!lockFile(h.fd, mode)) return false
    h.mode = mode
    return true
  }

  private refusal (file: string, st: fs.Stats, exclusive: boolean): ControlError {
    const holder = lockHolder(st)
    const who = holder === '' ? 'another process' : holder
    const hint = exclusive
      ? 'two exporters writing one disk corrupt it; if it is shared storage served by both on purpose, add the option shared on every exporter'
      : 'it is exported for writing, without shared'
    return new ControlError('EBUSY', `${file} is already exported by ${who}: ${hint}`)
  }

  async close (): Promise<void> {
    const handles = [...this.held.values()].map(h => h.handle)
    this.held.clear()
    await Promise.all(handles.map(h => h.close()))
  }
}

/** A claim on serving an address on an interface; release() gives it up. */
export interface Claim { release (): void }

export interface AddressClaims {
  /** Refuses (EEXIST) if another process serves this address on this interface. */
  claim (netns: string, ifname: string, major: number, minor: number): Claim
}

/** Claims that only this process can see (tests, and where there is no run directory). */
export const privateClaims: AddressClaims = { claim: () => ({ release: () => {} }) }

/** Lock files under `dir` (e.g. /run/kvblade): one per netns, interface and address. */
export class FileClaims implements AddressClaims {
  private warned = false

  private swept = false

  /** `warn`: where the one line goes if claims cannot be kept (the engine's warnings). */
  constructor (private readonly dir: string, private readonly warn: (message: string) => void = m => debug('%s', m)) {}

  /** Removes the claim files of daemons that died without releasing them (their locks went with them). */
  private sweep (): void {
    this.swept = true
    const dir = path.join(this.dir, 'addresses')
    let names: string[]
    try {
      names = fs.readdirSync(dir)
    } catch {
      return
    }
    for (const name of names) {
      const file = path.join(dir, name)
      try {
        const fd = fs.openSync(file, fs.constants.O_RDWR)
        try {
          if (lockFile(fd, 'exclusive')) fs.unlinkSync(file)
        } finally {
          fs.closeSync(fd)
        }
      } catch {}
    }
  }

  claim (netns: string, ifname: string, major: number, minor: number): Claim {
    if (!this.swept) this.sweep()
    const file = path.join(this.dir, 'addresses', `${netns}-${ifname}-${major}.${minor}`)
    let fd: number
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 })
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    } catch (err) {
      // Without a run directory the check cannot be made; say so once (it is a lost safeguard, not a detail) and serve.
      if (!this.warned) {
        this.warn(`cannot keep address claims in ${this.dir} (${(err as Error).message}): another kvblade serving the same address on the same interface will not be refused`)
      }
      this.warned = true
      return { release: () => {} }
    }
    if (!lockFile(fd, 'exclusive')) {
      let holder = ''
      try {
        holder = fs.readFileSync(file, 'utf8').trim()
      } catch {}
      fs.closeSync(fd)
      throw new ControlError('EEXIST', `${major}.${minor} is already served on ${ifname} by another kvblade${holder === '' ? '' : ` (pid ${holder})`}`)
    }
    fs.ftruncateSync(fd, 0)
    fs.writeSync(fd, `${process.pid}\n`)
    return {
      release: () => {
        try {
          fs.unlinkSync(file)
        } catch {}
        fs.closeSync(fd)
      },
    }
  }
}

/** The identity of the network namespace a netns file (or this process's) names. */
export function netnsIdentity (netnsFile?: string): string {
  try {
    return String(fs.statSync(netnsFile ?? '/proc/self/ns/net').ino)
  } catch {
    return 'unknown'
  }
}
