// A backing that fails, fills up, is slow, or changes size under a live export, through
// faultfs (a FUSE disk whose faults the test injects): every failed request gets an ATA
// error and the daemon says so on stderr (once per kind, then a count) and in the
// target's faults file; a slow disk holds up no other target; a file that grows or
// shrinks is served and announced at its new size.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'
import { exec, fuseSkipReason, isMountPoint, sh } from '../helpers/fuse-harness'
import { FaultFs } from '../helpers/faultfs'
import { Command } from '../../src/aoe/constants'

const SECTOR = 512
const IMAGE = 8 << 20
const unavailable = networkTestsUnavailable() ?? fuseSkipReason() ?? null

async function until (cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await cond()) return true
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return await cond()
}

if (unavailable !== null) {
  skipLoudly(t, 'backing fault tests', unavailable)
} else {
  t.test('backing faults', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    const [link] = net.links
    const ffs = await FaultFs.start({ size: IMAGE, mode: 'writethrough' })
    t.teardown(() => ffs.stop())
    const dir = fs.mkdtempSync('/dev/shm/kvblade-faults-')
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const healthy = path.join(dir, 'healthy.img')
    fs.writeFileSync(healthy, Buffer.alloc(4 << 20))
    const mnt = path.join(dir, 'ctl')
    const daemon = await Daemon.start(['--mount', mnt, '--add', `9 0 ${link.target} ${ffs.path}`, '--add', `9 1 ${link.target} ${healthy}`])
    t.teardown(async () => {
      await daemon.stop()
      if (isMountPoint(mnt)) await exec('fusermount', ['-uz', mnt])
    })
    const a = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => a.close())
    const faulty: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    const fine: TargetRef = { major: 9, minor: 1, mac: faulty.mac }
    const faults = async (): Promise<string> => (await sh('cat "$1"', [path.join(mnt, `9.0@${link.target}`, 'faults')])).stdout

    await t.test('EIO on a range: ATA errors, one log line, then counts; other sectors and targets unharmed', async t => {
      await ffs.injectEio({ op: 'read', offset: 1000 * SECTOR, length: 8 * SECTOR })
      let errors = 0
      for (let i = 0; i < 5; i++) {
        const r = await a.ata(faulty, 0x24, 1000 + (i % 4) * 2, 2)
        if (r.status === 0x41 && r.error === 0x40) errors++
      }
      t.equal(errors, 5, 'each read of the bad range: ERR, UNC')
      t.equal((await a.ata(faulty, 0x24, 0, 2)).status, 0x40, 'a read elsewhere succeeds')
      t.equal((await a.ata(fine, 0x24, 0, 2)).status, 0x40, 'and the other target is fine')
      const lines = daemon.stderr.split('\n').filter(l => /warning: 9\.0@\S+: read EIO/.test(l))
      t.equal(lines.length, 1, 'one line on stderr for the kind, at once')
      t.match(lines[0], /\(more of these are counted and logged every 10 s\)/)
      t.equal(await faults(), 'read EIO 5\n', 'the faults file counts them')
      await ffs.clearFaults()
    })

    await t.test('ENOSPC: a write error the initiator sees, logged once', async t => {
      await ffs.injectEnospc({ offset: 2000 * SECTOR, length: 2 * SECTOR })
      const w = await a.ata(faulty, 0x34, 2000, 2, { data: crypto.randomBytes(2 * SECTOR) })
      t.same([w.status, w.error], [0x41, 0x04], 'ERR, ABRT')
      t.match(daemon.stderr, /warning: 9\.0@\S+: write ENOSPC/)
      t.match(await faults(), /write ENOSPC 1/)
      await ffs.clearFaults()
    })

    await t.test('a slow backing holds up no other target', async t => {
      await ffs.setLatency({ op: 'read', ms: 1500 })
      const slow = a.ata(faulty, 0x24, 0, 2, { timeoutMs: 5000, tries: 1 })
      let answered = 0
      let errors = 0
      const started = Date.now()
      // While the slow read is outstanding, the other target keeps answering.
      while (Date.now() - started < 1000) {
        const r = await a.ata(fine, 0x24, (answered % 1000) * 2, 2, { tries: 1, timeoutMs: 500 })
        answered++
        if (r.status !== 0x40) errors++
      }
      t.equal((await slow).status, 0x40, 'the slow read completes in the end')
      t.ok(answered > 20, `the other target answered ${answered} reads meanwhile`)
      t.equal(errors, 0, 'with no errors')
      await ffs.clearFaults()
    })

    await t.test('a backing that grows or shrinks is served and announced at its new size', async t => {
      const scnt = async (): Promise<number> => Number((await sh('cat "$1"', [path.join(mnt, `9.0@${link.target}`, 'scnt')])).stdout)
      t.equal(await scnt(), IMAGE / SECTOR)
      const announcements = (): number => a.received.filter(r => r.header.command === Command.QueryConfig && r.header.minor === 0 && r.header.tag === 0).length
      const before = announcements()
      await ffs.resize(IMAGE * 2)
      t.ok(await until(async () => await scnt() === 2 * IMAGE / SECTOR, 6000), 'scnt follows the growth')
      t.ok(await until(() => announcements() > before, 2000), 'and the target was announced')
      t.equal((await a.identify(faulty)).sectors, 2 * IMAGE / SECTOR, 'IDENTIFY says so')
      const data = crypto.randomBytes(2 * SECTOR)
      await a.write(faulty, IMAGE / SECTOR + 10, data, 2, 1)
      t.ok((await a.read(faulty, IMAGE / SECTOR + 10, 2, 2, 1)).equals(data), 'the new sectors work')
      await ffs.resize(IMAGE / 2)
      const past = await a.ata(faulty, 0x24, IMAGE / SECTOR, 2)
      t.equal(past.status & 0x01, 0x01, 'a read past the new end: an ATA error, before and after the daemon notices')
      t.ok(await until(async () => await scnt() === IMAGE / 2 / SECTOR, 6000), 'scnt follows the shrink')
      t.match(daemon.stderr, /9\.0@\S+: \S+ is now 8192 sectors/, 'and the log says so')
      const after = await a.ata(faulty, 0x24, IMAGE / SECTOR, 2)
      t.same([after.status, after.error], [0x41, 0x10], 'past the end now: IDNF')
    })
  })
}
