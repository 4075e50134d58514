#!/usr/bin/env node
// A randomized fuzz of pinlab's public API (issue 12): millions of calls with valid and hostile
// arguments (out-of-range and non-integer numbers, hostile typed arrays: prototype swaps, shared
// and detached buffers, other element types, proxies; option objects whose getters re-enter the
// same object or throw), on page arrays and address spaces of every scheme, plus workers
// terminated in the middle of native runs. It checks, as it goes:
//   - nothing crashes, and every failure is a PinlabError (or the fuzzer's own getter error);
//   - a refused call changes nothing: the counts of the pages it named and the pin statistics
//     are the same before and after;
// and at the end of each round, after giving back everything the successful calls took (in
// reverse order, every release must succeed):
//   - pins acquired == pins released, no page is maybe pinned under an exact scheme, debug
//     mode's exact per-page pins are all zero, and every page is back to its starting count.
//
//   node test/fuzz/api-fuzz.mjs [--calls N] [--seed S] [--workers K]
// Prints one JSON line { calls, refused, rounds, violations, unexpected, workersTerminated } and
// exits 1 on any violation or unexpected error.
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({ options: { calls: { type: 'string' }, seed: { type: 'string' }, workers: { type: 'string' } } });
const CALLS = Number(values.calls ?? 1_000_000);
const SEED = Number(values.seed ?? 1);
const WORKERS = Number(values.workers ?? 12);

const pinlab = await import(join(root, 'dist', 'index.js'));
const { PageArray, AddressSpace, PinlabError, SCHEMES } = pinlab;

// ---- a seeded PRNG (xorshift128+ on two 32-bit halves, enough for a fuzzer) ------------------
let s0 = (SEED * 0x9e3779b9) >>> 0 || 1;
let s1 = (SEED ^ 0xdeadbeef) >>> 0 || 2;
function rnd() {
  let x = s0;
  const y = s1;
  s0 = y;
  x ^= x << 23;
  x ^= x >>> 17;
  x ^= y ^ (y >>> 26);
  s1 = x >>> 0;
  return ((s0 + s1) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rnd() * n);
const pick = (xs) => xs[int(xs.length)];
const chance = (p) => rnd() < p;

const stats = { calls: 0, refused: 0, rounds: 0, violations: [], unexpected: [], workersTerminated: 0 };
class Reentered extends Error {}
/** Successful pin-and-unpin pairs made by re-entrant getters: they change the statistics (by as
 * many pins acquired as released) while the outer call runs, so that call's own state check
 * then compares the pages only. */
let nestedChanges = 0;

function violation(what) {
  if (stats.violations.length < 20) stats.violations.push(what);
}

// ---- hostile values ---------------------------------------------------------------------------
function hostileNumber(pages) {
  return pick([-1, -0.5, 0.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53, -(2 ** 31), pages, pages + 1, '3', null, undefined, {}, [], 7n, true]);
}

function pfnOf(pages) {
  return chance(0.93) ? int(pages) : hostileNumber(pages);
}

function plainList(pages, n) {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = chance(0.97) ? int(pages) : pick([pages, 2 ** 32 - 1, pages + 7]);
  return a;
}

/** A page list that may be hostile; `kind` says which, for the unchanged-state check. */
function pageSet(pages, mem) {
  const r = rnd();
  if (r < 0.35) {
    const start = int(pages);
    const count = chance(0.9) ? 1 + int(Math.min(64, pages - start)) : hostileNumber(pages);
    const set = { start: chance(0.97) ? start : hostileNumber(pages), count };
    return { set, hostile: false, copy: { ...set } };
  }
  if (r < 0.75) {
    const set = plainList(pages, 1 + int(16));
    return { set, hostile: false, copy: set.slice() };
  }
  // Hostile shapes.
  const n = 1 + int(8);
  switch (int(9)) {
    case 0: {
      const a = new Uint8Array(n); // 1-byte elements dressed as a Uint32Array
      Object.setPrototypeOf(a, Uint32Array.prototype);
      return { set: a, hostile: true };
    }
    case 1: {
      const sab = new SharedArrayBuffer(4 * n);
      const a = new Uint32Array(sab);
      a.set(plainList(pages, n));
      return { set: a, hostile: true, copy: new Uint32Array(a) };
    }
    case 2: {
      const a = plainList(pages, n);
      structuredClone(a.buffer, { transfer: [a.buffer] }); // detaches a: an empty list, or refused
      return { set: a, hostile: true, copy: new Uint32Array(0) };
    }
    case 3:
      return { set: new Float64Array(n).fill(1), hostile: true };
    case 4:
      return { set: new Proxy(plainList(pages, n), {}), hostile: true };
    case 5:
      return { set: new DataView(new ArrayBuffer(4 * n)), hostile: true };
    case 6: {
      const a = plainList(pages, n);
      Object.defineProperty(a, Symbol.toStringTag, { get: () => 'Uint32Array' });
      return { set: new Int32Array(a.buffer), hostile: true };
    }
    case 7: {
      const set = reentrantRange(mem, pages);
      return { set, hostile: true, copy: { start: set.startValue, count: 1 } };
    }
    default:
      return { set: pick([null, undefined, 42, 'pages', [1, 2, 3], { start: 0 }, { count: 1 }]), hostile: true };
  }
}

/** A { start, count } whose getters call back into the same page array (or throw). */
function reentrantRange(mem, pages) {
  const start = int(pages);
  return {
    startValue: start,
    get start() {
      if (chance(0.5)) {
        try {
          mem.pinPages({ start, count: 1 });
          mem.unpinPages({ start, count: 1 });
          nestedChanges++;
        } catch {
          // refused: fine
        }
      }
      if (chance(0.2)) throw new Reentered('getter threw');
      return start;
    },
    get count() {
      try {
        mem.refcount(start);
      } catch {
        // fine
      }
      return 1;
    },
  };
}

/** Options whose getters re-enter or throw, sometimes. */
function options(mem, base) {
  if (chance(0.9)) return base;
  if (chance(0.3)) return pick([null, 'x', 5, { bogusKey: true }]);
  const o = {};
  for (const [k, v] of Object.entries(base)) {
    Object.defineProperty(o, k, {
      enumerable: true,
      get() {
        try {
          mem.countMaybeDmaPinned({ start: 0, count: 1 });
        } catch {
          // fine
        }
        if (chance(0.1)) throw new Reentered('option getter threw');
        return v;
      },
    });
  }
  return o;
}

// ---- snapshots for "a refused call changes nothing" -------------------------------------------
function pfnsNamed(set, pages) {
  try {
    if (set instanceof Uint32Array && Object.getPrototypeOf(set) === Uint32Array.prototype && set.byteLength === set.length * 4) {
      return [...set].filter((p) => p < pages);
    }
    if (set !== null && typeof set === 'object' && !ArrayBuffer.isView(set)) {
      const d = Object.getOwnPropertyDescriptor(set, 'start');
      const c = Object.getOwnPropertyDescriptor(set, 'count');
      if (d && 'value' in d && c && 'value' in c && Number.isInteger(d.value) && Number.isInteger(c.value) && d.value >= 0 && c.value > 0) {
        const out = [];
        for (let p = d.value; p < Math.min(pages, d.value + Math.min(c.value, 64)); p++) out.push(p);
        return out;
      }
    }
  } catch {
    // a hostile object: no named pages
  }
  return [];
}

function snapshot(mem, pfns) {
  const s = mem.stats();
  const pages = pfns.map((p) => [mem.refcount(p), mem.pincount(p), mem.isDirty(p)].join('/'));
  return `${s.pinAcquired}/${s.pinReleased}/${s.foliosFreed}|${pages.join(',')}`;
}

// ---- one round: a page array, maybe an address space, many calls -----------------------------
function round(budget) {
  const scheme = pick(SCHEMES);
  const debug = chance(0.3);
  const pages = pick([512, 1024, 4096]);
  const folioOrder = pick([0, 0, 2, 9].filter((o) => 2 ** o <= pages));
  const mem = new PageArray({ pages, scheme, debug, folioOrder, pinBias: pick([2, 64, 1024]) });
  const held = []; // what successful calls took, to give back at the end
  let calls = 0;

  const attempt = (fn, named) => {
    stats.calls++;
    calls++;
    const before = named === null ? null : snapshot(mem, named);
    const nestedBefore = nestedChanges;
    try {
      return { ok: true, value: fn() };
    } catch (e) {
      stats.refused++;
      if (!(e instanceof PinlabError) && !(e instanceof Reentered)) {
        if (stats.unexpected.length < 20) stats.unexpected.push(`${e?.constructor?.name}: ${e?.message}`);
      }
      // A re-entrant getter may itself have changed state (it pinned and unpinned: balanced).
      if (before !== null && !(e instanceof Reentered)) {
        let after = snapshot(mem, named);
        let was = before;
        if (nestedChanges !== nestedBefore) {
          // A getter's own balanced pin and unpin moved the statistics: compare the pages.
          after = after.slice(after.indexOf('|'));
          was = before.slice(before.indexOf('|'));
        }
        if (after !== was) violation(`refused call changed state (${scheme}${debug ? ', debug' : ''}): ${e.message}: ${was} -> ${after}`);
      }
      return { ok: false, error: e };
    }
  };

  while (calls < budget) {
    const op = int(12);
    if (op <= 2) {
      const { set, hostile, copy } = pageSet(pages, mem);
      const write = chance(0.5);
      const path = pick(['bvec', 'per-page']);
      const named = hostile ? [] : pfnsNamed(set, pages);
      const r = attempt(() => mem.pinPages(set, options(mem, { write, path })), named);
      if (process.env.FUZZ_TRACE && r.ok) console.error('pin ok', scheme, debug, JSON.stringify(copy), Object.prototype.toString.call(set), r.value);
      if (r.ok && copy == null) violation(`a hostile page list was accepted by pinPages: ${Object.prototype.toString.call(set)} ${set?.constructor?.name}`);
      if (r.ok && copy != null) held.push({ kind: 'pin', set: copy, write });
    } else if (op === 3 && held.length > 0 && chance(0.7)) {
      // Release a random earlier success (not necessarily the last).
      const i = int(held.length);
      const h = held[i];
      const r = h.kind === 'pin'
        ? attempt(() => mem.unpinPages(h.set, { write: h.write, dirty: chance(0.3) }), null)
        : attempt(() => mem.putPage(h.pfn, h.refs), null);
      if (r.ok) held.splice(i, 1);
      else violation(`releasing what a successful call took failed: ${r.error.message}`);
    } else if (op === 4 && (debug || scheme === 'separate')) {
      // (Only exact accounting can refuse an unpin of pins nobody took: under a bias, plain
      // references above the bias look like pins, and write-bias's read pins are plain refs.)
      // Unpins that may not match anything: refused without a change, or (when the pages
      // happen to be pinned by an earlier call) put back at once with the same pin.
      const { set, hostile, copy } = pageSet(pages, mem);
      const write = chance(0.5);
      const r = attempt(() => mem.unpinPages(set, options(mem, { write })), hostile ? [] : pfnsNamed(set, pages));
      if (r.ok) {
        if (copy == null) violation(`a hostile page list was accepted by unpinPages: ${Object.prototype.toString.call(set)}`);
        else attempt(() => mem.pinPages(copy, { write }), null);
      }
    } else if (op === 5) {
      const pfn = pfnOf(pages);
      const refs = chance(0.9) ? 1 + int(4) : hostileNumber(pages);
      const r = attempt(() => mem.getPage(pfn, refs), Number.isInteger(pfn) && pfn >= 0 && pfn < pages ? [pfn] : []);
      if (r.ok) held.push({ kind: 'get', pfn, refs });
    } else if (op === 6) {
      // Puts of references nobody took: refused unless a held get covers them.
      const pfn = pfnOf(pages);
      const named = Number.isInteger(pfn) && pfn >= 0 && pfn < pages ? [pfn] : [];
      // More references than the folio holds (or nonsense): always refused, nothing changes.
      const refs = named.length > 0 && chance(0.6) ? mem.refcount(pfn) + 1 : pick([2 ** 31, -1, 0, NaN, 1.5]);
      if (chance(0.8)) attempt(() => mem.putPage(pfn, refs), named);
      else attempt(() => mem.tryGetPage(pfn, 0), named);
    } else if (op === 7) {
      const { set } = pageSet(pages, mem);
      attempt(() => mem.countMaybeDmaPinned(set), []);
      attempt(() => mem.toBvecs(set), []);
    } else if (op === 8) {
      const pfn = pfnOf(pages);
      attempt(() => mem.refcount(pfn), []);
      attempt(() => mem.pincount(pfn), []);
      attempt(() => mem.maybeDmaPinned(pfn), []);
    } else if (op === 9) {
      // Shape changes: refused (EBUSY) unless the pages are idle; both keep counts exact.
      const order = pick([1, 2, 9, 31, -1]);
      const head = chance(0.9) ? int(pages) & ~((2 ** Math.max(0, Math.min(order, 9))) - 1) : hostileNumber(pages);
      if (chance(0.5)) attempt(() => mem.makeFolio(head, order), []);
      else attempt(() => mem.splitFolio(head), []);
    } else if (op === 10) {
      attempt(() => mem.setDirty(pfnOf(pages)), []);
    } else {
      // Options objects and constructors with hostile values.
      // (Mostly invalid: a valid one maps memory, which is slow to do thousands of times.)
      attempt(() => new PageArray(options(mem, { pages: pick([0, -1, 1.5, 2 ** 31 + 1, NaN, '16', chance(0.05) ? 16 : 0]), scheme: pick([...SCHEMES, 'nope', 7]) })), null);
    }
  }

  // Give everything back, newest first: every release must succeed.
  for (let i = held.length - 1; i >= 0; i--) {
    const h = held[i];
    try {
      if (h.kind === 'pin') mem.unpinPages(h.set, { write: h.write });
      else mem.putPage(h.pfn, h.refs);
    } catch (e) {
      violation(`final release failed (${scheme}${debug ? ', debug' : ''}): ${e.message}`);
    }
  }
  const s = mem.stats();
  if (s.pinAcquired !== s.pinReleased) violation(`${scheme}: pins acquired ${s.pinAcquired} != released ${s.pinReleased}`);
  if (scheme !== 'write-bias' && mem.countMaybeDmaPinned({ start: 0, count: pages }) !== 0 && (scheme === 'separate' || debug)) {
    // Exact schemes (and debug mode) cannot have a false positive left once all is released.
    if (scheme === 'separate') violation(`${scheme}: maybe pinned pages left after everything was released`);
  }
  if (debug && mem.debugPinnedRuns().length !== 0) violation(`${scheme} debug: pins left ${JSON.stringify(mem.debugPinnedRuns().slice(0, 3))}`);
  // Shapes may have changed (make/split succeeded on idle pages); a folio's count is on its head.
  for (let p = 0; p < pages; p++) {
    const head = mem.folioHead(p);
    if (head !== p) continue;
    // Every folio of a populated array starts, and must end, at refcount 1 (make and split
    // keep that: they only accept idle pages).
    if (mem.refcount(p) !== 1) {
      violation(`${scheme}${debug ? ' debug' : ''}: folio ${p} (order ${mem.folioOrder(p)}) refcount ${mem.refcount(p)}, expected 1`);
      break;
    }
  }
  stats.rounds++;
}

// ---- address spaces: mm calls with hostile ranges, checked for balance ------------------------
function mmRound(budget) {
  const scheme = pick(SCHEMES);
  const mem = new PageArray({ pages: 1 << 13, scheme, populated: false, debug: chance(0.5), movablePages: chance(0.5) ? 1 << 11 : 0 });
  const vpages = 1 << 12;
  const mms = [new AddressSpace(mem, { pages: vpages })];
  const pins = [];
  let calls = 0;
  const call = (fn) => {
    stats.calls++;
    calls++;
    try {
      return fn();
    } catch (e) {
      stats.refused++;
      if (!(e instanceof PinlabError) && !(e instanceof Reentered) && stats.unexpected.length < 20) stats.unexpected.push(`${e?.constructor?.name}: ${e?.message}`);
      return undefined;
    }
  };
  const range = () => {
    const start = chance(0.95) ? int(vpages) : hostileNumber(vpages);
    const count = chance(0.95) ? 1 + int(600) : hostileNumber(vpages);
    return { start, count };
  };
  // Issue 13's calls take part too: a hugetlb pool, a small swap device (fork families share it).
  call(() => mem.setHugetlbPages(9, 2));
  /** What a refused issue-13 call must leave as it was (the mm's own counters may classify a refusal). */
  const mmSnapshot = (mm, r) => {
    const s = mem.stats();
    const at = Number.isInteger(r.start) && r.start >= 0 && r.start < vpages ? r.start : 0;
    const tr = [];
    for (let v = at; v < Math.min(vpages, at + 8); v++) tr.push(mm.translate(v)?.pfn ?? -1, mm.swapEntry(v)?.slot ?? -1);
    return JSON.stringify([s.pinAcquired, s.pinReleased, s.foliosFreed, mem.freePages(), mm.mappedPages, mm.regions, mm.swappedPages, mm.swapUsage(), mem.hugetlbPool(9), tr]);
  };
  const unchangedIfRefused = (mm, r, what, fn) => {
    const before = mmSnapshot(mm, r);
    const ok = call(() => (fn(), true));
    if (ok === undefined && nestedChanges === 0) {
      const after = mmSnapshot(mm, r);
      if (after !== before) violation(`mm ${scheme}: a refused ${what} changed the state: ${before} -> ${after}`);
    }
  };
  while (calls < budget) {
    const mm = pick(mms);
    const op = int(16);
    const r = range();
    if (op >= 11) {
      if (op === 11) {
        const advice = chance(0.95) ? pick(['dontneed', 'dontfork', 'dofork', 'pageout', 'collapse']) : hostileNumber(vpages);
        unchangedIfRefused(mm, r, `madvise ${String(advice)}`, () => mm.madvise(r, advice));
      } else if (op === 12) {
        const newCount = chance(0.9) ? 1 + int(600) : hostileNumber(vpages);
        const fixed = chance(0.4);
        const o = { ...r, newCount, mayMove: chance(0.7), fixed, dontUnmap: chance(0.2) };
        if (fixed || chance(0.05)) o.newStart = chance(0.9) ? int(vpages) : hostileNumber(vpages);
        unchangedIfRefused(mm, r, 'mremap', () => mm.mremap(o));
      } else if (op === 13) {
        const o = chance(0.5) ? {} : { maxPtesNone: chance(0.8) ? int(512) : hostileNumber(vpages), maxPtesShared: chance(0.8) ? int(513) : hostileNumber(vpages) };
        unchangedIfRefused(mm, r, 'khugepaged', () => mm.khugepaged(o));
      } else if (op === 14) {
        const start = chance(0.8) ? int(vpages / 512) * 512 : r.start;
        unchangedIfRefused(mm, { start, count: 512 }, 'hugetlb mmap', () => mm.mmap({ start, count: chance(0.8) ? 512 : r.count, hugetlb: chance(0.9) ? 9 : pick([18, 10, hostileNumber(vpages)]), shared: chance(0.3), populate: chance(0.3) }));
      } else {
        call(() => mm.touch(r.start, r.count, { write: chance(0.5) })); // swap-ins, COW of hugetlb
      }
      continue;
    }
    if (op === 0) call(() => mm.mmap({ ...r, populate: chance(0.5), huge: chance(0.3), write: chance(0.8) }));
    else if (op === 1) call(() => mm.munmap(r));
    else if (op === 2) call(() => mm.mprotect({ ...r, write: chance(0.5) }));
    else if (op === 3) call(() => mm.touch(r.start, r.count, { write: chance(0.5) }));
    else if (op === 4 || op === 5) {
      const write = chance(0.5);
      const longterm = chance(0.3);
      const got = call(() => (op === 4 ? mm.pinUserPagesFast(r.start, r.count, { write, longterm }) : mm.pinUserPages(r.start, r.count, { write, longterm })));
      if (got !== undefined && got.count > 0) pins.push({ mm, pfns: got.pfns.slice(0, got.count), write, kind: 'pin' });
    } else if (op === 6) {
      const got = call(() => mm.getUserPagesFast(r.start, r.count, { write: chance(0.5) }));
      if (got !== undefined && got.count > 0) pins.push({ mm, pfns: got.pfns.slice(0, got.count), kind: 'get' });
    } else if (op === 7 && pins.length > 0) {
      const i = int(pins.length);
      const h = pins[i];
      const ok = call(() => (h.kind === 'pin' ? h.mm.unpinUserPages(h.pfns, { write: h.write }) : h.mm.putUserPages(h.pfns), true));
      if (ok) pins.splice(i, 1);
      else violation(`mm: releasing a successful gup failed (${scheme})`);
    } else if (op === 8) {
      if (mms.length < 4) {
        const child = call(() => mm.fork());
        if (child !== undefined) mms.push(child);
      } else {
        call(() => mm.munmap({ start: 0, count: vpages }));
      }
    } else if (op === 9) call(() => mm.migrate(r));
    else {
      // Bogus unpins: never pinned, hostile arrays.
      const { set } = pageSet(1 << 13, mem);
      call(() => mm.unpinUserPages(set, { write: chance(0.5) }));
    }
  }
  for (let i = pins.length - 1; i >= 0; i--) {
    const h = pins[i];
    try {
      if (h.kind === 'pin') h.mm.unpinUserPages(h.pfns, { write: h.write });
      else h.mm.putUserPages(h.pfns);
    } catch (e) {
      violation(`mm final release failed (${scheme}): ${e.message}`);
    }
  }
  for (const mm of mms) call(() => mm.munmap({ start: 0, count: vpages }));
  const swap = mms[0].swapUsage();
  if (swap.used !== 0 || swap.cached !== 0) violation(`mm ${scheme}: swap slots still used after unmapping everything: ${JSON.stringify(swap)}`);
  const pool = mem.hugetlbPool(9);
  if (pool.used !== 0 || pool.reserved !== 0) violation(`mm ${scheme}: hugetlb pool not whole after unmapping everything: ${JSON.stringify(pool)}`);
  call(() => mem.setHugetlbPages(9, 0)); // its pages back to the allocator
  const s = mem.stats();
  if (s.pinAcquired !== s.pinReleased) violation(`mm ${scheme}: pins acquired ${s.pinAcquired} != released ${s.pinReleased}`);
  // Everything unmapped and released: every page is free again but the zero page.
  const expectFree = mem.pages - (mem.zeroPfn === null ? 0 : 1);
  if (mem.freePages() !== expectFree) violation(`mm ${scheme}: ${mem.freePages()} free pages after unmapping everything, expected ${expectFree}`);
  stats.rounds++;
}

// ---- workers terminated mid-run ---------------------------------------------------------------
async function terminateWorkers(k) {
  const index = join(root, 'dist', 'index.js');
  for (let i = 0; i < k; i++) {
    const code = `
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(index)}).then(async (p) => {
        const which = ${i % 3};
        parentPort.postMessage('started');
        if (which === 0) await p.runStress({ scheme: 'bias', threads: 2, durationMs: 2000 });
        else if (which === 1) await p.runBench({ schemes: ['bias'], ops: ['pin-unpin'], orders: [0], sharing: ['private'], threads: [1], trials: 50, trialMs: 50, kernel: false, paths: ['bvec'], inputs: ['range'] });
        else { if (${i % 2} === 0) process.exit(3); await p.runStress({ scheme: 'hybrid', threads: 2, durationMs: 2000 }); }
      });`;
    const w = new Worker(code, { eval: true });
    await new Promise((resolve) => w.once('message', resolve).once('error', resolve).once('exit', resolve));
    await new Promise((r) => setTimeout(r, 5 + int(60)));
    await w.terminate();
    stats.workersTerminated++;
  }
}

const perRound = 5000;
let spent = 0;
while (spent < CALLS) {
  const before = stats.calls;
  if (chance(0.8)) round(Math.min(perRound, CALLS - spent));
  else mmRound(Math.min(perRound / 5, CALLS - spent));
  spent += stats.calls - before;
}
await terminateWorkers(WORKERS);
// The main thread is unharmed: it can still pin.
const after = new PageArray({ pages: 64 });
after.pinPages({ start: 0, count: 64 });
after.unpinPages({ start: 0, count: 64 });

console.log(JSON.stringify(stats));
process.exit(stats.violations.length === 0 && stats.unexpected.length === 0 ? 0 : 1);
