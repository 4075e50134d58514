// runProfile: how often "maybe pinned" is wrong, per scheme and bias, on a population.
import os from 'node:os';

import { invalid } from '../errors.js';
import { describeMachine } from '../bench/machine.js';
import { native, type NativeProfileRun, type NativeProfileTally } from '../native.js';
import { SCHEMES, type Scheme } from '../schemes.js';
import type { Population } from '../types/population.js';
import { PRESETS, type PresetName } from './presets.js';
import { checkPopulation } from './population.js';
import {
  PROFILE_SCHEMA_ID,
  PROFILE_SCHEMA_VERSION,
  type ProfileBucket,
  type ProfileCounts,
  type ProfileResults,
  type ProfileScheme,
  type Rate,
} from './types.js';

/** Options of {@link runProfile}. */
export interface ProfileOptions {
  /** A named population (default 'desktop' when no `population` is given). */
  preset?: PresetName;
  /** A custom population (see {@link Population}); wins over `preset`. */
  population?: Population;
  /** Override the population's size in base pages. */
  pages?: number;
  /** Override the population's seed. */
  seed?: number;
  /** Schemes to profile. Default: all four. */
  schemes?: Scheme[];
  /** The bias (GUP_PIN_COUNTING_BIAS). Default 1024. */
  bias?: number;
  /** Also profile every bias 2^4..2^16 (or the given list): false positives against pin budget. */
  biasSweep?: boolean | number[];
  /** Native threads for the classification. Default: every core. */
  threads?: number;
  /** Folios run through the AddressSpace clients (fork, migration) for the downstream cost. Default 4096. */
  sampleFolios?: number;
  /** A host snapshot file (`pinlab snapshot`): its folios and map counts instead of a synthetic population; the pins come from the population's pin parameters. */
  snapshot?: string;
  /** Called as schemes and biases complete. */
  onProgress?: (event: { done: number; total: number; what: string }) => void;
}

/** Every bias of a sweep: 2^4 .. 2^16. */
export const BIAS_SWEEP: readonly number[] = Array.from({ length: 13 }, (_, i) => 2 ** (i + 4));

const INT32_MAX = 2 ** 31 - 1;

/**
 * Profiles the false positives of "maybe pinned" for each scheme (and bias) on a synthetic
 * population, in native threads, against the exact truth from debug accounting; runs fork
 * and migration on a sample for the downstream cost; sets the analytic expectation beside
 * every measured rate and lists disagreements beyond the confidence interval.
 * @throws PinlabError `EINVAL` for a bad option or population (as a rejection)
 */
export async function runProfile(options: ProfileOptions = {}): Promise<ProfileResults> {
  const started = performance.now();
  const presetName = options.population === undefined ? (options.preset ?? 'desktop') : null;
  if (presetName !== null && (typeof presetName !== 'string' || !Object.hasOwn(PRESETS, presetName))) {
    invalid(`unknown preset '${String(presetName)}' (known: ${Object.keys(PRESETS).join(', ')})`);
  }
  const source = options.population ?? PRESETS[presetName!].population;
  const overrides = { ...(options.pages === undefined ? {} : { pages: options.pages }), ...(options.seed === undefined ? {} : { seed: options.seed }) };
  // Check the shape before copying: the check is bounded in depth, structuredClone is not.
  checkPopulation(source === null || typeof source !== 'object' ? source : { ...source, ...overrides });
  const population: Population = { ...structuredClone(source), ...overrides };
  const schemes = options.schemes ?? [...SCHEMES];
  for (const s of schemes) if (!SCHEMES.includes(s)) invalid(`unknown scheme '${String(s)}'`);
  const bias = options.bias ?? 1024;
  const sweep = options.biasSweep === true ? BIAS_SWEEP : options.biasSweep === false || options.biasSweep === undefined ? [] : options.biasSweep;
  const biases = [...new Set([bias, ...sweep])];
  const threads = options.threads ?? os.availableParallelism();
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) invalid(`threads must be an integer in 1..1024 (got ${threads})`);
  const sampleFolios = options.sampleFolios ?? 4096;
  const snapshot = options.snapshot;
  const raw = await native.runProfile(
    { population, schemes, biases, threads, sampleFolios, ...(snapshot === undefined ? {} : { snapshot }) },
    (done, total, what) => options.onProgress?.({ done, total, what }),
  );
  // A snapshot's references are measured, not drawn: there is no analytic expectation then.
  const median = snapshot === undefined ? medianRefs(population) : medianOfBuckets(raw.runs[0]);
  const results = raw.runs.map((run) => schemeResult(run, snapshot === undefined ? population : null, median));
  const { pages: _pages, orders: _orders, refs: _refs, freeFraction: _free, ...pins } = population;
  return {
    schema: PROFILE_SCHEMA_ID,
    version: PROFILE_SCHEMA_VERSION,
    createdAt: new Date().toISOString(),
    machine: describeMachine('Release'),
    source:
      snapshot === undefined
        ? { kind: 'synthetic', preset: presetName, population }
        : { kind: 'snapshot', file: snapshot, pages: raw.pages, pins },
    schemes: results,
    scanPagesPerSecond: Math.max(...raw.runs.map((r) => r.scanPagesPerSecond)),
    threads,
    durationMs: performance.now() - started,
    disagreements: results.flatMap((s) =>
      s.expected !== null && !s.expected.agrees
        ? [`${s.scheme} bias ${s.bias}: measured ${fmt(s.overall.falsePositives.rate)} [${fmt(s.overall.falsePositives.low)}, ${fmt(s.overall.falsePositives.high)}], expected ${fmt(s.expected.rate)}`]
        : [],
    ),
  };
}

/** A rate with its 95 % Wilson score interval. */
export function wilson(count: number, total: number): Rate {
  if (total === 0) return { count, total, rate: 0, low: 0, high: 0 };
  const z = 1.959963984540054;
  const p = count / total;
  const d = 1 + (z * z) / total;
  const centre = (p + (z * z) / (2 * total)) / d;
  const half = (z * Math.sqrt((p * (1 - p)) / total + (z * z) / (4 * total * total))) / d;
  // The interval's ends are exact at the extremes (rounding would leave 1e-17 there).
  const low = count === 0 ? 0 : Math.max(0, centre - half);
  const high = count === total ? 1 : Math.min(1, centre + half);
  return { count, total, rate: p, low, high };
}

// Rates count folios: a folio answers once for all its pages, so folios are the independent
// trials (a 2 MiB folio is one answer, not 512). Page counts are in `pages` and the costs.
// hiddenReads: the scheme hides read pins by design (write-bias), so they are counted apart.
function counts(t: NativeProfileTally, hiddenReads: boolean): ProfileCounts {
  return {
    pages: t.pages,
    falsePositives: wilson(t.falsePositiveFolios, t.unpinnedFolios),
    falseNegatives: wilson(t.falseNegativeFolios, t.pinnedFolios),
    hiddenReadPins: hiddenReads ? wilson(t.hiddenReadFolios, t.readOnlyFolios) : null,
  };
}

function schemeResult(run: NativeProfileRun, population: Population | null, median: number): ProfileScheme {
  // What the scheme is comes from its policy, through the addon: never from its name.
  const wb = !run.readPinsVisible;
  const byOrder: ProfileBucket[] = run.byOrder.flatMap((t, order) =>
    t.pages > 0 ? [{ label: `order ${order}`, key: order, ...counts(t, wb) }] : [],
  );
  const byRefs: ProfileBucket[] = run.byRefs.flatMap((t, b) =>
    t.pages > 0 ? [{ label: b === 0 ? 'refs 0' : `refs ${2 ** (b - 1)}..${2 ** b - 1}`, key: b === 0 ? 0 : 2 ** (b - 1), ...counts(t, wb) }] : [],
  );
  // The analytic expectation: an unpinned folio is a false positive when its plain references
  // reach the bias (bias-counted folios only): P(refs >= bias), over the unpinned folios.
  const tail = population === null ? 0 : native.distributionTail(population.refs, run.bias);
  let expectedFolios = 0;
  run.byOrder.forEach((t, order) => {
    // Folios with an exact pincount have no false positives.
    if (run.exactOrders[order] !== true) expectedFolios += t.unpinnedFolios * tail;
  });
  const overall = counts(run.overall, wb);
  const expectedRate = run.overall.unpinnedFolios > 0 ? expectedFolios / run.overall.unpinnedFolios : 0;
  const fp = overall.falsePositives;
  const scale = run.samplePages > 0 ? run.overall.pages / run.samplePages : 0;
  const perPin = run.pinRefCost;
  return {
    scheme: run.scheme as ProfileScheme['scheme'],
    bias: run.bias,
    overall,
    byOrder,
    byRefs,
    overflowRefusals: run.overflowRefusals,
    pinsTaken: run.pinsTaken,
    expected:
      population === null ? null : { rate: expectedRate, agrees: expectedRate >= fp.low - 1e-12 && expectedRate <= fp.high + 1e-12 },
    downstream: {
      needlessEarlyCowPages: Math.round(run.sampleEarlyCowFalsePositives * scale),
      unmovablePages: Math.round(run.sampleMigrationFalsePositives * scale),
      uncollapsiblePages: Math.round(run.sampleCollapseFalsePositives * scale),
      unreclaimablePages: run.overall.falsePositivePages,
      pageoutSkippedPages: Math.round(run.samplePageoutFalsePositives * scale),
      samplePages: run.samplePages,
      scale,
    },
    pinBudget: Math.floor((INT32_MAX - median) / perPin),
  };
}

/** The median plain reference count from a run's reference buckets (bucket floors). */
function medianOfBuckets(run: NativeProfileRun | undefined): number {
  if (run === undefined) return 1;
  const total = run.byRefs.reduce((n, t) => n + t.folios, 0);
  let seen = 0;
  for (let b = 0; b < run.byRefs.length; b++) {
    seen += run.byRefs[b]!.folios;
    if (seen * 2 >= total) return b === 0 ? 0 : 2 ** (b - 1);
  }
  return 1;
}

/** The median plain reference count of the population's allocated folios (from its distribution). */
function medianRefs(population: Population): number {
  let lo = 1;
  let hi = INT32_MAX;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (native.distributionTail(population.refs, mid + 1) <= 0.5) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function fmt(x: number): string {
  return x.toPrecision(4);
}
