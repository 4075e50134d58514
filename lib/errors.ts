import type { OutstandingPin, PinProvenance } from './types/owners.js';

/**
 * Error codes, errno-like. Each names one class of failure; the message names the bad value.
 *
 * - `EINVAL`: a bad argument or option (wrong type, bad flag, refs outside 1..2^31-1, put below 0)
 * - `ERANGE`: a PFN outside the page array
 * - `EFREE`: the folio is free (refcount 0)
 * - `EOVERFLOW`: a refcount or pincount would pass 2^31-1
 * - `EBUSY`: a folio is referenced or pinned and cannot change shape
 * - `EPINNED`: debug mode: a plain put would eat a pin's references or free a pinned folio
 * - `ENOTPINNED`: unpin of a page that holds no such pin
 * - `ENOMEM`: the page array could not be mapped, no free block of the order asked for is left,
 *   or an allocation failed (a size that cannot be allocated is refused, never fatal)
 * - `EFAULT`: a virtual page outside any region, or a write access to a read-only region
 * - `EACCES`: a file could not be opened or read for lack of permission (e.g. /proc/kpageflags needs root); MADV_REMOVE of a private file mapping
 * - `ENOENT`: a file does not exist
 * - `EAGAIN`: a native thread could not be started (RLIMIT_NPROC, or no memory for its stack);
 *   the threads already started were stopped and joined
 * - `ELEAK`: pins are still held where none may be ({@link PageArray.checkBalanced}, dropping an
 *   owner with `pins: 'report'`); the error's `leaks` name each owner, call and page run
 */
export type PinlabErrorCode =
  | 'EINVAL'
  | 'ERANGE'
  | 'EFREE'
  | 'EOVERFLOW'
  | 'EBUSY'
  | 'EPINNED'
  | 'ENOTPINNED'
  | 'ENOMEM'
  | 'EFAULT'
  | 'EACCES'
  | 'ENOENT'
  | 'EAGAIN'
  | 'ELEAK';

/**
 * The one error class pinlab throws for bad input or a refused operation. A failed call
 * changes nothing: multi-page operations roll back what they did before throwing.
 *
 * @example
 * ```ts
 * try { mem.unpinPages({ start: 0, count: 1 }); }
 * catch (e) { if (e instanceof PinlabError && e.code === 'ENOTPINNED') { ... } }
 * ```
 */
export class PinlabError extends Error {
  /** The errno-like code, e.g. `'EFREE'`. */
  readonly code: PinlabErrorCode;
  /**
   * Debug tracking's provenance of the pins involved (`EPINNED`, `ENOTPINNED`, `EBUSY` from a
   * file): which owner and which pin call took them. Empty when nothing is known.
   */
  readonly provenance: readonly PinProvenance[];
  /** `ELEAK`: every run of pages still pinned, by owner and call. Empty for other codes. */
  readonly leaks: readonly OutstandingPin[];

  /**
   * @param code - the errno-like code
   * @param message - what went wrong, naming the offending value
   * @param details - provenance of the pins involved, and for `ELEAK` the pins still held
   */
  constructor(code: PinlabErrorCode, message: string, details?: PinlabErrorDetails) {
    super(`${code}: ${message}`);
    this.name = 'PinlabError';
    this.code = code;
    this.provenance = details?.provenance ?? [];
    this.leaks = details?.leaks ?? [];
  }
}

/** The optional structured part of a {@link PinlabError}. */
export interface PinlabErrorDetails {
  /** Which owners and pin calls took the pins involved. */
  provenance?: readonly PinProvenance[];
  /** `ELEAK`: the pins still held. */
  leaks?: readonly OutstandingPin[];
}

/** Throws `EINVAL` with the given message. @internal */
export function invalid(message: string): never {
  throw new PinlabError('EINVAL', message);
}
