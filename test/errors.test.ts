// Every error code, each leaving the array exactly as it was; rollback of multi-page calls that
// fail midway; constructor option errors naming the option; a 2^28-page array.
import { describe, expect, it } from 'vitest';

import { PageArray, PinlabError, SCHEMES, type PageSet, type PinPath, type Scheme } from '../lib/index.js';
import {
  INT32_MAX,
  codeOf,
  expectErrorNoChange,
  expectPinlabError,
  range,
  snapshot,
} from './helpers.js';
import { PinModel } from './model.js';
import { schemeTraits } from './scheme-traits.js';

const PATHS: PinPath[] = ['per-page', 'bvec'];

describe('PinlabError', () => {
  it('is an Error subclass carrying an errno-like code', () => {
    const pa = new PageArray({ pages: 4 });
    let err: unknown;
    try {
      pa.refcount(4);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PinlabError);
    expect(err).toBeInstanceOf(Error);
    const e = err as PinlabError;
    expect(e.code).toBe('ERANGE');
    expect(e.name).toBe('PinlabError');
    expect(e.message).toMatch(/^ERANGE: /);
    expect(e.message).toMatch(/\b4\b/); // names the offending value
    expect(typeof e.stack).toBe('string');
  });

  it('errors from the TS layer and from the native core are the same class', () => {
    const pa = new PageArray({ pages: 4 });
    const fromTs = expectPinlabError(() => pa.refcount(1.5), 'EINVAL');
    const fromNative = expectPinlabError(() => pa.putPage(0, 2), 'EINVAL');
    expect(fromTs.constructor).toBe(fromNative.constructor);
    const direct = new PinlabError('EBUSY', 'x');
    expect(direct.code).toBe('EBUSY');
    expect(direct.message).toBe('EBUSY: x');
  });
});

describe('constructor options', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['pages 0', { pages: 0 }, /pages/],
    ['pages -1', { pages: -1 }, /pages/],
    ['pages 2^31+1', { pages: 2 ** 31 + 1 }, /pages/],
    ['pages 2^32', { pages: 2 ** 32 }, /pages/],
    ['pages 1.5', { pages: 1.5 }, /pages/],
    ["pages 'x'", { pages: 'x' }, /pages/],
    ['pages NaN', { pages: NaN }, /pages/],
    ['pages missing', {}, /pages/],
    ['pinBias 3', { pages: 4, pinBias: 3 }, /pinBias/],
    ['pinBias 1', { pages: 4, pinBias: 1 }, /pinBias/],
    ['pinBias 0', { pages: 4, pinBias: 0 }, /pinBias/],
    ['pinBias 2^21', { pages: 4, pinBias: 2 ** 21 }, /pinBias/],
    ['pinBias -4', { pages: 4, pinBias: -4 }, /pinBias/],
    ['pinBias 1.5', { pages: 4, pinBias: 1.5 }, /pinBias/],
    ["pinBias '1024'", { pages: 4, pinBias: '1024' }, /pinBias/],
    ["scheme 'foo'", { pages: 4, scheme: 'foo' }, /scheme/],
    ["scheme 'Bias'", { pages: 4, scheme: 'Bias' }, /scheme/],
    ['scheme 1', { pages: 4, scheme: 1 }, /scheme/],
    ['folioOrder larger than pages', { pages: 16, folioOrder: 5 }, /folioOrder/],
    ['folioOrder not dividing pages', { pages: 24, folioOrder: 4 }, /folioOrder/],
    ['folioOrder -1', { pages: 16, folioOrder: -1 }, /folioOrder/],
    ['folioOrder 31', { pages: 16, folioOrder: 31 }, /folioOrder/],
    ['folioOrder 1.5', { pages: 16, folioOrder: 1.5 }, /folioOrder/],
    ['pincountMinOrder 0', { pages: 4, pincountMinOrder: 0 }, /pincountMinOrder/],
    ['pincountMinOrder -1', { pages: 4, pincountMinOrder: -1 }, /pincountMinOrder/],
    ['pincountMinOrder 1.5', { pages: 4, pincountMinOrder: 1.5 }, /pincountMinOrder/],
    ["debug 'yes'", { pages: 4, debug: 'yes' }, /debug/],
    ['debug 1', { pages: 4, debug: 1 }, /debug/],
    ['unknown key', { pages: 4, pinbias: 8 }, /pinbias/],
    ['unknown key folio_order', { pages: 4, folio_order: 1 }, /folio_order/],
  ];
  it.each(cases)('%s -> EINVAL naming the option', (_name, opts, re) => {
    expectPinlabError(() => new PageArray(opts as never), 'EINVAL', re);
  });

  it('missing or non-object options -> EINVAL', () => {
    expectPinlabError(() => new PageArray(undefined as never), 'EINVAL');
    expectPinlabError(() => new PageArray(null as never), 'EINVAL');
    expectPinlabError(() => new PageArray(16 as never), 'EINVAL');
    expectPinlabError(() => new PageArray([16] as never), 'EINVAL');
  });

  it('boundary values are accepted', () => {
    expect(new PageArray({ pages: 1 }).pages).toBe(1);
    expect(new PageArray({ pages: 4, pinBias: 2 }).pinBias).toBe(2);
    expect(new PageArray({ pages: 4, pinBias: 2 ** 20 }).pinBias).toBe(2 ** 20);
    expect(new PageArray({ pages: 16, folioOrder: 4 }).folioOrder(15)).toBe(4);
    expect(new PageArray({ pages: 48, folioOrder: 4 }).folioHead(47)).toBe(32);
    expect(new PageArray({ pages: 4, pincountMinOrder: 2 }).pincountMinOrder).toBe(2);
    for (const scheme of SCHEMES) expect(new PageArray({ pages: 2, scheme }).scheme).toBe(scheme);
  });
});

/** A 64-page array: order-3 folio at 8, order-2 folio at 16, order-0 pages elsewhere. */
function layout(scheme: Scheme, debug = false): PageArray {
  const pa = new PageArray({ pages: 64, scheme, debug });
  pa.makeFolio(8, 3);
  pa.makeFolio(16, 2);
  return pa;
}

describe.each(SCHEMES)('scheme %s: argument errors change nothing', (scheme) => {
  const pfnMethods: [string, (pa: PageArray, pfn: number) => unknown][] = [
    ['folioHead', (pa, p) => pa.folioHead(p)],
    ['folioOrder', (pa, p) => pa.folioOrder(p)],
    ['refcount', (pa, p) => pa.refcount(p)],
    ['pincount', (pa, p) => pa.pincount(p)],
    ['maybeDmaPinned', (pa, p) => pa.maybeDmaPinned(p)],
    ['isDirty', (pa, p) => pa.isDirty(p)],
    ['getPage', (pa, p) => pa.getPage(p)],
    ['tryGetPage', (pa, p) => pa.tryGetPage(p)],
    ['putPage', (pa, p) => pa.putPage(p)],
    ['makeFolio', (pa, p) => pa.makeFolio(p, 0)],
    ['splitFolio', (pa, p) => pa.splitFolio(p)],
  ];

  it.each(pfnMethods)('%s: PFN out of range -> ERANGE (negative too), non-integer -> EINVAL', (_n, call) => {
    const pa = layout(scheme);
    pa.pinPages({ start: 0, count: 20 });
    for (const pfn of [64, 65, -1, -64, 2 ** 32, 2 ** 32 + 1, 2 ** 53]) {
      expectErrorNoChange(pa, () => call(pa, pfn), 'ERANGE');
    }
    for (const pfn of [1.5, NaN, Infinity, '3', null, undefined, 3n]) {
      expectErrorNoChange(pa, () => call(pa, pfn as never), 'EINVAL');
    }
  });

  const setMethods: [string, (pa: PageArray, set: PageSet) => unknown][] = [
    ['pinPages', (pa, s) => pa.pinPages(s)],
    ['unpinPages', (pa, s) => pa.unpinPages(s)],
    ['toBvecs', (pa, s) => pa.toBvecs(s)],
    ['countMaybeDmaPinned', (pa, s) => pa.countMaybeDmaPinned(s)],
  ];

  it.each(setMethods)('%s: sets out of range -> ERANGE, malformed -> EINVAL, nothing changes', (_n, call) => {
    const pa = layout(scheme);
    pa.pinPages({ start: 0, count: 64 });
    const pins = pa.stats().pinAcquired;
    for (const set of [
      { start: 0, count: 65 },
      { start: 63, count: 2 },
      { start: 65, count: 0 },
      { start: -1, count: 2 },
      { start: 0, count: -1 },
      { start: 2 ** 32, count: 1 },
      { start: 2 ** 32 - 1, count: 2 },
      { start: 1, count: 2 ** 32 - 1 },
      new Uint32Array([0, 1, 64]),
      new Uint32Array([64, 0, 1]),
      new Uint32Array([5, 2 ** 32 - 1, 6]),
    ]) {
      expectErrorNoChange(pa, () => call(pa, set), 'ERANGE');
    }
    for (const bad of [
      null,
      undefined,
      5,
      [1, 2],
      { start: 1 },
      { count: 1 },
      { start: '1', count: 1 },
      { start: 1.5, count: 1 },
      { start: 0, count: 2.5 },
      new Int32Array([1, 2]),
    ]) {
      expectErrorNoChange(pa, () => call(pa, bad as never), 'EINVAL');
    }
    expect(pa.stats().pinAcquired).toBe(pins);
  });

  it('bad pin/unpin flags and unknown option keys -> EINVAL, nothing changes', () => {
    const pa = layout(scheme);
    pa.pinPages({ start: 0, count: 30 }, { write: true });
    const set = { start: 0, count: 30 };
    const badPin: unknown[] = [
      { write: 'yes' },
      { write: 1 },
      { path: 'x' },
      { path: 'perpage' },
      { path: 1 },
      { dirty: true }, // dirty is an unpin option only
      { writ: true },
      null,
      'bvec',
      [],
    ];
    for (const o of badPin) expectErrorNoChange(pa, () => pa.pinPages(set, o as never), 'EINVAL');
    const badUnpin: unknown[] = [
      { write: 'yes' },
      { dirty: 1 },
      { dirty: 'true' },
      { path: 'BVEC' },
      { dirt: true },
      null,
      7,
    ];
    for (const o of badUnpin) {
      const opts = o !== null && typeof o === 'object' ? { write: true, ...o } : o;
      expectErrorNoChange(pa, () => pa.unpinPages(set, opts as never), 'EINVAL');
    }
    // the valid call still works afterwards
    pa.unpinPages(set, { write: true });
    expect(pa.refcount(0)).toBe(1);
  });

  it('bad refs and orders -> EINVAL, nothing changes', () => {
    const pa = layout(scheme);
    for (const refs of [0, -1, 1.5, 2 ** 31, 2 ** 32, NaN, '1', null]) {
      expectErrorNoChange(pa, () => pa.getPage(3, refs as never), 'EINVAL');
      expectErrorNoChange(pa, () => pa.tryGetPage(3, refs as never), 'EINVAL');
      expectErrorNoChange(pa, () => pa.putPage(3, refs as never), 'EINVAL');
    }
    for (const order of [-1, 31, 1.5, '1', null]) {
      expectErrorNoChange(pa, () => pa.makeFolio(32, order as never), 'EINVAL');
    }
  });
});

describe.each(SCHEMES)('scheme %s: refused operations change nothing', (scheme) => {
  const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them

  it('putPage below 0 -> EINVAL', () => {
    const pa = layout(scheme);
    expectErrorNoChange(pa, () => pa.putPage(3, 2), 'EINVAL');
    expectErrorNoChange(pa, () => pa.putPage(9, 2), 'EINVAL');
    pa.getPage(9, 5);
    expectErrorNoChange(pa, () => pa.putPage(15, 7), 'EINVAL');
    pa.putPage(3);
    expectErrorNoChange(pa, () => pa.putPage(3), 'EINVAL'); // a free folio has nothing to put
    expect(pa.stats().foliosFreed).toBe(1);
  });

  it('free folios: getPage / pinPages -> EFREE, tryGetPage -> false', () => {
    const pa = layout(scheme);
    expect(pa.putPage(3)).toBe(true);
    expect(pa.putPage(12)).toBe(true); // frees the order-3 folio 8..15
    for (const p of [3, 8, 15]) {
      expectErrorNoChange(pa, () => pa.getPage(p), 'EFREE');
      expectErrorNoChange(pa, () => pa.pinPages({ start: p, count: 1 }, { write }), 'EFREE');
      expectErrorNoChange(pa, () => pa.pinPages(new Uint32Array([p]), { write, path: 'per-page' }), 'EFREE');
      const before = snapshot(pa);
      expect(pa.tryGetPage(p)).toBe(false);
      expect(pa.tryGetPage(p, 100)).toBe(false);
      expect(snapshot(pa)).toEqual(before);
    }
  });

  it('getPage / tryGetPage past 2^31-1 -> EOVERFLOW', () => {
    const pa = layout(scheme);
    pa.getPage(9, INT32_MAX - 1);
    expect(pa.refcount(8)).toBe(INT32_MAX);
    const refusals = pa.stats().overflowRefusals;
    expectErrorNoChange(pa, () => pa.getPage(9), 'EOVERFLOW');
    expectErrorNoChange(pa, () => pa.tryGetPage(10), 'EOVERFLOW');
    expectErrorNoChange(pa, () => pa.getPage(3, INT32_MAX), 'EOVERFLOW');
    expect(pa.stats().overflowRefusals).toBe(refusals + 3);
  });

  it('makeFolio -> EINVAL (misaligned, too large) / EBUSY (not idle), earlier pages thawed', () => {
    const pa = layout(scheme);
    expectErrorNoChange(pa, () => pa.makeFolio(36, 3), 'EINVAL'); // misaligned
    expectErrorNoChange(pa, () => pa.makeFolio(33, 1), 'EINVAL');
    expectErrorNoChange(pa, () => pa.makeFolio(0, 7), 'EINVAL'); // 128 pages do not fit in 64
    // a page with an extra reference at the end, in the middle, at the head
    pa.getPage(39);
    expectErrorNoChange(pa, () => pa.makeFolio(32, 3), 'EBUSY');
    pa.putPage(39);
    pa.getPage(36);
    expectErrorNoChange(pa, () => pa.makeFolio(32, 3), 'EBUSY');
    pa.putPage(36);
    // a pinned page
    pa.pinPages({ start: 34, count: 1 }, { write });
    expectErrorNoChange(pa, () => pa.makeFolio(32, 3), 'EBUSY');
    pa.unpinPages({ start: 34, count: 1 }, { write });
    // a free page
    pa.putPage(45);
    expectErrorNoChange(pa, () => pa.makeFolio(40, 3), 'EBUSY');
    // overlapping an existing large folio (8..15 and 16..19)
    for (const [head, order] of [
      [0, 4],
      [16, 3],
      [8, 2],
    ] as const) {
      const before = snapshot(pa);
      expect(['EBUSY', 'EINVAL']).toContain(codeOf(() => pa.makeFolio(head, order)));
      expect(snapshot(pa)).toEqual(before);
    }
    // and after all that, the idle block still becomes a folio
    pa.makeFolio(32, 3);
    expect(pa.folioHead(39)).toBe(32);
    expect(pa.refcount(39)).toBe(1);
  });

  it('splitFolio -> EINVAL (order 0, not a head) / EBUSY (referenced or pinned)', () => {
    const pa = layout(scheme);
    expectErrorNoChange(pa, () => pa.splitFolio(3), 'EINVAL');
    expectErrorNoChange(pa, () => pa.splitFolio(9), 'EINVAL');
    pa.getPage(10);
    expectErrorNoChange(pa, () => pa.splitFolio(8), 'EBUSY');
    pa.putPage(10);
    pa.pinPages({ start: 17, count: 2 }, { write });
    expectErrorNoChange(pa, () => pa.splitFolio(16), 'EBUSY');
    pa.unpinPages({ start: 17, count: 2 }, { write });
    pa.putPage(16); // free: its pages went back to the allocator as free order-0 pages
    expectErrorNoChange(pa, () => pa.splitFolio(16), 'EINVAL');
    pa.splitFolio(8);
    expect(pa.folioOrder(12)).toBe(0);
  });

  it('unpin of an unpinned page -> ENOTPINNED when a count would go below zero', () => {
    const pa = layout(scheme);
    // order-0 page with only its allocation reference (under write-bias a write unpin)
    expectErrorNoChange(pa, () => pa.unpinPages({ start: 3, count: 1 }, { write: true }), 'ENOTPINNED');
    const traits = schemeTraits(scheme);
    // a read unpin too, where it would take a count below zero (not under write-bias: 1 - 1 = 0)
    if (traits.exact(0) || traits.cost(0, false) > 1) {
      expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([3]), { path: 'per-page' }), 'ENOTPINNED');
    }
    // exact counters (hybrid's large folios, separate): more unpins than pins of a folio
    if (traits.exact(pa.folioOrder(9))) {
      pa.pinPages({ start: 9, count: 1 });
      expectErrorNoChange(pa, () => pa.unpinPages({ start: 9, count: 2 }), 'ENOTPINNED');
      expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([9, 9]), { path: 'per-page' }), 'ENOTPINNED');
    }
    // bias arithmetic: one pin's worth on the folio, two unpins
    pa.pinPages({ start: 40, count: 1 }, { write: true });
    expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([40, 40]), { write: true }), 'ENOTPINNED');
  });
});

// ---- rollback of multi-page calls ---------------------------------------------------------------

type Failure = 'free-middle' | 'free-end' | 'overflow-last-small' | 'overflow-last-large';

/** Builds the failing set and arms the array so that it fails with the expected code. */
function arm(pa: PageArray, kind: Failure, asList: boolean, write: boolean): { set: PageSet; good: PageSet; code: 'EFREE' | 'EOVERFLOW' } {
  const model = new PinModel({ pages: 64, scheme: pa.scheme });
  switch (kind) {
    case 'free-middle': {
      pa.putPage(24); // order-0 page 24 is free
      if (!asList) return { set: { start: 2, count: 38 }, good: { start: 2, count: 22 }, code: 'EFREE' };
      const list = [0, 1, 2, 9, 10, 11, 11, 17, 18, 24, 30, 31, 8];
      return { set: new Uint32Array(list), good: new Uint32Array(list.filter((p) => p !== 24)), code: 'EFREE' };
    }
    case 'free-end': {
      pa.putPage(18); // the order-2 folio 16..19 is free
      if (!asList) return { set: { start: 0, count: 19 }, good: { start: 0, count: 16 }, code: 'EFREE' };
      const list = [5, 4, 3, 8, 9, 10, 11, 12, 13, 14, 15, 15, 40, 19];
      return { set: new Uint32Array(list), good: new Uint32Array(list.slice(0, -1)), code: 'EFREE' };
    }
    case 'overflow-last-small': {
      // page 39 is one pin short of overflowing
      const cost = model.pinRefCost(0, write);
      pa.getPage(39, INT32_MAX - cost + 1 - pa.refcount(39)); // refcount = MAX - cost + 1
      if (!asList) return { set: { start: 8, count: 32 }, good: { start: 8, count: 31 }, code: 'EOVERFLOW' };
      const list = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 3, 2, 1, 39];
      return { set: new Uint32Array(list), good: new Uint32Array(list.slice(0, -1)), code: 'EOVERFLOW' };
    }
    case 'overflow-last-large': {
      // the order-3 folio 8..15 can take exactly 7 more subpage pins
      const cost = model.pinRefCost(3, write);
      pa.getPage(8, INT32_MAX - 7 * cost - pa.refcount(8)); // refcount = MAX - 7 * cost
      if (!asList) return { set: { start: 0, count: 16 }, good: { start: 0, count: 15 }, code: 'EOVERFLOW' };
      const list = [30, 31, 32, 8, 9, 10, 11, 12, 13, 14, 15];
      return { set: new Uint32Array(list), good: new Uint32Array(list.slice(0, -1)), code: 'EOVERFLOW' };
    }
  }
}

describe.each(SCHEMES)('scheme %s: a pin that fails midway rolls back', (scheme) => {
  const kinds: Failure[] = ['free-middle', 'free-end', 'overflow-last-small', 'overflow-last-large'];
  describe.each(PATHS)('path %s', (path) => {
    describe.each([
      ['range', false],
      ['list', true],
    ] as const)('%s input', (_k, asList) => {
      it.each(kinds)('%s', (kind) => {
        const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
        const pa = layout(scheme);
        pa.pinPages({ start: 0, count: 64 - 1 }, { write, path }); // some pins already there...
        pa.unpinPages({ start: 0, count: 63 }, { write, path }); // ...and gone again
        pa.pinPages(new Uint32Array([1, 9, 30]), { write, path }); // and some that stay
        const { set, good, code } = arm(pa, kind, asList, write);
        const stats = pa.stats();
        const before = snapshot(pa);
        const err = expectPinlabError(() => pa.pinPages(set, { write, path }), code);
        expect(snapshot(pa)).toEqual(before);
        const after = pa.stats();
        expect(after.rollbacks).toBe(stats.rollbacks + 1);
        expect(after.pinAcquired).toBe(stats.pinAcquired);
        expect(after.overflowRefusals).toBe(stats.overflowRefusals + (code === 'EOVERFLOW' ? 1 : 0));
        expect(err.message.length).toBeGreaterThan(code.length + 2);
        // the array is intact: the good part pins and unpins back to the same state
        pa.pinPages(good, { write, path });
        pa.unpinPages(good, { write, path });
        expect(snapshot(pa).pages).toEqual(before.pages);
      });
    });
  });
});

describe.each(SCHEMES)('scheme %s: an unpin that fails midway rolls back (dirty flags too)', (scheme) => {
  const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
  describe.each(PATHS)('path %s', (path) => {
    it.each([
      ['range', false],
      ['list', true],
    ] as const)('%s input', (_k, asList) => {
      const pa = layout(scheme);
      // pages 0..19 pinned once; page 3's folio is already dirty; page 5 and folio 16..19 are held
      // by their pins alone (the unpin frees them before the failure, and must bring them back)
      pa.pinPages({ start: 0, count: 20 }, { write, path });
      pa.pinPages({ start: 3, count: 1 }, { write, path });
      pa.unpinPages({ start: 3, count: 1 }, { write, path, dirty: true });
      pa.putPage(5);
      pa.putPage(16);
      expect(pa.isDirty(3)).toBe(true);
      const set: PageSet = asList
        ? new Uint32Array([...range(20).reverse(), 40]) // 40 is not pinned: fails at the end
        : { start: 0, count: 21 }; // page 20 is not pinned
      const stats = pa.stats();
      expectErrorNoChange(pa, () => pa.unpinPages(set, { write, path, dirty: true }), 'ENOTPINNED');
      for (let p = 0; p < 64; p++) expect(pa.isDirty(p), `pfn ${p}`).toBe(p === 3);
      expect(pa.refcount(5)).toBeGreaterThan(0);
      expect(pa.refcount(16)).toBeGreaterThan(0);
      expect(pa.stats().rollbacks).toBe(stats.rollbacks + 1);
      expect(pa.stats().foliosFreed).toBe(stats.foliosFreed);
      expect(pa.stats().pinReleased).toBe(stats.pinReleased);
      // the correct unpin still works, dirties the folios and frees the two held only by pins
      pa.unpinPages(asList ? new Uint32Array(range(20)) : { start: 0, count: 20 }, { write, path, dirty: true });
      expect(pa.stats().foliosFreed).toBe(stats.foliosFreed + 2);
      expect(pa.refcount(5)).toBe(0);
      expect(pa.refcount(17)).toBe(0);
      // dirtied, except the folios this unpin freed: free pages carry no flags
      const freed = (p: number): boolean => p === 5 || (p >= 16 && p < 20);
      for (let p = 0; p < 64; p++) expect(pa.isDirty(p), `pfn ${p}`).toBe(p < 20 && !freed(p));
      for (let p = 0; p < 64; p++) expect(pa.maybeDmaPinned(p)).toBe(false);
    });
  });
});

describe('a 2^28-page array', () => {
  it(
    'is created (bias scheme) and pins at its last PFN',
    () => {
      const pages = 2 ** 28;
      const pa = new PageArray({ pages, scheme: 'bias' });
      expect(pa.pages).toBe(pages);
      expect(pa.memoryUsage().bytes).toBe(5 * pages);
      const last = pages - 1;
      expect(pa.refcount(last)).toBe(1);
      expect(pa.refcount(pages / 2)).toBe(1);
      expect(pa.pinPages({ start: last, count: 1 })).toBe(1);
      expect(pa.refcount(last)).toBe(1 + 1024);
      expect(pa.maybeDmaPinned(last)).toBe(true);
      expect(pa.maybeDmaPinned(last - 1)).toBe(false);
      pa.pinPages(new Uint32Array([last, 0, last]), { path: 'per-page' });
      expect(pa.refcount(last)).toBe(1 + 3 * 1024);
      expect(pa.countMaybeDmaPinned({ start: last - 10, count: 11 })).toBe(1);
      expect(pa.countMaybeDmaPinned({ start: 0, count: pages })).toBe(2); // 0 and last
      expect(pa.toBvecs({ start: last - 2, count: 3 })).toEqual([
        { pfn: last - 2, count: 1 },
        { pfn: last - 1, count: 1 },
        { pfn: last, count: 1 },
      ]);
      pa.unpinPages(new Uint32Array([last, last, last, 0]), { dirty: true });
      expect(pa.refcount(last)).toBe(1);
      expect(pa.isDirty(last)).toBe(true);
      expectPinlabError(() => pa.refcount(pages), 'ERANGE');
      expectPinlabError(() => pa.pinPages({ start: last, count: 2 }), 'ERANGE');
    },
    120_000,
  );
});
