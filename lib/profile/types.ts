// The false-positive profiler's inputs and result document (what `runProfile` resolves with,
// `pinlab profile --json` prints and `--out DIR` writes as results.json). Versioned like the
// benchmark's: a change that breaks readers bumps PROFILE_SCHEMA_VERSION.
import type { Scheme } from '../schemes.js';
import type { Population } from '../types/population.js';

/** Schema identifier of {@link ProfileResults} documents. */
export const PROFILE_SCHEMA_ID = 'pinlab-profile';
/** Version of the result document layout. */
export const PROFILE_SCHEMA_VERSION = 1;

/** A rate with its 95 % Wilson confidence interval. */
export interface Rate {
  /** Events counted. */
  count: number;
  /** Out of. */
  total: number;
  rate: number;
  low: number;
  high: number;
}

/**
 * Counts of one scheme (and bias) over one slice of the population. Rates count folios: a
 * folio answers once for all its pages, so folios are the independent trials the confidence
 * intervals are taken over; `pages` and the downstream costs count base pages.
 */
export interface ProfileCounts {
  /** Base pages in the slice (allocated ones). */
  pages: number;
  /** Unpinned folios reported maybe pinned, over unpinned folios. */
  falsePositives: Rate;
  /** Pinned folios reported not pinned (write-bias read pins excluded), over pinned folios. */
  falseNegatives: Rate;
  /** write-bias only: folios holding only read pins, reported not pinned (by design). */
  hiddenReadPins: Rate | null;
}

/** One bucket of a breakdown: by folio order, or by plain-reference-count range. */
export interface ProfileBucket extends ProfileCounts {
  /** `order 9`, or `refs 512..1023`. */
  label: string;
  /** order, or the bucket's lowest reference count. */
  key: number;
}

/** The analytic expectation beside a measured rate (synthetic populations). */
export interface Expectation {
  /** Expected false-positive rate. */
  rate: number;
  /** Whether it lies inside the measured rate's confidence interval. */
  agrees: boolean;
}

/** What the wrong answers cost the kernel clients that trust them. */
export interface DownstreamCost {
  /** Base pages fork would copy at once (early COW) though unpinned: measured with AddressSpace.fork on a sample. */
  needlessEarlyCowPages: number;
  /** Base pages migration and compaction would refuse though unpinned (AddressSpace.migrate on a sample). */
  unmovablePages: number;
  /**
   * Base pages khugepaged / MADV_COLLAPSE would skip whose folio the scheme reports maybe pinned
   * though it holds no pin (MADV_COLLAPSE on a sample; the kernel's check is the refcount, so
   * these pages hold other references: this is what a diagnosis trusting "maybe pinned" blames
   * on pins). Absent from documents written before issue 13 (version 1 all the same).
   */
  uncollapsiblePages?: number;
  /** Base pages reclaim would skip though unpinned (maybe-pinned folios are not reclaimed): every false-positive page of the population, counted by the classification. */
  unreclaimablePages: number;
  /**
   * Base pages MADV_PAGEOUT would keep though unpinned: measured with AddressSpace.madvise
   * 'pageout' on the sample (each folio as one exclusive 4 KiB page; try_to_unmap refuses a
   * maybe-pinned exclusive folio), scaled like the other sample figures. Absent from documents
   * written before issue 13 (version 1 all the same).
   */
  pageoutSkippedPages?: number;
  /** Pages of the sample the clients ran over, and how many of the population they stand for. */
  samplePages: number;
  /** Scale factor from the sample to the whole population. */
  scale: number;
}

/** One scheme at one bias. */
export interface ProfileScheme {
  scheme: Scheme;
  bias: number;
  overall: ProfileCounts;
  byOrder: ProfileBucket[];
  byRefs: ProfileBucket[];
  /** Pins refused with EOVERFLOW while populating (the refcount budget was spent). */
  overflowRefusals: number;
  /** Pins the population asked for and got. */
  pinsTaken: number;
  /** Analytic false-positive rate for synthetic populations, null for snapshots. */
  expected: Expectation | null;
  downstream: DownstreamCost;
  /** Pins a small page with the median reference count can still take before overflow. */
  pinBudget: number;
}

/** The whole profile document. */
export interface ProfileResults {
  schema: typeof PROFILE_SCHEMA_ID;
  version: typeof PROFILE_SCHEMA_VERSION;
  createdAt: string;
  machine: { cpu: string; cores: number; kernel: string; os: string; node: string; build: string; pinlab: string };
  /** Where the population came from. */
  source: { kind: 'synthetic'; preset: string | null; population: Population } | { kind: 'snapshot'; file: string; pages: number; pins: Omit<Population, 'pages' | 'orders' | 'refs' | 'freeFraction'> };
  /** One entry per scheme and bias (a bias sweep gives several per scheme). */
  schemes: ProfileScheme[];
  /** Classification speed: base pages per second of the maybe-pinned scan, all threads. */
  scanPagesPerSecond: number;
  threads: number;
  durationMs: number;
  /** Measured rates that disagree with their analytic expectation (empty when all agree). */
  disagreements: string[];
}
