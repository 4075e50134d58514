// Types of lib/page-array.ts that the raw addon surface (lib/native.ts) shares.
import type { ImbalanceCounts } from './owners.js';

/** Event counters of a {@link PageArray}, exact once no call is running. */
export interface PageArrayStats {
  /** Logical subpage pins taken (like the kernel's nr_foll_pin_acquired). */
  pinAcquired: number;
  /** Logical subpage pins released (nr_foll_pin_released). */
  pinReleased: number;
  /** Atomic grab and release operations the pin paths made on folio heads. */
  grabs: number;
  /** Folios whose refcount reached 0. */
  foliosFreed: number;
  /** Gets and pins refused with `EOVERFLOW`. */
  overflowRefusals: number;
  /** Multi-page calls that failed and rolled back. */
  rollbacks: number;
  /** Detected imbalances by kind (see {@link PageArrayOptions.onImbalance}). */
  imbalances: ImbalanceCounts;
}
