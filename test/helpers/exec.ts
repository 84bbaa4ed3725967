import { execFile } from 'node:child_process'

export interface ExecResult { code: number, stdout: string, stderr: string }

/** Runs a program (no shell) and collects its output; never rejects on a non-zero exit. */
export function run (file: string, args: string[], opts: { input?: string, timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise(resolve => {
    const child = execFile(file, args, { timeout: opts.timeoutMs ?? 60_000, env: opts.env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

/** Runs a program and fails with its stderr if it exits non-zero. */
export async function must (file: string, args: string[]): Promise<string> {
  const r = await run(file, args)
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}
