// Debug mode: exact per-subpage pin accounting that turns misuse into errors (seed 001), each
// refusal leaving the array unchanged, and compared with what non-debug mode lets through.
import { describe, expect, it } from 'vitest';

import { PageArray, SCHEMES, type PinPath, type Scheme } from '../lib/index.js';
import { expectErrorNoChange, range, snapshot } from './helpers.js';
import { schemeTraits } from './scheme-traits.js';

const PATHS: PinPath[] = ['per-page', 'bvec'];

/** 32 pages: order-2 folio at 4, order-3 folio at 8, order-0 elsewhere. */
function layout(scheme: Scheme, debug: boolean, pinBias = 1024): PageArray {
  const pa = new PageArray({ pages: 32, scheme, debug, pinBias });
  pa.makeFolio(4, 2);
  pa.makeFolio(8, 3);
  return pa;
}

describe.each(SCHEMES)('scheme %s, debug', (scheme) => {
  const traits = schemeTraits(scheme);
  const write = traits.readPinsHidden; // write pins, so that every scheme sees them

  it('pincount() is exact and non-null for every folio', () => {
    const pa = layout(scheme, true);
    for (let p = 0; p < 32; p++) expect(pa.pincount(p), `pfn ${p}`).toBe(0);
    pa.pinPages(new Uint32Array([0, 0, 5, 6, 6, 9, 20]), { write });
    pa.pinPages({ start: 8, count: 8 }, { write: false });
    expect(pa.pincount(0)).toBe(2);
    expect(pa.pincount(1)).toBe(0);
    for (let p = 4; p < 8; p++) expect(pa.pincount(p)).toBe(3);
    for (let p = 8; p < 16; p++) expect(pa.pincount(p)).toBe(9);
    expect(pa.pincount(20)).toBe(1);
    pa.unpinPages(new Uint32Array([6, 0]), { write });
    expect(pa.pincount(0)).toBe(1);
    expect(pa.pincount(7)).toBe(2);
    const written: Partial<Record<Scheme, number>> = { bias: 9, hybrid: 9, separate: 13, 'write-bias': 13 };
    expect(pa.memoryUsage().bytesPerPage).toBe(written[scheme] ?? traits.bytesPerPage(true));
  });

  it('the debug array answers refcount and maybe-pinned exactly like the non-debug one', () => {
    const a = layout(scheme, true);
    const b = layout(scheme, false);
    for (const pa of [a, b]) {
      pa.pinPages(new Uint32Array([1, 5, 9, 10, 30]), { write });
      pa.pinPages({ start: 6, count: 5 }, { write: false });
      pa.getPage(2, 1023);
      pa.unpinPages(new Uint32Array([9]), { write, dirty: true });
    }
    for (let p = 0; p < 32; p++) {
      expect(a.refcount(p)).toBe(b.refcount(p));
      expect(a.maybeDmaPinned(p)).toBe(b.maybeDmaPinned(p));
      expect(a.isDirty(p)).toBe(b.isDirty(p));
      const exact = b.pincount(p);
      if (exact !== null) expect(a.pincount(p)).toBe(exact);
    }
  });

  describe('EPINNED: putPage may not eat the references of pins', () => {
    it('order-0 page: the put that would free a pinned page or eat its pin', () => {
      const pa = layout(scheme, true);
      pa.pinPages({ start: 3, count: 1 }, { write });
      const held = pa.refcount(3);
      // more than the plain references in one go
      expectErrorNoChange(pa, () => pa.putPage(3, 2), 'EPINNED');
      // the allocation reference may go: the pin keeps the page
      expect(pa.putPage(3)).toBe(false);
      expect(pa.refcount(3)).toBe(held - 1);
      expectErrorNoChange(pa, () => pa.putPage(3), 'EPINNED');
      // the put that would free the page while it is pinned
      expectErrorNoChange(pa, () => pa.putPage(3, pa.refcount(3)), 'EPINNED');
      // with plain references on top, exactly those may be put
      pa.getPage(3, 5);
      expect(pa.putPage(3, 5)).toBe(false);
      expectErrorNoChange(pa, () => pa.putPage(3), 'EPINNED');
      // unpin releases the pin and frees the page
      pa.unpinPages({ start: 3, count: 1 }, { write });
      expect(pa.refcount(3)).toBe(0);
      expect(pa.stats().foliosFreed).toBe(1);
    });

    it('large folio: pins of tail pages protect the head refcount', () => {
      const pa = layout(scheme, true);
      pa.pinPages(new Uint32Array([13, 14]), { write });
      expect(pa.putPage(8)).toBe(false);
      expectErrorNoChange(pa, () => pa.putPage(15), 'EPINNED');
      expectErrorNoChange(pa, () => pa.putPage(8), 'EPINNED');
      expectErrorNoChange(pa, () => pa.putPage(12, pa.refcount(8)), 'EPINNED'); // would free it
      pa.unpinPages(new Uint32Array([13]), { write });
      expectErrorNoChange(pa, () => pa.putPage(9), 'EPINNED');
      pa.unpinPages(new Uint32Array([14]), { write });
      expect(pa.refcount(8)).toBe(0);
    });

    it('non-debug mode lets the same puts through (the bug debug mode exists to catch)', () => {
      const pa = layout(scheme, false);
      pa.pinPages({ start: 3, count: 1 }, { write });
      const held = pa.refcount(3);
      expect(pa.putPage(3, 2)).toBe(held === 2);
      expect(pa.refcount(3)).toBe(held - 2);
    });
  });

  describe.each(PATHS)('ENOTPINNED, path %s', (path) => {
    it('unpin of an unpinned subpage of a pinned large folio (invisible without debug)', () => {
      for (const debug of [false, true]) {
        const pa = layout(scheme, debug);
        pa.pinPages({ start: 4, count: 1 }, { write, path });
        pa.pinPages(new Uint32Array([9, 10]), { write, path });
        if (!debug) {
          // the folio-level counts cannot tell subpage 5 from subpage 4
          pa.unpinPages({ start: 5, count: 1 }, { write, path });
          expect(pa.maybeDmaPinned(4)).toBe(false);
          pa.unpinPages(new Uint32Array([11, 12]), { write, path, dirty: true });
          expect(pa.isDirty(8)).toBe(true);
          continue;
        }
        expectErrorNoChange(pa, () => pa.unpinPages({ start: 5, count: 1 }, { write, path }), 'ENOTPINNED', /\b5\b/);
        expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([4, 5]), { write, path, dirty: true }), 'ENOTPINNED');
        expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([9, 10, 11]), { write, path, dirty: true }), 'ENOTPINNED', /\b11\b/);
        expectErrorNoChange(pa, () => pa.unpinPages({ start: 8, count: 3 }, { write, path, dirty: true }), 'ENOTPINNED');
        // repeats: subpage 9 holds one pin, not two
        expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([10, 9, 9]), { write, path }), 'ENOTPINNED');
        for (let p = 0; p < 32; p++) expect(pa.isDirty(p)).toBe(false);
        // the right subpages unpin fine
        pa.unpinPages(new Uint32Array([10, 9]), { write, path, dirty: true });
        pa.unpinPages({ start: 4, count: 1 }, { write, path });
        expect(pa.isDirty(8)).toBe(true);
        expect(pa.isDirty(4)).toBe(false);
        for (let p = 0; p < 32; p++) expect(pa.pincount(p)).toBe(0);
        expect(pa.stats().pinAcquired).toBe(pa.stats().pinReleased);
      }
    });

    it('unpin of an order-0 page holding only plain references', () => {
      for (const debug of [false, true]) {
        const pa = layout(scheme, debug);
        pa.getPage(2, 2048); // enough plain references to pay for a "pin" under any scheme
        if (debug) expectErrorNoChange(pa, () => pa.unpinPages({ start: 2, count: 1 }, { write, path }), 'ENOTPINNED');
        else if (traits.exact(0)) {
          // an exact counter (separate) catches it
          expectErrorNoChange(pa, () => pa.unpinPages({ start: 2, count: 1 }, { write, path }), 'ENOTPINNED');
        } else {
          // the bias (bias, write-bias, hybrid's small pages) cannot: the pin's cost is eaten silently
          pa.unpinPages({ start: 2, count: 1 }, { write, path });
          expect(pa.refcount(2)).toBe(2049 - traits.cost(0, write)); // 2049 - 1024
        }
      }
    });

    it('a failed debug unpin keeps every pin of the call (re-unpinning works)', () => {
      const pa = layout(scheme, true);
      const pins = new Uint32Array([0, 1, 2, 4, 5, 8, 9, 10, 11, 12]);
      pa.pinPages(pins, { write, path });
      const before = snapshot(pa);
      expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([...pins, 3]), { write, path, dirty: true }), 'ENOTPINNED');
      expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([...pins, ...pins]), { write, path }), 'ENOTPINNED');
      expect(snapshot(pa)).toEqual(before);
      pa.unpinPages(pins, { write, path });
      for (const p of range(16)) expect(pa.pincount(p)).toBe(0);
    });
  });
});

describe('write-bias, debug: the write flag of an unpin must match the pin', () => {
  it.each(PATHS)('path %s', (path) => {
    const pa = layout('write-bias', true);
    const plain = layout('write-bias', false);
    for (const a of [pa, plain]) {
      a.pinPages({ start: 1, count: 1 }, { write: true, path });
      a.pinPages({ start: 2, count: 1 }, { write: false, path });
    }
    // read unpin of a write pin: debug refuses; non-debug cannot tell (refcount 1+B-1 >= 0)
    expectErrorNoChange(pa, () => pa.unpinPages({ start: 1, count: 1 }, { write: false, path }), 'ENOTPINNED', /\b1\b/);
    plain.unpinPages({ start: 1, count: 1 }, { write: false, path });
    expect(plain.refcount(1)).toBe(1024);
    // write unpin of a read pin: refused in both modes (the bias would go below zero)
    expectErrorNoChange(pa, () => pa.unpinPages({ start: 2, count: 1 }, { write: true, path }), 'ENOTPINNED', /\b2\b/);
    expectErrorNoChange(plain, () => plain.unpinPages({ start: 2, count: 1 }, { write: true, path }), 'ENOTPINNED');
    // a large folio: a write pin on one subpage, a read pin on another
    pa.pinPages(new Uint32Array([9]), { write: true, path });
    pa.pinPages(new Uint32Array([10]), { write: false, path });
    expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([10]), { write: true, path }), 'ENOTPINNED');
    expectErrorNoChange(pa, () => pa.unpinPages(new Uint32Array([9]), { write: false, path }), 'ENOTPINNED');
    // a page with one read and one write pin: each unpin needs its own kind
    pa.pinPages({ start: 1, count: 1 }, { write: false, path });
    pa.unpinPages({ start: 1, count: 1 }, { write: false, path });
    expectErrorNoChange(pa, () => pa.unpinPages({ start: 1, count: 1 }, { write: false, path }), 'ENOTPINNED');
    pa.unpinPages({ start: 1, count: 1 }, { write: true, path });
    pa.unpinPages({ start: 2, count: 1 }, { write: false, path });
    pa.unpinPages(new Uint32Array([9]), { write: true, path });
    pa.unpinPages(new Uint32Array([10]), { write: false, path });
    for (let p = 0; p < 32; p++) {
      expect(pa.pincount(p)).toBe(0);
      expect(pa.refcount(p)).toBe(1);
    }
  });

  it('EPINNED counts a write pin as the bias and a read pin as 1', () => {
    const pa = layout('write-bias', true, 16);
    pa.pinPages(new Uint32Array([3]), { write: true });
    pa.pinPages(new Uint32Array([3]), { write: false });
    expect(pa.refcount(3)).toBe(1 + 16 + 1);
    pa.putPage(3);
    expectErrorNoChange(pa, () => pa.putPage(3), 'EPINNED');
    pa.unpinPages(new Uint32Array([3]), { write: false });
    expectErrorNoChange(pa, () => pa.putPage(3), 'EPINNED');
    pa.unpinPages(new Uint32Array([3]), { write: true });
    expect(pa.refcount(3)).toBe(0);
  });

  it('other schemes ignore the write flag on unpin', () => {
    for (const scheme of SCHEMES.filter((s) => !schemeTraits(s).readPinsHidden)) {
      const pa = layout(scheme, true);
      pa.pinPages(new Uint32Array([1, 9]), { write: true });
      pa.unpinPages(new Uint32Array([1, 9]), { write: false });
      expect(pa.pincount(1)).toBe(0);
      expect(pa.refcount(1)).toBe(1);
    }
  });
});

describe('debug: splitFolio and makeFolio see pins the refcount cannot show', () => {
  it.each(SCHEMES)('%s: a pinned folio or page whose refcount is back to 1 stays busy', (scheme) => {
    const pa = layout(scheme, true);
    // read pins: under write-bias (and hybrid large folios, separate) a pin costs one reference
    pa.pinPages(new Uint32Array([9, 20]), { write: false });
    expect(pa.putPage(8)).toBe(false); // the allocation reference: allowed, the pin holds the folio
    expect(pa.putPage(20)).toBe(false);
    const cost = pa.refcount(8);
    const t = schemeTraits(scheme);
    expect(pa.refcount(20)).toBe(t.cost(0, false)); // 1 (separate, write-bias) or 1024
    expect(cost).toBe(t.cost(3, false)); // 1024 (bias) or 1
    expectErrorNoChange(pa, () => pa.splitFolio(8), 'EBUSY');
    expectErrorNoChange(pa, () => pa.makeFolio(16, 3), 'EBUSY');
    expectErrorNoChange(pa, () => pa.putPage(8), 'EPINNED');
    pa.unpinPages(new Uint32Array([9, 20]));
    expect(pa.refcount(8)).toBe(0);
    expect(pa.refcount(20)).toBe(0);
  });
});
