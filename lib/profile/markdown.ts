// results.md: the ProfileResults document as GitHub markdown (the text table's content).
import { durationLabel } from '../bench/format.js';
import {
  BUCKET_HEADERS,
  DOWNSTREAM_HEADERS,
  NUMERIC_HEADERS,
  bucketRows,
  downstreamCells,
  entryLabel,
  falseNegativeAlarms,
  firstBiases,
  isSynthetic,
  orderedEntries,
  runLine,
  sourceFields,
  summaryCells,
  summaryHeaders,
} from './table.js';
import { imageAlt, markdownTable } from '../report/markdown.js';
import type { ProfileResults } from './types.js';

/** Options of {@link formatProfileMarkdown}. */
export interface ProfileMarkdownOptions {
  /** Chart files to link as images, relative to the markdown file (e.g. `fp-vs-bias.svg`). */
  charts?: string[];
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  return markdownTable(headers, rows, (_, h) => NUMERIC_HEADERS.has(h));
}

/**
 * Renders a {@link ProfileResults} document as results.md, with the content of the text table:
 * the machine and where the population came from; false positives per scheme and bias (95 %
 * interval, expectation and `agree`/`DISAGREE` for synthetic populations, false negatives,
 * hidden read pins, overflow refusals, pins taken, pin budget); the downstream cost; the
 * breakdowns by folio order and reference count; the disagreements; and an image link per chart.
 * False negatives, which must be 0, get a warning section of their own.
 *
 * @param results - the document (assumed valid: see validateProfileResults)
 * @param options - `charts`: chart files to link, relative to where the markdown is written
 * @returns the markdown, ending in a newline
 */
export function formatProfileMarkdown(results: ProfileResults, options: ProfileMarkdownOptions = {}): string {
  const m = results.machine;
  const synthetic = isSynthetic(results);
  const out: string[] = [
    '# pinlab profile results',
    '',
    `Run of ${results.createdAt}, ${durationLabel(results.durationMs)}: how often each pin scheme's "maybe pinned" ` +
      'answer is wrong, and what the wrong answers cost. A false positive is a base page of an unpinned folio ' +
      'reported maybe pinned; intervals are 95 % Wilson intervals.',
    '',
    '## Machine and population',
    '',
    ...table(
      ['', 'value'],
      [
        ['machine', `${m.cpu}, ${m.cores} logical cores, ${m.os}, kernel ${m.kernel}`],
        ['build', `node ${m.node}, ${m.build}, pinlab ${m.pinlab}`],
        ...sourceFields(results),
        ['run', runLine(results)],
      ],
    ),
  ];
  const alarms = falseNegativeAlarms(results);
  if (alarms.length > 0) {
    out.push('', '## FALSE NEGATIVES', '', '> **Pinned pages were reported not pinned: a scheme bug (this must be 0).**', '>');
    for (const a of alarms) out.push(`> - ${a}`);
  }
  out.push('', '## False positives per scheme and bias', '');
  out.push(...table(summaryHeaders(synthetic), orderedEntries(results).map((s) => summaryCells(s, synthetic))));
  if (results.schemes.length === 0) out.push('', 'No schemes.');
  out.push('', '## Downstream cost', '', 'Unpinned 4 KiB pages the kernel would mishandle, measured on a sample and scaled to the population.', '');
  out.push(...table(DOWNSTREAM_HEADERS, orderedEntries(results).map(downstreamCells)));
  const firsts = firstBiases(results);
  out.push('', '## Breakdown by folio order and reference count');
  if (firsts.length < results.schemes.length) out.push('', 'Each scheme at its first bias; results.json has every bias.');
  for (const s of firsts) {
    const rows = bucketRows(s);
    out.push('', `### ${entryLabel(s)}`, '', ...(rows.length > 0 ? table(BUCKET_HEADERS, rows) : ['No buckets.']));
  }
  out.push('', '## Disagreements', '');
  if (results.disagreements.length === 0) out.push(synthetic ? 'None: every measured rate agrees with its expectation.' : 'None (a snapshot has no analytic expectation).');
  else out.push(...results.disagreements.map((d) => `- **DISAGREE** ${d}`));
  const charts = options.charts ?? [];
  if (charts.length > 0) {
    out.push('', '## Charts', '');
    for (const c of charts) out.push(`![${imageAlt(c)}](${encodeURI(c)})`, '');
    out.pop();
  }
  return `${out.join('\n')}\n`;
}
