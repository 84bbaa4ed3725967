/**
 * OrderedScheduler: requests whose byte ranges overlap, with at least one a write, run in
 * arrival order; reads run together; a flush waits for every earlier write and nothing
 * waits for a flush.
 */
import t from 'tap'
import { IoKind, OrderedScheduler, type ScheduledIo } from '../../src/store/ordering'
import { prng } from '../helpers/prng'

interface Io extends ScheduledIo {
  name: string
}

const R = IoKind.Read
const W = IoKind.Write
const F = IoKind.Flush

function io (name: string, kind: IoKind, offset = 0, length = 0): Io {
  return { name, kind, offset, length, blockers: 0 }
}

/** A scheduler that records start order. */
function harness (): { s: OrderedScheduler<Io>, started: string[], byName: Map<string, Io>, submit: (i: Io) => void, done: (name: string) => void } {
  const started: string[] = []
  const byName = new Map<string, Io>()
  const s = new OrderedScheduler<Io>(i => { started.push(i.name) })
  return {
    s,
    started,
    byName,
    submit: i => { byName.set(i.name, i); s.submit(i) },
    done: name => {
      const i = byName.get(name)
      if (i === undefined) throw new Error(`no ${name}`)
      s.complete(i)
    },
  }
}

type Step = ['submit', Io, string[]] | ['complete', string, string[]]

/** Each step lists the requests that must have started as a result of it, in order. */
function run (t: tap.Test, name: string, steps: Step[]): void {
  const h = harness()
  for (const [op, arg, want] of steps) {
    const before = h.started.length
    let label: string
    if (op === 'submit') {
      h.submit(arg)
      label = `submit ${arg.name}`
    } else {
      h.done(arg)
      label = `complete ${arg}`
    }
    t.same(h.started.slice(before), want, `${name}: ${label} starts [${want.join(', ')}]`)
  }
}

const S = 512

t.test('write after write', t => {
  run(t, 'overlapping writes serialize', [
    ['submit', io('w1', W, 0, 2 * S), ['w1']],
    ['submit', io('w2', W, S, 2 * S), []],
    ['complete', 'w1', ['w2']],
    ['complete', 'w2', []],
  ])
  run(t, 'identical retransmitted write waits', [
    ['submit', io('w1', W, 8 * S, S), ['w1']],
    ['submit', io('w2', W, 8 * S, S), []],
    ['complete', 'w1', ['w2']],
  ])
  run(t, 'disjoint writes run concurrently', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, S, S), ['w2']],
    ['submit', io('w3', W, 10 * S, 2 * S), ['w3']],
  ])
  run(t, 'adjacent ranges do not overlap', [
    ['submit', io('w1', W, S, S), ['w1']],
    ['submit', io('w2', W, 0, S), ['w2']],
    ['submit', io('w3', W, 2 * S, S), ['w3']],
  ])
  run(t, 'one byte of overlap is enough', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, S - 1, S), []],
    ['complete', 'w1', ['w2']],
  ])
  run(t, 'a write containing another', [
    ['submit', io('w1', W, 2 * S, S), ['w1']],
    ['submit', io('w2', W, 0, 8 * S), []],
    ['complete', 'w1', ['w2']],
  ])
  t.end()
})

t.test('reads', t => {
  run(t, 'overlapping reads run concurrently', [
    ['submit', io('r1', R, 0, 2 * S), ['r1']],
    ['submit', io('r2', R, 0, 2 * S), ['r2']],
    ['submit', io('r3', R, S, S), ['r3']],
  ])
  run(t, 'read overlapping a pending write waits for it', [
    ['submit', io('w1', W, 0, 2 * S), ['w1']],
    ['submit', io('r2', R, S, S), []],
    ['submit', io('r3', R, 4 * S, S), ['r3']],
    ['complete', 'r3', []],
    ['complete', 'w1', ['r2']],
  ])
  run(t, 'write overlapping a running read waits for it', [
    ['submit', io('r1', R, 0, 2 * S), ['r1']],
    ['submit', io('w2', W, S, 2 * S), []],
    ['complete', 'r1', ['w2']],
  ])
  run(t, 'write waits for every overlapping earlier read', [
    ['submit', io('r1', R, 0, S), ['r1']],
    ['submit', io('r2', R, S, S), ['r2']],
    ['submit', io('w3', W, 0, 2 * S), []],
    ['complete', 'r2', []],
    ['complete', 'r1', ['w3']],
  ])
  run(t, 'two reads behind one write both start when it completes', [
    ['submit', io('w1', W, 0, 2 * S), ['w1']],
    ['submit', io('r2', R, 0, S), []],
    ['submit', io('r3', R, S, S), []],
    ['complete', 'w1', ['r2', 'r3']],
  ])
  t.end()
})

t.test('flush', t => {
  run(t, 'flush with nothing outstanding starts at once', [
    ['submit', io('f1', F), ['f1']],
  ])
  run(t, 'flush waits for every earlier write, wherever it is', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, 1000 * S, S), ['w2']],
    ['submit', io('f3', F), []],
    ['complete', 'w2', []],
    ['complete', 'w1', ['f3']],
  ])
  run(t, 'flush does not wait for reads', [
    ['submit', io('r1', R, 0, S), ['r1']],
    ['submit', io('f2', F), ['f2']],
  ])
  run(t, 'flush waits for earlier writes only, not later ones', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('f2', F), []],
    ['submit', io('w3', W, 4 * S, S), ['w3']],
    ['complete', 'w1', ['f2']],
  ])
  run(t, 'nothing waits for a flush', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('f2', F), []],
    ['submit', io('r3', R, 2 * S, S), ['r3']],
    ['submit', io('w4', W, 3 * S, S), ['w4']],
    ['submit', io('f5', F), []],
    ['complete', 'w4', []],
    ['complete', 'w1', ['f2', 'f5']],
  ])
  run(t, 'flush waits for a write that is itself still waiting', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, 0, S), []],
    ['submit', io('f3', F), []],
    ['complete', 'w1', ['w2']],
    ['complete', 'w2', ['f3']],
  ])
  run(t, 'two flushes in a row do not wait for each other', [
    ['submit', io('f1', F), ['f1']],
    ['submit', io('f2', F), ['f2']],
  ])
  t.end()
})

t.test('completion order releases the right requests', t => {
  run(t, 'a chain of three overlapping writes', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, 0, S), []],
    ['submit', io('w3', W, 0, S), []],
    ['complete', 'w1', ['w2']],
    ['complete', 'w2', ['w3']],
    ['complete', 'w3', []],
  ])
  run(t, 'a write spanning two: waits for both, in any completion order', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, 2 * S, S), ['w2']],
    ['submit', io('w3', W, 0, 3 * S), []],
    ['complete', 'w2', []],
    ['complete', 'w1', ['w3']],
  ])
  run(t, 'completing one write releases only what conflicts with it', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, 4 * S, S), ['w2']],
    ['submit', io('r3', R, 0, S), []],
    ['submit', io('r4', R, 4 * S, S), []],
    ['complete', 'w2', ['r4']],
    ['complete', 'w1', ['r3']],
  ])
  run(t, 'arrival order is kept through a waiting request', [
    // r2 waits for w1; w3 does not touch w1 but overlaps r2, so it must wait for r2.
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('r2', R, 0, 2 * S), []],
    ['submit', io('w3', W, S, S), []],
    ['complete', 'w1', ['r2']],
    ['complete', 'r2', ['w3']],
  ])
  run(t, 'a later read does not jump an earlier waiting write', [
    ['submit', io('w1', W, 0, S), ['w1']],
    ['submit', io('w2', W, 0, 2 * S), []],
    ['submit', io('r3', R, S, S), []],
    ['complete', 'w1', ['w2']],
    ['complete', 'w2', ['r3']],
  ])
  run(t, 'released requests start in arrival order', [
    ['submit', io('w1', W, 0, 4 * S), ['w1']],
    ['submit', io('r2', R, 3 * S, S), []],
    ['submit', io('r3', R, 0, S), []],
    ['submit', io('w4', W, S, S), []],
    ['complete', 'w1', ['r2', 'r3', 'w4']],
  ])
  t.end()
})

t.test('outstanding count and bookkeeping', t => {
  const h = harness()
  t.equal(h.s.outstanding, 0)
  h.submit(io('w1', W, 0, S))
  h.submit(io('w2', W, 0, S))
  h.submit(io('r3', R, 8 * S, S))
  t.equal(h.s.outstanding, 3, 'running and waiting both count')
  t.equal(h.byName.get('w2')?.blockers, 1, 'w2 is blocked by one request')
  h.done('w1')
  t.equal(h.s.outstanding, 2)
  t.equal(h.byName.get('w2')?.blockers, 0, 'and no longer')
  h.done('w2')
  h.done('r3')
  t.equal(h.s.outstanding, 0)
  t.throws(() => h.done('w1'), 'completing twice throws')
  t.throws(() => h.s.complete(io('x', R, 0, S)), 'completing an unknown request throws')
  t.end()
})

t.test('a start callback may complete synchronously (re-entry)', t => {
  const started: string[] = []
  const syncDone = new Set(['w2', 'r3'])
  const s: OrderedScheduler<Io> = new OrderedScheduler<Io>(i => {
    started.push(i.name)
    if (syncDone.has(i.name)) s.complete(i)
  })
  const w1 = io('w1', W, 0, S)
  s.submit(w1)
  s.submit(io('w2', W, 0, S)) // waits for w1, completes as soon as it starts
  s.submit(io('r3', R, 0, S)) // waits for w1 and w2, completes as soon as it starts
  s.submit(io('w4', W, 0, S)) // waits for all three
  t.same(started, ['w1'])
  s.complete(w1)
  t.same(started, ['w1', 'w2', 'r3', 'w4'], 'each started exactly once, in order')
  t.equal(s.outstanding, 1, 'only w4 remains')
  const f = new OrderedScheduler<Io>(i => { started.push(i.name); if (i.name === 'sync') f.complete(i) })
  f.submit(io('sync', W, 0, S))
  t.equal(f.outstanding, 0, 'a request completed inside its own start is gone')
  f.submit(io('next', W, 0, S))
  t.equal(started[started.length - 1], 'next', 'and does not block the next')
  t.end()
})


/** The rule, restated independently of the implementation. */
function mustWait (earlier: Io, later: Io): boolean {
  if (later.kind === F) return earlier.kind === W
  if (earlier.kind === F) return false
  if (earlier.kind === R && later.kind === R) return false
  const overlap = Math.max(earlier.offset, later.offset) < Math.min(earlier.offset + earlier.length, later.offset + later.length)
  return overlap
}

t.test('random workloads agree with the rule', t => {
  for (const seed of [1, 2, 3, 42, 1234, 99999]) {
    const rand = prng(seed)
    const started = new Set<Io>()
    const startOrder: Io[] = []
    let problems = 0
    const s = new OrderedScheduler<Io>(i => {
      if (started.has(i)) problems++
      started.add(i)
      startOrder.push(i)
    })
    const outstanding: Io[] = []
    let n = 0
    for (let step = 0; step < 2000; step++) {
      if (outstanding.length === 0 || rand() < 0.55) {
        const r = rand()
        const kind = r < 0.45 ? R : r < 0.95 ? W : F
        const i = kind === F ? io(`f${n++}`, F) : io(`x${n++}`, kind, Math.floor(rand() * 32) * S, (1 + Math.floor(rand() * 4)) * S)
        s.submit(i)
        outstanding.push(i)
      } else {
        const running = outstanding.filter(i => started.has(i))
        if (running.length === 0) {
          problems++
          t.fail(`seed ${seed} step ${step}: requests outstanding but none running (deadlock)`)
          break
        }
        const victim = running[Math.floor(rand() * running.length)]
        s.complete(victim)
        outstanding.splice(outstanding.indexOf(victim), 1)
      }
      // Started ⇔ no earlier outstanding request it must wait for.
      for (let k = 0; k < outstanding.length; k++) {
        const i = outstanding[k]
        const blocked = outstanding.slice(0, k).some(e => mustWait(e, i))
        if (blocked === started.has(i)) {
          problems++
          if (problems < 5) t.fail(`seed ${seed} step ${step}: ${i.name} ${blocked ? 'started while blocked' : 'not started though free'}`)
        }
      }
      if (s.outstanding !== outstanding.length) problems++
    }
    t.equal(problems, 0, `seed ${seed}: ${startOrder.length} starts, no violations`)
  }
  t.end()
})
