// The reporting side of `pinlab bench`: the JSON Schema and its validator, the text table, the
// markdown, the SVG charts, writeReport, the comparison of two runs, and describeMachine. All
// over a realistic BenchResults document built here (no native code runs).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { PinlabError } from '../lib/errors.js';
import { renderCharts, chartSpecs } from '../lib/bench/charts.js';
import { compareResults, formatComparison, hasRegressions } from '../lib/bench/compare.js';
import { describeMachine, pinlabVersion } from '../lib/bench/machine.js';
import { formatMarkdown } from '../lib/bench/markdown.js';
import { writeReport } from '../lib/bench/report.js';
import { BENCH_RESULTS_SCHEMA, validateBenchResults } from '../lib/bench/schema.js';
import { formatTable } from '../lib/bench/table.js';
import type { BenchOp, BenchResults, BenchRow, BenchSharing, BenchTarget } from '../lib/bench/types.js';
import { SCHEMES } from '../lib/schemes.js';

type Scheme = BenchRow['scheme'];
type Path = BenchRow['path'];

const PAGES = 16384;

/** ns/page at 1 thread of each configuration, roughly the development machine's. */
function baseNs(op: BenchOp, scheme: Scheme, path: Path, order: number, input: BenchRow['input']): number {
  const s = scheme !== null ? 1 + 0.05 * SCHEMES.indexOf(scheme) : 1;
  const list = input === 'list' ? 1.3 : 1;
  switch (op) {
    case 'pin-unpin':
      if (order === 0) return (path === 'bvec' ? 7.1 : 7.7) * s * list;
      return (path === 'bvec' ? 0.03 : 3.1) * s * list;
    case 'gup-fast':
      return (order === 0 ? 16.0 : 0.3) * s;
    case 'io_uring-register':
      return order === 0 ? 80 : 6;
    case 'raw-per-page':
      return order === 0 ? 2.6 : 2.9;
    case 'raw-per-folio':
      return order === 0 ? 2.6 : 0.012;
    default:
      return 10;
  }
}

interface RowSpec {
  kind: BenchRow['kind'];
  op: BenchOp;
  scheme: Scheme;
  path: Path;
  order: number;
  input: BenchRow['input'];
  threads: number;
  sharing: BenchSharing;
}

function makeRow(spec: RowSpec): BenchRow {
  const one = baseNs(spec.op, spec.scheme, spec.path, spec.order, spec.input);
  const slow = spec.threads === 1 ? 1 : spec.sharing === 'shared' ? 1.12 : 1.05;
  const median = one * slow;
  const perThread = 1e9 / median;
  const total = perThread * spec.threads;
  const oneTotal = 1e9 / one;
  const id = [spec.op, spec.scheme, spec.path, `o${spec.order}`, spec.input, spec.sharing, `t${spec.threads}`]
    .filter((p) => p !== null)
    .join('/');
  const row: BenchRow = {
    id,
    ...spec,
    bufferPages: PAGES,
    pagesPerCall: PAGES,
    nsPerPage: { median, min: median * 0.95, max: median * 1.3, q1: median * 0.98, q3: median * 1.05 },
    pagesPerSecond: { perThread, total },
    atomicsPerPage: spec.path === 'bvec' || spec.op === 'raw-per-folio' ? (spec.order === 0 ? 2 : 2 / 512) : 2,
    scalingEfficiency: total / (spec.threads * oneTotal),
    speedupVsOneThread: total / oneTotal,
    bvecSpeedup: spec.path === 'bvec' ? baseNs(spec.op, spec.scheme, 'per-page', spec.order, spec.input) / one : null,
    vsRawPerPage: spec.kind === 'model' ? median / baseNs('raw-per-page', null, null, spec.order, 'range') : null,
    vsRawPerFolio: spec.kind === 'model' ? median / baseNs('raw-per-folio', null, null, spec.order, 'range') : null,
    trials: 15,
  };
  if (spec.kind === 'kernel') {
    row.kernel = {
      pinNsPerPage: median * 0.6,
      unpinNsPerPage: median * 0.4,
      nrFollPinAcquiredDelta: PAGES * 15,
      nrFollPinReleasedDelta: PAGES * 15,
      thpConfirmed: spec.order === 9 ? true : null,
    };
  }
  return row;
}

function sampleRows(): BenchRow[] {
  const rows: BenchRow[] = [];
  const threading: [number, BenchSharing][] = [
    [1, 'private'],
    [2, 'private'],
    [2, 'shared'],
  ];
  for (const order of [0, 9]) {
    for (const scheme of SCHEMES) {
      for (const path of ['per-page', 'bvec'] as const) {
        for (const [threads, sharing] of threading) rows.push(makeRow({ kind: 'model', op: 'pin-unpin', scheme, path, order, input: 'range', threads, sharing }));
        rows.push(makeRow({ kind: 'model', op: 'pin-unpin', scheme, path, order, input: 'list', threads: 1, sharing: 'private' }));
      }
      for (const [threads, sharing] of threading) rows.push(makeRow({ kind: 'model', op: 'gup-fast', scheme, path: null, order, input: 'range', threads, sharing }));
    }
    rows.push(makeRow({ kind: 'baseline', op: 'raw-per-page', scheme: null, path: 'per-page', order, input: 'range', threads: 1, sharing: 'private' }));
    rows.push(makeRow({ kind: 'baseline', op: 'raw-per-folio', scheme: null, path: null, order, input: 'range', threads: 1, sharing: 'private' }));
    rows.push(makeRow({ kind: 'kernel', op: 'io_uring-register', scheme: null, path: null, order, input: 'range', threads: 1, sharing: 'private' }));
  }
  return rows;
}

function target(name: string, value: number | null, op: '<=' | '>=', limit: number, skipped: string | null = null): BenchTarget {
  const met = value !== null && skipped === null && (op === '<=' ? value <= limit : value >= limit);
  return { name, description: `${name} target`, value, limit, op, met, skipped };
}

function sample(): BenchResults {
  return {
    schema: 'pinlab-bench',
    version: 1,
    createdAt: '2026-11-24T10:00:00.000Z',
    machine: { cpu: 'Test CPU @ 2.0GHz', cores: 2, kernel: '6.1.0-test', os: 'linux x64', node: 'v20.20.2', build: 'Release', pinlab: '0.1.0' },
    config: { trials: 15, threads: [1, 2], quick: false },
    durationMs: 12_345,
    rows: sampleRows(),
    targets: [
      target('gup-within-3x', 2.08, '<=', 3),
      target('thp-50x', 41.3, '>=', 50),
      target('kernel-vs-model', null, '<=', 2, 'no kernel row at 1 GiB'),
    ],
    kernel: { available: true, reason: null },
  };
}

const clone = (r: BenchResults): BenchResults => structuredClone(r);

describe('BENCH_RESULTS_SCHEMA and validateBenchResults', () => {
  it('accepts the sample document, and its JSON round trip', () => {
    const doc = sample();
    expect(validateBenchResults(doc)).toEqual([]);
    expect(validateBenchResults(JSON.parse(JSON.stringify(doc)))).toEqual([]);
    expect(BENCH_RESULTS_SCHEMA.$schema).toMatch(/2020-12/);
    expect(BENCH_RESULTS_SCHEMA.required).toEqual(['schema', 'version', 'createdAt', 'machine', 'config', 'durationMs', 'rows', 'targets', 'kernel']);
  });

  it('rejects a missing field, naming it', () => {
    const doc = clone(sample()) as unknown as { rows: Record<string, unknown>[]; machine: Record<string, unknown> };
    delete doc.rows[3]?.nsPerPage;
    delete doc.machine.cpu;
    const errors = validateBenchResults(doc);
    expect(errors).toContain("rows[3]: missing required property 'nsPerPage'");
    expect(errors).toContain("machine: missing required property 'cpu'");
    expect(errors).toHaveLength(2);
  });

  it('rejects a wrong enum, a wrong type, an unknown field and NaN', () => {
    const doc = clone(sample()) as unknown as { rows: Record<string, unknown>[]; targets: Record<string, unknown>[] };
    Object.assign(doc.rows[0] ?? {}, { op: 'pin', scheme: 'rcu', threads: 1.5, extra: 1 });
    Object.assign(doc.targets[0] ?? {}, { value: Number.NaN, op: '<' });
    const errors = validateBenchResults(doc);
    expect(errors.some((e) => e.startsWith('rows[0].op: must be one of'))).toBe(true);
    expect(errors.some((e) => e.startsWith('rows[0].scheme: must be one of') && e.includes('null'))).toBe(true);
    expect(errors.some((e) => e.startsWith('rows[0].threads: must be integer'))).toBe(true);
    expect(errors).toContain("rows[0]: unknown property 'extra'");
    expect(errors.some((e) => e.startsWith('targets[0].value: must be number or null (got non-finite number'))).toBe(true);
    expect(errors.some((e) => e.startsWith('targets[0].op: must be one of'))).toBe(true);
  });

  it('rejects a wrong version or schema id, duplicate ids, and non-documents', () => {
    expect(validateBenchResults({ ...sample(), version: 2 })).toEqual(['version: must be 1 (got 2)']);
    expect(validateBenchResults({ ...sample(), schema: 'other' })).toEqual(['schema: must be "pinlab-bench" (got "other")']);
    const dup = sample();
    dup.rows.push({ ...(dup.rows[0] as BenchRow) });
    expect(validateBenchResults(dup)).toEqual([`rows[${dup.rows.length - 1}].id: duplicates rows[0].id ${JSON.stringify(dup.rows[0]?.id)}`]);
    expect(validateBenchResults(null)[0]).toMatch(/^\(document\): must be object/);
    expect(validateBenchResults([])[0]).toMatch(/^\(document\): must be object \(got array/);
  });

  it('accepts nulls where the types allow them, and rows without kernel figures', () => {
    const doc = sample();
    const r = doc.rows[0] as BenchRow;
    Object.assign(r, { scalingEfficiency: null, speedupVsOneThread: null, bvecSpeedup: null, vsRawPerPage: null, vsRawPerFolio: null, scheme: null, path: null });
    doc.kernel = { available: false, reason: 'io_uring disabled' };
    expect(validateBenchResults(doc)).toEqual([]);
  });
});

describe('formatTable', () => {
  const text = formatTable(sample());

  it('has the machine header, every row, the kernel line and the target verdicts', () => {
    expect(text).toContain('machine: Test CPU @ 2.0GHz, 2 logical cores, linux x64, kernel 6.1.0-test, node v20.20.2, build Release');
    const lines = text.split('\n');
    const header = lines.find((l) => l.startsWith('op ')) ?? '';
    for (const h of ['scheme', 'path', 'order', 'input', 'threads', 'sharing', 'ns/page median [min..max]', 'Mpages/s total', 'atomics/page', 'scaling', 'bvec speedup', 'vs raw']) {
      expect(header).toContain(h);
    }
    const rowLines = lines.filter((l) => /^(pin-unpin|gup-fast|raw-per|io_uring)/.test(l));
    expect(rowLines).toHaveLength(sample().rows.length);
    expect(text).toMatch(/^pin-unpin +bias +bvec +2M +range +2 +shared +0\.0336 \[0\.0319\.\.0\.0437\] /m);
    expect(text).toMatch(/^io_uring-register +\(kernel\) +- +4K .* 80\.0 \[76\.0\.\.104\] /m);
    expect(text).toContain('host kernel: available (2 rows)');
    expect(text).toMatch(/gup-within-3x .* 2\.08 <= 3 +met$/m);
    expect(text).toMatch(/thp-50x .* 41\.3 >= 50 +MISSED$/m);
    expect(text).toMatch(/kernel-vs-model .* - <= 2 +skipped \(no kernel row at 1 GiB\)$/m);
    expect(text).not.toContain('\x1b[');
  });

  it('groups model rows by op then order, kernel rows beside gup-fast, baselines last', () => {
    const titles = text.split('\n').filter((l) => l.startsWith('# '));
    expect(titles).toEqual([
      '# pin-unpin, 4 KiB folios',
      '# pin-unpin, 2 MiB folios',
      '# gup-fast + host kernel, 4 KiB mappings',
      '# gup-fast + host kernel, 2 MiB mappings',
      '# baselines, 4 KiB folios',
      '# baselines, 2 MiB folios',
    ]);
    const gup4k = text.split('# gup-fast + host kernel, 4 KiB mappings\n')[1]?.split('\n# ')[0] ?? '';
    expect(gup4k.trim().split('\n').at(-1)).toMatch(/^io_uring-register/);
  });

  it('aligns its columns and colors only when asked', () => {
    const lines = text.split('\n').filter((l) => /^(pin-unpin|gup-fast)/.test(l));
    const at = (l: string): number => l.indexOf(' [');
    expect(new Set(lines.map(at)).size).toBe(1);
    const colored = formatTable(sample(), { color: true });
    expect(colored).toContain('\x1b[32mmet\x1b[0m');
    expect(colored).toContain('\x1b[31mMISSED\x1b[0m');
  });

  it('says why the kernel is unavailable', () => {
    const doc = sample();
    doc.rows = doc.rows.filter((r) => r.kind !== 'kernel');
    doc.kernel = { available: false, reason: 'io_uring_setup: EPERM' };
    expect(formatTable(doc)).toContain('host kernel: unavailable (io_uring_setup: EPERM)');
  });
});

describe('formatMarkdown', () => {
  it('has the machine, GitHub tables, the targets and the chart links', () => {
    const md = formatMarkdown(sample(), { charts: ['throughput.svg', 'model-vs-kernel.svg'] });
    expect(md).toMatch(/^# pinlab benchmark results/);
    expect(md).toContain('| cpu | Test CPU @ 2.0GHz |');
    expect(md).toContain('### gup-fast + host kernel, 2 MiB mappings');
    expect(md).toContain('| op | scheme | path | order | input | threads | sharing | ns/page median [min..max] |');
    expect(md).toMatch(/^\|---\|---\|---\|---:\|/m);
    expect(md).toMatch(/^\| pin-unpin \| bias \| bvec \| 2M \| range \| 1 \| private \| 0\.0300 \[/m);
    expect(md).toContain('| thp-50x | thp-50x target | 41.3 | >= 50 | MISSED |');
    expect(md).toContain('| kernel-vs-model | kernel-vs-model target | - | <= 2 | skipped (no kernel row at 1 GiB) |');
    expect(md).toContain('![throughput](throughput.svg)');
    expect(md).toContain('![model vs kernel](model-vs-kernel.svg)');
    expect(formatMarkdown(sample())).not.toContain('## Charts');
  });
});

describe('charts', () => {
  it('render the three charts to small, deterministic SVG', async () => {
    const a = await renderCharts(sample());
    const b = await renderCharts(sample());
    expect(a.map((c) => c.name)).toEqual(['throughput', 'bvec-speedup', 'model-vs-kernel']);
    for (const [i, c] of a.entries()) {
      expect(c.svg.startsWith('<svg')).toBe(true);
      expect(c.svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(c.svg.length).toBeLessThan(200_000);
      expect(c.svg).toBe(b[i]?.svg);
    }
    const [throughput, bvec, kernel] = a.map((c) => c.svg);
    expect(throughput).toContain('pin-unpin 2M bvec');
    expect(throughput).toContain('write-bias');
    expect(bvec).toContain('pin-unpin range');
    expect(kernel).toContain('kernel io_uring');
    expect(kernel).toContain('gup-fast hybrid');
    expect(kernel).toContain('2 MiB mappings');
  });

  it('leave out a chart whose rows are missing', async () => {
    const noKernel = sample();
    noKernel.rows = noKernel.rows.filter((r) => r.kind !== 'kernel');
    expect(chartSpecs(noKernel).map(([n]) => n)).toEqual(['throughput', 'bvec-speedup']);
    const oneThread = sample();
    oneThread.rows = oneThread.rows.filter((r) => r.threads === 1 && r.path !== 'bvec');
    expect(chartSpecs(oneThread).map(([n]) => n)).toEqual(['model-vs-kernel']);
    const empty = sample();
    empty.rows = [];
    expect(await renderCharts(empty)).toEqual([]);
  });
});

describe('writeReport', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('writes results.json, results.md and the SVGs into a new folder', async () => {
    const base = mkdtempSync(join(tmpdir(), 'pinlab-report-'));
    dirs.push(base);
    const dir = join(base, 'a', 'b');
    const paths = await writeReport(sample(), dir);
    expect(paths.json).toBe(join(dir, 'results.json'));
    expect(paths.markdown).toBe(join(dir, 'results.md'));
    expect(paths.charts.map((p) => basename(p))).toEqual(['throughput.svg', 'bvec-speedup.svg', 'model-vs-kernel.svg']);
    expect(JSON.parse(readFileSync(paths.json, 'utf8'))).toEqual(sample());
    const md = readFileSync(paths.markdown, 'utf8');
    for (const p of paths.charts) {
      expect(readFileSync(p, 'utf8').startsWith('<svg')).toBe(true);
      expect(md).toContain(`](${basename(p)})`);
    }
  });

  it('refuses an invalid document with EINVAL', async () => {
    const bad = { ...sample(), version: 3 } as unknown as BenchResults;
    await expect(writeReport(bad, join(tmpdir(), 'pinlab-never-written'))).rejects.toMatchObject({ code: 'EINVAL' });
  });
});

describe('compareResults', () => {
  const id = 'pin-unpin/bias/bvec/o9/range/shared/t2';

  function slower(doc: BenchResults, rowId: string, factor: number): BenchResults {
    const out = clone(doc);
    const r = out.rows.find((x) => x.id === rowId) as BenchRow;
    r.nsPerPage.median *= factor;
    return out;
  }

  it('finds a 20% regression at a 10% threshold, none at 30%', () => {
    const old = sample();
    const now = slower(old, id, 1.2);
    const cmp = compareResults(now, old, { threshold: 0.1 });
    expect(cmp.rows).toHaveLength(old.rows.length);
    expect(cmp.regressions.map((c) => c.id)).toEqual([id]);
    expect(cmp.regressions[0]?.ratio).toBeCloseTo(1.2, 10);
    expect(cmp.improvements).toEqual([]);
    expect(hasRegressions(cmp)).toBe(true);
    expect(formatComparison(cmp)).toMatch(new RegExp(`^  ${id.replace(/\//g, '\\/')} +0\\.0336 -> 0\\.0403 ns/page  \\+20\\.0%$`, 'm'));
    const loose = compareResults(now, old, { threshold: 0.3 });
    expect(loose.regressions).toEqual([]);
    expect(hasRegressions(loose)).toBe(false);
    expect(formatComparison(loose)).toContain('no regressions');
    expect(compareResults(now, old).threshold).toBe(0.1);
  });

  it('lists improvements, added and removed rows', () => {
    const old = sample();
    const now = slower(old, id, 0.5);
    const gone = now.rows.splice(0, 1)[0] as BenchRow;
    now.rows.push({ ...gone, id: 'pin-unpin/bias/per-page/o0/range/interleaved/t4', threads: 4, sharing: 'interleaved' });
    const cmp = compareResults(now, old);
    expect(cmp.improvements.map((c) => c.id)).toEqual([id]);
    expect(cmp.added).toEqual(['pin-unpin/bias/per-page/o0/range/interleaved/t4']);
    expect(cmp.removed).toEqual([gone.id]);
    expect(cmp.rows).toHaveLength(old.rows.length - 1);
    const text = formatComparison(cmp);
    expect(text).toContain('improvements (1):');
    expect(text).toContain(`only in the previous run (1):\n  ${gone.id}`);
    expect(text).toContain('only in this run (1):');
  });

  it('refuses a schema version mismatch and a bad threshold with EINVAL', () => {
    const old = { ...sample(), version: 2 } as unknown as BenchResults;
    expect(() => compareResults(sample(), old)).toThrow(PinlabError);
    expect(() => compareResults(sample(), old)).toThrow(/previous results: schema version 2, this pinlab reads version 1/);
    try {
      compareResults(sample(), old);
    } catch (e) {
      expect((e as PinlabError).code).toBe('EINVAL');
    }
    expect(() => compareResults(sample(), { rows: [] } as unknown as BenchResults)).toThrow(/not a pinlab-bench document/);
    expect(() => compareResults(sample(), sample(), { threshold: -1 })).toThrow(/threshold/);
  });
});

describe('describeMachine', () => {
  it('describes this machine and reads the pinlab version from package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const m = describeMachine('Release');
    expect(m.build).toBe('Release');
    expect(m.pinlab).toBe(pkg.version);
    expect(pinlabVersion()).toBe(pkg.version);
    expect(m.node).toBe(process.version);
    expect(m.cores).toBeGreaterThanOrEqual(1);
    expect(m.cpu.length).toBeGreaterThan(0);
    expect(m.os).toMatch(new RegExp(`^${process.platform} `));
    const doc = sample();
    doc.machine = m;
    expect(validateBenchResults(doc)).toEqual([]);
  });
});
