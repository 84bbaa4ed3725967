// `kvblade start --metrics 127.0.0.1:PORT` with the real daemon over a veth pair: the
// exposition passes promtool, and its counters are exactly the I/O done.
import t from 'tap'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { Daemon, REPO } from '../helpers/daemon'
import { run } from '../helpers/exec'
import { TestInitiator } from '../helpers/initiator'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { find, parseExposition, valueOf } from '../helpers/prom-text'

/** A port nothing listens on now (the kernel's pick, released at once). */
async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}

function fetchText (port: number, path = '/metrics'): Promise<{ status: number, type: string, body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    }).on('error', reject)
  })
}

/** promtool from the Makefile's unpacked copy, else the PATH; undefined if there is none. */
async function promtool (): Promise<string | undefined> {
  const unpacked = join(REPO, '.cache/tools/promtool')
  if (existsSync(unpacked)) return unpacked
  const r = await run('/bin/sh', ['-c', 'command -v promtool'])
  return r.code === 0 ? r.stdout.trim() : undefined
}

const unavailable = networkTestsUnavailable()
if (unavailable !== null) {
  skipLoudly(t, 'kvblade --metrics against the daemon', unavailable)
} else {
  t.test('metrics of the real daemon', async t => {
    const network = await TestNetwork.create(1)
    t.teardown(() => network.destroy())
    // In RAM: no fdatasync to wait for, so no request is retransmitted and the counts are exact.
    const dir = mkdtempSync('/dev/shm/kvblade-metrics-')
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const img = join(dir, 'disk.img')
    writeFileSync(img, Buffer.alloc(1 << 20))
    const link = network.links[0]
    const port = await freePort()
    const d = await Daemon.start(['--no-mount', '--metrics', `127.0.0.1:${port}`, '--add', `9 0 ${link.target} ${img}`])
    t.teardown(() => d.stop())
    t.match(d.stderr, `metrics at http://127.0.0.1:${port}/metrics`)
    const labels = { target: `9.0@${link.target}`, major: '9', minor: '0', interface: link.target }

    const initiator = TestInitiator.open(link.initiator, network.nsPath)
    t.teardown(() => initiator.close())
    const [found] = await initiator.discover(9, 0)
    t.ok(found, 'target discovered')
    const target = { major: 9, minor: 0, mac: found.mac }
    const data = Buffer.alloc(100 * 512, 0xa5)
    await initiator.write(target, 10, data) // 50 commands of 2 sectors
    const back = await initiator.read(target, 0, 64) // 32 commands
    t.ok(back.subarray(10 * 512).equals(data.subarray(0, 54 * 512)), 'read back what was written')

    const r = await fetchText(port)
    t.equal(r.status, 200)
    t.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8')
    const e = parseExposition(r.body)
    const exact: Array<[string, number]> = [
      ['kvblade_target_reads_total', 32],
      ['kvblade_target_read_bytes_total', 64 * 512],
      ['kvblade_target_writes_total', 50],
      ['kvblade_target_written_bytes_total', 100 * 512],
      ['kvblade_target_errors_total', 0],
      ['kvblade_target_in_flight_requests', 0],
      ['kvblade_target_size_bytes', 1 << 20],
      ['kvblade_target_request_duration_seconds_count', 82],
      ['kvblade_target_request_duration_seconds_bucket', 82],
    ]
    for (const [name, value] of exact) {
      t.equal(valueOf(e, name, name.endsWith('_bucket') ? { ...labels, le: '+Inf' } : labels), value, name)
    }
    const buckets = find(e, 'kvblade_target_request_duration_seconds_bucket', labels).map(s => s.value)
    t.same(buckets, [...buckets].sort((a, b) => a - b), 'buckets are cumulative')
    t.ok(valueOf(e, 'kvblade_target_request_duration_seconds_sum', labels) > 0, 'latencies add up to some time')
    const ifLabels = { interface: link.target }
    t.equal(valueOf(e, 'kvblade_interface_up', ifLabels), 1)
    t.equal(valueOf(e, 'kvblade_interface_mtu_bytes', ifLabels), 1500)
    // Every command was answered once; the discovery's Query Config is a frame too.
    t.ok(valueOf(e, 'kvblade_interface_frames_received_total', ifLabels) >= 83, 'frames received: the 82 commands and the discovery')
    t.ok(valueOf(e, 'kvblade_interface_frames_sent_total', ifLabels) >= 83, 'frames sent: their replies')
    t.equal(valueOf(e, 'kvblade_interface_malformed_frames_total', ifLabels), 0)
    t.equal(valueOf(e, 'kvblade_interface_send_errors_total', ifLabels), 0)
    t.ok(find(e, 'process_resident_memory_bytes').length === 1, 'and the process metrics')

    const tool = await promtool()
    if (tool === undefined) {
      skipLoudly(t, 'promtool check metrics', 'promtool is not installed (make test unpacks it into .cache/tools)')
    } else {
      const check = await run(tool, ['check', 'metrics'], { input: r.body })
      t.equal(check.code, 0, 'promtool check metrics passes')
      t.equal(check.stdout + check.stderr, '', 'with nothing to say')
    }

    // A second daemon asked for the same port refuses to start, saying why.
    const second = Daemon.spawn(['start', '--no-mount', '--metrics', `127.0.0.1:${port}`])
    t.same(await second.wait(), { code: 1, signal: null }, 'the port is taken: exit 1')
    t.match(second.stderr, `kvblade: cannot serve metrics on 127.0.0.1:${port}: the address is in use (EADDRINUSE)`)

    t.same(await d.stop(), { code: 0, signal: null }, 'SIGTERM: clean exit')
    await t.rejects(fetchText(port), { code: 'ECONNREFUSED' }, 'and the metrics server is gone')
  })
}
