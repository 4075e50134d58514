// Issue 12 items 3 and 10 (lib half): an owner's drop under write-bias is one all-or-nothing
// native call (no re-pin to undo a release), and a pin call whose bookkeeping cannot be made
// gives its pins back.
import { describe, expect, it } from 'vitest';
import { AddressSpace, PageArray } from '../lib/index.js';
import { pinsOf } from '../lib/page-array.js';
import { codeOf } from './helpers.js';

/** The PinlabError code `fn` throws, or 'no error'. */
const code = (fn: () => unknown): string => codeOf(fn) ?? 'no error';

describe('drop under write-bias', () => {
  it('a refused release of both kinds changes nothing and re-pins nothing (crafted imbalance)', () => {
    const mem = new PageArray({ pages: 64, scheme: 'write-bias' });
    const owner = mem.pinOwner('dev');
    mem.pinPages({ start: 0, count: 8 }, { owner }); // read pins
    mem.pinPages({ start: 8, count: 8 }, { owner, write: true }); // write pins
    // Behind the owner's back, an ownerless unpin takes one of its write pins away.
    mem.unpinPages({ start: 15, count: 1 }, { write: true });
    const state = () => {
      const { pinAcquired, pinReleased, grabs, foliosFreed } = mem.stats();
      return { pinAcquired, pinReleased, grabs, foliosFreed, refs: Array.from({ length: 16 }, (_, i) => mem.refcount(i)) };
    };
    const before = state();
    expect(code(() => owner.drop({ pins: 'release' }))).toBe('ENOTPINNED');
    // Nothing changed: not one read pin released then re-taken (pinAcquired and grabs would count it).
    expect(state()).toEqual(before);
    expect(owner.dropped).toBe(false);
    expect(owner.outstandingPins().reduce((n, p) => n + p.count, 0)).toBe(16);
  });

  it('a release of both kinds succeeds as one call', () => {
    const mem = new PageArray({ pages: 64, scheme: 'write-bias', folioOrder: 2 });
    const owner = mem.pinOwner('dev');
    mem.pinPages({ start: 0, count: 6 }, { owner });
    mem.pinPages({ start: 2, count: 6 }, { owner, write: true });
    const released = mem.stats().pinReleased;
    expect(owner.drop({ pins: 'release' }).releasedPages).toBe(12);
    expect(mem.stats().pinReleased - released).toBe(12);
    for (let p = 0; p < 8; p++) expect(mem.refcount(p)).toBe(1);
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('in debug mode, read pins cannot stand in for write pins', () => {
    const mem = new PageArray({ pages: 64, scheme: 'write-bias', debug: true });
    const owner = mem.pinOwner('dev');
    mem.pinPages({ start: 0, count: 4 }, { owner });
    mem.pinPages({ start: 0, count: 4 }, { owner, write: true });
    expect(owner.drop({ pins: 'release' }).releasedPages).toBe(8);
    expect(mem.debugPinnedRuns()).toEqual([]);
  });
});

describe('a pin whose bookkeeping fails gives its pins back', () => {
  for (const debug of [false, true]) {
    it(`pinPages (range and list), debug ${debug}`, () => {
      const mem = new PageArray({ pages: 256, debug });
      const owner = mem.pinOwner('dev');
      const tracking = pinsOf(mem).tracking;
      const real = tracking.record.bind(tracking);
      tracking.record = () => {
        throw new RangeError('Map maximum size exceeded');
      };
      expect(code(() => mem.pinPages({ start: 0, count: 16 }, { owner }))).toBe('ENOMEM');
      expect(code(() => mem.pinPages(new Uint32Array([3, 4, 5, 9]), { owner, write: true }))).toBe('ENOMEM');
      tracking.record = real;
      for (let p = 0; p < 16; p++) expect(mem.refcount(p)).toBe(1);
      const s = mem.stats();
      expect(s.pinAcquired).toBe(s.pinReleased);
      expect(owner.outstandingPins()).toEqual([]);
      expect(mem.checkBalanced()).toEqual([]);
    });

    it(`pinUserPagesFast, debug ${debug}`, () => {
      const mem = new PageArray({ pages: 1 << 12, populated: false, debug });
      const mm = new AddressSpace(mem, { pages: 1 << 12 });
      mm.mmap({ start: 0, count: 64, populate: true });
      const owner = mem.pinOwner('dev');
      const pins = pinsOf(mem);
      const real = pins.pfnRuns.bind(pins);
      pins.pfnRuns = () => {
        throw new RangeError('Array buffer allocation failed');
      };
      expect(code(() => mm.pinUserPagesFast(0, 32, { owner, write: true }))).toBe('ENOMEM');
      pins.pfnRuns = real;
      const s = mem.stats();
      expect(s.pinAcquired).toBe(s.pinReleased);
      expect(mem.checkBalanced()).toEqual([]);
    });
  }
});
