// Real-kernel tests of the native packet socket and block-device addon.
// They need root: each run builds its own network namespaces (kvn-<pid>a/b)
// joined by a veth pair (kvn<pid>a/kvn<pid>b) and removes them at the end.
import t from 'tap'
import { execFileSync, spawn } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ETH_P_AOE, PacketSocket } from '../../src/native/packet-socket'
import { mapFile } from '../../src/native/memory'
import { blockDeviceSize } from '../../src/native/block-device'

const isRoot = process.getuid?.() === 0

function sh (cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Polls pred every few ms; rejects after timeoutMs. */
async function waitFor (what: string, pred: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** An Ethernet frame of `length` bytes with a recognisable, per-frame payload. */
function frame (dst: Buffer, src: Buffer, ethertype: number, length: number, seq: number): Buffer {
  const f = Buffer.alloc(length)
  dst.copy(f, 0)
  src.copy(f, 6)
  f.writeUInt16BE(ethertype, 12)
  f.writeUInt32BE(seq, 14)
  for (let i = 18; i < length; i++) f[i] = (seq * 31 + i) & 0xff
  return f
}

/** Copies every frame the socket has pending into `into`. */
function drain (s: PacketSocket, into: Buffer[]): void {
  for (;;) {
    const n = s.recv()
    for (let i = 0; i < n; i++) {
      const base = s.rxOffsets[i]
      into.push(Buffer.from(s.rx.subarray(base, base + s.rxLengths[i])))
    }
    if (n === 0) return
  }
}

/** Packs frames into one arena the way the engine does. */
function arena (frames: Buffer[]): { arena: Buffer, offsets: Uint32Array, lengths: Uint32Array } {
  const offsets = new Uint32Array(frames.length)
  const lengths = new Uint32Array(frames.length)
  let at = 0
  frames.forEach((f, j) => { offsets[j] = at; lengths[j] = f.length; at += f.length })
  return { arena: Buffer.concat(frames), offsets, lengths }
}

function ipLink (ns: string, ifname: string): { ifindex: number, address: string, mtu: number } {
  return JSON.parse(sh('ip', '-n', ns, '-j', 'link', 'show', 'dev', ifname))[0]
}

const threadNetns = (): string => fs.readlinkSync('/proc/thread-self/ns/net')

if (!isRoot) {
  const reason = 'NOT RUN: packet-socket tests need root (network namespaces, veth, AF_PACKET, loop devices)'
  console.error(`# ${reason}`)
  t.skip(reason, async () => {})
} else {
  const pid = process.pid
  const nsA = `kvn-${pid}a`
  const nsB = `kvn-${pid}b`
  const ifA = `kvn${pid}a`
  const ifB = `kvn${pid}b`
  const netnsA = `/var/run/netns/${nsA}`
  const netnsB = `/var/run/netns/${nsB}`

  t.teardown(() => {
    for (const ns of [nsA, nsB]) {
      try { sh('ip', 'netns', 'del', ns) } catch { /* never created */ }
    }
  })
  sh('ip', 'netns', 'add', nsA)
  sh('ip', 'netns', 'add', nsB)
  sh('ip', '-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB)
  for (const [ns, ifname] of [[nsA, ifA], [nsB, ifB], [nsA, 'lo']]) {
    if (ifname !== 'lo') sh('ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', `net.ipv6.conf.${ifname}.disable_ipv6=1`)
    sh('ip', '-n', ns, 'link', 'set', ifname, 'up')
  }

  t.test('open reads link info inside the namespace and refreshLink sees changes', async t => {
    const before = threadNetns()
    const s = PacketSocket.open(ifA, { netns: netnsA })
    t.teardown(() => s.close())
    t.equal(threadNetns(), before, 'calling thread is back in its own namespace')
    const ip = ipLink(nsA, ifA)
    t.equal(s.ifname, ifA)
    t.equal(s.link.name, ifA)
    t.equal(s.link.index, ip.ifindex, 'ifindex matches ip link')
    t.equal(s.link.mac.length, 6)
    t.equal([...s.link.mac].map(b => b.toString(16).padStart(2, '0')).join(':'), ip.address, 'MAC matches ip link')
    t.equal(s.link.mtu, ip.mtu, 'MTU matches ip link')
    t.equal(s.rxSlots, 256, 'default rxSlots')
    t.equal(s.slotSize, 9216, 'default slotSize')
    t.ok(s.ringFrames >= 1024, `the receive ring holds at least 1024 frames (${s.ringFrames})`)
    t.ok(s.rx.length >= s.ringFrames * 9216, 'each ring frame holds a whole 9216-byte frame')
    t.equal(s.rxLengths.length, 256)
    t.equal(s.rxOffsets.length, 256)
    t.ok(s.fd >= 0)

    sh('ip', '-n', nsA, 'link', 'set', ifA, 'mtu', '9000')
    t.equal(s.link.mtu, ip.mtu, '.link is a snapshot until refreshed')
    const l = s.refreshLink()
    t.equal(l.mtu, 9000, 'refreshLink sees the new MTU')
    t.equal(s.link.mtu, 9000, '.link updated')
    t.same(l.mac, s.link.mac)
    sh('ip', '-n', nsA, 'link', 'set', ifA, 'mtu', String(ip.mtu))
    t.equal(s.refreshLink().mtu, ip.mtu)
  })

  t.test('a batch of 200 frames arrives byte-identical across several recv batches', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB, rxSlots: 64, slotSize: 2048 })
    t.teardown(() => { a.close(); b.close() })
    const got: Buffer[] = []
    let readable = 0
    b.onReadable(() => { readable++; drain(b, got) })

    const frames: Buffer[] = []
    for (let j = 0; j < 200; j++) frames.push(frame(b.link.mac, a.link.mac, ETH_P_AOE, 60 + ((j * 97) % 1455), j))
    const { arena: buf, offsets, lengths } = arena(frames)
    t.equal(a.send(buf, offsets, lengths, 200), 200, 'send() takes the whole batch')
    t.ok(a.counters.txBatches >= 1 && a.counters.txBatches <= 2, `few syscalls (${a.counters.txBatches})`)
    t.equal(a.counters.txFrames, 200)
    t.equal(a.counters.txErrors, 0)

    await waitFor('200 frames', () => got.length >= 200)
    await sleep(50)
    t.equal(got.length, 200, 'each frame received exactly once')
    t.ok(readable >= 1, 'onReadable fired')
    let identical = 0
    for (let j = 0; j < 200; j++) if (got[j]?.equals(frames[j])) identical++
    t.equal(identical, 200, 'every frame byte-identical, in order, with its length')
    t.equal(b.counters.rxFrames, 200)
    t.ok(b.counters.rxBatches >= 4, `rxSlots=64 means several batches (${b.counters.rxBatches})`)
    t.equal(b.stats().kernelDrops, 0)

    drain(a, got)
    t.equal(got.length, 200, 'the sender hears none of its own frames')
    t.equal(a.counters.rxFrames, 0)
  })

  t.test('send honours offsets into a shared arena and sends count frames only', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB })
    t.teardown(() => { a.close(); b.close() })
    const f1 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 100, 1)
    const f2 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 80, 2)
    const big = Buffer.alloc(4096, 0xee)
    f1.copy(big, 1000)
    f2.copy(big, 3000)
    // frame 0 comes from the later offset; the third entry is beyond count
    t.equal(a.send(big, Uint32Array.of(3000, 1000, 0), Uint32Array.of(80, 100, 60), 2), 2)
    const got: Buffer[] = []
    await waitFor('2 frames', () => { drain(b, got); return got.length >= 2 })
    await sleep(30)
    drain(b, got)
    t.same(got, [f2, f1])
    t.equal(a.send(big, new Uint32Array(0), new Uint32Array(0), 0), 0, 'empty batch')
    t.throws(() => a.send(big, Uint32Array.of(4090), Uint32Array.of(60), 1), RangeError, 'frame past the arena end')
    t.throws(() => a.send(big, Uint32Array.of(0), Uint32Array.of(60), 2), RangeError, 'count past the arrays')
    t.equal(a.counters.txFrames, 2, 'nothing sent by the rejected calls')
  })

  t.test('a frame can continue from a file map: the kernel copies that part from the file', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB })
    const where = fs.mkdtempSync('/dev/shm/kvb-sendmap-')
    const file = path.join(where, 'data.bin')
    const content = Buffer.from(Array.from({ length: 16384 }, (_, i) => (i * 7 + 3) & 0xff))
    fs.writeFileSync(file, content)
    const fd = fs.openSync(file, 'r+')
    const map = mapFile(fd, content.length)
    const other = mapFile(fd, 8192)
    t.teardown(() => { a.close(); b.close(); map.close(); other.close(); fs.closeSync(fd); fs.rmSync(where, { recursive: true, force: true }) })
    const h1 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 40, 1)
    const h2 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 60, 2)
    const h3 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 36, 3)
    const { arena: buf, offsets, lengths } = arena([h1, h2, h3])
    // Frame 1: header + 1000 bytes of the file at 5000 (maps[1]); frame 2: header only;
    // frame 3: + 1024 at 0 (maps[0], another map of the same file).
    const maps = [other, map]
    const mapIndex = Uint16Array.of(1, 0, 0)
    const mapOffsets = Float64Array.of(5000, 0, 0)
    const mapLengths = Uint32Array.of(1000, 0, 1024)
    t.equal(a.send(buf, offsets, lengths, 3, maps, mapIndex, mapOffsets, mapLengths), 3)
    const got: Buffer[] = []
    await waitFor('3 frames', () => { drain(b, got); return got.length >= 3 })
    t.same(got, [
      Buffer.concat([h1, content.subarray(5000, 6000)]),
      h2,
      Buffer.concat([h3, content.subarray(0, 1024)]),
    ], 'header from the arena, data from the file, byte for byte')

    const first = Uint16Array.of(0)
    t.throws(() => a.send(buf, offsets, lengths, 1, [map], first, Float64Array.of(16000), Uint32Array.of(1000)), RangeError, 'a range past the map')
    t.throws(() => a.send(buf, offsets, lengths, 1, [{} as never], first, Float64Array.of(0), Uint32Array.of(10)), RangeError, 'not a map')
    t.throws(() => a.send(buf, offsets, lengths, 1, [map], Uint16Array.of(1), Float64Array.of(0), Uint32Array.of(10)), RangeError, 'an index past the maps')
    t.throws(() => a.send(buf, offsets, lengths, 1, [map], Uint8Array.of(0) as never, Float64Array.of(0), Uint32Array.of(10)), TypeError, 'mapIndex of the wrong type')
    t.equal(a.counters.txFrames, 3, 'nothing sent by the rejected calls')

    // The file shrinks under the map: the kernel's copy faults, the frame is counted as
    // failed, and nothing crashes (JS never touches the mapped bytes itself).
    fs.ftruncateSync(fd, 0)
    t.equal(a.send(buf, offsets, lengths, 1, [map], first, Float64Array.of(8192), Uint32Array.of(1000)), 1, 'consumed')
    t.equal(a.counters.txErrors, 1, 'counted as a send error (EFAULT)')
    map.close()
    t.equal(map.length, 0, 'closed')
    t.throws(() => a.send(buf, offsets, lengths, 1, [map], first, Float64Array.of(0), Uint32Array.of(10)), RangeError, 'a closed map is refused')
  })

  t.test('a frame the kernel rejects is skipped and counted in txErrors', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB })
    t.teardown(() => { a.close(); b.close() })
    const ok1 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 60, 1)
    const tooBig = frame(b.link.mac, a.link.mac, ETH_P_AOE, a.link.mtu + 14 + 100, 2)
    const ok2 = frame(b.link.mac, a.link.mac, ETH_P_AOE, 70, 3)
    const { arena: buf, offsets, lengths } = arena([ok1, tooBig, ok2])
    t.equal(a.send(buf, offsets, lengths, 3), 3, 'the failed frame counts as consumed')
    t.equal(a.counters.txFrames, 2)
    t.equal(a.counters.txErrors, 1, 'EMSGSIZE counted')
    t.same([...a.sendFailures.subarray(0, 3)], [1, 1, 90], 'and listed: one failure, frame 1, EMSGSIZE')
    const got: Buffer[] = []
    await waitFor('2 frames', () => { drain(b, got); return got.length >= 2 })
    await sleep(30)
    drain(b, got)
    t.same(got, [ok1, ok2])
    t.equal(a.send(buf, offsets, lengths, 1), 1)
    t.equal(a.sendFailures[0], 0, 'the failure list is per call')
  })

  t.test('a full socket buffer makes send() short and onWritable resumes it', async t => {
    // A slow qdisc holds the frames, so they stay charged to the small send buffer.
    sh('tc', '-n', nsA, 'qdisc', 'add', 'dev', ifA, 'root', 'tbf', 'rate', '1mbit', 'burst', '1600', 'limit', '3000000')
    const a = PacketSocket.open(ifA, { netns: netnsA, socketBufferBytes: 4096 })
    const b = PacketSocket.open(ifB, { netns: netnsB })
    t.teardown(() => {
      a.close()
      b.close()
      sh('tc', '-n', nsA, 'qdisc', 'del', 'dev', ifA, 'root')
    })
    const n = 20
    const frames = Array.from({ length: n }, (_, j) => frame(b.link.mac, a.link.mac, ETH_P_AOE, 1000, j))
    const { arena: buf, offsets, lengths } = arena(frames)
    let sent = a.send(buf, offsets, lengths, n)
    t.ok(sent > 0 && sent < n, `first send is short (${sent} of ${n})`)
    let resumed = 0
    await new Promise<void>(resolve => {
      const more = (): void => a.onWritable(() => {
        resumed++
        sent += a.send(buf, offsets.subarray(sent), lengths.subarray(sent), n - sent)
        if (sent < n) more(); else resolve()
      })
      more()
    })
    t.ok(resumed >= 1, `onWritable resumed sending ${resumed} time(s)`)
    t.equal(a.counters.txFrames, n)
    t.equal(a.counters.txErrors, 0)
    const got: Buffer[] = []
    await waitFor(`${n} frames`, () => { drain(b, got); return got.length >= n }, 5000)
    t.same(got, frames, 'nothing lost or reordered')
  })

  t.test('frames of other ethertypes are not received', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB })
    t.teardown(() => { a.close(); b.close() })
    const other = frame(b.link.mac, a.link.mac, 0x88b5, 64, 7)
    const marker = frame(b.link.mac, a.link.mac, ETH_P_AOE, 64, 8)
    const { arena: buf, offsets, lengths } = arena([other, other, marker])
    t.equal(a.send(buf, offsets, lengths, 3), 3)
    const got: Buffer[] = []
    await waitFor('marker', () => { drain(b, got); return got.length >= 1 })
    await sleep(30)
    drain(b, got)
    t.same(got, [marker], 'only the AoE frame arrives')
  })

  t.test('frames longer than a slot are truncated to slotSize', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB, rxSlots: 4, slotSize: 128 })
    t.teardown(() => { a.close(); b.close() })
    const long = frame(b.link.mac, a.link.mac, ETH_P_AOE, 1000, 9)
    t.equal(a.send(long, Uint32Array.of(0), Uint32Array.of(1000), 1), 1)
    await waitFor('frame', () => b.recv() === 1)
    t.equal(b.rxLengths[0], 128, 'rxLengths reports the truncated length')
    const at = b.rxOffsets[0]
    t.same(b.rx.subarray(at, at + 128), long.subarray(0, 128))
  })

  t.test('on lo a frame reaches the other socket once and never its sender', async t => {
    const l1 = PacketSocket.open('lo', { netns: netnsA })
    const l2 = PacketSocket.open('lo', { netns: netnsA })
    t.teardown(() => { l1.close(); l2.close() })
    const zero = Buffer.alloc(6)
    const frames = [0, 1, 2].map(j => frame(zero, zero, ETH_P_AOE, 60, 100 + j))
    const { arena: buf, offsets, lengths } = arena(frames)
    t.equal(l1.send(buf, offsets, lengths, 3), 3)
    const got1: Buffer[] = []
    const got2: Buffer[] = []
    await waitFor('3 frames on lo', () => { drain(l2, got2); return got2.length >= 3 })
    await sleep(50)
    drain(l1, got1)
    drain(l2, got2)
    t.same(got2, frames, 'peer receives each frame exactly once')
    t.same(got1, [], 'sender receives none of its own frames')

    t.equal(l2.send(buf, offsets, lengths, 2), 2)
    await waitFor('2 frames back', () => { drain(l1, got1); return got1.length >= 2 })
    await sleep(50)
    drain(l1, got1)
    drain(l2, got2)
    t.equal(got1.length, 2, 'and the other way round')
    t.equal(got2.length, 3, 'still nothing of its own')
  })

  t.test('the receive ring wraps around many times; frames stay intact until the next recv()', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB, ringFrames: 8, rxSlots: 5 })
    t.teardown(() => { a.close(); b.close() })
    t.ok(b.ringFrames >= 8 && b.ringFrames < 32, `a small ring (${b.ringFrames} frames)`)
    const sent: Buffer[] = []
    const got: Buffer[] = []
    for (let round = 0; round < 12; round++) {
      const frames = Array.from({ length: 6 }, (_, j) => frame(b.link.mac, a.link.mac, ETH_P_AOE, 60 + 131 * j, round * 6 + j))
      const { arena: buf, offsets, lengths } = arena(frames)
      t.equal(a.send(buf, offsets, lengths, frames.length), frames.length)
      sent.push(...frames)
      await waitFor(`round ${round}`, () => { drain(b, got); return got.length >= sent.length })
    }
    t.equal(got.length, sent.length, `${sent.length} frames through a ${b.ringFrames}-frame ring`)
    t.ok(sent.every((f, j) => got[j]?.equals(f)), 'every frame byte-identical and in order')
    t.equal(b.stats().kernelDrops, 0)
  })

  t.test('kernel drops are counted when the receive ring overflows', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB, ringFrames: 8 })
    t.teardown(() => { a.close(); b.close() })
    const frames = Array.from({ length: 100 }, (_, j) => frame(b.link.mac, a.link.mac, ETH_P_AOE, 1500, j))
    const { arena: buf, offsets, lengths } = arena(frames)
    t.equal(a.send(buf, offsets, lengths, 100), 100)
    await sleep(100)
    const got: Buffer[] = []
    drain(b, got)
    t.equal(got.length, b.ringFrames, `a full ring keeps what it holds (${got.length})`)
    t.equal(b.counters.kernelDrops, 0, 'kernelDrops only moves on stats()/refreshLink()')
    b.refreshLink()
    t.equal(b.counters.kernelDrops, 100 - got.length, 'every lost frame counted')
    t.equal(b.stats().kernelDrops, 100 - got.length, 'PACKET_STATISTICS is accumulated, not re-added')
  })

  t.test('onReadable keeps working after the link goes down and up', async t => {
    const a = PacketSocket.open(ifA, { netns: netnsA })
    const b = PacketSocket.open(ifB, { netns: netnsB })
    t.teardown(() => {
      a.close()
      b.close()
      sh('ip', '-n', nsB, 'link', 'set', ifB, 'up')
    })
    const got: Buffer[] = []
    let calls = 0
    b.onReadable(() => { calls++; drain(b, got) })
    // Going down sets ENETDOWN on the socket (POLLERR), which stops a bare uv_poll.
    sh('ip', '-n', nsB, 'link', 'set', ifB, 'down')
    await waitFor('the error wakes the reader', () => calls > 0)
    t.equal(got.length, 0, 'nothing to read, and recv() did not throw')
    sh('ip', '-n', nsB, 'link', 'set', ifB, 'up')
    const f = frame(b.link.mac, a.link.mac, ETH_P_AOE, 60, 42)
    await waitFor('a frame after the link came back', () => {
      if (got.length === 0) a.send(f, Uint32Array.of(0), Uint32Array.of(60), 1)
      return got.length > 0
    }, 5000)
    t.same(got[0], f, 'frames still arrive through onReadable')
  })

  t.test('onWritable fires once', async t => {
    const s = PacketSocket.open(ifA, { netns: netnsA })
    t.teardown(() => s.close())
    let n = 0
    s.onWritable(() => { n++ })
    await waitFor('writable', () => n > 0)
    await sleep(50)
    t.equal(n, 1, 'one-shot')
    let again = false
    s.onWritable(() => { again = true })
    await waitFor('writable again', () => again)
  })

  t.test('a throwing callback surfaces as an uncaught exception', async t => {
    const s = PacketSocket.open(ifA, { netns: netnsA })
    t.teardown(() => s.close())
    const seen = await new Promise<Error>(resolve => {
      const listeners = process.listeners('uncaughtException')
      process.removeAllListeners('uncaughtException')
      process.once('uncaughtException', err => {
        for (const l of listeners) process.on('uncaughtException', l)
        resolve(err)
      })
      s.onWritable(() => { throw new Error('boom') })
    })
    t.equal(seen.message, 'boom')
  })

  t.test('close() is idempotent, stops callbacks and lets the process exit', async t => {
    const s = PacketSocket.open(ifA, { netns: netnsA })
    s.onReadable(() => {})
    const ringBytes = s.rx.length
    // The ring is a mapping of the socket itself: /proc/self/maps names it "socket:[inode]".
    // (Counting all mappings is not a measure: the heap may map more meanwhile.)
    const socketName = fs.readlinkSync(`/proc/self/fd/${s.fd}`)
    const ringMaps = (): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter(l => l.endsWith(` ${socketName}`)).length
    t.equal(ringMaps(), 1, `the ring is mapped (${socketName})`)
    s.close()
    t.ok(ringBytes > 0)
    t.equal(s.rx.length, 0, 'the receive ring is detached: stray reads see nothing, never freed memory')
    t.equal(ringMaps(), 0, 'and unmapped at once')
    t.doesNotThrow(() => s.close(), 'second close is a no-op')
    t.equal(s.fd, -1)
    t.throws(() => s.recv(), { code: 'EBADF' }, 'recv after close says so')

    const mod = path.resolve(__dirname, '..', '..', 'src', 'native', 'packet-socket.js')
    const child = async (code: string, timeoutMs: number): Promise<{ exited: boolean, status: number | null, stderr: string }> =>
      await new Promise(resolve => {
        const p = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'ignore', 'pipe'] })
        let stderr = ''
        p.stderr.on('data', d => { stderr += String(d) })
        const timer = setTimeout(() => { p.kill('SIGKILL') }, timeoutMs)
        p.on('exit', (status, signal) => {
          clearTimeout(timer)
          resolve({ exited: signal === null, status, stderr })
        })
      })
    const open = `const { PacketSocket } = require(${JSON.stringify(mod)});
      const s = PacketSocket.open('lo', { netns: ${JSON.stringify(netnsA)} });
      s.onReadable(() => {}); s.onWritable(() => {}); s.onReadable(() => {});`
    const alive = await child(open, 1500)
    t.notOk(alive.exited, 'a polling socket keeps the process alive')
    const closed = await child(`${open} setTimeout(() => { s.close(); s.close() }, 100)`, 10000)
    t.ok(closed.exited, 'after close() the process exits by itself')
    t.equal(closed.status, 0, closed.stderr)
  })

  t.test('open errors carry the errno name and the interface', async t => {
    const missing = `kvnnone${pid}`
    t.throws(() => PacketSocket.open(missing), { code: 'ENODEV', message: new RegExp(missing) }, 'unknown interface in this namespace')
    t.throws(() => PacketSocket.open('lo', { netns: netnsA, rxSlots: 0 }), RangeError, 'rxSlots out of range')
    // ifB exists only in namespace B
    t.throws(() => PacketSocket.open(ifB, { netns: netnsA }), { code: 'ENODEV', message: new RegExp(ifB) }, 'interface of another namespace')
    const before = threadNetns()
    t.throws(() => PacketSocket.open('lo', { netns: `/var/run/netns/kvn-none-${pid}` }), { code: 'ENOENT' }, 'missing netns file')
    t.throws(() => PacketSocket.open('x'.repeat(16)), { code: 'ENODEV' }, 'over-long name is not truncated into a match')
    t.equal(threadNetns(), before, 'failed opens leave the thread in its namespace')
  })

  t.test('blockDeviceSize reads a loop device size', async t => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvn-'))
    const file = path.join(dir, 'disk.img')
    const size = 3 * 1024 * 1024 + 512 * 7
    fs.writeFileSync(file, Buffer.alloc(0))
    fs.truncateSync(file, size)
    let dev = ''
    t.teardown(() => {
      if (dev !== '') try { sh('losetup', '-d', dev) } catch { /* already gone */ }
      fs.rmSync(dir, { recursive: true, force: true })
    })
    try {
      dev = sh('losetup', '--find', '--show', file).trim()
    } catch (err) {
      t.fail(`losetup failed, cannot test BLKGETSIZE64: ${(err as Error).message}`)
      return
    }
    const fd = fs.openSync(dev, 'r')
    try {
      t.equal(blockDeviceSize(fd), size, `${dev} size equals the file size`)
    } finally {
      fs.closeSync(fd)
    }
    const ffd = fs.openSync(file, 'r')
    try {
      t.throws(() => blockDeviceSize(ffd), { code: 'ENOTTY' }, 'a regular file is not a block device')
    } finally {
      fs.closeSync(ffd)
    }
    t.throws(() => blockDeviceSize(-1), { code: 'EBADF' })
  })
}
