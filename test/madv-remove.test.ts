// MADV_REMOVE and hugetlb hole punch, from the kernel's tools/testing/selftests/mm/
// hugetlb-madvise.c ("Basic functional testing of madvise MADV_DONTNEED and MADV_REMOVE on
// hugetlb mappings"): the pool's free count after fallocate, faults, DONTNEED, MADV_REMOVE of a
// shared mapping and FALLOC_FL_PUNCH_HOLE, with private mappings of the same file (whose
// copies hugetlbfs frees too). Then madvise_remove's refusals (EINVAL anonymous, EACCES
// private file, ENOMEM unmapped) with nothing changed, a page-cache file's punch through a
// shared mapping, pins, fork, rounding, and replays. Every scheme.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, PageCacheFile, SCHEMES, stateDigest, type Scheme } from '../lib/index.js';
import { expectPinlabError, expectReplayMatchesLive } from './helpers.js';

const H = 512; // pages of a 2 MiB hugetlb page
const NR = 10; // the selftest's NR_HUGE_PAGES
const POOL = 20; // its MIN_FREE_PAGES

function world(scheme: Scheme): { mem: PageArray; mm: AddressSpace; free: () => number } {
  const mem = new PageArray({ pages: 64 * H, populated: false, scheme, debug: true });
  mem.setHugetlbPages(9, POOL);
  return { mem, mm: new AddressSpace(mem, { pages: 64 * H }), free: () => mem.hugetlbPool(9).free };
}

function balanced(mem: PageArray): void {
  const s = mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
  expect(mem.hugetlbPool(9)).toMatchObject({ free: POOL, reserved: 0, used: 0 });
  expect(mem.checkBalanced()).toEqual([]);
}

const dir = mkdtempSync(join(tmpdir(), 'pinlab-madv-remove-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each(SCHEMES)('hugetlb-madvise.c, MADV_REMOVE and hole punch, under %s', (scheme) => {
  it('private mapping of a hugetlb file: the punch frees the file pages and the private copies', () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: NR * H }); // fallocate
    expect(free()).toBe(POOL - NR);
    mm.mmap({ start: 0, count: NR * H, file, shared: false });
    mm.touch(0, NR * H); // read should not consume any pages
    expect(free()).toBe(POOL - NR);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed'); // should not free any pages
    expect(free()).toBe(POOL - NR);
    mm.touch(0, NR * H, { write: true }); // writes allocate private pages
    expect(free()).toBe(POOL - 2 * NR);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed'); // frees the private pages
    expect(free()).toBe(POOL - NR);
    mm.touch(0, NR * H, { write: true });
    expect(free()).toBe(POOL - 2 * NR);
    // "pages in the private mapping are also freed. This is not the 'correct' behavior, but is
    // expected because this is how it has worked since the initial hugetlb implementation."
    const report = file.punchHole(0, NR * H);
    expect(report).toEqual({ removedPages: NR * H, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 1 });
    expect(free()).toBe(POOL);
    expect(file.cachedPages).toBe(0);
    expect(mm.translate(0)).toBeNull();
    expectPinlabError(() => mm.touch(0, 1), 'EFAULT'); // the model's SIGBUS: a hole
    expectPinlabError(() => file.pfnAt(0), 'EINVAL', /hole/);
    mm.munmap({ start: 0, count: NR * H });
    expect(free()).toBe(POOL);
    file.close();
    mm.dispose();
    balanced(mem);
  });

  it('shared mapping: DONTNEED frees nothing, MADV_REMOVE frees every page', () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: NR * H });
    file.punchHole(0, NR * H);
    expect(free()).toBe(POOL);
    expect(file.fallocate(0, NR * H)).toBe(NR * H);
    expect(free()).toBe(POOL - NR);
    mm.mmap({ start: 0, count: NR * H, file });
    mm.touch(0, NR * H, { write: true }); // should not consume any pages
    expect(free()).toBe(POOL - NR);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed');
    expect(free()).toBe(POOL - NR);
    mm.madvise({ start: 0, count: NR * H }, 'remove'); // same as hole punch
    expect(free()).toBe(POOL);
    expect(file.cachedPages).toBe(0);
    mm.munmap({ start: 0, count: NR * H });
    file.close();
    mm.dispose();
    balanced(mem);
  });

  it('shared and private mappings: MADV_REMOVE of the shared one frees the private copies too', () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: NR * H });
    mm.mmap({ start: 0, count: NR * H, file });
    mm.touch(0, NR * H, { write: true }); // shared write: no additional pages
    expect(free()).toBe(POOL - NR);
    const priv = 32 * H;
    mm.mmap({ start: priv, count: NR * H, file, shared: false });
    mm.touch(priv, NR * H); // private read: none
    expect(free()).toBe(POOL - NR);
    mm.touch(priv, NR * H, { write: true }); // private write: additional pages
    expect(free()).toBe(POOL - 2 * NR);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed'); // of the shared one: frees nothing
    expect(free()).toBe(POOL - 2 * NR);
    mm.madvise({ start: priv, count: NR * H }, 'dontneed'); // of the private one: its copies
    expect(free()).toBe(POOL - NR);
    mm.touch(priv, NR * H, { write: true });
    expect(free()).toBe(POOL - 2 * NR);
    mm.madvise({ start: 0, count: NR * H }, 'remove');
    expect(free()).toBe(POOL);
    for (const v of [0, priv, priv + (NR - 1) * H]) expect(mm.translate(v)).toBeNull();
    mm.munmap({ start: 0, count: NR * H });
    mm.munmap({ start: priv, count: NR * H });
    file.close();
    mm.dispose();
    balanced(mem);
  });

  it('a pinned page leaves the file and stays allocated until its pin goes', () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
    mm.mmap({ start: 0, count: 2 * H, file });
    const { pfns } = mm.pinUserPagesFast(0, H, { write: true, longterm: true });
    expect(mem.maybeDmaPinned(pfns[0]!)).toBe(true);
    mm.madvise({ start: 0, count: 2 * H }, 'remove');
    expect(free()).toBe(POOL - 1); // the pinned page only
    expect(mem.maybeDmaPinned(pfns[0]!)).toBe(true);
    expect(mm.translate(0)).toBeNull();
    mm.unpinUserPages(pfns, { write: true });
    expect(free()).toBe(POOL);
    expect(file.punchHole(0, 2 * H).removedPages).toBe(0); // holes already
    file.close();
    mm.dispose();
    balanced(mem);
  });

  it('the punch reports a page a pin keeps', () => {
    const { mem, mm } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
    mm.mmap({ start: 0, count: 2 * H, file });
    const { pfns } = mm.pinUserPages(H, 1);
    expect(file.punchHole(0, 2 * H)).toEqual({ removedPages: 2 * H, stillReferencedPages: H, brokenLeases: [], zappedMappings: 1 });
    mm.unpinUserPages(pfns);
    file.close();
    mm.dispose();
    balanced(mem);
  });

  it("a fork's child loses its mappings of the pages too, but not a range it never inherited", () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
    mm.mmap({ start: 0, count: 2 * H, file });
    mm.madvise({ start: H, count: H }, 'dontfork');
    const child = mm.fork();
    expect(child.translate(0)!.pfn).toBe(file.pfnAt(0));
    expect(child.translate(H)).toBeNull();
    // The child maps something else where it did not inherit the file: the punch leaves it.
    child.mmap({ start: H, count: H, hugetlb: 9 });
    child.touch(H, 1, { write: true });
    const own = child.translate(H)!.pfn;
    mm.madvise({ start: 0, count: 2 * H }, 'remove');
    expect(child.translate(0)).toBeNull();
    expect(child.translate(H)!.pfn).toBe(own);
    child.dispose();
    mm.dispose();
    expect(free()).toBe(POOL);
    file.close();
    balanced(mem);
  });

  it('rounds the file range inward to whole huge pages; a closed file punches through its mapping', () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 3 * H });
    mm.mmap({ start: 0, count: 3 * H, file });
    mm.madvise({ start: 1, count: H }, 'remove'); // covers no huge page whole: nothing
    expect(free()).toBe(POOL - 3);
    mm.madvise({ start: H / 2, count: 2 * H }, 'remove'); // the middle one only
    expect(free()).toBe(POOL - 2);
    expect(mm.translate(H)).toBeNull();
    expect(mm.translate(0)!.pfn).toBe(file.pfnAt(0));
    file.close(); // the mapping keeps the file's pages
    expect(free()).toBe(POOL - 2);
    mm.madvise({ start: 0, count: 3 * H }, 'remove');
    expect(free()).toBe(POOL);
    mm.dispose();
    balanced(mem);
  });

  it("refusals change nothing: anonymous memory, private file mappings, unmapped pages", () => {
    const { mem, mm } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
    const pc = new PageCacheFile(mem, { name: 'p', pages: 64 });
    mm.mmap({ start: 0, count: 2 * H, file }); // shared
    mm.mmap({ start: 2 * H, count: H, file, shared: false }); // private hugetlb file
    mm.mmap({ start: 3 * H, count: 64 }); // anonymous
    mm.mmap({ start: 4 * H, count: 64, file: pc, shared: false }); // private page cache
    mm.mmap({ start: 5 * H, count: H, hugetlb: 9 }); // private anonymous hugetlb
    mm.mmap({ start: 6 * H, count: H, hugetlb: 9, shared: true }); // shared anonymous hugetlb
    mm.touch(0, 3 * H + 64, { write: true });
    const before = stateDigest(mem);
    expectPinlabError(() => mm.madvise({ start: 0, count: 3 * H }, 'remove'), 'EACCES', /private file/);
    expectPinlabError(() => mm.madvise({ start: 3 * H, count: 64 }, 'remove'), 'EINVAL', /anonymous/);
    expectPinlabError(() => mm.madvise({ start: 4 * H, count: 64 }, 'remove'), 'EACCES');
    expectPinlabError(() => mm.madvise({ start: 5 * H, count: H }, 'remove'), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 6 * H, count: H }, 'remove'), 'EINVAL', /not modelled/);
    expectPinlabError(() => mm.madvise({ start: H, count: 2 * H + 64 }, 'remove'), 'EACCES'); // the shared part first is not punched
    expectPinlabError(() => mm.madvise({ start: 3 * H + 64, count: 1 }, 'remove'), 'ENOMEM');
    expectPinlabError(() => mm.madvise({ start: 0, count: 2 * H + 1 }, 'remove'), 'EACCES');
    expectPinlabError(() => mm.madvise({ start: 63 * H, count: 2 * H }, 'remove'), 'EINVAL'); // past the end
    expect(stateDigest(mem)).toEqual(before);
    expect(file.cachedPages).toBe(2 * H);
    expectPinlabError(() => file.punchHole(1, H), 'EINVAL');
    expectPinlabError(() => file.punchHole(0, 3 * H), 'EINVAL');
    expectPinlabError(() => file.fallocate(0, H + 1), 'EINVAL');
    expect(stateDigest(mem)).toEqual(before);
    mm.dispose();
    file.close();
    expectPinlabError(() => file.punchHole(0, H), 'EINVAL', /closed/);
    expectPinlabError(() => file.fallocate(0, H), 'EINVAL', /closed/);
    balanced(mem);
  });

  it('fallocate fills holes all or none, and a mapping over a hole fills it', () => {
    const { mem, mm, free } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 4 * H });
    file.punchHole(H, 2 * H);
    expect(file.cachedPages).toBe(2 * H);
    const hog = new HugetlbFile(mem, { name: 'hog', order: 9, pages: (POOL - 3) * H }); // one left
    const before = stateDigest(mem);
    expectPinlabError(() => file.fallocate(0, 4 * H), 'ENOMEM');
    expectPinlabError(() => mm.mmap({ start: 0, count: 4 * H, file }), 'ENOMEM');
    expect(stateDigest(mem)).toEqual(before);
    expect(file.fallocate(0, 2 * H)).toBe(H); // the hole at H
    expect(free()).toBe(0);
    hog.close();
    mm.mmap({ start: 0, count: 4 * H, file }); // fills the hole at 2H
    expect(file.cachedPages).toBe(4 * H);
    expect(mm.translate(2 * H)!.pfn).toBe(file.pfnAt(2 * H));
    mm.dispose();
    file.close();
    balanced(mem);
  });

  it('a recording of punches and MADV_REMOVE replays to the live state', async () => {
    const mem = new PageArray({ pages: 64 * H, populated: false, scheme, debug: true });
    const rec = mem.record();
    mem.setHugetlbPages(9, POOL);
    const mm = new AddressSpace(mem, { pages: 64 * H });
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 4 * H });
    const pc = new PageCacheFile(mem, { name: 'p', pages: 64, shmem: true });
    mm.mmap({ start: 0, count: 4 * H, file });
    mm.mmap({ start: 8 * H, count: 4 * H, file, shared: false });
    mm.mmap({ start: 16 * H, count: 64, file: pc });
    mm.touch(0, 4 * H, { write: true });
    mm.touch(8 * H, 2 * H, { write: true });
    mm.touch(16 * H, 64, { write: true });
    const child = mm.fork();
    const { pfns } = mm.pinUserPages(0, 8, { write: true });
    mm.madvise({ start: 0, count: 2 * H }, 'remove');
    mm.madvise({ start: 16 * H + 8, count: 16 }, 'remove');
    file.fallocate(0, 4 * H);
    file.punchHole(3 * H, H);
    mm.unpinUserPages(pfns, { write: true });
    rec.stop();
    await expectReplayMatchesLive(rec, join(dir, `${scheme}.pkops`), mem, scheme);
    child.dispose();
    mm.dispose();
    file.close();
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe('MADV_REMOVE of a shared page-cache mapping', () => {
  it('punches the file (rounded inward to folios); unleased long-term pins refuse it whole', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme: 'separate', debug: true });
    const mm = new AddressSpace(mem, { pages: 4096 });
    const file = new PageCacheFile(mem, { name: 'data', pages: 64, folioOrder: 2, shmem: true });
    mm.mmap({ start: 0, count: 64, file, offset: 0 });
    mm.mmap({ start: 128, count: 32, file, offset: 32 }); // a second mapping of the tail
    mm.touch(0, 64, { write: true });
    mm.madvise({ start: 2, count: 12 }, 'remove'); // folios 1 and 2 (pages 4..11); 0 and 3 stay
    expect([0, 3, 4, 11, 12].map((i) => file.pfnAt(i) === null)).toEqual([false, false, true, true, false]);
    expect(mm.translate(4)).toBeNull();
    expectPinlabError(() => mm.touch(4, 1), 'EFAULT');
    expect(file.cachedPages).toBe(56);

    const rdma = mem.pinOwner('rdma', { kind: 'device' });
    const { pfns } = mm.pinUserPagesFast(130, 2, { write: true, longterm: true, owner: rdma }); // file pages 34, 35
    const before = stateDigest(mem);
    // Through the first mapping, which the pins did not use: the file's pages are the same.
    expectPinlabError(() => mm.madvise({ start: 32, count: 8 }, 'remove'), 'EBUSY', /without a layout lease/);
    // Refused whole: a range whose first piece alone could be punched changes nothing either.
    expectPinlabError(() => mm.madvise({ start: 16, count: 48 }, 'remove'), 'EBUSY');
    expect(stateDigest(mem)).toEqual(before);
    const breaks: unknown[] = [];
    file.takeLease(rdma, { onBreak: (b) => breaks.push(b) });
    mm.madvise({ start: 128, count: 32 }, 'remove');
    expect(breaks).toHaveLength(1);
    expect(mm.translate(32)).toBeNull(); // the other mapping's entries went too
    expect(mem.maybeDmaPinned(pfns[0]!)).toBe(true); // pinned pages outlive the punch
    mm.unpinUserPages(pfns, { write: true, owner: rdma });
    mm.dispose();
    file.truncate(0);
    expect(mem.checkBalanced()).toEqual([]);
  });
});
