// Issue 13: private file mappings (MAP_PRIVATE of a PageCacheFile) and the rule switches
// anonExclusive and pincountMinOrder, under every scheme and both rule sets.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, type KernelRuleSet, type Scheme } from '../lib/index.js';
import { native } from '../lib/native.js';
import { nativeOf } from '../lib/page-array.js';
import { expectFileTestBalanced, expectPinlabError } from './helpers.js';

const RULE_SETS: readonly KernelRuleSet[] = ['mainline', '2019'];

function world(scheme: Scheme, rules: KernelRuleSet = 'mainline', o: { pages?: number; shmem?: boolean; movablePages?: number } = {}) {
  const mem = new PageArray({ pages: 1024, populated: false, scheme, debug: true, pincountMinOrder: rules === '2019' ? 31 : 1, movablePages: o.movablePages ?? 0 });
  const mm = new AddressSpace(mem, { pages: 1024, rules });
  const file = new PageCacheFile(mem, { name: 'f', pages: o.pages ?? 4, shmem: o.shmem ?? false });
  mm.mmap({ start: 16, count: file.size, file, shared: false });
  return { mem, mm, file };
}

const balanced = expectFileTestBalanced;

for (const scheme of SCHEMES) {
  describe(`scheme ${scheme}: private file mappings`, () => {
    it('map the page cache read-only (one reference per PTE); a write copies to a private anonymous page, the file keeps its page', () => {
      const { mem, mm, file } = world(scheme);
      const cache = file.pfnAt(1)!;
      expect(mm.translate(17)).toEqual({ pfn: cache, writable: false, zeroPage: false, huge: false, shared: false, pageCache: true });
      expect(mem.refcount(cache)).toBe(2); // the page cache's and the PTE's
      const before = mm.stats().cowCopies;
      mm.touch(17, 1, { write: true });
      const copy = mm.translate(17)!;
      expect(copy.pfn).not.toBe(cache);
      expect(copy.writable).toBe(true);
      expect(copy.pageCache).toBeUndefined();
      expect(mm.stats().cowCopies).toBe(before + 1);
      expect(file.pfnAt(1)).toBe(cache);
      expect(mem.refcount(cache)).toBe(1); // the PTE's reference went with the copy
      mm.touch(17, 1, { write: true }); // the copy is ours: reused, never copied again
      expect(mm.translate(17)!.pfn).toBe(copy.pfn);
      balanced(mem, [mm], file);
    });

    it('a read-only private mapping refuses writes (EFAULT); mprotect(write) lets the next write copy', () => {
      const mem = new PageArray({ pages: 256, populated: false, scheme });
      const mm = new AddressSpace(mem, { pages: 256 });
      const file = new PageCacheFile(mem, { name: 'ro', pages: 1 });
      mm.mmap({ start: 0, count: 1, file, shared: false, write: false });
      expectPinlabError(() => mm.touch(0, 1, { write: true }), 'EFAULT');
      expectPinlabError(() => mm.pinUserPages(0, 1, { write: true }), 'EFAULT');
      mm.mprotect({ start: 0, count: 1, write: true });
      expect(mm.translate(0)!.writable).toBe(false);
      mm.touch(0, 1, { write: true });
      expect(mm.translate(0)!.pfn).not.toBe(file.pfnAt(0));
      balanced(mem, [mm], file);
    });

    for (const rules of RULE_SETS) {
      it(`rules ${rules}: a short-term R/O pin takes the page-cache page itself, on the fast path`, () => {
        const { mem, mm, file } = world(scheme, rules);
        const fast = mm.stats().fastPathPages;
        const pin = mm.pinUserPagesFast(16, 2);
        expect(Array.from(pin.pfns)).toEqual([file.pfnAt(0), file.pfnAt(1)]);
        expect(mm.stats().fastPathPages).toBe(fast + 2);
        expect(mm.translate(16)!.pageCache).toBe(true); // nothing was unshared
        mm.unpinUserPages(pin.pfns);
        balanced(mem, [mm], file);
      });

      it(`rules ${rules}: a long-term R/O pin ${rules === 'mainline' ? 'unshares to an anonymous page (slow path) and sees the write' : 'holds the page-cache page and misses the write'}`, () => {
        const { mem, mm, file } = world(scheme, rules);
        const cache = file.pfnAt(0)!;
        const s0 = mm.stats();
        const pin = mm.pinUserPagesFast(16, 1, { longterm: true });
        mm.touch(16, 1, { write: true });
        if (rules === 'mainline') {
          expect(pin.pfns[0]).not.toBe(cache);
          expect(mm.stats().slowPathFallbacks).toBe(s0.slowPathFallbacks + 1); // gup_must_unshare without a vma
          expect(mm.translate(16)!.pfn).toBe(pin.pfns[0]); // the write reused the pinned copy
        } else {
          expect(pin.pfns[0]).toBe(cache);
          expect(mm.translate(16)!.pfn).not.toBe(cache);
        }
        mm.unpinUserPages(pin.pfns);
        balanced(mem, [mm], file);
      });

      it(`rules ${rules}: a long-term R/O pin with zeroPageUnshare off holds the page-cache page (the switch governs both)`, () => {
        const mem = new PageArray({ pages: 256, populated: false, scheme, pincountMinOrder: rules === '2019' ? 31 : 1 });
        const mm = new AddressSpace(mem, { pages: 256, rules: rules === '2019' ? '2019' : { zeroPageUnshare: false } });
        const file = new PageCacheFile(mem, { name: 'z', pages: 1 });
        mm.mmap({ start: 0, count: 1, file, shared: false });
        const pin = mm.pinUserPages(0, 1, { longterm: true });
        expect(pin.pfns[0]).toBe(file.pfnAt(0));
        mm.unpinUserPages(pin.pfns);
        balanced(mem, [mm], file);
      });

      it(`rules ${rules}: a write pin (FOLL_WRITE|FOLL_LONGTERM, even of a regular file) pins the anonymous copy`, () => {
        const { mem, mm, file } = world(scheme, rules);
        const pin = mm.pinUserPagesFast(16, 4, { write: true, longterm: true });
        for (let i = 0; i < 4; i++) {
          expect(pin.pfns[i]).not.toBe(file.pfnAt(i));
          expect(mm.translate(16 + i)!.pfn).toBe(pin.pfns[i]);
        }
        mm.unpinUserPages(pin.pfns, { write: true });
        balanced(mem, [mm], file);
      });
    }

    it('truncate zaps the page-cache entries and the copies made from them; a hole punch keeps the copies', () => {
      const { mem, mm, file } = world(scheme, 'mainline', { pages: 4 });
      mm.touch(16, 1, { write: true }); // page 0 copied
      mm.touch(18, 1, { write: true }); // page 2 copied
      const copy2 = mm.translate(18)!.pfn;
      const punched = file.punchHole(2, 2); // pages 2, 3
      expect(punched.zappedMappings).toBe(1);
      expect(mm.translate(18)!.pfn).toBe(copy2); // the private copy stays (even_cows off)
      expect(mm.translate(19)).toBeNull(); // the page-cache entry is gone
      expectPinlabError(() => mm.touch(19, 1), 'EFAULT'); // SIGBUS, as for shared mappings
      const pin = mm.pinUserPages(17, 1); // the page cache's page 1, pinned short-term
      const r = file.truncate(0);
      expect(r.stillReferencedPages).toBe(1); // the pin keeps page 1 alive
      for (const v of [16, 17, 18]) expect(mm.translate(v)).toBeNull(); // copies gone too (even_cows)
      mm.unpinUserPages(pin.pfns);
      balanced(mem, [mm], file);
    });

    it('fork: the child maps the same page-cache pages (no early COW even when pinned); the copies follow the anonymous rules', () => {
      const { mem, mm, file } = world(scheme);
      mm.touch(16, 1, { write: true });
      const copy = mm.translate(16)!.pfn;
      const pin = mm.pinUserPagesFast(17, 1); // a pinned page-cache page, in an mm that has pinned
      const child = mm.fork();
      expect(child.translate(17)).toEqual(mm.translate(17));
      expect(child.translate(17)!.pfn).toBe(file.pfnAt(1));
      expect(child.translate(16)!.pfn).toBe(copy); // COW-shared anonymous copy
      expect(mm.translate(16)!.writable).toBe(false);
      expect(mem.refcount(file.pfnAt(2)!)).toBe(3); // cache + two PTEs
      child.touch(16, 1, { write: true });
      expect(child.translate(16)!.pfn).not.toBe(copy);
      child.touch(18, 1, { write: true });
      expect(child.translate(18)!.pfn).not.toBe(file.pfnAt(2));
      expect(mm.translate(18)!.pfn).toBe(file.pfnAt(2));
      mm.unpinUserPages(pin.pfns);
      balanced(mem, [child, mm], file);
    });

    it('migration and compaction leave page-cache pages alone; the anonymous copies move', () => {
      const { mem, mm, file } = world(scheme);
      mm.touch(16, 1, { write: true });
      const copy = mm.translate(16)!.pfn;
      const busy = mm.stats().migrationBusy;
      expect(mm.migrate({ start: 16, count: 4 })).toBe(1);
      expect(mm.translate(16)!.pfn).not.toBe(copy);
      expect(mm.stats().migrationBusy).toBe(busy + 3);
      for (let i = 1; i < 4; i++) expect(mm.translate(16 + i)!.pfn).toBe(file.pfnAt(i));
      mm.compact();
      for (let i = 1; i < 4; i++) expect(mm.translate(16 + i)!.pfn).toBe(file.pfnAt(i));
      balanced(mem, [mm], file);
    });

    it('hostile: bad options and ranges are EINVAL with nothing allocated; madvise of a private file mapping is EINVAL', () => {
      const { mem, mm, file } = world(scheme);
      const other = new PageCacheFile(mem, { name: 'g', pages: 2 });
      const free = mem.freePages();
      expectPinlabError(() => mm.mmap({ start: 100, count: 1, shared: false }), 'EINVAL', /shared needs a file/);
      expectPinlabError(() => mm.mmap({ start: 100, count: 1, file: other, shared: 'no' as never }), 'EINVAL', /shared/);
      expectPinlabError(() => mm.mmap({ start: 100, count: 1, file: other, private: true } as never), 'EINVAL', /private/); // not an option
      expectPinlabError(() => mm.mmap({ start: 17, count: 1, file: other, shared: false }), 'EINVAL'); // overlap
      expectPinlabError(() => mm.mmap({ start: 1023, count: 2, file: other, shared: false }), 'EINVAL');
      expectPinlabError(() => mm.mmap({ start: 100, count: 3, file: other, shared: false }), 'EINVAL', /outside/); // past the file's end
      expect(mem.freePages()).toBe(free);
      expectPinlabError(() => mm.madvise({ start: 16, count: 1 }, 'dontneed'), 'EINVAL', /private/);
      const np = nativeOf(mem);
      const raw = new native.NativeAddressSpace(np, 64);
      expectPinlabError(() => raw.mapPrivate(0, new Uint32Array([mem.pages]), true), 'ERANGE');
      expectPinlabError(() => raw.mapPrivate(0, new Uint32Array([]), true), 'EINVAL');
      expectPinlabError(() => raw.mapPrivate(0, [1] as never, true), 'EINVAL');
      expectPinlabError(() => raw.mapPrivate(-1, new Uint32Array([file.pfnAt(0)!]), true), 'EINVAL');
      expectPinlabError(() => raw.zapFile(0, 2 ** 40, true), 'EINVAL');
      expectPinlabError(() => raw.zapFile(0, 1, 'x' as never), 'EINVAL');
      expect(raw.info().regions).toBe(0);
      raw.dispose();
      other.truncate(0);
      balanced(mem, [mm], file);
    });
  });

  describe(`scheme ${scheme}: rules.anonExclusive`, () => {
    function fresh(anonExclusive: boolean) {
      const mem = new PageArray({ pages: 256, populated: false, scheme });
      const mm = new AddressSpace(mem, { pages: 256, rules: { anonExclusive } });
      mm.mmap({ start: 0, count: 1, populate: true });
      return { mem, mm };
    }

    for (const anonExclusive of [true, false]) {
      it(`${anonExclusive ? 'on' : 'off (2019)'}: a write after fork, a child's get and the child's exit ${anonExclusive ? 'copies (no leak)' : 'reuses the page the get holds (the CVE-2020-29374 leak)'}`, () => {
        const { mem, mm } = fresh(anonExclusive);
        const child = mm.fork();
        const got = child.getUserPagesFast(0, 1);
        child.dispose();
        mm.touch(0, 1, { write: true });
        expect(mm.translate(0)!.pfn === got.pfns[0]).toBe(!anonExclusive);
        mm.putUserPages(got.pfns);
        mm.dispose();
        expect(mem.freePages()).toBe(mem.pages);
      });

      it(`${anonExclusive ? 'on' : 'off (2019)'}: a R/O pin of a COW-shared page ${anonExclusive ? 'unshares it (slow path)' : 'takes it as it is, on the fast path'}`, () => {
        const { mem, mm } = fresh(anonExclusive);
        const shared = mm.translate(0)!.pfn;
        const child = mm.fork();
        const fast = mm.stats().fastPathPages;
        const pin = mm.pinUserPagesFast(0, 1);
        expect(pin.pfns[0] === shared).toBe(!anonExclusive);
        expect(mm.stats().fastPathPages).toBe(fast + (anonExclusive ? 0 : 1));
        mm.unpinUserPages(pin.pfns);
        child.dispose();
        mm.dispose();
        expect(mem.freePages()).toBe(mem.pages);
      });
    }

    it('off: a page still mapped twice is copied on write, whatever its references', () => {
      const { mem, mm } = fresh(false);
      const child = mm.fork();
      const before = mm.translate(0)!.pfn;
      mm.touch(0, 1, { write: true });
      expect(mm.translate(0)!.pfn).not.toBe(before);
      child.touch(0, 1, { write: true }); // now mapped once: reused
      expect(child.translate(0)!.pfn).toBe(before);
      child.dispose();
      mm.dispose();
      expect(mem.freePages()).toBe(mem.pages);
    });

    it('off: a THP leaf mapped by this mm alone is reused even with a get held; mapped twice it splits and copies', () => {
      const mem = new PageArray({ pages: 2048, populated: false, scheme });
      const mm = new AddressSpace(mem, { pages: 2048, rules: { anonExclusive: false } });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const head = mm.translate(0)!.pfn;
      const child = mm.fork();
      mm.touch(5, 1, { write: true });
      expect(mm.translate(5)!.pfn).not.toBe(head + 5); // mapped twice: copied
      const got = child.getUserPagesFast(0, 512);
      child.touch(0, 1, { write: true }); // the child's leaf: the folio is still mapped by the parent's PTEs
      child.dispose();
      mm.touch(6, 1, { write: true }); // PTE-mapped, now ours alone: reused (2019's mapcount)
      expect(mm.translate(6)!.pfn).toBe(head + 6);
      mm.putUserPages(got.pfns);
      mm.dispose();
      expect(mem.freePages()).toBe(mem.pages);
    });
  });

  describe(`scheme ${scheme}: rules.pincountMinOrder`, () => {
    it('stated, must match a hybrid array (EINVAL, nothing created); other schemes take any value; null is 31; presets take the array\'s', () => {
      const arrays = [1, 2, 31].map((k) => new PageArray({ pages: 64, populated: false, scheme, pincountMinOrder: k }));
      const firstTail = native.schemes().find((s) => s.name === scheme)!.pincount === 'large-folios'; // hybrid's first tail
      for (const [i, mem] of arrays.entries()) {
        for (const rule of [1, 2, null] as const) {
          const matches = (rule ?? 31) === [1, 2, 31][i];
          const make = () => new AddressSpace(mem, { pages: 16, rules: { pincountMinOrder: rule } });
          if (firstTail && !matches) {
            expectPinlabError(make, 'EINVAL', /pincountMinOrder/);
            expectPinlabError(() => new native.NativeAddressSpace(nativeOf(mem), 16, { pincountMinOrder: rule }), 'EINVAL', /pincountMinOrder/);
          } else {
            expect(make().rules.pincountMinOrder).toBe(rule);
          }
        }
      }
      // A preset takes the array's boundary (it belongs to the array): never EINVAL.
      for (const [i, mem] of arrays.entries()) {
        for (const preset of ['mainline', '2019'] as const) {
          expect(new AddressSpace(mem, { pages: 16, rules: preset }).rules.pincountMinOrder).toBe([1, 2, null][i]);
        }
      }
      expect(new AddressSpace(arrays[0]!, { pages: 16, rules: '2019' }).rules.anonExclusive).toBe(false);
      expect(new AddressSpace(arrays[2]!, { pages: 16, rules: { pincountMinOrder: 31 } }).rules.pincountMinOrder).toBeNull();
      // Unstated, it is the array's: any array takes the default rules.
      for (const [i, mem] of arrays.entries()) {
        const expected = [1, 2, null][i];
        expect(new AddressSpace(mem, { pages: 16 }).rules.pincountMinOrder).toBe(expected);
        expect(new AddressSpace(mem, { pages: 16, rules: { anonExclusive: false } }).rules.pincountMinOrder).toBe(expected);
        expect(new native.NativeAddressSpace(nativeOf(mem), 16).info().rules.pincountMinOrder).toBe(expected);
      }
    });

    it('hostile values are EINVAL in the library and in the addon', () => {
      const mem = new PageArray({ pages: 64, populated: false, scheme });
      for (const bad of [0, 32, -1, 1.5, '1', true, 2 ** 32 + 1, Number.NaN]) {
        expectPinlabError(() => new AddressSpace(mem, { pages: 16, rules: { pincountMinOrder: bad as never } }), 'EINVAL', /pincountMinOrder/);
        expectPinlabError(() => new native.NativeAddressSpace(nativeOf(mem), 16, { pincountMinOrder: bad } as never), 'EINVAL', /pincountMinOrder/);
      }
      for (const bad of [1, 'yes', null]) {
        expectPinlabError(() => new AddressSpace(mem, { pages: 16, rules: { anonExclusive: bad as never } }), 'EINVAL', /anonExclusive/);
        expectPinlabError(() => new native.NativeAddressSpace(nativeOf(mem), 16, { anonExclusive: bad } as never), 'EINVAL', /anonExclusive/);
      }
    });
  });
}

describe('the switches combine: anonExclusive off with zeroPageUnshare on', () => {
  it('a long-term R/O pin of a private file page still unshares, on either path', () => {
    const mem = new PageArray({ pages: 256, populated: false });
    const mm = new AddressSpace(mem, { pages: 256, rules: { anonExclusive: false } });
    const file = new PageCacheFile(mem, { name: 'c', pages: 2 });
    mm.mmap({ start: 0, count: 2, file, shared: false });
    const fast = mm.pinUserPagesFast(0, 1, { longterm: true });
    const slow = mm.pinUserPages(1, 1, { longterm: true });
    expect(fast.pfns[0]).not.toBe(file.pfnAt(0));
    expect(slow.pfns[0]).not.toBe(file.pfnAt(1));
    mm.unpinUserPages(fast.pfns);
    mm.unpinUserPages(slow.pfns);
    mm.dispose();
    file.truncate(0);
    expect(mem.freePages()).toBe(mem.pages);
  });
});
