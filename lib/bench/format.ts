// Shared formatting of BenchResults for the text table, the markdown and the comparison:
// number and size formats, the row groups in display order, and target verdicts.
import type { BenchMachine, BenchResults, BenchRow, BenchTarget } from './types.js';

/** A figure with three significant digits (`16.0`, `7.69`, `0.307`), whole above 1000; `-` for null. */
export function fmt(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (!Number.isFinite(n)) return String(n);
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toString();
  if (abs < 0.001) return n.toExponential(2);
  return n.toPrecision(3);
}

/** Like {@link fmt}, but whole numbers print whole: `3`, `50`, `2` (limits, counts of atomics). */
export function fmtExact(n: number | null | undefined): string {
  return typeof n === 'number' && Number.isInteger(n) ? String(n) : fmt(n);
}

/** A ratio as `2.08x`; `-` for null. */
export function fmtRatio(n: number | null | undefined): string {
  return n === null || n === undefined ? '-' : `${fmt(n)}x`;
}

/** A folio order as the folio's size: 0 → `4K`, 9 → `2M`, 18 → `1G`, 4 → `64K`. */
export function orderLabel(order: number): string {
  const kib = 4 * 2 ** order;
  if (kib >= 1024 * 1024) return `${kib / (1024 * 1024)}G`;
  if (kib >= 1024) return `${kib / 1024}M`;
  return `${kib}K`;
}

/** A folio order as words: 0 → `4 KiB`, 9 → `2 MiB`. */
export function orderWords(order: number): string {
  return `${orderLabel(order).slice(0, -1)} ${orderLabel(order).slice(-1)}iB`;
}

/** `median [min..max]` of a row's ns per page. */
export function spreadLabel(row: BenchRow): string {
  const s = row.nsPerPage;
  return `${fmt(s.median)} [${fmt(s.min)}..${fmt(s.max)}]`;
}

/** Speedup over 1 thread and efficiency, e.g. `x1.91 96%`; `-` without a 1-thread row. */
export function scalingLabel(row: BenchRow): string {
  const parts: string[] = [];
  if (row.speedupVsOneThread !== null) parts.push(`x${fmt(row.speedupVsOneThread)}`);
  if (row.scalingEfficiency !== null) parts.push(`${Math.round(row.scalingEfficiency * 100)}%`);
  return parts.length > 0 ? parts.join(' ') : '-';
}

/** Ratios to the raw baselines, per page and per folio: `1.52x/48.1x`. */
export function vsRawLabel(row: BenchRow): string {
  if (row.vsRawPerPage === null && row.vsRawPerFolio === null) return '-';
  return `${fmtRatio(row.vsRawPerPage)}/${fmtRatio(row.vsRawPerFolio)}`;
}

/** The scheme column: the scheme, `(kernel)` for host kernel rows, `-` for baselines. */
export function schemeLabel(row: BenchRow): string {
  return row.scheme ?? (row.kind === 'kernel' ? '(kernel)' : '-');
}

/** Total throughput in millions of pages per second. */
export function mpagesLabel(row: BenchRow): string {
  return fmt(row.pagesPerSecond.total / 1e6);
}

/** The cells of one row, in the column order of {@link ROW_HEADERS}. */
export function rowCells(row: BenchRow): string[] {
  return [
    row.op,
    schemeLabel(row),
    row.path ?? '-',
    orderLabel(row.order),
    row.input,
    String(row.threads),
    row.sharing,
    spreadLabel(row),
    mpagesLabel(row),
    fmtExact(row.atomicsPerPage),
    scalingLabel(row),
    fmtRatio(row.bvecSpeedup),
    vsRawLabel(row),
  ];
}

/** Column headers of the row tables. */
export const ROW_HEADERS: readonly string[] = [
  'op',
  'scheme',
  'path',
  'order',
  'input',
  'threads',
  'sharing',
  'ns/page median [min..max]',
  'Mpages/s total',
  'atomics/page',
  'scaling',
  'bvec speedup',
  'vs raw pp/pf',
];

/** Which {@link ROW_HEADERS} columns hold figures (right-aligned). */
export const NUMERIC_COLUMNS: ReadonlySet<number> = new Set([3, 5, 8, 9, 10, 11, 12]);

/** The verdict of a target: `met`, `MISSED` or `skipped (reason)`. */
export function verdict(t: BenchTarget): string {
  if (t.skipped !== null) return `skipped (${t.skipped})`;
  return t.met ? 'met' : 'MISSED';
}

/** A target's measurement against its limit, e.g. `2.08 <= 3`; `- <= 3` without a value. */
export function targetMeasure(t: BenchTarget): string {
  return `${fmt(t.value)} ${t.op} ${fmtExact(t.limit)}`;
}

/** The kernel probe as one line. */
export function kernelLine(results: BenchResults): string {
  const k = results.kernel;
  const rows = results.rows.filter((r) => r.kind === 'kernel').length;
  if (k.available) return `host kernel: available (${rows} row${rows === 1 ? '' : 's'})`;
  return `host kernel: unavailable (${k.reason ?? 'no reason given'})`;
}

/** The machine as short `label: value` pairs, in display order. */
export function machineFields(m: BenchMachine): [string, string][] {
  return [
    ['cpu', m.cpu],
    ['cores', String(m.cores)],
    ['kernel', m.kernel],
    ['os', m.os],
    ['node', m.node],
    ['build', m.build],
    ['pinlab', m.pinlab],
  ];
}

/** Wall time in the largest fitting unit: `850 ms`, `12.3 s`, `4.2 min`. */
export function durationLabel(ms: number): string {
  if (ms < 1000) return `${fmt(ms)} ms`;
  if (ms < 120_000) return `${fmt(ms / 1000)} s`;
  return `${fmt(ms / 60_000)} min`;
}
