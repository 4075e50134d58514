// Findings of a kernel review and a hostile-user pass over issue 13's madvise, swap, mremap,
// collapse and hugetlb calls and issue 15's sharded scheme: each case states the kernel's (or
// the contract's) answer that the model gave wrongly before its fix.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile } from '../lib/index.js';
import { expectCodeNoChange, makeMm, pfnsOf } from './mm-helpers.js';

describe('MADV_COLLAPSE needs a writable entry (khugepaged.c: SCAN_PAGE_RO, EINVAL)', () => {
  it('refuses a stretch of a read-only region, nothing changed', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 512, populate: true });
    mm.mprotect({ start: 0, count: 512, write: false });
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
  });

  it('refuses a stretch whose entries fork write-protected (cow.c: "fully shared" is SKIP there)', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 512, populate: true });
    const child = mm.fork();
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
    // One writable entry is enough (the kernel's "lower/upper shared" cases collapse).
    mm.touch(3, 1, { write: true });
    mm.madvise({ start: 0, count: 512 }, 'collapse');
    expect(mm.translate(0)?.huge).toBe(true);
    child.dispose();
  });

  it('refuses a stretch of zero-page entries only, and one wholly swapped out', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 1024 });
    mm.touch(0, 512); // read faults: the zero page
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
    mm.touch(512, 512, { write: true });
    mm.madvise({ start: 512, count: 512 }, 'pageout');
    expect(mm.swappedPages).toBe(512);
    const used = mm.swapUsage().used;
    expectCodeNoChange(mm, () => mm.madvise({ start: 512, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
    expect(mm.swappedPages).toBe(512);
    expect(mm.swapUsage().used).toBe(used);
  });
});

describe('hugetlb write faults reuse by mapcount (hugetlb_wp), not by refcount', () => {
  /** A pool of two 2 MiB pages and an mm that wrote its one hugetlb mapping's page. */
  function hugetlbPageWritten(): { mem: PageArray; mm: AddressSpace } {
    const mem = new PageArray({ pages: 4096, populated: false, debug: true });
    mem.setHugetlbPages(9, 2);
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 0, count: 512, hugetlb: 9 });
    mm.touch(0, 1, { write: true });
    return { mem, mm };
  }

  it('reuses a page mapped once that a FOLL_GET reference also holds, even with an empty pool', () => {
    const { mem, mm } = hugetlbPageWritten();
    const child = mm.fork(); // shares the page read-only, not exclusive
    child.dispose(); // the child exits: this mm maps it alone again
    const got = mm.getUserPagesFast(0, 1); // a reference beyond the mapping
    mem.setHugetlbPages(9, 1); // no free page left to copy into
    mm.touch(0, 1, { write: true }); // the kernel reuses it (mapcount 1, anonymous)
    expect(mm.translate(0)).toMatchObject({ pfn: got.pfns[0], writable: true });
    expect(mm.stats().cowCopies).toBe(0);
    mm.putUserPages(got.pfns);
    mm.dispose();
    expect(mem.hugetlbPool(9)).toMatchObject({ total: 1, free: 1, used: 0 });
  });

  it('still copies a page another mm maps', () => {
    const { mm } = hugetlbPageWritten();
    const child = mm.fork();
    const old = mm.translate(0)!.pfn;
    mm.touch(0, 1, { write: true });
    expect(mm.translate(0)!.pfn).not.toBe(old);
    expect(pfnsOf(child, 0, 1)).toEqual([old]);
    expect(mm.stats().cowCopies).toBe(512);
  });
});

describe('mremap of a file mapping', () => {
  for (const shared of [true, false]) {
    it(`refuses to grow a ${shared ? 'shared' : 'private'} file mapping (not modelled) instead of mapping a tail that says "truncated"`, () => {
      const { mem, mm } = makeMm();
      const file = new PageCacheFile(mem, { name: 'grow', pages: 64 });
      mm.mmap({ start: 0, count: 16, file, shared });
      // The kernel maps the file's pages 16..31 there (within its size); the model cannot fill
      // them, so it refuses, in place and moving alike, with nothing changed.
      expectCodeNoChange(mm, () => mm.mremap({ start: 0, count: 16, newCount: 32 }), 'EINVAL', { vpages: 1024, mmStats: 'unchanged' });
      expectCodeNoChange(mm, () => mm.mremap({ start: 0, count: 16, newCount: 32, mayMove: true, fixed: true, newStart: 512 }), 'EINVAL', { vpages: 1024, mmStats: 'unchanged' });
      // Shrinking and moving whole stay allowed.
      expect(mm.mremap({ start: 0, count: 16, newCount: 16, mayMove: true, fixed: true, newStart: 512 })).toBe(512);
      expect(mm.mremap({ start: 512, count: 16, newCount: 8 })).toBe(512);
      mm.touch(512, 8);
      mm.munmap({ start: 0, count: mm.pages });
    });
  }
});

describe('khugepaged max_ptes_shared counts pages another mm maps (mapcount), not entries without PageAnonExclusive', () => {
  it('collapses after fork + child exit, where the parent maps every page alone again', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 512, populate: true, huge: true });
    mm.mprotect({ start: 1, count: 1, write: false }); // PTE-map the THP
    mm.mprotect({ start: 1, count: 1, write: true });
    mm.madvise({ start: 0, count: 512 }, 'dontneed'); // fresh 4 KiB pages below
    mm.touch(0, 512, { write: true });
    const child = mm.fork(); // every entry loses PageAnonExclusive
    child.dispose(); // ... and the child exits: mapcount 1 everywhere
    mm.touch(0, 8, { write: true }); // writable entries (reused: ours alone)
    // 504 entries without the exclusive bit, none mapped by another mm: not "shared".
    expect(mm.khugepaged({ maxPtesShared: 0 })).toEqual({ collapsed: 1, scanned: 1 });
    expect(mm.translate(0)?.huge).toBe(true);
  });

  it('still counts pages a live child maps', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 512, huge: true });
    mm.touch(0, 512, { write: true });
    mm.mprotect({ start: 1, count: 1, write: false });
    mm.mprotect({ start: 1, count: 1, write: true });
    const child = mm.fork();
    mm.touch(0, 8, { write: true }); // COW copies: 8 entries ours, 504 shared with the child
    expect(mm.khugepaged({ maxPtesShared: 503 })).toEqual({ collapsed: 0, scanned: 1 });
    expect(mm.khugepaged({ maxPtesShared: 504 })).toEqual({ collapsed: 1, scanned: 1 });
    child.dispose();
  });
});

describe('hugetlb faults over a 2 MiB span that PTEs mapped before', () => {
  // A PMD that once pointed at a PTE table keeps pointing at it (tables live as long as the
  // page table). hugetlb's fault took that table entry for a present leaf of PFN 0: a read
  // fault mapped nothing, a write fault "copied" PFN 0's folio and put one of its references
  // (another mm's pinned page here), or crashed the process when that folio was small.
  for (const scheme of ['separate', 'sharded'] as const) {
    it(`maps a fresh page and touches no other folio (${scheme})`, () => {
      const mem = new PageArray({ pages: 4096, populated: false, debug: true, scheme });
      const other = new AddressSpace(mem, { pages: 2048 });
      other.mmap({ start: 0, count: 1, populate: true });
      const p0 = other.translate(0)!.pfn;
      const pin = other.pinUserPages(0, 1, { write: true });
      const refs = mem.refcount(p0);
      const mm = new AddressSpace(mem, { pages: 2048 });
      mm.mmap({ start: 1000, count: 100, populate: true }); // PTE tables under PMDs 1 and 2
      mm.munmap({ start: 1000, count: 100 });
      mem.setHugetlbPages(9, 2);
      mm.mmap({ start: 512, count: 512, hugetlb: 9 });
      mm.touch(600, 1); // read fault: hugetlb has no zero page, it maps the page
      const t = mm.translate(600);
      expect(t).toMatchObject({ huge: true, writable: false });
      expect(mem.folioOrder(t!.pfn)).toBe(9);
      mm.touch(600, 1, { write: true });
      expect(mm.translate(600)!.pfn).toBe(t!.pfn); // exclusive: reused
      mm.madvise({ start: 512, count: 512 }, 'dontneed');
      mm.mmap({ start: 1024, count: 512, hugetlb: 9, populate: true }); // over PMD 2's old table
      expect(mm.translate(1100)).toMatchObject({ huge: true });
      expect(mem.refcount(p0)).toBe(refs);
      other.unpinUserPages(pin.pfns, { write: true });
      mm.dispose();
      other.dispose();
      expect(mem.hugetlbPool(9)).toMatchObject({ free: 2, used: 0, reserved: 0 });
    });
  }
});

describe('MADV_DONTNEED of hugetlb memory (Linux 6.1: madvise_dontneed_free_valid_vma)', () => {
  function world(): { mem: PageArray; mm: AddressSpace } {
    const mem = new PageArray({ pages: 4096, populated: false, debug: true });
    mem.setHugetlbPages(9, 2);
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 0, count: 1024, hugetlb: 9, populate: true });
    return { mem, mm };
  }
  it('rounds an end inside a huge page down: only the pages covered whole are zapped', () => {
    const { mem, mm } = world();
    const second = mm.translate(512)!.pfn;
    mm.madvise({ start: 0, count: 600 }, 'dontneed');
    expect(mm.translate(0)).toBeNull();
    expect(mm.translate(512)?.pfn).toBe(second); // the page the end fell inside stays
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 1, used: 1 });
  });
  it('zaps nothing, and succeeds, for a range inside one huge page from its start', () => {
    const { mem, mm } = world();
    const first = mm.translate(0)!.pfn;
    mm.madvise({ start: 0, count: 100 }, 'dontneed');
    expect(mm.translate(0)?.pfn).toBe(first);
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 0, used: 2 });
  });
  it('refuses a start inside a huge page (EINVAL), nothing changed', () => {
    const { mm } = world();
    expectCodeNoChange(mm, () => mm.madvise({ start: 1, count: 1023 }, 'dontneed'), 'EINVAL', { vpages: 2048 });
  });
});
