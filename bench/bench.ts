/**
 * `make bench`: Debian's vblade against our daemon (and nullblade, a no-disk C
 * responder that bounds what the load generator can measure) over a private
 * veth pair, with bench/aoeload.c as the initiator.  Measures and reports; it
 * never asserts timings (exit status 0 unless the harness itself fails).
 *
 * Environment: BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_DEPTH (64),
 * BENCH_TARGETS (vblade,kvblade,nullblade), BENCH_MTUS (1500,9000),
 * BENCH_WORKLOADS (seqread,seqwrite,randread,randwrite), BENCH_SKIP
 * (comma list of verify,slow,durable,memory), BENCH_OUT (bench/out), BENCH_TOOLS
 * (.cache/bench), BENCH_SLOW_DIR (/var/tmp, also the durable runs' disk), BENCH_SLOW_MTU (1500),
 * BENCH_DURABLE_MTU (9000), BENCH_DURABLE_WORKLOADS (randwrite,seqwrite),
 * BENCH_KVBLADE_ARGS / BENCH_KVBLADE_SLOW_ARGS (extra daemon arguments),
 * BENCH_BUSY_POLL (0; 1: the generator spins instead of sleeping in poll), BENCH_NICE (-15),
 * BENCH_QUIET_WAIT (120: seconds, in all, to wait for an idle machine),
 * BENCH_RERUNS (16: runs, in all, repeated because other work disturbed them).
 */
import { spawn, type ChildProcess } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { renderChart, type ChartRow } from './chart'

// ---------------------------------------------------------------- settings

/** The repository: the nearest directory above this file holding bin/kvblade. */
function findRoot (): string {
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'bin', 'kvblade')) && fs.existsSync(path.join(d, 'package.json'))) return d
  }
  return process.cwd()
}
const env = process.env
const ROOT = env.BENCH_ROOT ?? findRoot()
const num = (name: string, def: number): number => {
  const v = env[name]
  if (v === undefined || v === '') return def
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${v}"`)
  return n
}
const list = (name: string, def: string[]): string[] =>
  env[name] ? env[name]!.split(',').map(s => s.trim()).filter(Boolean) : def

const SECONDS = num('BENCH_SECONDS', 5)
const RUNS = Math.round(num('BENCH_RUNS', 3))
const DEPTH = Math.round(num('BENCH_DEPTH', 64))
const WARMUP = Math.min(0.5, SECONDS / 4)
const TARGETS = list('BENCH_TARGETS', ['vblade', 'kvblade', 'nullblade']) as TargetKind[]
const MTUS = list('BENCH_MTUS', ['1500', '9000']).map(Number)
const WORKLOADS = list('BENCH_WORKLOADS', ['seqread', 'seqwrite', 'randread', 'randwrite'])
const SKIP = new Set(list('BENCH_SKIP', []))
const OUT = path.resolve(ROOT, env.BENCH_OUT ?? 'bench/out')
const TOOLS = path.resolve(ROOT, env.BENCH_TOOLS ?? '.cache/bench')
const AOELOAD = path.join(TOOLS, 'aoeload')
const NULLBLADE = path.join(TOOLS, 'nullblade')
const KVBLADE = path.join(ROOT, 'bin', 'kvblade')
const KVBLADE_ARGS = (env.BENCH_KVBLADE_ARGS ?? '').split(/\s+/).filter(Boolean)
const KVBLADE_SLOW_ARGS = (env.BENCH_KVBLADE_SLOW_ARGS ?? '--direct').split(/\s+/).filter(Boolean)
const SLOW_DIR = env.BENCH_SLOW_DIR ?? '/var/tmp'
const SLOW_MTU = num('BENCH_SLOW_MTU', 1500)
const DURABLE_MTU = num('BENCH_DURABLE_MTU', 9000)
const DURABLE_WORKLOADS = list('BENCH_DURABLE_WORKLOADS', ['randwrite', 'seqwrite'])
const KVBLADE_DURABLE_ARGS = (env.BENCH_KVBLADE_DURABLE_ARGS ?? '').split(/\s+/).filter(Boolean)
const BUSY_POLL = env.BENCH_BUSY_POLL === '1'
const IMAGE_BYTES = 1 << 30
const SHELF = 7
const SLOT = 3
const GEN_CPU = '0'
const TARGET_CPU = '1'
// Both the generator and the target run at this nice level, so background work on a
// shared machine disturbs the measurement less (the same for every target).
const NICE = String(Math.trunc(Number(env.BENCH_NICE ?? '-15')))
const CLK_TCK = 100 // USER_HZ on Linux: /proc/PID/stat times are in 1/100 s

type TargetKind = 'vblade' | 'vblade-d' | 'vblade-s' | 'kvblade' | 'kvblade-direct' | 'kvblade-wb' | 'nullblade'
const LABEL: Record<TargetKind, string> = {
  vblade: 'vblade', 'vblade-d': 'vblade -d', 'vblade-s': 'vblade -s', kvblade: 'kvblade (ours)', 'kvblade-direct': 'kvblade --direct', 'kvblade-wb': 'kvblade writeback', nullblade: 'nullblade'
}

// ------------------------------------------------------------ bookkeeping

const id = (process.pid % 10000).toString().padStart(4, '0')
const NS = `kvb${id}`
const IF_T = `kvb${id}t` // target end, root namespace
const IF_G = `kvb${id}g` // generator end, inside NS
const IMAGE = `/dev/shm/kvb${id}.img`
const SLOW_IMAGE = path.join(SLOW_DIR, `kvb${id}-slow.img`)
const MANY_DIR = `/dev/shm/kvb${id}-many`

const children = new Set<ChildProcess>()
let netCreated = false
const tempFiles: string[] = []
let logStream: fs.WriteStream | null = null

function log (msg: string): void {
  process.stderr.write(`bench: ${msg}\n`)
  logStream?.write(`${new Date().toISOString()} ${msg}\n`)
}

interface Result { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** Runs a command to completion (no shell). */
function run (cmd: string, args: string[], timeoutMs = 120_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', d => { stdout += d })
    child.stderr!.on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', err => { clearTimeout(timer); children.delete(child); reject(err) })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

async function must (cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await run(cmd, args, timeoutMs)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`)
  return r.stdout
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function cleanup (): Promise<void> {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try { process.kill(c.pid, 'SIGKILL') } catch { /* gone */ }
    }
  }
  if (netCreated) {
    await run('ip', ['link', 'del', IF_T]).catch(() => undefined)
    await run('ip', ['netns', 'del', NS]).catch(() => undefined)
    netCreated = false
  }
  for (const f of tempFiles) fs.rmSync(f, { recursive: true, force: true })
  tempFiles.length = 0
}

// ------------------------------------------------------------------ network

async function setupNetwork (): Promise<void> {
  netCreated = true
  await must('ip', ['netns', 'add', NS])
  await must('ip', ['link', 'add', IF_T, 'type', 'veth', 'peer', 'name', IF_G, 'netns', NS])
  // No IPv6 (no router solicitations, no DAD traffic on the link), no addresses.
  await must('sysctl', ['-qw', `net.ipv6.conf.${IF_T}.disable_ipv6=1`])
  await must('ip', ['netns', 'exec', NS, 'sysctl', '-qw', `net.ipv6.conf.${IF_G}.disable_ipv6=1`])
  await must('ip', ['link', 'set', IF_T, 'up'])
  await must('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up'])
  await must('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', IF_G, 'up'])
}

async function setMtu (mtu: number): Promise<void> {
  await must('ip', ['link', 'set', IF_T, 'mtu', String(mtu)])
  await must('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', IF_G, 'mtu', String(mtu)])
}

// ------------------------------------------------------------------ targets

interface Target { kind: TargetKind, child: ChildProcess, pid: number, exited: boolean, log: string[] }

function targetCommand (kind: TargetKind, image: string, extra: string[]): string[] {
  switch (kind) {
    case 'vblade': return ['vblade', '-b', String(DEPTH), String(SHELF), String(SLOT), IF_T, image]
    case 'vblade-d': return ['vblade', '-d', '-b', String(DEPTH), String(SHELF), String(SLOT), IF_T, image]
    case 'vblade-s': return ['vblade', '-s', '-b', String(DEPTH), String(SHELF), String(SLOT), IF_T, image]
    case 'nullblade': return [NULLBLADE, '-i', IF_T, '-e', String(SHELF), '-s', String(SLOT), '--size', String(IMAGE_BYTES), '--bufcnt', String(DEPTH), '--discard']
    case 'kvblade': return [KVBLADE, 'start', '--no-mount', '--no-state', '--add', `${SHELF} ${SLOT} ${IF_T} ${image}`, '--bufcnt', String(DEPTH), ...KVBLADE_ARGS, ...extra]
    case 'kvblade-direct': return [...targetCommand('kvblade', image, extra), '--direct']
    case 'kvblade-wb': return [...targetCommand('kvblade', image, extra), '--cache', 'writeback']
  }
}

function startProcess (kind: TargetKind, argv: string[]): Target {
  const child = spawn('nice', ['-n', NICE, 'taskset', '-c', TARGET_CPU, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const t: Target = { kind, child, pid: child.pid ?? -1, exited: false, log: [] }
  const keep = (d: Buffer): void => {
    const text = d.toString()
    logStream?.write(`[${kind} ${t.pid}] ${text}`)
    if (t.log.join('').length < 4000) t.log.push(text)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  child.on('exit', () => { t.exited = true; children.delete(child) })
  child.on('error', err => { t.exited = true; t.log.push(String(err)) })
  return t
}

/** Waits until `count` targets on shelf SHELF answer Query Config from the generator side. */
async function waitReady (t: Target, count = 1, slot: number | null = SLOT, waitS = 20): Promise<void> {
  const deadline = Date.now() + waitS * 1000
  while (Date.now() < deadline) {
    if (t.exited) throw new Error(`${t.kind} exited during start-up: ${t.log.join('').trim().slice(0, 500)}`)
    const args = ['netns', 'exec', NS, AOELOAD, '-i', IF_G, '--discover', '--json', '-e', String(SHELF), '--wait', '1']
    if (slot !== null) args.push('-s', String(slot))
    const r = await run('ip', args, 30_000)
    const found = r.stdout.split('\n').filter(l => l.startsWith('{')).length
    if (found >= count) return
    await sleep(100)
  }
  throw new Error(`${t.kind} did not answer Query Config within ${waitS} s`)
}

async function stopTarget (t: Target): Promise<boolean> {
  if (t.exited) return false
  t.child.kill('SIGTERM')
  for (let i = 0; i < 100 && !t.exited; i++) await sleep(50)
  if (t.exited) return true
  t.child.kill('SIGKILL')
  for (let i = 0; i < 100 && !t.exited; i++) await sleep(50)
  return false
}

interface ProcSample { ticks: number, rssKb: number, hwmKb: number }

function procSample (pid: number): ProcSample {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime is field 14, stime field 15
    const ticks = Number(fields[11]) + Number(fields[12])
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0)
    return { ticks, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') }
  } catch {
    return { ticks: NaN, rssKb: NaN, hwmKb: NaN }
  }
}

/** Busy jiffies summed over all CPUs (everything but idle and iowait). */
function systemBusyTicks (): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = line
  return user + nice + system + irq + softirq + steal
}

// ---------------------------------------------------------------- load runs

let quietBudgetMs = num('BENCH_QUIET_WAIT', 120) * 1000
let quietWaitedMs = 0

/**
 * Other work on the machine skews every number; before each measurement wait
 * (a little, from a fixed budget for the whole benchmark) until the CPUs are
 * mostly idle.
 */
async function waitQuiet (): Promise<void> {
  const t0 = Date.now()
  const cap = t0 + Math.min(15_000, quietBudgetMs)
  for (;;) {
    const b0 = systemBusyTicks()
    await sleep(300)
    const busyPct = (systemBusyTicks() - b0) / CLK_TCK / 0.3 * 100
    if (busyPct < 25 || Date.now() >= cap) break
  }
  const waited = Math.max(0, Date.now() - t0 - 300)
  quietBudgetMs = Math.max(0, quietBudgetMs - waited)
  quietWaitedMs += waited
}

interface LoadJson {
  mb_s: number, frames_s: number, iops: number, lat_p50_us: number, lat_p99_us: number,
  retransmits: number, errors: number, verify_errors: number, verified_sectors: number,
  sectors_per_frame: number, depth: number, seconds: number, gen_cpu_pct: number, gen_busy_pct: number, socket_drops: number
}

interface RunResult {
  target: TargetKind, mtu: number, workload: string, run: number, ok: boolean, error?: string
  mb_s?: number, frames_s?: number, iops?: number, p50_us?: number, p99_us?: number
  retransmits?: number, errors?: number, target_cpu_pct?: number, target_rss_mb?: number
  gen_cpu_pct?: number, gen_busy_pct?: number, other_cpu_pct?: number, sectors_per_frame?: number
  page_cache_mb?: number
  /** Durable runs of ours: group syncs per second, and writes per sync. */
  syncs_s?: number, writes_per_sync?: number
}

async function aoeload (args: string[], seconds: number): Promise<{ json: LoadJson | null, r: Result }> {
  const argv = ['netns', 'exec', NS, 'nice', '-n', NICE, 'taskset', '-c', GEN_CPU, AOELOAD, '-i', IF_G, '-e', String(SHELF), '-s', String(SLOT),
    '--json', '-q', '--wait', '5', ...(BUSY_POLL ? ['--busy-poll'] : []), ...args]
  const r = await run('ip', argv, (seconds + 60) * 1000)
  const line = r.stdout.split('\n').find(l => l.startsWith('{'))
  let json: LoadJson | null = null
  if (line) { try { json = JSON.parse(line) as LoadJson } catch { json = null } }
  return { json, r }
}

/** The group-commit counters (syncs, syncedWrites) of our target, from its stat in the control plane at `ctl`. */
async function syncCounters (ctl: string): Promise<number[]> {
  try {
    const fields = (await fs.promises.readFile(path.join(ctl, `${SHELF}.${SLOT}@${IF_T}`, 'stat'), 'utf8')).trim().split(/\s+/).map(Number)
    return [fields[8], fields[9]]
  } catch {
    return [NaN, NaN]
  }
}

function syncRates (before: number[], after: number[], seconds: number): Partial<RunResult> {
  const syncs = after[0] - before[0]
  const writes = after[1] - before[1]
  return { syncs_s: syncs / seconds, writes_per_sync: syncs > 0 ? writes / syncs : NaN }
}

const startFailures = new Map<TargetKind, number>()
const NOISY_PCT = 25
let rerunBudget = Math.round(num('BENCH_RERUNS', 16))
const discarded: RunResult[] = []

/** `counters`: read after the target is ready and again after the load (the durable runs' sync counters). */
async function measuredRun (kind: TargetKind, image: string, mtu: number, workload: string, runNo: number,
  extra: string[] = [], ioArgs: string[] = [], counters?: () => Promise<number[]>): Promise<RunResult> {
  const base: RunResult = { target: kind, mtu, workload, run: runNo, ok: false }
  if ((startFailures.get(kind) ?? 0) >= 2) return { ...base, error: `skipped: ${kind} failed to start twice in a row` }
  await waitQuiet()
  const t = startProcess(kind, targetCommand(kind, image, extra))
  try {
    try {
      await waitReady(t)
      startFailures.set(kind, 0)
    } catch (err) {
      startFailures.set(kind, (startFailures.get(kind) ?? 0) + 1)
      throw err
    }
    const countersBefore = counters !== undefined ? await counters() : []
    const before = procSample(t.pid)
    const busyBefore = systemBusyTicks()
    const t0 = Date.now()
    const { json, r } = await aoeload(['-w', workload, '-d', String(DEPTH), '-t', String(SECONDS), '--warmup', String(WARMUP), ...ioArgs], SECONDS + WARMUP)
    const wall = (Date.now() - t0) / 1000
    const after = procSample(t.pid)
    const busyAfter = systemBusyTicks()
    const countersAfter = counters !== undefined ? await counters() : []
    if (!json) return { ...base, error: `aoeload failed (${r.code}): ${r.stderr.trim().slice(0, 300)}` }
    const targetCpu = (after.ticks - before.ticks) / CLK_TCK / wall * 100
    const genCpu = json.gen_cpu_pct
    const otherCpu = Math.max(0, (busyAfter - busyBefore) / CLK_TCK / wall * 100 - targetCpu - genCpu)
    return {
      ...base,
      ok: json.errors === 0,
      error: json.errors ? `${json.errors} errors` : undefined,
      mb_s: json.mb_s, frames_s: json.frames_s, iops: json.iops, p50_us: json.lat_p50_us, p99_us: json.lat_p99_us,
      retransmits: json.retransmits, errors: json.errors, target_cpu_pct: targetCpu, target_rss_mb: after.rssKb / 1024,
      gen_cpu_pct: genCpu, gen_busy_pct: json.gen_busy_pct, other_cpu_pct: otherCpu, sectors_per_frame: json.sectors_per_frame,
      ...(counters !== undefined ? syncRates(countersBefore, countersAfter, wall) : {})
    }
  } catch (err) {
    return { ...base, error: (err as Error).message }
  } finally {
    await stopTarget(t)
  }
}

// ------------------------------------------------------------------ summary

const median = (xs: number[]): number => {
  const s = xs.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

interface Summary {
  target: TargetKind, mtu: number, workload: string, runs: number, ok_runs: number
  mb_s: number, frames_s: number, iops: number, p50_us: number, p99_us: number, target_cpu_pct: number
  target_rss_mb: number, retransmits: number, gen_cpu_pct: number, gen_busy_pct: number, other_cpu_pct: number, page_cache_mb: number, errors: string[]
  syncs_s: number, writes_per_sync: number
}

function summarize (results: RunResult[], target: TargetKind, mtu: number, workload: string): Summary | null {
  const rs = results.filter(r => r.target === target && r.mtu === mtu && r.workload === workload)
  if (rs.length === 0) return null
  const ok = rs.filter(r => r.mb_s !== undefined)
  const m = (f: (r: RunResult) => number | undefined): number => median(ok.map(r => f(r) ?? NaN))
  return {
    target, mtu, workload, runs: rs.length, ok_runs: rs.filter(r => r.ok).length,
    mb_s: m(r => r.mb_s), frames_s: m(r => r.frames_s), iops: m(r => r.iops), p50_us: m(r => r.p50_us), p99_us: m(r => r.p99_us),
    target_cpu_pct: m(r => r.target_cpu_pct), target_rss_mb: m(r => r.target_rss_mb), retransmits: m(r => r.retransmits),
    gen_cpu_pct: m(r => r.gen_cpu_pct), gen_busy_pct: m(r => r.gen_busy_pct), other_cpu_pct: m(r => r.other_cpu_pct), page_cache_mb: m(r => r.page_cache_mb),
    syncs_s: m(r => r.syncs_s), writes_per_sync: m(r => r.writes_per_sync),
    errors: rs.filter(r => r.error).map(r => `run ${r.run}: ${r.error}`)
  }
}

const fmt = (x: number, digits = 0): string => Number.isFinite(x) ? x.toFixed(digits) : '—'

function table (rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  const line = (r: string[]): string => '| ' + r.map((c, i) => i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(' | ') + ' |'
  return [line(rows[0]), '|' + widths.map((w, i) => (i < 3 ? '-'.repeat(w + 1) + '-' : '-'.repeat(w + 1) + ':')).join('|') + '|', ...rows.slice(1).map(line)].join('\n')
}

// --------------------------------------------------------------------- main

interface VerifyResult { target: TargetKind, mtu: number, workload: string, ok: boolean, verified_sectors: number, detail: string }

async function verifyPass (kind: TargetKind, mtu: number): Promise<VerifyResult[]> {
  const out: VerifyResult[] = []
  const t = startProcess(kind, targetCommand(kind, IMAGE, []))
  try {
    await waitReady(t)
    const order = [...WORKLOADS].sort((a, b) => Number(a.endsWith('write')) - Number(b.endsWith('write')))
    for (const w of order) {
      const { json, r } = await aoeload(['-w', w, '-d', String(DEPTH), '-t', '2', '--verify'], 2)
      const ok = !!json && json.errors === 0 && json.verify_errors === 0 && json.verified_sectors > 0 && r.code === 0
      const detail = json
        ? `${json.verified_sectors} sectors checked, ${json.verify_errors} mismatches, ${json.errors} errors`
        : `aoeload failed (${r.code}): ${r.stderr.trim().slice(0, 300)}`
      if (!ok) log(`verify ${LABEL[kind]} MTU ${mtu} ${w}: FAILED: ${detail} ${r.stderr.trim().slice(0, 500)}`)
      out.push({ target: kind, mtu, workload: w, ok, verified_sectors: json?.verified_sectors ?? 0, detail })
    }
  } catch (err) {
    for (const w of WORKLOADS) out.push({ target: kind, mtu, workload: w, ok: false, verified_sectors: 0, detail: (err as Error).message })
  } finally {
    await stopTarget(t)
  }
  return out
}

async function kvbladeWorks (): Promise<string | null> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) return 'dist/src/cli/main.js is missing (make build)'
  return null
}

async function main (): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('make bench needs root (raw sockets, network namespaces)')
  for (const f of [AOELOAD, NULLBLADE]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: run make bench (it builds the C tools)`)
  fs.mkdirSync(OUT, { recursive: true })
  logStream = fs.createWriteStream(path.join(OUT, 'bench.log'), { flags: 'w' })
  const started = Date.now()
  const targets = TARGETS.filter(t => ['vblade', 'kvblade', 'nullblade'].includes(t))
  let kvbladeProblem: string | null = null
  if (targets.includes('kvblade')) {
    kvbladeProblem = await kvbladeWorks()
    if (kvbladeProblem) { log(`kvblade skipped: ${kvbladeProblem}`); targets.splice(targets.indexOf('kvblade'), 1) }
  }
  const machine = {
    cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, mem_gb: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(), node: process.version,
    vblade: (await run('dpkg-query', ['-W', '-f=${Version}', 'vblade']).catch(() => null))?.stdout ?? 'unknown',
    loadavg_start: os.loadavg().map(x => Number(x.toFixed(2)))
  }
  log(`machine: ${machine.cpu}, ${machine.cpus} CPUs, kernel ${machine.kernel}, vblade ${machine.vblade}, load ${machine.loadavg_start.join(' ')}`)
  log(`settings: ${RUNS} x ${SECONDS} s per target and workload, ${DEPTH} frames in flight, targets ${targets.join(', ')}; generator on CPU ${GEN_CPU}, target on CPU ${TARGET_CPU}`)

  await setupNetwork()
  log(`network: namespace ${NS}, veth ${IF_T} (targets) <-> ${IF_G} (aoeload, in ${NS})`)
  tempFiles.push(IMAGE)
  await must(AOELOAD, ['--fill', IMAGE, '--size', String(IMAGE_BYTES), '--seed', '1', '-q'])

  // Correctness first, while the image still holds nothing but the pattern:
  // reads check what aoeload --fill wrote, writes are read back, and at the
  // end the file itself must hold valid pattern sectors everywhere.
  const verify: VerifyResult[] = []
  let imageCheck: { ok: boolean, detail: string } | null = null
  if (!SKIP.has('verify')) {
    for (const mtu of MTUS) {
      await setMtu(mtu)
      for (const kind of targets.filter(k => k !== 'nullblade')) {
        const v = await verifyPass(kind, mtu)
        verify.push(...v)
        log(`verify MTU ${mtu} ${LABEL[kind]}: ${v.every(x => x.ok) ? 'ok' : 'FAILED'} (${v.map(x => `${x.workload} ${x.ok ? 'ok' : 'FAILED'}`).join(', ')})`)
      }
    }
    const r = await run(AOELOAD, ['--check', IMAGE, '--json'], 300_000)
    imageCheck = { ok: r.code === 0, detail: (r.stdout.trim() || r.stderr.trim()).slice(0, 300) }
    log(`backing file check: ${imageCheck.ok ? 'ok' : 'FAILED'} ${imageCheck.detail}`)
  }

  // Throughput.  Benchmark writes carry no pattern, so nothing is verified after this.
  const results: RunResult[] = []
  for (const mtu of MTUS) {
    await setMtu(mtu)
    for (const w of WORKLOADS) {
      for (let runNo = 1; runNo <= RUNS; runNo++) {
        // alternate the order so drift in the machine hits every target alike
        const order = runNo % 2 ? targets : [...targets].reverse()
        for (const kind of order) {
          let r = await measuredRun(kind, IMAGE, mtu, w, runNo)
          // A run disturbed by other work on the machine is repeated (from a fixed budget).
          while ((r.other_cpu_pct ?? 0) > NOISY_PCT && rerunBudget > 0) {
            rerunBudget--
            discarded.push(r)
            log(`MTU ${mtu} ${w.padEnd(9)} run ${runNo} ${LABEL[kind].padEnd(14)} other processes used ${fmt(r.other_cpu_pct!)}% CPU: repeating`)
            r = await measuredRun(kind, IMAGE, mtu, w, runNo)
          }
          results.push(r)
          log(`MTU ${mtu} ${w.padEnd(9)} run ${runNo} ${LABEL[kind].padEnd(14)} ` + (r.mb_s !== undefined
            ? `${fmt(r.mb_s, 1)} MB/s ${fmt(r.frames_s!)} frames/s p50 ${r.p50_us} us p99 ${r.p99_us} us target CPU ${fmt(r.target_cpu_pct!)}% rexmit ${r.retransmits} gen busy ${fmt(r.gen_busy_pct!)}% other CPU ${fmt(r.other_cpu_pct!)}%`
            : `FAILED: ${r.error}`))
        }
      }
    }
  }
  fs.rmSync(IMAGE, { force: true })

  // Slow store: O_DIRECT on a disk-backed file, random 4 KiB reads.
  const slow: RunResult[] = []
  const slowTargets: TargetKind[] = []
  if (!SKIP.has('slow')) {
    if (TARGETS.includes('vblade')) slowTargets.push('vblade-d')
    if (targets.includes('kvblade')) slowTargets.push('kvblade')
    if (slowTargets.length) {
      await setMtu(SLOW_MTU)
      tempFiles.push(SLOW_IMAGE)
      log(`slow store: writing ${IMAGE_BYTES >> 20} MiB to ${SLOW_IMAGE}`)
      await must(AOELOAD, ['--fill', SLOW_IMAGE, '--size', String(IMAGE_BYTES), '--seed', '2', '-q'], 600_000)
      for (let runNo = 1; runNo <= RUNS; runNo++) {
        const order = runNo % 2 ? slowTargets : [...slowTargets].reverse()
        for (const kind of order) {
          // Start every run with none of the file in the page cache; afterwards, see how much
          // of it the target pulled into the cache (O_DIRECT leaves it empty).
          await run('dd', [`of=${SLOW_IMAGE}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none'])
          const r = await measuredRun(kind, SLOW_IMAGE, SLOW_MTU, 'randread', runNo, kind === 'kvblade' ? KVBLADE_SLOW_ARGS : [], ['-b', '4096'])
          const cached = await run('fincore', ['--bytes', '--noheadings', '--output', 'RES', SLOW_IMAGE]).catch(() => null)
          r.page_cache_mb = cached && cached.code === 0 ? Number(cached.stdout.trim()) / 2 ** 20 : NaN
          slow.push(r)
          log(`slow store run ${runNo} ${LABEL[kind].padEnd(14)} ` + (r.iops !== undefined
            ? `${fmt(r.iops)} IOPS ${fmt(r.mb_s!, 1)} MB/s p50 ${r.p50_us} us p99 ${r.p99_us} us target CPU ${fmt(r.target_cpu_pct!)}% file in page cache afterwards ${fmt(r.page_cache_mb!)} MB`
            : `FAILED: ${r.error}`))
        }
      }
    }
  }

  // Durable writes: a file on disk (not tmpfs), writes acknowledged only once on stable
  // storage (ours: group commit; vblade -s: O_SYNC), against ours in writeback.
  const durable: RunResult[] = []
  const durableTargets: TargetKind[] = []
  if (!SKIP.has('durable')) {
    if (TARGETS.includes('vblade')) durableTargets.push('vblade-s')
    if (targets.includes('kvblade')) durableTargets.push('kvblade', 'kvblade-direct', 'kvblade-wb')
    if (durableTargets.length) {
      await setMtu(DURABLE_MTU)
      const ctl = path.join(os.tmpdir(), `kvb${id}-ctl`)
      tempFiles.push(ctl)
      if (!fs.existsSync(SLOW_IMAGE)) {
        tempFiles.push(SLOW_IMAGE)
        log(`durable: writing ${IMAGE_BYTES >> 20} MiB to ${SLOW_IMAGE}`)
        await must(AOELOAD, ['--fill', SLOW_IMAGE, '--size', String(IMAGE_BYTES), '--seed', '2', '-q'], 600_000)
      }
      for (const w of DURABLE_WORKLOADS) {
        for (let runNo = 1; runNo <= RUNS; runNo++) {
          const order = runNo % 2 ? durableTargets : [...durableTargets].reverse()
          for (const kind of order) {
            const ours = kind.startsWith('kvblade')
            const counters = ours ? () => syncCounters(ctl) : undefined
            const r = await measuredRun(kind, SLOW_IMAGE, DURABLE_MTU, w, runNo, ours ? ['--mount', ctl, ...KVBLADE_DURABLE_ARGS] : [], w === 'randwrite' ? ['-b', '4096'] : [], counters)
            durable.push(r)
            log(`durable MTU ${DURABLE_MTU} ${w.padEnd(9)} run ${runNo} ${LABEL[kind].padEnd(17)} ` + (r.mb_s !== undefined
              ? `${fmt(r.mb_s, 1)} MB/s ${fmt(r.iops!)} IOPS p50 ${r.p50_us} us p99 ${r.p99_us} us target CPU ${fmt(r.target_cpu_pct!)}%` +
                (r.syncs_s !== undefined ? ` syncs/s ${fmt(r.syncs_s)} writes/sync ${fmt(r.writes_per_sync!, 1)}` : '')
              : `FAILED: ${r.error}`))
          }
        }
      }
    }
  }
  fs.rmSync(SLOW_IMAGE, { force: true })

  // Memory: our daemon exporting 64 targets.
  let memory: Record<string, number | string> | null = null
  if (!SKIP.has('memory') && targets.includes('kvblade')) {
    memory = await memoryRun()
  }

  // ----------------------------------------------------------- reporting
  const sums: Summary[] = []
  for (const mtu of MTUS) {
    for (const w of WORKLOADS) {
      for (const k of targets) { const s = summarize(results, k, mtu, w); if (s) sums.push(s) }
    }
  }
  const slowSums = slowTargets.map(k => summarize(slow, k, SLOW_MTU, 'randread')).filter((s): s is Summary => s !== null)
  const get = (k: TargetKind, mtu: number, w: string): Summary | undefined => sums.find(s => s.target === k && s.mtu === mtu && s.workload === w)
  const ratio = (a?: Summary, b?: Summary): number => a && b ? a.mb_s / b.mb_s : NaN

  const rows: string[][] = [['MTU', 'workload', 'target', 'MB/s', 'frames/s', 'IOPS', 'p50 µs', 'p99 µs', 'target CPU %', 'RSS MB', 'rexmit', 'gen busy %', '× vblade']]
  for (const s of sums) {
    const vb = get('vblade', s.mtu, s.workload)
    rows.push([String(s.mtu), s.workload, LABEL[s.target], fmt(s.mb_s, 1), fmt(s.frames_s), fmt(s.iops), fmt(s.p50_us), fmt(s.p99_us),
      fmt(s.target_cpu_pct), fmt(s.target_rss_mb, 1), fmt(s.retransmits), fmt(s.gen_busy_pct), s.target === 'vblade' ? '1.00' : fmt(ratio(s, vb), 2)])
  }
  const slowRows: string[][] = [['MTU', 'workload', 'target', 'IOPS', 'MB/s', 'p50 µs', 'p99 µs', 'target CPU %', 'page cache MB', '× vblade -d']]
  const slowVb = slowSums.find(s => s.target === 'vblade-d')
  for (const s of slowSums) {
    slowRows.push([String(SLOW_MTU), 'randread 4K O_DIRECT', LABEL[s.target], fmt(s.iops), fmt(s.mb_s, 1), fmt(s.p50_us), fmt(s.p99_us), fmt(s.target_cpu_pct), fmt(s.page_cache_mb),
      s.target === 'vblade-d' ? '1.00' : fmt(slowVb ? s.iops / slowVb.iops : NaN, 2)])
  }
  const durableSums = DURABLE_WORKLOADS.flatMap(w => durableTargets.map(k => summarize(durable, k, DURABLE_MTU, w))).filter((s): s is Summary => s !== null)
  const durableRows: string[][] = [['MTU', 'workload', 'target', 'MB/s', 'IOPS', 'p50 µs', 'p99 µs', 'target CPU %', 'syncs/s', 'writes/sync', '× vblade -s']]
  for (const s of durableSums) {
    const vbs = durableSums.find(x => x.target === 'vblade-s' && x.workload === s.workload)
    durableRows.push([String(DURABLE_MTU), s.workload, LABEL[s.target], fmt(s.mb_s, 1), fmt(s.iops), fmt(s.p50_us), fmt(s.p99_us), fmt(s.target_cpu_pct),
      fmt(s.syncs_s), fmt(s.writes_per_sync, 1), s.target === 'vblade-s' ? '1.00' : fmt(ratio(s, vbs), 2)])
  }
  const ratioRows: string[][] = [['MTU', 'workload', 'goal', 'ours / vblade', 'nullblade / vblade', 'met']]
  const chartRows: ChartRow[] = []
  for (const mtu of MTUS) {
    for (const w of WORKLOADS) {
      const vb = get('vblade', mtu, w)
      const ours = ratio(get('kvblade', mtu, w), vb)
      const nul = ratio(get('nullblade', mtu, w), vb)
      ratioRows.push([String(mtu), w, '1.25', fmt(ours, 2), fmt(nul, 2), Number.isFinite(ours) ? (ours >= 1.25 ? 'yes' : 'no') : '—'])
      chartRows.push({ label: `${w} MTU ${mtu}`, ours, reference: nul, goal: 1.25 })
    }
  }
  const kvSlow = slowSums.find(s => s.target === 'kvblade')
  const slowRatio = kvSlow && slowVb ? kvSlow.iops / slowVb.iops : NaN
  if (slowSums.length) {
    ratioRows.push([String(SLOW_MTU), 'slow store (vs -d)', '5', fmt(slowRatio, 2), '—', Number.isFinite(slowRatio) ? (slowRatio >= 5 ? 'yes' : 'no') : '—'])
    chartRows.push({ label: 'O_DIRECT randread 4K', ours: slowRatio, reference: NaN, goal: 5 })
  }

  const durableRatios: Array<{ workload: string, vs_vblade_s: number, vs_writeback: number, best: TargetKind | null }> = []
  for (const w of DURABLE_WORKLOADS) {
    const of = (k: TargetKind): Summary | undefined => durableSums.find(x => x.target === k && x.workload === w)
    // Ours in writethrough, buffered or O_DIRECT, whichever the disk serves better.
    const best = [of('kvblade'), of('kvblade-direct')].filter((x): x is Summary => x !== undefined).sort((a, b) => b.mb_s - a.mb_s)[0]
    const vsS = ratio(best, of('vblade-s'))
    const vsWb = ratio(of('kvblade'), of('kvblade-wb'))
    if (!Number.isFinite(vsS) && !Number.isFinite(vsWb)) continue
    durableRatios.push({ workload: w, vs_vblade_s: vsS, vs_writeback: vsWb, best: best?.target ?? null })
    ratioRows.push([String(DURABLE_MTU), `durable ${w} (${best === undefined ? 'ours' : LABEL[best.target]} vs -s)`, '10', fmt(vsS, 2), '—', Number.isFinite(vsS) ? (vsS >= 10 ? 'yes' : 'no') : '—'])
    ratioRows.push([String(DURABLE_MTU), `durable ${w} (vs writeback)`, w === 'seqwrite' ? '0.5' : '—', fmt(vsWb, 2), '—',
      w === 'seqwrite' && Number.isFinite(vsWb) ? (vsWb >= 0.5 ? 'yes' : 'no') : '—'])
  }

  const elapsed = (Date.now() - started) / 1000
  const noise = median(results.map(r => r.other_cpu_pct ?? NaN))
  const title = `kvblade vs vblade ${machine.vblade} — ${machine.cpu}, ${machine.cpus} CPUs, kernel ${machine.kernel}, ${DEPTH} frames in flight, median of ${RUNS} × ${SECONDS} s`
  fs.writeFileSync(path.join(OUT, 'ratios.svg'), renderChart(chartRows, title, !targets.includes('kvblade')))

  const text = [
    `## Throughput (veth, ${DEPTH} frames in flight, median of ${RUNS} × ${SECONDS} s; 4 KiB random I/O, full-frame sequential I/O)`, '',
    table(rows), '',
    '## Slow store (O_DIRECT file on disk, random 4 KiB reads)', '',
    'The file is dropped from the page cache before each run; "page cache MB" is how much of it was cached after the run (0 for a target that really uses O_DIRECT).', '',
    slowRows.length > 1 ? table(slowRows) : '(skipped)', '',
    `## Durable writes (a file on disk in ${SLOW_DIR}, MTU ${DURABLE_MTU}, ${DEPTH} in flight; ours writethrough by default, vblade -s is O_SYNC)`, '',
    'Every write is on stable storage before it is acknowledged, except in the writeback row. syncs/s and writes/sync come from the target\'s stat (group commit).', '',
    durableRows.length > 1 ? table(durableRows) : '(skipped)', '',
    '## Ratios', '', table(ratioRows), '',
    `Other processes' CPU use during the runs (median): ${fmt(noise)}% of one core${noise > 15 ? ' — the machine was busy; numbers are less reliable' : ''}.`, '',
    '## Memory', '',
    memory ? Object.entries(memory).map(([k, v]) => `- ${k}: ${v}`).join('\n') : '(skipped)', '',
    '## Verification', '',
    verify.length ? verify.map(v => `- ${LABEL[v.target]} MTU ${v.mtu} ${v.workload}: ${v.ok ? 'ok' : 'FAILED'} (${v.detail})`).join('\n') : '(skipped)',
    imageCheck ? `- backing file after all writes: ${imageCheck.ok ? 'ok' : 'FAILED'} (${imageCheck.detail})` : '', ''
  ].join('\n')
  fs.writeFileSync(path.join(OUT, 'results.md'), text)
  const noisy = sums.filter(s => s.other_cpu_pct > 15)
  process.stdout.write('\n' + text + '\n')
  if (kvbladeProblem) process.stdout.write(`kvblade was not measured: ${kvbladeProblem}\n`)
  if (noisy.length) {
    process.stdout.write(`warning: other processes used > 15% CPU during ${noisy.length} of ${sums.length} measurements (see other_cpu_pct); the machine was not quiet\n`)
  }
  const summary = {
    bench: 'kvblade', version: 1, date: new Date().toISOString(), elapsed_s: Math.round(elapsed), machine,
    settings: { seconds: SECONDS, runs: RUNS, depth: DEPTH, warmup_s: WARMUP, busy_poll: BUSY_POLL, nice: Number(NICE), targets, quiet_waited_s: Math.round(quietWaitedMs / 1000) },
    workloads: sums, slow_store: slowSums, durable: durableSums, durable_ratios: durableRatios, ratios: chartRows.map(r => ({ workload: r.label, ours_vs_vblade: r.ours, nullblade_vs_vblade: r.reference, goal: r.goal })),
    other_cpu_pct_median: noise, memory, verify, image_check: imageCheck, runs: [...results, ...slow, ...durable], discarded_noisy_runs: discarded
  }
  fs.writeFileSync(path.join(OUT, 'results.json'), JSON.stringify(summary, null, 1) + '\n')
  process.stdout.write(JSON.stringify(summary, (k, v) => (k === 'runs' || k === 'discarded_noisy_runs' ? undefined : v)) + '\n')
  log(`done in ${fmt(elapsed)} s; wrote ${path.relative(ROOT, OUT)}/{results.md,results.json,ratios.svg,bench.log}`)
  return 0
}

async function memoryRun (): Promise<Record<string, number | string>> {
  const count = 64
  fs.mkdirSync(MANY_DIR, { recursive: true })
  tempFiles.push(MANY_DIR)
  const adds: string[] = []
  for (let i = 0; i < count; i++) {
    const f = path.join(MANY_DIR, `t${i}.img`)
    fs.closeSync(fs.openSync(f, 'w'))
    fs.truncateSync(f, 64 << 20)
    adds.push('--add', `${SHELF} ${i} ${IF_T} ${f}`)
  }
  const out: Record<string, number | string> = { targets: count }
  await setMtu(1500)
  const t = startProcess('kvblade', [KVBLADE, 'start', '--no-mount', '--no-state', ...adds, '--bufcnt', String(DEPTH), ...KVBLADE_ARGS])
  try {
    await waitReady(t, count, null, 60)
    await sleep(1000)
    out.rss_idle_mb = Number((procSample(t.pid).rssKb / 1024).toFixed(1))
    // some traffic to one of them, then the peak
    const { json } = await aoeload(['-s', '0', '-w', 'randwrite', '-d', String(DEPTH), '-t', '2'], 2)
    const s = procSample(t.pid)
    out.rss_after_load_mb = Number((s.rssKb / 1024).toFixed(1))
    out.rss_peak_mb = Number((s.hwmKb / 1024).toFixed(1))
    out.load_mb_s = json ? Number(json.mb_s.toFixed(1)) : 'failed'
    out.goal_mb = 150
    log(`memory: kvblade with ${count} targets: RSS ${out.rss_idle_mb} MB idle, ${out.rss_after_load_mb} MB after load, peak ${out.rss_peak_mb} MB`)
  } catch (err) {
    out.error = (err as Error).message
    log(`memory: ${out.error}`)
  } finally {
    await stopTarget(t)
  }
  // vblade needs one process per export: its total for comparison
  if (TARGETS.includes('vblade')) {
    const vbs: Target[] = []
    try {
      for (let i = 0; i < count; i++) vbs.push(startProcess('vblade', ['vblade', '-b', String(DEPTH), String(SHELF), String(i), IF_T, path.join(MANY_DIR, `t${i}.img`)]))
      await waitReady(vbs[0], count, null, 30)
      out.vblade_64_processes_rss_mb = Number((vbs.reduce((a, v) => a + procSample(v.pid).rssKb, 0) / 1024).toFixed(1))
    } catch (err) {
      out.vblade_error = (err as Error).message
    } finally {
      for (const v of vbs) await stopTarget(v)
    }
  }
  return out
}

let exiting = false
async function finish (code: number): Promise<never> {
  if (!exiting) {
    exiting = true
    await cleanup()
  }
  logStream?.end()
  process.exit(code)
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => { log(`${sig}: cleaning up`); void finish(130) })
}
process.on('uncaughtException', err => { log(`error: ${err.stack ?? err}`); void finish(1) })

if (require.main === module) {
  main().then(code => finish(code), (err: Error) => { log(`error: ${err.stack ?? err.message}`); return finish(1) })
}
