import createDebug from 'debug'
import { Engine } from '../engine/engine'
import { parseAddCommand } from '../control/command'
import type { CacheMode } from '../control/values'
import { mountControlPlane, type MountedControlPlane } from '../../fuse/mount'
import { runWithSysfs } from '../../fuse/sysfs-namespace'
import { parseArgs, USAGE, UsageError } from './args'
import { findControlPlane } from './control-files'
import { runMonitor, runStatus } from './inspect'

const debug = createDebug('kvblade:cli')

/** One clear line per error on stderr. */
function printError (message: string): void {
  process.stderr.write(`kvblade: ${message}\n`)
}

function version (): string {
  // dist/src/cli/main.js → package.json at the repository root.
  return (require('../../../package.json') as { version: string }).version
}

async function start (mount: string | null, adds: string[], bufferCount?: number, direct?: boolean, cache?: CacheMode): Promise<number> {
  const engine = new Engine({ bufferCount, direct, cache, warn: msg => printError(`warning: ${msg}`) })
  let controlPlane: MountedControlPlane | null = null
  let stopping = false

  const stop = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    debug('%s: shutting down', signal)
    try {
      if (controlPlane !== null) await controlPlane.unmount()
    } catch (err) {
      printError(`cannot unmount ${mount}: ${(err as Error).message}`)
    }
    await engine.close()
    process.exit(0)
  }
  process.on('SIGINT', () => { void stop('SIGINT') })
  process.on('SIGTERM', () => { void stop('SIGTERM') })

  try {
    for (const line of adds) {
      try {
        await engine.add(parseAddCommand(line))
      } catch (err) {
        throw new Error(`cannot add "${line}": ${(err as Error).message}`)
      }
    }
    if (mount !== null) controlPlane = await mountControlPlane(engine, mount, printError)
  } catch (err) {
    printError((err as Error).message)
    await engine.close()
    return 1
  }
  debug('serving %d targets%s', adds.length, mount !== null ? `, control plane at ${mount}` : '')
  // The sockets and the FUSE session keep the process alive until a signal arrives.
  return await new Promise<number>(() => {})
}

export async function run (argv: string[]): Promise<number> {
  let inv
  try {
    inv = parseArgs(argv)
  } catch (err) {
    if (err instanceof UsageError) {
      printError(err.message)
      process.stderr.write(`${USAGE}\n`)
      return 2
    }
    throw err
  }
  switch (inv.command) {
    case 'help':
      process.stdout.write(`${USAGE}\n`)
      return 0
    case 'version':
      process.stdout.write(`kvblade ${version()}\n`)
      return 0
    case 'start':
      return await start(inv.mount, inv.adds, inv.bufferCount, inv.direct, inv.cache)
    case 'status':
      return await runStatus(inv.mount)
    case 'monitor':
      return await runMonitor(inv.mount, inv.seconds, inv.count)
    case 'sysfs':
      return await runWithSysfs(await findControlPlane(inv.mount), inv.argv)
  }
}

export function main (argv: string[]): void {
  run(argv).then(code => process.exit(code), err => {
    printError(err instanceof Error ? err.message : String(err))
    process.exit(1)
  })
}
