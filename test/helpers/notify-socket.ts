/**
 * A stand-in for systemd's notification socket (NOTIFY_SOCKET), to see what a Type=notify
 * service sends and under which PID. Node cannot bind an AF_UNIX datagram socket, so a
 * small python3 program listens and prints each message with the sender's credentials.
 * Like systemd, it closes the descriptors a message carries, which is what releases
 * systemd-notify's barrier (it waits until the manager has read what it sent).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const LISTENER = `
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print(json.dumps({"listening": True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 16))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(data) - len(data) % 4, 4):
                os.close(struct.unpack("i", data[i:i + 4])[0])
    print(json.dumps({"pid": pid, "message": msg.decode("utf-8", "replace")}), flush=True)
`

export interface Notification {
  /** The sender's PID as the kernel passed it (SCM_CREDENTIALS), as systemd reads it. */
  pid: number | null
  /** The message's KEY=VALUE lines. */
  fields: Record<string, string>
  at: number
}

export class NotifySocket {
  readonly messages: Notification[] = []
  private out = ''

  private constructor (readonly path: string, private readonly dir: string, private readonly child: ChildProcess) {}

  /** Why this cannot run here, or null. */
  static unavailable (): string | null {
    const found = (process.env.PATH ?? '/usr/bin:/bin').split(':').some(d => fs.existsSync(path.join(d, 'python3')))
    return found ? null : 'python3 is not installed (it stands in for systemd\'s notification socket)'
  }

  static async open (): Promise<NotifySocket> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvb-notify-'))
    const file = path.join(dir, 'notify')
    const child = spawn('python3', ['-c', LISTENER, file], { stdio: ['ignore', 'pipe', 'pipe'] })
    const n = new NotifySocket(file, dir, child)
    let err = ''
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
    await new Promise<void>((resolve, reject) => {
      child.on('exit', code => reject(new Error(`the notify listener exited (${code}): ${err}`)))
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        n.out += chunk
        let nl
        while ((nl = n.out.indexOf('\n')) >= 0) {
          const line = JSON.parse(n.out.slice(0, nl)) as { listening?: boolean, pid?: number | null, message?: string }
          n.out = n.out.slice(nl + 1)
          if (line.listening === true) resolve()
          else {
            const fields = Object.fromEntries((line.message ?? '').split('\n').filter(l => l.includes('=')).map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
            n.messages.push({ pid: line.pid ?? null, fields, at: Date.now() })
          }
        }
      })
    })
    return n
  }

  /** The first message with READY=1, waiting up to `ms` for it; null if none came. */
  async ready (ms: number): Promise<Notification | null> {
    const deadline = Date.now() + ms
    for (;;) {
      const m = this.messages.find(x => x.fields.READY === '1')
      if (m !== undefined || Date.now() > deadline) return m ?? null
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  close (): void {
    this.child.kill()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}
