// The plain-text report of a ProfileResults document, for stdout, and the figures it shares with
// results.md (./markdown.ts): labels of rates, sizes and sources, and the cells of each table.
import { durationLabel, fmt, orderLabel } from '../bench/format.js';
import type { Distribution } from '../types/population.js';
import type { ProfileBucket, ProfileResults, ProfileScheme, Rate } from './types.js';

/** Options of {@link formatProfileTable}. */
export interface ProfileTableOptions {
  /** ANSI colors on the verdicts, alarms and titles (default false: plain text). */
  color?: boolean;
}

/** A rate as a percentage with three significant digits: `1.23%`, `3.20e-5%`; below 1e-12 (rounding noise of an interval) `0%`. */
export function pct(rate: number): string {
  return Math.abs(rate) < 1e-12 ? '0%' : `${fmt(rate * 100)}%`;
}

/** A share as a short percentage: 0.85 → `85%`, 0.002 → `0.2%`. */
export function share(x: number): string {
  return `${Number((x * 100).toPrecision(3))}%`;
}

/** A rate's 95 % interval: `[1.20%, 1.26%]`. */
export function ciLabel(r: Rate): string {
  return `[${pct(r.low)}, ${pct(r.high)}]`;
}

/** Base pages (4 KiB) as a size: 4194304 → `16 GiB`, 3 → `12 KiB`. */
export function sizeLabel(pages: number): string {
  let v = pages * 4;
  let unit = 0;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  while (v >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit++;
  }
  return `${Number.isInteger(v) ? v : fmt(v)} ${units[unit]}`;
}

/** A distribution in words: `uniform 1..3`, `mixture(85% uniform 1..3, 15% zipf s=0.9 1..4096)`. */
export function distributionLabel(d: Distribution): string {
  switch (d.kind) {
    case 'fixed':
      return String(d.value);
    case 'uniform':
      return `uniform ${d.min}..${d.max}`;
    case 'geometric':
      return `geometric p=${d.p}${d.min === undefined ? '' : ` from ${d.min}`}`;
    case 'zipf':
      return `zipf s=${d.s} 1..${d.max}`;
    case 'lognormal':
      return `lognormal mu=${d.mu} sigma=${d.sigma}${d.max === undefined ? '' : ` max ${d.max}`}`;
    case 'mixture': {
      const sum = d.parts.reduce((a, p) => a + p.weight, 0) || 1;
      return `mixture(${d.parts.map((p) => `${share(p.weight / sum)} ${distributionLabel(p.dist)}`).join(', ')})`;
    }
  }
}

/** Base pages of the profiled population (synthetic or snapshot). */
export function populationPages(results: ProfileResults): number {
  return results.source.kind === 'synthetic' ? results.source.population.pages : results.source.pages;
}

/** Where the population came from, as `label: text` lines (without the label's colon). */
export function sourceFields(results: ProfileResults): [string, string][] {
  const src = results.source;
  const pins = src.kind === 'synthetic' ? src.population : src.pins;
  const pinText =
    `${share(pins.pinnedFraction)} of allocated folios pinned, pins per pinned folio ${distributionLabel(pins.pinsPerPinned)}, ` +
    `${share(pins.writeFraction)} write pins`;
  if (src.kind === 'snapshot') {
    return [
      ['source', `snapshot ${src.file}, ${src.pages} pages (${sizeLabel(src.pages)})`],
      ['pins placed', `${pinText}, seed ${pins.seed}`],
    ];
  }
  const p = src.population;
  const sum = p.orders.reduce((a, o) => a + o.weight, 0) || 1;
  const orders = p.orders.map((o) => `${share(o.weight / sum)} ${orderLabel(o.order)}`).join(', ');
  return [
    ['source', `synthetic population, ${src.preset === null ? 'custom' : `preset ${src.preset}`}`],
    ['population', `${p.pages} pages (${sizeLabel(p.pages)}), folios ${orders}, ${share(p.freeFraction)} free, refs ${distributionLabel(p.refs)}, seed ${p.seed}`],
    ['pins', pinText],
  ];
}

/** The run: pages, threads, wall time and the scan speed in M pages/s. */
export function runLine(results: ProfileResults): string {
  const pages = populationPages(results);
  return (
    `pages: ${pages} (${sizeLabel(pages)}), threads: ${results.threads}, duration: ${durationLabel(results.durationMs)}, ` +
    `scan: ${fmt(results.scanPagesPerSecond / 1e6)} M pages/s`
  );
}

/** Each scheme's first entry (its default bias), in document order. */
export function firstBiases(results: ProfileResults): ProfileScheme[] {
  const first = new Map<string, ProfileScheme>();
  for (const s of results.schemes) if (!first.has(s.scheme)) first.set(s.scheme, s);
  return [...first.values()];
}

/** Every entry, grouped by scheme (in order of first appearance), biases ascending within each. */
export function orderedEntries(results: ProfileResults): ProfileScheme[] {
  const rank = new Map<string, number>();
  for (const s of results.schemes) if (!rank.has(s.scheme)) rank.set(s.scheme, rank.size);
  return [...results.schemes].sort((a, b) => (rank.get(a.scheme) ?? 0) - (rank.get(b.scheme) ?? 0) || a.bias - b.bias);
}

/** `hybrid bias 1024`. */
export function entryLabel(s: ProfileScheme): string {
  return `${s.scheme} bias ${s.bias}`;
}

/** Whether the document came from a synthetic population (and so has expectations). */
export function isSynthetic(results: ProfileResults): boolean {
  return results.source.kind === 'synthetic';
}

/** `agree`, `DISAGREE`, or `-` without an expectation. */
export function verdictLabel(s: ProfileScheme): string {
  return s.expected === null ? '-' : s.expected.agrees ? 'agree' : 'DISAGREE';
}

/** False negatives of one slice: `0`, or `3 of 2100 (!)`. */
export function falseNegativeLabel(r: Rate): string {
  return r.count === 0 ? '0' : `${r.count} of ${r.total} (!)`;
}

/** Hidden read pins (write-bias): `41 (2.1%)`, `0` with nothing read-pinned, `-` for other schemes. */
export function hiddenLabel(r: Rate | null): string {
  if (r === null) return '-';
  return r.total === 0 ? String(r.count) : `${r.count} (${pct(r.rate)})`;
}

/** Headers of the per-scheme summary; `synthetic` adds the expectation columns. */
export function summaryHeaders(synthetic: boolean): string[] {
  return [
    'scheme',
    'bias',
    'false positives',
    '95% CI',
    'FP/unpinned',
    ...(synthetic ? ['expected', 'verdict'] : []),
    'false negatives',
    'hidden read pins',
    'overflow refusals',
    'pins taken',
    'pin budget',
  ];
}

/** The summary cells of one scheme and bias, in {@link summaryHeaders} order. */
export function summaryCells(s: ProfileScheme, synthetic: boolean): string[] {
  const fp = s.overall.falsePositives;
  return [
    s.scheme,
    String(s.bias),
    pct(fp.rate),
    ciLabel(fp),
    `${fp.count}/${fp.total}`,
    ...(synthetic ? [s.expected === null ? '-' : pct(s.expected.rate), verdictLabel(s)] : []),
    falseNegativeLabel(s.overall.falseNegatives),
    hiddenLabel(s.overall.hiddenReadPins),
    String(s.overflowRefusals),
    String(s.pinsTaken),
    String(s.pinBudget),
  ];
}

/** Headers of the downstream-cost table. */
export const DOWNSTREAM_HEADERS: readonly string[] = ['scheme', 'bias', 'needless early-COW', 'unmovable', 'uncollapsible', 'unreclaimable', 'pageout-skipped', 'sample pages', 'scale'];

/** A count of base pages with its size: `12288 (48 MiB)`. */
export function pagesLabel(pages: number): string {
  return pages === 0 ? '0' : `${pages} (${sizeLabel(pages)})`;
}

/** The downstream cells of one scheme and bias, in {@link DOWNSTREAM_HEADERS} order. */
export function downstreamCells(s: ProfileScheme): string[] {
  const d = s.downstream;
  return [
    s.scheme,
    String(s.bias),
    pagesLabel(d.needlessEarlyCowPages),
    pagesLabel(d.unmovablePages),
    pagesLabel(d.uncollapsiblePages ?? 0),
    pagesLabel(d.unreclaimablePages),
    pagesLabel(d.pageoutSkippedPages ?? 0),
    String(d.samplePages),
    `x${fmt(d.scale)}`,
  ];
}

/** Headers of the breakdown tables. */
export const BUCKET_HEADERS: readonly string[] = ['bucket', 'pages', 'false positives', '95% CI', 'FP/unpinned', 'false negatives', 'hidden read pins'];

/** The breakdown cells of one bucket, in {@link BUCKET_HEADERS} order; order buckets add the folio size. */
export function bucketCells(b: ProfileBucket, byOrder: boolean): string[] {
  const fp = b.falsePositives;
  return [
    byOrder ? `${b.label} (${orderLabel(b.key)})` : b.label,
    String(b.pages),
    pct(fp.rate),
    ciLabel(fp),
    `${fp.count}/${fp.total}`,
    falseNegativeLabel(b.falseNegatives),
    hiddenLabel(b.hiddenReadPins),
  ];
}

/** The non-empty buckets of an entry: by folio order, then by reference count. */
export function bucketRows(s: ProfileScheme): string[][] {
  return [
    ...s.byOrder.filter((b) => b.pages > 0).map((b) => bucketCells(b, true)),
    ...s.byRefs.filter((b) => b.pages > 0).map((b) => bucketCells(b, false)),
  ];
}

/** One line per scheme and bias with false negatives (a scheme bug): empty when there are none. */
export function falseNegativeAlarms(results: ProfileResults): string[] {
  return results.schemes
    .filter((s) => s.overall.falseNegatives.count > 0)
    .map((s) => `${entryLabel(s)}: ${s.overall.falseNegatives.count} of ${s.overall.falseNegatives.total} pinned pages reported not pinned`);
}

/** Which summary and bucket columns hold figures (right-aligned), by header. */
export const NUMERIC_HEADERS: ReadonlySet<string> = new Set([
  'bias',
  'pages',
  'false positives',
  'FP/unpinned',
  'expected',
  'overflow refusals',
  'pins taken',
  'pin budget',
  'needless early-COW',
  'unmovable',
  'unreclaimable',
  'pageout-skipped',
  'sample pages',
  'scale',
]);

type Paint = (text: string, code: string) => string;

/** Aligned rows with `# title` lines between groups; widths span every group. */
function aligned(headers: readonly string[], groups: { title: string | null; rows: string[][] }[], paint: Paint, colorCell: (h: string, v: string) => string): string[] {
  const all = groups.flatMap((g) => g.rows);
  const widths = headers.map((h, i) => Math.max(h.length, ...all.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[], color: boolean): string =>
    cells
      .map((c, i) => {
        const h = headers[i] ?? '';
        const padded = NUMERIC_HEADERS.has(h) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0);
        if (!color || c === '') return padded;
        const at = padded.indexOf(c);
        return padded.slice(0, at) + colorCell(h, c) + padded.slice(at + c.length);
      })
      .join('  ')
      .trimEnd();
  const out = [line(headers, false), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const g of groups) {
    if (g.title !== null) out.push(paint(`# ${g.title}`, '1'));
    for (const r of g.rows) out.push(line(r, true));
  }
  return out;
}

/**
 * Renders a {@link ProfileResults} document as a plain-text report: a header (machine, where the
 * population came from, pages, threads, duration, scan speed); per scheme and bias the
 * false-positive rate with its 95 % interval, the analytic expectation and `agree`/`DISAGREE`
 * (synthetic populations), false negatives (which must be 0: any is announced loudly, first and
 * last), hidden read pins (write-bias), overflow refusals, pins taken and the pin budget; the
 * downstream cost (needless early-COW, unmovable, unreclaimable and pageout-skipped pages, with the sample and
 * its scale); the breakdown by folio order and by reference count (non-empty buckets) of each
 * scheme at its first bias; and the disagreements.
 *
 * @param results - the document (assumed valid: see validateProfileResults)
 * @param options - `color: true` adds ANSI colors; none by default
 * @returns the report, lines joined by `\n`, ending in a newline
 */
export function formatProfileTable(results: ProfileResults, options: ProfileTableOptions = {}): string {
  const paint: Paint = options.color === true ? (t, c) => `\x1b[${c}m${t}\x1b[0m` : (t) => t;
  const colorCell = (h: string, v: string): string => {
    if (v === 'DISAGREE') return paint(v, '31');
    if (v === 'agree') return paint(v, '32');
    if (h === 'false negatives' && v.includes('(!)')) return paint(v, '1;31');
    return v;
  };
  const m = results.machine;
  const synthetic = isSynthetic(results);
  const alarms = falseNegativeAlarms(results);
  const alarm = (): string[] =>
    alarms.length === 0
      ? []
      : [paint(`!!! FALSE NEGATIVES: pinned pages reported not pinned, a scheme bug (must be 0):`, '1;31'), ...alarms.map((a) => paint(`!!!   ${a}`, '1;31'))];
  const lines: string[] = [
    `pinlab ${m.pinlab} profile, ${results.createdAt}, ${results.schemes.length} scheme/bias entries`,
    `machine: ${m.cpu}, ${m.cores} logical cores, ${m.os}, kernel ${m.kernel}, node ${m.node}, build ${m.build}`,
    ...sourceFields(results).map(([k, v]) => `${k}: ${v}`),
    runLine(results),
    ...(alarms.length > 0 ? ['', ...alarm()] : []),
    '',
    paint('false positives: unpinned folios reported maybe pinned (rates over folios), per scheme and bias', '1'),
    ...aligned(summaryHeaders(synthetic), [{ title: null, rows: orderedEntries(results).map((s) => summaryCells(s, synthetic)) }], paint, colorCell),
    '',
    paint('downstream cost: unpinned pages the kernel would mishandle (4 KiB pages, measured on a sample and scaled)', '1'),
    ...aligned(DOWNSTREAM_HEADERS, [{ title: null, rows: orderedEntries(results).map(downstreamCells) }], paint, colorCell),
    '',
  ];
  const firsts = firstBiases(results);
  const note = firsts.length < results.schemes.length ? ' (each scheme at its first bias; the JSON document has every bias)' : '';
  lines.push(paint(`breakdown by folio order and by reference count${note}`, '1'));
  const groups = firsts.map((s) => ({ title: entryLabel(s), rows: bucketRows(s) }));
  lines.push(...aligned(BUCKET_HEADERS, groups, paint, colorCell));
  if (results.schemes.length === 0) lines.push('(no schemes)');
  lines.push('');
  if (results.disagreements.length === 0) lines.push(synthetic ? 'disagreements: none, every measured rate agrees with its expectation' : 'disagreements: none (a snapshot has no analytic expectation)');
  else lines.push(paint(`disagreements (${results.disagreements.length}):`, '1;31'), ...results.disagreements.map((d) => `  DISAGREE ${d}`));
  if (alarms.length > 0) lines.push('', ...alarm());
  return `${lines.join('\n')}\n`;
}
