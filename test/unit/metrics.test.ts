/** The Prometheus collector against a fake Control (exact values), and its HTTP server on loopback. */
import t from 'tap'
import http from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MetricsCollector, targetRegistry } from '../../src/metrics/collector'
import { startMetricsServer } from '../../src/metrics/server'
import { FakeControl } from '../helpers/fake-control'
import { find, parseExposition, valueOf, type Exposition } from '../helpers/prom-text'

const dir = mkdtempSync(join(tmpdir(), 'kvblade-metrics-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const img = join(dir, 'disk.img')
writeFileSync(img, Buffer.alloc(512 * 2048))
const odd = join(dir, 'a "quoted" \\ name.img')
writeFileSync(odd, Buffer.alloc(512 * 8))

async function scrape (fake: FakeControl): Promise<Exposition> {
  return parseExposition(await targetRegistry(fake).metrics())
}

const T90 = { target: '9.0@eth0', major: '9', minor: '0', interface: 'eth0' }

async function fakeWithTarget (): Promise<FakeControl> {
  const fake = new FakeControl(['eth0', 'lo', 'veth7'])
  const info = await fake.add({ major: 9, minor: 0, ifname: 'eth0', path: img })
  Object.assign(info.stats, { reads: 11, readSectors: 22, writes: 33, writeSectors: 4400, flushes: 5, errors: 6, inFlight: 2, frames: 77, syncs: 8, syncedWrites: 30 })
  info.busy = 2
  info.faults = { 'read EIO': 2, 'write ENOSPC': 1 }
  info.latency = { bounds: [0.0001, 0.001, 0.01, Infinity], counts: [4, 9, 10, 12], sum: 0.25, count: 12 }
  Object.assign(fake.ifaces.get('eth0')!, { framesIn: 100, framesOut: 90, kernelDrops: 1, ignored: 5, malformed: 2, sendErrors: 3 })
  fake.ifaces.get('lo')!.link = 'down'
  fake.ifaces.get('veth7')!.link = 'gone'
  return fake
}

t.test('per-target counters and gauges, exactly', async t => {
  const e = await scrape(await fakeWithTarget())
  const want: Array<[string, number]> = [
    ['kvblade_target_reads_total', 11],
    ['kvblade_target_read_bytes_total', 22 * 512],
    ['kvblade_target_writes_total', 33],
    ['kvblade_target_written_bytes_total', 4400 * 512],
    ['kvblade_target_flushes_total', 5],
    ['kvblade_target_errors_total', 6],
    ['kvblade_target_frames_total', 77],
    ['kvblade_target_syncs_total', 8],
    ['kvblade_target_synced_writes_total', 30],
    ['kvblade_target_in_flight_requests', 2],
    ['kvblade_target_size_bytes', 2048 * 512],
  ]
  for (const [name, value] of want) {
    t.equal(valueOf(e, name, T90), value, name)
    t.same(find(e, name)[0].labels, T90, `${name}: labels target, major, minor, interface`)
  }
  t.equal(valueOf(e, 'kvblade_target_faults_total', { ...T90, kind: 'read EIO' }), 2)
  t.equal(valueOf(e, 'kvblade_target_faults_total', { ...T90, kind: 'write ENOSPC' }), 1)
  t.equal(find(e, 'kvblade_target_faults_total').length, 2, 'one series per fault kind')
  t.equal(valueOf(e, 'kvblade_target_info', { ...T90, path: img, cache: 'writethrough', read_only: '0' }), 1)
  for (const name of ['reads', 'read_bytes', 'writes', 'written_bytes', 'flushes', 'errors', 'frames', 'faults', 'syncs', 'synced_writes']) {
    t.equal(e.types.get(`kvblade_target_${name}_total`), 'counter', `${name}: a counter`)
  }
  for (const name of ['in_flight_requests', 'size_bytes', 'info']) t.equal(e.types.get(`kvblade_target_${name}`), 'gauge', `${name}: a gauge`)
})

t.test('the latency histogram is the precomputed one, bucket by bucket', async t => {
  const e = await scrape(await fakeWithTarget())
  const name = 'kvblade_target_request_duration_seconds'
  t.equal(e.types.get(name), 'histogram')
  t.same(find(e, `${name}_bucket`, T90).map(s => [s.labels.le, s.value]), [['0.0001', 4], ['0.001', 9], ['0.01', 10], ['+Inf', 12]])
  t.equal(valueOf(e, `${name}_sum`, T90), 0.25)
  t.equal(valueOf(e, `${name}_count`, T90), 12)
  t.notOk(find(e, `${name}_sum`, T90)[0].labels.le, 'no le on _sum')

  // Bounds that stop short of +Inf still make a valid histogram.
  const fake = new FakeControl(['eth0'])
  const info = await fake.add({ major: 1, minor: 2, ifname: 'eth0', path: img })
  info.latency = { bounds: [0.5], counts: [3], sum: 1, count: 4 }
  const e2 = await scrape(fake)
  t.same(find(e2, `${name}_bucket`).map(s => [s.labels.le, s.value]), [['0.5', 3], ['+Inf', 4]])
})

t.test('per-interface counters, link up and MTU', async t => {
  const e = await scrape(await fakeWithTarget())
  const eth0 = { interface: 'eth0' }
  const want: Array<[string, number]> = [
    ['kvblade_interface_frames_received_total', 100],
    ['kvblade_interface_frames_sent_total', 90],
    ['kvblade_interface_kernel_drops_total', 1],
    ['kvblade_interface_ignored_frames_total', 5],
    ['kvblade_interface_malformed_frames_total', 2],
    ['kvblade_interface_send_errors_total', 3],
    ['kvblade_interface_mtu_bytes', 1500],
  ]
  for (const [name, value] of want) t.equal(valueOf(e, name, eth0), value, name)
  t.same(find(e, 'kvblade_interface_up').map(s => [s.labels.interface, s.value]), [['eth0', 1], ['lo', 0], ['veth7', 0]], 'up 1, down and gone 0')
  t.equal(e.types.get('kvblade_interface_up'), 'gauge')
})

t.test('what the control shows now: deleted targets go, missing sync counters are left out', async t => {
  const fake = await fakeWithTarget()
  const second = await fake.add({ major: 9, minor: 1, ifname: 'lo', path: odd, options: { readOnly: true, cache: 'writeback' } })
  // A TargetStats from before the group commit's counters.
  const stats = second.stats as unknown as Record<string, number>
  delete stats.syncs
  delete stats.syncedWrites
  let e = await scrape(fake)
  const T91 = { target: '9.1@lo', major: '9', minor: '1', interface: 'lo' }
  t.equal(valueOf(e, 'kvblade_target_reads_total', T91), 0)
  t.same(find(e, 'kvblade_target_syncs_total', T91), [], 'no syncs series without the counter')
  t.equal(valueOf(e, 'kvblade_target_syncs_total', T90), 8, 'the other target keeps its')
  t.equal(valueOf(e, 'kvblade_target_info', { ...T91, path: odd, cache: 'writeback', read_only: '1' }), 1, 'quotes and backslashes in a path survive escaping')

  fake.targets.delete('9.0@eth0')
  e = await scrape(fake)
  t.same(find(e, 'kvblade_target_reads_total').map(s => s.labels.target), ['9.1@lo'], 'a deleted target leaves no series')

  const empty = parseExposition(await targetRegistry(new FakeControl([])).metrics())
  t.same(empty.samples, [], 'no targets, no interfaces: no samples')
  t.equal(empty.types.get('kvblade_target_reads_total'), 'counter', 'but the families are declared')
})

t.test('MetricsCollector adds the process metrics', async t => {
  const fake = await fakeWithTarget()
  const withProcess = parseExposition(await new MetricsCollector(fake).metrics())
  t.ok(find(withProcess, 'process_resident_memory_bytes').length === 1, 'process_resident_memory_bytes')
  t.same(withProcess.samples.filter(s => s.name.endsWith('_total') && withProcess.types.get(s.name) !== 'counter').map(s => s.name), [],
    'no gauge named like a counter (prom-client\'s nodejs_active_*_total are left out)')
  t.equal(valueOf(withProcess, 'kvblade_target_reads_total', T90), 11)
  const without = parseExposition(await new MetricsCollector(fake, { processMetrics: false }).metrics())
  t.same(find(without, 'process_resident_memory_bytes'), [])
})

function get (port: number, path: string, method = 'GET'): Promise<{ status: number, type: string, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('the server: /metrics, 404, 405, a bind failure, close with a client connected', async t => {
  const fake = await fakeWithTarget()
  const server = await startMetricsServer(fake, { host: '127.0.0.1', port: 0 }, { processMetrics: false })
  let closed = false
  t.teardown(async () => { if (!closed) await server.close() })
  t.ok(server.address.port > 0, 'the kernel gave a port')
  const r = await get(server.address.port, '/metrics')
  t.equal(r.status, 200)
  t.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(valueOf(parseExposition(r.body), 'kvblade_target_writes_total', T90), 33)
  const q = await get(server.address.port, '/metrics?x=1')
  t.equal(q.status, 200, 'a query string is ignored')
  t.equal((await get(server.address.port, '/')).status, 404)
  t.equal((await get(server.address.port, '/metrics', 'POST')).status, 405)
  const head = await get(server.address.port, '/metrics', 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body, '')

  await t.rejects(startMetricsServer(fake, { host: '127.0.0.1', port: server.address.port }), { code: 'EADDRINUSE' }, 'a taken port is an error, not a silent skip')

  // A keep-alive connection left open must not hold close() up.
  const agent = new http.Agent({ keepAlive: true })
  await new Promise<void>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.address.port, path: '/metrics', agent }, res => { res.resume(); res.on('end', resolve) }).on('error', reject)
  })
  await server.close()
  closed = true
  agent.destroy()
  await t.rejects(get(server.address.port, '/metrics'), { code: 'ECONNREFUSED' }, 'closed')
})
