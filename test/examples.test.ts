// The worked examples (examples/*.mjs), end to end: each runs as its own `node` process with
// --quick and --out, exits 0, prints its table (one row per scheme or policy), keeps its
// numbers consistent, and writes a parseable JSON and an SVG chart. They import the compiled
// package (dist/), so a missing dist/ fails here with a hint instead of a module error.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SCHEMES } from '../lib/schemes.js';
import { schemeTraits } from './scheme-traits.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TIMING_KEYS = new Set(['ms', 'msPerFork', 'usPerBio']);
const SEED = '2';

type Row = Record<string, number | string>;
interface Output<R = Row> {
  example: string;
  seed: number;
  quick: boolean;
  rows: R[];
  misuse?: Misuse;
}
interface Misuse {
  throwMode: { code: string; message: string; owners: string[] };
  countMode: { imbalances: Record<string, number>; completed: boolean; leaks: number };
  noDebug: { code: string; message: string; leakedPagesByOwner: Record<string, number> };
}

let outDir = '';

beforeAll(() => {
  const entry = join(root, 'dist', 'index.js');
  if (!existsSync(entry)) {
    throw new Error(`the examples import dist/, which is missing (no ${entry}): build it with \`npm run build:ts\``);
  }
  outDir = mkdtempSync(join(tmpdir(), 'pinlab-examples-'));
});

afterAll(() => {
  if (outDir !== '') rmSync(outDir, { recursive: true, force: true });
});

/** Runs examples/<name>.mjs in its own process; fails with its stderr if it does not exit 0. */
function run(name: string, dir = outDir): { stdout: string; json: Output; svg: string } {
  const r = spawnSync(process.execPath, [join(root, 'examples', `${name}.mjs`), '--quick', '--seed', SEED, '--out', dir], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  expect(r.status, `${name} exited ${r.status}:\n${r.stderr}`).toBe(0);
  const svgPath = join(dir, `${name}.svg`);
  const jsonPath = join(dir, `${name}.json`);
  expect(existsSync(svgPath), `${svgPath} written`).toBe(true);
  expect(existsSync(jsonPath), `${jsonPath} written`).toBe(true);
  const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as Output;
  expect(json).toMatchObject({ example: name, seed: Number(SEED), quick: true });
  return { stdout: r.stdout, json, svg: readFileSync(svgPath, 'utf8') };
}

/** The table lines of stdout that start with one of `names`, by name. */
function tableRows(stdout: string, names: readonly string[]): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const first = line.split(/\s+/)[0] ?? '';
    if (names.includes(first)) {
      expect(rows.has(first), `one table row for ${first}`).toBe(false);
      rows.set(first, line);
    }
  }
  return rows;
}

function byKey<R extends Row>(rows: R[], key: string): Map<string, R> {
  return new Map(rows.map((r) => [String(r[key]), r]));
}

function withoutTimings(rows: Row[]): Row[] {
  return rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !TIMING_KEYS.has(k))));
}

function expectSvg(svg: string): void {
  expect(svg.trimStart().startsWith('<svg')).toBe(true);
  expect(svg).toContain('</svg>');
}

describe('examples/rdma-churn.mjs', () => {
  it('prints one row per scheme; refusals and false positives add up; nothing leaks', () => {
    const { stdout, json, svg } = run('rdma-churn');
    expect(stdout).toMatch(/^scheme\s+MRs\s+reg failed\s+pins \(pages\)\s+migrated \(pages\)\s+longterm migr\s+refused\s+false pos\s+busy\s+leaks/m);
    expect([...tableRows(stdout, SCHEMES).keys()].sort()).toEqual([...SCHEMES].sort());
    expectSvg(svg);
    const rows = byKey(json.rows, 'scheme');
    expect([...rows.keys()]).toEqual(SCHEMES);
    for (const r of rows.values()) {
      expect(r['falsePos']).toBeLessThanOrEqual(r['refused'] as number);
      expect(r['leaks']).toBe(0);
      expect(r['unclassified']).toBe(0);
      expect(r['mrs']).toBeGreaterThan(0);
      expect(r['longterm']).toBeGreaterThan(0); // MRs over ZONE_MOVABLE migrate out first
    }
    // Exact pin counts: no false positives (hybrid's 4 KiB pages never reach the bias of 1024 here).
    expect(rows.get('separate')!['falsePos']).toBe(0);
    expect(rows.get('hybrid')!['falsePos']).toBe(0);
    // The bias schemes take a THP under 512 extra get references for a pinned one.
    expect(rows.get('bias')!['falsePos']).toBeGreaterThan(0);
    expect(rows.get('write-bias')!['falsePos']).toBe(rows.get('bias')!['falsePos']);
    // The same workload: the refusals of real pins, and what moved, are the same under every scheme.
    const real = (s: string): number => (rows.get(s)!['refused'] as number) - (rows.get(s)!['falsePos'] as number);
    for (const s of SCHEMES) {
      expect(real(s)).toBe(real('separate'));
      expect(rows.get(s)!['migrated']).toBe(rows.get('separate')!['migrated']);
    }
  });
});

describe('examples/direct-io.mjs', () => {
  it('prints one row per policy; the same pages are pins or plain references; debug catches the wrong release', () => {
    const { stdout, json, svg } = run('direct-io');
    expect(stdout).toMatch(/^policy\s+bios\s+pages\s+pins\s+plain refs\s+µs\/bio\s+leaks/m);
    expect([...tableRows(stdout, ['flagged', 'all-pins']).keys()].sort()).toEqual(['all-pins', 'flagged']);
    expectSvg(svg);
    const rows = byKey(json.rows, 'policy');
    const flagged = rows.get('flagged')!;
    const allPins = rows.get('all-pins')!;
    for (const r of [flagged, allPins]) {
      expect(r['leaks']).toBe(0);
      expect(r['bios']).toBeGreaterThan(0);
      expect(r['usPerBio']).toBeGreaterThan(0);
    }
    expect(flagged['pages']).toBe(allPins['pages']);
    expect(flagged['plainRefs']).toBeGreaterThan(0); // page-cache pages: plain references
    expect(allPins['plainRefs']).toBe(0); // ... converted to pins
    expect((flagged['pins'] as number) + (flagged['plainRefs'] as number)).toBe(allPins['pins']);

    const m = json.misuse!;
    expect(m.throwMode.code).toBe('EPINNED');
    expect(m.throwMode.message).toMatch(/owner 'dio:buggy-driver' \(file\) call #\d+ bioFromUserPages/);
    expect(m.throwMode.owners).toEqual(['dio:buggy-driver']);
    expect(m.countMode.imbalances).toEqual({ EPINNED: 1, ENOTPINNED: 0, ELEAK: 0 });
    expect(m.countMode).toMatchObject({ completed: true, leaks: 0 });
    expect(m.noDebug.code).toBe('ELEAK');
    expect(m.noDebug.message).toContain("owner 'dio:buggy-driver'");
    expect(m.noDebug.leakedPagesByOwner).toEqual({ 'dio:buggy-driver (file)': 10 }); // 8 user pages + 2 page-cache pages
    expect(stdout).toContain('EPINNED');
    expect(stdout).toContain("owner 'dio:buggy-driver'");
    expect(stdout).toMatch(/EPINNED 1, ENOTPINNED 0, ELEAK 0/);
  });
});

describe('examples/fork-storm.mjs', () => {
  it('prints one row per scheme; early-COW copies are the real pins, minus misses, plus false positives', () => {
    const { stdout, json, svg } = run('fork-storm');
    expect(stdout).toMatch(/^scheme\s+forks\s+early-COW \(pages\)\s+pinned \(pages\)\s+false pos \(pages\)\s+missed pins/m);
    expect([...tableRows(stdout, SCHEMES).keys()].sort()).toEqual([...SCHEMES].sort());
    expectSvg(svg);
    const rows = byKey(json.rows, 'scheme');
    expect([...rows.keys()]).toEqual(SCHEMES);
    for (const r of rows.values()) {
      const [copied, pinned, fp, missed] = ['copied', 'pinnedPages', 'fpPages', 'missed'].map((k) => r[k] as number);
      expect(copied).toBe(pinned! - missed! + fp!);
      expect(fp).toBeLessThanOrEqual(copied!);
      expect(r['unclassified']).toBe(0);
      expect(r['leaks']).toBe(0);
      expect(r['pinnedPages']).toBe(rows.get('separate')!['pinnedPages']);
    }
    const separate = rows.get('separate')!;
    expect(separate['fpPages']).toBe(0);
    expect(separate['copied']).toBe(separate['pinnedPages']);
    // hybrid counts THPs exactly: its false positives are 4 KiB pages only.
    expect(rows.get('hybrid')!['fpPages']).toBeGreaterThan(0);
    expect(rows.get('bias')!['fpPages']).toBeGreaterThan(rows.get('hybrid')!['fpPages'] as number);
    // Only write-bias misses pins: read pins do not add its bias.
    for (const s of SCHEMES.filter((s) => !schemeTraits(s).readPinsHidden)) expect(rows.get(s)!['missed']).toBe(0);
    expect(rows.get('write-bias')!['missed']).toBeGreaterThan(0);
  });
});

describe('examples/vfio-hugetlb.mjs', () => {
  it('prints one row per scheme and backing; pins stay reliable across fork; hugetlb pays per page, bias overflows a 1 GiB page', () => {
    const { stdout, json, svg } = run('vfio-hugetlb');
    expect(stdout).toMatch(/^scheme\s+backing\s+grabs\/GiB \(VFIO\)\s+atomics\/GiB \(VFIO\)/m);
    expectSvg(svg);
    const backings = ['4KiB', '2MiB-hugetlb', '1GiB-hugetlb'];
    expect(json.rows.map((r) => `${r['scheme']}/${r['backing']}`)).toEqual(SCHEMES.flatMap((s) => backings.map((b) => `${s}/${b}`)));
    for (const r of json.rows) {
      expect(r['reliable']).toBe('yes');
      expect(r['leaks']).toBe(0);
      expect(r['copied']).toBe(1 << 18); // every pinned page copied into the helper at fork
      const perGrab = (r['atomicsPerGiB'] as number) / (r['grabsPerGiB'] as number);
      expect([1, 2]).toContain(perGrab);
    }
    const row = (s: string, b: string): Row => json.rows.find((r) => r['scheme'] === s && r['backing'] === b)!;
    for (const s of SCHEMES) {
      expect(row(s, '4KiB')['grabsPerGiB']).toBe(1 << 18); // one per 4 KiB page
      expect(row(s, '2MiB-hugetlb')['grabsPerGiB']).toBe(512); // one per 2 MiB page
      expect(row(s, '1GiB-hugetlb')['grabsPerGiB']).toBe(512); // one per VFIO batch of 512 pages
      expect(row(s, '1GiB-hugetlb')['oneCallGrabs']).toBeLessThan(row(s, '2MiB-hugetlb')['oneCallGrabs'] as number);
    }
    // 2^18 subpages x a bias of 1024 = 2^28 per full pin: the eighth overflows a 1 GiB page's refcount.
    expect(row('bias', '1GiB-hugetlb')['fullPins']).toBe(7);
    expect(row('hybrid', '1GiB-hugetlb')['fullPins']).toBe(9);
    expect(row('bias', '2MiB-hugetlb')['fullPins']).toBe(9);
  });
});

describe('examples are deterministic for a seed', () => {
  it.each(['rdma-churn', 'direct-io', 'fork-storm', 'vfio-hugetlb'])('%s: the same rows twice (timings aside)', (name) => {
    const saved = join(outDir, `${name}.json`);
    const first = existsSync(saved) ? (JSON.parse(readFileSync(saved, 'utf8')) as Output) : run(name).json;
    const again = mkdtempSync(join(tmpdir(), 'pinlab-examples-'));
    try {
      const { json } = run(name, again);
      expect(withoutTimings(json.rows)).toEqual(withoutTimings(first.rows));
    } finally {
      rmSync(again, { recursive: true, force: true });
    }
  });
});
