// runReplay: a recorded or synthetic op stream, replayed natively under every scheme.
import { statSync } from 'node:fs';

import { describeMachine } from '../bench/machine.js';
import { PinlabError, invalid } from '../errors.js';
import { native, type NativeReplayRun } from '../native.js';
import { SCHEMES, type Scheme } from '../schemes.js';
import { show } from '../validate.js';
import { takesPincountMinOrder } from './traits.js';
import { REPLAY_SCHEMA_ID, REPLAY_SCHEMA_VERSION, type ReplayDecision, type ReplayResults, type ReplayScheme } from './types.js';

/** Options of {@link runReplay}. */
export interface ReplayOptions {
  /** The stream: a `.pkops` file, or its text form (a name ending in `.txt`). */
  file: string;
  /** Schemes to replay under. Default: every registered scheme ({@link SCHEMES}). */
  schemes?: readonly Scheme[];
  /** GUP_PIN_COUNTING_BIAS values to replay under. Default: the recording's. */
  bias?: number | readonly number[];
  /**
   * Hybrid rules to replay under: the smallest folio order with an exact pincount (1: 64-bit
   * mainline, 2: v5.7 / 32-bit). Other schemes run once. Default: the recording's.
   */
  rules?: number | readonly number[];
  /** Native threads per scheme (tag t runs on thread t % threads). Default: one per tag of the stream. */
  threads?: number;
  /** Force debug accounting on or off (it changes which misuse is refused). Default: the recording's. */
  debug?: boolean;
  /** Also fold each end state into a digest ({@link ReplayScheme.endState}). Default false. */
  endState?: boolean;
  /** Stops the replay early: the promise then rejects, and nothing is reported. */
  signal?: AbortSignal;
  /** Called as the replay goes: ops done over all schemes so far, of `total`, and what runs. */
  onProgress?: (event: { done: number; total: number; what: string }) => void;
}

function list(name: string, value: number | readonly number[] | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const arr = typeof value === 'number' ? [value] : Array.isArray(value) ? [...(value as number[])] : invalid(`${name} must be a number or an array of numbers (got ${show(value)})`);
  if (arr.length === 0) invalid(`${name} must not be empty`);
  for (const v of arr) if (!Number.isInteger(v)) invalid(`${name} must hold integers (got ${show(v)})`);
  return [...new Set(arr)];
}

/**
 * Replays an op stream natively under each scheme (and bias, and hybrid rule), one after the
 * other, each on a fresh page array built from the stream's header; the stream's tags run on
 * native threads at once. Resolves with the {@link ReplayResults} document: per scheme, ops per
 * second, refusals by code, overflow refusals, the decisions that read "maybe pinned" with
 * their false positives, imbalances, and whether the end state balances.
 *
 * @example
 * ```ts
 * const doc = await runReplay({ file: 'sim.pkops', schemes: ['bias', 'hybrid'] });
 * for (const s of doc.schemes) console.log(s.scheme, s.opsPerSecond, s.falsePositives, s.balanced);
 * ```
 * @throws PinlabError (as a rejection) `ENOENT`/`EACCES` for the file, `EINVAL` naming a bad
 *   header, checksum, record or line (before any op runs), or a stop (`signal`); `EAGAIN` when a
 *   native thread cannot start; `ENOMEM`
 */
export async function runReplay(options: ReplayOptions): Promise<ReplayResults> {
  const started = performance.now();
  if (options === null || typeof options !== 'object') invalid(`replay options must be an object (got ${show(options)})`);
  if (typeof options.file !== 'string' || options.file.length === 0) invalid(`file must be a path (got ${show(options.file)})`);
  const schemes = options.schemes === undefined ? [...SCHEMES] : [...options.schemes];
  if (schemes.length === 0) invalid('schemes must not be empty');
  for (const s of schemes) if (!SCHEMES.includes(s)) invalid(`unknown scheme ${show(s)} (known: ${SCHEMES.join(', ')})`);
  const threads = options.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) invalid(`threads must be an integer in 1..1024 (got ${show(options.threads)})`);
  if (options.debug !== undefined && typeof options.debug !== 'boolean') invalid(`debug must be a boolean (got ${show(options.debug)})`);
  const biases = list('bias', options.bias);
  const rules = list('rules', options.rules);
  // Bias 0 and rule -1 stand for the stream's own (the native side reads its header).
  const variants = [...new Set(schemes)].flatMap((scheme) =>
    (biases ?? [0]).flatMap((bias) =>
      (takesPincountMinOrder(scheme) ? (rules ?? [-1]) : [rules?.[0] ?? -1]).map((pincountMinOrder) => ({ scheme, bias, pincountMinOrder })),
    ),
  );
  if (options.signal?.aborted === true) throw new PinlabError('EINVAL', 'the replay stopped at the caller\'s request');
  const job = native.startReplay(
    { file: options.file, variants, threads, debug: options.debug === undefined ? -1 : options.debug ? 1 : 0, digest: options.endState === true },
    (done, total, what) => options.onProgress?.({ done, total, what }),
  );
  const abort = (): void => job.cancel();
  options.signal?.addEventListener('abort', abort, { once: true });
  let raw;
  try {
    raw = await job.promise;
  } finally {
    options.signal?.removeEventListener('abort', abort);
  }
  const s = raw.stream;
  return {
    schema: REPLAY_SCHEMA_ID,
    version: REPLAY_SCHEMA_VERSION,
    createdAt: new Date().toISOString(),
    machine: describeMachine('Release'),
    stream: {
      file: options.file,
      bytes: statSync(options.file).size,
      records: s.records,
      ops: s.ops,
      threads: s.threads,
      pages: s.pages,
      movablePages: s.movablePages,
      folioOrder: s.folioOrder,
      pincountMinOrder: s.pincountMinOrder,
      pinBias: s.pinBias,
      debug: s.debug,
      populated: s.populated,
      scheme: s.scheme as Scheme,
    },
    threads: raw.results[0]?.threads ?? 1,
    schemes: raw.results.map(schemeResult),
    durationMs: performance.now() - started,
  };
}

function schemeResult(r: NativeReplayRun): ReplayScheme {
  const mm = r.mmStats;
  const live = (decisions: string, falsePositives: string, unclassified: string): ReplayDecision => ({
    decisions: mm[decisions] ?? 0,
    falsePositives: mm[falsePositives] ?? 0,
    unclassified: mm[unclassified] ?? 0,
  });
  // The mm layer counts each decision's unclassified ones apart (their sum is `unclassified`).
  const earlyCow = live('earlyCowCopies', 'earlyCowFalsePositives', 'earlyCowUnclassified');
  const migration = live('migrationRefusals', 'migrationFalsePositives', 'migrationUnclassified');
  const collapse = live('collapseMaybePinned', 'collapseFalsePositives', 'collapseUnclassified');
  const pageout = live('pageoutRefusals', 'pageoutFalsePositives', 'pageoutUnclassified');
  const reclaim = { decisions: r.reclaim.maybePinned, falsePositives: r.reclaim.falsePositives, unclassified: r.reclaim.unclassified };
  const ops = r.ops;
  const perSecond = r.seconds > 0 ? ops / r.seconds : 0;
  return {
    scheme: r.scheme as Scheme,
    bias: r.bias,
    pincountMinOrder: r.pincountMinOrder,
    debug: r.debug,
    threads: r.threads,
    ops,
    seconds: r.seconds,
    cpuSeconds: r.cpuSeconds,
    opsPerSecond: perSecond,
    opsPerSecondPerThread: perSecond / Math.max(1, r.threads),
    opsPerCpuSecond: r.cpuSeconds > 0 ? ops / r.cpuSeconds : 0,
    nsPerOp: ops > 0 ? (1e9 * r.seconds * r.threads) / ops : 0,
    refused: r.refused,
    refusals: r.refusals,
    overflowRefusals: r.stats['overflowRefusals'] ?? 0,
    imbalances: (r.refusals['ENOTPINNED'] ?? 0) + (r.refusals['EPINNED'] ?? 0),
    diverged: r.diverged,
    decisions: { earlyCow, migration, reclaim, collapse, pageout },
    falsePositives: earlyCow.falsePositives + migration.falsePositives + reclaim.falsePositives + collapse.falsePositives + pageout.falsePositives,
    reclaimScan: { folios: r.reclaim.folios, missed: r.reclaim.missed },
    pinsOutstanding: r.pinsOutstanding,
    debugPinnedPages: r.debugPinnedPages,
    balanced: r.balanced,
    addressSpaces: r.spaces,
    stats: r.stats,
    mmStats: r.mmStats,
    endState: r.digest,
  };
}
