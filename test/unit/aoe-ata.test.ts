/**
 * The AoE ATA argument block (r11 §3.1): 12 bytes at 24 — aflags, err/feature, sector
 * count, cmd/status, LBA0..LBA5 little-endian, 2 reserved — data at 36.
 */
import t from 'tap'
import {
  AFLAG_ASYNC, AFLAG_DEVICE, AFLAG_LBA48, AFLAG_WRITE, ATA_HEADER_LENGTH, SECTOR_SIZE, decodeAta, emptyAtaRequest,
  encodeAtaRequest, encodeAtaStatus,
} from '../../src/aoe/ata'

interface RawAta {
  aflags: number
  feature: number
  count: number
  cmd: number
  /** LBA0..LBA5 as they appear on the wire (LBA0 first). */
  lba: number[]
}

function rawFrame (a: RawAta, length: number, base = 0, fill = 0): Buffer {
  const buf = Buffer.alloc(base + Math.max(length, 36), fill)
  buf.writeUInt16BE(0x88a2, base + 12)
  buf[base + 14] = 0x10
  const bytes = [a.aflags, a.feature, a.count, a.cmd, ...a.lba, 0, 0]
  for (let i = 0; i < bytes.length; i++) buf[base + 24 + i] = bytes[i]
  return buf
}

t.test('layout constants', t => {
  t.equal(ATA_HEADER_LENGTH, 36, 'data starts at 36')
  t.equal(SECTOR_SIZE, 512)
  t.equal(AFLAG_LBA48, 0x40)
  t.equal(AFLAG_DEVICE, 0x10)
  t.equal(AFLAG_ASYNC, 0x02)
  t.equal(AFLAG_WRITE, 0x01)
  t.end()
})

t.test('decodeAta: registers and LBA', t => {
  const cases: Array<{ name: string, raw: RawAta, lba: number }> = [
    { name: 'IDENTIFY (Linux initiator: count 1, LBA 0)', raw: { aflags: 0, feature: 0, count: 1, cmd: 0xec, lba: [0, 0, 0, 0, 0, 0] }, lba: 0 },
    {
      name: 'LBA28 READ: the device register in LBA3 high nibble is passed through (the handler masks by command)',
      raw: { aflags: 0, feature: 0, count: 2, cmd: 0x20, lba: [0x78, 0x56, 0x34, 0xe2, 0, 0] },
      lba: 0xe2345678,
    },
    {
      name: 'LBA28 WRITE: all six bytes decoded as they came',
      raw: { aflags: AFLAG_WRITE, feature: 0, count: 1, cmd: 0x30, lba: [0xff, 0xff, 0xff, 0xff, 0xaa, 0xbb] },
      lba: 0xbbaaffffffff,
    },
    {
      name: 'LBA28 with 0x40 (LBA mode bit only) in the device nibble',
      raw: { aflags: 0, feature: 0, count: 1, cmd: 0x20, lba: [1, 0, 0, 0x40, 0, 0] },
      lba: 0x40000001,
    },
    {
      name: 'LBA48 READ EXT: all six bytes',
      raw: { aflags: AFLAG_LBA48, feature: 0, count: 2, cmd: 0x24, lba: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06] },
      lba: 0x060504030201,
    },
    {
      name: 'LBA48 max 2^48-1',
      raw: { aflags: AFLAG_LBA48 | AFLAG_WRITE, feature: 0, count: 0, cmd: 0x34, lba: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] },
      lba: 2 ** 48 - 1,
    },
    {
      name: 'LBA48 just above 32 bits',
      raw: { aflags: AFLAG_LBA48, feature: 0, count: 1, cmd: 0x24, lba: [0, 0, 0, 0, 1, 0] },
      lba: 2 ** 32,
    },
    {
      name: 'LBA48 keeps LBA3 high nibble (it is address, not device)',
      raw: { aflags: AFLAG_LBA48, feature: 0, count: 1, cmd: 0x24, lba: [0, 0, 0, 0xe0, 0, 0] },
      lba: 0xe0000000,
    },
    {
      name: 'feature register and all aflags',
      raw: { aflags: 0x53, feature: 0x5a, count: 0xff, cmd: 0xe5, lba: [9, 8, 7, 6, 5, 4] },
      lba: 0x040506070809,
    },
  ]
  for (const c of cases) {
    for (const length of [36, 60, 36 + 1024]) {
      for (const base of [0, 3]) {
        const buf = rawFrame(c.raw, length, base, 0x77)
        const out = emptyAtaRequest()
        t.equal(decodeAta(buf, base, length, out), true, `${c.name} (${length} bytes at ${base}): accepted`)
        t.same(out, {
          aflags: c.raw.aflags,
          feature: c.raw.feature,
          sectorCount: c.raw.count,
          command: c.raw.cmd,
          lba: c.lba,
          dataOffset: base + 36,
          dataLength: length - 36,
        }, `${c.name} (${length} bytes at ${base})`)
      }
    }
  }
  t.end()
})

t.test('decodeAta rejects frames shorter than the 36-byte ATA header', t => {
  const raw: RawAta = { aflags: 0, feature: 0, count: 1, cmd: 0xec, lba: [0, 0, 0, 0, 0, 0] }
  for (let length = 0; length < 36; length++) {
    t.equal(decodeAta(rawFrame(raw, 36), 0, length, emptyAtaRequest()), false, `${length} bytes rejected`)
  }
  t.equal(decodeAta(rawFrame(raw, 36), 0, 36, emptyAtaRequest()), true, 'unpadded 36-byte IDENTIFY from the Linux initiator accepted')
  t.end()
})

t.test('decodeAta reports the data area by frame length, not by count', t => {
  // A 2-sector write: 36 + 1024 bytes. Padded frames carry extra bytes; the handler decides.
  const raw: RawAta = { aflags: AFLAG_WRITE, feature: 0, count: 2, cmd: 0x30, lba: [5, 0, 0, 0xe0, 0, 0] }
  const buf = rawFrame(raw, 36 + 1024)
  for (let i = 0; i < 1024; i++) buf[36 + i] = i & 0xff
  const out = emptyAtaRequest()
  t.ok(decodeAta(buf, 0, 36 + 1024, out))
  t.equal(out.dataOffset, 36)
  t.equal(out.dataLength, 1024)
  t.equal(buf[out.dataOffset + 1023], 1023 & 0xff, 'data addressed in place')
  t.ok(decodeAta(buf, 0, 36 + 512, out))
  t.equal(out.dataLength, 512, 'short write: fewer bytes than the count says')
  t.end()
})

t.test('encodeAtaStatus writes error, count and status and nothing else', t => {
  const cases = [
    { status: 0x40, error: 0, count: 0 },
    { status: 0x41, error: 0x10, count: 2 },
    { status: 0x41, error: 0x04, count: 0xff },
    { status: 0x40, error: 0, count: 0xff },
  ]
  for (const c of cases) {
    const req = rawFrame({ aflags: 0x41, feature: 0x11, count: 0x22, cmd: 0x24, lba: [1, 2, 3, 4, 5, 6] }, 60, 2, 0x33)
    const before = Buffer.from(req)
    encodeAtaStatus(req, 2, c.status, c.error, c.count)
    t.equal(req[2 + 25], c.error, 'error register at 25')
    t.equal(req[2 + 26], c.count, 'count at 26')
    t.equal(req[2 + 27], c.status, 'status at 27')
    for (let i = 0; i < req.length; i++) {
      if (i >= 27 && i <= 29) continue
      if (req[i] !== before[i]) t.fail(`byte ${i} changed`)
    }
    t.same([...req.subarray(2 + 28, 2 + 34)], [1, 2, 3, 4, 5, 6], 'LBA registers untouched')
    t.equal(req[2 + 24], 0x41, 'aflags untouched')
  }
  t.end()
})

t.test('encodeAtaRequest: wire layout and round trip', t => {
  const cases = [
    { aflags: 0, feature: 0, sectorCount: 1, command: 0xec, lba: 0 },
    { aflags: AFLAG_LBA48, feature: 0, sectorCount: 2, command: 0x24, lba: 2 ** 48 - 1 },
    { aflags: AFLAG_LBA48 | AFLAG_WRITE | AFLAG_ASYNC, feature: 3, sectorCount: 17, command: 0x34, lba: 0x123456789abc },
    { aflags: AFLAG_WRITE, feature: 0, sectorCount: 2, command: 0x30, lba: 0x0fffffff },
    { aflags: AFLAG_LBA48, feature: 0, sectorCount: 255, command: 0x24, lba: 2 ** 32 },
  ]
  for (const c of cases) {
    const buf = Buffer.alloc(70, 0xcc)
    encodeAtaRequest(buf, 5, c)
    const wire = [...buf.subarray(5 + 24, 5 + 36)]
    const lbaBytes: number[] = []
    let rest = c.lba
    for (let i = 0; i < 6; i++) {
      lbaBytes.push(rest % 256)
      rest = Math.floor(rest / 256)
    }
    t.same(wire, [c.aflags, c.feature, c.sectorCount, c.command, ...lbaBytes, 0, 0], `layout for cmd ${c.command.toString(16)} lba ${c.lba}`)
    const out = emptyAtaRequest()
    t.ok(decodeAta(buf, 5, 60, out))
    t.same({ aflags: out.aflags, feature: out.feature, sectorCount: out.sectorCount, command: out.command, lba: out.lba }, c, 'round trip')
  }
  t.end()
})
