// hugetlb through the public API: the pool's accounting (total, free, reserved, used) shared by
// address spaces and forks, exhaustion at mmap, at a fault and at a COW, whole-page COW, fork
// and pins with balance under every scheme, and hostile arguments (unaligned ranges, partial
// unmaps, a pool too large, wrong types). Every refusal changes nothing.
import { describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, SCHEMES, type HugetlbOrder, type Scheme } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';

const H = 512; // pages of a 2 MiB hugetlb page

function world(scheme: Scheme = 'hybrid', pool = 4): { mem: PageArray; mm: AddressSpace } {
  const mem = new PageArray({ pages: 16 * H, populated: false, scheme, debug: true });
  mem.setHugetlbPages(9, pool);
  return { mem, mm: new AddressSpace(mem, { pages: 8 * H }) };
}

describe('the hugetlb pool', () => {
  it('is carved out of the page array and counts total, free, reserved and used', () => {
    const mem = new PageArray({ pages: 16 * H, populated: false });
    const free0 = mem.freePages();
    expect(mem.hugetlbPool(9)).toEqual({ order: 9, pageSizeKb: 2048, total: 0, free: 0, reserved: 0, used: 0 });
    mem.setHugetlbPages(9, 4);
    expect(mem.freePages()).toBe(free0 - 4 * H);
    const mm = new AddressSpace(mem, { pages: 8 * H });
    mm.mmap({ start: 0, count: 3 * H, hugetlb: 9 });
    expect(mem.hugetlbPool(9)).toMatchObject({ total: 4, free: 4, reserved: 3, used: 0 });
    mm.touch(H, 1); // a read fault allocates too (hugetlb has no zero page)
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 3, reserved: 2, used: 1 });
    expect(mm.translate(H)).toMatchObject({ huge: true, writable: false, zeroPage: false });
    // A second address space draws from the same pool.
    const other = new AddressSpace(mem, { pages: 8 * H });
    other.mmap({ start: 0, count: H, hugetlb: 9, shared: true });
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 2, reserved: 2, used: 2 });
    // munmap gives back the reservations it held and the pages it mapped.
    mm.munmap({ start: 0, count: 3 * H });
    other.dispose();
    expect(mem.hugetlbPool(9)).toMatchObject({ total: 4, free: 4, reserved: 0, used: 0 });
    mem.setHugetlbPages(9, 0);
    expect(mem.freePages()).toBe(free0);
  });

  it('refuses what it cannot do, and changes nothing', () => {
    const mem = new PageArray({ pages: 8 * H, populated: false });
    mem.allocFolio(0); // one 2 MiB block is no longer whole
    expectPinlabError(() => mem.setHugetlbPages(9, 8), 'ENOMEM'); // 7 whole blocks
    expect(mem.hugetlbPool(9).total).toBe(0);
    expectPinlabError(() => mem.setHugetlbPages(9, 9), 'EINVAL'); // more than the array holds
    expectPinlabError(() => mem.setHugetlbPages(18, 1), 'EINVAL'); // no 1 GiB page in 16 MiB
    expectPinlabError(() => mem.setHugetlbPages(10 as HugetlbOrder, 1), 'EINVAL');
    expectPinlabError(() => mem.setHugetlbPages(9, -1), 'EINVAL');
    expectPinlabError(() => mem.setHugetlbPages(9, 2 ** 53), 'EINVAL');
    expectPinlabError(() => mem.setHugetlbPages(9, 1.5), 'EINVAL');
    expectPinlabError(() => mem.setHugetlbPages('9' as unknown as HugetlbOrder, 1), 'EINVAL');
    expectPinlabError(() => mem.hugetlbPool(12 as HugetlbOrder), 'EINVAL');
    mem.setHugetlbPages(9, 2);
    const mm = new AddressSpace(mem, { pages: 4 * H });
    mm.mmap({ start: 0, count: H, hugetlb: 9, populate: true });
    expectPinlabError(() => mem.setHugetlbPages(9, 0), 'EBUSY'); // a page is in use
    expect(mem.hugetlbPool(9)).toMatchObject({ total: 2, used: 1 });
    mem.setHugetlbPages(9, 1); // the free one can go
    expect(mem.hugetlbPool(9)).toMatchObject({ total: 1, free: 0 });
  });
});

describe('hugetlb mappings', () => {
  it('refuse unaligned ranges and cuts through a huge page (EINVAL), changing nothing', () => {
    const { mem, mm } = world();
    expectPinlabError(() => mm.mmap({ start: 1, count: H, hugetlb: 9 }), 'EINVAL');
    expectPinlabError(() => mm.mmap({ start: 0, count: H + 1, hugetlb: 9 }), 'EINVAL');
    expectPinlabError(() => mm.mmap({ start: 0, count: H, hugetlb: 18 }), 'EINVAL');
    expectPinlabError(() => mm.mmap({ start: 0, count: H, hugetlb: 9, huge: true }), 'EINVAL');
    expectPinlabError(() => mm.mmap({ start: 0, count: H, hugetlb: 7 as HugetlbOrder }), 'EINVAL');
    expectPinlabError(() => mm.mmap({ start: 0, count: H, shared: true }), 'EINVAL'); // shared needs hugetlb
    expect(mm.regions).toBe(0);
    expect(mem.hugetlbPool(9).reserved).toBe(0);
    mm.mmap({ start: 0, count: 2 * H, hugetlb: 9, populate: true });
    const before = [mm.translate(0), mm.translate(H)];
    expectPinlabError(() => mm.munmap({ start: 0, count: 1 }), 'EINVAL');
    expectPinlabError(() => mm.munmap({ start: 10, count: H }), 'EINVAL');
    expectPinlabError(() => mm.mprotect({ start: 0, count: H + 1, write: false }), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 3, count: 1 }, 'dontneed'), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 0, count: 7 }, 'dontfork'), 'EINVAL');
    expect([mm.translate(0), mm.translate(H)]).toEqual(before);
    // Whole pages work: MADV_DONTNEED zaps one, the next touch faults a fresh page in.
    mm.madvise({ start: H, count: H }, 'dontneed');
    expect(mm.translate(H)).toBeNull();
    mm.touch(H + 5, 1, { write: true });
    expect(mm.translate(H)!.huge).toBe(true);
  });

  it('exhaustion: mmap reserves (ENOMEM), a COW without a free page is SIGBUS (EFAULT)', () => {
    const { mem, mm } = world('hybrid', 2);
    expectPinlabError(() => mm.mmap({ start: 0, count: 3 * H, hugetlb: 9 }), 'ENOMEM');
    expect(mm.regions).toBe(0);
    mm.mmap({ start: 0, count: 2 * H, hugetlb: 9, populate: true });
    const child = mm.fork(); // shares both pages read-only: no page needed
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 0, used: 2 });
    const before = mm.translate(0)!.pfn;
    expectPinlabError(() => mm.touch(0, 1, { write: true }), 'EFAULT');
    expect(mm.translate(0)!.pfn).toBe(before);
    // A pin must unshare the page first: the same failure, nothing pinned.
    expectPinlabError(() => mm.pinUserPages(0, 1, { write: true }), 'EFAULT');
    expect(mem.stats().pinAcquired).toBe(0);
    child.dispose(); // now the pages are the parent's alone: reused in place
    mm.touch(0, 2 * H, { write: true });
    expect(mm.translate(0)!.pfn).toBe(before);
    expect(mm.stats().cowReuses).toBe(2 * H);
  });

  it('MAP_SHARED: one set of pages for every fork, pinned long-term for write', () => {
    const { mem, mm } = world();
    mm.mmap({ start: 0, count: H, hugetlb: 9, shared: true });
    const child = mm.fork();
    child.touch(0, H, { write: true });
    expect(child.translate(0)!.pfn).toBe(mm.translate(0)!.pfn);
    expect(child.translate(0)!.shared).toBe(true);
    const pin = child.pinUserPagesFast(0, H, { write: true, longterm: true });
    expect(pin.count).toBe(H);
    expect(pin.pfns[0]).toBe(mm.translate(0)!.pfn);
    child.madvise({ start: 0, count: H }, 'dontneed'); // the entries go, the pinned page stays
    expect(child.translate(0)).toBeNull();
    child.touch(0, 1); // and is mapped again
    expect(child.translate(0)!.pfn).toBe(pin.pfns[0]);
    expect(child.stats().slowPathFallbacks).toBe(0); // FOLL_LONGTERM|FOLL_WRITE of hugetlb: the fast path takes it
    child.unpinUserPages(pin.pfns, { write: true });
    child.dispose();
    mm.dispose();
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 4, used: 0 });
  });

  it('hugetlb files: shared maps the file pages, private copies on write; close gives them back', () => {
    const { mem, mm } = world();
    expectPinlabError(() => new HugetlbFile(mem, { name: 'f', order: 9, pages: 100 }), 'EINVAL');
    expectPinlabError(() => new HugetlbFile(mem, { name: 'f', order: 9, pages: 10 * H }), 'ENOMEM'); // the pool has 4
    expect(mem.hugetlbPool(9).used).toBe(0);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
    expect(mem.hugetlbPool(9).used).toBe(2);
    // Unmapped, unpinned, one reference (the file's): a THP would split; a pool page never does.
    expectPinlabError(() => mem.splitFolio(file.pfnAt(0)), 'EBUSY');
    expect(mem.folioOrder(file.pfnAt(0))).toBe(9);
    mm.mmap({ start: 0, count: 2 * H, file });
    mm.mmap({ start: 4 * H, count: H, file, offset: H, shared: false });
    expect(mm.translate(4 * H)!.pfn).toBe(file.pfnAt(H));
    expect(mm.translate(4 * H)!.writable).toBe(false);
    expectPinlabError(() => mm.mmap({ start: 6 * H, count: H, file, offset: 7 }), 'EINVAL');
    expectPinlabError(() => mm.mmap({ start: 6 * H, count: H, file, hugetlb: 18 }), 'EINVAL');
    mm.touch(4 * H, 1, { write: true }); // COW from the file page into the reserved copy
    expect(mm.translate(4 * H)!.pfn).not.toBe(file.pfnAt(H));
    expect(mm.translate(H)!.pfn).toBe(file.pfnAt(H)); // the shared mapping still sees the file
    // A short-term read pin of the private mapping's file page would pin it as is; here the
    // page is already the mapping's own copy.
    file.close();
    expect(mem.hugetlbPool(9).used).toBe(3); // still mapped: 2 file pages, 1 copy
    mm.dispose();
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 4, reserved: 0, used: 0 });
    expectPinlabError(() => mm.mmap({ start: 0, count: H, file }), 'EINVAL'); // disposed / closed
  });

  for (const scheme of SCHEMES) {
    it(`pins, fork and whole-page COW balance under ${scheme}`, () => {
      const { mem, mm } = world(scheme, 4);
      mm.mmap({ start: 0, count: 2 * H, hugetlb: 9 });
      mm.touch(0, 2 * H, { write: true });
      const pin = mm.pinUserPagesFast(100, 700, { write: true, longterm: true }); // across both pages
      expect(pin.count).toBe(700);
      expect(mem.maybeDmaPinned(pin.pfns[0]!)).toBe(true);
      const child = mm.fork(); // both pinned: both copied into the child at once
      expect(mm.stats().earlyCowCopies).toBe(2 * H);
      expect(child.translate(0)!.pfn).not.toBe(mm.translate(0)!.pfn);
      mm.touch(0, 2 * H, { write: true });
      expect(mm.translate(100)!.pfn).toBe(pin.pfns[0]); // the pin sees the parent's writes
      mm.unpinUserPages(pin.pfns, { write: true });
      child.dispose(); // its copies go back to the pool
      const child2 = mm.fork(); // nothing pinned now: shared, then copied whole on write
      child2.touch(5, 1, { write: true });
      expect(child2.translate(0)!.pfn).not.toBe(mm.translate(0)!.pfn);
      expect(child2.translate(H)!.pfn).toBe(mm.translate(H)!.pfn); // the other page still shared
      expect(child2.stats().cowCopies).toBe(H);
      child2.dispose();
      mm.dispose();
      const s = mem.stats();
      expect(s.pinAcquired).toBe(s.pinReleased);
      expect(mem.hugetlbPool(9)).toMatchObject({ free: 4, reserved: 0, used: 0 });
      expect(mem.checkBalanced()).toEqual([]);
    });
  }
});
