// SVG charts of a ProfileResults document: Vega-Lite specs rendered headless by the benchmark's
// renderSvg (../bench/charts.ts). A chart whose data the document lacks is left out.
import type { TopLevelSpec } from 'vega-lite';

import { renderSvg } from '../bench/charts.js';
import { SCHEMES } from '../schemes.js';
import { entryLabel, firstBiases } from './table.js';
import type { ProfileResults, ProfileScheme } from './types.js';

/** One rendered chart. */
export interface ProfileChart {
  /** File name stem: `fp-vs-bias`, `fp-by-refs` or `downstream` (written as NAME.svg). */
  name: string;
  /** The SVG document, starting with `<svg`. */
  svg: string;
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const FONT = { font: 'sans-serif', labelFont: 'sans-serif', titleFont: 'sans-serif' };
const CONFIG = { background: 'white', view: { stroke: '#ddd' }, axis: FONT, legend: FONT, title: FONT };
/** Vega's tableau10: each scheme's color is the one at its index in SCHEMES, the same in every chart. */
const TABLEAU10 = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'];

/** A color encoding by scheme whose legend lists only the schemes drawn. */
function colorBy(schemes: readonly string[]) {
  const domain = SCHEMES.filter((s) => schemes.includes(s));
  return { field: 'scheme', type: 'nominal', scale: { domain, range: domain.map((s) => TABLEAU10[SCHEMES.indexOf(s) % TABLEAU10.length]!) } } as const;
}
const RATE_AXIS = { format: '.2~%' };
/** Bias tick labels: 16, 512, 1K, 64K. */
const BIAS_LABEL = "datum.value >= 1024 ? (datum.value / 1024) + 'K' : '' + datum.value";

/** The one bias every scheme's first entry has, or null when they differ. */
function commonFirstBias(results: ProfileResults): number | null {
  const biases = new Set(firstBiases(results).map((s) => s.bias));
  return biases.size === 1 ? ([...biases][0] ?? null) : null;
}

/**
 * (a) False-positive rate against the bias (log2 axis), one line per scheme with 95 % error bars
 * and, for synthetic populations, the analytic expectation dashed.
 *
 * @returns the spec, or null unless some scheme was profiled at two or more biases
 */
export function fpVsBiasSpec(results: ProfileResults): TopLevelSpec | null {
  const biasesOf = new Map<string, Set<number>>();
  for (const s of results.schemes) biasesOf.set(s.scheme, (biasesOf.get(s.scheme) ?? new Set()).add(s.bias));
  const swept = results.schemes.filter((s) => (biasesOf.get(s.scheme)?.size ?? 0) >= 2).sort((a, b) => SCHEMES.indexOf(a.scheme) - SCHEMES.indexOf(b.scheme) || a.bias - b.bias);
  if (swept.length === 0) return null;
  const values = swept.map((s) => {
    const fp = s.overall.falsePositives;
    return { scheme: s.scheme, bias: s.bias, rate: fp.rate, low: fp.low, high: fp.high, expected: s.expected?.rate ?? null };
  });
  const ticks = [...new Set(values.map((v) => v.bias))].sort((a, b) => a - b);
  const y = { field: 'rate', type: 'quantitative', title: 'false-positive rate (of unpinned folios)', axis: RATE_AXIS } as const;
  const expected = values.some((v) => v.expected !== null)
    ? [{ transform: [{ filter: 'datum.expected != null' }], mark: { type: 'line' as const, strokeDash: [4, 3], opacity: 0.7 }, encoding: { y: { field: 'expected', type: 'quantitative' as const } } }]
    : [];
  return {
    $schema: SCHEMA,
    title: { text: 'False positives against the pin bias', subtitle: '95% intervals as bars; dashed: analytic expectation' },
    data: { values },
    width: 420,
    height: 240,
    encoding: {
      x: { field: 'bias', type: 'quantitative', title: 'bias (GUP_PIN_COUNTING_BIAS, log2 scale)', scale: { type: 'log', base: 2 }, axis: { values: ticks, labelExpr: BIAS_LABEL } },
      color: colorBy(values.map((v) => v.scheme)),
    },
    layer: [
      { mark: 'line', encoding: { y } },
      { mark: { type: 'point', filled: true, size: 30 }, encoding: { y } },
      { mark: 'rule', encoding: { y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } } },
      ...expected,
    ],
    config: CONFIG,
  };
}

/**
 * (b) False-positive rate by plain-reference-count bucket: bars per scheme (each at its first
 * bias) with 95 % error bars.
 *
 * @returns the spec, or null without a non-empty reference-count bucket
 */
export function fpByRefsSpec(results: ProfileResults): TopLevelSpec | null {
  const values = firstBiases(results).flatMap((s) =>
    s.byRefs.filter((b) => b.pages > 0).map((b) => ({ scheme: s.scheme, bucket: b.label, key: b.key, rate: b.falsePositives.rate, low: b.falsePositives.low, high: b.falsePositives.high })),
  );
  if (values.length === 0) return null;
  const buckets = [...new Map(values.map((v) => [v.bucket, v.key])).entries()].sort((a, b) => a[1] - b[1]).map(([label]) => label);
  const schemes = SCHEMES.filter((s) => values.some((v) => v.scheme === s));
  const x = { field: 'bucket', type: 'nominal', title: 'plain references per folio', sort: buckets, axis: { labelAngle: -40 } } as const;
  const xOffset = { field: 'scheme', type: 'nominal', scale: { domain: schemes } } as const;
  const bias = commonFirstBias(results);
  return {
    $schema: SCHEMA,
    title: { text: 'False positives by reference count', subtitle: bias === null ? 'each scheme at its first bias; 95% intervals' : `bias ${bias}; 95% intervals` },
    data: { values },
    width: { step: 10 },
    height: 220,
    layer: [
      { mark: 'bar', encoding: { x, xOffset, y: { field: 'rate', type: 'quantitative', title: 'false-positive rate', axis: RATE_AXIS }, color: colorBy(schemes) } },
      { mark: { type: 'rule', color: '#333' }, encoding: { x, xOffset, y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } } },
    ],
    config: CONFIG,
  };
}

const COSTS = ['needless early-COW', 'unmovable', 'uncollapsible', 'unreclaimable', 'pageout-skipped'];
/** Cost colors, apart from the scheme colors of the other charts. */
const COST_COLORS = ['#59a14f', '#edc948', '#ff9da7', '#b07aa1', '#9c755f'];

/**
 * (c) The downstream cost per scheme (each at its first bias): needless early-COW, unmovable,
 * uncollapsible, unreclaimable and pageout-skipped base pages, scaled from the sample to the population.
 *
 * @returns the spec, or null without schemes or without a downstream sample
 */
export function downstreamSpec(results: ProfileResults): TopLevelSpec | null {
  const firsts = firstBiases(results).sort((a, b) => SCHEMES.indexOf(a.scheme) - SCHEMES.indexOf(b.scheme));
  if (firsts.length === 0 || firsts.every((s) => s.downstream.samplePages === 0)) return null;
  const bias = commonFirstBias(results);
  const label = (s: ProfileScheme): string => (bias === null ? entryLabel(s) : s.scheme);
  const values = firsts.flatMap((s) => {
    const d = s.downstream;
    const pages = [d.needlessEarlyCowPages, d.unmovablePages, d.uncollapsiblePages ?? 0, d.unreclaimablePages, d.pageoutSkippedPages ?? 0];
    return COSTS.map((cost, i) => ({ entry: label(s), cost, pages: pages[i] ?? 0 }));
  });
  const where = bias === null ? 'each scheme at its first bias' : `bias ${bias}`;
  return {
    $schema: SCHEMA,
    title: { text: 'What the false positives cost', subtitle: `unpinned 4 KiB pages mishandled, scaled from a sample; ${where}` },
    data: { values },
    width: { step: 20 },
    height: 220,
    mark: 'bar',
    encoding: {
      x: { field: 'entry', type: 'nominal', title: null, sort: firsts.map(label), axis: { labelAngle: bias === null ? -30 : 0 } },
      xOffset: { field: 'cost', type: 'nominal', scale: { domain: COSTS } },
      y: { field: 'pages', type: 'quantitative', title: 'base pages' },
      color: { field: 'cost', type: 'nominal', title: null, scale: { domain: COSTS, range: COST_COLORS } },
    },
    config: CONFIG,
  };
}

/**
 * The Vega-Lite specs of the charts the document has data for, by chart name: `fp-vs-bias`
 * ({@link fpVsBiasSpec}), `fp-by-refs` ({@link fpByRefsSpec}) and `downstream`
 * ({@link downstreamSpec}). A chart whose data is missing is left out.
 *
 * @param results - the document
 * @returns `[name, spec]` pairs, in that order
 */
export function profileChartSpecs(results: ProfileResults): [string, TopLevelSpec][] {
  const specs: [string, TopLevelSpec | null][] = [
    ['fp-vs-bias', fpVsBiasSpec(results)],
    ['fp-by-refs', fpByRefsSpec(results)],
    ['downstream', downstreamSpec(results)],
  ];
  return specs.filter((s): s is [string, TopLevelSpec] => s[1] !== null);
}

/**
 * Renders the charts of {@link profileChartSpecs} to SVG. The same document gives the same bytes.
 *
 * @param results - the document
 * @returns one entry per chart the document has data for (possibly none)
 */
export async function renderProfileCharts(results: ProfileResults): Promise<ProfileChart[]> {
  const out: ProfileChart[] = [];
  for (const [name, spec] of profileChartSpecs(results)) out.push({ name, svg: await renderSvg(spec) });
  return out;
}
