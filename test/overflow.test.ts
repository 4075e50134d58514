// Refcount budgets (pin-semantics.md section 2): about 2^21 pins on a small page with the default
// bias, about 8 full pins of a 1 GiB folio under pure bias, none of that under hybrid.
import { describe, expect, it } from 'vitest';

import { PageArray, SCHEMES, type PinPath } from '../lib/index.js';
import { INT32_MAX, expectErrorNoChange, expectPinlabError, snapshot } from './helpers.js';
import { PinModel } from './model.js';

const PATHS: PinPath[] = ['per-page', 'bvec'];

describe('small page, bias 1024: floor((2^31-2)/1024) pins fit', () => {
  const B = 1024;
  const N = Math.floor((INT32_MAX - 1) / B); // refcount starts at 1
  it('N is the documented ~2^21', () => {
    expect(N).toBe(2 ** 21 - 1);
  });

  // The schemes whose write pin on a small page adds the bias (the reference model's cost).
  const biased = SCHEMES.filter((scheme) => new PinModel({ pages: 1, scheme, pinBias: B }).pinRefCost(0, true) === B);
  it('those schemes include pure bias (the list below is not empty)', () => {
    expect(biased).toContain('bias');
  });

  describe.each(biased)('%s (write pins)', (scheme) => {
    it.each(PATHS)('path %s: N pins in one call of repeated PFNs, then the next overflows', (path) => {
      const pa = new PageArray({ pages: 8, scheme });
      const list = new Uint32Array(N).fill(5);
      expect(pa.pinPages(list, { write: true, path })).toBe(N);
      expect(pa.refcount(5)).toBe(1 + N * B);
      expect(pa.maybeDmaPinned(5)).toBe(true);
      expect(pa.stats().pinAcquired).toBe(N);
      const refusals = pa.stats().overflowRefusals;
      expectErrorNoChange(pa, () => pa.pinPages({ start: 5, count: 1 }, { write: true, path }), 'EOVERFLOW');
      expectErrorNoChange(pa, () => pa.pinPages(new Uint32Array([4, 6, 5]), { write: true, path }), 'EOVERFLOW');
      expect(pa.stats().overflowRefusals).toBe(refusals + 2);
      // plain references still fit below the limit, up to exactly 2^31-1
      const room = INT32_MAX - pa.refcount(5);
      expect(room).toBe(B - 2);
      pa.getPage(5, room);
      expectErrorNoChange(pa, () => pa.getPage(5), 'EOVERFLOW');
      pa.putPage(5, room);
      pa.unpinPages(list, { write: true, path });
      expect(pa.refcount(5)).toBe(1);
      expect(pa.maybeDmaPinned(5)).toBe(false);
    });

    it.each(PATHS)('path %s: N+1 pins in one call fail as a whole', (path) => {
      const pa = new PageArray({ pages: 8, scheme });
      // one pin of page 4 first, then N pins of page 5: fits
      const list = new Uint32Array(N + 1).fill(5);
      list[0] = 4;
      // the same with one more pin of page 5: must fail and roll back the pin of page 4 too
      const over = new Uint32Array(N + 2).fill(5);
      over[0] = 4;
      const before = snapshot(pa);
      expect(pa.pinPages(list, { write: true, path })).toBe(N + 1);
      pa.unpinPages(list, { write: true, path });
      expect(snapshot(pa).pages).toEqual(before.pages);
      expectPinlabError(() => pa.pinPages(over, { write: true, path }), 'EOVERFLOW');
      expect(snapshot(pa).pages).toEqual(before.pages);
      expect(pa.refcount(4)).toBe(1);
    });
  });

  it('separate: pins cost one reference each, so the budget is 2^31-2 pins', () => {
    const pa = new PageArray({ pages: 4, scheme: 'separate' });
    pa.getPage(1, INT32_MAX - 1 - 3); // room for exactly 3 pins
    expect(pa.pinPages(new Uint32Array([1, 1, 1]))).toBe(3);
    expect(pa.refcount(1)).toBe(INT32_MAX);
    expect(pa.pincount(1)).toBe(3);
    expectErrorNoChange(pa, () => pa.pinPages({ start: 1, count: 1 }), 'EOVERFLOW');
  });

  it('write-bias read pins cost one reference each', () => {
    const pa = new PageArray({ pages: 4, scheme: 'write-bias' });
    pa.getPage(1, INT32_MAX - 1 - 2);
    pa.pinPages(new Uint32Array([1, 1]), { write: false });
    expect(pa.refcount(1)).toBe(INT32_MAX);
    expectErrorNoChange(pa, () => pa.pinPages(new Uint32Array([1]), { write: false }), 'EOVERFLOW');
    // a write pin needs the full bias of room
    pa.putPage(1, 1023);
    expectErrorNoChange(pa, () => pa.pinPages(new Uint32Array([1]), { write: true }), 'EOVERFLOW');
    pa.putPage(1);
    pa.pinPages(new Uint32Array([1]), { write: true });
    expect(pa.refcount(1)).toBe(INT32_MAX);
  });

  it('with pinBias 2^20 only 2^11-1 pins fit', () => {
    const pa = new PageArray({ pages: 2, scheme: 'bias', pinBias: 2 ** 20 });
    const n = Math.floor((INT32_MAX - 1) / 2 ** 20);
    expect(n).toBe(2 ** 11 - 1);
    expect(pa.pinPages(new Uint32Array(n).fill(1))).toBe(n);
    expectErrorNoChange(pa, () => pa.pinPages(new Uint32Array([1])), 'EOVERFLOW');
  });
});

describe('1 GiB folio (order 18)', () => {
  const pages = 2 ** 18;
  const all = { start: 0, count: pages };

  it.each(PATHS)('pure bias, path %s: 7 full pins fit, the 8th overflows and rolls back', (path) => {
    const pa = new PageArray({ pages, scheme: 'bias', folioOrder: 18 });
    for (let i = 1; i <= 7; i++) {
      expect(pa.pinPages(all, { path })).toBe(pages);
      expect(pa.refcount(pages - 1)).toBe(1 + i * 2 ** 28);
    }
    const stats = pa.stats();
    expectPinlabError(() => pa.pinPages(all, { path }), 'EOVERFLOW');
    expect(pa.refcount(0)).toBe(1 + 7 * 2 ** 28);
    expect(pa.stats().pinAcquired).toBe(stats.pinAcquired);
    expect(pa.stats().rollbacks).toBe(stats.rollbacks + 1);
    expect(pa.stats().overflowRefusals).toBe(stats.overflowRefusals + 1);
    // a partial 8th pin fits as long as it stays below 2^31-1
    const room = Math.floor((INT32_MAX - pa.refcount(0)) / 1024);
    expect(room).toBe(2 ** 18 - 1);
    expect(pa.pinPages({ start: 0, count: room }, { path })).toBe(room);
    expectPinlabError(() => pa.pinPages({ start: pages - 1, count: 1 }, { path }), 'EOVERFLOW');
    pa.unpinPages({ start: 0, count: room }, { path });
    for (let i = 0; i < 7; i++) pa.unpinPages(all, { path });
    expect(pa.refcount(0)).toBe(1);
    expect(pa.maybeDmaPinned(0)).toBe(false);
  });

  it.each(PATHS)('hybrid, path %s: the exact pincount takes 8 (and more) full pins', (path) => {
    const pa = new PageArray({ pages, scheme: 'hybrid', folioOrder: 18 });
    for (let i = 1; i <= 9; i++) expect(pa.pinPages(all, { path })).toBe(pages);
    expect(pa.refcount(0)).toBe(1 + 9 * pages);
    expect(pa.pincount(pages - 1)).toBe(9 * pages);
    expect(pa.maybeDmaPinned(12345)).toBe(true);
    expect(pa.stats().pinAcquired).toBe(9 * pages);
    for (let i = 0; i < 9; i++) pa.unpinPages(all, { path });
    expect(pa.refcount(0)).toBe(1);
    expect(pa.pincount(0)).toBe(0);
    expect(pa.maybeDmaPinned(0)).toBe(false);
  });

  it('hybrid with pincountMinOrder 2 still counts order 18 exactly', () => {
    const pa = new PageArray({ pages, scheme: 'hybrid', pincountMinOrder: 2, folioOrder: 18 });
    for (let i = 0; i < 8; i++) pa.pinPages(all);
    expect(pa.pincount(0)).toBe(8 * pages);
  });
});

describe('getPage / tryGetPage overflow', () => {
  it.each(SCHEMES)('%s: EOVERFLOW past 2^31-1, nothing changes', (scheme) => {
    const pa = new PageArray({ pages: 8, scheme, folioOrder: 1 });
    pa.getPage(3, INT32_MAX - 2);
    expect(pa.tryGetPage(2)).toBe(true);
    expect(pa.refcount(2)).toBe(INT32_MAX);
    const refusals = pa.stats().overflowRefusals;
    expectErrorNoChange(pa, () => pa.getPage(2), 'EOVERFLOW');
    expectErrorNoChange(pa, () => pa.tryGetPage(3), 'EOVERFLOW');
    expectErrorNoChange(pa, () => pa.tryGetPage(3, INT32_MAX), 'EOVERFLOW');
    expectErrorNoChange(pa, () => pa.pinPages({ start: 2, count: 1 }), 'EOVERFLOW');
    expect(pa.stats().overflowRefusals).toBe(refusals + 4);
    // a fresh folio takes the largest legal refs only if it fits
    expectErrorNoChange(pa, () => pa.getPage(4, INT32_MAX), 'EOVERFLOW');
    pa.getPage(4, INT32_MAX - 1);
    expect(pa.refcount(5)).toBe(INT32_MAX);
    // and puts bring it back
    expect(pa.putPage(5, INT32_MAX)).toBe(true);
  });
});
