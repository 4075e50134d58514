// Attack round 27 (a hostile user and a kernel reviewer): refused file and bio releases change
// nothing, even after references were put or pages reshaped behind the file's or bio's back;
// madvise and mprotect of an empty range succeed as the kernel's do.
import { describe, expect, it } from 'vitest';

import { AddressSpace, Bio, HugetlbFile, PageArray, PageCacheFile, SCHEMES, bioAddPage, stateDigest } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';

const H = 512;

describe.each(SCHEMES)('attack 27 under %s', (scheme) => {
  it('a truncate refused by a put the file cannot make changes nothing (folios merged behind its back)', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 4 });
    mm.mmap({ start: 0, count: 4, file: f });
    mm.munmap({ start: 0, count: 4 });
    mem.makeFolio(f.pfnAt(0)!, 2); // the page cache's four references are now one folio's one
    mm.mmap({ start: 8, count: 4, file: f });
    const before = stateDigest(mem);
    // Mapped four times over, the merged folio's four puts would take the mappings' references.
    expectPinlabError(() => f.truncate(0), 'EBUSY', /page-table mappings/);
    expectPinlabError(() => f.punchHole(0, 4), 'EBUSY');
    expectPinlabError(() => mm.madvise({ start: 8, count: 4 }, 'remove'), 'EBUSY');
    expect(stateDigest(mem)).toEqual(before);
    expect(f.cachedPages).toBe(4);
    expect(f.size).toBe(4);
    expect(mm.translate(8)!.pfn).toBe(f.pfnAt(0));
    mm.munmap({ start: 8, count: 4 });
    const unmapped = stateDigest(mem);
    expectPinlabError(() => f.truncate(0), 'EINVAL', /below 0/); // unmapped: below zero
    expect(stateDigest(mem)).toEqual(unmapped);
    expect(f.cachedPages).toBe(4);
  });

  it('a hole punch refused after a FOLL_GET reference was put twice changes nothing', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 4 });
    mm.mmap({ start: 0, count: 4, file: f });
    const { pfns } = mm.getUserPagesFast(3, 1);
    mm.putUserPages(pfns);
    mm.putUserPages(pfns); // the page cache's reference on page 3 went with it
    const before = stateDigest(mem);
    expectPinlabError(() => f.punchHole(0, 4), 'EBUSY', /page-table mappings/);
    expect(stateDigest(mem)).toEqual(before);
    expect(mm.translate(0)!.pfn).toBe(f.pfnAt(0));
    f.punchHole(0, 2); // the pages whose references are intact go
    expect(mm.translate(0)).toBeNull();
    expect(mm.translate(3)!.pfn).toBe(f.pfnAt(3));
  });

  it('a hugetlb file whose reference was put behind its back: close and punch refuse, changing nothing', () => {
    const mem = new PageArray({ pages: 8 * H, populated: false, scheme, debug: true });
    mem.setHugetlbPages(9, 3);
    const mm = new AddressSpace(mem, { pages: 8 * H });
    const file = new HugetlbFile(mem, { name: 'h', order: 9, pages: 2 * H });
    const other = new HugetlbFile(mem, { name: 'o', order: 9, pages: H });
    mm.mmap({ start: 0, count: 2 * H, file });
    mm.mmap({ start: 4 * H, count: H, file: other });
    mem.putPage(file.pfnAt(H), 1); // the file's reference on its second page
    const before = stateDigest(mem);
    const pool = mem.hugetlbPool(9);
    expectPinlabError(() => file.close(), 'EBUSY');
    expect(file.closed).toBe(false);
    expectPinlabError(() => file.punchHole(0, 2 * H), 'EBUSY');
    // MADV_REMOVE over both files: the second's refusal comes before the first is punched.
    expectPinlabError(() => mm.madvise({ start: 0, count: 5 * H }, 'remove'), 'ENOMEM'); // a gap
    mm.munmap({ start: 4 * H, count: H });
    mm.mmap({ start: 2 * H, count: H, file: other });
    const before2 = stateDigest(mem);
    expectPinlabError(() => mm.madvise({ start: 0, count: 3 * H }, 'remove'), 'EBUSY');
    expect(stateDigest(mem)).toEqual(before2);
    expect(other.cachedPages).toBe(H);
    expect(mem.hugetlbPool(9)).toEqual(pool);
    expect(before).not.toBeNull();
    mm.dispose();
  });

  it('close on a disposed page array is refused and leaves the file open', () => {
    const mem = new PageArray({ pages: 4 * H, populated: false, scheme });
    mem.setHugetlbPages(9, 1);
    const file = new HugetlbFile(mem, { name: 'h', order: 9, pages: H });
    mem.dispose();
    expectPinlabError(() => file.close(), 'EINVAL');
    expect(file.closed).toBe(false);
  });

  it("a bio's completion refused by one take changes none: every take is released or none", () => {
    const mem = new PageArray({ pages: 64, scheme, debug: true });
    const owner = mem.pinOwner('dev');
    const bio = new Bio(mem, { policy: 'all-pins', owner });
    bioAddPage(bio, 1);
    bioAddPage(bio, 2);
    mem.unpinPages({ start: 2, count: 1 }, { owner }); // behind the bio's back
    const before = stateDigest(mem);
    expectPinlabError(() => bio.complete(), 'ENOTPINNED');
    expect(stateDigest(mem)).toEqual(before); // page 1 still pinned, as the digest's pincounts say
    expect(bio.completed).toBe(false);
    mem.pinPages({ start: 2, count: 1 }, { owner }); // put back what the bio holds
    bio.complete();
    expect(bio.completed).toBe(true);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it("a 'flagged' bio's puts are checked before its pins go", () => {
    const mem = new PageArray({ pages: 64, scheme, debug: true });
    const bio = new Bio(mem, { policy: 'flagged', write: true });
    bioAddPage(bio, 1); // a plain reference
    bioAddPage(bio, 2, { count: 2 });
    mem.putPage(3, 1); // the bio's reference on page 3, behind its back
    mem.putPage(3, 1); // and the page's own
    const before = stateDigest(mem);
    expectPinlabError(() => bio.complete(), 'EINVAL', /below 0/);
    expect(stateDigest(mem)).toEqual(before);
    expect(mem.isDirty(1)).toBe(false);
    expect(bio.completed).toBe(false);
  });

  it('madvise and mprotect of an empty range succeed and change nothing; munmap of one is EINVAL', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 1024 });
    mm.mmap({ start: 0, count: 8, populate: true });
    const before = stateDigest(mem);
    for (const advice of ['dontneed', 'dontfork', 'dofork', 'pageout', 'collapse', 'remove'] as const) {
      mm.madvise({ start: 0, count: 0 }, advice);
      mm.madvise({ start: 100000, count: 0 }, advice); // outside the space: still done
    }
    mm.mprotect({ start: 0, count: 0, write: false });
    mm.mprotect({ start: 5000, count: 0, write: true });
    expect(stateDigest(mem)).toEqual(before);
    expect(mm.translate(0)!.writable).toBe(true);
    expectPinlabError(() => mm.munmap({ start: 0, count: 0 }), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: -1, count: 0 }, 'dontneed'), 'EINVAL');
    expectPinlabError(() => mm.mprotect({ start: -1, count: 0, write: true }), 'EINVAL');
    mm.dispose();
    expectPinlabError(() => mm.madvise({ start: 0, count: 0 }, 'dontneed'), 'EINVAL', /disposed/);
    expectPinlabError(() => mm.mprotect({ start: 0, count: 0, write: true }), 'EINVAL', /disposed/);
  });
});

// gup_fast's page-cache decisions for FOLL_LONGTERM, as the kernel's gup_fast_folio_allowed
// (shmem and hugetlb need no dirty tracking: pinned by the fast path) and gup_must_unshare
// without a vma (a read-only page-cache entry under a long-term read pin: the slow path's).
describe.each(SCHEMES)('gup_fast and page cache under FOLL_LONGTERM, %s', (scheme) => {
  const world = (rules: 'mainline' | '2019', shmem: boolean) => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 4096, rules });
    const f = new PageCacheFile(mem, { name: 'f', pages: 16, shmem });
    mm.mmap({ start: 0, count: 16, file: f });
    mm.touch(0, 16, { write: true });
    return { mem, mm, f };
  };

  it('a long-term write pin of shmem takes the fast path; of a regular file, the slow path refuses it', () => {
    const shm = world('mainline', true);
    expect(shm.mm.pinUserPagesFast(0, 16, { write: true, longterm: true, fastOnly: true }).count).toBe(16);
    expect(shm.mm.stats()).toMatchObject({ fastPathPages: 16, slowPathFallbacks: 0 });
    const reg = world('mainline', false);
    expect(reg.mm.pinUserPagesFast(0, 16, { write: true, longterm: true, fastOnly: true }).count).toBe(0);
    expectPinlabError(() => reg.mm.pinUserPagesFast(0, 16, { write: true, longterm: true }), 'EFAULT');
    expect(reg.mem.stats().pinAcquired).toBe(0);
    const old = world('2019', false); // no dirty-tracking rule then: pinned by the fast path
    expect(old.mm.pinUserPagesFast(0, 16, { write: true, longterm: true, fastOnly: true }).count).toBe(16);
  });

  it('a long-term read pin through a read-only page-cache entry leaves the fast path; a short-term one does not', () => {
    for (const shmem of [false, true]) {
      const { mm, f } = world('mainline', shmem);
      mm.mprotect({ start: 0, count: 16, write: false });
      expect(mm.pinUserPagesFast(0, 16, { longterm: true, fastOnly: true }).count).toBe(0);
      const slow = mm.pinUserPagesFast(0, 16, { longterm: true }); // the slow path: shared, pinned as it is
      expect(slow.count).toBe(16);
      expect(slow.pfns[0]).toBe(f.pfnAt(0));
      expect(mm.stats()).toMatchObject({ fastPathPages: 0, slowPathFallbacks: 1 });
      expect(mm.pinUserPagesFast(0, 16, { fastOnly: true }).count).toBe(16); // short-term
      mm.mprotect({ start: 0, count: 16, write: true }); // the entries stay read-only until a write
      mm.touch(0, 16, { write: true });
      expect(mm.pinUserPagesFast(0, 16, { longterm: true, fastOnly: true }).count).toBe(16); // writable: fine
    }
    const old = world('2019', false);
    old.mm.mprotect({ start: 0, count: 16, write: false });
    expect(old.mm.pinUserPagesFast(0, 16, { longterm: true, fastOnly: true }).count).toBe(16);
  });

  it("a short-term read pin of a private hugetlb mapping's file page takes the fast path", () => {
    const mem = new PageArray({ pages: 8 * 512, populated: false, scheme });
    mem.setHugetlbPages(9, 2);
    const mm = new AddressSpace(mem, { pages: 4096 });
    const file = new HugetlbFile(mem, { name: 'h', order: 9, pages: 512 });
    mm.mmap({ start: 0, count: 512, file, shared: false });
    mm.touch(0, 1);
    const short = mm.pinUserPagesFast(0, 512, { fastOnly: true });
    expect(short.count).toBe(512);
    expect(short.pfns[0]).toBe(file.pfnAt(0)); // the file's page, not a copy
    expect(mm.pinUserPagesFast(0, 512, { longterm: true, fastOnly: true }).count).toBe(0); // must unshare
  });
});

// Review of round 27: a zap puts the references its mappings hold without an entry (after
// MADV_DONTNEED) besides its entries'; the files' checks count them, so a reference put behind
// the file's back refuses the truncate or punch before anything is zapped or freed.
describe.each(SCHEMES)('held references and the files\' checks, %s', (scheme) => {
  it('a page-cache punch after DONTNEED and a put behind its back is refused whole', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 4 });
    mm.mmap({ start: 0, count: 4, file: f });
    const pfn = f.pfnAt(0)!;
    mm.madvise({ start: 0, count: 4 }, 'dontneed'); // the entries go, the references stay held
    mem.putPage(pfn); // behind the file's back
    const before = stateDigest(mem);
    expectPinlabError(() => f.punchHole(0, 4), 'EINVAL', /below 0/);
    expectPinlabError(() => f.truncate(0), 'EINVAL', /below 0/);
    expectPinlabError(() => mm.madvise({ start: 0, count: 4 }, 'remove'), 'EINVAL', /below 0/);
    expect(stateDigest(mem)).toEqual(before);
    expect(mem.refcount(pfn)).toBe(1); // still the held one: not freed under the file
    expect(f.cachedPages).toBe(4);
  });

  it('a hugetlb punch after DONTNEED and a put behind its back is refused whole, closed or not', () => {
    const mem = new PageArray({ pages: 8 * H, populated: false, scheme, debug: true });
    mem.setHugetlbPages(9, 2);
    const mm = new AddressSpace(mem, { pages: 8 * H });
    const file = new HugetlbFile(mem, { name: 'h', order: 9, pages: H });
    mm.mmap({ start: 0, count: H, file });
    mm.touch(0, H, { write: true });
    mm.madvise({ start: 0, count: H }, 'dontneed');
    const pfn = file.pfnAt(0);
    mem.putPage(pfn); // behind the file's back: the file's and the hold's, one of them
    const before = stateDigest(mem);
    const pool = mem.hugetlbPool(9);
    expectPinlabError(() => file.punchHole(0, H), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 0, count: H }, 'remove'), 'EINVAL');
    expect(stateDigest(mem)).toEqual(before);
    expect(mem.hugetlbPool(9)).toEqual(pool);
    expect(file.cachedPages).toBe(H);
  });
});

describe('zappedMappings counts the address spaces that still map the file', () => {
  it('a disposed address space is not counted', () => {
    const mem = new PageArray({ pages: 4096, populated: false });
    const a = new AddressSpace(mem, { pages: 1024 });
    const b = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 4 });
    a.mmap({ start: 0, count: 4, file: f });
    b.mmap({ start: 8, count: 4, file: f });
    b.dispose();
    expect(f.truncate(0).zappedMappings).toBe(1);
    a.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });
});
