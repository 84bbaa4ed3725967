import createDebug from 'debug'
import type { DiskEngine } from './disk-engine'
import { UringEngine } from './uring-engine'
import { ThreadPoolEngine } from './thread-pool-engine'

const debug = createDebug('kvblade:store')

export type DiskEngineKind = 'auto' | 'uring' | 'threads'

/**
 * io_uring where the kernel allows it (it may be disabled by sysctl or seccomp), else
 * libuv's thread pool. KVBLADE_DISK=uring|threads forces one (benchmarks, diagnosis).
 */
export function openDiskEngine (
  kind: DiskEngineKind = (process.env.KVBLADE_DISK as DiskEngineKind | undefined) ?? 'auto',
  warn?: (message: string) => void,
): DiskEngine {
  if (kind !== 'threads') {
    try {
      const engine = UringEngine.open(undefined, warn)
      debug('disk I/O: io_uring')
      return engine
    } catch (err) {
      if (kind === 'uring') throw err
      debug('disk I/O: io_uring unavailable (%s), using the thread pool', (err as Error).message)
    }
  }
  debug('disk I/O: libuv thread pool')
  return new ThreadPoolEngine(undefined, warn)
}
