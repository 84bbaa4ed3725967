/**
 * The exports file (`--config FILE`, e.g. /etc/kvblade/exports): one export per line in
 * the syntax of the control plane's add file, options included; `#` starts a comment;
 * blank lines are ignored. Parsed whole before anything is applied, so a bad line
 * changes nothing.
 */
import { parseAddCommand, targetName, type AddCommand } from './command'
import { ControlError } from './errors'

export interface ExportLine {
  /** 1-based line number, for messages. */
  line: number
  cmd: AddCommand
}

export function parseExports (text: string, file = 'exports file'): ExportLine[] {
  const out: ExportLine[] = []
  const seen = new Map<string, number>()
  text.split('\n').forEach((raw, i) => {
    const line = i + 1
    const body = raw.replace(/#.*$/, '').trim()
    if (body === '') return
    let cmd: AddCommand
    try {
      cmd = parseAddCommand(body)
    } catch (err) {
      throw new ControlError('EINVAL', `${file} line ${line}: ${(err as Error).message}`)
    }
    const name = targetName(cmd)
    const first = seen.get(name)
    if (first !== undefined) throw new ControlError('EINVAL', `${file} line ${line}: ${name} is already exported on line ${first}`)
    seen.set(name, line)
    out.push({ line, cmd })
  })
  return out
}
