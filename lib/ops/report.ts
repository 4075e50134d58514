// The replay report: the text table (stdout), results.md, the charts, and `--out DIR`.
import type { TopLevelSpec } from 'vega-lite';

import { renderSvg } from '../bench/charts.js';
import { durationLabel, fmt, machineFields } from '../bench/format.js';
import { PinlabError } from '../errors.js';
import { writeReportFiles, type WriteReportOptions } from '../report/files.js';
import { imageAlt, markdownTable } from '../report/markdown.js';
import { SCHEMES } from '../schemes.js';
import { validateReplayResults } from './schema.js';
import { takesPincountMinOrder } from './traits.js';
import type { ReplayDecision, ReplayResults, ReplayScheme } from './types.js';

/** The columns of the per-scheme table, text and markdown alike. */
export const REPLAY_HEADERS = [
  'scheme',
  'bias',
  'rule',
  'threads',
  'ops',
  'Mops/s',
  'Mops/s/thread',
  'Mops/cpu-s',
  'ns/op',
  'refused',
  'overflow',
  'imbalances',
  'diverged',
  'early-COW (fp)',
  'migration refused (fp)',
  'reclaim skips (fp)',
  'collapse skips (fp)',
  'pageout kept (fp)',
  'false pos',
  'balanced',
] as const;

const TEXT_COLUMNS = new Set<string>(['scheme', 'balanced']);

function decision(d: ReplayDecision): string {
  const unknown = d.unclassified > 0 ? ` ?${d.unclassified}` : '';
  return `${d.decisions} (${d.falsePositives}${unknown})`;
}

/** One scheme's cells, in {@link REPLAY_HEADERS} order. */
export function replayCells(s: ReplayScheme): string[] {
  return [
    s.scheme,
    String(s.bias),
    takesPincountMinOrder(s.scheme) ? String(s.pincountMinOrder) : '-',
    String(s.threads),
    String(s.ops),
    fmt(s.opsPerSecond / 1e6),
    fmt(s.opsPerSecondPerThread / 1e6),
    fmt(s.opsPerCpuSecond / 1e6),
    fmt(s.nsPerOp),
    String(s.refused),
    String(s.overflowRefusals),
    String(s.imbalances),
    String(s.diverged),
    decision(s.decisions.earlyCow),
    decision(s.decisions.migration),
    decision(s.decisions.reclaim),
    decision(s.decisions.collapse),
    decision(s.decisions.pageout),
    String(s.falsePositives),
    s.balanced ? 'yes' : `NO (${s.pinsOutstanding} pins)`,
  ];
}

/** `code n, code n` of a scheme's refusals, or `none`. */
function refusalLine(s: ReplayScheme): string {
  const parts = Object.entries(s.refusals).map(([code, n]) => `${code} ${n}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

function streamLine(r: ReplayResults): string {
  const s = r.stream;
  return (
    `${s.file}: ${s.ops} ops (${s.records} records, ${s.bytes} bytes), ${s.threads} tag${s.threads === 1 ? '' : 's'}; ` +
    `${s.pages} pages${s.movablePages > 0 ? ` (${s.movablePages} movable)` : ''}, folio order ${s.folioOrder}, ` +
    `${s.populated ? 'populated' : 'unpopulated'}, debug ${s.debug ? 'on' : 'off'}; recorded under ${s.scheme} bias ${s.pinBias}`
  );
}

const NOTES = [
  'early-COW counts pages copied at fork as maybe pinned, migration folios refused as maybe pinned, reclaim the',
  'folios of the end state that reclaim would skip as maybe pinned, collapse the pages MADV_COLLAPSE and khugepaged',
  'left uncollapsed as maybe pinned, pageout the pages MADV_PAGEOUT kept as maybe pinned; (fp) the false positives',
  'among them (debug accounting or an exact pincount is the truth; ?N: not exactly known). diverged: results that',
  "differ from the recording's (0 under its own scheme).",
];

/**
 * Renders a {@link ReplayResults} document as the plain-text report `pinlab replay` prints: the
 * stream and machine, one row per scheme (throughput, refusals, decisions that read "maybe
 * pinned" with their false positives, balance), and each scheme's refusals by code.
 */
/** PinlabError `EINVAL` unless `r` is a replay results document (schema pinlab-replay). */
function checkReplayResults(r: unknown): asserts r is ReplayResults {
  const errors = validateReplayResults(r);
  if (errors.length > 0) throw new PinlabError('EINVAL', `invalid replay results: ${errors.slice(0, 5).join('; ')}`);
}

/**
 * Renders a {@link ReplayResults} document as the text table `pinlab replay` prints: one row per
 * scheme (ops per second, refusals, maybe-pinned decisions and their false positives, balance).
 * @throws PinlabError `EINVAL` for a document that does not validate against the schema
 */
export function formatReplayTable(r: ReplayResults): string {
  checkReplayResults(r);
  const rows = r.schemes.map(replayCells);
  const widths = REPLAY_HEADERS.map((h, i) => Math.max(h.length, ...rows.map((c) => c[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (TEXT_COLUMNS.has(REPLAY_HEADERS[i]!) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [
    `pinlab replay: ${streamLine(r)}`,
    `machine: ${machineFields(r.machine).map(([k, v]) => `${k} ${v}`).join(', ')}; ${durationLabel(r.durationMs)}`,
    '',
    line(REPLAY_HEADERS),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
    '',
    ...r.schemes.map((s) => `refusals ${s.scheme}${r.schemes.filter((x) => x.scheme === s.scheme).length > 1 ? ` bias ${s.bias}` : ''}: ${refusalLine(s)}`),
    '',
    ...NOTES,
  ];
  return `${out.join('\n')}\n`;
}

/** Options of {@link formatReplayMarkdown}. */
export interface ReplayMarkdownOptions {
  /** Chart files to link as images, relative to the markdown file. */
  charts?: string[];
}

/** Renders a {@link ReplayResults} document as results.md (the text report's content, and the charts). */
export function formatReplayMarkdown(r: ReplayResults, options: ReplayMarkdownOptions = {}): string {
  checkReplayResults(r);
  const out = [
    '# pinlab replay',
    '',
    streamLine(r),
    '',
    markdownTable(['field', 'value'], machineFields(r.machine), () => false).join('\n'),
    '',
    `Run: ${r.threads} thread${r.threads === 1 ? '' : 's'} per scheme, ${durationLabel(r.durationMs)}.`,
    '',
    '## Schemes',
    '',
    markdownTable(REPLAY_HEADERS, r.schemes.map(replayCells), (_, h) => !TEXT_COLUMNS.has(h)).join('\n'),
    '',
    ...r.schemes.map((s) => `- refusals ${s.scheme} bias ${s.bias}: ${refusalLine(s)}`),
    '',
    NOTES.join(' '),
    '',
  ];
  for (const c of options.charts ?? []) out.push(`![${imageAlt(c)}](${c})`, '');
  return out.join('\n');
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const FONT = { font: 'sans-serif', labelFont: 'sans-serif', titleFont: 'sans-serif' };
const CONFIG = { background: 'white', view: { stroke: '#ddd' }, axis: FONT, legend: FONT, title: FONT };

function label(s: ReplayScheme, r: ReplayResults): string {
  const twice = r.schemes.filter((x) => x.scheme === s.scheme).length > 1;
  return twice ? `${s.scheme} b${s.bias}${takesPincountMinOrder(s.scheme) ? ` r${s.pincountMinOrder}` : ''}` : s.scheme;
}

function order(r: ReplayResults): string[] {
  return [...r.schemes].sort((a, b) => SCHEMES.indexOf(a.scheme) - SCHEMES.indexOf(b.scheme)).map((s) => label(s, r));
}

/** The Vega-Lite specs of the report's charts, by file name stem: `throughput` and `false-positives`. */
export function replayChartSpecs(r: ReplayResults): [string, TopLevelSpec][] {
  if (r.schemes.length === 0) return [];
  const throughput: TopLevelSpec = {
    $schema: SCHEMA,
    title: `Replay throughput (${r.stream.ops} ops, ${r.threads} thread${r.threads === 1 ? '' : 's'})`,
    width: 420,
    height: 220,
    data: { values: r.schemes.map((s) => ({ scheme: label(s, r), mops: s.opsPerSecond / 1e6 })) },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'scheme', type: 'nominal', sort: order(r), title: 'scheme' },
      y: { field: 'mops', type: 'quantitative', title: 'million ops per second' },
    },
    config: CONFIG,
  } as TopLevelSpec;
  const values = r.schemes.flatMap((s) => [
    { scheme: label(s, r), what: 'early-COW pages', kind: 'decisions', n: s.decisions.earlyCow.decisions },
    { scheme: label(s, r), what: 'early-COW pages', kind: 'false positives', n: s.decisions.earlyCow.falsePositives },
    { scheme: label(s, r), what: 'migration refusals', kind: 'decisions', n: s.decisions.migration.decisions },
    { scheme: label(s, r), what: 'migration refusals', kind: 'false positives', n: s.decisions.migration.falsePositives },
    { scheme: label(s, r), what: 'reclaim skips', kind: 'decisions', n: s.decisions.reclaim.decisions },
    { scheme: label(s, r), what: 'reclaim skips', kind: 'false positives', n: s.decisions.reclaim.falsePositives },
    { scheme: label(s, r), what: 'collapse skips', kind: 'decisions', n: s.decisions.collapse.decisions },
    { scheme: label(s, r), what: 'collapse skips', kind: 'false positives', n: s.decisions.collapse.falsePositives },
    { scheme: label(s, r), what: 'pageout kept', kind: 'decisions', n: s.decisions.pageout.decisions },
    { scheme: label(s, r), what: 'pageout kept', kind: 'false positives', n: s.decisions.pageout.falsePositives },
  ]);
  const decisions: TopLevelSpec = {
    $schema: SCHEMA,
    title: 'Decisions that read "maybe pinned", and their false positives',
    data: { values },
    facet: { column: { field: 'what', type: 'nominal', title: null } },
    spec: {
      width: 200,
      height: 200,
      mark: { type: 'bar' },
      encoding: {
        x: { field: 'scheme', type: 'nominal', sort: order(r), title: null },
        xOffset: { field: 'kind' },
        y: { field: 'n', type: 'quantitative', title: 'count' },
        color: { field: 'kind', type: 'nominal', title: null },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  } as TopLevelSpec;
  return [
    ['throughput', throughput],
    ['false-positives', decisions],
  ];
}

/** One rendered chart of a replay report. */
export interface ReplayChart {
  /** File name stem: `throughput` or `false-positives` (written as NAME.svg). */
  name: string;
  /** The SVG document. */
  svg: string;
}

/** The report's charts as SVG documents. */
export async function renderReplayCharts(r: ReplayResults): Promise<ReplayChart[]> {
  const out: ReplayChart[] = [];
  for (const [name, spec] of replayChartSpecs(r)) out.push({ name, svg: await renderSvg(spec) });
  return out;
}

/** The files {@link writeReplayReport} wrote, as absolute paths. */
export interface ReplayReportPaths {
  /** DIR/results.json */
  json: string;
  /** DIR/results.md */
  markdown: string;
  /** DIR/NAME.svg per chart */
  charts: string[];
}

/**
 * Writes a replay's report into `dir` (created if missing): results.json, results.md and the
 * SVG charts, as a set, all or none (each into a temporary beside it, then all renamed into
 * place; a link or other non-regular file there is refused). `options.signal` stops it before
 * the renames: the temporaries are removed and it rejects with `ReportStopped`.
 * @throws PinlabError `EINVAL` if the document fails validateReplayResults (nothing written);
 *   ReportStopped if stopped (nothing written)
 */
export async function writeReplayReport(r: ReplayResults, dir: string, options: WriteReportOptions = {}): Promise<ReplayReportPaths> {
  checkReplayResults(r);
  const charts = await renderReplayCharts(r);
  const [json, markdown, ...svgs] = await writeReportFiles(dir, [
    { name: 'results.json', data: `${JSON.stringify(r, null, 2)}\n` },
    { name: 'results.md', data: formatReplayMarkdown(r, { charts: charts.map((c) => `${c.name}.svg`) }) },
    ...charts.map((c) => ({ name: `${c.name}.svg`, data: c.svg })),
  ], options);
  return { json: json!, markdown: markdown!, charts: svgs };
}
