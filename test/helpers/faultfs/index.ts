/**
 * FaultFs: a disk image with a volatile write cache and injected faults, served by the
 * faultfs server (server.ts) in a child process, for tests that cut the power under an
 * exporter and check that what it acknowledged survived.
 *
 *   const ffs = await FaultFs.start({ size: 8 << 20 })
 *   // ... export ffs.path, write through it ...
 *   await ffs.cut(); await ffs.restore()
 *   const kept = await ffs.durable()
 *   await ffs.stop()
 *
 * The server is a separate process, so this process may block on the mount; still, use
 * fs.promises or child processes on ffs.path, never synchronous calls, so that a hung
 * mount cannot freeze the test runner.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtemp, open, readFile, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { FaultOps, FaultSpec, Mode, Ready, Stats } from './protocol'

export type { FaultOps, Mode, Stats } from './protocol'

export const SERVER = join(__dirname, 'server.js')

export interface FaultFsOptions {
  /** Mount point (created if missing); default: a new directory under the temp dir. */
  dir?: string
  /** The durable file (created and sized if needed); default: a new file under /var/tmp. */
  backing?: string
  /** Size of the image in bytes. */
  size: number
  mode?: Mode
  /** Name of the image inside the mount (default disk.img). */
  name?: string
  /** DEBUG for the server (e.g. 'faultfs:*'); its stderr is kept in `stderr`. */
  debug?: string
}

export interface EioFault extends FaultSpec {
  op: 'read' | 'write' | 'both' | 'fsync' | 'all'
}

export interface LatencySpec {
  op: FaultOps
  ms: number
  offset?: number
  length?: number
}

type Pending = { resolve: (v: Record<string, unknown>) => void, reject: (e: Error) => void }

/** Until the server answers (or dies), a control request waits at most this long. */
const REQUEST_TIMEOUT_MS = 30_000

function execOk (cmd: string, args: string[]): Promise<boolean> {
  return new Promise(resolve => execFile(cmd, args, { timeout: 10_000 }, err => resolve(err === null)))
}

export class FaultFs {
  /** The image inside the mount: what the exporter opens. */
  readonly path: string
  readonly mountDir: string
  readonly backing: string
  readonly pid: number
  /** Everything the server wrote on stderr so far. */
  stderr = ''
  exit: { code: number | null, signal: NodeJS.Signals | null } | null = null
  private readonly pending: Pending[] = []
  private readonly exited: Promise<void>
  private stopping: Promise<void> | undefined

  private constructor (private readonly child: ChildProcess, ready: Ready, private readonly cleanup: string[], lines: ReturnType<typeof createInterface>) {
    this.path = ready.path
    this.mountDir = ready.mount
    this.backing = ready.backing
    this.pid = ready.pid
    this.exited = new Promise(resolve => child.once('exit', (code, signal) => {
      this.exit = { code, signal }
      for (const p of this.pending.splice(0)) p.reject(new Error(`faultfs server exited (${code ?? signal}) before answering: ${this.stderr}`))
      resolve()
    }))
    lines.on('line', line => {
      const p = this.pending.shift()
      if (p === undefined) return
      try {
        p.resolve(JSON.parse(line) as Record<string, unknown>)
      } catch {
        p.reject(new Error(`faultfs server answered a line that is not JSON: ${line}`))
      }
    })
  }

  static async start (opts: FaultFsOptions): Promise<FaultFs> {
    const cleanup: string[] = []
    const dir = opts.dir ?? join(await mkdtemp(join(tmpdir(), 'faultfs-')), 'mnt')
    if (opts.dir === undefined) cleanup.push(dir, join(dir, '..'))
    let backing = opts.backing
    if (backing === undefined) {
      const d = await mkdtemp('/var/tmp/faultfs-')
      backing = join(d, 'durable.img')
      cleanup.push(backing, d)
    }
    const args = [SERVER, '--mount', dir, '--backing', backing, '--size', String(opts.size), '--mode', opts.mode ?? 'volatile']
    if (opts.name !== undefined) args.push('--name', opts.name)
    const env = { ...process.env, DEBUG: opts.debug ?? process.env.DEBUG ?? '', DEBUG_COLORS: '0' }
    const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    const collect = (d: string): void => { stderr += d }
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', collect)
    child.stdin!.on('error', () => {}) // EPIPE if it died; the exit handler reports it
    const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity })
    const ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`faultfs server not ready after 30 s: ${stderr}`))
      }, 30_000)
      const onExit = (code: number | null, signal: string | null): void => {
        clearTimeout(timer)
        reject(new Error(`faultfs server exited (${code ?? signal}) before mounting: ${stderr.trim()}`))
      }
      child.once('exit', onExit)
      lines.once('line', line => {
        clearTimeout(timer)
        child.off('exit', onExit)
        try {
          resolve(JSON.parse(line) as Ready)
        } catch {
          reject(new Error(`faultfs server's first line is not the ready line: ${line}`))
        }
      })
    }).catch(async err => {
      await removeAll(cleanup)
      throw err
    })
    const ffs = new FaultFs(child, ready, cleanup, lines)
    child.stderr!.off('data', collect)
    ffs.stderr = stderr
    child.stderr!.on('data', (d: string) => { ffs.stderr += d })
    return ffs
  }

  get alive (): boolean {
    return this.exit === null
  }

  /**
   * Sends one raw line (need not be valid JSON) and returns the parsed answer line.
   * Answers come in request order; one that timed out keeps its place in the queue.
   */
  sendLine (line: string): Promise<Record<string, unknown>> {
    // The server's readline splits at CR too: two answers would come back for one request.
    if (/[\r\n]/.test(line)) return Promise.reject(new Error('one line at a time: no CR or LF inside'))
    if (!this.alive) return Promise.reject(new Error(`faultfs server has exited: ${this.stderr}`))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`faultfs server did not answer ${line} in ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS)
      this.pending.push({
        resolve: v => { clearTimeout(timer); resolve(v) },
        reject: e => { clearTimeout(timer); reject(e) }
      })
      this.child.stdin!.write(line + '\n')
    })
  }

  /** Sends a request; throws with the server's message if it refuses. */
  async request (req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await this.sendLine(JSON.stringify(req))
    if (res.ok !== true) throw new Error(`faultfs ${String(req.op)}: ${String(res.error)}`)
    return res
  }

  /** Power cut: the overlay is gone; reads, writes and fsyncs fail with EIO until restore(). */
  async cut (): Promise<void> {
    await this.request({ op: 'cut' })
  }

  /** Power back: the image shows the durable data only. */
  async restore (): Promise<void> {
    await this.request({ op: 'restore' })
  }

  /** Switching to writethrough first persists the overlay. */
  async setMode (mode: Mode): Promise<void> {
    await this.request({ op: 'mode', mode })
  }

  /** Persists the overlay, as an fsync of the image would. */
  async sync (): Promise<void> {
    await this.request({ op: 'sync' })
  }

  /** EIO for requests overlapping [offset, offset + length) (default: everywhere); returns the rule's id. */
  async injectEio (fault: EioFault): Promise<number> {
    const { op, ...spec } = fault
    return (await this.request({ op: 'eio', ops: op, ...spec })).id as number
  }

  /** ENOSPC for writes overlapping the range (default: every write). */
  async injectEnospc (spec: FaultSpec = {}): Promise<number> {
    return (await this.request({ op: 'enospc', ...spec })).id as number
  }

  /** Adds ms before each matching request is carried out (rules add up). */
  async setLatency (spec: LatencySpec): Promise<number> {
    const { op, ...rest } = spec
    return (await this.request({ op: 'latency', ops: op, ...rest })).id as number
  }

  /** Removes every EIO, ENOSPC and latency rule. */
  async clearFaults (): Promise<void> {
    await this.request({ op: 'clear' })
  }

  /** Changes the image's size at once (the durable file's too). */
  async resize (bytes: number): Promise<void> {
    await this.request({ op: 'resize', size: bytes })
  }

  async stats (): Promise<Stats> {
    return (await this.request({ op: 'stats' })).stats as Stats
  }

  async resetStats (): Promise<void> {
    await this.request({ op: 'reset-stats' })
  }

  /** What the image shows now (overlay over durable), bypassing faults; at most 16 MiB. */
  async peek (offset: number, length: number): Promise<Buffer> {
    return Buffer.from((await this.request({ op: 'peek', offset, length })).data as string, 'base64')
  }

  /**
   * The durable file's bytes: what survives a cut. Read from the backing file itself (the
   * server writes it synchronously before answering), so any length works.
   */
  async durable (offset = 0, length?: number): Promise<Buffer> {
    const fh = await open(this.backing, 'r')
    try {
      const size = (await fh.stat()).size
      const n = Math.max(0, Math.min(length ?? size, size - offset))
      const out = Buffer.alloc(n)
      let done = 0
      while (done < n) {
        const { bytesRead } = await fh.read(out, done, n - done, offset + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
      return out.subarray(0, done)
    } finally {
      await fh.close()
    }
  }

  /**
   * Unmounts (the overlay is lost, as in a power cut) and waits for the server to exit;
   * kills it if it hangs and clears the mount it left. Removes the temp dirs it made.
   */
  stop (): Promise<void> {
    this.stopping ??= this.stopNow()
    return this.stopping
  }

  /** SIGKILLs the server, leaving a stale mount behind, as a crashed test run would. */
  async kill (): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exited
  }

  private async stopNow (): Promise<void> {
    if (this.alive) {
      this.child.stdin!.end()
      if (!await this.waitExit(10_000)) {
        this.child.kill('SIGTERM')
        if (!await this.waitExit(5_000)) {
          this.child.kill('SIGKILL')
          await this.exited
        }
      }
    }
    // A server that was killed leaves its mount behind, dead (ENOTCONN).
    if (await isFuseMount(this.mountDir) && !await execOk('fusermount', ['-uz', this.mountDir])) {
      await execOk('umount', ['-l', this.mountDir])
    }
    await removeAll(this.cleanup)
  }

  private async waitExit (ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), ms) })
    const done = await Promise.race([this.exited.then(() => true), timeout])
    clearTimeout(timer)
    return done
  }
}

/** Whether a FUSE file system is mounted exactly at dir (/proc/self/mountinfo). */
export async function isFuseMount (dir: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').some(line => {
    const fields = line.split(' ')
    const point = fields[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    return point === dir && fields[fields.indexOf('-') + 1]?.startsWith('fuse') === true
  })
}

/** Files and (empty) directories we made; never recursive, so a mount still there is left alone. */
async function removeAll (paths: string[]): Promise<void> {
  for (const p of paths) {
    await rm(p, { force: true }).catch(async () => await rmdir(p).catch(() => {}))
  }
}
