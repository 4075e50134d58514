// The benchmark's result document: what `runBench` resolves with, what `pinlab bench --json`
// prints and `--out DIR` writes as results.json. Versioned: a change that breaks readers bumps
// BENCH_SCHEMA_VERSION; the JSON Schema in ./schema.ts describes exactly these types.

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
  median: number;
  min: number;
  max: number;
  q1: number;
  q3: number;
}

/** One measured configuration. */
export interface BenchRow {
  /** Stable key of the configuration, e.g. `pin-unpin/bias/bvec/o9/range/shared/t2`. */
  id: string;
  kind: BenchRowKind;
  op: BenchOp;
  /** Pin scheme (null for baselines and the kernel). */
  scheme: 'bias' | 'hybrid' | 'separate' | 'write-bias' | null;
  /** Pin path (null where it does not apply: gup-fast, baselines per folio, kernel). */
  path: 'per-page' | 'bvec' | null;
  /** Folio order of the buffer (gup-fast and kernel: 0 = 4 KiB mappings, 9 = 2 MiB). */
  order: number;
  /** `range` ({ start, count }) or `list` (a Uint32Array of PFNs). */
  input: 'range' | 'list';
  threads: number;
  sharing: BenchSharing;
  /** Pages each thread works over. */
  bufferPages: number;
  /** Pages per call (like gup_test's -n). */
  pagesPerCall: number;
  /** ns per 4 KiB page per round (one pin and one unpin, or get and put), per thread. */
  nsPerPage: BenchSpread;
  /** Throughput: pages per second per thread (median) and over all threads. */
  pagesPerSecond: { perThread: number; total: number };
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
  vsRawPerFolio: number | null;
  /** Trials taken. */
  trials: number;
  /** Kernel rows: pin and unpin apart, and the proof that pins happened. */
  kernel?: {
    pinNsPerPage: number;
    unpinNsPerPage: number;
    nrFollPinAcquiredDelta: number;
    nrFollPinReleasedDelta: number;
    /** 2 MiB rows: whether /proc/self/smaps showed the buffer backed by THPs. */
    thpConfirmed: boolean | null;
  };
}

/** A target of the issue, checked on its row(s). */
export interface BenchTarget {
  name: string;
  description: string;
  value: number | null;
  limit: number;
  /** `<=`: value must not exceed limit; `>=`: must reach it. */
  op: '<=' | '>=';
  met: boolean;
  /** Why it could not be checked (a row missing from a partial matrix), else null. */
  skipped: string | null;
}

/** The machine and build the run was taken on. */
export interface BenchMachine {
  cpu: string;
  cores: number;
  kernel: string;
  os: string;
  node: string;
  build: string;
  pinlab: string;
}

/** The whole result document. */
export interface BenchResults {
  schema: typeof BENCH_SCHEMA_ID;
  version: typeof BENCH_SCHEMA_VERSION;
  createdAt: string;
  machine: BenchMachine;
  /** The options the run resolved (see BenchOptions). */
  config: Record<string, unknown>;
  /** Wall time of the whole run. */
  durationMs: number;
  rows: BenchRow[];
  targets: BenchTarget[];
  /** The host kernel probe: available, or why not (rows of kind 'kernel' when available). */
  kernel: { available: boolean; reason: string | null };
}
