/**
 * A reader of the Prometheus text exposition format, for checking values in tests:
 * `# TYPE` lines and samples, with label values unescaped.
 */

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  samples: Sample[]
  /** Metric family name → counter, gauge, histogram... */
  types: Map<string, string>
}

function parseValue (text: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN' || text === 'Nan') return NaN
  const n = Number(text)
  if (text === '' || Number.isNaN(n)) throw new Error(`not a sample value: "${text}"`)
  return n
}

/** Label values escape backslash, double quote and newline. */
function parseLabels (text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {}
  let i = 0
  while (i < text.length) {
    const m = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(text.slice(i))
    if (m === null) throw new Error(`bad labels in: ${line}`)
    i += m[0].length
    let value = ''
    for (;;) {
      const c = text[i++]
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`)
      if (c === '"') break
      if (c === '\\') {
        const e = text[i++]
        value += e === 'n' ? '\n' : e
      } else value += c
    }
    labels[m[1]] = value
    const rest = /^\s*,?/.exec(text.slice(i))
    i += rest === null ? 0 : rest[0].length
  }
  return labels
}

export function parseExposition (text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line)
      if (m !== null) types.set(m[1], m[2])
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \S+)?$/.exec(line)
    if (m === null) throw new Error(`not a sample line: ${line}`)
    samples.push({ name: m[1], labels: m[2] === undefined ? {} : parseLabels(m[2], line), value: parseValue(m[3]) })
  }
  return { samples, types }
}

/** The samples of `name` whose labels include `labels`. */
export function find (e: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return e.samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

/** The one value of `name` with `labels`; throws if there is none or more than one. */
export function valueOf (e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = find(e, name, labels)
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`)
  return found[0].value
}
