/**
 * The faultfs control channel: one JSON request line in, one JSON answer line out
 * (protocol.ts). Nothing a line holds can throw past answer().
 */
import type { DiskModel } from './disk-model'
import type { FaultOps, Mode } from './protocol'

/** Largest durable/peek answer (base64 on one line); read the backing file for more. */
const MAX_CONTROL_READ = 16 << 20

function field<T> (req: Record<string, unknown>, key: string, check: (v: unknown) => v is T, what: string): T {
  const v = req[key]
  if (!check(v)) throw new Error(`${key} must be ${what} (got ${JSON.stringify(v) ?? 'nothing'})`)
  return v
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isString = (v: unknown): v is string => typeof v === 'string'
const optional = <T>(check: (v: unknown) => v is T) => (v: unknown): v is T | undefined => v === undefined || check(v)

function readRange (req: Record<string, unknown>): { offset: number, length: number } {
  const offset = field(req, 'offset', isCount, 'a non-negative integer')
  const length = field(req, 'length', isCount, 'a non-negative integer')
  if (length > MAX_CONTROL_READ) throw new Error(`length must be at most ${MAX_CONTROL_READ} (read the backing file for more)`)
  return { offset, length }
}

function faultSpec (req: Record<string, unknown>): { offset?: number, length?: number, times?: number } {
  return {
    offset: field(req, 'offset', optional(isCount), 'a non-negative integer'),
    length: field(req, 'length', optional(isCount), 'a positive integer'),
    times: field(req, 'times', optional(isCount), 'a positive integer')
  }
}

/** One control request; throws with a message for anything malformed. */
function handle (model: DiskModel, req: Record<string, unknown>): Record<string, unknown> {
  const op = field(req, 'op', isString, 'a string')
  switch (op) {
    case 'ping':
      return {}
    case 'cut':
      model.cut()
      return {}
    case 'restore':
      model.restore()
      return {}
    case 'mode':
      model.setMode(req.mode as Mode)
      return {}
    case 'sync':
      if (!model.powered) throw new Error('the power is cut')
      model.persist()
      return {}
    case 'eio':
      return { id: model.addFault('eio', field(req, 'ops', isString, 'read, write, fsync, both or all') as FaultOps, faultSpec(req)) }
    case 'enospc':
      return { id: model.addFault('enospc', 'write', faultSpec(req)) }
    case 'latency': {
      const ops = field(req, 'ops', isString, 'read, write, fsync, both or all') as FaultOps
      const ms = field(req, 'ms', (v): v is number => typeof v === 'number', 'a number')
      const { offset, length } = faultSpec(req)
      return { id: model.addLatency(ops, ms, { offset, length }) }
    }
    case 'clear':
      model.clearFaults()
      return {}
    case 'resize':
      model.resize(field(req, 'size', isCount, 'a non-negative integer'))
      return { size: model.size }
    case 'stats':
      return { stats: model.stats() }
    case 'reset-stats':
      model.resetStats()
      return {}
    case 'durable': {
      const { offset, length } = readRange(req)
      return { data: model.durable(offset, length).toString('base64') }
    }
    case 'peek': {
      const { offset, length } = readRange(req)
      return { data: model.peek(offset, length).toString('base64') }
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(op)}`)
  }
}

/** Every line gets exactly one answer line, whatever it holds. */
export function answer (model: DiskModel, line: string): string {
  let id: unknown
  try {
    const req: unknown = JSON.parse(line)
    if (typeof req !== 'object' || req === null || Array.isArray(req)) throw new Error('a request is a JSON object')
    id = (req as Record<string, unknown>).id
    const result = handle(model, req as Record<string, unknown>)
    return JSON.stringify({ ok: true, ...(id === undefined ? {} : { id }), ...result })
  } catch (e) {
    return JSON.stringify({ ok: false, ...(id === undefined ? {} : { id }), error: (e as Error).message ?? String(e) })
  }
}
