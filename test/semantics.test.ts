// Scheme arithmetic, maybe-pinned answers, dirty flags, scans and bookkeeping, checked against
// the contract's formulas (written out here) and the reference model.
import { describe, expect, it } from 'vitest';

import { PageArray, SCHEMES, type PinPath, type Scheme } from '../lib/index.js';
import { diffAgainstModel, pair, range } from './helpers.js';
import { PinModel } from './model.js';
import { schemeTraits } from './scheme-traits.js';

const PATHS: PinPath[] = ['per-page', 'bvec'];

/** Refcount added by one subpage pin, straight from the contract's table (a later scheme: its policy). */
function contractRefCost(scheme: Scheme, order: number, write: boolean, B: number, minOrder = 1): number {
  if (scheme === 'bias') return B;
  if (scheme === 'hybrid') return order >= minOrder ? 1 : B;
  if (scheme === 'separate') return 1;
  if (scheme === 'write-bias') return write ? B : 1;
  return schemeTraits(scheme, B, minOrder).cost(order, write);
}

/** Whether the scheme keeps an exact pincount for the folio (non-debug; a later scheme: its policy). */
function contractTracks(scheme: Scheme, order: number, minOrder = 1): boolean {
  if (scheme === 'separate') return true;
  if (scheme === 'hybrid') return order >= minOrder;
  if (scheme === 'bias' || scheme === 'write-bias') return false;
  return schemeTraits(scheme, 1024, minOrder).exact(order);
}

/** Bytes per page of each scheme's per-page arrays, without and with debug accounting (the contract's table). */
const BYTES_PER_PAGE: Partial<Record<Scheme, readonly [plain: number, debug: number]>> = {
  bias: [5, 9],
  hybrid: [5, 9],
  separate: [9, 13],
  'write-bias': [5, 13],
};

describe('exports and options', () => {
  it('SCHEMES: not empty, no repeats, and it holds every scheme the contract tables here cover', () => {
    expect(SCHEMES.length).toBeGreaterThan(0);
    expect(new Set(SCHEMES).size).toBe(SCHEMES.length);
    expect(Object.keys(BYTES_PER_PAGE).length).toBeGreaterThan(0);
    expect(SCHEMES).toEqual(expect.arrayContaining(Object.keys(BYTES_PER_PAGE)));
  });

  it('defaults: hybrid, bias 1024, pincountMinOrder 1, folioOrder 0, debug off', () => {
    const pa = new PageArray({ pages: 8 });
    expect(pa.pages).toBe(8);
    expect(pa.scheme).toBe('hybrid');
    expect(pa.pinBias).toBe(1024);
    expect(pa.pincountMinOrder).toBe(1);
    expect(pa.debug).toBe(false);
    expect(pa.options).toEqual({
      pages: 8,
      scheme: 'hybrid',
      pinBias: 1024,
      pincountMinOrder: 1,
      folioOrder: 0,
      debug: false,
      populated: true,
      movablePages: 0,
      onImbalance: 'throw',
      captureStacks: false,
    });
    expect(Object.isFrozen(pa.options)).toBe(true);
  });

  it('reflects given options', () => {
    const pa = new PageArray({ pages: 64, scheme: 'bias', pinBias: 16, pincountMinOrder: 2, folioOrder: 3, debug: true });
    expect([pa.pages, pa.scheme, pa.pinBias, pa.pincountMinOrder, pa.debug]).toEqual([64, 'bias', 16, 2, true]);
    expect(pa.options.folioOrder).toBe(3);
  });

  it('every page starts allocated: aligned folios of 2^folioOrder with refcount 1, no pins', () => {
    for (const scheme of SCHEMES) {
      const pa = new PageArray({ pages: 32, scheme, folioOrder: 3 });
      for (let p = 0; p < 32; p++) {
        expect(pa.folioHead(p)).toBe(p & ~7);
        expect(pa.folioOrder(p)).toBe(3);
        expect(pa.refcount(p)).toBe(1);
        expect(pa.maybeDmaPinned(p)).toBe(false);
        expect(pa.isDirty(p)).toBe(false);
        expect(pa.pincount(p)).toBe(contractTracks(scheme, 3) ? 0 : null);
      }
      const s = pa.stats();
      expect(s).toEqual({
        pinAcquired: 0,
        pinReleased: 0,
        grabs: 0,
        foliosFreed: 0,
        overflowRefusals: 0,
        rollbacks: 0,
        imbalances: { EPINNED: 0, ENOTPINNED: 0, ELEAK: 0 },
      });
    }
  });

  it.each(
    (Object.entries(BYTES_PER_PAGE) as [Scheme, readonly [number, number]][]).flatMap(([scheme, [plain, debug]]) => [
      [scheme, false, plain] as const,
      [scheme, true, debug] as const,
    ]),
  )('memoryUsage %s debug=%s: %d bytes per page', (scheme, debug, perPage) => {
    const pa = new PageArray({ pages: 4096, scheme, debug });
    const m = pa.memoryUsage();
    expect(m.bytesPerPage).toBe(perPage);
    expect(m.bytes).toBe(perPage * 4096);
  });
});

describe('plain references and folio shape', () => {
  it('getPage / tryGetPage / putPage count on the folio head', () => {
    const pa = new PageArray({ pages: 16, scheme: 'bias', folioOrder: 2 });
    pa.getPage(5, 3); // folio 4..7
    expect(pa.refcount(4)).toBe(4);
    expect(pa.refcount(7)).toBe(4);
    expect(pa.refcount(8)).toBe(1);
    expect(pa.tryGetPage(6)).toBe(true);
    expect(pa.refcount(4)).toBe(5);
    expect(pa.putPage(7, 4)).toBe(false);
    expect(pa.refcount(5)).toBe(1);
    expect(pa.putPage(4)).toBe(true);
    expect(pa.refcount(4)).toBe(0);
    expect(pa.tryGetPage(5)).toBe(false);
    expect(pa.refcount(4)).toBe(0);
    expect(pa.stats().foliosFreed).toBe(1);
  });

  it('makeFolio / splitFolio reshape pages', () => {
    const pa = new PageArray({ pages: 64 });
    pa.makeFolio(16, 4);
    for (let p = 16; p < 32; p++) {
      expect(pa.folioHead(p)).toBe(16);
      expect(pa.folioOrder(p)).toBe(4);
      expect(pa.refcount(p)).toBe(1);
    }
    expect(pa.folioOrder(15)).toBe(0);
    expect(pa.folioOrder(32)).toBe(0);
    expect(pa.pincount(20)).toBe(0); // hybrid large folio: exact pincount
    pa.splitFolio(16);
    for (let p = 16; p < 32; p++) {
      expect(pa.folioHead(p)).toBe(p);
      expect(pa.folioOrder(p)).toBe(0);
      expect(pa.refcount(p)).toBe(1);
      expect(pa.pincount(p)).toBe(null);
    }
  });

  it('a split folio can be pinned page by page and rebuilt', () => {
    for (const scheme of SCHEMES) {
      const { pa, model } = pair({ pages: 32, scheme, folioOrder: 3 });
      pa.pinPages({ start: 0, count: 8 });
      model.pinPages({ start: 0, count: 8 });
      pa.unpinPages({ start: 0, count: 8 });
      model.unpinPages({ start: 0, count: 8 });
      pa.splitFolio(0);
      model.splitFolio(0);
      pa.pinPages(new Uint32Array([1, 2]));
      model.pinPages([1, 2]);
      expect(diffAgainstModel(pa, model, range(32))).toEqual([]);
      pa.unpinPages(new Uint32Array([2, 1]));
      model.unpinPages([2, 1]);
      pa.makeFolio(0, 2);
      model.makeFolio(0, 2);
      expect(diffAgainstModel(pa, model, range(32))).toEqual([]);
    }
  });
});

describe.each(SCHEMES)('scheme %s: pin arithmetic', (scheme) => {
  const B = 1024;

  describe.each(PATHS)('path %s', (path) => {
    it.each([false, true])('order-0 page, write=%s: pin adds the scheme cost, unpin restores', (write) => {
      const pa = new PageArray({ pages: 8, scheme });
      const cost = contractRefCost(scheme, 0, write, B);
      expect(pa.pinPages({ start: 3, count: 1 }, { write, path })).toBe(1);
      expect(pa.refcount(3)).toBe(1 + cost);
      expect(pa.pincount(3)).toBe(contractTracks(scheme, 0) ? 1 : null);
      // Every scheme sees a pin, except a read pin under write-bias (invisible by design).
      expect(pa.maybeDmaPinned(3)).toBe(!(schemeTraits(scheme).readPinsHidden && !write));
      // Neighbours untouched.
      expect(pa.refcount(2)).toBe(1);
      expect(pa.refcount(4)).toBe(1);
      expect(pa.maybeDmaPinned(4)).toBe(false);

      pa.pinPages(new Uint32Array([3]), { write, path });
      expect(pa.refcount(3)).toBe(1 + 2 * cost);
      expect(pa.pincount(3)).toBe(contractTracks(scheme, 0) ? 2 : null);

      pa.unpinPages({ start: 3, count: 1 }, { write, path });
      expect(pa.refcount(3)).toBe(1 + cost);
      pa.unpinPages(new Uint32Array([3]), { write, path });
      expect(pa.refcount(3)).toBe(1);
      expect(pa.pincount(3)).toBe(contractTracks(scheme, 0) ? 0 : null);
      expect(pa.maybeDmaPinned(3)).toBe(false);
      expect(pa.stats().pinAcquired).toBe(2);
      expect(pa.stats().pinReleased).toBe(2);
    });

    it.each([1, 2, 9])('order-%d folio: partial and full pins count on the head', (order) => {
      const size = 2 ** order;
      const pages = size * 4;
      const head = size * 2;
      const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
      const pa = new PageArray({ pages, scheme, folioOrder: order });
      const model = new PinModel({ pages, scheme, folioOrder: order });
      const cost = contractRefCost(scheme, order, write, B);
      const tracks = contractTracks(scheme, order);
      const shared = schemeTraits(scheme, B).sharesRef(order) ? 1 : 0; // the pins' one reference

      // Partial: the upper half of the folio (one subpage for order 1).
      const k = size / 2;
      expect(pa.pinPages({ start: head + size - k, count: k }, { write, path })).toBe(k);
      model.pinPages({ start: head + size - k, count: k }, write);
      expect(pa.refcount(head)).toBe(1 + k * cost + shared);
      expect(pa.pincount(head + 1)).toBe(tracks ? k : null);
      // The answer is per folio: unpinned subpages of a pinned folio report pinned too.
      for (let p = head; p < head + size; p++) expect(pa.maybeDmaPinned(p)).toBe(true);
      expect(pa.maybeDmaPinned(head - 1)).toBe(false);
      expect(pa.maybeDmaPinned(head + size)).toBe(false);

      // Full pin on top, as a list.
      pa.pinPages(new Uint32Array(range(size, head)), { write, path });
      model.pinPages(range(size, head), write);
      expect(pa.refcount(head + size - 1)).toBe(1 + (k + size) * cost + shared);
      expect(pa.pincount(head)).toBe(tracks ? k + size : null);
      expect(pa.stats().pinAcquired).toBe(k + size);
      expect(diffAgainstModel(pa, model, range(pages))).toEqual([]);

      pa.unpinPages({ start: head, count: size }, { write, path });
      pa.unpinPages(new Uint32Array(range(k, head + size - k).reverse()), { write, path });
      expect(pa.refcount(head)).toBe(1);
      expect(pa.pincount(head)).toBe(tracks ? 0 : null);
      for (let p = head; p < head + size; p++) expect(pa.maybeDmaPinned(p)).toBe(false);
      expect(pa.stats().pinReleased).toBe(k + size);
    });

    if (scheme === 'bias' || scheme === 'hybrid') {
      it('order-9 folio: the literal numbers', () => {
        const pa = new PageArray({ pages: 1024, scheme, folioOrder: 9 });
        pa.pinPages({ start: 512, count: 512 }, { path });
        expect(pa.refcount(600)).toBe(scheme === 'bias' ? 1 + 512 * 1024 : 1 + 512);
        expect(pa.pincount(600)).toBe(scheme === 'bias' ? null : 512);
        expect(pa.refcount(0)).toBe(1);
        expect(pa.stats().pinAcquired).toBe(512);
      });
    }
  });
});

describe('hybrid: pincountMinOrder 1 (64-bit mainline) vs 2 (v5.7 / 32-bit)', () => {
  it.each([1, 2])('pincountMinOrder %d', (minOrder) => {
    const B = 1024;
    const pa = new PageArray({ pages: 64, scheme: 'hybrid', pincountMinOrder: minOrder });
    // order 0 at 0, order 1 at 2, order 2 at 4, order 3 at 8
    pa.makeFolio(2, 1);
    pa.makeFolio(4, 2);
    pa.makeFolio(8, 3);
    for (const [head, order] of [
      [0, 0],
      [2, 1],
      [4, 2],
      [8, 3],
    ] as const) {
      pa.pinPages({ start: head, count: 1 });
      const exact = order >= minOrder;
      expect(pa.refcount(head), `order ${order}`).toBe(1 + (exact ? 1 : B));
      expect(pa.pincount(head), `order ${order}`).toBe(exact ? 1 : null);
      expect(pa.maybeDmaPinned(head)).toBe(true);
    }
    // order 1 is the one that differs between the two generations
    expect(pa.pincount(3)).toBe(minOrder === 1 ? 1 : null);
  });

  it('pincountMinOrder 2: an order-1 folio shows the bias false positive, order 2 does not', () => {
    const pa = new PageArray({ pages: 16, scheme: 'hybrid', pincountMinOrder: 2 });
    pa.makeFolio(2, 1);
    pa.makeFolio(4, 2);
    pa.getPage(2, 1023);
    pa.getPage(4, 1023);
    expect(pa.maybeDmaPinned(3)).toBe(true);
    expect(pa.maybeDmaPinned(5)).toBe(false);
  });
});

describe('maybeDmaPinned around the bias (plain references only)', () => {
  describe.each([1024, 8, 2])('pinBias %d', (B) => {
    it.each(SCHEMES)('%s, order-0 page', (scheme) => {
      const pa = new PageArray({ pages: 4, scheme, pinBias: B });
      // refcount B-1: no scheme may call this pinned
      if (B > 2) pa.getPage(1, B - 2);
      expect(pa.refcount(1)).toBe(B - 1);
      expect(pa.maybeDmaPinned(1)).toBe(false);
      expect(pa.countMaybeDmaPinned({ start: 0, count: 4 })).toBe(0);
      // refcount B: the bias schemes see a (false positive) pin, the exact counter does not
      pa.getPage(1);
      expect(pa.refcount(1)).toBe(B);
      const falsePositive = !contractTracks(scheme, 0); // every scheme but separate
      expect(pa.maybeDmaPinned(1)).toBe(falsePositive);
      pa.getPage(1, B);
      expect(pa.maybeDmaPinned(1)).toBe(falsePositive);
      expect(pa.maybeDmaPinned(0)).toBe(false);
    });

    it.each(SCHEMES)('%s, order-2 folio', (scheme) => {
      const pa = new PageArray({ pages: 8, scheme, pinBias: B, folioOrder: 2 });
      pa.getPage(5, B - 1);
      expect(pa.refcount(4)).toBe(B);
      // bias and write-bias use the bias on every folio; hybrid and separate count large folios exactly
      const falsePositive = !contractTracks(scheme, 2); // bias and write-bias
      for (let p = 4; p < 8; p++) expect(pa.maybeDmaPinned(p)).toBe(falsePositive);
    });
  });
});

describe('zero false negatives', () => {
  it.each(SCHEMES)('%s: every folio with a pin reports maybe pinned', (scheme) => {
    for (const B of [1024, 2]) {
      const pa = new PageArray({ pages: 256, scheme, pinBias: B });
      // a mixed layout
      pa.makeFolio(8, 3);
      pa.makeFolio(16, 1);
      pa.makeFolio(32, 5);
      pa.makeFolio(128, 7);
      // plus plenty of plain references around (must not hide pins)
      for (let p = 0; p < 256; p += 3) pa.getPage(p, (p % 7) + 1);
      const pinned = [0, 9, 17, 40, 63, 64, 200, 255, 130];
      const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
      pa.pinPages(new Uint32Array(pinned), { write });
      for (const p of pinned) expect(pa.maybeDmaPinned(p), `pfn ${p}`).toBe(true);
      // every page of a pinned folio counts
      const expected = new Set<number>();
      for (const p of pinned) {
        const h = pa.folioHead(p);
        for (let q = h; q < h + 2 ** pa.folioOrder(p); q++) expected.add(q);
      }
      for (const q of expected) expect(pa.maybeDmaPinned(q), `pfn ${q} of a pinned folio`).toBe(true);
      expect(pa.countMaybeDmaPinned({ start: 0, count: 256 })).toBeGreaterThanOrEqual(expected.size);
      pa.unpinPages(new Uint32Array(pinned), { write });
    }
  });

  it('write-bias: read pins are invisible by design (order-0 and large folios)', () => {
    const pa = new PageArray({ pages: 16, scheme: 'write-bias' });
    pa.makeFolio(8, 3);
    pa.pinPages(new Uint32Array([1, 8, 9, 10]), { write: false });
    expect(pa.maybeDmaPinned(1)).toBe(false);
    expect(pa.maybeDmaPinned(8)).toBe(false);
    expect(pa.refcount(1)).toBe(2);
    expect(pa.refcount(8)).toBe(4);
    pa.pinPages(new Uint32Array([1, 9]), { write: true });
    expect(pa.maybeDmaPinned(1)).toBe(true);
    expect(pa.maybeDmaPinned(15)).toBe(true);
  });
});

describe('write-bias: read and write pins', () => {
  it.each(PATHS)('path %s: reads add 1, writes add the bias, unpins must match', (path) => {
    const B = 1024;
    const pa = new PageArray({ pages: 8, scheme: 'write-bias' });
    pa.pinPages({ start: 2, count: 1 }, { write: false, path });
    pa.pinPages({ start: 2, count: 1 }, { write: true, path });
    pa.pinPages({ start: 2, count: 1 }, { write: false, path });
    expect(pa.refcount(2)).toBe(1 + 2 + B);
    expect(pa.maybeDmaPinned(2)).toBe(true);
    pa.unpinPages({ start: 2, count: 1 }, { write: true, path });
    expect(pa.refcount(2)).toBe(3);
    expect(pa.maybeDmaPinned(2)).toBe(false);
    pa.unpinPages(new Uint32Array([2, 2]), { write: false, path });
    expect(pa.refcount(2)).toBe(1);
    expect(pa.pincount(2)).toBe(null);
    expect(pa.stats().pinAcquired).toBe(3);
    expect(pa.stats().pinReleased).toBe(3);
  });

  it('with 1023 read pins a page still is not maybe pinned; the write pin is seen', () => {
    const pa = new PageArray({ pages: 2, scheme: 'write-bias' });
    pa.pinPages(new Uint32Array(1022).fill(0));
    expect(pa.refcount(0)).toBe(1023);
    expect(pa.maybeDmaPinned(0)).toBe(false);
    pa.pinPages(new Uint32Array([0]), { write: true });
    expect(pa.maybeDmaPinned(0)).toBe(true);
  });
});

describe('dirty flags', () => {
  it.each(SCHEMES)('%s: unpin with dirty marks exactly the folios of the listed pages', (scheme) => {
    const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
    const pa = new PageArray({ pages: 32, scheme });
    pa.makeFolio(8, 3);
    pa.makeFolio(16, 2);
    pa.pinPages(new Uint32Array([1, 2, 9, 17, 20]), { write });
    for (let p = 0; p < 32; p++) expect(pa.isDirty(p)).toBe(false); // pin never dirties
    pa.unpinPages(new Uint32Array([1, 9]), { write, dirty: true });
    pa.unpinPages(new Uint32Array([2, 17]), { write, dirty: false });
    pa.unpinPages({ start: 20, count: 1 }, { write, dirty: true });
    const dirty = new Set([1, ...range(8, 8), 20]);
    for (let p = 0; p < 32; p++) expect(pa.isDirty(p), `pfn ${p}`).toBe(dirty.has(p));
    // dirty stays after the pins are gone, and a clean unpin does not clear it
    pa.pinPages(new Uint32Array([9]), { write });
    pa.unpinPages(new Uint32Array([9]), { write });
    expect(pa.isDirty(15)).toBe(true);
  });

  it('both paths dirty the same folios', () => {
    const arrays = (['per-page', 'bvec'] as const).map((path) => {
      const pa = new PageArray({ pages: 64, scheme: 'hybrid' });
      pa.makeFolio(16, 4);
      pa.makeFolio(4, 2);
      pa.pinPages({ start: 2, count: 30 }, { path });
      pa.unpinPages({ start: 2, count: 30 }, { path, dirty: true });
      return range(64).map((p) => pa.isDirty(p));
    });
    expect(arrays[0]).toEqual(arrays[1]);
    expect(arrays[0]!.filter(Boolean).length).toBe(30); // pages 2..31; folios 4..7 and 16..31 lie inside
  });
});

describe('countMaybeDmaPinned', () => {
  it.each(SCHEMES)('%s: ranges and lists, weighted by listed base pages', (scheme) => {
    const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
    const { pa, model } = pair({ pages: 64, scheme });
    for (const m of [pa, model]) {
      m.makeFolio(16, 4); // 16..31
      m.makeFolio(4, 2); // 4..7
    }
    pa.pinPages(new Uint32Array([5, 20, 40]), { write });
    model.pinPages([5, 20, 40], write);
    // range entirely inside the pinned large folio, straddling it, and all
    expect(pa.countMaybeDmaPinned({ start: 18, count: 4 })).toBe(4);
    expect(pa.countMaybeDmaPinned({ start: 28, count: 8 })).toBe(4);
    expect(pa.countMaybeDmaPinned({ start: 0, count: 64 })).toBe(4 + 16 + 1);
    expect(pa.countMaybeDmaPinned({ start: 0, count: 0 })).toBe(0);
    expect(pa.countMaybeDmaPinned({ start: 41, count: 23 })).toBe(0);
    // lists: repeats count each time, order does not matter
    const list = new Uint32Array([40, 40, 6, 0, 31, 16, 40, 63]);
    expect(pa.countMaybeDmaPinned(list)).toBe(3 + 1 + 0 + 2 + 0);
    expect(pa.countMaybeDmaPinned(new Uint32Array(0))).toBe(0);
    for (const set of [{ start: 0, count: 64 }, { start: 3, count: 17 }, list]) {
      expect(pa.countMaybeDmaPinned(set)).toBe(model.countMaybeDmaPinned(set));
    }
    const byQuery = range(64).filter((p) => pa.maybeDmaPinned(p)).length;
    expect(pa.countMaybeDmaPinned({ start: 0, count: 64 })).toBe(byQuery);
  });
});

describe('toBvecs', () => {
  function layout(): { pa: PageArray; model: PinModel } {
    const { pa, model } = pair({ pages: 64 });
    for (const m of [pa, model]) {
      m.makeFolio(4, 2); // 4..7
      m.makeFolio(8, 3); // 8..15
      m.makeFolio(32, 5); // 32..63
    }
    return { pa, model };
  }

  it('a range is cut at folio boundaries', () => {
    const { pa } = layout();
    expect(pa.toBvecs({ start: 5, count: 10 })).toEqual([
      { pfn: 5, count: 3 },
      { pfn: 8, count: 7 },
    ]);
    expect(pa.toBvecs({ start: 2, count: 16 })).toEqual([
      { pfn: 2, count: 1 },
      { pfn: 3, count: 1 },
      { pfn: 4, count: 4 },
      { pfn: 8, count: 8 },
      { pfn: 16, count: 1 },
      { pfn: 17, count: 1 },
    ]);
    expect(pa.toBvecs({ start: 30, count: 34 })).toEqual([
      { pfn: 30, count: 1 },
      { pfn: 31, count: 1 },
      { pfn: 32, count: 32 },
    ]);
    expect(pa.toBvecs({ start: 40, count: 0 })).toEqual([]);
    expect(pa.toBvecs({ start: 64, count: 0 })).toEqual([]);
  });

  it('a list makes runs of consecutive PFNs of one folio; repeats and unsorted entries break runs', () => {
    const { pa, model } = layout();
    const list = new Uint32Array([9, 10, 10, 11, 3, 2, 16, 17, 15, 14, 6, 7, 8, 9, 33, 34, 35, 5]);
    const expected = [
      { pfn: 9, count: 2 },
      { pfn: 10, count: 2 },
      { pfn: 3, count: 1 },
      { pfn: 2, count: 1 },
      { pfn: 16, count: 1 },
      { pfn: 17, count: 1 },
      { pfn: 15, count: 1 },
      { pfn: 14, count: 1 },
      { pfn: 6, count: 2 }, // 7 -> 8 crosses into the next folio
      { pfn: 8, count: 2 },
      { pfn: 33, count: 3 },
      { pfn: 5, count: 1 },
    ];
    expect(pa.toBvecs(list)).toEqual(expected);
    expect(model.toBvecs(list)).toEqual(expected);
    expect(pa.toBvecs(new Uint32Array(0))).toEqual([]);
    // the runs cover exactly the listed pages
    expect(pa.toBvecs(list).reduce((n, b) => n + b.count, 0)).toBe(list.length);
  });

  it('stats().grabs: one per bvec run, or one per subpage on the per-page path', () => {
    for (const set of [{ start: 2, count: 40 }, new Uint32Array([9, 10, 10, 11, 3, 2, 33, 34, 35, 60, 61])]) {
      const count = set instanceof Uint32Array ? set.length : set.count;
      const runs = layout().pa.toBvecs(set).length;
      const { pa: a } = layout();
      const { pa: b } = layout();
      a.pinPages(set, { path: 'bvec' });
      b.pinPages(set, { path: 'per-page' });
      expect(a.stats().grabs).toBe(runs);
      expect(b.stats().grabs).toBe(count);
      a.unpinPages(set, { path: 'bvec' });
      b.unpinPages(set, { path: 'per-page' });
      expect(a.stats().grabs).toBe(2 * runs);
      expect(b.stats().grabs).toBe(2 * count);
      expect(runs).toBeLessThan(count);
    }
  });
});

describe('statistics count logical subpage pins', () => {
  it.each(SCHEMES)('%s: pinAcquired / pinReleased balance, foliosFreed counts frees by unpin', (scheme) => {
    const write = schemeTraits(scheme).readPinsHidden; // write pins, so that every scheme sees them
    const pa = new PageArray({ pages: 1024, scheme, folioOrder: 9 });
    expect(pa.pinPages({ start: 0, count: 1024 }, { write })).toBe(1024);
    expect(pa.stats().pinAcquired).toBe(1024);
    // drop the allocation references: the pins now hold the folios alive
    pa.putPage(0);
    pa.putPage(512);
    pa.unpinPages({ start: 0, count: 1024 }, { write });
    const s = pa.stats();
    expect(s.pinReleased).toBe(1024);
    expect(s.foliosFreed).toBe(2);
    expect(pa.refcount(0)).toBe(0);
    expect(pa.refcount(1000)).toBe(0);
  });
});

describe('page sets: views, empty sets, edges', () => {
  it.each(SCHEMES)('%s: a Uint32Array view (subarray / byteOffset) pins only the viewed PFNs', (scheme) => {
    for (const path of PATHS) {
      const pa = new PageArray({ pages: 32, scheme });
      pa.makeFolio(8, 3); // 8..15
      const backing = new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      const view = backing.subarray(2, 5); // 3, 4, 5
      expect(pa.pinPages(view, { path })).toBe(3);
      const viaOffset = new Uint32Array(backing.buffer, 7 * 4, 2); // 8, 9
      expect(pa.pinPages(viaOffset, { path })).toBe(2);
      expect(pa.toBvecs(viaOffset)).toEqual([{ pfn: 8, count: 2 }]);
      const pinned = range(32).filter((p) => pa.refcount(p) > 1);
      expect(pinned).toEqual([3, 4, 5, ...range(8, 8)]); // refcount() is the folio's
      expect(pa.toBvecs(view)).toEqual([
        { pfn: 3, count: 1 },
        { pfn: 4, count: 1 },
        { pfn: 5, count: 1 },
      ]); // order-0 pages: one run each
      expect(pa.countMaybeDmaPinned(viaOffset)).toBe(schemeTraits(scheme).readPinsHidden ? 0 : 2); // read pins
      expect(pa.stats().pinAcquired).toBe(5);
      pa.unpinPages(view, { path });
      pa.unpinPages(viaOffset, { path });
      expect(range(32).every((p) => pa.refcount(p) === 1)).toBe(true);
    }
  });

  it.each(SCHEMES)('%s: empty sets pin nothing and change nothing', (scheme) => {
    const pa = new PageArray({ pages: 16, scheme });
    for (const path of PATHS) {
      expect(pa.pinPages({ start: 0, count: 0 }, { path })).toBe(0);
      expect(pa.pinPages({ start: 16, count: 0 }, { path })).toBe(0);
      expect(pa.pinPages(new Uint32Array(0), { path })).toBe(0);
      pa.unpinPages({ start: 16, count: 0 }, { path, dirty: true });
      pa.unpinPages(new Uint32Array(0), { path, dirty: true });
    }
    const s = pa.stats();
    expect([s.pinAcquired, s.pinReleased, s.grabs, s.rollbacks]).toEqual([0, 0, 0, 0]);
    expect(range(16).some((p) => pa.isDirty(p) || pa.refcount(p) !== 1)).toBe(false);
  });

  it('a range up to the last page, and a whole-array list', () => {
    const pa = new PageArray({ pages: 4096, scheme: 'separate', folioOrder: 2 });
    expect(pa.pinPages({ start: 4090, count: 6 })).toBe(6);
    expect(pa.pincount(4095)).toBe(4);
    expect(pa.pincount(4088)).toBe(2);
    const all = new Uint32Array(range(4096).reverse());
    expect(pa.pinPages(all, { path: 'per-page' })).toBe(4096);
    expect(pa.pincount(0)).toBe(4);
    expect(pa.pincount(4095)).toBe(8);
    expect(pa.countMaybeDmaPinned(all)).toBe(4096);
  });
});

// Compile-time contract (checked by `npm run typecheck`, never executed): the documented
// read-only properties are declared readonly.
export function readonlyPropsAreReadonly(pa: PageArray): void {
  // @ts-expect-error pages is readonly
  pa.pages = 1;
  // @ts-expect-error scheme is readonly
  pa.scheme = 'bias';
  // @ts-expect-error pinBias is readonly
  pa.pinBias = 2;
  // @ts-expect-error pincountMinOrder is readonly
  pa.pincountMinOrder = 2;
  // @ts-expect-error debug is readonly
  pa.debug = true;
  // @ts-expect-error options is readonly
  pa.options = pa.options;
  // @ts-expect-error options' fields are readonly
  pa.options.pages = 1;
}
