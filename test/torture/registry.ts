/**
 * Every row of the torture table, in the order it is printed. A new class of check (a
 * backing store that fails under the daemon, a second exporter of the same address)
 * is a TortureCheck added here.
 */
import type { TortureCheck } from './check'
import { wireFuzz } from './fuzz/check'
import { orderingCheck } from './ordering/check'
import { crashCheck } from './crash/check'
import { backingFaultsCheck } from './faults/check'
import { exportersCheck } from './exporters/check'
import { STORE_PATHS } from './rig'

export const CHECKS: readonly TortureCheck[] = [
  wireFuzz,
  ...STORE_PATHS.map(orderingCheck),
  crashCheck,
  backingFaultsCheck,
  exportersCheck,
]
