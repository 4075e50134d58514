// stateDigest: a page array's whole observable state, folded so two runs can be compared.
import { native } from '../native.js';
import { nativeOf, type PageArray } from '../page-array.js';
import { liveSpaces } from './spaces.js';

/**
 * The whole observable state of a page array and its live address spaces, folded into
 * digests (see {@link stateDigest}). Two runs ended in the same state exactly when every field
 * is equal.
 */
export interface StateDigest {
  /**
   * Every page's folio head and order, refcount, exact pincount (or none), dirty flag and
   * maybe-pinned answer, and in debug mode its exact pins: a 64-bit digest in hex.
   */
  pages: string;
  /** The allocator's free blocks (zone, order, head), in order: a digest in hex. */
  freeBlocks: string;
  /** Free pages in the allocator. */
  freePages: number;
  /** The zero page's PFN, or null. */
  zeroPfn: number | null;
  /** `stats()` of the page array (without `imbalances`, which the JS bookkeeping keeps). */
  stats: Record<string, number>;
  /**
   * Per address space, by id: its size, regions, present pages, MMF_HAS_PINNED, every virtual
   * page's translation (PFN, writable, zero page, huge, shared) and its counters: a digest in hex.
   */
  spaces: string;
  /** Address spaces folded into `spaces`. */
  spaceCount: number;
  /** The address spaces' `stats()`, summed. */
  mmStats: Record<string, number>;
}

/**
 * Folds the state of `mem` and of every live address space over it into a {@link StateDigest},
 * in one native pass (pages, free lists, page tables). `pinlab replay` reports the same digest
 * of each replay's end state (`endState: true`), so a simulation and the replay of its recording
 * can be compared exactly.
 */
export function stateDigest(mem: PageArray): StateDigest {
  const handle = nativeOf(mem);
  return native.stateDigest(handle, liveSpaces(handle));
}
