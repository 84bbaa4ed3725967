// An interface's port is made by the first add on it and goes with the last del. Its
// memory must go too (the 64 MiB transmit arena, the receive ring, their io_uring
// registrations): 100 cycles of add → I/O → del through the control plane leave the
// daemon's resident and mapped sizes flat.
import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { TestNetwork, interfaceMac, networkTestsUnavailable, skipLoudly } from '../helpers/netns'
import { TestInitiator, type TargetRef } from '../helpers/initiator'
import { Daemon } from '../helpers/daemon'
import { fuseSkipReason, isMountPoint, sh } from '../helpers/fuse-harness'

const CYCLES = 100
/** Cycles before memory is measured: the process has reached its working size. */
const WARM = 25
const unavailable = networkTestsUnavailable() ?? fuseSkipReason() ?? (fs.existsSync('/dev/shm') ? null : 'no /dev/shm here')

/** VmRSS and VmSize of a process, in KiB. */
function memory (pid: number): { rss: number, size: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS'), size: kib('VmSize') }
}

if (unavailable !== null) {
  skipLoudly(t, 'port lifecycle test', unavailable ?? '')
} else {
  t.test(`${CYCLES} cycles of add, I/O and del leave memory flat`, async t => {
    const net = await TestNetwork.create(1)
    t.teardown(() => net.destroy())
    const [link] = net.links
    const dir = fs.mkdtempSync('/dev/shm/kvblade-cycle-')
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const mnt = path.join(dir, 'ctl')
    const disk = path.join(dir, 'disk.img')
    fs.writeFileSync(disk, Buffer.alloc(8 << 20))
    const daemon = await Daemon.start(['--mount', mnt])
    t.teardown(async () => {
      await daemon.stop()
      if (isMountPoint(mnt)) await sh('fusermount -uz "$1"', [mnt])
    })
    const pid = daemon.child.pid!
    const initiator = TestInitiator.open(link.initiator, net.nsPath)
    t.teardown(() => initiator.close())
    const target: TargetRef = { major: 9, minor: 0, mac: interfaceMac(link.target) }
    const data = crypto.randomBytes(64 << 10)
    let warm = { rss: 0, size: 0 }
    let bad = 0
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const add = await sh('echo 9 0 "$2" "$3" >"$1/add"', [mnt, link.target, disk])
      if (add.code !== 0) throw new Error(`cycle ${cycle}: add failed: ${add.stderr}`)
      await initiator.write(target, cycle * 128, data, 2, 16)
      if (!(await initiator.read(target, cycle * 128, data.length / 512, 2, 16)).equals(data)) bad++
      const del = await sh('echo 9 0 "$2" >"$1/del"', [mnt, link.target])
      if (del.code !== 0) throw new Error(`cycle ${cycle}: del failed: ${del.stderr}`)
      if (cycle === WARM) warm = memory(pid)
    }
    const end = memory(pid)
    t.equal(bad, 0, 'every cycle read back what it wrote')
    t.ok(daemon.alive, 'the daemon is alive')
    // One cycle's port alone maps 64 MiB of arena and ~9 MiB of ring: a leak of either
    // would grow the mapped size by over 5 GiB in 75 cycles. What does grow a little
    // after warm-up is the C library's per-thread malloc arenas (64 MiB of address space
    // each, reserved as libuv's threads first allocate), hence a bound of four.
    t.ok(end.size - warm.size < 256 << 10, `mapped size flat: ${warm.size} → ${end.size} KiB`)
    t.ok(end.rss - warm.rss < 32 << 10, `resident size flat: ${warm.rss} → ${end.rss} KiB`)
  })
}
