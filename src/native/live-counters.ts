import type { IndexOf } from './addon'

/**
 * Counters the addon keeps in a shared Float64Array, read as plain properties:
 * reading one costs no call into C++. The slot of each name comes from the addon's
 * layout, so the C side is the only place that orders them.
 */
export type LiveCounters<K extends string> = { readonly [P in K]: number } & { toJSON (): Record<K, number> }

export function liveCounters<K extends string> (array: Float64Array, slots: IndexOf<K>, names: readonly K[]): LiveCounters<K> {
  const counters = {} as Record<string, unknown>
  for (const name of names) {
    const slot = slots[name]
    // A counter renamed or dropped on the C side must fail here, not read slot undefined.
    if (!Number.isInteger(slot) || slot < 0 || slot >= array.length) throw new Error(`the native addon has no counter "${name}"`)
    Object.defineProperty(counters, name, { get: () => array[slot], enumerable: true })
  }
  const toJSON = (): Record<K, number> => {
    const out = {} as Record<K, number>
    for (const name of names) out[name] = array[slots[name]]
    return out
  }
  Object.defineProperty(counters, 'toJSON', { value: toJSON })
  Object.defineProperty(counters, Symbol.for('nodejs.util.inspect.custom'), { value: toJSON })
  return counters as LiveCounters<K>
}
