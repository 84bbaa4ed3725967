/**
 * `kvblade status` and `kvblade monitor`: separate processes that read the control plane's
 * files (asynchronously, like any other reader), never the daemon's memory.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { findControlPlane, readControlPlane } from './control-files'
import { computeRates, formatMonitorReport, formatStatus } from './status'

/** `kvblade monitor | head` closes the pipe: that is the reader's way of saying stop. */
function endQuietlyOnEpipe (out: NodeJS.WritableStream): void {
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0)
    throw err
  })
}

export async function runStatus (mount: string | undefined, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  endQuietlyOnEpipe(out)
  const view = await readControlPlane(await findControlPlane(mount))
  out.write(formatStatus(view))
  return 0
}

/**
 * A report every `seconds` (on a fixed schedule, so a slow reading does not make the
 * reports drift), `count` of them or until interrupted. The first line names the control
 * plane and is written once the first reading is taken.
 */
export async function runMonitor (mount: string | undefined, seconds: number, count?: number, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  endQuietlyOnEpipe(out)
  const dir = await findControlPlane(mount)
  let prev = await readControlPlane(dir)
  out.write(`kvblade monitor: ${dir} every ${seconds} s\n`)
  const startMs = prev.timeMs
  for (let n = 1; count === undefined || n <= count; n++) {
    await sleep(Math.max(0, startMs + n * seconds * 1000 - performance.now()))
    const cur = await readControlPlane(dir)
    const interval = (cur.timeMs - prev.timeMs) / 1000
    out.write(formatMonitorReport(computeRates(prev.targets, cur.targets, interval), interval, new Date()))
    prev = cur
  }
  return 0
}
