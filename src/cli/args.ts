/** Command-line parsing for `kvblade`: small enough that a dependency would not pay. */
import { parseBufferCount, parseCacheMode, type CacheMode } from '../control/values'

export const USAGE = `Usage:
  kvblade start [--mount DIR | --no-mount] [--add "MAJOR MINOR IFACE PATH [OPTION]..."]... [--config FILE]
                [--state FILE | --no-state] [--bufcnt N] [--direct] [--cache MODE]
  kvblade reload [--mount DIR]
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
reload  Apply the exports file of the daemon whose control plane is at DIR again, and
        say what changed (a bad line: nothing is applied, exit status 1).
sysfs   Run COMMAND in a private mount namespace in which /sys/kvblade is the control
        plane mounted at DIR, so kvblade's original kvadd/kvdel/kvstat work unchanged.

Logging: DEBUG=kvblade:* for detail; errors are printed on stderr, one line each.`

export const DEFAULT_MOUNT = '/mnt/kvblade'

export type Invocation =
  | { command: 'help' }
  | { command: 'version' }
  | { command: 'start', mount: string | null, adds: string[], bufferCount?: number, direct?: boolean, cache?: CacheMode, config?: string, state?: string | null }
  | { command: 'reload', mount: string }
  | { command: 'sysfs', mount: string, argv: string[] }

export class UsageError extends Error {}

function value (argv: string[], i: number, flag: string): string {
  const v = argv[i + 1]
  if (v === undefined) throw new UsageError(`${flag} needs a value`)
  return v
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
      else if (arg === '--add') adds.push(value(rest, i++, arg))
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
      ...(config !== undefined ? { config } : {}), ...(state !== undefined ? { state } : {}),
    }
  }
  if (command === 'reload') {
    let mount = DEFAULT_MOUNT
    for (let i = 0; i < rest.length; i++) {
      if (rest[i] === '--mount') mount = value(rest, i++, '--mount')
      else if (rest[i].startsWith('--mount=')) mount = rest[i].slice(8)
      else throw new UsageError(`unknown option ${rest[i]}`)
    }
    return { command: 'reload', mount }
  }
  if (command === 'sysfs') {
    let mount = DEFAULT_MOUNT
    let i = 0
    for (; i < rest.length && rest[i] !== '--'; i++) {
      // Options end at the command: `kvblade sysfs kvadd --help` runs `kvadd --help`.
      if (rest[i] === '--help' || rest[i] === '-h') return { command: 'help' }
      if (rest[i] === '--mount') mount = value(rest, i++, '--mount')
      else if (rest[i].startsWith('--mount=')) mount = rest[i].slice(8)
      else break
    }
    if (rest[i] === '--') i++
    const cmd = rest.slice(i)
    if (cmd.length === 0) throw new UsageError('sysfs needs a command to run')
    return { command: 'sysfs', mount, argv: cmd }
  }
  throw new UsageError(`unknown command "${command}"`)
}
