// `--out DIR`: results.json, results.md and the SVG charts of one run, written together.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { PinlabError } from '../errors.js';
import { renderCharts } from './charts.js';
import { formatMarkdown } from './markdown.js';
import { validateBenchResults } from './schema.js';
import type { BenchResults } from './types.js';

/** The files {@link writeReport} wrote, as absolute paths. */
export interface ReportPaths {
  /** DIR/results.json */
  json: string;
  /** DIR/results.md */
  markdown: string;
  /** DIR/NAME.svg for each chart the results had rows for */
  charts: string[];
}

/**
 * Writes a run's report into `dir` (created if missing, like `mkdir -p`): results.json (the
 * document, pretty-printed), the SVG charts the results have rows for, and results.md linking
 * them. Existing files of those names are replaced; nothing else in `dir` is touched.
 *
 * @param results - the document; it must be valid
 * @param dir - the output folder
 * @returns the paths written
 * @throws PinlabError `EINVAL` if the document fails validateBenchResults (nothing written)
 */
export async function writeReport(results: BenchResults, dir: string): Promise<ReportPaths> {
  const errors = validateBenchResults(results);
  if (errors.length > 0) {
    const more = errors.length > 5 ? ` (and ${errors.length - 5} more)` : '';
    throw new PinlabError('EINVAL', `invalid bench results: ${errors.slice(0, 5).join('; ')}${more}`);
  }
  const root = resolve(dir);
  const charts = await renderCharts(results);
  await mkdir(root, { recursive: true });
  const paths: ReportPaths = {
    json: join(root, 'results.json'),
    markdown: join(root, 'results.md'),
    charts: charts.map((c) => join(root, `${c.name}.svg`)),
  };
  await writeFile(paths.json, `${JSON.stringify(results, null, 2)}\n`);
  await Promise.all(charts.map((c, i) => writeFile(paths.charts[i] ?? '', c.svg)));
  await writeFile(paths.markdown, formatMarkdown(results, { charts: charts.map((c) => `${c.name}.svg`) }));
  return paths;
}
