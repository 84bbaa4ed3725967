/**
 * planAta()/completeAta(): what an ATA request needs. Expected values from ATA/ATAPI-7 and
 * aoe-notes: success status 0x40 (DRDY, none of 0xA9), errors DRDY|ERR with ABRT (0x04) for
 * unsupported commands, IDNF (0x10) out of range; oversize or data-less requests are an AoE
 * bad-argument; I/O failures become ATA errors.
 */
import t from 'tap'
import { AFLAG_LBA48, AFLAG_WRITE, decodeAta, emptyAtaRequest, type AtaRequest } from '../../src/aoe/ata'
import { AtaStep, completeAta, emptyAtaPlan, planAta, type AtaPlan } from '../../src/ata/handler'
import { decodeIdentify, type IdentifyFields } from '../../src/ata/identify'

const DRDY = 0x40
const ERR = 0x01
const ABRT = 0x04
const IDNF = 0x10
/** BSY | DF | DRQ | ERR: the Linux initiator treats any of these as failure. */
const FAIL_BITS = 0xa9

const disk: IdentifyFields = { sectors: 1000, model: 'test model', serial: 'serial-1', firmware: 'fw1' }

function req (r: Partial<AtaRequest>): AtaRequest {
  return { aflags: 0, feature: 0, sectorCount: 1, command: 0x20, lba: 0, dataOffset: 36, dataLength: 24, ...r }
}

function plan (r: AtaRequest, d: IdentifyFields = disk, maxSectors = 2): { step: AtaStep, plan: AtaPlan, reply: Buffer } {
  const reply = Buffer.alloc(36 + 512 + 8, 0xee)
  const p = emptyAtaPlan()
  const step = planAta(r, d, maxSectors, reply, 36, p)
  return { step, plan: p, reply }
}

/** A request frame built by hand: LBA bytes little-endian at 28..33, data at 36. */
function frame (aflags: number, count: number, cmd: number, lbaBytes: number[], dataBytes: number, padTo = 0): { buf: Buffer, length: number } {
  const length = Math.max(36 + dataBytes, padTo)
  const buf = Buffer.alloc(length)
  buf.writeUInt16BE(0x88a2, 12)
  buf[14] = 0x10
  buf[24] = aflags
  buf[26] = count
  buf[27] = cmd
  lbaBytes.forEach((b, i) => { buf[28 + i] = b })
  return { buf, length }
}

t.test('IDENTIFY DEVICE', t => {
  for (const d of [disk, { ...disk, sectors: 0x10000000 }, { ...disk, sectors: 2 ** 40 }]) {
    const { step, plan: p, reply } = plan(req({ command: 0xec, sectorCount: 1 }), d)
    t.equal(step, AtaStep.Reply, 'answered at once')
    t.equal(p.status, DRDY, 'status DRDY')
    t.equal(p.status & FAIL_BITS, 0, 'no failure bit')
    t.equal(p.error, 0)
    t.equal(p.dataLength, 512, '512 bytes of data')
    t.equal(p.length, 0, 'no disk transfer')
    t.equal(reply[35], 0xee, 'header untouched')
    t.equal(reply[36 + 512], 0xee, 'nothing past the 512 bytes')
    const id = decodeIdentify(reply, 36)
    t.equal(id.sectors, d.sectors, 'capacity of this disk')
    t.equal(id.model, d.model)
    t.equal(id.serial, d.serial)
    t.equal(id.firmware, d.firmware)
  }
  // Linux sends IDENTIFY as a 36-byte frame with count 1 and LBA 0; WinAoE sets the E flag.
  for (const aflags of [0, AFLAG_LBA48]) {
    const f = frame(aflags, 1, 0xec, [0, 0, 0, 0, 0, 0], 0)
    const r = emptyAtaRequest()
    t.ok(decodeAta(f.buf, 0, f.length, r))
    t.equal(plan(r).step, AtaStep.Reply, `IDENTIFY from a 36-byte frame, aflags ${aflags}`)
  }
  t.end()
})

t.test('CHECK POWER MODE answers active (count 0xFF)', t => {
  const { step, plan: p } = plan(req({ command: 0xe5, sectorCount: 0 }))
  t.equal(step, AtaStep.Reply)
  t.equal(p.status, DRDY)
  t.equal(p.error, 0)
  t.equal(p.sectorCount, 0xff)
  t.equal(p.dataLength, 0)
  t.end()
})

t.test('FLUSH CACHE and FLUSH CACHE EXT', t => {
  for (const command of [0xe7, 0xea]) {
    const { step, plan: p } = plan(req({ command, sectorCount: 0 }))
    t.equal(step, AtaStep.Flush, `0x${command.toString(16)} needs a flush`)
    t.equal(p.length, 0, 'no data transfer')
    completeAta(step, false, p)
    t.equal(p.status, DRDY, 'success status after the flush')
    t.equal(p.error, 0)
    t.equal(p.dataLength, 0)
    const failed = plan(req({ command, sectorCount: 0 }))
    completeAta(failed.step, true, failed.plan)
    t.equal(failed.plan.status, DRDY | ERR, 'a failed flush is an ATA error')
    t.not(failed.plan.error, 0, 'with an error bit')
    t.equal(failed.plan.dataLength, 0)
  }
  t.end()
})

t.test('unsupported commands are aborted', t => {
  const commands = [
    0x00, // NOP
    0x08, // DEVICE RESET
    0x25, // READ DMA EXT
    0x29, // READ MULTIPLE EXT
    0x35, // WRITE DMA EXT
    0x40, // READ VERIFY
    0x42, // READ VERIFY EXT
    0x70, // SEEK
    0x90, // EXECUTE DEVICE DIAGNOSTIC
    0x91, // INITIALIZE DEVICE PARAMETERS
    0xa1, // IDENTIFY PACKET DEVICE
    0xb0, // SMART
    0xc4, // READ MULTIPLE
    0xc5, // WRITE MULTIPLE
    0xc8, // READ DMA
    0xca, // WRITE DMA
    0xe0, // STANDBY IMMEDIATE
    0xe1, // IDLE IMMEDIATE
    0xe6, // SLEEP
    0xef, // SET FEATURES
    0xf8, // READ NATIVE MAX ADDRESS
    0xff,
  ]
  for (const command of commands) {
    const { step, plan: p } = plan(req({ command, sectorCount: 3 }))
    t.equal(step, AtaStep.Reply, `0x${command.toString(16)}: answered at once`)
    t.equal(p.status, DRDY | ERR, `0x${command.toString(16)}: DRDY|ERR`)
    t.equal(p.error, ABRT, `0x${command.toString(16)}: ABRT`)
    t.equal(p.dataLength, 0, `0x${command.toString(16)}: no data`)
    t.equal(p.length, 0, `0x${command.toString(16)}: no transfer`)
  }
  t.end()
})

t.test('reads and writes in range', t => {
  const big: IdentifyFields = { ...disk, sectors: 2 ** 48 }
  const cases: Array<{ name: string, r: AtaRequest, d?: IdentifyFields, max?: number, step: AtaStep, offset: number, length: number }> = [
    { name: 'READ 1 sector at 0', r: req({ command: 0x20, sectorCount: 1, lba: 0 }), step: AtaStep.Read, offset: 0, length: 512 },
    { name: 'READ 2 sectors at 10', r: req({ command: 0x20, sectorCount: 2, lba: 10 }), step: AtaStep.Read, offset: 5120, length: 1024 },
    { name: 'READ the last sector', r: req({ command: 0x20, sectorCount: 1, lba: 999 }), step: AtaStep.Read, offset: 999 * 512, length: 512 },
    { name: 'READ 2 ending at the last sector', r: req({ command: 0x20, sectorCount: 2, lba: 998 }), step: AtaStep.Read, offset: 998 * 512, length: 1024 },
    { name: 'READ EXT', r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 2, lba: 500 }), step: AtaStep.Read, offset: 500 * 512, length: 1024 },
    {
      name: 'READ EXT beyond 2^32 sectors on a huge disk',
      r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 1, lba: 2 ** 40 + 3 }), d: big, step: AtaStep.Read, offset: (2 ** 40 + 3) * 512, length: 512,
    },
    {
      name: 'READ EXT of the last sector of a 2^48-sector disk',
      r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 1, lba: 2 ** 48 - 1 }), d: big, step: AtaStep.Read, offset: (2 ** 48 - 1) * 512, length: 512,
    },
    { name: 'READ 17 sectors on a jumbo link', r: req({ command: 0x24, aflags: AFLAG_LBA48, sectorCount: 17, lba: 0 }), max: 17, step: AtaStep.Read, offset: 0, length: 17 * 512 },
    {
      name: 'WRITE 2 sectors with exactly 1024 bytes', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 2, lba: 4, dataLength: 1024 }),
      step: AtaStep.Write, offset: 2048, length: 1024,
    },
    {
      name: 'WRITE 1 sector with trailing padding', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 1, lba: 7, dataLength: 600 }),
      step: AtaStep.Write, offset: 7 * 512, length: 512,
    },
    {
      name: 'WRITE EXT', r: req({ aflags: AFLAG_WRITE | AFLAG_LBA48, command: 0x34, sectorCount: 2, lba: 998, dataLength: 1024 }),
      step: AtaStep.Write, offset: 998 * 512, length: 1024,
    },
  ]
  for (const c of cases) {
    const { step, plan: p } = plan(c.r, c.d, c.max)
    t.equal(step, c.step, `${c.name}: step`)
    t.equal(p.offset, c.offset, `${c.name}: byte offset = lba * 512`)
    t.equal(p.length, c.length, `${c.name}: byte length = count * 512`)
    completeAta(step, false, p)
    t.equal(p.status, DRDY, `${c.name}: DRDY after success`)
    t.equal(p.error, 0, `${c.name}: no error`)
    t.equal(p.sectorCount, 0, `${c.name}: no sectors left`)
    t.equal(p.dataLength, c.step === AtaStep.Read ? c.length : 0, `${c.name}: reply carries read data only`)
  }
  t.end()
})

t.test('LBA28 commands ignore the device nibble and high LBA bytes', t => {
  const d: IdentifyFields = { ...disk, sectors: 0x10000000 }
  const cases: Array<{ name: string, aflags: number, cmd: number, lba: number[], want: number }> = [
    { name: 'READ with 0xE0 in LBA3', aflags: 0, cmd: 0x20, lba: [0x10, 0x00, 0x00, 0xe0, 0, 0], want: 0x10 },
    { name: 'READ with 0xE0 | 0x0F in LBA3', aflags: 0, cmd: 0x20, lba: [0xff, 0xff, 0xff, 0xef, 0, 0], want: 0x0fffffff },
    { name: 'WRITE with 0xE0 in LBA3 and junk LBA4/5', aflags: AFLAG_WRITE, cmd: 0x30, lba: [1, 2, 3, 0xe4, 0x55, 0x66], want: 0x04030201 },
    { name: 'READ (28-bit command) with the E flag set anyway', aflags: AFLAG_LBA48, cmd: 0x20, lba: [0x00, 0x01, 0x00, 0xe0, 0x01, 0x00], want: 0x100 },
  ]
  for (const c of cases) {
    const f = frame(c.aflags, 1, c.cmd, c.lba, 512)
    const r = emptyAtaRequest()
    t.ok(decodeAta(f.buf, 0, f.length, r), `${c.name}: decoded`)
    const { step, plan: p } = plan(r, d)
    t.equal(step, c.cmd === 0x30 ? AtaStep.Write : AtaStep.Read, `${c.name}: step`)
    t.equal(p.offset, c.want * 512, `${c.name}: LBA ${c.want.toString(16)}`)
  }
  // The planner masks even a request that was not decoded from a frame.
  const direct = plan(req({ command: 0x20, lba: 0xe0000005 }), d)
  t.equal(direct.step, AtaStep.Read)
  t.equal(direct.plan.offset, 5 * 512, 'LBA28 command: request.lba masked to 28 bits')
  const ext = plan(req({ aflags: AFLAG_LBA48, command: 0x24, lba: 0xe0000005 }), { ...disk, sectors: 2 ** 33 })
  t.equal(ext.plan.offset, 0xe0000005 * 512, 'LBA48 command: all bits kept')
  // The width follows the command, not the E flag: READ EXT without E still has 48 bits.
  const noFlag = frame(0, 1, 0x24, [0, 0, 0, 0, 1, 0], 512)
  const nr = emptyAtaRequest()
  t.ok(decodeAta(noFlag.buf, 0, noFlag.length, nr))
  t.equal(plan(nr, { ...disk, sectors: 2 ** 33 }).plan.offset, 2 ** 32 * 512, 'READ EXT without the E flag: LBA 2^32')
  t.end()
})

t.test('out of range: DRDY|ERR with IDNF, count unchanged', t => {
  const big: IdentifyFields = { ...disk, sectors: 2 ** 48 - 1 }
  const cases: Array<{ name: string, r: AtaRequest, d?: IdentifyFields }> = [
    { name: 'READ at the capacity', r: req({ command: 0x20, sectorCount: 1, lba: 1000 }) },
    { name: 'READ 2 straddling the end', r: req({ command: 0x20, sectorCount: 2, lba: 999 }) },
    { name: 'READ far beyond', r: req({ command: 0x20, sectorCount: 1, lba: 0x0fffffff }) },
    { name: 'READ EXT at 2^48-1 on a 1000-sector disk', r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 1, lba: 2 ** 48 - 1 }) },
    { name: 'READ EXT 2 at 2^48-2 on a (2^48-1)-sector disk', r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 2, lba: 2 ** 48 - 2 }), d: big },
    { name: 'WRITE at the capacity', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 1, lba: 1000, dataLength: 512 }) },
    { name: 'WRITE EXT straddling the end', r: req({ aflags: AFLAG_WRITE | AFLAG_LBA48, command: 0x34, sectorCount: 2, lba: 999, dataLength: 1024 }) },
    { name: 'READ on an empty disk', r: req({ command: 0x20, sectorCount: 1, lba: 0 }), d: { ...disk, sectors: 0 } },
  ]
  for (const c of cases) {
    const { step, plan: p } = plan(c.r, c.d)
    t.equal(step, AtaStep.Reply, `${c.name}: answered at once`)
    t.equal(p.status, DRDY | ERR, `${c.name}: DRDY|ERR`)
    t.equal(p.error, IDNF, `${c.name}: IDNF`)
    t.equal(p.sectorCount, c.r.sectorCount, `${c.name}: nothing transferred`)
    t.equal(p.dataLength, 0, `${c.name}: no data`)
    t.equal(p.length, 0, `${c.name}: no transfer`)
  }
  t.end()
})

t.test('requests a frame cannot carry are an AoE bad argument', t => {
  const cases: Array<{ name: string, r: AtaRequest, max: number }> = [
    { name: 'READ 3 sectors at MTU 1500 (max 2)', r: req({ command: 0x20, sectorCount: 3 }), max: 2 },
    { name: 'READ EXT 255 sectors', r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 255 }), max: 17 },
    { name: 'READ 18 on a jumbo link (max 17)', r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 18 }), max: 17 },
    { name: 'WRITE 3 sectors with data for 3, max 2', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 3, dataLength: 1536 }), max: 2 },
    { name: 'WRITE 2 sectors with 1023 bytes', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 2, dataLength: 1023 }), max: 2 },
    { name: 'WRITE 1 sector in a padded 60-byte frame (24 bytes)', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 1, dataLength: 24 }), max: 2 },
    { name: 'WRITE EXT 1 sector, no data at all', r: req({ aflags: AFLAG_WRITE | AFLAG_LBA48, command: 0x34, sectorCount: 1, dataLength: 0 }), max: 2 },
    { name: 'WRITE missing data even if out of range', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 1, lba: 5000, dataLength: 0 }), max: 2 },
  ]
  for (const c of cases) {
    t.equal(plan(c.r, disk, c.max).step, AtaStep.BadArgument, c.name)
  }
  t.end()
})

t.test('a zero-sector read or write transfers nothing', t => {
  for (const r of [req({ command: 0x20, sectorCount: 0 }), req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 0, dataLength: 0 })]) {
    const { step, plan: p } = plan(r)
    t.equal(step, AtaStep.Reply, `0x${r.command.toString(16)} count 0: answered at once`)
    t.equal(p.status & ERR, 0, 'not an error')
    t.equal(p.dataLength, 0, 'no data')
    t.equal(p.length, 0, 'no transfer')
  }
  t.end()
})

t.test('I/O failures become ATA errors with the whole count outstanding', t => {
  const cases: Array<{ name: string, r: AtaRequest, step: AtaStep }> = [
    { name: 'READ 2', r: req({ command: 0x20, sectorCount: 2, lba: 4 }), step: AtaStep.Read },
    { name: 'READ EXT 1', r: req({ aflags: AFLAG_LBA48, command: 0x24, sectorCount: 1 }), step: AtaStep.Read },
    { name: 'WRITE 2', r: req({ aflags: AFLAG_WRITE, command: 0x30, sectorCount: 2, dataLength: 1024 }), step: AtaStep.Write },
    { name: 'WRITE EXT 1', r: req({ aflags: AFLAG_WRITE | AFLAG_LBA48, command: 0x34, sectorCount: 1, dataLength: 512 }), step: AtaStep.Write },
  ]
  for (const c of cases) {
    const { step, plan: p } = plan(c.r)
    t.equal(step, c.step, `${c.name}: planned`)
    completeAta(step, true, p)
    t.equal(p.status, DRDY | ERR, `${c.name}: DRDY|ERR (the initiator fails the bio)`)
    t.not(p.error, 0, `${c.name}: an error bit is set`)
    t.equal(p.sectorCount, c.r.sectorCount, `${c.name}: count = sectors not transferred`)
    t.equal(p.dataLength, 0, `${c.name}: no data in the reply`)
  }
  t.end()
})

t.test('a plan object is reusable: no state leaks between requests', t => {
  const reply = Buffer.alloc(36 + 1024)
  const p = emptyAtaPlan()
  t.equal(planAta(req({ command: 0x20, sectorCount: 2, lba: 0 }), disk, 2, reply, 36, p), AtaStep.Read)
  completeAta(AtaStep.Read, false, p)
  t.equal(p.dataLength, 1024)
  t.equal(planAta(req({ command: 0xe5, sectorCount: 0 }), disk, 2, reply, 36, p), AtaStep.Reply)
  t.equal(p.dataLength, 0, 'CHECK POWER MODE carries no data')
  t.equal(p.length, 0)
  t.equal(planAta(req({ command: 0x20, sectorCount: 1, lba: 5000 }), disk, 2, reply, 36, p), AtaStep.Reply)
  t.equal(p.dataLength, 0, 'an error carries no data')
  t.end()
})
