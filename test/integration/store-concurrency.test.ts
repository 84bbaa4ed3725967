// The backing store under a slow or failing disk, through the whole engine: a slow read
// must not hold up other requests, overlapping requests keep their order, and disk errors
// become ATA errors (never dropped frames, never AoE errors).
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FLAG_ERROR } from '../../src/aoe/constants'
import { Engine } from '../../src/engine/engine'
import { ThreadPoolEngine, nodeFsIo, type BackingIo } from '../../src/store/thread-pool-engine'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef, type Reply } from '../helpers/initiator'

const SECTOR = 512
const SLOW_LBA = 1000
const BAD_LBA = 3000
const unavailable = networkTestsUnavailable()

/** Disk I/O that stalls the next read of one region until released, and fails on another. */
class SlowDisk implements BackingIo {
  private readonly held: Array<() => void> = []
  private armed = false
  stalled = 0

  /** The next read of the slow region waits for release(). */
  arm (): void {
    this.armed = true
  }

  private stalls (position: number): boolean {
    if (!this.armed || position < SLOW_LBA * SECTOR || position >= (SLOW_LBA + 8) * SECTOR) return false
    this.armed = false
    return true
  }

  release (): void {
    for (const go of this.held.splice(0)) go()
  }

  read: BackingIo['read'] = (fd, buffer, offset, length, position, cb) => {
    if (position >= BAD_LBA * SECTOR && position < (BAD_LBA + 2) * SECTOR) {
      setImmediate(() => cb(Object.assign(new Error('injected media error'), { code: 'EIO' }), 0))
      return
    }
    if (this.stalls(position)) {
      this.stalled++
      this.held.push(() => nodeFsIo.read(fd, buffer, offset, length, position, cb))
      return
    }
    nodeFsIo.read(fd, buffer, offset, length, position, cb)
  }

  write: BackingIo['write'] = (fd, buffer, offset, length, position, cb) => {
    if (position >= BAD_LBA * SECTOR && position < (BAD_LBA + 2) * SECTOR) {
      setImmediate(() => cb(Object.assign(new Error('injected write error'), { code: 'EIO' }), 0))
      return
    }
    nodeFsIo.write(fd, buffer, offset, length, position, cb)
  }

  fdatasync: BackingIo['fdatasync'] = (fd, cb) => nodeFsIo.fdatasync(fd, cb)
}

async function until (cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  throw new Error(`timed out waiting for ${what}`)
}

if (unavailable !== null) {
  skipLoudly(t, 'store concurrency tests', unavailable)
} else {
  t.test('slow and failing disk through the engine', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvblade-slow-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const img = path.join(dir, 'disk.img')
    const content = crypto.randomBytes(8 << 20)
    fs.writeFileSync(img, content)
    const disk = new SlowDisk()
    const engine = new Engine({ disk: new ThreadPoolEngine(disk) })
    t.teardown(() => { disk.release(); return engine.close() })
    const link = net.links[0]
    await engine.add({ major: 9, minor: 0, ifname: link.target, path: img })
    const initiator = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => initiator.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }

    await t.test('a stalled read does not hold up the others', async t => {
      const order: string[] = []
      disk.arm()
      const slow = initiator.ataFrame(target, 0x24, SLOW_LBA, 2)
      const slowReply = initiator.expect(slow.tag, 1, 30_000).then(r => { order.push('slow'); return r })
      initiator.sendFrames([slow.frame])
      await until(() => disk.stalled === 1, 'the slow read to reach the disk')
      const fast: Array<Promise<Reply[]>> = []
      const frames: Buffer[] = []
      for (let i = 0; i < 32; i++) {
        const f = initiator.ataFrame(target, 0x24, 2 * i, 2)
        frames.push(f.frame)
        fast.push(initiator.expect(f.tag, 1, 10_000).then(r => { order.push('fast'); return r }))
      }
      initiator.sendFrames(frames)
      const fastReplies = await Promise.all(fast)
      t.equal(fastReplies.filter(r => r.length === 1).length, 32, 'all 32 other reads answered while one read is stalled')
      fastReplies.forEach((r, i) => {
        if (!TestInitiator.ataResult(r[0]).data.subarray(0, 1024).equals(content.subarray(i * 1024, (i + 1) * 1024))) t.fail(`read ${i} data`)
      })
      t.same(order, new Array(32).fill('fast'), 'the stalled read has not been answered yet')
      disk.release()
      const [r] = await slowReply
      t.equal(TestInitiator.ataResult(r).status, 0x40, 'the stalled read completes once the disk answers')
      t.ok(TestInitiator.ataResult(r).data.subarray(0, 1024).equals(content.subarray(SLOW_LBA * SECTOR, SLOW_LBA * SECTOR + 1024)))
    })

    await t.test('a write overlapping a stalled read waits for it; a read after the write sees it', async t => {
      const before = disk.stalled
      disk.arm()
      const order: string[] = []
      const read = initiator.ataFrame(target, 0x24, SLOW_LBA, 2)
      const newData = crypto.randomBytes(2 * SECTOR)
      const write = initiator.ataFrame(target, 0x34, SLOW_LBA, 2, { data: newData })
      const readAgain = initiator.ataFrame(target, 0x24, SLOW_LBA + 1, 1)
      const p1 = initiator.expect(read.tag, 1, 30_000).then(r => { order.push('read'); return r })
      const p2 = initiator.expect(write.tag, 1, 30_000).then(r => { order.push('write'); return r })
      const p3 = initiator.expect(readAgain.tag, 1, 30_000).then(r => { order.push('read-after'); return r })
      initiator.sendFrames([read.frame, write.frame, readAgain.frame])
      await until(() => disk.stalled === before + 1, 'the read to stall')
      await new Promise(resolve => setTimeout(resolve, 200))
      t.same(order, [], 'nothing overlapping has been answered while the read is stalled')
      disk.release()
      const [[r1], , [r3]] = await Promise.all([p1, p2, p3])
      t.same(order.slice(0, 1), ['read'], 'the earlier read is answered first')
      t.ok(TestInitiator.ataResult(r1).data.subarray(0, 1024).equals(content.subarray(SLOW_LBA * SECTOR, SLOW_LBA * SECTOR + 1024)), 'the read saw the old data')
      t.ok(TestInitiator.ataResult(r3).data.subarray(0, 512).equals(newData.subarray(512)), 'the later read saw the new data')
    })

    await t.test('disk errors are ATA errors, and the engine keeps serving', async t => {
      const r = await initiator.ata(target, 0x24, BAD_LBA, 2)
      t.equal(r.header.flags & FLAG_ERROR, 0, 'no AoE-level error')
      t.same([r.status, r.error], [0x41, 0x40], 'read: DRDY|ERR, UNC')
      const w = await initiator.ata(target, 0x34, BAD_LBA, 2, { data: Buffer.alloc(1024) })
      t.same([w.status, w.error], [0x41, 0x04], 'write: DRDY|ERR, ABRT')
      const info = engine.get({ major: 9, minor: 0, ifname: link.target })!
      t.equal(info.stats.errors, 2, 'counted as errors')
      t.equal(info.busy, 0, 'nothing left in flight')
      const ok = await initiator.ata(target, 0x24, 0, 2)
      t.equal(ok.status, 0x40, 'still serving')
    })
  })
}
