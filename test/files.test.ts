// Page-cache files and layout leases (seed 000): shared mappings of a file's folios (same PFNs
// everywhere, no COW, fork shares), truncate and hole punch (zap, page cache lets go, pinned
// pages stay allocated), EBUSY for long-term pins without a lease (nothing changes), and lease
// breaks reported to their holders.
import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';

import {
  AddressSpace,
  Lease,
  PageArray,
  PageCacheFile,
  SCHEMES,
  type KernelRuleSet,
  type LeaseBreak,
  type PageArrayOptions,
  type PinlabErrorCode,
} from '../lib/index.js';
import { expectPinlabError, expectRefusedUnchanged, gcFunction, range } from './helpers.js';
import { pinRefs } from './mm-helpers.js';

interface World {
  mem: PageArray;
  mm: AddressSpace;
  file: PageCacheFile;
}

/** A free array, an address space and a file of `pages` pages (folios of `folioOrder`). */
/**
 * rules '2019' where a test needs long-term write pins of a file (the lease proposal's kernels):
 * here that one switch, `longtermFileWrites: 'allow'` (the whole 2019 set would also ask for a
 * page array without exact pincounts, pincountMinOrder null, which these tests do not).
 */
function world(o: { pages?: number; folioOrder?: number; mem?: Partial<PageArrayOptions>; rules?: KernelRuleSet } = {}): World {
  const mem = new PageArray({ pages: 4096, populated: false, scheme: 'hybrid', ...o.mem });
  const mm = new AddressSpace(mem, { pages: 4096, rules: o.rules === '2019' ? { longtermFileWrites: 'allow' } : 'mainline' });
  const file = new PageCacheFile(mem, { name: 'data', pages: o.pages ?? 8, folioOrder: o.folioOrder ?? 0 });
  return { mem, mm, file };
}

/** The file's PFNs (null for holes). */
function filePfns(file: PageCacheFile): (number | null)[] {
  return range(file.size).map((i) => file.pfnAt(i));
}

/** Everything a refused layout change must leave as it was. */
function state(w: World, mms: AddressSpace[] = [w.mm], vpages = 64) {
  const { mem, file } = w;
  const pages = [];
  for (let p = 0; p < mem.pages; p++) pages.push([mem.refcount(p), mem.pincount(p), mem.isDirty(p)]);
  const s = mem.stats();
  return {
    size: file.size,
    cached: file.cachedPages,
    pfns: filePfns(file),
    translations: mms.map((mm) => range(vpages).map((v) => mm.translate(v))),
    pages,
    free: mem.freePages(),
    stats: { pinAcquired: s.pinAcquired, pinReleased: s.pinReleased, foliosFreed: s.foliosFreed },
    leases: file.leases().length,
    breaks: file.leaseBreaks(),
    outstanding: mem.outstandingPins().map(({ ownerObject: _o, ...rest }) => rest),
  };
}

function refused(w: World, fn: () => unknown, code: PinlabErrorCode, msgs: RegExp[], mms?: AddressSpace[]) {
  return expectRefusedUnchanged(() => state(w, mms), fn, code, msgs);
}

describe('PageCacheFile', () => {
  it('starts as holes; options are checked (EINVAL), pfnAt past the end is ERANGE', () => {
    const { mem, file } = world({ pages: 16 });
    expect([file.name, file.size, file.folioOrder, file.cachedPages, file.mem]).toEqual(['data', 16, 0, 0, mem]);
    expect(filePfns(file)).toEqual(range(16).map(() => null));
    expect(file.leases()).toEqual([]);
    expect(file.leaseBreaks()).toEqual([]);
    expect(mem.freePages()).toBe(4096);
    expectPinlabError(() => file.pfnAt(16), 'ERANGE', /file page 16 is beyond the end of 'data' \(size 16\)/);
    expectPinlabError(() => file.pfnAt(-1), 'ERANGE');
    expectPinlabError(() => new PageCacheFile(mem, { name: '', pages: 8 }), 'EINVAL', /name must be a non-empty string/);
    expectPinlabError(() => new PageCacheFile(mem, { name: 'f', pages: 8, folioOrder: 19 }), 'EINVAL', /folioOrder must be 0\.\.18/);
    expectPinlabError(() => new PageCacheFile(mem, { name: 'f', pages: 8, mode: 1 } as never), 'EINVAL', /unknown option 'mode'/);
    expectPinlabError(() => new PageCacheFile({} as PageArray, { name: 'f', pages: 8 }), 'EINVAL', /mem must be a PageArray/);
  });

  it('folioOrder 9: sizes, truncates and holes must be multiples of 512 (EINVAL, nothing changes)', () => {
    const w = world({ pages: 1024, folioOrder: 9 });
    expectPinlabError(() => new PageCacheFile(w.mem, { name: 'f', pages: 100, folioOrder: 9 }), 'EINVAL', /pages must be a non-negative multiple of the folio size 512 \(got 100\)/);
    w.mm.mmap({ start: 0, count: 1024, file: w.file });
    refused(w, () => w.file.truncate(100), 'EINVAL', [/pages must be a non-negative multiple of the folio size 512 \(got 100\)/]);
    refused(w, () => w.file.truncate(-512), 'EINVAL', [/multiple of the folio size 512/]);
    refused(w, () => w.file.punchHole(0, 100), 'EINVAL', [/count must be a non-negative multiple of the folio size 512 \(got 100\)/]);
    refused(w, () => w.file.punchHole(256, 512), 'EINVAL', [/offset must be .* 512 \(got 256\)/]);
    refused(w, () => w.file.punchHole(512, 1024), 'EINVAL', [/hole 512\.\.1535 is beyond the end of 'data' \(size 1024\)/]);
  });
});

describe('shared mappings', () => {
  it('two address spaces map the same PFNs (shared), one reference per entry', () => {
    const w = world({ pages: 8 });
    const { mem, mm, file } = w;
    const mm2 = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: 8, file });
    expect(file.cachedPages).toBe(8);
    expect(mem.freePages()).toBe(4096 - 8);
    mm2.mmap({ start: 100, count: 8, file });
    expect(mem.freePages()).toBe(4096 - 8); // no new pages: the same folios
    for (let i = 0; i < 8; i++) {
      const pfn = file.pfnAt(i)!;
      // A regular (dirty-tracked) file: mapped clean and read-only until a write faults.
      expect(mm.translate(i)).toEqual({ pfn, shared: true, writable: false, zeroPage: false, huge: false });
      expect(mm2.translate(100 + i)).toEqual({ pfn, shared: true, writable: false, zeroPage: false, huge: false });
      expect(mem.refcount(pfn)).toBe(3); // page cache + two entries
    }
    expect(mm.mappedPages).toBe(8);
    mm2.munmap({ start: 100, count: 8 });
    for (let i = 0; i < 8; i++) expect(mem.refcount(file.pfnAt(i)!)).toBe(2);
    // an anonymous page is not shared
    mm.mmap({ start: 200, count: 1, populate: true });
    expect(mm.translate(200)!.shared).toBe(false);
  });

  it('offset maps a window of the file; only the window gets folios', () => {
    const { mem, mm, file } = world({ pages: 8 });
    mm.mmap({ start: 10, count: 3, file, offset: 4 });
    expect(filePfns(file).map((p) => p !== null)).toEqual([false, false, false, false, true, true, true, false]);
    for (let i = 0; i < 3; i++) expect(mm.translate(10 + i)!.pfn).toBe(file.pfnAt(4 + i));
    expect(mem.freePages()).toBe(4096 - 3);
    expect(file.cachedPages).toBe(3);
  });

  it('a write never copies: writable entries are written in place, and a re-enabled write too', () => {
    const { mem, mm, file } = world({ pages: 4 });
    mm.mmap({ start: 0, count: 4, file });
    const pfns = filePfns(file);
    const s0 = mm.stats();
    mm.touch(0, 4, { write: true });
    mm.mprotect({ start: 0, count: 4, write: false });
    expect(mm.translate(0)!.writable).toBe(false);
    expectPinlabError(() => mm.touch(0, 1, { write: true }), 'EFAULT', /read-only/);
    mm.mprotect({ start: 0, count: 4, write: true });
    mm.touch(0, 4, { write: true });
    for (let i = 0; i < 4; i++) {
      expect(mm.translate(i)).toMatchObject({ pfn: pfns[i], shared: true, writable: true });
      expect(mem.refcount(pfns[i]!)).toBe(2);
    }
    expect(mm.stats().cowCopies - s0.cowCopies).toBe(0);
    expect(mem.freePages()).toBe(4096 - 4);
    // a write pin takes the page-cache page itself
    const { pfns: pinned } = mm.pinUserPagesFast(0, 4, { write: true });
    expect(Array.from(pinned)).toEqual(pfns);
    mm.unpinUserPages(pinned, { write: true });
  });

  it('a read-only file mapping refuses write access (EFAULT) and maps read-only entries', () => {
    const { mm, file } = world({ pages: 2 });
    mm.mmap({ start: 0, count: 2, file, write: false });
    expect(mm.translate(0)).toMatchObject({ pfn: file.pfnAt(0), shared: true, writable: false });
    expectPinlabError(() => mm.touch(1, 1, { write: true }), 'EFAULT', /virtual page 1 is in a read-only region/);
    expectPinlabError(() => mm.pinUserPagesFast(0, 1, { write: true }), 'EFAULT');
  });

  it('fork shares the file pages (no copy, no early COW even when pinned); truncate zaps both', () => {
    const { mem, mm, file } = world({ pages: 4 });
    mm.mmap({ start: 0, count: 4, file });
    const pfns = filePfns(file);
    const o = mem.pinOwner('o');
    const { pfns: pinned } = mm.pinUserPagesFast(0, 2, { write: true, owner: o });
    const free0 = mem.freePages();
    const child = mm.fork();
    expect(mem.freePages()).toBe(free0);
    expect(mm.stats().earlyCowCopies).toBe(0);
    for (let i = 0; i < 4; i++) {
      // The write pins' faults made pages 0 and 1 writable (the file mapped them clean); fork
      // write-protects none of them, and the child's entries are the parent's.
      expect(child.translate(i)).toEqual({ pfn: pfns[i], shared: true, writable: i < 2, zeroPage: false, huge: false });
      expect(mm.translate(i)!.writable).toBe(i < 2); // not write-protected by fork
      expect(mem.refcount(pfns[i]!)).toBe(3 + (i < 2 ? pinRefs('hybrid', 0, true) : 0));
    }
    child.touch(0, 4, { write: true });
    expect(child.translate(3)!.pfn).toBe(pfns[3]);
    expect(child.stats().cowCopies).toBe(0);
    mm.unpinUserPages(pinned, { write: true, owner: o });
    const report = file.truncate(0);
    expect(report).toEqual({ removedPages: 4, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 2 });
    for (let i = 0; i < 4; i++) {
      expect(mm.translate(i)).toBeNull();
      expect(child.translate(i)).toBeNull();
      expect(mem.refcount(pfns[i]!)).toBe(0);
    }
    expect(mem.freePages()).toBe(4096);
  });

  it('folioOrder 9: one 2 MiB folio, PTE-mapped, one reference per entry', () => {
    const { mem, mm, file } = world({ pages: 512, folioOrder: 9 });
    mm.mmap({ start: 512, count: 512, file });
    const head = file.pfnAt(0)!;
    expect(head % 512).toBe(0);
    expect(mem.folioOrder(head)).toBe(9);
    for (const i of [0, 1, 300, 511]) {
      expect(file.pfnAt(i)).toBe(head + i);
      // A regular (dirty-tracked) file is mapped clean and read-only until a write faults.
      expect(mm.translate(512 + i)).toEqual({ pfn: head + i, shared: true, writable: false, zeroPage: false, huge: false });
    }
    expect(mem.refcount(head)).toBe(1 + 512);
    // a partial window of a large folio: the whole folio is cached
    const mm2 = new AddressSpace(mem, { pages: 4096 });
    mm2.mmap({ start: 0, count: 10, file, offset: 100 });
    expect(mm2.translate(0)!.pfn).toBe(head + 100);
    expect(mem.refcount(head)).toBe(1 + 512 + 10);
    expect(mem.freePages()).toBe(4096 - 512);
  });

  it('bad file mappings are EINVAL and give back the folios they allocated', () => {
    const w = world({ pages: 8 });
    const { mem, mm, file } = w;
    refused(w, () => mm.mmap({ start: 10, count: 9, file }), 'EINVAL', [/file range 0\.\.8 is outside 'data' \(size 8\)/]);
    refused(w, () => mm.mmap({ start: 10, count: 2, file, offset: -1 }), 'EINVAL', [/offset must be >= 0/]);
    refused(w, () => mm.mmap({ start: 10, count: 2, offset: 1 }), 'EINVAL', [/offset needs a file/]);
    refused(w, () => mm.mmap({ start: 10, count: 2, file, huge: true }), 'EINVAL', [/huge maps anonymous memory/]);
    refused(w, () => mm.mmap({ start: 10, count: 2, file: {} as PageCacheFile }), 'EINVAL', [/file must be a PageCacheFile/]);
    const foreign = new PageCacheFile(new PageArray({ pages: 64, populated: false }), { name: 'other', pages: 2 });
    refused(w, () => mm.mmap({ start: 10, count: 2, file: foreign }), 'EINVAL', [/file 'other' lives in another page array/]);
    expect(mem.freePages()).toBe(4096);
  });

  it('a file mapping over a mapped region is EINVAL; the folios it allocated go back uncounted', () => {
    const w = world({ pages: 8 });
    const { mem, mm, file } = w;
    mm.mmap({ start: 4, count: 2 }); // an anonymous region in the way
    refused(w, () => mm.mmap({ start: 0, count: 8, file }), 'EINVAL', [/range start 0 count 8 overlaps a mapped region/]);
    expect(file.cachedPages).toBe(0);
    expect(mem.freePages()).toBe(4096);
    // with part of the file cached, only the new folios go back
    const mm2 = new AddressSpace(mem, { pages: 64 });
    mm2.mmap({ start: 0, count: 2, file });
    const cached = [file.pfnAt(0), file.pfnAt(1)];
    refused(w, () => mm.mmap({ start: 2, count: 4, file }), 'EINVAL', [/overlaps a mapped region/], [mm, mm2]);
    expect([file.pfnAt(0), file.pfnAt(1), file.pfnAt(2)]).toEqual([...cached, null]);
  });
});

describe('truncate and hole punch', () => {
  it('without pins: zaps the mappings, frees the folios; a later touch of the range is EFAULT', () => {
    const { mem, mm, file } = world({ pages: 8 });
    mm.mmap({ start: 0, count: 8, file });
    const pfns = filePfns(file);
    const freed0 = mem.stats().foliosFreed;
    expect(file.truncate(6)).toEqual({ removedPages: 2, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 1 });
    expect(file.size).toBe(6);
    expect(file.cachedPages).toBe(6);
    expect(mem.stats().foliosFreed - freed0).toBe(2);
    expect(mem.refcount(pfns[6]!)).toBe(0);
    expect(mm.translate(6)).toBeNull();
    expect(mm.translate(5)!.pfn).toBe(pfns[5]);
    expectPinlabError(() => mm.touch(6, 1), 'EFAULT', /virtual page 6 of a shared mapping has no page \(truncated\)/);
    expectPinlabError(() => mm.touch(7, 1, { write: true }), 'EFAULT', /virtual page 7/);
    expectPinlabError(() => mm.pinUserPagesFast(6, 2), 'EFAULT');
    expectPinlabError(() => file.pfnAt(6), 'ERANGE');
    expect(file.punchHole(2, 2)).toEqual({ removedPages: 2, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 1 });
    expect(filePfns(file)).toEqual([pfns[0], pfns[1], null, null, pfns[4], pfns[5]]);
    expectPinlabError(() => mm.touch(3, 1), 'EFAULT', /shared mapping has no page/);
    expect(mm.translate(4)!.pfn).toBe(pfns[4]);
    // punching a hole again removes nothing
    expect(file.punchHole(2, 2).removedPages).toBe(0);
  });

  it('a long-term pin by an owner without a lease: truncate is EBUSY naming owner, call and pfn; nothing changes', () => {
    const w = world({ pages: 8, rules: '2019' });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 8, file });
    const rdma = mem.pinOwner('rdma');
    const { pfns } = mm.pinUserPagesFast(5, 2, { write: true, longterm: true, owner: rdma });
    const err = refused(w, () => file.truncate(4), 'EBUSY', [
      new RegExp(`^EBUSY: truncate of 'data' pages 4\\.\\.7 refused: 2 pages from pfn ${pfns[0]}\\.\\.${pfns[1]} long-term pinned by owner 'rdma' \\(device\\) call #1 pinUserPagesFast via mm#${mm.id} vpages 5\\.\\.6 without a layout lease$`),
    ]);
    expect(err.provenance).toEqual([
      { callId: 1, owner: 'rdma', ownerKind: 'device', operation: 'pinUserPagesFast', via: `mm#${mm.id} vpages 5..6`, stack: null },
    ]);
    expect(file.size).toBe(8);
    // truncating short of the pinned pages proceeds
    expect(file.truncate(7).removedPages).toBe(1);
    refused(w, () => file.truncate(0), 'EBUSY', [/truncate of 'data' pages 0\.\.6 refused/, /owner 'rdma'/]);
  });

  it('hole punch over a long-term pin without a lease is EBUSY too; a hole beside it proceeds', () => {
    const w = world({ pages: 8 });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 8, file });
    const gpu = mem.pinOwner('gpu', { kind: 'file' });
    const { pfns } = mm.pinUserPages(2, 1, { longterm: true, owner: gpu });
    refused(w, () => file.punchHole(0, 4), 'EBUSY', [
      new RegExp(`^EBUSY: hole punch of 'data' pages 0\\.\\.3 refused: 1 page from pfn ${pfns[0]} long-term pinned by owner 'gpu' \\(file\\) call #1 pinUserPages`),
    ]);
    expect(file.punchHole(3, 5)).toMatchObject({ removedPages: 5, stillReferencedPages: 0 });
    expect(mm.translate(2)!.pfn).toBe(pfns[0]);
  });

  it('several blockers: every pin call is in the provenance, the message counts the rest', () => {
    const w = world({ pages: 8 });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 8, file });
    const a = mem.pinOwner('a');
    const b = mem.pinOwner('b');
    mm.pinUserPagesFast(0, 1, { longterm: true, owner: a });
    mm.pinUserPagesFast(4, 2, { longterm: true, owner: b });
    mm.pinUserPagesFast(6, 1, { owner: b }); // not long-term: never a blocker
    file.takeLease(a);
    const err = refused(w, () => file.truncate(0), 'EBUSY', [/owner 'b' \(device\) call #2/, /without a layout lease$/]);
    expect(err.provenance.map((p) => [p.owner, p.callId])).toEqual([['b', 2]]);
    const c = mem.pinOwner('c');
    mm.pinUserPagesFast(7, 1, { longterm: true, owner: c });
    const err2 = refused(w, () => file.truncate(0), 'EBUSY', [/owner 'b' \(device\) call #2.*\(and 1 more pin calls\)$/]);
    expect(err2.provenance.map((p) => [p.owner, p.callId])).toEqual([
      ['b', 2],
      ['c', 4],
    ]);
  });

  it('a pin that is not long-term does not block: the page leaves the file and stays allocated until unpinned', () => {
    const { mem, mm, file } = world({ pages: 4 });
    mm.mmap({ start: 0, count: 4, file });
    const pfns = filePfns(file);
    const o = mem.pinOwner('o');
    const { pfns: pinned } = mm.pinUserPagesFast(1, 2, { write: true, owner: o });
    const report = file.truncate(0);
    expect(report).toEqual({ removedPages: 4, stillReferencedPages: 2, brokenLeases: [], zappedMappings: 1 });
    expect(pfns.map((p) => mem.refcount(p!))).toEqual([0, 1024, 1024, 0]);
    expect(mem.freePages()).toBe(4096 - 2);
    expect(o.outstandingPins().map((p) => [p.pfn, p.count])).toEqual([[pfns[1], 2]]);
    mm.unpinUserPages(pinned, { write: true, dirty: true, owner: o });
    expect(mem.freePages()).toBe(4096);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('growing adds holes; mapping them fills them; the zapped old mapping stays empty', () => {
    const { mem, mm, file } = world({ pages: 8 });
    mm.mmap({ start: 0, count: 8, file });
    const pfns = filePfns(file);
    file.truncate(4);
    expect(file.truncate(4)).toEqual({ removedPages: 0, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 0 });
    expect(file.truncate(12)).toEqual({ removedPages: 0, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 0 });
    expect(file.size).toBe(12);
    expect(file.cachedPages).toBe(4);
    expect(filePfns(file).slice(4)).toEqual(range(8).map(() => null));
    const mm2 = new AddressSpace(mem, { pages: 64 });
    mm2.mmap({ start: 0, count: 12, file });
    const now = filePfns(file);
    expect(now.slice(0, 4)).toEqual(pfns.slice(0, 4)); // the cached pages stay
    expect(now.every((p) => p !== null)).toBe(true);
    expect(new Set(now).size).toBe(12);
    for (let i = 0; i < 12; i++) expect(mm2.translate(i)!.pfn).toBe(now[i]);
    expect(file.cachedPages).toBe(12);
    expect(mm.translate(5)).toBeNull();
    expectPinlabError(() => mm.touch(5, 1), 'EFAULT');
    expect(mm.translate(3)!.pfn).toBe(now[3]);
  });

  it('only the live mappings are zapped: munmap trims them, a split mapping counts twice', () => {
    const { mem, mm, file } = world({ pages: 8 });
    mm.mmap({ start: 0, count: 8, file });
    mm.munmap({ start: 2, count: 2 });
    const mm2 = new AddressSpace(mem, { pages: 64 });
    mm2.mmap({ start: 0, count: 2, file, offset: 6 });
    mm2.munmap({ start: 0, count: 2 });
    expect(file.truncate(0)).toMatchObject({ removedPages: 8, zappedMappings: 2 });
    expect(mem.freePages()).toBe(4096);
  });

  it('a mapping whose address space was collected is not zapped (nor kept alive)', async () => {
    const gc = gcFunction();
    const { mem, mm, file } = world({ pages: 4 });
    mm.mmap({ start: 0, count: 4, file });
    ((): void => {
      const gone = new AddressSpace(mem, { pages: 64 });
      gone.mmap({ start: 0, count: 4, file });
    })();
    for (let i = 0; i < 3; i++) {
      await sleep(0);
      gc();
    }
    await sleep(10);
    gc();
    expect(mem.refcount(file.pfnAt(0)!)).toBe(2); // the collected space's entries were put
    expect(file.truncate(0)).toMatchObject({ removedPages: 4, zappedMappings: 1 });
    expect(mem.freePages()).toBe(4096);
  });
});

describe('layout leases', () => {
  it('with a lease the truncate proceeds: the lease breaks, is reported and notified once, after the change', () => {
    const { mem, mm, file } = world({ pages: 8, rules: '2019' });
    mm.mmap({ start: 0, count: 8, file });
    const pfns = filePfns(file);
    const rdma = mem.pinOwner('rdma');
    const { pfns: pinned } = mm.pinUserPagesFast(4, 3, { write: true, longterm: true, owner: rdma });
    const seen: { event: LeaseBreak; refcount: number; translate: unknown; held: boolean; cached: number }[] = [];
    const lease = file.takeLease(rdma, {
      onBreak: (event) =>
        seen.push({ event, refcount: mem.refcount(pfns[6]!), translate: mm.translate(6), held: lease.held, cached: file.cachedPages }),
    });
    expect(lease).toBeInstanceOf(Lease);
    expect([lease.file, lease.owner, lease.held, lease.breakReport]).toEqual([file, rdma, true, null]);
    expect(file.leases()).toEqual([lease]);
    const report = file.truncate(2);
    const event: LeaseBreak = { file: 'data', owner: 'rdma', reason: 'truncate', offset: 2, count: 6, pinnedPages: 3 };
    expect(report).toEqual({ removedPages: 6, stillReferencedPages: 3, brokenLeases: [event], zappedMappings: 1 });
    expect(seen).toEqual([{ event, refcount: 1024, translate: null, held: false, cached: 2 }]);
    expect(lease.held).toBe(false);
    expect(lease.breakReport).toEqual(event);
    expect(file.leases()).toEqual([]);
    expect(file.leaseBreaks()).toEqual([event]);
    // the pinned pages stay allocated; the owner still holds and releases them
    for (const p of pfns.slice(4, 7)) expect(mem.refcount(p!)).toBe(1024);
    for (const p of [pfns[2], pfns[3], pfns[7]]) expect(mem.refcount(p!)).toBe(0);
    expect(rdma.outstandingPins().map((p) => [p.pfn, p.count, p.longterm])).toEqual([[pfns[4], 3, true]]);
    expectPinlabError(() => mm.touch(4, 1, { write: true }), 'EFAULT', /virtual page 4 of a shared mapping has no page/);
    mm.unpinUserPages(pinned, { write: true, owner: rdma });
    for (const p of pfns.slice(2)) expect(mem.refcount(p!)).toBe(0);
    expect(mem.freePages()).toBe(4096 - 2);
    expect(seen.length).toBe(1);
  });

  it('onBreak runs after a truncate has completed: the file already has its new size', () => {
    const { mem, mm, file } = world({ pages: 8 });
    mm.mmap({ start: 0, count: 8, file });
    const o = mem.pinOwner('o');
    mm.pinUserPagesFast(6, 1, { longterm: true, owner: o });
    const sizes: number[] = [];
    const cached: number[] = [];
    file.takeLease(o, { onBreak: () => (sizes.push(file.size), cached.push(file.cachedPages)) });
    file.truncate(4);
    expect(sizes).toEqual([4]);
    expect(cached).toEqual([4]);
  });

  it('hole punch with a lease: breaks it with the hole, the rest of the file stays', () => {
    const { mem, mm, file } = world({ pages: 8 });
    mm.mmap({ start: 0, count: 8, file });
    const pfns = filePfns(file);
    const o = mem.pinOwner('o', { kind: 'file' });
    mm.pinUserPagesFast(0, 8, { longterm: true, owner: o });
    const events: LeaseBreak[] = [];
    const lease = file.takeLease(o, {
      onBreak: (e) => {
        events.push(e);
        // after the change: the hole is gone from the page cache and the mappings
        expect(file.pfnAt(2)).toBeNull();
        expect(mm.translate(3)).toBeNull();
        expect(mem.refcount(pfns[2]!)).toBe(1024);
      },
    });
    const report = file.punchHole(2, 2);
    const event = { file: 'data', owner: 'o', reason: 'punchHole', offset: 2, count: 2, pinnedPages: 2 };
    expect(report).toEqual({ removedPages: 2, stillReferencedPages: 2, brokenLeases: [event], zappedMappings: 1 });
    expect(events).toEqual([event]);
    expect(lease.breakReport).toEqual(event);
    expect(file.size).toBe(8);
    expect(filePfns(file)).toEqual([pfns[0], pfns[1], null, null, ...pfns.slice(4)]);
    expect(mem.refcount(pfns[5]!)).toBe(1 + 1 + 1024); // cache, entry, pin
  });

  it('an empty hole punch is no layout change: no lease breaks', () => {
    const { mem, file } = world({ pages: 8 });
    const o = mem.pinOwner('o', { kind: 'file' });
    const lease = file.takeLease(o);
    expect(file.punchHole(4, 0)).toEqual({ removedPages: 0, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 0 });
    expect(lease.held).toBe(true);
    expect(file.leaseBreaks()).toEqual([]);
  });

  it('a broken lease protects no more: the holder\'s remaining long-term pins block the next change', () => {
    const w = world({ pages: 8 });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 8, file });
    const o = mem.pinOwner('o');
    mm.pinUserPagesFast(0, 8, { longterm: true, owner: o });
    file.takeLease(o);
    file.punchHole(0, 2);
    refused(w, () => file.punchHole(4, 2), 'EBUSY', [/owner 'o' \(device\) call #1 pinUserPagesFast/]);
    // a new lease protects again
    const again = file.takeLease(o);
    expect(file.punchHole(4, 2).brokenLeases).toEqual([{ file: 'data', owner: 'o', reason: 'punchHole', offset: 4, count: 2, pinnedPages: 2 }]);
    expect(again.held).toBe(false);
    expect(file.leaseBreaks().length).toBe(2);
  });

  it('every held lease of the file breaks, with each holder\'s pinned pages; other files\' leases hold', () => {
    const { mem, mm, file } = world({ pages: 8 });
    const other = new PageCacheFile(mem, { name: 'other', pages: 2 });
    mm.mmap({ start: 0, count: 8, file });
    mm.mmap({ start: 100, count: 2, file: other });
    const a = mem.pinOwner('a');
    const b = mem.pinOwner('b');
    mm.pinUserPagesFast(6, 2, { longterm: true, owner: a });
    mm.pinUserPagesFast(0, 1, { longterm: true, owner: b }); // outside the truncated range
    const la = file.takeLease(a);
    const lb = file.takeLease(b);
    const lo = other.takeLease(a);
    const report = file.truncate(4);
    expect(report.brokenLeases).toEqual([
      { file: 'data', owner: 'a', reason: 'truncate', offset: 4, count: 4, pinnedPages: 2 },
      { file: 'data', owner: 'b', reason: 'truncate', offset: 4, count: 4, pinnedPages: 0 },
    ]);
    expect([la.held, lb.held, lo.held]).toEqual([false, false, true]);
    expect(other.leases()).toEqual([lo]);
    expect(other.leaseBreaks()).toEqual([]);
  });

  it('a released lease protects no more (EBUSY, nothing changes)', () => {
    const w = world({ pages: 4 });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 4, file });
    const o = mem.pinOwner('o');
    mm.pinUserPagesFast(0, 1, { longterm: true, owner: o });
    const lease = file.takeLease(o);
    lease.release();
    expect(lease.held).toBe(false);
    expect(lease.breakReport).toBeNull();
    expect(file.leases()).toEqual([]);
    refused(w, () => file.truncate(0), 'EBUSY', [/owner 'o'/]);
  });

  it('takeLease refuses a dropped owner, a second lease, an owner of another array and a bad onBreak (EINVAL)', () => {
    const { mem, file } = world({ pages: 4 });
    const o = mem.pinOwner('o');
    file.takeLease(o);
    expectPinlabError(() => file.takeLease(o), 'EINVAL', /owner 'o' already holds a lease on 'data'/);
    const d = mem.pinOwner('d');
    d.drop({ pins: 'release' });
    expectPinlabError(() => file.takeLease(d), 'EINVAL', /owner 'd' was dropped/);
    const foreign = new PageArray({ pages: 4 }).pinOwner('f');
    expectPinlabError(() => file.takeLease(foreign), 'EINVAL', /owner must be a PinOwner of this file's page array/);
    expectPinlabError(() => file.takeLease(mem.pinOwner('e'), { onBreak: 1 as never }), 'EINVAL', /onBreak must be a function/);
    expect(file.leases().map((l) => l.owner.name)).toEqual(['o']);
  });

  it("a dropped owner's lease protects no more: its leaked long-term pins block ('count' mode drop)", () => {
    const w = world({ pages: 4, mem: { onImbalance: 'count' } });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 4, file });
    const o = mem.pinOwner('o');
    const { pfns } = mm.pinUserPagesFast(2, 2, { longterm: true, owner: o });
    const lease = file.takeLease(o);
    expect(o.drop({ pins: 'report' }).leaked.length).toBe(1);
    expect(lease.held).toBe(false);
    expect(file.leases()).toEqual([]);
    refused(w, () => file.truncate(0), 'EBUSY', [new RegExp(`2 pages from pfn ${pfns[0]}\\.\\.${pfns[1]} long-term pinned by owner 'o' \\(device\\) call #1`)]);
    // the dropped owner may still unpin; then the truncate proceeds
    mm.unpinUserPages(pfns, { owner: o });
    expect(file.truncate(0)).toMatchObject({ removedPages: 4, stillReferencedPages: 0, brokenLeases: [] });
  });

  it('debug mode: an ownerless long-term pin blocks too (owner null); outside debug it is not seen', () => {
    const w = world({ pages: 4, mem: { debug: true } });
    const { mem, mm, file } = w;
    mm.mmap({ start: 0, count: 4, file });
    const { pfns } = mm.pinUserPagesFast(1, 1, { longterm: true });
    const err = refused(w, () => file.truncate(0), 'EBUSY', [
      new RegExp(`1 page from pfn ${pfns[0]} long-term pinned by \\(no owner\\) call #1 pinUserPagesFast via mm#${mm.id} vpages 1\\.\\.1 without a layout lease`),
    ]);
    expect(err.provenance).toEqual([{ callId: 1, owner: null, ownerKind: null, operation: 'pinUserPagesFast', via: `mm#${mm.id} vpages 1..1`, stack: null }]);
    // no lease can cover a pin without an owner: any lease still leaves it blocking
    file.takeLease(mem.pinOwner('x'));
    refused(w, () => file.truncate(0), 'EBUSY', [/\(no owner\) call #1/]);

    const n = world({ pages: 4, mem: { debug: false } });
    n.mm.mmap({ start: 0, count: 4, file: n.file });
    const { pfns: np } = n.mm.pinUserPagesFast(1, 1, { longterm: true });
    expect(n.file.truncate(0)).toMatchObject({ removedPages: 4, stillReferencedPages: 1 });
    n.mm.unpinUserPages(np);
    expect(n.mem.freePages()).toBe(4096);
  });

  it('folioOrder 9: a leased pin of a few subpages keeps the whole 2 MiB folio allocated', () => {
    const { mem, mm, file } = world({ pages: 1024, folioOrder: 9, rules: '2019' });
    mm.mmap({ start: 0, count: 1024, file });
    const head = file.pfnAt(512)!;
    const o = mem.pinOwner('o');
    const { pfns } = mm.pinUserPagesFast(600, 10, { write: true, longterm: true, owner: o });
    expect(Array.from(pfns)).toEqual(range(10, head + 88));
    const lease = file.takeLease(o);
    const report = file.truncate(512);
    expect(report).toEqual({
      removedPages: 512,
      stillReferencedPages: 512,
      brokenLeases: [{ file: 'data', owner: 'o', reason: 'truncate', offset: 512, count: 512, pinnedPages: 10 }],
      zappedMappings: 1,
    });
    expect(lease.held).toBe(false);
    expect(mem.refcount(head)).toBe(10); // hybrid large folio: one per pin
    expect(mem.pincount(head)).toBe(10);
    expect(mm.translate(600)).toBeNull();
    expect(mm.translate(511)!.pfn).toBe(file.pfnAt(511));
    expect(mem.freePages()).toBe(4096 - 1024);
    mm.unpinUserPages(pfns, { write: true, owner: o });
    expect(mem.refcount(head)).toBe(0);
    expect(mem.freePages()).toBe(4096 - 512);
  });

  it.each(SCHEMES)('scheme %s: a leased long-term write pin survives truncate with its exact references', (scheme) => {
    const { mem, mm, file } = world({ pages: 2, mem: { scheme }, rules: '2019' });
    mm.mmap({ start: 0, count: 2, file });
    const o = mem.pinOwner('o');
    const { pfns } = mm.pinUserPagesFast(0, 2, { write: true, longterm: true, owner: o });
    file.takeLease(o);
    expect(file.truncate(0)).toMatchObject({ removedPages: 2, stillReferencedPages: 2 });
    for (const p of pfns) {
      expect(mem.refcount(p)).toBe(pinRefs(scheme, 0, true));
      expect(mem.maybeDmaPinned(p)).toBe(true);
    }
    expect(o.drop({ pins: 'release' }).releasedPages).toBe(2);
    expect(mem.freePages()).toBe(4096);
  });
});
