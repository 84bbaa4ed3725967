import { spawn } from 'node:child_process'

export interface ExecResult { code: number | null, stdout: string, stderr: string }

export interface ExecOptions { env?: NodeJS.ProcessEnv, input?: string, cwd?: string, timeoutMs?: number }

/**
 * Runs a program (no shell) and collects its output; never rejects on a non-zero exit
 * (`code` is null if a signal ended it, e.g. the timeout's SIGKILL).
 */
export function run (file: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.stdout.on('data', d => { stdout += String(d) })
    child.stderr.on('data', d => { stderr += String(d) })
    child.on('error', reject)
    child.stdin.on('error', () => {}) // EPIPE when the program exits without reading
    child.on('close', code => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(opts.input ?? '')
  })
}

/** `/bin/sh -c SCRIPT sh ARGS...` (dash on Debian), as an admin's shell would run it. */
export function sh (script: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
  return run('/bin/sh', ['-c', script, 'sh', ...args], opts)
}

/** The same through bash, whose messages carry the real strerror. */
export function bash (script: string, args: string[] = []): Promise<ExecResult> {
  return run('/bin/bash', ['-c', script, 'bash', ...args])
}

/** Runs a program and fails with its stderr if it exits non-zero. */
export async function must (file: string, args: string[]): Promise<string> {
  const r = await run(file, args)
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}
