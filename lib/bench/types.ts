// The benchmark's result document: what `runBench` resolves with, what `pinlab bench --json`
// prints and `--out DIR` writes as results.json. Versioned: a change that breaks readers bumps
// BENCH_SCHEMA_VERSION; the JSON Schema in ./schema.ts describes exactly these types.
import type { Scheme } from '../schemes.js';

/** Schema identifier of {@link BenchResults} documents. */
export const BENCH_SCHEMA_ID = 'pinlab-bench';
/** Version of the result document layout. */
export const BENCH_SCHEMA_VERSION = 1;

/** What a row measures. */
export type BenchOp =
  | 'pin-unpin' // PageArray pinPages + unpinPages
  | 'get-put' // PageArray getPage + putPage (FOLL_GET)
  | 'gup-fast' // AddressSpace pinUserPagesFast + unpinUserPages
  | 'mixed' // pins racing plain gets and puts on the same pages
  | 'raw-per-page' // baseline: one fetch_add and one fetch_sub per page
  | 'raw-per-folio' // baseline: one fetch_add and one fetch_sub per folio run
  | 'io_uring-register'; // the host kernel: io_uring buffer registration (FOLL_PIN|FOLL_LONGTERM)

/** How threads share pages. */
export type BenchSharing = 'private' | 'shared' | 'interleaved';

/** Where a row comes from. */
export type BenchRowKind = 'model' | 'baseline' | 'kernel';

/** Median and spread of the trials, ns per 4 KiB page. */
export interface BenchSpread {
  /** Median of the per-trial figures (mean of the middle two for an even count). */
  median: number;
  /** Fastest trial. */
  min: number;
  /** Slowest trial. */
  max: number;
  /** First quartile (25th percentile, interpolated between trials). */
  q1: number;
  /** Third quartile (75th percentile, interpolated between trials). */
  q3: number;
}

/** One measured configuration. */
export interface BenchRow {
  /** Stable key of the configuration, e.g. `pin-unpin/bias/bvec/o9/range/shared/t2`. */
  id: string;
  /** `model` (pinlab's schemes), `baseline` (raw atomics) or `kernel` (the host kernel's io_uring pins). */
  kind: BenchRowKind;
  /** The operation measured. */
  op: BenchOp;
  /** Pin scheme (null for baselines and the kernel). */
  scheme: Scheme | null;
  /** Pin path (null where it does not apply: gup-fast, baselines per folio, kernel). */
  path: 'per-page' | 'bvec' | null;
  /** Folio order of the buffer (gup-fast and kernel: 0 = 4 KiB mappings, 9 = 2 MiB). */
  order: number;
  /** `range` ({ start, count }) or `list` (a Uint32Array of PFNs). */
  input: 'range' | 'list';
  /** Threads running the configuration at once (kernel rows: 1). */
  threads: number;
  /** How the threads share the buffer's pages (kernel rows: `private`). */
  sharing: BenchSharing;
  /** Pages each thread works over. */
  bufferPages: number;
  /** Pages per call (like gup_test's -n). */
  pagesPerCall: number;
  /** ns per 4 KiB page per round (one pin and one unpin, or get and put), per thread. */
  nsPerPage: BenchSpread;
  /** Throughput: pages per second per thread (median) and over all threads. */
  pagesPerSecond: {
    /** 4 KiB pages per second of one thread: 1e9 / the median ns per page. */
    perThread: number;
    /** `perThread` x `threads`. */
    total: number;
  };
  /** Atomic read-modify-write operations on page counts per page and round. */
  atomicsPerPage: number;
  /** Total throughput over `threads` x the same configuration's 1-thread throughput (1 = perfect); null without a 1-thread row. */
  scalingEfficiency: number | null;
  /** Total throughput over the 1-thread row's (e.g. 1.9 on 2 threads); null without one. */
  speedupVsOneThread: number | null;
  /** Per-page median over this bvec row's median, for the matching per-page row; null otherwise. */
  bvecSpeedup: number | null;
  /** This row's median over the same-run raw baselines of the same threads, sharing and order. */
  vsRawPerPage: number | null;
  /** Like `vsRawPerPage`, over the `raw-per-folio` baseline; null on non-model rows or without that baseline. */
  vsRawPerFolio: number | null;
  /** Trials taken. */
  trials: number;
  /** Kernel rows: pin and unpin apart, and the proof that pins happened. */
  kernel?: {
    /** Median over the trials of the buffer registration's (pin) time, ns per 4 KiB page. */
    pinNsPerPage: number;
    /** Median over the trials of the unregistration's (unpin) time, ns per 4 KiB page. */
    unpinNsPerPage: number;
    /** Rise of /proc/vmstat nr_foll_pin_acquired over the measured trials (system-wide); -1 if /proc/vmstat lacks it. */
    nrFollPinAcquiredDelta: number;
    /** Rise of /proc/vmstat nr_foll_pin_released over the measured trials (system-wide); -1 if /proc/vmstat lacks it. */
    nrFollPinReleasedDelta: number;
    /** 2 MiB rows: whether /proc/self/smaps showed the buffer backed by THPs. */
    thpConfirmed: boolean | null;
  };
}

/** A target of the issue, checked on its row(s). */
export interface BenchTarget {
  /** Stable identifier, e.g. `bias-per-page-vs-raw`. */
  name: string;
  /** What the target demands, in words. */
  description: string;
  /** The measured figure (a row's ratio, or the run's seconds for `default-run-time`); null when skipped. */
  value: number | null;
  /** The bound `value` is checked against with `op`. */
  limit: number;
  /** `<=`: value must not exceed limit; `>=`: must reach it. */
  op: '<=' | '>=';
  /** Whether `value` satisfies `op` `limit`; false when skipped. */
  met: boolean;
  /** Why it could not be checked (a row missing from a partial matrix), else null. */
  skipped: string | null;
}

/** The machine and build the run was taken on. */
export interface BenchMachine {
  /** Model name of the first logical CPU (`unknown` if not reported). */
  cpu: string;
  /** Logical CPUs (at least 1). */
  cores: number;
  /** Kernel release, as `os.release()` reports it. */
  kernel: string;
  /** Platform and architecture, e.g. `linux x64`. */
  os: string;
  /** Node.js version (`process.version`). */
  node: string;
  /** How the measured native code was built, e.g. `Release`. */
  build: string;
  /** pinlab's version from its package.json (`unknown` if not found). */
  pinlab: string;
}

/** The whole result document. */
export interface BenchResults {
  /** Always {@link BENCH_SCHEMA_ID}. */
  schema: typeof BENCH_SCHEMA_ID;
  /** Always {@link BENCH_SCHEMA_VERSION}. */
  version: typeof BENCH_SCHEMA_VERSION;
  /** When the run finished, as an ISO 8601 UTC timestamp. */
  createdAt: string;
  /** The machine and build measured. */
  machine: BenchMachine;
  /** The options the run resolved (see BenchOptions). */
  config: Record<string, unknown>;
  /** Wall time of the whole run. */
  durationMs: number;
  /** Every measured configuration: model and baseline rows, then kernel rows. */
  rows: BenchRow[];
  /** The targets, each checked on this run's rows (or skipped). */
  targets: BenchTarget[];
  /** The host kernel probe: available, or why not (rows of kind 'kernel' when available). */
  kernel: {
    /** Whether the probe produced at least one kernel row. */
    available: boolean;
    /** Why the probe (or one of its orders) gave no row, e.g. `not requested (--no-kernel)`; null when every order did. */
    reason: string | null;
  };
}
