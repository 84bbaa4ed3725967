/** A horizontal bar chart of throughput ratios, as a self-contained SVG (no plotting dependency). */

export interface ChartRow {
  label: string
  /** ours / baseline; NaN when not measured */
  ours: number
  /** nullblade / baseline (the load generator's ceiling); NaN when not measured */
  reference: number
  goal: number
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/**
 * Log-scale x axis so 1.25× and 5× goals both read well; each bar starts at
 * 1× (parity) and runs right when faster, left when slower than the baseline.
 */
export function renderChart (rows: ChartRow[], title: string, oursMissing: boolean): string {
  const W = 900
  const left = 190
  const right = 40
  const top = 70
  const rowH = 34
  const H = top + rows.length * rowH + 70
  const values = rows.flatMap(r => [r.ours, r.reference, r.goal]).filter(v => Number.isFinite(v) && v > 0)
  const lo = Math.min(0.5, ...values.map(v => v / 1.1))
  const hi = Math.max(2, ...values.map(v => v * 1.1))
  const lmin = Math.log2(lo)
  const lmax = Math.log2(hi)
  const x = (v: number): number => left + (Math.log2(v) - lmin) / (lmax - lmin) * (W - left - right)
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="13">`)
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Throughput relative to vblade (log scale; higher is better)</text>`)
  parts.push(`<text x="${W / 2}" y="42" text-anchor="middle" font-size="11" fill="#555">${esc(title)}</text>`)
  // grid
  const ticks = [0.125, 0.25, 0.5, 1, 1.25, 2, 3, 4, 5, 8, 16, 32, 64, 100].filter(t => t >= lo && t <= hi)
  for (const t of ticks) {
    const xx = x(t).toFixed(1)
    parts.push(`<line x1="${xx}" y1="${top - 8}" x2="${xx}" y2="${top + rows.length * rowH}" stroke="${t === 1 ? '#333' : '#ddd'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`)
    parts.push(`<text x="${xx}" y="${top + rows.length * rowH + 16}" text-anchor="middle" font-size="11" fill="#444">${t}×</text>`)
  }
  rows.forEach((r, i) => {
    const y = top + i * rowH
    parts.push(`<text x="${left - 8}" y="${y + rowH / 2 + 4}" text-anchor="end">${esc(r.label)}</text>`)
    const bar = (v: number, yy: number, h: number, fill: string, text: boolean): void => {
      if (!Number.isFinite(v) || v <= 0) {
        if (text) parts.push(`<text x="${x(1) + 6}" y="${yy + h - 3}" font-size="11" fill="#999">not measured</text>`)
        return
      }
      const a = Math.min(x(1), x(v))
      const w = Math.max(1, Math.abs(x(v) - x(1)))
      parts.push(`<rect x="${a.toFixed(1)}" y="${yy}" width="${w.toFixed(1)}" height="${h}" fill="${fill}"/>`)
      if (text) {
        const tx = v >= 1 ? x(v) + 5 : x(v) - 5
        parts.push(`<text x="${tx.toFixed(1)}" y="${yy + h - 3}" font-size="11" text-anchor="${v >= 1 ? 'start' : 'end'}">${v.toFixed(2)}×</text>`)
      }
    }
    bar(r.reference, y + 4, 8, '#c9c9c9', false)
    bar(r.ours, y + 13, 14, r.ours >= r.goal ? '#2e7d32' : '#1565c0', !oursMissing || Number.isFinite(r.ours))
    const gx = x(r.goal).toFixed(1)
    parts.push(`<line x1="${gx}" y1="${y + 2}" x2="${gx}" y2="${y + rowH - 4}" stroke="#d32f2f" stroke-width="2" stroke-dasharray="3,2"/>`)
  })
  const ly = top + rows.length * rowH + 34
  parts.push(`<rect x="${left}" y="${ly}" width="14" height="10" fill="#1565c0"/><text x="${left + 20}" y="${ly + 9}" font-size="11">kvblade / vblade${oursMissing ? ' (kvblade not measured in this run)' : ''}</text>`)
  parts.push(`<rect x="${left + 290}" y="${ly}" width="14" height="10" fill="#c9c9c9"/><text x="${left + 310}" y="${ly + 9}" font-size="11">nullblade / vblade (no-disk C responder: generator ceiling)</text>`)
  parts.push(`<line x1="${left}" y1="${ly + 24}" x2="${left + 14}" y2="${ly + 24}" stroke="#d32f2f" stroke-width="2" stroke-dasharray="3,2"/><text x="${left + 20}" y="${ly + 28}" font-size="11">goal (1.25×; 5× vs vblade -d for the O_DIRECT row); green = goal met</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
