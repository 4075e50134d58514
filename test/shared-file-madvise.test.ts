// MADV_DONTNEED on shared page-cache file mappings: only the entries go, the file keeps its
// pages, and the next touch maps the same page again (the mapping holds each zapped page);
// truncate and hole punch drop those holds (SIGBUS after), munmap, mremap and fork carry them,
// pins outlive the zap, and a recording replays to the live state. Every scheme.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, type Scheme } from '../lib/index.js';
import { expectFileTestBalanced, expectPinlabError, expectReplayMatchesLive } from './helpers.js';

const N = 16; // file pages

function world(scheme: Scheme): { mem: PageArray; mm: AddressSpace; file: PageCacheFile } {
  const mem = new PageArray({ pages: 512, populated: false, scheme, debug: true });
  const mm = new AddressSpace(mem, { pages: 256 });
  const file = new PageCacheFile(mem, { name: 'f', pages: N });
  mm.mmap({ start: 16, count: N, file });
  return { mem, mm, file };
}

const cache = (file: PageCacheFile): number[] => Array.from({ length: N }, (_, i) => file.pfnAt(i)!);
const mapped = (mm: AddressSpace, start: number): (number | null)[] =>
  Array.from({ length: N }, (_, i) => mm.translate(start + i)?.pfn ?? null);

function balanced(mem: PageArray, mms: AddressSpace[], file: PageCacheFile): void {
  expectFileTestBalanced(mem, mms, file);
  expect(mem.checkBalanced()).toEqual([]);
}

describe.each(SCHEMES)('shared file MADV_DONTNEED under %s', (scheme) => {
  it('zaps the entries only; the next touch maps the same page, writable as the mapping is', () => {
    const { mem, mm, file } = world(scheme);
    mm.touch(16, N, { write: true });
    const pages = cache(file);
    const refs = pages.map((p) => mem.refcount(p));
    mm.madvise({ start: 20, count: 8 }, 'dontneed');
    expect(mm.mappedPages).toBe(N - 8);
    expect(mm.translate(20)).toBeNull();
    expect(cache(file)).toEqual(pages); // the file keeps its pages
    expect(pages.map((p) => mem.refcount(p))).toEqual(refs); // each zapped page held by the mapping
    mm.touch(16, N); // reads
    expect(mapped(mm, 16)).toEqual(pages);
    // A regular file wants write notification: mapped again read-only, until a write faults.
    expect(mm.translate(20)).toMatchObject({ shared: true, writable: false });
    mm.touch(20, 1, { write: true });
    expect(mm.translate(20)).toMatchObject({ shared: true, writable: true });
    expect(pages.map((p) => mem.refcount(p))).toEqual(refs);
    expect(mm.stats().cowCopies).toBe(0);
    balanced(mem, [mm], file);
  });

  it('truncate and hole punch drop the zapped pages: the next touch is SIGBUS (EFAULT)', () => {
    const { mem, mm, file } = world(scheme);
    const pages = cache(file);
    mm.madvise({ start: 16, count: N }, 'dontneed');
    file.punchHole(2, 2);
    expect(mem.refcount(pages[2]!)).toBe(0); // freed: no hold is left on it
    expectPinlabError(() => mm.touch(18, 1), 'EFAULT');
    file.truncate(8);
    expect(mem.refcount(pages[10]!)).toBe(0);
    expectPinlabError(() => mm.touch(26, 1), 'EFAULT');
    mm.touch(16, 2); // the pages the file kept
    expect(mapped(mm, 16).slice(0, 2)).toEqual(pages.slice(0, 2));
    balanced(mem, [mm], file);
  });

  it('munmap, mremap and fork carry the holds; pins outlive the zap', () => {
    const { mem, mm, file } = world(scheme);
    const pages = cache(file);
    const pin = mm.pinUserPagesFast(16, 4, { write: true });
    mm.madvise({ start: 16, count: N }, 'dontneed');
    expect(mem.maybeDmaPinned(pages[0]!)).toBe(true);
    const child = mm.fork();
    child.touch(16, N);
    expect(mapped(child, 16)).toEqual(pages);
    const at = mm.mremap({ start: 16, count: N, newCount: N - 4, mayMove: true, fixed: true, newStart: 100 });
    expect(at).toBe(100);
    mm.touch(100, N - 4);
    expect(mapped(mm, 100).slice(0, N - 4)).toEqual(pages.slice(0, N - 4));
    expectPinlabError(() => mm.touch(16, 1), 'EFAULT'); // the old range is gone
    mm.unpinUserPages(pin.pfns, { write: true });
    mm.madvise({ start: 100, count: 4 }, 'dontneed');
    mm.munmap({ start: 100, count: N - 4 });
    expect(pages.slice(0, 4).map((p) => mem.refcount(p))).toEqual([2, 2, 2, 2]); // the cache's, the child's
    child.madvise({ start: 16, count: N }, 'dontneed');
    file.truncate(0); // zaps the child's holds too
    expect(pages.map((p) => mem.refcount(p))).toEqual(pages.map(() => 0));
    balanced(mem, [mm, child], file);
  });

  it('refuses DONTNEED and PAGEOUT of a private file mapping, changing nothing', () => {
    const { mem, mm, file } = world(scheme);
    mm.mmap({ start: 64, count: N, file, shared: false });
    const before = [mapped(mm, 16), mapped(mm, 64), mm.mappedPages];
    expectPinlabError(() => mm.madvise({ start: 64, count: 4 }, 'dontneed'), 'EINVAL', /private/);
    expectPinlabError(() => mm.madvise({ start: 60, count: 8 }, 'pageout'), 'ENOMEM'); // 32..63 unmapped
    expectPinlabError(() => mm.madvise({ start: 64, count: 4 }, 'pageout'), 'EINVAL', /private/);
    expectPinlabError(() => mm.madvise({ start: 16, count: 64 }, 'dontneed'), 'ENOMEM'); // a hole at 32
    expectPinlabError(() => mm.madvise({ start: 16, count: 300 }, 'dontneed'), 'EINVAL');
    expect([mapped(mm, 16), mapped(mm, 64), mm.mappedPages]).toEqual(before);
    balanced(mem, [mm], file);
  });
});

describe('shared file MADV_DONTNEED in op streams', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinlab-shared-madvise-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a recording replays to the live state under every scheme', async () => {
    for (const scheme of SCHEMES) {
      const mem = new PageArray({ pages: 512, populated: false, scheme, debug: true });
      const rec = mem.record();
      const mm = new AddressSpace(mem, { pages: 256 });
      const file = new PageCacheFile(mem, { name: 'f', pages: N });
      mm.mmap({ start: 16, count: N, file });
      mm.madvise({ start: 16, count: N }, 'dontneed');
      const child = mm.fork();
      mm.touch(16, 4, { write: true });
      file.punchHole(6, 2);
      mm.mremap({ start: 16, count: N, newCount: N, mayMove: true, fixed: true, newStart: 64 });
      child.touch(20, 2);
      rec.stop();
      await expectReplayMatchesLive(rec, join(dir, `${scheme}.pkops`), mem, scheme);
      balanced(mem, [mm, child], file);
    }
  });
});
