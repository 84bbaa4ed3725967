// Operations: what an admin or an initiator set survives a restart (TERM or KILL) and is
// announced again; a state file that cannot be read stops the daemon and is left alone;
// restored targets whose interface or backing is missing wait and then serve; the
// exports file and reload; SIGHUP; an interface unplugged and back, down and up, or
// given a new MTU; --add, readd and del across restarts; an exports line clashing with
// a control-plane export; SIGTERM finishing the requests in flight.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Command } from '../../src/aoe/constants'
import { encodeHeader } from '../../src/aoe/header'
import { decodeMacMask, encodeMacMask } from '../../src/aoe/macmask'
import { writeMac } from '../../src/aoe/mac'
import { decodeReserve, encodeReserve } from '../../src/aoe/reserve'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly, type VethPair } from '../helpers/netns'
import { TestInitiator, type Reply, type TargetRef } from '../helpers/initiator'
import { Daemon, KVBLADE } from '../helpers/daemon'
import { exec, fuseSkipReason, isMountPoint, sh } from '../helpers/fuse-harness'
import { configOf } from '../helpers/frames'

const SECTOR = 512
const unavailable = networkTestsUnavailable() ?? fuseSkipReason() ?? null

async function until (cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await cond()) return true
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return await cond()
}

/** Announcements (unsolicited Query Config replies, tag 0) of major.minor heard so far. */
function announcements (a: TestInitiator, major: number, minor: number): number {
  return announced(a, major, minor).length
}

function announced (a: TestInitiator, major: number, minor: number): Reply[] {
  return a.received.filter(r => r.header.command === Command.QueryConfig && r.header.tag === 0 && r.header.major === major && r.header.minor === minor)
}

/** A locally administered MAC no interface here has: a host the mask does not list. */
const STRANGER = 0x02000000beef

/** Query Config to `dst` sent as if from `src`: the replies (to src) the initiator's socket sees. */
async function queryAs (a: TestInitiator, src: number, dst: number, major: number, minor: number): Promise<Reply[]> {
  const { frame, tag } = a.configFrame(dst, major, minor)
  writeMac(frame, 6, src)
  return await a.request(frame, tag, 1, 1000)
}

/** The Mac Mask List as the target reports it (mcmd 0, read), or null without an answer. */
async function readMask (a: TestInitiator, dst: number, major: number, minor: number): Promise<number[] | null> {
  const frame = Buffer.alloc(60)
  const tag = a.tag()
  encodeHeader(frame, 0, a.header(dst, major, minor, Command.MacMaskList, tag))
  encodeMacMask(frame, 0, { mcmd: 0, merror: 0, directives: [] })
  const replies = await a.request(frame, tag, 1, 1000)
  if (replies.length !== 1) return null
  const m = decodeMacMask(replies[0].frame, 0, replies[0].frame.length)
  return m === 'truncated' ? null : m.directives.map(d => d.mac)
}

/** One Mac Mask List edit directive (1 add, 2 delete); the merror of the reply, or null. */
async function editMask (a: TestInitiator, dst: number, major: number, minor: number, dcmd: number, mac: number): Promise<number | null> {
  const frame = Buffer.alloc(60)
  const tag = a.tag()
  encodeHeader(frame, 0, a.header(dst, major, minor, Command.MacMaskList, tag))
  encodeMacMask(frame, 0, { mcmd: 1, merror: 0, directives: [{ dcmd, mac }] })
  const replies = await a.request(frame, tag, 1, 1000)
  return replies.length === 1 ? replies[0].frame[26] : null
}

if (unavailable !== null) {
  skipLoudly(t, 'operations tests', unavailable)
} else {
  t.test('operations', async t => {
    const net = await TestNetwork.create(2)
    t.teardown(() => net.destroy())
    const [linkA, linkB] = net.links
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvblade-ops-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const mnt = path.join(dir, 'ctl')
    const stateFile = path.join(dir, 'state', 'state.json')
    const disk = path.join(dir, 'disk.img')
    const data = crypto.randomBytes(1 << 20)
    fs.writeFileSync(disk, data)
    const a = TestInitiator.open(linkA.initiator, net.nsPath)
    t.teardown(() => a.close())
    const macA = interfaceMac(linkA.target)
    const tg: TargetRef = { major: 9, minor: 0, mac: macA }
    const daemons: Daemon[] = []
    t.teardown(async () => {
      for (const d of daemons) await d.stop('SIGKILL')
      if (isMountPoint(mnt)) await exec('fusermount', ['-uz', mnt])
    })
    const start = async (...extra: string[]): Promise<Daemon> => {
      const d = await Daemon.start(['--mount', mnt, '--state', stateFile, ...extra])
      daemons.push(d)
      return d
    }
    const write = async (file: string, text: string): Promise<number | null> => (await sh('printf "%s\\n" "$2" >"$1"', [path.join(mnt, file), text])).code
    const read = async (file: string): Promise<string> => (await sh('cat "$1"', [path.join(mnt, file)])).stdout
    const name = `9.0@${linkA.target}`

    await t.test('what the admin and the initiator set comes back after TERM and after KILL, announced', async t => {
      let d = await start()
      t.equal(await write('add', `9 0 ${linkA.target} ${disk} cache=writeback bufcnt=24`), 0, 'add with options')
      t.equal(await write(`${name}/model`, 'Restored Disk'), 0)
      t.equal(await write(`${name}/sn`, 'SN-42'), 0)
      // The ACL lets the stranger in: only the mask may keep it out below.
      t.equal(await write(`${name}/acl`, `${formatMacOf(a.mac)},${formatMacOf(STRANGER)}`), 0)
      // The initiator sets the config string, adds itself to the mask, and reserves the disk.
      const set = a.configFrame(macA, 9, 0, { ccmd: 4, config: Buffer.from('host-a') })
      t.equal((await a.request(set.frame, set.tag, 1, 1000)).length, 1, 'config string set (the reply waited for the state file)')
      t.equal(await editMask(a, macA, 9, 0, 1, a.mac), 0, 'mask edited: only we may talk to it')
      const r = Buffer.alloc(60)
      const rt = a.tag()
      encodeHeader(r, 0, a.header(macA, 9, 0, Command.ReserveRelease, rt))
      encodeReserve(r, 0, { rcmd: 1, macs: [a.mac] })
      t.equal((await a.request(r, rt, 1, 1000)).length, 1, 'reserved')
      const saved = JSON.parse(fs.readFileSync(stateFile, 'utf8'))
      t.match(saved.targets[0].add, /^9 0 \S+ \S+disk\.img acl=\S+ cache=writeback bufcnt=24$/, 'the state file holds the add line with its options')
      t.same([saved.targets[0].model, saved.targets[0].serial, saved.targets[0].origin], ['Restored Disk', 'SN-42', 'control'])

      for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        const exit = await d.stop(signal)
        if (signal === 'SIGTERM') t.same(exit, { code: 0, signal: null }, 'SIGTERM: exit 0')
        if (isMountPoint(mnt)) await exec('fusermount', ['-uz', mnt])
        const heard = announcements(a, 9, 0)
        d = await start()
        t.ok(await until(() => announcements(a, 9, 0) > heard, 3000), `after ${signal}: the restored target was announced`)
        t.same([await read(`${name}/model`), await read(`${name}/sn`), await read(`${name}/cache`), await read(`${name}/bufcnt`), await read(`${name}/acl`)],
          ['Restored Disk\n', 'SN-42\n', 'writeback\n', '24\n', `${formatMacOf(a.mac)}\n${formatMacOf(STRANGER)}\n`], `after ${signal}: model, sn, cache, bufcnt, acl`)
        const q = await a.queryConfig(9, 0, {}, { dst: macA, want: 1, windowMs: 1000 })
        t.equal(q.length === 1 ? configOf(q[0].frame).config.toString() : '', 'host-a', `after ${signal}: the config string`)
        const rr = Buffer.alloc(60)
        const rrt = a.tag()
        encodeHeader(rr, 0, a.header(macA, 9, 0, Command.ReserveRelease, rrt))
        encodeReserve(rr, 0, { rcmd: 0, macs: [] })
        const reply = await a.request(rr, rrt, 1, 1000)
        t.same(reply.length === 1 ? decodeReserve(reply[0].frame, 0, reply[0].frame.length) : null, { rcmd: 0, macs: [a.mac] }, `after ${signal}: the reservation`)
        t.ok((await a.read(tg, 0, 8, 2, 4)).equals(data.subarray(0, 8 * SECTOR)), `after ${signal}: serving (the mask lets us in)`)
        t.same(await readMask(a, macA, 9, 0), [a.mac], `after ${signal}: the Mac Mask List read back is ours alone`)
        t.same(await queryAs(a, STRANGER, macA, 9, 0), [], `after ${signal}: a MAC not on the mask gets no answer`)
      }
      // The silence above is the mask's doing: with the list empty the stranger is answered.
      t.equal(await editMask(a, macA, 9, 0, 2, a.mac), 0, 'our MAC taken off the mask')
      t.same(await readMask(a, macA, 9, 0), [], 'the mask is empty')
      t.equal((await queryAs(a, STRANGER, macA, 9, 0)).length, 1, 'and the stranger is answered')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('a state file that cannot be read stops the daemon and is left as it is', async t => {
      fs.mkdirSync(path.dirname(stateFile), { recursive: true })
      fs.writeFileSync(stateFile, '{"kvblade": 1, "targets": [{"add": "9 0 eth0", "origin": "control"}], "addresses": []}\n')
      const before = fs.readFileSync(stateFile, 'utf8')
      const d = Daemon.spawn(['start', '--no-mount', '--state', stateFile])
      const exit = await d.wait()
      t.equal(exit.code, 1, 'exit status 1')
      t.match(d.stderr, new RegExp(`the state file ${stateFile.replace(/[.]/g, '\\.')} cannot be used: target 1 \\("9 0 eth0"\\): expected 4 fields`), 'names the file and the problem')
      t.equal(fs.readFileSync(stateFile, 'utf8'), before, 'the file is untouched')
      fs.writeFileSync(stateFile, 'not json')
      const d2 = Daemon.spawn(['start', '--no-mount', '--state', stateFile])
      t.equal((await d2.wait()).code, 1)
      t.match(d2.stderr, /not JSON/)
      fs.rmSync(stateFile)
    })

    await t.test('restored targets whose backing or interface is missing wait, then serve', async t => {
      const later = path.join(dir, 'later.img')
      const gone: VethPair = { target: `${linkB.target.slice(0, -1)}w`, initiator: `${linkB.initiator.slice(0, -1)}w` }
      fs.mkdirSync(path.dirname(stateFile), { recursive: true })
      fs.writeFileSync(stateFile, JSON.stringify({
        kvblade: 1,
        targets: [
          { add: `9 1 ${linkA.target} ${later}`, origin: 'control' },
          { add: `9 2 ${gone.target} ${disk}`, origin: 'control' },
        ],
        addresses: [],
      }))
      const d = await start()
      t.match(await read(`9.1@${linkA.target}/state`), /^waiting: cannot open .*later\.img/, 'the missing backing: waiting, and why')
      t.match(await read(`9.2@${gone.target}/state`), /^waiting: no interface/, 'the missing interface: waiting')
      t.match(d.stderr, /9\.1@\S+: waiting: /, 'and the log says so')
      const status = await exec(KVBLADE, ['status', '--mount', mnt])
      t.equal(status.code, 0, status.stderr)
      t.match(status.stdout, new RegExp(`^9\\.1@${linkA.target} +waiting +0B +0 +rw,cache=writethrough,bufcnt=64 +${escapeRe(later)}$`, 'm'), 'kvblade status: its line says waiting')
      t.match(status.stdout, new RegExp(`^9\\.1@${linkA.target}: waiting: cannot open .*later\\.img`, 'm'), 'and why')
      t.match(status.stdout, new RegExp(`^9\\.2@${gone.target}: waiting: no interface`, 'm'), 'the one without its interface too')
      fs.writeFileSync(later, Buffer.alloc(64 * 1024))
      t.ok(await until(async () => await read(`9.1@${linkA.target}/state`) === 'serving\n', 5000), 'serving once the backing is there')
      t.equal((await a.identify({ major: 9, minor: 1, mac: macA })).sectors, 128)
      await net.recreateLink(gone)
      t.teardown(() => net.removeLink(gone).catch(() => {}))
      t.ok(await until(async () => await read(`9.2@${gone.target}/state`) === 'serving\n', 2000), 'serving once the interface appears')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('the exports file: applied at start, reloaded by kvblade reload and SIGHUP; a bad line applies nothing', async t => {
      const exportsFile = path.join(dir, 'exports')
      // A file per address: one file is one address in a daemon.
      const [other, other5, other6] = ['other.img', 'other5.img', 'other6.img'].map(f => path.join(dir, f))
      for (const f of [other, other5, other6]) fs.writeFileSync(f, Buffer.alloc(128 * 1024))
      fs.writeFileSync(exportsFile, `# test exports\n9 3 ${linkA.target} ${disk}\n9 4 ${linkA.target} ${other} ro\n`)
      const d = await start('--config', exportsFile)
      t.equal(await write('add', `9 5 ${linkA.target} ${other5}`), 0, 'and one through the control plane')
      const ls = async (): Promise<string[]> => (await fs.promises.readdir(mnt)).filter(n => n.includes('@')).sort()
      t.same(await ls(), [`9.3@${linkA.target}`, `9.4@${linkA.target}`, `9.5@${linkA.target}`])
      // I/O keeps going on 9.3 through every reload.
      let ioErrors = 0
      let running = true
      const io = (async () => {
        while (running) {
          const r = await a.ata({ major: 9, minor: 3, mac: macA }, 0x24, 0, 2, { tries: 3 }).catch(() => null)
          if (r === null || r.status !== 0x40) ioErrors++
        }
      })()
      fs.writeFileSync(exportsFile, `9 3 ${linkA.target} ${disk}\n9 6 ${linkA.target} ${other6}\n9 4 ${linkA.target} ${other}\n`)
      const r1 = await exec(KVBLADE, ['reload', '--mount', mnt])
      t.equal(r1.code, 0, `kvblade reload: ${r1.stderr}`)
      t.match(r1.stdout, /1 added, 0 removed, 1 changed/, 'says what it did')
      t.equal(await read(`9.4@${linkA.target}/ro`), '0\n', 'the changed line is served anew (no longer ro)')
      t.same(await ls(), [`9.3@${linkA.target}`, `9.4@${linkA.target}`, `9.5@${linkA.target}`, `9.6@${linkA.target}`], 'added; the control-plane one untouched')
      fs.writeFileSync(exportsFile, `9 3 ${linkA.target} ${disk}\n9 4 ${linkA.target} ${other}\n9 7 ${linkA.target} ${other6} frobnicate\n`)
      const r2 = await exec(KVBLADE, ['reload', '--mount', mnt])
      t.equal(r2.code, 1, 'a bad line: exit status 1')
      t.match(r2.stderr, /exports line 3: unknown option "frobnicate" .*; nothing was changed/, 'with its line number')
      t.same(await ls(), [`9.3@${linkA.target}`, `9.4@${linkA.target}`, `9.5@${linkA.target}`, `9.6@${linkA.target}`], 'nothing changed')
      fs.writeFileSync(exportsFile, `9 3 ${linkA.target} ${disk}\n`)
      d.child.kill('SIGHUP')
      t.ok(await until(async () => (await ls()).length === 2, 3000), 'SIGHUP reloads: 9.4 and 9.6 are gone')
      t.ok(d.alive, 'and the daemon lives')
      t.same(await ls(), [`9.3@${linkA.target}`, `9.5@${linkA.target}`])
      running = false
      await io
      t.equal(ioErrors, 0, 'the target left alone served throughout')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('SIGHUP without an exports file announces, and never stops the daemon', async t => {
      const d = await start('--add', `9 8 ${linkA.target} ${disk}`)
      const heard = announcements(a, 9, 8)
      d.child.kill('SIGHUP')
      t.ok(await until(() => announcements(a, 9, 8) > heard, 2000), 'announced')
      await new Promise(resolve => setTimeout(resolve, 200))
      t.ok(d.alive, 'alive')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('an interface unplugged and back: the target stays, serves again and is announced', async t => {
      const d = await start('--add', `9 9 ${linkB.target} ${disk}`)
      const b = TestInitiator.open(linkB.initiator, net.nsPath)
      t.ok((await b.read({ major: 9, minor: 9, mac: interfaceMac(linkB.target) }, 0, 2, 2, 1)).equals(data.subarray(0, 2 * SECTOR)), 'serving')
      b.close()
      await net.removeLink(linkB)
      t.ok(await until(async () => /gone/.test(await read('interfaces')), 2000), 'the interface shows as gone')
      t.match(await read(`9.9@${linkB.target}/state`), /^serving/, 'the target is still configured')
      // A new pair of the same names; the initiator listens before the target's end comes up.
      await net.recreateLink(linkB, 1500, false)
      const b2 = TestInitiator.open(linkB.initiator, net.nsPath)
      t.teardown(() => b2.close())
      await net.setLinkUp(linkB, true)
      t.ok(await until(() => announcements(b2, 9, 9) > 0, 1000), 'announced within a second of the interface coming up')
      t.ok((await b2.read({ major: 9, minor: 9, mac: interfaceMac(linkB.target) }, 0, 2, 2, 1)).equals(data.subarray(0, 2 * SECTOR)), 'and serving again')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('--add merges with the restored targets: another one is added, the same line is kept', async t => {
      const small = path.join(dir, 'merge.img')
      fs.writeFileSync(small, Buffer.alloc(64 * 1024))
      let d = await start()
      t.equal(await write('add', `9 13 ${linkA.target} ${disk}`), 0, 'added through the control plane')
      t.equal(await write(`9.13@${linkA.target}/model`, 'Kept Model'), 0)
      await d.stop()
      d = await start('--add', `9 14 ${linkA.target} ${small}`)
      t.equal((await a.identify({ major: 9, minor: 13, mac: macA })).sectors, 2048, 'the restored target serves')
      t.equal((await a.identify({ major: 9, minor: 14, mac: macA })).sectors, 128, 'and so does the --add one')
      t.equal(await read(`9.13@${linkA.target}/model`), 'Kept Model\n')
      await d.stop()
      // The restored target's own line as --add: left as it is (a re-add would lose the model).
      d = await start('--add', `9 13 ${linkA.target} ${disk}`)
      t.equal(await read(`9.13@${linkA.target}/model`), 'Kept Model\n', 'the same line: kept as it was, model and all')
      const origins = Object.fromEntries(JSON.parse(fs.readFileSync(stateFile, 'utf8')).targets.map((x: { add: string, origin: string }) => [x.add.split(' ').slice(0, 2).join('.'), x.origin]))
      t.same(origins, { '9.13': 'control', '9.14': 'cli' }, 'still the control plane\'s; the earlier --add one restored from the state')
      t.equal((await a.identify({ major: 9, minor: 14, mac: macA })).sectors, 128, 'which serves too')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('readd and del survive a restart', async t => {
      const other = path.join(dir, 'readd.img')
      fs.writeFileSync(other, Buffer.alloc(128 * 1024))
      let d = await start()
      t.equal(await write('add', `9 15 ${linkA.target} ${disk}`), 0)
      t.equal(await write('readd', `9 15 ${linkA.target} ${other}`), 0, 'readd to another backing')
      await d.stop()
      d = await start()
      t.equal(await read(`9.15@${linkA.target}/bpath`), `${other}\n`, 'after a restart: the new backing')
      t.equal((await a.identify({ major: 9, minor: 15, mac: macA })).sectors, 256, 'served at its size')
      t.equal(await write('del', `9 15 ${linkA.target}`), 0, 'deleted')
      await d.stop()
      d = await start()
      t.notOk(fs.existsSync(path.join(mnt, `9.15@${linkA.target}`)), 'after a restart: still gone')
      t.same(await a.discover(9, 15), [], 'and not served')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('an exports line naming a control-plane export: skipped with a warning at start, reported by reload', async t => {
      const exportsFile = path.join(dir, 'exports-clash')
      const other = path.join(dir, 'clash.img')
      fs.writeFileSync(other, Buffer.alloc(64 * 1024))
      let d = await start()
      t.equal(await write('add', `9 11 ${linkA.target} ${disk}`), 0, 'added through the control plane (kept in the state)')
      await d.stop()
      fs.writeFileSync(exportsFile, `9 11 ${linkA.target} ${other} ro\n9 12 ${linkA.target} ${other}\n`)
      d = await start('--config', exportsFile)
      t.ok(d.alive, 'the daemon starts')
      t.match(d.stderr, new RegExp(`warning: ${escapeRe(exportsFile)}: 9\\.11@${linkA.target} \\(line 1\\): already exported through the control plane or --add; left as it is, the line is skipped`), 'a warning names the line')
      t.same([await read(`9.11@${linkA.target}/bpath`), await read(`9.11@${linkA.target}/ro`)], [`${disk}\n`, '0\n'], 'the existing export is left as it is')
      t.equal((await a.identify({ major: 9, minor: 12, mac: macA })).sectors, 128, 'the other line is served')
      const r = await exec(KVBLADE, ['reload', '--mount', mnt])
      t.equal(r.code, 1, 'a reload still counts it as a failure')
      t.match(r.stderr, new RegExp(`0 added, 0 removed, 0 changed; failed: 9\\.11@${linkA.target} \\(line 1\\): already exported`), 'and says which')
      await d.stop()
      // Not a restart loop: the next start (as systemd's Restart= would do) works the same.
      d = await start('--config', exportsFile)
      t.ok(d.alive, 'starts again')
      await d.stop()
      fs.rmSync(stateFile)
    })

    await t.test('an MTU change is announced with the new frame size; down and up again is announced', async t => {
      const d = await start('--add', `9 16 ${linkB.target} ${disk}`)
      const b = TestInitiator.open(linkB.initiator, net.nsPath)
      t.teardown(() => b.close())
      const tb: TargetRef = { major: 9, minor: 16, mac: interfaceMac(linkB.target) }
      t.equal(await read(`9.16@${linkB.target}/mtu`), '1500\n')
      const before = announcements(b, 9, 16)
      await net.setMtu(linkB, 9000)
      t.ok(await until(() => announcements(b, 9, 16) > before, 1000), 'announced within a second of the MTU change')
      t.equal(configOf(announced(b, 9, 16).at(-1)!.frame).sectorsPerCommand, 17, 'with 17 sectors per frame, (9000 - 36) / 512')
      t.equal(await read(`9.16@${linkB.target}/mtu`), '9000\n', 'the mtu file follows')
      t.ok((await b.read(tb, 0, 34, 17, 2)).equals(data.subarray(0, 34 * SECTOR)), '17-sector reads are served')

      await net.setLinkUp(linkB, false)
      t.ok(await until(async () => new RegExp(`${linkB.target} +down`).test(await read('interfaces')), 2000), 'the interface shows as down')
      const down = announcements(b, 9, 16)
      await net.setLinkUp(linkB, true)
      t.ok(await until(() => announcements(b, 9, 16) > down, 1000), 'up again (not deleted): announced within a second')
      t.ok((await b.read(tb, 0, 2, 2, 1)).equals(data.subarray(0, 2 * SECTOR)), 'and serving')
      await d.stop()
      await net.setMtu(linkB, 1500)
      fs.rmSync(stateFile)
    })

    await t.test('SIGTERM: the requests in flight are answered before the daemon exits', async t => {
      const d = await start('--add', `9 10 ${linkA.target} ${disk}`)
      const target: TargetRef = { major: 9, minor: 10, mac: macA }
      const frames = []
      const replies = []
      for (let i = 0; i < 64; i++) {
        const f = a.ataFrame(target, 0x34, i * 2, 2, { data: crypto.randomBytes(2 * SECTOR) })
        frames.push(f.frame)
        replies.push(a.expect(f.tag, 1, 3000))
      }
      a.sendFrames(frames)
      d.child.kill('SIGTERM')
      const got = await Promise.all(replies)
      const ok = got.filter(r => r.length === 1 && r[0].frame[27] === 0x40).length
      const exit = await d.wait()
      t.equal(exit.code, 0, 'exit 0')
      // Frames that arrived before the signal was handled are answered; none is left hanging with the disk.
      t.ok(ok > 0, `${ok} of 64 writes answered`)
      t.equal(got.filter(r => r.length === 1 && r[0].frame[27] !== 0x40).length, 0, 'none answered with an error')
      fs.rmSync(stateFile, { force: true })
    })
  })
}

function escapeRe (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function formatMacOf (mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:')
}
