/**
 * What a torture check is: one row of the table. Checks drive the real daemon over veth
 * only (black box); new rows (backing faults, second exporters, ...) implement
 * TortureCheck and are listed in registry.ts.
 */

export type Scale = 'full' | 'reduced'

export interface TortureOptions {
  /** The run's seed; each check derives its own from it (random.ts deriveSeed). */
  seed: number
  /** 'full' for `make torture`, 'reduced' for the copy inside `make test`. */
  scale: Scale
  /** Progress lines: printed by the runner, tap comments in the test. */
  log: (line: string) => void
}

export interface CheckResult {
  /** What was tried, with counts: the table's "tried" column. */
  tried: string
  /** How many units (frames, pairs, kills) were tried: a check that tried nothing has not passed. */
  count: number
  /** Failing units found (frames, pairs, sectors, ...): the table's "found" column. */
  found: number
  /** One line per kind of failure, with its count and a first example. */
  failures: string[]
  /** Observations that are not failures (counters, memory, which store path was confirmed). */
  notes: string[]
}

export interface TortureCheck {
  /** The row's name, e.g. "wire fuzz" or "ordering: mapped". */
  name: string
  /** Why the check cannot run here (beyond root and ip, which every check needs), or null. */
  unavailable?: () => string | null
  run (opts: TortureOptions): Promise<CheckResult>
}

export function passed (r: CheckResult): boolean {
  return r.found === 0 && r.failures.length === 0 && r.count > 0
}

/**
 * Failures grouped by kind: each kind counts its occurrences and keeps the first few
 * examples, so a defect hit ten thousand times is one line with its count.
 */
export class Findings {
  private readonly kinds = new Map<string, { count: number, examples: string[] }>()
  private readonly order: string[] = []

  constructor (private readonly examplesPerKind = 3) {}

  add (kind: string, example?: string, count = 1): void {
    let k = this.kinds.get(kind)
    if (k === undefined) {
      k = { count: 0, examples: [] }
      this.kinds.set(kind, k)
      this.order.push(kind)
    }
    k.count += count
    if (example !== undefined && k.examples.length < this.examplesPerKind) k.examples.push(example)
  }

  /** Adds one failure of this kind when `ok` is false; returns ok. */
  expect (ok: boolean, kind: string, example?: string): boolean {
    if (!ok) this.add(kind, example)
    return ok
  }

  get found (): number {
    let n = 0
    for (const k of this.kinds.values()) n += k.count
    return n
  }

  countOf (kind: string): number {
    return this.kinds.get(kind)?.count ?? 0
  }

  lines (): string[] {
    return this.order.map(kind => {
      const k = this.kinds.get(kind)!
      const ex = k.examples.length > 0 ? ` (e.g. ${k.examples.join('; ')})` : ''
      return `${k.count} × ${kind}${ex}`
    })
  }
}
