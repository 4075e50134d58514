// A PMD leaf of an anonymous THP holds one reference, as the kernel's PMD mapping does
// (do_huge_pmd_anonymous_page: refcount 1; copy_huge_pmd at fork: 2; only a split makes it one
// per PTE). The reviewer's reproducer, for every scheme: no THP reads maybe-pinned for want of
// a pin, and fork copies early only what is really pinned.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES } from '../lib/index.js';
import { LEAF, PMD } from './mm-helpers.js';

describe.each(SCHEMES)('scheme %s: a PMD leaf holds one reference', (scheme) => {
  it('1 after the fault, 2 after fork, 1 again when the child exits; never maybe pinned', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: PMD, huge: true, populate: true });
    mm.mmap({ start: PMD, count: PMD, huge: true });
    mm.touch(PMD + 3, 1, { write: true }); // a write fault maps a fresh THP
    const h = mm.translate(0)!.pfn;
    const h1 = mm.translate(PMD)!.pfn;
    expect(mm.translate(PMD)!.huge).toBe(true);
    expect(mem.refcount(h)).toBe(LEAF);
    expect(mem.refcount(h1)).toBe(LEAF);
    const child = mm.fork(); // no pin anywhere
    expect(mem.refcount(h)).toBe(2);
    expect(mem.maybeDmaPinned(h)).toBe(false);
    expect(mm.stats().earlyCowCopies).toBe(0);
    child.dispose();
    expect(mem.refcount(h)).toBe(LEAF);
    // Ours alone again: a write fault reuses the whole leaf (do_huge_pmd_wp_page: refcount 1).
    const reuses = mm.stats().cowReuses;
    mm.touch(5, 1, { write: true });
    expect(mm.translate(5)).toMatchObject({ pfn: h + 5, huge: true, writable: true });
    expect(mm.stats().cowReuses - reuses).toBe(PMD);
    mm.dispose();
  });

  it('512 FOLL_GETs: 513, not maybe pinned; fork copies only the pinned 4 KiB page', () => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 4096, swapPages: 1024 });
    mm.mmap({ start: 0, count: PMD, huge: true, populate: true });
    mm.mmap({ start: 1024, count: 1, populate: true });
    const h = mm.translate(0)!.pfn;
    const got = mm.getUserPagesFast(0, PMD);
    const pin = mm.pinUserPagesFast(1024, 1, { write: true });
    expect(mem.refcount(h)).toBe(LEAF + PMD);
    expect(mem.maybeDmaPinned(h)).toBe(false);
    const child = mm.fork();
    expect(mm.stats().earlyCowCopies).toBe(1);
    expect(mm.stats().earlyCowFalsePositives).toBe(0);
    expect(child.translate(0)).toMatchObject({ pfn: h, huge: true });
    child.dispose();
    mm.putUserPages(got.pfns);
    mm.unpinUserPages(pin.pfns, { write: true });
    expect(mem.refcount(h)).toBe(LEAF);
    mm.dispose();
  });

  it('a split makes one reference per PTE; migration expects the leaf\'s one', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: 2 * PMD, huge: true, populate: true });
    const h0 = mm.translate(0)!.pfn;
    mm.mprotect({ start: 0, count: 8, write: false }); // splits the first leaf
    expect(mm.translate(0)!.huge).toBe(false);
    expect(mem.refcount(h0)).toBe(PMD);
    expect(mm.migrate({ start: PMD, count: PMD })).toBe(PMD); // the second leaf moves whole
    const t = mm.translate(PMD)!;
    expect(t.huge).toBe(true);
    expect(mem.refcount(t.pfn)).toBe(LEAF);
    mm.dispose();
  });
});
