/**
 * The exporters row: a second daemon tries to serve what a first one serves. The same
 * backing (without `shared`) and the same address on the same interface must be
 * refused, with a message that names the file and the holder; with `shared` on both
 * the same backing is allowed (multipath over shared storage), and both then answer.
 */
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac } from '../../helpers/netns'
import { TestInitiator } from '../../helpers/initiator'
import { Daemon } from '../../helpers/daemon'
import { Findings, type CheckResult, type TortureCheck, type TortureOptions } from '../check'
import { deriveSeed, int, prng } from '../random'
import { Cleanup, stopDaemon, tempDir } from '../rig'

const TRIALS = { full: 10, reduced: 2 }

async function refusal (args: string[]): Promise<{ refused: boolean, stderr: string }> {
  const d = Daemon.spawn(['start', '--no-mount', ...args])
  const exit = await d.wait(20_000)
  return { refused: exit.code !== 0 && exit.code !== null, stderr: d.stderr }
}

async function run (opts: TortureOptions): Promise<CheckResult> {
  const name = 'exporters'
  const seed = deriveSeed(opts.seed, name)
  const rand = prng(seed)
  const findings = new Findings()
  const notes: string[] = [`seed ${seed}`]
  const cleanup = new Cleanup()
  let cases = 0
  try {
    const net = await TestNetwork.create(2)
    cleanup.defer(() => net.destroy())
    const [linkA, linkB] = net.links
    const dir = tempDir(cleanup, '/var/tmp', 'exporters')
    const disk = path.join(dir, 'disk.img')
    const other = path.join(dir, 'other.img')
    for (const f of [disk, other]) { fs.writeFileSync(f, ''); fs.truncateSync(f, 4 << 20) }
    const b = TestInitiator.open(linkB.initiator, net.nsPath)
    cleanup.defer(() => b.close())
    for (let trial = 0; trial < TRIALS[opts.scale]; trial++) {
      const minor = int(rand, 200)
      const first = await Daemon.start(['--no-mount', '--add', `9 ${minor} ${linkA.target} ${disk}`])
      try {
        const sameDisk = await refusal(['--add', `9 ${minor + 1} ${linkB.target} ${disk}`])
        cases++
        findings.expect(sameDisk.refused, 'a second exporter of the same backing was not refused', `trial ${trial}`)
        findings.expect(sameDisk.stderr.includes(`${disk} is already exported by pid ${first.child.pid}`), 'the refusal does not name the file and the holder', sameDisk.stderr.slice(-300))
        const sameAddress = await refusal(['--add', `9 ${minor} ${linkA.target} ${other}`])
        cases++
        findings.expect(sameAddress.refused, 'a second exporter of the same address on the same interface was not refused', `trial ${trial}`)
        findings.expect(/is already served on \S+ by another kvblade/.test(sameAddress.stderr), 'the refusal does not say who serves the address', sameAddress.stderr.slice(-300))
      } finally {
        await stopDaemon(first)
      }
      const s1 = await Daemon.start(['--no-mount', '--add', `9 ${minor} ${linkA.target} ${disk} shared`])
      try {
        const s2 = Daemon.spawn(['start', '--no-mount', '--add', `9 ${minor} ${linkB.target} ${disk} shared`])
        cases++
        try {
          await s2.waitFor(/serving \d+ targets/, 20_000)
          const found = await b.discover(9, minor)
          findings.expect(found.length === 1 && found[0].mac === interfaceMac(linkB.target), 'with shared on both, the second exporter does not serve', `trial ${trial}`)
        } catch (err) {
          findings.add('with shared on both, the second exporter was refused', (err as Error).message.slice(0, 300))
        } finally {
          await stopDaemon(s2)
        }
      } finally {
        await stopDaemon(s1)
      }
      opts.log(`exporters: trial ${trial + 1}/${TRIALS[opts.scale]} (address 9.${minor})`)
    }
  } catch (err) {
    findings.add('the check could not complete', (err as Error).stack ?? String(err))
  }
  for (const p of await cleanup.run()) notes.push(`cleanup: ${p}`)
  return {
    tried: `${TRIALS[opts.scale]} trials × (second daemon on the same backing, on the same address and interface, both with shared): ${cases} cases`,
    count: cases,
    found: findings.found,
    failures: findings.lines(),
    notes,
  }
}

export const exportersCheck: TortureCheck = { name: 'exporters', run }
