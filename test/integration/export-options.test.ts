// Per-export options and access control, through the control plane and seen on the
// wire: ro, offset/length, acl (announces included), bufcnt, cache, on add and readd; one
// address is one disk; the files that show them; refused adds with their errno; a
// non-root user reads every file and writes none.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'
import { errnoOf, exec, fuseSkipReason, isMountPoint, probe, sh } from '../helpers/fuse-harness'
import { ROOT_FILES, TARGET_FILES } from '../../fuse/tree'
import { formatMac } from '../../src/aoe/mac'
import { Command } from '../../src/aoe/constants'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Polls `cond` until it holds or `ms` pass; whether it held. */
async function until (cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!cond() && Date.now() < deadline) await sleep(20)
  return cond()
}

const SECTOR = 512
const unavailable = networkTestsUnavailable() ?? fuseSkipReason() ?? null

if (unavailable !== null) {
  skipLoudly(t, 'export option tests', unavailable)
} else {
  t.test('export options', async t => {
    const net = await TestNetwork.create(2)
    t.teardown(() => net.destroy())
    const [linkA, linkB] = net.links
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvblade-opts-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    fs.chmodSync(dir, 0o755) // the non-root user must reach the mount point
    const mnt = path.join(dir, 'ctl')
    const disk = path.join(dir, 'disk.img')
    const other = path.join(dir, 'other.img')
    const content = crypto.randomBytes(4 << 20)
    fs.writeFileSync(disk, content)
    fs.writeFileSync(other, Buffer.alloc(1 << 20))
    const daemon = await Daemon.start(['--mount', mnt])
    t.teardown(async () => {
      await daemon.stop()
      if (isMountPoint(mnt)) await exec('fusermount', ['-uz', mnt])
    })
    const a = TestInitiator.open(linkA.initiator, net.nsPath)
    const b = TestInitiator.open(linkB.initiator, net.nsPath)
    t.teardown(() => { a.close(); b.close() })
    const macA = interfaceMac(linkA.target)
    const macB = interfaceMac(linkB.target)
    const write = (file: string, text: string): Promise<string> => errnoOf({ op: 'write', path: path.join(mnt, file), chunks: [text] })
    const read = async (file: string): Promise<string> => (await sh('cat "$1"', [path.join(mnt, file)])).stdout

    await t.test('ro: reads, IDENTIFY and FLUSH work; writes get an ATA error', async t => {
      t.equal(await write('add', `9 1 ${linkA.target} ${disk} ro\n`), 'OK')
      const tg: TargetRef = { major: 9, minor: 1, mac: macA }
      t.equal(await read('9.1@' + linkA.target + '/ro'), '1\n', 'the ro file says so')
      t.ok((await a.read(tg, 0, 16, 2, 8)).equals(content.subarray(0, 16 * SECTOR)), 'reads return the backing')
      const w = await a.ata(tg, 0x34, 0, 2, { data: Buffer.alloc(2 * SECTOR, 1) })
      t.same([w.status, w.error], [0x41, 0x04], 'WRITE: DRDY|ERR, ABRT')
      t.ok(fs.readFileSync(disk).subarray(0, 2 * SECTOR).equals(content.subarray(0, 2 * SECTOR)), 'and the backing is unchanged')
      t.equal((await a.ata(tg, 0xea, 0, 0)).status, 0x40, 'FLUSH CACHE EXT succeeds')
      t.equal((await a.identify(tg)).sectors, content.length / SECTOR, 'IDENTIFY works')
      t.equal(await write('del', `9 1 ${linkA.target}\n`), 'OK')
    })

    await t.test('offset and length export a slice', async t => {
      t.equal(await write('add', `9 2 ${linkA.target} ${disk} offset=100 length=50\n`), 'OK')
      const tg: TargetRef = { major: 9, minor: 2, mac: macA }
      const name = `9.2@${linkA.target}`
      t.same([await read(`${name}/scnt`), await read(`${name}/offset`), await read(`${name}/length`)], ['50\n', '100\n', '50\n'], 'scnt, offset, length')
      t.equal((await a.identify(tg)).sectors, 50, 'IDENTIFY gives the slice')
      t.ok((await a.read(tg, 0, 2, 2, 1)).equals(content.subarray(100 * SECTOR, 102 * SECTOR)), "the slice's first sector is the backing's 100th")
      const data = crypto.randomBytes(2 * SECTOR)
      await a.write(tg, 48, data, 2, 1)
      t.ok(fs.readFileSync(disk).subarray(148 * SECTOR, 150 * SECTOR).equals(data), 'a write to its last sectors lands at 148-149')
      const past = await a.ata(tg, 0x24, 49, 2)
      t.same([past.status, past.error], [0x41, 0x10], 'past the slice: IDNF')
      content.set(data, 148 * SECTOR)
      t.equal(await write('del', `9 2 ${linkA.target}\n`), 'OK')
      t.equal(await write('add', `9 3 ${linkA.target} ${disk} offset=8190 length=3\n`), 'EINVAL', 'a slice past the end of the backing: EINVAL')
    })

    await t.test('acl: only the listed initiators see the target, discovery included', async t => {
      // Announcements (unsolicited config replies, tag 0) of 9.4 on the wire since `from`, by
      // destination: the test initiator's socket sees every frame on the veth, whoever it is for.
      const listed = 0x020000000001
      const announcedTo = (from: number): number[] => a.received.slice(from)
        .filter(r => r.header.command === Command.QueryConfig && r.header.tag === 0 && r.header.major === 9 && r.header.minor === 4)
        .map(r => r.header.dst)
      const announcedAfter = async (from: number, dst: number): Promise<number[]> => {
        await until(() => announcedTo(from).includes(dst), 2000)
        await sleep(200) // room for a stray broadcast to arrive too
        return announcedTo(from)
      }
      const beforeAdd = a.received.length
      t.equal(await write('add', `9 4 ${linkA.target} ${disk} acl=02:00:00:00:00:01\n`), 'OK')
      t.same(await announcedAfter(beforeAdd, listed), [listed], 'the add is announced to the listed MAC alone: not broadcast, not to this initiator')
      const beforeAnnounce = a.received.length
      t.equal(await write('announce', '1\n'), 'OK')
      t.same(await announcedAfter(beforeAnnounce, listed), [listed], 'so is an announce write')
      const tg: TargetRef = { major: 9, minor: 4, mac: macA }
      const name = `9.4@${linkA.target}`
      t.equal(await read(`${name}/acl`), '02:00:00:00:00:01\n')
      t.same((await a.discover(9, 4)).length, 0, 'invisible to another MAC')
      const id = a.ataFrame(tg, 0xec, 0, 1)
      t.same((await a.request(id.frame, id.tag, 1, 300)).length, 0, 'its ATA frames are ignored')
      t.equal(await write(`${name}/acl`, 'nope\n'), 'EINVAL', 'a bad MAC is EINVAL')
      t.equal(await read(`${name}/acl`), '02:00:00:00:00:01\n', '... and changes nothing')
      t.equal(await write(`${name}/acl`, `02:00:00:00:00:01\n${formatMac(a.mac)}\n`), 'OK', 'a list replaces it')
      t.same((await a.discover(9, 4)).map(d => d.mac), [macA], 'visible once the acl names the initiator')
      const beforeListed = a.received.length
      t.equal(await write('announce', '1\n'), 'OK')
      t.same((await announcedAfter(beforeListed, a.mac)).sort((x, y) => x - y), [listed, a.mac].sort((x, y) => x - y), 'and announced to it (and the other listed MAC), still not broadcast')
      t.equal((await a.identify(tg)).sectors, content.length / SECTOR)
      t.equal(await write(`${name}/acl`, '\n'), 'OK')
      t.equal(await read(`${name}/acl`), '', 'an empty write clears it')
      t.equal(await write('del', `9 4 ${linkA.target}\n`), 'OK')
    })

    await t.test('bufcnt and cache, on the add line and in their files', async t => {
      t.equal(await write('add', `9 5 ${linkA.target} ${disk} bufcnt=16 cache=writeback\n`), 'OK')
      const tg: TargetRef = { major: 9, minor: 5, mac: macA }
      const name = `9.5@${linkA.target}`
      t.equal((await a.discover(9, 5))[0]?.config.bufferCount, 16, 'the buffer count advertised')
      t.equal(await read(`${name}/cache`), 'writeback\n')
      t.equal((await a.identify(tg)).writeCache, true, 'IDENTIFY reports a write cache in writeback')
      t.equal(await write(`${name}/cache`, 'writethrough\n'), 'OK')
      t.equal((await a.identify(tg)).writeCache, false, 'and none in writethrough')
      t.equal(await write(`${name}/cache`, 'sometimes\n'), 'EINVAL')
      t.equal(await write(`${name}/bufcnt`, '32\n'), 'OK')
      t.equal((await a.discover(9, 5))[0]?.config.bufferCount, 32, 'a new buffer count at the next query')
      t.equal(await write(`${name}/bufcnt`, '1\n'), 'EINVAL', 'fewer than 2 is refused')
      t.equal(await write('del', `9 5 ${linkA.target}\n`), 'OK')
    })

    await t.test('one address, one disk: another interface may only serve the same backing slice', async t => {
      t.equal(await write('add', `9 6 ${linkA.target} ${disk}\n`), 'OK')
      const r = await exec('/bin/bash', ['-c', 'echo "$2" >"$1/add"', 'bash', mnt, `9 6 ${linkB.target} ${other}`])
      t.match(r.stderr, /File exists/, 'another backing for 9.6: EEXIST')
      t.match(daemon.stderr, /9\.6 is already exported as "9\.6@\S+ \S+disk\.img/, 'the log names the export it clashes with')
      t.equal(await write('add', `9 6 ${linkB.target} ${disk} ro\n`), 'EEXIST', 'the same backing with other options: EEXIST')
      t.equal(await write('add', `9 6 ${linkB.target} ${disk}\n`), 'OK', 'the same backing: multipath')
      const data = crypto.randomBytes(2 * SECTOR)
      await b.write({ major: 9, minor: 6, mac: macB }, 7, data, 2, 1)
      t.ok((await a.read({ major: 9, minor: 6, mac: macA }, 7, 2, 2, 1)).equals(data), 'written through B, read through A')
      t.equal(await write('readd', `9 6 ${linkA.target} ${other}\n`), 'OK')
      t.equal(await read(`9.6@${linkB.target}/bpath`), `${other}\n`, 'readd swaps the disk on every interface of the address')
      for (const link of [linkA, linkB]) t.equal(await write('del', `9 6 ${link.target}\n`), 'OK')
    })

    await t.test('readd with options: the new line sets ro, the slice and the acl', async t => {
      const sliced = path.join(dir, 'sliced.img')
      const slicedContent = crypto.randomBytes(1 << 20)
      fs.writeFileSync(sliced, slicedContent)
      const name = `9.9@${linkA.target}`
      const tg: TargetRef = { major: 9, minor: 9, mac: macA }
      t.equal(await write('add', `9 9 ${linkA.target} ${disk}\n`), 'OK')
      t.same([await read(`${name}/ro`), await read(`${name}/scnt`)], ['0\n', `${content.length / SECTOR}\n`], 'read-write and whole before')
      const options = 'ro offset=200 length=64'
      t.equal(await write('readd', `9 9 ${linkA.target} ${sliced} ${options} acl=02:00:00:00:00:01\n`), 'OK')
      t.same(
        await Promise.all(['ro', 'offset', 'length', 'scnt', 'acl', 'bpath'].map(f => read(`${name}/${f}`))),
        ['1\n', '200\n', '64\n', '64\n', '02:00:00:00:00:01\n', `${sliced}\n`],
        'ro, offset, length, scnt, acl and bpath follow the readd line')
      t.same((await a.discover(9, 9)).length, 0, 'the acl applies: invisible to an unlisted initiator')
      t.equal(await write('readd', `9 9 ${linkA.target} ${sliced} ${options} acl=${formatMac(a.mac)}\n`), 'OK')
      t.same((await a.discover(9, 9)).map(d => d.mac), [macA], 'and visible once a readd lists it')
      t.equal((await a.identify(tg)).sectors, 64, 'IDENTIFY gives the slice')
      t.ok((await a.read(tg, 0, 2, 2, 1)).equals(slicedContent.subarray(200 * SECTOR, 202 * SECTOR)), "sector 0 is the new backing's 200th")
      const w = await a.ata(tg, 0x34, 0, 2, { data: Buffer.alloc(2 * SECTOR, 1) })
      t.same([w.status, w.error], [0x41, 0x04], 'a write: DRDY|ERR, ABRT')
      t.ok(fs.readFileSync(sliced).equals(slicedContent), 'and the backing is unchanged')
      t.equal(await write('del', `9 9 ${linkA.target}\n`), 'OK')
    })

    await t.test('who may drive the control plane: everyone reads, only root writes', async t => {
      t.equal(await write('add', `9 7 ${linkA.target} ${disk}\n`), 'OK')
      const user = `kvbt${process.pid % 100000}`
      const made = await exec('useradd', ['--no-create-home', '--shell', '/bin/sh', user])
      t.equal(made.code, 0, `a user made for the test: ${made.stderr}`)
      t.teardown(() => exec('userdel', [user]))
      const targetDir = `9.7@${linkA.target}`
      const files = [...ROOT_FILES, ...TARGET_FILES.map(f => `${targetDir}/${f}`)]
      // Command files are write-only (0200): kernfs refuses to open them for reading, root included.
      const writeOnly = new Set(['add', 'del', 'readd', 'announce'])
      // What root sees in every file but the counters, which move by themselves.
      const counters = new Set(['stat', `${targetDir}/stat`, `${targetDir}/latency`, `${targetDir}/busy`])
      const snapshot = async (): Promise<unknown> => {
        const watched = files.filter(f => !writeOnly.has(f) && !counters.has(f))
        const reads = await probe(watched.map(f => ({ op: 'read', path: path.join(mnt, f) })))
        const failed = watched.filter((_, i) => !reads[i].ok)
        if (failed.length > 0) throw new Error(`root cannot read ${failed.join(', ')}`)
        return { listing: (await sh('ls "$1"', [mnt])).stdout, ...Object.fromEntries(watched.map((f, i) => [f, reads[i].value])) }
      }
      const before = await snapshot()
      t.equal((before as Record<string, unknown>)[`${targetDir}/cache`], 'writethrough\n', 'the snapshot holds the values (cache, for one)')
      const announcedBefore = a.received.filter(r => r.header.tag === 0 && r.header.minor === 7).length

      const reads = await probe(files.map(f => ({ op: 'read', path: path.join(mnt, f) })), user)
      files.forEach((f, i) => {
        const expected = writeOnly.has(f) ? 'EACCES' : 'OK'
        t.equal(reads[i].ok ? 'OK' : reads[i].errno, expected, `${user} reading ${f}: ${expected}`)
      })
      // Each write is one that would change something if it were allowed.
      const attempt: Record<string, string> = {
        add: `9 8 ${linkA.target} ${disk}\n`, del: `9 7 ${linkA.target}\n`, readd: `9 7 ${linkA.target} ${other}\n`,
        acl: '02:00:00:00:00:09\n', cache: 'writeback\n', bufcnt: '8\n', model: 'mine\n', sn: 'mine\n',
      }
      const writes = await probe(files.map(f => ({ op: 'write', path: path.join(mnt, f), chunks: [attempt[path.basename(f)] ?? '1\n'] })), user)
      files.forEach((f, i) => t.equal(writes[i].ok ? 'OK' : writes[i].errno, 'EACCES', `${user} writing ${f}: EACCES`))

      t.same(await snapshot(), before, 'nothing changed: every file root reads and the listing are as before')
      await sleep(300)
      t.equal(a.received.filter(r => r.header.tag === 0 && r.header.minor === 7).length, announcedBefore, 'and nothing was announced')
      t.equal(await write('del', `9 7 ${linkA.target}\n`), 'OK')
    })
  })
}

