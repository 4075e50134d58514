// Issue 13: mremap (move, grow, shrink, MREMAP_FIXED, MREMAP_DONTUNMAP) and collapse
// (madvise 'collapse' = MADV_COLLAPSE, khugepaged) through the public API, under every scheme:
// pages and pins survive a move, THP leaves move whole or split, refusals change nothing, and
// collapse refuses pages with references beyond their mappings, classifying them per scheme.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, type Scheme } from '../lib/index.js';
import { expectCodeNoChange, makeMm, pfnsOf } from './mm-helpers.js';

describe('mremap', () => {
  for (const scheme of SCHEMES) {
    it(`moves pages with their pins (${scheme})`, () => {
      const { mem, mm } = makeMm({ scheme });
      mm.mmap({ start: 0, count: 32, populate: true });
      const before = pfnsOf(mm, 0, 32);
      const pin = mm.pinUserPagesFast(4, 8, { write: true, longterm: true });
      const at = mm.mremap({ start: 0, count: 32, newCount: 32, mayMove: true, fixed: true, newStart: 700 });
      expect(at).toBe(700);
      expect(pfnsOf(mm, 700, 32)).toEqual(before);
      expect(mm.translate(0)).toBeNull();
      for (const p of pin.pfns) expect(mem.maybeDmaPinned(p) || scheme === 'write-bias').toBe(true);
      // The pin still sees the process's writes at the new place (the entries kept PageAnonExclusive).
      mm.mprotect({ start: 700, count: 32, write: false });
      mm.mprotect({ start: 700, count: 32, write: true });
      mm.touch(704, 8, { write: true });
      expect(pfnsOf(mm, 704, 8)).toEqual(Array.from(pin.pfns));
      mm.unpinUserPages(pin.pfns, { write: true });
      const s = mem.stats();
      expect(s.pinAcquired).toBe(s.pinReleased);
      expect(mm.stats().remaps).toBe(1);
      expect(mm.stats().remapMovedPages).toBe(32);
      mm.munmap({ start: 0, count: mm.pages });
      expect(mem.freePages()).toBe(mem.pages);
    });
  }

  it('moves a THP whole when aligned, splits it when not', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 1024, populate: true, huge: true });
    const before = pfnsOf(mm, 0, 1024);
    mm.mremap({ start: 0, count: 512, newCount: 512, mayMove: true, fixed: true, newStart: 2048 });
    expect(mm.translate(2048)?.huge).toBe(true);
    mm.mremap({ start: 512, count: 512, newCount: 512, mayMove: true, fixed: true, newStart: 3001 });
    expect(mm.translate(3001)?.huge).toBe(false);
    expect([...pfnsOf(mm, 2048, 512), ...pfnsOf(mm, 3001, 512)]).toEqual(before);
  });

  it('grows in place, moves when blocked (preferring the same offset in 2 MiB), refuses without mayMove, shrinks', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 5, count: 10, populate: true });
    expect(mm.mremap({ start: 5, count: 10, newCount: 20 })).toBe(5);
    mm.mmap({ start: 25, count: 5 });
    expectCodeNoChange(mm, () => mm.mremap({ start: 5, count: 20, newCount: 30 }), 'ENOMEM');
    const at = mm.mremap({ start: 5, count: 20, newCount: 30, mayMove: true });
    expect(at % 512).toBe(5);
    expect(at).toBeGreaterThanOrEqual(30);
    expect(mm.mremap({ start: at, count: 30, newCount: 3 })).toBe(at);
    expect(() => mm.touch(at + 3, 1)).toThrow(/EFAULT|not in any mapped region/);
  });

  for (const scheme of SCHEMES) {
    it(`races gup_fast: a move between grab and recheck makes the walk let go (${scheme})`, () => {
      const { mem, mm } = makeMm({ scheme });
      mm.mmap({ start: 0, count: 512, populate: true, huge: true });
      let fired = false;
      mm.setRaceHook((point) => {
        if (point !== 'beforeRecheck' || fired) return;
        fired = true;
        mm.mremap({ start: 0, count: 512, newCount: 512, mayMove: true, fixed: true, newStart: 1024 });
      });
      const before = mm.stats().recheckFailures;
      const r = mm.pinUserPagesFast(0, 512, { fastOnly: true });
      mm.setRaceHook(null);
      expect(fired).toBe(true);
      expect(r.count).toBe(0); // the old place is empty now: nothing pinned
      expect(mm.stats().recheckFailures).toBe(before + 1);
      expect(mm.translate(1024)?.huge).toBe(true);
      const s = mem.stats();
      expect(s.pinAcquired).toBe(s.pinReleased);
    });
  }

  it('MREMAP_DONTUNMAP leaves the old region mapped and empty', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 4, populate: true });
    const before = pfnsOf(mm, 0, 4);
    const at = mm.mremap({ start: 0, count: 4, newCount: 4, mayMove: true, dontUnmap: true });
    expect(at).not.toBe(0);
    expect(pfnsOf(mm, at, 4)).toEqual(before);
    expect(mm.translate(0)).toBeNull();
    mm.touch(0, 1, { write: true }); // still a region: a fresh page
    expect(mm.translate(0)?.pfn).not.toBe(before[0]);
  });

  it('refuses bad and hostile arguments, changing nothing', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 16, populate: true });
    mm.mmap({ start: 16, count: 16, write: false });
    const cases: [() => unknown, 'EINVAL' | 'EFAULT' | 'ENOMEM'][] = [
      [() => mm.mremap({ start: 0, count: 16, newCount: 16, fixed: true, newStart: 100 }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 16, mayMove: true, fixed: true, newStart: 8 }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 16, newStart: 100 }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 8, mayMove: true, dontUnmap: true }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 0 }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 2 ** 40, mayMove: true }), 'EINVAL'],
      [() => mm.mremap({ start: -1, count: 1, newCount: 1 }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 16, mayMove: true, fixed: true, newStart: mm.pages - 1 }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 32, newCount: 32, mayMove: true }), 'EFAULT'],
      [() => mm.mremap({ start: 30, count: 8, newCount: 8, mayMove: true }), 'EFAULT'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 5000, mayMove: true }), 'EINVAL'],
      [() => mm.mremap({ start: 0, count: 16, newCount: 4090, mayMove: true }), 'ENOMEM'],
    ];
    for (const [fn, code] of cases) expectCodeNoChange(mm, fn, code, { mmStats: 'unchanged' });
    expect(() => mm.mremap({ start: 0, count: 16, newCount: 16, fixed: 'yes' } as never)).toThrow(/fixed must be a boolean/);
    expect(() => mm.mremap({ start: 0, count: 16 } as never)).toThrow(/newCount/);
    expect(() => mm.mremap({ start: 0, count: 16, newCount: 16, bogus: 1 } as never)).toThrow(/unknown option 'bogus'/);
    expect(() => mm.mremap(undefined as never)).toThrow(/mremap needs/);
  });

  it('moves a shared file mapping with its file: truncate zaps it at the new place', () => {
    const mem = new PageArray({ pages: 4096, populated: false, debug: true });
    const mm = new AddressSpace(mem, { pages: 4096 });
    const file = new PageCacheFile(mem, { name: 'f', pages: 8 });
    mm.mmap({ start: 0, count: 8, file });
    const before = pfnsOf(mm, 0, 8);
    const at = mm.mremap({ start: 0, count: 8, newCount: 8, mayMove: true, fixed: true, newStart: 100 });
    expect(pfnsOf(mm, at, 8)).toEqual(before);
    expect(mm.translate(100)?.shared).toBe(true);
    expect(() => mm.mremap({ start: 100, count: 8, newCount: 8, mayMove: true, dontUnmap: true })).toThrow(/dontUnmap of a file mapping \(shared or private\)/);
    file.truncate(4);
    expect(mm.translate(103)).not.toBeNull();
    expect(mm.translate(104)).toBeNull(); // zapped where the mapping is now
  });

  it('is recorded (op-stream format 3: mremap, madvise collapse, khugepaged), and its submit ends in the same state', () => {
    const mem = new PageArray({ pages: 4096, populated: false, debug: true });
    const rec = mem.record(); // before the first address space, as a recording must
    const mm = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: 4, populate: true });
    expect(mm.mremap({ start: 0, count: 4, newCount: 8 })).toBe(0);
    mm.mmap({ start: 512, count: 512, populate: true, huge: true });
    mm.mprotect({ start: 513, count: 1, write: false });
    mm.mprotect({ start: 513, count: 1, write: true });
    mm.madvise({ start: 512, count: 512 }, 'collapse');
    expect(mm.khugepaged().collapsed).toBe(0); // already PMD-mapped
    rec.stop();
    expect(rec.count).toBe(8);
    const again = new PageArray({ pages: 4096, populated: false, debug: true });
    const results = again.submit(rec.buffer());
    expect([...results]).toEqual([0, 0, 0, 0, 0, 0, 1, 0]); // mremap's start, collapse's THPs
    const mm2 = AddressSpace.byId(again, mm.id)!;
    for (let v = 0; v < 1024; v++) expect(mm2.translate(v), `vpage ${v}`).toEqual(mm.translate(v));
    expect(mm2.stats()).toEqual(mm.stats());
    expect(mm.translate(512)?.huge).toBe(true);
  });
});

/** A huge region at 512 whose 2 MiB THP is PTE-mapped (mprotect of one page and back). */
function pteMappedThp(scheme: Scheme, debug = true): { mem: PageArray; mm: AddressSpace } {
  const w = makeMm({ scheme, debug });
  w.mm.mmap({ start: 512, count: 512, populate: true, huge: true });
  w.mm.mprotect({ start: 513, count: 1, write: false });
  w.mm.mprotect({ start: 513, count: 1, write: true });
  expect(w.mm.translate(512)?.huge).toBe(false);
  return w;
}

describe('collapse (MADV_COLLAPSE, khugepaged)', () => {
  for (const scheme of SCHEMES) {
    it(`copies into a new THP, refuses pins and gets, counts the refusals (${scheme})`, () => {
      const { mem, mm } = pteMappedThp(scheme);
      const pin = mm.pinUserPagesFast(600, 1, { write: true });
      expectCodeNoChange(mm, () => mm.madvise({ start: 512, count: 512 }, 'collapse'), 'EAGAIN', {
        mmStats: { collapseMaybePinned: 512 },
      });
      mm.unpinUserPages(pin.pfns, { write: true });
      const get = mm.getUserPagesFast(600, 1);
      expectCodeNoChange(mm, () => mm.madvise({ start: 512, count: 512 }, 'collapse'), 'EAGAIN', {
        mmStats: { collapseBusy: 512 },
      });
      mm.putUserPages(get.pfns);
      const old = mm.translate(512)!.pfn;
      mm.madvise({ start: 512, count: 512 }, 'collapse');
      const now = mm.translate(512)!;
      expect(now.huge).toBe(true);
      expect(now.pfn).not.toBe(old);
      expect(mm.stats().collapses).toBe(1);
      expect(mm.stats().collapseFalsePositives).toBe(0);
      mm.munmap({ start: 0, count: mm.pages });
      expect(mem.freePages()).toBe(mem.pages);
    });
  }

  it('counts false positives where the scheme reports plain references as pins (bias, 1024 gets)', () => {
    for (const scheme of SCHEMES) {
      const { mem, mm } = makeMm({ scheme });
      mm.mmap({ start: 512, count: 512, huge: true });
      mm.touch(512, 1, { write: true }); // a THP ...
      mm.mprotect({ start: 513, count: 1, write: false }); // ... PTE-mapped
      mm.mprotect({ start: 513, count: 1, write: true });
      const pfn = mm.translate(512)!.pfn;
      mem.getPage(pfn, 1024);
      expect(() => mm.madvise({ start: 512, count: 512 }, 'collapse')).toThrow(/EAGAIN|references beyond/);
      const s = mm.stats();
      const maybe = mem.maybeDmaPinned(pfn);
      expect(s.collapseMaybePinned).toBe(maybe ? 512 : 0);
      expect(s.collapseFalsePositives).toBe(maybe ? 512 : 0);
      expect(s.collapseBusy).toBe(maybe ? 0 : 512);
      mem.putPage(pfn, 1024);
    }
  });

  it('khugepaged: limits, and hostile options', () => {
    const { mm } = pteMappedThp('hybrid');
    mm.madvise({ start: 512, count: 200 }, 'dontneed');
    expect(mm.khugepaged({ maxPtesNone: 100 })).toEqual({ collapsed: 0, scanned: 1 });
    expect(mm.khugepaged()).toEqual({ collapsed: 1, scanned: 1 });
    expect(mm.translate(512)?.huge).toBe(true);
    expect(mm.khugepaged()).toEqual({ collapsed: 0, scanned: 0 });
    for (const bad of [{ maxPtesNone: 512 }, { maxPtesNone: -1 }, { maxPtesShared: 513 }, { maxPtesNone: 1.5 }, { maxPtesShared: 'x' }]) {
      expectCodeNoChange(mm, () => mm.khugepaged(bad as never), 'EINVAL');
    }
    expect(() => mm.khugepaged({ bogus: 1 } as never)).toThrow(/unknown option 'bogus'/);
  });

  it('refusals change nothing: unmapped, nothing mapped, shared file mapping', () => {
    const { mem, mm } = pteMappedThp('separate');
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 1024 }, 'collapse'), 'ENOMEM', { mmStats: 'unchanged' });
    mm.mmap({ start: 2048, count: 512, huge: true });
    expectCodeNoChange(mm, () => mm.madvise({ start: 2048, count: 512 }, 'collapse'), 'EINVAL', { mmStats: 'unchanged' });
    const file = new PageCacheFile(mem, { name: 'f', pages: 4 });
    mm.mmap({ start: 3000, count: 4, file });
    expectCodeNoChange(mm, () => mm.madvise({ start: 3000, count: 4 }, 'collapse'), 'EINVAL', { mmStats: 'unchanged' });
  });

  it('collapses mTHPs, and a THP half of which mremap moved away (the moved half keeps the folio)', () => {
    const mem = new PageArray({ pages: 8192, populated: false, debug: true });
    const m2 = new AddressSpace(mem, { pages: 4096, thpOrders: [4] });
    m2.mmap({ start: 0, count: 512, huge: true });
    m2.touch(0, 512, { write: true }); // 32 mTHPs of 64 KiB
    expect(mem.folioOrder(m2.translate(0)!.pfn)).toBe(4);
    m2.madvise({ start: 0, count: 512 }, 'collapse');
    expect(m2.translate(0)?.huge).toBe(true);
    m2.munmap({ start: 0, count: 512 });
    // A PMD THP, its upper half moved away: collapse the lower half's stretch.
    const m3 = new AddressSpace(mem, { pages: 4096 });
    m3.mmap({ start: 1024, count: 512, populate: true, huge: true });
    const thp = pfnsOf(m3, 1024, 512);
    m3.mremap({ start: 1024 + 256, count: 256, newCount: 256, mayMove: true, fixed: true, newStart: 3000 });
    m3.mmap({ start: 1024 + 256, count: 256, huge: true }); // the hole, mapped again (the stretch needs one kind)
    m3.madvise({ start: 1024, count: 512 }, 'collapse');
    expect(m3.translate(1024)?.huge).toBe(true);
    expect(pfnsOf(m3, 3000, 256)).toEqual(thp.slice(256)); // the moved half still maps the old folio
    expect(mem.refcount(thp[0]!)).toBe(256);
    m3.munmap({ start: 0, count: m3.pages });
    m2.munmap({ start: 0, count: m2.pages });
    expect(mem.freePages()).toBe(mem.pages);
  });

  it('a forked child keeps its pages; the parent gets an exclusive THP', () => {
    const { mm } = pteMappedThp('bias');
    const child = mm.fork();
    const before = pfnsOf(child, 512, 512);
    // fork write-protected every entry: the kernel's collapse needs one writable (SCAN_PAGE_RO).
    expect(() => mm.madvise({ start: 512, count: 512 }, 'collapse')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    mm.touch(512, 1, { write: true }); // one COW copy makes a writable entry
    mm.madvise({ start: 512, count: 512 }, 'collapse');
    mm.touch(512, 512, { write: true });
    expect(pfnsOf(child, 512, 512)).toEqual(before);
    expect(mm.stats().cowCopies).toBe(1); // the THP is exclusive: written in place
    child.munmap({ start: 0, count: child.pages });
  });
});
