/**
 * Telling systemd the daemon is ready (the unit's Type=notify). The message is a
 * datagram to the AF_UNIX socket named by NOTIFY_SOCKET, which Node cannot send: `net`
 * does stream sockets only, `dgram` no unix sockets, and the addon has no call for it.
 * systemd's own systemd-notify sends it instead. Run as root (the service is), it sends
 * with its parent's PID, ours, so systemd takes it as the main process's; and it waits
 * until systemd has read the message, so even under the helper's own PID it is not lost
 * (the unit says NotifyAccess=all for that case). Readiness then depends on nothing but
 * the daemon itself: not on where, or whether, the control plane is mounted.
 */
import { execFile } from 'node:child_process'

/**
 * NOTIFY_SOCKET, taken out of the environment so that no child (fusermount...) sees
 * it, as sd_notify's unset_environment does; undefined when not run by systemd.
 */
export function takeNotifySocket (): string | undefined {
  const socket = process.env.NOTIFY_SOCKET
  delete process.env.NOTIFY_SOCKET
  return socket === '' ? undefined : socket
}

/** Sends READY=1 (and a STATUS= line for systemctl status); resolves with why it failed, or null. */
export function notifyReady (socket: string, status: string, program = 'systemd-notify'): Promise<string | null> {
  return new Promise(resolve => {
    execFile(program, ['--ready', `--status=${status}`], { env: { ...process.env, NOTIFY_SOCKET: socket }, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err === null) return resolve(null)
      const why = stderr.trim() !== '' ? stderr.trim() : err.message
      resolve((err as NodeJS.ErrnoException).code === 'ENOENT' ? `${program} is not installed (package systemd)` : why)
    })
  })
}
