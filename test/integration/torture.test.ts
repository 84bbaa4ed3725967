// The torture suite (test/torture/) at reduced counts: the same checks `make torture`
// runs — wire fuzzing, ordering on every store path, SIGKILL under write load — each
// must try something and find nothing. A failure names the seed to replay it with
// `make torture TORTURE_ARGS="--seed N --reduced --only NAME"`.
import t from 'tap'
import { networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { CHECKS } from '../torture/registry'

const unavailable = networkTestsUnavailable()
const seed = process.env.TORTURE_SEED !== undefined ? Number(process.env.TORTURE_SEED) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0

if (unavailable !== null) {
  skipLoudly(t, 'torture suite (reduced)', unavailable)
} else {
  t.comment(`torture seed ${seed} (TORTURE_SEED=${seed} replays it)`)
  for (const check of CHECKS) {
    const why = check.unavailable?.() ?? null
    if (why !== null) {
      skipLoudly(t, `torture: ${check.name}`, why)
      continue
    }
    t.test(`torture: ${check.name}`, async t => {
      const r = await check.run({ seed, scale: 'reduced', log: line => t.comment(line) })
      for (const n of r.notes) t.comment(n)
      t.ok(r.count > 0, `tried: ${r.tried}`)
      t.same(r.failures, [], `no failures (seed ${seed})`)
      t.equal(r.found, 0, `nothing found (seed ${seed})`)
    })
  }
}
