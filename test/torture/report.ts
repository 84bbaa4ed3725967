/** The table `make torture` prints (pure, so it is unit-tested). */
import { passed, type CheckResult } from './check'

export interface Row {
  name: string
  result: CheckResult
  seconds: number
}

function pad (s: string, n: number): string {
  return s + ' '.repeat(Math.max(0, n - s.length))
}

/** Wraps text at spaces to lines of at most `width` characters (longer words stay whole). */
export function wrap (text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line.length > 0 ? `${line} ${word}` : word
    }
  }
  lines.push(line)
  return lines
}

/**
 * One row per check: class | tried | found | result | time. The "tried" column wraps so
 * the table stays readable in a terminal.
 */
export function formatTable (rows: Row[], triedWidth = 64): string {
  const header = ['class', 'tried', 'found', 'result', 'time']
  const nameWidth = Math.max(header[0].length, ...rows.map(r => r.name.length))
  const foundWidth = Math.max(header[2].length, ...rows.map(r => String(r.result.found).length))
  const cells = rows.map(r => ({
    name: r.name,
    tried: wrap(r.result.tried, triedWidth),
    found: String(r.result.found),
    result: passed(r.result) ? 'ok' : 'FAIL',
    time: `${r.seconds.toFixed(1)}s`,
  }))
  const triedCol = Math.min(triedWidth, Math.max(header[1].length, ...cells.flatMap(c => c.tried.map(l => l.length))))
  const line = (a: string, b: string, c: string, d: string, e: string): string =>
    `| ${pad(a, nameWidth)} | ${pad(b, triedCol)} | ${pad(c, foundWidth)} | ${pad(d, 6)} | ${e}`
  const rule = `|${'-'.repeat(nameWidth + 2)}|${'-'.repeat(triedCol + 2)}|${'-'.repeat(foundWidth + 2)}|--------|------`
  const out = [line(header[0], header[1], header[2], header[3], header[4]), rule]
  for (const c of cells) {
    c.tried.forEach((t, i) => {
      out.push(i === 0 ? line(c.name, t, c.found, c.result, c.time) : line('', t, '', '', ''))
    })
  }
  return out.join('\n')
}

/** Failures and notes under the table, per row. */
export function formatDetails (rows: Row[]): string {
  const out: string[] = []
  for (const r of rows) {
    if (r.result.failures.length === 0 && r.result.notes.length === 0) continue
    out.push(`${r.name}:`)
    for (const f of r.result.failures) out.push(`  FAIL ${f}`)
    for (const n of r.result.notes) out.push(`  note ${n}`)
  }
  return out.join('\n')
}
