// The allocator side of the page array: populated: false, allocFolio, free-on-zero, buddy
// merging, ZONE_MOVABLE, freePages and the zero page.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES } from '../lib/index.js';
import { expectErrorNoChange, expectPinlabError, snapshot } from './helpers.js';
import { BIAS, expectCode, pinRefs } from './mm-helpers.js';

function free(pages = 64, extra: { movablePages?: number; debug?: boolean } = {}): PageArray {
  return new PageArray({ pages, populated: false, ...extra });
}

describe('populated: false', () => {
  it('starts with every page free: refcount 0, order 0, nothing to get or pin', () => {
    const mem = free(64);
    expect(mem.freePages()).toBe(64);
    expect(mem.options.populated).toBe(false);
    expect(mem.options.movablePages).toBe(0);
    expect(mem.zeroPfn).toBeNull();
    for (let p = 0; p < 64; p++) {
      expect(mem.refcount(p)).toBe(0);
      expect(mem.folioOrder(p)).toBe(0);
      expect(mem.maybeDmaPinned(p)).toBe(false);
    }
    expect(mem.tryGetPage(3)).toBe(false);
    expectErrorNoChange(mem, () => mem.getPage(3), 'EFREE');
    expectErrorNoChange(mem, () => mem.pinPages({ start: 0, count: 1 }), 'EFREE');
    expect(mem.freePages()).toBe(64);
  });

  it('the default (populated) array has no free page: allocFolio is ENOMEM until a folio is freed', () => {
    const mem = new PageArray({ pages: 16, folioOrder: 2 });
    expect(mem.options.populated).toBe(true);
    expect(mem.freePages()).toBe(0);
    expectErrorNoChange(mem, () => mem.allocFolio(0), 'ENOMEM');
    expect(mem.putPage(4)).toBe(true); // the order-2 folio at 4 goes back to the allocator
    expect(mem.freePages()).toBe(4);
    expect(mem.refcount(4)).toBe(0);
    expect(mem.folioOrder(5)).toBe(0);
    expect(mem.allocFolio(2)).toBe(4);
    expect(mem.folioOrder(7)).toBe(2);
    expect(mem.refcount(7)).toBe(1);
    expect(mem.freePages()).toBe(0);
  });
});

describe('allocFolio', () => {
  it('hands out the lowest free aligned block of the smallest fitting order, refcount 1', () => {
    const mem = free(64, { debug: true });
    expect(mem.allocFolio(0)).toBe(0);
    expect(mem.allocFolio(0)).toBe(1);
    expect(mem.allocFolio(2)).toBe(4);
    expect(mem.allocFolio(1)).toBe(2);
    expect(mem.allocFolio(0)).toBe(8);
    expect(mem.allocFolio(3)).toBe(16);
    expect(mem.freePages()).toBe(64 - 1 - 1 - 4 - 2 - 1 - 8);
    for (const p of [4, 5, 6, 7]) {
      expect(mem.folioHead(p)).toBe(4);
      expect(mem.folioOrder(p)).toBe(2);
      expect(mem.refcount(p)).toBe(1);
      expect(mem.pincount(p)).toBe(0);
      expect(mem.maybeDmaPinned(p)).toBe(false);
    }
    expect(mem.folioHead(23)).toBe(16);
    expect(mem.folioOrder(23)).toBe(3);
    // Pages not handed out stay free.
    expect(mem.refcount(9)).toBe(0);
    expect(mem.refcount(24)).toBe(0);
    // An allocated folio is an ordinary folio: it can be got and pinned.
    mem.getPage(5);
    expect(mem.refcount(4)).toBe(2);
    expect(mem.pinPages({ start: 16, count: 8 })).toBe(8);
    expect(mem.pincount(16)).toBe(8);
  });

  it('ENOMEM when no aligned block of the order is left, and nothing changes', () => {
    const mem = free(64);
    expectErrorNoChange(mem, () => mem.allocFolio(7), 'ENOMEM');
    expect(mem.allocFolio(6)).toBe(0);
    expect(mem.freePages()).toBe(0);
    expectErrorNoChange(mem, () => mem.allocFolio(0), 'ENOMEM');
    expect(mem.freePages()).toBe(0);
  });

  it('ENOMEM for a fragmented zone: free pages but no aligned pair; a freed buddy merges', () => {
    const mem = free(16);
    for (let p = 0; p < 16; p++) expect(mem.allocFolio(0)).toBe(p);
    for (let p = 0; p < 16; p += 2) expect(mem.putPage(p)).toBe(true);
    expect(mem.freePages()).toBe(8);
    expectErrorNoChange(mem, () => mem.allocFolio(1), 'ENOMEM');
    expect(mem.freePages()).toBe(8);
    expect(mem.putPage(5)).toBe(true); // 4 and 5 merge into an order-1 block
    expect(mem.allocFolio(1)).toBe(4);
    expect(mem.folioOrder(5)).toBe(1);
    expectErrorNoChange(mem, () => mem.allocFolio(1), 'ENOMEM');
    // Every page back: the whole zone merges into one order-4 block again.
    expect(mem.putPage(4)).toBe(true);
    for (let p = 1; p < 16; p += 2) if (p !== 5) expect(mem.putPage(p)).toBe(true);
    expect(mem.freePages()).toBe(16);
    expect(mem.allocFolio(4)).toBe(0);
    expect(mem.folioOrder(15)).toBe(4);
  });

  it('EINVAL for a bad order or option, nothing changes', () => {
    const mem = free(64);
    for (const order of [-1, 31, 1.5, Number.NaN]) expectErrorNoChange(mem, () => mem.allocFolio(order), 'EINVAL');
    expectErrorNoChange(mem, () => mem.allocFolio('1' as unknown as number), 'EINVAL');
    expectErrorNoChange(mem, () => mem.allocFolio(0, { moveable: true } as never), 'EINVAL');
    expectErrorNoChange(mem, () => mem.allocFolio(0, { movable: 1 } as never), 'EINVAL');
    expect(mem.freePages()).toBe(64);
  });
});

describe('freeing when the refcount reaches 0', () => {
  it('putPage of the last reference frees the folio and its pages can be allocated again', () => {
    const mem = free(64, { debug: true });
    const head = mem.allocFolio(3);
    expect(head).toBe(0);
    mem.getPage(head + 5, 2);
    const s0 = mem.stats();
    expect(mem.putPage(head + 1, 2)).toBe(false);
    expect(mem.freePages()).toBe(56);
    expect(mem.putPage(head + 7)).toBe(true);
    expect(mem.stats().foliosFreed - s0.foliosFreed).toBe(1);
    expect(mem.freePages()).toBe(64);
    for (let p = 0; p < 8; p++) {
      expect(mem.refcount(p)).toBe(0);
      expect(mem.folioOrder(p)).toBe(0);
      expect(mem.folioHead(p)).toBe(p);
    }
    expectErrorNoChange(mem, () => mem.putPage(head), 'EINVAL');
    expect(mem.tryGetPage(head)).toBe(false);
    // Reused with another shape.
    expect(mem.allocFolio(2)).toBe(0);
    expect(mem.allocFolio(2)).toBe(4);
    expect(mem.folioHead(6)).toBe(4);
  });

  it('the dirty flag does not survive freeing', () => {
    const mem = free(8);
    const p = mem.allocFolio(0);
    mem.pinPages({ start: p, count: 1 }, { write: true });
    mem.unpinPages({ start: p, count: 1 }, { write: true, dirty: true });
    expect(mem.isDirty(p)).toBe(true);
    expect(mem.putPage(p)).toBe(true);
    expect(mem.allocFolio(0)).toBe(p);
    expect(mem.isDirty(p)).toBe(false);
  });

  describe.each(SCHEMES)('scheme %s', (scheme) => {
    it('an unpin that drops the last reference frees the folio (order 0 and order 3)', () => {
      const mem = new PageArray({ pages: 64, populated: false, scheme });
      const small = mem.allocFolio(0);
      const big = mem.allocFolio(3);
      mem.pinPages({ start: small, count: 1 }, { write: true });
      mem.pinPages({ start: big, count: 8 }, { write: true });
      expect(mem.refcount(small)).toBe(1 + pinRefs(scheme, 0, true));
      expect(mem.refcount(big)).toBe(1 + pinRefs(scheme, 3, true, 8));
      // The owner lets go first (allowed without debug mode); the pins keep the folios alive.
      expect(mem.putPage(small)).toBe(false);
      expect(mem.putPage(big)).toBe(false);
      const free0 = mem.freePages();
      const freed0 = mem.stats().foliosFreed;
      mem.unpinPages({ start: big, count: 4 }, { write: true });
      expect(mem.freePages()).toBe(free0);
      mem.unpinPages(new Uint32Array([small, big + 4, big + 5, big + 6, big + 7]), { write: true });
      expect(mem.freePages()).toBe(free0 + 1 + 8);
      expect(mem.stats().foliosFreed - freed0).toBe(2);
      expect(mem.refcount(small)).toBe(0);
      expect(mem.refcount(big)).toBe(0);
      expect(mem.maybeDmaPinned(small)).toBe(false);
      expect(mem.freePages()).toBe(64);
    });
  });

  it('debug mode: freeing a pinned folio by putPage is refused (EPINNED), nothing changes', () => {
    const mem = free(8, { debug: true });
    const p = mem.allocFolio(0);
    mem.pinPages({ start: p, count: 1 });
    expect(mem.putPage(p)).toBe(false); // the owner's reference: allowed, the pin keeps it
    expectErrorNoChange(mem, () => mem.putPage(p), 'EPINNED');
    expect(mem.freePages()).toBe(7);
    mem.unpinPages({ start: p, count: 1 });
    expect(mem.freePages()).toBe(8);
  });
});

describe('ZONE_MOVABLE (movablePages)', () => {
  it('the top movablePages PFNs are movable', () => {
    const mem = free(64, { movablePages: 16 });
    expect(mem.options.movablePages).toBe(16);
    expect(mem.isMovable(0)).toBe(false);
    expect(mem.isMovable(47)).toBe(false);
    expect(mem.isMovable(48)).toBe(true);
    expect(mem.isMovable(63)).toBe(true);
    expectPinlabError(() => mem.isMovable(64), 'ERANGE');
    expectPinlabError(() => mem.isMovable(-1), 'ERANGE');
    expect(mem.freePages()).toBe(64);
  });

  it('movable allocations take ZONE_MOVABLE first and fall back to the normal zone', () => {
    const mem = free(64, { movablePages: 16 });
    // The normal zone [0, 48) is an order-5 block at 0 and an order-4 block at 32: the
    // smallest fitting order goes first.
    expect(mem.allocFolio(0)).toBe(32);
    expect(mem.allocFolio(0, { movable: true })).toBe(48);
    expect(mem.allocFolio(3, { movable: true })).toBe(56);
    // No order-4 block is left in ZONE_MOVABLE: the normal zone serves it.
    const h = mem.allocFolio(4, { movable: true });
    expect(mem.isMovable(h)).toBe(false);
    expect(h).toBe(0);
    expect(mem.freePages()).toBe(64 - 1 - 1 - 8 - 16);
  });

  it('normal allocations never take ZONE_MOVABLE', () => {
    const mem = free(64, { movablePages: 48 });
    expect(mem.allocFolio(4)).toBe(0);
    expect(mem.freePages()).toBe(48);
    expectErrorNoChange(mem, () => mem.allocFolio(0), 'ENOMEM');
    expect(mem.allocFolio(0, { movable: true })).toBe(16);
    const all = free(8, { movablePages: 8 });
    expectErrorNoChange(all, () => all.allocFolio(0), 'ENOMEM');
    expect(all.isMovable(0)).toBe(true);
  });

  it('a freed movable folio goes back to ZONE_MOVABLE', () => {
    const mem = free(64, { movablePages: 32 });
    const h = mem.allocFolio(5, { movable: true });
    expect(h).toBe(32);
    expect(mem.freePages()).toBe(32);
    expect(mem.putPage(h)).toBe(true);
    expect(mem.freePages()).toBe(64);
    expect(mem.allocFolio(5, { movable: true })).toBe(32);
  });

  it('pages freed one by one on both sides of the boundary go back to their own zones', () => {
    const mem = new PageArray({ pages: 64, movablePages: 16 }); // populated: every page allocated
    for (let p = 40; p < 56; p++) expect(mem.putPage(p)).toBe(true);
    expect(mem.freePages()).toBe(16);
    expect(mem.allocFolio(3)).toBe(40);
    expectErrorNoChange(mem, () => mem.allocFolio(3), 'ENOMEM');
    expect(mem.allocFolio(3, { movable: true })).toBe(48);
  });

  it('a folio may not straddle the ZONE_MOVABLE boundary: makeFolio -> EINVAL, nothing changed', () => {
    const mem = new PageArray({ pages: 64, movablePages: 16 }); // boundary at 48
    expectErrorNoChange(mem, () => mem.makeFolio(32, 5), 'EINVAL'); // 32..63: half and half
    expect(() => mem.makeFolio(32, 5)).toThrow(/ZONE_MOVABLE/);
    mem.makeFolio(32, 4); // 32..47: all normal
    mem.makeFolio(48, 4); // 48..63: all movable
    expect(mem.putPage(32)).toBe(true);
    expect(mem.putPage(48)).toBe(true);
    const normal: number[] = [];
    for (;;) {
      try {
        normal.push(mem.allocFolio(0));
      } catch {
        break;
      }
    }
    expect(normal).toEqual(Array.from({ length: 16 }, (_, i) => 32 + i));
    expect(mem.allocFolio(4, { movable: true })).toBe(48);
  });

  it('EINVAL for a movablePages that would split an initial folio', () => {
    expectPinlabError(() => new PageArray({ pages: 64, folioOrder: 4, movablePages: 8 }), 'EINVAL', /movablePages/);
    expect(new PageArray({ pages: 64, folioOrder: 4, movablePages: 16 }).isMovable(48)).toBe(true);
  });

  it('EINVAL for a movablePages outside 0..pages', () => {
    expectPinlabError(() => free(64, { movablePages: 65 }), 'EINVAL', /movablePages/);
    expectPinlabError(() => free(64, { movablePages: -1 }), 'EINVAL', /movablePages/);
    expectPinlabError(() => new PageArray({ pages: 8, populated: 'no' as unknown as boolean }), 'EINVAL', /populated/);
  });
});

describe('the zero page', () => {
  it('is allocated from the normal zone by the first read fault, once, and never counted', () => {
    const mem = free(64, { movablePages: 32, debug: true });
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 16 });
    expect(mem.zeroPfn).toBeNull();
    mm.touch(0, 8);
    const zero = mem.zeroPfn;
    expect(zero).toBe(0);
    expect(mem.isMovable(zero!)).toBe(false);
    expect(mem.freePages()).toBe(63);
    const ref = mem.refcount(zero!);
    expect(ref).toBe(1);
    mm.touch(8, 8);
    for (let v = 0; v < 16; v++) expect(mm.translate(v)).toEqual({ pfn: zero, writable: false, zeroPage: true, huge: false, shared: false });
    expect(mem.refcount(zero!)).toBe(ref);
    expect(mem.freePages()).toBe(63);
    // A write fault takes user memory from ZONE_MOVABLE.
    mm.touch(0, 1, { write: true });
    expect(mm.translate(0)!.pfn).toBe(32);
    expect(mem.refcount(32)).toBe(1);
    // Unmapping zero-page entries puts nothing: the zero page stays allocated, not freed.
    mm.munmap({ start: 0, count: 16 });
    expect(mem.refcount(zero!)).toBe(ref);
    expect(mem.refcount(32)).toBe(0);
    expect(mem.freePages()).toBe(63);
    expect(mem.zeroPfn).toBe(zero);
  });

  it('ENOMEM for a read fault when no page is left for the zero page', () => {
    const mem = free(1);
    const mm = new AddressSpace(mem, { pages: 16 });
    expect(mem.allocFolio(0)).toBe(0);
    mm.mmap({ start: 0, count: 4 });
    expectCode(() => mm.touch(0, 1), 'ENOMEM');
    expect(mem.zeroPfn).toBeNull();
    expect(mm.translate(0)).toBeNull();
    expect(mem.putPage(0)).toBe(true);
    mm.touch(0, 4);
    expect(mem.zeroPfn).toBe(0);
    expect(mem.freePages()).toBe(0);
  });

  it('the bias scheme does not see plain mapping references of the zero page as pins', () => {
    const mem = new PageArray({ pages: 8, populated: false, scheme: 'bias' });
    const mm = new AddressSpace(mem, { pages: 2048 });
    mm.mmap({ start: 0, count: 2048 });
    mm.touch(0, 2048); // 2048 read-fault mappings: more than BIAS, but the zero page is never counted
    expect(mem.refcount(mem.zeroPfn!)).toBeLessThan(BIAS);
    expect(mem.maybeDmaPinned(mem.zeroPfn!)).toBe(false);
  });
});

it('snapshot helper sanity: allocFolio and free are observable through the page state', () => {
  const mem = free(8);
  const before = snapshot(mem);
  const h = mem.allocFolio(1);
  expect(snapshot(mem)).not.toEqual(before);
  expect(mem.putPage(h)).toBe(true);
  const after = snapshot(mem);
  expect(after.pages).toEqual(before.pages);
  expect(after.stats.foliosFreed).toBe(before.stats.foliosFreed + 1);
});
