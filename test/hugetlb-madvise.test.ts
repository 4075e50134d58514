// MADV_DONTNEED on hugetlb mappings, from the scenarios of the kernel's
// tools/testing/selftests/mm/hugetlb-madvise.c: the pool's free count (free_hugepages) before
// and after DONTNEED of private anonymous, shared anonymous, private file and shared file
// mappings; a shared mapping's next touch maps the same page; a private file mapping's next
// read maps the file's page again; pinned pages outlive the zap; ranges that cut a huge page
// are refused with nothing changed. Every scheme.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, SCHEMES, type Scheme } from '../lib/index.js';
import { expectPinlabError, expectReplayMatchesLive } from './helpers.js';

const H = 512; // pages of a 2 MiB hugetlb page
const NR = 4; // huge pages mapped

function world(scheme: Scheme, pool = 2 * NR): { mem: PageArray; mm: AddressSpace } {
  const mem = new PageArray({ pages: 24 * H, populated: false, scheme, debug: true });
  mem.setHugetlbPages(9, pool);
  return { mem, mm: new AddressSpace(mem, { pages: 16 * H }) };
}

const free = (mem: PageArray): number => mem.hugetlbPool(9).free;
const pfns = (mm: AddressSpace, start: number): (number | null)[] =>
  Array.from({ length: NR }, (_, k) => mm.translate(start + k * H)?.pfn ?? null);

function balanced(mem: PageArray): void {
  const s = mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
  expect(mem.hugetlbPool(9)).toMatchObject({ free: 2 * NR, reserved: 0, used: 0 });
  expect(mem.checkBalanced()).toEqual([]);
}

describe.each(SCHEMES)('hugetlb MADV_DONTNEED under %s', (scheme) => {
  it('private anonymous: the pages go back to the pool; an unaligned end rounds down', () => {
    const { mem, mm } = world(scheme);
    mm.mmap({ start: 0, count: NR * H, hugetlb: 9 });
    mm.touch(0, NR * H, { write: true });
    expect(free(mem)).toBe(NR);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed');
    expect(free(mem)).toBe(2 * NR);
    expect(pfns(mm, 0)).toEqual([null, null, null, null]);
    mm.touch(0, NR * H, { write: true }); // fresh pages, from the unreserved ones
    expect(free(mem)).toBe(NR);
    mm.madvise({ start: 0, count: NR * H - 1 }, 'dontneed'); // the last page stays
    expect(free(mem)).toBe(2 * NR - (1));
    expect(mm.translate((NR - 1) * H)).not.toBeNull();
    mm.dispose();
    balanced(mem);
  });

  it('shared anonymous: only the entries go; the next touch maps the same page', () => {
    const { mem, mm } = world(scheme);
    mm.mmap({ start: 0, count: NR * H, hugetlb: 9, shared: true });
    mm.touch(0, NR * H, { write: true });
    expect(free(mem)).toBe(NR);
    const before = pfns(mm, 0);
    const refs = mem.refcount(before[0]!);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed');
    expect(free(mem)).toBe(NR); // the pages stay in the (unlinked) file
    expect(pfns(mm, 0)).toEqual([null, null, null, null]);
    expect(mm.mappedPages).toBe(0);
    mm.touch(0, NR * H); // a read maps them again, writable as the mapping is
    expect(pfns(mm, 0)).toEqual(before);
    expect(mm.translate(0)).toMatchObject({ shared: true, writable: true });
    expect(mem.refcount(before[0]!)).toBe(refs);
    expect(free(mem)).toBe(NR);
    mm.munmap({ start: 0, count: H }); // the page goes with its last mapping
    mm.madvise({ start: H, count: H }, 'dontneed');
    mm.munmap({ start: H, count: H }); // zapped, then unmapped: its hold goes too
    expect(free(mem)).toBe(NR + 2);
    mm.dispose();
    balanced(mem);
  });

  it('private file: the copies go back to the pool; a read maps the file page again', () => {
    const { mem, mm } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: NR * H }); // fallocate
    expect(free(mem)).toBe(NR);
    mm.mmap({ start: 0, count: NR * H, file, shared: false });
    expect(mem.hugetlbPool(9)).toMatchObject({ free: NR, reserved: NR });
    mm.touch(0, NR * H); // reads map the file's pages
    expect(free(mem)).toBe(NR);
    mm.touch(0, NR * H, { write: true }); // writes copy them
    expect(free(mem)).toBe(0);
    const copies = pfns(mm, 0);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed');
    expect(free(mem)).toBe(NR); // the copies are freed, the file keeps its pages
    expect(pfns(mm, 0)).toEqual([null, null, null, null]);
    mm.touch(0, NR * H);
    expect(pfns(mm, 0)).toEqual(Array.from({ length: NR }, (_, k) => file.pfnAt(k * H)));
    expect(mm.translate(0)!.writable).toBe(false);
    mm.madvise({ start: 0, count: 2 * H }, 'dontneed'); // entries of the file's page: just go
    expect(free(mem)).toBe(NR);
    mm.touch(0, 1, { write: true }); // a write on the empty entry copies at once
    expect(mm.translate(0)!.pfn).not.toBe(file.pfnAt(0));
    expect(copies).not.toContain(null);
    expect(free(mem)).toBe(NR - 1);
    file.close(); // the mapping still holds every file page
    expect(mem.hugetlbPool(9).used).toBe(NR + 1);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed');
    mm.touch(0, NR * H);
    expect(pfns(mm, 0)).toEqual(Array.from({ length: NR }, (_, k) => file.pfnAt(k * H)));
    mm.dispose();
    balanced(mem);
  });

  it('shared file: the pages stay in the file; the next touch maps the same page', () => {
    const { mem, mm } = world(scheme);
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: NR * H });
    mm.mmap({ start: 0, count: NR * H, file });
    mm.touch(0, NR * H, { write: true });
    expect(free(mem)).toBe(NR);
    mm.madvise({ start: 0, count: NR * H }, 'dontneed');
    expect(free(mem)).toBe(NR);
    expect(mm.translate(0)).toBeNull();
    file.close(); // the closed file's pages live on in the mapping
    mm.touch(0, NR * H, { write: true });
    expect(pfns(mm, 0)).toEqual(Array.from({ length: NR }, (_, k) => file.pfnAt(k * H)));
    expect(free(mem)).toBe(NR);
    mm.dispose();
    balanced(mem);
  });

  it('pinned pages live on through their pins; a fork child maps the same shared page', () => {
    const { mem, mm } = world(scheme);
    mm.mmap({ start: 0, count: H, hugetlb: 9 });
    mm.mmap({ start: H, count: H, hugetlb: 9, shared: true });
    mm.touch(0, 2 * H, { write: true });
    const pin = mm.pinUserPagesFast(0, 2 * H, { write: true, longterm: true });
    expect(pin.count).toBe(2 * H);
    mm.madvise({ start: 0, count: 2 * H }, 'dontneed');
    expect(mm.translate(0)).toBeNull();
    expect(free(mem)).toBe(2 * NR - 2); // the private page lives by its pins alone
    expect(mem.maybeDmaPinned(pin.pfns[0]!)).toBe(true);
    const child = mm.fork();
    child.touch(H, 1);
    expect(child.translate(H)!.pfn).toBe(pin.pfns[H]);
    mm.touch(H, 1);
    expect(mm.translate(H)!.pfn).toBe(pin.pfns[H]);
    mm.unpinUserPages(pin.pfns, { write: true });
    expect(free(mem)).toBe(2 * NR - 1); // the private page went back at its last unpin
    child.dispose();
    mm.dispose();
    balanced(mem);
  });

  it('refuses a range that cuts a huge page or leaves the mappings, changing nothing', () => {
    const { mem, mm } = world(scheme);
    mm.mmap({ start: 0, count: 2 * H, hugetlb: 9, shared: true });
    const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
    mm.mmap({ start: 2 * H, count: 2 * H, file, shared: false });
    mm.touch(2 * H, 1, { write: true });
    const before = [pfns(mm, 0), mem.hugetlbPool(9), mm.mappedPages];
    expectPinlabError(() => mm.madvise({ start: 3, count: H }, 'dontneed'), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 2 * H + 1, count: H }, 'dontneed'), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 0, count: 5 * H }, 'dontneed'), 'ENOMEM');
    expectPinlabError(() => mm.madvise({ start: H, count: 3 }, 'dontfork'), 'EINVAL');
    expectPinlabError(() => mm.madvise({ start: 0, count: H }, 'pageout'), 'EINVAL');
    expect([pfns(mm, 0), mem.hugetlbPool(9), mm.mappedPages]).toEqual(before);
    mm.madvise({ start: 0, count: 3 }, 'dontneed'); // inside one page from its start: nothing
    expect([pfns(mm, 0), mem.hugetlbPool(9), mm.mappedPages]).toEqual(before);
    // MADV_DONTFORK of a shared mapping: the child has no region there.
    mm.madvise({ start: 0, count: 2 * H }, 'dontfork');
    const child = mm.fork();
    expectPinlabError(() => child.touch(0, 1), 'EFAULT');
    child.dispose();
    mm.madvise({ start: 0, count: 2 * H }, 'dofork');
    const child2 = mm.fork();
    child2.touch(0, 1);
    expect(child2.translate(0)!.pfn).toBe(mm.translate(0)!.pfn);
    child2.dispose();
    file.close();
    mm.dispose();
    balanced(mem);
  });
});

describe('hugetlb MADV_DONTNEED in op streams', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinlab-hugetlb-madvise-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a recording replays to the live state under every scheme', async () => {
    for (const scheme of SCHEMES) {
      const mem = new PageArray({ pages: 24 * H, populated: false, scheme, debug: true });
      const rec = mem.record(); // before the pool and the address space: the replay makes them
      mem.setHugetlbPages(9, 2 * NR);
      const mm = new AddressSpace(mem, { pages: 16 * H });
      const file = new HugetlbFile(mem, { name: 'f', order: 9, pages: 2 * H });
      mm.mmap({ start: 0, count: 2 * H, file });
      mm.mmap({ start: 2 * H, count: 2 * H, file, shared: false });
      mm.mmap({ start: 4 * H, count: H, hugetlb: 9, shared: true });
      mm.touch(0, 5 * H, { write: true });
      mm.madvise({ start: 0, count: 5 * H }, 'dontneed');
      const child = mm.fork(); // holds the zapped pages too
      file.close();
      mm.touch(H, H);
      mm.touch(2 * H, H);
      child.touch(4 * H, 1, { write: true });
      mm.madvise({ start: 4 * H, count: H }, 'dontfork');
      rec.stop();
      await expectReplayMatchesLive(rec, join(dir, `${scheme}.pkops`), mem, scheme);
      child.dispose();
      mm.dispose();
      balanced(mem);
    }
  });
});
