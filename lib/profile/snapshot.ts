// `pinlab snapshot`: this host's page population, saved for `pinlab profile --snapshot`.
import { native } from '../native.js';

/** Options of {@link takeSnapshot}. */
export interface SnapshotOptions {
  /** Read at most this many PFNs (0: all). */
  maxPages?: number;
  /** Called as the PFNs are read. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Reads /proc/kpagecount and /proc/kpageflags (root, CAP_SYS_ADMIN) and writes a .pksnap
 * file; returns a one-line summary.
 * @throws PinlabError `EACCES` (saying what is needed), `ENOENT`, `EINVAL`
 */
export async function takeSnapshot(path: string, options: SnapshotOptions = {}): Promise<string> {
  const s = await native.takeSnapshot(path, options.maxPages ?? 0, options.onProgress);
  const orders = Object.entries(s.foliosByOrder)
    .map(([k, n]) => `order ${k}: ${n}`)
    .join(', ');
  return `wrote ${path}: ${s.pages} PFNs, ${s.folios} allocated folios (${orders}), ${s.allocatedPages} allocated pages; ${s.source}`;
}
