#!/usr/bin/env node
// `npm run bench:js`: the cost of the JS API calls, next to the same work in the native loop.
//
//   node bench/js-calls.bench.mjs [--quick] [--json] [--strict]
//                                 [--scheme S] [--folio-order K] [--path bvec|per-page]
//
// benchmark.js times one pinPages + unpinPages round from JS (through dist/ and the addon in
// build/Release) over an array of 262144 pages (1 GiB of 4 KiB pages; default scheme 'bias',
// folio order 0, the default 'bvec' path) for: a 1-page range, a 512-page range, a
// 262144-page range, and a 262144-entry Uint32Array list. In the same run it spawns
// ./build-native/pinlab_bench --single for each of the same rounds (same array shape, scheme,
// folio order, path and input kind) before and after the JS suite, and prints JS / native per
// round. Target: JS within 1.1x of native for the 262144-page calls (range and list), where
// the work dwarfs the call; the 1- and 512-page ratios show the fixed cost of a call and
// have no target.
//
// Medians everywhere: the JS figure is the median of benchmark.js's samples (each the mean
// of many calls), the native figure the median of its trials (31 per run, pooled over both
// runs).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchBin, buildNativeBench, root } from '../scripts/native-bench.mjs';

const require = createRequire(import.meta.url);
const Benchmark = require('benchmark');

// ---- options --------------------------------------------------------------------------------

const argv = process.argv.slice(2);
function opt(name, fallback) {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  if (i + 1 >= argv.length) throw new Error(`${name} needs a value`);
  return argv[i + 1];
}
const quick = argv.includes('--quick');
const json = argv.includes('--json');
const strict = argv.includes('--strict');
const scheme = opt('--scheme', 'bias');
const folioOrder = Number(opt('--folio-order', '0'));
const path = opt('--path', 'bvec');
const PAGES = 262144;
const TARGET = 1.1;
const log = json ? (...a) => console.error(...a) : (...a) => console.log(...a);

// ---- builds ---------------------------------------------------------------------------------

const distIndex = join(root, 'dist', 'index.js');
const addon = join(root, 'build', 'Release', 'pinlab.node');
for (const [file, how] of [
  [distIndex, 'npx tsc -p tsconfig.build.json'],
  [addon, 'npx cmake-js compile --out build'],
]) {
  if (!existsSync(file)) {
    console.error(`bench/js-calls: ${file} is missing; build it first (${how}, or npm run build)`);
    process.exit(2);
  }
}
// The JS calls run the core compiled into the addon, the native loop the core compiled into
// build-native: a comparison is only fair if both were built from the same sources.
const newestCore = Math.max(
  ...readdirSync(join(root, 'native', 'core')).map((f) => statSync(join(root, 'native', 'core', f)).mtimeMs),
);
const staleAddon = statSync(addon).mtimeMs < newestCore;
if (staleAddon) {
  console.error(
    'bench/js-calls: WARNING: build/Release/pinlab.node is older than native/core sources; ' +
      'rebuild it (npx cmake-js compile --out build) for a like-for-like comparison',
  );
}
buildNativeBench();

const { PageArray } = await import(pathToFileURL(distIndex).href);

// ---- the workloads --------------------------------------------------------------------------

const list = new Uint32Array(PAGES);
for (let i = 0; i < PAGES; i++) list[i] = i;
const cases = [
  { name: `range of 1 page`, set: { start: 0, count: 1 }, count: 1, input: 'range' },
  { name: `range of 512 pages`, set: { start: 0, count: 512 }, count: 512, input: 'range' },
  { name: `range of ${PAGES} pages`, set: { start: 0, count: PAGES }, count: PAGES, input: 'range', target: true },
  { name: `Uint32Array of ${PAGES} pages`, set: list, count: PAGES, input: 'list', target: true },
];

const pa = new PageArray({ pages: PAGES, scheme, folioOrder });
const options = { path }; // reused: the call's own cost, not an allocation per call, is measured

function checkIdle(when) {
  const s = pa.stats();
  for (const pfn of [0, 1, 511, 512, PAGES / 2, PAGES - 1]) {
    if (pa.refcount(pfn) !== 1 || pa.maybeDmaPinned(pfn)) {
      throw new Error(`${when}: pfn ${pfn} not back to its initial state (refcount ${pa.refcount(pfn)})`);
    }
  }
  if (s.pinAcquired !== s.pinReleased) {
    throw new Error(`${when}: pinAcquired ${s.pinAcquired} != pinReleased ${s.pinReleased}`);
  }
  return s;
}

// ---- native twin ----------------------------------------------------------------------------

function runNative(c) {
  const args = [
    '--single', '--json',
    '--pages', String(PAGES), '--count', String(c.count),
    '--scheme', scheme, '--folio-order', String(folioOrder),
    '--path', path, '--input', c.input,
    ...(quick ? ['--quick'] : ['--trials', '31']),
  ];
  const r = spawnSync(benchBin, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`pinlab_bench ${args.join(' ')} exited ${r.status}`);
  return JSON.parse(r.stdout);
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const m = (v.length - 1) / 2;
  return (v[Math.floor(m)] + v[Math.ceil(m)]) / 2;
}

log(`pinlab JS calls vs native loop: ${PAGES}-page array, scheme ${scheme}, folio order ${folioOrder}, path ${path}`);
log('native runs (before the JS suite)...');
for (const c of cases) c.native = [runNative(c)];

// ---- the JS suite ---------------------------------------------------------------------------

checkIdle('before the suite');
const suite = new Benchmark.Suite('pinlab JS calls');
for (const c of cases) {
  const { set, count } = c;
  suite.add(c.name, () => {
    if (pa.pinPages(set, options) !== count) throw new Error('pinPages pinned fewer pages than asked');
    pa.unpinPages(set, options);
  }, {
    minSamples: quick ? 5 : 30,
    maxTime: quick ? 0.5 : 4,
    onStart() { c.before = checkIdle(`before ${c.name}`); },
    onComplete() {
      const after = checkIdle(`after ${c.name}`);
      const rounds = (after.pinAcquired - c.before.pinAcquired) / count;
      if (!(rounds >= 1) || !Number.isInteger(rounds)) {
        throw new Error(`${c.name}: stats show ${rounds} rounds of ${count} pages; the calls did not do the work`);
      }
      c.rounds = rounds;
    },
  });
}
suite.on('cycle', (event) => log(`  JS  ${String(event.target)}`));
log('JS suite (benchmark.js)...');
suite.run({ async: false });

const failed = suite.filter((b) => b.error);
if (failed.length) {
  for (const b of failed) console.error(`bench/js-calls: FATAL: "${b.name}" threw: ${b.error?.stack ?? b.error}`);
  process.exit(2);
}

log('native runs (after the JS suite)...');
for (const c of cases) c.native.push(runNative(c));

// ---- results --------------------------------------------------------------------------------

const results = suite.map((b, i) => {
  const c = cases[i];
  const jsSamplesNs = b.stats.sample.map((s) => s * 1e9);
  const js = median(jsSamplesNs);
  const nativeSamples = c.native.flatMap((n) => n.samplesNsPerRound);
  const native = median(nativeSamples);
  const ratio = js / native;
  return {
    case: c.name,
    pages: c.count,
    input: c.input,
    js: { medianNsPerRound: js, minNs: Math.min(...jsSamplesNs), maxNs: Math.max(...jsSamplesNs), samples: jsSamplesNs.length, rme: b.stats.rme, roundsChecked: c.rounds },
    native: { medianNsPerRound: native, minNs: Math.min(...nativeSamples), maxNs: Math.max(...nativeSamples), trials: nativeSamples.length, runMedians: c.native.map((n) => n.nsPerRound.median) },
    ratio,
    target: c.target ? { limit: TARGET, met: ratio <= TARGET } : null,
  };
});
const allMet = results.every((r) => !r.target || r.target.met);

const fmtNs = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(3)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} us` : `${ns.toFixed(1)} ns`);
if (json) {
  process.stdout.write(JSON.stringify({ pages: PAGES, scheme, folioOrder, path, staleAddon, results, allMet }, null, 2) + '\n');
} else {
  console.log('');
  console.log('pin+unpin per round (median [min .. max]); JS = pinPages + unpinPages through the addon');
  console.log(`${'case'.padEnd(28)}${'JS'.padEnd(34)}${'native loop'.padEnd(34)}JS / native`);
  for (const r of results) {
    const js = `${fmtNs(r.js.medianNsPerRound)} [${fmtNs(r.js.minNs)} .. ${fmtNs(r.js.maxNs)}]`;
    const nat = `${fmtNs(r.native.medianNsPerRound)} [${fmtNs(r.native.minNs)} .. ${fmtNs(r.native.maxNs)}]`;
    console.log(`${r.case.padEnd(28)}${js.padEnd(34)}${nat.padEnd(34)}${r.ratio.toFixed(3)}x`);
  }
  console.log('');
  for (const r of results.filter((x) => x.target)) {
    console.log(
      `target: JS ${r.case} within ${TARGET}x of the native loop: ${r.ratio.toFixed(3)}x  ${r.target.met ? 'met' : 'MISSED'}`,
    );
  }
  if (staleAddon) console.log('(the addon is older than native/core: the comparison may not be like for like)');
}
process.exit(strict && !allMet ? 1 : 0);
