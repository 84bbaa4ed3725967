/**
 * `kvblade sysfs -- COMMAND [ARGS]`: runs COMMAND in a private mount namespace in which
 * /sys looks as before and /sys/kvblade is the control plane, so kvblade's original
 * scripts (kvadd, kvdel, kvstat), which hard-code /sys/kvblade, work unchanged.
 *
 * Inside `unshare --mount --propagation private`:
 *   1. the real /sys (with its submounts) is bind-mounted onto a staging directory;
 *   2. a tmpfs is mounted over /sys, and every top-level entry of the real /sys is
 *      recursively bind-mounted back into it;
 *   3. /sys/kvblade is created and the control plane bind-mounted there;
 *   4. the tmpfs is made read-only (mkdir in /sys fails, as on sysfs), the staging mount
 *      detached, and COMMAND exec'd.
 * Nothing propagates to the host: its /sys is never modified.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { constants } from 'node:os'
import { isKvbladeMount, mountAt } from './mountinfo'

export const SYSFS_SETUP_SCRIPT = `
set -eu
stage=$1 mnt=$2
shift 2
mount --rbind /sys "$stage"
mount -t tmpfs -o nosuid,nodev,noexec,mode=0755 kvblade-sysfs /sys
for e in "$stage"/*; do
  [ -e "$e" ] || continue
  n=\${e##*/}
  [ "$n" = kvblade ] && continue
  if [ -d "$e" ]; then mkdir "/sys/$n"; else : >"/sys/$n"; fi
  mount --rbind "$e" "/sys/$n"
done
mkdir /sys/kvblade
mount --bind "$mnt" /sys/kvblade
mount -o remount,ro,nosuid,nodev,noexec /sys
umount -l "$stage"
exec "$@"
`

/** Exit status the way a shell reports it: the code, or 128 + signal number. */
function exitStatus (code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  if (signal !== null) return 128 + (constants.signals[signal] ?? 0)
  return 1
}

export async function runWithSysfs (mountDir: string, argv: string[]): Promise<number> {
  if (argv.length === 0) throw new Error('sysfs: no command to run')
  const mnt = resolve(mountDir)
  if (!isKvbladeMount(await mountAt(mnt))) {
    throw new Error(`sysfs: no kvblade control plane is mounted at ${mnt} (start the daemon with --mount ${mnt})`)
  }
  if (process.getuid?.() !== 0) {
    throw new Error('sysfs: needs root (it mounts a private /sys in a new mount namespace)')
  }
  const stage = await mkdtemp(join(tmpdir(), 'kvblade-sysfs-'))
  try {
    return await new Promise<number>((resolvePromise, reject) => {
      const child = spawn('unshare', ['--mount', '--propagation', 'private', '--',
        '/bin/sh', '-c', SYSFS_SETUP_SCRIPT, 'kvblade-sysfs', stage, mnt, ...argv], { stdio: 'inherit' })
      // The child shares our terminal: let it have ^C and friends, and report how it ended.
      const forward = (sig: NodeJS.Signals) => () => { child.kill(sig) }
      const onInt = forward('SIGINT')
      const onTerm = forward('SIGTERM')
      process.on('SIGINT', onInt)
      process.on('SIGTERM', onTerm)
      const done = (): void => {
        process.off('SIGINT', onInt)
        process.off('SIGTERM', onTerm)
      }
      child.on('error', err => {
        done()
        reject(new Error(`sysfs: cannot run unshare: ${err.message}`))
      })
      child.on('exit', (code, signal) => {
        done()
        resolvePromise(exitStatus(code, signal))
      })
    })
  } finally {
    await rmdir(stage).catch(() => {})
  }
}
