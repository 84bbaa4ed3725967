import createDebug from 'debug'
import { Engine } from '../engine/engine'
import { parseAddCommand } from '../control/command'
import type { CacheMode } from '../control/values'
import { mountControlPlane, type MountedControlPlane } from '../../fuse/mount'
import { runWithSysfs } from '../../fuse/sysfs-namespace'
import type { MetricsAddress, MetricsServer } from '../metrics/server'
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

async function start (mount: string | null, adds: string[], bufferCount?: number, direct?: boolean, cache?: CacheMode, metrics?: MetricsAddress): Promise<number> {
  const engine = new Engine({ bufferCount, direct, cache, warn: msg => printError(`warning: ${msg}`) })
  let controlPlane: MountedControlPlane | null = null
  let metricsServer: MetricsServer | null = null
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
    await metricsServer?.close()
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
    // Before the control plane: once it is mounted (what the service waits for), all is up.
    if (metrics !== undefined) metricsServer = await serveMetrics(engine, metrics)
    if (mount !== null) controlPlane = await mountControlPlane(engine, mount, printError)
  } catch (err) {
    printError((err as Error).message)
    await metricsServer?.close()
    await engine.close()
    return 1
  }
  debug('serving %d targets%s', adds.length, mount !== null ? `, control plane at ${mount}` : '')
  // The sockets and the FUSE session keep the process alive until a signal arrives.
  return await new Promise<number>(() => {})
}

async function serveMetrics (engine: Engine, address: MetricsAddress): Promise<MetricsServer> {
  // Loaded only here: status, monitor and sysfs have no use for prom-client.
  const { startMetricsServer, formatMetricsAddress } = await import('../metrics/server')
  try {
    const server = await startMetricsServer(engine, address)
    debug('metrics at http://%s/metrics', formatMetricsAddress(server.address))
    return server
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'EADDRINUSE' ? 'the address is in use'
      : e.code === 'EADDRNOTAVAIL' ? 'no interface has that address'
        : e.code === 'EACCES' ? 'permission denied' : e.message
    throw new Error(`cannot serve metrics on ${formatMetricsAddress(address)}: ${why}${e.code !== undefined ? ` (${e.code})` : ''}`)
  }
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
      return await start(inv.mount, inv.adds, inv.bufferCount, inv.direct, inv.cache, inv.metrics)
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
