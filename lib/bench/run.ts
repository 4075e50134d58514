// runBench: the whole benchmark run, from options to the result document.
import os from 'node:os';

import { native } from '../native.js';
import { deriveRows, fillRatios } from './derive.js';
import { probeKernelRows } from './kernel.js';
import { describeMachine } from './machine.js';
import { buildMatrix, resolveBenchOptions, type BenchOptions } from './matrix.js';
import { checkTargets } from './targets.js';
import { BENCH_SCHEMA_ID, BENCH_SCHEMA_VERSION, type BenchResults } from './types.js';

/** Progress of a run: configurations (and trials) done out of the total. */
export interface BenchProgressEvent {
  /** Steps done: each configuration's setup and calibration, then each of its trials. */
  done: number;
  /** Steps in the whole run: configurations x (trials + 1). */
  total: number;
  /** What runs now, e.g. `pin-unpin/bias/bvec/o9/range/shared/t2`. */
  label: string;
}

/** Hooks of {@link runBench}. */
export interface RunBenchHooks {
  /** Called on the JS thread as the native engine advances. */
  onProgress?: (event: BenchProgressEvent) => void;
}

/**
 * Runs the benchmark matrix on native threads (off the JS thread) and resolves with the
 * result document: rows with median and spread, throughput, atomics per page, scaling, bvec
 * speedups and the same-run raw baselines, the host kernel's rows where it allows them, and
 * the targets.
 * @throws PinlabError `EINVAL` for bad options (as a rejection); a configuration whose
 *   checks fail is reported in the rejection message (no figure from it can be trusted)
 */
export async function runBench(options: BenchOptions = {}, hooks: RunBenchHooks = {}): Promise<BenchResults> {
  const started = performance.now();
  const defaultRun = Object.keys(options).length === 0;
  const r = resolveBenchOptions(options, os.availableParallelism());
  const specs = buildMatrix(r);
  const results = await native.runBench(specs, { trials: r.trials, trialMs: r.trialMs }, (done, total, label) =>
    hooks.onProgress?.({ done, total, label }),
  );
  const failed = results.flatMap((res, i) => (res.ok ? [] : [`${JSON.stringify(specs[i])}: ${res.error ?? 'no figures'}`]));
  if (failed.length > 0) throw new Error(`pinlab bench: ${failed.length} configuration(s) failed their checks:\n${failed.join('\n')}`);
  const rows = deriveRows(specs, results);
  const kernel = r.kernel ? await probeKernelRows(r) : { available: false, reason: 'not requested (--no-kernel)', rows: [] };
  rows.push(...kernel.rows);
  fillRatios(rows);
  const durationMs = performance.now() - started;
  return {
    schema: BENCH_SCHEMA_ID,
    version: BENCH_SCHEMA_VERSION,
    createdAt: new Date().toISOString(),
    machine: describeMachine('Release'),
    config: { ...r },
    durationMs,
    rows,
    targets: checkTargets(rows, durationMs, defaultRun),
    kernel: { available: kernel.available, reason: kernel.reason },
  };
}
