import { native } from './native.js';
import { SCHEMES, type Scheme } from './schemes.js';
import type { StressReport } from './types/stress.js';
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
