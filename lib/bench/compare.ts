// `--compare OLD.json`: the change of each row's median against an earlier run.
import { appendAll, maxOf } from '../arrays.js';
import { PinlabError } from '../errors.js';
import { fmt } from './format.js';
import { validateBenchResults } from './schema.js';
import { BENCH_SCHEMA_ID, BENCH_SCHEMA_VERSION, type BenchResults } from './types.js';

/** One row present in both runs. */
export interface RowChange {
  /** The row's `id`, shared by both runs. */
  id: string;
  /** Median ns per page of the earlier run. */
  previous: number;
  /** Median ns per page of this run. */
  current: number;
  /** current / previous: 1.2 is 20% slower, 0.8 is 20% faster. */
  ratio: number;
}

/** What {@link compareResults} found. */
export interface BenchComparison {
  /** The relative change beyond which a row counts as a regression or an improvement. */
  threshold: number;
  /** Every row in both runs, in this run's order. */
  rows: RowChange[];
  /** Rows slower by more than `threshold` (ratio > 1 + threshold), worst first. */
  regressions: RowChange[];
  /** Rows faster by more than `threshold` (ratio < 1 - threshold), best first. */
  improvements: RowChange[];
  /** Ids only in this run. */
  added: string[];
  /** Ids only in the earlier run. */
  removed: string[];
}

/** Options of {@link compareResults}. */
export interface CompareOptions {
  /** Relative change that counts, >= 0 (default 0.10: 10%). */
  threshold?: number;
}

function checkDocument(doc: unknown, which: string): void {
  const d = doc as { schema?: unknown; version?: unknown } | null;
  if (typeof d !== 'object' || d === null || d.schema !== BENCH_SCHEMA_ID) {
    throw new PinlabError('EINVAL', `${which} results: not a ${BENCH_SCHEMA_ID} document (schema ${JSON.stringify(d?.schema)})`);
  }
  if (d.version !== BENCH_SCHEMA_VERSION) {
    throw new PinlabError(
      'EINVAL',
      `${which} results: schema version ${JSON.stringify(d.version)}, this pinlab reads version ${BENCH_SCHEMA_VERSION} only; rerun the benchmark with the same pinlab to compare`,
    );
  }
  const errors = validateBenchResults(doc);
  if (errors.length > 0) throw new PinlabError('EINVAL', `${which} results are invalid: ${errors.slice(0, 3).join('; ')}`);
}

function ratioOf(current: number, previous: number): number {
  if (previous > 0) return current / previous;
  return current === previous ? 1 : Infinity;
}

/**
 * Pairs the rows of two runs by `id` and compares their median ns per page.
 *
 * @param current - this run
 * @param previous - the earlier run (e.g. parsed from OLD.json: it is checked, not trusted)
 * @param options - `threshold` (default 0.10)
 * @returns the per-row changes, regressions, improvements and unpaired rows
 * @throws PinlabError `EINVAL` if either document is not a pinlab-bench document of this schema
 *   version (the message names both versions), is otherwise invalid, or the threshold is not a
 *   finite number >= 0
 */
export function compareResults(current: BenchResults, previous: BenchResults, options: CompareOptions = {}): BenchComparison {
  const threshold = options.threshold ?? 0.1;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold < 0) {
    throw new PinlabError('EINVAL', `threshold must be a finite number >= 0 (got ${String(threshold)})`);
  }
  checkDocument(previous, 'previous');
  checkDocument(current, 'current');
  const before = new Map(previous.rows.map((r) => [r.id, r]));
  const now = new Set(current.rows.map((r) => r.id));
  const rows: RowChange[] = [];
  const added: string[] = [];
  for (const r of current.rows) {
    const p = before.get(r.id);
    if (!p) added.push(r.id);
    else rows.push({ id: r.id, previous: p.nsPerPage.median, current: r.nsPerPage.median, ratio: ratioOf(r.nsPerPage.median, p.nsPerPage.median) });
  }
  return {
    threshold,
    rows,
    regressions: rows.filter((c) => c.ratio > 1 + threshold).sort((a, b) => b.ratio - a.ratio),
    improvements: rows.filter((c) => c.ratio < 1 - threshold).sort((a, b) => a.ratio - b.ratio),
    added,
    removed: previous.rows.filter((r) => !now.has(r.id)).map((r) => r.id),
  };
}

/** True when the comparison found a regression: a `--compare` run then exits non-zero. */
export function hasRegressions(cmp: BenchComparison): boolean {
  return cmp.regressions.length > 0;
}

function pct(ratio: number): string {
  if (!Number.isFinite(ratio)) return '+inf%';
  const p = (ratio - 1) * 100;
  return `${p >= 0 ? '+' : ''}${p.toFixed(1)}%`;
}

function changeLines(title: string, list: readonly RowChange[]): string[] {
  if (list.length === 0) return [];
  const w = maxOf(list.map((c) => c.id.length), 0);
  const fw = maxOf(list.map((c) => fmt(c.previous).length), 0);
  return appendAll(
    [`${title} (${list.length}):`],
    list.map((c) => `  ${c.id.padEnd(w)}  ${fmt(c.previous).padStart(fw)} -> ${fmt(c.current)} ns/page  ${pct(c.ratio)}`),
  );
}

/**
 * Renders a comparison for stdout: a summary line, then the regressions, improvements and
 * unpaired rows (each list only when non-empty).
 *
 * @param cmp - what {@link compareResults} returned
 * @returns the text, ending in a newline
 */
export function formatComparison(cmp: BenchComparison): string {
  const pctT = `${(cmp.threshold * 100).toFixed(cmp.threshold * 100 < 1 ? 2 : 0)}%`;
  const lines: string[] = [
    `compared ${cmp.rows.length} rows (median ns/page, threshold ${pctT}): ` +
      `${cmp.regressions.length} regression${cmp.regressions.length === 1 ? '' : 's'}, ` +
      `${cmp.improvements.length} improvement${cmp.improvements.length === 1 ? '' : 's'}, ` +
      `${cmp.added.length} new, ${cmp.removed.length} gone`,
  ];
  appendAll(lines, changeLines('regressions', cmp.regressions));
  appendAll(lines, changeLines('improvements', cmp.improvements));
  if (cmp.added.length > 0) appendAll(lines, [`only in this run (${cmp.added.length}):`, ...cmp.added.map((id) => `  ${id}`)]);
  if (cmp.removed.length > 0) appendAll(lines, [`only in the previous run (${cmp.removed.length}):`, ...cmp.removed.map((id) => `  ${id}`)]);
  if (cmp.regressions.length === 0) lines.push('no regressions');
  return `${lines.join('\n')}\n`;
}
