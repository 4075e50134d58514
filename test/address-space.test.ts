// AddressSpace: regions, the two-level page table, faults (zero page, COW from the zero page),
// mmap/munmap/mprotect, PMD leaves and their splitting, translate, and every page going back
// to the allocator.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';
import { PMD, delta, expectCode, expectCodeNoChange, makeMm, pfnsOf, zeroDelta } from './mm-helpers.js';

describe('new AddressSpace', () => {
  it('exposes pages and mem, and starts empty', () => {
    const { mem, mm } = makeMm({ pages: 64, vpages: 1000 });
    expect(mm.pages).toBe(1000);
    expect(mm.mem).toBe(mem);
    expect(mm.regions).toBe(0);
    expect(mm.mappedPages).toBe(0);
    expect(mm.hasPinned).toBe(false);
    for (const v of [0, 511, 512, 999]) expect(mm.translate(v)).toBeNull();
    expect(mm.translate(1000)).toBeNull();
    expect(mm.translate(-1)).toBeNull();
    expectPinlabError(() => mm.translate(1.5), 'EINVAL');
    expect(Object.values(mm.stats()).every((n) => n === 0)).toBe(true);
  });

  it('EINVAL for bad options', () => {
    const mem = new PageArray({ pages: 8, populated: false });
    expectPinlabError(() => new AddressSpace(mem, { pages: 0 }), 'EINVAL', /pages/);
    expectPinlabError(() => new AddressSpace(mem, { pages: 2 ** 31 + 1 }), 'EINVAL', /pages/);
    expectPinlabError(() => new AddressSpace(mem, { pages: 1.5 }), 'EINVAL', /pages/);
    expectPinlabError(() => new AddressSpace(mem, { pages: 8, huge: true } as never), 'EINVAL', /huge/);
    expectPinlabError(() => new AddressSpace(mem, undefined as never), 'EINVAL');
    expectPinlabError(() => new AddressSpace({} as PageArray, { pages: 8 }), 'EINVAL', /mem/);
    expect(mem.freePages()).toBe(8);
  });
});

describe('mmap', () => {
  it('declares a region without faulting anything in (no populate)', () => {
    const { mem, mm } = makeMm({ pages: 64, vpages: 2048 });
    mm.mmap({ start: 100, count: 50 });
    expect(mm.regions).toBe(1);
    expect(mm.mappedPages).toBe(0);
    expect(mm.translate(100)).toBeNull();
    expect(mem.freePages()).toBe(64);
    expect(mm.stats().faults).toBe(0);
  });

  it('populate faults every page in, writable, one reference each', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 10, count: 20, populate: true });
    expect(mm.mappedPages).toBe(20);
    expect(mm.stats().faults).toBe(20);
    const pfns = pfnsOf(mm, 10, 20);
    expect(new Set(pfns).size).toBe(20);
    for (let v = 10; v < 30; v++) {
      const t = mm.translate(v)!;
      expect(t).toEqual({ pfn: t.pfn, writable: true, zeroPage: false, huge: false, shared: false });
      expect(mem.refcount(t.pfn)).toBe(1);
      expect(mem.folioOrder(t.pfn)).toBe(0);
      expect(mem.pincount(t.pfn)).toBe(0);
    }
    expect(mem.freePages()).toBe(64 - 20);
    expect(mm.translate(9)).toBeNull();
    expect(mm.translate(30)).toBeNull();
  });

  it('populate of a read-only region maps the zero page', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 8, write: false, populate: true });
    const zero = mem.zeroPfn;
    expect(zero).not.toBeNull();
    for (let v = 0; v < 8; v++) expect(mm.translate(v)).toEqual({ pfn: zero, writable: false, zeroPage: true, huge: false, shared: false });
    expect(mm.mappedPages).toBe(8);
    expect(mem.freePages()).toBe(63);
  });

  it('EINVAL for a range outside the address space, an empty range, an overlap or a bad option; nothing changes', () => {
    const { mm } = makeMm({ pages: 256, vpages: 1024 });
    mm.mmap({ start: 100, count: 100, populate: true });
    const bad: Parameters<AddressSpace['mmap']>[0][] = [
      { start: 1000, count: 25 },
      { start: -1, count: 2 },
      { start: 0, count: 0 },
      { start: 1024, count: 1 },
      { start: 50, count: 51 }, // reaches into the region
      { start: 199, count: 5 }, // starts inside it
      { start: 150, count: 10 },
      { start: 0, count: 1000 }, // covers it
      { start: 0, count: 1.5 },
    ];
    for (const o of bad) expectCodeNoChange(mm, () => mm.mmap(o), 'EINVAL', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.mmap({ start: 0, count: 4, hug: true } as never), 'EINVAL', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.mmap({ start: 0, count: 4, write: 'yes' } as never), 'EINVAL', { mmStats: 'unchanged' });
    expect(mm.regions).toBe(1);
    // Adjacent regions are fine.
    mm.mmap({ start: 50, count: 50 });
    mm.mmap({ start: 200, count: 1 });
    expect(mm.regions).toBe(3);
  });

  it('ENOMEM from populate maps nothing and gives every page back', () => {
    const { mem, mm } = makeMm({ pages: 16, vpages: 64 });
    mm.mmap({ start: 0, count: 4, populate: true });
    const state = { free: mem.freePages(), regions: mm.regions, mapped: mm.mappedPages };
    expectCode(() => mm.mmap({ start: 8, count: 20, populate: true }), 'ENOMEM');
    expect({ free: mem.freePages(), regions: mm.regions, mapped: mm.mappedPages }).toEqual(state);
    for (let v = 8; v < 28; v++) expect(mm.translate(v)).toBeNull();
    // The range is free again: a smaller populate fits.
    mm.mmap({ start: 8, count: 12, populate: true });
    expect(mem.freePages()).toBe(0);
  });
});

describe('touch (faults)', () => {
  it('a read fault maps the zero page; a write fault then copies it (COW from the zero page)', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 8 });
    mm.touch(0, 8);
    const zero = mem.zeroPfn!;
    const zref = mem.refcount(zero);
    expect(mm.stats().faults).toBe(8);
    expect(mm.mappedPages).toBe(8);
    const s0 = mm.stats();
    mm.touch(2, 3, { write: true });
    expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { cowCopies: 3 }));
    for (let v = 2; v < 5; v++) {
      const t = mm.translate(v)!;
      expect(t.zeroPage).toBe(false);
      expect(t.writable).toBe(true);
      expect(t.pfn).not.toBe(zero);
      expect(mem.refcount(t.pfn)).toBe(1);
    }
    expect(mm.translate(1)!.zeroPage).toBe(true);
    expect(mem.refcount(zero)).toBe(zref);
  });

  it('a write fault of an unmapped page allocates a writable page; a second touch does nothing', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 4 });
    mm.touch(0, 4, { write: true });
    const pfns = pfnsOf(mm, 0, 4);
    const s0 = mm.stats();
    const free0 = mem.freePages();
    mm.touch(0, 4, { write: true });
    mm.touch(0, 4);
    expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, {}));
    expect(pfnsOf(mm, 0, 4)).toEqual(pfns);
    expect(mem.freePages()).toBe(free0);
    expect(mem.zeroPfn).toBeNull();
  });

  it('EFAULT outside a region or for a write to a read-only region, checked before any fault', () => {
    const { mm } = makeMm({ pages: 64, vpages: 64 });
    mm.mmap({ start: 0, count: 4 });
    mm.mmap({ start: 4, count: 4, write: false });
    expectCodeNoChange(mm, () => mm.touch(0, 8, { write: true }), 'EFAULT', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.touch(6, 4), 'EFAULT', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.touch(20, 1), 'EFAULT', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.touch(0, 0), 'EINVAL', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.touch(0, 1, { writ: true } as never), 'EINVAL', { mmStats: 'unchanged' });
    mm.touch(4, 4); // reads of a read-only region are fine
    expect(mm.translate(4)!.zeroPage).toBe(true);
  });

  it('ENOMEM for a write fault with no free page', () => {
    const { mem, mm } = makeMm({ pages: 4, vpages: 16 });
    mm.mmap({ start: 0, count: 8 });
    expectCode(() => mm.touch(0, 8, { write: true }), 'ENOMEM');
    expect(mem.freePages()).toBe(0);
    // The faults done before stay (a fault is not undone): four pages mapped.
    expect(mm.mappedPages).toBe(4);
    expect(mm.translate(4)).toBeNull();
  });
});

describe('munmap', () => {
  it('drops each mapped page\'s reference: the pages go back to the allocator', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 16, populate: true });
    const pfns = pfnsOf(mm, 0, 16);
    const freed0 = mem.stats().foliosFreed;
    mm.munmap({ start: 4, count: 8 });
    for (let i = 0; i < 16; i++) {
      const mapped = i < 4 || i >= 12;
      expect(mm.translate(i) === null).toBe(!mapped);
      expect(mem.refcount(pfns[i]!)).toBe(mapped ? 1 : 0);
    }
    expect(mem.stats().foliosFreed - freed0).toBe(8);
    expect(mem.freePages()).toBe(64 - 8);
    expect(mm.regions).toBe(2);
    expect(mm.mappedPages).toBe(8);
    // A write to the hole is outside any region now.
    expectCode(() => mm.touch(5, 1, { write: true }), 'EFAULT');
  });

  it('holes are allowed; a range outside the address space is EINVAL and changes nothing', () => {
    const { mem, mm } = makeMm({ pages: 64, vpages: 1024 });
    mm.mmap({ start: 10, count: 4, populate: true });
    mm.mmap({ start: 20, count: 4 });
    mm.munmap({ start: 0, count: 1024 });
    expect(mm.regions).toBe(0);
    expect(mm.mappedPages).toBe(0);
    expect(mem.freePages()).toBe(64);
    mm.munmap({ start: 0, count: 1 }); // nothing there at all
    mm.mmap({ start: 0, count: 4, populate: true });
    for (const r of [
      { start: 1020, count: 5 },
      { start: -1, count: 1 },
      { start: 0, count: 0 },
    ]) {
      expectCodeNoChange(mm, () => mm.munmap(r), 'EINVAL', { mmStats: 'unchanged' });
    }
    expectCodeNoChange(mm, () => mm.munmap({ start: 0, count: 4, write: true } as never), 'EINVAL');
    expectCodeNoChange(mm, () => mm.munmap(undefined as never), 'EINVAL');
  });

  it('a remapped range starts empty and faults fresh pages', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 4, populate: true });
    mm.munmap({ start: 0, count: 4 });
    mm.mmap({ start: 0, count: 4 });
    expect(mm.translate(0)).toBeNull();
    mm.touch(0, 4, { write: true });
    for (const p of pfnsOf(mm, 0, 4)) expect(mem.refcount(p)).toBe(1);
    expect(mem.freePages()).toBe(60);
  });
});

describe('mprotect', () => {
  it('read-only: entries lose write access now; writes fault EFAULT; regions split', () => {
    const { mem, mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 16, populate: true });
    const pfns = pfnsOf(mm, 0, 16);
    mm.mprotect({ start: 4, count: 4, write: false });
    expect(mm.regions).toBe(3);
    for (let v = 0; v < 16; v++) {
      const t = mm.translate(v)!;
      expect(t.pfn).toBe(pfns[v]);
      expect(t.writable).toBe(v < 4 || v >= 8);
      expect(mem.refcount(t.pfn)).toBe(1);
    }
    expectCodeNoChange(mm, () => mm.touch(4, 1, { write: true }), 'EFAULT', { mmStats: 'unchanged' });
    mm.touch(4, 4); // reads are fine
  });

  it('granting write makes the exclusively owned pages writable at once (MM_CP_TRY_CHANGE_WRITABLE); COW-shared ones wait for a write fault', () => {
    const { mm } = makeMm({ pages: 64 });
    mm.mmap({ start: 0, count: 8, populate: true });
    const pfns = pfnsOf(mm, 0, 8);
    const child = mm.fork(); // pages 4..7 are COW-shared below, 0..3 exclusive again
    mm.touch(0, 4, { write: true }); // the parent copies 0..3: exclusive copies
    child.dispose();
    mm.mprotect({ start: 0, count: 8, write: false });
    mm.mprotect({ start: 0, count: 8, write: true });
    for (let v = 0; v < 8; v++) expect(mm.translate(v)!.writable, `page ${v}`).toBe(v < 4);
    const s0 = mm.stats();
    mm.touch(0, 8, { write: true });
    expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { cowReuses: 4 })); // 4..7: mapped once now, reused
    expect(pfnsOf(mm, 4, 4)).toEqual(pfns.slice(4));
    for (let v = 0; v < 8; v++) expect(mm.translate(v)!.writable).toBe(true);
  });

  it('ENOMEM (the kernel\'s mprotect(2) answer) if any part of the range is unmapped, and nothing changes', () => {
    const { mm } = makeMm({ pages: 64, vpages: 1024 });
    mm.mmap({ start: 0, count: 8, populate: true });
    mm.mmap({ start: 10, count: 8, populate: true });
    expectCodeNoChange(mm, () => mm.mprotect({ start: 4, count: 8, write: false }), 'ENOMEM', { mmStats: 'unchanged' });
    expectCodeNoChange(mm, () => mm.mprotect({ start: 100, count: 1, write: false }), 'ENOMEM');
    // The pages before the hole keep write access (the kernel would have taken it).
    expect(mm.translate(0)!.writable).toBe(true);
    expectCodeNoChange(mm, () => mm.mprotect({ start: 0, count: 8 } as never), 'EINVAL');
    expectCodeNoChange(mm, () => mm.mprotect({ start: 1020, count: 8, write: false }), 'EINVAL');
    expect(mm.regions).toBe(2);
  });
});

describe('PMD leaves (huge: true)', () => {
  it('an aligned 2 MiB stretch is one order-9 folio mapped by one PMD leaf, one reference (the kernel\'s)', () => {
    const { mem, mm } = makeMm({ pages: 4096 });
    mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
    expect(mm.stats().faults).toBe(1024);
    expect(mm.mappedPages).toBe(1024);
    const h0 = mm.translate(0)!.pfn;
    const h1 = mm.translate(512)!.pfn;
    for (const h of [h0, h1]) {
      expect(h % PMD).toBe(0);
      expect(mem.folioOrder(h)).toBe(9);
      expect(mem.folioHead(h + 511)).toBe(h);
      expect(mem.refcount(h)).toBe(1); // do_huge_pmd_anonymous_page: the fresh folio's one
      expect(mem.pincount(h)).toBe(0);
      expect(mem.maybeDmaPinned(h)).toBe(false);
    }
    expect(h0).not.toBe(h1);
    for (const v of [0, 1, 300, 511]) expect(mm.translate(v)).toEqual({ pfn: h0 + v, writable: true, zeroPage: false, huge: true, shared: false });
    expect(mm.translate(513)).toEqual({ pfn: h1 + 1, writable: true, zeroPage: false, huge: true, shared: false });
    expect(mem.freePages()).toBe(4096 - 1024);
  });

  it('an unaligned huge region maps only its whole aligned stretches with leaves', () => {
    const { mem, mm } = makeMm({ pages: 4096 });
    mm.mmap({ start: 500, count: 1100, huge: true, populate: true });
    expect(mm.translate(500)!.huge).toBe(false);
    expect(mm.translate(511)!.huge).toBe(false);
    expect(mm.translate(512)!.huge).toBe(true);
    expect(mm.translate(1023)!.huge).toBe(true);
    expect(mm.translate(1024)!.huge).toBe(true);
    expect(mm.translate(1535)!.huge).toBe(true);
    expect(mm.translate(1536)!.huge).toBe(false); // [1536, 1600) is not a whole stretch
    expect(mm.translate(1599)!.huge).toBe(false);
    expect(mm.mappedPages).toBe(1100);
    expect(mem.freePages()).toBe(4096 - 1100);
    expect(mem.folioOrder(mm.translate(1536)!.pfn)).toBe(0);
    expect(mem.folioOrder(mm.translate(511)!.pfn)).toBe(0);
    expect(mem.folioOrder(mm.translate(1024)!.pfn)).toBe(9);
  });

  it('with no free order-9 block the fault falls back to 4 KiB pages', () => {
    const { mem, mm } = makeMm({ pages: 1024 });
    expect(mem.allocFolio(0)).toBe(0); // splits the only order-10 block
    expect(mem.allocFolio(9)).toBe(512); // and takes the last order-9 block
    mm.mmap({ start: 0, count: 512, huge: true });
    mm.touch(0, 2, { write: true });
    expect(mm.stats().faults).toBe(2);
    const t = mm.translate(0)!;
    expect(t.huge).toBe(false);
    expect(mem.folioOrder(t.pfn)).toBe(0);
    expect(mm.translate(2)).toBeNull();
  });

  it('munmap of part of a leaf splits the PMD: one reference per PTE, the unmapped ones put', () => {
    const { mem, mm } = makeMm({ pages: 4096 });
    mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
    const h = mm.translate(0)!.pfn;
    const h1 = mm.translate(512)!.pfn;
    const free0 = mem.freePages();
    mm.munmap({ start: 10, count: 5 });
    expect(mem.refcount(h)).toBe(PMD - 5);
    expect(mem.folioOrder(h)).toBe(9);
    expect(mem.freePages()).toBe(free0); // the folio is still in use
    for (const v of [0, 9, 15, 511]) expect(mm.translate(v)).toEqual({ pfn: h + v, writable: true, zeroPage: false, huge: false, shared: false });
    for (let v = 10; v < 15; v++) expect(mm.translate(v)).toBeNull();
    expect(mm.translate(512)!.huge).toBe(true); // the other leaf is untouched
    expect(mem.refcount(h1)).toBe(1);
    expect(mm.mappedPages).toBe(1024 - 5);
    expect(mm.regions).toBe(2);
    // Unmapping the rest of the split stretch frees the folio whole.
    mm.munmap({ start: 0, count: 10 });
    expect(mem.refcount(h)).toBe(PMD - 15);
    mm.munmap({ start: 15, count: 497 });
    expect(mem.refcount(h)).toBe(0);
    expect(mem.freePages()).toBe(free0 + PMD);
    // A whole leaf unmaps without a split.
    mm.munmap({ start: 512, count: 512 });
    expect(mem.refcount(h1)).toBe(0);
    expect(mem.freePages()).toBe(4096);
  });

  it('a stretch whose PTE table emptied out maps a PMD leaf again', () => {
    const { mem, mm } = makeMm({ pages: 4096 });
    mm.mmap({ start: 0, count: 512, huge: true, populate: true });
    mm.munmap({ start: 100, count: 1 }); // split: a PTE table now backs the stretch
    expect(mm.translate(0)!.huge).toBe(false);
    mm.munmap({ start: 0, count: 512 });
    expect(mem.freePages()).toBe(4096);
    mm.mmap({ start: 0, count: 512, huge: true });
    mm.touch(7, 1, { write: true });
    const t = mm.translate(7)!;
    expect(t.huge).toBe(true);
    expect(mem.folioOrder(t.pfn)).toBe(9);
    expect(mm.mappedPages).toBe(512);
  });

  it('a stretch whose PTE table still maps a page stays on 4 KiB pages', () => {
    const { mem, mm } = makeMm({ pages: 1024 });
    expect(mem.allocFolio(0)).toBe(0);
    const blocker = mem.allocFolio(9); // no order-9 block is left
    mm.mmap({ start: 0, count: 512, huge: true });
    mm.touch(0, 1, { write: true }); // falls back to a 4 KiB page
    expect(mm.translate(0)!.huge).toBe(false);
    expect(mem.putPage(blocker)).toBe(true); // an order-9 block is free again
    mm.touch(1, 1, { write: true });
    expect(mm.translate(1)!.huge).toBe(false); // a leaf would cover the mapped page 0
    expect(mem.folioOrder(mm.translate(1)!.pfn)).toBe(0);
    expect(mm.translate(0)!.pfn).not.toBe(mm.translate(1)!.pfn);
  });

  it('mprotect of part of a leaf splits it; a whole leaf is write-protected in place', () => {
    const { mem, mm } = makeMm({ pages: 4096 });
    mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
    const h = mm.translate(0)!.pfn;
    const h1 = mm.translate(512)!.pfn;
    mm.mprotect({ start: 100, count: 10, write: false });
    expect(mm.translate(99)).toEqual({ pfn: h + 99, writable: true, zeroPage: false, huge: false, shared: false });
    expect(mm.translate(100)).toEqual({ pfn: h + 100, writable: false, zeroPage: false, huge: false, shared: false });
    expect(mm.translate(110)!.writable).toBe(true);
    expect(mem.refcount(h)).toBe(PMD);
    mm.mprotect({ start: 512, count: 512, write: false });
    expect(mm.translate(600)).toEqual({ pfn: h1 + 88, writable: false, zeroPage: false, huge: true, shared: false });
    // Granting write makes the exclusively owned THP's leaf writable in place (no split, no
    // copy, no fault left to take).
    mm.mprotect({ start: 512, count: 512, write: true });
    expect(mm.translate(600)!.writable).toBe(true);
    const s0 = mm.stats();
    mm.touch(700, 1, { write: true });
    expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, {}));
    expect(mm.translate(600)).toEqual({ pfn: h1 + 88, writable: true, zeroPage: false, huge: true, shared: false });
  });
});

describe.each(SCHEMES)('scheme %s: every page goes back to the allocator', (scheme) => {
  it('after faults, huge leaves, splits, COW and munmap of everything', () => {
    const { mem, mm } = makeMm({ scheme, pages: 4096 });
    mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
    mm.mmap({ start: 1024, count: 100 });
    mm.mmap({ start: 1200, count: 50, write: false, populate: true });
    mm.touch(1024, 50);
    mm.touch(1040, 30, { write: true });
    mm.munmap({ start: 300, count: 3 });
    mm.mprotect({ start: 600, count: 8, write: false });
    const zero = mem.zeroPfn!;
    // Two THPs (the split one keeps its 512 pages), 30 COW copies of the zero page, the zero page.
    expect(mem.freePages()).toBe(4096 - 1024 - 30 - 1);
    mm.munmap({ start: 0, count: 4096 });
    expect(mm.mappedPages).toBe(0);
    expect(mm.regions).toBe(0);
    expect(mem.freePages()).toBe(4096 - 1); // only the zero page, never freed
    for (let p = 0; p < 4096; p++) if (p !== zero) expect(mem.refcount(p)).toBe(0);
  });
});
