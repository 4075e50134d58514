// The reporting side of `pinlab profile`: the JSON Schema and its validator, the text table, the
// markdown, the SVG charts and writeProfileReport. All over realistic ProfileResults documents
// built here (no native code runs): a synthetic desktop-like population with a bias sweep, and a
// snapshot.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { profileChartSpecs, renderProfileCharts } from '../lib/profile/charts.js';
import { formatProfileMarkdown } from '../lib/profile/markdown.js';
import { PRESETS } from '../lib/profile/presets.js';
import { writeProfileReport } from '../lib/profile/report.js';
import { PROFILE_RESULTS_SCHEMA, validateProfileResults } from '../lib/profile/schema.js';
import { formatProfileTable } from '../lib/profile/table.js';
import type { ProfileBucket, ProfileResults, ProfileScheme, Rate } from '../lib/profile/types.js';
import type { Population } from '../lib/types/population.js';
import { SCHEMES } from '../lib/schemes.js';
import { schemeTraits } from './scheme-traits.js';

type Scheme = ProfileScheme['scheme'];

const PAGES = 1 << 22;
const INT32_MAX = 2 ** 31 - 1;
const SWEEP = Array.from({ length: 13 }, (_, i) => 2 ** (i + 4)); // 16 .. 65536

/** The desktop preset's population: the fixture below claims to come from it. */
const POPULATION: Population = PRESETS.desktop.population;

function wilson(count: number, total: number): Rate {
  if (total === 0) return { count, total, rate: 0, low: 0, high: 0 };
  const z = 1.959963984540054;
  const p = count / total;
  const d = 1 + (z * z) / total;
  const centre = (p + (z * z) / (2 * total)) / d;
  const half = (z * Math.sqrt((p * (1 - p)) / total + (z * z) / (4 * total * total))) / d;
  return { count, total, rate: p, low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** P(refs in lo..hi) of the population's mixture. */
function mass(lo: number, hi: number): number {
  let uniform = 0;
  for (let k = Math.max(lo, 1); k <= Math.min(hi, 3); k++) uniform += 1 / 3;
  let h = 0;
  let part = 0;
  for (let k = 1; k <= 4096; k++) {
    h += k ** -0.9;
    if (k >= lo && k <= hi) part += k ** -0.9;
  }
  return 0.85 * uniform + 0.15 * (part / h);
}

const ALLOCATED = Math.round(PAGES * 0.8);
const PINNED = Math.round(ALLOCATED * 0.002);
const UNPINNED = ALLOCATED - PINNED;
/** Reference-count buckets 1..1, 2..3, ..., 4096..8191, and an empty 8192..16383. */
const REF_BUCKETS = Array.from({ length: 15 }, (_, b) => ({ lo: 2 ** b, hi: 2 ** (b + 1) - 1 }));
/** The fixture's folios: 75% of the pages in order-0 folios, 25% in order-9 ones. */
const ORDER_WEIGHTS: readonly [order: number, weight: number][] = [
  [0, 0.75],
  [9, 0.25],
];

/** Share of pages whose folios count pins with the bias (the rest count them exactly): bias and write-bias 1, hybrid 0.75, separate 0. */
function biasedShare(scheme: Scheme): number {
  const t = schemeTraits(scheme);
  return ORDER_WEIGHTS.reduce((a, [order, w]) => a + (t.exact(order) ? 0 : w), 0);
}

function counts(pages: number, fp: number, unpinned: number, pinned: number, scheme: Scheme, hidden: number): Omit<ProfileBucket, 'label' | 'key'> {
  return {
    pages,
    falsePositives: wilson(fp, unpinned),
    falseNegatives: wilson(0, pinned),
    hiddenReadPins: schemeTraits(scheme).readPinsHidden ? wilson(hidden, Math.round(pinned * 0.3)) : null,
  };
}

function entry(scheme: Scheme, bias: number): ProfileScheme {
  const share = biasedShare(scheme);
  const byRefs: ProfileBucket[] = REF_BUCKETS.map(({ lo, hi }) => {
    const pages = Math.round(ALLOCATED * mass(lo, hi));
    const unpinned = Math.round(pages * (1 - 0.002));
    const fp = lo >= bias ? Math.round(unpinned * share) : 0;
    return { label: `refs ${lo}..${hi}`, key: lo, ...counts(pages, fp, unpinned, pages - unpinned, scheme, 0) };
  });
  const fp = byRefs.reduce((a, b) => a + b.falsePositives.count, 0);
  const tail = mass(bias, INT32_MAX);
  const byOrder: ProfileBucket[] = ORDER_WEIGHTS.map(([order, w]) => {
    // the false positives fall on the bias-counted orders (hybrid: all on order 0)
    const orderFp = schemeTraits(scheme).exact(order) ? 0 : Math.round((fp * w) / share);
    return { label: `order ${order}`, key: order, ...counts(Math.round(ALLOCATED * w), orderFp, Math.round(UNPINNED * w), Math.round(PINNED * w), scheme, 0) };
  });
  const hidden = Math.round(PINNED * 0.3 * (1 - tail));
  const overall = counts(ALLOCATED, fp, UNPINNED, PINNED, scheme, hidden);
  const expectedRate = (UNPINNED * share * tail) / UNPINNED;
  const r = overall.falsePositives;
  const samplePages = 4096 * 128;
  const scale = ALLOCATED / samplePages;
  return {
    scheme,
    bias,
    overall,
    byOrder,
    byRefs,
    overflowRefusals: 0,
    pinsTaken: Math.round(ALLOCATED * 0.002 * 0.9),
    expected: { rate: expectedRate, agrees: expectedRate >= r.low && expectedRate <= r.high },
    downstream: {
      needlessEarlyCowPages: Math.round(Math.round((fp / scale) * 0.4) * scale),
      unmovablePages: Math.round(Math.round(fp / scale) * scale),
      uncollapsiblePages: Math.round(Math.round((fp / scale) * 0.9) * scale),
      unreclaimablePages: fp,
      pageoutSkippedPages: Math.round(Math.round(fp / scale) * scale),
      samplePages,
      scale,
    },
    pinBudget: Math.floor((INT32_MAX - 2) / schemeTraits(scheme, bias).cost(0, true)), // separate: 1 a pin, else the bias
  };
}

const MACHINE = { cpu: 'Test CPU @ 2.0GHz', cores: 16, kernel: '6.1.0-test', os: 'linux x64', node: 'v20.20.2', build: 'Release', pinlab: '0.1.0' };

let built: ProfileResults | undefined;

/** Four schemes at bias 1024, bias and hybrid swept 16..65536; hybrid at 16 disagrees. A fresh copy each call. */
function sample(): ProfileResults {
  built ??= build();
  return structuredClone(built);
}

function build(): ProfileResults {
  const schemes: ProfileScheme[] = [];
  for (const scheme of SCHEMES) {
    const biases = scheme === 'bias' || scheme === 'hybrid' ? [1024, ...SWEEP.filter((b) => b !== 1024)] : [1024];
    for (const bias of biases) schemes.push(entry(scheme, bias));
  }
  const off = schemes.find((s) => s.scheme === 'hybrid' && s.bias === 16) as ProfileScheme;
  const fp = off.overall.falsePositives;
  off.overall.falsePositives = wilson(Math.round(fp.count * 1.1), fp.total);
  off.expected = { rate: off.expected?.rate ?? 0, agrees: false };
  const f4 = (x: number): string => x.toPrecision(4);
  const m = off.overall.falsePositives;
  return {
    schema: 'pinlab-profile',
    version: 1,
    createdAt: '2026-11-24T10:00:00.000Z',
    machine: MACHINE,
    source: { kind: 'synthetic', preset: 'desktop', population: structuredClone(POPULATION) },
    schemes,
    scanPagesPerSecond: 812.4e6,
    threads: 16,
    durationMs: 12_345,
    disagreements: [`hybrid bias 16: measured ${f4(m.rate)} [${f4(m.low)}, ${f4(m.high)}], expected ${f4(off.expected.rate)}`],
  };
}

/** A snapshot of a host: two schemes at the default bias, no expectations. */
function snapshot(): ProfileResults {
  const doc = sample();
  const { seed, pinnedFraction, pinsPerPinned, writeFraction } = POPULATION;
  doc.source = {
    kind: 'snapshot',
    file: '/var/lib/pinlab/host.snap',
    pages: PAGES,
    pins: { seed, pinnedFraction, pinsPerPinned: { kind: 'geometric', p: 0.5, min: 1 }, writeFraction },
  };
  void pinsPerPinned;
  doc.schemes = doc.schemes.filter((s) => s.bias === 1024 && (s.scheme === 'bias' || s.scheme === 'hybrid')).map((s) => ({ ...s, expected: null }));
  doc.disagreements = [];
  return doc;
}

type Loose = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const loose = (doc: ProfileResults): Loose => structuredClone(doc) as unknown as Loose;

describe('PROFILE_RESULTS_SCHEMA and validateProfileResults', () => {
  it('accepts the synthetic and the snapshot document, and their JSON round trips', () => {
    for (const doc of [sample(), snapshot()]) {
      expect(validateProfileResults(doc)).toEqual([]);
      expect(validateProfileResults(JSON.parse(JSON.stringify(doc)))).toEqual([]);
    }
    expect(PROFILE_RESULTS_SCHEMA.$schema).toMatch(/2020-12/);
    expect(PROFILE_RESULTS_SCHEMA.required).toEqual(['schema', 'version', 'createdAt', 'machine', 'source', 'schemes', 'scanPagesPerSecond', 'threads', 'durationMs', 'disagreements']);
    const dist = PROFILE_RESULTS_SCHEMA.$defs?.['distribution'];
    expect(dist?.oneOf?.map((b) => b.properties?.['kind']?.const)).toEqual(['fixed', 'uniform', 'geometric', 'zipf', 'lognormal', 'mixture']);
    expect(JSON.stringify(dist)).toContain('"$ref":"#/$defs/distribution"'); // recursive through mixture parts
    expect(PROFILE_RESULTS_SCHEMA.$defs?.['source']?.oneOf).toHaveLength(2);
  });

  it('accepts every distribution kind, nested', () => {
    const doc = sample();
    if (doc.source.kind !== 'synthetic') throw new Error('synthetic');
    doc.source.population.refs = {
      kind: 'mixture',
      parts: [
        { weight: 1, dist: { kind: 'fixed', value: 1 } },
        { weight: 1, dist: { kind: 'geometric', p: 0.3 } },
        { weight: 1, dist: { kind: 'lognormal', mu: 1, sigma: 0.5, max: 100 } },
        { weight: 1, dist: { kind: 'mixture', parts: [{ weight: 2, dist: { kind: 'zipf', s: 1.1, max: 65536 } }] } },
      ],
    };
    expect(validateProfileResults(doc)).toEqual([]);
  });

  it('rejects a broken distribution deep inside a mixture, naming its path', () => {
    const doc = loose(sample());
    doc.source.population.refs.parts[1].dist = { kind: 'pareto', s: 1 };
    doc.source.population.refs.parts[0].dist.max = 2.5;
    delete doc.source.population.refs.parts[0].weight;
    doc.source.population.pinsPerPinned = { kind: 'geometric', p: 0.5, min: 1, extra: true };
    expect(validateProfileResults(doc)).toEqual([
      "source.population.refs.parts[0]: missing required property 'weight'",
      'source.population.refs.parts[0].dist.max: must be integer (got number 2.5)',
      'source.population.refs.parts[1].dist.kind: must be one of "fixed", "uniform", "geometric", "zipf", "lognormal", "mixture" (got "pareto")',
      "source.population.pinsPerPinned: unknown property 'extra'",
    ]);
  });

  it('rejects a bad source variant, and fields of the other variant', () => {
    const bad = loose(sample());
    bad.source.kind = 'file';
    expect(validateProfileResults(bad)).toEqual(['source.kind: must be one of "synthetic", "snapshot" (got "file")']);
    const mixed = loose(snapshot());
    mixed.source.population = POPULATION;
    delete mixed.source.file;
    expect(validateProfileResults(mixed)).toEqual(["source: missing required property 'file'", "source: unknown property 'population'"]);
    const pins = loose(snapshot());
    pins.source.pins.pages = 4;
    expect(validateProfileResults(pins)).toEqual(["source.pins: unknown property 'pages'"]);
  });

  it('rejects wrong types, enums, nulls, NaN, versions and impossible rates', () => {
    const doc = loose(sample());
    Object.assign(doc.schemes[0], { scheme: 'rcu', bias: 1.5, extra: 1 });
    doc.schemes[1].overall.hiddenReadPins = 'none';
    doc.schemes[2].expected = { rate: 0.1 };
    doc.schemes[3].byRefs[0].falsePositives.rate = Number.NaN;
    doc.scanPagesPerSecond = -1;
    const errors = validateProfileResults(doc);
    expect(errors).toContain(`schemes[0].scheme: must be one of ${SCHEMES.map((s) => JSON.stringify(s)).join(', ')} (got "rcu")`);
    expect(errors).toContain('schemes[0].bias: must be integer (got number 1.5)');
    expect(errors).toContain("schemes[0]: unknown property 'extra'");
    expect(errors).toContain('schemes[1].overall.hiddenReadPins: must be object or null (got string)');
    expect(errors).toContain("schemes[2].expected: missing required property 'agrees'");
    expect(errors).toContain('schemes[3].byRefs[0].falsePositives.rate: must be number (got non-finite number NaN)');
    expect(errors).toContain('scanPagesPerSecond: must be >= 0 (got -1)');
    expect(errors).toHaveLength(7);
    expect(validateProfileResults({ ...sample(), version: 2 })).toEqual(['version: must be 1 (got 2)']);
    // uncollapsiblePages and pageoutSkippedPages (issue 13) may be absent (documents written
    // before it), never wrong.
    const older = sample();
    for (const s of older.schemes) {
      delete s.downstream.uncollapsiblePages;
      delete s.downstream.pageoutSkippedPages;
    }
    expect(validateProfileResults(older)).toEqual([]);
    const wrong = sample();
    wrong.schemes[0]!.downstream.uncollapsiblePages = -1;
    expect(validateProfileResults(wrong)).toEqual(['schemes[0].downstream.uncollapsiblePages: must be >= 0 (got -1)']);
    const wrongPageout = sample();
    wrongPageout.schemes[0]!.downstream.pageoutSkippedPages = -1;
    expect(validateProfileResults(wrongPageout)).toEqual(['schemes[0].downstream.pageoutSkippedPages: must be >= 0 (got -1)']);
    expect(validateProfileResults({ ...sample(), schema: 'pinlab-bench' })).toEqual(['schema: must be "pinlab-profile" (got "pinlab-bench")']);
    expect(validateProfileResults(null)[0]).toMatch(/^\(document\): must be object/);
    const rate = sample();
    rate.schemes[0]!.overall.falseNegatives = { count: 5, total: 4, rate: 0.5, low: 0.6, high: 0.7 };
    expect(validateProfileResults(rate)).toEqual([
      'schemes[0].overall.falseNegatives: count 5 exceeds total 4',
      'schemes[0].overall.falseNegatives: interval [0.6, 0.7] does not hold rate 0.5',
    ]);
  });
});

describe('formatProfileTable', () => {
  const text = formatProfileTable(sample());
  const lines = text.split('\n');
  const row = (scheme: string, bias: number): string => lines.find((l) => new RegExp(`^${scheme} +${bias} `).test(l)) ?? '';

  it('has the header: machine, source, pages, threads, duration, scan speed', () => {
    expect(lines[0]).toBe(`pinlab 0.1.0 profile, 2026-11-24T10:00:00.000Z, ${sample().schemes.length} scheme/bias entries`);
    expect(text).toContain('machine: Test CPU @ 2.0GHz, 16 logical cores, linux x64, kernel 6.1.0-test, node v20.20.2, build Release');
    expect(text).toContain('source: synthetic population, preset desktop');
    expect(text).toContain('population: 4194304 pages (16 GiB), folios 75% 4K, 25% 2M, 20% free, refs mixture(85% uniform 1..3, 15% zipf s=0.9 1..4096), seed 1');
    expect(text).toContain('pins: 0.2% of allocated folios pinned, pins per pinned folio 1, 70% write pins\n');
    expect(text).toContain('pages: 4194304 (16 GiB), threads: 16, duration: 12.3 s, scan: 812 M pages/s');
    expect(text.endsWith('\n')).toBe(true);
    expect(text).not.toContain('\x1b[');
  });

  it('has every scheme and bias with its rate, interval, expectation, verdict and budget', () => {
    const fp = sample().schemes.find((s) => s.scheme === 'bias' && s.bias === 1024)!.overall.falsePositives;
    expect(fp.count).toBeGreaterThan(0);
    expect(row('bias', 1024)).toMatch(new RegExp(` ${(fp.rate * 100).toPrecision(3)}% +\\[${(fp.low * 100).toPrecision(3)}%, ${(fp.high * 100).toPrecision(3)}%\\] +${fp.count}/${fp.total} `));
    expect(row('bias', 1024)).toMatch(/ agree +0 +- +0 +\d+ +2097151$/);
    expect(row('bias', 65536)).toMatch(/ 0% +\[0%, [\d.e-]+%\] +0\/\d+ +0% +agree .* 32767$/);
    expect(row('hybrid', 16)).toMatch(/ DISAGREE /);
    expect(row('separate', 1024)).toMatch(/ 0% .* agree +0 +- +0 +\d+ +2147483645$/);
    expect(row('write-bias', 1024)).toMatch(/ agree +0 +\d+ \(\d+(\.\d+)?%\) +0 /);
    const entry = new RegExp(`^(${SCHEMES.join('|')}) +\\d+ +[\\d.e-]+% `);
    const entries = lines.filter((l) => entry.test(l));
    expect(entries).toHaveLength(sample().schemes.length); // 28 for the four
    expect(entries.filter((l) => l.startsWith('bias ')).map((l) => Number(l.split(/ +/)[1]))).toEqual(SWEEP); // ascending
    expect(text).toMatch(/^scheme +bias +false positives +95% CI +FP\/unpinned +expected +verdict +false negatives +hidden read pins +overflow refusals +pins taken +pin budget$/m);
  });

  it('has the downstream cost with the sample, the breakdowns and the disagreements', () => {
    const d = sample().schemes[0]!.downstream;
    expect(text).toMatch(new RegExp(`^bias +1024 +${d.needlessEarlyCowPages} \\([\\d.]+ MiB\\) +${d.unmovablePages} \\(.*\\) +${d.uncollapsiblePages} \\(.*\\) +${d.unreclaimablePages} \\(.*\\) +${d.pageoutSkippedPages} \\(.*\\) +524288 +x6\\.40$`, 'm'));
    expect(text).toContain('(each scheme at its first bias; the JSON document has every bias)');
    const titles = lines.filter((l) => l.startsWith('# '));
    expect(titles).toEqual(SCHEMES.map((s) => `# ${s} bias 1024`));
    const hybrid = text.split('# hybrid bias 1024\n')[1]?.split('\n# ')[0] ?? '';
    expect(hybrid).toMatch(/^order 9 \(2M\) +838861 +0% /m);
    expect(hybrid).toMatch(/^refs 1024\.\.2047 +\d+ +75\.0% /m);
    expect(hybrid).toMatch(/^refs 512\.\.1023 +\d+ +0% /m);
    expect(text).not.toContain('refs 8192..16383'); // empty bucket
    expect(text).toContain(`disagreements (1):\n  DISAGREE ${sample().disagreements[0]}\n`);
    expect(sample().disagreements[0]).toMatch(/^hybrid bias 16: measured 0\.08\d+ \[0\.08\d+, 0\.09\d+\], expected 0\.08\d+$/);
    expect(text).not.toContain('FALSE NEGATIVES');
  });

  it('announces false negatives loudly, first and last', () => {
    const doc = sample();
    doc.schemes[1]!.overall.falseNegatives = wilson(3, 6711);
    const out = formatProfileTable(doc);
    expect(out.match(/!!! FALSE NEGATIVES/g)).toHaveLength(2);
    expect(out).toContain('!!!   bias bias 16: 3 of 6711 pinned pages reported not pinned');
    expect(out.trimEnd().endsWith('!!!   bias bias 16: 3 of 6711 pinned pages reported not pinned')).toBe(true);
    expect(out).toMatch(/^bias +16 .* 3 of 6711 \(!\) /m);
    expect(formatProfileTable(doc, { color: true })).toContain('\x1b[1;31m!!! FALSE NEGATIVES');
  });

  it('colors verdicts only when asked', () => {
    const colored = formatProfileTable(sample(), { color: true });
    expect(colored).toContain('\x1b[32magree\x1b[0m');
    expect(colored).toContain('\x1b[31mDISAGREE\x1b[0m');
  });

  it('describes a snapshot, without expectation columns', () => {
    const out = formatProfileTable(snapshot());
    expect(out).toContain('source: snapshot /var/lib/pinlab/host.snap, 4194304 pages (16 GiB)');
    expect(out).toContain('pins placed: 0.2% of allocated folios pinned, pins per pinned folio geometric p=0.5 from 1, 70% write pins, seed 1');
    expect(out).not.toMatch(/expected|verdict|DISAGREE| agree/);
    expect(out).toContain('disagreements: none (a snapshot has no analytic expectation)');
    expect(out).not.toContain('each scheme at its first bias');
    expect(out).toMatch(/^hybrid +1024 +[\d.]+% +\[/m);
  });
});

describe('formatProfileMarkdown', () => {
  it('has the same content as GitHub tables, and the chart links', () => {
    const md = formatProfileMarkdown(sample(), { charts: ['fp-vs-bias.svg', 'downstream.svg'] });
    expect(md).toMatch(/^# pinlab profile results\n/);
    expect(md).toContain('| machine | Test CPU @ 2.0GHz, 16 logical cores, linux x64, kernel 6.1.0-test |');
    expect(md).toContain('| source | synthetic population, preset desktop |');
    expect(md).toContain('| run | pages: 4194304 (16 GiB), threads: 16, duration: 12.3 s, scan: 812 M pages/s |');
    expect(md).toContain('| scheme | bias | false positives | 95% CI | FP/unpinned | expected | verdict | false negatives |');
    expect(md).toMatch(/^\|---\|---:\|---:\|---\|---:\|---:\|---\|/m);
    expect(md).toMatch(/^\| hybrid \| 16 \| [\d.]+% \| \[[\d.]+%, [\d.]+%\] \| \d+\/\d+ \| [\d.]+% \| DISAGREE \| 0 \|/m);
    expect(md).toContain('## Downstream cost');
    expect(md).toContain('### write-bias bias 1024');
    expect(md).toMatch(/^\| refs 2048\.\.4095 \| \d+ \| 100% \|/m);
    expect(md).toContain(`- **DISAGREE** ${sample().disagreements[0]}`);
    expect(md).toContain('![fp vs bias](fp-vs-bias.svg)');
    expect(md).toContain('![downstream](downstream.svg)');
    expect(md.endsWith('\n')).toBe(true);
    expect(md).not.toContain('FALSE NEGATIVES');
    expect(formatProfileMarkdown(sample())).not.toContain('## Charts');
  });

  it('warns about false negatives and describes a snapshot', () => {
    const doc = snapshot();
    doc.schemes[0]!.overall.falseNegatives = wilson(2, 100);
    const md = formatProfileMarkdown(doc);
    expect(md).toContain('## FALSE NEGATIVES');
    expect(md).toContain('> - bias bias 1024: 2 of 100 pinned pages reported not pinned');
    expect(md).toContain('| source | snapshot /var/lib/pinlab/host.snap, 4194304 pages (16 GiB) |');
    expect(md).toContain('None (a snapshot has no analytic expectation).');
    expect(md).not.toContain('| expected |');
  });
});

describe('renderProfileCharts', () => {
  it('renders the three charts to deterministic SVG', async () => {
    const a = await renderProfileCharts(sample());
    const b = await renderProfileCharts(sample());
    expect(a.map((c) => c.name)).toEqual(['fp-vs-bias', 'fp-by-refs', 'downstream']);
    for (const [i, c] of a.entries()) {
      expect(c.svg.startsWith('<svg')).toBe(true);
      expect(c.svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(c.svg.length).toBeLessThan(200_000);
      expect(c.svg).toBe(b[i]?.svg);
    }
    const [sweep, refs, downstream] = a.map((c) => c.svg);
    expect(sweep).toContain('False positives against the pin bias');
    expect(sweep).toContain('65536');
    expect(sweep).toContain('hybrid');
    expect(sweep).not.toContain('separate'); // one bias only: not a sweep
    expect(refs).toContain('refs 2048..4095');
    expect(refs).toContain('bias 1024');
    expect(downstream).toContain('needless early-COW');
    expect(downstream).toContain('write-bias');
    expect(downstream).toContain('bias 1024');
    const mixed = sample();
    mixed.schemes = mixed.schemes.filter((x) => !(x.scheme === 'hybrid' && x.bias === 1024));
    const spec = JSON.stringify(profileChartSpecs(mixed).find(([n]) => n === 'downstream')?.[1]);
    expect(spec).toContain('"hybrid bias 16"'); // first biases differ: each entry names its bias
    expect(spec).toContain('each scheme at its first bias');
  });

  it('leaves out a chart whose data is missing', async () => {
    expect(profileChartSpecs(snapshot()).map(([n]) => n)).toEqual(['fp-by-refs', 'downstream']);
    const noRefs = sample();
    for (const s of noRefs.schemes) s.byRefs = s.byRefs.map((b) => ({ ...b, pages: 0 }));
    expect(profileChartSpecs(noRefs).map(([n]) => n)).toEqual(['fp-vs-bias', 'downstream']);
    const noSample = sample();
    for (const s of noSample.schemes) s.downstream = { ...s.downstream, samplePages: 0 };
    expect(profileChartSpecs(noSample).map(([n]) => n)).toEqual(['fp-vs-bias', 'fp-by-refs']);
    const empty = sample();
    empty.schemes = [];
    expect(await renderProfileCharts(empty)).toEqual([]);
    const snap = await renderProfileCharts(snapshot());
    expect(snap.every((c) => c.svg.startsWith('<svg'))).toBe(true);
  });
});

describe('writeProfileReport', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('writes results.json, results.md and the SVGs into a new folder', async () => {
    const base = mkdtempSync(join(tmpdir(), 'pinlab-profile-report-'));
    dirs.push(base);
    const dir = join(base, 'a', 'b');
    const paths = await writeProfileReport(sample(), dir);
    expect(paths.json).toBe(join(dir, 'results.json'));
    expect(paths.markdown).toBe(join(dir, 'results.md'));
    expect(paths.charts.map((p) => basename(p))).toEqual(['fp-vs-bias.svg', 'fp-by-refs.svg', 'downstream.svg']);
    expect(JSON.parse(readFileSync(paths.json, 'utf8'))).toEqual(sample());
    const md = readFileSync(paths.markdown, 'utf8');
    for (const p of paths.charts) {
      expect(readFileSync(p, 'utf8').startsWith('<svg')).toBe(true);
      expect(md).toContain(`](${basename(p)})`);
    }
  });

  it('refuses an invalid document with EINVAL and writes nothing', async () => {
    const base = mkdtempSync(join(tmpdir(), 'pinlab-profile-report-'));
    dirs.push(base);
    const dir = join(base, 'never');
    const bad = loose(sample());
    bad.source.population.refs.parts[0].dist.kind = 'poisson';
    await expect(writeProfileReport(bad as unknown as ProfileResults, dir)).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringContaining('source.population.refs.parts[0].dist.kind: must be one of'),
    });
    expect(existsSync(dir)).toBe(false);
  });
});
