/**
 * The rate-limited fault lines (src/engine/fault-log.ts): the first fault of a kind on a
 * target is logged at once, later ones are counted, and each interval gives one line
 * per target and kind that had more; a kind that stays quiet for an interval is
 * forgotten, so its next fault is logged at once again.
 */
import t from 'tap'
import { FaultLog, faultKind } from '../../src/engine/fault-log'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('faultKind: the operation and errno, or "short" for a short transfer', async t => {
  t.equal(faultKind('read', Object.assign(new Error('x'), { code: 'EIO' })), 'read EIO')
  t.equal(faultKind('write', Object.assign(new Error('x'), { code: 'ENOSPC' })), 'write ENOSPC')
  t.equal(faultKind('read', Object.assign(new Error('x'), { code: 'EIO', short: true })), 'read short')
  t.equal(faultKind('flush', new Error('x')), 'flush error', 'no code')
})

t.test('intervals driven by hand: counts per target and kind, one line each, nothing when quiet', async t => {
  const lines: string[] = []
  // An interval the test never reaches: tick() is called by hand.
  const log = new FaultLog(m => lines.push(m), 60_000)
  t.teardown(() => log.close())
  log.report('9.0@eth0', 'read EIO', 'at byte 4096')
  t.same(lines, ['9.0@eth0: read EIO: at byte 4096 (more of these are counted and logged every 60 s)'], 'the first at once, with its detail')
  for (let i = 0; i < 7; i++) log.report('9.0@eth0', 'read EIO', `at byte ${i}`)
  log.report('9.0@eth0', 'write ENOSPC', 'at byte 0')
  log.report('9.1@eth0', 'read EIO', 'at byte 512')
  log.report('9.1@eth0', 'read EIO', 'at byte 1024')
  t.equal(lines.length, 3, 'later ones of a kind are only counted; a new kind or target is logged at once')
  t.match(lines[1], /^9\.0@eth0: write ENOSPC: at byte 0 /)
  t.match(lines[2], /^9\.1@eth0: read EIO: at byte 512 /)

  lines.length = 0
  log.tick()
  t.same(lines.sort(), [
    '9.0@eth0: read EIO: 7 more in the last 60 s',
    '9.1@eth0: read EIO: 1 more in the last 60 s',
  ], 'one line per target and kind that had more; none for the one that did not')

  lines.length = 0
  log.report('9.0@eth0', 'read EIO', 'at byte 8192')
  t.same(lines, [], 'a kind that had more last interval is still counted')
  log.report('9.0@eth0', 'write ENOSPC', 'at byte 0')
  t.equal(lines.length, 1, 'one with none more was forgotten: its next fault is logged at once')
  t.match(lines[0], /^9\.0@eth0: write ENOSPC: at byte 0 \(more/)
  lines.length = 0
  log.tick()
  t.same(lines, ['9.0@eth0: read EIO: 1 more in the last 60 s'], 'each interval counts afresh')

  lines.length = 0
  log.tick()
  log.tick()
  t.same(lines, [], 'quiet intervals log nothing')
  log.report('9.0@eth0', 'read EIO', 'at byte 0')
  t.equal(lines.length, 1, 'after a quiet interval the next fault is logged at once again')
  t.match(lines[0], /^9\.0@eth0: read EIO: at byte 0 \(more/)
})

t.test('the interval timer: one summary line per interval, then silence, and a new first line', async t => {
  const INTERVAL = 40
  const lines: string[] = []
  const log = new FaultLog(m => lines.push(m), INTERVAL)
  t.teardown(() => log.close())
  log.report('9.0@eth0', 'read EIO', 'at byte 0')
  for (let i = 0; i < 4; i++) log.report('9.0@eth0', 'read EIO', 'again')
  log.report('9.0@eth0', 'write EIO', 'at byte 0')
  t.same(lines, [
    '9.0@eth0: read EIO: at byte 0 (more of these are counted and logged every 40 ms)',
    '9.0@eth0: write EIO: at byte 0 (more of these are counted and logged every 40 ms)',
  ], 'firsts at once')
  // Several intervals (timers never fire early; on a busy machine they may fire late,
  // which merges nothing here because no fault is reported meanwhile).
  await sleep(4 * INTERVAL)
  t.same(lines.slice(2), ['9.0@eth0: read EIO: 4 more in the last 40 ms'], 'one summary line, only for the kind with more, however many intervals passed')
  await sleep(3 * INTERVAL)
  t.equal(lines.length, 3, 'nothing while quiet')
  log.report('9.0@eth0', 'read EIO', 'at byte 512')
  t.equal(lines.length, 4, 'the next fault is a first again')
  log.report('9.0@eth0', 'read EIO', 'again')
  log.close()
  t.equal(lines[4], '9.0@eth0: read EIO: 1 more in the last 40 ms', 'close() logs what was still counted')
  await sleep(2 * INTERVAL)
  t.equal(lines.length, 5, 'and nothing after close')
})
