// Attack on the op-stream executor's inline one-page paths (pages/one_page.h, run_loop per
// scheme, multi-page pins into the run's tally): every refusal of get, put, try-get and the
// single- and multi-page pins and unpins gives the same result in a batch as the same call one
// by one, and stats() ends the same, in debug and non-debug arrays, under every scheme, with
// 'continue' and with 'stop' (the stop at each refusal in turn); the JS calls' errors name their
// code, PFN and refs.
import { describe, expect, it } from 'vitest';

import { AddressSpace, OP_NOT_RUN, OpBatch, PageArray, PinlabError, SCHEMES, opResultName, type PageArrayOptions } from '../lib/index.js';
import { runPlannedOp, type PlannedOp } from './ops-helpers.js';

type Planned = PlannedOp;

const PAGES = 1 << 12;

function batchOf(planned: Planned[]): Uint32Array {
  const b = new OpBatch();
  for (const p of planned) b.push(p.op, { ...p, flags: p.flags ?? [] });
  return b.toArray();
}

/**
 * stats() less the JS bookkeeping's imbalance counts, which a batch goes around by design. In
 * debug mode that bookkeeping refuses an unpin of pins it does not hold (ENOTPINNED) before the
 * core sees it, so the core counts no rollback for it; a batch's goes to the core, which does:
 * such refusals count as the rollbacks they are in a batch.
 */
function statsOf(mem: PageArray): Record<string, number> {
  const { imbalances, ...s } = mem.stats();
  return mem.debug ? { ...s, rollbacks: s.rollbacks + imbalances.ENOTPINNED } : s;
}

const SETUP: Planned[] = [
  { op: 'mm-new', mm: 1, a: 64 },
  { op: 'mmap', mm: 1, a: 0, b: 8, flags: ['write', 'populate'] },
  { op: 'mmap', mm: 1, a: 8, b: 8 },
  { op: 'touch', mm: 1, a: 8, b: 8 }, // read faults: the zero page
  { op: 'alloc-folio', b: 0 },
  { op: 'alloc-folio', b: 2 },
];

/** The refusals (and a few successes between them), given the pages the setup produced. */
function attack(x: number, y: number, zero: number, mapped: number, free: number): Planned[] {
  const I32 = 2 ** 31 - 1;
  return [
    { op: 'get', a: x, b: 0 }, // EINVAL: refs 0
    { op: 'get', a: x, b: 2 ** 31 }, // EINVAL: refs past INT32_MAX
    { op: 'put', a: x, b: 0xffffffff },
    { op: 'try-get', a: x, b: 0 },
    { op: 'get', a: PAGES + 3, b: 1 }, // ERANGE
    { op: 'put', a: 0xffffffff, b: 1 },
    { op: 'try-get', a: PAGES, b: 1 },
    { op: 'get', a: zero, b: 1 }, // EINVAL: the zero page
    { op: 'put', a: zero, b: 1 },
    { op: 'try-get', a: zero, b: 1 },
    { op: 'pin', a: zero, b: 1 },
    { op: 'unpin', a: zero, b: 1 },
    { op: 'get', a: free, b: 1 }, // EFREE
    { op: 'try-get', a: free, b: 1 }, // 0
    { op: 'put', a: free, b: 1 }, // EINVAL: below zero
    { op: 'get', a: x, b: I32 - 1 }, // to the top
    { op: 'get', a: x, b: 1 }, // EOVERFLOW (overflowRefusals)
    { op: 'try-get', a: x, b: 1 },
    { op: 'pin', a: x, b: 1 }, // EOVERFLOW on the pin's references (rollback)
    { op: 'pin', entries: [y, x], flags: ['write'] }, // multi-page, refused whole
    { op: 'put', a: x, b: I32 - 1 },
    { op: 'pin', a: x, b: 1, flags: ['write'] },
    { op: 'put', a: x, b: 1 }, // the page's own reference
    { op: 'put', a: x, b: 1 }, // debug: EPINNED (eats the pin's reference)
    { op: 'put', a: mapped, b: 1 }, // EBUSY: the mapping's reference
    { op: 'put', a: mapped, b: 2 }, // EINVAL: below zero
    { op: 'pin', a: y, b: 4 },
    { op: 'pin', entries: [y + 1, y + 1, y + 3], flags: ['perPage'] },
    { op: 'unpin', a: y, b: 4 },
    { op: 'unpin', a: y, b: 4 }, // ENOTPINNED (rollback)
    { op: 'unpin', entries: [y + 1, y + 1, y + 3], flags: ['perPage', 'dirty'] },
    { op: 'unpin', entries: [y + 1, y + 3] }, // ENOTPINNED
    { op: 'pin', a: PAGES - 2, b: 4 }, // ERANGE
    { op: 'unpin', a: free, b: 1 }, // ENOTPINNED, single page
    { op: 'pin-user', mm: 1, a: 0, b: 4, flags: ['write'] }, // an address-space op: the tally flushed first
    { op: 'unpin', a: x, b: 1, flags: ['write', 'dirty'] },
    { op: 'pin', entries: [y, free], flags: ['write'] }, // a free page in a list
    { op: 'put', a: y, b: 1 }, // frees the folio
    { op: 'put', a: y, b: 1 }, // EINVAL
    { op: 'try-get', a: y + 2, b: 1 }, // 0: free
  ];
}

describe('attack21: a batch and the same calls one by one, refusals and stats', () => {
  for (const scheme of SCHEMES) {
    for (const debug of [false, true]) {
      it(`${scheme}${debug ? ' debug' : ''}: same results and stats, 'continue' and 'stop' at each refusal`, () => {
        const opts: PageArrayOptions = { pages: PAGES, scheme, debug, populated: false };
        const a = new PageArray(opts);
        const spaces = new Map<number, AddressSpace>();
        const setupResults = SETUP.map((p) => runPlannedOp(a, spaces, p));
        expect(setupResults.every((r) => r >= 0), `setup ${setupResults.join(',')}`).toBe(true);
        const x = setupResults[4]!, y = setupResults[5]!;
        const zero = a.zeroPfn!, mapped = spaces.get(1)!.translate(0)!.pfn;
        expect(zero).not.toBeNull();
        let free = PAGES - 1;
        while (a.refcount(free) !== 0 || free === zero) free--;
        const planned = [...SETUP, ...attack(x, y, zero, mapped, free)];
        const expected = [...setupResults, ...planned.slice(SETUP.length).map((p) => runPlannedOp(a, spaces, p))];
        const codes = new Set(expected.filter((r) => r < 0).map((r) => opResultName(r)));
        for (const c of ['EINVAL', 'ERANGE', 'EFREE', 'EOVERFLOW', 'EBUSY', 'ENOTPINNED']) expect(codes.has(c), c).toBe(true);
        if (debug) expect(codes.has('EPINNED')).toBe(true);
        expect(statsOf(a)['overflowRefusals']).toBeGreaterThanOrEqual(3);
        expect(statsOf(a)['rollbacks']).toBeGreaterThanOrEqual(3);

        const b = new PageArray(opts);
        const got = b.submit(batchOf(planned), { onError: 'continue' });
        expect([...got]).toEqual(expected);
        expect(statsOf(b)).toEqual(statsOf(a));

        // 'stop' from each refusal of the attack on (a third of them per scheme, so every one
        // under some scheme, in a few seconds): the stop at the first refusal, and stats() as
        // the same calls one by one up to and including it.
        let stops = 0;
        for (let j = SETUP.length; j < planned.length; j++) {
          if (expected[j]! >= 0 || (j + SCHEMES.indexOf(scheme)) % 3 !== 0) continue;
          const ops = [...SETUP, ...planned.slice(j)];
          const c = new PageArray(opts);
          const res = c.submit(batchOf(ops));
          const first = [...res].findIndex((r) => r < 0 && r !== OP_NOT_RUN);
          const d = new PageArray(opts);
          const ds = new Map<number, AddressSpace>();
          const upTo = first < 0 ? ops : ops.slice(0, first + 1);
          const want = upTo.map((p) => runPlannedOp(d, ds, p));
          expect([...res.subarray(0, upTo.length)], `from op ${j}`).toEqual(want);
          if (first >= 0) expect([...res.subarray(first + 1)].every((r) => r === OP_NOT_RUN)).toBe(true);
          if (first >= 0) stops++;
          expect(statsOf(c), `from op ${j}`).toEqual(statsOf(d));
        }
        expect(stops).toBeGreaterThanOrEqual(5);
      });
    }
  }
});

describe('attack21: the JS calls name their refusals', () => {
  for (const debug of [false, true]) {
    it(`getPage, putPage, tryGetPage${debug ? ' (debug)' : ''}: code, PFN and refs in the error`, () => {
      const mem = new PageArray({ pages: PAGES, debug, populated: false });
      const mm = new AddressSpace(mem, { pages: 16 });
      mm.mmap({ start: 0, count: 2, write: true, populate: true });
      mm.mmap({ start: 2, count: 2 });
      mm.touch(2, 1);
      const x = mem.allocFolio(0);
      const zero = mem.zeroPfn!, mapped = mm.translate(0)!.pfn;
      let free = PAGES - 1;
      while (mem.refcount(free) !== 0 || free === zero) free--;
      const err = (f: () => unknown): PinlabError => {
        try {
          f();
        } catch (e) {
          if (e instanceof PinlabError) return e;
          throw e;
        }
        throw new Error(`no error: ${f.toString()}`);
      };
      const cases: [() => unknown, string, string[]][] = [
        [() => mem.getPage(x, 0), 'EINVAL', ['0']],
        [() => mem.putPage(x, 2 ** 31), 'EINVAL', [String(2 ** 31)]],
        [() => mem.tryGetPage(x, 2 ** 31), 'EINVAL', [String(2 ** 31)]],
        [() => mem.getPage(PAGES + 5), 'ERANGE', [String(PAGES + 5)]],
        [() => mem.putPage(PAGES), 'ERANGE', [String(PAGES)]],
        [() => mem.tryGetPage(PAGES + 1), 'ERANGE', [String(PAGES + 1)]],
        [() => mem.getPage(zero), 'EINVAL', [String(zero)]],
        [() => mem.putPage(zero), 'EINVAL', [String(zero)]],
        [() => mem.tryGetPage(zero), 'EINVAL', [String(zero)]],
        [() => mem.getPage(free), 'EFREE', [String(free)]],
        [() => mem.putPage(free), 'EINVAL', [String(free)]],
        [() => mem.putPage(mapped), 'EBUSY', [String(mapped)]],
        [() => mem.putPage(x, 3), 'EINVAL', [String(x), '3']],
      ];
      const check = (list: typeof cases): void => {
        for (const [f, code, names] of list) {
          const e = err(f);
          expect(e.code, e.message).toBe(code);
          for (const n of names) expect(e.message, `${code}: ${n}`).toContain(n);
        }
      };
      check(cases);
      const before = mem.stats().overflowRefusals;
      mem.getPage(x, 2 ** 31 - 2);
      check([
        [() => mem.getPage(x), 'EOVERFLOW', [String(x)]],
        [() => mem.tryGetPage(x), 'EOVERFLOW', [String(x)]],
      ]);
      expect(mem.stats().overflowRefusals - before).toBe(2);
      mem.putPage(x, 2 ** 31 - 2);
      mem.pinPages({ start: x, count: 1 });
      if (debug) {
        const e = err(() => mem.putPage(x, 2));
        expect(e.code).toBe('EPINNED');
        expect(e.message).toContain(String(x));
      }
      mem.unpinPages({ start: x, count: 1 });
      expect(mem.refcount(x)).toBe(1);
    });
  }
});

describe('attack21: stats() from JS during a batch', () => {
  it('no JS runs inside a batch: a live address space with a race hook is refused before any op (EBUSY, stats() unchanged)', () => {
    // A batch's pins and unpins count into its run's tally until the run ends (or an
    // address-space op flushes it): JS that ran inside the batch could read stats() short.
    const mem = new PageArray({ pages: PAGES, populated: false });
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 8, write: true, populate: true });
    const y = mem.allocFolio(2);
    let calls = 0;
    mm.setRaceHook(() => {
      calls++;
    });
    const before = mem.stats();
    const batch = batchOf([
      { op: 'pin', a: y, b: 4 },
      { op: 'pin-user', mm: mm.id, a: 0, b: 1, flags: ['write'] },
    ]);
    let code = '';
    try {
      mem.submit(batch, { onError: 'continue' });
    } catch (e) {
      code = e instanceof PinlabError ? e.code : 'other';
    }
    expect(code).toBe('EBUSY');
    expect(calls).toBe(0);
    expect(mem.stats()).toEqual(before);
    expect(mem.pincount(y)).toBe(0);
    mm.setRaceHook(null);
    const res = mem.submit(batch, { onError: 'continue' });
    expect([...res]).toEqual([4, 1]);
    expect(mem.stats().pinAcquired - before.pinAcquired).toBe(5);
  });
});
