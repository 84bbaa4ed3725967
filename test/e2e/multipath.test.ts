// End-to-end: multipath and failover with the real Linux `aoe` initiator. Two daemons,
// each in its own network namespace standing for a host, serve one backing file at the
// same address (9.0, options `shared direct`) on the VM's bridge; the guest sees one
// e9.0 with two targets, writes through both, and keeps writing while one daemon is
// SIGKILLed; once that one is started again the guest uses it again. See test/e2e/README.md.
//
// Knobs (environment): KVE_VERBOSE=1, KVE_KEEP=1 as for the other e2e tests, and
//   KVE_MP_DEADSECS=N      aoe_deadsecs in the guest (default 16; failover takes about half)
//   KVE_MP_WRITE_MIB=N     the size of the write the kill lands in (default 16)
//   KVE_MP_BREAK=both      kill B too when A is killed: no path is left, the suite must fail
import t from 'tap'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import {
  Net, KvbladeTarget, Export, buildInitramfs, runGuest, prepareAssets, skipReason, md5, readRange, log, tmpDir, Proc,
} from './lib/harness'

const MIB = 1 << 20
// The driver avoids a silent target once a frame has waited aoe_deadsecs / (number of
// targets) seconds on it, and fails the whole device once one has waited aoe_deadsecs in
// all: with two targets a failover takes about half of it.
const DEADSECS = Number(process.env.KVE_MP_DEADSECS ?? 16)
const WRITE_MIB = Number(process.env.KVE_MP_WRITE_MIB ?? 16)
const BREAK = process.env.KVE_MP_BREAK
const GUEST_TIMEOUT_MS = 150_000
const SECTORS = 64 * 2048

const EXPECTED = [
  'two-targets', 'one-disk', 'size', 'state', 'host-data', 'write-both', 'write-spread', 'readback-both',
  'read-spread', 'readback-both-cached', 'kill-mid-write', 'write-through-failover', 'state-after-failover',
  'b-took-over', 'a-avoided', 'targets-kept', 'no-io-errors', 'readback-after-failover', 'readback-d2-cached',
  'reads-via-b', 'a-rejoined', 'reads-while-rejoining', 'readback-after-rejoin', 'reads-via-a-again',
  'write-spread-again', 'readback-d3',
]

/** The open flags of every fd of `pid` on `file` (from /proc/PID/fdinfo). */
function openFlags(pid: number, file: string): number[] {
  const dir = `/proc/${pid}/fd`
  const flags: number[] = []
  for (const fd of fs.readdirSync(dir)) {
    let target: string
    try { target = fs.readlinkSync(path.join(dir, fd)) } catch { continue }
    if (target !== file) continue
    const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))
    if (m) flags.push(parseInt(m[1], 8))
  }
  return flags
}
const O_ACCMODE = 3
const O_RDWR = 2
const O_DIRECT = 0o40000 // x86-64

let reason = skipReason('kvblade')
if (!reason && (process.env.KVE_TARGET ?? 'kvblade') !== 'kvblade') reason = `KVE_TARGET=${process.env.KVE_TARGET}: the multipath test needs kvblade's shared option`

t.setTimeout(GUEST_TIMEOUT_MS + 120_000)

if (reason) {
  const msg = `MULTIPATH E2E SKIPPED: ${reason}`
  process.stderr.write(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}\n\n`)
  t.test('multipath e2e', { skip: msg }, async () => {})
} else {
  t.test('Linux aoe initiator: one disk over two kvblade hosts on shared storage, one SIGKILLed mid-write', { timeout: GUEST_TIMEOUT_MS + 90_000 }, async t => {
    const started = Date.now()
    const assets = prepareAssets()
    if (BREAK) log(`DELIBERATELY BROKEN: KVE_MP_BREAK=${BREAK}`)
    const work = tmpDir('kve-e2e-mp-')
    const net = new Net('m', 1500, 2)
    const daemons: KvbladeTarget[] = []
    const onExit = () => { for (const d of daemons) d.kill(); Proc.killAll(); net.down() }
    process.once('exit', onExit)
    t.teardown(() => {
      process.removeListener('exit', onExit)
      onExit()
      if (!process.env.KVE_KEEP) fs.rmSync(work, { recursive: true, force: true })
      else log(`kept ${work}`)
    })

    // One backing file, as the LUN both hosts would see: host data at the start, sparse after.
    const file = path.join(work, 'shared.img')
    const host = randomBytes(MIB)
    const d1 = randomBytes(8 * MIB)
    const d2 = randomBytes(WRITE_MIB * MIB)
    const d1Off = 1 * MIB
    const d2Off = 5 * MIB // overlaps the last 4 MiB of d1
    const d3 = randomBytes(2 * MIB)
    const d3Off = d2Off + d2.length + MIB
    if (d3Off + d3.length > SECTORS * 512) throw new Error('KVE_MP_WRITE_MIB too large for the backing file')
    fs.writeFileSync(file, host)
    fs.truncateSync(file, SECTORS * 512)
    net.up()
    const macs = [net.macOf(0), net.macOf(1)]
    const daemon = (hostIdx: number, name: string, options: string[]) => {
      const e: Export = { major: 9, minor: 0, file, options }
      const d = new KvbladeTarget(net, [e], work, { host: hostIdx, control: false, name })
      daemons.push(d)
      return d
    }

    // The lock: a second exporter is refused unless both say shared, naming the file and the holder.
    const a0 = daemon(0, 'A-without-shared', ['direct'])
    await a0.start()
    const r0 = await daemon(1, 'B-shared-vs-exclusive', ['shared', 'direct']).startRefused()
    t.ok(r0 !== null && r0.code !== 0 && r0.code !== null, 'B (shared) refuses to start while A serves the file without shared', { exit: r0 })
    t.ok(r0 !== null && r0.out.includes(file) && r0.out.includes(`pid ${a0.pid}`),
      'B\'s message names the file and A\'s pid', { out: r0?.out })
    t.same(await a0.shutdown(), [], 'A (without shared) stopped cleanly')

    const a = daemon(0, 'A', ['shared', 'direct'])
    await a.start()
    const r1 = await daemon(1, 'B-without-shared', ['direct']).startRefused()
    t.ok(r1 !== null && r1.code !== 0 && r1.code !== null, 'B without shared refuses to start while A serves the file shared', { exit: r1 })
    t.ok(r1 !== null && r1.out.includes(file) && r1.out.includes(`pid ${a.pid}`),
      'B\'s message names the file and A\'s pid', { out: r1?.out })
    log(`refusals: ${r0?.out.trim()} | ${r1?.out.trim()}`)

    const b = daemon(1, 'B', ['shared', 'direct'])
    await b.start()
    t.ok(a.healthy() && b.healthy(), 'A and B both serve 9.0 from the one file with shared')
    t.match(b.logs(), new RegExp(`9\\.0@${net.hosts[1].vethTgt}: ${macs[0]} serves this address too`),
      'B saw A answer for 9.0 on the wire when it added the export, and said so')
    for (const [name, d] of [['A', a], ['B', b]] as const) {
      const flags = openFlags(d.pid!, file)
      t.ok(flags.some(f => (f & O_ACCMODE) === O_RDWR && (f & O_DIRECT) !== 0),
        `${name} has the backing file open read-write with O_DIRECT`, { flags: flags.map(f => f.toString(8)) })
    }

    const hex = (mac: string) => mac.replace(/:/g, '')
    const initrd = buildInitramfs(work, assets.baseCpio, {
      KVE_DEADSECS: DEADSECS, KVE_DISCOVER_SECS: 40, KVE_SECTORS: SECTORS, KVE_MAC_A: hex(macs[0]), KVE_MAC_B: hex(macs[1]),
      KVE_H_LEN: host.length, KVE_H_MD5: md5(host), KVE_D1_OFF: d1Off, KVE_D1_LEN: d1.length,
      KVE_D2_OFF: d2Off, KVE_D2_LEN: d2.length, KVE_D3_OFF: d3Off, KVE_D3_LEN: d3.length,
      KVE_KILL_AFTER: 2048, KVE_REJOIN_READS: 20,
    }, { 'd1.bin': d1, 'd2.bin': d2, 'd3.bin': d3 }, 'multipath.sh')

    const killed: { exit?: { code: number | null, signal: NodeJS.Signals | null } } = {}
    let aAgain: KvbladeTarget | undefined
    const run = await runGuest({
      net, kernel: assets.kernel, initrd, mtu: 1500, timeoutMs: GUEST_TIMEOUT_MS, mac: '52:54:00:4b:56:30',
      onRequest: async action => {
        if (action === 'restart-a') {
          // As after fencing: the host is back, its daemon starts afresh (and must get the lock again).
          aAgain = daemon(0, 'A-again', ['shared', 'direct'])
          await aAgain.start()
          return 'started A again'
        }
        if (action !== 'kill-a') return `unknown action ${action}`
        killed.exit = await a.crash()
        if (BREAK === 'both') return `SIGKILLed A (${JSON.stringify(killed.exit)}) and, DELIBERATELY, B (${JSON.stringify(await b.crash())})`
        return `SIGKILLed A (${JSON.stringify(killed.exit)})`
      },
    })
    fs.writeFileSync(path.join(work, 'serial.log'), run.serial)
    log(`guest booted in ${run.bootedMs} ms, finished in ${run.totalMs} ms (exit ${run.exit})`)
    for (const line of run.serial.split('\n')) {
      if (/KVE:(RESULT|INFO|DEBUGFS|AOEERR)/.test(line)) log('guest ' + line.replace(/\r/g, '').replace(/^.*KVE:/, ''))
    }

    const diag = () => `--- guest serial (tail) ---\n${run.serial.split('\n').slice(-80).join('\n')}\n--- daemons ---\n${daemons.map(d => d.logs()).join('\n')}`
    t.ok(run.bootedMs !== null, 'guest booted', run.bootedMs === null ? { diag: diag() } : {})
    t.ok(run.done, 'guest ran all its checks and powered off', run.done ? {} : { diag: diag() })
    const byName = new Map(run.results.map(r => [r.name, r]))
    for (const name of EXPECTED) {
      const r = byName.get(name)
      if (!r) t.fail(`guest check ${name} did not run`, { diag: diag() })
      else t.ok(r.pass, `guest: ${name} ${r.detail}`, r.pass ? {} : { diag: diag() })
    }
    for (const r of run.results) if (!EXPECTED.includes(r.name)) t.ok(r.pass, `guest: ${r.name} ${r.detail}`)
    t.same(run.requests, ['kill-a', 'restart-a'], 'the guest asked for A to be killed, then started again')
    t.equal(killed.exit?.signal, 'SIGKILL', 'A died of SIGKILL')

    // What the guest wrote is in the one backing file, byte for byte.
    t.equal(run.info.get('d1-md5'), md5(d1), 'the guest read back D1 as the host gave it')
    t.equal(run.info.get('d2-md5'), md5(d2), 'the guest read back D2 as the host gave it')
    t.equal(run.info.get('d3-md5'), md5(d3), 'the guest read back D3 as the host gave it')
    t.equal(md5(readRange(file, 0, host.length)), md5(host), 'host data at the start of the backing file untouched')
    t.equal(md5(readRange(file, d1Off, d2Off - d1Off)), md5(d1.subarray(0, d2Off - d1Off)), 'backing file holds D1 where D2 did not overwrite it')
    t.equal(md5(readRange(file, d2Off, d2.length)), md5(d2), 'backing file holds D2, written across the failover')
    t.ok(readRange(file, d2Off + d2.length, MIB).equals(Buffer.alloc(MIB)), 'nothing written between D2 and D3')
    t.equal(md5(readRange(file, d3Off, d3.length)), md5(d3), 'backing file holds D3, written through both again')

    for (const [name, d] of [['B', b], ['A (started again)', aAgain]] as const) {
      if (!d) { t.fail(`${name} was never started`); continue }
      t.ok(d.healthy(), `${name} still running at the end`, d.healthy() ? {} : { logs: d.logs() })
      const said = d.logs().split('\n').filter(l => l.startsWith('kvblade:') && !/serves this address too/.test(l))
      t.same(said, [], `${name} printed nothing but the multipath-peer warning`)
      t.same(await d.shutdown(), [], `${name} stopped cleanly on SIGTERM`)
    }
    log(`multipath done in ${Date.now() - started} ms`)
  })
}
