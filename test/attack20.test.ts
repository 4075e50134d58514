// Attack 20: hostile op streams with format 3's records (a text line's list is expanded only after
// its op's bound is checked: a few bytes must not allocate gigabytes), and a recording of the
// huge zero page with the format 3 calls replayed under every scheme to balanced end states.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PinlabError, SCHEMES, runReplay, stateDigest } from '../lib/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-attack20-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PMD = 512;

async function refused(name: string, body: string): Promise<string> {
  const file = join(dir, `${name}.pkops.txt`);
  writeFileSync(file, `pkops 3 pages=4096 populated=0 scheme=hybrid\n${body}`);
  const err = await runReplay({ file }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, name).toBeInstanceOf(PinlabError);
  expect((err as PinlabError).code, name).toBe('EINVAL');
  return (err as PinlabError).message;
}

describe('text lists are bounded by their op before they are expanded', () => {
  it('recorded outputs past what the op asked for name the line', async () => {
    expect(await refused('alloc', 'hugetlb-alloc 9 1 [0..9]\n')).toMatch(/line 2: more recorded outputs than the op asked for/);
    expect(await refused('alloc-big', 'hugetlb-alloc 9 1 [0..4294967294]\n')).toMatch(/line 2: more recorded outputs/);
    expect(await refused('gup', 'mm#1 mm-new 64\nmm#1 pin-user 0 2 [5 6 7]\n')).toMatch(/line 3: more recorded outputs/);
    expect(await refused('gup-big', 'mm#1 mm-new 64\nmm#1 get-user-fast 0 1 [0..4294967294]\n')).toMatch(/line 3: more recorded outputs/);
    expect(await refused('folio', 'alloc-folio 0 [1 2]\n')).toMatch(/line 2: more recorded outputs/);
  });

  it('hugetlb heads past 2^32 pages, and a list of 2^32 entries, are refused', async () => {
    // 2^23 + 1 heads of 2 MiB: more than 2^32 pages (before: expanded, then refused per op at run time).
    expect(await refused('heads', 'mm#1 mm-new 64\nmm#1 mmap-hugetlb-file 0 9 [0..8388608]\n')).toMatch(/line 3: more hugetlb heads than 2\^32 pages hold/);
    expect(await refused('heads-big', 'mm#1 mm-new 64\nmm#1 mmap-hugetlb-file 0 9 [0..4294967294]\n')).toMatch(/line 3: more hugetlb heads/);
    expect(await refused('len', 'mm#1 mm-new 64\nmm#1 unpin-user [0..4294967295]\n')).toMatch(/line 3: a list longer than 2\^32 entries/);
    expect(await refused('len2', 'mm#1 mm-new 64\nmm#1 unpin-user [0..9 0..4294967286]\n')).toMatch(/line 3: a list longer than 2\^32 entries/);
  });

  it('ops that take no list, and unknown ops, are refused before a huge run is expanded', async () => {
    expect(await refused('madvise', 'mm#1 mm-new 64\nmm#1 madvise 0 4 [0..4294967294]\n')).toMatch(/line 3: this op takes no list/);
    expect(await refused('khuge', 'mm#1 mm-new 64\nmm#1 khugepaged 1 1 [0..4294967294]\n')).toMatch(/line 3: this op takes no list/);
    expect(await refused('pool', 'hugetlb-pool 9 1 [0..4294967294]\n')).toMatch(/line 2: this op takes no list/);
    expect(await refused('unknown', 'frobnicate [0..4294967294]\n')).toMatch(/line 2: unknown op name/);
  });
});

describe('the huge zero page with format 3 calls: recorded, replayed under every scheme', () => {
  it('replays each result as recorded and ends balanced with the live state', async () => {
    for (const scheme of SCHEMES) {
      const mem = new PageArray({ pages: 8192, populated: false, debug: true, scheme });
      const rec = mem.record();
      const mm = new AddressSpace(mem, { pages: 8192, swapPages: 64 });
      mm.mmap({ start: 0, count: 4096, huge: true });
      mm.touch(0, 4096); // huge zero leaves
      const child = mm.fork();
      mm.touch(1, 1, { write: true });
      child.touch(PMD + 2, 1, { write: true });
      const lt = mm.pinUserPagesFast(2 * PMD, PMD, { longterm: true }); // unshared
      const st = mm.pinUserPages(3 * PMD, 8); // short-term read: the huge zero pages, uncounted
      expect(st.pfns[0]).toBe(mem.hugeZeroPfn);
      mm.mremap({ start: 4 * PMD, count: PMD, newCount: PMD, mayMove: true, fixed: true, newStart: 5 * PMD });
      mm.mremap({ start: 6 * PMD + 10, count: 20, newCount: 20, mayMove: true, fixed: true, newStart: 7 * PMD + 100 });
      mm.madvise({ start: 6 * PMD + 40, count: 3 }, 'dontneed');
      mm.madvise({ start: 0, count: 4 * PMD }, 'pageout');
      child.madvise({ start: 3 * PMD, count: PMD }, 'collapse'); // PMD-mapped (the huge zero leaf): nothing to do (SCAN_PMD_MAPPED)
      expect(child.translate(3 * PMD + 1)?.pfn).toBe(mem.hugeZeroPfn! + 1);
      mm.khugepaged({ maxPtesNone: 511, maxPtesShared: 511 });
      child.munmap({ start: 10, count: 600 });
      mm.unpinUserPages(lt.pfns);
      mm.unpinUserPages(st.pfns);
      child.dispose();
      rec.stop();
      const file = join(dir, `hzp-${scheme}.pkops`);
      rec.save(file);
      const live = stateDigest(mem);
      expect(mem.checkBalanced()).toEqual([]);
      const doc = await runReplay({ file, schemes: [scheme], endState: true });
      const s = doc.schemes[0]!;
      expect(s.diverged, scheme).toBe(0);
      // The child's dispose() is recorded as the munmap of its whole space: the pages, free
      // blocks and page-array counters are the recording's (the replay's child stays, empty).
      const end = s.endState!;
      expect({ pages: end.pages, freePages: end.freePages, freeBlocks: end.freeBlocks, stats: end.stats }, scheme).toEqual({
        pages: live.pages,
        freePages: live.freePages,
        freeBlocks: live.freeBlocks,
        stats: live.stats,
      });
      expect(end.spaceCount).toBe(live.spaceCount + 1);
      mm.dispose();
      expect(mem.freePages()).toBe(mem.pages - PMD - 1); // the zero page and the huge zero folio stay
    }
  });
});

describe('read faults of an array that is all ZONE_MOVABLE', () => {
  it('map the zero page (made in the movable zone) instead of failing with pages free', () => {
    for (const scheme of SCHEMES) {
      for (const hugeZeroPage of [true, false]) {
        const mem = new PageArray({ pages: 2048, movablePages: 2048, populated: false, debug: true, scheme });
        const mm = new AddressSpace(mem, { pages: 4096, rules: { hugeZeroPage } });
        mm.mmap({ start: 0, count: 1024, huge: true });
        mm.mmap({ start: 1024, count: 16 });
        mm.touch(1024, 16); // before: ENOMEM (the zero page came from the normal zone only)
        expect(mm.translate(1030)).toMatchObject({ pfn: mem.zeroPfn, zeroPage: true });
        mm.touch(0, 1024);
        expect(mm.translate(5)?.pfn, `${scheme} ${hugeZeroPage}`).toBe(hugeZeroPage ? mem.zeroPfn : mm.translate(0)!.pfn + 5);
        const st = mm.pinUserPages(1024, 4); // short-term read: the zero page, uncounted
        expect(st.pfns[0]).toBe(mem.zeroPfn);
        mm.unpinUserPages(st.pfns);
        mm.touch(1024, 2, { write: true });
        expect(mm.translate(1024)).toMatchObject({ zeroPage: false, writable: true });
        mm.dispose();
        expect(mem.checkBalanced()).toEqual([]);
        expect(mem.freePages()).toBe(2047);
      }
    }
  });
});
