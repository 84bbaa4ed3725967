import { parseMac, formatMac } from '../aoe/mac'
import { ControlError } from './errors'
import { CACHE_MODES, parseBufferCount, type CacheMode } from './values'

export type { CacheMode }

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

/** The options an `add` line may carry after its four kvblade fields. */
export interface ExportOptions {
  /** `ro`: opened read-only; writes get an ATA error. */
  readOnly?: boolean
  /** `shared`: another exporter may serve the same backing (multipath over shared storage). */
  shared?: boolean
  /** `direct`: O_DIRECT, as the daemon's --direct does for every backing. */
  direct?: boolean
  /** `offset=SECTORS`, `length=SECTORS`: export only this slice of the backing. */
  offset?: number
  length?: number
  /** `acl=MAC[,MAC...]`: only these initiators see the target. */
  acl?: number[]
  /** `cache=writethrough|writeback`. */
  cache?: CacheMode
  /** `bufcnt=N`: the buffer count this target advertises. */
  bufferCount?: number
}

export interface AddCommand extends TargetAddress {
  path: string
  /** Present only when the line names any (the four-field form has none). */
  options?: ExportOptions
}

/** Option names in the order formatOptions() writes them. */
const OPTION_NAMES = ['ro', 'shared', 'direct', 'offset', 'length', 'acl', 'cache', 'bufcnt'] as const
type OptionName = typeof OPTION_NAMES[number]
const FLAGS: ReadonlySet<string> = new Set(['ro', 'shared', 'direct'])

function parseOption (name: OptionName, value: string | undefined, options: ExportOptions): void {
  const needs = (): string => {
    if (value === undefined || value === '') throw new ControlError('EINVAL', `option ${name} needs a value (${name}=...)`)
    return value
  }
  if (FLAGS.has(name) && value !== undefined) throw new ControlError('EINVAL', `option ${name} takes no value`)
  switch (name) {
    case 'ro': options.readOnly = true; break
    case 'shared': options.shared = true; break
    case 'direct': options.direct = true; break
    case 'offset': options.offset = parseNumber(needs(), 'offset'); break
    case 'length': {
      const length = parseNumber(needs(), 'length')
      if (length === 0) throw new ControlError('EINVAL', 'length=0 exports nothing')
      options.length = length
      break
    }
    case 'acl': {
      const macs = needs().split(',').map(text => {
        try {
          return parseMac(text)
        } catch {
          throw new ControlError('EINVAL', `acl: "${text}" is not a MAC address (like 52:54:00:12:34:56)`)
        }
      })
      options.acl = [...new Set(macs)]
      break
    }
    case 'cache': {
      const mode = needs()
      if (!(CACHE_MODES as readonly string[]).includes(mode)) throw new ControlError('EINVAL', `cache must be writethrough or writeback, not "${mode}"`)
      options.cache = mode as CacheMode
      break
    }
    case 'bufcnt': options.bufferCount = parseBufferCount(needs(), 'bufcnt'); break
  }
}

/** The options after the four fields: each NAME or NAME=VALUE, each at most once. */
export function parseOptions (words: string[]): ExportOptions {
  const options: ExportOptions = {}
  const seen = new Set<string>()
  for (const word of words) {
    const eq = word.indexOf('=')
    const name = eq < 0 ? word : word.slice(0, eq)
    const value = eq < 0 ? undefined : word.slice(eq + 1)
    if (name === 'model' || name === 'sn') {
      throw new ControlError('EINVAL', `${name} is not an add option: write it to the target's ${name} file`)
    }
    if (!(OPTION_NAMES as readonly string[]).includes(name)) {
      throw new ControlError('EINVAL', `unknown option "${name}" (options: ${OPTION_NAMES.join(', ')})`)
    }
    if (seen.has(name)) throw new ControlError('EINVAL', `option ${name} given twice`)
    seen.add(name)
    parseOption(name as OptionName, value, options)
  }
  return options
}

/** The options as an add line carries them, in a fixed order ('' for none). */
export function formatOptions (o: ExportOptions = {}): string {
  const words: string[] = []
  if (o.readOnly === true) words.push('ro')
  if (o.shared === true) words.push('shared')
  if (o.direct === true) words.push('direct')
  if (o.offset !== undefined) words.push(`offset=${o.offset}`)
  if (o.length !== undefined) words.push(`length=${o.length}`)
  if (o.acl !== undefined && o.acl.length > 0) words.push(`acl=${o.acl.map(formatMac).join(',')}`)
  if (o.cache !== undefined) words.push(`cache=${o.cache}`)
  if (o.bufferCount !== undefined) words.push(`bufcnt=${o.bufferCount}`)
  return words.join(' ')
}

/** An add line that parseAddCommand reads back as the same command. */
export function formatAddCommand (cmd: AddCommand): string {
  const options = formatOptions(cmd.options)
  return `${cmd.major} ${cmd.minor} ${cmd.ifname} ${cmd.path}${options === '' ? '' : ' ' + options}`
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

/** The whitespace-separated words of one command line: `expected` of them, or at least that many when `more`. */
function splitFields (line: string, expected: number, usage: string, more = false): string[] {
  // A sysfs write is usually `echo ...`, so one trailing newline is part of the command.
  const text = line.replace(/\r?\n$/, '')
  if (/[\0\n]/.test(text)) throw new ControlError('EINVAL', `expected one line: ${usage}`)
  const fields = text.trim().split(/[ \t]+/).filter(f => f.length > 0)
  if (fields.length < expected || (!more && fields.length > expected)) {
    throw new ControlError('EINVAL', `expected ${expected} fields${more ? ' and options' : ''}, got ${fields.length}: ${usage}`)
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

/**
 * `MAJOR MINOR IFACE PATH [OPTION]...`, the syntax of kvblade's `add` and `readd` files
 * and of `--add`; the four-field form is kvblade's own.
 */
export function parseAddCommand (line: string): AddCommand {
  const fields = splitFields(line, 4, 'MAJOR MINOR IFACE PATH [OPTION]...', true)
  const cmd: AddCommand = { ...parseAddress(fields), path: fields[3] }
  if (fields.length > 4) cmd.options = parseOptions(fields.slice(4))
  return cmd
}

/** `MAJOR MINOR IFACE`, the syntax of kvblade's `del` file. */
export function parseDelCommand (line: string): TargetAddress {
  return parseAddress(splitFields(line, 3, 'MAJOR MINOR IFACE'))
}

/** The directory name kvblade gives a target: `major.minor@netif`. */
export function targetName (t: TargetAddress): string {
  return `${t.major}.${t.minor}@${t.ifname}`
}
