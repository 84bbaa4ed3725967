/** Reading /proc/self/mountinfo: which file system, if any, is mounted at a directory. */
import { readFile } from 'node:fs/promises'

export interface MountEntry {
  mountPoint: string
  /** e.g. 'fuse.kvblade', 'tmpfs', 'sysfs'. */
  fstype: string
  source: string
  /** `MAJOR:MINOR` of the file system: bind mounts of one file system share it. */
  device: string
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape (field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export function parseMountinfo (text: string): MountEntry[] {
  const out: MountEntry[] = []
  for (const line of text.split('\n')) {
    if (line.length === 0) continue
    const fields = line.split(' ')
    const sep = fields.indexOf('-', 6)
    if (sep < 0 || fields.length < sep + 3) continue
    out.push({ mountPoint: unescape(fields[4]), fstype: fields[sep + 1], source: unescape(fields[sep + 2]), device: fields[2] })
  }
  return out
}

export async function readMounts (): Promise<MountEntry[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'))
}

/** The topmost mount at exactly `dir` (absolute, normalised), if any. */
export async function mountAt (dir: string): Promise<MountEntry | undefined> {
  const all = await readMounts()
  for (let i = all.length - 1; i >= 0; i--) if (all[i].mountPoint === dir) return all[i]
  return undefined
}

/** Our mounts are `-o fsname=kvblade,subtype=kvblade`: type fuse.kvblade. */
export const FSTYPE = 'fuse.kvblade'
export const FSNAME = 'kvblade'

export function isKvbladeMount (m: MountEntry | undefined): boolean {
  return m !== undefined && m.fstype === FSTYPE
}

/**
 * The kvblade control planes mounted, one mount point each: bind mounts of the same one
 * (as `kvblade sysfs` makes at /sys/kvblade) count once, by its first mount point.
 */
export function kvbladeMounts (all: MountEntry[]): string[] {
  const seen = new Set<string>()
  const dirs: string[] = []
  for (const m of all) {
    if (!isKvbladeMount(m) || seen.has(m.device)) continue
    seen.add(m.device)
    dirs.push(m.mountPoint)
  }
  return dirs
}
