// MADV_DONTFORK and MADV_DOFORK of file mappings (VM_DONTCOPY takes any mapping in the kernel:
// madvise_behavior sets it on the vma whatever backs it): a shared page-cache mapping and a
// private one (its page-cache entries and its anonymous copies) stay out of fork's child. The
// child maps nothing there, takes no reference on the file's pages for it, makes no early copy
// of a pinned private copy, and is not among the file's mappings, so a truncate or hole punch
// leaves its other memory alone; MADV_DOFORK puts the range back. Every scheme.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, stateDigest, type Scheme } from '../lib/index.js';
import { expectFileTestBalanced, expectPinlabError, expectReplayMatchesLive } from './helpers.js';

const N = 8; // file pages

function world(scheme: Scheme): { mem: PageArray; mm: AddressSpace; file: PageCacheFile } {
  const mem = new PageArray({ pages: 1024, populated: false, scheme, debug: true });
  const mm = new AddressSpace(mem, { pages: 256 });
  const file = new PageCacheFile(mem, { name: 'f', pages: N });
  return { mem, mm, file };
}

const dir = mkdtempSync(join(tmpdir(), 'pinlab-dontfork-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const refsOf = (mem: PageArray, file: PageCacheFile): number[] =>
  Array.from({ length: N }, (_, i) => mem.refcount(file.pfnAt(i)!));

describe.each(SCHEMES)('MADV_DONTFORK of file mappings under %s', (scheme) => {
  it('a shared page-cache mapping stays with the parent: the child maps nothing and holds nothing there', () => {
    const { mem, mm, file } = world(scheme);
    mm.mmap({ start: 16, count: N, file });
    mm.mmap({ start: 64, count: 4, populate: true }); // anonymous memory beside it
    mm.touch(16, N, { write: true });
    const refs = refsOf(mem, file);
    mm.madvise({ start: 16, count: N }, 'dontfork');
    const child = mm.fork();
    expect(child.translate(16)).toBeNull();
    expectPinlabError(() => child.touch(16, 1), 'EFAULT'); // no region in the child
    expect(refsOf(mem, file)).toEqual(refs); // the child took no reference on the file's pages
    expect(file.mappingsOf(child)).toEqual([]);
    expect(file.mappingsOf(mm)).toHaveLength(1);
    // The child's anonymous memory is COW-shared as usual, and a truncate leaves it alone.
    const anon = child.translate(64)!.pfn;
    expect(anon).toBe(mm.translate(64)!.pfn);
    const report = file.truncate(0);
    expect(report.zappedMappings).toBe(1); // the parent's mapping only
    expect(child.translate(64)!.pfn).toBe(anon);
    expect(mm.translate(16)).toBeNull();
    child.dispose();
    mm.munmap({ start: 16, count: N });
    expectFileTestBalanced(mem, [mm], file);
  });

  it('MADV_DOFORK puts the range back: the next child maps the same pages, with one reference each', () => {
    const { mem, mm, file } = world(scheme);
    mm.mmap({ start: 16, count: N, file });
    mm.touch(16, N);
    mm.madvise({ start: 16, count: N }, 'dontfork');
    mm.madvise({ start: 18, count: 2 }, 'dofork'); // part of it: the region is cut
    const refs = refsOf(mem, file);
    const child = mm.fork();
    expect(child.translate(16)).toBeNull();
    expect(child.translate(18)!.pfn).toBe(file.pfnAt(2));
    expect(child.translate(19)!.pfn).toBe(file.pfnAt(3));
    expect(child.translate(20)).toBeNull();
    expect(refsOf(mem, file)).toEqual(refs.map((r, i) => (i === 2 || i === 3 ? r + 1 : r)));
    expect(file.mappingsOf(child).map((m) => [m.start, m.offset, m.count])).toEqual([[18, 2, 2]]);
    // A hole punch of the whole file reaches the child's two pages, and nothing else of it.
    const report = file.punchHole(0, N);
    expect(report.zappedMappings).toBe(2);
    expect(child.translate(18)).toBeNull();
    child.dispose();
    mm.munmap({ start: 16, count: N });
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('a shared mapping whose entries were zapped by DONTNEED: the child takes none of the held pages', () => {
    const { mem, mm, file } = world(scheme);
    mm.mmap({ start: 16, count: N, file });
    mm.touch(16, N);
    mm.madvise({ start: 16, count: N }, 'dontneed'); // the mapping holds each page without an entry
    mm.madvise({ start: 16, count: N }, 'dontfork');
    const refs = refsOf(mem, file);
    const child = mm.fork();
    expect(refsOf(mem, file)).toEqual(refs);
    child.dispose();
    expect(refsOf(mem, file)).toEqual(refs);
    mm.touch(16, N); // the parent maps the same pages again
    expect(mm.translate(16)!.pfn).toBe(file.pfnAt(0));
    mm.munmap({ start: 16, count: N });
    expectFileTestBalanced(mem, [mm], file);
  });

  it('a private file mapping with a pinned copy: the child neither maps it nor copies it early', () => {
    const { mem, mm, file } = world(scheme);
    mm.mmap({ start: 16, count: N, file, shared: false, write: true });
    mm.touch(16, 2, { write: true }); // two private copies, the rest page-cache entries
    const copy = mm.translate(16)!.pfn;
    expect(copy).not.toBe(file.pfnAt(0));
    const pin = mm.pinUserPages(16, 1, { write: true }).pfns;
    mm.madvise({ start: 16, count: N }, 'dontfork');
    const refs = refsOf(mem, file);
    const copyRefs = mem.refcount(copy);
    const earlyCopies = mm.stats().earlyCowCopies;
    const child = mm.fork();
    expect(child.translate(16)).toBeNull();
    expect(child.translate(18)).toBeNull();
    expect(mm.stats().earlyCowCopies).toBe(earlyCopies); // nothing to copy: the range stays home
    expect(mem.refcount(copy)).toBe(copyRefs);
    expect(refsOf(mem, file)).toEqual(refs);
    expect(file.mappingsOf(child)).toEqual([]);
    // The parent's copy stays writable and its own: a write reuses it.
    mm.touch(16, 1, { write: true });
    expect(mm.translate(16)!.pfn).toBe(copy);
    // MADV_DOFORK: the next child shares the private mapping (the copies COW, the file pages mapped).
    mm.madvise({ start: 16, count: N }, 'dofork');
    const second = mm.fork();
    expect(second.translate(18)!.pfn).toBe(file.pfnAt(2));
    expect(file.mappingsOf(second)).toHaveLength(1);
    mm.unpinUserPages(pin, { write: true });
    child.dispose();
    second.dispose();
    mm.munmap({ start: 16, count: N });
    expectFileTestBalanced(mem, [mm], file);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it("DONTNEED and PAGEOUT of a private file mapping stay EINVAL, and DONTFORK's refusals change nothing", () => {
    const { mem, mm, file } = world(scheme);
    mm.mmap({ start: 16, count: N, file, shared: false });
    mm.mmap({ start: 32, count: N, file });
    const before = stateDigest(mem);
    expectPinlabError(() => mm.madvise({ start: 16, count: 2 }, 'dontneed'), 'EINVAL', /private/);
    expectPinlabError(() => mm.madvise({ start: 16, count: 2 }, 'pageout'), 'EINVAL', /private/);
    expectPinlabError(() => mm.madvise({ start: 16, count: 40 }, 'dontfork'), 'ENOMEM'); // 40.. unmapped
    expect(stateDigest(mem)).toEqual(before);
    const child = mm.fork(); // nothing was marked: the child maps both
    expect(child.translate(16)!.pfn).toBe(file.pfnAt(0));
    expect(child.translate(32)!.pfn).toBe(file.pfnAt(0));
    child.dispose();
  });

  it('a recording with DONTFORK of both kinds of file mapping replays to the live state', async () => {
    const mem = new PageArray({ pages: 1024, populated: false, scheme, debug: true });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 256 });
    const file = new PageCacheFile(mem, { name: 'f', pages: N });
    mm.mmap({ start: 16, count: N, file });
    mm.mmap({ start: 32, count: N, file, shared: false, write: true });
    mm.touch(32, 3, { write: true });
    mm.madvise({ start: 16, count: 4 }, 'dontfork');
    mm.madvise({ start: 34, count: 4 }, 'dontfork');
    const child = mm.fork();
    child.touch(20, 2);
    child.touch(32, 2, { write: true });
    file.punchHole(6, 2);
    rec.stop();
    await expectReplayMatchesLive(rec, join(dir, `${scheme}.pkops`), mem, scheme);
  });
});
