/**
 * The live counters shared with C (src/native/live-counters.ts): the names TypeScript
 * reads must be exactly those the addon exports in its layout, so renaming, dropping or
 * adding a counter on one side only fails here, without root or io_uring; and the view
 * reads the shared array live, by the addon's slots.
 */
import t from 'tap'
import util from 'node:util'
import { loadNative } from '../../src/native/addon'
import { liveCounters } from '../../src/native/live-counters'
import { SOCKET_COUNTER_NAMES } from '../../src/native/packet-socket'
import { URING_COUNTER_NAMES } from '../../src/native/uring'

const layout = loadNative().layout
const sides: Array<{ name: string, slots: Readonly<Record<string, number>>, names: readonly string[] }> = [
  { name: 'packet socket', slots: layout.packetSocket.counters, names: SOCKET_COUNTER_NAMES },
  { name: 'io_uring', slots: layout.uring.counters, names: URING_COUNTER_NAMES },
]

for (const side of sides) {
  t.test(`${side.name}: the counters read in TypeScript are the addon's, each in its own slot`, async t => {
    t.same([...side.names].sort(), Object.keys(side.slots).sort(), 'the same names on both sides')
    const slots = Object.values(side.slots).sort((a, b) => a - b)
    t.same(slots, slots.map((_, i) => i), 'slots 0..n-1, none shared')
    // What the wrapper builds at open: it must not throw over an array of the layout's size.
    const array = new Float64Array(slots.length)
    const view = liveCounters(array, side.slots, side.names)
    side.names.forEach((n, i) => { array[side.slots[n]] = 100 + i })
    t.same(side.names.map(n => (view as Record<string, number>)[n]), side.names.map((_, i) => 100 + i), 'each name reads its own slot')
  })
}

t.test('liveCounters: reads the array live, serializes by name, refuses a name the layout lacks', async t => {
  const array = new Float64Array(3)
  const slots = { a: 2, b: 0, c: 1 }
  const view = liveCounters(array, slots, ['a', 'b'])
  t.same([view.a, view.b], [0, 0])
  array[2] = 7
  array[0] = 9
  t.same([view.a, view.b], [7, 9], 'a later write to the array shows without a call')
  t.same(JSON.parse(JSON.stringify(view)), { a: 7, b: 9 }, 'JSON: only the names asked for')
  t.match(util.inspect(view), /a: 7/, 'inspect shows values, not getters')
  t.same(Object.keys(view), ['a', 'b'], 'enumerable by name')
  t.throws(() => liveCounters(array, slots as unknown as Record<'a' | 'gone', number>, ['a', 'gone']), { message: 'the native addon has no counter "gone"' })
  t.throws(() => liveCounters(array, { a: 3 }, ['a']), { message: /no counter "a"/ }, 'a slot past the array is refused too')
})
