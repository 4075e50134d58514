// `pinlab profile --out DIR`: results.json, results.md and the SVG charts of one run, together.

import { PinlabError } from '../errors.js';
import { writeReportFiles, type WriteReportOptions } from '../report/files.js';
import { renderProfileCharts } from './charts.js';
import { formatProfileMarkdown } from './markdown.js';
import { validateProfileResults } from './schema.js';
import type { ProfileResults } from './types.js';

/** The files {@link writeProfileReport} wrote, as absolute paths. */
export interface ProfileReportPaths {
  /** DIR/results.json */
  json: string;
  /** DIR/results.md */
  markdown: string;
  /** DIR/NAME.svg for each chart the document had data for */
  charts: string[];
}

/**
 * Writes a profile's report into `dir` (created if missing, like `mkdir -p`): results.json (the
 * document, pretty-printed), the SVG charts the document has data for, and results.md linking
 * them. Existing regular files of those names are replaced atomically (a temporary beside each,
 * renamed into place); a symbolic link or other non-regular file there is refused, never written
 * through; nothing else in `dir` is touched.
 *
 * @param results - the document; it must be valid
 * @param dir - the output folder
 * @param options - `signal` stops the writing before the files are renamed into place: none
 *   is written then (the call rejects with ReportStopped)
 * @returns the paths written
 * @throws PinlabError `EINVAL` if the document fails validateProfileResults (nothing written)
 */
export async function writeProfileReport(results: ProfileResults, dir: string, options: WriteReportOptions = {}): Promise<ProfileReportPaths> {
  const errors = validateProfileResults(results);
  if (errors.length > 0) {
    const more = errors.length > 5 ? ` (and ${errors.length - 5} more)` : '';
    throw new PinlabError('EINVAL', `invalid profile results: ${errors.slice(0, 5).join('; ')}${more}`);
  }
  const charts = await renderProfileCharts(results);
  const [json, markdown, ...svgs] = await writeReportFiles(dir, [
    { name: 'results.json', data: `${JSON.stringify(results, null, 2)}\n` },
    { name: 'results.md', data: formatProfileMarkdown(results, { charts: charts.map((c) => `${c.name}.svg`) }) },
    ...charts.map((c) => ({ name: `${c.name}.svg`, data: c.svg })),
  ], options);
  const paths: ProfileReportPaths = { json: json!, markdown: markdown!, charts: svgs };
  return paths;
}
