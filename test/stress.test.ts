// The native stress harness: gup_fast pins against munmap/mmap, mprotect, madvise, migration,
// compaction, fork and COW breaks on one address space, under every scheme. Every count must
// balance and every page must go back to the allocator.
import { describe, expect, it } from 'vitest';

import { PinlabError, SCHEMES, runStress, type StressOptions, type StressReport } from '../lib/index.js';

function expectSound(r: StressReport): void {
  expect(r.firstViolation).toBeNull();
  expect(r.violations).toBe(0);
  expect(r.balanced).toBe(true);
  expect(r.pinAcquired).toBe(r.pinReleased);
  expect(r.pinCalls).toBeGreaterThan(0);
  expect(r.pinAcquired).toBeGreaterThan(0);
  expect(r.pinnedPages).toBeGreaterThan(0);
  expect(r.pinsChecked).toBeGreaterThan(0);
  expect(r.fastPathPages).toBeGreaterThan(0);
  // The mm changed under the pinners.
  expect(r.munmaps + r.mprotects).toBeGreaterThan(0);
  // ... and the migrator/forker thread ran too.
  expect(r.forks + r.compactions + r.migratedPages).toBeGreaterThan(0);
  // Counters are non-negative integers.
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === 'number') expect(Number.isInteger(v) && v >= 0, k).toBe(true);
  }
  // The partial and failed calls are a subset of the calls.
  expect(r.partialCalls + r.failedCalls).toBeLessThanOrEqual(r.pinCalls);
}

describe.each(SCHEMES)('scheme %s', (scheme) => {
  it('balances under load (4 threads, ~300 ms)', async () => {
    const t0 = Date.now();
    const r = await runStress({ scheme, threads: 4, durationMs: 300 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expectSound(r);
    expect(r.madvises).toBeGreaterThan(0); // MADV_DONTNEED/DONTFORK/DOFORK raced the pinners
    expect(r.pageouts).toBeGreaterThan(0); // MADV_PAGEOUT raced them too ...
    expect(r.pagedOutPages).toBeGreaterThan(0); // ... reclaimed unpinned pages ...
    expect(r.swapIns).toBeGreaterThan(0); // ... and the reads brought some back
    expect(r.mremaps).toBeGreaterThan(0); // mremap moved, shrank and grew stretches under them
    expect(r.collapseCalls).toBeGreaterThan(0); // MADV_COLLAPSE and khugepaged too
    expect(r.fileTruncates).toBeGreaterThan(0); // a private file mapping's truncates raced them too
  });
});

it('balances without debug accounting too (hybrid, two seeds, small regions)', async () => {
  for (const seed of [7, 8]) {
    const r = await runStress({ scheme: 'hybrid', threads: 4, durationMs: 150, debug: false, seed, regionPages: 512, regions: 2 });
    expectSound(r);
  }
});

it('two runs at once on the worker pool both balance', async () => {
  const [a, b] = await Promise.all([
    runStress({ scheme: 'bias', threads: 4, durationMs: 150, seed: 3 }),
    runStress({ scheme: 'separate', threads: 4, durationMs: 150, seed: 4 }),
  ]);
  expectSound(a);
  expectSound(b);
});

describe('bad options reject with PinlabError EINVAL', () => {
  const bad: [string, StressOptions, RegExp][] = [
    ['threads below 4', { threads: 3 }, /threads/],
    ['threads above 256', { threads: 257 }, /threads/],
    ['threads not an integer', { threads: 4.5 }, /threads/],
    ['durationMs 0', { durationMs: 0 }, /durationMs/],
    ['durationMs too long', { durationMs: 600_001 }, /durationMs/],
    ['regionPages not a multiple of 512', { regionPages: 1000 }, /regionPages/],
    ['regionPages 0', { regionPages: 0 }, /regionPages/],
    ['regions 0', { regions: 0 }, /regions/],
    ['regions 65', { regions: 65 }, /regions/],
    ['an unknown scheme', { scheme: 'biased' as never }, /scheme/],
    ['an unknown key', { thread: 4 } as never, /thread/],
    ['debug not a boolean', { debug: 1 as never }, /debug/],
    ['seed not a number', { seed: '1' as never }, /seed/],
  ];
  it.each(bad)('%s', async (_name, options, msg) => {
    const t0 = Date.now();
    const p = runStress(options);
    expect(p).toBeInstanceOf(Promise); // a rejection, not a synchronous throw
    const err: unknown = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PinlabError);
    expect((err as PinlabError).code).toBe('EINVAL');
    expect((err as PinlabError).message).toMatch(msg);
    expect(Date.now() - t0).toBeLessThan(400); // refused up front: no 500 ms default run
  });

  it('a non-object options value', async () => {
    await expect(runStress(null as never)).rejects.toBeInstanceOf(PinlabError);
    await expect(runStress(5 as never)).rejects.toMatchObject({ code: 'EINVAL' });
  });
});
