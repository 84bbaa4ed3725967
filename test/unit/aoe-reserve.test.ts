/**
 * Reserve/Release (r11 §3.4): 2 bytes at 24 — rcmd, nmacs — then nmacs 6-byte MACs.
 */
import t from 'tap'
import { RESERVE_HEADER_LENGTH, decodeReserve, encodeReserve, type ReserveMessage } from '../../src/aoe/reserve'

function rawFrame (rcmd: number, nmacs: number, macs: number[][], length: number, base = 0, fill = 0): Buffer {
  const buf = Buffer.alloc(base + Math.max(length, 26 + macs.length * 6), fill)
  buf.writeUInt16BE(0x88a2, base + 12)
  buf[base + 14] = 0x10
  buf[base + 19] = 3
  buf[base + 24] = rcmd
  buf[base + 25] = nmacs
  macs.forEach((m, i) => { for (let j = 0; j < 6; j++) buf[base + 26 + i * 6 + j] = m[j] })
  return buf
}

const macA = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]
const macB = [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54]
const A = 0x001122334455
const B = 0xfedcba987654

t.test('layout constant', t => {
  t.equal(RESERVE_HEADER_LENGTH, 26)
  t.end()
})

t.test('decodeReserve reads nmacs MACs', t => {
  const cases: Array<{ name: string, rcmd: number, nmacs: number, macs: number[][], lengths: number[], want: ReserveMessage }> = [
    { name: 'read, unpadded 26 bytes', rcmd: 0, nmacs: 0, macs: [], lengths: [26, 60], want: { rcmd: 0, macs: [] } },
    { name: 'set with nmacs 0 (release)', rcmd: 1, nmacs: 0, macs: [], lengths: [26, 60], want: { rcmd: 1, macs: [] } },
    { name: 'set one MAC', rcmd: 1, nmacs: 1, macs: [macA], lengths: [32, 60], want: { rcmd: 1, macs: [A] } },
    { name: 'force set two MACs', rcmd: 2, nmacs: 2, macs: [macA, macB], lengths: [38, 60], want: { rcmd: 2, macs: [A, B] } },
    { name: 'nmacs 1, padding holds more: only one read', rcmd: 1, nmacs: 1, macs: [macA, macB], lengths: [60], want: { rcmd: 1, macs: [A] } },
    { name: 'unknown rcmd passed through', rcmd: 9, nmacs: 0, macs: [], lengths: [60], want: { rcmd: 9, macs: [] } },
  ]
  for (const c of cases) {
    for (const length of c.lengths) {
      for (const base of [0, 11]) {
        t.same(decodeReserve(rawFrame(c.rcmd, c.nmacs, c.macs, length, base, 0x5c), base, length), c.want, `${c.name} (${length} bytes at ${base})`)
      }
    }
  }
  t.end()
})

t.test('decodeReserve rejects frames nmacs does not fit', t => {
  for (let length = 0; length < 26; length++) {
    t.equal(decodeReserve(rawFrame(0, 0, [], 26), 0, length), 'truncated', `${length} bytes`)
  }
  const cases = [
    { nmacs: 1, length: 31 },
    { nmacs: 2, length: 37 },
    { nmacs: 6, length: 60 }, // a padded 60-byte frame holds 5 MACs (26 + 30 = 56)
    { nmacs: 255, length: 1500 },
  ]
  for (const c of cases) {
    const macs = Array.from({ length: Math.floor((c.length - 26) / 6) }, () => macA)
    t.equal(decodeReserve(rawFrame(1, c.nmacs, macs, c.length), 0, c.length), 'truncated', `nmacs ${c.nmacs} in ${c.length} bytes`)
  }
  const five = Array.from({ length: 5 }, () => macB)
  t.same(decodeReserve(rawFrame(1, 5, five, 60), 0, 60), { rcmd: 1, macs: [B, B, B, B, B] }, '5 MACs fit in 60 bytes')
  t.end()
})

t.test('encodeReserve: layout, length and round trip', t => {
  const cases: ReserveMessage[] = [
    { rcmd: 0, macs: [] },
    { rcmd: 1, macs: [A] },
    { rcmd: 2, macs: [A, B, 2 ** 48 - 1, 0] },
    { rcmd: 1, macs: Array.from({ length: 255 }, (_, i) => 0x020000000000 + i) },
  ]
  for (const m of cases) {
    const buf = Buffer.alloc(2 + 26 + 6 * m.macs.length + 2, 0xee)
    const length = encodeReserve(buf, 2, m)
    t.equal(length, 26 + 6 * m.macs.length, `length for ${m.macs.length} MACs`)
    t.equal(buf[2 + 24], m.rcmd, 'rcmd at 24')
    t.equal(buf[2 + 25], m.macs.length, 'nmacs at 25')
    t.same(m.macs.map((_, i) => buf.readUIntBE(2 + 26 + i * 6, 6)), m.macs, 'MACs at 26, 6 bytes each')
    t.equal(buf[2 + length], 0xee, 'nothing written past the list')
    t.same(decodeReserve(buf, 2, length), m, 'round trip')
  }
  t.throws(() => encodeReserve(Buffer.alloc(2000), 0, { rcmd: 1, macs: new Array<number>(256).fill(1) }), RangeError, '256 MACs do not fit nmacs')
  t.end()
})
