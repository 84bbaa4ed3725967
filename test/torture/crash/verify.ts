/**
 * What a file may hold after the daemon was killed under write load (pure). Writes are
 * acknowledged once they are in the page cache, which outlives the process, and
 * overlapping writes are applied in arrival order (README); the frames arrived in the
 * order they were sent (one link, no retransmissions). So, sector by sector, with the
 * writes covering it in send order:
 * - if one of them was acknowledged, the sector holds the last acknowledged one, or one
 *   sent after it (unacknowledged, it may or may not have landed);
 * - if none was, it holds what it held before, or any of them;
 * - a sector no write covered holds what it held before;
 * and always the right sector of that write.
 */

export interface LoggedWrite {
  id: number
  lba: number
  count: number
  acked: boolean
}

export type SectorContent =
  | { kind: 'before' }
  | { kind: 'write', writeId: number, index: number }
  | { kind: 'other' }

export type Problem =
  | 'an acknowledged write is lost (the sector holds its old data)'
  | 'an acknowledged write is lost (the sector holds an older write)'
  | 'a sector holds data no write put there'
  | 'a sector holds a write that did not cover it'
  | 'a sector no write covered has changed'

export interface Violation {
  sector: number
  problem: Problem
  detail: string
}

export function verifyAfterCrash (log: readonly LoggedWrite[], sectors: number, content: (sector: number) => SectorContent): Violation[] {
  const byId = new Map<number, LoggedWrite>()
  // For each sector, the positions in `log` of the writes covering it.
  const covering: number[][] = Array.from({ length: sectors }, () => [])
  log.forEach((w, i) => {
    byId.set(w.id, w)
    for (let s = w.lba; s < w.lba + w.count && s < sectors; s++) covering[s].push(i)
  })
  const out: Violation[] = []
  for (let s = 0; s < sectors; s++) {
    const c = content(s)
    const writes = covering[s]
    let lastAcked = -1
    for (let k = writes.length - 1; k >= 0; k--) if (log[writes[k]].acked) { lastAcked = k; break }
    if (c.kind === 'other') {
      out.push({ sector: s, problem: 'a sector holds data no write put there', detail: `${writes.length} writes covered it` })
      continue
    }
    if (c.kind === 'before') {
      if (writes.length === 0 || lastAcked < 0) continue
      out.push({ sector: s, problem: 'an acknowledged write is lost (the sector holds its old data)', detail: `write ${log[writes[lastAcked]].id} was acknowledged` })
      continue
    }
    const w = byId.get(c.writeId)
    if (w === undefined || s < w.lba || s >= w.lba + w.count || c.index !== s - w.lba) {
      out.push({
        sector: s,
        problem: writes.length === 0 ? 'a sector no write covered has changed' : 'a sector holds a write that did not cover it',
        detail: `holds sector ${c.index} of write ${c.writeId}`,
      })
      continue
    }
    if (lastAcked < 0) continue
    const at = writes.findIndex(i => log[i].id === c.writeId)
    if (at < lastAcked) {
      out.push({ sector: s, problem: 'an acknowledged write is lost (the sector holds an older write)', detail: `holds write ${c.writeId}, write ${log[writes[lastAcked]].id} after it was acknowledged` })
    }
  }
  return out
}
