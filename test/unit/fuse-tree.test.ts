import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ControlTree, decodeWrite, formatInterfaces, formatInterfaceStats, formatLatency, formatTargetStat, parseIdentityValue,
  parseTargetName, ROOT_FILES, TARGET_FILES
} from '../../fuse/tree'
import type { FileNode, Node } from '../../fuse/tree'
import { ControlError } from '../../src/control/errors'
import { FsError } from '../../fuse/errors'
import { kvbladeMounts, parseMountinfo } from '../../fuse/mountinfo'
import { FakeControl, DEFAULT_MODEL, DEFAULT_SERIAL } from '../helpers/fake-control'

const dir = mkdtempSync(join(tmpdir(), 'kvblade-fuse-tree-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const img = join(dir, 'disk.img')
writeFileSync(img, Buffer.alloc(512 * 2048)) // 1 MiB = 2048 sectors
const img2 = join(dir, 'disk2.img')
writeFileSync(img2, Buffer.alloc(512 * 10))
const empty = join(dir, 'empty.img')
writeFileSync(empty, '')

function file (node: Node | undefined): FileNode {
  if (node === undefined || node.kind !== 'file') throw new Error('not a file')
  return node
}

async function errnoOf (p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'OK'
  } catch (e) {
    if (e instanceof ControlError || e instanceof FsError) return e.code
    throw e
  }
}

t.test('parseTargetName accepts only canonical names', async t => {
  t.same(parseTargetName('9.0@eth0'), { major: 9, minor: 0, ifname: 'eth0' })
  t.same(parseTargetName('65534.254@enp0s31f6'), { major: 65534, minor: 254, ifname: 'enp0s31f6' })
  for (const bad of ['09.0@eth0', '9.00@eth0', '9.0@', '9@eth0', 'x.0@eth0', '9.0eth0', '123456.0@eth0', '9.1000@eth0']) {
    t.equal(parseTargetName(bad), undefined, bad)
  }
})

t.test('formats', async t => {
  t.equal(formatTargetStat({ reads: 1, readSectors: 22, writes: 333, writeSectors: 4444, flushes: 5, errors: 0, inFlight: 7, frames: 123456789, syncs: 8, syncedWrites: 99 }),
    '       1       22      333     4444        5        0        7 123456789        8       99\n')
  t.equal(formatInterfaceStats([
    { ifname: 'eth0', link: 'up', mtu: 1500, framesIn: 1, framesOut: 2, kernelDrops: 3, ignored: 4, malformed: 5, sendErrors: 6 },
    { ifname: 'lo', link: 'down', mtu: 65536, framesIn: 0, framesOut: 0, kernelDrops: 0, ignored: 0, malformed: 0, sendErrors: 0 }
  ]), 'eth0 1 2 3 4 5 6\nlo 0 0 0 0 0 0\n')
  t.equal(formatInterfaceStats([]), '')
  const counters = { framesIn: 0, framesOut: 0, kernelDrops: 0, ignored: 0, malformed: 0, sendErrors: 0 }
  t.equal(formatInterfaces([
    { ifname: 'eth0', link: 'up', mtu: 1500, ...counters },
    { ifname: 'veth1', link: 'down', mtu: 9000, ...counters },
    { ifname: 'usb0', link: 'gone', mtu: 1500, ...counters },
  ]), 'eth0 up 1500\nveth1 down 9000\nusb0 gone 1500\n')
  t.equal(formatInterfaces([]), '')
  const cases: Array<[string, Parameters<typeof formatLatency>[0], string]> = [
    ['empty', { bounds: [0.001, Infinity], counts: [0, 0], sum: 0, count: 0 }, '0 0.000000000\n0.001 0\n+Inf 0\n'],
    ['cumulative counts as they are', { bounds: [0.00005, 0.0025, Infinity], counts: [3, 7, 9], sum: 0.0123456789, count: 9 },
      '9 0.012345679\n0.00005 3\n0.0025 7\n+Inf 9\n'],
    ['a sum that is not a number', { bounds: [Infinity], counts: [1], sum: NaN, count: 1 }, '1 0\n+Inf 1\n'],
  ]
  for (const [name, h, want] of cases) t.equal(formatLatency(h), want, `latency: ${name}`)
})

t.test('decodeWrite and identity values', async t => {
  t.equal(decodeWrite(Buffer.from('9 0 eth0 /x\n')), '9 0 eth0 /x\n')
  t.equal(decodeWrite(Buffer.from('9\t0 eth0 /ü.img\r\n')), '9\t0 eth0 /ü.img\r\n')
  t.throws(() => decodeWrite(Buffer.from([0xff, 0xfe])), { code: 'EINVAL' })
  t.throws(() => decodeWrite(Buffer.from('a\0b')), { code: 'EINVAL' })
  t.throws(() => decodeWrite(Buffer.from('a\x1bb')), { code: 'EINVAL' })
  t.throws(() => decodeWrite(Buffer.alloc(4097, 0x20)), { code: 'E2BIG' })
  t.equal(decodeWrite(Buffer.alloc(4096, 0x20)).length, 4096)
  t.equal(parseIdentityValue(Buffer.from('My Disk\n'), 'model', 40), 'My Disk')
  t.equal(parseIdentityValue(Buffer.from('My Disk'), 'model', 40), 'My Disk')
  t.equal(parseIdentityValue(Buffer.from('\n'), 'model', 40), '')
  t.equal(parseIdentityValue(Buffer.from('x'.repeat(40) + '\n'), 'model', 40), 'x'.repeat(40))
  t.throws(() => parseIdentityValue(Buffer.from('x'.repeat(41) + '\n'), 'model', 40), { code: 'EINVAL' })
  t.throws(() => parseIdentityValue(Buffer.from('a\nb\n'), 'model', 40), { code: 'EINVAL' })
  t.throws(() => parseIdentityValue(Buffer.from('ünï\n'), 'model', 40), { code: 'EINVAL' })
})

t.test('lookup, listing and contents', async t => {
  const fake = new FakeControl(['eth0', 'lo'], 9000)
  const logs: string[] = []
  const tree = new ControlTree(fake, m => logs.push(m))
  const root = tree.lookup('/')
  t.equal(root?.kind, 'dir')
  if (root?.kind !== 'dir') return
  t.same(root.entries(), [...ROOT_FILES])
  t.equal(root.subdirs(), 0)
  for (const name of ['add', 'del', 'readd', 'announce']) t.equal(file(tree.lookup('/' + name)).access, 'wo', name)
  t.equal(file(tree.lookup('/stat')).access, 'ro')
  t.equal(file(tree.lookup('/stat')).render(), 'eth0 0 0 0 0 0 0\nlo 0 0 0 0 0 0\n')
  t.equal(file(tree.lookup('/interfaces')).access, 'ro')
  t.equal(file(tree.lookup('/interfaces')).render(), 'eth0 up 9000\nlo up 9000\n')
  fake.ifaces.get('lo')!.link = 'down'
  t.equal(file(tree.lookup('/interfaces')).render(), 'eth0 up 9000\nlo down 9000\n', 'link state is live')
  for (const p of ['/nope', '/9.0@eth0', '/add/x', '//add', '/9.0@eth0/scnt', '/stat/']) t.equal(tree.lookup(p), undefined, p)

  await file(tree.lookup('/add')).write(Buffer.from(`9 0 eth0 ${img}\n`))
  t.same(root.entries(), [...ROOT_FILES, '9.0@eth0'])
  t.equal(root.subdirs(), 1)
  const dirNode = tree.lookup('/9.0@eth0')
  t.equal(dirNode?.kind, 'dir')
  if (dirNode?.kind === 'dir') t.same(dirNode.entries(), [...TARGET_FILES])
  const read = (name: string): string => file(tree.lookup('/9.0@eth0/' + name)).render()
  t.equal(read('scnt'), '2048\n')
  t.equal(read('bdev'), '0:0\n')
  t.equal(read('bpath'), img + '\n')
  t.equal(read('busy'), '0\n')
  t.equal(read('mtu'), '9000\n')
  t.equal(read('model'), DEFAULT_MODEL + '\n')
  t.equal(read('sn'), DEFAULT_SERIAL + '\n')
  t.equal(read('stat'), '       0        0        0        0        0        0        0        0        0        0\n')
  t.equal(read('shared'), '0\n')
  t.equal(read('direct'), '0\n')
  t.equal(read('latency'), '0 0.000000000\n0.001 0\n+Inf 0\n')
  for (const name of ['scnt', 'bdev', 'bpath', 'busy', 'mtu', 'stat', 'shared', 'direct', 'latency']) t.equal(file(tree.lookup('/9.0@eth0/' + name)).access, 'ro', name)
  for (const name of ['model', 'sn']) t.equal(file(tree.lookup('/9.0@eth0/' + name)).access, 'rw', name)
  t.equal(tree.lookup('/9.0@eth0/nope'), undefined)
  t.equal(tree.lookup('/09.0@eth0/scnt'), undefined, 'non-canonical spelling')

  // Values are live.
  const info = fake.get({ major: 9, minor: 0, ifname: 'eth0' })
  if (info !== undefined) {
    info.busy = 3
    info.stats.reads = 42
  }
  t.equal(read('busy'), '3\n')
  t.match(read('stat'), /^ {6}42 {8}0 /)
  info!.latency = { bounds: [0.001, Infinity], counts: [4, 5], sum: 0.0035, count: 5 }
  t.equal(read('latency'), '5 0.003500000\n0.001 4\n+Inf 5\n')

  await file(tree.lookup('/9.0@eth0/model')).write(Buffer.from('Model X\n'))
  t.equal(read('model'), 'Model X\n')
  await file(tree.lookup('/9.0@eth0/sn')).write(Buffer.from('SER123'))
  t.equal(read('sn'), 'SER123\n')
  t.equal(await errnoOf(file(tree.lookup('/9.0@eth0/sn')).write(Buffer.from('x'.repeat(21)))), 'EINVAL')
  t.equal(await errnoOf(file(tree.lookup('/9.0@eth0/model')).write(Buffer.from('x'.repeat(41)))), 'EINVAL')
  t.equal(read('model'), 'Model X\n', 'a refused write changes nothing')

  // A node looked up before its target went away reports ENOENT.
  const stale = file(tree.lookup('/9.0@eth0/scnt'))
  const staleModel = file(tree.lookup('/9.0@eth0/model'))
  info!.busy = 0
  await file(tree.lookup('/del')).write(Buffer.from('9 0 eth0\n'))
  t.throws(() => stale.render(), { code: 'ENOENT' })
  t.equal(await errnoOf(staleModel.write(Buffer.from('x\n'))), 'ENOENT')
  t.same(root.entries(), [...ROOT_FILES])
  t.match(logs, [/^add 9 0 eth0 .*: added 9\.0@eth0$/, /model set/, /serial number set/, /^del 9 0 eth0: removed 9\.0@eth0$/])
})

t.test('shared, direct and ro show the options of the add line', async t => {
  const fake = new FakeControl(['eth0'])
  const tree = new ControlTree(fake)
  await file(tree.lookup('/add')).write(Buffer.from(`9 1 eth0 ${img} ro shared direct\n`))
  await file(tree.lookup('/add')).write(Buffer.from(`9 2 eth0 ${img} direct\n`))
  const read = (name: string): string => file(tree.lookup(name)).render()
  t.same(['ro', 'shared', 'direct'].map(f => read(`/9.1@eth0/${f}`)), ['1\n', '1\n', '1\n'])
  t.same(['ro', 'shared', 'direct'].map(f => read(`/9.2@eth0/${f}`)), ['0\n', '0\n', '1\n'])
  t.equal(await errnoOf(file(tree.lookup('/9.1@eth0/shared')).write(Buffer.from('0\n'))), 'EACCES', 'read-only')
})

t.test('command errors carry kvblade errnos', async t => {
  const fake = new FakeControl(['eth0'])
  const logs: string[] = []
  const tree = new ControlTree(fake, m => logs.push(m))
  const w = (name: string, text: string | Buffer): Promise<string> => errnoOf(file(tree.lookup('/' + name)).write(Buffer.from(text)))

  t.equal(await w('add', `9 0 eth0 ${img}\n`), 'OK')
  t.equal(await w('add', `9 0 eth0 ${img}\n`), 'EEXIST')
  t.equal(await w('add', `9 0 eth0\n`), 'EINVAL', 'too few fields')
  t.equal(await w('add', `9 0 eth0 ${img} extra\n`), 'EINVAL', 'too many fields')
  t.equal(await w('add', `nine 0 eth0 ${img}\n`), 'EINVAL', 'not a number')
  t.equal(await w('add', `65535 0 eth0 ${img}\n`), 'EINVAL', 'major out of range')
  t.equal(await w('add', `1 255 eth0 ${img}\n`), 'EINVAL', 'minor out of range')
  t.equal(await w('add', `1 0 eth9 ${img}\n`), 'ENOENT', 'unknown interface')
  t.equal(await w('add', `1 0 eth0 ${dir}/missing.img\n`), 'ENOENT', 'missing backing')
  t.equal(await w('add', `1 0 eth0 ${empty}\n`), 'ENOENT', 'zero-size backing')
  t.equal(await w('add', Buffer.from([0x39, 0x20, 0xff, 0x0a])), 'EINVAL', 'binary junk')
  t.equal(await w('add', ''), 'EINVAL', 'empty')
  t.equal(await w('add', 'x'.repeat(5000)), 'E2BIG', 'longer than a page')
  t.equal(await w('add', `0x10 010 eth0 ${img}\n`), 'OK', 'hex and octal')
  t.ok(fake.get({ major: 16, minor: 8, ifname: 'eth0' }), '0x10 010 is 16.8')
  t.equal(await w('add', `4095 0 eth0 ${img}\n`), 'OK', 'major 4095 is accepted')
  // (the warning for shelf 4095 is the engine's: see cli.test)

  t.equal(await w('del', '9 0\n'), 'EINVAL')
  t.equal(await w('del', '9 1 eth0\n'), 'ENOENT')
  fake.get({ major: 9, minor: 0, ifname: 'eth0' })!.busy = 1
  t.equal(await w('del', '9 0 eth0\n'), 'EBUSY')
  fake.get({ major: 9, minor: 0, ifname: 'eth0' })!.busy = 0
  t.equal(await w('del', '9 0 eth0\n'), 'OK')

  t.equal(await w('readd', `9 0 eth0 ${img}\n`), 'ENOENT', 'readd of an unknown target')
  t.equal(await w('readd', `16 8 eth0\n`), 'EINVAL')
  t.equal(await w('readd', `16 8 eth0 ${img2}\n`), 'OK')
  t.equal(file(tree.lookup('/16.8@eth0/bpath')).render(), img2 + '\n')
  t.equal(file(tree.lookup('/16.8@eth0/scnt')).render(), '10\n')

  const before = fake.announcements
  t.equal(await w('announce', '\n'), 'OK')
  t.equal(await w('announce', Buffer.from([0, 1, 2, 0xff])), 'OK', 'announce takes any write')
  t.equal(await w('announce', 'x'.repeat(5000)), 'E2BIG')
  t.equal(fake.announcements, before + 2)

  t.equal(await w('stat', 'x'), 'EACCES', 'read-only')
  t.throws(() => file(tree.lookup('/add')).render(), { code: 'EACCES' })
})

t.test('parseMountinfo', async t => {
  const text = [
    '23 27 0:22 / /sys rw,relatime - sysfs sysfs rw',
    '43 27 0:39 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:1 - fuse.kvblade kvblade rw,user_id=0,group_id=0',
    '44 27 0:40 / /mnt rw - tmpfs tmp\\134fs rw',
    ''
  ].join('\n')
  t.same(parseMountinfo(text), [
    { mountPoint: '/sys', fstype: 'sysfs', source: 'sysfs', device: '0:22' },
    { mountPoint: '/tmp/a b', fstype: 'fuse.kvblade', source: 'kvblade', device: '0:39' },
    { mountPoint: '/mnt', fstype: 'tmpfs', source: 'tmp\\fs', device: '0:40' }
  ])
})

t.test('kvbladeMounts: one entry per control plane, bind mounts counted once', async t => {
  const line = (id: number, dev: string, dir: string, type: string): string => `${id} 1 ${dev} / ${dir} rw - ${type} kvblade rw`
  const cases: Array<[string, string[], string[]]> = [
    ['none', [line(1, '0:22', '/sys', 'sysfs')], []],
    ['one', [line(1, '0:22', '/sys', 'sysfs'), line(2, '0:50', '/mnt/kvblade', 'fuse.kvblade')], ['/mnt/kvblade']],
    ['a bind mount of it (kvblade sysfs)', [line(2, '0:50', '/mnt/kvblade', 'fuse.kvblade'), line(3, '0:50', '/sys/kvblade', 'fuse.kvblade')], ['/mnt/kvblade']],
    ['two daemons', [line(2, '0:50', '/mnt/kvblade', 'fuse.kvblade'), line(3, '0:51', '/srv/kv', 'fuse.kvblade')], ['/mnt/kvblade', '/srv/kv']],
    ['another FUSE file system', [line(2, '0:52', '/mnt/sshfs', 'fuse.sshfs')], []],
  ]
  for (const [name, lines, want] of cases) t.same(kvbladeMounts(parseMountinfo(lines.join('\n'))), want, name)
})
