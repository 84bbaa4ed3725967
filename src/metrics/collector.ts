/**
 * Prometheus metrics of the targets and interfaces, read from the Control interface at
 * scrape time: nothing here hooks into the engine or costs anything between scrapes.
 *
 * Each scrape builds a fresh prom-client Registry from one reading of list() and
 * interfaces(), so every metric of a scrape comes from the same moment and a deleted
 * target leaves no stale series behind. The process metrics (memory, CPU, event loop)
 * keep their own registry, since prom-client samples some of them continuously.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import type { Control, InterfaceStats, LatencyHistogram, TargetInfo } from '../control/control'
import { targetName } from '../control/command'

/** What the collector reads: the Control interface's two listings. */
export type MetricsSource = Pick<Control, 'list' | 'interfaces'>

export const TARGET_LABELS = ['target', 'major', 'minor', 'interface'] as const
type TargetLabel = typeof TARGET_LABELS[number]

function targetLabels (t: TargetInfo): Record<TargetLabel, string> {
  return { target: targetName(t), major: String(t.major), minor: String(t.minor), interface: t.ifname }
}

/** A counter the engine may not have yet (older TargetStats): undefined when absent. */
function optionalCounter (stats: TargetInfo['stats'], name: string): number | undefined {
  const v = (stats as unknown as Record<string, unknown>)[name]
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

interface PrecomputedValue { metricName: string, labels: Record<string, string>, value: number }

/**
 * A histogram whose buckets are already counted (TargetInfo.latency): prom-client's own
 * Histogram only takes observe() calls. The registry needs only name, help, type and get()
 * of a metric, so this object provides those and nothing else.
 */
class PrecomputedHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly values: PrecomputedValue[] = []

  constructor (readonly name: string, readonly help: string) {}

  add (labels: Record<string, string>, h: LatencyHistogram): void {
    h.bounds.forEach((bound, i) => {
      const le = bound === Infinity ? '+Inf' : String(bound)
      this.values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: h.counts[i] ?? 0 })
    })
    // A histogram always ends in +Inf (whose count is the total); add it if the bounds do not.
    if (h.bounds[h.bounds.length - 1] !== Infinity) {
      this.values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count })
    }
    this.values.push({ metricName: `${this.name}_sum`, labels, value: h.sum })
    this.values.push({ metricName: `${this.name}_count`, labels, value: h.count })
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: PrecomputedValue[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values }
  }

  reset (): void {}
}

/** One scrape's metrics of the targets and interfaces, in a registry of their own. */
export function targetRegistry (source: MetricsSource): Registry {
  const registry = new Registry()
  const registers = [registry]
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> =>
    new Counter({ name, help, labelNames, registers })
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> =>
    new Gauge({ name, help, labelNames, registers })

  const reads = counter('kvblade_target_reads_total', 'ATA read commands answered.', TARGET_LABELS)
  const readBytes = counter('kvblade_target_read_bytes_total', 'Bytes read from the backing for initiators.', TARGET_LABELS)
  const writes = counter('kvblade_target_writes_total', 'ATA write commands answered.', TARGET_LABELS)
  const writtenBytes = counter('kvblade_target_written_bytes_total', 'Bytes written to the backing for initiators.', TARGET_LABELS)
  const flushes = counter('kvblade_target_flushes_total', 'ATA FLUSH CACHE commands answered.', TARGET_LABELS)
  const errors = counter('kvblade_target_errors_total', 'ATA commands answered with an error.', TARGET_LABELS)
  const frames = counter('kvblade_target_frames_total', 'AoE frames handled for the target.', TARGET_LABELS)
  const faults = counter('kvblade_target_faults_total', 'Disk faults of the backing, by kind (e.g. "write EIO").', [...TARGET_LABELS, 'kind'])
  const syncs = counter('kvblade_target_syncs_total', 'fdatasyncs of the group commit (writethrough).', TARGET_LABELS)
  const syncedWrites = counter('kvblade_target_synced_writes_total', 'Writes made durable by those syncs; writes per sync = rate(this) / rate(syncs).', TARGET_LABELS)
  const inFlight = gauge('kvblade_target_in_flight_requests', 'Requests accepted and not yet answered.', TARGET_LABELS)
  const size = gauge('kvblade_target_size_bytes', 'Size of the exported disk.', TARGET_LABELS)
  const info = gauge('kvblade_target_info', 'Always 1: the backing path and cache mode of the target.', [...TARGET_LABELS, 'path', 'cache', 'read_only'])
  const latency = new PrecomputedHistogram('kvblade_target_request_duration_seconds', 'Time from a request\'s arrival to its reply.')
  // The registry asks a metric only for name, help, type and get(); see PrecomputedHistogram.
  registry.registerMetric(latency as unknown as Metric)

  for (const t of source.list()) {
    const labels = targetLabels(t)
    const s = t.stats
    reads.inc(labels, s.reads)
    readBytes.inc(labels, s.readSectors * 512)
    writes.inc(labels, s.writes)
    writtenBytes.inc(labels, s.writeSectors * 512)
    flushes.inc(labels, s.flushes)
    errors.inc(labels, s.errors)
    frames.inc(labels, s.frames)
    for (const [kind, n] of Object.entries(t.faults)) faults.inc({ ...labels, kind }, n)
    const syncCount = optionalCounter(s, 'syncs')
    if (syncCount !== undefined) syncs.inc(labels, syncCount)
    const synced = optionalCounter(s, 'syncedWrites')
    if (synced !== undefined) syncedWrites.inc(labels, synced)
    inFlight.set(labels, t.busy)
    size.set(labels, t.sectors * 512)
    info.set({ ...labels, path: t.path, cache: t.cache, read_only: t.readOnly ? '1' : '0' }, 1)
    latency.add(labels, t.latency)
  }

  const ifLabels = ['interface'] as const
  const framesIn = counter('kvblade_interface_frames_received_total', 'AoE frames received.', ifLabels)
  const framesOut = counter('kvblade_interface_frames_sent_total', 'AoE frames sent.', ifLabels)
  const drops = counter('kvblade_interface_kernel_drops_total', 'Frames the kernel dropped because the socket buffer was full.', ifLabels)
  const ignored = counter('kvblade_interface_ignored_frames_total', 'Frames not for any target here: other addresses, masked, responses, vendor commands.', ifLabels)
  const malformed = counter('kvblade_interface_malformed_frames_total', 'Frames too short or inconsistent to answer.', ifLabels)
  const sendErrors = counter('kvblade_interface_send_errors_total', 'Replies that could not be sent.', ifLabels)
  const up = gauge('kvblade_interface_up', '1 if the interface is up with carrier, 0 if it is down or gone.', ifLabels)
  const mtu = gauge('kvblade_interface_mtu_bytes', 'MTU of the interface.', ifLabels)
  for (const i of source.interfaces()) {
    const labels = { interface: i.ifname }
    framesIn.inc(labels, i.framesIn)
    framesOut.inc(labels, i.framesOut)
    drops.inc(labels, i.kernelDrops)
    ignored.inc(labels, i.ignored)
    malformed.inc(labels, i.malformed)
    sendErrors.inc(labels, i.sendErrors)
    up.set(labels, linkUp(i))
    mtu.set(labels, i.mtu)
  }
  return registry
}

function linkUp (i: InterfaceStats): number {
  return i.link === 'up' ? 1 : 0
}

const MISNAMED_PROCESS_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/** What /metrics serves: the targets and interfaces, and (optionally) the process. */
export class MetricsCollector {
  private readonly processRegistry = new Registry()

  constructor (private readonly source: MetricsSource, options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.processRegistry })
      // Gauges that prom-client names *_total, a suffix Prometheus keeps for counters
      // (promtool check metrics flags them); Node's handle counts say little here anyway.
      for (const name of MISNAMED_PROCESS_METRICS) this.processRegistry.removeSingleMetric(name)
    }
  }

  get contentType (): string {
    return this.processRegistry.contentType
  }

  /** The exposition text of one scrape. */
  async metrics (): Promise<string> {
    return await Registry.merge([this.processRegistry, targetRegistry(this.source)]).metrics()
  }
}
