import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export const REPO = path.resolve(__dirname, '../../..')
export const KVBLADE = path.join(REPO, 'bin/kvblade')

const isStateOption = (a: string): boolean => a === '--no-state' || a === '--state' || a.startsWith('--state=')
const isMountOption = (a: string): boolean => a === '--no-mount' || a === '--mount' || a.startsWith('--mount=')

/**
 * The real daemon as a child process (`bin/kvblade start ...`), with its stderr kept for
 * assertions. Ready once the CLI logs that it is serving (DEBUG=kvblade:cli).
 */
export class Daemon {
  stderr = ''
  exit: { code: number | null, signal: NodeJS.Signals | null } | null = null
  private readonly exited: Promise<void>

  private constructor (readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (chunk: string) => { this.stderr += chunk })
    this.exited = new Promise(resolve => child.on('exit', (code, signal) => {
      this.exit = { code, signal }
      resolve()
    }))
  }

  /**
   * `kvblade ARGS`. A `start` keeps no state file and mounts no control plane unless the
   * test names them: the defaults (/var/lib/kvblade/state.json, /mnt/kvblade) are the host's.
   */
  static spawn (args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
    if (args[0] === 'start' && !args.some(isStateOption)) args = [...args, '--no-state']
    if (args[0] === 'start' && !args.some(isMountOption)) args = [...args, '--no-mount']
    return Daemon.spawnCommand(process.execPath, [KVBLADE, ...args], env)
  }

  /**
   * Another way of running it (an installed copy, under setpriv...): `file ARGS`, which
   * must exec kvblade. A `start` must name its state file and mount point (or none):
   * refused otherwise, so no test can write the host's.
   */
  static spawnCommand (file: string, args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
    if (args.includes('start') && !(args.some(isStateOption) && args.some(isMountOption))) {
      throw new Error(`a test's kvblade start must say --state FILE or --no-state, and --mount DIR or --no-mount (the defaults are the host's): ${args.join(' ')}`)
    }
    const child = spawn(file, args, {
      env: { ...process.env, DEBUG: 'kvblade:*', DEBUG_COLORS: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    return new Daemon(child)
  }

  /** Starts `kvblade start ARGS` and waits until it serves (or fails). */
  static async start (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
    const d = Daemon.spawn(['start', ...args], env)
    await d.waitFor(/serving \d+ targets/, 20_000)
    return d
  }

  /** Like start(), for spawnCommand(): `args` include the `start` command. */
  static async startCommand (file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
    const d = Daemon.spawnCommand(file, args, env)
    await d.waitFor(/serving \d+ targets/, 20_000)
    return d
  }

  get alive (): boolean {
    return this.exit === null
  }

  /** Waits for a line on stderr; throws with the daemon's output if it exits first. */
  async waitFor (pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!pattern.test(this.stderr)) {
      if (!this.alive) throw new Error(`kvblade exited (${JSON.stringify(this.exit)}) before ${pattern}: ${this.stderr}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${this.stderr}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  /** Waits for the process to end by itself. */
  async wait (timeoutMs = 20_000): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs)
    await this.exited
    clearTimeout(timer)
    return this.exit!
  }

  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    if (this.alive) this.child.kill(signal)
    return await this.wait()
  }
}

/**
 * What a test must leave alone on the host: the default state file and mount point, as
 * a string that changes if either is written, made, mounted or removed.
 */
export function hostDefaults (): string {
  return ['/var/lib/kvblade/state.json', '/mnt/kvblade'].map(p => {
    try {
      const st = fs.statSync(p)
      return `${p}: dev ${st.dev} ino ${st.ino} size ${st.size} mtime ${st.mtimeMs}`
    } catch {
      return `${p}: absent`
    }
  }).join('\n')
}
