/**
 * Address claims (src/engine/locks.ts, FileClaims): a second claim on the same address
 * is refused while the first holds it; where the run directory cannot be written the
 * check cannot be made, and that is said once through the engine's warnings (not only
 * under DEBUG) while the targets are still served.
 */
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FileClaims } from '../../src/engine/locks'
import { Engine } from '../../src/engine/engine'
import { ThreadPoolEngine } from '../../src/store/thread-pool-engine'
import { FakeFrameIo } from '../helpers/fake-frame-io'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvb-locks-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
// A run directory below a regular file: mkdir fails with ENOTDIR, for root too.
const blocker = path.join(dir, 'not-a-dir')
fs.writeFileSync(blocker, '')
const unwritable = path.join(blocker, 'run')

t.test('a claim is exclusive while held and free again once released', async t => {
  const warnings: string[] = []
  const claims = new FileClaims(path.join(dir, 'run'), m => warnings.push(m))
  const first = claims.claim('ns', 'eth0', 9, 0)
  t.throws(() => claims.claim('ns', 'eth0', 9, 0), { code: 'EEXIST', message: new RegExp(`9\\.0 is already served on eth0 by another kvblade \\(pid ${process.pid}\\)`) })
  const other = claims.claim('ns', 'eth0', 9, 1)
  first.release()
  claims.claim('ns', 'eth0', 9, 0).release()
  other.release()
  t.same(warnings, [], 'no warning where the run directory works')
})

t.test('an unwritable run directory: one warning naming it and why, and every claim still granted', async t => {
  const warnings: string[] = []
  const claims = new FileClaims(unwritable, m => warnings.push(m))
  const a = claims.claim('ns', 'eth0', 9, 0)
  const b = claims.claim('ns', 'eth0', 9, 0)
  const c = claims.claim('ns', 'eth1', 9, 1)
  t.equal(warnings.length, 1, 'said once, not per claim')
  t.match(warnings[0], `cannot keep address claims in ${unwritable}`)
  t.match(warnings[0], /ENOTDIR/, 'with the reason')
  t.match(warnings[0], /will not be refused/, 'and what is lost')
  a.release()
  b.release()
  c.release()
})

t.test('the engine passes the warning to its own warn path, and the targets are served', async t => {
  const file = path.join(dir, 'disk.img')
  const second = path.join(dir, 'second.img')
  fs.writeFileSync(file, Buffer.alloc(1 << 20))
  fs.writeFileSync(second, Buffer.alloc(1 << 20))
  const warnings: string[] = []
  const engine = new Engine({
    disk: new ThreadPoolEngine(),
    openFrameIo: ifname => new FakeFrameIo(256, ifname),
    runDir: unwritable,
    probeMs: 0,
    warn: m => warnings.push(m),
  })
  t.teardown(() => engine.close())
  await engine.add({ major: 9, minor: 0, ifname: 'fake0', path: file })
  await engine.add({ major: 9, minor: 1, ifname: 'fake0', path: second })
  const claimWarnings = warnings.filter(w => w.includes('address claims'))
  t.equal(claimWarnings.length, 1, 'one warning for two adds')
  t.match(claimWarnings[0], unwritable)
  t.same(engine.list().map(x => [x.minor, x.state ?? 'serving']), [[0, 'serving'], [1, 'serving']], 'both targets serve')
})
