// results.md: the BenchResults document as GitHub markdown.
import {
  NUMERIC_COLUMNS,
  ROW_HEADERS,
  durationLabel,
  fmt,
  fmtExact,
  kernelLine,
  machineFields,
  rowCells,
  verdict,
} from './format.js';
import { groupRows } from './groups.js';
import { imageAlt, markdownTable } from '../report/markdown.js';
import type { BenchResults } from './types.js';

/** Options of {@link formatMarkdown}. */
export interface MarkdownOptions {
  /** Chart files to link as images, relative to the markdown file (e.g. `throughput.svg`). */
  charts?: string[];
}

function table(headers: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number>): string[] {
  return markdownTable(headers, rows, (i) => right.has(i));
}

/**
 * Renders a {@link BenchResults} document as results.md: the machine and run, one GitHub table
 * of rows per group (as in the text table), the host kernel's availability, the targets with
 * their verdicts (`met`, `MISSED`, `skipped (reason)`), and an image link per chart file.
 *
 * @param results - the document (assumed valid: see validateBenchResults)
 * @param options - `charts`: chart files to link, relative to where the markdown is written
 * @returns the markdown, ending in a newline
 */
export function formatMarkdown(results: BenchResults, options: MarkdownOptions = {}): string {
  const out: string[] = [
    '# pinlab benchmark results',
    '',
    `Run of ${results.createdAt}, ${durationLabel(results.durationMs)}, ${results.rows.length} rows. ` +
      'Figures are ns per 4 KiB page per round (pin and unpin, or get and put), per thread: ' +
      'median [min..max] over the trials; lower is better.',
    '',
    '## Machine',
    '',
    ...table(['', 'machine'], machineFields(results.machine), new Set()),
    '',
    '## Results',
  ];
  const right = new Set([...NUMERIC_COLUMNS, ROW_HEADERS.indexOf('ns/page median [min..max]')]);
  for (const g of groupRows(results.rows)) {
    out.push('', `### ${g.title}`, '', ...table(ROW_HEADERS, g.rows.map(rowCells), right));
  }
  if (results.rows.length === 0) out.push('', 'No rows.');
  out.push('', `${kernelLine(results)}.`, '', '## Targets', '');
  if (results.targets.length === 0) out.push('None checked.');
  else {
    const rows = results.targets.map((t) => [t.name, t.description, fmt(t.value), `${t.op} ${fmtExact(t.limit)}`, verdict(t)]);
    out.push(...table(['target', 'description', 'value', 'limit', 'verdict'], rows, new Set([2, 3])));
  }
  const charts = options.charts ?? [];
  if (charts.length > 0) {
    out.push('', '## Charts', '');
    for (const c of charts) out.push(`![${imageAlt(c)}](${encodeURI(c)})`, '');
    out.pop();
  }
  return `${out.join('\n')}\n`;
}
