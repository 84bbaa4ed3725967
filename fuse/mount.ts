/**
 * Mounting the control plane: the FUSE file system that stands in for /sys/kvblade.
 *
 * mountControlPlane() creates the directory if needed, recovers a stale mount left by a
 * daemon that died without unmounting (ENOTCONN: lazily unmounted, then mounted afresh),
 * and refuses if a live kvblade control plane — or anything else — is mounted there.
 */
import Fuse from 'fuse-native'
import { execFile } from 'node:child_process'
import { mkdir, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Control } from '../src/control/control'
import { ControlFilesystem } from './filesystem'
import { ControlTree } from './tree'
import { FSNAME, isKvbladeMount, mountAt } from './mountinfo'

export interface MountedControlPlane {
  readonly dir: string
  unmount (): Promise<void>
}

/** How long a stat of the mount point may take before we call the file system there hung. */
const PROBE_TIMEOUT_MS = 5000

/**
 * libfuse options. Every lookup and attribute goes to the daemon (timeouts 0), so a new
 * target appears at once and sizes are always current; direct_io makes every read(2) and
 * write(2) reach us unchanged (no page cache, no splitting of writes up to max_write).
 * default_permissions lets the kernel apply the mode bits (root bypasses them, as in sysfs);
 * allow_other lets other users read the values when the daemon runs as root.
 */
export function fuseOptionString (uid: number = process.getuid?.() ?? 0): string {
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
  if (uid === 0) opts.push('allow_other')
  return '-o' + opts.join(',')
}

class ControlFuse extends Fuse {
  constructor (mnt: string, ops: ConstructorParameters<typeof Fuse>[1], private readonly optionString: string) {
    // Commands may open and size a backing file: give writes longer than the 15 s default.
    super(mnt, ops, { timeout: { default: 15000, write: 120000 } })
  }

  protected override _fuseOptions (): string {
    return this.optionString
  }
}

function run (cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10000 }, (err, _stdout, stderr) => {
      if (err === null) return resolve()
      reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`))
    })
  })
}

/**
 * Detaches whatever FUSE mount is at `dir` (lazily, so a dead or busy one goes at once):
 * fusermount -uz, falling back to umount -l. Succeeds if nothing is mounted there afterwards.
 */
export async function lazyUnmount (dir: string): Promise<void> {
  const errors: string[] = []
  for (const [cmd, args] of [['fusermount', ['-uz', dir]], ['umount', ['-l', dir]]] as const) {
    if ((await mountAt(dir))?.fstype.startsWith('fuse') !== true) return
    try {
      await run(cmd, [...args])
    } catch (e) {
      errors.push((e as Error).message)
    }
  }
  const left = await mountAt(dir)
  if (left !== undefined && left.fstype.startsWith('fuse')) {
    throw new Error(`cannot unmount ${dir}: ${errors.join('; ')}`)
  }
}

// fuse-native unmounts with `exec('fusermount -uz "<dir>"')` through a shell and fails if
// the mount is already gone; use execFile and treat "nothing mounted" as done instead.
Fuse.unmount = (mnt: string, cb: (err: Error | null) => void): void => {
  lazyUnmount(mnt).then(() => cb(null), cb)
}

type Probe = 'missing' | 'dir' | 'notdir' | 'stale'

async function probe (dir: string): Promise<Probe> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(
      `${dir}: the file system mounted there does not answer (a hung FUSE daemon?); ` +
      `unmount it with "fusermount -uz ${dir}" and try again`)), PROBE_TIMEOUT_MS)
  })
  try {
    const st = await Promise.race([stat(dir), timeout])
    return st.isDirectory() ? 'dir' : 'notdir'
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return 'missing'
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') return 'stale'
    throw e
  } finally {
    clearTimeout(timer)
  }
}

async function prepareMountPoint (dir: string, log: (msg: string) => void): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const state = await probe(dir)
    const mounted = await mountAt(dir)
    switch (state) {
      case 'missing':
        await mkdir(dir, { recursive: true })
        continue
      case 'notdir':
        throw new Error(`cannot mount the control plane at ${dir}: not a directory`)
      case 'stale':
        if (mounted !== undefined && !isKvbladeMount(mounted)) {
          throw new Error(`cannot mount the control plane at ${dir}: a dead ${mounted.fstype} file system is mounted there; unmount it first`)
        }
        log(`${dir}: recovering the stale control plane of a kvblade that exited without unmounting`)
        await lazyUnmount(dir)
        continue
      case 'dir':
        if (isKvbladeMount(mounted)) {
          throw new Error(`cannot mount the control plane at ${dir}: a live kvblade control plane is already mounted there (is another kvblade running?)`)
        }
        if (mounted !== undefined) {
          throw new Error(`cannot mount the control plane at ${dir}: ${mounted.fstype} is already mounted there`)
        }
        return
    }
  }
  throw new Error(`cannot mount the control plane at ${dir}: could not clear a stale mount there`)
}

export async function mountControlPlane (control: Control, dir: string, log: (msg: string) => void = () => {}): Promise<MountedControlPlane> {
  const abs = resolve(dir)
  await prepareMountPoint(abs, log)

  const filesystem = new ControlFilesystem(new ControlTree(control, log, abs), { log })
  const fuse = new ControlFuse(abs, filesystem.ops(), fuseOptionString())
  await new Promise<void>((resolve, reject) => {
    fuse.mount(err => err === null || err === undefined
      ? resolve()
      : reject(new Error(`cannot mount the control plane at ${abs}: ${err.message}`)))
  })
  log(`control plane mounted at ${abs}`)

  let unmounting: Promise<void> | undefined
  return {
    dir: abs,
    unmount (): Promise<void> {
      unmounting ??= new Promise<void>((resolve, reject) => {
        fuse.unmount(err => {
          if (err === null || err === undefined) {
            log(`control plane unmounted from ${abs}`)
            resolve()
          } else {
            reject(new Error(`cannot unmount the control plane at ${abs}: ${err.message}`))
          }
        })
      })
      return unmounting
    }
  }
}
