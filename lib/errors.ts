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
 * - `ENOMEM`: the page array could not be mapped, or no free block of the order asked for is left
 * - `EFAULT`: a virtual page outside any region, or a write access to a read-only region
 * - `EACCES`: a file could not be opened or read for lack of permission (e.g. /proc/kpageflags needs root)
 * - `ENOENT`: a file does not exist
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
  | 'ENOENT';

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
   * @param code - the errno-like code
   * @param message - what went wrong, naming the offending value
   */
  constructor(code: PinlabErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'PinlabError';
    this.code = code;
  }
}

/** Throws `EINVAL` with the given message. @internal */
export function invalid(message: string): never {
  throw new PinlabError('EINVAL', message);
}
