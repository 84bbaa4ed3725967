// --direct (vblade's -d): backing files opened with O_DIRECT. Data must round-trip at
// both frame sizes (the reply slots keep the data area page-aligned), and the page cache
// must stay empty of the file.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'
import { run } from '../helpers/exec'

const SECTOR = 512
const unavailable = networkTestsUnavailable()

/** Pages of the file in the page cache (util-linux fincore). */
async function cachedPages (file: string): Promise<number> {
  const r = await run('fincore', ['--raw', '--noheadings', '--output', 'PAGES', file])
  if (r.code !== 0) throw new Error(`fincore: ${r.stderr}`)
  return Number(r.stdout.trim())
}

/** Drops the file from the page cache (POSIX_FADV_DONTNEED after fsync). */
async function evict (file: string): Promise<void> {
  const r = await run('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)', file])
  if (r.code !== 0) throw new Error(`evict: ${r.stderr}`)
}

if (unavailable !== null) {
  skipLoudly(t, 'O_DIRECT tests', unavailable)
} else {
  t.test('--direct: O_DIRECT round trips at MTU 1500 and 9000, page cache untouched', async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    // Not tmpfs: O_DIRECT needs a file system that supports it.
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvblade-direct-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'disk.img')
    const content = crypto.randomBytes(8 << 20)
    fs.writeFileSync(file, content)
    await evict(file)
    const link = net.links[0]
    const daemon = await Daemon.start(['--no-mount', '--direct', '--add', `9 0 ${link.target} ${file}`])
    t.teardown(() => daemon.stop())
    t.match(daemon.stderr, /O_DIRECT/, 'the store was opened with O_DIRECT')
    t.notMatch(daemon.stderr, /refuses O_DIRECT/)
    const initiator = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => initiator.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }

    const before = await cachedPages(file)
    const read = await initiator.read(target, 0, 2048, 2, 64)
    t.ok(read.equals(content.subarray(0, 2048 * SECTOR)), 'reads at 2 sectors per frame')
    const data = crypto.randomBytes(1 << 20)
    await initiator.write(target, 4096, data, 2, 64)
    t.ok((await initiator.read(target, 4096, 2048, 2, 64)).equals(data), 'writes read back')

    await net.setMtu(link, 9000)
    initiator.socket.refreshLink()
    for (let i = 0; i < 30 && (await initiator.discover(9, 0))[0]?.config.sectorsPerCommand !== 17; i++) {
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const jumbo = crypto.randomBytes(17 * 128 * SECTOR)
    await initiator.write(target, 8192, jumbo, 17, 64)
    t.ok((await initiator.read(target, 8192, 17 * 128, 17, 64)).equals(jumbo), '17-sector frames round-trip')

    t.equal(await cachedPages(file), before, 'the file did not enter the page cache')
    const onDisk = fs.readFileSync(file)
    t.ok(onDisk.subarray(4096 * SECTOR, 4096 * SECTOR + data.length).equals(data), 'the file holds the 1500-MTU writes')
    t.ok(onDisk.subarray(8192 * SECTOR, 8192 * SECTOR + jumbo.length).equals(jumbo), 'and the jumbo writes')
    t.same(await daemon.stop(), { code: 0, signal: null })
  })
}
