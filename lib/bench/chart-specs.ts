// Vega-Lite specifications of the three benchmark charts, built from BenchResults rows. Each
// builder returns null when the results lack the rows its chart needs.
import { appendAll } from '../arrays.js';
import type { TopLevelSpec } from 'vega-lite';

import { SCHEMES } from '../schemes.js';
import { orderLabel, orderWords } from './format.js';
import { compareRows } from './groups.js';
import type { BenchOp, BenchResults, BenchRow } from './types.js';

const MODEL_OPS: readonly BenchOp[] = ['pin-unpin', 'get-put', 'mixed', 'gup-fast'];
const FONT = { font: 'sans-serif', labelFont: 'sans-serif', titleFont: 'sans-serif' };
const CONFIG = { background: 'white', view: { stroke: '#ddd' }, axis: FONT, legend: FONT, header: FONT, title: FONT };

function firstBy<K>(rows: readonly BenchRow[], key: (r: BenchRow) => K): Map<K, BenchRow> {
  const out = new Map<K, BenchRow>();
  for (const r of [...rows].sort(compareRows)) if (!out.has(key(r))) out.set(key(r), r);
  return out;
}

/** Panel order: op, folio order, path. */
function byPanel(a: BenchRow, b: BenchRow): number {
  const path = (r: BenchRow): number => (r.path === 'per-page' ? 0 : r.path === 'bvec' ? 1 : 2);
  return MODEL_OPS.indexOf(a.op) - MODEL_OPS.indexOf(b.op) || a.order - b.order || path(a) - path(b);
}

function panelOf(r: BenchRow): string {
  return [r.op, orderLabel(r.order), r.path].filter((s) => s !== null).join(' ');
}

/**
 * (a) Total throughput (million pages per second over all threads) against threads: one line per
 * scheme (color), dashed by sharing, one panel per op, folio order and path (range input where
 * measured, else PFN lists). A series without its own 1-thread row starts at the configuration's
 * 1-thread row (the same work, measured once).
 *
 * @returns the spec, or null without a model configuration measured at two or more thread counts
 */
export function throughputSpec(results: BenchResults): TopLevelSpec | null {
  const model = results.rows.filter((r) => r.kind === 'model' && r.scheme !== null);
  const inputOf = new Map<string, BenchRow['input']>();
  for (const r of model) if (!inputOf.has(panelOf(r)) || r.input === 'range') inputOf.set(panelOf(r), r.input);
  const used = model.filter((r) => inputOf.get(panelOf(r)) === r.input);
  const threadsOf = new Map<string, Set<number>>();
  for (const r of used) threadsOf.set(panelOf(r), (threadsOf.get(panelOf(r)) ?? new Set()).add(r.threads));
  const rows = used.filter((r) => (threadsOf.get(panelOf(r))?.size ?? 0) >= 2).sort(compareRows);
  if (rows.length === 0) return null;
  const values = rows.map((r) => ({ panel: panelOf(r), scheme: r.scheme, sharing: r.sharing, threads: r.threads, mpps: r.pagesPerSecond.total / 1e6 }));
  const single = firstBy(rows.filter((r) => r.threads === 1), (r) => `${panelOf(r)}/${r.scheme}`);
  const series = new Set(values.map((v) => `${v.panel}/${v.scheme}/${v.sharing}`));
  for (const s of [...series].sort()) {
    if (values.some((v) => `${v.panel}/${v.scheme}/${v.sharing}` === s && v.threads === 1)) continue;
    const [panel = '', scheme = '', sharing = ''] = s.split('/');
    const one = single.get(`${panel}/${scheme}`);
    if (one) values.push({ panel, scheme: one.scheme, sharing: sharing as BenchRow['sharing'], threads: 1, mpps: one.pagesPerSecond.total / 1e6 });
  }
  const panels = [...new Set([...rows].sort(byPanel).map(panelOf))];
  const sharings = ['private', 'shared', 'interleaved'].filter((k) => values.some((v) => v.sharing === k));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Throughput against threads (higher is better)',
    data: { values },
    facet: { field: 'panel', type: 'nominal', title: null, sort: panels },
    columns: Math.min(3, panels.length),
    spec: {
      width: 200,
      height: 130,
      encoding: {
        x: { field: 'threads', type: 'quantitative', title: 'threads', axis: { tickMinStep: 1 }, scale: { zero: false } },
        y: { field: 'mpps', type: 'quantitative', title: 'Mpages/s, all threads' },
        color: { field: 'scheme', type: 'nominal', scale: { domain: [...SCHEMES] } },
      },
      layer: [
        {
          mark: 'line',
          encoding: {
            strokeDash: { field: 'sharing', type: 'nominal', scale: { domain: sharings } },
            order: { field: 'threads', type: 'quantitative' },
          },
        },
        { mark: { type: 'point', filled: true, size: 25 } },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  };
}

/**
 * (b) bvec speedup (the per-page median over the bvec median) per folio order: bars per
 * scheme, log scale, one panel per op and input, 1-thread rows.
 *
 * @returns the spec, or null without a 1-thread model row carrying a bvec speedup
 */
export function bvecSpeedupSpec(results: BenchResults): TopLevelSpec | null {
  const rows = results.rows.filter((r) => r.kind === 'model' && r.threads === 1 && r.bvecSpeedup !== null && r.scheme !== null);
  if (rows.length === 0) return null;
  const picked = [...firstBy(rows, (r) => `${r.op}/${r.input}/${r.order}/${r.scheme}`).values()];
  const values = picked.map((r) => ({ panel: `${r.op} ${r.input}`, order: orderLabel(r.order), o: r.order, scheme: r.scheme, speedup: r.bvecSpeedup }));
  const panels = [...new Set(picked.map((r) => `${r.op} ${r.input}`))];
  const orders = [...new Set(picked.map((r) => r.order))].sort((a, b) => a - b).map(orderLabel);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'bvec speedup over per-page, by folio size (1 thread)',
    data: { values },
    facet: { field: 'panel', type: 'nominal', title: null, sort: panels },
    columns: Math.min(4, panels.length),
    spec: {
      width: { step: 16 },
      height: 160,
      mark: 'bar',
      encoding: {
        x: { field: 'order', type: 'nominal', title: 'folio', sort: orders, axis: { labelAngle: 0 } },
        xOffset: { field: 'scheme', type: 'nominal', scale: { domain: [...SCHEMES] } },
        y: { field: 'speedup', type: 'quantitative', title: 'per-page / bvec (x, log)', scale: { type: 'log' } },
        y2: { datum: 1 },
        color: { field: 'scheme', type: 'nominal', scale: { domain: [...SCHEMES] } },
      },
    },
    config: CONFIG,
  };
}

/**
 * (c) The model against the host kernel: ns per 4 KiB page (median, min..max) at 1 thread for
 * each mapping size the kernel rows cover: the kernel's io_uring registration next to the
 * model's gup-fast and pin-unpin rows of each scheme (pin-unpin: the bvec path on a PFN list
 * where measured, the closest to what the kernel does).
 *
 * @returns the spec, or null without kernel rows and model gup-fast or pin-unpin rows of the same order
 */
export function modelVsKernelSpec(results: BenchResults): TopLevelSpec | null {
  const one = results.rows.filter((r) => r.threads === 1);
  const kernel = firstBy(one.filter((r) => r.kind === 'kernel' && r.op === 'io_uring-register'), (r) => r.order);
  const pinPref = (r: BenchRow): number => (r.path === 'bvec' ? 0 : 2) + (r.input === 'list' ? 0 : 1);
  const pins = one.filter((r) => r.kind === 'model' && r.op === 'pin-unpin').sort((a, b) => pinPref(a) - pinPref(b) || compareRows(a, b));
  const values: { mapping: string; label: string; source: string; median: number; min: number; max: number }[] = [];
  const labels: string[] = ['kernel io_uring'];
  for (const [order, k] of [...kernel].sort((a, b) => a[0] - b[0])) {
    const mapping = `${orderWords(order)} mappings`;
    const model: BenchRow[] = [];
    for (const op of ['gup-fast', 'pin-unpin'] as const) {
      const src = op === 'gup-fast' ? one.filter((r) => r.kind === 'model' && r.op === op) : pins;
      const best = new Map<string | null, BenchRow>();
      for (const r of src) if (r.order === order && !best.has(r.scheme)) best.set(r.scheme, r);
      appendAll(model, [...best.values()].sort(compareRows));
    }
    if (model.length === 0) continue;
    for (const r of [k, ...model]) {
      const label = r.kind === 'kernel' ? 'kernel io_uring' : `${r.op} ${r.scheme ?? ''}`.trim();
      if (!labels.includes(label)) labels.push(label);
      const s = r.nsPerPage;
      values.push({ mapping, label, source: r.kind === 'kernel' ? 'host kernel' : r.op, median: s.median, min: s.min, max: s.max });
    }
  }
  if (values.length === 0) return null;
  const y = { field: 'label', type: 'nominal', title: null, sort: labels } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Model against the host kernel: ns per 4 KiB page, 1 thread (lower is better)',
    data: { values },
    facet: { row: { field: 'mapping', type: 'nominal', title: null, sort: [...new Set(values.map((v) => v.mapping))] } },
    spec: {
      width: 360,
      layer: [
        {
          mark: 'bar',
          encoding: {
            y,
            x: { field: 'median', type: 'quantitative', title: 'ns per 4 KiB page (median, min..max)' },
            color: { field: 'source', type: 'nominal', title: null, scale: { domain: ['host kernel', 'gup-fast', 'pin-unpin'] } },
          },
        },
        { mark: { type: 'rule', color: '#333' }, encoding: { y, x: { field: 'min', type: 'quantitative' }, x2: { field: 'max' } } },
        {
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 10 },
          encoding: { y, x: { field: 'max', type: 'quantitative' }, text: { field: 'median', type: 'quantitative', format: '.3~g' } },
        },
      ],
    },
    resolve: { scale: { x: 'independent' } },
    config: CONFIG,
  };
}
