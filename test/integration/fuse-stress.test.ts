// Abuse: 10,000 random and garbage writes to every control file must fail cleanly and
// leave the targets as they were; concurrent shells adding and deleting must all get
// consistent answers; the file system keeps serving throughout.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mountControlPlane } from '../../fuse/mount'
import type { MountedControlPlane } from '../../fuse/mount'
import { FakeControl } from '../helpers/fake-control'
import { exec, fuseSkipReason, isMountPoint, removeDir, sh, tempDir } from '../helpers/fuse-harness'

const WRITES_PER_FILE = 10_000

const FUZZ = String.raw`
import errno, json, os, random, sys
seed, mnt, img, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
files = sys.argv[5:]
rnd = random.Random(seed)
WORDS = ['9', '0', '1', '0x', '0x1g', '0xffff', '08', '-1', '+1', '65535', '255', '99999999999999999999', '1e3',
         'eth0', 'lo', 'nope0', 'eth0/x', '/nonexistent/' + str(seed), img + '.missing', mnt + '/stat', mnt, '.',
         '\t', '\n', '\r', 'a\x00b', '\u00e9', '\ufffd']
CHARS = b' \t\n0123456789xX.@/abcdefgh'

def garbage():
    r = rnd.random()
    if r < 0.25:
        return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
    if r < 0.30:
        return b'z' * rnd.randint(4097, 9000)
    if r < 0.60:
        return ' '.join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 7))).encode('utf-8', 'surrogatepass') or b'\n'
    if r < 0.85:
        return bytes(rnd.choice(CHARS) for _ in range(rnd.randint(1, 80)))
    return rnd.choice([b'\n', b' ', b'\x00', b'\xff\xfe', b'9 0 eth0', b'9 0 eth0 ' + img.encode() + b' extra\n',
                       b'9 0 nope0 ' + img.encode() + b'\n', b'70000 0 eth0 ' + img.encode() + b'\n'])

result = {}
for f in files:
    path = os.path.join(mnt, f)
    counts = {}
    fd = None
    for i in range(n):
        data = garbage()
        if fd is None or rnd.random() < 0.5:
            if fd is not None:
                os.close(fd)
            fd = os.open(path, os.O_WRONLY | (os.O_TRUNC if rnd.random() < 0.2 else 0))
        try:
            if rnd.random() < 0.1:
                os.pwrite(fd, data, rnd.randint(1, 100000))
            else:
                os.write(fd, data)
            key = 'OK'
        except OSError as e:
            key = errno.errorcode.get(e.errno, str(e.errno))
        counts[key] = counts.get(key, 0) + 1
    os.close(fd)
    result[f] = counts
print(json.dumps(result))
`

const reason = fuseSkipReason()
if (reason !== undefined) {
  process.stderr.write(`\n*** SKIPPING the FUSE stress integration tests: ${reason} ***\n\n`)
  t.skip(`FUSE control plane under garbage and concurrency: SKIPPED because ${reason}`, () => {})
} else {
  const work = tempDir('fuse-stress')
  const mnt = join(work, 'kvblade')
  const img = join(work, 'disk.img')
  writeFileSync(img, Buffer.alloc(512 * 100))
  const fake = new FakeControl(['eth0', 'lo'])
  const logs: string[] = []
  let mp: MountedControlPlane | undefined

  t.before(async () => {
    // Target numbers the fuzzer cannot spell, so no garbage can legitimately delete them.
    await fake.add({ major: 4242, minor: 7, ifname: 'eth0', path: img })
    await fake.add({ major: 4243, minor: 8, ifname: 'lo', path: img })
    mp = await mountControlPlane(fake, mnt, m => logs.push(m))
  })
  t.teardown(async () => {
    await mp?.unmount().catch(() => {})
    removeDir(work)
  })

  t.test(`${WRITES_PER_FILE} garbage writes to each control file`, async t => {
    const before = fake.snapshot()
    const files = ['add', 'del', 'readd', 'announce']
    const r = await exec('python3', ['-c', FUZZ, '20240611', mnt, img, String(WRITES_PER_FILE), ...files], { timeoutMs: 600_000 })
    t.equal(r.code, 0, r.stderr)
    const counts = JSON.parse(r.stdout) as Record<string, Record<string, number>>
    t.comment(JSON.stringify(counts))
    for (const f of files) {
      const total = Object.values(counts[f]).reduce((a, b) => a + b, 0)
      t.equal(total, WRITES_PER_FILE, `${f}: every write answered`)
    }
    for (const f of ['add', 'del', 'readd']) {
      t.equal(counts[f].OK ?? 0, 0, `${f}: no garbage accepted`)
      t.same(Object.keys(counts[f]).filter(k => !['EINVAL', 'ENOENT', 'E2BIG'].includes(k)), [], `${f}: only EINVAL, ENOENT, E2BIG`)
      t.ok((counts[f].EINVAL ?? 0) > 0 && (counts[f].E2BIG ?? 0) > 0, `${f}: both kinds of refusal seen`)
    }
    t.same(Object.keys(counts.announce).filter(k => !['OK', 'EINVAL', 'E2BIG'].includes(k)), [], 'announce: OK, or EINVAL (offset) / E2BIG (size)')
    t.equal(fake.announcements, counts.announce.OK, 'each accepted announce write announced once')
    t.same(fake.snapshot(), before, 'the targets are exactly as before')
    t.equal(fake.calls.filter(c => c.op === 'add' || c.op === 'del' || c.op === 'readd').every(c => c.op !== 'del' || (c.arg as { major: number }).major < 4242), true, 'no del reached an existing target')
    // Still serving.
    t.equal((await sh('cat "$1/4242.7@eth0/scnt"', [mnt])).stdout, '100\n')
    t.equal(await readFile(join(mnt, '4243.8@lo', 'bpath'), 'utf8'), img + '\n')
    t.ok(isMountPoint(mnt))
  })

  t.test('garbage to model and sn: accepted or EINVAL, never anything else', async t => {
    const r = await exec('python3', ['-c', FUZZ, '7', mnt, img, '2000', '4242.7@eth0/model', '4242.7@eth0/sn'], { timeoutMs: 300_000 })
    t.equal(r.code, 0, r.stderr)
    const counts = JSON.parse(r.stdout) as Record<string, Record<string, number>>
    t.comment(JSON.stringify(counts))
    for (const f of Object.keys(counts)) {
      t.same(Object.keys(counts[f]).filter(k => !['OK', 'EINVAL', 'E2BIG'].includes(k)), [], f)
    }
    const info = fake.get({ major: 4242, minor: 7, ifname: 'eth0' })!
    t.ok(info.model.length <= 40 && /^[\x20-\x7e]*$/.test(info.model), `model is printable and short: ${JSON.stringify(info.model)}`)
    t.ok(info.serial.length <= 20 && /^[\x20-\x7e]*$/.test(info.serial), `sn is printable and short: ${JSON.stringify(info.serial)}`)
  })

  t.test('concurrent add/del from several shells', async t => {
    fake.delayMs = 1
    t.teardown(() => { fake.delayMs = 0 })
    const before = fake.snapshot()
    const loop = 'i=0; while [ $i -lt 25 ]; do i=$((i+1)); echo "$2 $i eth0 $3" >"$1/add" || exit 1; [ -d "$1/$2.$i@eth0" ] || exit 3; cat "$1/$2.$i@eth0/scnt" >/dev/null || exit 4; echo "$2 $i eth0" >"$1/del" || exit 2; done'
    const readers = 'i=0; while [ $i -lt 50 ]; do i=$((i+1)); ls "$1" >/dev/null || exit 1; cat "$1/stat" >/dev/null || exit 2; done'
    const jobs = [
      ...Array.from({ length: 8 }, (_, k) => sh(loop, [mnt, String(100 + k), img])),
      ...Array.from({ length: 3 }, () => sh(readers, [mnt]))
    ]
    const results = await Promise.all(jobs)
    results.forEach((r, i) => t.equal(r.code, 0, `shell ${i}: ${r.stderr}`))
    t.same(fake.snapshot(), before, 'all added targets deleted again')
  })

  t.test('racing shells: one add wins, the rest get EEXIST; one del wins, the rest ENOENT', async t => {
    fake.delayMs = 2
    t.teardown(() => { fake.delayMs = 0 })
    const add = await Promise.all(Array.from({ length: 8 }, () => exec('/bin/bash', ['-c', 'echo 77 1 eth0 "$2" >"$1/add"', 'bash', mnt, img])))
    t.equal(add.filter(r => r.code === 0).length, 1, 'exactly one add succeeded')
    t.equal(add.filter(r => /File exists/.test(r.stderr)).length, 7, 'the others: EEXIST')
    const del = await Promise.all(Array.from({ length: 8 }, () => exec('/bin/bash', ['-c', 'echo 77 1 eth0 >"$1/del"', 'bash', mnt])))
    t.equal(del.filter(r => r.code === 0).length, 1, 'exactly one del succeeded')
    t.equal(del.filter(r => /No such file or directory/.test(r.stderr)).length, 7, 'the others: ENOENT')
  })
}
