// Trust under misuse: a write pin never takes a page a write could not touch (PMD leaves split
// where protection changes), the page array refuses shape changes and puts under pages an
// address space maps, and fork, MAP_POPULATE and a THP's COW are all or nothing. Each case
// failed before its fix.
import { describe, expect, it } from 'vitest';

import { SCHEMES } from '../lib/index.js';
import { PMD, expectCode, expectCodeNoChange, makeMm, pfnsOf } from './mm-helpers.js';

describe.each(SCHEMES)('scheme %s', (scheme) => {
  describe('shape changes and puts under mapped pages', () => {
    it('makeFolio of pages an address space maps: EBUSY, nothing changes, and munmap frees only its page', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, vpages: 64 });
      mm.mmap({ start: 0, count: 4, populate: true });
      expect(pfnsOf(mm, 0, 4)).toEqual([0, 1, 2, 3]);
      expectCodeNoChange(mm, () => mem.makeFolio(0, 2), 'EBUSY', { mmStats: 'unchanged' });
      mm.munmap({ start: 0, count: 1 });
      expect(mem.freePages()).toBe(64 - 3);
      for (const p of pfnsOf(mm, 1, 3)) expect(mem.refcount(p)).toBe(1);
      expect(mem.allocFolio(0)).toBe(0); // never a page that is still mapped
    });

    it('splitFolio of a folio a PMD maps, or a put of the PMD\'s references: EBUSY, nothing changes', () => {
      const { mem, mm } = makeMm({ scheme, pages: 2048, vpages: 1024 });
      mm.mmap({ start: 0, count: PMD, populate: true, huge: true });
      const head = mm.translate(0)!.pfn;
      expectCodeNoChange(mm, () => mem.splitFolio(head), 'EBUSY', { vpages: PMD });
      expectCodeNoChange(mm, () => mem.putPage(head + 5), 'EBUSY', { vpages: PMD }); // the PMD's reference
      mm.munmap({ start: 0, count: PMD });
      expect(mem.freePages()).toBe(2048);
    });

    it('putPage of a page only its mapping holds: EBUSY (the page stays allocated)', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, vpages: 64 });
      mm.mmap({ start: 0, count: 2, populate: true });
      const [p] = pfnsOf(mm, 0, 1);
      expectCodeNoChange(mm, () => mem.putPage(p!), 'EBUSY', { mmStats: 'unchanged' });
      expectCodeNoChange(mm, () => mm.putUserPages(new Uint32Array([p!])), 'EBUSY');
      const g = mm.getUserPagesFast(0, 1); // a reference of the caller's own: put as ever
      mm.putUserPages(g.pfns);
      expect(mem.refcount(p!)).toBe(1);
    });

    it('the zero page is never got or put: EINVAL, it stays mapped and allocated', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, vpages: 64 });
      mm.mmap({ start: 0, count: 2 });
      mm.touch(0, 2);
      const zero = mem.zeroPfn!;
      expect(mm.translate(0)).toMatchObject({ pfn: zero, zeroPage: true });
      expectCodeNoChange(mm, () => mem.putPage(zero), 'EINVAL', { mmStats: 'unchanged' });
      expectCodeNoChange(mm, () => mem.getPage(zero), 'EINVAL', { mmStats: 'unchanged' });
      const pins = mm.pinUserPagesFast(0, 2); // handed out uncounted...
      expect(Array.from(pins.pfns)).toEqual([zero, zero]);
      mm.unpinUserPages(pins.pfns); // ...and skipped on release
      const gets = mm.getUserPagesFast(0, 2);
      mm.putUserPages(gets.pfns);
      expect(mem.refcount(zero)).toBe(1);
      expect(mem.allocFolio(0)).not.toBe(zero);
    });
  });

  describe('write pins and PMD leaves under mprotect', () => {
    it.each(['pinUserPagesFast', 'pinUserPages'] as const)(
      '%s with write stops at the read-only part of a THP made writable again in part',
      (how) => {
        const { mem, mm } = makeMm({ scheme, pages: 2048, vpages: 2048 });
        mm.mmap({ start: 0, count: PMD, populate: true, huge: true });
        expect(mm.translate(0)!.huge).toBe(true);
        mm.mprotect({ start: 0, count: PMD, write: false });
        mm.mprotect({ start: 0, count: 8, write: true });
        const r = mm[how](0, 16, { write: true });
        expect(r.pfns.length).toBe(8); // partial: page 8 is read-only
        for (const v of [8, 100, PMD - 1]) {
          expect(mm.translate(v)!.writable).toBe(false);
          expectCode(() => mm.touch(v, 1, { write: true }), 'EFAULT');
          expectCodeNoChange(mm, () => mm.pinUserPagesFast(v, 1, { write: true }), 'EFAULT', { vpages: PMD });
          expectCodeNoChange(mm, () => mm.pinUserPages(v, 1, { write: true }), 'EFAULT', { vpages: PMD });
        }
        mm.unpinUserPages(r.pfns, { write: true });
        expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
      },
    );

    it('a read-only THP made writable in part is split there; a read pin still takes it all', () => {
      const { mm } = makeMm({ scheme, pages: 2048, vpages: 2048 });
      mm.mmap({ start: 0, count: PMD, write: false, populate: true, huge: true });
      expect(mm.translate(0)).toMatchObject({ huge: true, writable: false });
      mm.mprotect({ start: PMD - 8, count: 8, write: true });
      expect(mm.translate(0)!.huge).toBe(false);
      expectCode(() => mm.pinUserPagesFast(PMD - 12, 12, { write: true }), 'EFAULT');
      const w = mm.pinUserPagesFast(PMD - 8, 8, { write: true });
      expect(w.pfns.length).toBe(8);
      expectCode(() => mm.touch(PMD - 9, 1, { write: true }), 'EFAULT');
      mm.unpinUserPages(w.pfns, { write: true });
      const r = mm.pinUserPagesFast(0, PMD);
      expect(r.pfns.length).toBe(PMD);
      mm.unpinUserPages(r.pfns);
    });
  });

  describe('fork is all or nothing', () => {
    it('ENOMEM part way through the early-COW copies: the parent, its counts and its statistics are as before', () => {
      const { mem, mm } = makeMm({ scheme, pages: 128, vpages: 1024 });
      mm.mmap({ start: 0, count: 8, populate: true }); // shared copy-on-write at fork
      mm.mmap({ start: 8, count: 8, populate: true }); // pinned: copied early
      mm.mmap({ start: 600, count: 2 });
      mm.touch(600, 1); // the zero page
      mm.touch(601, 1, { write: true });
      const pins = mm.pinUserPagesFast(8, 8, { write: true });
      const hog: number[] = [];
      while (mem.freePages() > 3) hog.push(mem.allocFolio(0)); // 3 of the 8 copies fit
      expectCodeNoChange(mm, () => mm.fork(), 'ENOMEM', { mmStats: 'unchanged' });
      for (let v = 0; v < 16; v++) expect(mm.translate(v)!.writable).toBe(true);
      for (const p of hog) mem.putPage(p);
      const child = mm.fork();
      expect(mm.stats().earlyCowCopies).toBe(8);
      expect(child.translate(0)!.writable).toBe(false);
      child.munmap({ start: 0, count: 1024 });
      mm.unpinUserPages(pins.pfns, { write: true });
    });

    it('ENOMEM for a pinned THP copy after small pages were prepared: nothing changes', () => {
      const { mem, mm } = makeMm({ scheme, pages: 1024, vpages: 2048 });
      mm.mmap({ start: 0, count: 4, populate: true });
      mm.mmap({ start: PMD, count: PMD, populate: true, huge: true });
      const pin = mm.pinUserPagesFast(PMD + 100, 1, { write: true });
      expectCodeNoChange(mm, () => mm.fork(), 'ENOMEM', { mmStats: 'unchanged' });
      mm.unpinUserPages(pin.pfns, { write: true });
      const child = mm.fork();
      expect(child.translate(PMD)).toMatchObject({ huge: true, writable: false });
      expect(mem.refcount(mm.translate(PMD)!.pfn)).toBe(2); // one per PMD leaf, as the kernel's
    });
  });

  describe('the same class elsewhere', () => {
    it('mmap populate that runs out of memory: nothing changes, statistics included', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, vpages: 256 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const hog: number[] = [];
      while (mem.freePages() > 10) hog.push(mem.allocFolio(0));
      expectCodeNoChange(mm, () => mm.mmap({ start: 100, count: 20, populate: true }), 'ENOMEM', { mmStats: 'unchanged' });
      mm.mmap({ start: 100, count: 10, populate: true });
      expect(mem.freePages()).toBe(0);
    });

    it('a write to a THP another mm shares, with no page for the copy: ENOMEM, the leaf stays whole', () => {
      const { mem, mm } = makeMm({ scheme, pages: 1024, vpages: 1024 });
      mm.mmap({ start: 0, count: PMD, populate: true, huge: true });
      const child = mm.fork();
      const hog: number[] = [];
      while (mem.freePages() > 0) hog.push(mem.allocFolio(0));
      expectCodeNoChange(mm, () => mm.touch(7, 1, { write: true }), 'ENOMEM', { mmStats: 'unchanged' });
      expect(mm.translate(7)!.huge).toBe(true);
      for (const p of hog) mem.putPage(p);
      mm.touch(7, 1, { write: true });
      expect(mm.translate(8)!.pfn).toBe(child.translate(8)!.pfn);
    });
  });
});
