/**
 * What the network checks share: the store paths a target can take, disk images, a
 * cleanup stack, and what /proc says about the daemon (memory, maps, open files). Only
 * the daemon binary, /proc and the file system are looked at: no engine internals.
 */
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { Daemon } from '../helpers/daemon'
import { fill, type Rand } from './random'
import { SECTOR } from './patterns'

export { SECTOR }

/** How a target's backing store is reached; each row of the ordering check is one. */
export interface StorePath {
  id: 'mapped' | 'sparse' | 'uring' | 'threads' | 'direct'
  /** For the table: where the file is and what the daemon does with it. */
  label: string
  dir: string
  sparse: boolean
  /** Extra `kvblade start` options. */
  args: string[]
  env: NodeJS.ProcessEnv
  /** What /proc must show, so a row never tests another path than it names. */
  expect: { mapped: boolean, direct: boolean, uring?: boolean, memoryFs: boolean }
}

export const STORE_PATHS: readonly StorePath[] = [
  { id: 'mapped', label: '/dev/shm file, not sparse (mapped)', dir: '/dev/shm', sparse: false, args: [], env: {}, expect: { mapped: true, direct: false, memoryFs: true } },
  { id: 'sparse', label: '/dev/shm file, sparse (pread/pwrite)', dir: '/dev/shm', sparse: true, args: [], env: {}, expect: { mapped: false, direct: false, memoryFs: true } },
  { id: 'uring', label: '/var/tmp file (io_uring)', dir: '/var/tmp', sparse: false, args: [], env: {}, expect: { mapped: false, direct: false, uring: true, memoryFs: false } },
  { id: 'threads', label: '/var/tmp file, KVBLADE_DISK=threads', dir: '/var/tmp', sparse: false, args: [], env: { KVBLADE_DISK: 'threads' }, expect: { mapped: false, direct: false, uring: false, memoryFs: false } },
  { id: 'direct', label: '/var/tmp file, --direct (O_DIRECT)', dir: '/var/tmp', sparse: false, args: ['--direct'], env: {}, expect: { mapped: false, direct: true, memoryFs: false } },
]

export function storePath (id: StorePath['id']): StorePath {
  return STORE_PATHS.find(p => p.id === id)!
}

/** Things to undo, last first; run() never throws (it reports what failed). */
export class Cleanup {
  private readonly steps: Array<() => unknown> = []

  defer (fn: () => unknown): void {
    this.steps.push(fn)
  }

  async run (): Promise<string[]> {
    const problems: string[] = []
    while (this.steps.length > 0) {
      try {
        await this.steps.pop()!()
      } catch (err) {
        problems.push((err as Error).message)
      }
    }
    return problems
  }
}

export function tempDir (cleanup: Cleanup, base: string, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(base, `kvblade-torture-${prefix}-`))
  cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A disk image: random content written out (every block allocated), or a sparse file
 * of holes. Returns the content the file holds.
 */
export function makeImage (file: string, sectors: number, sparse: boolean, rand: Rand): Buffer {
  const content = Buffer.alloc(sectors * SECTOR)
  if (sparse) {
    fs.writeFileSync(file, Buffer.alloc(0))
    fs.truncateSync(file, content.length)
  } else {
    fill(rand, content)
    fs.writeFileSync(file, content)
  }
  return content
}

export interface MemoryUse {
  vmRssKiB: number
  rssAnonKiB: number
  rssShmemKiB: number
}

export async function memoryUse (pid: number): Promise<MemoryUse> {
  const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)
    if (m === null) throw new Error(`/proc/${pid}/status has no ${name}`)
    return Number(m[1])
  }
  return { vmRssKiB: field('VmRSS'), rssAnonKiB: field('RssAnon'), rssShmemKiB: field('RssShmem') }
}

const O_DIRECT = 0o40000 // x86-64 and arm64 asm-generic
const O_ACCMODE = 0o3
const TMPFS_MAGIC = 0x01021994

/**
 * Checks from /proc and the file system that the daemon serves `file` the way `sp`
 * says: mapped or not (/proc/PID/maps), O_DIRECT or not (fdinfo flags), io_uring or not
 * (an anon_inode:[io_uring] descriptor), on tmpfs or not, sparse or not. Returns the
 * mismatches (empty when the path is confirmed).
 */
export async function confirmStorePath (pid: number, file: string, sp: StorePath): Promise<string[]> {
  const problems: string[] = []
  const real = await fsp.realpath(file)
  const maps = await fsp.readFile(`/proc/${pid}/maps`, 'utf8')
  const mapped = maps.split('\n').some(l => l.endsWith(` ${real}`))
  if (mapped !== sp.expect.mapped) problems.push(`${sp.id}: the daemon ${mapped ? 'maps' : 'does not map'} ${real}`)
  let fileFds = 0
  let directFds = 0
  let uring = false
  for (const fd of await fsp.readdir(`/proc/${pid}/fd`)) {
    let target: string
    try {
      target = await fsp.readlink(`/proc/${pid}/fd/${fd}`)
    } catch {
      continue // closed meanwhile
    }
    if (target === 'anon_inode:[io_uring]') uring = true
    if (target !== real) continue
    const info = await fsp.readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
    const flags = /^flags:\s+([0-7]+)/m.exec(info)
    const bits = flags === null ? 0 : parseInt(flags[1], 8)
    // The daemon also holds a read-only descriptor for its lock on the file; only those it does I/O through count.
    if ((bits & O_ACCMODE) === 0) continue
    fileFds++
    if ((bits & O_DIRECT) !== 0) directFds++
  }
  if (fileFds === 0) problems.push(`${sp.id}: the daemon has no descriptor open on ${real}`)
  if (sp.expect.direct ? directFds !== fileFds || fileFds === 0 : directFds > 0) {
    problems.push(`${sp.id}: ${directFds} of ${fileFds} descriptors on the file are O_DIRECT`)
  }
  if (sp.expect.uring !== undefined && uring !== sp.expect.uring) problems.push(`${sp.id}: io_uring ${uring ? 'in use' : 'not in use'}`)
  const onTmpfs = (await fsp.statfs(real)).type === TMPFS_MAGIC
  if (onTmpfs !== sp.expect.memoryFs) problems.push(`${sp.id}: ${real} is ${onTmpfs ? '' : 'not '}on tmpfs`)
  const st = await fsp.stat(real)
  const sparse = st.blocks * 512 < st.size
  if (sparse !== sp.sparse) problems.push(`${sp.id}: ${real} is ${sparse ? '' : 'not '}sparse`)
  return problems
}

export interface DiskSpec { major: number, minor: number, file: string }

/** Starts the daemon on `ifname` with these disks, the path's options and environment. */
export async function startDaemon (ifname: string, disks: DiskSpec[], sp: StorePath | null, mount: string | null = null): Promise<Daemon> {
  const args = mount !== null ? ['--mount', mount] : ['--no-mount']
  if (sp !== null) args.push(...sp.args)
  for (const d of disks) args.push('--add', `${d.major} ${d.minor} ${ifname} ${d.file}`)
  return await Daemon.start(args, sp?.env ?? {})
}

/** Kills a daemon left running by a failed check (SIGTERM first: it unmounts its control plane). */
export async function stopDaemon (d: Daemon): Promise<void> {
  if (!d.alive) return
  d.child.kill('SIGTERM')
  const timer = setTimeout(() => d.child.kill('SIGKILL'), 5000)
  await d.wait(10_000)
  clearTimeout(timer)
}

/** Reads sectors of a file as they are now (page cache; coherent with O_DIRECT writers). */
export async function readSectors (fh: fsp.FileHandle, lba: number, count: number): Promise<Buffer> {
  const buf = Buffer.alloc(count * SECTOR)
  const { bytesRead } = await fh.read(buf, 0, buf.length, lba * SECTOR)
  return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead)
}
