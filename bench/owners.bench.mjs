#!/usr/bin/env node
// `npm run bench:owners`: what pin ownership, debug provenance and the bio release policies
// cost per call, measured side by side in one run with benchmark.js.
//
//   node bench/owners.bench.mjs [--quick] [--json] [--scheme S] [--rounds N]
//
// Part A, owner tracking. Each test is one pin call and its unpin, on a PageArray of its own
// (262144 pages, 4 KiB folios, scheme 'hybrid' unless --scheme), in four variants:
//   none      no owner, no debug: the side table is never touched (the baseline);
//   owner     `{ owner }` on the pin and the unpin: one side-table record per pin call;
//   debug     `new PageArray({ debug: true })`, no owner: every pin call recorded, plus the
//             native exact per-page pin count and its striped lock;
//   stacks    debug + `captureStacks: true`: a JS stack captured per pin call.
// for pinPages + unpinPages of a 1-page range, a 512-page range, a 262144-page range, a
// 512-entry Uint32Array of consecutive PFNs (one run) and a 512-entry Uint32Array of every
// other PFN (512 runs); and for pinUserPagesFast + unpinUserPages (write pins) of 512 pages of
// an AddressSpace, mapped by 4 KiB PTEs or by one 2 MiB THP (PMD leaf), without and with an
// owner. Figure: ns per pin+unpin pair; ratio: the variant's median over the 'none' median.
//
// Part B, bio release policies. Cost per bio: bioFromUserPages (pin_user_pages_fast of the
// user pages, write: true as for an O_DIRECT read) + one bioAddPage per page-cache page (a
// PageCacheFile of 4 KiB folios, mapped once so its folios exist) + bio.complete(), under
// 'flagged' (page-cache pages held by a plain reference) and 'all-pins' (held by a pin), for
// bios of 16 user pages, 16 user + 16 cache pages, and 256 user pages of one 2 MiB THP + 16
// cache pages. Figure: us per bio; ratio: all-pins over flagged.
//
// Rounds: the whole suite runs --rounds times (default 5; --quick: 1), one benchmark.js run per
// test per round, so a burst of noise from a neighbour spreads over all tests instead of
// ruining one. A test's figure is the median of its benchmark.js samples pooled over the
// rounds (each sample is the mean of many calls). Every test is checked after each round:
// whole rounds done (pinAcquired grew by a multiple of the pages per call), pinAcquired ==
// pinReleased, checkBalanced() empty, sampled pages back to their refcount. A failed check or a
// test that threw exits 2.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const Benchmark = require('benchmark');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// ---- options --------------------------------------------------------------------------------

const argv = process.argv.slice(2);
function opt(name, fallback) {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  if (i + 1 >= argv.length) usage(`${name} needs a value`);
  return argv[i + 1];
}
const USAGE = 'usage: node bench/owners.bench.mjs [--quick] [--json] [--scheme S] [--rounds N]';
function usage(message) {
  console.error(`bench/owners: ${message}`);
  console.error(USAGE);
  process.exit(64);
}
const known = new Set(['--quick', '--json', '--scheme', '--rounds', '--help']);
for (let i = 0; i < argv.length; i++) {
  if (!known.has(argv[i])) usage(`unknown argument ${argv[i]}`);
  if (argv[i] === '--scheme' || argv[i] === '--rounds') i++;
}
if (argv.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
const quick = argv.includes('--quick');
const json = argv.includes('--json');
const scheme = opt('--scheme', 'hybrid');
const rounds = Number(opt('--rounds', quick ? '1' : '5'));
if (!Number.isInteger(rounds) || rounds < 1) usage(`--rounds must be a positive integer`);
const PAGES = 262144;
const log = json ? (...a) => console.error(...a) : (...a) => console.log(...a);

const distIndex = join(root, 'dist', 'index.js');
if (!existsSync(distIndex)) {
  console.error(`bench/owners: ${distIndex} is missing; build it first (npm run build:ts)`);
  process.exit(2);
}
const { AddressSpace, PageArray, PageCacheFile, SCHEMES, bioAddPage, bioFromUserPages } = await import(pathToFileURL(distIndex).href);
if (!SCHEMES.includes(scheme)) usage(`--scheme must be one of ${SCHEMES.join(', ')} (got ${scheme})`);

// ---- checks ---------------------------------------------------------------------------------

class CheckFailed extends Error {}
function check(ok, message) {
  if (!ok) throw new CheckFailed(message);
}

/** Snapshot of what a test must leave unchanged: balanced pins, sampled refcounts. */
function snapshot(mem, samples) {
  const s = mem.stats();
  return { pinAcquired: s.pinAcquired, pinReleased: s.pinReleased, refs: samples.map((p) => mem.refcount(p)) };
}

function checkIdle(t, when) {
  const snap = snapshot(t.mem, t.samples);
  check(snap.pinAcquired === snap.pinReleased, `${t.id} ${when}: pinAcquired ${snap.pinAcquired} != pinReleased ${snap.pinReleased}`);
  if (t.base !== undefined) {
    snap.refs.forEach((r, i) => check(r === t.base.refs[i], `${t.id} ${when}: pfn ${t.samples[i]} refcount ${r}, expected ${t.base.refs[i]}`));
  }
  check(t.mem.checkBalanced().length === 0, `${t.id} ${when}: checkBalanced() reports leaks`);
  check(t.mem.outstandingPins().length === 0, `${t.id} ${when}: outstanding pins left`);
  return snap;
}

// ---- part A: owner tracking -----------------------------------------------------------------

const VARIANTS = [
  { key: 'none', label: 'no owner', options: {}, owner: false },
  { key: 'owner', label: 'owner', options: {}, owner: true },
  { key: 'debug', label: 'debug', options: { debug: true }, owner: false },
  { key: 'stacks', label: 'debug+stacks', options: { debug: true, captureStacks: true }, owner: false },
];

const consecutive = new Uint32Array(512).map((_, i) => i);
const strided = new Uint32Array(512).map((_, i) => 2 * i);
const PIN_CASES = [
  { key: 'range-1', label: 'pinPages, range of 1 page', set: { start: 0, count: 1 }, pages: 1 },
  { key: 'range-512', label: 'pinPages, range of 512 pages', set: { start: 0, count: 512 }, pages: 512 },
  { key: `range-${PAGES}`, label: `pinPages, range of ${PAGES} pages`, set: { start: 0, count: PAGES }, pages: PAGES },
  { key: 'list-512', label: 'pinPages, list of 512 PFNs (1 run)', set: consecutive, pages: 512 },
  { key: 'list-512-strided', label: 'pinPages, list of 512 PFNs (512 runs)', set: strided, pages: 512 },
];
const GUP_CASES = [
  { key: 'gup-512-4k', label: 'pinUserPagesFast, 512 x 4 KiB', huge: false },
  { key: 'gup-512-thp', label: 'pinUserPagesFast, one 2 MiB THP', huge: true },
];

const tests = [];

for (const c of PIN_CASES) {
  for (const v of VARIANTS) {
    const mem = new PageArray({ pages: PAGES, scheme, ...v.options });
    const owner = v.owner ? mem.pinOwner('bench', { kind: 'device' }) : undefined;
    const pinOpts = owner ? { owner } : {}; // reused: the call's cost, not an allocation, is measured
    const { set, pages } = c;
    tests.push({
      part: 'owners',
      id: `${c.key}/${v.key}`,
      case: c,
      variant: v,
      mem,
      samples: [0, 1, 511, 1022, PAGES - 1],
      pagesPerCall: pages,
      fn() {
        if (mem.pinPages(set, pinOpts) !== pages) throw new Error('pinPages pinned fewer pages than asked');
        mem.unpinPages(set, pinOpts);
      },
    });
  }
}

for (const c of GUP_CASES) {
  for (const v of VARIANTS.filter((x) => x.key === 'none' || x.key === 'owner')) {
    const mem = new PageArray({ pages: 8192, scheme, populated: false });
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 512, count: 512, populate: true, huge: c.huge });
    const t0 = mm.translate(512);
    check(t0 !== null && t0.huge === c.huge, `${c.key}: mapping is not ${c.huge ? 'a PMD leaf' : '4 KiB PTEs'}`);
    const owner = v.owner ? mem.pinOwner('bench', { kind: 'device' }) : undefined;
    const pinOpts = owner ? { write: true, owner } : { write: true };
    const unpinOpts = owner ? { write: true, owner } : { write: true };
    tests.push({
      part: 'owners',
      id: `${c.key}/${v.key}`,
      case: c,
      variant: v,
      mem,
      samples: [t0.pfn, mm.translate(767).pfn, mm.translate(1023).pfn],
      pagesPerCall: 512,
      fn() {
        const { pfns, count } = mm.pinUserPagesFast(512, 512, pinOpts);
        if (count !== 512) throw new Error('pinUserPagesFast pinned fewer pages than asked');
        mm.unpinUserPages(pfns, unpinOpts);
      },
    });
  }
}

// ---- part B: bio release policies -----------------------------------------------------------

const BIO_CASES = [
  { key: 'bio-16+0', label: '16 user pages + 0 cache pages', user: 16, cache: 0, huge: false },
  { key: 'bio-16+16', label: '16 user pages + 16 cache pages', user: 16, cache: 16, huge: false },
  { key: 'bio-256thp+16', label: '256 user pages (one THP) + 16 cache pages', user: 256, cache: 16, huge: true },
];
const POLICIES = ['flagged', 'all-pins'];

for (const c of BIO_CASES) {
  for (const policy of POLICIES) {
    const mem = new PageArray({ pages: 8192, scheme, populated: false });
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 512, count: 512, populate: true, huge: c.huge });
    check(mm.translate(512).huge === c.huge, `${c.key}: user mapping is not ${c.huge ? 'a PMD leaf' : '4 KiB PTEs'}`);
    const file = new PageCacheFile(mem, { name: 'data', pages: 16 });
    mm.mmap({ start: 1536, count: 16, file }); // the file's folios exist once mapped
    const cachePfns = Array.from({ length: c.cache }, (_, i) => file.pfnAt(i));
    check(cachePfns.every((p) => p !== null), `${c.key}: page-cache pages missing`);
    const bioOpts = { policy, write: true };
    const expected = c.user + c.cache;
    tests.push({
      part: 'bios',
      id: `${c.key}/${policy}`,
      case: c,
      variant: { key: policy, label: policy },
      mem,
      samples: [mm.translate(512).pfn, mm.translate(512 + c.user - 1).pfn, file.pfnAt(0), file.pfnAt(15)],
      pagesPerCall: c.user + (policy === 'all-pins' ? c.cache : 0), // pins per bio
      fn() {
        const bio = bioFromUserPages(mm, 512, c.user, bioOpts);
        for (let i = 0; i < cachePfns.length; i++) bioAddPage(bio, cachePfns[i]);
        if (bio.pages !== expected) throw new Error(`bio holds ${bio.pages} pages, expected ${expected}`);
        bio.complete();
      },
    });
  }
}

// ---- the runs -------------------------------------------------------------------------------

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const m = (v.length - 1) / 2;
  return (v[Math.floor(m)] + v[Math.ceil(m)]) / 2;
}

for (const t of tests) {
  t.base = snapshot(t.mem, t.samples);
  t.samplesNs = [];
  t.rme = [];
  t.calls = 0;
  t.fn(); // one checked call before timing: it must work and leave everything as it was
  checkIdle(t, 'after the first call');
}

log(
  `pinlab owner tracking and bio policies: scheme ${scheme}, ${tests.length} tests, ${rounds} round${rounds > 1 ? 's' : ''}` +
    `${quick ? ' (--quick: figures are a smoke test)' : ''}`,
);
const progress = process.stderr.isTTY === true; // one overwritten line on a terminal, nothing in a log
const started = Date.now();
for (let round = 1; round <= rounds; round++) {
  for (const t of tests) {
    const before = snapshot(t.mem, t.samples);
    const bench = new Benchmark(t.id, t.fn, { minSamples: quick ? 5 : 10, maxTime: quick ? 0.25 : 0.3, initCount: 1 });
    bench.run({ async: false });
    if (bench.error) {
      console.error(`bench/owners: FATAL: "${t.id}" threw: ${bench.error?.stack ?? bench.error}`);
      process.exit(2);
    }
    try {
      const after = checkIdle(t, `after round ${round}`);
      const pins = after.pinAcquired - before.pinAcquired;
      if (t.pagesPerCall > 0) {
        const calls = pins / t.pagesPerCall;
        check(Number.isInteger(calls) && calls >= 1, `${t.id}: stats show ${calls} calls of ${t.pagesPerCall} pins; the calls did not do the work`);
        t.calls += calls;
      }
    } catch (e) {
      if (!(e instanceof CheckFailed)) throw e;
      console.error(`bench/owners: FATAL: check failed: ${e.message}`);
      process.exit(2);
    }
    t.samplesNs.push(...bench.stats.sample.map((s) => s * 1e9));
    t.rme.push(bench.stats.rme);
    if (progress) process.stderr.write(`  round ${round}/${rounds}  ${String(bench).slice(0, 90).padEnd(90)}\r`);
  }
}
if (progress) process.stderr.write(' '.repeat(104) + '\r');
const seconds = (Date.now() - started) / 1000;

// ---- results --------------------------------------------------------------------------------

const figure = (t) => ({ median: median(t.samplesNs), min: Math.min(...t.samplesNs), max: Math.max(...t.samplesNs) });
const byId = new Map(tests.map((t) => [t.id, t]));
const rows = tests.map((t) => {
  const ns = figure(t);
  const baseId = t.part === 'owners' ? `${t.case.key}/none` : `${t.case.key}/flagged`;
  const base = figure(byId.get(baseId));
  return {
    part: t.part,
    case: t.case.key,
    label: t.case.label,
    variant: t.variant.key,
    nsPerCall: ns,
    samples: t.samplesNs.length,
    rmePercent: Math.max(...t.rme),
    callsChecked: t.calls,
    baseline: baseId,
    ratio: ns.median / base.median,
  };
});

if (json) {
  process.stdout.write(
    JSON.stringify(
      { bench: 'pinlab-owners', scheme, pages: PAGES, quick, rounds, seconds, node: process.version, rows },
      null,
      2,
    ) + '\n',
  );
  process.exit(0);
}

const fmtNs = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e4 ? `${(ns / 1e3).toFixed(1)} us` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} us` : `${ns.toFixed(0)} ns`);

console.log('');
console.log(`A. Owner tracking: one pin + unpin pair, median per call (ratio to no owner); scheme ${scheme}`);
const head = ['case'.padEnd(40), ...VARIANTS.map((v) => v.label.padStart(19))].join('');
console.log(head);
for (const c of [...PIN_CASES, ...GUP_CASES]) {
  const cells = VARIANTS.map((v) => {
    const r = rows.find((x) => x.case === c.key && x.variant === v.key);
    if (r === undefined) return '-'.padStart(19);
    const ratio = v.key === 'none' ? '' : ` ${r.ratio.toFixed(2)}x`;
    return `${fmtNs(r.nsPerCall.median)}${ratio}`.padStart(19);
  });
  console.log([c.label.padEnd(40), ...cells].join(''));
}
console.log('');
console.log('B. Bio release policies: build + complete, median per bio');
console.log(`${'bio'.padEnd(44)}${'flagged'.padStart(12)}${'all-pins'.padStart(12)}${'all-pins / flagged'.padStart(21)}`);
for (const c of BIO_CASES) {
  const f = rows.find((r) => r.case === c.key && r.variant === 'flagged');
  const a = rows.find((r) => r.case === c.key && r.variant === 'all-pins');
  const us = (r) => `${(r.nsPerCall.median / 1e3).toFixed(2)} us`;
  console.log(`${c.label.padEnd(44)}${us(f).padStart(12)}${us(a).padStart(12)}${`${a.ratio.toFixed(2)}x`.padStart(21)}`);
}
const worst = rows.reduce((m, r) => Math.max(m, r.rmePercent), 0);
console.log('');
console.log(
  `${tests.length} tests x ${rounds} round${rounds > 1 ? 's' : ''} in ${seconds.toFixed(1)} s, every one checked balanced; ` +
    `largest benchmark.js relative margin of error ${worst.toFixed(1)} %. --json for every figure with min and max.`,
);
