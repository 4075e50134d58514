// Stop 28: a bio that holds one page both ways (a pin from user memory and a plain reference
// from bio_add_page), whose plain reference was put behind its back, is refused whole at
// completion in every mode: its puts are checked against the counts its unpins will leave,
// not the counts before them (stop 27's review left this for non-debug mode).
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, bioAddPage, bioFromUserPages, stateDigest } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';

const H = 512;

describe.each(SCHEMES)('attack 28 under %s', (scheme) => {
  describe.each([false, true])('debug %s', (debug) => {
    for (const shape of ['small', 'thp'] as const) {
      for (const write of [false, true]) {
        it(`a ${shape} page pinned and got by one bio (write ${write}), its get put behind its back: complete() refused whole`, () => {
          const mem = new PageArray({ pages: 8192, populated: false, scheme, debug });
          const mm = new AddressSpace(mem, { pages: 4096 });
          const count = shape === 'thp' ? H : 1;
          mm.mmap({ start: 0, count, populate: true, huge: shape === 'thp' });
          const bio = bioFromUserPages(mm, 0, 1, { policy: 'flagged', write });
          const pfn = bio.bvecs[0]!.pfn;
          bioAddPage(bio, pfn); // the same page, a plain reference
          mem.putPage(pfn, 1); // the bio's plain reference, behind its back
          mm.munmap({ start: 0, count }); // the pin's references are now the page's last
          const refs = mem.refcount(pfn);
          const before = stateDigest(mem);
          // The unpin alone would pass, and free the page; the put after it would then fail.
          expectPinlabError(() => bio.complete(), 'EINVAL', /below 0/);
          expect(stateDigest(mem)).toEqual(before);
          expect(bio.completed).toBe(false);
          expect(mem.maybeDmaPinned(pfn)).toBe(write || scheme !== 'write-bias'); // its read pins are invisible
          expect(mem.refcount(pfn)).toBe(refs);
          expect(mem.isDirty(pfn)).toBe(false);
          // A wrong release is refused the same way ('put' eats the pin in non-debug mode).
          expectPinlabError(() => bio.release('unpin'), 'ENOTPINNED'); // an unpin of its plain reference
          expect(stateDigest(mem)).toEqual(before);
          // Given its reference back, the bio completes and the page is freed with it.
          mem.getPage(pfn, 1);
          bio.complete();
          expect(bio.completed).toBe(true);
          expect(mem.refcount(pfn)).toBe(0);
          expect(mem.maybeDmaPinned(pfn)).toBe(false);
          if (debug) expect(mem.checkBalanced()).toEqual([]);
        });
      }
    }

    it('a mapped page pinned and got by one bio, its get put behind its back: the put would take the mapping (EBUSY), refused whole', () => {
      const mem = new PageArray({ pages: 4096, populated: false, scheme, debug });
      const mm = new AddressSpace(mem, { pages: 1024 });
      mm.mmap({ start: 0, count: 4, populate: true });
      const bio = bioFromUserPages(mm, 0, 4, { policy: 'flagged', write: true });
      const pfn = bio.bvecs[0]!.pfn;
      bioAddPage(bio, pfn);
      mem.putPage(pfn, 1);
      const before = stateDigest(mem);
      expectPinlabError(() => bio.complete(), 'EBUSY');
      expect(stateDigest(mem)).toEqual(before);
      expect(bio.completed).toBe(false);
      mem.getPage(pfn, 1);
      bio.complete();
      expect(mm.translate(0)!.pfn).toBe(pfn);
      expect(mem.refcount(pfn)).toBe(1); // the mapping's
      expect(mem.maybeDmaPinned(pfn)).toBe(false);
    });

    it('pins shared with another holder: the bio releases its own and keeps the check exact', () => {
      const mem = new PageArray({ pages: 4096, populated: false, scheme, debug });
      const mm = new AddressSpace(mem, { pages: 1024 });
      mm.mmap({ start: 0, count: H, populate: true, huge: true });
      const other = mm.pinUserPages(0, 1, { write: true }).pfns;
      const bio = bioFromUserPages(mm, 0, 1, { policy: 'flagged', write: true });
      const pfn = bio.bvecs[0]!.pfn;
      bioAddPage(bio, pfn);
      mm.munmap({ start: 0, count: H });
      bio.complete(); // every reference in place: passes, whatever the other pin
      expect(mem.maybeDmaPinned(pfn)).toBe(true);
      mem.unpinPages(other, { write: true });
      expect(mem.refcount(pfn)).toBe(0);
    });
  });
});
