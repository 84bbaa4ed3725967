// Host side of the kernel-initiator e2e test: network namespaces, AoE targets
// (our daemon or Debian's vblade), the QEMU guest and the serial protocol of
// test/e2e/guest/init.sh.
import { spawn, spawnSync, ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const REPO = findRepo()
export const E2E_SRC = path.join(REPO, 'test', 'e2e')
export const CACHE = process.env.KVE_CACHE ?? path.join(REPO, '.cache', 'e2e')
export const VERBOSE = !!process.env.KVE_VERBOSE

function findRepo(): string {
  // Compiled to dist/test/e2e/lib/, sources in test/e2e/lib/: walk up to the Makefile.
  let d = __dirname
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(d, 'Makefile')) && fs.existsSync(path.join(d, 'test', 'e2e'))) return d
    d = path.dirname(d)
  }
  throw new Error('e2e: cannot find the repository root from ' + __dirname)
}

export function log(msg: string): void {
  process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 23)}] ${msg}\n`)
}

export function sh(cmd: string, args: string[], opts: { allowFail?: boolean, input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, maxBuffer: 64 << 20 })
  if (r.error) throw r.error
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`)
  }
  return r.stdout
}

export function which(bin: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

export const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex')

/** Why the e2e tests cannot run here, or null. */
export function skipReason(target: string): string | null {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not root (namespaces, tap devices and bridges need root)'
  for (const b of ['ip', 'qemu-system-x86_64', 'python3', 'dpkg', 'apt-get']) {
    if (!which(b)) return `${b} not found (make test installs qemu-system-x86 via TEST_DEBS)`
  }
  if (!fs.existsSync('/dev/net/tun')) return '/dev/net/tun missing (no tap devices)'
  if (!fs.existsSync('/bin/busybox') && !fs.existsSync('/usr/bin/busybox')) return 'busybox-static not installed'
  if (target === 'vblade' && !which('vblade')) return 'vblade not installed'
  const probe = spawnSync('ip', ['netns', 'add', 'kveprobe' + process.pid], { encoding: 'utf8' })
  if (probe.status !== 0) return 'cannot create network namespaces: ' + probe.stderr.trim()
  spawnSync('ip', ['netns', 'del', 'kveprobe' + process.pid])
  return null
}

/** Runs test/e2e/prepare-assets.sh (idempotent; downloads the kernel .deb once). */
export function prepareAssets(): { kernel: string, pvh: boolean, baseCpio: string } {
  const r = spawnSync('bash', [path.join(E2E_SRC, 'prepare-assets.sh')], {
    stdio: ['ignore', 2, 2], env: { ...process.env, KVE_CACHE: CACHE }, // keep the TAP stream on stdout clean
  })
  if (r.status !== 0) throw new Error('test/e2e/prepare-assets.sh failed (exit ' + r.status + ')')
  const vmlinux = path.join(CACHE, 'kernel', 'vmlinux')
  const usePvh = fs.existsSync(vmlinux) && process.env.KVE_BZIMAGE !== '1'
  return {
    kernel: usePvh ? vmlinux : path.join(CACHE, 'kernel', 'vmlinuz'),
    pvh: usePvh,
    baseCpio: path.join(CACHE, 'base.cpio'),
  }
}

// ---------------------------------------------------------------- network

/** One target-side host: a namespace holding one veth end, whose peer is a port of the VM's bridge. */
export interface TargetHost {
  readonly ns: string
  /** The veth end on the bridge (in the VM namespace). */
  readonly vethVm: string
  /** The veth end the target serves. */
  readonly vethTgt: string
}

/**
 * Namespaces: the VM side (bridge + tap + one veth end per target host) and one per
 * target host (the other veth end), so several hosts can serve one bridge. Nothing is
 * created in the root namespace. IPv6 is off in all of them.
 */
export class Net {
  readonly nsVm: string
  readonly br: string
  readonly tap: string
  /** Target hosts: the first is kve<id>tg with kvep<id>/kveh<id>, the others kve<id>tg<N> with kvep<id><N>/kveh<id><N>. */
  readonly hosts: TargetHost[]
  private created = false

  constructor(tag: string, readonly mtu: number, nhosts = 1) {
    const id = `${process.pid}${tag}` // pid <= 4194304: 7 digits, so names stay <= 15 chars
    this.nsVm = `kve${id}vm`
    this.br = `kvebr${id}`
    this.tap = `kvetap${id}`
    if (nhosts < 1 || nhosts > 9) throw new Error('1 to 9 target hosts')
    this.hosts = Array.from({ length: nhosts }, (_, i) => {
      const n = i === 0 ? '' : String(i + 1)
      return { ns: `kve${id}tg${n}`, vethVm: `kvep${id}${n}`, vethTgt: `kveh${id}${n}` }
    })
    for (const n of [this.br, this.tap, ...this.hosts.flatMap(h => [h.vethVm, h.vethTgt])]) {
      if (n.length > 15) throw new Error('interface name too long: ' + n)
    }
  }

  /** The first target host (the single-target tests use only this one). */
  get nsTgt(): string { return this.hosts[0].ns }
  get vethVm(): string { return this.hosts[0].vethVm }
  get vethTgt(): string { return this.hosts[0].vethTgt }

  private ns(ns: string, ...args: string[]): string {
    return sh('ip', ['netns', 'exec', ns, ...args])
  }

  /** The MAC address of a target host's veth end (what the initiator sees as that target). */
  macOf(host: number): string {
    const h = this.hosts[host]
    const m = /link\/ether ([0-9a-f:]{17})/.exec(sh('ip', ['-n', h.ns, 'link', 'show', 'dev', h.vethTgt]))
    if (!m) throw new Error(`no MAC for ${h.vethTgt}`)
    return m[1]
  }

  /**
   * Removes what an earlier run killed by a signal left behind: namespaces named
   * kve<PID><tag>vm|tg[N] whose PID is gone (with the processes still inside them).
   */
  static reapStale(): void {
    for (const line of sh('ip', ['netns', 'list'], { allowFail: true }).split('\n')) {
      const m = /^(kve(\d+)[a-z](?:vm|tg\d?))\b/.exec(line)
      if (!m || fs.existsSync(`/proc/${m[2]}`)) continue
      for (const pid of sh('ip', ['netns', 'pids', m[1]], { allowFail: true }).split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone */ }
      }
      spawnSync('ip', ['netns', 'del', m[1]])
      log(`removed stale namespace ${m[1]} of dead test process ${m[2]}`)
    }
  }

  up(): void {
    Net.reapStale()
    for (const ns of [this.nsVm, ...this.hosts.map(h => h.ns)]) {
      spawnSync('ip', ['netns', 'del', ns]) // leftovers of a killed run with the same pid
      sh('ip', ['netns', 'add', ns])
      this.created = true
      this.ns(ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1')
      this.ns(ns, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1')
      this.ns(ns, 'ip', 'link', 'set', 'lo', 'up')
    }
    const m = String(this.mtu)
    this.ns(this.nsVm, 'ip', 'link', 'add', this.br, 'mtu', m, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0')
    this.ns(this.nsVm, 'ip', 'tuntap', 'add', 'dev', this.tap, 'mode', 'tap')
    for (const h of this.hosts) {
      this.ns(this.nsVm, 'ip', 'link', 'add', h.vethVm, 'mtu', m, 'type', 'veth', 'peer', 'name', h.vethTgt, 'mtu', m, 'netns', h.ns)
    }
    // Before anything goes up: no IPv6, and no IGMP chatter from the host stack (multicast off,
    // and the bridge above does no snooping, which would join 224.0.0.106);
    // only AoE is to cross these links.
    const sides: [string, string[]][] = [[this.nsVm, [this.br, this.tap, ...this.hosts.map(h => h.vethVm)]], ...this.hosts.map(h => [h.ns, [h.vethTgt]] as [string, string[]])]
    for (const [ns, devs] of sides) {
      for (const d of devs) {
        this.ns(ns, 'sysctl', '-qw', `net.ipv6.conf.${d}.disable_ipv6=1`)
        this.ns(ns, 'ip', 'link', 'set', d, 'multicast', 'off')
      }
    }
    for (const dev of [this.tap, ...this.hosts.map(h => h.vethVm)]) {
      this.ns(this.nsVm, 'ip', 'link', 'set', dev, 'mtu', m, 'master', this.br)
      this.ns(this.nsVm, 'ip', 'link', 'set', dev, 'up')
    }
    this.ns(this.nsVm, 'ip', 'link', 'set', this.br, 'mtu', m, 'up')
    for (const h of this.hosts) this.ns(h.ns, 'ip', 'link', 'set', h.vethTgt, 'mtu', m, 'up')
  }

  down(): void {
    if (!this.created) return
    for (const h of this.hosts) spawnSync('ip', ['netns', 'exec', this.nsVm, 'ip', 'link', 'del', h.vethVm])
    spawnSync('ip', ['netns', 'exec', this.nsVm, 'ip', 'link', 'del', this.tap])
    spawnSync('ip', ['netns', 'exec', this.nsVm, 'ip', 'link', 'del', this.br])
    spawnSync('ip', ['netns', 'del', this.nsVm])
    for (const h of this.hosts) spawnSync('ip', ['netns', 'del', h.ns])
    this.created = false
  }
}

// ---------------------------------------------------------------- processes

const LIVE = new Set<Proc>()

export class Proc {
  /** SIGKILL every process this harness started that is still running (teardown). */
  static killAll(): void {
    for (const p of LIVE) if (p.alive) p.child.kill('SIGKILL')
  }

  readonly child: ChildProcess
  out = ''
  exit: { code: number | null, signal: NodeJS.Signals | null } | null = null
  readonly exited: Promise<void>

  constructor(readonly name: string, cmd: string, args: string[], opts: { stdin?: boolean } = {}) {
    if (VERBOSE) log(`spawn ${name}: ${cmd} ${args.join(' ')}`)
    this.child = spawn(cmd, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], cwd: REPO })
    const keep = (d: Buffer) => {
      this.out += d.toString('utf8')
      if (this.out.length > 4 << 20) this.out = this.out.slice(-(2 << 20))
    }
    this.child.stdout!.on('data', keep)
    this.child.stderr!.on('data', keep)
    LIVE.add(this)
    this.exited = new Promise(resolve => {
      this.child.on('exit', (code, signal) => { this.exit = { code, signal }; LIVE.delete(this); resolve() })
      this.child.on('error', err => { this.out += `\nspawn error: ${err.message}\n`; this.exit = { code: -1, signal: null }; resolve() })
    })
  }

  get alive(): boolean { return this.exit === null }

  /** SIGTERM, then SIGKILL after `grace` ms. Resolves with how it ended. */
  async stop(grace = 5000): Promise<{ code: number | null, signal: NodeJS.Signals | null, killed: boolean }> {
    if (!this.alive) return { ...this.exit!, killed: false }
    this.child.kill('SIGTERM')
    let killed = false
    const timer = setTimeout(() => { killed = true; this.child.kill('SIGKILL') }, grace)
    await this.exited
    clearTimeout(timer)
    return { ...this.exit!, killed }
  }

  tail(n = 30): string {
    return this.out.split('\n').slice(-n).join('\n')
  }
}

export const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

// ---------------------------------------------------------------- targets

export interface Export {
  major: number
  minor: number
  file: string
  /** Add-line options after the four kvblade fields (e.g. shared, direct); kvblade only. */
  options?: string[]
}

/** An AoE target implementation under test, running in the target namespace. */
export interface Target {
  readonly kind: string
  start(): Promise<void>
  /** Stop serving one export (the daemon, if it has no control plane, stops entirely). */
  remove(e: Export): Promise<string>
  readd(e: Export): Promise<string>
  /** Stop and start everything. */
  restart(): Promise<string>
  /** Healthy = every process we expect to be running is running. */
  healthy(): boolean
  /** Final stop; returns problems (e.g. unclean exit) as strings. */
  shutdown(): Promise<string[]>
  logs(): string
  kill(): void
}

const STARTUP_MS = Number(process.env.KVE_TARGET_STARTUP_MS ?? 1500)

/** Debian's vblade: one process per export. Used to validate the harness. */
export class VbladeTarget implements Target {
  readonly kind = 'vblade'
  private procs = new Map<string, Proc>()
  private dead: Proc[] = []
  constructor(private net: Net, private exports: Export[]) {}

  private key(e: Export) { return `${e.major}.${e.minor}` }
  private async startOne(e: Export) {
    const p = new Proc(`vblade e${this.key(e)}`, 'ip', ['netns', 'exec', this.net.nsTgt, 'vblade',
      String(e.major), String(e.minor), this.net.vethTgt, e.file])
    this.procs.set(this.key(e), p)
  }
  async start() {
    for (const e of this.exports) await this.startOne(e)
    await sleep(STARTUP_MS)
    if (!this.healthy()) throw new Error('vblade did not start:\n' + this.logs())
  }
  async remove(e: Export) {
    const p = this.procs.get(this.key(e))!
    this.procs.delete(this.key(e))
    this.dead.push(p)
    await p.stop()
    return `stopped vblade e${this.key(e)}`
  }
  async readd(e: Export) {
    await this.startOne(e)
    await sleep(300)
    return `started vblade e${this.key(e)}`
  }
  async restart() {
    for (const e of this.exports) await this.remove(e)
    for (const e of this.exports) await this.startOne(e)
    await sleep(300)
    return 'restarted all vblade processes'
  }
  healthy() { return this.procs.size > 0 && [...this.procs.values()].every(p => p.alive) }
  async shutdown() {
    for (const p of this.procs.values()) await p.stop() // vblade has no clean SIGTERM exit; not checked
    return []
  }
  logs() { return [...this.dead, ...this.procs.values()].map(p => `--- ${p.name}\n${p.tail()}`).join('\n') }
  kill() { for (const p of this.procs.values()) p.child.kill('SIGKILL') }
}

export interface KvbladeOptions {
  /** Which of the net's target hosts it runs on (default 0). */
  host?: number
  /** Mount the control plane (default: unless KVE_CONTROL=restart). */
  control?: boolean
  /** Names its processes and its control plane's mount point, when one test runs several. */
  name?: string
}

/**
 * Our daemon: `./bin/kvblade start --add "MAJOR MINOR IFACE PATH [OPTION]..." ...`, on one
 * of the net's target hosts (the first unless told). Removal/re-add uses the control plane
 * (a FUSE mount with `del` and `add` files) unless KVE_CONTROL=restart; then it is emulated
 * by stopping and restarting the whole daemon.
 */
export class KvbladeTarget implements Target {
  readonly kind: string
  private proc: Proc | null = null
  private old: Proc[] = []
  private problems: string[] = []
  /** Remove/re-add via the control plane (default), or KVE_CONTROL=restart to emulate it by a daemon restart. */
  readonly control: boolean
  private mountDir: string
  private host: TargetHost

  constructor(net: Net, private exports: Export[], workDir: string, opts: KvbladeOptions = {}) {
    this.kind = opts.name ?? 'kvblade'
    this.control = opts.control ?? (process.env.KVE_CONTROL ?? 'fuse') === 'fuse'
    this.host = net.hosts[opts.host ?? 0]
    this.mountDir = path.join(workDir, opts.name === undefined ? 'ctl' : `ctl-${opts.name}`)
  }

  private addLine(e: Export): string {
    return [e.major, e.minor, this.host.vethTgt, e.file, ...(e.options ?? [])].join(' ')
  }

  private args(): string[] {
    // No state file: each boot of the suite starts from its own --add lines.
    const a = ['netns', 'exec', this.host.ns, path.join(REPO, 'bin', 'kvblade'), 'start', '--no-state']
    for (const e of this.exports) a.push('--add', this.addLine(e))
    if (this.control) {
      fs.mkdirSync(this.mountDir, { recursive: true })
      a.push('--mount', this.mountDir)
    } else {
      a.push('--no-mount')
    }
    if (process.env.KVE_KVBLADE_ARGS) a.push(...process.env.KVE_KVBLADE_ARGS.split(' ').filter(Boolean))
    return a
  }

  async start() {
    this.proc = new Proc(this.kind, 'ip', this.args())
    await sleep(STARTUP_MS)
    if (!this.proc.alive) throw new Error(`${this.kind} exited at start (${JSON.stringify(this.proc.exit)}):\n${this.proc.tail()}`)
  }

  /**
   * Starts a daemon that should refuse to serve: resolves with how it ended and what it
   * printed, or null (and it is killed) if it was still running after `ms`.
   */
  async startRefused(ms = 15_000): Promise<{ code: number | null, signal: NodeJS.Signals | null, out: string } | null> {
    const p = new Proc(`${this.kind} (to be refused)`, 'ip', this.args())
    this.old.push(p)
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; p.child.kill('SIGKILL') }, ms)
    await p.exited
    clearTimeout(timer)
    return timedOut ? null : { ...p.exit!, out: p.out }
  }

  /** The running daemon's pid (it is the process `ip netns exec` became). */
  get pid(): number | undefined { return this.proc?.alive ? this.proc.child.pid : undefined }

  /** SIGKILL, as a host crash would end it; resolves with how it ended. */
  async crash(): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    const p = this.proc
    if (!p) throw new Error('daemon not running')
    this.proc = null
    this.old.push(p)
    p.child.kill('SIGKILL')
    await p.exited
    return p.exit!
  }

  private async stopDaemon(why: string) {
    const p = this.proc!
    this.proc = null
    this.old.push(p)
    const r = await p.stop()
    if (r.killed || r.code !== 0) this.problems.push(`${why}: SIGTERM did not give a clean exit (${JSON.stringify(r)})`)
    return r
  }

  /**
   * Writes a line to the control plane. `ip netns exec` gives the daemon its own mount
   * namespace, so the FUSE mount is only visible there: enter it with nsenter.
   */
  private ctl(file: 'add' | 'del', line: string) {
    const pid = this.proc?.child.pid
    if (!pid || !this.proc?.alive) throw new Error('daemon not running')
    sh('nsenter', ['-t', String(pid), '-m', 'sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'ctl', line, path.join(this.mountDir, file)])
  }

  async remove(e: Export) {
    if (this.control) {
      this.ctl('del', `${e.major} ${e.minor} ${this.host.vethTgt}`)
      return `control plane: del ${e.major} ${e.minor}`
    }
    const r = await this.stopDaemon('remove')
    return `no control plane: stopped the daemon (${JSON.stringify(r)})`
  }

  async readd(e: Export) {
    if (this.control) {
      this.ctl('add', this.addLine(e))
      return `control plane: add ${e.major} ${e.minor}`
    }
    await this.start()
    return 'no control plane: started the daemon again'
  }

  async restart() {
    const r = await this.stopDaemon('restart')
    await this.start()
    return `daemon restarted (previous exit ${JSON.stringify(r)})`
  }

  healthy() { return !!this.proc?.alive }

  async shutdown() {
    if (this.proc) {
      if (!this.proc.alive) this.problems.push(`daemon had died: ${JSON.stringify(this.proc.exit)}`)
      else await this.stopDaemon('final stop')
    }
    return this.problems
  }

  logs() { return [...this.old, ...(this.proc ? [this.proc] : [])].map(p => `--- ${p.name}\n${p.tail(60)}`).join('\n') }
  kill() { this.proc?.child.kill('SIGKILL'); if (this.control) spawnSync('umount', ['-l', this.mountDir]) }
}

// ---------------------------------------------------------------- backing files

export interface Layout {
  exports: Export[]
  sectors: [number, number]
  preLen: number
  pre: [Buffer, Buffer]
  tail0: Buffer
  rand: Buffer
  woff: number
}

/** Backing files: e9.0 has an odd sector count, host data at the start and in its last sector. */
export function makeBackingFiles(dir: string, brk: string | undefined): Layout {
  const sectors: [number, number] = [64 * 2048 + 77, 48 * 2048]
  const preLen = 1 << 20
  const pre: [Buffer, Buffer] = [randomBytes(preLen), randomBytes(preLen)]
  const tail0 = randomBytes(512)
  const rand = randomBytes(6 << 20)
  const woff = (3 << 20) + 12345 // neither sector- nor page-aligned
  const files = [path.join(dir, 'e9.0.img'), path.join(dir, 'e9.1.img')]
  for (let i = 0; i < 2; i++) {
    const fd = fs.openSync(files[i], 'w')
    fs.ftruncateSync(fd, sectors[i] * 512)
    fs.writeSync(fd, pre[i], 0, preLen, 0)
    if (i === 0) fs.writeSync(fd, tail0, 0, 512, (sectors[0] - 1) * 512)
    fs.closeSync(fd)
  }
  // Deliberate breakage, to prove the suite fails loudly.
  if (brk === 'size') fs.truncateSync(files[0], (sectors[0] - 8) * 512) // target reports 8 sectors fewer
  if (brk === 'data') { const fd = fs.openSync(files[1], 'r+'); fs.writeSync(fd, Buffer.from([pre[1][4242] ^ 0xff]), 0, 1, 4242); fs.closeSync(fd) }
  return {
    exports: [{ major: 9, minor: 0, file: files[0] }, { major: 9, minor: 1, file: files[1] }],
    sectors, preLen, pre, tail0, rand, woff,
  }
}

export function readRange(file: string, off: number, len: number): Buffer {
  const fd = fs.openSync(file, 'r')
  const b = Buffer.alloc(len)
  const n = fs.readSync(fd, b, 0, len, off)
  fs.closeSync(fd)
  return b.subarray(0, n)
}

// ---------------------------------------------------------------- guest

export interface GuestResult {
  name: string
  pass: boolean
  detail: string
}

export interface GuestRun {
  results: GuestResult[]
  info: Map<string, string>
  requests: string[]
  done: boolean
  bootedMs: number | null
  totalMs: number
  serial: string
  exit: string
}

/** Builds this run's initramfs: the cached base + /init (guest/${init}), params and data appended as a second cpio. */
export function buildInitramfs(workDir: string, baseCpio: string, params: Record<string, string | number>, files: Record<string, Buffer>, init = 'init.sh'): string {
  const root = path.join(workDir, 'initramfs-run')
  fs.rmSync(root, { recursive: true, force: true })
  fs.mkdirSync(path.join(root, 'e2e'), { recursive: true })
  fs.copyFileSync(path.join(E2E_SRC, 'guest', init), path.join(root, 'init'))
  fs.chmodSync(path.join(root, 'init'), 0o755)
  fs.writeFileSync(path.join(root, 'e2e', 'params'),
    Object.entries(params).map(([k, v]) => `${k}='${v}'`).join('\n') + '\n')
  for (const [name, data] of Object.entries(files)) fs.writeFileSync(path.join(root, 'e2e', name), data)
  const r = spawnSync('python3', [path.join(E2E_SRC, 'tools', 'mkcpio.py'), root], { maxBuffer: 256 << 20 })
  if (r.status !== 0) throw new Error('mkcpio failed: ' + r.stderr)
  const out = path.join(workDir, 'initramfs.cpio')
  fs.writeFileSync(out, Buffer.concat([fs.readFileSync(baseCpio), r.stdout]))
  return out
}

export interface BootOpts {
  net: Net
  kernel: string
  initrd: string
  mtu: number
  timeoutMs: number
  mac: string
  onRequest: (action: string) => Promise<string>
  extraAppend?: string
}

export function qemuArgs(o: { kernel: string, initrd?: string, append?: string, tap: string, mtu: number, mac: string, mem?: number, extra?: string[] }): string[] {
  const a = [
    '-machine', 'pc,accel=tcg', '-cpu', 'max', '-smp', '1', '-m', String(o.mem ?? 384),
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
    '-serial', 'stdio', '-no-reboot',
    '-kernel', o.kernel,
    '-netdev', `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=n0,romfile=,mac=${o.mac}` + (o.mtu > 1500 ? `,host_mtu=${o.mtu}` : ''),
  ]
  if (o.initrd) a.push('-initrd', o.initrd)
  if (o.append) a.push('-append', o.append)
  if (o.extra) a.push(...o.extra)
  return a
}

/** Boots the guest, answers its KVE:REQ lines, collects its KVE:RESULT lines. */
export async function runGuest(o: BootOpts): Promise<GuestRun> {
  const append = [
    'console=ttyS0', 'loglevel=4', 'panic=-1', 'ipv6.disable=1', 'rdinit=/init',
    'tsc=reliable', 'no_timer_check', o.extraAppend ?? '',
  ].filter(Boolean).join(' ')
  const t0 = Date.now()
  const q = new Proc('qemu', 'ip', ['netns', 'exec', o.net.nsVm, 'qemu-system-x86_64',
    ...qemuArgs({ kernel: o.kernel, initrd: o.initrd, append, tap: o.net.tap, mtu: o.mtu, mac: o.mac })], { stdin: true })
  const run: GuestRun = { results: [], info: new Map(), requests: [], done: false, bootedMs: null, totalMs: 0, serial: '', exit: '' }
  let buf = ''
  let chain = Promise.resolve()
  q.child.stdout!.on('data', (d: Buffer) => {
    const s = d.toString('utf8')
    if (VERBOSE) process.stderr.write(s)
    buf += s
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r/g, '')
      buf = buf.slice(nl + 1)
      const m = /KVE:(\S+)\s?(.*)$/.exec(line)
      if (!m) continue
      const [, kind, rest] = m
      if (kind === 'BOOTED') run.bootedMs = Date.now() - t0
      else if (kind === 'DONE') run.done = true
      else if (kind === 'RESULT') {
        const r = /^(\S+) (PASS|FAIL) ?(.*)$/.exec(rest)
        if (r) run.results.push({ name: r[1], pass: r[2] === 'PASS', detail: r[3] })
      } else if (kind === 'INFO') {
        for (const kv of rest.split(/\s+/)) {
          const i = kv.indexOf('=')
          if (i > 0) run.info.set(kv.slice(0, i), kv.slice(i + 1))
        }
      } else if (kind === 'REQ') {
        const action = rest.trim()
        run.requests.push(action)
        chain = chain.then(async () => {
          let what: string
          try { what = await o.onRequest(action) } catch (e) { what = 'host action failed: ' + (e as Error).message }
          log(`guest asked "${action}": ${what}`)
          if (q.alive) q.child.stdin!.write(`go-${action}\n`)
        })
      }
    }
  })
  const timer = setTimeout(() => { log(`guest timed out after ${o.timeoutMs} ms; killing QEMU`); q.child.kill('SIGKILL') }, o.timeoutMs)
  await q.exited
  clearTimeout(timer)
  await chain
  run.totalMs = Date.now() - t0
  run.serial = q.out
  run.exit = JSON.stringify(q.exit)
  return run
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

// ---------------------------------------------------------------- capture

/** Ethertype counts and the largest AoE frame in a pcapng file (little-endian, as dumpcap writes here). */
export function summarizePcapng(file: string): { types: Map<number, number>, maxAoe: number, frames: number } {
  const b = fs.readFileSync(file)
  const types = new Map<number, number>()
  let maxAoe = 0, frames = 0, off = 0
  if (b.length < 12 || b.readUInt32LE(8) !== 0x1a2b3c4d) throw new Error('not a little-endian pcapng: ' + file)
  while (off + 12 <= b.length) {
    const type = b.readUInt32LE(off)
    const len = b.readUInt32LE(off + 4)
    if (len < 12 || off + len > b.length) break // truncated last block (capture stopped)
    if (type === 6) { // Enhanced Packet Block
      const capLen = b.readUInt32LE(off + 20)
      const origLen = b.readUInt32LE(off + 24)
      if (capLen >= 14) {
        const et = b.readUInt16BE(off + 28 + 12)
        types.set(et, (types.get(et) ?? 0) + 1)
        if (et === 0x88a2) maxAoe = Math.max(maxAoe, origLen)
        frames++
      }
    }
    off += len
  }
  return { types, maxAoe, frames }
}

// ---------------------------------------------------------------- iPXE

/**
 * A 16 MiB disk whose boot sector prints `marker` on COM1 and then ends QEMU through
 * isa-debug-exit (port 0xf4, value 0x21: QEMU exits with status 0x21*2+1 = 67).
 * The disk must be large enough for iPXE's INT13 CHS geometry guess (>= 1 cylinder of 255*63).
 */
export function makeBootDisk(file: string, marker: string): void {
  const code = Buffer.from([
    0x31, 0xc0, // xor ax,ax
    0x8e, 0xd8, // mov ds,ax
    0xfc, // cld
    0xba, 0xf8, 0x03, // mov dx,0x3f8 (COM1 data port)
    0xbe, 0x1a, 0x7c, // mov si,0x7c1a (message)
    0xac, // loop: lodsb
    0x84, 0xc0, // test al,al
    0x74, 0x03, // jz done
    0xee, // out dx,al
    0xeb, 0xf8, // jmp loop
    0xb0, 0x21, // done: mov al,0x21
    0xe6, 0xf4, // out 0xf4,al (isa-debug-exit)
    0xf4, // hlt
    0xeb, 0xfd, // jmp hlt
  ])
  if (code.length !== 0x1a) throw new Error('boot sector code size changed')
  const msg = Buffer.from(`\r\n${marker}\r\n\0`, 'latin1')
  if (code.length + msg.length > 510) throw new Error('marker too long')
  const sector = Buffer.alloc(512)
  code.copy(sector, 0)
  msg.copy(sector, code.length)
  sector[510] = 0x55
  sector[511] = 0xaa
  const fd = fs.openSync(file, 'w')
  fs.ftruncateSync(fd, 16 << 20)
  fs.writeSync(fd, sector, 0, 512, 0)
  fs.closeSync(fd)
}
