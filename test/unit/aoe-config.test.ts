/**
 * Query Config (r11 §3.2): 8 bytes at 24 — buffer count (BE16), firmware version (BE16),
 * sectors per command (u8), version<<4 | ccmd, string length (BE16, ≤ 1024) — string at 32.
 */
import t from 'tap'
import { CONFIG_HEADER_LENGTH, CONFIG_STRING_MAX, decodeConfig, encodeConfig, type ConfigQuery } from '../../src/aoe/config'

interface RawConfig {
  bufcnt: number
  firmware: number
  sectors: number
  verCmd: number
  /** The string-length field as sent (may lie). */
  strlen: number
  text?: Buffer
}

/** Builds a frame of `length` bytes (at least 32) with the block laid out by hand. */
function rawFrame (c: RawConfig, length: number, base = 0, fill = 0): Buffer {
  const text = c.text ?? Buffer.alloc(0)
  const buf = Buffer.alloc(base + Math.max(length, 32 + text.length), fill)
  buf.writeUInt16BE(0x88a2, base + 12)
  buf[base + 14] = 0x10
  buf[base + 19] = 1
  const bytes = [c.bufcnt >> 8, c.bufcnt & 0xff, c.firmware >> 8, c.firmware & 0xff, c.sectors, c.verCmd, c.strlen >> 8, c.strlen & 0xff]
  for (let i = 0; i < 8; i++) buf[base + 24 + i] = bytes[i]
  text.copy(buf, base + 32)
  return buf
}

t.test('layout constants', t => {
  t.equal(CONFIG_HEADER_LENGTH, 32, 'string at 32')
  t.equal(CONFIG_STRING_MAX, 1024)
  t.end()
})

t.test('decodeConfig: requests', t => {
  const hello = Buffer.from('hello')
  const k1024 = Buffer.alloc(1024, 0x61)
  const cases: Array<{ name: string, raw: RawConfig, lengths: number[], want: ConfigQuery }> = [
    {
      name: 'Linux read: 32 bytes, no padding',
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x10, strlen: 0 },
      lengths: [32, 60],
      want: { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 1, ccmd: 0, config: Buffer.alloc(0) },
    },
    {
      name: 'read ignores whatever string length it carries',
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x10, strlen: 0xffff },
      lengths: [32, 60],
      want: { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 1, ccmd: 0, config: Buffer.alloc(0) },
    },
    {
      name: 'test with a 5-byte string in a padded frame',
      raw: { bufcnt: 0x1234, firmware: 0xabcd, sectors: 2, verCmd: 0x11, strlen: 5, text: hello },
      lengths: [37, 60],
      want: { bufferCount: 0x1234, firmwareVersion: 0xabcd, sectorsPerCommand: 2, version: 1, ccmd: 1, config: hello },
    },
    {
      name: 'test-prefix',
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x12, strlen: 3, text: Buffer.from('hel') },
      lengths: [35, 60],
      want: { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 1, ccmd: 2, config: Buffer.from('hel') },
    },
    {
      name: 'set: only `strlen` bytes taken even when padding follows',
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x13, strlen: 2, text: Buffer.from('abcdef') },
      lengths: [60],
      want: { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 1, ccmd: 3, config: Buffer.from('ab') },
    },
    {
      name: 'force set with the longest legal string',
      raw: { bufcnt: 0xffff, firmware: 0xffff, sectors: 0xff, verCmd: 0x14, strlen: 1024, text: k1024 },
      lengths: [32 + 1024, 1514],
      want: { bufferCount: 0xffff, firmwareVersion: 0xffff, sectorsPerCommand: 0xff, version: 1, ccmd: 4, config: k1024 },
    },
    {
      name: 'unknown ccmd 7, version 2, empty string',
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x27, strlen: 0 },
      lengths: [32],
      want: { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 2, ccmd: 7, config: Buffer.alloc(0) },
    },
    {
      name: 'set with binary bytes in the string',
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x13, strlen: 4, text: Buffer.from([0, 0xff, 0x0a, 0x80]) },
      lengths: [36],
      want: { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, version: 1, ccmd: 3, config: Buffer.from([0, 0xff, 0x0a, 0x80]) },
    },
  ]
  for (const c of cases) {
    for (const length of c.lengths) {
      for (const base of [0, 9]) {
        const buf = rawFrame(c.raw, length, base, 0x20)
        const got = decodeConfig(buf, base, length)
        t.same(got, c.want, `${c.name} (${length} bytes at ${base})`)
      }
    }
  }
  t.end()
})

t.test('decodeConfig copies the string out of the frame', t => {
  const buf = rawFrame({ bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x13, strlen: 3, text: Buffer.from('abc') }, 60)
  const got = decodeConfig(buf, 0, 60)
  if (typeof got === 'string') {
    t.fail(`decode failed: ${got}`)
  } else {
    buf.fill(0)
    t.equal(got.config.toString(), 'abc', 'the frame buffer is reused by the packet loop')
  }
  t.end()
})

t.test('decodeConfig: truncated and too-long', t => {
  const cases: Array<{ name: string, raw: RawConfig, length: number, isRequest?: boolean, want: 'truncated' | 'too-long' }> = [
    ...Array.from({ length: 32 }, (_, n) => ({
      name: `${n} bytes, shorter than the config block`,
      raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x10, strlen: 0 },
      length: n,
      want: 'truncated' as const,
    })),
    { name: 'set: string length 5, 4 bytes present', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x13, strlen: 5, text: Buffer.from('abcd') }, length: 36, want: 'truncated' },
    { name: 'test: string length 1, none present (32-byte frame)', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x11, strlen: 1 }, length: 32, want: 'truncated' },
    { name: 'test-prefix: string length 100 in a 60-byte padded frame', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x12, strlen: 100 }, length: 60, want: 'truncated' },
    { name: 'force set: 1025 bytes', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x14, strlen: 1025, text: Buffer.alloc(1025, 0x62) }, length: 32 + 1025, want: 'too-long' },
    { name: 'set: 0xFFFF', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x13, strlen: 0xffff }, length: 60, want: 'too-long' },
    { name: 'reply to a read (not a request) is parsed by its length', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x10, strlen: 10 }, length: 40, isRequest: false, want: 'truncated' },
    { name: 'reply with 2000-byte string', raw: { bufcnt: 0, firmware: 0, sectors: 0, verCmd: 0x10, strlen: 2000 }, length: 60, isRequest: false, want: 'too-long' },
  ]
  for (const c of cases) {
    const buf = rawFrame(c.raw, c.length)
    t.equal(decodeConfig(buf, 0, c.length, c.isRequest ?? true), c.want, c.name)
  }
  t.end()
})

t.test('decodeConfig on a reply keeps the string of a read', t => {
  const buf = rawFrame({ bufcnt: 64, firmware: 0x4019, sectors: 2, verCmd: 0x10, strlen: 4, text: Buffer.from('conf') }, 60)
  t.same(decodeConfig(buf, 0, 60, false), {
    bufferCount: 64, firmwareVersion: 0x4019, sectorsPerCommand: 2, version: 1, ccmd: 0, config: Buffer.from('conf'),
  })
  t.end()
})

t.test('encodeConfig: layout, length, round trip', t => {
  const cases: Array<Omit<ConfigQuery, 'version'> & { version?: number }> = [
    { bufferCount: 64, firmwareVersion: 1, sectorsPerCommand: 2, ccmd: 0, config: Buffer.alloc(0) },
    { bufferCount: 0x1234, firmwareVersion: 0x5678, sectorsPerCommand: 17, ccmd: 1, config: Buffer.from('my config') },
    { bufferCount: 2, firmwareVersion: 0, sectorsPerCommand: 0, ccmd: 4, config: Buffer.alloc(1024, 0x7a) },
    { bufferCount: 0xffff, firmwareVersion: 0xffff, sectorsPerCommand: 0xff, ccmd: 3, version: 1, config: Buffer.from([0, 1, 2]) },
  ]
  for (const c of cases) {
    const buf = Buffer.alloc(4 + 32 + 1024 + 8, 0xee)
    const length = encodeConfig(buf, 4, c)
    t.equal(length, 32 + c.config.length, 'frame length = 32 + string length')
    const f = buf.subarray(4)
    t.equal(f.readUInt16BE(24), c.bufferCount, 'buffer count BE at 24')
    t.equal(f.readUInt16BE(26), c.firmwareVersion, 'firmware BE at 26')
    t.equal(f[28], c.sectorsPerCommand, 'sectors at 28')
    t.equal(f[29], 0x10 | c.ccmd, 'version 1 << 4 | ccmd at 29')
    t.equal(f.readUInt16BE(30), c.config.length, 'string length BE at 30')
    t.same(f.subarray(32, 32 + c.config.length), c.config, 'string at 32')
    t.equal(f[32 + c.config.length], 0xee, 'nothing written after the string')
    t.same([...buf.subarray(0, 4)], [0xee, 0xee, 0xee, 0xee], 'nothing written before base')
    t.same(decodeConfig(buf, 4, length, false), { ...c, version: 1 }, 'round trip as a reply')
    if (c.ccmd !== 0) t.same(decodeConfig(buf, 4, length, true), { ...c, version: 1 }, 'round trip as a request')
  }
  t.throws(() => encodeConfig(Buffer.alloc(2000), 0, { bufferCount: 0, firmwareVersion: 0, sectorsPerCommand: 0, ccmd: 0, config: Buffer.alloc(1025) }), RangeError, '1025-byte string refused')
  t.end()
})
