// Shared helpers of the worked examples: command-line options, a seeded PRNG, an aligned text
// table, and the --out files (a Vega-Lite chart rendered to SVG, and the table rows as JSON).
import { accessSync, constants, lstatSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { renderSvg } from '../../dist/index.js';
// The CLI's own output checks and its all-or-none report writer (temporaries created O_EXCL |
// O_NOFOLLOW beside their targets, then renamed into place).
import { prepareOutputDir, writeReportFiles } from '../../dist/report/files.js';

/** `--seed N` (default 1), `--out DIR`, `--quick`, `--trace FILE`. Unknown options stop with a usage line. */
export async function parseArgs(name, argv = process.argv.slice(2)) {
  const usage = `usage: node examples/${name}.mjs [--seed N] [--out DIR] [--quick] [--trace FILE]`;
  const opts = { seed: 1, out: null, quick: false, trace: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--seed' && /^\d+$/.test(argv[i + 1] ?? '')) opts.seed = Number(argv[++i]);
    else if (a === '--out' && argv[i + 1] !== undefined) opts.out = argv[++i];
    else if (a === '--trace' && argv[i + 1] !== undefined) opts.trace = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log(usage);
      process.exit(0);
    } else {
      console.error(`${name}: bad argument ${JSON.stringify(a)}\n${usage}`);
      process.exit(2);
    }
  }
  // The output paths are checked now, not after a long run: a bad one stops the example here.
  try {
    await checkOutputs(opts, name);
  } catch (e) {
    console.error(`${name}: ${e.message}`);
    process.exit(2);
  }
  return opts;
}

/** What is at `path` (lstat: a link is not followed), or null where nothing is. */
function lstatOrNull(path) {
  try {
    return lstatSync(path);
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

function kindOf(s) {
  if (s.isSymbolicLink()) return 'a symbolic link';
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO';
  return 'not a regular file';
}

/** A path as named: a string without a NUL byte, read once. */
function pathArg(flag, value) {
  const path = String(value);
  if (path.length === 0 || path.includes('\0')) throw new Error(`${flag}: not a usable path (${JSON.stringify(path)})`);
  return path;
}

/** The target of a file that will be written: absent or a regular file (never a link), in a writable folder. */
function checkTarget(flag, path) {
  const s = lstatOrNull(path);
  if (s !== null && !s.isFile()) throw new Error(`${flag}: will not write ${path}: it is ${kindOf(s)}`);
  const dir = dirname(path);
  let d;
  try {
    d = statSync(dir);
  } catch (e) {
    throw new Error(`${flag}: will not write ${path}: its folder ${dir} cannot be used (${e.code ?? e.message})`);
  }
  if (!d.isDirectory()) throw new Error(`${flag}: will not write ${path}: ${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new Error(`${flag}: will not write ${path}: its folder ${dir} is not writable`);
  }
}

/**
 * Checks --out and --trace before the run: --out DIR is a directory (created if missing, like
 * mkdir -p) whose NAME.svg and NAME.json are absent or regular files (the CLI's
 * prepareOutputDir); --trace FILE's folder exists and FILE is absent or a regular file (a
 * symbolic link, FIFO or folder is refused).
 */
export async function checkOutputs(opts, name) {
  if (opts.out !== null) {
    opts.out = pathArg('--out', opts.out);
    try {
      await prepareOutputDir(opts.out, [`${name}.svg`, `${name}.json`]);
    } catch (e) {
      throw new Error(`--out: ${e.message}`);
    }
  }
  if (opts.trace !== null) {
    opts.trace = pathArg('--trace', opts.trace);
    checkTarget('--trace', resolve(opts.trace));
  }
}

/** A seeded PRNG (mulberry32) with the few draws the examples need. Same seed, same numbers. */
export class Rng {
  #a;
  constructor(seed) {
    this.#a = seed >>> 0;
  }
  /** A float in [0, 1). */
  next() {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo, hi) {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** true with probability p. */
  chance(p) {
    return this.next() < p;
  }
  /** One element of a non-empty array. */
  pick(items) {
    return items[Math.floor(this.next() * items.length)];
  }
}

/** A seed per scheme/policy name, so each row's run does not depend on the rows before it. */
export function subSeed(seed, name) {
  let h = seed >>> 0;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

/**
 * Formats rows as an aligned text table: `columns` is [[key, header], ...]; numbers are right
 * aligned (fixed to `digits` decimals when not integers), text left aligned.
 */
export function formatTable(columns, rows, digits = 1) {
  const cell = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(digits)) : String(v));
  const cells = rows.map((r) => columns.map(([key]) => cell(r[key])));
  const widths = columns.map(([, h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const numeric = columns.map(([key]) => rows.length > 0 && rows.every((r) => typeof r[key] === 'number'));
  const line = (vals) => vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(columns.map(([, h]) => h)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** A grouped bar chart, values on the bars: one group per `x`, one bar per series (`values`: {x, series, value}). */
export function groupedBarSpec({ title, xTitle, yTitle, values, xOrder, seriesOrder }) {
  const font = { labelFont: 'sans-serif', titleFont: 'sans-serif' };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 320,
    height: 200,
    data: { values },
    encoding: {
      x: { field: 'x', type: 'nominal', title: xTitle, sort: xOrder, axis: { labelAngle: 0 } },
      xOffset: { field: 'series', type: 'nominal', sort: seriesOrder },
      y: { field: 'value', type: 'quantitative', title: yTitle },
      color: { field: 'series', type: 'nominal', title: null, sort: seriesOrder, legend: { labelLimit: 0 } },
    },
    layer: [
      { mark: 'bar' },
      { mark: { type: 'text', dy: -5, fontSize: 9 }, encoding: { text: { field: 'value', type: 'quantitative' }, color: { value: '#333' } } },
    ],
    config: { background: 'white', font: 'sans-serif', axis: font, legend: font, title: { font: 'sans-serif' } },
  };
}

/**
 * With `--out DIR`: writes DIR/<name>.svg (the chart) and DIR/<name>.json ({ example, seed,
 * quick, rows, ...extra }). Returns the paths written (none without --out).
 */
export async function writeOutputs(opts, name, rows, spec, extra = {}) {
  if (opts.out === null) return [];
  const svg = await renderSvg(spec);
  const json = `${JSON.stringify({ example: name, seed: opts.seed, quick: opts.quick, rows, ...extra }, null, 2)}\n`;
  // Both or neither, each through a temporary renamed into place (never through a link there).
  await writeReportFiles(opts.out, [
    { name: `${name}.svg`, data: svg },
    { name: `${name}.json`, data: json },
  ]);
  return [join(opts.out, `${name}.svg`), join(opts.out, `${name}.json`)];
}

/**
 * With `--trace FILE`: starts recording `mem`'s engine-level calls (call it right after
 * `new PageArray`); returns the recorder, or null without --trace.
 */
export function startTrace(opts, mem) {
  return opts.trace === null ? null : mem.record();
}

/** Saves a recording started by startTrace to --trace FILE and says how to replay it. */
export function finishTrace(opts, rec, what) {
  if (rec === null) return;
  rec.stop();
  const r = rec.save(opts.trace);
  console.log(`wrote ${r.path}: ${r.ops} ops of ${what} (${r.bytes} bytes); replay it under every scheme with: npx pinlab replay ${r.path}`);
}

/** Stops the example with a message when an invariant it demonstrates does not hold. */
export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Sums one numeric field over a list of stats objects. */
export function sum(list, key) {
  return list.reduce((n, s) => n + s[key], 0);
}
