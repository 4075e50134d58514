// get/pin_user_pages: every outcome of the lockless walk (success, recheck failure with
// release, fallback, partial count, fastOnly, write_protect_seq), the slow path (fault-in,
// COW, FOLL_LONGTERM migration), flag validation, PMD leaves, the zero page, unpin/put, and
// races made deterministic with the race hook.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, type RacePoint, type Scheme } from '../lib/index.js';
import {
  LEAF,
  PMD,
  delta,
  expectCode,
  expectCodeNoChange,
  makeMm,
  mmState,
  onceAt,
  pfnsOf,
  pinRefs,
  pinVisible,
  recordingHook,
  thrownBy,
  zeroDelta,
} from './mm-helpers.js';
import { schemeTraits } from './scheme-traits.js';

/** An mm with `count` writable pages faulted in at 0 (PFNs 0..count-1 of a fresh array). */
function populated(scheme: Scheme, count = 8, pages = 256) {
  const { mem, mm } = makeMm({ scheme, pages, vpages: 4096 });
  mm.mmap({ start: 0, count, populate: true });
  return { mem, mm, pfns: pfnsOf(mm, 0, count) };
}

describe.each(SCHEMES)('scheme %s', (scheme) => {
  describe('fast path: success', () => {
    for (const write of [true, false]) {
      it(`pinUserPagesFast (write ${write}) takes every present page locklessly`, () => {
        const { mem, mm, pfns } = populated(scheme, 16);
        expect(mm.hasPinned).toBe(false);
        const s0 = mm.stats();
        const m0 = mem.stats();
        const r = mm.pinUserPagesFast(2, 12, { write });
        expect(r.count).toBe(12);
        expect(Array.from(r.pfns)).toEqual(pfns.slice(2, 14));
        expect(r.pfns.length).toBe(12);
        expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 12 }));
        expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 12, pinReleased: 0, foliosFreed: 0 });
        expect(mm.hasPinned).toBe(true);
        for (let v = 0; v < 16; v++) {
          const p = pfns[v]!;
          const pinned = v >= 2 && v < 14;
          expect(mem.refcount(p)).toBe(1 + (pinned ? pinRefs(scheme, 0, write) : 0));
          expect(mem.pincount(p)).toBe(pinned ? 1 : 0);
          expect(mem.maybeDmaPinned(p)).toBe(pinned && pinVisible(scheme, write));
          expect(mm.translate(v)!.pfn).toBe(p); // nothing moved
        }
        const m1 = mem.stats();
        mm.unpinUserPages(r.pfns, { write, dirty: true });
        expect(delta(mem.stats(), m1)).toMatchObject({ pinAcquired: 0, pinReleased: 12, foliosFreed: 0 });
        for (let v = 0; v < 16; v++) {
          expect(mem.refcount(pfns[v]!)).toBe(1);
          expect(mem.pincount(pfns[v]!)).toBe(0);
          expect(mem.isDirty(pfns[v]!)).toBe(v >= 2 && v < 14);
        }
        expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
      });
    }

    it('getUserPagesFast takes plain references: no pin, no has-pinned flag', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      const m0 = mem.stats();
      const s0 = mm.stats();
      const log: [RacePoint, number][] = [];
      mm.setRaceHook(recordingHook(log));
      const r = mm.getUserPagesFast(0, 8, { write: true });
      mm.setRaceHook(null);
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns)).toEqual(pfns);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 8 }));
      expect(delta(mem.stats(), m0)).toEqual(zeroDelta(m0, {}));
      expect(mm.hasPinned).toBe(false);
      expect(log.some(([p]) => p === 'beforeSeqCheck')).toBe(false); // only pins check the seq
      for (const p of pfns) {
        expect(mem.refcount(p)).toBe(2);
        expect(mem.pincount(p)).toBe(0);
        expect(mem.maybeDmaPinned(p)).toBe(false);
      }
      mm.putUserPages(r.pfns);
      for (const p of pfns) expect(mem.refcount(p)).toBe(1);
      expect(delta(mem.stats(), m0)).toEqual(zeroDelta(m0, {}));
    });

    it('the grab happens between beforeGrab and beforeRecheck, and the seq check follows the walk', () => {
      const { mem, mm, pfns } = populated(scheme, 4);
      const seen: string[] = [];
      const log: [RacePoint, number][] = [];
      mm.setRaceHook(
        recordingHook(log, (point, v) => {
          if (point === 'beforeSeqCheck') return;
          seen.push(`${point} ${v} ref ${mem.refcount(pfns[v]!)} pins ${mem.pincount(pfns[v]!)}`);
        }),
      );
      const r = mm.pinUserPagesFast(0, 4, { write: true });
      expect(r.count).toBe(4);
      const cost = pinRefs(scheme, 0, true);
      expect(log).toEqual([
        ['beforeGrab', 0], ['beforeRecheck', 0],
        ['beforeGrab', 1], ['beforeRecheck', 1],
        ['beforeGrab', 2], ['beforeRecheck', 2],
        ['beforeGrab', 3], ['beforeRecheck', 3],
        ['beforeSeqCheck', 4],
      ]);
      expect(seen).toEqual(
        [0, 1, 2, 3].flatMap((v) => [`beforeGrab ${v} ref 1 pins 0`, `beforeRecheck ${v} ref ${1 + cost} pins 1`]),
      );
      mm.unpinUserPages(r.pfns, { write: true });
    });
  });

  describe('fallback to the slow path', () => {
    it('unpopulated pages are faulted in by the slow path (write pin: new pages)', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 8 });
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns)).toEqual(pfnsOf(mm, 0, 8));
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 8, faults: 8 }),
      );
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 8, grabs: 8 });
      for (const p of r.pfns) {
        expect(mem.refcount(p)).toBe(1 + pinRefs(scheme, 0, true));
        expect(mem.pincount(p)).toBe(1);
      }
      for (let v = 0; v < 8; v++) expect(mm.translate(v)!.writable).toBe(true);
      mm.unpinUserPages(r.pfns, { write: true });
    });

    it('partial fast walk: the fast path takes the present prefix, the slow path the rest', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 8 });
      mm.touch(0, 3, { write: true });
      const first = pfnsOf(mm, 0, 3);
      const s0 = mm.stats();
      const log: [RacePoint, number][] = [];
      mm.setRaceHook(recordingHook(log));
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns.subarray(0, 3))).toEqual(first);
      expect(Array.from(r.pfns)).toEqual(pfnsOf(mm, 0, 8));
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, fastPathPages: 3, slowPathFallbacks: 1, slowPathPages: 5, faults: 5 }),
      );
      expect(log.at(-1)).toEqual(['beforeSeqCheck', 3]);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('a write pin of a COW-shared page: the fast path bails, the slow path copies and pins the copy', () => {
      const { mem, mm, pfns } = populated(scheme, 4);
      const child = mm.fork();
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 4, { write: true });
      expect(r.count).toBe(4);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 4, cowCopies: 4 }),
      );
      for (let v = 0; v < 4; v++) {
        expect(r.pfns[v]).not.toBe(pfns[v]);
        expect(mm.translate(v)).toEqual({ pfn: r.pfns[v], writable: true, zeroPage: false, huge: false, shared: false });
        expect(child.translate(v)!.pfn).toBe(pfns[v]);
        expect(mem.refcount(pfns[v]!)).toBe(1); // the child's mapping only
        expect(mem.refcount(r.pfns[v]!)).toBe(1 + pinRefs(scheme, 0, true));
      }
      mm.unpinUserPages(r.pfns, { write: true });
      // The child now maps the originals alone, but its entries are not exclusive (fork
      // cleared that): a pin declines the fast path and the slow path unshares by reuse.
      const s1 = child.stats();
      const g = child.pinUserPagesFast(0, 4);
      expect(Array.from(g.pfns)).toEqual(pfns);
      expect(delta(child.stats(), s1)).toEqual(
        zeroDelta(s1, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 4, cowReuses: 4 }),
      );
      for (let v = 0; v < 4; v++) expect(child.translate(v)!.writable).toBe(false); // access unchanged
      // Exclusive now: the next pin takes the fast path.
      const s2 = child.stats();
      const g2 = child.pinUserPagesFast(0, 4);
      expect(Array.from(g2.pfns)).toEqual(pfns);
      expect(delta(child.stats(), s2)).toEqual(zeroDelta(s2, { gupCalls: 1, fastPathPages: 4 }));
      child.unpinUserPages(g2.pfns);
      child.unpinUserPages(g.pfns);
    });

    it('partial count: pages past the end of the region are not taken, the count done is returned', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(4, 10, { write: true });
      expect(r.count).toBe(4);
      expect(r.pfns.length).toBe(4);
      expect(Array.from(r.pfns)).toEqual(pfns.slice(4, 8));
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 4, slowPathFallbacks: 1 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 4 });
      mm.unpinUserPages(r.pfns, { write: true });
      // Partial from the slow path: unpopulated pages, then a hole.
      mm.mmap({ start: 8, count: 4 });
      const r2 = mm.pinUserPagesFast(6, 10);
      expect(r2.count).toBe(6);
      expect(r2.pfns[2]).toBe(mem.zeroPfn); // read faults map the zero page
      mm.unpinUserPages(r2.pfns);
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('pinUserPages is the slow path alone', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPages(0, 8, { write: true });
      expect(Array.from(r.pfns)).toEqual(pfns);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, slowPathPages: 8 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 8, grabs: 8 });
      expect(mm.hasPinned).toBe(true);
      for (const p of pfns) expect(mem.refcount(p)).toBe(1 + pinRefs(scheme, 0, true));
      mm.unpinUserPages(r.pfns, { write: true });
      for (const p of pfns) expect(mem.refcount(p)).toBe(1);
    });
  });

  describe('fastOnly', () => {
    it('returns what the lockless walk took, never calls the slow path', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 8 });
      mm.touch(0, 3, { write: true });
      const first = pfnsOf(mm, 0, 3);
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true, fastOnly: true });
      expect(r.count).toBe(3);
      expect(Array.from(r.pfns)).toEqual(first);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 3 }));
      for (let v = 3; v < 8; v++) expect(mm.translate(v)).toBeNull(); // nothing faulted in
      mm.unpinUserPages(r.pfns, { write: true });
      // Nothing present at all: 0, no error, nothing changed.
      const before = mmState(mm, 16);
      const s1 = mm.stats();
      const none = mm.pinUserPagesFast(4, 4, { write: true, fastOnly: true });
      expect(none.count).toBe(0);
      expect(none.pfns.length).toBe(0);
      expect(mmState(mm, 16)).toEqual(before);
      expect(delta(mm.stats(), s1)).toEqual(zeroDelta(s1, { gupCalls: 1 }));
      // Outside any region too: fast-only reports 0 rather than EFAULT.
      expect(mm.pinUserPagesFast(100, 4, { fastOnly: true }).count).toBe(0);
      // A read of a zero-page entry: the walk bails on the special entry.
      mm.touch(5, 1);
      expect(mm.getUserPagesFast(5, 1, { fastOnly: true }).count).toBe(0);
      // A write to a read-only entry: the walk bails.
      mm.mprotect({ start: 0, count: 3, write: false });
      expect(mm.pinUserPagesFast(0, 3, { write: true, fastOnly: true }).count).toBe(0);
      const rd = mm.pinUserPagesFast(0, 3, { fastOnly: true });
      expect(Array.from(rd.pfns)).toEqual(first);
      mm.unpinUserPages(rd.pfns);
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });
  });

  describe('errors', () => {
    it('EFAULT only when nothing was done: outside any region, nothing changes', () => {
      const { mm } = populated(scheme, 8);
      const opts = { vpages: 16 };
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(8, 4, { write: true }), 'EFAULT', {
        ...opts,
        mmStats: { gupCalls: 1, slowPathFallbacks: 1 },
      });
      expectCodeNoChange(mm, () => mm.getUserPagesFast(100, 1), 'EFAULT', opts);
      expectCodeNoChange(mm, () => mm.pinUserPages(8, 1), 'EFAULT', opts);
      // Out of the address space.
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(4090, 10), 'EFAULT', { ...opts, mmStats: 'unchanged' });
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(-1, 2), 'EFAULT', { ...opts, mmStats: 'unchanged' });
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(0, -1), 'EINVAL', { ...opts, mmStats: 'unchanged' });
      // A count of 0 is no call at all.
      expect(mm.pinUserPagesFast(0, 0).count).toBe(0);
    });

    it('EFAULT for a write pin of a read-only region, nothing changes; a read pin works', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 4, write: false });
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(0, 4, { write: true }), 'EFAULT', {
        vpages: 8,
        mmStats: { gupCalls: 1, slowPathFallbacks: 1 },
      });
      expectCodeNoChange(mm, () => mm.pinUserPages(0, 4, { write: true }), 'EFAULT', { vpages: 8 });
      expectCodeNoChange(mm, () => mm.getUserPagesFast(0, 1, { write: true }), 'EFAULT', { vpages: 8 });
      const r = mm.pinUserPagesFast(0, 4);
      expect(r.count).toBe(4);
      for (const p of r.pfns) expect(p).toBe(mem.zeroPfn);
    });

    it('EINVAL for contradictory or unknown flags: nothing changes, no call counted, has-pinned untouched', () => {
      const { mm } = populated(scheme, 8);
      const o = { vpages: 16, mmStats: 'unchanged' as const };
      expectCodeNoChange(mm, () => mm.getUserPagesFast(0, 4, { longterm: true }), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.getUserPagesFast(0, 4, { longterm: true, fastOnly: true }), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.pinUserPages(0, 4, { fastOnly: true }), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.pinUserPages(0, 4, { fastOnly: true, write: true }), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(0, 4, { writable: true } as never), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(0, 4, { write: 1 } as never), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(0, 1.5), 'EINVAL', o);
      expectCodeNoChange(mm, () => mm.pinUserPagesFast('0' as never, 1), 'EINVAL', o);
      expect(mm.hasPinned).toBe(false);
      // The allowed combinations.
      mm.unpinUserPages(mm.pinUserPagesFast(0, 1, { longterm: true, fastOnly: true, write: true }).pfns, { write: true });
      mm.unpinUserPages(mm.pinUserPages(0, 1, { longterm: true }).pfns);
      mm.putUserPages(mm.getUserPagesFast(0, 1, { fastOnly: true }).pfns);
      expect(mm.hasPinned).toBe(true);
    });

    it('mprotect read-only: write pins fall back and stop at the read-only page (partial), reads pass', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      mm.mprotect({ start: 4, count: 4, write: false });
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(r.count).toBe(4);
      expect(Array.from(r.pfns)).toEqual(pfns.slice(0, 4));
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 4, slowPathFallbacks: 1 }));
      for (let v = 4; v < 8; v++) expect(mem.refcount(pfns[v]!)).toBe(1);
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(4, 4, { write: true }), 'EFAULT', { vpages: 8 });
      const rd = mm.pinUserPagesFast(0, 8);
      expect(Array.from(rd.pfns)).toEqual(pfns);
      mm.unpinUserPages(r.pfns, { write: true });
      mm.unpinUserPages(rd.pfns);
      for (const p of pfns) expect(mem.refcount(p)).toBe(1);
    });
  });

  describe('PMD leaves', () => {
    it('one grab per leaf: refs for every subpage at once, one hook call per leaf', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
      const h0 = mm.translate(0)!.pfn;
      const h1 = mm.translate(512)!.pfn;
      const log: [RacePoint, number][] = [];
      const atRecheck: number[] = [];
      mm.setRaceHook(
        recordingHook(log, (p, v) => {
          if (p === 'beforeRecheck') atRecheck.push(mem.refcount(v < 512 ? h0 : h1));
        }),
      );
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 1024, { write: true });
      expect(r.count).toBe(1024);
      for (let i = 0; i < 1024; i++) if (r.pfns[i] !== (i < 512 ? h0 + i : h1 + i - 512)) throw new Error(`pfn ${i}`);
      expect(log).toEqual([
        ['beforeGrab', 0], ['beforeRecheck', 0],
        ['beforeGrab', 512], ['beforeRecheck', 512],
        ['beforeSeqCheck', 1024],
      ]);
      // The whole leaf's refs were taken in the one grab before the recheck.
      const full = LEAF + pinRefs(scheme, 9, true, PMD);
      expect(atRecheck).toEqual([full, full]);
      expect(mem.refcount(h0)).toBe(full);
      expect(mem.refcount(h1)).toBe(full);
      expect(mem.pincount(h0 + 7)).toBe(PMD);
      expect(mem.maybeDmaPinned(h1 + 100)).toBe(true);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 1024 }));
      // unpin batches by folio run: one release per folio.
      const m0 = mem.stats();
      mm.unpinUserPages(r.pfns, { write: true });
      expect(delta(mem.stats(), m0)).toMatchObject({ grabs: 2, pinReleased: 1024 });
      expect(mem.refcount(h0)).toBe(LEAF);
      expect(mem.pincount(h0)).toBe(0);
    });

    it('a range inside leaves takes only the subpages asked for, one grab each', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
      const h0 = mm.translate(0)!.pfn;
      const h1 = mm.translate(512)!.pfn;
      const log: [RacePoint, number][] = [];
      mm.setRaceHook(recordingHook(log));
      const r = mm.pinUserPagesFast(100, 600, { write: true });
      expect(r.count).toBe(600);
      expect(r.pfns[0]).toBe(h0 + 100);
      expect(r.pfns[411]).toBe(h0 + 511);
      expect(r.pfns[412]).toBe(h1);
      expect(r.pfns[599]).toBe(h1 + 187);
      expect(log.filter(([p]) => p === 'beforeGrab')).toEqual([['beforeGrab', 100], ['beforeGrab', 512]]);
      expect(mem.refcount(h0)).toBe(LEAF + pinRefs(scheme, 9, true, 412));
      expect(mem.refcount(h1)).toBe(LEAF + pinRefs(scheme, 9, true, 188));
      expect(mem.pincount(h0)).toBe(412);
      expect(mem.pincount(h1)).toBe(188);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.refcount(h0)).toBe(LEAF);
    });

    it('the slow path also grabs a leaf once (grabs +1 per leaf)', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 1024, huge: true, populate: true });
      const h0 = mm.translate(0)!.pfn;
      const m0 = mem.stats();
      const r = mm.pinUserPages(0, 1024, { write: true });
      expect(r.count).toBe(1024);
      expect(delta(mem.stats(), m0)).toMatchObject({ grabs: 2, pinAcquired: 1024 });
      expect(mem.refcount(h0)).toBe(LEAF + pinRefs(scheme, 9, true, PMD));
      // A get of a leaf: plain references, one per subpage (beside the leaf's one).
      const g = mm.getUserPagesFast(0, 512);
      expect(mem.refcount(h0)).toBe(LEAF + PMD + pinRefs(scheme, 9, true, PMD));
      mm.putUserPages(g.pfns);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.refcount(h0)).toBe(LEAF);
    });

    it('recheck failure on a leaf: a split under the grab releases all its refs; the slow path pins 4 KiB entries', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      const race = onceAt('beforeRecheck', 0, () => mm.munmap({ start: 511, count: 1 }));
      mm.setRaceHook(race.hook);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(0, 512, { write: true });
      expect(race.fired()).toBe(1);
      expect(r.count).toBe(511); // the unmapped last page ends the slow path: partial
      for (let i = 0; i < 511; i++) if (r.pfns[i] !== h + i) throw new Error(`pfn ${i}`);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, recheckFailures: 1, slowPathFallbacks: 1, slowPathPages: 511 }),
      );
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 511, pinReleased: 0 });
      expect(mm.translate(0)!.huge).toBe(false);
      expect(mem.refcount(h)).toBe(511 + pinRefs(scheme, 9, true, 511));
      expect(mem.pincount(h)).toBe(511);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.refcount(h)).toBe(511);
      expect(mem.pincount(h)).toBe(0);
    });
  });

  describe('the zero page is never counted', () => {
    it('read pins and gets hand out the zero page; counts and statistics stay; unpin and put skip it', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 8 });
      mm.touch(0, 8);
      const zero = mem.zeroPfn!;
      const zref = mem.refcount(zero);
      const m0 = mem.stats();
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8);
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns)).toEqual(new Array(8).fill(zero));
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 8 }));
      expect(delta(mem.stats(), m0)).toEqual(zeroDelta(m0, {}));
      expect(mem.refcount(zero)).toBe(zref);
      expect(mem.pincount(zero)).toBe(0);
      expect(mem.maybeDmaPinned(zero)).toBe(false);
      mm.unpinUserPages(r.pfns, { dirty: true });
      expect(delta(mem.stats(), m0)).toEqual(zeroDelta(m0, {}));
      expect(mem.refcount(zero)).toBe(zref);
      expect(mem.isDirty(zero)).toBe(false);
      const g = mm.getUserPagesFast(0, 8);
      expect(Array.from(g.pfns)).toEqual(new Array(8).fill(zero));
      expect(mem.refcount(zero)).toBe(zref);
      mm.putUserPages(g.pfns);
      expect(mem.refcount(zero)).toBe(zref);
      // A list mixing the zero page and a real pin: only the real one is released.
      mm.touch(3, 1, { write: true });
      const real = mm.pinUserPagesFast(2, 3);
      expect(real.pfns[0]).toBe(zero);
      expect(real.pfns[1]).not.toBe(zero);
      const m1 = mem.stats();
      mm.unpinUserPages(real.pfns);
      expect(delta(mem.stats(), m1)).toMatchObject({ pinReleased: 1 });
      expect(mem.refcount(real.pfns[1]!)).toBe(1);
      expect(mem.refcount(zero)).toBe(zref);
      // A write pin of a zero-page entry copies it (COW) and pins the copy.
      const w = mm.pinUserPagesFast(5, 1, { write: true });
      expect(w.pfns[0]).not.toBe(zero);
      expect(mem.refcount(w.pfns[0]!)).toBe(1 + pinRefs(scheme, 0, true));
      mm.unpinUserPages(w.pfns, { write: true });
      expect(mem.refcount(zero)).toBe(zref);
    });
  });

  describe('races (race hook)', () => {
    it('recheck failure: munmap between grab and recheck; the grab is released and the page freed', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      const race = onceAt('beforeRecheck', 2, () => {
        mm.munmap({ start: 2, count: 1 });
        // Unmap cleared the entry and put its reference: only the walk's grab holds the page.
        expect(mem.refcount(pfns[2]!)).toBe(pinRefs(scheme, 0, true));
      });
      mm.setRaceHook(race.hook);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const free0 = mem.freePages();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(race.fired()).toBe(1);
      expect(r.count).toBe(2); // the slow path finds vpage 2 unmapped: partial
      expect(Array.from(r.pfns)).toEqual(pfns.slice(0, 2));
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, fastPathPages: 2, recheckFailures: 1, slowPathFallbacks: 1 }),
      );
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 2, pinReleased: 0, foliosFreed: 1 });
      expect(mem.refcount(pfns[2]!)).toBe(0);
      expect(mem.pincount(pfns[2]!)).toBe(0);
      expect(mem.freePages()).toBe(free0 + 1);
      for (let v = 3; v < 8; v++) expect(mem.refcount(pfns[v]!)).toBe(1);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('munmap between the read of the entry and the grab: the grab of the freed page fails cleanly', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      const race = onceAt('beforeGrab', 2, () => mm.munmap({ start: 2, count: 1 }));
      mm.setRaceHook(race.hook);
      const s0 = mm.stats();
      const r = mm.getUserPagesFast(0, 8);
      expect(r.count).toBe(2);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, fastPathPages: 2, slowPathFallbacks: 1 }));
      expect(mem.refcount(pfns[2]!)).toBe(0);
      expect(mem.refcount(pfns[1]!)).toBe(2);
      mm.putUserPages(r.pfns);
    });

    it('the freed page reused as a tail of a new folio before the grab: the grab lands on it, the recheck lets go', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      expect(pfns.slice(2, 4)).toEqual([2, 3]);
      const race = onceAt('beforeGrab', 3, () => {
        mm.munmap({ start: 2, count: 2 }); // PFNs 2 and 3 free: one order-1 block
        expect(mem.allocFolio(1)).toBe(2); // reused: PFN 3 is now a tail of the folio at 2
        mem.pinPages({ start: 2, count: 2 }, { write: true }); // ... and pinned by its owner
      });
      mm.setRaceHook(race.hook);
      const s0 = mm.stats();
      const m0 = mem.stats();
      // The walk read vpage 3 -> PFN 3 before the race; its grab reaches the new folio's head.
      expectCode(() => mm.pinUserPagesFast(3, 5, { write: true }), 'EFAULT');
      expect(race.fired()).toBe(1);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, recheckFailures: 1, slowPathFallbacks: 1 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 2, pinReleased: 0 }); // the owner's pins only
      // The new folio is exactly as its owner left it: the walk's grab and release on its tail
      // (and its pincount, which hybrid keeps in the tail's slot) cancelled out.
      expect(mem.folioHead(3)).toBe(2);
      expect(mem.folioOrder(3)).toBe(1);
      expect(mem.refcount(2)).toBe(1 + pinRefs(scheme, 1, true, 2));
      expect(mem.pincount(3)).toBe(2);
      expect(mem.maybeDmaPinned(3)).toBe(true);
      for (const v of [4, 5, 6, 7]) expect(mem.refcount(pfns[v]!)).toBe(1);
      mem.unpinPages({ start: 2, count: 2 }, { write: true });
      expect(mem.refcount(2)).toBe(1);
      expect(mem.pincount(2)).toBe(0);
    });

    it('a whole PMD leaf unmapped before the grab: the grab of the freed THP fails, nothing is taken', () => {
      const { mem, mm } = makeMm({ scheme, pages: 1024 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      mm.setRaceHook(onceAt('beforeGrab', 0, () => mm.munmap({ start: 0, count: 512 })).hook);
      const s0 = mm.stats();
      expectCode(() => mm.pinUserPagesFast(0, 512, { write: true }), 'EFAULT');
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1 }));
      expect(mem.refcount(h)).toBe(0);
      expect(mem.freePages()).toBe(1024);
      expect(mem.stats().pinAcquired).toBe(0);
    });

    it('a PMD leaf freed and its block reused as small pages before the grab: the 512-page grab is refused', () => {
      const { mem, mm } = makeMm({ scheme, pages: 1024 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      expect(mm.translate(0)!.pfn).toBe(0);
      const log: [RacePoint, number][] = [];
      mm.setRaceHook(
        recordingHook(
          log,
          onceAt('beforeGrab', 0, () => {
            mm.munmap({ start: 0, count: 512 }); // the THP is freed, its pages come back as 4 KiB
            expect(mem.allocFolio(0)).toBe(0);
            expect(mem.allocFolio(0)).toBe(1);
          }).hook,
        ),
      );
      const s0 = mm.stats();
      const m0 = mem.stats();
      // The walk read a leaf naming PFN 0 for 512 pages; PFN 0 is an order-0 folio now.
      expectCode(() => mm.pinUserPagesFast(0, 512, { write: true }), 'EFAULT');
      expect(log).toEqual([['beforeGrab', 0]]); // no grab happened, so no recheck
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 0, pinReleased: 0 });
      for (const p of [0, 1]) {
        expect(mem.refcount(p)).toBe(1);
        expect(mem.pincount(p)).toBe(0);
        expect(mem.maybeDmaPinned(p)).toBe(false);
      }
      expect(mem.refcount(2)).toBe(0);
      expect(mem.freePages()).toBe(1022);
    });

    it('fork between the read of the entry and the grab: the write-protected entry fails the recheck, then the seq check', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      let child: AddressSpace | null = null;
      mm.setRaceHook(onceAt('beforeGrab', 2, () => (child = mm.fork())).hook);
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      const c = child as unknown as AddressSpace;
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns.subarray(0, 2))).toEqual(pfns.slice(0, 2));
      for (let v = 2; v < 8; v++) {
        expect(r.pfns[v]).not.toBe(pfns[v]); // COW copies made by the slow path
        expect(c.translate(v)!.pfn).toBe(pfns[v]);
      }
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, {
          gupCalls: 1,
          recheckFailures: 1,
          seqRetries: 1,
          slowPathFallbacks: 1,
          slowPathPages: 8,
          earlyCowCopies: 2,
          cowCopies: 6,
        }),
      );
      mm.unpinUserPages(r.pfns, { write: true });
      for (let v = 0; v < 8; v++) expect(mem.refcount(r.pfns[v]!)).toBe(1);
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('mprotect between grab and recheck: a write pin releases and ends with EFAULT partial; a read pin completes', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      let race = onceAt('beforeRecheck', 2, () => mm.mprotect({ start: 2, count: 6, write: false }));
      mm.setRaceHook(race.hook);
      let s0 = mm.stats();
      const w = mm.pinUserPagesFast(0, 8, { write: true });
      expect(w.count).toBe(2);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, fastPathPages: 2, recheckFailures: 1, slowPathFallbacks: 1 }),
      );
      expect(mem.refcount(pfns[2]!)).toBe(1);
      expect(mem.pincount(pfns[2]!)).toBe(0);
      mm.unpinUserPages(w.pfns, { write: true });
      mm.mprotect({ start: 0, count: 8, write: true });
      mm.touch(0, 8, { write: true }); // entries writable again (reused in place)
      expect(pfnsOf(mm, 0, 8)).toEqual(pfns);
      race = onceAt('beforeRecheck', 2, () => mm.mprotect({ start: 0, count: 8, write: false }));
      mm.setRaceHook(race.hook);
      s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8);
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns)).toEqual(pfns);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, fastPathPages: 2, recheckFailures: 1, slowPathFallbacks: 1, slowPathPages: 6 }),
      );
      for (const p of pfns) expect(mem.pincount(p)).toBe(1);
      mm.unpinUserPages(r.pfns);
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('migrate between the read of the entry and the grab: the walk stops, the slow path takes the new page', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      let moved = -1;
      const race = onceAt('beforeGrab', 2, () => {
        moved = mm.migrate({ start: 2, count: 1 });
      });
      mm.setRaceHook(race.hook);
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(moved).toBe(1);
      const q = mm.translate(2)!.pfn;
      expect(q).not.toBe(pfns[2]);
      expect(r.count).toBe(8);
      expect(r.pfns[2]).toBe(q);
      expect(Array.from(r.pfns)).toEqual(pfnsOf(mm, 0, 8));
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, fastPathPages: 2, slowPathFallbacks: 1, slowPathPages: 6, migratedPages: 1 }),
      );
      expect(mem.refcount(pfns[2]!)).toBe(0);
      expect(mem.refcount(q)).toBe(1 + pinRefs(scheme, 0, true));
      mm.unpinUserPages(r.pfns, { write: true });
    });

    for (const kind of ['write pin', 'read pin', 'get'] as const) {
      it(`migrate between grab and recheck (${kind}): refused or busy, the page stays, the walk goes on`, () => {
        const { mem, mm, pfns } = populated(scheme, 8);
        let moved = -1;
        const race = onceAt('beforeRecheck', 2, () => {
          moved = mm.migrate({ start: 2, count: 1 });
        });
        mm.setRaceHook(race.hook);
        const s0 = mm.stats();
        const write = kind === 'write pin';
        const r = kind === 'get' ? mm.getUserPagesFast(0, 8) : mm.pinUserPagesFast(0, 8, { write });
        expect(moved).toBe(0);
        expect(r.count).toBe(8);
        expect(Array.from(r.pfns)).toEqual(pfns);
        // A visible pin makes migration refuse (a real pin: no false positive); anything else
        // (a get, a write-bias read pin) fails the freeze: busy.
        const refused = kind !== 'get' && pinVisible(scheme, write);
        expect(delta(mm.stats(), s0)).toEqual(
          zeroDelta(s0, {
            gupCalls: 1,
            fastPathPages: 8,
            migrationRefusals: refused ? 1 : 0,
            migrationBusy: refused ? 0 : 1,
          }),
        );
        expect(mm.translate(2)!.pfn).toBe(pfns[2]);
        if (kind === 'get') mm.putUserPages(r.pfns);
        else mm.unpinUserPages(r.pfns, { write });
        for (const p of pfns) expect(mem.refcount(p)).toBe(1);
      });
    }

    it('fork after the walk (beforeSeqCheck): write_protect_seq moved, everything released, the slow path pins', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      let child: AddressSpace | null = null;
      const race = onceAt('beforeSeqCheck', 8, () => {
        child = mm.fork();
      });
      mm.setRaceHook(race.hook);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(race.fired()).toBe(1);
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns)).toEqual(pfns); // early COW left the parent's pages in place
      // The pages were pinned (by the walk) when fork ran, in an mm that has pinned: copied.
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, seqRetries: 1, slowPathFallbacks: 1, slowPathPages: 8, earlyCowCopies: 8 }),
      );
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 8, pinReleased: 0 });
      const c = child as unknown as AddressSpace;
      for (let v = 0; v < 8; v++) {
        expect(mm.translate(v)).toEqual({ pfn: pfns[v], writable: true, zeroPage: false, huge: false, shared: false });
        const ct = c.translate(v)!;
        expect(ct.pfn).not.toBe(pfns[v]);
        expect(ct.writable).toBe(true);
        expect(mem.refcount(ct.pfn)).toBe(1);
        expect(mem.refcount(pfns[v]!)).toBe(1 + pinRefs(scheme, 0, true));
        expect(mem.pincount(pfns[v]!)).toBe(1);
      }
      mm.unpinUserPages(r.pfns, { write: true });
      c.munmap({ start: 0, count: 8 });
    });

    it('fork after the walk with fastOnly: 0 pages, no pin left behind', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      let child: AddressSpace | null = null;
      mm.setRaceHook(onceAt('beforeSeqCheck', 8, () => (child = mm.fork())).hook);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true, fastOnly: true });
      expect(r.count).toBe(0);
      expect(child).not.toBeNull();
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, seqRetries: 1, earlyCowCopies: 8 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 0, pinReleased: 0 });
      for (const p of pfns) {
        expect(mem.refcount(p)).toBe(1);
        expect(mem.pincount(p)).toBe(0);
      }
    });

    it('fork between grab and recheck: pinned pages are copied early, the rest shared; seq retry; slow path COW-copies', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      let child: AddressSpace | null = null;
      mm.setRaceHook(onceAt('beforeRecheck', 2, () => (child = mm.fork())).hook);
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      const c = child as unknown as AddressSpace;
      expect(r.count).toBe(8);
      // 0..2 were grabbed (pinned) when fork ran: early COW, the parent keeps them.
      expect(Array.from(r.pfns.subarray(0, 3))).toEqual(pfns.slice(0, 3));
      // 3..7 were shared write-protected: the write pin's slow path copied them.
      for (let v = 3; v < 8; v++) {
        expect(r.pfns[v]).not.toBe(pfns[v]);
        expect(c.translate(v)!.pfn).toBe(pfns[v]);
        expect(mem.refcount(pfns[v]!)).toBe(1);
      }
      for (let v = 0; v < 3; v++) expect(c.translate(v)!.pfn).not.toBe(pfns[v]);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, {
          gupCalls: 1,
          seqRetries: 1,
          slowPathFallbacks: 1,
          slowPathPages: 8,
          earlyCowCopies: 3,
          cowCopies: 5,
        }),
      );
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('read pins and fork: early COW only where the scheme sees the pin (write-bias read pins are invisible)', () => {
      const { mem, mm, pfns } = populated(scheme, 4);
      let child: AddressSpace | null = null;
      mm.setRaceHook(onceAt('beforeSeqCheck', 4, () => (child = mm.fork())).hook);
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 4);
      const c = child as unknown as AddressSpace;
      const visible = pinVisible(scheme, false);
      // Visible pins: fork copied the pinned pages into the child, the parent kept them.
      // Invisible ones: fork shared them, and the retried pin had to unshare (copy).
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, {
          gupCalls: 1,
          seqRetries: 1,
          slowPathFallbacks: 1,
          slowPathPages: 4,
          earlyCowCopies: visible ? 4 : 0,
          cowCopies: visible ? 0 : 4,
        }),
      );
      for (let v = 0; v < 4; v++) {
        expect(r.pfns[v] === pfns[v]).toBe(visible);
        expect(mm.translate(v)!.pfn).toBe(r.pfns[v]);
        expect(c.translate(v)!.pfn === pfns[v]).toBe(!visible);
        expect(mm.translate(v)!.writable).toBe(visible);
        expect(mem.refcount(c.translate(v)!.pfn)).toBe(1);
      }
      mm.unpinUserPages(r.pfns);
    });

    it('a hook that throws: the call rethrows it and no pin or reference leaks', () => {
      const { mem, mm, pfns } = populated(scheme, 8);
      mm.mmap({ start: 8, count: 8 }); // the slow path takes part of the call too
      const boom = new Error('boom');
      for (const [point, vpage] of [
        ['beforeGrab', 0],
        ['beforeRecheck', 3],
        ['beforeSeqCheck', 8],
      ] as const) {
        for (const kind of ['pin', 'get'] as const) {
          if (kind === 'get' && point === 'beforeSeqCheck') continue;
          mm.setRaceHook((p, v) => {
            if (p === point && v === vpage) throw boom;
          });
          mm.munmap({ start: 8, count: 8 }); // fresh, so the slow path faults them in again
          mm.mmap({ start: 8, count: 8 });
          const m0 = mem.stats();
          const free0 = mem.freePages();
          const thrown = thrownBy(() =>
            kind === 'pin' ? mm.pinUserPagesFast(0, 16, { write: true }) : mm.getUserPagesFast(0, 16, { write: true }),
          );
          expect(thrown, `${kind} at ${point}`).toBe(boom);
          const d = delta(mem.stats(), m0);
          expect(d.pinAcquired).toBe(d.pinReleased);
          expect(d.pinAcquired).toBe(kind === 'pin' ? 16 : 0);
          for (const p of pfnsOf(mm, 0, 16)) {
            expect(mem.refcount(p)).toBe(1);
            expect(mem.pincount(p)).toBe(0);
          }
          expect(mem.freePages()).toBe(free0 - 8); // the 8 faulted pages, mapped: nothing else kept
        }
      }
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
      // A non-Error value is rethrown as is; after the hook goes, calls work normally.
      mm.setRaceHook(() => {
        throw 'plain string';
      });
      expect(thrownBy(() => mm.pinUserPagesFast(0, 4))).toBe('plain string');
      mm.setRaceHook(null);
      const r = mm.pinUserPagesFast(0, 8, { write: true });
      expect(Array.from(r.pfns)).toEqual(pfns);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('setRaceHook accepts a function or null only', () => {
      const { mm } = populated(scheme, 1);
      expectCode(() => mm.setRaceHook('x' as never), 'EINVAL');
      expectCode(() => mm.setRaceHook({} as never), 'EINVAL');
      const log: [RacePoint, number][] = [];
      mm.setRaceHook(recordingHook(log));
      mm.setRaceHook(null);
      mm.unpinUserPages(mm.pinUserPagesFast(0, 1).pfns);
      expect(log).toEqual([]);
    });
  });

  describe('pins outlive the mapping', () => {
    it('a pinned page survives munmap until unpinned, then it is freed', () => {
      const { mem, mm, pfns } = populated(scheme, 4);
      const r = mm.pinUserPagesFast(1, 2, { write: true });
      const free0 = mem.freePages();
      mm.munmap({ start: 0, count: 4 });
      expect(mm.translate(1)).toBeNull();
      expect(mem.freePages()).toBe(free0 + 2); // only the unpinned pages
      for (const p of [pfns[1]!, pfns[2]!]) {
        expect(mem.refcount(p)).toBe(pinRefs(scheme, 0, true));
        expect(mem.pincount(p)).toBe(1);
        expect(mem.maybeDmaPinned(p)).toBe(true);
      }
      const m0 = mem.stats();
      mm.unpinUserPages(r.pfns, { write: true, dirty: true });
      expect(delta(mem.stats(), m0)).toMatchObject({ pinReleased: 2, foliosFreed: 2 });
      expect(mem.refcount(pfns[1]!)).toBe(0);
      expect(mem.isDirty(pfns[1]!)).toBe(false); // freed: the flag went with the folio
      expect(mem.freePages()).toBe(free0 + 4);
    });

    it('a pin survives mprotect: granting write access back makes the exclusive pinned pages writable at once, no copy', () => {
      const { mem, mm } = makeMm({ scheme, pages: 4096 });
      mm.mmap({ start: 0, count: 4, populate: true });
      mm.mmap({ start: 512, count: 512, huge: true, populate: true });
      const small = pfnsOf(mm, 0, 4);
      const h = mm.translate(512)!.pfn;
      const r = mm.pinUserPagesFast(1, 2, { write: true });
      const t = mm.pinUserPagesFast(600, 10, { write: true });
      for (const range of [{ start: 0, count: 4 }, { start: 512, count: 512 }]) {
        mm.mprotect({ ...range, write: false });
        mm.mprotect({ ...range, write: true });
      }
      // mprotect's MM_CP_TRY_CHANGE_WRITABLE (can_change_pte_writable): exclusive anonymous
      // entries, pinned or not, PTEs and the THP leaf, are writable again without a fault.
      expect(mm.translate(600)!.writable).toBe(true);
      expect(mm.translate(1)!.writable).toBe(true);
      const s0 = mm.stats();
      mm.touch(0, 4, { write: true });
      mm.touch(700, 1, { write: true });
      // No fault to decide anything: the DMA target stays mapped, nothing copied.
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, {}));
      expect(pfnsOf(mm, 0, 4)).toEqual(small);
      expect(mm.translate(600)).toEqual({ pfn: h + 88, writable: true, zeroPage: false, huge: true, shared: false });
      // A write pin now takes the fast path again and lands on the same pages.
      const again = mm.pinUserPagesFast(1, 2, { write: true, fastOnly: true });
      expect(Array.from(again.pfns)).toEqual(Array.from(r.pfns));
      for (const list of [r.pfns, t.pfns, again.pfns]) mm.unpinUserPages(list, { write: true });
      expect(mem.refcount(small[1]!)).toBe(1);
      expect(mem.refcount(h)).toBe(LEAF);
    });

    it('a pinned THP survives munmap of its leaf; a get reference too', () => {
      const { mem, mm } = makeMm({ scheme, pages: 1024 });
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      const r = mm.pinUserPagesFast(0, 512, { write: true });
      const g = mm.getUserPagesFast(10, 1);
      mm.munmap({ start: 0, count: 512 });
      expect(mem.refcount(h)).toBe(pinRefs(scheme, 9, true, PMD) + 1);
      expect(mem.freePages()).toBe(512);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.refcount(h)).toBe(1);
      mm.putUserPages(g.pfns);
      expect(mem.refcount(h)).toBe(0);
      expect(mem.freePages()).toBe(1024);
    });
  });

  describe('unpinUserPages and putUserPages', () => {
    it('ENOTPINNED for a page without a pin, and nothing changes (the pinned one stays pinned)', () => {
      const { mem, mm, pfns } = populated(scheme, 4);
      const r = mm.pinUserPagesFast(0, 1, { write: true });
      expectCodeNoChange(mm, () => mm.unpinUserPages(new Uint32Array([pfns[0]!, pfns[1]!]), { write: true }), 'ENOTPINNED', { vpages: 8 });
      expectCodeNoChange(mm, () => mm.unpinUserPages(new Uint32Array([pfns[0]!, pfns[0]!]), { write: true }), 'ENOTPINNED', { vpages: 8 });
      expectCodeNoChange(mm, () => mm.unpinUserPages(new Uint32Array([pfns[0]!, 256])), 'ERANGE', { vpages: 8 });
      expectCodeNoChange(mm, () => mm.unpinUserPages([pfns[0]!] as never), 'EINVAL', { vpages: 8 });
      expectCodeNoChange(mm, () => mm.unpinUserPages(r.pfns, { dirt: true } as never), 'EINVAL', { vpages: 8 });
      expect(mem.pincount(pfns[0]!)).toBe(1);
      mm.unpinUserPages(r.pfns, { write: true });
      expect(mem.pincount(pfns[0]!)).toBe(0);
      mm.unpinUserPages(new Uint32Array(0));
    });

    it('unpin write must match the pin under write-bias (any matches elsewhere)', () => {
      const { mem, mm, pfns } = populated(scheme, 2);
      const w = mm.pinUserPagesFast(0, 1, { write: true });
      const rd = mm.pinUserPagesFast(1, 1);
      if (schemeTraits(scheme).readPinsHidden) {
        expectCodeNoChange(mm, () => mm.unpinUserPages(w.pfns), 'ENOTPINNED', { vpages: 4 });
        expectCodeNoChange(mm, () => mm.unpinUserPages(rd.pfns, { write: true }), 'ENOTPINNED', { vpages: 4 });
        mm.unpinUserPages(w.pfns, { write: true });
        mm.unpinUserPages(rd.pfns);
      } else {
        mm.unpinUserPages(w.pfns);
        mm.unpinUserPages(rd.pfns, { write: true });
      }
      for (const p of pfns) {
        expect(mem.refcount(p)).toBe(1);
        expect(mem.pincount(p)).toBe(0);
      }
    });

    it('putUserPages refuses more puts than references (EINVAL) and out-of-range PFNs, nothing changes', () => {
      const { mem, mm, pfns } = populated(scheme, 2);
      const g = mm.getUserPagesFast(0, 1);
      expect(mem.refcount(pfns[0]!)).toBe(2);
      expectCodeNoChange(mm, () => mm.putUserPages(new Uint32Array([pfns[0]!, pfns[0]!, pfns[0]!])), 'EINVAL', { vpages: 4 });
      expectCodeNoChange(mm, () => mm.putUserPages(new Uint32Array([pfns[0]!, 9999])), 'ERANGE', { vpages: 4 });
      expectCodeNoChange(mm, () => mm.putUserPages(null as never), 'EINVAL', { vpages: 4 });
      mm.putUserPages(g.pfns);
      expect(mem.refcount(pfns[0]!)).toBe(1);
    });
  });

  describe('FOLL_LONGTERM', () => {
    function movable(rules: 'mainline' | '2019' = 'mainline') {
      const { mem, mm } = makeMm({ scheme, pages: 4096, movablePages: 2048, rules });
      return { mem, mm };
    }

    it('ZONE_MOVABLE pages are migrated out before they are pinned', () => {
      const { mem, mm } = movable();
      mm.mmap({ start: 0, count: 8, populate: true });
      const old = pfnsOf(mm, 0, 8);
      for (const p of old) expect(mem.isMovable(p)).toBe(true);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(0, 8, { write: true, longterm: true });
      expect(r.count).toBe(8);
      expect(Array.from(r.pfns)).toEqual(pfnsOf(mm, 0, 8));
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 8, migratedPages: 8, longtermMigrations: 8 }),
      );
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 8, foliosFreed: 8 });
      for (let v = 0; v < 8; v++) {
        expect(mem.isMovable(r.pfns[v]!)).toBe(false);
        expect(mem.refcount(old[v]!)).toBe(0);
        expect(mem.refcount(r.pfns[v]!)).toBe(1 + pinRefs(scheme, 0, true));
        expect(mm.translate(v)!.writable).toBe(true);
      }
      // Now outside ZONE_MOVABLE: the next long-term pin takes the fast path.
      const s1 = mm.stats();
      const again = mm.pinUserPagesFast(0, 8, { write: true, longterm: true });
      expect(Array.from(again.pfns)).toEqual(Array.from(r.pfns));
      expect(delta(mm.stats(), s1)).toEqual(zeroDelta(s1, { gupCalls: 1, fastPathPages: 8 }));
      mm.unpinUserPages(again.pfns, { write: true });
      mm.unpinUserPages(r.pfns, { write: true });
      // A short-term pin leaves ZONE_MOVABLE pages where they are.
      mm.mmap({ start: 100, count: 2, populate: true });
      const st = mm.pinUserPagesFast(100, 2, { write: true });
      for (const p of st.pfns) expect(mem.isMovable(p)).toBe(true);
      mm.unpinUserPages(st.pfns, { write: true });
    });

    it('mainline (6.2): a long-term read pin of an unpopulated page unshares: its own page, outside ZONE_MOVABLE, and later writes land there', () => {
      const { mem, mm } = movable('mainline');
      mm.mmap({ start: 0, count: 4 });
      const r = mm.pinUserPagesFast(0, 4, { longterm: true });
      expect(r.count).toBe(4);
      const zero = mem.zeroPfn;
      for (const p of r.pfns) {
        expect(p).not.toBe(zero);
        expect(mem.isMovable(p)).toBe(false);
      }
      for (let v = 0; v < 4; v++) expect(mm.translate(v)).toMatchObject({ pfn: r.pfns[v], writable: false, zeroPage: false });
      mm.touch(0, 4, { write: true }); // reuses the exclusive page: the pin sees the write
      expect(pfnsOf(mm, 0, 4)).toEqual(Array.from(r.pfns));
      mm.unpinUserPages(r.pfns);
    });

    it('2019: a long-term read pin of an unpopulated page gets the zero page: outside ZONE_MOVABLE, never counted', () => {
      const { mem, mm } = movable('2019');
      mm.mmap({ start: 0, count: 4 });
      const m0 = mem.stats();
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 4, { longterm: true });
      expect(r.count).toBe(4);
      const zero = mem.zeroPfn!;
      expect(Array.from(r.pfns)).toEqual([zero, zero, zero, zero]);
      expect(mem.isMovable(zero)).toBe(false);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 4, faults: 4 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 0 });
      mm.unpinUserPages(r.pfns);
      expect(delta(mem.stats(), m0)).toMatchObject({ pinReleased: 0 });
      // A long-term write pin faults real pages and moves them out of ZONE_MOVABLE.
      const w = mm.pinUserPagesFast(0, 4, { longterm: true, write: true });
      for (const p of w.pfns) {
        expect(p).not.toBe(zero);
        expect(mem.isMovable(p)).toBe(false);
        expect(mem.pincount(p)).toBe(1);
      }
      expect(mm.stats().longtermMigrations - s0.longtermMigrations).toBe(4);
      mm.unpinUserPages(w.pfns, { write: true });
    });

    it('longterm with fastOnly never migrates: ZONE_MOVABLE pages are left untaken', () => {
      const { mem, mm } = movable();
      mm.mmap({ start: 0, count: 4, populate: true });
      const old = pfnsOf(mm, 0, 4);
      const s0 = mm.stats();
      const m0 = mem.stats();
      const r = mm.pinUserPagesFast(0, 4, { write: true, longterm: true, fastOnly: true });
      expect(r.count).toBe(0);
      expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1 }));
      expect(delta(mem.stats(), m0)).toMatchObject({ pinAcquired: 0, pinReleased: 0 });
      expect(pfnsOf(mm, 0, 4)).toEqual(old);
      for (const p of old) {
        expect(mem.refcount(p)).toBe(1);
        expect(mem.pincount(p)).toBe(0);
      }
    });

    it('a pin of a COW-shared page unshares it: a copy with access unchanged, the other mm keeps the original', () => {
      const { mem, mm } = makeMm({ scheme, pages: 256 });
      mm.mmap({ start: 0, count: 2, populate: true });
      const old = pfnsOf(mm, 0, 2);
      const child = mm.fork();
      for (const longterm of [true, false]) {
        const who = longterm ? mm : child;
        const s0 = who.stats();
        const r = who.pinUserPagesFast(0, 2, { longterm });
        expect(r.count).toBe(2);
        expect(delta(who.stats(), s0)).toEqual(
          zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 2, cowCopies: longterm ? 2 : 0, cowReuses: longterm ? 0 : 2 }),
        );
        for (let v = 0; v < 2; v++) {
          expect(who.translate(v)).toEqual({ pfn: r.pfns[v], writable: false, zeroPage: false, huge: false, shared: false });
          expect(mem.pincount(r.pfns[v]!)).toBe(1);
        }
        if (longterm) {
          // The parent pinned its own copy; the child keeps the original, now its alone.
          for (let v = 0; v < 2; v++) {
            expect(r.pfns[v]).not.toBe(old[v]);
            expect(child.translate(v)!.pfn).toBe(old[v]);
            expect(mem.refcount(old[v]!)).toBe(1);
          }
          // The copy is exclusive: a later write fault reuses it, the pin stays coherent.
          const s1 = mm.stats();
          mm.touch(0, 2, { write: true });
          expect(delta(mm.stats(), s1)).toEqual(zeroDelta(s1, { cowReuses: 2 }));
          expect(pfnsOf(mm, 0, 2)).toEqual(Array.from(r.pfns));
        } else {
          // The child maps the originals alone by now: unshared by reuse, no copy.
          expect(Array.from(r.pfns)).toEqual(old);
        }
        who.unpinUserPages(r.pfns);
      }
    });

    it('a THP in ZONE_MOVABLE moves whole', () => {
      const { mem, mm } = movable();
      mm.mmap({ start: 0, count: 512, huge: true, populate: true });
      const h = mm.translate(0)!.pfn;
      expect(mem.isMovable(h)).toBe(true);
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 512, { write: true, longterm: true });
      expect(r.count).toBe(512);
      const t = mm.translate(0)!;
      expect(t.huge).toBe(true);
      expect(mem.isMovable(t.pfn)).toBe(false);
      expect(r.pfns[0]).toBe(t.pfn);
      expect(r.pfns[511]).toBe(t.pfn + 511);
      expect(delta(mm.stats(), s0)).toEqual(
        zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 512, migratedPages: 512, longtermMigrations: 1 }),
      );
      expect(mem.refcount(h)).toBe(0);
      expect(mem.refcount(t.pfn)).toBe(LEAF + pinRefs(scheme, 9, true, PMD));
      mm.unpinUserPages(r.pfns, { write: true });
    });

    it('EBUSY when a ZONE_MOVABLE page is already pinned (it cannot move); partial when one was done', () => {
      const { mem, mm } = movable();
      mm.mmap({ start: 0, count: 4, populate: true });
      const short = mm.pinUserPagesFast(1, 1, { write: true });
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(1, 2, { write: true, longterm: true }), 'EBUSY', {
        vpages: 8,
        mmStats: { gupCalls: 1, slowPathFallbacks: 1, migrationRefusals: 1 },
      });
      const s0 = mm.stats();
      const r = mm.pinUserPagesFast(0, 4, { write: true, longterm: true });
      expect(r.count).toBe(1);
      expect(mem.isMovable(r.pfns[0]!)).toBe(false);
      expect(delta(mm.stats(), s0)).toMatchObject({ longtermMigrations: 1, migrationRefusals: 1, migrationFalsePositives: 0 });
      mm.unpinUserPages(r.pfns, { write: true });
      mm.unpinUserPages(short.pfns, { write: true });
      expect(mem.stats().pinAcquired).toBe(mem.stats().pinReleased);
    });

    it('ENOMEM partial: migration targets run out in the normal zone', () => {
      const { mem, mm } = makeMm({ scheme, pages: 64, movablePages: 60, vpages: 64 });
      mm.mmap({ start: 0, count: 8, populate: true });
      const r = mm.pinUserPagesFast(0, 8, { write: true, longterm: true });
      expect(r.count).toBe(4); // the normal zone holds 4 pages
      for (const p of r.pfns) expect(mem.isMovable(p)).toBe(false);
      for (let v = 4; v < 8; v++) expect(mem.isMovable(mm.translate(v)!.pfn)).toBe(true);
      expectCodeNoChange(mm, () => mm.pinUserPagesFast(4, 4, { write: true, longterm: true }), 'ENOMEM', { vpages: 8 });
      mm.unpinUserPages(r.pfns, { write: true });
    });
  });

  it('ENOMEM partial: faults run out of memory; nothing done is ENOMEM and changes nothing', () => {
    const { mem, mm } = makeMm({ scheme, pages: 16, vpages: 64 });
    mm.mmap({ start: 0, count: 32 });
    const s0 = mm.stats();
    const r = mm.pinUserPagesFast(0, 32, { write: true });
    expect(r.count).toBe(16);
    expect(mem.freePages()).toBe(0);
    expect(delta(mm.stats(), s0)).toEqual(zeroDelta(s0, { gupCalls: 1, slowPathFallbacks: 1, slowPathPages: 16, faults: 16 }));
    expect(mem.stats().pinAcquired).toBe(16);
    expectCodeNoChange(mm, () => mm.pinUserPagesFast(16, 4, { write: true }), 'ENOMEM', { vpages: 32 });
    mm.unpinUserPages(r.pfns, { write: true });
    mm.munmap({ start: 0, count: 32 });
    expect(mem.freePages()).toBe(16);
  });
});

describe('has-pinned flag (MMF_HAS_PINNED)', () => {
  it('set by the first pin attempt (fast, fast-only or slow), never by a get, never cleared', () => {
    const mem = new PageArray({ pages: 64, populated: false, debug: true });
    const mk = () => {
      const mm = new AddressSpace(mem, { pages: 64 });
      mm.mmap({ start: 0, count: 4, populate: true });
      return mm;
    };
    const a = mk();
    a.putUserPages(a.getUserPagesFast(0, 4).pfns);
    expect(a.hasPinned).toBe(false);
    a.unpinUserPages(a.pinUserPagesFast(0, 1).pfns);
    expect(a.hasPinned).toBe(true);
    a.munmap({ start: 0, count: 4 });
    expect(a.hasPinned).toBe(true);
    const b = mk();
    b.unpinUserPages(b.pinUserPages(0, 1).pfns);
    expect(b.hasPinned).toBe(true);
    const c = mk();
    expect(c.pinUserPagesFast(10, 1, { fastOnly: true }).count).toBe(0);
    expect(c.hasPinned).toBe(true);
    expect(c.fork().hasPinned).toBe(false);
  });
});

// A hook that changes the hook from inside the walk. A crash would take the test worker with
// it, so these run in a child process through the package entry ('pinlab', i.e. dist/, as
// test/package.test.ts does).
describe('race hooks that replace or remove themselves (child process)', () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const script = `
    import { PageArray, AddressSpace } from 'pinlab';
    const mode = process.env.PINLAB_HOOK_MODE;
    const mem = new PageArray({ pages: 256, populated: false, debug: true });
    const mm = new AddressSpace(mem, { pages: 256 });
    mm.mmap({ start: 0, count: 8, populate: true });
    const calls = [];
    let thrown = null, count = -1;
    mm.setRaceHook((p, v) => {
      calls.push(p + ' ' + v);
      if (mode === 'remove') { mm.setRaceHook(null); mm.munmap({ start: 5, count: 1 }); }
      if (mode === 'replace-throw') { mm.setRaceHook(() => calls.push('second')); throw new Error('boom'); }
      if (mode === 'remove-throw') { mm.setRaceHook(null); throw new Error('boom'); }
    });
    try { const r = mm.pinUserPagesFast(0, 8, { write: true }); count = r.count; mm.unpinUserPages(r.pfns, { write: true }); }
    catch (e) { thrown = String(e && e.message); }
    const s = mem.stats();
    console.log(JSON.stringify({ calls, thrown, count, acquired: s.pinAcquired, released: s.pinReleased }));
  `;
  function run(mode: string): { status: number | null; signal: string | null; out: unknown } {
    if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json`');
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, PINLAB_HOOK_MODE: mode },
      encoding: 'utf8',
      timeout: 20_000,
    });
    const line = res.stdout.trim().split('\n').at(-1) ?? '';
    let out: unknown = null;
    try {
      out = JSON.parse(line);
    } catch {
      out = { stdout: res.stdout, stderr: res.stderr.slice(0, 500) };
    }
    return { status: res.status, signal: res.signal, out };
  }

  it('a hook that removes itself: the walk goes on without it', () => {
    const r = run('remove');
    expect(r).toEqual({
      status: 0,
      signal: null,
      out: { calls: ['beforeGrab 0'], thrown: null, count: 5, acquired: 5, released: 5 },
    });
  });

  it('a hook that replaces itself and throws: rethrown, the new hook stays out of this walk', () => {
    const r = run('replace-throw');
    expect(r).toEqual({
      status: 0,
      signal: null,
      out: { calls: ['beforeGrab 0'], thrown: 'boom', count: -1, acquired: 8, released: 8 },
    });
  });

  // Regression: setRaceHook(null) inside the hook once destroyed the running closure (SIGSEGV);
  // the walk now calls a copy.
  it('a hook that removes itself and then throws: rethrown, no crash, no pin leaked', () => {
    const r = run('remove-throw');
    expect(r).toEqual({
      status: 0,
      signal: null,
      out: { calls: ['beforeGrab 0'], thrown: 'boom', count: -1, acquired: 8, released: 8 },
    });
  });
});
