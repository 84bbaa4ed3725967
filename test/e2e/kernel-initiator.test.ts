// End-to-end: the real Linux `aoe` initiator (Debian's kernel, in a QEMU VM)
// against our target, at MTU 1500 and 9000. See test/e2e/README.md.
//
// Knobs (environment):
//   KVE_TARGET=kvblade|vblade   what serves the exports (default kvblade = ./bin/kvblade)
//   KVE_CONTROL=fuse            remove/re-add through kvblade's control plane (--mount DIR, del/add)
//                               instead of stopping/restarting the daemon
//   KVE_MTUS=1500,9000          which MTUs to run
//   KVE_BREAK=size|data         break the target on purpose: the suite must fail
//   KVE_VERBOSE=1               copy the guest's serial console to stderr
//   KVE_KEEP=1                  keep the work directory (backing files, serial log, pcap)
import t from 'tap'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawnSync } from 'node:child_process'
import {
  Net, Target, VbladeTarget, KvbladeTarget, makeBackingFiles, buildInitramfs, runGuest,
  prepareAssets, skipReason, summarizePcapng, md5, readRange, log, tmpDir, which, Proc, sleep,
} from './lib/harness'

const TARGET = process.env.KVE_TARGET ?? 'kvblade'
const MTUS = (process.env.KVE_MTUS ?? '1500,9000').split(',').map(Number)
const BREAK = process.env.KVE_BREAK
const DEADSECS = 6
const GUEST_TIMEOUT_MS = 150_000

// Everything the guest must report; a missing one fails (a guest that dies early fails loudly).
const EXPECTED = [
  'discover', 'size-e9.0', 'size-e9.1', 'bytes-e9.0', 'payload-e9.0', 'payload-e9.1',
  'host-data-e9.0', 'host-data-e9.1', 'host-tail-e9.0', 'write-readback', 'write-readback-direct',
  'write-boundaries', 'filesystem', 'restart', 'remove-io-error', 'readd', 'other-target-after-readd',
]

const payloadFor = (mtu: number) => Math.floor((mtu - 36) / 512) * 512 // AoE header 10+14 + ATA header 12

// A missing/broken ./bin/kvblade is not a reason to skip: `make test` builds it first, so it fails.
const reason = skipReason(TARGET)

// The whole file: two VM boots (~45 s each here) plus slack for a hanging target.
t.setTimeout(2 * (GUEST_TIMEOUT_MS + 60_000))

if (reason) {
  const msg = `KERNEL-INITIATOR E2E SKIPPED: ${reason}`
  process.stderr.write(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}\n\n`)
  t.test('kernel aoe initiator e2e', { skip: msg }, async () => {})
} else {
  let assets: ReturnType<typeof prepareAssets>
  t.before(() => {
    const t0 = Date.now()
    assets = prepareAssets()
    log(`assets ready in ${Date.now() - t0} ms; booting ${assets.pvh ? 'ELF vmlinux (PVH)' : 'bzImage'}; target=${TARGET}` +
      (BREAK ? `; DELIBERATELY BROKEN: ${BREAK}` : ''))
  })

  MTUS.forEach((mtu, idx) => {
    t.test(`Linux aoe initiator vs ${TARGET} at MTU ${mtu}`, { timeout: GUEST_TIMEOUT_MS + 60_000 }, async t => {
      const started = Date.now()
      const work = tmpDir(`kve-e2e-${mtu}-`)
      const net = new Net(String.fromCharCode(97 + idx), mtu)
      let target: Target | null = null
      let cap: Proc | null = null
      const cleanup = async () => {
        cap?.child.kill('SIGTERM')
        if (target) target.kill()
        Proc.killAll()
        net.down()
        if (!process.env.KVE_KEEP) fs.rmSync(work, { recursive: true, force: true })
        else log(`kept ${work}`)
      }
      const onExit = () => { target?.kill(); Proc.killAll(); net.down() }
      process.once('exit', onExit)
      t.teardown(async () => { process.removeListener('exit', onExit); await cleanup() })

      const L = makeBackingFiles(work, BREAK)
      net.up()

      // Capture everything on the VM's bridge: only AoE may cross, jumbo frames at 9000.
      const pcap = path.join(work, 'bridge.pcapng')
      if (which('dumpcap')) {
        cap = new Proc('dumpcap', 'ip', ['netns', 'exec', net.nsVm, 'dumpcap', '-q', '-i', net.br, '-s', '64', '-w', pcap])
        await sleep(700)
      }

      target = TARGET === 'vblade' ? new VbladeTarget(net, L.exports) : new KvbladeTarget(net, L.exports, work)
      await target.start()
      t.ok(target.healthy(), `${target.kind} is running after start`)

      const initrd = buildInitramfs(work, assets.baseCpio, {
        KVE_MTU: mtu, KVE_PAYLOAD: payloadFor(mtu), KVE_DEADSECS: DEADSECS, KVE_DISCOVER_SECS: 40,
        KVE_SECTORS0: L.sectors[0], KVE_SECTORS1: L.sectors[1], KVE_PRE_LEN: L.preLen,
        KVE_PRE0_MD5: md5(L.pre[0]), KVE_PRE1_MD5: md5(L.pre[1]), KVE_TAIL0_MD5: md5(L.tail0),
        KVE_WOFF: L.woff, KVE_WLEN: L.rand.length, KVE_RESTART: 1, KVE_REMOVE: 1,
      }, { 'rand.bin': L.rand })

      const healthNotes: string[] = []
      const run = await runGuest({
        net, kernel: assets.kernel, initrd, mtu, timeoutMs: GUEST_TIMEOUT_MS,
        mac: `52:54:00:4b:56:${(0x10 + idx).toString(16)}`,
        onRequest: async action => {
          const e0 = L.exports[0]
          if (action === 'restart') return target!.restart()
          if (action === 'remove') return target!.remove(e0)
          if (action === 'readd') {
            // "The daemon stays healthy" while an export is gone (only meaningful with a control plane
            // or vblade's per-export processes; a stopped daemon is the emulation itself).
            if (TARGET === 'vblade' || (target instanceof KvbladeTarget && target.control)) {
              healthNotes.push(target!.healthy() ? '' : `target not healthy after removal:\n${target!.logs()}`)
            }
            return target!.readd(e0)
          }
          return `unknown action ${action}`
        },
      })
      fs.writeFileSync(path.join(work, 'serial.log'), run.serial)
      log(`MTU ${mtu}: guest booted in ${run.bootedMs} ms, finished in ${run.totalMs} ms (exit ${run.exit})`)

      const diag = () => `--- guest serial (tail) ---\n${run.serial.split('\n').slice(-60).join('\n')}\n--- target logs ---\n${target!.logs()}`
      t.ok(run.bootedMs !== null, 'guest booted', run.bootedMs === null ? { diag: diag() } : {})
      t.ok(run.done, 'guest ran all its checks and powered off', run.done ? {} : { diag: diag() })

      const byName = new Map(run.results.map(r => [r.name, r]))
      for (const name of EXPECTED) {
        const r = byName.get(name)
        if (!r) t.fail(`guest check ${name} did not run`)
        else t.ok(r.pass, `guest: ${name} ${r.detail}`, r.pass ? {} : { diag: diag() })
      }
      for (const r of run.results) if (!EXPECTED.includes(r.name)) t.ok(r.pass, `guest: ${r.name} ${r.detail}`)
      t.same(run.requests, ['restart', 'remove', 'readd'], 'guest asked for restart, remove, readd')
      for (const n of healthNotes) t.equal(n, '', 'target healthy while an export was removed')

      // Host-side view of what the guest wrote.
      t.equal(run.info.get('guest-write-md5'), md5(L.rand), 'guest md5 of its write = md5 of the data the host gave it')
      t.equal(md5(readRange(L.exports[0].file, L.woff, L.rand.length)), md5(L.rand),
        'backing file e9.0 holds the guest\'s write, byte-identical, at the unaligned offset')
      t.equal(md5(readRange(L.exports[0].file, 0, L.preLen)), md5(L.pre[0]), 'host data in e9.0 untouched')
      if (which('e2fsck') && which('debugfs')) {
        const fsck = spawnSync('e2fsck', ['-fn', L.exports[1].file], { encoding: 'utf8' })
        t.equal(fsck.status, 0, 'host e2fsck -fn of e9.1\'s backing file is clean', fsck.status ? { out: fsck.stdout + fsck.stderr } : {})
        const dump = path.join(work, 'rand.dump')
        spawnSync('debugfs', ['-R', `dump /rand.bin ${dump}`, L.exports[1].file], { encoding: 'utf8' })
        t.equal(fs.existsSync(dump) ? md5(fs.readFileSync(dump)) : 'missing', md5(L.rand),
          'host debugfs reads the guest\'s /rand.bin from e9.1\'s backing file, identical')
      } else {
        t.comment('e2fsprogs missing on the host: host-side file system check not done')
      }

      // Only AoE on the wire; frame sizes follow the MTU.
      if (cap) {
        await sleep(300)
        await cap.stop()
        const { types, maxAoe: maxLen } = summarizePcapng(pcap)
        const aoeFrames = types.get(0x88a2) ?? 0
        const typeList = [...types].map(([ty, n]) => `0x${ty.toString(16)}: ${n}`).join(', ')
        t.ok(aoeFrames > 0 && types.size === 1, `only AoE frames crossed the bridge (${typeList})`)
        const want = payloadFor(mtu) + 36 // Ethernet 14 + AoE 10 + ATA 12 + data
        t.equal(maxLen, want, `largest AoE frame is ${want} bytes (payload ${payloadFor(mtu)} at MTU ${mtu})`)
      } else {
        t.comment('dumpcap missing: wire checks not done')
      }

      t.ok(target.healthy(), `${target.kind} still running at the end`, target.healthy() ? {} : { logs: target.logs() })
      const problems = await target.shutdown()
      t.same(problems, [], `${target.kind} stopped cleanly on SIGTERM every time`, problems.length ? { logs: target.logs() } : {})
      log(`MTU ${mtu} done in ${Date.now() - started} ms`)
    })
  })
}
