// The packet loop's memory helpers: page-aligned buffers and allocation-free copies.
import t from 'tap'
import { CopyBatch, alignedBuffer, copySmall } from '../../src/native/memory'
import { prng } from '../helpers/prng'

t.test('alignedBuffer gives zeroed, page-aligned memory', async t => {
  const b = alignedBuffer(3 * 4096 + 5)
  t.equal(b.length, 3 * 4096 + 5)
  t.ok(b.every(x => x === 0), 'zeroed')
  t.throws(() => alignedBuffer(0), RangeError)
})

t.test('copySmall copies exactly the range', async t => {
  const src = Buffer.from(Array.from({ length: 64 }, (_, i) => i + 1))
  const dst = Buffer.alloc(64)
  copySmall(dst, 10, src, 3, 36)
  t.same(dst.subarray(10, 46), src.subarray(3, 39))
  t.ok(dst.subarray(0, 10).every(x => x === 0) && dst.subarray(46).every(x => x === 0), 'nothing outside it touched')
})

t.test('CopyBatch performs every queued range at run() and only then', async t => {
  const rand = prng(7)
  const src = Buffer.alloc(64 * 1024)
  for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256)
  const dst = Buffer.alloc(64 * 1024)
  const batch = new CopyBatch(16)
  const ranges: Array<[number, number, number]> = []
  for (let j = 0; j < 16; j++) {
    const range: [number, number, number] = [j * 4096, Math.floor(rand() * 60000), 1 + Math.floor(rand() * 4000)]
    ranges.push(range)
    t.ok(batch.add(...range))
  }
  t.notOk(batch.add(0, 0, 1), 'a full batch refuses more')
  t.equal(batch.length, 16)
  t.ok(dst.every(x => x === 0), 'nothing copied before run()')
  batch.run(dst, src)
  t.equal(batch.length, 0, 'run() empties the batch')
  t.ok(ranges.every(([d, s, n]) => dst.subarray(d, d + n).equals(src.subarray(s, s + n))), 'every range copied')
  t.ok(ranges.every(([d, , n]) => dst.subarray(d + n, (d + 4096)).every(x => x === 0)), 'nothing beyond each range')
})

t.test('CopyBatch checks every range before copying any', async t => {
  const src = Buffer.alloc(100, 1)
  const dst = Buffer.alloc(100)
  const batch = new CopyBatch(4)
  batch.add(0, 0, 50)
  batch.add(60, 90, 20) // source range runs past the end
  t.throws(() => batch.run(dst, src), RangeError)
  t.ok(dst.every(x => x === 0), 'nothing copied')
  batch.add(90, 0, 20) // destination range runs past the end
  t.throws(() => batch.run(dst, src), RangeError)
  t.equal(batch.length, 0, 'a failed batch is dropped, not retried')
})
