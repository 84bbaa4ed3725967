/**
 * IDENTIFY DEVICE data (ATA/ATAPI-7 §6.17): 256 little-endian words. Expected values come
 * from the standard and from what initiators read (aoe-notes): strings byte-swapped and
 * space-padded in words 10–19, 23–26, 27–46; LBA supported in word 49 bit 9; LBA28
 * capacity in 60–61 (at most 0x0FFFFFFF); LBA48 in word 83/86 bit 10; LBA48 capacity in
 * 100–103; no write cache.
 */
import t from 'tap'
import {
  FIRMWARE_LENGTH, IDENTIFY_LENGTH, MODEL_LENGTH, SERIAL_LENGTH, decodeIdentify, encodeIdentify,
  type IdentifyFields,
} from '../../src/ata/identify'
import { LBA28_MAX_SECTORS, LBA48_MAX_SECTORS } from '../../src/ata/registers'

const word = (buf: Buffer, base: number, w: number): number => buf[base + 2 * w] | (buf[base + 2 * w + 1] << 8)

/** ATA string per the standard: character 2k in bits 15:8 of word k, 2k+1 in bits 7:0. */
function ataString (buf: Buffer, base: number, firstWord: number, chars: number): string {
  let s = ''
  for (let k = 0; k < chars / 2; k++) {
    const w = word(buf, base, firstWord + k)
    s += String.fromCharCode(w >> 8, w & 0xff)
  }
  return s
}

function encode (f: IdentifyFields, base = 0): Buffer {
  const buf = Buffer.alloc(base + IDENTIFY_LENGTH + 16, 0xa5)
  encodeIdentify(buf, base, f)
  return buf
}

const disk: IdentifyFields = { sectors: 2097152, model: 'kvblade virtual disk', serial: 'SN-0001', firmware: 'v0.1' }

t.test('field sizes', t => {
  t.equal(IDENTIFY_LENGTH, 512)
  t.equal(MODEL_LENGTH, 40)
  t.equal(SERIAL_LENGTH, 20)
  t.equal(FIRMWARE_LENGTH, 8)
  t.equal(LBA28_MAX_SECTORS, 0x0fffffff)
  t.equal(LBA48_MAX_SECTORS, 2 ** 48 - 1)
  t.end()
})

t.test('strings are byte-swapped and space padded', t => {
  const cases: Array<{ name: string, f: IdentifyFields, serial: string, firmware: string, model: string }> = [
    { name: 'short values', f: disk, serial: 'SN-0001'.padEnd(20), firmware: 'v0.1'.padEnd(8), model: 'kvblade virtual disk'.padEnd(40) },
    { name: 'odd lengths', f: { ...disk, serial: 'ABC', firmware: 'X', model: 'M' }, serial: 'ABC'.padEnd(20), firmware: 'X'.padEnd(8), model: 'M'.padEnd(40) },
    { name: 'empty', f: { ...disk, serial: '', firmware: '', model: '' }, serial: ' '.repeat(20), firmware: ' '.repeat(8), model: ' '.repeat(40) },
    {
      name: 'exactly full',
      f: { ...disk, serial: '0123456789abcdefghij', firmware: 'FW012345', model: 'M'.repeat(39) + 'z' },
      serial: '0123456789abcdefghij', firmware: 'FW012345', model: 'M'.repeat(39) + 'z',
    },
    {
      name: 'too long: cut to the field',
      f: { ...disk, serial: 'S'.repeat(25), firmware: 'firmware-9', model: 'x'.repeat(50) },
      serial: 'S'.repeat(20), firmware: 'firmware', model: 'x'.repeat(40),
    },
  ]
  for (const c of cases) {
    for (const base of [0, 7]) {
      const buf = encode(c.f, base)
      t.equal(ataString(buf, base, 10, 20), c.serial, `${c.name}: serial in words 10-19`)
      t.equal(ataString(buf, base, 23, 8), c.firmware, `${c.name}: firmware in words 23-26`)
      t.equal(ataString(buf, base, 27, 40), c.model, `${c.name}: model in words 27-46`)
      const back = decodeIdentify(buf, base)
      t.equal(back.serial, c.serial.trimEnd(), `${c.name}: decoded serial`)
      t.equal(back.firmware, c.firmware.trimEnd(), `${c.name}: decoded firmware`)
      t.equal(back.model, c.model.trimEnd(), `${c.name}: decoded model`)
    }
  }
  // The byte order spelled out: "AB" -> word 10 = 0x4142 -> bytes 0x42, 0x41.
  const buf = encode({ ...disk, serial: 'AB' })
  t.same([buf[20], buf[21], buf[22], buf[23]], [0x42, 0x41, 0x20, 0x20], 'first character in the high byte of the word')
  t.end()
})

t.test('capability and command-set words', t => {
  const buf = encode(disk)
  t.equal(word(buf, 0, 0) & 0x8000, 0, 'word 0 bit 15 clear: ATA device')
  t.equal(word(buf, 0, 49) & 0x0200, 0x0200, 'word 49 bit 9: LBA supported')
  for (const w of [83, 84, 87]) {
    t.equal(word(buf, 0, w) & 0xc000, 0x4000, `word ${w}: bits 15:14 = 01 (valid)`)
  }
  t.equal(word(buf, 0, 83) & 0x0400, 0x0400, 'word 83 bit 10: LBA48 supported')
  t.equal(word(buf, 0, 86) & 0x0400, 0x0400, 'word 86 bit 10: LBA48 enabled')
  t.equal(word(buf, 0, 82) & 0x0020, 0, 'word 82 bit 5 clear: no write cache supported')
  t.equal(word(buf, 0, 85) & 0x0020, 0, 'word 85 bit 5 clear: no write cache enabled')
  t.equal(word(buf, 0, 103), 0, 'word 103: high 16 bits of a 64-bit count are 0')
  t.end()
})

t.test('capacity: words 60-61 capped at 0x0FFFFFFF, words 100-103 the full 48-bit count', t => {
  const cases: Array<{ sectors: number, lba28: number, lba48: number }> = [
    { sectors: 0, lba28: 0, lba48: 0 },
    { sectors: 1, lba28: 1, lba48: 1 },
    { sectors: 2097152, lba28: 2097152, lba48: 2097152 }, // 1 GiB
    { sectors: 0x0ffffffe, lba28: 0x0ffffffe, lba48: 0x0ffffffe },
    { sectors: 0x0fffffff, lba28: 0x0fffffff, lba48: 0x0fffffff },
    { sectors: 0x10000000, lba28: 0x0fffffff, lba48: 0x10000000 }, // 128 GiB: LBA48 needed
    { sectors: 0xffffffff, lba28: 0x0fffffff, lba48: 0xffffffff },
    { sectors: 0x100000000, lba28: 0x0fffffff, lba48: 0x100000000 },
    { sectors: 0x123456789abc, lba28: 0x0fffffff, lba48: 0x123456789abc },
    { sectors: 2 ** 48 - 1, lba28: 0x0fffffff, lba48: 2 ** 48 - 1 },
  ]
  for (const c of cases) {
    const buf = encode({ ...disk, sectors: c.sectors })
    t.equal(word(buf, 0, 60) + word(buf, 0, 61) * 0x10000, c.lba28, `${c.sectors}: words 60-61`)
    t.equal(word(buf, 0, 100) + word(buf, 0, 101) * 2 ** 16 + word(buf, 0, 102) * 2 ** 32 + word(buf, 0, 103) * 2 ** 48, c.lba48, `${c.sectors}: words 100-103`)
    // WinAoE reads bytes 200..207 as one little-endian 64-bit number.
    t.equal(buf.readBigUInt64LE(200), BigInt(c.lba48), `${c.sectors}: bytes 200-207 as a u64`)
    const back = decodeIdentify(buf)
    t.equal(back.lba48, true, `${c.sectors}: decoded LBA48`)
    t.equal(back.sectors, c.lba48, `${c.sectors}: decoded capacity`)
    t.equal(back.lba28Sectors, c.lba28, `${c.sectors}: decoded LBA28 capacity`)
  }
  t.end()
})

t.test('encodeIdentify writes exactly 512 bytes at base and clears stale data', t => {
  const buf = Buffer.alloc(600, 0xff)
  encodeIdentify(buf, 40, disk)
  t.equal(buf[39], 0xff, 'byte before base untouched')
  t.equal(buf[40 + 512], 0xff, 'byte after the 512 untouched')
  for (const w of [1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 62, 63, 88, 128, 255]) {
    t.equal(word(buf, 40, w), 0, `word ${w} zeroed`)
  }
  t.end()
})

t.test('decodeIdentify without LBA48 uses words 60-61', t => {
  const buf = encode({ ...disk, sectors: 5000 })
  buf.writeUInt16LE(buf.readUInt16LE(83 * 2) & ~0x0400, 83 * 2)
  buf.writeUInt16LE(buf.readUInt16LE(86 * 2) & ~0x0400, 86 * 2)
  buf.writeUInt16LE(0x1234, 100 * 2)
  const back = decodeIdentify(buf)
  t.equal(back.lba48, false)
  t.equal(back.sectors, 5000, 'capacity from 60-61 when LBA48 is off')
  buf.writeUInt16LE(0x0400, 86 * 2)
  t.equal(decodeIdentify(buf).lba48, true, 'word 86 alone is enough')
  t.end()
})
