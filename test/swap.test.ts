// Issue 13: MADV_PAGEOUT and swap-in through the public API (madvise 'pageout', swapEntry,
// swapUsage, swappedPages, the swapPages option): round trips, maybe-pinned folios kept with
// their false positives counted under every scheme, fork sharing swap entries and the swap
// cache, the SWP_EXCLUSIVE marker, a full swap, hostile arguments, the balance at the end.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, type Scheme } from '../lib/index.js';
import { native } from '../lib/native.js';
import { nativeOf } from '../lib/page-array.js';
import { expectPinlabError } from './helpers.js';

function world(scheme: Scheme = 'hybrid', options: { swapPages?: number; debug?: boolean } = {}): { mem: PageArray; mm: AddressSpace } {
  const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: options.debug ?? true });
  const mm = new AddressSpace(mem, { pages: 2048, ...(options.swapPages === undefined ? {} : { swapPages: options.swapPages }) });
  return { mem, mm };
}

/** Everything unmapped in every address space given: every page and every slot free again. */
function expectAllFree(mem: PageArray, ...mms: AddressSpace[]): void {
  for (const mm of mms) mm.munmap({ start: 0, count: mm.pages });
  expect(mms[0]!.swapUsage()).toMatchObject({ used: 0, cached: 0 });
  expect(mem.freePages()).toBe(mem.pages - (mem.zeroPfn === null ? 0 : 1));
}

describe('MADV_PAGEOUT and swap-in', () => {
  it('swaps pages out (the folios freed) and a fault brings each back, exclusive', () => {
    const { mem, mm } = world();
    mm.mmap({ start: 0, count: 8 });
    mm.touch(0, 8, { write: true });
    const free = mem.freePages();
    mm.madvise({ start: 0, count: 8 }, 'pageout');
    expect(mem.freePages()).toBe(free + 8);
    expect(mm.swappedPages).toBe(8);
    expect(mm.mappedPages).toBe(0);
    expect(mm.translate(3)).toBeNull(); // not present
    expect(mm.swapEntry(3)).toMatchObject({ exclusive: true });
    expect(mm.swapUsage()).toEqual({ pages: 2048, used: 8, cached: 0 }); // default: as many slots as pages
    expect(mm.stats()).toMatchObject({ pagedOutPages: 8, pageoutRefusals: 0, pageoutBusy: 0 });
    mm.touch(0, 1); // a read fault swaps it in
    const tr = mm.translate(0)!;
    expect(tr.writable).toBe(true); // exclusive in a writable region
    expect(mm.swapEntry(0)).toBeNull();
    const copies = mm.stats().cowCopies;
    mm.touch(0, 1, { write: true });
    expect(mm.translate(0)!.pfn).toBe(tr.pfn); // no copy
    expect(mm.stats().cowCopies).toBe(copies);
    expect(mm.stats().swapIns).toBe(1);
    // gup_fast bails on a swap entry; the slow path swaps it in and pins the page it maps.
    const pin = mm.pinUserPagesFast(1, 2, { write: true });
    expect(pin.count).toBe(2);
    expect(Array.from(pin.pfns)).toEqual([mm.translate(1)!.pfn, mm.translate(2)!.pfn]);
    mm.unpinUserPages(pin.pfns, { write: true });
    expectAllFree(mem, mm);
  });

  it('swaps a PMD THP out whole, split into swap PTEs', () => {
    const { mem, mm } = world();
    mm.mmap({ start: 0, count: 512, populate: true, huge: true });
    expect(mm.translate(0)!.huge).toBe(true);
    mm.madvise({ start: 0, count: 512 }, 'pageout');
    expect(mm.swappedPages).toBe(512);
    expect(mm.stats().pagedOutPages).toBe(512);
    mm.touch(0, 512, { write: true });
    expect(mm.translate(0)!.huge).toBe(false); // back as 4 KiB pages
    expectAllFree(mem, mm);
  });

  for (const scheme of SCHEMES) {
    it(`keeps maybe-pinned folios, counting false positives exactly (${scheme})`, () => {
      const { mem, mm } = world(scheme);
      mm.mmap({ start: 0, count: 3 });
      mm.touch(0, 3, { write: true });
      const pin = mm.pinUserPagesFast(0, 1, { write: true });
      const busy = mm.translate(1)!.pfn;
      mem.getPage(busy, 1100); // plain references: a false positive where the bias counts them
      const fp = mem.maybeDmaPinned(busy);
      mm.madvise({ start: 0, count: 3 }, 'pageout');
      expect(mm.translate(0)!.pfn).toBe(pin.pfns[0]); // the pinned page stays mapped
      expect(mm.translate(1) !== null).toBe(fp);
      expect(mm.swapEntry(2)).not.toBeNull();
      expect(mm.stats()).toMatchObject({ pageoutRefusals: fp ? 2 : 1, pageoutFalsePositives: fp ? 1 : 0 });
      if (!fp) {
        // Unmapped, but its references keep it in the swap cache: the next read maps it again.
        expect(mm.swapUsage().cached).toBe(1);
        mm.touch(1, 1);
        expect(mm.translate(1)!.pfn).toBe(busy);
        expect(mm.stats().swapCacheHits).toBe(1);
      }
      // A put can never take the swap cache's or a mapping's references: only the 1100 given.
      for (let i = 0; i < 1100; i++) mem.putPage(busy);
      mm.unpinUserPages(pin.pfns, { write: true });
      expectAllFree(mem, mm);
    });
  }

  it('fork shares swap entries (marker cleared) and both sides fault the same swap-cache page', () => {
    const { mem, mm } = world('bias');
    mm.mmap({ start: 0, count: 2 });
    mm.touch(0, 2, { write: true });
    mm.madvise({ start: 0, count: 2 }, 'pageout');
    const free = mem.freePages();
    const child = mm.fork();
    expect(mem.freePages()).toBe(free); // fork copied entries, not memory
    expect(child.swapEntry(0)!.slot).toBe(mm.swapEntry(0)!.slot);
    expect(mm.swapEntry(0)!.exclusive).toBe(false);
    expect(child.swapEntry(0)!.exclusive).toBe(false);
    expect(mm.swapUsage()).toMatchObject({ used: 2, cached: 0 });
    child.touch(0, 1); // the child reads: the page goes into the swap cache ...
    expect(child.swapUsage().cached).toBe(1);
    mm.touch(0, 1); // ... and the parent's read maps the same page
    expect(mm.translate(0)!.pfn).toBe(child.translate(0)!.pfn);
    expect(mm.translate(0)!.writable).toBe(false);
    expect(mm.stats().swapCacheHits).toBe(1);
    mm.touch(0, 1, { write: true }); // the parent's write copies; the child keeps the old page
    expect(mm.translate(0)!.pfn).not.toBe(child.translate(0)!.pfn);
    // The child exits: its entry of page 1 goes; the parent is alone with it again.
    child.munmap({ start: 0, count: child.pages });
    expect(mm.swapUsage().used).toBe(1);
    mm.touch(1, 1);
    expect(mm.translate(1)!.writable).toBe(true); // one reference: its own, exclusive
    expectAllFree(mem, mm);
  });

  it('a full swap keeps the pages; swapPages 0 is a machine without swap; forks share the device', () => {
    const { mem, mm } = world('hybrid', { swapPages: 3 });
    mm.mmap({ start: 0, count: 5 });
    mm.touch(0, 5, { write: true });
    mm.madvise({ start: 0, count: 5 }, 'pageout');
    expect(mm.stats()).toMatchObject({ pagedOutPages: 3, pageoutBusy: 2 });
    expect(mm.swapUsage()).toEqual({ pages: 3, used: 3, cached: 0 });
    const child = mm.fork();
    expect(child.swapUsage()).toEqual({ pages: 3, used: 3, cached: 0 }); // inherited: the same device
    child.munmap({ start: 0, count: child.pages });
    expectAllFree(mem, mm);
    const none = world('bias', { swapPages: 0 });
    none.mm.mmap({ start: 0, count: 2, populate: true });
    none.mm.madvise({ start: 0, count: 2 }, 'pageout');
    expect(none.mm.swappedPages).toBe(0);
    expect(none.mm.mappedPages).toBe(2);
  });

  it('refuses bad calls, changing nothing; skips the zero page and shared folios', () => {
    const { mem, mm } = world();
    mm.mmap({ start: 0, count: 4 });
    mm.touch(0, 2); // the zero page
    mm.touch(2, 2, { write: true });
    expectPinlabError(() => mm.madvise({ start: 2, count: 4 }, 'pageout'), 'ENOMEM'); // a hole
    expect(mm.translate(2)).not.toBeNull();
    mm.madvise({ start: 2, count: 0 }, 'pageout'); // an empty range: done, nothing paged out
    expect(mm.swapEntry(2)).toBeNull();
    expectPinlabError(() => mm.madvise({ start: -1, count: 1 }, 'pageout'), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 2, count: 1 }, 'page-out' as never), 'EINVAL');
    expect(mm.swapEntry(-1)).toBeNull(); // as translate(-1)
    expectPinlabError(() => mm.swapEntry(1.5), 'EINVAL');
    expect(mm.swapEntry(10 ** 6)).toBeNull();
    const raw = new native.NativeAddressSpace(nativeOf(mem), 16);
    raw.mmap(0, 4, true, true, false);
    expectPinlabError(() => raw.madvise(0, 4, 4), 'EINVAL', /advice/); // the addon checks the advice too
    raw.dispose();
    for (const swapPages of [-1, 1.5, 2 ** 31 + 1, '8', Number.NaN]) {
      expectPinlabError(() => new AddressSpace(mem, { pages: 16, swapPages } as never), 'EINVAL', /swapPages/);
    }
    // The addon checks them itself.
    expectPinlabError(() => new native.NativeAddressSpace(nativeOf(mem), 16, undefined, undefined, -3), 'EINVAL', /swapPages/);
    expectPinlabError(() => new native.NativeAddressSpace(nativeOf(mem), 16, undefined, undefined, 2 ** 40), 'EINVAL', /swapPages/);
    mm.madvise({ start: 0, count: 4 }, 'pageout');
    expect(mm.translate(0)!.zeroPage).toBe(true); // never swapped
    expect(mm.swappedPages).toBe(2);
    mm.touch(2, 1, { write: true });
    const child = mm.fork(); // page 2 is COW-shared now: not this mm's to reclaim alone
    mm.madvise({ start: 2, count: 1 }, 'pageout');
    expect(mm.translate(2)).not.toBeNull();
    expect(mm.stats().pageoutBusy).toBe(1);
    child.munmap({ start: 0, count: child.pages });
    expectAllFree(mem, mm);
  });

  it('a disposed address space refuses the swap calls with EINVAL', () => {
    const { mm } = world();
    mm.mmap({ start: 0, count: 4, populate: true });
    mm.madvise({ start: 0, count: 4 }, 'pageout');
    mm.dispose();
    expectPinlabError(() => mm.swapEntry(0), 'EINVAL');
    expectPinlabError(() => mm.swapUsage(), 'EINVAL');
    expectPinlabError(() => mm.swappedPages, 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 0, count: 4 }, 'pageout'), 'EINVAL');
  });
});
