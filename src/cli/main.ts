import fs from 'node:fs'
import path from 'node:path'
import createDebug from 'debug'
import { Engine } from '../engine/engine'
import { DEFAULT_STATE_FILE, loadState } from '../engine/state-file'
import { parseAddCommand, targetName } from '../control/command'
import { ControlError } from '../control/errors'
import type { CacheMode } from '../control/values'
import { mountControlPlane, type MountedControlPlane } from '../../fuse/mount'
import { runWithSysfs } from '../../fuse/sysfs-namespace'
import type { MetricsAddress, MetricsServer } from '../metrics/server'
import { parseArgs, USAGE, UsageError } from './args'
import { findControlPlane } from './control-files'
import { runMonitor, runStatus } from './inspect'
import { notifyReady, takeNotifySocket } from './sd-notify'

const debug = createDebug('kvblade:cli')

/** One clear line per error on stderr. */
function printError (message: string): void {
  process.stderr.write(`kvblade: ${message}\n`)
}

function version (): string {
  // dist/src/cli/main.js → package.json at the repository root.
  return (require('../../../package.json') as { version: string }).version
}

interface StartOptions {
  mount: string | null
  adds: string[]
  bufferCount?: number
  direct?: boolean
  cache?: CacheMode
  config?: string
  metrics?: MetricsAddress
  /** The state file; null: none. */
  state: string | null
}

async function start (o: StartOptions): Promise<number> {
  const notifySocket = takeNotifySocket()
  // A state file that cannot be read stops the daemon before anything is served or written.
  let saved = null
  if (o.state !== null) {
    try {
      saved = await loadState(o.state)
    } catch (err) {
      printError((err as Error).message)
      return 1
    }
  }
  const engine = new Engine({
    bufferCount: o.bufferCount,
    direct: o.direct,
    cache: o.cache,
    ...(o.state !== null ? { stateFile: o.state } : {}),
    ...(o.config !== undefined ? { configFile: o.config } : {}),
    warn: msg => printError(`warning: ${msg}`),
    log: msg => printError(msg),
  })
  let controlPlane: MountedControlPlane | null = null
  let metricsServer: MetricsServer | null = null
  let stopping = false

  // SIGTERM/SIGINT: no more control commands, then no more requests; those in flight
  // finish (synced) and are answered; the control plane goes; exit 0.
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    debug('%s: shutting down', signal)
    try {
      if (controlPlane !== null) await controlPlane.unmount()
    } catch (err) {
      printError(`cannot unmount ${o.mount}: ${(err as Error).message}`)
    }
    await metricsServer?.close()
    await engine.close()
    process.exit(0)
  }
  process.on('SIGINT', () => { void stop('SIGINT') })
  process.on('SIGTERM', () => { void stop('SIGTERM') })
  // SIGHUP (a closed terminal, systemctl reload) never stops the daemon.
  process.on('SIGHUP', () => {
    if (stopping) return
    if (o.config === undefined) {
      engine.announce()
      printError('SIGHUP: no exports file; every target announced')
      return
    }
    engine.reload().catch(err => printError(`SIGHUP: ${(err as Error).message}`))
  })

  try {
    if (saved !== null) await engine.restore(saved)
    const given = new Set<string>()
    for (const line of o.adds) {
      try {
        const cmd = parseAddCommand(line)
        if (given.has(targetName(cmd))) throw new ControlError('EEXIST', `target ${targetName(cmd)} exists (given twice)`)
        given.add(targetName(cmd))
        await engine.addFromCommandLine(cmd)
      } catch (err) {
        throw new Error(`cannot add "${line}": ${(err as Error).message}`)
      }
    }
    if (o.config !== undefined) {
      const r = await engine.reload({ atStart: true })
      if (!r.ok) throw new Error(`the exports file: ${r.summary}`)
    }
    // Before the control plane: once it is mounted, all is up.
    if (o.metrics !== undefined) metricsServer = await serveMetrics(engine, o.metrics)
    if (o.mount !== null) controlPlane = await mountControlPlane(engine, o.mount, printError)
  } catch (err) {
    printError((err as Error).message)
    await metricsServer?.close()
    await engine.close()
    return 1
  }
  const count = engine.list().length
  debug('serving %d targets%s', count, o.mount !== null ? `, control plane at ${o.mount}` : '')
  // systemd (Type=notify) reports the service started only now: every export up, the control plane mounted.
  if (notifySocket !== undefined) {
    void notifyReady(notifySocket, `serving ${count} targets`).then(why => {
      if (why === null) debug('told systemd: ready')
      else printError(`warning: cannot tell systemd the daemon is ready (${why}); a Type=notify start will time out`)
    })
  }
  // Serving until a signal, even with nothing open yet (no target, no control plane:
  // a reload or a waiting target may still bring some); stop() exits.
  setInterval(() => {}, 1 << 30)
  return await new Promise<number>(() => {})
}

/** `kvblade reload`: the daemon applies its exports file again; its answer is printed. */
async function reload (mount: string): Promise<number> {
  const file = path.join(mount, 'reload')
  let failed = false
  try {
    await fs.promises.writeFile(file, '1\n')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EINVAL') {
      printError(`cannot reach the control plane at ${mount}: ${(err as Error).message}`)
      return 1
    }
    failed = true
  }
  const result = (await fs.promises.readFile(file, 'utf8')).trim()
  ;(failed ? process.stderr : process.stdout).write(`${result}\n`)
  return failed ? 1 : 0
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
      return await start({ ...inv, state: inv.state === undefined ? DEFAULT_STATE_FILE : inv.state })
    case 'reload':
      return await reload(await findControlPlane(inv.mount))
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
