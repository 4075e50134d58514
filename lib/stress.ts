import { native } from './native.js';
import { SCHEMES, type Scheme } from './schemes.js';
import { bool, integer, oneOf, optionsObject } from './validate.js';

/** Options of {@link runStress}. */
export interface StressOptions {
  /** Pin-counting scheme of the page array the harness creates. Default `'hybrid'`. */
  scheme?: Scheme;
  /** Native threads, 4..256: one mm mutator, one migrator/forker, the rest pin. Default 4. */
  threads?: number;
  /** How long the mix runs, 1..600000 ms. Default 500. */
  durationMs?: number;
  /** Pages per region, a multiple of 512. Default 2048. */
  regionPages?: number;
  /** Regions, 1..64 (odd ones huge). Default 4. */
  regions?: number;
  /** Seed of the threads' random choices. Default 1. */
  seed?: number;
  /** Debug accounting, so every pin can be checked against exact per-page pins. Default true. */
  debug?: boolean;
}

/** The harness's counters and verdict. */
export interface StressReport {
  /** pin/get_user_pages_fast calls made by the pinner threads (and forked children). */
  pinCalls: number;
  /** Pages those calls returned. */
  pinnedPages: number;
  /** Calls that returned fewer pages than asked (a region was unmapped under them). */
  partialCalls: number;
  /** Calls that returned an error (nothing was mapped there at all). */
  failedCalls: number;
  /** Pin checks made while holding a pin (allocated, maybe-pinned, exact pin in debug mode). */
  pinsChecked: number;
  /** Pages the lockless walk took. */
  fastPathPages: number;
  /** Calls that fell back to the slow path. */
  slowPathFallbacks: number;
  /** Speculative grabs released after a failed recheck. */
  recheckFailures: number;
  /** Fast walks undone because fork ran. */
  seqRetries: number;
  /** munmap calls (whole regions and holes). */
  munmaps: number;
  /** mprotect round trips. */
  mprotects: number;
  /** forks (each child writes, pins and exits). */
  forks: number;
  /** COW copies in the parent (write faults on shared pages). */
  cowCopies: number;
  /** Early-COW copies at fork. */
  earlyCowCopies: number;
  /** Pages moved by migrate, compact and long-term pins. */
  migratedPages: number;
  /** Folios migration refused as maybe pinned. */
  migrationRefusals: number;
  /** Folios migration refused for other references. */
  migrationBusy: number;
  /** compact() calls. */
  compactions: number;
  /** Logical pins acquired and released over the run (must be equal). */
  pinAcquired: number;
  /** See {@link StressReport.pinAcquired}. */
  pinReleased: number;
  /** Broken invariants found (0 when the run is sound). */
  violations: number;
  /** The first broken invariant, or null. */
  firstViolation: string | null;
  /** Every count balanced, every pin was real, and every page went back to the allocator. */
  balanced: boolean;
}

const STRESS_OPTIONS = ['scheme', 'threads', 'durationMs', 'regionPages', 'regions', 'seed', 'debug'] as const;

/**
 * Runs the native stress harness on worker threads: gup_fast pins against munmap/mmap,
 * mprotect, migration, compaction, fork and COW breaks on one address space, for a bounded
 * time. Resolves with the counters once every thread has finished and the checks ran.
 * @throws PinlabError `EINVAL` naming a bad option (as a rejection)
 */
export async function runStress(options: StressOptions = {}): Promise<StressReport> {
  const o = optionsObject('stress options', options, STRESS_OPTIONS);
  const opt = (name: string, fallback: number): number =>
    o[name] === undefined ? fallback : integer(name, o[name]);
  return native.runStress({
    scheme: oneOf('scheme', o['scheme'], SCHEMES, 'hybrid'),
    threads: opt('threads', 4),
    durationMs: opt('durationMs', 500),
    regionPages: opt('regionPages', 2048),
    regions: opt('regions', 4),
    seed: opt('seed', 1),
    debug: bool('debug', o['debug'], true),
  });
}
