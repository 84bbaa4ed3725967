// The fuse-native operations, called directly (no mount): open modes, the write rules,
// reads from a snapshot, and the refusals of name-space changes.
import t from 'tap'
import { constants } from 'node:fs'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { constants as osConstants, tmpdir } from 'node:os'
import { join } from 'node:path'
import { ControlFilesystem } from '../../fuse/filesystem'
import { ControlTree } from '../../fuse/tree'
import { fuseOptionString } from '../../fuse/mount'
import { FakeControl } from '../helpers/fake-control'

const dir = mkdtempSync(join(tmpdir(), 'kvblade-fuse-fs-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const img = join(dir, 'disk.img')
writeFileSync(img, Buffer.alloc(512 * 4))

const E = (name: keyof typeof osConstants.errno): number => -osConstants.errno[name]

function setup (): { fake: FakeControl, fs: ControlFilesystem, ops: ReturnType<ControlFilesystem['ops']>, logs: string[] } {
  const fake = new FakeControl(['eth0'])
  const logs: string[] = []
  const fs = new ControlFilesystem(new ControlTree(fake, m => logs.push(m)), { log: m => logs.push(m), uid: 0, gid: 0 })
  return { fake, fs, ops: fs.ops(), logs }
}

function call<T extends unknown[]> (fn: ((...args: any[]) => void) | undefined, ...args: unknown[]): Promise<T> {
  return new Promise(resolve => { fn!(...args, (...res: unknown[]) => resolve(res as T)) })
}

async function open (ops: ReturnType<ControlFilesystem['ops']>, path: string, flags: number): Promise<number> {
  const [code, fd] = await call<[number, number]>(ops.open, path, flags)
  if (code !== 0) return code
  return fd
}

async function write (ops: ReturnType<ControlFilesystem['ops']>, path: string, fd: number, text: string | Buffer, pos = 0): Promise<number> {
  const buf = Buffer.from(text)
  const [n] = await call<[number]>(ops.write, path, fd, buf, buf.length, pos)
  return n
}

async function read (ops: ReturnType<ControlFilesystem['ops']>, path: string, fd: number, len: number, pos: number): Promise<string | number> {
  const buf = Buffer.alloc(len)
  const [n] = await call<[number]>(ops.read, path, fd, buf, len, pos)
  return n < 0 ? n : buf.subarray(0, n).toString()
}

t.test('getattr and readdir', async t => {
  const { ops } = setup()
  const [c1, root] = await call<[number, any]>(ops.getattr, '/')
  t.equal(c1, 0)
  t.equal(root.mode, 0o040755)
  t.equal(root.nlink, 2)
  const [c2, add] = await call<[number, any]>(ops.getattr, '/add')
  t.equal(c2, 0)
  t.equal(add.mode, 0o100200)
  t.equal(add.size, 0)
  const [, st] = await call<[number, any]>(ops.getattr, '/stat')
  t.equal(st.mode, 0o100444)
  t.equal(st.size, 'eth0 0 0 0 0 0 0\n'.length, 'exact size of the content')
  t.same(await call(ops.getattr, '/nope'), [E('ENOENT')])
  t.same(await call(ops.readdir, '/'), [0, ['.', '..', 'add', 'announce', 'del', 'interfaces', 'readd', 'reload', 'stat']])
  t.same(await call(ops.readdir, '/add'), [E('ENOTDIR')])
  t.same(await call(ops.readdir, '/nope'), [E('ENOENT')])
})

t.test('open modes follow sysfs', async t => {
  const { ops, fake, fs } = setup()
  await fake.add({ major: 1, minor: 2, ifname: 'eth0', path: img })
  t.equal(await open(ops, '/add', constants.O_RDONLY), E('EACCES'), 'reading a write-only file')
  t.equal(await open(ops, '/add', constants.O_RDWR), E('EACCES'))
  t.equal(await open(ops, '/1.2@eth0/scnt', constants.O_WRONLY), E('EACCES'), 'writing a read-only file')
  t.equal(await open(ops, '/stat', constants.O_RDWR), E('EACCES'))
  t.equal(await open(ops, '/nope', constants.O_RDONLY), E('ENOENT'))
  t.equal(await open(ops, '/', constants.O_RDONLY), E('EISDIR'))
  const fd = await open(ops, '/1.2@eth0/model', constants.O_RDWR)
  t.ok(fd > 0)
  t.equal(fs.openHandles, 1)
  t.same(await call(ops.release, '/1.2@eth0/model', fd), [0])
  t.equal(fs.openHandles, 0)
})

t.test('writes: one command per call, offsets, sizes', async t => {
  const { ops, fake } = setup()
  const fd = await open(ops, '/add', constants.O_WRONLY)
  const cmd = `1 0 eth0 ${img}\n`
  t.equal(await write(ops, '/add', fd, cmd), cmd.length, 'success returns the full length')
  t.equal(fake.list().length, 1)
  const cmd2 = `1 1 eth0 ${img}\n`
  t.equal(await write(ops, '/add', fd, cmd2, cmd.length), cmd2.length, 'a sequential write is the next command')
  t.equal(fake.list().length, 2)
  const cmd3 = `1 2 eth0 ${img}\n`
  t.equal(await write(ops, '/add', fd, cmd3, 5), E('EINVAL'), 'a write elsewhere is refused')
  t.equal(fake.list().length, 2, 'and does nothing')
  t.equal(await write(ops, '/add', fd, cmd3, 0), cmd3.length, 'offset 0 is always fine')
  t.equal(await write(ops, '/add', fd, 'x'.repeat(4097)), E('E2BIG'))
  t.equal(await write(ops, '/add', fd, Buffer.from([0xc3, 0x28, 0x0a])), E('EINVAL'))
  t.equal(await write(ops, '/add', 999, 'x'), E('EBADF'))
  await call(ops.release, '/add', fd)
  t.equal(fake.list().length, 3)

  const afd = await open(ops, '/1.0@eth0/model', constants.O_WRONLY | constants.O_APPEND)
  t.equal(await write(ops, '/1.0@eth0/model', afd, 'Appended\n', 22), 9, 'O_APPEND writes land anywhere')
  t.equal(fake.list()[0].model, 'Appended')
  await call(ops.release, '/1.0@eth0/model', afd)
})

t.test('reads come from a snapshot refreshed at offset 0', async t => {
  const { ops, fake } = setup()
  await fake.add({ major: 1, minor: 0, ifname: 'eth0', path: img })
  const fd = await open(ops, '/1.0@eth0/busy', constants.O_RDONLY)
  t.equal(await read(ops, '/1.0@eth0/busy', fd, 4096, 0), '0\n')
  fake.list()[0].busy = 12345
  t.equal(await read(ops, '/1.0@eth0/busy', fd, 4096, 1), '\n', 'same rendering past offset 0')
  t.equal(await read(ops, '/1.0@eth0/busy', fd, 4096, 2), '', 'EOF')
  t.equal(await read(ops, '/1.0@eth0/busy', fd, 3, 0), '123', 'fresh at offset 0')
  t.equal(await read(ops, '/1.0@eth0/busy', fd, 4096, 3), '45\n')
  fake.list()[0].busy = 0
  await fake.del({ major: 1, minor: 0, ifname: 'eth0' })
  t.equal(await read(ops, '/1.0@eth0/busy', fd, 4096, 0), E('ENOENT'), 'target gone')
  await call(ops.release, '/1.0@eth0/busy', fd)
})

t.test('name space is fixed; truncation is a no-op', async t => {
  const { ops, fake } = setup()
  await fake.add({ major: 1, minor: 0, ifname: 'eth0', path: img })
  t.same(await call(ops.mkdir, '/x', 0o755), [E('EPERM')])
  t.same(await call(ops.rmdir, '/1.0@eth0'), [E('EPERM')])
  t.same(await call(ops.unlink, '/add'), [E('EPERM')])
  t.same(await call(ops.rename, '/add', '/b'), [E('EPERM')])
  t.same(await call(ops.symlink, '/add', '/b'), [E('EPERM')])
  t.same(await call(ops.link, '/add', '/b'), [E('EPERM')])
  t.same(await call(ops.chmod, '/add', 0o777), [E('EPERM')])
  t.same(await call(ops.chown, '/add', 1, 1), [E('EPERM')])
  t.same(await call(ops.create, '/new', 0o644), [E('EACCES')])
  t.same(await call(ops.mknod, '/new', 0o644, 0), [E('EACCES')])
  t.same(await call(ops.truncate, '/add', 0), [0])
  t.same(await call(ops.truncate, '/1.0@eth0/sn', 0), [0])
  t.same(await call(ops.truncate, '/1.0@eth0/scnt', 0), [E('EACCES')])
  t.same(await call(ops.truncate, '/nope', 0), [E('ENOENT')])
  t.same(await call(ops.truncate, '/', 0), [E('EISDIR')])
  t.same(await call(ops.utimens, '/add', 0, 0), [0])
  t.same(fake.list().map(i => i.serial), ['SN HERE'], 'truncate did not touch the value')
})

t.test('mount options', async t => {
  const root = fuseOptionString(0)
  for (const o of ['direct_io', 'entry_timeout=0', 'attr_timeout=0', 'default_permissions', 'allow_other', 'subtype=kvblade', 'fsname=kvblade']) {
    t.ok(root.split(/[-o,]/).includes(o) || root.includes(o), o)
  }
  t.notMatch(fuseOptionString(1000), /allow_other/, 'allow_other only as root')
})
