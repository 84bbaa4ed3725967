// End-to-end: iPXE (Debian's /usr/lib/ipxe/ipxe.lkrn, its own AoE initiator and
// INT13 emulation) does `sanboot aoe:e9.0` against our target and boots the boot
// sector of the export, which prints a per-run marker on COM1 and ends QEMU.
// Same knobs as kernel-initiator.test.ts (KVE_TARGET, KVE_VERBOSE, KVE_KEEP).
import t from 'tap'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import {
  Net, Target, VbladeTarget, KvbladeTarget, makeBootDisk, qemuArgs, skipReason, log, tmpDir, Proc, VERBOSE,
} from './lib/harness'

const TARGET = process.env.KVE_TARGET ?? 'kvblade'
const IPXE = '/usr/lib/ipxe/ipxe.lkrn'
const TIMEOUT_MS = 60_000

const reason = skipReason(TARGET) ?? (fs.existsSync(IPXE) ? null : `${IPXE} missing (Debian package ipxe)`)
if (reason) {
  const msg = `IPXE SANBOOT E2E SKIPPED: ${reason}`
  process.stderr.write(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}\n\n`)
  t.test('iPXE sanboot e2e', { skip: msg }, async () => {})
} else {
  t.test(`iPXE sanboot aoe:e9.0 from ${TARGET}`, { timeout: TIMEOUT_MS + 30_000 }, async t => {
    const work = tmpDir('kve-ipxe-')
    const net = new Net('x', 1500)
    let target: Target | null = null
    const onExit = () => { target?.kill(); Proc.killAll(); net.down() }
    process.once('exit', onExit)
    t.teardown(() => {
      process.removeListener('exit', onExit)
      onExit()
      if (!process.env.KVE_KEEP) fs.rmSync(work, { recursive: true, force: true })
    })

    const marker = `KVE:IPXE-SANBOOT-OK ${randomBytes(6).toString('hex')}`
    const disk = path.join(work, 'boot.img')
    makeBootDisk(disk, marker)
    net.up()
    const exp = [{ major: 9, minor: 0, file: disk }]
    target = TARGET === 'vblade' ? new VbladeTarget(net, exp) : new KvbladeTarget(net, exp, work)
    await target.start()

    const t0 = Date.now()
    const q = new Proc('qemu-ipxe', 'ip', ['netns', 'exec', net.nsVm, 'qemu-system-x86_64',
      ...qemuArgs({
        kernel: IPXE, append: 'ifopen net0 && sanboot aoe:e9.0', tap: net.tap, mtu: 1500,
        mac: '52:54:00:4b:56:20', mem: 128, extra: ['-device', 'isa-debug-exit,iobase=0xf4,iosize=4'],
      })])
    if (VERBOSE) q.child.stdout!.on('data', d => process.stderr.write(d))
    const timer = setTimeout(() => q.child.kill('SIGKILL'), TIMEOUT_MS)
    await q.exited
    clearTimeout(timer)
    log(`iPXE: QEMU ended after ${Date.now() - t0} ms with ${JSON.stringify(q.exit)}`)

    t.ok(q.out.includes(marker), 'the boot sector read from the export ran and printed this run\'s marker',
      q.out.includes(marker) ? {} : { serial: q.tail(20), target: target.logs() })
    t.equal(q.exit?.code, 67, 'QEMU ended through the boot sector\'s isa-debug-exit write (status 67)')
    t.ok(target.healthy(), `${target.kind} still running`)
    const problems = await target.shutdown()
    t.same(problems, [], `${target.kind} stopped cleanly on SIGTERM`)
  })
}
