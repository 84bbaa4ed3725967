import createDebug from 'debug'
import type { DiskEngine } from './disk-engine'
import { ThreadPoolDisk } from './thread-pool-disk'

const debug = createDebug('kvblade:store')

/** The best disk engine this kernel allows. */
export function openDiskEngine (): DiskEngine {
  debug('disk I/O: libuv thread pool')
  return new ThreadPoolDisk()
}
