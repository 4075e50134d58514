// The false-positive profiler: analytic cross-checks, zero false negatives, reproducibility,
// and bad input.
import { describe, expect, it, onTestFinished } from 'vitest';

import { PinlabError } from '../lib/index.js';
import { runProfile, wilson } from '../lib/profile/run.js';
import type { Population } from '../lib/types/population.js';
import { schemeTraits } from './scheme-traits.js';

function population(over: Partial<Population> = {}): Population {
  return {
    pages: 1 << 15,
    seed: 7,
    orders: [{ order: 0, weight: 1 }],
    refs: { kind: 'fixed', value: 1 },
    freeFraction: 0,
    pinnedFraction: 0.02,
    pinsPerPinned: { kind: 'fixed', value: 1 },
    writeFraction: 1,
    ...over,
  };
}

const fast = { threads: 2, sampleFolios: 256 } as const;

describe('runProfile', () => {
  it('fixed references: every unpinned folio at or above the bias is a false positive, exactly', async () => {
    const r = await runProfile({ ...fast, population: population({ refs: { kind: 'fixed', value: 1500 } }), bias: 1024 });
    for (const s of r.schemes) {
      const fp = s.overall.falsePositives;
      const unpinned = fp.total;
      expect(unpinned).toBeGreaterThan(30000);
      // bias-counted schemes: every unpinned 4 KiB folio has 1500 >= 1024 references (not separate)
      const exact = schemeTraits(s.scheme).exact(0);
      expect(fp.count, s.scheme).toBe(exact ? 0 : unpinned);
      expect(s.expected!.rate).toBe(exact ? 0 : 1);
      expect(s.expected!.agrees).toBe(true);
      expect(s.overall.falseNegatives.count).toBe(0);
    }
    const below = await runProfile({ ...fast, population: population({ refs: { kind: 'fixed', value: 1023 } }), bias: 1024, schemes: ['bias'] });
    expect(below.schemes[0]!.overall.falsePositives.count).toBe(0); // one short of the bias
  });

  it('geometric references: the measured rate agrees with (1-p)^(B-min) within its interval', async () => {
    const p = 0.01;
    const r = await runProfile({ ...fast, population: population({ pages: 1 << 17, refs: { kind: 'geometric', p, min: 1 } }), bias: 256, schemes: ['bias', 'hybrid'] });
    for (const s of r.schemes) {
      expect(s.expected!.rate).toBeCloseTo((1 - p) ** (256 - 1), 12);
      expect(s.expected!.agrees, JSON.stringify(s.overall.falsePositives)).toBe(true);
    }
    expect(r.disagreements).toEqual([]);
  });

  it('zero false negatives for every scheme; write-bias read pins are reported apart', async () => {
    const r = await runProfile({
      ...fast,
      population: population({ refs: { kind: 'uniform', min: 1, max: 8 }, pinnedFraction: 0.2, writeFraction: 0.5, orders: [{ order: 0, weight: 0.5 }, { order: 9, weight: 0.5 }] }),
    });
    for (const s of r.schemes) {
      expect(s.overall.falseNegatives.count, s.scheme).toBe(0);
      expect(s.overall.falseNegatives.total).toBeGreaterThan(100);
      if (schemeTraits(s.scheme).readPinsHidden) {
        expect(s.overall.hiddenReadPins!.total).toBeGreaterThan(0);
        expect(s.overall.hiddenReadPins!.count).toBe(s.overall.hiddenReadPins!.total); // few refs: all hidden
      } else {
        expect(s.overall.hiddenReadPins).toBeNull();
      }
    }
    // hybrid large folios count exactly: no false positive of order 9 even with many refs
    const many = await runProfile({ ...fast, schemes: ['hybrid'], population: population({ refs: { kind: 'fixed', value: 4000 }, orders: [{ order: 9, weight: 1 }] }) });
    expect(many.schemes[0]!.overall.falsePositives.count).toBe(0);
  });

  it('is reproducible from the seed, and the seed matters', async () => {
    const pop = population({ refs: { kind: 'zipf', s: 1.1, max: 4096 } });
    const a = await runProfile({ ...fast, population: pop, schemes: ['bias'] });
    const b = await runProfile({ ...fast, population: pop, schemes: ['bias'] });
    const c = await runProfile({ ...fast, population: { ...pop, seed: 8 }, schemes: ['bias'] });
    expect(b.schemes).toEqual(a.schemes);
    expect(c.schemes[0]!.overall.falsePositives.count).not.toBe(a.schemes[0]!.overall.falsePositives.count);
  });

  it('the downstream cost comes from fork, migration, MADV_PAGEOUT and collapse on the sample', async () => {
    const r = await runProfile({ threads: 2, sampleFolios: 2048, population: population({ refs: { kind: 'fixed', value: 2000 } }), schemes: ['bias'] });
    const d = r.schemes[0]!.downstream;
    expect(d.samplePages).toBe(2048);
    // every sampled unpinned page is a false positive: fork copies it and migration refuses it
    expect(d.needlessEarlyCowPages).toBeGreaterThan(0);
    expect(d.unmovablePages).toBe(d.needlessEarlyCowPages);
    expect(d.pageoutSkippedPages).toBe(d.needlessEarlyCowPages); // pageout keeps each of them mapped
    expect(d.uncollapsiblePages).toBe(d.needlessEarlyCowPages); // collapse turns each of them away too
    expect(d.unreclaimablePages).toBe(r.schemes[0]!.overall.falsePositives.count);
    // An exact scheme answers "not pinned" for them: pageout reclaims every one.
    const exact = await runProfile({ threads: 2, sampleFolios: 2048, population: population({ refs: { kind: 'fixed', value: 2000 } }), schemes: ['separate'] });
    expect(exact.schemes[0]!.downstream.pageoutSkippedPages).toBe(0);
  });

  it('a bias sweep trades false positives against the pin budget', async () => {
    const r = await runProfile({ ...fast, population: population({ refs: { kind: 'zipf', s: 1, max: 1 << 16 } }), schemes: ['bias'], biasSweep: true });
    const rows = r.schemes.filter((s) => s.scheme === 'bias').sort((x, y) => x.bias - y.bias);
    expect(rows.map((s) => s.bias)).toEqual([16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i]!.overall.falsePositives.rate).toBeLessThanOrEqual(rows[i - 1]!.overall.falsePositives.rate);
      expect(rows[i]!.pinBudget).toBeLessThan(rows[i - 1]!.pinBudget);
    }
  });

  it('bad input is a clear EINVAL', async () => {
    const cases: [Parameters<typeof runProfile>[0], RegExp][] = [
      [{ preset: 'nope' as never }, /unknown preset 'nope'/],
      [{ population: population({ refs: { kind: 'zipf', s: 1 } as never }) }, /refs \(zipf\) needs 'max'/],
      [{ population: population({ freeFraction: 2 }) }, /freeFraction/],
      [{ population: population({ refs: { kind: 'geometric', p: 0 } }) }, /geometric/],
      [{ population: population({ orders: [{ order: 19, weight: 1 }] }) }, /orders/],
      [{ population: population({ refs: { kind: 'mixture', parts: [] } }) }, /parts/],
      [{ population: population(), bias: 1000 }, /bias/],
      [{ population: population(), schemes: ['x' as never] }, /scheme/],
    ];
    for (const [options, re] of cases) {
      const e = await runProfile({ ...fast, ...options }).catch((err: unknown) => err);
      expect(e, JSON.stringify(options)).toBeInstanceOf(PinlabError);
      expect((e as PinlabError).code).toBe('EINVAL');
      expect((e as Error).message).toMatch(re);
    }
  });

  it('snapshots: a malformed or missing file is refused clearly; a real one profiles', async () => {
    const { mkdtempSync, rmSync, writeFileSync, existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'pinlab-snap-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'junk.pksnap'), 'not a snapshot at all');
    const junk = await runProfile({ ...fast, snapshot: join(dir, 'junk.pksnap') }).catch((e: unknown) => e);
    expect((junk as PinlabError).code).toBe('EINVAL');
    expect((junk as Error).message).toMatch(/junk\.pksnap/);
    const missing = await runProfile({ ...fast, snapshot: join(dir, 'none.pksnap') }).catch((e: unknown) => e);
    expect((missing as PinlabError).code).toBe('ENOENT');
    const { takeSnapshot } = await import('../lib/profile/snapshot.js');
    const file = join(dir, 'host.pksnap');
    const summary = await takeSnapshot(file, { maxPages: 1 << 16 }).catch((e: unknown) => e);
    if (summary instanceof PinlabError) {
      expect(summary.code).toBe('EACCES'); // not root: the message says what is needed
      expect(summary.message).toMatch(/CAP_SYS_ADMIN/);
      return;
    }
    expect(existsSync(file)).toBe(true);
    const r = await runProfile({ ...fast, snapshot: file, schemes: ['bias', 'separate'] });
    expect(r.source.kind).toBe('snapshot');
    expect(r.schemes.map((x) => x.expected)).toEqual([null, null]); // measured refs: no analytic expectation
    for (const x of r.schemes) expect(x.overall.falseNegatives.count).toBe(0);
    expect(r.schemes[1]!.overall.falsePositives.count).toBe(0);
  });

  it('wilson intervals', () => {
    expect(wilson(0, 0)).toEqual({ count: 0, total: 0, rate: 0, low: 0, high: 0 });
    const w = wilson(50, 100);
    expect(w.low).toBeCloseTo(0.4038, 3);
    expect(w.high).toBeCloseTo(0.5962, 3);
  });
});
