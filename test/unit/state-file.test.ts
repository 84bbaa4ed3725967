/**
 * The state file's writer (src/engine/state-file.ts): writeAtomically replaces the file
 * by rename, so readers see the old contents or the new, never a mix; a write that fails
 * leaves the old file; StateWriter runs one write at a time, covers the saves asked for
 * during a write with the next one, and resolves each save only once a write that began
 * after it is on disk. In a temporary directory, never the host's /var/lib/kvblade.
 */
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { StateWriter, writeAtomically } from '../../src/engine/state-file'

const dir = fs.mkdtempSync(path.join('/var/tmp', 'kvb-state-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Where writeAtomically puts its temporary file for `file` (a directory there makes the write fail). */
const tmpOf = (file: string): string => path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)

t.test('writeAtomically: a new file by rename, in a directory it makes; the old inode keeps the old contents', async t => {
  const file = path.join(dir, 'new', 'state.json')
  await writeAtomically(file, 'first\n')
  t.equal(fs.readFileSync(file, 'utf8'), 'first\n', 'written, the missing directory made')
  t.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o755)
  const old = fs.openSync(file, 'r')
  t.teardown(() => fs.closeSync(old))
  const oldIno = fs.fstatSync(old).ino
  await writeAtomically(file, 'second, longer\n')
  t.equal(fs.readFileSync(file, 'utf8'), 'second, longer\n', 'the new contents')
  t.not(fs.statSync(file).ino, oldIno, 'a new inode: the file was replaced, not rewritten in place')
  const buf = Buffer.alloc(64)
  t.equal(buf.subarray(0, fs.readSync(old, buf, 0, 64, 0)).toString(), 'first\n', 'a reader of the old file still has all of it')
  t.same(fs.readdirSync(path.dirname(file)), ['state.json'], 'no temporary file left')
})

t.test('writeAtomically: readers during many writes only ever see one whole version', async t => {
  const file = path.join(dir, 'busy.json')
  // Large enough that a write in place would be caught half done.
  const version = (n: number): string => JSON.stringify({ n, pad: String(n % 10).repeat(256 * 1024) }) + '\n'
  await writeAtomically(file, version(0))
  let writing = true
  let reads = 0
  const bad: string[] = []
  const reader = (async () => {
    while (writing) {
      const text = await fs.promises.readFile(file, 'utf8')
      reads++
      try {
        const n = (JSON.parse(text) as { n: number }).n
        if (text !== version(n)) bad.push(`version ${n} differs`)
      } catch (err) {
        bad.push(`${text.length} bytes: ${(err as Error).message}`)
      }
    }
  })()
  for (let n = 1; n <= 40; n++) await writeAtomically(file, version(n))
  writing = false
  await reader
  t.ok(reads > 0, `${reads} reads during 40 writes`)
  t.same(bad.slice(0, 3), [], 'every read was one whole version')
  t.equal(fs.readFileSync(file, 'utf8'), version(40))
})

t.test('writeAtomically: a write that fails leaves the old file as it was', async t => {
  const file = path.join(dir, 'keep.json')
  await writeAtomically(file, 'old\n')
  fs.mkdirSync(tmpOf(file)) // the temporary file cannot be made
  await t.rejects(writeAtomically(file, 'new\n'), { code: 'EISDIR' })
  t.equal(fs.readFileSync(file, 'utf8'), 'old\n', 'untouched')
  fs.rmdirSync(tmpOf(file))
})

t.test('StateWriter: one write at a time; saves asked for meanwhile share the next; each resolves once its change is on disk', async t => {
  const file = path.join(dir, 'writer.json')
  let state = 0
  const snapshots: number[] = []
  const overlapped: number[] = []
  const writer = new StateWriter(file, () => {
    // A write begins: the one before it must be over (its temporary file renamed away).
    if (fs.existsSync(tmpOf(file))) overlapped.push(state)
    snapshots.push(state)
    return `${state}\n`
  })
  const onDisk = (): number => Number(fs.readFileSync(file, 'utf8'))
  const seen: Array<{ asked: number, found: number }> = []
  const save = (): Promise<void> => {
    const asked = ++state
    return writer.save().then(() => { seen.push({ asked, found: onDisk() }) })
  }
  const first = save()
  const more = [save(), save(), save(), save(), save()]
  await Promise.all([first, ...more])
  t.same(snapshots, [1, 6], 'two writes: the first save\'s, then one for the five asked during it')
  t.same(seen.map(s => s.asked), [1, 2, 3, 4, 5, 6], 'resolved in the order asked')
  t.ok(seen.every(s => s.found >= s.asked), 'each save resolved with its change (or a later one) on disk')
  t.equal(onDisk(), 6)

  // Saves spread over time: still never two writes at once, and the last state is what stays.
  const spread: Array<Promise<void>> = []
  for (let i = 0; i < 20; i++) {
    spread.push(save())
    if (i % 2 === 0) await new Promise(resolve => setTimeout(resolve, 5))
  }
  await Promise.all(spread)
  t.same(overlapped, [], `no write began while another was under way (${snapshots.length - 2} writes for 20 saves)`)
  t.ok(seen.every(s => s.found >= s.asked), 'every save saw its change on disk')
  t.equal(onDisk(), state, 'the last state is on disk')
})

t.test('StateWriter: a failed write rejects its saves and keeps the old file; the next write is not held up by it', async t => {
  const file = path.join(dir, 'failing.json')
  await writeAtomically(file, 'old\n')
  let calls = 0
  let afterFailure = ''
  const writer = new StateWriter(file, () => {
    calls++
    // The second write (for the save asked during the first) finds the cause gone.
    if (calls === 2) {
      afterFailure = fs.readFileSync(file, 'utf8')
      fs.rmdirSync(tmpOf(file))
    }
    return `v${calls}\n`
  })
  fs.mkdirSync(tmpOf(file))
  const failing = writer.save()
  const next = writer.save()
  await t.rejects(failing, { message: new RegExp(`^cannot save the state to ${file.replace(/[.]/g, '\\.')}: .*EISDIR`) }, 'the failure names the file')
  t.equal(afterFailure, 'old\n', 'the old file was kept by the failed write')
  await t.resolves(next, 'the save asked during the failed write succeeded with the next write')
  t.equal(fs.readFileSync(file, 'utf8'), 'v2\n', 'which is on disk')
  t.equal(calls, 2)
})
