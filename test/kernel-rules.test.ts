// Issue 13: the kernel rule sets of an AddressSpace (validated in the library and in the
// addon, nothing created on a refusal), and madvise's refusals (whole-call validation).
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES } from '../lib/index.js';
import { native } from '../lib/native.js';
import { nativeOf } from '../lib/page-array.js';
import { expectPinlabError } from './helpers.js';

const MAINLINE = { zeroPageUnshare: true, longtermFileWrites: 'refuse', migratePteMappedThp: true, anonExclusive: true, pincountMinOrder: 1, hugeZeroPage: true };
const V2019 = { zeroPageUnshare: false, longtermFileWrites: 'allow', migratePteMappedThp: false, anonExclusive: false, pincountMinOrder: null, hugeZeroPage: true };

describe('rules', () => {
  const mem = new PageArray({ pages: 1024, populated: false });

  it('default to mainline; presets and switches resolve; fork inherits them', () => {
    expect(new AddressSpace(mem, { pages: 16 }).rules).toEqual(MAINLINE);
    expect(new AddressSpace(mem, { pages: 16, rules: 'mainline' }).rules).toEqual(MAINLINE);
    const mem2019 = new PageArray({ pages: 1024, populated: false, pincountMinOrder: 31 }); // hybrid without exact pincounts
    const old = new AddressSpace(mem2019, { pages: 16, rules: '2019' });
    expect(old.rules).toEqual(V2019);
    expect(Object.isFrozen(old.rules)).toBe(true);
    expect(old.fork().rules).toEqual(V2019);
    expect(new AddressSpace(mem, { pages: 16, rules: { longtermFileWrites: 'allow' } }).rules).toEqual({ ...MAINLINE, longtermFileWrites: 'allow' });
    expect(new AddressSpace(mem, { pages: 16, rules: {} }).rules).toEqual(MAINLINE);
  });

  it('refuse unknown presets, keys and values with EINVAL', () => {
    const bad: unknown[] = ['2020', 'Mainline', 7, null, [], { zeroPage: true }, { zeroPageUnshare: 1 }, { longtermFileWrites: 'lease' }, { migratePteMappedThp: 'yes' }, { hugeZeroPage: 'yes' }];
    for (const rules of bad) {
      expectPinlabError(() => new AddressSpace(mem, { pages: 16, rules } as never), 'EINVAL', /rules/);
    }
  });

  it('are checked again by the addon: nothing is created', () => {
    const np = nativeOf(mem);
    const bad: unknown[] = ['2020', { zeroPage: true }, { longtermFileWrites: 'lease' }, { zeroPageUnshare: 'no' }, 5];
    for (const rules of bad) {
      expectPinlabError(() => new native.NativeAddressSpace(np, 16, rules as never), 'EINVAL', /rules/);
    }
    const made = new native.NativeAddressSpace(np, 16, { migratePteMappedThp: false });
    expect(made.info().rules).toEqual({ ...MAINLINE, migratePteMappedThp: false });
  });
});

describe.each(SCHEMES)('scheme %s: madvise', (scheme) => {
  it('refuses a whole call that it cannot do, and changes nothing', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 0, count: 512, huge: true, populate: true });
    const file = new PageCacheFile(mem, { name: 'f', pages: 1 });
    mm.mmap({ start: 600, count: 1, file });
    const before = [mm.mappedPages, mm.regions, mm.translate(3)!.pfn];
    expectPinlabError(() => mm.madvise({ start: 500, count: 20 }, 'dontneed'), 'ENOMEM'); // 512.. unmapped
    expectPinlabError(() => mm.madvise({ start: 0, count: 1 }, 'remove'), 'EINVAL'); // anonymous memory has no file to punch
    expectPinlabError(() => mm.madvise({ start: 0, count: 1 }, 'cold' as never), 'EINVAL', /advice/); // MADV_COLD: not modelled
    expectPinlabError(() => mm.madvise({ start: 0, count: 1 }, undefined as never), 'EINVAL', /advice/);
    mm.madvise({ start: 0, count: 0 }, 'dontneed'); // do_madvise: an empty range is done
    mm.madvise({ start: 4000, count: 0 }, 'pageout'); // wherever it starts
    expect([mm.mappedPages, mm.regions, mm.translate(3)!.pfn]).toEqual(before);
    expect(mm.translate(3)!.huge).toBe(true); // no split either
  });

  it('dontneed keeps a pinned page alive by its pin; the next touch faults a fresh one', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 0, count: 8, populate: true });
    const { pfns } = mm.pinUserPagesFast(2, 1, { write: true });
    mm.madvise({ start: 0, count: 8 }, 'dontneed');
    expect(mm.mappedPages).toBe(0);
    expect(mem.refcount(pfns[0]!)).toBeGreaterThan(0);
    mm.touch(2, 1, { write: true });
    expect(mm.translate(2)!.pfn).not.toBe(pfns[0]);
    mm.unpinUserPages(pfns, { write: true });
    expect(mem.refcount(pfns[0]!)).toBe(0);
    mm.munmap({ start: 0, count: 8 });
    expect(mem.checkBalanced()).toEqual([]);
  });
});
