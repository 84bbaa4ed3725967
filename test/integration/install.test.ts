// `make install DESTDIR=... PREFIX=/usr`: the files it lays out, the program running from
// there, the unit passing systemd-analyze verify, its readiness notification (Type=notify)
// wherever the control plane is, the unit's capability set being enough to serve, and
// `make uninstall`.
import t from 'tap'
import { chownSync, chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Daemon, REPO, hostDefaults } from '../helpers/daemon'
import { run, sh } from '../helpers/exec'
import { fuseSkipReason } from '../helpers/fuse-harness'
import { TestInitiator } from '../helpers/initiator'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { NotifySocket } from '../helpers/notify-socket'
import { parseAddCommand } from '../../src/control/command'

const dest = mkdtempSync(join(tmpdir(), 'kvblade-install-'))
// Checked by the last test: every daemon here keeps its state and control plane in temporary places.
const hostBefore = hostDefaults()
t.teardown(() => rmSync(dest, { recursive: true, force: true }))

/** make in the repository, never rebuilding what the test itself runs from. */
function make (target: string, vars: string[] = []): ReturnType<typeof run> {
  const keep = ['dist/.built', 'native/build/Release/kvblade_native.node', 'node_modules/.package-lock.json'].flatMap(f => ['-o', f])
  return run('make', ['-C', REPO, '--no-print-directory', ...keep, target, `DESTDIR=${dest}`, 'PREFIX=/usr', ...vars], { timeoutMs: 300_000 })
}

const lib = join(dest, 'usr/lib/kvblade')
const unitPath = join(dest, 'usr/lib/systemd/system/kvblade.service')
const exportsPath = join(dest, 'etc/kvblade/exports')

/** `Key=value` lines of a unit (the last of each key). */
function unitValue (unit: string, key: string): string {
  const lines = unit.split('\n').filter(l => l.startsWith(`${key}=`))
  if (lines.length === 0) throw new Error(`no ${key}= in the unit`)
  return lines[lines.length - 1].slice(key.length + 1)
}

t.test('make install lays out the program, scripts, unit, docs and exports file', async t => {
  const r = await make('install')
  t.equal(r.code, 0, r.stderr)
  for (const [path, mode] of [
    ['usr/lib/kvblade/bin/kvblade', 0o755],
    ['usr/lib/kvblade/package.json', 0o644],
    ['usr/lib/kvblade/native/build/Release/kvblade_native.node', 0o644],
    ['usr/lib/kvblade/dist/src/cli/main.js', 0o644],
    ['usr/lib/kvblade/dist/fuse/mount.js', 0o644],
    ['usr/bin/kvadd', 0o755],
    ['usr/bin/kvdel', 0o755],
    ['usr/bin/kvstat', 0o755],
    ['usr/lib/systemd/system/kvblade.service', 0o644],
    ['usr/share/doc/kvblade/README.md', 0o644],
    ['usr/share/doc/kvblade/fuse/README.md', 0o644],
    ['etc/kvblade/exports', 0o644],
  ] as const) {
    const full = join(dest, path)
    t.ok(existsSync(full), `${path} installed`)
    if (existsSync(full)) t.equal(statSync(full).mode & 0o777, mode, `${path}: mode ${mode.toString(8)}`)
  }
  const link = join(dest, 'usr/bin/kvblade')
  t.ok(lstatSync(link).isSymbolicLink(), '/usr/bin/kvblade is a symlink')
  t.equal(readlinkSync(link), '../lib/kvblade/bin/kvblade', 'relative, so it works under DESTDIR and after packaging')
  t.equal(realpathSync(link), join(lib, 'bin/kvblade'))

  const modules = readdirSync(join(lib, 'node_modules'))
  for (const m of ['debug', 'fuse-native', 'prom-client']) t.ok(modules.includes(m), `production dependency ${m}`)
  for (const m of ['tap', 'typescript', 'node-gyp', '@types']) t.notOk(modules.includes(m), `no development dependency ${m}`)
  t.notOk(existsSync(join(lib, 'dist/test')), 'no tests')
  t.notOk(existsSync(join(lib, 'dist/src/cli/main.js.map')), 'no source maps')

  const unit = readFileSync(unitPath, 'utf8')
  t.notMatch(unit, /@[A-Z]+@/, 'every placeholder substituted')
  t.equal(unitValue(unit, 'ExecStart'), '/usr/bin/kvblade start --config /etc/kvblade/exports --state /var/lib/kvblade/state.json --mount /mnt/kvblade $KVBLADE_OPTS')
  t.equal(unitValue(unit, 'ExecReload'), '/bin/kill -HUP $MAINPID')
  t.equal(unitValue(unit, 'Documentation'), 'file:/usr/share/doc/kvblade/README.md')
  t.equal(readFileSync(exportsPath, 'utf8'), readFileSync(join(REPO, 'systemd/exports'), 'utf8'), 'the default exports file')
})

t.test('the examples of the exports file are valid add lines', async t => {
  const text = readFileSync(join(REPO, 'systemd/exports'), 'utf8')
  const examples = text.split('\n').filter(l => /^# {3}[0-9]/.test(l)).map(l => l.slice(1).trim())
  t.ok(examples.length >= 4, `${examples.length} examples`)
  for (const line of examples) t.doesNotThrow(() => parseAddCommand(line), line)
  t.notOk(text.split('\n').some(l => l.trim() !== '' && !l.startsWith('#')), 'nothing is exported until the admin says so')
})

t.test('a second make install keeps an edited exports file', async t => {
  writeFileSync(exportsPath, '9 0 eth0 /srv/mine.img\n')
  const r = await make('install')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /keeping .*etc\/kvblade\/exports/)
  t.equal(readFileSync(exportsPath, 'utf8'), '9 0 eth0 /srv/mine.img\n', 'not overwritten')
})

t.test('the installed program runs from DESTDIR', async t => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }
  const r = await run(join(dest, 'usr/bin/kvblade'), ['--version'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `kvblade ${pkg.version}\n`)
  // The addon loads lazily: an add makes it load, and fail on the interface, not on the addon.
  const add = await run(join(dest, 'usr/bin/kvblade'), ['start', '--no-mount', '--no-state', '--add', '9 0 kvnosuch0 /dev/null'])
  t.equal(add.code, 1)
  t.match(add.stderr, /no interface kvnosuch0/, 'the native addon was found')
})

const cannotNotify = NotifySocket.unavailable()
if (cannotNotify !== null) {
  skipLoudly(t, 'the readiness notification', cannotNotify)
} else {
  t.test('Type=notify: READY=1 once serving, wherever the control plane is or without one; none from a daemon that fails', async t => {
    const unit = readFileSync(unitPath, 'utf8')
    t.equal(unitValue(unit, 'Type'), 'notify')
    t.equal(unitValue(unit, 'NotifyAccess'), 'all')
    t.notMatch(unit, /^ExecStartPost=/m, 'no readiness poll of a fixed mount point')
    const notify = await NotifySocket.open()
    t.teardown(() => notify.close())
    const env = { NOTIFY_SOCKET: notify.path }
    const kvblade = join(dest, 'usr/bin/kvblade')

    const noMount = await Daemon.startCommand(kvblade, ['start', '--no-mount', '--no-state'], env)
    const ready = await notify.ready(10_000)
    t.ok(ready !== null, '--no-mount: READY=1')
    t.equal(ready?.pid, noMount.child.pid, 'sent under the daemon\'s PID (systemd-notify run by root), as NotifyAccess=main would want')
    t.equal(ready?.fields.STATUS, 'serving 0 targets', 'with a STATUS= line for systemctl status')
    await t.resolves(noMount.waitFor(/told systemd: ready/, 10_000), 'systemd-notify exited 0 (the listener read the message: its barrier let go)')
    t.same(await noMount.stop(), { code: 0, signal: null })

    const dir = mkdtempSync(join(tmpdir(), 'kvblade-notify-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const mnt = join(dir, 'elsewhere')
    notify.messages.length = 0
    const mounted = await Daemon.startCommand(kvblade, ['start', '--mount', mnt, '--no-state'], env)
    t.ok(await notify.ready(10_000), `--mount ${mnt}: READY=1`)
    t.doesNotThrow(() => readFileSync(join(mnt, 'stat')), 'and its control plane answers there')
    t.same(await mounted.stop(), { code: 0, signal: null })

    notify.messages.length = 0
    const failing = Daemon.spawnCommand(kvblade, ['start', '--no-mount', '--no-state', '--add', '9 0 kvnosuch0 /dev/null'], env)
    t.equal((await failing.wait()).code, 1, 'a start that fails exits 1')
    t.same(notify.messages, [], 'having sent nothing: systemd sees the start fail, not succeed')
  })
}

t.test('systemd-analyze verify accepts the unit', async t => {
  const which = await sh('command -v systemd-analyze')
  if (which.code !== 0) {
    skipLoudly(t, 'systemd-analyze verify of kvblade.service', 'systemd-analyze is not installed (Debian package systemd)')
    return
  }
  // verify checks that ExecStart= exists under the real root; point it at the DESTDIR copy.
  // (--root=DESTDIR would want a whole system there: sysinit.target, /bin/sh...)
  const dir = mkdtempSync(join(tmpdir(), 'kvblade-verify-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const unit = readFileSync(unitPath, 'utf8').replace('ExecStart=/usr/bin/kvblade', `ExecStart=${join(dest, 'usr/bin/kvblade')}`)
  writeFileSync(join(dir, 'kvblade.service'), unit)
  const r = await run(which.stdout.trim(), ['verify', join(dir, 'kvblade.service')])
  t.equal(r.code, 0, 'exit 0')
  // Unknown keys and bad values are only warnings: the output must be empty too.
  t.equal(r.stdout + r.stderr, '', 'no warnings')

  // The check itself is real: a misspelt key is reported.
  writeFileSync(join(dir, 'kvblade.service'), unit.replace('RuntimeDirectoryPreserve=', 'RuntimeDirectoryPreserv='))
  const bad = await run(which.stdout.trim(), ['verify', join(dir, 'kvblade.service')])
  t.match(bad.stdout + bad.stderr, /Unknown key 'RuntimeDirectoryPreserv'/)
})

const cannotServe = networkTestsUnavailable() ?? fuseSkipReason(['setpriv', 'unshare'])
if (cannotServe !== null && cannotServe !== undefined) {
  skipLoudly(t, 'the installed daemon under the unit\'s capabilities', cannotServe)
} else {
  t.test('the installed daemon serves with only the unit\'s capabilities, and says it is ready', async t => {
    const unit = readFileSync(unitPath, 'utf8')
    const caps = unitValue(unit, 'CapabilityBoundingSet').split(/\s+/).map(c => c.replace(/^CAP_/, '').toLowerCase())
    t.same(caps, ['net_raw', 'net_admin', 'sys_admin', 'dac_override'])
    t.equal(unitValue(unit, 'NoNewPrivileges'), 'yes')
    // Root with the bounding set limited is what systemd gives the service.
    const confined = (bounding: string[]): string[] =>
      ['setpriv', `--bounding-set=-all,${bounding.map(c => `+${c}`).join(',')}`, '--inh-caps=-all', '--no-new-privs', join(dest, 'usr/bin/kvblade')]

    const network = await TestNetwork.create(1)
    t.teardown(() => network.destroy())
    const dir = mkdtempSync('/dev/shm/kvblade-install-')
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    // Not root's: only CAP_DAC_OVERRIDE lets the daemon open it for writing.
    const img = join(dir, 'disk.img')
    writeFileSync(img, Buffer.alloc(1 << 20))
    chownSync(img, 65534, 65534)
    chmodSync(img, 0o600)
    const mnt = join(dir, 'kv')
    const link = network.links[0]

    const [cmd, ...args] = confined(caps)
    const notify = cannotNotify === null ? await NotifySocket.open() : null
    t.teardown(() => notify?.close())
    const d = await Daemon.startCommand(cmd, [...args, 'start', '--mount', mnt, '--state', join(dir, 'state.json'), '--add', `9 0 ${link.target} ${img}`],
      notify !== null ? { NOTIFY_SOCKET: notify.path } : {})
    t.teardown(() => d.stop())
    t.match(readFileSync(join(dir, 'state.json'), 'utf8'), `"9 0 ${link.target} ${img}"`, 'the state is kept where the test said')
    if (notify !== null) {
      // Faking the sender's PID takes CAP_SYS_ADMIN, which the unit's set has.
      const ready = await notify.ready(10_000)
      t.same([ready?.pid, ready?.fields.STATUS], [d.child.pid, 'serving 1 targets'], 'READY=1 under the daemon\'s PID with only the unit\'s capabilities')
    }

    const status = await run(join(dest, 'usr/bin/kvblade'), ['status', '--mount', mnt])
    t.equal(status.code, 0, status.stderr)
    t.match(status.stdout, new RegExp(`^9\\.0@${link.target} +up +1\\.0MiB +0 +rw,`, 'm'), 'status from the installed program')

    const initiator = TestInitiator.open(link.initiator, network.nsPath)
    t.teardown(() => initiator.close())
    const [found] = await initiator.discover(9, 0)
    t.ok(found, 'discovered: the packet socket works with CAP_NET_RAW alone of the network ones')
    const data = Buffer.alloc(16 * 512, 0x3c)
    await initiator.write({ major: 9, minor: 0, mac: found.mac }, 0, data)
    t.ok(readFileSync(img).subarray(0, data.length).equals(data), 'writes reach a backing file root does not own')

    t.same(await d.stop(), { code: 0, signal: null }, 'SIGTERM: clean exit, unmounted without more capabilities')

    // The set is not more than needed for nothing: without CAP_SYS_ADMIN there is no control plane.
    const [cmd2, ...args2] = confined(caps.filter(c => c !== 'sys_admin'))
    const noMount = Daemon.spawnCommand(cmd2, [...args2, 'start', '--mount', join(dir, 'kv2'), '--no-state'])
    t.equal((await noMount.wait()).code, 1, 'without CAP_SYS_ADMIN the daemon cannot mount and exits 1')
    t.match(noMount.stderr, /cannot mount the control plane/)
    const [cmd3, ...args3] = confined(caps.filter(c => c !== 'net_raw'))
    const noSocket = Daemon.spawnCommand(cmd3, [...args3, 'start', '--no-mount', '--no-state', '--add', `9 0 ${link.target} ${img}`])
    t.equal((await noSocket.wait()).code, 1, 'without CAP_NET_RAW it cannot open the packet socket')
    t.match(noSocket.stderr, /socket\(AF_PACKET\): Operation not permitted/)
  })
}

t.test('make uninstall removes the program and keeps the configuration', async t => {
  const r = await make('uninstall')
  t.equal(r.code, 0, r.stderr)
  for (const path of ['usr/lib/kvblade', 'usr/bin/kvblade', 'usr/bin/kvadd', 'usr/lib/systemd/system/kvblade.service', 'usr/share/doc/kvblade']) {
    t.notOk(existsSync(join(dest, path)), `${path} removed`)
  }
  t.ok(existsSync(exportsPath), 'the exports file is kept')
})

t.test('the host\'s state file and control plane mount point are untouched', async t => {
  t.equal(hostDefaults(), hostBefore, '/var/lib/kvblade/state.json and /mnt/kvblade as they were')
})
