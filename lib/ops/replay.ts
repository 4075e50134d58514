// runReplay: a recorded or synthetic op stream, replayed natively under every scheme.
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
  /** Schemes to replay under (one name, or a list). Default: every registered scheme ({@link SCHEMES}). */
  schemes?: Scheme | readonly Scheme[];
  /** GUP_PIN_COUNTING_BIAS values to replay under (powers of two in 2..2^20). Default: the recording's. */
  bias?: number | readonly number[];
  /**
   * Hybrid rules to replay under: the smallest folio order with an exact pincount (1: 64-bit
   * mainline, 2: v5.7 / 32-bit, 31: none, the 2019 kernels; 1..31). Other schemes run once. Default: the recording's.
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

/** A number or a non-empty array of integers in lo..hi (each `ok`), deduplicated; read once. */
function list(name: string, value: unknown, lo: number, hi: number, ok: (v: number) => boolean, what: string): number[] | undefined {
  if (value === undefined) return undefined;
  let arr: unknown[];
  if (typeof value === 'number') arr = [value];
  else if (Array.isArray(value)) arr = Array.from(value as unknown[]); // each element read once
  else invalid(`${name} must be a number or an array of numbers (got ${show(value)})`);
  if (arr.length === 0) invalid(`${name} must not be empty`);
  for (const v of arr) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi || !ok(v)) {
      invalid(`${name} must hold ${what} (got ${show(v)})`);
    }
  }
  return [...new Set(arr as number[])];
}

/** Whether `value` really is an AbortSignal (its brand, not its prototype). */
function isAbortSignal(value: unknown): value is AbortSignal {
  if (value === null || typeof value !== 'object') return false;
  try {
    Reflect.apply(abortedOf, value, []); // throws a TypeError for anything but an AbortSignal
    return true;
  } catch {
    return false;
  }
}

const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')!.get as (this: unknown) => boolean;

const REPLAY_OPTIONS = ['file', 'schemes', 'bias', 'rules', 'threads', 'debug', 'endState', 'signal', 'onProgress'] as const;

/** The options of a replay, each read once and checked. */
interface ReplayPlan {
  file: string;
  schemes: Scheme[];
  biases: number[] | undefined;
  rules: number[] | undefined;
  threads: number;
  debug: boolean | undefined;
  endState: boolean;
  signal: AbortSignal | undefined;
  onProgress: ReplayOptions['onProgress'];
}

/**
 * Reads every option exactly once (a getter runs once; what is checked is what is used) and
 * checks them all, before anything starts: a bad one rejects with EINVAL and nothing runs.
 */
function replayPlan(options: unknown): ReplayPlan {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) invalid(`replay options must be an object (got ${show(options)})`);
  const o = options as Record<string, unknown>;
  const read: Record<string, unknown> = {};
  for (const key of REPLAY_OPTIONS) read[key] = o[key];
  const { file, schemes: schemesValue, bias, rules: rulesValue, threads: threadsValue, debug, endState, signal, onProgress } = read;
  if (typeof file !== 'string' || file.length === 0) invalid(`file must be a path (got ${show(file)})`);
  if (file.includes('\0')) invalid('file must not contain a NUL byte (a path is taken as named)');
  let schemes: Scheme[];
  if (schemesValue === undefined) schemes = [...SCHEMES];
  else if (typeof schemesValue === 'string') schemes = [schemesValue as Scheme];
  else if (Array.isArray(schemesValue)) schemes = Array.from(schemesValue as unknown[]) as Scheme[];
  else invalid(`schemes must be a scheme name or an array of them (got ${show(schemesValue)})`);
  if (schemes.length === 0) invalid('schemes must not be empty');
  for (const s of schemes) if (typeof s !== 'string' || !SCHEMES.includes(s)) invalid(`unknown scheme ${show(s)} (known: ${SCHEMES.join(', ')})`);
  // Absent: one thread per tag (0 to the engine); given: 1..1024, as the CLI's --threads.
  const threads = threadsValue ?? 0;
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 0 || threads > 1024 || (threadsValue !== undefined && threads < 1)) {
    invalid(`threads must be an integer in 1..1024 (got ${show(threadsValue)})`);
  }
  if (debug !== undefined && typeof debug !== 'boolean') invalid(`debug must be a boolean (got ${show(debug)})`);
  if (endState !== undefined && typeof endState !== 'boolean') invalid(`endState must be a boolean (got ${show(endState)})`);
  if (signal !== undefined && !isAbortSignal(signal)) invalid(`signal must be an AbortSignal (got ${show(signal)})`);
  if (onProgress !== undefined && typeof onProgress !== 'function') invalid(`onProgress must be a function (got ${show(onProgress)})`);
  const biases = list('bias', bias, MIN_BIAS, MAX_BIAS, (v) => (v & (v - 1)) === 0, `powers of two in ${MIN_BIAS}..${MAX_BIAS}`);
  const rules = list('rules', rulesValue, 1, MAX_ORDER + 1, () => true, `integers in 1..${MAX_ORDER + 1}`);
  return {
    file,
    schemes,
    biases,
    rules,
    threads,
    debug,
    endState: endState === true,
    signal,
    onProgress: onProgress as ReplayOptions['onProgress'],
  };
}

/** GUP_PIN_COUNTING_BIAS's range (page_array.h), and the largest folio order. */
const MIN_BIAS = 2;
const MAX_BIAS = 1 << 20;
const MAX_ORDER = 30;

/** Whether `signal` has been aborted by now (read afresh: TypeScript's narrowing would not). */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
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
 * Every option is read once and all are checked before the replay starts (a bad one rejects
 * with `EINVAL` and nothing runs); `stream.bytes` is what the replay read and checked.
 *
 * @throws PinlabError (as a rejection) `EINVAL` for a bad option (a `signal` that is not an
 *   AbortSignal, an `onProgress` that is not a function, a bias or rule out of range, a path
 *   with a NUL byte), `ENOENT`/`EACCES` for the file, `EINVAL` naming a bad
 *   header, checksum, record or line (before any op runs), or a stop (`signal`); `EAGAIN` when a
 *   native thread cannot start; `ENOMEM`
 */
export async function runReplay(options: ReplayOptions): Promise<ReplayResults> {
  const started = performance.now();
  const plan = replayPlan(options); // every option read once and checked before the job starts
  const { file, signal, onProgress } = plan;
  // Bias 0 and rule -1 stand for the stream's own (the native side reads its header).
  const variants = [...new Set(plan.schemes)].flatMap((scheme) =>
    (plan.biases ?? [0]).flatMap((bias) =>
      (takesPincountMinOrder(scheme) ? (plan.rules ?? [-1]) : [plan.rules?.[0] ?? -1]).map((pincountMinOrder) => ({ scheme, bias, pincountMinOrder })),
    ),
  );
  if (signal?.aborted === true) throw new PinlabError('EINVAL', 'the replay stopped at the caller\'s request');
  const job = native.startReplay(
    { file, variants, threads: plan.threads, debug: plan.debug === undefined ? -1 : plan.debug ? 1 : 0, digest: plan.endState },
    (done, total, what) => onProgress?.({ done, total, what }),
  );
  const abort = (): void => job.cancel();
  signal?.addEventListener('abort', abort, { once: true });
  let raw;
  try {
    raw = await job.promise;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
  // A stop that came after the last op ran (while the end state was scanned) still stops it.
  if (isAborted(signal)) throw new PinlabError('EINVAL', 'the replay stopped at the caller\'s request');
  const s = raw.stream;
  return {
    schema: REPLAY_SCHEMA_ID,
    version: REPLAY_SCHEMA_VERSION,
    createdAt: new Date().toISOString(),
    machine: describeMachine('Release'),
    stream: {
      file,
      bytes: s.bytes ?? 0, // what the native side read and checked, not a later stat of the path
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
