// kvblade's helper scripts against the control plane: our scripts/kvadd, kvdel, kvstat,
// and verbatim copies of kvblade's ORIGINAL scripts (which hard-code /sys/kvblade) run
// through runWithSysfs, with kvstat's output checked byte for byte.
import t from 'tap'
import { chmodSync, mkdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { mountControlPlane } from '../../fuse/mount'
import type { MountedControlPlane } from '../../fuse/mount'
import { runWithSysfs } from '../../fuse/sysfs-namespace'
import { FakeControl } from '../helpers/fake-control'
import { exec, fuseSkipReason, kvstatLine, mountPoints, removeDir, SCRIPTS, sh, tempDir } from '../helpers/fuse-harness'

// kvblade's scripts, exactly as shipped (github.com/MatiasBjorling/kvblade: kvadd, kvdel, kvstat).
const ORIGINAL_KVADD = `#!/bin/sh

if [ $# -ne 4 ]; then
\techo 1>&2 usage: $0 major minor ifname bpath
\texit 1
fi

if [ ! -d /sys/kvblade ]; then
\techo 2>&1 missing /sys/kvblade
\texit 1
fi

echo $* >/sys/kvblade/add && exit 0
echo 1>&2 unsuccessful.  see syslog for explanation.

`
const ORIGINAL_KVDEL = `#!/bin/sh

if [ ! -d /sys/kvblade ]; then
\techo 2>&1 missing /sys/kvblade
\texit 1
fi

if [ $# -ne 3 ]; then
\techo 2>&1 usage: $0 major minor ifname
\texit 1
fi

echo $* >/sys/kvblade/del && exit 0
echo 1>&2 unsuccessful.  see syslog for explanation.

`
const ORIGINAL_KVSTAT = `#!/bin/sh

set -e
format="%10s %6s %10s %-14s\\n"
if [ ! -d /sys/kvblade ]; then
\techo 1>&2 missing /sys/kvblade
\texit 1
fi

for d in \`ls -d /sys/kvblade/* | grep '[0-9]*\\.[0-9]*@'\`; do
\ttest $d = end && continue

\tdev=\`basename "$d" | awk -F@ '{print $1}'\`
\tnetif=\`basename "$d" | awk -F@ '{print $2}'\`
\tbpath="\`cat \\"$d/bpath\\"\`"
\tsectors="\`cat \\"$d/scnt\\"\`"
\tpsize=\`echo "(512000 * $sectors) / (1000 * 1000 * 1000)" | bc\`
\tpsize=\`printf "%04d\\n" $psize | sed 's!\\(...\\)$!.\\1!'\`
\tprintf "$format" \\
\t\t"$dev" \\
\t\t"$netif" \\
\t\t"\${psize}GB" \\
\t\t"$bpath"
done | sort

`

const reason = fuseSkipReason(['unshare', 'bc', 'awk'])
if (reason !== undefined) {
  process.stderr.write(`\n*** SKIPPING the kvadd/kvdel/kvstat integration tests: ${reason} ***\n\n`)
  t.skip(`kvblade helper scripts on the control plane: SKIPPED because ${reason}`, () => {})
} else {
  // `sort` must order lines the same way as the expectation below.
  process.env.LC_ALL = 'C'
  const work = tempDir('fuse-scripts')
  const mnt = join(work, 'kvblade')
  const big = join(work, 'big.img')
  const small = join(work, 'small.img')
  const tiny = join(work, 'a-rather-long-backing-file-name.img')
  writeFileSync(big, '')
  truncateSync(big, 2 * 1024 ** 4) // 2 TiB sparse: 4294967296 sectors
  writeFileSync(small, '')
  truncateSync(small, 1 << 30)
  writeFileSync(tiny, Buffer.alloc(512 * 3))
  const orig = join(work, 'orig')
  mkdirSync(orig)
  for (const [name, text] of [['kvadd', ORIGINAL_KVADD], ['kvdel', ORIGINAL_KVDEL], ['kvstat', ORIGINAL_KVSTAT]]) {
    writeFileSync(join(orig, name), text)
    chmodSync(join(orig, name), 0o755)
  }
  const fake = new FakeControl(['eth0', 'lo'])
  let mp: MountedControlPlane | undefined
  t.before(async () => {
    mp = await mountControlPlane(fake, mnt)
  })
  t.teardown(async () => {
    await mp?.unmount().catch(() => {})
    removeDir(work)
  })

  const ours = (name: string): string => join(SCRIPTS, name)

  /** Runs argv in the private /sys namespace, collecting output through a file (stdio is inherited). */
  async function inSysfs (script: string, args: string[] = []): Promise<{ code: number, out: string }> {
    const out = join(work, `out-${Math.random().toString(36).slice(2)}`)
    const code = await runWithSysfs(mnt, ['/bin/sh', '-c', `{
${script}
} >"$0" 2>&1`, out, ...args])
    return { code, out: readFileSync(out, 'utf8') }
  }

  function expectedKvstat (): string {
    return fake.list().map(i => kvstatLine(`${i.major}.${i.minor}`, i.ifname, i.sectors, i.path)).sort().join('')
  }

  t.test('kvblade original scripts, unchanged, through runWithSysfs', async t => {
    const hostMounts = mountPoints().length
    let r = await inSysfs('sh "$1" 9 0 eth0 "$2"', [join(orig, 'kvadd'), big])
    t.same(r, { code: 0, out: '' }, 'original kvadd')
    r = await inSysfs('sh "$1" 10 1 lo "$2"', [join(orig, 'kvadd'), small])
    t.same(r, { code: 0, out: '' })
    r = await inSysfs('sh "$1" 4095 254 eth0 "$2"', [join(orig, 'kvadd'), tiny])
    t.same(r, { code: 0, out: '' })
    t.same(fake.list().map(i => `${i.major}.${i.minor}@${i.ifname}`).sort(), ['10.1@lo', '4095.254@eth0', '9.0@eth0'])

    r = await inSysfs('sh "$1"', [join(orig, 'kvstat')])
    t.equal(r.code, 0)
    const expected = expectedKvstat()
    t.equal(r.out, expected, 'original kvstat, byte for byte')
    t.ok(expected.includes(`       9.0   eth0 2199.023GB ${big}\n`), 'the 2 TiB line')
    t.ok(expected.includes(`  4095.254   eth0    0.000GB ${tiny}\n`), 'the 3-sector line')
    t.ok(expected.includes(`      10.1     lo    1.073GB ${small}\n`), 'the 1 GiB line')

    r = await inSysfs('sh "$1" 9 0 eth0 "$2"', [join(orig, 'kvadd'), big])
    t.match(r.out, /unsuccessful\. see syslog for explanation\./, 'original kvadd reports a duplicate')
    r = await inSysfs('sh "$1" 10 1 lo', [join(orig, 'kvdel')])
    t.same(r, { code: 0, out: '' }, 'original kvdel')
    r = await inSysfs('sh "$1" 10 1 lo', [join(orig, 'kvdel')])
    t.match(r.out, /unsuccessful/, 'original kvdel of a missing target')
    r = await inSysfs('sh "$1"', [join(orig, 'kvstat')])
    t.equal(r.out, expectedKvstat(), 'original kvstat after del')

    // The namespace is private: the host's /sys and mount table are as before.
    t.equal(mountPoints().length, hostMounts, 'no mounts leaked to the host')
    t.notOk(mountPoints().includes('/sys/kvblade'))
    await t.rejects(readdir('/sys/kvblade'), { code: 'ENOENT' }, 'no /sys/kvblade on the host')
  })

  t.test('inside the namespace /sys still works', async t => {
    const host = await exec('/bin/sh', ['-c', 'ls /sys; ls /sys/class/net; cat /sys/kernel/address_bits 2>/dev/null; ls /sys/fs/cgroup | head -3'])
    const inside = await inSysfs('ls /sys | grep -v "^kvblade$"; ls /sys/class/net; cat /sys/kernel/address_bits 2>/dev/null; ls /sys/fs/cgroup | head -3')
    t.equal(inside.out, host.stdout, 'same entries, same values, submounts too')
    const ro = await inSysfs('mkdir /sys/foo; echo "rc=$?"')
    t.match(ro.out, /rc=1/, 'the /sys root cannot be written')
    const status = await runWithSysfs(mnt, ['/bin/sh', '-c', 'exit 42'])
    t.equal(status, 42, 'exit status is passed through')
    t.equal(await runWithSysfs(mnt, ['/bin/sh', '-c', 'kill -TERM $$']), 128 + 15, 'death by signal is 128+n')
    await t.rejects(runWithSysfs(join(work, 'not-mounted'), ['true']), /no kvblade control plane is mounted/)
  })

  t.test('our kvadd/kvdel/kvstat with -d', async t => {
    let r = await exec(ours('kvadd'), ['-d', mnt, '20', '3', 'eth0', small])
    t.same([r.code, r.stdout, r.stderr], [0, '', ''], 'kvadd')
    r = await exec(ours('kvadd'), ['-d', mnt, '20', '3', 'eth0', small])
    t.equal(r.code, 1, 'a refused add exits 1')
    t.match(r.stderr, /unsuccessful\.  see the kvblade daemon's log for explanation\./)
    r = await exec(ours('kvadd'), ['-d', mnt, '20', '3', 'eth0'])
    t.equal(r.code, 1)
    t.match(r.stderr, /usage: .*kvadd \[-d dir\] major minor ifname bpath/)
    r = await exec(ours('kvadd'), ['-d', join(work, 'nowhere'), '20', '4', 'eth0', small])
    t.equal(r.code, 1)
    t.match(r.stderr, /missing .*nowhere/)

    r = await exec(ours('kvstat'), ['-d', mnt])
    t.same([r.code, r.stderr], [0, ''])
    t.equal(r.stdout, expectedKvstat(), 'our kvstat, byte for byte')
    const original = await inSysfs('sh "$1"', [join(orig, 'kvstat')])
    t.equal(r.stdout, original.out, 'identical to the original kvstat')

    r = await exec(ours('kvdel'), ['-d', mnt, '20', '3', 'eth0'])
    t.same([r.code, r.stdout, r.stderr], [0, '', ''], 'kvdel')
    r = await exec(ours('kvdel'), ['-d', mnt, '20', '3', 'eth0'])
    t.equal(r.code, 1)
    t.match(r.stderr, /unsuccessful/)
    r = await exec(ours('kvdel'), ['-d', mnt, '20'])
    t.match(r.stderr, /usage: .*kvdel \[-d dir\] major minor ifname/)
  })

  t.test('our scripts find the control plane: KVBLADE_SYSFS, /sys/kvblade, /mnt/kvblade', async t => {
    const env = { ...process.env, KVBLADE_SYSFS: mnt }
    let r = await exec(ours('kvadd'), ['21', '0', 'lo', tiny], { env })
    t.equal(r.code, 0, 'kvadd via KVBLADE_SYSFS')
    r = await exec(ours('kvstat'), [], { env })
    t.equal(r.stdout, expectedKvstat(), 'kvstat via KVBLADE_SYSFS')
    const inside = await inSysfs('"$1" 21 1 lo "$2" && "$3"', [ours('kvadd'), tiny, ours('kvstat')])
    t.equal(inside.out, expectedKvstat(), 'default /sys/kvblade inside `kvblade sysfs --`')
    t.ok(fake.get({ major: 21, minor: 1, ifname: 'lo' }))
    // /mnt/kvblade as the fallback, in a private namespace so the host's /mnt is untouched.
    const script = 'mount -t tmpfs none /mnt && mkdir /mnt/kvblade && mount --bind "$1" /mnt/kvblade && "$2" 21 1 lo && "$3"'
    r = await exec('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', script, 'sh', mnt, ours('kvdel'), ours('kvstat')])
    t.equal(r.code, 0, r.stderr)
    t.notOk(fake.get({ major: 21, minor: 1, ifname: 'lo' }), 'kvdel via /mnt/kvblade')
    t.equal(r.stdout, expectedKvstat(), 'kvstat via /mnt/kvblade')
    r = await exec(ours('kvdel'), ['21', '0', 'lo'], { env })
    t.equal(r.code, 0)
  })

  t.test('our kvstat without bc computes the same', async t => {
    const bin = join(work, 'bin-without-bc')
    mkdirSync(bin)
    for (const tool of ['cat', 'sed', 'sort', 'printf']) {
      const found = (await sh(`command -v ${tool} || true`)).stdout.trim()
      if (found.startsWith('/')) symlinkSync(found, join(bin, tool))
    }
    const r = await exec('/bin/sh', [ours('kvstat'), '-d', mnt], { env: { PATH: bin, LC_ALL: 'C' } })
    t.equal(r.stderr, '')
    t.equal(r.stdout, expectedKvstat(), 'same bytes with shell arithmetic')
    t.ok(r.stdout.includes('2199.023GB'))
  })
}
