// A target whose file lives in RAM (/dev/shm): its reads are sent straight from a map
// of the file, the kernel copying page cache into the frame, and its writes are copied
// into that map. Checks over veth that the data is right, that a read sees the writes
// that arrived before it in the same batch, and that a file shrunk under the daemon
// gets ATA errors past its new end (never a grown-back file, never silence), is served
// at its new size, and costs nothing else.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'

const SECTOR = 512
const unavailable = networkTestsUnavailable() ?? (fs.existsSync('/dev/shm') ? null : 'no /dev/shm (tmpfs) here')

if (unavailable !== null) {
  skipLoudly(t, 'RAM-backed target tests', unavailable)
} else {
  t.test('a target on tmpfs', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    const [link] = net.links
    const dir = fs.mkdtempSync('/dev/shm/kvblade-mem-it-')
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const disk = path.join(dir, 'disk.img')
    const hostData = crypto.randomBytes(256 * SECTOR)
    fs.writeFileSync(disk, Buffer.alloc(8 << 20))
    const fd = fs.openSync(disk, 'r+')
    fs.writeSync(fd, hostData, 0, hostData.length, 1000 * SECTOR)
    fs.closeSync(fd)

    // A second target in RAM, so that one batch of replies can come from two maps.
    const disk2 = path.join(dir, 'disk2.img')
    const data2 = crypto.randomBytes(1 << 20)
    fs.writeFileSync(disk2, data2)
    const daemon = await Daemon.start(['--no-mount', '--add', `9 3 ${link.target} ${disk}`, '--add', `9 4 ${link.target} ${disk2}`])
    t.teardown(() => daemon.stop())
    const a = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => a.close())
    const target: TargetRef = { major: 9, minor: 3, mac: interfaceMac(link.target) }

    await t.test('reads return the file, whatever the frame size and depth', async t => {
      t.ok((await a.read(target, 1000, 256, 2, 64)).equals(hostData), '2 sectors per frame, 64 in flight')
      t.ok((await a.read(target, 1000, 256, 1, 8)).equals(hostData), '1 sector per frame, 8 in flight')
      const lba28 = await a.ata(target, 0x20, 1001, 2)
      t.equal(lba28.status, 0x40)
      t.ok(lba28.data.subarray(0, 2 * SECTOR).equals(hostData.subarray(SECTOR, 3 * SECTOR)), 'READ SECTORS (LBA28) too')
    })

    await t.test('written data is read back and is in the file', async t => {
      const data = crypto.randomBytes(1 << 20)
      await a.write(target, 4096, data, 2, 64)
      t.ok((await a.read(target, 4096, data.length / SECTOR, 2, 64)).equals(data), 'read back equals written')
      t.ok(fs.readFileSync(disk).subarray(4096 * SECTOR, 4096 * SECTOR + data.length).equals(data), 'in the file')
    })

    await t.test('a read sent right behind a write to the same sectors returns the new data', async t => {
      for (let round = 0; round < 20; round++) {
        const lba = 10000 + round * 4
        const data = crypto.randomBytes(2 * SECTOR)
        const w = a.ataFrame(target, 0x34, lba, 2, { data })
        const r = a.ataFrame(target, 0x24, lba, 2)
        const wReply = a.expect(w.tag)
        const rReply = a.expect(r.tag)
        a.sendFrames([w.frame, r.frame]) // one batch on the wire
        const [wr] = await wReply
        const [rr] = await rReply
        if (wr === undefined || rr === undefined) { t.fail(`round ${round}: no reply`); continue }
        const read = TestInitiator.ataResult(rr)
        if (!read.data.subarray(0, 2 * SECTOR).equals(data)) {
          const again = await a.read(target, lba, 2, 2, 1)
          t.fail(`round ${round}: the read missed the write before it (write status ${TestInitiator.ataResult(wr).status.toString(16)}, read status ${read.status.toString(16)}, ${read.data.length} bytes; read again ${again.equals(data) ? 'new' : 'old'}; file ${fs.readFileSync(disk).subarray(lba * SECTOR, (lba + 2) * SECTOR).equals(data) ? 'new' : 'old'})`)
        }
      }
      t.pass('20 write-then-read pairs, each read saw its write')
    })

    await t.test('one batch of reads from two targets: each reply carries its own file', async t => {
      const other: TargetRef = { major: 9, minor: 4, mac: target.mac }
      const frames = []
      const replies = []
      for (let i = 0; i < 32; i++) {
        const f = a.ataFrame(i % 2 === 0 ? target : other, 0x24, 1000 + 2 * (i >> 1), 2)
        frames.push(f.frame)
        replies.push(a.expect(f.tag))
      }
      a.sendFrames(frames) // one batch on the wire
      const wrong = []
      for (let i = 0; i < 32; i++) {
        const [reply] = await replies[i]
        const lba = 1000 + 2 * (i >> 1)
        const want = i % 2 === 0
          ? hostData.subarray((lba - 1000) * SECTOR, (lba - 998) * SECTOR)
          : data2.subarray(lba * SECTOR, (lba + 2) * SECTOR)
        if (reply === undefined || !TestInitiator.ataResult(reply).data.subarray(0, 2 * SECTOR).equals(want)) wrong.push(i)
      }
      t.same(wrong, [], '32 interleaved reads, every one with the right data')
    })

    await t.test('a write past the end of a file that shrank under the map is refused, the file does not grow, and the new size is served', async t => {
      // The mapping now reaches past the end of the file. A write there must neither
      // land in the map's tail (lost) nor grow the file back (the admin shrank it): it
      // gets an ATA error, is logged, and the daemon reads the size again at once.
      fs.truncateSync(disk, 4 << 20)
      const lba = (6 << 20) / SECTOR
      const refused = await a.ata(target, 0x34, lba, 2, { data: crypto.randomBytes(2 * SECTOR), tries: 1 })
      t.equal(refused.status & 0x01, 0x01, 'ERR')
      t.equal(refused.error, 0x04, 'ABRT')
      t.equal(fs.statSync(disk).size, 4 << 20, 'the file did not grow')
      await daemon.waitFor(/9\.3@\S+: write short: .*disk\.img/)
      await daemon.waitFor(/9\.3@\S+: \S+disk\.img is now 8192 sectors/)
      t.equal((await a.identify(target)).sectors, 8192, 'IDENTIFY gives the new size')
      const past = await a.ata(target, 0x34, lba, 2, { data: crypto.randomBytes(2 * SECTOR) })
      t.equal(past.error, 0x10, 'past the new end: IDNF, refused before the disk')
      const inside = crypto.randomBytes(8 * SECTOR)
      await a.write(target, 1000, inside, 2, 4)
      t.ok((await a.read(target, 1000, 8, 2, 4)).equals(inside), 'inside the new size, writes and reads go on')
      fs.truncateSync(disk, 8 << 20)
      const fd = fs.openSync(disk, 'r+')
      fs.writeSync(fd, hostData, 0, hostData.length, 1000 * SECTOR)
      fs.closeSync(fd)
      await daemon.waitFor(/9\.3@\S+: \S+disk\.img is now 16384 sectors/)
      t.ok((await a.read(target, 1000, 256, 2, 64)).equals(hostData), 'grown back, the daemon serves the whole file')
    })

    await t.test('a read from the map of a file truncated underneath gets an ATA error, not silence', async t => {
      // The daemon does not know the file shrank: the kernel's copy from the map fails
      // when the reply is sent, and the reply becomes an error instead of being lost.
      fs.truncateSync(disk, 4 << 20)
      const gone = await a.ata(target, 0x24, (6 << 20) / SECTOR, 2, { tries: 1 })
      t.equal(gone.status & 0x01, 0x01, 'ERR')
      t.equal(gone.error, 0x40, 'UNC')
      fs.truncateSync(disk, 8 << 20)
      t.equal((await a.ata(target, 0x24, 0, 2)).status, 0x40, 'the daemon serves on')
    })

    await t.test('a read past the end is refused, not sent from beyond the map', async t => {
      const r = await a.ata(target, 0x24, (8 << 20) / SECTOR - 1, 2)
      t.equal(r.status & 0x01, 0x01, 'ERR')
      t.equal(r.error, 0x10, 'IDNF')
    })
  })
}
