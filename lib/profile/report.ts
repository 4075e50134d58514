// `pinlab profile --out DIR`: results.json, results.md and the SVG charts of one run, together.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { PinlabError } from '../errors.js';
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
 * them. Existing files of those names are replaced; nothing else in `dir` is touched.
 *
 * @param results - the document; it must be valid
 * @param dir - the output folder
 * @returns the paths written
 * @throws PinlabError `EINVAL` if the document fails validateProfileResults (nothing written)
 */
export async function writeProfileReport(results: ProfileResults, dir: string): Promise<ProfileReportPaths> {
  const errors = validateProfileResults(results);
  if (errors.length > 0) {
    const more = errors.length > 5 ? ` (and ${errors.length - 5} more)` : '';
    throw new PinlabError('EINVAL', `invalid profile results: ${errors.slice(0, 5).join('; ')}${more}`);
  }
  const root = resolve(dir);
  const charts = await renderProfileCharts(results);
  await mkdir(root, { recursive: true });
  const paths: ProfileReportPaths = {
    json: join(root, 'results.json'),
    markdown: join(root, 'results.md'),
    charts: charts.map((c) => join(root, `${c.name}.svg`)),
  };
  await writeFile(paths.json, `${JSON.stringify(results, null, 2)}\n`);
  await Promise.all(charts.map((c, i) => writeFile(paths.charts[i] ?? '', c.svg)));
  await writeFile(paths.markdown, formatProfileMarkdown(results, { charts: charts.map((c) => `${c.name}.svg`) }));
  return paths;
}
