/**
 * Shared pieces of the control-plane (FUSE) tests: when to skip, temp dirs, running
 * /bin/sh, and exact errno checks through python3's os module.
 */
import { spawnSync } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO } from './daemon'
import { run } from './exec'

export { REPO }
export { run as exec, sh, bash, type ExecResult as ShResult } from './exec'
export const SCRIPTS = join(REPO, 'scripts')

function hasProgram (name: string): boolean {
  return spawnSync('/bin/sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
}

/** Why real-FUSE tests cannot run here, or undefined if they can. */
export function fuseSkipReason (extra: string[] = []): string | undefined {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not running as root (mounting FUSE and namespaces needs root)'
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch {
    return '/dev/fuse is missing or not accessible'
  }
  for (const p of ['fusermount', 'python3', ...extra]) if (!hasProgram(p)) return `${p} is not installed`
  return undefined
}

export function tempDir (prefix: string): string {
  return mkdtempSync(join(tmpdir(), `kvblade-${prefix}-`))
}

export function removeDir (dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

/** One system call sequence for the errno probe; data is sent as base64. */
export type ProbeOp =
  | { op: 'write', path: string, chunks: Array<string | Buffer>, flags?: 'w' | 'rw' | 'a' | 'wt', offset?: number }
  | { op: 'read', path: string }
  | { op: 'open', path: string, flags: 'r' | 'w' | 'rw' | 'creat' }
  | { op: 'stat', path: string }
  | { op: 'mkdir' | 'rmdir' | 'unlink' | 'truncate', path: string }
  | { op: 'rename' | 'symlink' | 'link', path: string, to: string }
  | { op: 'chmod', path: string, mode: number }

export interface ProbeResult {
  ok: boolean
  /** errno name, e.g. 'EINVAL', when !ok. */
  errno?: string
  /** write: bytes written per chunk (also the completed ones before a failure); read: text (latin1); stat: size and mode. */
  value?: unknown
}

const PROBE = String.raw`
import base64, errno, json, os, sys
FLAGS = {'r': os.O_RDONLY, 'w': os.O_WRONLY, 'rw': os.O_RDWR, 'a': os.O_WRONLY | os.O_APPEND,
         'wt': os.O_WRONLY | os.O_TRUNC, 'creat': os.O_WRONLY | os.O_CREAT | os.O_EXCL}
out = []
for o in json.load(sys.stdin):
    k, p = o['op'], o['path']
    done = []
    try:
        v = None
        if k == 'write':
            fd = os.open(p, FLAGS[o.get('flags', 'w')])
            try:
                for c in o['chunks']:
                    d = base64.b64decode(c)
                    done.append(os.pwrite(fd, d, o['offset']) if 'offset' in o else os.write(fd, d))
            finally:
                os.close(fd)
            v = done
        elif k == 'read':
            fd = os.open(p, os.O_RDONLY)
            try:
                chunks = []
                while True:
                    b = os.read(fd, 65536)
                    if not b:
                        break
                    chunks.append(b)
                v = b''.join(chunks).decode('latin1')
            finally:
                os.close(fd)
        elif k == 'open':
            os.close(os.open(p, FLAGS[o['flags']], 0o644))
        elif k == 'stat':
            st = os.stat(p)
            v = {'size': st.st_size, 'mode': st.st_mode}
        elif k == 'mkdir':
            os.mkdir(p)
        elif k == 'rmdir':
            os.rmdir(p)
        elif k == 'unlink':
            os.unlink(p)
        elif k == 'truncate':
            os.truncate(p, 0)
        elif k == 'rename':
            os.rename(p, o['to'])
        elif k == 'symlink':
            os.symlink(o['to'], p)
        elif k == 'link':
            os.link(p, o['to'])
        elif k == 'chmod':
            os.chmod(p, o['mode'])
        out.append({'ok': True, 'value': v})
    except OSError as e:
        out.append({'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno)), 'value': done})
print(json.dumps(out))
`

/**
 * Runs system calls in a separate process (python3's os module) and reports exact errnos;
 * as `user` (through su) if given, for permission checks.
 */
export async function probe (ops: ProbeOp[], user?: string): Promise<ProbeResult[]> {
  const input = JSON.stringify(ops.map(o => o.op === 'write'
    ? { ...o, chunks: o.chunks.map(c => Buffer.from(c).toString('base64')) }
    : o))
  const r = user === undefined
    ? await run('python3', ['-c', PROBE], { input })
    : await run('su', [user, '-s', '/usr/bin/python3', '-c', PROBE], { input })
  if (r.code !== 0) throw new Error(`errno probe failed (${String(r.code)}): ${r.stderr}`)
  return JSON.parse(r.stdout) as ProbeResult[]
}

export async function probeOne (op: ProbeOp): Promise<ProbeResult> {
  return (await probe([op]))[0]
}

/** The errno name of a single operation, or 'OK'. */
export async function errnoOf (op: ProbeOp): Promise<string> {
  const r = await probeOne(op)
  return r.ok ? 'OK' : (r.errno ?? '?')
}

/** Mount points (unescaped) currently listed in /proc/self/mountinfo. */
export function mountPoints (): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(l => l.length > 0)
    .map(l => l.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
}

export function isMountPoint (dir: string): boolean {
  return mountPoints().includes(dir)
}

/** The line kvblade's kvstat prints for one target, computed independently of any script. */
export function kvstatLine (dev: string, netif: string, sectors: number, bpath: string): string {
  const psize = (BigInt(512000) * BigInt(sectors)) / BigInt(1000 * 1000 * 1000)
  const digits = psize.toString().padStart(4, '0')
  const size = `${digits.slice(0, -3)}.${digits.slice(-3)}GB`
  return `${dev.padStart(10)} ${netif.padStart(6)} ${size.padStart(10)} ${bpath.padEnd(14)}\n`
}
