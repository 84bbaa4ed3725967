// One exporter per disk and per address: a second daemon on the same backing is refused
// (naming the file and the holder) unless both say `shared`; a second daemon serving the
// same address on the same interface is refused, and so is an address another program
// answers for from our own MAC (vblade on a loopback); a target elsewhere on the wire that
// serves the same address is reported.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { TestNetwork, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { Daemon, KVBLADE } from '../helpers/daemon'

const unavailable = networkTestsUnavailable()

/** Starts a daemon that is expected to refuse: resolves with its exit and stderr. */
async function refused (args: string[]): Promise<{ code: number | null, stderr: string }> {
  const d = Daemon.spawn(['start', '--no-mount', ...args])
  const exit = await d.wait(20_000)
  return { code: exit.code, stderr: d.stderr }
}

if (unavailable !== null) {
  skipLoudly(t, 'exporter tests', unavailable)
} else {
  t.test('exporters', async t => {
    const net = await TestNetwork.create(2)
    t.teardown(() => net.destroy())
    const [linkA, linkB] = net.links
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvblade-exp-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const disk = path.join(dir, 'disk.img')
    const other = path.join(dir, 'other.img')
    for (const f of [disk, other]) { fs.writeFileSync(f, ''); fs.truncateSync(f, 4 << 20) }

    await t.test('a second daemon on the same backing is refused, naming the file and the holder', async t => {
      const first = await Daemon.start(['--no-mount', '--add', `9 0 ${linkA.target} ${disk}`])
      t.teardown(() => first.stop())
      const second = await refused(['--add', `9 1 ${linkB.target} ${disk}`])
      t.not(second.code, 0, 'it does not start')
      t.match(second.stderr, new RegExp(`${disk.replace(/[.]/g, '\\.')} is already exported by pid ${first.child.pid}`), 'the file and the holder')
      t.match(second.stderr, /add the option shared/, 'and what to do if it is meant')
      const ro = await refused(['--add', `9 1 ${linkB.target} ${disk} ro`])
      t.not(ro.code, 0, 'not even read-only while it is exported for writing')
      await first.stop()
    })

    await t.test('with shared on both, two daemons serve one backing (multipath over shared storage)', async t => {
      const first = await Daemon.start(['--no-mount', '--add', `9 2 ${linkA.target} ${disk} shared`])
      t.teardown(() => first.stop())
      const second = await Daemon.start(['--no-mount', '--add', `9 2 ${linkB.target} ${disk} shared`])
      t.teardown(() => second.stop())
      t.ok(first.alive && second.alive, 'both serve')
      const plain = await refused(['--add', `9 3 ${linkB.target} ${disk}`])
      t.not(plain.code, 0, 'a third one without shared is refused')
      await second.stop()
      await first.stop()
      const ro1 = await Daemon.start(['--no-mount', '--add', `9 4 ${linkA.target} ${disk} ro`])
      t.teardown(() => ro1.stop())
      const ro2 = await Daemon.start(['--no-mount', '--add', `9 4 ${linkB.target} ${disk} ro`])
      t.teardown(() => ro2.stop())
      t.ok(ro1.alive && ro2.alive, 'two read-only exports share the file without the option')
      await ro2.stop()
      await ro1.stop()
    })

    await t.test('a second daemon serving the same address on the same interface is refused', async t => {
      const first = await Daemon.start(['--no-mount', '--add', `9 5 ${linkA.target} ${disk}`])
      t.teardown(() => first.stop())
      const second = await refused(['--add', `9 5 ${linkA.target} ${other}`])
      t.not(second.code, 0, 'it does not start')
      t.match(second.stderr, new RegExp(`9\\.5 is already served on ${linkA.target} by another kvblade \\(pid ${first.child.pid}\\)`))
      const elsewhere = await Daemon.start(['--no-mount', '--add', `9 5 ${linkB.target} ${other}`])
      t.ok(elsewhere.alive, 'the same address on another interface is another matter')
      await elsewhere.stop()
      await first.stop()
    })

    await t.test('another program answering for the address from our own MAC (on a loopback) is refused', async t => {
      // A packet socket bound to AoE hears only frames that arrive, never what this host
      // sends: on a NIC or veth, another local program (vblade) neither hears our probe
      // nor can be heard (kvblade daemons are refused by their address claims instead).
      // On a loopback, sent frames come back in: there it answers, from our own MAC.
      const vblade = spawn('ip', ['netns', 'exec', net.ns, 'vblade', '9', '7', 'lo', other], { stdio: 'ignore' })
      t.teardown(() => { vblade.kill('SIGKILL') })
      await new Promise(resolve => setTimeout(resolve, 300))
      const inNs = (args: string[]): Daemon => Daemon.spawnCommand('ip', ['netns', 'exec', net.ns, process.execPath, KVBLADE, 'start', '--no-mount', '--no-state', ...args])
      const second = inNs(['--add', `9 7 lo ${disk}`])
      const exit = await second.wait(20_000)
      t.not(exit.code, 0, 'it does not start')
      t.match(second.stderr, /9\.7 is already served on lo by another process of this host/, 'and says why')
      vblade.kill('SIGKILL')
      await new Promise(resolve => vblade.once('exit', resolve))
      const alone = inNs(['--add', `9 7 lo ${disk}`])
      t.teardown(() => alone.stop())
      await alone.waitFor(/serving 1 targets/, 20_000)
      t.ok(alone.alive, 'once vblade is gone, the address is free')
      await alone.stop()
    })

    await t.test('a target elsewhere on the wire serving the address is reported by name', async t => {
      // vblade in the initiator's namespace, serving 9.6 from its own end of link A.
      const vblade = spawn('ip', ['netns', 'exec', net.ns, 'vblade', '9', '6', linkA.initiator, other], { stdio: 'ignore' })
      t.teardown(() => { vblade.kill('SIGKILL') })
      await new Promise(resolve => setTimeout(resolve, 300))
      const mac = fs.readFileSync(`/sys/class/net/${linkA.target}/address`, 'utf8').trim()
      const peer = (await net.exec('cat', [`/sys/class/net/${linkA.initiator}/address`])).stdout.trim()
      const ours = await Daemon.start(['--no-mount', '--add', `9 6 ${linkA.target} ${disk}`])
      t.teardown(() => ours.stop())
      t.match(ours.stderr, new RegExp(`9\\.6@${linkA.target}: ${peer} serves this address too`), `warned about ${peer}`)
      t.notMatch(ours.stderr, new RegExp(`${mac} serves this address too`), 'not about itself')
      await ours.stop()
    })
  })
}
