// Issue 13: the huge zero folio. Read faults of whole 2 MiB stretches of THP regions map it by
// one PMD leaf (PageArray.hugeZeroPfn); it is never counted, so every page-array path that
// counts pages refuses its 512 PFNs and changes nothing; rules.hugeZeroPage turns it off; an
// op-stream recording that maps it replays to the identical state.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, runReplay, stateDigest, type Scheme } from '../lib/index.js';
import { codeOf } from './helpers.js';

const PMD = 512;
const code = (fn: () => unknown): string => codeOf(fn) ?? 'no error';
const dir = mkdtempSync(join(tmpdir(), 'pinlab-huge-zero-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function world(scheme: Scheme, debug = false, hugeZeroPage?: boolean) {
  const mem = new PageArray({ pages: 4096, populated: false, scheme, debug });
  const mm = new AddressSpace(mem, { pages: 4096, ...(hugeZeroPage === undefined ? {} : { rules: { hugeZeroPage } }) });
  mm.mmap({ start: 0, count: 2048, huge: true });
  return { mem, mm };
}

describe.each(SCHEMES)('the huge zero folio (%s)', (scheme) => {
  it('a read fault maps it: one leaf, uncounted, made once; rules.hugeZeroPage off allocates a THP instead', () => {
    const { mem, mm } = world(scheme);
    expect(mem.hugeZeroPfn).toBeNull();
    const free = mem.freePages();
    mm.touch(3, 1);
    const h = mem.hugeZeroPfn!;
    expect(h % PMD).toBe(0);
    expect(mm.translate(7)).toEqual({ pfn: h + 7, writable: false, zeroPage: true, huge: true, shared: false });
    expect(mem.folioOrder(h + 7)).toBe(9);
    expect(mem.refcount(h)).toBe(0); // frozen: never counted
    mm.touch(PMD, PMD); // another stretch: the same folio
    expect(mm.translate(PMD + 1)?.pfn).toBe(h + 1);
    expect(free - mem.freePages()).toBe(PMD + 1); // the zero page and the huge zero folio, once
    expect(mm.rules.hugeZeroPage).toBe(true);
    mm.munmap({ start: 0, count: 4096 });
    expect(mem.freePages()).toBe(free - PMD - 1);

    const off = world(scheme, false, false);
    off.mm.touch(0, 1);
    expect(off.mm.rules.hugeZeroPage).toBe(false);
    expect(off.mm.translate(0)).toMatchObject({ zeroPage: false, huge: true, writable: true });
    expect(off.mem.hugeZeroPfn).toBeNull();
  });

  it('pin, unpin, get, tryGet, put, setDirty, splitFolio naming its pages (by range and by list) are refused and change nothing', () => {
    for (const debug of [false, true]) {
      const { mem, mm } = world(scheme, debug);
      mm.touch(0, 1);
      const h = mem.hugeZeroPfn!;
      const ok = mem.allocFolio(0);
      const before = { stats: mem.stats(), ref: mem.refcount(h), okRef: mem.refcount(ok), free: mem.freePages() };
      const sets = [{ start: h + 511, count: 1 }, { start: h - 1, count: 3 }, { start: 0, count: 4096 }, new Uint32Array([ok, h + 100]), new Uint32Array([h + 511, ok])];
      for (const pages of sets) {
        for (const path of ['bvec', 'per-page'] as const) {
          for (const write of [false, true]) {
            expect(code(() => mem.pinPages(pages, { path, write }))).toBe('EINVAL');
            expect(code(() => mem.unpinPages(pages, { path, write }))).toBe('EINVAL');
          }
        }
      }
      for (const pfn of [h, h + 1, h + 511]) {
        expect(code(() => mem.getPage(pfn))).toBe('EINVAL');
        expect(code(() => mem.tryGetPage(pfn))).toBe('EINVAL');
        expect(code(() => mem.putPage(pfn))).toBe('EINVAL');
        expect(code(() => mem.setDirty(pfn))).toBe('EINVAL');
      }
      expect(code(() => mem.splitFolio(h))).toBe('EBUSY');
      expect(code(() => mem.makeFolio(h, 0))).not.toBe('no error');
      const { imbalances: _a, ...after } = mem.stats();
      const { imbalances: _b, ...was } = before.stats;
      expect({ stats: after, ref: mem.refcount(h), okRef: mem.refcount(ok), free: mem.freePages() }).toEqual({ ...before, stats: was });
      expect(mem.folioOrder(h + 300)).toBe(9);
      expect(mem.isDirty(h)).toBe(false);
      expect(mem.checkBalanced()).toEqual([]);
    }
  });

  it('gup hands its pages out uncounted; migrate and compact leave it; a write replaces it by a THP; partial munmap maps the zero page', () => {
    const { mem, mm } = world(scheme);
    mm.touch(0, 2 * PMD);
    const h = mem.hugeZeroPfn!;
    const got = mm.getUserPagesFast(0, PMD);
    expect(got.pfns[5]).toBe(h + 5);
    mm.putUserPages(got.pfns);
    const pin = mm.pinUserPages(0, PMD); // short-term read: not unshared
    expect(pin.pfns[0]).toBe(h);
    mm.unpinUserPages(pin.pfns);
    expect(mm.migrate({ start: 0, count: 2 * PMD })).toBe(0);
    mm.compact();
    expect(mm.translate(0)?.pfn).toBe(h);
    mm.touch(PMD + 9, 1, { write: true });
    const t = mm.translate(PMD + 9)!;
    expect(t).toMatchObject({ zeroPage: false, huge: true, writable: true });
    expect(mem.refcount(t.pfn)).toBe(1); // the new leaf's one reference
    mm.munmap({ start: 100, count: 1 });
    expect(mm.translate(99)).toMatchObject({ pfn: mem.zeroPfn, zeroPage: true, huge: false });
    expect(mem.refcount(h)).toBe(0);
    const s = mem.stats();
    expect(s.pinAcquired).toBe(s.pinReleased);
    mm.munmap({ start: 0, count: 4096 });
    expect(mem.freePages()).toBe(mem.pages - PMD - 1);
  });

  it('a recording that maps it replays to the identical state', async () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 4096 });
    mm.mmap({ start: 0, count: 2048, huge: true });
    mm.touch(0, 1); // the huge zero leaf
    const off = new AddressSpace(mem, { pages: 1024, rules: { hugeZeroPage: false } });
    off.mmap({ start: 0, count: 1024, huge: true });
    off.touch(0, 1); // a THP: the rule is recorded too
    const pin = mm.pinUserPagesFast(PMD, PMD, { longterm: true }); // read fault, then unshared
    mm.touch(3, 1, { write: true });
    mm.munmap({ start: 2 * PMD + 1, count: 1 });
    mm.unpinUserPages(pin.pfns);
    rec.stop();
    const file = join(dir, `hz-${scheme}.pkops`);
    rec.save(file);
    const live = stateDigest(mem);
    const doc = await runReplay({ file, schemes: [scheme], endState: true });
    expect(doc.schemes[0]!.diverged).toBe(0);
    expect(doc.schemes[0]!.endState!.spaces).toBe(live.spaces);
    expect(doc.schemes[0]!.endState!.pages).toBe(live.pages);
    expect(doc.schemes[0]!.endState!.freePages).toBe(live.freePages);
    expect(mem.hugeZeroPfn).not.toBeNull();
  });
});
