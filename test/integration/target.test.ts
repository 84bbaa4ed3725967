// The daemon end to end over veth pairs: our TypeScript test initiator and Debian's
// aoetools talk to `bin/kvblade start` exactly as initiators on a LAN would.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FLAG_ERROR, AoeError, Command } from '../../src/aoe/constants'
import { encodeHeader } from '../../src/aoe/header'
import { decodeConfig } from '../../src/aoe/config'
import { decodeMacMask, encodeMacMask } from '../../src/aoe/macmask'
import { decodeReserve, encodeReserve } from '../../src/aoe/reserve'
import { formatMac, parseMac } from '../../src/aoe/mac'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type Reply, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'

const SECTOR = 512
const unavailable = networkTestsUnavailable()

function configString (r: Reply): string {
  const q = decodeConfig(r.frame, 0, r.frame.length, false)
  if (typeof q === 'string') throw new Error(`bad config reply: ${q}`)
  return q.config.toString()
}

if (unavailable !== null) {
  skipLoudly(t, 'target integration tests', unavailable)
} else {
  t.test('daemon over veth', async t => {
    const net = await TestNetwork.create(2)
    t.teardown(() => net.destroy())
    const [linkA, linkB] = net.links
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvblade-it-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

    // disk0: 16 MiB with data written by the host before export, served as 9.0 on both
    // links (one address, one disk); disk1 smaller.
    const disk0 = path.join(dir, 'disk0.img')
    const disk1 = path.join(dir, 'disk1.img')
    const hostData = crypto.randomBytes(64 * SECTOR)
    fs.writeFileSync(disk0, Buffer.alloc(0))
    fs.truncateSync(disk0, 16 << 20)
    const fd = fs.openSync(disk0, 'r+')
    fs.writeSync(fd, hostData, 0, hostData.length, 100 * SECTOR)
    fs.closeSync(fd)
    fs.writeFileSync(disk1, Buffer.alloc(0)); fs.truncateSync(disk1, 4 << 20)

    const daemon = await Daemon.start([
      '--no-mount',
      '--add', `9 0 ${linkA.target} ${disk0}`,
      '--add', `9 1 ${linkA.target} ${disk1}`,
      '--add', `9 0 ${linkB.target} ${disk0}`,
    ])
    t.teardown(() => daemon.stop())
    const a = TestInitiator.open(linkA.initiator, net.nsPath)
    const b = TestInitiator.open(linkB.initiator, net.nsPath)
    t.teardown(() => { a.close(); b.close() })
    const macA = interfaceMac(linkA.target)
    const macB = interfaceMac(linkB.target)
    const t90: TargetRef = { major: 9, minor: 0, mac: macA }
    const t91: TargetRef = { major: 9, minor: 1, mac: macA }
    const t90b: TargetRef = { major: 9, minor: 0, mac: macB }

    await t.test('broadcast discovery: one reply per target, each with its own address', async t => {
      const found = await a.discover()
      t.same(found.map(f => `${f.major}.${f.minor}`).sort(), ['9.0', '9.1'])
      for (const f of found) {
        t.equal(f.mac, macA, 'reply comes from the interface MAC')
        t.equal(f.config.sectorsPerCommand, 2, 'MTU 1500 carries 2 sectors per frame')
        t.equal(f.config.bufferCount, 64, 'default buffer count')
        t.equal(f.config.version, 1)
      }
      const onB = await b.discover()
      t.same(onB.map(f => `${f.major}.${f.minor}@${formatMac(f.mac)}`), [`9.0@${formatMac(macB)}`], 'link B sees only its target')
      const targeted = await a.discover(9, 1)
      t.same(targeted.map(f => f.minor), [1], 'a targeted query is answered by that target only')
      t.same(await a.discover(9, 7), [], 'nobody answers for an address not exported')
    })

    await t.test('aoeping (aoetools) sees the identify fields', async t => {
      const r = await net.exec('aoeping', ['-I', '-t', '5', '9', '0', linkA.initiator], 20_000)
      t.equal(r.code, 0, `aoeping exit status (stderr: ${r.stderr})`)
      t.match(r.stdout, /kvblade AoE target/, 'model from IDENTIFY')
      t.match(r.stdout, /KVB9\.0/, 'serial from IDENTIFY')
    })

    await t.test('IDENTIFY: size, LBA48, model and serial', async t => {
      const id = await a.identify(t90)
      t.equal(id.sectors, (16 << 20) / SECTOR)
      t.equal(id.lba48, true)
      t.equal(id.lba28Sectors, (16 << 20) / SECTOR)
      t.equal(id.model, 'kvblade AoE target')
      t.equal(id.serial, 'KVB9.0')
      const id1 = await a.identify(t91)
      t.equal(id1.sectors, (4 << 20) / SECTOR, 'each target reports its own size')
    })

    await t.test('data the host wrote before export is what the initiator reads', async t => {
      const got = await a.read(t90, 100, 64)
      t.ok(got.equals(hostData))
      const lba28 = await a.ata(t90, 0x20, 100, 2)
      t.equal(lba28.status, 0x40)
      t.ok(lba28.data.subarray(0, 1024).equals(hostData.subarray(0, 1024)), 'READ SECTORS (LBA28, device nibble set) reads the same')
    })

    await t.test('write a pattern with 64 commands in flight, read it back, find it in the file', async t => {
      const data = crypto.randomBytes(2 << 20)
      await a.write(t90, 4096, data, 2, 64)
      const back = await a.read(t90, 4096, data.length / SECTOR, 2, 64)
      t.ok(back.equals(data), 'read back equals written')
      const file = fs.readFileSync(disk0)
      t.ok(file.subarray(4096 * SECTOR, 4096 * SECTOR + data.length).equals(data), 'backing file holds the data')
      const lba28 = crypto.randomBytes(2 * SECTOR)
      const w = await a.ata(t90, 0x30, 50, 2, { data: lba28 })
      t.equal(w.status, 0x40, 'WRITE SECTORS (LBA28) succeeds')
      t.ok(fs.readFileSync(disk0).subarray(50 * SECTOR, 52 * SECTOR).equals(lba28))
    })

    await t.test('one address on two interfaces is one disk; another address is another', async t => {
      const data = crypto.randomBytes(4 * SECTOR)
      await b.write(t90b, 8, data)
      t.ok(fs.readFileSync(disk0).subarray(8 * SECTOR, 12 * SECTOR).equals(data), 'written through B, in the one backing')
      t.ok((await a.read(t90, 8, 4)).equals(data), 'and read back through A')
      const one = crypto.randomBytes(2 * SECTOR)
      await a.write(t91, 0, one)
      t.ok(fs.readFileSync(disk1).subarray(0, 2 * SECTOR).equals(one), '9.1 writes its own file')
    })

    await t.test('overlapping writes land in arrival order', async t => {
      // Two writes to the same sectors in one burst (as a retransmitted old write would
      // arrive after a newer one): the later one must win.
      const older = Buffer.alloc(2 * SECTOR, 0xaa)
      const newer = Buffer.alloc(2 * SECTOR, 0x55)
      for (let round = 0; round < 20; round++) {
        const f1 = a.ataFrame(t90, 0x34, 2000 + round * 2, 2, { data: older })
        const f2 = a.ataFrame(t90, 0x34, 2000 + round * 2, 2, { data: newer })
        const p1 = a.expect(f1.tag)
        const p2 = a.expect(f2.tag)
        a.sendFrames([f1.frame, f2.frame])
        const [r1, r2] = await Promise.all([p1, p2])
        t.equal(r1.length + r2.length, 2, 'both acknowledged')
      }
      const back = await a.read(t90, 2000, 40)
      t.ok(back.equals(Buffer.alloc(40 * SECTOR, 0x55)), 'every range holds the newer data')
    })

    await t.test('out of range, unknown and housekeeping ATA commands', async t => {
      const sectors = (16 << 20) / SECTOR
      const past = await a.ata(t90, 0x24, sectors - 1, 2)
      t.equal(past.status & 0x01, 1, 'ERR set for a range past the end')
      t.equal(past.error, 0x10, 'IDNF')
      const atEnd = await a.ata(t90, 0x34, sectors, 1, { data: Buffer.alloc(SECTOR) })
      t.equal(atEnd.error, 0x10, 'a write at the end is IDNF too')
      const last = await a.ata(t90, 0x24, sectors - 1, 1)
      t.equal(last.status, 0x40, 'the last sector is readable')
      const smart = await a.ata(t90, 0xb0, 0, 0)
      t.same([smart.status, smart.error], [0x41, 0x04], 'unsupported command: ERR + ABRT')
      const flush = await a.ata(t90, 0xe7, 0, 0)
      t.equal(flush.status, 0x40, 'FLUSH CACHE succeeds')
      const flushExt = await a.ata(t90, 0xea, 0, 0, { aflags: 0x40 })
      t.equal(flushExt.status, 0x40, 'FLUSH CACHE EXT succeeds')
      const power = await a.ata(t90, 0xe5, 0, 0)
      t.same([power.status, power.sectorCount], [0x40, 0xff], 'CHECK POWER MODE: active')
      t.equal(power.header.flags & FLAG_ERROR, 0)
      const tooMany = await a.ata(t90, 0x24, 0, 3)
      t.equal(tooMany.header.flags & FLAG_ERROR, FLAG_ERROR, 'more sectors than a 1500 MTU frame holds: AoE error')
      t.equal(tooMany.header.error, AoeError.BadArgument)
      const shortWrite = a.ataFrame(t90, 0x34, 0, 2, { data: Buffer.alloc(SECTOR) })
      const [sw] = await a.request(shortWrite.frame, shortWrite.tag)
      t.equal(sw.header.error, AoeError.BadArgument, 'a write missing data is refused, not half-applied')
    })

    await t.test('Query Config: all five subcommands, state shared by interfaces', async t => {
      t.equal(configString((await a.queryConfig(9, 0, { ccmd: 0 }, { want: 1 }))[0]), '', 'empty at first')
      let r = await a.queryConfig(9, 0, { ccmd: 3, config: Buffer.from('abc') }, { want: 1 })
      t.same([r[0].header.flags & FLAG_ERROR, configString(r[0])], [0, 'abc'], 'set when empty')
      r = await a.queryConfig(9, 0, { ccmd: 3, config: Buffer.from('abc') }, { want: 1 })
      t.equal(r[0].header.flags & FLAG_ERROR, 0, 'set to the same value succeeds')
      r = await a.queryConfig(9, 0, { ccmd: 3, config: Buffer.from('xyz') }, { want: 1 })
      t.same([r[0].header.error, configString(r[0])], [AoeError.ConfigStringPresent, 'abc'], 'set when different: error 4')
      t.equal((await a.queryConfig(9, 0, { ccmd: 1, config: Buffer.from('abc') }, { want: 1 })).length, 1, 'test exact: match')
      t.equal((await a.queryConfig(9, 0, { ccmd: 1, config: Buffer.from('ab') }, { windowMs: 300 })).length, 0, 'test exact: no match, no reply')
      t.equal((await a.queryConfig(9, 0, { ccmd: 2, config: Buffer.from('ab') }, { want: 1 })).length, 1, 'prefix: match')
      t.equal((await a.queryConfig(9, 0, { ccmd: 2, config: Buffer.from('abd') }, { windowMs: 300 })).length, 0, 'prefix: no match, no reply')
      r = await a.queryConfig(9, 0, { ccmd: 4, config: Buffer.from('xyz') }, { want: 1 })
      t.same([r[0].header.flags & FLAG_ERROR, configString(r[0])], [0, 'xyz'], 'force set')
      r = await a.queryConfig(9, 0, { ccmd: 9 }, { want: 1 })
      t.equal(r[0].header.error, AoeError.BadArgument, 'unknown subcommand: error 2')
      r = await b.queryConfig(9, 0, {}, { want: 1 })
      t.equal(configString(r[0]), 'xyz', '9.0 on the other interface shares the string')
      t.equal(configString((await a.queryConfig(9, 1, {}, { want: 1 }))[0]), '', '9.1 has its own')
      const longest = Buffer.alloc(1024, 0x41)
      r = await a.queryConfig(9, 1, { ccmd: 4, config: longest }, { want: 1 })
      t.equal(configString(r[0]), longest.toString(), 'a 1024-byte string is stored and returned')
      // encodeConfig refuses to build this, so assemble it by hand: 1024 + 1 bytes.
      const tooLong = a.configFrame(macA, 9, 1, { ccmd: 4, config: Buffer.alloc(1024, 0x42) })
      const frame = Buffer.concat([tooLong.frame, Buffer.from([0x42])])
      frame.writeUInt16BE(1025, 30)
      t.equal((await a.request(frame, tooLong.tag, 1, 300)).length, 0, 'a 1025-byte string is refused')
      t.equal(configString((await a.queryConfig(9, 1, {}, { want: 1 }))[0]), longest.toString(), 'and changes nothing')
      await a.queryConfig(9, 1, { ccmd: 4, config: Buffer.alloc(0) }, { want: 1 })
    })

    await t.test('Mac Mask List: edit, enforce, errors', async t => {
      const mask = (m: TestInitiator, directives: Array<[number, number]>, mcmd = 1): Promise<Reply[]> => {
        const tag = m.tag()
        const frame = Buffer.alloc(Math.max(60, 28 + directives.length * 8))
        encodeHeader(frame, 0, m.header(m === a ? macA : macB, 9, 0, Command.MacMaskList, tag))
        encodeMacMask(frame, 0, { mcmd, merror: 0, directives: directives.map(([dcmd, mac]) => ({ dcmd, mac })) })
        return m.request(frame, tag, 1, 500)
      }
      const decoded = (r: Reply[]) => {
        const m = decodeMacMask(r[0].frame, 0, r[0].frame.length)
        if (m === 'truncated') throw new Error('truncated mask reply')
        return m
      }
      const fake = parseMac('02:00:00:00:00:99')
      let m = decoded(await mask(a, [], 0))
      t.same(m.directives, [], 'empty at first')
      m = decoded(await mask(a, [[1, a.mac], [1, fake]]))
      t.same(m.directives.map(d => d.mac), [a.mac, fake], 'add two')
      t.equal((await b.queryConfig(9, 0, {}, { windowMs: 300 })).length, 0, 'a MAC not on the mask is ignored (shared state across interfaces)')
      t.equal((await a.queryConfig(9, 0, {}, { want: 1 })).length, 1, 'a MAC on the mask is served')
      t.equal((await b.queryConfig(9, 1, {}, { windowMs: 300 })).length, 0, 'b is not on link A at all')
      const bad = await mask(a, [[2, fake], [7, fake], [1, fake]])
      const badMsg = decoded(bad)
      t.same([badMsg.merror, bad[0].frame[27]], [2, 1], 'bad directive: merror 2, count = its index')
      m = decoded(await mask(a, [], 0))
      t.same(m.directives.map(d => d.mac), [a.mac], 'directives before the failing one were applied')
      const many: Array<[number, number]> = []
      for (let i = 0; i < 64; i++) many.push([1, fake + i])
      const full = await mask(a, many)
      t.same([full[0].frame[26], full[0].frame[27]], [3, 63], 'list full at the 64th entry: merror 3, count = its index')
      m = decoded(await mask(a, [...many.map(([, mac]): [number, number] => [2, mac]), [2, a.mac]]))
      t.same(m.directives, [], 'deleted again')
      t.equal((await b.queryConfig(9, 0, {}, { want: 1 })).length, 1, 'empty mask: everyone is served')
    })

    await t.test('Reserve/Release', async t => {
      const reserve = (m: TestInitiator, dst: number, rcmd: number, macs: number[]): Promise<Reply[]> => {
        const tag = m.tag()
        const frame = Buffer.alloc(Math.max(60, 26 + macs.length * 6))
        encodeHeader(frame, 0, m.header(dst, 9, 0, Command.ReserveRelease, tag))
        encodeReserve(frame, 0, { rcmd, macs })
        return m.request(frame, tag, 1, 500)
      }
      let r = await reserve(a, macA, 0, [])
      t.same(decodeReserve(r[0].frame, 0, r[0].frame.length), { rcmd: 0, macs: [] }, 'nothing reserved')
      r = await reserve(a, macA, 1, [a.mac])
      t.equal(r[0].header.flags & FLAG_ERROR, 0, 'set by anyone while free')
      const denied = await b.ata(t90b, 0x24, 0, 1)
      t.same([denied.header.flags & FLAG_ERROR, denied.header.error], [FLAG_ERROR, AoeError.TargetReserved], 'others get error 6 on 9.0 on every interface')
      const idOk = await b.ata(t90b, 0xec, 0, 1)
      t.equal(idOk.header.flags & FLAG_ERROR, 0, 'IDENTIFY is still answered')
      r = await reserve(b, macB, 1, [b.mac])
      t.equal(r[0].header.error, AoeError.TargetReserved, 'set by a non-member: error 6')
      r = await reserve(b, macB, 2, [b.mac])
      t.equal(r[0].header.flags & FLAG_ERROR, 0, 'force set')
      t.equal((await a.ata(t90, 0x24, 0, 1)).header.error, AoeError.TargetReserved, 'the old holder is now refused')
      r = await reserve(b, macB, 1, [])
      t.same(decodeReserve(r[0].frame, 0, r[0].frame.length), { rcmd: 1, macs: [] }, 'nmacs 0 releases')
      t.equal((await a.ata(t90, 0x24, 0, 1)).header.flags & FLAG_ERROR, 0, 'free again')
    })

    await t.test('malformed frames are survived; error replies where the spec wants them', async t => {
      const junk: Buffer[] = []
      for (let i = 0; i < 300; i++) {
        const f = crypto.randomBytes(19 + (i % 100))
        f.writeUIntBE(macA, 0, 6)
        f.writeUIntBE(a.mac, 6, 6)
        f.writeUInt16BE(0x88a2, 12)
        if (i % 3 === 0) { f[14] = 0x10; f.writeUInt16BE(9, 16); f[18] = 0 }
        junk.push(f)
      }
      a.sendFrames(junk)
      const unknown = a.header(macA, 9, 0, 0x07)
      const uf = Buffer.alloc(60); encodeHeader(uf, 0, unknown)
      const [ur] = await a.request(uf, unknown.tag)
      t.same([ur.header.flags & FLAG_ERROR, ur.header.error], [FLAG_ERROR, AoeError.UnrecognizedCommand], 'unknown command: error 1')
      const v2 = a.header(macA, 9, 0, Command.QueryConfig); v2.version = 2
      const vf = Buffer.alloc(60); encodeHeader(vf, 0, v2)
      const [vr] = await a.request(vf, v2.tag)
      t.equal(vr.header.error, AoeError.UnsupportedVersion, 'version 2: error 5')
      const vendor = a.header(macA, 9, 0, 0xf3)
      const vnf = Buffer.alloc(60); encodeHeader(vnf, 0, vendor)
      t.same(await a.request(vnf, vendor.tag, 1, 300), [], 'vendor command: silence')
      const resp = a.header(macA, 9, 0, Command.QueryConfig); resp.flags = 0x08
      const rf = Buffer.alloc(60); encodeHeader(rf, 0, resp)
      t.same(await a.request(rf, resp.tag, 1, 300), [], 'a response frame is never answered')
      const cfg = a.configFrame(macA, 9, 0, { ccmd: 4, config: Buffer.alloc(10) })
      cfg.frame.writeUInt16BE(900, 30) // claims 900 bytes in a 60-byte frame
      t.same(await a.request(cfg.frame, cfg.tag, 1, 300), [], 'truncated config string: dropped')
      t.equal(configString((await a.queryConfig(9, 0, {}, { want: 1 }))[0]), 'xyz', 'and the string was not touched')
      // Unpadded 32- and 36-byte frames, as the Linux initiator sends on virtual links.
      const q32 = a.configFrame(macA, 9, 0)
      t.equal((await a.request(q32.frame.subarray(0, 32), q32.tag)).length, 1, '32-byte Query Config answered')
      const id36 = a.ataFrame(t90, 0xec, 0, 1)
      const [idr] = await a.request(id36.frame.subarray(0, 36), id36.tag)
      t.equal(TestInitiator.ataResult(idr).status, 0x40, '36-byte IDENTIFY answered')
      const power = a.ataFrame(t90, 0xe5, 0, 0)
      const [pr] = await a.request(power.frame.subarray(0, 36), power.tag)
      t.equal(pr.frame.length, 60, 'a short reply is padded to exactly 60 bytes')
      t.ok(pr.frame.subarray(36).equals(Buffer.alloc(24)), 'with zeros')
      t.ok(daemon.alive, 'the daemon is still running')
      const back = await a.read(t90, 100, 64)
      t.ok(back.equals(hostData), 'and still serving the same data')
    })

    await t.test('MTU change: 17 sectors per frame at 9000', async t => {
      await net.setMtu(linkA, 9000)
      a.socket.refreshLink()
      let spc = 0
      for (let i = 0; i < 30 && spc !== 17; i++) {
        const [f] = await a.discover(9, 0)
        spc = f.config.sectorsPerCommand
        if (spc !== 17) await new Promise(resolve => setTimeout(resolve, 200))
      }
      t.equal(spc, 17, 'advertised from the new MTU')
      const data = crypto.randomBytes(17 * 64 * SECTOR)
      await a.write(t90, 8192, data, 17, 64)
      t.ok((await a.read(t90, 8192, 17 * 64, 17, 64)).equals(data), 'jumbo transfers round-trip')
      const tooMany = await a.ata(t90, 0x24, 0, 18)
      t.equal(tooMany.header.error, AoeError.BadArgument, '18 sectors do not fit')
      await net.setMtu(linkA, 1500)
    })

    t.ok(daemon.alive, 'daemon survived everything')
    const exit = await daemon.stop('SIGTERM')
    t.same(exit, { code: 0, signal: null }, 'clean exit on SIGTERM')
  })
}
