// From the engine's raw trials to result rows: spread, throughput, and the ratios that make a
// figure readable (scaling over 1 thread, bvec over per-page, the same run's raw baselines).
import type { NativeBenchResult, NativeBenchSpec } from '../native.js';
import type { BenchRow, BenchSpread } from './types.js';

/** Median, quartiles and extremes (linear interpolation between order statistics). */
export function spread(samples: readonly number[]): BenchSpread {
  const v = [...samples].sort((a, b) => a - b);
  const q = (p: number): number => {
    if (v.length === 0) return Number.NaN;
    const pos = p * (v.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, v.length - 1);
    return v[lo]! + (v[hi]! - v[lo]!) * (pos - lo);
  };
  return { median: q(0.5), min: v[0] ?? Number.NaN, max: v[v.length - 1] ?? Number.NaN, q1: q(0.25), q3: q(0.75) };
}

/** Pages per call as run: the thread's whole share when the option is 0. */
export function effectivePagesPerCall(s: NativeBenchSpec): number {
  const share = s.sharing === 'interleaved' ? s.bufferPages / s.threads : s.bufferPages;
  if (s.op === 'gup-fast' && s.sharing === 'interleaved') return 1; // strided: a page per call
  return s.pagesPerCall === 0 ? share : Math.min(s.pagesPerCall, share);
}

/** The stable key of a configuration. */
export function rowId(s: NativeBenchSpec): string {
  const raw = s.op.startsWith('raw-');
  const scheme = raw ? '-' : s.scheme;
  const path = raw || s.op === 'gup-fast' ? '-' : s.perPage ? 'per-page' : 'bvec';
  const input = s.listInput ? 'list' : 'range';
  return `${s.op}/${scheme}/${path}/o${s.order}/${input}/${s.sharing}/t${s.threads}/b${s.bufferPages}/c${effectivePagesPerCall(s)}`;
}

/** One row per successful configuration, ratios filled in from the other rows. */
export function deriveRows(specs: readonly NativeBenchSpec[], results: readonly NativeBenchResult[]): BenchRow[] {
  const rows: BenchRow[] = [];
  specs.forEach((s, i) => {
    const r = results[i]!;
    if (!r.ok) return;
    const raw = s.op.startsWith('raw-');
    const ns = spread(r.nsPerPage);
    const perThread = 1e9 / ns.median;
    rows.push({
      id: rowId(s),
      kind: raw ? 'baseline' : 'model',
      op: s.op as BenchRow['op'],
      scheme: raw ? null : (s.scheme as BenchRow['scheme']),
      path: raw || s.op === 'gup-fast' ? null : s.perPage ? 'per-page' : 'bvec',
      order: s.order,
      input: s.listInput ? 'list' : 'range',
      threads: s.threads,
      sharing: s.sharing as BenchRow['sharing'],
      bufferPages: s.bufferPages,
      pagesPerCall: effectivePagesPerCall(s),
      nsPerPage: ns,
      pagesPerSecond: { perThread, total: perThread * s.threads },
      atomicsPerPage: r.atomicsPerPage,
      scalingEfficiency: null,
      speedupVsOneThread: null,
      bvecSpeedup: null,
      vsRawPerPage: null,
      vsRawPerFolio: null,
      trials: r.nsPerPage.length,
    });
  });
  fillRatios(rows);
  return rows;
}

/** Fills the cross-row ratios of model (and kernel-free) rows in place. */
export function fillRatios(rows: BenchRow[]): void {
  const byKey = new Map(rows.map((r) => [key(r), r]));
  for (const r of rows) {
    if (r.kind === 'kernel') continue;
    const one = byKey.get(key({ ...r, threads: 1, sharing: 'private' })) ?? byKey.get(key({ ...r, threads: 1 }));
    if (one !== undefined && r.threads > 1) {
      r.speedupVsOneThread = r.pagesPerSecond.total / one.pagesPerSecond.total;
      r.scalingEfficiency = r.speedupVsOneThread / r.threads;
    } else if (r.threads === 1) {
      r.speedupVsOneThread = 1;
      r.scalingEfficiency = 1;
    }
    if (r.path === 'bvec') {
      const pp = byKey.get(key({ ...r, path: 'per-page' }));
      if (pp !== undefined) r.bvecSpeedup = pp.nsPerPage.median / r.nsPerPage.median;
    }
    if (r.kind === 'model') {
      const rawPage = byKey.get(key({ ...r, kind: 'baseline', op: 'raw-per-page', scheme: null, path: null }));
      const rawFolio = byKey.get(key({ ...r, kind: 'baseline', op: 'raw-per-folio', scheme: null, path: null }));
      if (rawPage !== undefined) r.vsRawPerPage = r.nsPerPage.median / rawPage.nsPerPage.median;
      if (rawFolio !== undefined) r.vsRawPerFolio = r.nsPerPage.median / rawFolio.nsPerPage.median;
    }
  }
}

function key(r: Pick<BenchRow, 'kind' | 'op' | 'scheme' | 'path' | 'order' | 'input' | 'threads' | 'sharing' | 'bufferPages' | 'pagesPerCall'>): string {
  const input = r.op === 'gup-fast' ? 'range' : r.input;
  return [r.kind, r.op, r.scheme, r.path, r.order, input, r.threads, r.sharing, r.bufferPages, r.pagesPerCall].join('|');
}
