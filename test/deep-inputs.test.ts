// Deep bookkeeping (issue 12, item 12): a leak report of a million records, --compare of 300k
// rows and a deeply nested --population work or fail as usage errors, never with a stack
// overflow (spreading a large array into a call throws RangeError past ~120k arguments).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it, onTestFinished } from 'vitest';

import { appendAll, maxOf } from '../lib/arrays.js';
import { compareResults, formatComparison } from '../lib/bench/compare.js';
import type { BenchResults } from '../lib/bench/types.js';
import { EXIT } from '../lib/cli.js';
import { PageArray, PinlabError } from '../lib/index.js';
import { runCli } from './cli-run.js';

const cli = runCli;

describe('array helpers', () => {
  it('append and max over more elements than a call takes arguments', () => {
    const big = Array.from({ length: 500_000 }, (_, i) => i);
    expect(() => [].push(...(big as never[]))).toThrow(RangeError); // what they replace
    expect(appendAll([-1], big)).toHaveLength(500_001);
    expect(maxOf(big)).toBe(499_999);
    expect(maxOf([], 7)).toBe(7);
  });
});

describe('a million outstanding records', () => {
  it('checkBalanced and outstandingPins report every one', () => {
    const n = 1 << 20;
    const mem = new PageArray({ pages: n, scheme: 'hybrid' });
    const owner = mem.pinOwner('leaky');
    for (let p = 0; p < n; p++) mem.pinPages({ start: p, count: 1 }, { owner });
    expect(mem.outstandingPins().length).toBe(n);
    let err: unknown;
    try {
      mem.checkBalanced();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PinlabError);
    expect((err as PinlabError).code).toBe('ELEAK');
    expect((err as PinlabError).message).toMatch(/1048576 runs still pinned/);
  }, 120_000);
});

describe('--compare of 300k rows', () => {
  it('compares and formats without overflowing the stack', async () => {
    const small = JSON.parse(
      (await cli(['bench', '--scheme', 'bias', '--order', '0', '--op', 'pin-unpin', '--threads', '1', '--size', '1024', '--trials', '3', '--duration', '1', '--no-kernel', '--json'])).out,
    ) as BenchResults;
    const template = small.rows[0]!;
    const big = (factor: number): BenchResults => ({
      ...small,
      rows: Array.from({ length: 300_000 }, (_, i) => ({
        ...template,
        id: `${template.id}/${i}`,
        nsPerPage: { ...template.nsPerPage, median: template.nsPerPage.median * factor },
      })),
    });
    const cmp = compareResults(big(2), big(1));
    expect(cmp.rows.length).toBe(300_000);
    expect(cmp.regressions.length).toBe(300_000);
    expect(formatComparison(cmp).split('\n').length).toBeGreaterThan(300_000);
  }, 120_000);
});

describe('a deeply nested --population', () => {
  it('is a usage error (exit 64), not a stack overflow', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pinlab-deep-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const population = { pages: 4096, seed: 1, freeFraction: 0, pinnedFraction: 0.1, writeFraction: 0.5, orders: [{ order: 0, weight: 1 }], refs: {}, pinsPerPinned: { kind: 'fixed', value: 1 } };
    // JSON.stringify itself recurses: build the text by hand.
    const text = JSON.stringify(population).replace('"refs":{}', () => '"refs":' + '{"kind":"mixture","parts":[{"weight":1,"dist":'.repeat(100_000) + '{"kind":"fixed","value":1}' + '}]}'.repeat(100_000));
    writeFileSync(join(dir, 'deep.json'), text);
    const r = await cli(['profile', '--population', join(dir, 'deep.json'), '--scheme', 'bias', '--threads', '1']);
    expect(r.err).toMatch(/nest at most 8 deep|nested at most 8 deep/);
    expect(r.status).toBe(EXIT.usage);
  });

  it('the core refuses nesting past 8 itself, whatever lib/ checked', async () => {
    const { native } = await import('../lib/native.js');
    let refs: unknown = { kind: 'fixed', value: 1 };
    for (let i = 0; i < 50; i++) refs = { kind: 'mixture', parts: [{ weight: 1, dist: refs }] };
    const population = { pages: 4096, seed: 1, freeFraction: 0, pinnedFraction: 0.1, writeFraction: 0.5, orders: [{ order: 0, weight: 1 }], refs, pinsPerPinned: { kind: 'fixed', value: 1 } };
    await expect((async () => native.runProfile({ population: population as never, schemes: ['bias'], biases: [1024], threads: 1, sampleFolios: 0 }))()).rejects.toThrow(/mixture depth: 9 \(must be mixtures nested at most 8 deep\)/);
    // Eight deep is fine.
    let ok: unknown = { kind: 'fixed', value: 1 };
    for (let i = 0; i < 8; i++) ok = { kind: 'mixture', parts: [{ weight: 1, dist: ok }] };
    await expect(native.runProfile({ population: { ...population, refs: ok } as never, schemes: ['bias'], biases: [1024], threads: 1, sampleFolios: 0 })).resolves.toBeDefined();
  });
});
