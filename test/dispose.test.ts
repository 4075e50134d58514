// Issue 12 item 11: native memory visible to V8 (napi_adjust_external_memory) and deterministic
// release (dispose(), Symbol.dispose for `using`); every call on a disposed object is EINVAL.
import { describe, expect, it } from 'vitest';
import { AddressSpace, PageArray } from '../lib/index.js';
import { native } from '../lib/native.js';
import { DIST, describeChild, runChild } from './child.js';
import { codeOf } from './helpers.js';

/** The PinlabError code `fn` throws, or 'no error'. */
const code = (fn: () => unknown): string => codeOf(fn) ?? 'no error';

describe('native memory and dispose', () => {
  it('dropped page arrays and forks do not grow the process (the GC sees their native memory)', () => {
    const r = runChild(
      `import { PageArray, AddressSpace } from '${DIST}';
       import { setImmediate as tick } from 'node:timers/promises';
       const rss = () => process.memoryUsage().rss / 2 ** 20;
       const base = rss();
       let arrays = 0, forks = 0;
       // 40 arrays of 2^24 pages: 80 MiB each, 3.2 GiB if none were freed. No gc(): the
       // external memory reported makes V8 collect by itself.
       for (let i = 0; i < 40; i++) { new PageArray({ pages: 2 ** 24 }); await tick(); arrays = Math.max(arrays, rss() - base); }
       // With gc() every round, at most one is ever live.
       let gced = 0;
       for (let i = 0; i < 20; i++) { new PageArray({ pages: 2 ** 24 }); globalThis.gc(); await tick(); gced = Math.max(gced, rss() - base); }
       const mem = new PageArray({ pages: 1 << 20, populated: false });
       const mm = new AddressSpace(mem, { pages: 1 << 20 });
       mm.mmap({ start: 0, count: 1 << 19, populate: true });
       const f0 = rss();
       for (let i = 0; i < 40; i++) { mm.fork(); globalThis.gc(); await tick(); forks = Math.max(forks, rss() - f0); }
       // dispose() frees at once, with no GC.
       const big = new PageArray({ pages: 2 ** 24 });
       const held = rss();
       big.dispose();
       const freed = held - rss();
       console.log(JSON.stringify({ arrays, gced, forks, freed, free: mem.freePages() }));`,
      { nodeArgs: ['--expose-gc', '--max-old-space-size=64'], timeoutMs: 120_000 },
    );
    expect(r.status, describeChild(r)).toBe(0);
    const out = r.out as { arrays: number; gced: number; forks: number; freed: number; free: number };
    console.log('dispose/gc RSS (MiB):', JSON.stringify(out));
    expect(out.arrays).toBeLessThan(1200); // measured ~400 (3200 without the accounting)
    expect(out.gced).toBeLessThan(300); // measured ~0-80
    expect(out.forks).toBeLessThan(300); // measured ~40
    expect(out.freed).toBeGreaterThan(60); // 80 MiB of populated per-page arrays
    expect(out.free).toBe(1 << 19); // every fork's references went back
  });

  it('dispose() is idempotent, `using` calls it, and every later call is EINVAL', () => {
    const mem = new PageArray({ pages: 1024, debug: true });
    const owner = mem.pinOwner('o');
    mem.pinPages({ start: 0, count: 4 }, { owner });
    expect(mem.disposed).toBe(false);
    mem[Symbol.dispose]();
    mem.dispose();
    expect(mem.disposed).toBe(true);
    const calls: Record<string, () => unknown> = {
      makeFolio: () => mem.makeFolio(0, 1), splitFolio: () => mem.splitFolio(0), folioHead: () => mem.folioHead(0),
      folioOrder: () => mem.folioOrder(0), getPage: () => mem.getPage(0), tryGetPage: () => mem.tryGetPage(0),
      putPage: () => mem.putPage(0), pinPages: () => mem.pinPages({ start: 0, count: 1 }),
      pinList: () => mem.pinPages(new Uint32Array([1])), unpinPages: () => mem.unpinPages({ start: 0, count: 1 }),
      pinOwner: () => mem.pinOwner('p'), outstandingPins: () => mem.outstandingPins(), checkBalanced: () => mem.checkBalanced(),
      debugPinnedRuns: () => mem.debugPinnedRuns(), debugPagePins: () => mem.debugPagePins({ start: 0, count: 1 }),
      imbalances: () => mem.imbalances(), toBvecs: () => mem.toBvecs({ start: 0, count: 1 }), refcount: () => mem.refcount(0),
      pincount: () => mem.pincount(0), maybeDmaPinned: () => mem.maybeDmaPinned(0), isDirty: () => mem.isDirty(0),
      setDirty: () => mem.setDirty(0), countMaybeDmaPinned: () => mem.countMaybeDmaPinned({ start: 0, count: 1 }),
      stats: () => mem.stats(), allocFolio: () => mem.allocFolio(0), freePages: () => mem.freePages(),
      isMovable: () => mem.isMovable(0), zeroPfn: () => mem.zeroPfn, memoryUsage: () => mem.memoryUsage(),
      record: () => mem.record(), submit: () => mem.submit(new Uint32Array(0)),
      ownerOutstanding: () => owner.outstandingPins(), ownerDrop: () => owner.drop({ pins: 'release' }),
      newAddressSpace: () => new AddressSpace(mem, { pages: 16 }),
    };
    for (const [name, call] of Object.entries(calls)) expect(`${name}: ${code(call)}`).toBe(`${name}: EINVAL`);
  });

  it('the addon refuses a disposed object by itself (not only lib/)', () => {
    const m = new native.NativePageArray({ pages: 64, scheme: 'hybrid', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: true, movablePages: 0 });
    const a = new native.NativeAddressSpace(m, 64);
    a.dispose();
    a.dispose();
    expect(a.isDisposed()).toBe(true);
    for (const f of ['mmap', 'munmap', 'gup', 'fork', 'translate', 'info', 'stats', 'migrate', 'setRaceHook', 'unpinUserPages'] as const)
      expect(`${f}: ${code(() => (a[f] as (...x: unknown[]) => unknown)(0, 1, 0))}`).toBe(`${f}: EINVAL`);
    m.dispose();
    for (const f of ['refcount', 'pinRange', 'pinList', 'unpinList', 'stats', 'info', 'freePages', 'debugPinnedRuns', 'allocFolio'] as const)
      expect(`${f}: ${code(() => (m[f] as (...x: unknown[]) => unknown)(0, 1, 0))}`).toBe(`${f}: EINVAL`);
    expect(code(() => new native.NativeAddressSpace(m, 64))).toBe('EINVAL');
    expect(code(() => native.submitOps(m, new Uint32Array(0), false, [], 1, new Int32Array(1)))).toBe('EINVAL');
  });

  it('an address space keeps the page array core alive: disposing the array first is safe', () => {
    const m = new native.NativePageArray({ pages: 4096, scheme: 'bias', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: false, movablePages: 0 });
    const a = new native.NativeAddressSpace(m, 4096);
    a.mmap(0, 1024, true, true, false);
    m.dispose(); // the native address space still works on the core it holds
    expect(a.gup(0, 16, 0).length).toBe(16);
    a.dispose();
  });

  it('disposing a page array disposes its address spaces; a disposed address space is forgotten', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const mm = new AddressSpace(mem, { pages: 1 << 12 });
    mm.mmap({ start: 0, count: 64, populate: true });
    const child = mm.fork();
    child.dispose();
    expect(child.disposed).toBe(true);
    expect(AddressSpace.byId(mem, child.id)).toBeNull();
    expect(code(() => child.translate(0))).toBe('EINVAL');
    // A batch still runs (the disposed child is not among its live address spaces).
    expect(mem.submit(new Uint32Array(0)).length).toBe(0);
    expect(mm.mappedPages).toBe(64);
    mem.dispose();
    expect(mm.disposed).toBe(true);
    expect(code(() => mm.translate(0))).toBe('EINVAL');
    expect(code(() => mm.pinUserPagesFast(0, 1))).toBe('EINVAL');
  });

  it('every AddressSpace method of a disposed address space is EINVAL', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const mm = new AddressSpace(mem, { pages: 1 << 12 });
    mm.mmap({ start: 0, count: 64, populate: true });
    using scoped = new AddressSpace(mem, { pages: 16 });
    expect(scoped.disposed).toBe(false);
    mm[Symbol.dispose]();
    const pfns = new Uint32Array([1]);
    const calls: Record<string, () => unknown> = {
      mmap: () => mm.mmap({ start: 100, count: 1 }), munmap: () => mm.munmap({ start: 0, count: 1 }),
      mprotect: () => mm.mprotect({ start: 0, count: 1, write: false }), touch: () => mm.touch(0, 1),
      pinUserPagesFast: () => mm.pinUserPagesFast(0, 1), getUserPagesFast: () => mm.getUserPagesFast(0, 1),
      pinUserPages: () => mm.pinUserPages(0, 1), unpinUserPages: () => mm.unpinUserPages(pfns),
      putUserPages: () => mm.putUserPages(pfns), fork: () => mm.fork(), migrate: () => mm.migrate({ start: 0, count: 1 }),
      compact: () => mm.compact(), translate: () => mm.translate(0), hasPinned: () => mm.hasPinned,
      regions: () => mm.regions, mappedPages: () => mm.mappedPages, stats: () => mm.stats(), setRaceHook: () => mm.setRaceHook(null),
    };
    for (const [name, call] of Object.entries(calls)) expect(`${name}: ${code(call)}`).toBe(`${name}: EINVAL`);
    expect(mem.freePages()).toBe(mem.pages); // its pages went back with it
  });

  it('a race hook that disposes its address space mid-walk: the walk finishes, then it is freed', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const mm = new AddressSpace(mem, { pages: 1 << 12 });
    mm.mmap({ start: 0, count: 64, populate: true });
    let calls = 0;
    mm.setRaceHook(() => {
      calls++;
      mm.dispose();
      mem.dispose();
    });
    const r = mm.pinUserPagesFast(0, 8);
    expect(calls).toBeGreaterThan(0);
    expect(r.count).toBe(8);
    expect(code(() => mm.translate(0))).toBe('EINVAL');
  });
});
