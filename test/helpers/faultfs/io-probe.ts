/**
 * System calls on one file from a separate process (python3's os module), with exact
 * errnos and each call's duration: what a test needs to check a file system's answers
 * without blocking its own event loop on it. Buffers are page-aligned (mmap), so O_DIRECT
 * works on any file system.
 */
import { run } from '../exec'

export type OpenFlag = 'rdonly' | 'direct' | 'dsync' | 'sync'

export type IoStep =
  | { op: 'open', flags?: OpenFlag[] }
  | { op: 'pwrite', offset: number, data: Buffer }
  | { op: 'pread', offset: number, length: number }
  | { op: 'fsync' | 'fdatasync' | 'close' | 'fstat' }
  | { op: 'sleep', ms: number }

export interface IoResult {
  ok: boolean
  /** errno name, e.g. 'EIO', when !ok. */
  errno?: string
  /** pwrite: bytes written; fstat: st_size. */
  value?: number
  /** pread: the bytes read. */
  data?: Buffer
  /** How long the call took. */
  ms: number
}

const SCRIPT = String.raw`
import base64, errno, json, mmap, os, sys, time
FLAGS = {'rdonly': 0, 'direct': os.O_DIRECT, 'dsync': os.O_DSYNC, 'sync': os.O_SYNC}
path, steps = sys.argv[1], json.load(sys.stdin)
fd, out = -1, []
def aligned(n):
    return mmap.mmap(-1, max(n, 1))
for s in steps:
    k, r = s['op'], {'ok': True}
    t0 = time.monotonic()
    try:
        if k == 'open':
            flags = s.get('flags', [])
            base = os.O_RDONLY if 'rdonly' in flags else os.O_RDWR
            for f in flags:
                base |= FLAGS[f]
            fd = os.open(path, base)
        elif k == 'pwrite':
            data = base64.b64decode(s['data'])
            m = aligned(len(data))
            m[:len(data)] = data
            r['value'] = os.pwritev(fd, [memoryview(m)[:len(data)]], s['offset'])
        elif k == 'pread':
            m = aligned(s['length'])
            n = os.preadv(fd, [memoryview(m)[:s['length']]], s['offset'])
            r['data'] = base64.b64encode(m[:n]).decode()
        elif k == 'fsync':
            os.fsync(fd)
        elif k == 'fdatasync':
            os.fdatasync(fd)
        elif k == 'fstat':
            r['value'] = os.fstat(fd).st_size
        elif k == 'close':
            os.close(fd)
            fd = -1
        elif k == 'sleep':
            time.sleep(s['ms'] / 1000)
    except OSError as e:
        r = {'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno))}
    r['ms'] = (time.monotonic() - t0) * 1000
    out.append(r)
print(json.dumps(out))
`

/** Runs the steps in order on one descriptor of `path` in a python3 child. */
export async function ioSteps (path: string, steps: IoStep[]): Promise<IoResult[]> {
  const input = JSON.stringify(steps.map(s => s.op === 'pwrite' ? { ...s, data: s.data.toString('base64') } : s))
  const r = await run('python3', ['-c', SCRIPT, path], { input })
  if (r.code !== 0) throw new Error(`io probe failed (${String(r.code)}): ${r.stderr}`)
  const results = JSON.parse(r.stdout) as Array<IoResult & { data?: string }>
  return results.map(x => x.data === undefined ? x : { ...x, data: Buffer.from(x.data, 'base64') })
}

/** The errno name of each step, or 'OK'. */
export function errnos (results: IoResult[]): string[] {
  return results.map(r => r.ok ? 'OK' : r.errno ?? '?')
}

/** pread of [offset, offset + length) in a fresh open; throws with the errno if it fails. */
export async function readRange (path: string, offset: number, length: number, flags: OpenFlag[] = []): Promise<Buffer> {
  const [open, read] = await ioSteps(path, [{ op: 'open', flags }, { op: 'pread', offset, length }, { op: 'close' }])
  if (!open.ok || !read.ok) throw new Error(`pread ${length}@${offset} of ${path}: ${open.errno ?? read.errno ?? '?'}`)
  return read.data!
}

/** pwrite then close (no fsync), in a fresh open; returns each step's errno. */
export async function writeRange (path: string, offset: number, data: Buffer, sync?: 'fsync' | 'fdatasync'): Promise<string[]> {
  const steps: IoStep[] = [{ op: 'open' }, { op: 'pwrite', offset, data }]
  if (sync !== undefined) steps.push({ op: sync })
  steps.push({ op: 'close' })
  return errnos(await ioSteps(path, steps))
}
