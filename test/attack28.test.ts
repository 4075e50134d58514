// Stop 28: a bio that holds one page both ways (a pin from user memory and a plain reference
// from bio_add_page), whose plain reference was put behind its back, is refused whole at
// completion in every mode: its puts are checked against the counts its unpins will leave,
// not the counts before them (stop 27's review left this for non-debug mode).
import { describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, PageCacheFile, SCHEMES, bioAddPage, bioFromUserPages, stateDigest } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';

const H = 512;

describe.each(SCHEMES)('attack 28 under %s', (scheme) => {
  describe.each([false, true])('debug %s', (debug) => {
    for (const shape of ['small', 'thp'] as const) {
      for (const write of [false, true]) {
        it(`a ${shape} page pinned and got by one bio (write ${write}), its get put behind its back: complete() refused whole`, () => {
          const mem = new PageArray({ pages: 8192, populated: false, scheme, debug });
          const mm = new AddressSpace(mem, { pages: 4096 });
          const count = shape === 'thp' ? H : 1;
          mm.mmap({ start: 0, count, populate: true, huge: shape === 'thp' });
          const bio = bioFromUserPages(mm, 0, 1, { policy: 'flagged', write });
          const pfn = bio.bvecs[0]!.pfn;
          bioAddPage(bio, pfn); // the same page, a plain reference
          mem.putPage(pfn, 1); // the bio's plain reference, behind its back
          mm.munmap({ start: 0, count }); // the pin's references are now the page's last
          const refs = mem.refcount(pfn);
          const before = stateDigest(mem);
          // The unpin alone would pass, and free the page; the put after it would then fail.
          expectPinlabError(() => bio.complete(), 'EINVAL', /below 0/);
          expect(stateDigest(mem)).toEqual(before);
          expect(bio.completed).toBe(false);
          expect(mem.maybeDmaPinned(pfn)).toBe(write || scheme !== 'write-bias'); // its read pins are invisible
          expect(mem.refcount(pfn)).toBe(refs);
          expect(mem.isDirty(pfn)).toBe(false);
          // A wrong release is refused the same way ('put' eats the pin in non-debug mode).
          expectPinlabError(() => bio.release('unpin'), 'ENOTPINNED'); // an unpin of its plain reference
          expect(stateDigest(mem)).toEqual(before);
          // Given its reference back, the bio completes and the page is freed with it.
          mem.getPage(pfn, 1);
          bio.complete();
          expect(bio.completed).toBe(true);
          expect(mem.refcount(pfn)).toBe(0);
          expect(mem.maybeDmaPinned(pfn)).toBe(false);
          if (debug) expect(mem.checkBalanced()).toEqual([]);
        });
      }
    }

    it('a mapped page pinned and got by one bio, its get put behind its back: the put would take the mapping (EBUSY), refused whole', () => {
      const mem = new PageArray({ pages: 4096, populated: false, scheme, debug });
      const mm = new AddressSpace(mem, { pages: 1024 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const bio = bioFromUserPages(mm, 0, 4, { policy: 'flagged', write: true });
      const pfn = bio.bvecs[0]!.pfn;
      bioAddPage(bio, pfn);
      mem.putPage(pfn, 1);
      const before = stateDigest(mem);
      expectPinlabError(() => bio.complete(), 'EBUSY');
      expect(stateDigest(mem)).toEqual(before);
      expect(bio.completed).toBe(false);
      mem.getPage(pfn, 1);
      bio.complete();
      expect(mm.translate(0)!.pfn).toBe(pfn);
      expect(mem.refcount(pfn)).toBe(1); // the mapping's
      expect(mem.maybeDmaPinned(pfn)).toBe(false);
    });

    it('pins shared with another holder: the bio releases its own and keeps the check exact', () => {
      const mem = new PageArray({ pages: 4096, populated: false, scheme, debug });
      const mm = new AddressSpace(mem, { pages: 1024 });
      mm.mmap({ start: 0, count: H, populate: true, huge: true });
      const other = mm.pinUserPages(0, 1, { write: true }).pfns;
      const bio = bioFromUserPages(mm, 0, 1, { policy: 'flagged', write: true });
      const pfn = bio.bvecs[0]!.pfn;
      bioAddPage(bio, pfn);
      mm.munmap({ start: 0, count: H });
      bio.complete(); // every reference in place: passes, whatever the other pin
      expect(mem.maybeDmaPinned(pfn)).toBe(true);
      mem.unpinPages(other, { write: true });
      expect(mem.refcount(pfn)).toBe(0);
    });
  });
});

// Kernel review, round 28: what today's kernel does that the model did otherwise.
describe.each(SCHEMES)('kernel review 28 under %s', (scheme) => {
  const world = (pages = 8192): { mem: PageArray; mm: AddressSpace } => {
    const mem = new PageArray({ pages, populated: false, scheme, debug: true });
    mem.setHugetlbPages(9, 4);
    return { mem, mm: new AddressSpace(mem, { pages: 4096 }) };
  };

  it('mprotect granting write makes writable at once what a write fault would (MM_CP_TRY_CHANGE_WRITABLE), and nothing else', () => {
    const { mem, mm } = world();
    const shmem = new PageCacheFile(mem, { name: 'shm', pages: 4, shmem: true });
    const regular = new PageCacheFile(mem, { name: 'reg', pages: 4 });
    mm.mmap({ start: 2600, count: 4, populate: true });
    const child = mm.fork(); // 2600..2603 now COW-shared with the child
    child.dispose(); // ... and mapped once again, but not exclusive: a write fault decides
    mm.mmap({ start: 0, count: 4, populate: true }); // exclusive anonymous pages
    mm.mmap({ start: 512, count: H, huge: true, populate: true }); // an exclusive THP leaf
    mm.mmap({ start: 1024, count: 4, file: shmem });
    mm.mmap({ start: 1032, count: 4, file: regular });
    mm.touch(1032, 1, { write: true }); // written once: dirtied by its write fault
    mm.mmap({ start: 1040, count: 4, file: regular, shared: false, write: true }); // page-cache entries
    mm.mmap({ start: 1536, count: H, hugetlb: 9, shared: true, populate: true });
    mm.mmap({ start: 2048, count: H, hugetlb: 9, populate: true }); // private: copy-on-write protection
    for (const r of [
      { start: 0, count: 4 }, { start: 512, count: H }, { start: 1024, count: 4 }, { start: 1032, count: 4 },
      { start: 1040, count: 4 }, { start: 1536, count: H }, { start: 2048, count: H }, { start: 2600, count: 4 },
    ]) {
      mm.mprotect({ ...r, write: false });
      mm.mprotect({ ...r, write: true });
    }
    const w = (v: number): boolean => mm.translate(v)!.writable;
    expect([w(0), w(3), w(512), w(1023)]).toEqual([true, true, true, true]); // exclusive anonymous
    expect([w(1024), w(1027)]).toEqual([true, true]); // shmem: no write notification
    expect([w(1032), w(1033)]).toEqual([false, false]); // a regular file waits for its write fault
    expect([w(1040)]).toEqual([false]); // a private mapping's page-cache page: a write copies it
    expect([w(1536), w(2047)]).toEqual([true, true]); // shared hugetlb
    expect([w(2048)]).toEqual([false]); // private hugetlb: hugetlb_change_protection upgrades nothing
    expect([w(2600)]).toEqual([false]); // not exclusive
    const s0 = mm.stats();
    mm.touch(0, 4, { write: true });
    mm.touch(512, H, { write: true });
    expect(mm.stats().cowReuses).toBe(s0.cowReuses); // no fault was needed
    expect(mm.stats().cowCopies).toBe(s0.cowCopies);
  });

  it("a regular file's shared pages are mapped clean and read-only; the first write faults, dirties the page, and the fast path then serves write pins", () => {
    const { mem, mm } = world();
    const file = new PageCacheFile(mem, { name: 'reg', pages: 4 });
    const shm = new PageCacheFile(mem, { name: 'shm', pages: 4, shmem: true });
    mm.mmap({ start: 0, count: 4, file });
    mm.mmap({ start: 8, count: 4, file: shm });
    expect(mm.translate(0)).toMatchObject({ shared: true, writable: false });
    expect(mm.translate(8)).toMatchObject({ shared: true, writable: true });
    // gup_fast: a long-term read pin through a read-only page-cache entry needs the slow path.
    expect(mm.pinUserPagesFast(0, 1, { longterm: true, fastOnly: true }).count).toBe(0);
    expect(mm.pinUserPagesFast(0, 1, { write: true, fastOnly: true }).count).toBe(0);
    expect(mem.isDirty(file.pfnAt(0)!)).toBe(false);
    const s0 = mm.stats();
    const { pfns } = mm.pinUserPagesFast(0, 1, { write: true }); // the slow path's write fault
    expect(mm.stats().slowPathFallbacks).toBe(s0.slowPathFallbacks + 1);
    expect(mem.isDirty(file.pfnAt(0)!)).toBe(true); // wp_page_shared: the page is dirtied
    expect(mm.translate(0)).toMatchObject({ shared: true, writable: true });
    expect(mm.pinUserPagesFast(0, 1, { write: true, fastOnly: true }).count).toBe(1);
    mm.touch(1, 1, { write: true });
    expect(mem.isDirty(file.pfnAt(1)!)).toBe(true);
    expect(mem.isDirty(file.pfnAt(2)!)).toBe(false);
    // MADV_DONTNEED: the page comes back read-only on a read, writable on a write.
    mm.madvise({ start: 0, count: 4 }, 'dontneed');
    mm.touch(2, 1);
    expect(mm.translate(2)).toMatchObject({ shared: true, writable: false });
    mm.touch(3, 1, { write: true });
    expect(mm.translate(3)).toMatchObject({ shared: true, writable: true });
    expect(mem.isDirty(file.pfnAt(3)!)).toBe(true);
    mm.unpinUserPages(pfns, { write: true });
    mm.unpinUserPages(new Uint32Array([pfns[0]!]), { write: true });
  });

  it('a write to a PTE-mapped THP only this mm maps reuses the page in place (6.16, __wp_can_reuse_large_anon_folio)', () => {
    const { mem, mm } = world();
    mm.mmap({ start: 0, count: H, huge: true, populate: true });
    const head = mm.translate(0)!.pfn;
    const child = mm.fork(); // COW-shares the THP
    mm.mprotect({ start: 0, count: 8, write: false }); // splits the leaf: PTEs now
    mm.mprotect({ start: 0, count: 8, write: true });
    child.dispose(); // mapped by this mm alone again, its entries not exclusive
    expect(mem.refcount(head)).toBe(H); // one per PTE
    expect(mm.translate(7)).toMatchObject({ pfn: head + 7, writable: false, huge: false });
    const s0 = mm.stats();
    mm.touch(7, 1, { write: true });
    expect(mm.translate(7)).toMatchObject({ pfn: head + 7, writable: true });
    expect(mm.stats().cowReuses).toBe(s0.cowReuses + 1);
    expect(mm.stats().cowCopies).toBe(s0.cowCopies);
    expect(mem.refcount(head)).toBe(H);
    // A R/O pin unshares another subpage the same way: it stays put.
    const { pfns } = mm.pinUserPagesFast(9, 1);
    expect(pfns[0]).toBe(head + 9);
    mm.unpinUserPages(pfns);
    // With a FOLL_GET reference beside the mappings, or another mm mapping part of it, a write copies.
    const got = mm.getUserPagesFast(20, 1).pfns;
    mm.touch(11, 1, { write: true });
    expect(mm.translate(11)!.pfn).not.toBe(head + 11);
    mem.putPage(got[0]!, 1);
    const other = mm.fork();
    mm.touch(12, 1, { write: true });
    expect(mm.translate(12)!.pfn).not.toBe(head + 12);
    other.dispose();
  });
});

describe.each(SCHEMES)('kernel review 28, migration, under %s', (scheme) => {
  it('a PTE-mapped THP mapped whole moves whole to a new order-9 folio (6.12: only a partly mapped one is split first)', () => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: H, huge: true, populate: true });
    mm.mmap({ start: H, count: H, huge: true, populate: true });
    mm.mprotect({ start: 0, count: 8, write: false }); // both split to PTEs, mapped whole
    mm.mprotect({ start: H, count: 8, write: false });
    mm.munmap({ start: H + 100, count: 1 }); // the second partly mapped now
    const [a, b] = [mm.translate(0)!.pfn, mm.translate(H)!.pfn];
    expect([mem.folioOrder(a), mem.folioOrder(b)]).toEqual([9, 9]);
    const s0 = mm.stats();
    expect(mm.migrate({ start: 0, count: 2 * H })).toBe(2 * H - 1);
    const moved = mm.translate(0)!.pfn;
    expect(moved).not.toBe(a);
    expect(mem.folioOrder(moved)).toBe(9); // whole, still PTE-mapped
    expect(mm.translate(0)!.huge).toBe(false);
    for (const k of [1, 7, 300, 511]) expect(mm.translate(k)!.pfn).toBe(moved + k);
    expect(mem.refcount(moved)).toBe(H); // one per PTE, as before
    expect(mm.translate(7)!.writable).toBe(false); // the entries' flags moved with them
    // The partly mapped one was split: its pages moved one by one.
    expect(mem.folioOrder(mm.translate(H)!.pfn)).toBe(0);
    expect(mem.folioOrder(mm.translate(H + 511)!.pfn)).toBe(0);
    expect(mm.stats().migratedPages - s0.migratedPages).toBe(2 * H - 1);
    mm.munmap({ start: 0, count: 2 * H });
    expect(mem.freePages()).toBe(8192 - (mem.zeroPfn === null ? 0 : 1));
  });

  it('a long-term pin of a PTE-mapped THP in ZONE_MOVABLE moves it whole out of the zone', () => {
    const mem = new PageArray({ pages: 8192, populated: false, scheme, movablePages: 4096 });
    const mm = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: H, huge: true, populate: true });
    const head = mm.translate(0)!.pfn;
    mm.mprotect({ start: 0, count: 8, write: false });
    mm.mprotect({ start: 0, count: 8, write: true });
    const { pfns } = mm.pinUserPagesFast(5, 1, { longterm: true, write: true });
    if (mem.isMovable(head)) {
      expect(pfns[0]).not.toBe(head + 5);
      expect(mem.isMovable(pfns[0]!)).toBe(false);
    }
    expect(mem.folioOrder(pfns[0]!)).toBe(9);
    expect(mm.translate(5)!.pfn).toBe(pfns[0]);
    mm.unpinUserPages(pfns, { write: true });
  });
});

// Hostile user, round 28.
describe.each(SCHEMES)('hostile user 28 under %s', (scheme) => {
  it("MADV_REMOVE over two mappings of one file with a leased long-term pin: punched whole, the lease broken once", () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 16, shmem: true });
    mm.mmap({ start: 0, count: 4, file: f, offset: 0 });
    mm.mmap({ start: 4, count: 4, file: f, offset: 8 });
    const rdma = mem.pinOwner('rdma', { kind: 'device' });
    const breaks: unknown[] = [];
    const lease = f.takeLease(rdma, { onBreak: (e) => breaks.push(e) });
    const pin = mm.pinUserPagesFast(5, 1, { write: true, longterm: true, owner: rdma }).pfns; // file page 9
    expect(f.cachedPages).toBe(8); // the pages the two mappings made
    mm.madvise({ start: 0, count: 8 }, 'remove');
    expect(lease.held).toBe(false);
    expect(breaks).toHaveLength(1);
    expect(f.cachedPages).toBe(0);
    expect(mm.translate(0)).toBeNull();
    expect(mm.translate(5)).toBeNull();
    expect(mem.maybeDmaPinned(pin[0]!)).toBe(true); // the pinned page outlives the punch
    mem.unpinPages(pin, { owner: rdma, write: true });
    expect(mem.refcount(pin[0]!)).toBe(0);
  });

  it('without a lease the same call is refused whole: nothing punched, nothing zapped', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true }); // pins tracked
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 16, shmem: true });
    mm.mmap({ start: 0, count: 4, file: f, offset: 0 });
    mm.mmap({ start: 4, count: 4, file: f, offset: 8 });
    const pin = mm.pinUserPagesFast(5, 1, { write: true, longterm: true }).pfns;
    const before = stateDigest(mem);
    expectPinlabError(() => mm.madvise({ start: 0, count: 8 }, 'remove'), 'EBUSY');
    expect(stateDigest(mem)).toEqual(before);
    expect(f.cachedPages).toBe(8);
    expect(mm.translate(0)!.pfn).toBe(f.pfnAt(0));
    mem.unpinPages(pin, { write: true });
  });

  it("a bio whose owner was dropped with its pins released completes by putting its plain references", () => {
    for (const debug of [false, true]) {
      const mem = new PageArray({ pages: 4096, populated: false, scheme, debug });
      const mm = new AddressSpace(mem, { pages: 1024 });
      const f = new PageCacheFile(mem, { name: 'f', pages: 16 });
      mm.mmap({ start: 0, count: 16, file: f });
      mm.mmap({ start: 100, count: 16, populate: true });
      const owner = mem.pinOwner('dev');
      const bio = bioFromUserPages(mm, 100, 4, { policy: 'flagged', owner });
      const page = f.pfnAt(3)!;
      const refs = mem.refcount(page);
      bioAddPage(bio, page);
      expect(owner.drop({ pins: 'release' })).toMatchObject({ releasedPages: 4 });
      bio.complete();
      expect(bio.completed).toBe(true);
      expect(mem.refcount(page)).toBe(refs); // the plain reference went
      expect(mem.maybeDmaPinned(mm.translate(100)!.pfn)).toBe(false);
    }
  });

  it('a closed hugetlb file forgets the pages no mapping holds: they went back to the pool', () => {
    const mem = new PageArray({ pages: 8 * H, populated: false, scheme });
    mem.setHugetlbPages(9, 2);
    const mm = new AddressSpace(mem, { pages: 4 * H });
    const h = new HugetlbFile(mem, { name: 'h', order: 9, pages: 2 * H });
    mm.mmap({ start: 0, count: H, file: h }); // the first huge page only
    h.close();
    expect(h.cachedPages).toBe(H); // the mapped one stays, held open by its mapping
    expectPinlabError(() => h.pfnAt(H), 'EINVAL', /not in the closed file/);
    const h2 = new HugetlbFile(mem, { name: 'h2', order: 9, pages: H }); // takes the freed page
    expect(h.pfnAt(0)).toBe(mm.translate(0)!.pfn);
    expect(h.pfnAt(0)).not.toBe(h2.pfnAt(0));
    mm.munmap({ start: 0, count: H }); // the last mapping goes: so does the page
    expect(h.cachedPages).toBe(0);
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 1 });
    h2.close();
    expect(mem.hugetlbPool(9)).toMatchObject({ free: 2 });
  });
});

// Review of round 28's own diff.
describe.each(SCHEMES)('review 28 under %s', (scheme) => {
  it('punchHoles checks every range as punchHole does before anything changes (no lease broken)', () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const f = new PageCacheFile(mem, { name: 'f', pages: 8, folioOrder: 2 });
    mm.mmap({ start: 0, count: 8, file: f });
    const owner = mem.pinOwner('rdma', { kind: 'device' });
    const lease = f.takeLease(owner);
    const before = stateDigest(mem);
    for (const bad of [
      [{ offset: 100, count: 4 }], // beyond the end
      [{ offset: 0, count: 4 }, { offset: 4, count: 8 }], // the second beyond the end
      [{ offset: 0, count: 1 }], // not a folio multiple
      [{ offset: 0.5, count: 4 }],
      [{ offset: 0, count: 4, extra: 1 }],
      [null],
      null,
      { offset: 0, count: 4 },
    ]) {
      expectPinlabError(() => f.punchHoles(bad as never), 'EINVAL');
      expect(stateDigest(mem), JSON.stringify(bad)).toEqual(before);
      expect(lease.held).toBe(true);
      expect(f.cachedPages).toBe(8);
    }
    const report = f.punchHoles([{ offset: 4, count: 4 }, { offset: 0, count: 4 }, { offset: 0, count: 4 }]);
    expect(report).toMatchObject({ removedPages: 8, zappedMappings: 1 }); // one mapping, merged into one range
    expect(lease.held).toBe(false);
  });

  it("a bio's pins unpinned behind its back stay an ENOTPINNED after its owner's drop, in either mode", () => {
    for (const mode of ['report', 'release'] as const) {
      const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true, onImbalance: 'count' });
      const mm = new AddressSpace(mem, { pages: 1024 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const owner = mem.pinOwner('dev');
      const bio = bioFromUserPages(mm, 0, 2, { policy: 'flagged', owner });
      mem.unpinPages(new Uint32Array(bio.bvecs.flatMap((b) => Array.from({ length: b.count }, (_, k) => b.pfn + k))), { owner }); // behind its back
      owner.drop({ pins: mode });
      bio.complete(); // counted: the unpin of pins that are not there
      expect(mem.stats().imbalances.ENOTPINNED, mode).toBeGreaterThan(0);
    }
  });
});

// Hostile user on op streams, round 28.
describe('op streams, round 28', () => {
  it("a text stream's stated threads is checked against its tags, and kept by a conversion", async () => {
    const { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { runCli } = await import('./cli-run.js');
    const { runReplay } = await import('../lib/index.js');
    const dir = mkdtempSync(join(tmpdir(), 'pinlab-a28-threads-'));
    try {
      const head = 'pkops 3 pages=4096 movable=0 folio-order=0 pincount-min-order=1 bias=64 debug=0 populated=1 scheme=bias';
      writeFileSync(join(dir, 'lo.pkops.txt'), `${head} threads=1\n@5 get 1 1\n`);
      await expect(runReplay({ file: join(dir, 'lo.pkops.txt'), schemes: ['bias'] })).rejects.toMatchObject({ code: 'EINVAL', message: /threads is not above every record's tag/ });
      const refused = await runCli(['trace', 'convert', join(dir, 'lo.pkops.txt'), join(dir, 'lo.pkops')]); // nor converted
      expect(refused.status).not.toBe(0);
      expect(refused.err).toMatch(/threads is not above every record's tag/);
      expect(existsSync(join(dir, 'lo.pkops'))).toBe(false);
      writeFileSync(join(dir, 'none.pkops.txt'), `${head}\n@5 get 1 1\n`); // not stated: one per tag
      expect((await runReplay({ file: join(dir, 'none.pkops.txt'), schemes: ['bias'] })).stream.threads).toBe(6);
      writeFileSync(join(dir, 'hi.pkops.txt'), `${head} threads=7\nget 1 1\n`);
      expect((await runCli(['trace', 'convert', join(dir, 'hi.pkops.txt'), join(dir, 'hi.pkops')])).status).toBe(0);
      expect((await runCli(['trace', 'convert', join(dir, 'hi.pkops'), join(dir, 'back.pkops.txt')])).status).toBe(0);
      expect(readFileSync(join(dir, 'back.pkops.txt'), 'utf8')).toMatch(/threads=7/);
      expect((await runReplay({ file: join(dir, 'hi.pkops'), schemes: ['bias'] })).stream.threads).toBe(7);
      await expect(runReplay({ file: join(dir, 'hi.pkops'), schemes: ['bias'], threads: 0 })).rejects.toMatchObject({ code: 'EINVAL', message: /threads must be an integer in 1..1024/ });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
