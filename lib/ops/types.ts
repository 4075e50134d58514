// The result document of `pinlab replay` / runReplay.
import type { BenchMachine } from '../bench/types.js';
import type { Scheme } from '../schemes.js';
import type { StateDigest } from './state.js';

/** The `schema` field of a replay result document. */
export const REPLAY_SCHEMA_ID = 'pinlab-replay';
/** The `version` field of a replay result document. */
export const REPLAY_SCHEMA_VERSION = 1;

/** The stream a replay read: its header and size. */
export interface ReplayStream {
  /** The file as given. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
  /** Records (ops and their data records). */
  records: number;
  /** Ops. */
  ops: number;
  /** Tags (threads) the stream uses. */
  threads: number;
  /** The page array's base pages. */
  pages: number;
  /** ZONE_MOVABLE pages. */
  movablePages: number;
  /** Initial folio order. */
  folioOrder: number;
  /** The recording's hybrid rule (smallest order with an exact pincount). */
  pincountMinOrder: number;
  /** The recording's bias. */
  pinBias: number;
  /** Debug accounting in the recording. */
  debug: boolean;
  /** Whether the array started populated. */
  populated: boolean;
  /** The scheme it was recorded under. */
  scheme: Scheme;
}

/** One decision that reads "maybe pinned", over the whole replay. */
export interface ReplayDecision {
  /** How often it was taken ("maybe pinned": copied, refused, skipped). */
  decisions: number;
  /** Of those, the ones whose folio held no pin (debug accounting or an exact pincount is the truth). */
  falsePositives: number;
  /**
   * Of those, the ones whose pins were not exactly known (bias-counted folios without debug
   * mode), at most `decisions`. Each decision's own: the replay's mm statistics count them by
   * kind (`earlyCowUnclassified`, `migrationUnclassified`, `collapseUnclassified`,
   * `pageoutUnclassified`; an address space's `stats().unclassified` is their sum).
   */
  unclassified: number;
}

/** The results of one scheme (and bias, and hybrid rule) of a replay. */
export interface ReplayScheme {
  /** The scheme. */
  scheme: Scheme;
  /** GUP_PIN_COUNTING_BIAS of this run. */
  bias: number;
  /** Hybrid: smallest folio order with an exact pincount (the `--rules` value). */
  pincountMinOrder: number;
  /** Debug accounting on (the truth of the false positives). */
  debug: boolean;
  /** Native threads it ran on. */
  threads: number;
  /** Ops run. */
  ops: number;
  /** Wall time of the ops, all threads (building the array and the end-state scans excluded). */
  seconds: number;
  /**
   * CPU time the threads spent running the ops, summed over the threads (each thread's own
   * clock): unlike `seconds`, it leaves out the time a busy machine gave to other work.
   */
  cpuSeconds: number;
  /** `ops / seconds`. */
  opsPerSecond: number;
  /** `opsPerSecond / threads`. */
  opsPerSecondPerThread: number;
  /**
   * `ops / cpuSeconds`: ops per second of one thread while it ran (0 if no CPU time was
   * measured). Beside `opsPerSecondPerThread`, the part of a shortfall a loaded machine caused.
   */
  opsPerCpuSecond: number;
  /** Nanoseconds per op and thread: `1e9 * seconds * threads / ops`. */
  nsPerOp: number;
  /** Ops refused (negative results). */
  refused: number;
  /** Refusals by error code (`EINVAL`, `EOVERFLOW`, ...), codes with none left out. */
  refusals: Record<string, number>;
  /** Pins and gets refused because a count would pass 2^31-1 (`stats().overflowRefusals`). */
  overflowRefusals: number;
  /** Imbalances the core detected and refused: `ENOTPINNED` and `EPINNED` refusals. */
  imbalances: number;
  /** Ops whose result differs from the one recorded (0 under the recording's own scheme). */
  diverged: number;
  /**
   * The decisions that read "maybe pinned": fork's early COW (pages copied), migration and
   * compaction (folios refused), reclaim (a scan of the end state: folios it would skip), THP
   * collapse (MADV_COLLAPSE and khugepaged: pages skipped) and MADV_PAGEOUT (pages kept).
   */
  decisions: {
    /** fork(): pages copied at once because they were maybe pinned (early COW), in pages. */
    earlyCow: ReplayDecision;
    /** migrate/compact/long-term pins: folios refused as maybe pinned, in folios. */
    migration: ReplayDecision;
    /** Reclaim over the end state: allocated folios it would skip as maybe pinned, in folios. */
    reclaim: ReplayDecision;
    /**
     * MADV_COLLAPSE and khugepaged: pages of a 2 MiB stretch not collapsed because their folio
     * held extra references and was maybe pinned, in pages (`mmStats.collapseMaybePinned`).
     */
    collapse: ReplayDecision;
    /**
     * MADV_PAGEOUT: pages kept because their folio was maybe pinned, in pages
     * (`mmStats.pageoutRefusals`).
     */
    pageout: ReplayDecision;
  };
  /**
   * Every decision's false positives added up, each as its client counts it (early-COW pages,
   * migration and reclaim folios, collapse and pageout pages).
   */
  falsePositives: number;
  /** Reclaim's end-state scan. */
  reclaimScan: {
    /** Allocated folios at the end. */
    folios: number;
    /** Of those, folios holding pins that read as not maybe pinned (write-bias's read pins, by design). */
    missed: number;
  };
  /** Pins acquired and not released at the end (`pinAcquired - pinReleased`). */
  pinsOutstanding: number;
  /** Debug mode: pages still holding pins at the end (0 otherwise). */
  debugPinnedPages: number;
  /** Whether the end state balances: no pin outstanding (and in debug mode no page pinned). */
  balanced: boolean;
  /** Address spaces the stream created. */
  addressSpaces: number;
  /** The page array's `stats()` at the end. */
  stats: Record<string, number>;
  /** The address spaces' `stats()`, summed. */
  mmStats: Record<string, number>;
  /** The end state's digest (with `endState: true`), else null. */
  endState: StateDigest | null;
}

/** The result document of {@link runReplay} (and `pinlab replay --json`). */
export interface ReplayResults {
  /** Always {@link REPLAY_SCHEMA_ID}. */
  schema: typeof REPLAY_SCHEMA_ID;
  /** Always {@link REPLAY_SCHEMA_VERSION}. */
  version: typeof REPLAY_SCHEMA_VERSION;
  /** When the replay finished (ISO 8601 UTC). */
  createdAt: string;
  /** The machine and build. */
  machine: BenchMachine;
  /** The stream. */
  stream: ReplayStream;
  /** Native threads per scheme. */
  threads: number;
  /** One entry per scheme, bias and rule, in the order run. */
  schemes: ReplayScheme[];
  /** The whole run, reading the stream included. */
  durationMs: number;
}
