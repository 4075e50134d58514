// SVG charts of a BenchResults document: Vega-Lite specs (./chart-specs.ts) compiled to Vega and
// rendered headless (renderer 'none': no canvas, no DOM, text widths estimated).
// vega and vega-lite load on first use: importing pinlab (e.g. to embed the engine) stays cheap.
import type { TopLevelSpec, compile as CompileFn } from 'vega-lite';

import { bvecSpeedupSpec, modelVsKernelSpec, throughputSpec } from './chart-specs.js';
import type { BenchResults } from './types.js';

/** One rendered chart. */
export interface BenchChart {
  /** File name stem: `throughput`, `bvec-speedup` or `model-vs-kernel` (written as NAME.svg). */
  name: string;
  /** The SVG document, starting with `<svg`. */
  svg: string;
}

type Logger = NonNullable<NonNullable<Parameters<typeof CompileFn>[1]>['logger']>;

/** A logger that drops everything: Vega-Lite's warnings are not the report's business. */
function silentLogger(): Logger {
  let level = 0;
  const logger = {
    level(l?: number) {
      if (l === undefined) return level;
      level = l;
      return logger;
    },
    error() {
      return logger;
    },
    warn() {
      return logger;
    },
    info() {
      return logger;
    },
    debug() {
      return logger;
    },
  };
  return logger as unknown as Logger;
}

/**
 * Renders one Vega-Lite spec to an SVG string, headless and deterministic.
 *
 * @param spec - a Vega-Lite top-level spec with inline data
 * @returns the SVG document
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [{ View, parse }, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const vg = compile(spec, { logger: silentLogger() }).spec;
  const view = new View(parse(vg), { renderer: 'none', logLevel: 0 });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * The Vega-Lite specs of the charts the results have rows for, by chart name: `throughput`
 * (total pages/s against threads), `bvec-speedup` (per-page over bvec, per folio order) and
 * `model-vs-kernel` (the host kernel's io_uring rows next to the model's gup-fast and pin-unpin
 * rows). A chart whose rows are missing is left out.
 *
 * @param results - the document
 * @returns `[name, spec]` pairs, in that order
 */
export function chartSpecs(results: BenchResults): [string, TopLevelSpec][] {
  const specs: [string, TopLevelSpec | null][] = [
    ['throughput', throughputSpec(results)],
    ['bvec-speedup', bvecSpeedupSpec(results)],
    ['model-vs-kernel', modelVsKernelSpec(results)],
  ];
  return specs.filter((s): s is [string, TopLevelSpec] => s[1] !== null);
}

/**
 * Renders the charts of {@link chartSpecs} to SVG. The same results give the same bytes.
 *
 * @param results - the document
 * @returns one entry per chart the results have rows for (possibly none)
 */
export async function renderCharts(results: BenchResults): Promise<BenchChart[]> {
  const out: BenchChart[] = [];
  for (const [name, spec] of chartSpecs(results)) out.push({ name, svg: await renderSvg(spec) });
  return out;
}
