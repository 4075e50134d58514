// The plain-text report of a BenchResults document, for stdout.
import {
  NUMERIC_COLUMNS,
  ROW_HEADERS,
  durationLabel,
  kernelLine,
  rowCells,
  targetMeasure,
  verdict,
} from './format.js';
import { groupRows } from './groups.js';
import type { BenchResults, BenchTarget } from './types.js';

/** Options of {@link formatTable}. */
export interface TableOptions {
  /** ANSI colors on the verdicts and group titles (default false: plain text). */
  color?: boolean;
}

const SPREAD_COLUMN = ROW_HEADERS.indexOf('ns/page median [min..max]');

type Paint = (text: string, code: number) => string;

function painter(color: boolean): Paint {
  return color ? (text, code) => `\x1b[${code}m${text}\x1b[0m` : (text) => text;
}

/** Right-aligns the median inside `median [min..max]` cells so the medians line up. */
function alignSpreads(cells: string[][]): void {
  const split = cells.map((c) => {
    const s = c[SPREAD_COLUMN] ?? '';
    const i = s.indexOf(' [');
    return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i)];
  });
  const width = Math.max(0, ...split.map(([m]) => (m ?? '').length));
  cells.forEach((c, i) => {
    const [m = '', rest = ''] = split[i] ?? [];
    c[SPREAD_COLUMN] = m.padStart(width) + rest;
  });
}

function targetLines(targets: readonly BenchTarget[], paint: Paint): string[] {
  if (targets.length === 0) return ['targets: none checked'];
  const nameW = Math.max(...targets.map((t) => t.name.length));
  const descW = Math.max(...targets.map((t) => t.description.length));
  const measW = Math.max(...targets.map((t) => targetMeasure(t).length));
  const met = targets.filter((t) => t.skipped === null && t.met).length;
  const missed = targets.filter((t) => t.skipped === null && !t.met).length;
  const lines = [`targets: ${met} met, ${missed} MISSED, ${targets.length - met - missed} skipped`];
  for (const t of targets) {
    const v = verdict(t);
    const colored = paint(v, t.skipped !== null ? 33 : t.met ? 32 : 31);
    lines.push(`  ${t.name.padEnd(nameW)}  ${t.description.padEnd(descW)}  ${targetMeasure(t).padStart(measW)}  ${colored}`);
  }
  return lines;
}

/**
 * Renders a {@link BenchResults} document as a plain-text report: a header describing the
 * machine, build and run; the rows in aligned columns, grouped (model rows by op then folio
 * order with the host kernel's rows beside the model's gup-fast or pin-unpin rows of the same
 * mapping, then baselines); the host kernel's availability; the targets as `met`, `MISSED` or
 * `skipped (reason)` lines.
 *
 * @param results - the document (assumed valid: see validateBenchResults)
 * @param options - `color: true` adds ANSI colors; none by default
 * @returns the report, lines joined by `\n`, ending in a newline
 */
export function formatTable(results: BenchResults, options: TableOptions = {}): string {
  const paint = painter(options.color === true);
  const m = results.machine;
  const lines: string[] = [
    `pinlab ${m.pinlab} bench, ${results.createdAt}, ${durationLabel(results.durationMs)}, ${results.rows.length} rows`,
    `machine: ${m.cpu}, ${m.cores} logical cores, ${m.os}, kernel ${m.kernel}, node ${m.node}, build ${m.build}`,
    `figures: ns per 4 KiB page per round and thread (median [min..max] of ${trialsLabel(results)}); lower is better`,
    '',
  ];
  const groups = groupRows(results.rows);
  const cells = groups.flatMap((g) => g.rows.map(rowCells));
  alignSpreads(cells);
  const widths = ROW_HEADERS.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: readonly string[]): string =>
    c
      .map((s, i) => (NUMERIC_COLUMNS.has(i) ? s.padStart(widths[i] ?? 0) : s.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  lines.push(line(ROW_HEADERS), widths.map((w) => '-'.repeat(w)).join('  '));
  let next = 0;
  for (const g of groups) {
    lines.push(paint(`# ${g.title}`, 1));
    for (let i = 0; i < g.rows.length; i++) lines.push(line(cells[next++] ?? []));
  }
  if (groups.length === 0) lines.push('(no rows)');
  lines.push('', kernelLine(results), '', ...targetLines(results.targets, paint));
  return `${lines.join('\n')}\n`;
}

function trialsLabel(results: BenchResults): string {
  const t = results.rows.map((r) => r.trials);
  if (t.length === 0) return 'the trials';
  const lo = Math.min(...t);
  const hi = Math.max(...t);
  return lo === hi ? `${lo} trials` : `${lo} to ${hi} trials`;
}
