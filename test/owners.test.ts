// Pin owners (seed 000) and debug provenance (seed 001): every pin call with an owner is
// recorded as runs and stays traceable after its mapping is gone; unpins are matched against
// the owner's records; drop and checkBalanced report leaks by owner, call and run. Each refused
// call is checked to change nothing (refcounts, pin counts, outstanding pins, counters).
import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';

import {
  AddressSpace,
  PageArray,
  PinOwner,
  SCHEMES,
  type OutstandingPin,
  type PageArrayOptions,
  type PinlabErrorCode,
  type Scheme,
} from '../lib/index.js';
import { expectPinlabError, expectRefusedUnchanged, gcFunction, range } from './helpers.js';
import { pfnsOf, pinRefs, pinVisible } from './mm-helpers.js';
import { schemeTraits } from './scheme-traits.js';

/** A free array (pages allocated by mmap) and one address space over it. */
function setup(opts: Partial<PageArrayOptions> = {}, pages = 256): { mem: PageArray; mm: AddressSpace } {
  const mem = new PageArray({ pages, populated: false, scheme: 'hybrid', ...opts });
  const mm = new AddressSpace(mem, { pages: 1024 });
  return { mem, mm };
}

/** An outstanding pin without its owner object, for deep comparisons. */
function plain(p: OutstandingPin): Omit<OutstandingPin, 'ownerObject'> {
  const { ownerObject: _o, ...rest } = p;
  return rest;
}

/** Everything a refused call must leave as it was. */
function memState(mem: PageArray) {
  const pages = [];
  for (let p = 0; p < mem.pages; p++) {
    pages.push([mem.refcount(p), mem.pincount(p), mem.maybeDmaPinned(p), mem.isDirty(p)]);
  }
  const s = mem.stats();
  return {
    pages,
    free: mem.freePages(),
    stats: { pinAcquired: s.pinAcquired, pinReleased: s.pinReleased, grabs: s.grabs, foliosFreed: s.foliosFreed },
    outstanding: mem.outstandingPins().map(plain),
  };
}

/** Asserts `fn` throws `code` with a message matching every pattern and changes nothing. */
function refused(mem: PageArray, fn: () => unknown, code: PinlabErrorCode, ...msgs: RegExp[]) {
  return expectRefusedUnchanged(() => memState(mem), fn, code, msgs);
}

describe('pinOwner', () => {
  it('creates owners with a name and kind (default device); bad names and kinds are EINVAL', () => {
    const { mem } = setup();
    const d = mem.pinOwner('nic');
    expect(d).toBeInstanceOf(PinOwner);
    expect([d.name, d.kind, d.mem, d.dropped]).toEqual(['nic', 'device', mem, false]);
    expect(mem.pinOwner('proc', { kind: 'mm' }).kind).toBe('mm');
    expect(mem.pinOwner('rdma-file', { kind: 'file' }).kind).toBe('file');
    expectPinlabError(() => mem.pinOwner(''), 'EINVAL', /non-empty string/);
    expectPinlabError(() => mem.pinOwner(7 as unknown as string), 'EINVAL', /non-empty string/);
    expectPinlabError(() => mem.pinOwner('x', { kind: 'gpu' as 'mm' }), 'EINVAL', /kind/);
    expectPinlabError(() => mem.pinOwner('x', { kinds: 'mm' } as never), 'EINVAL', /unknown option 'kinds'/);
  });

  it('a live name cannot be reused (EINVAL naming it); a dropped owner frees its name', () => {
    const { mem } = setup();
    const a = mem.pinOwner('dup');
    expectPinlabError(() => mem.pinOwner('dup', { kind: 'mm' }), 'EINVAL', /'dup' is already in use/);
    // another page array has its own names
    const other = new PageArray({ pages: 8 });
    expect(other.pinOwner('dup').name).toBe('dup');
    a.drop({ pins: 'release' });
    const b = mem.pinOwner('dup', { kind: 'mm' });
    expect(b).not.toBe(a);
    expect(b.kind).toBe('mm');
    expect(b.dropped).toBe(false);
  });
});

describe('recording pin calls by owner', () => {
  it('pinPages of a range: one run, with owner, call id and flags', () => {
    const mem = new PageArray({ pages: 32 });
    const nic = mem.pinOwner('nic');
    expect(mem.outstandingPins()).toEqual([]);
    expect(mem.pinPages({ start: 4, count: 4 }, { write: true, owner: nic })).toBe(4);
    const expected = {
      callId: 1,
      owner: 'nic',
      ownerKind: 'device',
      operation: 'pinPages',
      via: null,
      stack: null,
      pfn: 4,
      count: 4,
      write: true,
      longterm: false,
    };
    const out = mem.outstandingPins();
    expect(out.map(plain)).toEqual([expected]);
    expect(out[0]!.ownerObject).toBe(nic);
    expect(nic.outstandingPins().map(plain)).toEqual([expected]);
    expect(mem.outstandingPins({ owner: nic }).map(plain)).toEqual([expected]);
    for (let p = 0; p < 32; p++) expect(mem.refcount(p), `pfn ${p}`).toBe(p >= 4 && p < 8 ? 1 + 1024 : 1);
  });

  it('pinPages of a PFN list: the list as runs of consecutive PFNs, repeats pinned twice', () => {
    const mem = new PageArray({ pages: 32, scheme: 'separate' });
    const nic = mem.pinOwner('nic');
    expect(mem.pinPages(new Uint32Array([9, 3, 4, 5, 9, 20]), { owner: nic })).toBe(6);
    const out = mem.outstandingPins().map((p) => [p.callId, p.pfn, p.count, p.operation, p.write]);
    expect(out).toEqual([
      [1, 9, 1, 'pinPages', false],
      [1, 3, 3, 'pinPages', false],
      [1, 9, 1, 'pinPages', false],
      [1, 20, 1, 'pinPages', false],
    ]);
    expect(mem.pincount(9)).toBe(2);
    expect(mem.pincount(4)).toBe(1);
    // unpinning the same list (another order) releases exactly the call
    mem.unpinPages(new Uint32Array([20, 9, 9, 5, 4, 3]), { owner: nic });
    expect(mem.outstandingPins()).toEqual([]);
    for (let p = 0; p < 32; p++) expect([mem.refcount(p), mem.pincount(p)], `pfn ${p}`).toEqual([1, 0]);
  });

  it('pinUserPagesFast and pinUserPages record operation, via (mm and vpages), write and longterm', () => {
    const { mem, mm } = setup({ scheme: 'separate' });
    mm.mmap({ start: 0, count: 16, populate: true });
    const pfns = pfnsOf(mm, 0, 16);
    const rdma = mem.pinOwner('rdma', { kind: 'file' });
    const proc = mem.pinOwner('proc', { kind: 'mm' });
    const a = mm.pinUserPagesFast(2, 4, { write: true, longterm: true, owner: rdma });
    expect(Array.from(a.pfns)).toEqual(pfns.slice(2, 6));
    const b = mm.pinUserPages(8, 3, { owner: proc });
    expect(b.count).toBe(3);
    const c = mm.pinUserPagesFast(3, 2, { owner: rdma });
    expect(c.count).toBe(2);
    const out = mem.outstandingPins().map(plain);
    expect(out).toEqual([
      {
        callId: 1,
        owner: 'rdma',
        ownerKind: 'file',
        operation: 'pinUserPagesFast',
        via: `mm#${mm.id} vpages 2..5`,
        stack: null,
        pfn: pfns[2],
        count: 4,
        write: true,
        longterm: true,
      },
      {
        callId: 2,
        owner: 'proc',
        ownerKind: 'mm',
        operation: 'pinUserPages',
        via: `mm#${mm.id} vpages 8..10`,
        stack: null,
        pfn: pfns[8],
        count: 3,
        write: false,
        longterm: false,
      },
      {
        callId: 3,
        owner: 'rdma',
        ownerKind: 'file',
        operation: 'pinUserPagesFast',
        via: `mm#${mm.id} vpages 3..4`,
        stack: null,
        pfn: pfns[3],
        count: 2,
        write: false,
        longterm: false,
      },
    ]);
    expect(rdma.outstandingPins().map((p) => p.callId)).toEqual([1, 3]);
    expect(mem.outstandingPins({ owner: proc }).map((p) => p.callId)).toEqual([2]);
    expect(mem.pincount(pfns[3]!)).toBe(2);
    // getUserPagesFast (FOLL_GET) is not a pin: nothing recorded, and it takes no owner
    mm.getUserPagesFast(12, 2);
    expect(mem.outstandingPins().length).toBe(3);
    expectPinlabError(() => mm.getUserPagesFast(12, 1, { owner: rdma } as never), 'EINVAL', /unknown option 'owner'/);
  });

  it('call ids count per page array, and a pin without owner (no debug) is not recorded', () => {
    const a = new PageArray({ pages: 16 });
    const b = new PageArray({ pages: 16 });
    const oa = a.pinOwner('o');
    const ob = b.pinOwner('o');
    a.pinPages({ start: 0, count: 1 }, { owner: oa });
    a.pinPages({ start: 1, count: 1 }); // not recorded outside debug
    a.pinPages({ start: 2, count: 1 }, { owner: oa });
    b.pinPages({ start: 5, count: 1 }, { owner: ob });
    expect(a.outstandingPins().map((p) => [p.callId, p.pfn])).toEqual([
      [1, 0],
      [2, 2],
    ]);
    expect(b.outstandingPins().map((p) => [p.callId, p.pfn])).toEqual([[1, 5]]);
  });

  it('read pins of the zero page are not recorded, and unpinning them balances', () => {
    const { mem, mm } = setup();
    mm.mmap({ start: 0, count: 4 });
    mm.touch(0, 4); // read faults: the zero page
    const zero = mem.zeroPfn!;
    expect(zero).not.toBeNull();
    const o = mem.pinOwner('reader');
    const r = mm.pinUserPagesFast(0, 4, { owner: o });
    expect(Array.from(r.pfns)).toEqual([zero, zero, zero, zero]);
    expect(o.outstandingPins()).toEqual([]);
    expect(mem.checkBalanced()).toEqual([]);
    mm.unpinUserPages(r.pfns, { owner: o });
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe('pins outlive their mapping', () => {
  it('after munmap the owner still holds its pins and unpins them (the pages are then freed)', () => {
    const { mem, mm } = setup({ scheme: 'bias' });
    const free0 = mem.freePages();
    mm.mmap({ start: 0, count: 8, populate: true });
    const pfns = pfnsOf(mm, 0, 8);
    const o = mem.pinOwner('dma');
    const { pfns: pinned } = mm.pinUserPagesFast(0, 8, { write: true, owner: o });
    const before = o.outstandingPins().map(plain);
    mm.munmap({ start: 0, count: 8 });
    expect(mm.mappedPages).toBe(0);
    expect(o.outstandingPins().map(plain)).toEqual(before);
    expect(before).toMatchObject([{ pfn: pfns[0], count: 8, via: `mm#${mm.id} vpages 0..7` }]);
    for (const p of pfns) expect(mem.refcount(p)).toBe(1024); // the pin alone
    expect(mem.freePages()).toBe(free0 - 8);
    const freed0 = mem.stats().foliosFreed;
    mm.unpinUserPages(pinned, { owner: o, write: true });
    expect(o.outstandingPins()).toEqual([]);
    for (const p of pfns) expect(mem.refcount(p)).toBe(0);
    expect(mem.freePages()).toBe(free0);
    expect(mem.stats().foliosFreed - freed0).toBe(8);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('after the AddressSpace object is dropped and collected, the pins are still traced and releasable', async () => {
    const gc = gcFunction();
    const mem = new PageArray({ pages: 256, populated: false, scheme: 'separate' });
    const free0 = mem.freePages();
    const o = mem.pinOwner('driver');
    // The address space lives only inside this function.
    const { pfns, id } = ((): { pfns: number[]; id: number } => {
      const mm = new AddressSpace(mem, { pages: 64 });
      mm.mmap({ start: 0, count: 4, populate: true });
      mm.pinUserPagesFast(0, 4, { write: true, longterm: true, owner: o });
      return { pfns: pfnsOf(mm, 0, 4), id: mm.id };
    })();
    for (let i = 0; i < 3; i++) {
      await sleep(0);
      gc();
    }
    await sleep(10);
    gc();
    expect(o.outstandingPins().map(plain)).toEqual([
      {
        callId: 1,
        owner: 'driver',
        ownerKind: 'device',
        operation: 'pinUserPagesFast',
        via: `mm#${id} vpages 0..3`,
        stack: null,
        pfn: pfns[0],
        count: 4,
        write: true,
        longterm: true,
      },
    ]);
    for (const p of pfns) {
      expect(mem.pincount(p)).toBe(1);
      expect(mem.refcount(p)).toBe(1); // the mapping's reference went with the address space
    }
    const report = o.drop({ pins: 'release' });
    expect(report).toEqual({ releasedPages: 4, leaked: [] });
    expect(mem.freePages()).toBe(free0);
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe('unpin by owner', () => {
  it('a subset of a call\'s pages: the call keeps the rest as runs', () => {
    const mem = new PageArray({ pages: 32, scheme: 'separate' });
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 0, count: 8 }, { owner: o });
    mem.unpinPages(new Uint32Array([3, 2, 6]), { owner: o });
    expect(o.outstandingPins().map((p) => [p.callId, p.pfn, p.count])).toEqual([
      [1, 0, 2],
      [1, 4, 2],
      [1, 7, 1],
    ]);
    for (let p = 0; p < 8; p++) expect(mem.pincount(p), `pfn ${p}`).toBe([2, 3, 6].includes(p) ? 0 : 1);
    // the released pages cannot be released again by the owner
    const err = refused(mem, () => mem.unpinPages({ start: 2, count: 1 }, { owner: o }), 'ENOTPINNED', /owner 'o' holds no pin/, /pfn 2\b/);
    expect(err.message).toMatch(/call #1 pinPages already released it/);
    mem.unpinPages({ start: 0, count: 2 }, { owner: o });
    mem.unpinPages({ start: 4, count: 2 }, { owner: o });
    mem.unpinPages({ start: 7, count: 1 }, { owner: o });
    expect(o.outstandingPins()).toEqual([]);
    for (let p = 0; p < 8; p++) expect(mem.refcount(p)).toBe(1);
  });

  it('a release spanning two calls of one owner takes pages from each, oldest first', () => {
    const mem = new PageArray({ pages: 32, scheme: 'separate' });
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 0, count: 4 }, { owner: o });
    mem.pinPages({ start: 2, count: 4 }, { owner: o });
    mem.unpinPages({ start: 1, count: 4 }, { owner: o }); // 1..3 from call 1, 4 from call 2
    expect(o.outstandingPins().map((p) => [p.callId, p.pfn, p.count])).toEqual([
      [1, 0, 1],
      [2, 2, 2],
      [2, 5, 1],
    ]);
    expect([0, 1, 2, 3, 4, 5].map((p) => mem.pincount(p))).toEqual([1, 0, 1, 1, 0, 1]);
  });

  it('the wrong owner: ENOTPINNED naming that owner, the pfn and the real holder; nothing changes', () => {
    const { mem, mm } = setup();
    mm.mmap({ start: 0, count: 4, populate: true });
    const a = mem.pinOwner('alpha');
    const b = mem.pinOwner('beta', { kind: 'mm' });
    const { pfns } = mm.pinUserPagesFast(0, 4, { owner: a });
    const err = refused(
      mem,
      () => mm.unpinUserPages(pfns, { owner: b }),
      'ENOTPINNED',
      new RegExp(`pfn ${pfns[0]}: owner 'beta' holds no pin to release`),
      new RegExp(`its pins belong to owner 'alpha' \\(device\\) call #1 pinUserPagesFast via mm#${mm.id} vpages 0\\.\\.3`),
    );
    expect(err.provenance).toMatchObject([{ owner: 'alpha', callId: 1, operation: 'pinUserPagesFast' }]);
    refused(mem, () => mem.unpinPages({ start: pfns[1]!, count: 1 }, { owner: b }), 'ENOTPINNED', /owner 'beta'/, new RegExp(`pfn ${pfns[1]}\\b`));
    mm.unpinUserPages(pfns, { owner: a });
    expect(mem.outstandingPins()).toEqual([]);
  });

  it('an owner releasing some pages it holds and one it does not: ENOTPINNED naming the missing pfn, nothing released', () => {
    const mem = new PageArray({ pages: 32, scheme: 'bias' });
    const a = mem.pinOwner('a');
    const b = mem.pinOwner('b');
    mem.pinPages({ start: 0, count: 4 }, { owner: b });
    mem.pinPages({ start: 4, count: 2 }, { owner: a });
    refused(mem, () => mem.unpinPages({ start: 2, count: 3 }, { owner: b }), 'ENOTPINNED', /^ENOTPINNED: pfn 4: owner 'b' holds no pin/, /owner 'a' \(device\) call #2/);
    expect(mem.refcount(2)).toBe(1025);
    b.drop({ pins: 'release' });
    a.drop({ pins: 'release' });
    for (let p = 0; p < 8; p++) expect(mem.refcount(p)).toBe(1);
  });

  it('an owner of another page array is EINVAL everywhere, and changes nothing', () => {
    const { mem, mm } = setup();
    mm.mmap({ start: 0, count: 4, populate: true });
    const mine = mem.pinOwner('mine');
    mem.pinPages({ start: pfnsOf(mm, 0, 1)[0]!, count: 1 }, { owner: mine });
    const foreign = new PageArray({ pages: 16 }).pinOwner('foreign');
    const msg = /owner 'foreign' belongs to another page array/;
    refused(mem, () => mem.pinPages({ start: 0, count: 1 }, { owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mem.pinPages(new Uint32Array([0]), { owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mem.unpinPages({ start: 0, count: 1 }, { owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mm.pinUserPagesFast(0, 2, { owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mm.pinUserPages(0, 2, { owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mm.unpinUserPages(new Uint32Array([0]), { owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mem.outstandingPins({ owner: foreign }), 'EINVAL', msg);
    refused(mem, () => mem.pinPages({ start: 0, count: 1 }, { owner: {} as PinOwner }), 'EINVAL', /owner must be a PinOwner/);
  });
});

describe('drop', () => {
  it("pins: 'release' unpins every call (refcounts back) and drops the owner", () => {
    const { mem, mm } = setup({ scheme: 'separate' });
    mm.mmap({ start: 0, count: 8, populate: true });
    const pfns = pfnsOf(mm, 0, 8);
    const before = pfns.map((p) => mem.refcount(p));
    const o = mem.pinOwner('o');
    mm.pinUserPagesFast(0, 4, { write: true, owner: o });
    mm.pinUserPages(2, 6, { longterm: true, owner: o });
    mem.pinPages(new Uint32Array([pfns[7]!, pfns[0]!]), { owner: o });
    const acquired = mem.stats().pinAcquired;
    expect(mem.pincount(pfns[2]!)).toBe(2);
    const report = o.drop({ pins: 'release' });
    expect(report).toEqual({ releasedPages: 12, leaked: [] });
    expect(o.dropped).toBe(true);
    expect(pfns.map((p) => mem.refcount(p))).toEqual(before);
    expect(pfns.map((p) => mem.pincount(p))).toEqual(pfns.map(() => 0));
    expect(mem.stats().pinReleased).toBe(acquired);
    expect(mem.outstandingPins()).toEqual([]);
    expect(mem.checkBalanced()).toEqual([]);
    expectPinlabError(() => o.drop({ pins: 'release' }), 'EINVAL', /owner 'o' was already dropped/);
  });

  it("pins: 'report' with pins held: ELEAK naming owner, call and run; the owner stays live", () => {
    const mem = new PageArray({ pages: 32 });
    const o = mem.pinOwner('leaky', { kind: 'file' });
    mem.pinPages({ start: 4, count: 4 }, { write: true, owner: o });
    mem.pinPages({ start: 20, count: 1 }, { owner: o });
    const err = refused(
      mem,
      () => o.drop({ pins: 'report' }),
      'ELEAK',
      /owner 'leaky' dropped with pins held/,
      /owner 'leaky' \(file\) call #1 pinPages: pfn 4\.\.7 \(4 pages, write\)/,
      /call #2 pinPages: pfn 20 \(1 pages?, read\)/,
    );
    expect(err.leaks.map((l) => [l.owner, l.callId, l.pfn, l.count])).toEqual([
      ['leaky', 1, 4, 4],
      ['leaky', 2, 20, 1],
    ]);
    expect(err.leaks[0]!.ownerObject).toBe(o);
    expect(err.provenance.map((p) => p.callId)).toEqual([1, 2]);
    expect(o.dropped).toBe(false);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 0, ENOTPINNED: 0, ELEAK: 1 });
    // still live: it may pin more; once balanced, 'report' drops it
    mem.pinPages({ start: 0, count: 1 }, { owner: o });
    mem.unpinPages({ start: 4, count: 4 }, { owner: o, write: true });
    mem.unpinPages({ start: 20, count: 1 }, { owner: o });
    mem.unpinPages({ start: 0, count: 1 }, { owner: o });
    expect(o.drop({ pins: 'report' })).toEqual({ releasedPages: 0, leaked: [] });
    expect(o.dropped).toBe(true);
  });

  it("pins: 'release' is all or nothing: a release failing midway leaves every page and record as it was", () => {
    // Outside debug an ownerless unpin is not checked against the side table, so a buggy
    // caller can take one of the owner's pins away; the drop then fails on that page.
    const mem = new PageArray({ pages: 16, scheme: 'hybrid' });
    const o = mem.pinOwner('o');
    mem.pinPages(new Uint32Array([0, 5]), { owner: o }); // one call, two runs
    mem.pinPages({ start: 8, count: 1 }, { owner: o });
    mem.unpinPages({ start: 5, count: 1 });
    const pages = () => range(16).map((p) => mem.refcount(p));
    const before = pages();
    const records = o.outstandingPins().map(plain);
    expect(before.slice(0, 9)).toEqual([1025, 1, 1, 1, 1, 1, 1, 1, 1025]);
    expectPinlabError(() => o.drop({ pins: 'release' }), 'ENOTPINNED', /pfn 5/);
    expect(o.dropped).toBe(false);
    expect(o.outstandingPins().map(plain)).toEqual(records);
    expect(pages(), 'refcounts after the failed drop').toEqual(before);
  });

  it('drop needs an explicit, valid policy (EINVAL); the owner stays live', () => {
    const mem = new PageArray({ pages: 8 });
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 1, count: 1 }, { owner: o });
    refused(mem, () => (o.drop as (x?: unknown) => unknown)(), 'EINVAL', /drop needs \{ pins: 'release' \| 'report' \}/);
    refused(mem, () => o.drop({} as never), 'EINVAL', /drop needs/);
    refused(mem, () => o.drop({ pins: 'forget' } as never), 'EINVAL', /pins must be 'release' \| 'report'/);
    refused(mem, () => o.drop({ pins: 'release', force: true } as never), 'EINVAL', /unknown option 'force'/);
    expect(o.dropped).toBe(false);
    expect(o.outstandingPins().length).toBe(1);
  });

  it("a dropped owner takes no new pins (EINVAL naming it) but may still unpin ('count' mode leak)", () => {
    const mem = new PageArray({ pages: 64, populated: false, onImbalance: 'count' });
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 4, populate: true });
    const pfns = pfnsOf(mm, 0, 4);
    const o = mem.pinOwner('gone');
    const { pfns: pinned } = mm.pinUserPagesFast(0, 4, { owner: o });
    const report = o.drop({ pins: 'report' }); // counted, not thrown: dropped with its pins
    expect(report.releasedPages).toBe(0);
    expect(report.leaked.map((l) => [l.owner, l.pfn, l.count])).toEqual([['gone', pfns[0], 4]]);
    expect(o.dropped).toBe(true);
    expect(mem.stats().imbalances.ELEAK).toBe(1);
    expect(mem.imbalances().map((i) => i.kind)).toEqual(['ELEAK']);
    const msg = /owner 'gone' was dropped and takes no new pins/;
    refused(mem, () => mem.pinPages({ start: pfns[0]!, count: 1 }, { owner: o }), 'EINVAL', msg);
    refused(mem, () => mm.pinUserPagesFast(0, 1, { owner: o }), 'EINVAL', msg);
    refused(mem, () => mm.pinUserPages(0, 1, { owner: o }), 'EINVAL', msg);
    mm.unpinUserPages(pinned, { owner: o });
    expect(o.outstandingPins()).toEqual([]);
    for (const p of pfns) expect(mem.refcount(p)).toBe(1);
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe('checkBalanced', () => {
  it('returns [] when balanced', () => {
    const mem = new PageArray({ pages: 16 });
    expect(mem.checkBalanced()).toEqual([]);
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 0, count: 4 }, { owner: o });
    mem.pinPages({ start: 8, count: 2 });
    mem.unpinPages({ start: 0, count: 4 }, { owner: o });
    mem.unpinPages({ start: 8, count: 2 });
    expect(mem.checkBalanced()).toEqual([]);
    expect(mem.stats().imbalances.ELEAK).toBe(0);
  });

  it('throws ELEAK naming each owner and run (err.leaks), changing nothing', () => {
    const { mem, mm } = setup();
    mm.mmap({ start: 0, count: 8, populate: true });
    const pfns = pfnsOf(mm, 0, 8);
    const a = mem.pinOwner('a', { kind: 'mm' });
    const b = mem.pinOwner('b');
    mm.pinUserPagesFast(0, 3, { write: true, longterm: true, owner: a });
    mem.pinPages({ start: pfns[5]!, count: 1 }, { owner: b });
    const err = refused(
      mem,
      () => mem.checkBalanced(),
      'ELEAK',
      /2 runs still pinned/,
      new RegExp(`owner 'a' \\(mm\\) call #1 pinUserPagesFast via mm#${mm.id} vpages 0\\.\\.2: pfn ${pfns[0]}\\.\\.${pfns[2]} \\(3 pages, write, long-term\\)`),
      new RegExp(`owner 'b' \\(device\\) call #2 pinPages: pfn ${pfns[5]} \\(1 pages?, read\\)`),
    );
    expect(err.message).not.toMatch(/without an owner/);
    expect(err.leaks.map((l) => [l.owner, l.callId, l.pfn, l.count, l.longterm])).toEqual([
      ['a', 1, pfns[0], 3, true],
      ['b', 2, pfns[5], 1, false],
    ]);
    expect(mem.stats().imbalances.ELEAK).toBe(1);
  });

  it('outside debug: ownerless pins not released are reported by count (no runs)', () => {
    const mem = new PageArray({ pages: 32 });
    mem.pinPages({ start: 0, count: 3 });
    mem.pinPages(new Uint32Array([10, 10]));
    mem.unpinPages({ start: 0, count: 1 });
    const err = refused(mem, () => mem.checkBalanced(), 'ELEAK', /^ELEAK: 4 pins taken without an owner are not released \(debug: true lists their runs\)$/);
    expect(err.leaks).toEqual([]);
    // with an owner's leak too: both parts
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 20, count: 2 }, { owner: o });
    const err2 = expectPinlabError(() => mem.checkBalanced(), 'ELEAK');
    expect(err2.message).toMatch(/1 run still pinned: owner 'o' \(device\) call #1 pinPages: pfn 20\.\.21/);
    expect(err2.message).toMatch(/; 4 pins taken without an owner are not released/);
    expect(err2.leaks.length).toBe(1);
  });

  it('debug: ownerless pins are listed as runs with owner null, not counted separately', () => {
    const mem = new PageArray({ pages: 32, debug: true });
    mem.pinPages({ start: 5, count: 2 }, { write: true });
    expect(mem.outstandingPins().map(plain)).toEqual([
      { callId: 1, owner: null, ownerKind: null, operation: 'pinPages', via: null, stack: null, pfn: 5, count: 2, write: true, longterm: false },
    ]);
    expect(mem.outstandingPins()[0]!.ownerObject).toBeNull();
    const err = expectPinlabError(() => mem.checkBalanced(), 'ELEAK', /^ELEAK: 1 run still pinned: \(no owner\) call #1 pinPages: pfn 5\.\.6 \(2 pages, write\)$/);
    expect(err.message).not.toMatch(/without an owner are not released/);
    expect(err.leaks.map((l) => [l.owner, l.pfn, l.count])).toEqual([[null, 5, 2]]);
  });
});

describe.each(SCHEMES)('scheme %s: an owner\'s pins through their life', (scheme: Scheme) => {
  for (const write of [false, true]) {
    it(`write ${write}: pin, munmap, refused wrong releases, unpin by the owner frees the pages`, () => {
      const { mem, mm } = setup({ scheme });
      const free0 = mem.freePages();
      mm.mmap({ start: 0, count: 4, populate: true });
      const pfns = pfnsOf(mm, 0, 4);
      const o = mem.pinOwner('owner');
      const other = mem.pinOwner('other');
      const { pfns: pinned } = mm.pinUserPagesFast(0, 4, { write, owner: o });
      for (const p of pfns) {
        expect(mem.refcount(p)).toBe(1 + pinRefs(scheme, 0, write));
        expect(mem.maybeDmaPinned(p)).toBe(pinVisible(scheme, write));
      }
      mm.munmap({ start: 0, count: 4 });
      for (const p of pfns) expect(mem.refcount(p)).toBe(pinRefs(scheme, 0, write));
      refused(mem, () => mm.unpinUserPages(pinned, { owner: other, write }), 'ENOTPINNED', /owner 'other' holds no/, /its pins belong to owner 'owner'/);
      if (schemeTraits(scheme).readPinsHidden) {
        // the release must be of the kind pinned: the bias belongs to write pins only
        refused(
          mem,
          () => mm.unpinUserPages(pinned, { owner: o, write: !write }),
          'ENOTPINNED',
          new RegExp(`pfn ${pfns[0]}: owner 'owner' holds no ${write ? 'read' : 'write'} pin to release`),
        );
      }
      mm.unpinUserPages(pinned, { owner: o, write });
      for (const p of pfns) expect(mem.refcount(p)).toBe(0);
      expect(mem.freePages()).toBe(free0);
      expect(mem.checkBalanced()).toEqual([]);
    });
  }

  it('drop release undoes write and read pins of one owner together', () => {
    const mem = new PageArray({ pages: 16, scheme });
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 0, count: 4 }, { write: true, owner: o });
    mem.pinPages({ start: 2, count: 4 }, { owner: o });
    expect(mem.refcount(2)).toBe(1 + pinRefs(scheme, 0, true) + pinRefs(scheme, 0, false));
    expect(o.drop({ pins: 'release' }).releasedPages).toBe(8);
    for (let p = 0; p < 16; p++) expect([mem.refcount(p), mem.pincount(p) ?? 0], `pfn ${p}`).toEqual([1, 0]);
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe('write-bias: a release must match the pin kind', () => {
  it('a read unpin of write pins by the owner is ENOTPINNED (nothing changes); other schemes accept it', () => {
    const wb = new PageArray({ pages: 16, scheme: 'write-bias' });
    const o = wb.pinOwner('o');
    wb.pinPages({ start: 2, count: 2 }, { write: true, owner: o });
    refused(wb, () => wb.unpinPages({ start: 2, count: 2 }, { owner: o }), 'ENOTPINNED', /^ENOTPINNED: pfn 2: owner 'o' holds no read pin to release/);
    refused(wb, () => wb.unpinPages(new Uint32Array([3]), { owner: o }), 'ENOTPINNED', /pfn 3: owner 'o' holds no read pin/);
    wb.unpinPages({ start: 2, count: 2 }, { owner: o, write: true });
    expect(wb.refcount(2)).toBe(1);

    const hy = new PageArray({ pages: 16, scheme: 'separate' });
    const h = hy.pinOwner('o');
    hy.pinPages({ start: 2, count: 2 }, { write: true, owner: h });
    hy.unpinPages({ start: 2, count: 2 }, { owner: h });
    expect([hy.refcount(2), hy.pincount(2)]).toEqual([1, 0]);
    expect(h.outstandingPins()).toEqual([]);
  });
});

describe('debug provenance', () => {
  it('debugPinnedRuns / debugPagePins give the exact per-page truth, whoever pinned; EINVAL outside debug', () => {
    const mem = new PageArray({ pages: 64, debug: true, scheme: 'bias' });
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 3, count: 4 });
    mem.pinPages({ start: 5, count: 4 }, { owner: o });
    expect(mem.debugPinnedRuns()).toEqual([
      { pfn: 3, count: 2, pins: 1 },
      { pfn: 5, count: 2, pins: 2 },
      { pfn: 7, count: 2, pins: 1 },
    ]);
    expect([...mem.debugPagePins({ start: 2, count: 8 })]).toEqual([0, 1, 1, 2, 2, 1, 1, 0]);
    expectPinlabError(() => mem.debugPagePins({ start: 60, count: 8 }), 'ERANGE');
    const plain = new PageArray({ pages: 8 });
    expectPinlabError(() => plain.debugPinnedRuns(), 'EINVAL', /debug/);
    expectPinlabError(() => plain.debugPagePins({ start: 0, count: 1 }), 'EINVAL', /debug/);
  });

  it('every pin call is recorded, owner or not, and unpinning without an owner balances', () => {
    const mem = new PageArray({ pages: 64, populated: false, debug: true });
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 4, populate: true });
    const pfns = pfnsOf(mm, 0, 4);
    const { pfns: pinned } = mm.pinUserPagesFast(1, 2, { write: true });
    mem.pinPages({ start: pfns[0]!, count: 1 });
    expect(mem.outstandingPins().map(plain)).toEqual([
      { callId: 1, owner: null, ownerKind: null, operation: 'pinUserPagesFast', via: `mm#${mm.id} vpages 1..2`, stack: null, pfn: pfns[1], count: 2, write: true, longterm: false },
      { callId: 2, owner: null, ownerKind: null, operation: 'pinPages', via: null, stack: null, pfn: pfns[0], count: 1, write: false, longterm: false },
    ]);
    mm.unpinUserPages(pinned, { write: true });
    mem.unpinPages({ start: pfns[0]!, count: 1 });
    expect(mem.outstandingPins()).toEqual([]);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('a putPage that would eat pin references: EPINNED naming the owner and call; nothing changes', () => {
    const mem = new PageArray({ pages: 16, debug: true, scheme: 'bias' });
    const o = mem.pinOwner('hba');
    mem.pinPages({ start: 0, count: 2 });
    mem.pinPages({ start: 3, count: 1 }, { owner: o, write: true });
    const err = refused(
      mem,
      () => mem.putPage(3, 2),
      'EPINNED',
      /put on pfn 3 would release references that belong to pins/,
      /pinned by owner 'hba' \(device\) call #2 pinPages/,
    );
    expect(err.provenance).toEqual([{ callId: 2, owner: 'hba', ownerKind: 'device', operation: 'pinPages', via: null, stack: null }]);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 1, ENOTPINNED: 0, ELEAK: 0 });
    expect(mem.imbalances()).toEqual([{ kind: 'EPINNED', message: err.message.replace(/^EPINNED: /, ''), provenance: err.provenance }]);
    // ownerless pin in debug: named as "no owner"
    const e2 = refused(mem, () => mem.putPage(0, 2), 'EPINNED', /pfn 0/, /pinned by \(no owner\) call #1 pinPages\)$/);
    expect(e2.provenance).toMatchObject([{ callId: 1, owner: null }]);
    // the allocation reference alone may go
    expect(mem.putPage(3)).toBe(false);
    expect(mem.refcount(3)).toBe(1024);
  });

  it('a double unpin: ENOTPINNED naming the call that already released the page; nothing changes', () => {
    const mem = new PageArray({ pages: 16, debug: true });
    const o = mem.pinOwner('o', { kind: 'mm' });
    mem.pinPages({ start: 4, count: 2 });
    mem.pinPages({ start: 8, count: 1 }, { owner: o });
    mem.unpinPages({ start: 4, count: 2 });
    mem.unpinPages({ start: 8, count: 1 }, { owner: o });
    const e1 = refused(mem, () => mem.unpinPages({ start: 5, count: 1 }), 'ENOTPINNED', /^ENOTPINNED: pfn 5: no untracked pin to release; \(no owner\) call #1 pinPages already released it$/);
    expect(e1.provenance).toMatchObject([{ callId: 1, owner: null, operation: 'pinPages' }]);
    refused(mem, () => mem.unpinPages({ start: 8, count: 1 }, { owner: o }), 'ENOTPINNED', /^ENOTPINNED: pfn 8: owner 'o' holds no pin to release; owner 'o' \(mm\) call #2 pinPages already released it$/);
    expect(mem.stats().imbalances.ENOTPINNED).toBe(2);
  });

  it('an ownerless unpin of pages only an owner pinned: ENOTPINNED naming that owner', () => {
    const mem = new PageArray({ pages: 64, populated: false, debug: true });
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 2, populate: true });
    const o = mem.pinOwner('gpu');
    const { pfns } = mm.pinUserPagesFast(0, 2, { longterm: true, owner: o });
    const err = refused(
      mem,
      () => mm.unpinUserPages(pfns),
      'ENOTPINNED',
      new RegExp(`^ENOTPINNED: pfn ${pfns[0]}: no untracked pin to release; its pins belong to owner 'gpu' \\(device\\) call #1 pinUserPagesFast via mm#${mm.id} vpages 0\\.\\.1$`),
    );
    expect(err.provenance).toMatchObject([{ owner: 'gpu', callId: 1 }]);
    mm.unpinUserPages(pfns, { owner: o });
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('captureStacks: the recorded stack starts in the caller (this test file), not in pinlab', () => {
    const mem = new PageArray({ pages: 16, debug: true, captureStacks: true });
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 1, count: 1 }, { owner: o });
    const [pin] = mem.outstandingPins();
    expect(pin!.stack).toMatch(/owners\.test\.ts/);
    expect(pin!.stack!.split('\n')[0]).toMatch(/owners\.test\.ts/);
    expect(pin!.stack).not.toMatch(/page-array\.ts/);
    const err = expectPinlabError(() => mem.putPage(1, 2), 'EPINNED');
    expect(err.provenance[0]!.stack).toMatch(/owners\.test\.ts/);
    // without captureStacks there is no stack
    const plainMem = new PageArray({ pages: 4, debug: true });
    plainMem.pinPages({ start: 0, count: 1 });
    expect(plainMem.outstandingPins()[0]!.stack).toBeNull();
    expectPinlabError(() => new PageArray({ pages: 4, captureStacks: 'yes' as never }), 'EINVAL', /captureStacks/);
    expectPinlabError(() => new PageArray({ pages: 4, onImbalance: 'warn' as never }), 'EINVAL', /onImbalance/);
  });

  it("onImbalance 'count': no throw, counted by kind, logged, the offending release skipped", () => {
    const mem = new PageArray({ pages: 16, debug: true, onImbalance: 'count' });
    const o = mem.pinOwner('o');
    const p = mem.pinOwner('p');
    mem.pinPages({ start: 2, count: 2 }, { owner: o });
    mem.pinPages({ start: 6, count: 1 });
    const s0 = memState(mem);
    // EPINNED: the put is skipped
    expect(mem.putPage(2, 2)).toBe(false);
    // ENOTPINNED: the wrong owner, then a page nobody pinned
    mem.unpinPages({ start: 2, count: 2 }, { owner: p });
    mem.unpinPages({ start: 9, count: 1 });
    expect(memState(mem)).toEqual(s0);
    // ELEAK: returned, not thrown
    const leaks = mem.checkBalanced();
    expect(leaks.map((l) => [l.owner, l.pfn, l.count])).toEqual([
      ['o', 2, 2],
      [null, 6, 1],
    ]);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 1, ENOTPINNED: 2, ELEAK: 1 });
    const log = mem.imbalances();
    expect(log.map((i) => i.kind)).toEqual(['EPINNED', 'ENOTPINNED', 'ENOTPINNED', 'ELEAK']);
    expect(log[0]!.message).toMatch(/put on pfn 2 .*pinned by owner 'o' \(device\) call #1 pinPages/);
    expect(log[0]!.provenance).toMatchObject([{ owner: 'o', callId: 1 }]);
    expect(log[1]!.message).toMatch(/^pfn 2: owner 'p' holds no pin to release; its pins belong to owner 'o'/);
    expect(log[2]!.message).toMatch(/^pfn 9: no untracked pin to release$/);
    expect(log[2]!.provenance).toEqual([]);
    expect(log[3]!.message).toMatch(/2 runs still pinned/);
    // the right releases still work
    mem.unpinPages({ start: 2, count: 2 }, { owner: o });
    mem.unpinPages({ start: 6, count: 1 });
    expect(mem.checkBalanced()).toEqual([]);
    expect(mem.stats().imbalances.ELEAK).toBe(1);
    for (const q of range(16)) expect(mem.refcount(q)).toBe(1);
  });

  it("'count' mode without debug: owner mismatches are still caught, counted and skipped", () => {
    const mem = new PageArray({ pages: 16, onImbalance: 'count' });
    const o = mem.pinOwner('o');
    const p = mem.pinOwner('p');
    mem.pinPages({ start: 0, count: 1 }, { owner: o });
    const s0 = memState(mem);
    mem.unpinPages({ start: 0, count: 1 }, { owner: p });
    expect(memState(mem)).toEqual(s0);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 0, ENOTPINNED: 1, ELEAK: 0 });
    expect(mem.imbalances()[0]!.message).toMatch(/pfn 0: owner 'p' holds no pin/);
  });
});
