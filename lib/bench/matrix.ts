// Which configurations a benchmark run measures: the options a user gives, resolved to a
// list of native specs (the default matrix answers the headline question).
import { invalid } from '../errors.js';
import type { NativeBenchSpec } from '../native.js';
import type { PinPath } from '../page-array.js';
import { SCHEMES, type Scheme } from '../schemes.js';
import type { BenchOp, BenchSharing } from './types.js';

/** The operations a user can ask for (the raw baselines are always added beside them). */
export type ModelOp = 'pin-unpin' | 'get-put' | 'gup-fast' | 'mixed';

/** Every model operation. */
export const MODEL_OPS: readonly ModelOp[] = ['pin-unpin', 'get-put', 'gup-fast', 'mixed'];
/** Every sharing mode. */
export const SHARINGS: readonly BenchSharing[] = ['private', 'shared', 'interleaved'];

/** Options of a benchmark run: each selects a subset of the matrix or scales it. */
export interface BenchOptions {
  /** Schemes to measure. Default: all four. */
  schemes?: Scheme[];
  /** Pin paths (pin-unpin, get-put, mixed). Default: both. */
  paths?: PinPath[];
  /** Folio orders: 0 (4 KiB), 9 (2 MiB), 18 (1 GiB; needs bufferPages >= 2^18). Default [0, 9]. */
  orders?: number[];
  /** Operations. Default ['pin-unpin', 'gup-fast']. */
  ops?: ModelOp[];
  /** Thread counts. Default [1, every core] (oversubscription: ask for more than the cores). */
  threads?: number[];
  /** Sharing modes. Default ['private', 'shared'] (1 thread measures private only). */
  sharing?: BenchSharing[];
  /** Inputs for pin-unpin, get-put and mixed. Default ['range'] (plus the list pair a target needs). */
  inputs?: ('range' | 'list')[];
  /** Pages each thread works over (rounded up to whole folios of each order). Default 16384 (64 MiB of 4 KiB pages). */
  bufferPages?: number;
  /** Pages per call, like gup_test's -n. Default 0: the whole buffer in one call. */
  pagesPerCall?: number;
  /** Measured trials per configuration. Default 11 (quick: 3). */
  trials?: number;
  /** Calibrated length of one trial in ms. Default 25 (quick: 2). */
  trialMs?: number;
  /** Measure the host kernel beside the model (io_uring buffer registration). Default true. */
  kernel?: boolean;
  /** A short run for CI: few trials, short trials, 1 and 2 threads at most. */
  quick?: boolean;
}

/** The options with every default filled in. */
export type ResolvedBenchOptions = Required<BenchOptions>;

/** Fills in the defaults and checks the values' types (the core checks their ranges). */
export function resolveBenchOptions(o: BenchOptions, cores: number): ResolvedBenchOptions {
  const quick = o.quick ?? false;
  const r: ResolvedBenchOptions = {
    schemes: o.schemes ?? [...SCHEMES],
    paths: o.paths ?? ['per-page', 'bvec'],
    orders: o.orders ?? [0, 9],
    ops: o.ops ?? ['pin-unpin', 'gup-fast'],
    threads: o.threads ?? [...new Set([1, quick ? Math.min(2, cores) : cores])],
    sharing: o.sharing ?? ['private', 'shared'],
    inputs: o.inputs ?? ['range'],
    bufferPages: o.bufferPages ?? 16384,
    pagesPerCall: o.pagesPerCall ?? 0,
    trials: o.trials ?? (quick ? 3 : 11),
    trialMs: o.trialMs ?? (quick ? 2 : 25),
    kernel: o.kernel ?? true,
    quick,
  };
  nonEmpty('schemes', r.schemes, SCHEMES);
  nonEmpty('paths', r.paths, ['per-page', 'bvec']);
  nonEmpty('ops', r.ops, MODEL_OPS);
  nonEmpty('sharing', r.sharing, SHARINGS);
  nonEmpty('inputs', r.inputs, ['range', 'list']);
  for (const t of r.threads) positiveInt('threads', t, 1024);
  for (const k of r.orders) if (!Number.isInteger(k) || k < 0 || k > 18) invalid(`orders: ${k} is not a folio order in 0..18`);
  if (r.ops.includes('gup-fast') && !r.orders.some((k) => k === 0 || k === 9)) {
    invalid(`orders: gup-fast maps 4 KiB (order 0) or 2 MiB (order 9) pages; got ${r.orders.join(',')}`);
  }
  positiveInt('bufferPages', r.bufferPages, 2 ** 26);
  if (!Number.isInteger(r.pagesPerCall) || r.pagesPerCall < 0 || r.pagesPerCall > 2 ** 26) invalid(`pagesPerCall must be an integer in 0..${2 ** 26} (got ${r.pagesPerCall})`);
  positiveInt('trials', r.trials, 1000);
  if (!(r.trialMs > 0 && r.trialMs <= 60000)) invalid(`trialMs must be a number in (0, 60000] (got ${r.trialMs})`);
  return r;
}

/** The native specs of a run: the model's configurations, then the raw baselines beside them. */
export function buildMatrix(r: ResolvedBenchOptions): NativeBenchSpec[] {
  const specs: NativeBenchSpec[] = [];
  const seen = new Set<string>();
  const add = (s: NativeBenchSpec): void => {
    const key = JSON.stringify(s);
    if (!seen.has(key)) {
      seen.add(key);
      specs.push(s);
    }
  };
  const base = { bufferPages: r.bufferPages, pagesPerCall: r.pagesPerCall };
  for (const threads of r.threads) {
    for (const sharing of r.sharing) {
      if (threads === 1 && sharing !== 'private' && r.sharing.includes('private')) continue; // same work
      for (const order of r.orders) {
        // A buffer holds whole folios: a 1 GiB folio (order 18) needs at least 2^18 pages,
        // which the model affords (about 1.3 MB of arrays).
        const folio = 2 ** order;
        const bufferPages = Math.ceil(r.bufferPages / folio) * folio;
        const common = { ...base, bufferPages, threads, sharing, order };
        for (const op of r.ops) {
          if (op === 'gup-fast') {
            if (order !== 0 && order !== 9) continue; // 4 KiB or 2 MiB mappings only
            for (const scheme of r.schemes) add({ ...common, op, scheme, perPage: false, listInput: false });
            continue;
          }
          for (const scheme of r.schemes)
            for (const path of r.paths)
              for (const input of r.inputs)
                add({ ...common, op, scheme, perPage: path === 'per-page', listInput: input === 'list' });
        }
        for (const input of r.inputs)
          for (const op of ['raw-per-page', 'raw-per-folio'] as const)
            add({ ...common, op, scheme: 'bias', perPage: false, listInput: input === 'list' });
      }
    }
  }
  // The PFN-list target (bvec vs per-page over 2 MiB folios, bias, 1 thread) has its pair.
  if (r.ops.includes('pin-unpin') && r.orders.includes(9) && r.schemes.includes('bias') && r.threads.includes(1)) {
    for (const perPage of [true, false])
      add({ ...base, op: 'pin-unpin', scheme: 'bias', perPage, listInput: true, threads: 1, sharing: 'private', order: 9 });
  }
  return specs;
}

/** The op of a native spec, typed. */
export function specOp(s: NativeBenchSpec): BenchOp {
  return s.op as BenchOp;
}

function nonEmpty<T>(name: string, values: readonly T[], allowed: readonly T[]): void {
  if (!Array.isArray(values) || values.length === 0) invalid(`${name} must be a non-empty list`);
  for (const v of values) if (!allowed.includes(v)) invalid(`${name}: unknown value ${String(v)} (known: ${allowed.join(', ')})`);
}

function positiveInt(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 1 || v > max) invalid(`${name} must be an integer in 1..${max} (got ${v})`);
}
