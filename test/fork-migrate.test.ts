// The clients of "maybe pinned": fork (COW sharing, early COW of maybe-pinned pages in an mm
// that has pinned, false positives), COW breaks by touch, migration and compaction (refusal of
// maybe-pinned folios, busy folios, false positives), and their statistics.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, type Scheme } from '../lib/index.js';
import { BIAS, LEAF, PMD, delta, expectCode, expectCodeNoChange, makeMm, pfnsOf, pinRefs, pinVisible, zeroDelta } from './mm-helpers.js';
import { schemeTraits } from './scheme-traits.js';

/** Whether plain references (or mapping references) of an order-`order` folio can read as a pin. */
function biasCounted(scheme: Scheme, order: number): boolean {
  return !schemeTraits(scheme).exact(order); // bias, write-bias, hybrid's order-0 folios
}

describe.each(SCHEMES)('scheme %s', (scheme) => {
  describe('fork', () => {
    it('without pins: private pages are shared copy-on-write, both sides write-protected', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 8, populate: true });
      mm.mmap({ start: 8, count: 2 });
      mm.touch(8, 2); // zero-page entries
      mm.mmap({ start: 512, count: 512, huge: true, populate: true });
      mm.mmap({ start: 1024, count: 4 }); // nothing faulted in
      const pfns = pfnsOf(mm, 0, 8);
      const h = mm.translate(512)!.pfn;
      const zero = mem.zeroPfn!;
      const free0 = mem.freePages();
      const s0 = mm.stats();
      const child = mm.fork();
      expect(child).toBeInstanceOf(AddressSpace);
      expect(child).not.toBe(mm);
      expect(child.mem).toBe(mem);
      expect(child.pages).toBe(mm.pages);
      expect(child.regions).toBe(mm.regions);
      expect(child.mappedPages).toBe(mm.mappedPages);
      expect(mem.freePages()).toBe(free0);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, {}));
      expect(Object.values(child.stats()).every((n) => n === 0)).toBe(true);
      for (let v = 0; v < 8; v++) {
        const shared = { pfn: pfns[v], writable: false, zeroPage: false, huge: false, shared: false };
        expect(mm.translate(v)).toEqual(shared);
        expect(child.translate(v)).toEqual(shared);
        expect(mem.refcount(pfns[v]!)).toBe(2);
      }
      for (const v of [8, 9]) expect(child.translate(v)).toEqual({ pfn: zero, writable: false, zeroPage: true, huge: false, shared: false });
      expect(mm.translate(600)).toEqual({ pfn: h + 88, writable: false, zeroPage: false, huge: true, shared: false });
      expect(child.translate(600)).toEqual({ pfn: h + 88, writable: false, zeroPage: false, huge: true, shared: false });
      // One reference per PMD mapping, as the kernel's (copy_huge_pmd): two, never read as a pin.
      expect(mem.refcount(h)).toBe(2 * LEAF);
      expect(mem.maybeDmaPinned(h)).toBe(false);
      expect(child.translate(1024)).toBeNull();
      // The child can fault its own pages in its regions.
      child.touch(1024, 1, { write: true });
      expect(mm.translate(1024)).toBeNull();
    });

    it('touch breaks COW like a write fault: copy while shared, reuse once exclusively owned', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const pfns = pfnsOf(mm, 0, 4);
      const child = mm.fork();
      const c0 = child.stats();
      child.touch(0, 1, { write: true });
      expect(delta(child.stats(), c0)).toEqual(zeroDelta(c0, { cowCopies: 1 }));
      const copy = child.translate(0)!;
      expect(copy.pfn).not.toBe(pfns[0]);
      expect(copy.writable).toBe(true);
      expect(mem.refcount(copy.pfn)).toBe(1);
      expect(mem.refcount(pfns[0]!)).toBe(1);
      expect(mm.translate(0)!.writable).toBe(false); // still write-protected until it faults
      const s0 = mm.stats();
      mm.touch(0, 1, { write: true });
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { cowReuses: 1 }));
      expect(mm.translate(0)).toEqual({ pfn: pfns[0], writable: true, zeroPage: false, huge: false, shared: false });
      // The other order: the parent copies first, the child reuses.
      mm.touch(1, 1, { write: true });
      expect(mm.translate(1)!.pfn).not.toBe(pfns[1]);
      child.touch(1, 1, { write: true });
      expect(child.translate(1)!.pfn).toBe(pfns[1]);
      expect(mm.stats().cowCopies - s0.cowCopies).toBe(1);
      expect(child.stats().cowReuses - c0.cowReuses).toBe(1);
      // A read does not break COW.
      child.touch(2, 1);
      expect(child.translate(2)!.pfn).toBe(pfns[2]);
      expect(mem.refcount(pfns[2]!)).toBe(2);
      // Unmapping the child's side leaves the parent the only owner: a write reuses.
      child.munmap({ start: 0, count: 4 });
      expect(mem.refcount(pfns[3]!)).toBe(1);
      mm.touch(3, 1, { write: true });
      expect(mm.translate(3)!.pfn).toBe(pfns[3]);
    });

    it('a shared THP: a write splits the writer\'s leaf and copies the 4 KiB written', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      const child = mm.fork();
      child.touch(5, 1, { write: true });
      const t = child.translate(5)!;
      expect(t.huge).toBe(false);
      expect(t.pfn).not.toBe(h + 5);
      expect(mem.folioOrder(t.pfn)).toBe(0);
      expect(child.translate(6)).toEqual({ pfn: h + 6, writable: false, zeroPage: false, huge: false, shared: false });
      expect(mm.translate(5)).toEqual({ pfn: h + 5, writable: false, zeroPage: false, huge: true, shared: false });
      expect(mem.refcount(h)).toBe(LEAF + PMD - 1); // the parent's leaf, the child's 511 PTEs
      child.munmap({ start: 0, count: 512 });
      expect(mem.refcount(h)).toBe(LEAF);
      expect(mem.refcount(t.pfn)).toBe(0);
      // Exclusively owned again: the parent's write reuses the whole leaf.
      const s0 = mm.stats();
      mm.touch(5, 1, { write: true });
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { cowReuses: PMD }));
      expect(mm.translate(5)).toEqual({ pfn: h + 5, writable: true, zeroPage: false, huge: true, shared: false });
    });

    it('a write pin of a shared THP copies the 4 KiB pages it pins; a get of it does too', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      const child = mm.fork();
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(10, 4, { write: true });
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 4, cowCopies: 4 }),
      );
      for (let i = 0; i < 4; i++) {
        expect(mem.folioOrder(r.pfns[i]!)).toBe(0);
        expect(mm.translate(10 + i)).toEqual({ pfn: r.pfns[i], writable: true, zeroPage: false, huge: false, shared: false });
      }
      expect(mm.translate(9)).toEqual({ pfn: h + 9, writable: false, zeroPage: false, huge: false, shared: false });
      expect(child.translate(10)).toEqual({ pfn: h + 10, writable: false, zeroPage: false, huge: true, shared: false });
      expect(mem.refcount(h)).toBe(LEAF + PMD - 4); // the child's leaf, our 508 PTEs
      const g = child.getUserPagesFast(20, 1, { write: true });
      expect(g.pfns[0]).not.toBe(h + 20);
      expect(child.stats().cowCopies).toBe(1);
      expect(mem.refcount(g.pfns[0]!)).toBe(2);
      expect(mem.refcount(h)).toBe(2 * PMD - 5);
      child.putUserPages(g.pfns);
      mm.unpinUserPages(r.pfns, { write: true });
    });

    for (const write of [true, false]) {
      it(`with ${write ? 'write' : 'read'} pins: maybe-pinned pages are copied at once (early COW), the rest shared`, () => {
        const { mem, mm } = makeMm({ scheme, pages: 4096 });
        mm.mmap({ start: 0, count: 8, populate: true });
        const pfns = pfnsOf(mm, 0, 8);
        const r = mm.pinUserPagesFast(1, 2, { write });
        expect(mm.hasPinned).toBe(true);
        const free0 = mem.freePages();
        const s0 = mm.stats();
        const child = mm.fork();
        const early = pinVisible(scheme, write); // write-bias read pins are invisible by design
        expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { earlyCowCopies: early ? 2 : 0 }));
        expect(mem.freePages()).toBe(free0 - (early ? 2 : 0));
        for (let v = 0; v < 8; v++) {
          const pinned = v === 1 || v === 2;
          const copied = pinned && early;
          const pt = mm.translate(v)!;
          const ct = child.translate(v)!;
          expect(pt.pfn).toBe(pfns[v]);
          // The parent keeps its pinned page, writable; the child gets a writable copy.
          expect(pt.writable).toBe(copied);
          expect(ct.writable).toBe(copied);
          expect(ct.pfn === pfns[v]).toBe(!copied);
          expect(mem.refcount(pfns[v]!)).toBe((copied ? 1 : 2) + (pinned ? pinRefs(scheme, 0, write) : 0));
          if (copied) {
            expect(mem.refcount(ct.pfn)).toBe(1);
            expect(mem.pincount(ct.pfn)).toBe(0);
          }
        }
        // The DMA still targets the parent's pages, which the parent still maps writable.
        expect(Array.from(r.pfns)).toEqual(pfnsOf(mm, 1, 2));
        mm.unpinUserPages(r.pfns, { write });
      });
    }

    it('a pinned THP: the parent\'s leaf is split, the child gets 4 KiB copies (copy_huge_pmd, copy_present_page)', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
      const h0 = mm.translate(0)!.pfn;
      const h1 = mm.translate(512)!.pfn;
      const r = mm.pinUserPagesFast(700, 1, { write: true }); // one subpage of the second THP
      const s0 = mm.stats();
      const child = mm.fork();
      const biasThp = biasCounted(scheme, 9);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { earlyCowCopies: PMD }));
      const copies = new Set<number>();
      for (let v = 512; v < 1024; v++) {
        const ct = child.translate(v)!;
        expect(ct.huge).toBe(false);
        expect(ct.writable).toBe(true);
        expect(mem.folioOrder(ct.pfn)).toBe(0);
        expect(mem.refcount(ct.pfn)).toBe(1);
        expect(ct.pfn >= h1 && ct.pfn < h1 + PMD).toBe(false);
        copies.add(ct.pfn);
        // The parent maps the same folio by 512 PTEs, writable and exclusive as before.
        expect(mm.translate(v)).toEqual({ pfn: h1 + (v - 512), writable: true, zeroPage: false, huge: false, shared: false });
      }
      expect(copies.size).toBe(PMD);
      expect(mem.folioOrder(h1)).toBe(9);
      expect(mm.translate(700)).toEqual({ pfn: h1 + 188, writable: true, zeroPage: false, huge: false, shared: false });
      // The unpinned THP is shared (one reference per leaf: not a false positive).
      expect(child.translate(0)).toEqual({ pfn: h0, writable: false, zeroPage: false, huge: true, shared: false });
      expect(mem.refcount(h0)).toBe(2 * LEAF);
      // A second fork: h0 is COW-shared (not exclusive), so it cannot be pinned: shared again,
      // never asked. Plain references up to BIAS would make it read pinned under bias
      // counting; the fork does not ask.
      mem.getPage(h0, BIAS - 2 * LEAF);
      expect(mem.maybeDmaPinned(h0)).toBe(biasThp);
      const s1 = mm.stats();
      const child2 = mm.fork();
      expect(delta(mm.stats(), s1)).toMatchObject({ earlyCowCopies: PMD, earlyCowFalsePositives: 0 });
      expect(child2.translate(0)!.pfn).toBe(h0);
      mem.putPage(h0, BIAS - 2 * LEAF);
      mm.unpinUserPages(r.pfns, { write: true });
    });

    it('rules 2019 (no PageAnonExclusive): a COW-shared THP that reads maybe-pinned is copied at the next fork', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096, rules: '2019' });
      mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
      const h0 = mm.translate(0)!.pfn;
      const r = mm.pinUserPagesFast(700, 1, { write: true });
      mm.fork();
      // Two mappings' references of h0 (one per leaf, as the kernel's) read as no pin; with plain
      // references up to BIAS they read as one where the scheme counts THP pins by bias.
      expect(mem.refcount(h0)).toBe(2 * LEAF);
      expect(mem.maybeDmaPinned(h0)).toBe(false);
      mem.getPage(h0, BIAS - 2 * LEAF);
      const biasThp = mem.maybeDmaPinned(h0);
      if (biasCounted(scheme, 9)) expect(biasThp).toBe(true);
      const s1 = mm.stats();
      const child2 = mm.fork();
      expect(delta(mm.stats(), s1)).toMatchObject({
        earlyCowCopies: PMD + (biasThp ? PMD : 0),
        earlyCowFalsePositives: biasThp ? PMD : 0, // pages, like earlyCowCopies
      });
      expect(child2.translate(0)!.pfn === h0).toBe(!biasThp);
      mm.unpinUserPages(r.pfns, { write: true });
      mem.putPage(h0, BIAS - 2 * LEAF);
    });

    it('a maybe-pinned page of an mm that never pinned is shared, not copied (MMF_HAS_PINNED)', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const pfns = pfnsOf(mm, 0, 4);
      // Pinned by someone else, not through this mm.
      mem.pinPages({ start: pfns[1]!, count: 1 }, { write: true });
      expect(mem.maybeDmaPinned(pfns[1]!)).toBe(true);
      expect(mm.hasPinned).toBe(false);
      const s0 = mm.stats();
      const child = mm.fork();
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, {}));
      expect(child.translate(1)!.pfn).toBe(pfns[1]);
      expect(mm.translate(1)!.writable).toBe(false);
      expect(mem.refcount(pfns[1]!)).toBe(2 + pinRefs(scheme, 0, true));
      mem.unpinPages({ start: pfns[1]!, count: 1 }, { write: true });
    });

    it('a false positive (BIAS plain references) copies too, counted exactly in debug mode', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const pfns = pfnsOf(mm, 0, 4);
      mm.unpinUserPages(mm.pinUserPagesFast(3, 1).pfns); // the mm has pinned
      mem.getPage(pfns[0]!, BIAS - 1); // 1 mapping + 1023 plain references = BIAS
      const fp = biasCounted(scheme, 0);
      expect(mem.maybeDmaPinned(pfns[0]!)).toBe(fp);
      const s0 = mm.stats();
      const child = mm.fork();
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { earlyCowCopies: fp ? 1 : 0, earlyCowFalsePositives: fp ? 1 : 0 }),
      );
      expect(child.translate(0)!.pfn === pfns[0]).toBe(!fp);
      expect(mem.refcount(pfns[0]!)).toBe(BIAS + (fp ? 0 : 1));
      mem.putPage(pfns[0]!, BIAS - 1);
    });

    it('without debug mode, early COW of bias-counted folios is unclassified; exact schemes classify', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256, debug: false });
      mm.mmap({ start: 0, count: 4, populate: true });
      const pfns = pfnsOf(mm, 0, 4);
      const r = mm.pinUserPagesFast(0, 1, { write: true }); // a real pin
      mem.getPage(pfns[1]!, BIAS - 1); // a false positive where bias-counted
      expect(mem.pincount(pfns[0]!)).toBe(schemeTraits(scheme).exact(0) ? 1 : null); // separate
      const s0 = mm.stats();
      mm.fork();
      const fp = biasCounted(scheme, 0);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { earlyCowCopies: fp ? 2 : 1, unclassified: fp ? 2 : 0, earlyCowUnclassified: fp ? 2 : 0, earlyCowFalsePositives: 0 }),
      );
      mm.unpinUserPages(r.pfns, { write: true });
      mem.putPage(pfns[1]!, BIAS - 1);
    });

    it('ENOMEM when an early-COW copy finds no free page: no child, every reference given back', () => {
      const { mem, mm } = makeMm({ scheme, pages: 12, vpages: 64 });
      mm.mmap({ start: 0, count: 8, populate: true });
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      const pfns = pfnsOf(mm, 0, 8);
      const refs = pfns.map((p) => mem.refcount(p));
      const free0 = mem.freePages();
      expect(free0).toBe(4);
      expectCode(() => mm.fork(), 'ENOMEM');
      expect(mem.freePages()).toBe(free0);
      expect(pfns.map((p) => mem.refcount(p))).toEqual(refs);
      for (let v = 0; v < 8; v++) expect(mm.translate(v)).toEqual({ pfn: pfns[v], writable: true, zeroPage: false, huge: false, shared: false });
      for (let p = 0; p < 12; p++) if (!pfns.includes(p)) expect(mem.refcount(p)).toBe(0);
      mm.unpinUserPages(r.pfns, { write: true });
      // With the pins gone the pages are shared: fork needs no memory.
      const child = mm.fork();
      expect(child.translate(0)!.pfn).toBe(pfns[0]);
    });

    it('a pinned THP needs 4 KiB pages, not a free 2 MiB block; too few of them: ENOMEM, the parent unchanged', () => {
      const { mem, mm } = makeMm({ scheme, pages: 2048, vpages: 2048 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const r = mm.pinUserPagesFast(3, 1, { write: true });
      // Fragment the rest: one page kept of every 512, so no order-9 block stays free.
      const held: number[] = [];
      for (;;) {
        let p: number;
        try {
          p = mem.allocFolio(0);
        } catch {
          break;
        }
        held.push(p);
      }
      const kept = held.filter((p) => p % 512 === 511);
      const spare = held.filter((p) => p % 512 !== 511);
      // 100 free pages: the copies run out partway.
      for (const p of spare.slice(0, 100)) mem.putPage(p);
      const err = expectCodeNoChange(mm, () => mm.fork(), 'ENOMEM', { vpages: 1024, mmStats: 'unchanged' });
      expect(err.message).toMatch(/free|memory/);
      expect(mm.translate(3)!.huge).toBe(true);
      expect(mem.freePages()).toBe(100);
      // Enough of them (more than 512, in no order-9 block): the fork succeeds.
      for (const p of spare.slice(100)) mem.putPage(p);
      expect(mem.freePages()).toBeGreaterThan(PMD);
      const child = mm.fork();
      expect(mm.translate(3)!.huge).toBe(false);
      expect(child.translate(3)!.huge).toBe(false);
      expect(child.translate(3)!.pfn).not.toBe(mm.translate(3)!.pfn);
      child.dispose();
      mm.unpinUserPages(r.pfns, { write: true });
      for (const p of kept) mem.putPage(p);
    });

    it('every page goes back after fork, pins, COW breaks, munmap of both sides and the unpins', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 64, populate: true });
      mm.mmap({ start: 512, count: 1024, huge: true, populate: true });
      mm.touch(0, 64); // reads: no change
      const pins = mm.pinUserPagesFast(10, 20, { write: true });
      const thp = mm.pinUserPagesFast(600, 100, { write: true });
      const child = mm.fork();
      const cpins = child.pinUserPagesFast(0, 40, { write: true }); // COW copies in the child
      child.touch(1000, 10, { write: true });
      mm.touch(1500, 3, { write: true });
      const get = child.getUserPagesFast(512, 100);
      mm.munmap({ start: 0, count: 4096 });
      child.munmap({ start: 0, count: 4096 });
      expect(mem.freePages()).toBeLessThan(4096);
      mm.unpinUserPages(pins.pfns, { write: true });
      mm.unpinUserPages(thp.pfns, { write: true });
      child.unpinUserPages(cpins.pfns, { write: true });
      child.putUserPages(get.pfns);
      expect(mem.freePages()).toBe(4096);
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
      for (let p = 0; p < 4096; p++) if (mem.refcount(p) !== 0) throw new Error(`pfn ${p} refcount ${mem.refcount(p)}`);
    });
  });

  describe('migrate', () => {
    it('moves mapped pages to new folios and frees the old ones; protection and dirtiness carry', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 8, populate: true });
      const old = pfnsOf(mm, 0, 8);
      mm.unpinUserPages(mm.pinUserPagesFast(0, 1, { write: true }).pfns, { write: true, dirty: true });
      mm.mprotect({ start: 4, count: 4, write: false });
      const s0 = mm.stats();
      const m0 = mem.stats();
      expect(mm.migrate({ start: 0, count: 8 })).toBe(8);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migratedPages: 8 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ foliosFreed: 8, pinAcquired: 0 });
      const now = pfnsOf(mm, 0, 8);
      // Each target is allocated before its source is freed, so a freed source can be the
      // next page's target: every page moved, and exactly the new PFNs are in use.
      for (let v = 0; v < 8; v++) {
        expect(now[v]).not.toBe(old[v]);
        expect(mm.translate(v)!.writable).toBe(v < 4);
        expect(mem.isDirty(now[v]!)).toBe(v === 0); // the flag moved with the data, not the PFN
      }
      expect(new Set(now).size).toBe(8);
      for (let p = 0; p < 256; p++) expect(mem.refcount(p), `pfn ${p}`).toBe(now.includes(p) ? 1 : 0);
      expect(mem.freePages()).toBe(256 - 8);
      expect(mm.mappedPages).toBe(8);
    });

    for (const write of [true, false]) {
      it(`refuses a maybe-pinned page (${write ? 'write' : 'read'} pin), which stays; the others move`, () => {
        const { mem, mm } = makeMm({ scheme, pages: 256 });
        mm.mmap({ start: 0, count: 4, populate: true });
        const old = pfnsOf(mm, 0, 4);
        const r = mm.pinUserPagesFast(2, 1, { write });
        const s0 = mm.stats();
        expect(mm.migrate({ start: 0, count: 4 })).toBe(3);
        const refused = pinVisible(scheme, write);
        expect(delta(mm.stats(), s0)).toEqual(
          zeroDelta(s0, { migratedPages: 3, migrationRefusals: refused ? 1 : 0, migrationBusy: refused ? 0 : 1 }),
        );
        expect(mm.translate(2)!.pfn).toBe(old[2]);
        expect(mem.refcount(old[2]!)).toBe(1 + pinRefs(scheme, 0, write));
        for (const v of [0, 1, 3]) expect(mm.translate(v)!.pfn).not.toBe(old[v]);
        mm.unpinUserPages(r.pfns, { write });
        expect(mm.migrate({ start: 2, count: 1 })).toBe(1);
        expect(mem.refcount(old[2]!)).toBe(0);
      });
    }

    it('a false positive (BIAS plain references) is refused where bias-counted, busy elsewhere', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 2, populate: true });
      const old = pfnsOf(mm, 0, 2);
      mem.getPage(old[0]!, BIAS - 1);
      const s0 = mm.stats();
      expect(mm.migrate({ start: 0, count: 2 })).toBe(1);
      const fp = biasCounted(scheme, 0);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, {
          migratedPages: 1,
          migrationRefusals: fp ? 1 : 0,
          migrationFalsePositives: fp ? 1 : 0,
          migrationBusy: fp ? 0 : 1,
        }),
      );
      expect(mm.translate(0)!.pfn).toBe(old[0]);
      mem.putPage(old[0]!, BIAS - 1);
    });

    it('a page with other references (a get, COW sharing) is busy and stays', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const old = pfnsOf(mm, 0, 4);
      const g = mm.getUserPagesFast(0, 1);
      const child = mm.fork();
      const s0 = mm.stats();
      expect(mm.migrate({ start: 0, count: 4 })).toBe(0);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migrationBusy: 4 }));
      expect(pfnsOf(mm, 0, 4)).toEqual(old);
      expect(pfnsOf(child, 0, 4)).toEqual(old);
      for (let v = 0; v < 4; v++) expect(mm.translate(v)!.writable).toBe(false);
      mm.putUserPages(g.pfns);
    });

    it('mainline: a PTE-mapped THP moves its mapped pages to order-0 pages (the kernel splits it) and is freed', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      mm.munmap({ start: 511, count: 1 });
      const s0 = mm.stats();
      expect(mm.migrate({ start: 0, count: 4 })).toBe(511); // the whole folio's mapped pages
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migratedPages: 511 }));
      expect(mem.refcount(h)).toBe(0);
      const seen = new Set<number>();
      for (let v = 0; v < 511; v++) {
        const t = mm.translate(v)!;
        expect(t.huge).toBe(false);
        expect(t.writable).toBe(true);
        expect(mem.folioOrder(t.pfn)).toBe(0);
        expect(mem.refcount(t.pfn)).toBe(1);
        seen.add(t.pfn);
      }
      expect(seen.size).toBe(511);
      // A pinned subpage keeps the whole folio where it is.
      mm.mmap({ start: 1024, count: 512, huge: true, populate: true });
      mm.munmap({ start: 1024, count: 1 });
      const h2 = mm.translate(1025)!.pfn;
      const r = mm.pinUserPagesFast(1030, 1, { write: true });
      expect(mm.migrate({ start: 1024, count: 512 })).toBe(0);
      expect(mm.translate(1025)!.pfn).toBe(h2);
      mm.unpinUserPages(r.pfns, { write: true });
    });

    it('2019: a THP leaf moves whole; a PTE-mapped THP is busy; zero-page entries and holes are skipped', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096, rules: '2019' });
      mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
      mm.mmap({ start: 1024, count: 8 });
      mm.touch(1024, 4); // zero page
      const h0 = mm.translate(0)!.pfn;
      const h1 = mm.translate(512)!.pfn;
      const s0 = mm.stats();
      expect(mm.migrate({ start: 3, count: 1 })).toBe(PMD);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migratedPages: PMD }));
      const n0 = mm.translate(3)!;
      expect(n0.huge).toBe(true);
      expect(n0.pfn).not.toBe(h0 + 3);
      expect(mem.folioOrder(n0.pfn)).toBe(9);
      expect(mem.refcount(n0.pfn)).toBe(LEAF); // the expected count of a PMD-mapped folio: 1
      expect(mem.refcount(h0)).toBe(0);
      // Split the second leaf by unmapping one page: its folio is PTE-mapped now.
      mm.munmap({ start: 1023, count: 1 });
      const s1 = mm.stats();
      expect(mm.migrate({ start: 512, count: 4 })).toBe(0);
      expect(delta(mm.stats(), s1)).toEqual(zeroDelta(s1, { migrationBusy: 1 })); // one folio
      expect(mm.translate(512)!.pfn).toBe(h1);
      // Zero-page entries and holes: nothing to move, nothing counted.
      const s2 = mm.stats();
      expect(mm.migrate({ start: 1023, count: 9 })).toBe(0);
      expect(delta(mm.stats(), s2)).toEqual(zeroDelta(s2, {}));
    });

    it('a pinned THP is refused as a whole', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      const r = mm.pinUserPagesFast(100, 1, { write: true });
      const s0 = mm.stats();
      expect(mm.migrate({ start: 0, count: 512 })).toBe(0);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migrationRefusals: 1 }));
      expect(mm.translate(0)!.pfn).toBe(h);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.maybeDmaPinned(h)).toBe(false);
      expect(mm.migrate({ start: 0, count: 512 })).toBe(PMD);
    });

    it('pages stay in their zone; no free page means nothing moves', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, movablePages: 32, vpages: 64 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const r = mm.pinUserPagesFast(0, 2, { write: true, longterm: true }); // moved to the normal zone
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mm.migrate({ start: 0, count: 4 })).toBe(4);
      expect(mem.isMovable(mm.translate(0)!.pfn)).toBe(false);
      expect(mem.isMovable(mm.translate(1)!.pfn)).toBe(false);
      expect(mem.isMovable(mm.translate(2)!.pfn)).toBe(true);
      expect(mem.isMovable(mm.translate(3)!.pfn)).toBe(true);
      // Fill memory: migration finds no target and moves nothing.
      while (mem.freePages() > 0) mem.allocFolio(0, { movable: true });
      const before = pfnsOf(mm, 0, 4);
      expect(mm.migrate({ start: 0, count: 4 })).toBe(0);
      expect(pfnsOf(mm, 0, 4)).toEqual(before);
    });

    it('EINVAL for a range outside the address space; nothing changes', () => {
      const { mm } = makeMm({ scheme, pages: 64, vpages: 64 });
      mm.mmap({ start: 0, count: 4, populate: true });
      for (const r of [
        { start: 60, count: 5 },
        { start: -1, count: 1 },
        { start: 0, count: 0 },
      ]) {
        expectCodeNoChange(mm, () => mm.migrate(r), 'EINVAL', { mmStats: 'unchanged' });
      }
      expectCodeNoChange(mm, () => mm.migrate({ start: 0 } as never), 'EINVAL', { mmStats: 'unchanged' });
    });
  });

  describe('compact', () => {
    it('moves order-0 pages down to the lowest free PFNs, refusing maybe-pinned ones', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, vpages: 64 });
      mm.mmap({ start: 0, count: 8, populate: true });
      expect(pfnsOf(mm, 0, 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      mm.munmap({ start: 0, count: 4 });
      const r = mm.pinUserPagesFast(4, 1, { write: true }); // PFN 4
      const s0 = mm.stats();
      expect(mm.compact()).toBe(3);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migratedPages: 3, migrationRefusals: 1 }));
      // Highest first, each to a lower free page: 7 -> 0, 6 -> 1, 5 -> 2, 4 refused.
      expect(pfnsOf(mm, 4, 4)).toEqual([4, 2, 1, 0]);
      for (const p of [5, 6, 7]) expect(mem.refcount(p)).toBe(0);
      expect(mem.refcount(4)).toBe(1 + pinRefs(scheme, 0, true));
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mm.compact()).toBe(1); // 4 -> 3
      expect(pfnsOf(mm, 4, 4)).toEqual([3, 2, 1, 0]);
      expect(mm.compact()).toBe(0); // already compact
      // Everything above merged back: the whole upper half and more are free blocks again.
      expect(mem.freePages()).toBe(60);
      expect(mem.allocFolio(2)).toBe(4);
      expect(mem.allocFolio(5)).toBe(32);
    });

    it('leaves THPs and the zero page alone', () => {
      const { mem, mm } = makeMm({ scheme, pages: 2048, vpages: 2048 });
      mm.mmap({ start: 1024, count: 2 });
      mm.touch(1024, 2); // the zero page takes PFN 0
      mm.mmap({ start: 0, count: 4, populate: true }); // PFNs 1..4
      mm.mmap({ start: 512, count: 512, huge: true, populate: true });
      expect(mem.zeroPfn).toBe(0);
      expect(pfnsOf(mm, 0, 4)).toEqual([1, 2, 3, 4]);
      mm.munmap({ start: 0, count: 2 }); // frees PFNs 1 and 2
      const h = mm.translate(512)!.pfn;
      const s0 = mm.stats();
      expect(mm.compact()).toBe(2); // 4 -> 1, 3 -> 2
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { migratedPages: 2 }));
      expect(pfnsOf(mm, 2, 2)).toEqual([2, 1]);
      expect(mm.translate(512)!.pfn).toBe(h);
      expect(mm.translate(1024)!.pfn).toBe(0);
      expect(mem.zeroPfn).toBe(0);
    });
  });
});

it('PageArray-level pins of mapped pages are seen by fork and migration like gup pins', () => {
  const mem = new PageArray({ pages: 64, populated: false, debug: true, scheme: 'separate' });
  const mm = new AddressSpace(mem, { pages: 64 });
  mm.mmap({ start: 0, count: 2, populate: true });
  const p = mm.translate(0)!.pfn;
  mem.pinPages({ start: p, count: 1 });
  expect(mm.migrate({ start: 0, count: 1 })).toBe(0);
  expect(mm.stats().migrationRefusals).toBe(1);
  expect(mm.stats().migrationFalsePositives).toBe(0);
  mem.unpinPages({ start: p, count: 1 });
  expect(mm.migrate({ start: 0, count: 1 })).toBe(1);
});

// Regression: compaction takes the lowest free page below each page (not the allocator's
// usual choice, the lowest block of the smallest fitting order), so a free order-0 page
// above a free order-1 block does not stop it.
it('compact() moves pages down even when a higher order-0 page is free (allocator order vs compaction)', () => {
  const { mem, mm } = makeMm({ pages: 64, vpages: 64 });
  mm.mmap({ start: 0, count: 4, populate: true }); // PFNs 0..3
  expect(mem.allocFolio(0)).toBe(4); // leaves PFN 5 free as an order-0 block
  mm.munmap({ start: 0, count: 2 }); // PFNs 0 and 1 free: an order-1 block
  expect(mem.freePages()).toBe(64 - 3);
  // Lowest free PFNs are 0 and 1; mapped order-0 pages sit at 2 and 3 above them.
  expect(mm.compact()).toBe(2);
  expect(pfnsOf(mm, 2, 2).sort()).toEqual([0, 1]);
});
