/**
 * `make torture`: runs every check of the registry against the real daemon and prints
 * one row per check. Exits 1 if any row failed, 2 if the checks cannot run here.
 *
 *   node dist/test/torture/main.js [--seed N] [--reduced] [--only NAME]...
 */
import { networkTestsUnavailable } from '../helpers/netns'
import { passed, type Scale } from './check'
import { CHECKS } from './registry'
import { formatDetails, formatTable, type Row } from './report'

interface Args { seed: number, scale: Scale, only: string[] }

function parse (argv: string[]): Args {
  const args: Args = { seed: (Date.now() ^ (process.pid << 16)) >>> 0, scale: 'full', only: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--seed' && i + 1 < argv.length) args.seed = Number(argv[++i]) >>> 0
    else if (a === '--reduced') args.scale = 'reduced'
    else if (a === '--only' && i + 1 < argv.length) args.only.push(argv[++i])
    else throw new Error(`usage: main.js [--seed N] [--reduced] [--only NAME]... (not "${a}")`)
  }
  return args
}

async function main (): Promise<number> {
  const args = parse(process.argv.slice(2))
  const unavailable = networkTestsUnavailable()
  if (unavailable !== null) {
    process.stderr.write(`\n*** SKIPPING the torture suite: ${unavailable} ***\n\n`)
    return 2
  }
  const checks = CHECKS.filter(c => args.only.length === 0 || args.only.some(o => c.name.includes(o)))
  const log = (line: string): void => { process.stdout.write(`  ${line}\n`) }
  process.stdout.write(`kvblade torture suite: seed ${args.seed}, ${args.scale} scale, ${checks.length} checks (replay: --seed ${args.seed})\n`)
  const rows: Row[] = []
  const started = Date.now()
  for (const check of checks) {
    process.stdout.write(`${check.name} ...\n`)
    const t0 = Date.now()
    let result
    const why = check.unavailable?.() ?? null
    try {
      if (why !== null) throw new Error(`cannot run here: ${why}`)
      result = await check.run({ seed: args.seed, scale: args.scale, log })
    } catch (err) {
      result = { tried: why !== null ? 'nothing (SKIPPED)' : 'nothing (the check threw)', count: 0, found: 1, failures: [why ?? (err as Error).stack ?? String(err)], notes: [] }
    }
    const row = { name: check.name, result, seconds: (Date.now() - t0) / 1000 }
    rows.push(row)
    process.stdout.write(`${check.name}: ${passed(result) ? 'ok' : 'FAIL'} (${result.found} found, ${row.seconds.toFixed(1)} s)\n`)
  }
  process.stdout.write(`\n${formatTable(rows)}\n\n${formatDetails(rows)}\n\n`)
  const failed = rows.filter(r => !passed(r.result)).length
  process.stdout.write(`seed ${args.seed}; ${rows.length} rows, ${failed} failed; ${((Date.now() - started) / 1000).toFixed(0)} s in all\n`)
  return failed > 0 ? 1 : 0
}

main().then(code => process.exit(code), err => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(2)
})
