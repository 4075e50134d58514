// A submitted batch's layout ops keep the files' records of their mappings as the one-by-one
// calls do (attack round 27): a truncate or hole punch after a batch's munmap or mremap
// zaps exactly what the same calls one by one would have left mapping the file, never the
// anonymous memory a batch put where a file mapping was.
import { describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, OpBatch, PageArray, PageCacheFile, SCHEMES, stateDigest } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';

type Way = 'one by one' | 'batch';
const WAYS: Way[] = ['one by one', 'batch'];

describe.each(SCHEMES)('file mappings after a batch under %s', (scheme) => {
  it.each(WAYS)('munmap then an anonymous mmap in place (%s): a truncate leaves the anonymous memory', (way) => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 32 });
    mm.mmap({ start: 0, count: 32, file: f });
    if (way === 'batch') {
      const b = new OpBatch().push('munmap', { mm: mm.id, a: 0, b: 16 }).push('mmap', { mm: mm.id, a: 0, b: 16, flags: ['write', 'populate'] });
      expect(Array.from(mem.submit(b.toArray()))).toEqual([0, 0]);
    } else {
      mm.munmap({ start: 0, count: 16 });
      mm.mmap({ start: 0, count: 16, write: true, populate: true });
    }
    const anon = mm.translate(0)!;
    expect(anon.shared).toBe(false);
    const r = f.truncate(0);
    expect(r.zappedMappings).toBe(1); // pages 16..31 still map the file
    expect(mm.translate(0)).toEqual(anon);
    expect(mm.translate(16)).toBeNull();
    expect(mm.mappedPages).toBe(16);
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it("a batch's fork of a space that maps files is refused before it runs; mm.fork() records the child's mappings", () => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 4 });
    mm.mmap({ start: 0, count: 4, file: f });
    const other = new AddressSpace(mem, { pages: 1024 }); // maps no file: its batch fork runs
    const before = stateDigest(mem);
    const batch = new OpBatch().push('munmap', { mm: mm.id, a: 0, b: 1 }).push('fork', { mm: mm.id, a: other.id + 1 });
    expectPinlabError(() => mem.submit(batch.toArray()), 'EINVAL', /op 1 of the batch forks mm#\d+, which maps files/);
    expect(stateDigest(mem)).toEqual(before);
    expect(mem.submit(new OpBatch().push('fork', { mm: other.id, a: other.id + 1 }).toArray())[0]).toBeGreaterThanOrEqual(0);
    const child = mm.fork();
    expect(child.translate(0)!.pfn).toBe(f.pfnAt(0));
    expect(f.truncate(0).zappedMappings).toBe(2);
    expect(child.translate(0)).toBeNull();
    child.dispose();
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it.each(WAYS)('mremap moving a file mapping (%s): a hole punch finds it where it went', (way) => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 8, shmem: true });
    mm.mmap({ start: 0, count: 8, file: f });
    let at: number;
    if (way === 'batch') {
      const b = new OpBatch()
        .push('mremap', { mm: mm.id, a: 0, b: 8, flags: ['mayMove', 'fixed'], entries: [8, 512] })
        .push('mmap', { mm: mm.id, a: 0, b: 8, flags: ['write', 'populate'] });
      const results = mem.submit(b.toArray());
      expect(Array.from(results)).toEqual([512, 0]);
      at = results[0]!;
    } else {
      at = mm.mremap({ start: 0, count: 8, newCount: 8, mayMove: true, fixed: true, newStart: 512 });
      mm.mmap({ start: 0, count: 8, write: true, populate: true });
    }
    expect(at).toBe(512);
    const anon = mm.translate(0)!;
    expect(f.punchHole(0, 8).zappedMappings).toBe(1);
    expect(mm.translate(0)).toEqual(anon);
    expect(mm.translate(512)).toBeNull();
    mm.dispose();
    f.truncate(0);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('a refused or unrun batch op changes no record', () => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 8 });
    mm.mmap({ start: 0, count: 8, file: f });
    const b = new OpBatch()
      .push('munmap', { mm: mm.id, a: 1020, b: 8 }) // past the end: refused
      .push('munmap', { mm: mm.id, a: 0, b: 8 }); // not run (onError 'stop')
    const results = mem.submit(b.toArray());
    expect(results[0]).toBeLessThan(0);
    expect(mm.translate(0)!.pfn).toBe(f.pfnAt(0));
    expect(f.truncate(0).zappedMappings).toBe(1);
    expect(mm.translate(0)).toBeNull();
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it("a hugetlb file's punch after a batch munmap leaves the memory mapped there since", () => {
    const mem = new PageArray({ pages: 8 * 512, populated: false, scheme, debug: true });
    mem.setHugetlbPages(9, 4);
    const mm = new AddressSpace(mem, { pages: 8 * 512 });
    const f = new HugetlbFile(mem, { name: 'h', order: 9, pages: 1024 });
    mm.mmap({ start: 0, count: 1024, file: f });
    const b = new OpBatch().push('munmap', { mm: mm.id, a: 0, b: 512 }).push('mmap-hugetlb', { mm: mm.id, a: 0, b: 512, flags: ['write', 'populate'], entries: [9] });
    expect(Array.from(mem.submit(b.toArray()))).toEqual([0, 0]);
    const own = mm.translate(0)!;
    expect(f.punchHole(0, 1024).zappedMappings).toBe(1);
    expect(mm.translate(0)).toEqual(own);
    expect(mm.translate(512)).toBeNull();
    mm.dispose();
    f.close();
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 4, used: 0 });
  });
});
