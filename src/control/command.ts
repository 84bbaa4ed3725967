import { ControlError } from './errors'

/** Broadcast addresses: never a target's own address. */
export const MAJOR_MAX = 0xfffe
export const MINOR_MAX = 0xfe
/** The Linux initiator refuses this shelf; accepted with a warning, as kvblade did. */
export const MAJOR_LINUX_REFUSES = 0x0fff

export interface TargetAddress {
  major: number
  minor: number
  ifname: string
}

export interface AddCommand extends TargetAddress {
  path: string
}

/**
 * Parses a number the way kvblade's sysfs handlers did (simple_strtoul with base 0):
 * decimal, 0x-prefixed hex, or 0-prefixed octal. Anything else is EINVAL.
 */
export function parseNumber (field: string, what: string): number {
  let value: number
  if (/^0[xX][0-9a-fA-F]+$/.test(field)) value = parseInt(field.slice(2), 16)
  else if (/^0[0-7]+$/.test(field)) value = parseInt(field.slice(1), 8)
  else if (/^(0|[1-9][0-9]*)$/.test(field)) value = parseInt(field, 10)
  else throw new ControlError('EINVAL', `${what} "${field}" is not a number`)
  if (!Number.isSafeInteger(value)) throw new ControlError('EINVAL', `${what} "${field}" is too large`)
  return value
}

/** Interface names as the kernel allows them (IFNAMSIZ 16 including the NUL, no '/' or space). */
function checkIfname (ifname: string): string {
  if (ifname.length === 0 || ifname.length > 15 || /[/\s:]/.test(ifname) || ifname === '.' || ifname === '..') {
    throw new ControlError('EINVAL', `"${ifname}" is not a valid interface name`)
  }
  return ifname
}

function splitFields (line: string, expected: number, usage: string): string[] {
  // A sysfs write is usually `echo ...`, so one trailing newline is part of the command.
  const text = line.replace(/\r?\n$/, '')
  if (/[\0\n]/.test(text)) throw new ControlError('EINVAL', `expected one line: ${usage}`)
  const fields = text.trim().split(/[ \t]+/).filter(f => f.length > 0)
  if (fields.length !== expected) {
    throw new ControlError('EINVAL', `expected ${expected} fields, got ${fields.length}: ${usage}`)
  }
  return fields
}

function parseAddress (fields: string[]): TargetAddress {
  const major = parseNumber(fields[0], 'major')
  const minor = parseNumber(fields[1], 'minor')
  if (major > MAJOR_MAX) throw new ControlError('EINVAL', `major ${major} is out of range 0-${MAJOR_MAX}`)
  if (minor > MINOR_MAX) throw new ControlError('EINVAL', `minor ${minor} is out of range 0-${MINOR_MAX}`)
  return { major, minor, ifname: checkIfname(fields[2]) }
}

/** `MAJOR MINOR IFACE PATH`, the syntax of kvblade's `add` and `readd` files and of `--add`. */
export function parseAddCommand (line: string): AddCommand {
  const fields = splitFields(line, 4, 'MAJOR MINOR IFACE PATH')
  return { ...parseAddress(fields), path: fields[3] }
}

/** `MAJOR MINOR IFACE`, the syntax of kvblade's `del` file. */
export function parseDelCommand (line: string): TargetAddress {
  return parseAddress(splitFields(line, 3, 'MAJOR MINOR IFACE'))
}

/** The directory name kvblade gives a target: `major.minor@netif`. */
export function targetName (t: TargetAddress): string {
  return `${t.major}.${t.minor}@${t.ifname}`
}
