// A PMD-mapped THP with no free 2 MiB block to move to (kernel review, round 27): the kernel's
// migrate_pages splits a large folio when the target allocation fails with -ENOMEM
// (migrate_pages_batch's try_split_folio, retried for MR_LONGTERM_PIN; 5.4's
// split_huge_page_to_list) and migrates the pieces, so a FOLL_LONGTERM pin of a THP in
// ZONE_MOVABLE, and migrate(), still succeed on order-0 pages of the normal zone.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, stateDigest, type Scheme } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';

const H = 512;

/** The pages' state (counts, free lists, flags): the digest less the address spaces' attempt counters. */
function pagesState(mem: PageArray): unknown {
  const { spaces: _spaces, mmStats: _mmStats, ...rest } = stateDigest(mem) as unknown as Record<string, unknown>;
  return rest;
}

/**
 * Normal zone PFN 0..1535, ZONE_MOVABLE 1536..2047: the THP lands in ZONE_MOVABLE; the normal
 * zone holds `kept` pinned pages every other page, so no 2 MiB block is ever free there.
 */
function world(scheme: Scheme, kept: number, rules?: { migratePteMappedThp: boolean }) {
  const mem = new PageArray({ pages: 2048, populated: false, scheme, debug: true, movablePages: H });
  const mm = new AddressSpace(mem, { pages: 8192, ...(rules === undefined ? {} : { rules }) });
  mm.mmap({ start: 0, count: H, huge: true, populate: true });
  mm.mmap({ start: 1024, count: 3 * H, populate: true }); // fills the normal zone
  const pins: Uint32Array[] = [];
  for (let v = 1024; v < 1024 + 3 * H; v += 2) {
    if ((v - 1024) / 2 < kept) pins.push(mm.pinUserPages(v + 1, 1, { write: true }).pfns);
    mm.munmap({ start: v, count: 1 });
  }
  for (let v = 1025 + 2 * kept; v < 1024 + 3 * H; v += 2) mm.munmap({ start: v, count: 1 });
  return { mem, mm, pins };
}

describe.each(SCHEMES)('a PMD THP with no free 2 MiB block, %s', (scheme) => {
  it('a long-term pin splits it and moves its pages to the normal zone', () => {
    const { mem, mm, pins } = world(scheme, 3 * H / 2);
    const thp = mm.translate(0)!;
    expect(thp.huge).toBe(true);
    expect(mem.isMovable(thp.pfn)).toBe(true);
    const { pfns, count } = mm.pinUserPagesFast(0, H, { write: true, longterm: true });
    expect(count).toBe(H);
    expect(Array.from(pfns).every((p) => !mem.isMovable(p) && mem.folioOrder(p) === 0)).toBe(true);
    expect(mm.translate(0)!.huge).toBe(false);
    expect(mem.refcount(thp.pfn)).toBe(0); // the THP's block is free again
    expect(mm.stats().longtermMigrations).toBeGreaterThan(0);
    mm.unpinUserPages(pfns, { write: true });
    for (const p of pins) mm.unpinUserPages(p, { write: true });
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('migrate() moves its 512 pages one by one', () => {
    // All of it the normal zone: the THP in its first 2 MiB block, the rest fragmented.
    const mem = new PageArray({ pages: 2048, populated: false, scheme, debug: true });
    const mm = new AddressSpace(mem, { pages: 8192 });
    mm.mmap({ start: 0, count: H, huge: true, populate: true });
    mm.mmap({ start: 1024, count: 3 * H, populate: true });
    for (let v = 1024; v < 1024 + 3 * H; v += 2) mm.munmap({ start: v, count: 1 });
    const thp = mm.translate(0)!;
    expect(thp.huge).toBe(true);
    expect(mm.migrate({ start: 0, count: H })).toBe(H);
    expect(mm.translate(0)!.huge).toBe(false);
    expect(mm.translate(0)!.pfn).not.toBe(thp.pfn);
    expect(mm.stats().migratedPages).toBe(H);
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
    // The THP alone in ZONE_MOVABLE, full: a movable allocation may take the normal zone's
    // free pages, 768 of them, none in a free 2 MiB block.
    const w = world(scheme, 3 * H / 2);
    const before = w.mm.translate(0)!.pfn;
    expect(w.mm.migrate({ start: 0, count: H })).toBe(H);
    expect(w.mm.translate(0)!.pfn).not.toBe(before);
    expect(w.mm.translate(0)!.huge).toBe(false);
    for (const p of w.pins) w.mm.unpinUserPages(p, { write: true });
    w.mm.dispose();
    expect(w.mem.checkBalanced()).toEqual([]);
  });

  it('without 512 free order-0 pages it is neither split nor moved: ENOMEM, nothing changed', () => {
    const { mem, mm, pins } = world(scheme, 3 * H / 2);
    // Take the free pages but 100 (the normal zone's: ZONE_MOVABLE is the THP's).
    const held: number[] = [];
    while (mem.freePages() > 100) held.push(mem.allocFolio(0));
    const digest = pagesState(mem);
    expectPinlabError(() => mm.pinUserPagesFast(0, H, { write: true, longterm: true }), 'ENOMEM');
    expect(pagesState(mem)).toEqual(digest);
    expect(mm.translate(0)!.huge).toBe(true);
    for (const p of held) mem.putPage(p);
    for (const p of pins) mm.unpinUserPages(p, { write: true });
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it('a pinned THP is refused, not split', () => {
    const { mem, mm, pins } = world(scheme, 3 * H / 2);
    const short = mm.pinUserPages(0, 1, { write: true }); // a short-term pin of its first page
    const digest = pagesState(mem);
    expectPinlabError(() => mm.pinUserPagesFast(0, H, { write: true, longterm: true }), 'EBUSY');
    expect(pagesState(mem)).toEqual(digest);
    expect(mm.translate(0)!.huge).toBe(true);
    mm.unpinUserPages(short.pfns, { write: true });
    for (const p of pins) mm.unpinUserPages(p, { write: true });
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });

  it("under migratePteMappedThp: false (pinlab before issue 13) it stays ENOMEM", () => {
    const { mem, mm, pins } = world(scheme, 3 * H / 2, { migratePteMappedThp: false });
    const digest = pagesState(mem);
    expectPinlabError(() => mm.pinUserPagesFast(0, H, { write: true, longterm: true }), 'ENOMEM');
    expect(pagesState(mem)).toEqual(digest);
    for (const p of pins) mm.unpinUserPages(p, { write: true });
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe.each(SCHEMES)('a THP another reference holds is not split for nothing, %s', (scheme) => {
  it('a FOLL_GET reference: the long-term pin is refused (EBUSY) and the THP stays whole', () => {
    const { mem, mm, pins } = world(scheme, 3 * H / 2);
    const got = mm.getUserPagesFast(0, 1);
    const digest = pagesState(mem);
    expectPinlabError(() => mm.pinUserPagesFast(0, H, { write: true, longterm: true }), 'EBUSY');
    expect(pagesState(mem)).toEqual(digest);
    expect(mm.translate(0)!.huge).toBe(true);
    expect(mm.migrate({ start: 0, count: H })).toBe(0);
    expect(mm.translate(0)!.huge).toBe(true);
    mm.putUserPages(got.pfns);
    for (const p of pins) mm.unpinUserPages(p, { write: true });
    mm.dispose();
    expect(mem.checkBalanced()).toEqual([]);
  });
});
