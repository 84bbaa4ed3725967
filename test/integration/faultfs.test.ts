// faultfs on a real FUSE mount: the volatile write cache, the power cut, every injected
// fault, resizing, the control channel and the mount's life cycle, each proved with real
// system calls from a separate process (python3, exact errnos) or fs.promises.
import t from 'tap'
import crypto from 'node:crypto'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FaultFs, isFuseMount, type FaultFsOptions } from '../helpers/faultfs'
import { errnos, ioSteps, readRange, writeRange } from '../helpers/faultfs/io-probe'
import { errnoOf, fuseSkipReason, sh } from '../helpers/fuse-harness'
import { skipLoudly } from '../helpers/netns'

const MiB = 1 << 20

/** A FaultFs stopped when the test ends. */
async function mounted (t: tap.Test, opts: Partial<FaultFsOptions> = {}): Promise<FaultFs> {
  const ffs = await FaultFs.start({ size: MiB, ...opts })
  t.teardown(() => ffs.stop())
  return ffs
}

/** A temp dir on a real disk (not tmpfs), removed when the test ends. */
async function diskDir (t: tap.Test): Promise<string> {
  const dir = await mkdtemp('/var/tmp/kvblade-faultfs-')
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const reason = fuseSkipReason()
if (reason !== undefined) {
  skipLoudly(t, 'the faultfs tests (FUSE disk with a volatile cache and injected faults)', reason)
} else {
  t.test('one image of the given size and name; nothing else can be made there', async t => {
    const ffs = await mounted(t, { size: 3 * MiB + 512, name: 'lun0.img' })
    t.equal(ffs.path, join(ffs.mountDir, 'lun0.img'))
    t.same(await readdir(ffs.mountDir), ['lun0.img'])
    const st = await stat(ffs.path)
    t.ok(st.isFile())
    t.equal(st.size, 3 * MiB + 512)
    t.equal((await stat(ffs.backing)).size, 3 * MiB + 512, 'the durable file was created at that size')
    t.ok(await isFuseMount(ffs.mountDir), 'listed in mountinfo')
    t.equal(await errnoOf({ op: 'open', path: join(ffs.mountDir, 'new'), flags: 'creat' }), 'EACCES')
    t.equal(await errnoOf({ op: 'unlink', path: ffs.path }), 'EPERM')
  })

  t.test('a write never fsynced is lost in a cut; close and sync(1) do not make it durable', async t => {
    const ffs = await mounted(t)
    const data = crypto.randomBytes(8192)
    t.same(await writeRange(ffs.path, 4096, data), ['OK', 'OK', 'OK'])
    t.ok((await readRange(ffs.path, 4096, 8192)).equals(data), 'another process reads it back (from the cache)')
    t.equal((await sh('sync')).code, 0)
    const st = await ffs.stats()
    t.ok(st.flushes >= 1, `close sent a FLUSH (${st.flushes}) ...`)
    t.equal(st.fsyncs, 0, '... and sync(1) no FSYNC')
    t.equal(st.overlayBytes, 8192, 'the two blocks are volatile')
    t.ok((await ffs.durable(4096, 8192)).equals(Buffer.alloc(8192)), 'nothing reached the durable file')
    await ffs.cut()
    t.same(errnos(await ioSteps(ffs.path, [{ op: 'open' }, { op: 'pread', offset: 4096, length: 8192 }])), ['OK', 'EIO'], 'no power: EIO')
    await ffs.restore()
    t.ok((await readRange(ffs.path, 4096, 8192)).equals(Buffer.alloc(8192)), 'after the cut the write is gone')
    t.equal((await ffs.stats()).overlayBytes, 0)
  })

  t.test('fdatasync and fsync make earlier writes durable: they survive a cut', async t => {
    const ffs = await mounted(t)
    const a = crypto.randomBytes(4096)
    const b = crypto.randomBytes(4096)
    const c = crypto.randomBytes(4096)
    t.same(await writeRange(ffs.path, 0, a, 'fdatasync'), ['OK', 'OK', 'OK', 'OK'])
    t.ok((await ffs.durable(0, 4096)).equals(a), 'fdatasync persisted a before it returned')
    t.same(await writeRange(ffs.path, 65536, b, 'fsync'), ['OK', 'OK', 'OK', 'OK'])
    t.same(await writeRange(ffs.path, 131072, c), ['OK', 'OK', 'OK'])
    t.match(await ffs.stats(), { fsyncs: 2, fdatasyncs: 1, overlayBytes: 4096 })
    await ffs.cut()
    await ffs.restore()
    t.ok((await readRange(ffs.path, 0, 4096)).equals(a), 'a (fdatasync) survived')
    t.ok((await readRange(ffs.path, 65536, 4096)).equals(b), 'b (fsync) survived')
    t.ok((await readRange(ffs.path, 131072, 4096)).equals(Buffer.alloc(4096)), 'c (no sync) did not')
  })

  t.test('partial-block and sector writes merge with the data already there', async t => {
    const dir = await diskDir(t)
    const backing = join(dir, 'prefilled.img')
    const initial = crypto.randomBytes(64 * 1024)
    await writeFile(backing, initial)
    const ffs = await mounted(t, { backing, size: initial.length })
    t.ok((await readRange(ffs.path, 0, initial.length)).equals(initial), 'an existing durable file is served as it is')
    const want = Buffer.from(initial)
    const writes: Array<[number, Buffer]> = [
      [4095, Buffer.from('abc')], // straddles two blocks
      [1536, crypto.randomBytes(512)], // one sector
      [10000, Buffer.from([0x42])], // one byte
      [20000, crypto.randomBytes(5000)], // unaligned at both ends
      [20500, crypto.randomBytes(100)] // inside the previous one
    ]
    const steps = [{ op: 'open' as const }, ...writes.map(([offset, data]) => ({ op: 'pwrite' as const, offset, data })), { op: 'close' as const }]
    const results = await ioSteps(ffs.path, steps)
    t.same(results.map(r => r.value ?? r.errno ?? 'OK'), ['OK', ...writes.map(([, d]) => d.length), 'OK'], 'every write complete')
    for (const [offset, data] of writes) data.copy(want, offset)
    t.ok((await readRange(ffs.path, 0, want.length)).equals(want), 'reads show every write merged over the old bytes')
    t.ok((await ffs.durable()).equals(initial), 'the durable file is untouched')
    t.same(await writeRange(ffs.path, 0, Buffer.alloc(0), 'fdatasync'), ['OK', 'OK', 'OK', 'OK'])
    t.ok((await ffs.durable()).equals(want), 'fdatasync persisted exactly the merged image')
  })

  t.test('O_DIRECT opens work; the kernel passes the flag and splits big requests at max_write', async t => {
    const ffs = await mounted(t, { size: 4 * MiB })
    const data = crypto.randomBytes(MiB)
    const r = await ioSteps(ffs.path, [
      { op: 'open', flags: ['direct'] },
      { op: 'pwrite', offset: MiB, data },
      { op: 'pread', offset: MiB, length: MiB },
      { op: 'pwrite', offset: 3, data: Buffer.from('unaligned') },
      { op: 'pread', offset: 1, length: 11 },
      { op: 'fdatasync' },
      { op: 'close' }
    ])
    t.same(errnos(r), ['OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK'])
    t.equal(r[1].value, MiB)
    t.ok(r[2].data?.equals(data), 'O_DIRECT read back')
    t.equal(r[4].data?.toString('latin1'), '\0\0unaligned', 'direct_io needs no alignment, even with O_DIRECT')
    const st = await ffs.stats()
    t.equal(st.directOpens, 1, 'the open carried O_DIRECT')
    t.ok(st.maxWriteSize <= 131072 && st.maxReadSize <= 131072, `requests of at most 128 KiB (max write ${st.maxWriteSize}, read ${st.maxReadSize})`)
    t.ok(st.writes >= 9, `1 MiB arrived as ${st.writes - 1} writes`)
    t.ok((await ffs.durable(MiB, MiB)).equals(data), 'fdatasync persisted the O_DIRECT write')
  })

  t.test('writes through an O_DSYNC or O_SYNC descriptor are durable when they return', async t => {
    const ffs = await mounted(t)
    const a = crypto.randomBytes(4096)
    const b = crypto.randomBytes(4096)
    t.same(errnos(await ioSteps(ffs.path, [{ op: 'open', flags: ['dsync'] }, { op: 'pwrite', offset: 0, data: a }, { op: 'close' }])), ['OK', 'OK', 'OK'])
    t.same(errnos(await ioSteps(ffs.path, [{ op: 'open', flags: ['sync', 'direct'] }, { op: 'pwrite', offset: 8192, data: b }, { op: 'close' }])), ['OK', 'OK', 'OK'])
    t.match(await ffs.stats(), { forcedWrites: 2, fsyncs: 0, overlayBytes: 0 }, 'no FSYNC came: the server wrote them through')
    await ffs.cut()
    await ffs.restore()
    t.ok((await readRange(ffs.path, 0, 4096)).equals(a))
    t.ok((await readRange(ffs.path, 8192, 4096)).equals(b))
  })

  t.test('injected EIO: exactly the requests touching the range fail, with EIO', async t => {
    const ffs = await mounted(t)
    const block = crypto.randomBytes(4096)
    const io = async (...steps: Parameters<typeof ioSteps>[1]): Promise<string[]> => errnos(await ioSteps(ffs.path, [{ op: 'open' }, ...steps])).slice(1)
    const readAt = (offset: number, length = 4096): Parameters<typeof ioSteps>[1][number] => ({ op: 'pread', offset, length })
    const writeAt = (offset: number, data = block): Parameters<typeof ioSteps>[1][number] => ({ op: 'pwrite', offset, data })

    await ffs.injectEio({ op: 'read', offset: 8192, length: 4096 })
    t.same(await io(readAt(8192), readAt(4096), readAt(12287, 1), readAt(12288), readAt(8191, 2), writeAt(8192)),
      ['EIO', 'OK', 'EIO', 'OK', 'EIO', 'OK'], 'read fault: reads touching [8192, 12288) fail, writes do not')
    await ffs.clearFaults()
    t.same(await io(readAt(8192)), ['OK'], 'cleared')

    await ffs.injectEio({ op: 'write', offset: 8192, length: 4096 })
    t.same(await io(writeAt(8192), writeAt(4096), writeAt(12000, Buffer.alloc(300)), readAt(8192)), ['EIO', 'OK', 'EIO', 'OK'], 'write fault')
    await ffs.clearFaults()

    await ffs.injectEio({ op: 'both', offset: 0, length: 512 })
    t.same(await io(readAt(0), writeAt(0), readAt(512), writeAt(512)), ['EIO', 'EIO', 'OK', 'OK'], 'both')
    await ffs.clearFaults()

    // The kernel splits a big request at 128 KiB: when a later piece fails, the call
    // returns what the earlier pieces moved, not EIO.
    await ffs.injectEio({ op: 'read', offset: 200 * 1024, length: 1 })
    const span = await ioSteps(ffs.path, [{ op: 'open' }, readAt(0, 256 * 1024), readAt(128 * 1024, 128 * 1024)])
    t.same(errnos(span), ['OK', 'OK', 'EIO'])
    t.equal(span[1].data?.length, 128 * 1024, 'a 256 KiB read across the fault is short: the first 128 KiB')
    await ffs.clearFaults()

    await ffs.injectEio({ op: 'read', times: 2 })
    t.same(await io(readAt(0), readAt(65536), readAt(0)), ['EIO', 'EIO', 'OK'], 'times: 2, anywhere')

    await ffs.injectEio({ op: 'fsync' })
    t.same(await io(writeAt(0), { op: 'fdatasync' }), ['OK', 'EIO'], 'fsync fault')
    t.ok((await ffs.durable()).equals(Buffer.alloc(MiB)), 'a failed fsync persisted nothing')
    await ffs.clearFaults()
    t.same(await io({ op: 'fdatasync' }), ['OK'])
    t.match(await ffs.stats(), { eioInjected: 12, faultsInjected: 12, overlayBytes: 0 })
  })

  t.test('injected ENOSPC: writes fail with ENOSPC, reads do not', async t => {
    const ffs = await mounted(t)
    const data = crypto.randomBytes(4096)
    const io = async (...steps: Parameters<typeof ioSteps>[1]): Promise<string[]> => errnos(await ioSteps(ffs.path, [{ op: 'open' }, ...steps])).slice(1)
    await ffs.injectEnospc()
    t.same(await io({ op: 'pwrite', offset: 0, data }, { op: 'pwrite', offset: 500000, data }, { op: 'pread', offset: 0, length: 4096 }),
      ['ENOSPC', 'ENOSPC', 'OK'], 'every write')
    await ffs.clearFaults()
    await ffs.injectEnospc({ offset: 65536, length: 65536 })
    t.same(await io({ op: 'pwrite', offset: 0, data }, { op: 'pwrite', offset: 65536 + 4096, data }, { op: 'pwrite', offset: 131072, data }),
      ['OK', 'ENOSPC', 'OK'], 'a range')
    t.match(await ffs.stats(), { enospcInjected: 3, faultsInjected: 3 })
    t.ok((await readRange(ffs.path, 65536 + 4096, 4096)).equals(Buffer.alloc(4096)), 'the refused write changed nothing')
  })

  t.test('latency delays reads, writes and fsyncs by at least the amount set', async t => {
    const ffs = await mounted(t)
    await ffs.setLatency({ op: 'read', ms: 150 })
    await ffs.setLatency({ op: 'write', ms: 120, offset: 0, length: 4096 })
    await ffs.setLatency({ op: 'fsync', ms: 100 })
    const r = await ioSteps(ffs.path, [
      { op: 'open' },
      { op: 'pread', offset: 0, length: 4096 },
      { op: 'pwrite', offset: 0, data: Buffer.from('slow') },
      { op: 'fdatasync' },
      { op: 'close' }
    ])
    t.same(errnos(r), ['OK', 'OK', 'OK', 'OK', 'OK'])
    t.ok(r[1].ms >= 145, `read took ${r[1].ms.toFixed(1)} ms (>= 150 set)`)
    t.ok(r[2].ms >= 115, `write took ${r[2].ms.toFixed(1)} ms (>= 120 set)`)
    t.ok(r[3].ms >= 95, `fdatasync took ${r[3].ms.toFixed(1)} ms (>= 100 set)`)
    t.ok((await ffs.durable(0, 4)).equals(Buffer.from('slow')), 'the delayed requests were still carried out')
  })

  t.test('resize: stat sees the new size at once; past the end reads are empty and writes fail', async t => {
    const ffs = await mounted(t)
    const data = crypto.randomBytes(8192)
    t.same(await writeRange(ffs.path, 60 * 1024, data), ['OK', 'OK', 'OK'])
    await ffs.resize(64 * 1024)
    t.equal((await stat(ffs.path)).size, 64 * 1024, 'stat')
    t.equal((await stat(ffs.backing)).size, 64 * 1024, 'the durable file shrank too')
    const r = await ioSteps(ffs.path, [
      { op: 'open' },
      { op: 'fstat' },
      { op: 'pread', offset: 64 * 1024, length: 4096 },
      { op: 'pread', offset: 60 * 1024, length: 8192 },
      { op: 'pwrite', offset: 64 * 1024, data },
      { op: 'pwrite', offset: 62 * 1024, data }
    ])
    t.same(errnos(r), ['OK', 'OK', 'OK', 'OK', 'ENOSPC', 'OK'])
    t.equal(r[1].value, 64 * 1024, 'fstat of an open descriptor')
    t.equal(r[2].data?.length, 0, 'a read at the end is empty')
    t.ok(r[3].data?.equals(data.subarray(0, 4096)), 'a read across the end is cut short')
    t.equal(r[5].value, 2048, 'a write across the end is cut short')
    await ffs.resize(128 * 1024)
    t.ok((await readRange(ffs.path, 64 * 1024, 8192)).equals(Buffer.alloc(8192)), 'grown again: zeros past the old end')
    t.equal((await sh('truncate -s 96K "$1"', [ffs.path])).code, 0, 'truncate(1) through the mount')
    t.equal((await stat(ffs.path)).size, 96 * 1024)
    t.equal((await ffs.stats()).size, 96 * 1024)
  })

  t.test('cut: reads, writes and fsyncs fail with EIO, also one waiting in its latency; restore shows only durable data', async t => {
    const ffs = await mounted(t)
    const kept = crypto.randomBytes(4096)
    const lost = crypto.randomBytes(4096)
    t.same(await writeRange(ffs.path, 0, kept, 'fdatasync'), ['OK', 'OK', 'OK', 'OK'])
    t.same(await writeRange(ffs.path, 0, lost), ['OK', 'OK', 'OK'])
    await ffs.setLatency({ op: 'write', ms: 400 })
    // A write that is still waiting when the power goes must not land after it.
    const slow = ioSteps(ffs.path, [{ op: 'open' }, { op: 'pwrite', offset: 8192, data: lost }, { op: 'close' }])
    await new Promise(resolve => setTimeout(resolve, 150))
    await ffs.cut()
    await ffs.clearFaults()
    t.same(errnos(await slow), ['OK', 'EIO', 'OK'], 'the waiting write failed')
    t.same(errnos(await ioSteps(ffs.path, [
      { op: 'open' },
      { op: 'pread', offset: 0, length: 4096 },
      { op: 'pwrite', offset: 0, data: lost },
      { op: 'fdatasync' },
      { op: 'fsync' },
      { op: 'close' }
    ])), ['OK', 'EIO', 'EIO', 'EIO', 'EIO', 'OK'], 'everything fails while the power is off (open and close still work)')
    t.match(await ffs.stats(), { powered: false, overlayBytes: 0, powerOffErrors: 5 })
    await ffs.restore()
    t.ok((await readRange(ffs.path, 0, 4096)).equals(kept), 'the fsynced data')
    t.ok((await readRange(ffs.path, 8192, 4096)).equals(Buffer.alloc(4096)), 'and nothing of the waiting write')
    t.same(await writeRange(ffs.path, 0, lost), ['OK', 'OK', 'OK'], 'writable again')
  })

  t.test('writethrough: writes reach the durable file without fsync; switching persists the cache', async t => {
    const ffs = await mounted(t, { mode: 'writethrough' })
    const a = crypto.randomBytes(4096)
    const b = crypto.randomBytes(4096)
    t.same(await writeRange(ffs.path, 0, a), ['OK', 'OK', 'OK'])
    t.ok((await ffs.durable(0, 4096)).equals(a), 'durable at once')
    t.match(await ffs.stats(), { mode: 'writethrough', overlayBytes: 0 })
    await ffs.setMode('volatile')
    t.same(await writeRange(ffs.path, 4096, b), ['OK', 'OK', 'OK'])
    t.equal((await ffs.stats()).overlayBytes, 4096, 'volatile again: cached')
    await ffs.setMode('writethrough')
    t.ok((await ffs.durable(4096, 4096)).equals(b), 'switching to writethrough persisted it')
    await ffs.cut()
    await ffs.restore()
    t.ok((await readRange(ffs.path, 0, 8192)).equals(Buffer.concat([a, b])))
  })

  t.test('many requests in flight: concurrent overlapping writes and reads stay consistent', async t => {
    const ffs = await mounted(t)
    await ffs.setLatency({ op: 'both', ms: 20 })
    // 48 threads, each writing 6000 bytes of its own value i + 1 at i * 4096 and reading
    // its range back at once. Neighbours overlap by 1904 bytes, and the threads' writes
    // reach the server in whatever order the scheduler gives, so a read may see the
    // predecessor's value (i) in its first 1904 bytes and the successor's (i + 2) in its
    // last 1904; the 2192 bytes between are written by this thread alone.
    const script = String.raw`
import os, sys, threading
fd = os.open(sys.argv[1], os.O_RDWR)
bad = []
def work(i):
    os.pwrite(fd, bytes([i + 1]) * 6000, i * 4096)
    got = os.pread(fd, 6000, i * 4096)
    head = (i, i + 1) if i > 0 else (i + 1,)
    if (len(got) != 6000 or any(b not in head for b in got[:1904])
            or any(b != i + 1 for b in got[1904:4096]) or any(b not in (i + 1, i + 2) for b in got[4096:])):
        bad.append(i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(48)]
for x in ts: x.start()
for x in ts: x.join()
os.fdatasync(fd)
os.close(fd)
print(len(bad))
`
    const child = spawn('python3', ['-c', script, ffs.path], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', d => { out += String(d) })
    const code = await new Promise(resolve => child.on('close', resolve))
    t.equal(code, 0)
    t.equal(out.trim(), '0', 'every read saw its own bytes, or a neighbour\'s where they overlap')
    const image = await readRange(ffs.path, 0, 48 * 4096 + 1904)
    let consistent = true
    for (let i = 0; i < 48; i++) {
      for (let p = i * 4096; p < (i + 1) * 4096; p++) {
        const v = image[p]
        if (v !== i + 1 && !(i > 0 && p < (i - 1) * 4096 + 6000 && v === i)) consistent = false
      }
    }
    t.ok(consistent, 'every byte holds the value of a write that covered it')
    t.ok(image.subarray(48 * 4096, 48 * 4096 + 1904).every(b => b === 48), 'the last write\'s tail')
    t.ok((await ffs.durable(0, image.length)).equals(image), 'fdatasync persisted exactly what reads show')
    // Only reads overlap here: the kernel holds the inode lock across a direct_io write,
    // so writes to one file reach a libfuse 2 server one at a time.
    const st = await ffs.stats()
    t.ok(st.maxInFlight > 1, `requests were served concurrently (at most ${st.maxInFlight} at once)`)
    t.equal(st.inFlight, 0)
  })

  t.test('the server survives garbage on its control channel', async t => {
    const ffs = await mounted(t)
    const garbage = ['', 'not json', '{', '[1,2]', 'null', '7', '"cut"', '{}', '{"op":42}', '{"op":"explode"}',
      '{"op":"eio","ops":"sideways"}', '{"op":"enospc","offset":-4}', '{"op":"latency","ops":"read","ms":1e9}',
      '{"op":"resize","size":"big"}', '{"op":"resize","size":-1}', '{"op":"mode","mode":"writeback"}',
      '{"op":"durable","offset":0}', '{"op":"peek","offset":0,"length":99999999999}', '{"op":"constructor"}',
      '\u0000\u0001\u00ff\ufffd', ' '.repeat(100000), '{"op":"ping"'.repeat(1000)]
    for (const line of garbage) {
      const res = await ffs.sendLine(line)
      t.equal(res.ok, false, `refused ${JSON.stringify(line.slice(0, 40))}: ${JSON.stringify(String(res.error))}`)
    }
    t.same(await ffs.sendLine('{"op":"ping","id":"after"}'), { ok: true, id: 'after' })
    t.ok(ffs.alive)
    t.match(await ffs.stats(), { powered: true, mode: 'volatile', size: MiB }, 'nothing changed')
    t.same(await writeRange(ffs.path, 0, Buffer.from('still here')), ['OK', 'OK', 'OK'])
    t.equal((await ffs.peek(0, 10)).toString(), 'still here')
    await t.rejects(ffs.resize(-5), /size must be/, 'the wrapper throws the server\'s message')
    await t.rejects(ffs.sendLine('{"op":"ping"}\r{"op":"cut"}'), /one line at a time/, 'a CR would split the request in two')
    t.equal((await ffs.stats()).powered, true)
  })

  t.test('SIGTERM unmounts; a SIGKILLed server leaves a stale mount that the next one clears', async t => {
    const dir = await diskDir(t)
    const mnt = join(dir, 'mnt')
    const backing = join(dir, 'durable.img')
    const first = await FaultFs.start({ dir: mnt, backing, size: MiB })
    t.teardown(() => first.stop())
    t.same(await writeRange(first.path, 0, Buffer.from('durable'), 'fdatasync'), ['OK', 'OK', 'OK', 'OK'])
    t.same(await writeRange(first.path, 4096, Buffer.from('volatile')), ['OK', 'OK', 'OK'])
    await first.kill()
    await t.rejects(stat(first.path), { code: 'ENOTCONN' }, 'the dead mount answers ENOTCONN')

    const second = await FaultFs.start({ dir: mnt, backing, size: MiB })
    t.teardown(() => second.stop())
    t.equal((await readRange(second.path, 0, 7)).toString(), 'durable', 'the new server serves the durable file')
    t.ok((await readRange(second.path, 4096, 8)).equals(Buffer.alloc(8)), 'the killed one\'s cache is gone')
    process.kill(second.pid, 'SIGTERM')
    await second.stop()
    t.same(second.exit, { code: 0, signal: null }, 'exited cleanly on SIGTERM')
    t.notOk(await isFuseMount(mnt), 'and unmounted')

    const third = await FaultFs.start({ dir: mnt, backing, size: MiB })
    await third.stop() // stdin EOF
    t.same(third.exit, { code: 0, signal: null }, 'exited cleanly on end of stdin')
    t.notOk(await isFuseMount(mnt), 'and unmounted')
  })
}
