// The control plane seen from the wire: a real daemon with its FUSE mount, driven from
// /bin/sh, watched by the test initiator (and tshark's AoE dissector) on a veth pair.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BROADCAST_MAC, Command, FLAG_RESPONSE } from '../../src/aoe/constants'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'
import { sh } from '../helpers/exec'

const SECTOR = 512
const unavailable = networkTestsUnavailable() ?? (fs.existsSync('/dev/fuse') ? null : 'no /dev/fuse')

function counters (line: string): number[] {
  return line.trim().split(/\s+/).map(Number)
}

if (unavailable !== null) {
  skipLoudly(t, 'control plane on the wire', unavailable)
} else {
  t.test('control plane on the wire', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    const link = net.links[0]
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvblade-cpw-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const mnt = path.join(dir, 'mnt')
    const fileA = path.join(dir, 'a.img')
    const fileB = path.join(dir, 'b.img')
    const dataA = crypto.randomBytes(1 << 20)
    const dataB = crypto.randomBytes(2 << 20)
    fs.writeFileSync(fileA, dataA)
    fs.writeFileSync(fileB, dataB)

    const daemon = await Daemon.start(['--mount', mnt, '--add', `9 0 ${link.target} ${fileA}`])
    t.teardown(() => daemon.stop())
    const initiator = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => initiator.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    const dirName = `${mnt}/9.0@${link.target}`

    await t.test('stat counters move with I/O from the initiator', async t => {
      const before = counters((await sh('cat "$1/stat"', [dirName])).stdout)
      const ifBefore = (await sh('cat "$1/stat"', [mnt])).stdout.trim().split(/\s+/)
      for (let i = 0; i < 10; i++) await initiator.ata(target, 0x24, i * 2, 2)
      for (let i = 0; i < 5; i++) await initiator.ata(target, 0x34, 100 + i * 2, 2, { data: dataA.subarray((100 + i * 2) * SECTOR, (102 + i * 2) * SECTOR) })
      await initiator.ata(target, 0xe7, 0, 0)
      const after = counters((await sh('cat "$1/stat"', [dirName])).stdout)
      t.same(after.slice(0, 7).map((v, i) => v - before[i]), [10, 20, 5, 10, 1, 0, 0],
        'reads, read sectors, writes, write sectors, flushes, errors, in flight')
      t.equal(after[7] - before[7], 16, 'frames handled')
      const ifAfter = (await sh('cat "$1/stat"', [mnt])).stdout.trim().split(/\s+/)
      t.equal(ifAfter[0], link.target)
      t.ok(Number(ifAfter[1]) - Number(ifBefore[1]) >= 16, 'interface frames in')
      t.ok(Number(ifAfter[2]) - Number(ifBefore[2]) >= 16, 'interface frames out')
      t.equal((await sh('cat "$1/busy"', [dirName])).stdout, '0\n')
    })

    await t.test('readd changes what is served, and the size', async t => {
      t.ok((await initiator.read(target, 0, 8)).equals(dataA.subarray(0, 8 * SECTOR)), 'file A before')
      const r = await sh('echo "9 0 $1 $2" > "$3/readd"', [link.target, fileB, mnt])
      t.equal(r.code, 0, `readd: ${r.stderr}`)
      t.ok((await initiator.read(target, 0, 8)).equals(dataB.subarray(0, 8 * SECTOR)), 'file B after')
      t.equal((await sh('cat "$1/scnt" "$1/bpath"', [dirName])).stdout, `${(2 << 20) / SECTOR}\n${fileB}\n`)
      t.equal((await initiator.identify(target)).sectors, (2 << 20) / SECTOR, 'IDENTIFY reports the new size')
      const missing = await sh('echo "9 0 $1 $2/nope" > "$3/readd"', [link.target, dir, mnt])
      t.not(missing.code, 0, 'readd of a missing file fails')
      t.ok((await initiator.read(target, 0, 8)).equals(dataB.subarray(0, 8 * SECTOR)), 'and leaves the target serving file B')
    })

    await t.test('announce puts a config reply on the wire (checked by tshark too)', async t => {
      const capture = net.exec('tshark', ['-i', link.initiator, '-a', 'duration:6', '-f', 'ether proto 0x88a2',
        '-T', 'fields', '-e', 'aoe.cmd', '-e', 'aoe.major', '-e', 'aoe.minor', '-e', 'eth.dst'], 30_000)
      await new Promise(resolve => setTimeout(resolve, 3000)) // tshark needs a moment to start capturing
      const before = initiator.received.length
      t.equal((await sh('echo 1 > "$1/announce"', [mnt])).code, 0)
      for (let i = 0; i < 100 && initiator.received.length === before; i++) await new Promise(resolve => setTimeout(resolve, 20))
      const seen = initiator.received.slice(before)
      t.same(seen.map(r => [r.header.command, r.header.major, r.header.minor, r.header.dst, r.header.flags & FLAG_RESPONSE]),
        [[Command.QueryConfig, 9, 0, BROADCAST_MAC, FLAG_RESPONSE]], 'one broadcast Query Config reply from 9.0')
      const tshark = await capture
      t.equal(tshark.code, 0, `tshark ran: ${tshark.stderr.slice(-300)}`)
      // tshark prints the shelf and slot in hex: 0x0009, 0x00.
      t.match(tshark.stdout, /^1\t0x0009\t0x00\tff:ff:ff:ff:ff:ff$/m, 'the AoE dissector decodes it as a Query Config to broadcast from 9.0')
    })

    await t.test('del makes the target stop answering', async t => {
      t.equal((await initiator.discover(9, 0)).length, 1, 'answers before')
      t.equal((await sh('echo "9 0 $1" > "$2/del"', [link.target, mnt])).code, 0)
      t.notOk(fs.existsSync(dirName), 'its directory is gone')
      t.same(await initiator.discover(9, 0), [], 'no reply to discovery')
      const { frame, tag } = initiator.ataFrame(target, 0x24, 0, 2)
      t.same(await initiator.request(frame, tag, 1, 500), [], 'no reply to a read')
      t.ok(daemon.alive)
    })
  })
}
