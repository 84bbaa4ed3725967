/** Command-line parsing for `kvblade`: small enough that a dependency would not pay. */
import { isIP } from 'node:net'
import { parseBufferCount, parseCacheMode, type CacheMode } from '../control/values'
import type { MetricsAddress } from '../metrics/server'

export const USAGE = `Usage:
  kvblade start [--mount DIR | --no-mount] [--add "MAJOR MINOR IFACE PATH [OPTION]..."]... [--config FILE]
                [--state FILE | --no-state] [--bufcnt N] [--direct] [--cache MODE] [--metrics ADDR:PORT]
  kvblade reload [--mount DIR]
  kvblade status [--mount DIR]
  kvblade monitor [SECONDS] [--count N] [--mount DIR]
  kvblade sysfs [--mount DIR] -- COMMAND [ARGS...]
  kvblade --help | --version

start   Run the AoE target in the foreground until SIGINT or SIGTERM (which finish the
        requests in flight first); SIGHUP applies the exports file again (or, without
        one, announces every target).
          --add "MAJOR MINOR IFACE PATH [OPTION]..."  export PATH (file or block
                        device) as shelf MAJOR slot MINOR on IFACE; repeatable; the
                        syntax of the control plane's add file. Options: ro, shared,
                        direct, offset=SECTORS, length=SECTORS, acl=MAC[,MAC...],
                        cache=writethrough|writeback, bufcnt=N
          --config FILE the exports file: one add line per export, # comments; applied
                        at start and by reload
          --state FILE  where every change is kept and restored from at start (default
                        /var/lib/kvblade/state.json); --no-state: keep nothing
          --mount DIR   mount the sysfs-style control plane at DIR (default /mnt/kvblade)
          --no-mount    run without the control plane
          --bufcnt N    buffer count advertised to initiators (default 64, min 2)
          --direct      open backing files with O_DIRECT, bypassing the page cache
                        (like vblade -d; buffered where the file system refuses)
          --cache MODE  writethrough (default): a write is acknowledged once it is
                        on stable storage (writes completing together share one
                        fdatasync); writeback: once it is in the page cache (a
                        power cut loses what was not flushed); per target: cache=
          --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics
                        (no authentication: use loopback, 127.0.0.1:PORT or [::1]:PORT)
reload  Apply the exports file of the daemon whose control plane is at DIR again, and
        say what changed (a bad line: nothing is applied, exit status 1).
status  One line per target: address, link state, size, requests in flight, options,
        backing path.
monitor Per-target rates every SECONDS (default 1) until Ctrl-C, like iostat -x:
        reads and writes per second, kB/s, average latency, requests in flight,
        errors per second. --count N stops after N reports.
sysfs   Run COMMAND in a private mount namespace in which /sys/kvblade is the control
        plane mounted at DIR, so kvblade's original kvadd/kvdel/kvstat work unchanged.

status, monitor and sysfs use --mount DIR, else the one kvblade control plane mounted,
else /mnt/kvblade.

Logging: DEBUG=kvblade:* for detail; errors are printed on stderr, one line each.`

export const DEFAULT_MOUNT = '/mnt/kvblade'

export type Invocation =
  | { command: 'help' }
  | { command: 'version' }
  | { command: 'start', mount: string | null, adds: string[], bufferCount?: number, direct?: boolean, cache?: CacheMode, config?: string, state?: string | null, metrics?: MetricsAddress }
  | { command: 'reload', mount?: string }
  | { command: 'status', mount?: string }
  | { command: 'monitor', mount?: string, seconds: number, count?: number }
  | { command: 'sysfs', mount?: string, argv: string[] }

export class UsageError extends Error {}

function value (argv: string[], i: number, flag: string): string {
  const v = argv[i + 1]
  if (v === undefined) throw new UsageError(`${flag} needs a value`)
  return v
}

/**
 * `ADDR:PORT` for --metrics: an IPv4 address, or an IPv6 one in brackets, and a port
 * 1-65535. Host names are refused: the daemon should not depend on a resolver to start.
 */
export function parseMetricsAddress (text: string): MetricsAddress {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(text)
  if (m === null) throw new UsageError(`--metrics takes ADDR:PORT (e.g. 127.0.0.1:9728 or [::1]:9728), not "${text}"`)
  const host = m[1] ?? m[2]
  const port = m[3]
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) !== 4) {
    throw new UsageError(`--metrics: "${host}" is not an IPv4 address or a bracketed IPv6 address`)
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new UsageError(`--metrics: the port must be 1-65535, not "${port}"`)
  }
  return { host, port: Number(port) }
}

/** Parses `--mount DIR` / `--mount=DIR` at rest[i]; the new index, or undefined if it is not --mount. */
function mountOption (rest: string[], i: number, set: (dir: string) => void): number | undefined {
  if (rest[i] === '--mount') set(value(rest, i, '--mount'))
  else if (rest[i].startsWith('--mount=')) set(rest[i].slice(8))
  else return undefined
  return rest[i] === '--mount' ? i + 1 : i
}

function positive (text: string, what: string, integer: boolean): number {
  const ok = integer ? /^[0-9]+$/.test(text) : /^[0-9]+(\.[0-9]+)?$/.test(text)
  const n = Number(text)
  if (!ok || !(n > 0)) throw new UsageError(`${what} must be a positive ${integer ? 'whole number' : 'number'}, not "${text}"`)
  return n
}

export function parseArgs (argv: string[]): Invocation {
  if (argv.length === 0) throw new UsageError('no command given')
  const [command, ...rest] = argv
  if (command === '--help' || command === '-h' || command === 'help') return { command: 'help' }
  if (command === '--version' || command === '-V') return { command: 'version' }
  if (command === 'start') {
    if (rest.includes('--help') || rest.includes('-h')) return { command: 'help' }
    let mount: string | null = DEFAULT_MOUNT
    const adds: string[] = []
    let bufferCount: number | undefined
    let direct: boolean | undefined
    let cache: CacheMode | undefined
    let config: string | undefined
    let state: string | null | undefined
    let metrics: MetricsAddress | undefined
    for (let i = 0; i < rest.length; i++) {
      const arg = rest[i]
      if (arg === '--mount') mount = value(rest, i++, arg)
      else if (arg.startsWith('--mount=')) mount = arg.slice(8)
      else if (arg === '--no-mount') mount = null
      else if (arg === '--direct') direct = true
      else if (arg === '--config') config = value(rest, i++, arg)
      else if (arg.startsWith('--config=')) config = arg.slice(9)
      else if (arg === '--state') state = value(rest, i++, arg)
      else if (arg.startsWith('--state=')) state = arg.slice(8)
      else if (arg === '--no-state') state = null
      else if (arg === '--cache' || arg.startsWith('--cache=')) {
        const text = arg === '--cache' ? value(rest, i++, arg) : arg.slice(8)
        try {
          cache = parseCacheMode(text)
        } catch (err) {
          throw new UsageError(`--cache: ${(err as Error).message}`)
        }
      }
      else if (arg === '--metrics' || arg.startsWith('--metrics=')) {
        metrics = parseMetricsAddress(arg === '--metrics' ? value(rest, i++, arg) : arg.slice(10))
      } else if (arg === '--add') adds.push(value(rest, i++, arg))
      else if (arg.startsWith('--add=')) adds.push(arg.slice(6))
      else if (arg === '--bufcnt' || arg.startsWith('--bufcnt=')) {
        const text = arg === '--bufcnt' ? value(rest, i++, arg) : arg.slice(9)
        try {
          bufferCount = parseBufferCount(text, '--bufcnt')
        } catch (err) {
          throw new UsageError((err as Error).message)
        }
      } else throw new UsageError(`unknown option ${arg}`)
    }
    if (mount === '') throw new UsageError('--mount needs a directory')
    if (config === '' || state === '') throw new UsageError('--config and --state need a file')
    return {
      command: 'start', mount, adds, bufferCount, ...(direct === true ? { direct } : {}), ...(cache !== undefined ? { cache } : {}),
      ...(config !== undefined ? { config } : {}), ...(state !== undefined ? { state } : {}), ...(metrics !== undefined ? { metrics } : {}),
    }
  }
  if (command === 'reload') {
    let mount: string | undefined
    for (let i = 0; i < rest.length; i++) {
      const next = mountOption(rest, i, dir => { mount = dir })
      if (next !== undefined) i = next
      else throw new UsageError(`unknown option ${rest[i]}`)
    }
    if (mount === '') throw new UsageError('--mount needs a directory')
    return { command: 'reload', ...(mount !== undefined ? { mount } : {}) }
  }
  if (command === 'status' || command === 'monitor') {
    if (rest.includes('--help') || rest.includes('-h')) return { command: 'help' }
    let mount: string | undefined
    let seconds: number | undefined
    let count: number | undefined
    for (let i = 0; i < rest.length; i++) {
      const arg = rest[i]
      const next = mountOption(rest, i, dir => { mount = dir })
      if (next !== undefined) i = next
      else if (command === 'monitor' && (arg === '--count' || arg.startsWith('--count='))) {
        count = positive(arg === '--count' ? value(rest, i++, arg) : arg.slice(8), '--count', true)
      } else if (command === 'monitor' && seconds === undefined && !arg.startsWith('-')) seconds = positive(arg, 'the interval', false)
      else throw new UsageError(`unknown ${arg.startsWith('-') ? 'option' : 'argument'} ${arg}`)
    }
    if (mount === '') throw new UsageError('--mount needs a directory')
    const where = mount !== undefined ? { mount } : {}
    if (command === 'status') return { command, ...where }
    return { command, ...where, seconds: seconds ?? 1, ...(count !== undefined ? { count } : {}) }
  }
  if (command === 'sysfs') {
    let mount: string | undefined
    let i = 0
    for (; i < rest.length && rest[i] !== '--'; i++) {
      // Options end at the command: `kvblade sysfs kvadd --help` runs `kvadd --help`.
      if (rest[i] === '--help' || rest[i] === '-h') return { command: 'help' }
      const next = mountOption(rest, i, dir => { mount = dir })
      if (next === undefined) break
      i = next
    }
    if (rest[i] === '--') i++
    const cmd = rest.slice(i)
    if (cmd.length === 0) throw new UsageError('sysfs needs a command to run')
    return { command: 'sysfs', ...(mount !== undefined ? { mount } : {}), argv: cmd }
  }
  throw new UsageError(`unknown command "${command}"`)
}
