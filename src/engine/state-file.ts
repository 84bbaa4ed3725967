/**
 * The daemon's state on disk: every target (as its add line, with model and serial and
 * where it came from) and the AoE state initiators set per address (config string, Mac
 * Mask List, reservation). Written atomically — a temporary file, fsync, rename, fsync
 * of the directory — before a change is acknowledged, so that whatever an admin or an
 * initiator was told is done survives a crash, a restart or a reboot.
 */
import fs from 'node:fs'
import path from 'node:path'
import { formatMac, parseMac } from '../aoe/mac'
import { parseAddCommand, type AddCommand } from '../control/command'
import { checkModel, checkSerial } from '../control/values'

export const DEFAULT_STATE_FILE = '/var/lib/kvblade/state.json'

/** Who made a target: the control plane, `--add`, or the exports file (whose reload may change it). */
export type Origin = 'control' | 'cli' | 'config'
const ORIGINS: readonly Origin[] = ['control', 'cli', 'config']

export interface SavedTarget {
  cmd: AddCommand
  model?: string
  serial?: string
  origin: Origin
}

export interface SavedAddress {
  major: number
  minor: number
  config: Buffer
  mask: number[]
  reservation: number[]
}

export interface SavedState {
  targets: SavedTarget[]
  addresses: SavedAddress[]
}

/** What a state file on disk looks like (version 1). */
interface StateJson {
  kvblade: 1
  targets: Array<{ add: string, model?: string, serial?: string, origin: Origin }>
  addresses: Array<{ address: string, config: string, mask: string[], reservation: string[] }>
}

export class StateFileError extends Error {}

/** The state as JSON text, in a stable order (diffs between versions read well). */
export function encodeState (s: SavedState, format: (cmd: AddCommand) => string): string {
  const json: StateJson = {
    kvblade: 1,
    targets: s.targets.map(t => ({
      add: format(t.cmd),
      ...(t.model !== undefined ? { model: t.model } : {}),
      ...(t.serial !== undefined ? { serial: t.serial } : {}),
      origin: t.origin,
    })),
    addresses: s.addresses.map(a => ({
      address: `${a.major}.${a.minor}`,
      config: a.config.toString('base64'),
      mask: a.mask.map(formatMac),
      reservation: a.reservation.map(formatMac),
    })),
  }
  return JSON.stringify(json, null, 2) + '\n'
}

/** Parses a state file's text; throws StateFileError saying what is wrong (and where). */
export function decodeState (text: string): SavedState {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new StateFileError(`not JSON: ${(err as Error).message}`)
  }
  const o = json as Partial<StateJson>
  if (typeof o !== 'object' || o === null || o.kvblade !== 1) throw new StateFileError('not a kvblade state file (version 1)')
  if (!Array.isArray(o.targets) || !Array.isArray(o.addresses)) throw new StateFileError('"targets" and "addresses" must be lists')
  const targets = o.targets.map((t, i): SavedTarget => {
    const where = `target ${i + 1}`
    if (typeof t !== 'object' || t === null || typeof t.add !== 'string') throw new StateFileError(`${where}: no add line`)
    if (!ORIGINS.includes(t.origin)) throw new StateFileError(`${where}: origin must be one of ${ORIGINS.join(', ')}`)
    try {
      return {
        cmd: parseAddCommand(t.add),
        ...(t.model !== undefined ? { model: checkModel(String(t.model)) } : {}),
        ...(t.serial !== undefined ? { serial: checkSerial(String(t.serial)) } : {}),
        origin: t.origin,
      }
    } catch (err) {
      throw new StateFileError(`${where} ("${t.add}"): ${(err as Error).message}`)
    }
  })
  const addresses = o.addresses.map((a, i): SavedAddress => {
    const where = `address ${i + 1}`
    const m = typeof a?.address === 'string' ? /^(\d+)\.(\d+)$/.exec(a.address) : null
    if (m === null) throw new StateFileError(`${where}: address must be MAJOR.MINOR`)
    if (typeof a.config !== 'string' || !Array.isArray(a.mask) || !Array.isArray(a.reservation)) throw new StateFileError(`${where}: config, mask and reservation are required`)
    const macs = (list: unknown[], what: string): number[] => list.map(x => {
      try {
        return parseMac(String(x))
      } catch {
        throw new StateFileError(`${where}: ${what}: "${String(x)}" is not a MAC address`)
      }
    })
    const config = Buffer.from(a.config, 'base64')
    if (config.length > 1024) throw new StateFileError(`${where}: the config string is longer than 1024 bytes`)
    return { major: Number(m[1]), minor: Number(m[2]), config, mask: macs(a.mask, 'mask'), reservation: macs(a.reservation, 'reservation') }
  })
  return { targets, addresses }
}

/** Reads the state file; null if there is none yet. Throws StateFileError naming the file otherwise. */
export async function loadState (file: string): Promise<SavedState | null> {
  let text: string
  try {
    text = await fs.promises.readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new StateFileError(`cannot read the state file ${file}: ${(err as Error).message}`)
  }
  try {
    return decodeState(text)
  } catch (err) {
    throw new StateFileError(`the state file ${file} cannot be used: ${(err as Error).message}; fix or remove it (it is left as it is)`)
  }
}

/**
 * Writes `text` to `file` so that a crash at any moment leaves either the old or the
 * new contents: a temporary file beside it, fsync, rename over, fsync of the directory.
 */
export async function writeAtomically (file: string, text: string): Promise<void> {
  const dir = path.dirname(file)
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o755 })
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`)
  const handle = await fs.promises.open(tmp, 'w', 0o644)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await fs.promises.rename(tmp, file)
  const d = await fs.promises.open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

/**
 * Saves the state when asked, one write at a time: requests made while a write is under
 * way are covered together by the next one, and each resolves once a write that began
 * after it is on disk (so every caller knows its change is persisted).
 */
export class StateWriter {
  private waiting: Array<{ resolve: () => void, reject: (err: Error) => void }> = []
  private running = false

  constructor (private readonly file: string, private readonly snapshot: () => string) {}

  save (): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      if (!this.running) void this.drain()
    })
  }

  private async drain (): Promise<void> {
    this.running = true
    while (this.waiting.length > 0) {
      const batch = this.waiting
      this.waiting = []
      try {
        await writeAtomically(this.file, this.snapshot())
        for (const w of batch) w.resolve()
      } catch (err) {
        const e = new Error(`cannot save the state to ${this.file}: ${(err as Error).message}`)
        for (const w of batch) w.reject(e)
      }
    }
    this.running = false
  }
}
