/**
 * Mac Mask List (r11 §3.3): 4 bytes at 24 — reserved, mcmd, merror, dir count — then
 * 8-byte directives (reserved, dcmd, 6-byte MAC). The count field decides how many are read.
 */
import t from 'tap'
import { DIRECTIVE_LENGTH, MACMASK_HEADER_LENGTH, decodeMacMask, encodeMacMask, type MacMaskMessage } from '../../src/aoe/macmask'

interface RawMask {
  mcmd: number
  merror: number
  count: number
  directives: Array<{ dcmd: number, mac: number[], reserved?: number }>
}

function rawFrame (m: RawMask, length: number, base = 0, fill = 0): Buffer {
  const need = 28 + m.directives.length * 8
  const buf = Buffer.alloc(base + Math.max(length, need), fill)
  buf.writeUInt16BE(0x88a2, base + 12)
  buf[base + 14] = 0x10
  buf[base + 19] = 2
  buf[base + 24] = 0
  buf[base + 25] = m.mcmd
  buf[base + 26] = m.merror
  buf[base + 27] = m.count
  m.directives.forEach((d, i) => {
    const p = base + 28 + i * 8
    buf[p] = d.reserved ?? 0
    buf[p + 1] = d.dcmd
    for (let j = 0; j < 6; j++) buf[p + 2 + j] = d.mac[j]
  })
  return buf
}

const macA = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]
const macB = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]
const macF = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
const A = 0x001122334455
const B = 0x020000000001
const F = 2 ** 48 - 1

t.test('layout constants', t => {
  t.equal(MACMASK_HEADER_LENGTH, 28)
  t.equal(DIRECTIVE_LENGTH, 8)
  t.end()
})

t.test('decodeMacMask reads as many directives as the count says', t => {
  const cases: Array<{ name: string, raw: RawMask, lengths: number[], want: MacMaskMessage }> = [
    { name: 'read, 28 bytes unpadded', raw: { mcmd: 0, merror: 0, count: 0, directives: [] }, lengths: [28, 60], want: { mcmd: 0, merror: 0, directives: [] } },
    {
      name: 'edit with one add',
      raw: { mcmd: 1, merror: 0, count: 1, directives: [{ dcmd: 1, mac: macA }] },
      lengths: [36, 60],
      want: { mcmd: 1, merror: 0, directives: [{ dcmd: 1, mac: A }] },
    },
    {
      name: 'edit: add, delete, none, bad dcmd 7; reserved byte ignored',
      raw: { mcmd: 1, merror: 0, count: 4, directives: [{ dcmd: 1, mac: macA }, { dcmd: 2, mac: macB, reserved: 0x99 }, { dcmd: 0, mac: macF }, { dcmd: 7, mac: macA }] },
      lengths: [60, 100],
      want: { mcmd: 1, merror: 0, directives: [{ dcmd: 1, mac: A }, { dcmd: 2, mac: B }, { dcmd: 0, mac: F }, { dcmd: 7, mac: A }] },
    },
    {
      name: 'count 1 with a second directive present in the frame: only one read',
      raw: { mcmd: 1, merror: 0, count: 1, directives: [{ dcmd: 1, mac: macA }, { dcmd: 1, mac: macB }] },
      lengths: [44, 60],
      want: { mcmd: 1, merror: 0, directives: [{ dcmd: 1, mac: A }] },
    },
    {
      name: 'reply with merror 3 and count 0',
      raw: { mcmd: 1, merror: 3, count: 0, directives: [{ dcmd: 1, mac: macA }] },
      lengths: [60],
      want: { mcmd: 1, merror: 3, directives: [] },
    },
  ]
  for (const c of cases) {
    for (const length of c.lengths) {
      for (const base of [0, 5]) {
        t.same(decodeMacMask(rawFrame(c.raw, length, base, 0xab), base, length), c.want, `${c.name} (${length} bytes at ${base})`)
      }
    }
  }
  t.end()
})

t.test('decodeMacMask: 255 directives', t => {
  const directives = Array.from({ length: 255 }, (_, i) => ({ dcmd: 1, mac: [2, 0, 0, 0, i >> 8, i & 0xff] }))
  const length = 28 + 255 * 8
  const got = decodeMacMask(rawFrame({ mcmd: 1, merror: 0, count: 255, directives }, length), 0, length)
  t.same(got, { mcmd: 1, merror: 0, directives: directives.map((_, i) => ({ dcmd: 1, mac: 0x020000000000 + i })) })
  t.equal(decodeMacMask(rawFrame({ mcmd: 1, merror: 0, count: 255, directives }, length), 0, length - 1), 'truncated', 'one byte short')
  t.end()
})

t.test('decodeMacMask rejects frames the count does not fit', t => {
  for (let length = 0; length < 28; length++) {
    t.equal(decodeMacMask(rawFrame({ mcmd: 0, merror: 0, count: 0, directives: [] }, 28), 0, length), 'truncated', `${length} bytes`)
  }
  const cases: Array<{ count: number, length: number }> = [
    { count: 1, length: 35 },
    { count: 2, length: 43 },
    { count: 4, length: 59 },
    { count: 5, length: 60 }, // padded frame holds 4 directives at most
    { count: 255, length: 60 },
    { count: 255, length: 1500 },
  ]
  for (const c of cases) {
    const directives = Array.from({ length: Math.min(c.count, Math.floor((c.length - 28) / 8)) }, () => ({ dcmd: 1, mac: macA }))
    t.equal(decodeMacMask(rawFrame({ mcmd: 1, merror: 0, count: c.count, directives }, c.length), 0, c.length), 'truncated', `count ${c.count} in ${c.length} bytes`)
  }
  t.end()
})

t.test('encodeMacMask: layout, length and round trip', t => {
  const cases: Array<{ m: MacMaskMessage, count?: number, wantCount: number }> = [
    { m: { mcmd: 0, merror: 0, directives: [] }, wantCount: 0 },
    { m: { mcmd: 0, merror: 0, directives: [{ dcmd: 1, mac: A }, { dcmd: 1, mac: F }] }, wantCount: 2 },
    { m: { mcmd: 1, merror: 2, directives: [] }, count: 3, wantCount: 3 },
    { m: { mcmd: 1, merror: 3, directives: [] }, count: 0, wantCount: 0 },
    { m: { mcmd: 1, merror: 0, directives: [{ dcmd: 2, mac: B }] }, wantCount: 1 },
  ]
  for (const c of cases) {
    const buf = Buffer.alloc(3 + 28 + 8 * c.m.directives.length + 4, 0xee)
    const length = encodeMacMask(buf, 3, c.m, c.count)
    t.equal(length, 28 + 8 * c.m.directives.length, 'frame length')
    const f = buf.subarray(3)
    t.same([f[24], f[25], f[26], f[27]], [0, c.m.mcmd, c.m.merror, c.wantCount], 'reserved, mcmd, merror, count')
    c.m.directives.forEach((d, i) => {
      const p = 28 + i * 8
      t.equal(f[p], 0, `directive ${i} reserved 0`)
      t.equal(f[p + 1], d.dcmd, `directive ${i} dcmd`)
      t.equal(f.readUIntBE(p + 2, 6), d.mac, `directive ${i} MAC`)
    })
    t.equal(buf[3 + length], 0xee, 'nothing written past the list')
    t.equal(buf[2], 0xee, 'nothing written before base')
    if (c.count === undefined) t.same(decodeMacMask(buf, 3, length), c.m, 'round trip')
  }
  t.end()
})
