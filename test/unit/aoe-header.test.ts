/**
 * The Ethernet + AoE common header (AoE r11 §2): offsets and values written here by hand,
 * byte by byte, from the protocol layout — never with the encoder under test.
 */
import t from 'tap'
import {
  AOE_ETHERTYPE, AOE_VERSION, BROADCAST_MAC, BROADCAST_MAJOR, BROADCAST_MINOR, FLAG_ERROR, FLAG_RESPONSE,
  HEADER_LENGTH, MIN_FRAME_LENGTH, VENDOR_COMMAND_MIN,
} from '../../src/aoe/constants'
import { decodeHeader, emptyHeader, encodeHeader, encodeResponseHeader, type Header } from '../../src/aoe/header'
import { formatMac, macFromBuffer, parseMac, readMac, writeMac } from '../../src/aoe/mac'

interface RawHeader {
  dst: number[]
  src: number[]
  etherType?: [number, number]
  verFlags: number
  error: number
  major: [number, number]
  minor: number
  command: number
  tag: [number, number, number, number]
}

/** Lays out a header by the r11 table: dst 0, src 6, type 12, ver/flags 14, err 15, major 16, minor 18, cmd 19, tag 20. */
function rawFrame (h: RawHeader, length: number, base = 0, fill = 0): Buffer {
  const buf = Buffer.alloc(base + length, fill)
  const bytes = [
    ...h.dst, ...h.src, ...(h.etherType ?? [0x88, 0xa2]), h.verFlags, h.error, ...h.major, h.minor, h.command, ...h.tag,
  ]
  for (let i = 0; i < bytes.length && i < length; i++) buf[base + i] = bytes[i]
  return buf
}

const sample: RawHeader = {
  dst: [0x00, 0x11, 0x22, 0x33, 0x44, 0x55],
  src: [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee],
  verFlags: 0x10,
  error: 0,
  major: [0x01, 0x02],
  minor: 0x03,
  command: 0,
  tag: [0xde, 0xad, 0xbe, 0xef],
}

t.test('constants match AoE r11', t => {
  t.equal(AOE_ETHERTYPE, 0x88a2)
  t.equal(AOE_VERSION, 1)
  t.equal(HEADER_LENGTH, 14 + 10, 'Ethernet header + 10-byte AoE header')
  t.equal(MIN_FRAME_LENGTH, 60)
  t.equal(FLAG_RESPONSE, 0x08)
  t.equal(FLAG_ERROR, 0x04)
  t.equal(BROADCAST_MAJOR, 0xffff)
  t.equal(BROADCAST_MINOR, 0xff)
  t.equal(BROADCAST_MAC, 2 ** 48 - 1)
  t.equal(VENDOR_COMMAND_MIN, 0xf0)
  t.end()
})

t.test('decodeHeader reads every field at its r11 offset', t => {
  const cases: Array<{ name: string, raw: RawHeader, want: Header, length?: number, base?: number }> = [
    {
      name: 'plain ATA request',
      raw: sample,
      want: { dst: 0x001122334455, src: 0x02aabbccddee, version: 1, flags: 0, error: 0, major: 0x0102, minor: 3, command: 0, tag: 0xdeadbeef },
    },
    {
      name: 'broadcast address, Query Config',
      raw: { ...sample, dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], major: [0xff, 0xff], minor: 0xff, command: 1, tag: [0, 0, 0, 1] },
      want: { dst: BROADCAST_MAC, src: 0x02aabbccddee, version: 1, flags: 0, error: 0, major: 0xffff, minor: 0xff, command: 1, tag: 1 },
    },
    {
      name: 'response with error flag and error code 6',
      raw: { ...sample, verFlags: 0x1c, error: 6, command: 3 },
      want: { dst: 0x001122334455, src: 0x02aabbccddee, version: 1, flags: 0x0c, error: 6, major: 0x0102, minor: 3, command: 3, tag: 0xdeadbeef },
    },
    {
      name: 'unsupported version 2, vendor command, user-space tag (bit 31)',
      raw: { ...sample, verFlags: 0x20, command: 0xf3, tag: [0x80, 0x00, 0x00, 0x00] },
      want: { dst: 0x001122334455, src: 0x02aabbccddee, version: 2, flags: 0, error: 0, major: 0x0102, minor: 3, command: 0xf3, tag: 0x80000000 },
    },
    {
      name: 'all-ones tag, version 15 + all flag bits',
      raw: { ...sample, verFlags: 0xff, tag: [0xff, 0xff, 0xff, 0xff] },
      want: { dst: 0x001122334455, src: 0x02aabbccddee, version: 15, flags: 15, error: 0, major: 0x0102, minor: 3, command: 0, tag: 0xffffffff },
    },
    {
      name: 'header at a non-zero base inside a larger buffer',
      raw: { ...sample, major: [0xab, 0xcd], minor: 0xfe },
      base: 17,
      want: { dst: 0x001122334455, src: 0x02aabbccddee, version: 1, flags: 0, error: 0, major: 0xabcd, minor: 0xfe, command: 0, tag: 0xdeadbeef },
    },
  ]
  for (const c of cases) {
    for (const length of [HEADER_LENGTH, 32, 36, MIN_FRAME_LENGTH, 1514]) {
      const base = c.base ?? 0
      const buf = rawFrame(c.raw, length, base, 0x5a)
      const out = emptyHeader()
      t.equal(decodeHeader(buf, base, length, out), true, `${c.name}, ${length} bytes: accepted`)
      t.same(out, c.want, `${c.name}, ${length} bytes: fields`)
    }
  }
  t.end()
})

t.test('decodeHeader rejects frames shorter than 24 bytes and other EtherTypes', t => {
  for (let length = 0; length < HEADER_LENGTH; length++) {
    const buf = rawFrame(sample, HEADER_LENGTH)
    const out = emptyHeader()
    t.equal(decodeHeader(buf, 0, length, out), false, `${length} bytes rejected`)
  }
  for (const type of [[0x08, 0x00], [0x86, 0xdd], [0xa2, 0x88], [0x88, 0xa3], [0, 0]] as Array<[number, number]>) {
    const buf = rawFrame({ ...sample, etherType: type }, MIN_FRAME_LENGTH)
    t.equal(decodeHeader(buf, 0, MIN_FRAME_LENGTH, emptyHeader()), false, `EtherType ${type.map(b => b.toString(16)).join('')} rejected`)
  }
  t.end()
})

t.test('decodeHeader reuses its output object', t => {
  const out = emptyHeader()
  t.ok(decodeHeader(rawFrame(sample, 60), 0, 60, out))
  t.ok(decodeHeader(rawFrame({ ...sample, minor: 9, tag: [0, 0, 0, 7] }, 60), 0, 60, out))
  t.equal(out.minor, 9)
  t.equal(out.tag, 7)
  t.end()
})

t.test('encodeHeader writes the r11 layout and round-trips', t => {
  const cases: Header[] = [
    { dst: BROADCAST_MAC, src: 0x020000000001, version: 1, flags: 0, error: 0, major: 0xffff, minor: 0xff, command: 1, tag: 0 },
    { dst: 0x001122334455, src: 0x665544332211, version: 1, flags: FLAG_RESPONSE | FLAG_ERROR, error: 2, major: 7, minor: 0, command: 2, tag: 0x01020304 },
    { dst: 0, src: 0, version: 1, flags: FLAG_RESPONSE, error: 0, major: 0, minor: 0, command: 0, tag: 0xffffffff },
    { dst: 1, src: 2 ** 48 - 2, version: 1, flags: 0, error: 0, major: 0xfffe, minor: 0xfe, command: 3, tag: 0x80000001 },
  ]
  for (const h of cases) {
    const buf = Buffer.alloc(64, 0xee)
    encodeHeader(buf, 4, h)
    const f = buf.subarray(4)
    t.equal(f.readUIntBE(0, 6), h.dst, 'dst at 0')
    t.equal(f.readUIntBE(6, 6), h.src, 'src at 6')
    t.same([f[12], f[13]], [0x88, 0xa2], 'EtherType 0x88A2 at 12, big-endian')
    t.equal(f[14], (h.version << 4) | h.flags, 'version high nibble, flags low nibble')
    t.equal(f[15], h.error, 'error at 15')
    t.same([f[16], f[17]], [h.major >> 8, h.major & 0xff], 'major big-endian at 16')
    t.equal(f[18], h.minor, 'minor at 18')
    t.equal(f[19], h.command, 'command at 19')
    t.same([...f.subarray(20, 24)], [h.tag >>> 24, (h.tag >>> 16) & 0xff, (h.tag >>> 8) & 0xff, h.tag & 0xff], 'tag at 20')
    t.same([...buf.subarray(0, 4)], [0xee, 0xee, 0xee, 0xee], 'nothing written before base')
    t.equal(buf[4 + 24], 0xee, 'nothing written past the header')
    const out = emptyHeader()
    t.ok(decodeHeader(buf, 4, 60, out))
    t.same(out, h, 'round trip')
  }
  t.end()
})

t.test('encodeResponseHeader answers the sender from our MAC with our address and the tag byte for byte', t => {
  const cases: Array<{ name: string, raw: RawHeader, ourMac: number, major: number, minor: number, error?: number, verFlags: number }> = [
    { name: 'unicast ATA, success', raw: sample, ourMac: 0x0a0b0c0d0e0f, major: 0x0102, minor: 3, verFlags: 0x18 },
    {
      name: 'broadcast config query answered with the real address',
      raw: { ...sample, dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], major: [0xff, 0xff], minor: 0xff, command: 1, tag: [0x12, 0x34, 0x56, 0x78] },
      ourMac: 0x0a0b0c0d0e0f, major: 42, minor: 7, verFlags: 0x18,
    },
    { name: 'error 1, unknown command', raw: { ...sample, command: 0x42 }, ourMac: 0x0a0b0c0d0e0f, major: 1, minor: 2, error: 1, verFlags: 0x1c },
    { name: 'error 6, reserved', raw: { ...sample, command: 0, tag: [0xff, 0xff, 0xff, 0xff] }, ourMac: 1, major: 0xfffe, minor: 0xfe, error: 6, verFlags: 0x1c },
    { name: 'tag with the high bit set (aoeping)', raw: { ...sample, tag: [0x80, 0x00, 0x00, 0xff] }, ourMac: 5, major: 0, minor: 0, verFlags: 0x18 },
  ]
  for (const c of cases) {
    const reqBuf = rawFrame(c.raw, 60)
    const req = emptyHeader()
    t.ok(decodeHeader(reqBuf, 0, 60, req))
    const reply = Buffer.alloc(60)
    encodeResponseHeader(reply, 0, req, c.ourMac, c.major, c.minor, c.error)
    t.same([...reply.subarray(0, 6)], c.raw.src, `${c.name}: dst is the request's source`)
    t.equal(reply.readUIntBE(6, 6), c.ourMac, `${c.name}: src is our MAC`)
    t.equal(reply.readUInt16BE(12), 0x88a2, `${c.name}: EtherType`)
    t.equal(reply[14], c.verFlags, `${c.name}: version 1, R set, E iff error`)
    t.equal(reply[15], c.error ?? 0, `${c.name}: error code`)
    t.equal(reply.readUInt16BE(16), c.major, `${c.name}: our major, not the broadcast`)
    t.equal(reply[18], c.minor, `${c.name}: our minor`)
    t.equal(reply[19], c.raw.command, `${c.name}: command echoed`)
    t.same([...reply.subarray(20, 24)], c.raw.tag, `${c.name}: tag copied byte for byte`)
  }
  t.end()
})

t.test('MACs as 48-bit numbers', t => {
  const cases: Array<{ bytes: number[], value: number, text: string }> = [
    { bytes: [0, 0, 0, 0, 0, 0], value: 0, text: '00:00:00:00:00:00' },
    { bytes: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], value: 2 ** 48 - 1, text: 'ff:ff:ff:ff:ff:ff' },
    { bytes: [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], value: 0x001122334455, text: '00:11:22:33:44:55' },
    { bytes: [0x02, 0x00, 0x00, 0x00, 0x00, 0x01], value: 2 * 2 ** 40 + 1, text: '02:00:00:00:00:01' },
    { bytes: [0x80, 0, 0, 0, 0, 0], value: 2 ** 47, text: '80:00:00:00:00:00' },
  ]
  for (const c of cases) {
    const buf = Buffer.from([0x99, ...c.bytes, 0x99])
    t.equal(readMac(buf, 1), c.value, `read ${c.text}`)
    t.equal(macFromBuffer(Buffer.from(c.bytes)), c.value, `macFromBuffer ${c.text}`)
    const out = Buffer.alloc(8, 0x99)
    writeMac(out, 1, c.value)
    t.same([...out], [0x99, ...c.bytes, 0x99], `write ${c.text}`)
    t.equal(formatMac(c.value), c.text, `format ${c.text}`)
    t.equal(parseMac(c.text), c.value, `parse ${c.text}`)
    t.equal(parseMac(c.text.toUpperCase()), c.value, `parse upper-case ${c.text}`)
    t.equal(parseMac(c.text.replace(/:/g, '-')), c.value, `parse dashed ${c.text}`)
    t.equal(parseMac(c.text.replace(/:/g, '')), c.value, `parse bare ${c.text}`)
  }
  for (const bad of ['', '00:11:22:33:44', '00:11:22:33:44:55:66', 'gg:11:22:33:44:55', '0:11:22:33:44:55', '00:11:22:33:44:5']) {
    t.throws(() => parseMac(bad), RangeError, `parseMac("${bad}") throws`)
  }
  for (const n of [0, 5, 7]) t.throws(() => macFromBuffer(Buffer.alloc(n)), RangeError, `${n}-byte MAC refused`)
  const six = Buffer.alloc(6)
  for (const at of [-1, 1, 0.5]) {
    t.throws(() => readMac(six, at), RangeError, `no MAC read at ${at} of 6 bytes`)
    t.throws(() => writeMac(six, at, 1), RangeError, `no MAC written at ${at} of 6 bytes`)
  }
  for (const mac of [-1, 2 ** 48, 1.5, NaN]) t.throws(() => writeMac(six, 0, mac), RangeError, `${mac} is not a MAC`)
  t.same([...six], [0, 0, 0, 0, 0, 0], 'nothing written by the refused calls')
  t.end()
})
