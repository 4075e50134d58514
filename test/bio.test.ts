// Bios (seed 004): the two release policies ('flagged': each bvec remembers pin or get;
// 'all-pins': every bio reference is a pin), their reference effects, completion, and a caller
// that releases the wrong way: caught before any change in debug mode, counted and completed
// correctly in 'count' mode, and outside debug a leak that checkBalanced finds.
import { describe, expect, it } from 'vitest';

import {
  AddressSpace,
  Bio,
  PageArray,
  PageCacheFile,
  SCHEMES,
  bioAddPage,
  bioFromUserPages,
  type BioPolicy,
  type PageArrayOptions,
  type PinlabErrorCode,
} from '../lib/index.js';
import { expectPinlabError, expectRefusedUnchanged } from './helpers.js';
import { pfnsOf, pinRefs } from './mm-helpers.js';

const POLICIES: readonly BioPolicy[] = ['flagged', 'all-pins'];

interface World {
  mem: PageArray;
  mm: AddressSpace;
  file: PageCacheFile;
  /** PFNs of the 4 user pages at vpages 0..3. */
  user: number[];
  /** PFNs of the 2 page-cache pages (the file mapped at vpages 100..101). */
  cache: number[];
}

/** 'separate' (exact pincounts) unless told. 4 anonymous user pages at 0 and a 2-page file mapped at 100 (so its pages exist). */
function world(opts: Partial<PageArrayOptions> = {}): World {
  const mem = new PageArray({ pages: 256, populated: false, scheme: 'separate', ...opts });
  const mm = new AddressSpace(mem, { pages: 1024 });
  mm.mmap({ start: 0, count: 4, populate: true });
  const file = new PageCacheFile(mem, { name: 'cache', pages: 2 });
  mm.mmap({ start: 100, count: 2, file });
  return { mem, mm, file, user: pfnsOf(mm, 0, 4), cache: [file.pfnAt(0)!, file.pfnAt(1)!] };
}

function memState(mem: PageArray) {
  const pages = [];
  for (let p = 0; p < mem.pages; p++) pages.push([mem.refcount(p), mem.pincount(p), mem.maybeDmaPinned(p), mem.isDirty(p)]);
  const s = mem.stats();
  return {
    pages,
    free: mem.freePages(),
    stats: { pinAcquired: s.pinAcquired, pinReleased: s.pinReleased, grabs: s.grabs, foliosFreed: s.foliosFreed },
    outstanding: mem.outstandingPins().map(({ ownerObject: _o, ...rest }) => rest),
  };
}

function refused(mem: PageArray, fn: () => unknown, code: PinlabErrorCode, ...msgs: RegExp[]) {
  return expectRefusedUnchanged(() => memState(mem), fn, code, msgs);
}

describe('bio construction', () => {
  it('a policy is required and checked (EINVAL); nothing is pinned', () => {
    const { mem, mm } = world();
    refused(mem, () => bioFromUserPages(mm, 0, 4, {} as never), 'EINVAL', /a bio needs \{ policy: 'flagged' \| 'all-pins' \}/);
    refused(mem, () => bioFromUserPages(mm, 0, 4, undefined as never), 'EINVAL', /a bio needs/);
    refused(mem, () => bioFromUserPages(mm, 0, 4, { policy: 'some-pins' as BioPolicy }), 'EINVAL', /policy must be 'flagged' \| 'all-pins' \(got 'some-pins'\)/);
    refused(mem, () => new Bio(mem, { write: true } as never), 'EINVAL', /a bio needs/);
    refused(mem, () => bioFromUserPages(mm, 0, 4, { policy: 'flagged', direction: 'in' } as never), 'EINVAL', /unknown option 'direction'/);
    const foreign = new PageArray({ pages: 8 }).pinOwner('foreign');
    refused(mem, () => bioFromUserPages(mm, 0, 4, { policy: 'flagged', owner: foreign }), 'EINVAL', /owner 'foreign' belongs to another page array/);
    const gone = mem.pinOwner('gone');
    gone.drop({ pins: 'release' });
    refused(mem, () => bioFromUserPages(mm, 0, 4, { policy: 'all-pins', owner: gone }), 'EINVAL', /owner 'gone' was dropped and takes no new pins/);
  });

  it('an empty bio made directly completes with nothing to release', () => {
    const { mem } = world();
    const bio = new Bio(mem, { policy: 'all-pins' });
    expect([bio.mem, bio.policy, bio.write, bio.owner, bio.pages, bio.completed]).toEqual([mem, 'all-pins', false, null, 0, false]);
    expect(bio.bvecs).toEqual([]);
    bio.complete();
    expect(bio.completed).toBe(true);
  });
});

describe.each(POLICIES)('policy %s', (policy) => {
  for (const write of [true, false]) {
    it(`write ${write}: user pages are pinned, a page-cache page is ${policy === 'flagged' ? 'referenced' : 'pinned'}; complete() restores every refcount`, () => {
      const { mem, mm, user, cache } = world();
      const before = memState(mem);
      const refs0 = [...user, ...cache].map((p) => mem.refcount(p));
      const o = mem.pinOwner('blk');
      const bio = bioFromUserPages(mm, 0, 4, { policy, write, owner: o });
      expect([bio.policy, bio.write, bio.owner]).toEqual([policy, write, o]);
      bioAddPage(bio, cache[1]!);
      const cacheRef = policy === 'flagged' ? 'get' : 'pin';
      expect(bio.bvecs).toEqual([...user.map((pfn) => ({ pfn, count: 1, ref: 'pin' })), { pfn: cache[1], count: 1, ref: cacheRef }]);
      expect(bio.pages).toBe(5);
      for (const p of user) {
        expect(mem.refcount(p)).toBe(1 + pinRefs('separate', 0, write));
        expect(mem.pincount(p)).toBe(1);
      }
      expect(mem.refcount(cache[1]!)).toBe(2 + (policy === 'flagged' ? 1 : pinRefs('separate', 0, write)));
      expect(mem.pincount(cache[1]!)).toBe(policy === 'flagged' ? 0 : 1);
      expect(mem.refcount(cache[0]!)).toBe(2);
      const ops = o.outstandingPins().map((p) => [p.operation, p.pfn, p.count, p.write, p.via]);
      expect(ops).toEqual([
        ['bioFromUserPages', user[0], 4, write, `mm#${mm.id} vpages 0..3`],
        ...(policy === 'all-pins' ? [['bioAddPage', cache[1], 1, write, null]] : []),
      ]);
      bio.complete();
      expect(bio.completed).toBe(true);
      expect([...user, ...cache].map((p) => mem.refcount(p))).toEqual(refs0);
      for (const p of user) {
        expect(mem.pincount(p)).toBe(0);
        expect(mem.isDirty(p), `user pfn ${p} dirty`).toBe(write);
      }
      expect(mem.isDirty(cache[0]!)).toBe(false);
      expect(o.outstandingPins()).toEqual([]);
      expect(mem.checkBalanced()).toEqual([]);
      const after = memState(mem);
      if (!write) expect(after.pages).toEqual(before.pages);
    });
  }

  it.each(SCHEMES)('scheme %s: write bio pin effects and their release', (scheme) => {
    const { mem, mm, user, cache } = world({ scheme });
    const bio = bioFromUserPages(mm, 1, 2, { policy, write: true });
    bioAddPage(bio, cache[0]!, { count: 2 });
    expect(mem.refcount(user[1]!)).toBe(1 + pinRefs(scheme, 0, true));
    expect(mem.maybeDmaPinned(user[1]!)).toBe(true);
    expect(mem.refcount(cache[0]!)).toBe(2 + (policy === 'flagged' ? 1 : pinRefs(scheme, 0, true)));
    expect(bio.bvecs.map((b) => b.ref)).toEqual(['pin', 'pin', ...(policy === 'flagged' ? ['get', 'get'] : ['pin', 'pin'])]);
    bio.complete();
    for (const p of user) expect(mem.refcount(p)).toBe(1);
    for (const p of cache) expect(mem.refcount(p)).toBe(2);
    expect([user[0], user[1], user[2], user[3]].map((p) => mem.isDirty(p!))).toEqual([false, true, true, false]);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('completing twice, releasing or adding after completion: EINVAL, nothing changes', () => {
    const { mem, mm, cache } = world();
    const bio = bioFromUserPages(mm, 0, 2, { policy });
    bio.complete();
    refused(mem, () => bio.complete(), 'EINVAL', /the bio already completed/);
    refused(mem, () => bio.release('unpin'), 'EINVAL', /the bio already completed/);
    refused(mem, () => bio.release('put'), 'EINVAL', /the bio already completed/);
    refused(mem, () => bioAddPage(bio, cache[0]!), 'EINVAL', /the bio already completed/);
  });

  it('bioAddPage refuses bad pages and options, all or nothing', () => {
    const { mem, mm, cache } = world();
    const bio = bioFromUserPages(mm, 0, 1, { policy });
    const free = mem.allocFolio(0);
    mem.putPage(free); // a free page
    refused(mem, () => bioAddPage(bio, free), 'EFREE', new RegExp(`pfn ${free}`));
    refused(mem, () => bioAddPage(bio, 256), 'ERANGE');
    refused(mem, () => bioAddPage(bio, -1), 'ERANGE');
    refused(mem, () => bioAddPage(bio, cache[0]!, { count: 0 }), 'EINVAL', /count must be >= 1 \(got 0\)/);
    refused(mem, () => bioAddPage({} as Bio, cache[0]!), 'EINVAL', /bio must be a Bio/);
    // a run reaching past the page cache's pages into a free page: nothing is taken
    expect(free).toBe(cache[1]! + 1);
    refused(mem, () => bioAddPage(bio, cache[0]!, { count: 3 }), 'EFREE');
    expect(bio.bvecs.length).toBe(1);
    bio.complete();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('a large folio: one bvec per folio run', () => {
    const mem = new PageArray({ pages: 2048, populated: false });
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 512, count: 512, huge: true, populate: true });
    const file = new PageCacheFile(mem, { name: 'big', pages: 512, folioOrder: 9 });
    mm.mmap({ start: 1024, count: 512, file });
    const head = mm.translate(512)!.pfn;
    const fhead = file.pfnAt(0)!;
    const bio = bioFromUserPages(mm, 600, 100, { policy, write: true });
    bioAddPage(bio, fhead + 8, { count: 16 });
    expect(bio.bvecs).toEqual([
      { pfn: head + 88, count: 100, ref: 'pin' },
      { pfn: fhead + 8, count: 16, ref: policy === 'flagged' ? 'get' : 'pin' },
    ]);
    expect(mem.pincount(head)).toBe(100);
    expect(mem.pincount(fhead)).toBe(policy === 'flagged' ? 0 : 16);
    const r0 = mem.refcount(fhead);
    bio.complete();
    expect(mem.pincount(head)).toBe(0);
    expect(mem.refcount(head)).toBe(1); // the PMD leaf's one reference
    expect(mem.refcount(fhead)).toBe(r0 - 16);
    expect(mem.refcount(fhead)).toBe(1 + 512);
  });
});

describe('dirtying', () => {
  it.each(POLICIES)("%s: a write bio dirties every page it completes, page-cache pages included", (policy) => {
    const { mem, mm, cache, user } = world();
    const bio = bioFromUserPages(mm, 0, 2, { policy, write: true });
    bioAddPage(bio, cache[0]!);
    bio.complete();
    expect([mem.isDirty(user[0]!), mem.isDirty(user[1]!), mem.isDirty(cache[0]!), mem.isDirty(cache[1]!)]).toEqual([true, true, true, false]);
  });

  it.each(POLICIES)('%s: a bio the device reads from leaves the pages clean', (policy) => {
    const { mem, mm, cache, user } = world();
    const bio = bioFromUserPages(mm, 0, 2, { policy });
    bioAddPage(bio, cache[0]!);
    bio.complete();
    expect([mem.isDirty(user[0]!), mem.isDirty(cache[0]!)]).toEqual([false, false]);
  });

  it('setDirty marks a live folio dirty; a free one is EFREE, a bad pfn ERANGE', () => {
    const mem = new PageArray({ pages: 16, populated: false });
    const head = mem.allocFolio(2);
    mem.setDirty(head + 3);
    expect(mem.isDirty(head)).toBe(true);
    expectPinlabError(() => mem.setDirty(8), 'EFREE');
    expectPinlabError(() => mem.setDirty(16), 'ERANGE');
  });
});

describe('releasing the wrong way', () => {
  it("debug: release('put') of pins is EPINNED naming the pfn and the pin call; nothing changes", () => {
    for (const policy of POLICIES) {
      const { mem, mm, user } = world({ debug: true });
      const o = mem.pinOwner('hba');
      const bio = bioFromUserPages(mm, 0, 4, { policy, write: true, owner: o });
      const err = refused(
        mem,
        () => bio.release('put'),
        'EPINNED',
        new RegExp(`^EPINNED: bio release put_page on pfn ${user[0]}, which the bio holds as a pin \\(pinned by owner 'hba' \\(device\\) call #1 bioFromUserPages via mm#${mm.id} vpages 0\\.\\.3\\): policy '${policy}' releases pins with unpin$`),
      );
      expect(err.provenance).toEqual([{ callId: 1, owner: 'hba', ownerKind: 'device', operation: 'bioFromUserPages', via: `mm#${mm.id} vpages 0..3`, stack: null }]);
      expect(bio.completed).toBe(false);
      expect(mem.stats().imbalances).toEqual({ EPINNED: 1, ENOTPINNED: 0, ELEAK: 0 });
      bio.complete();
      expect(mem.checkBalanced()).toEqual([]);
    }
  });

  it("debug, 'flagged': release('unpin') of a plain reference is ENOTPINNED naming the pfn; nothing changes", () => {
    const { mem, mm, cache } = world({ debug: true });
    const bio = new Bio(mem, { policy: 'flagged' });
    bioAddPage(bio, cache[0]!);
    refused(
      mem,
      () => bio.release('unpin'),
      'ENOTPINNED',
      new RegExp(`^ENOTPINNED: bio release unpins pfn ${cache[0]}, which the bio holds as a plain reference \\(bioAddPage under policy 'flagged'\\)$`),
    );
    // a mixed bio: the plain reference is found whatever comes first
    const mixed = bioFromUserPages(mm, 0, 2, { policy: 'flagged' });
    bioAddPage(mixed, cache[1]!);
    refused(mem, () => mixed.release('unpin'), 'ENOTPINNED', new RegExp(`unpins pfn ${cache[1]}`));
    refused(mem, () => mixed.release('put'), 'EPINNED', /put_page on pfn/);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 1, ENOTPINNED: 2, ELEAK: 0 });
    mixed.complete();
    bio.complete();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('debug: the release that matches every bvec goes through', () => {
    const { mem, mm, cache, user } = world({ debug: true });
    const a = bioFromUserPages(mm, 0, 4, { policy: 'all-pins', write: true });
    bioAddPage(a, cache[0]!);
    a.release('unpin');
    expect(a.completed).toBe(true);
    expect(mem.isDirty(user[2]!)).toBe(true);
    const f = new Bio(mem, { policy: 'flagged' });
    bioAddPage(f, cache[1]!, { count: 1 });
    f.release('put');
    expect(f.completed).toBe(true);
    for (const p of cache) expect(mem.refcount(p)).toBe(2);
    expect(mem.checkBalanced()).toEqual([]);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 0, ENOTPINNED: 0, ELEAK: 0 });
    expectPinlabError(() => new Bio(mem, { policy: 'flagged' }).release('drop' as never), 'EINVAL', /release must be 'unpin' \| 'put'/);
  });

  it("'count' mode: the wrong release is counted and the bio completed the right way", () => {
    const { mem, mm, user, cache } = world({ debug: true, onImbalance: 'count' });
    const refs0 = [...user, ...cache].map((p) => mem.refcount(p));
    const o = mem.pinOwner('o');
    const a = bioFromUserPages(mm, 0, 4, { policy: 'flagged', write: true, owner: o });
    bioAddPage(a, cache[0]!);
    a.release('put');
    expect(a.completed).toBe(true);
    const b = bioFromUserPages(mm, 0, 2, { policy: 'flagged', owner: o });
    bioAddPage(b, cache[1]!);
    b.release('unpin');
    expect(b.completed).toBe(true);
    expect([...user, ...cache].map((p) => mem.refcount(p))).toEqual(refs0);
    for (const p of user) expect(mem.pincount(p)).toBe(0);
    expect(mem.isDirty(user[3]!)).toBe(true);
    expect(mem.stats().imbalances).toEqual({ EPINNED: 1, ENOTPINNED: 1, ELEAK: 0 });
    const log = mem.imbalances();
    expect(log.map((i) => i.kind)).toEqual(['EPINNED', 'ENOTPINNED']);
    expect(log[0]!.message).toMatch(new RegExp(`put_page on pfn ${user[0]}.*owner 'o' \\(device\\) call #1 bioFromUserPages`));
    expect(log[0]!.provenance).toMatchObject([{ owner: 'o', callId: 1, operation: 'bioFromUserPages' }]);
    expect(log[1]!.message).toMatch(new RegExp(`unpins pfn ${cache[1]}`));
    expect(mem.checkBalanced()).toEqual([]);
  });

  it("no debug: a 'put' of pins goes through, and checkBalanced finds the leaked pins by owner", () => {
    for (const policy of POLICIES) {
      const { mem, mm, user, cache } = world({ debug: false, scheme: 'hybrid' });
      const o = mem.pinOwner('nvme', { kind: 'device' });
      const bio = bioFromUserPages(mm, 0, 3, { policy, owner: o });
      bioAddPage(bio, cache[0]!);
      bio.release('put');
      expect(bio.completed).toBe(true);
      for (const p of user.slice(0, 3)) {
        expect(mem.pincount(p)).toBeNull(); // hybrid order-0: not exact
        expect(mem.refcount(p)).toBe(1024); // the put ate the mapping's reference; the pin stays
      }
      const err = expectPinlabError(() => mem.checkBalanced(), 'ELEAK');
      expect(err.message).toMatch(new RegExp(`owner 'nvme' \\(device\\) call #1 bioFromUserPages via mm#${mm.id} vpages 0\\.\\.2: pfn ${user[0]}\\.\\.${user[2]} \\(3 pages, read\\)`));
      const leaks = err.leaks.map((l) => [l.owner, l.operation, l.pfn, l.count]);
      expect(leaks).toEqual([
        ['nvme', 'bioFromUserPages', user[0], 3],
        ...(policy === 'all-pins' ? [['nvme', 'bioAddPage', cache[0], 1]] : []),
      ]);
      if (policy === 'flagged') expect(mem.refcount(cache[0]!)).toBe(2);
    }
  });

  it('without an owner in debug mode the bio pins are recorded with owner null', () => {
    const { mem, mm, cache } = world({ debug: true });
    const bio = bioFromUserPages(mm, 0, 1, { policy: 'all-pins' });
    bioAddPage(bio, cache[0]!);
    expect(mem.outstandingPins().map((p) => [p.owner, p.operation])).toEqual([
      [null, 'bioFromUserPages'],
      [null, 'bioAddPage'],
    ]);
    const err = expectPinlabError(() => mem.checkBalanced(), 'ELEAK', /\(no owner\) call #1 bioFromUserPages via mm#\d+ vpages 0\.\.0: pfn \d+ \(1 pages?, read\); \(no owner\) call #2 bioAddPage: pfn \d+/);
    expect(err.leaks.length).toBe(2);
    bio.complete();
    expect(mem.checkBalanced()).toEqual([]);
  });
});
