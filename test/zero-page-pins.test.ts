// Issue 12: the page-array-level pin paths never count the shared zero page (gup hands it out
// uncounted): pinPages / unpinPages naming it, as a range or a list, on either path, are EINVAL
// and change nothing.
import { describe, expect, it } from 'vitest';
import { AddressSpace, PageArray } from '../lib/index.js';
import { SCHEMES } from '../lib/schemes.js';
import { codeOf } from './helpers.js';

/** The PinlabError code `fn` throws, or 'no error'. */
const code = (fn: () => unknown): string => codeOf(fn) ?? 'no error';

describe.each(SCHEMES)('zero page in the pin paths (%s)', (scheme) => {
  it.each([false, true])('pinPages / unpinPages refuse it (debug %s)', (debug) => {
    const mem = new PageArray({ pages: 1 << 12, populated: false, scheme, debug });
    const mm = new AddressSpace(mem, { pages: 1 << 12 });
    mm.mmap({ start: 0, count: 16 });
    mm.touch(0, 1); // a read fault maps the zero page
    const z = mem.zeroPfn!;
    expect(z).not.toBeNull();
    const before = { ref: mem.refcount(z), pins: mem.pincount(z), stats: mem.stats(), maybe: mem.maybeDmaPinned(z) };
    const ok = mem.allocFolio(0);
    const sets = [
      { start: z, count: 1 },
      { start: Math.min(z, ok), count: Math.abs(z - ok) + 1 },
      new Uint32Array([z]),
      new Uint32Array([ok, z]),
    ];
    for (const pages of sets) {
      for (const path of ['bvec', 'per-page'] as const) {
        for (const write of [false, true]) {
          expect(code(() => mem.pinPages(pages, { path, write }))).toBe('EINVAL');
          expect(code(() => mem.unpinPages(pages, { path, write }))).toBe('EINVAL');
        }
      }
    }
    expect({ ref: mem.refcount(z), pins: mem.pincount(z), stats: mem.stats(), maybe: mem.maybeDmaPinned(z) }).toEqual(before);
    expect(mem.refcount(ok)).toBe(1);
    expect(mem.pincount(ok) ?? 0).toBe(0);
  });
});
