// Hostile input at the addon boundary, each case in a child process (a crash is reported, not
// suffered): PFN lists another thread rewrites during the call (a SharedArrayBuffer), typed
// arrays that lie about their type, detached buffers, numbers that would wrap, objects of the
// wrong class. The addon checks all of it itself: every call succeeds or throws a PinlabError,
// a refused call changes nothing, and the counts end balanced.
import { describe, expect, it } from 'vitest';

import { DIST, DIST_NATIVE, DIST_PAGE_ARRAY, describeChild, runChild } from './child.js';

describe('a PFN list in a SharedArrayBuffer that a worker rewrites during the call', () => {
  // Entry i of the shared list is GOOD[i], except that a worker thread keeps replacing one entry
  // at a time by a huge PFN and putting it back. The addon copies a list before the core sees
  // it, so each call works on one consistent copy: all good (the call succeeds and did exactly
  // what the good list says) or one huge entry (ERANGE, nothing changed). Before, the core
  // validated the list, then read it again to walk and again to roll back, so a walk could
  // meet a PFN nobody validated: a segfault, or a rollback that undid pins it never took.
  const script = `
    import { Worker } from 'node:worker_threads';
    import { PageArray, AddressSpace, PinlabError } from '${DIST}';
    import { pinsOf } from '${DIST_PAGE_ARRAY}';
    const N = 512, PAGES = 4096, HUGE = 0xfffffff0, ROUNDS = Number(process.env.ROUNDS);
    const mem = new PageArray({ pages: PAGES, scheme: process.env.SCHEME });
    const mem2 = new PageArray({ pages: PAGES, scheme: process.env.SCHEME, populated: false });
    const mm = new AddressSpace(mem2, { pages: 4096 });
    const shared = new Uint32Array(new SharedArrayBuffer(4 * N));
    const good = new Uint32Array(new SharedArrayBuffer(4 * N)).fill(1);
    const stop = new Int32Array(new SharedArrayBuffer(12)); // [stop, pause, paused]
    const worker = new Worker(\`
      const { workerData: d } = require('node:worker_threads');
      const a = new Uint32Array(d.shared), g = new Uint32Array(d.good), stop = new Int32Array(d.stop);
      let j = 0;
      while (Atomics.load(stop, 0) === 0) {
        // Paused while the main thread swaps the good list (else a copy of a stale good entry,
        // read just before the swap, could land in the new list: a valid PFN of the old list).
        if (Atomics.load(stop, 1) === 1) {
          Atomics.store(stop, 2, 1);
          while (Atomics.load(stop, 1) === 1 && Atomics.load(stop, 0) === 0);
          Atomics.store(stop, 2, 0);
          continue;
        }
        j = (j * 7 + 13) % a.length;
        a[j] = \${HUGE};
        for (let k = 0; k < 20; k++) a[(j + 1) % a.length] = g[(j + 1) % a.length];
        a[j] = g[j];
      }\`, { eval: true, execArgv: [], workerData: { shared: shared.buffer, good: good.buffer, stop: stop.buffer } });
    const unexpected = [];
    worker.on('error', (e) => unexpected.push('worker: ' + e.message));
    await new Promise((r) => worker.once('online', r));
    // Wait until the worker is seen rewriting the list.
    while (shared.every((v) => v === 0)) await new Promise((r) => setTimeout(r, 1));
    const tally = { ok: 0, refused: 0 };
    function call(name, fn) {
      try { const r = fn(); tally.ok++; return { ok: true, r }; }
      catch (e) {
        if (e instanceof PinlabError && e.code === 'ERANGE') { tally.refused++; return { ok: false }; }
        unexpected.push(name + ': ' + String(e && e.message)); return { ok: false };
      }
    }
    function setGood(values) {
      Atomics.store(stop, 1, 1);
      while (Atomics.load(stop, 2) !== 1);
      good.set(values);
      shared.set(values);
      Atomics.store(stop, 1, 0);
    }
    // Pages 0..N-1 of the page array, in a shuffled order with a repeat.
    const plain = new Uint32Array(N).map((_, i) => (i * 37) % N);
    plain[N - 1] = plain[0];
    setGood(plain);
    for (let round = 0; round < ROUNDS; round++) {
      if (call('pinPages', () => mem.pinPages(shared)).ok) {
        let done = false;
        for (let t = 0; t < 50 && !done; t++) done = call('unpinPages', () => mem.unpinPages(shared)).ok;
        if (!done) mem.unpinPages(plain);
      }
      const c = call('countMaybeDmaPinned', () => mem.countMaybeDmaPinned(shared));
      if (c.ok && c.r !== 0) unexpected.push('countMaybeDmaPinned: ' + c.r + ' pinned, none is');
      const b = call('toBvecs', () => mem.toBvecs(shared));
      if (b.ok && b.r.some((v) => v.pfn + v.count > N)) unexpected.push('toBvecs: a run past the list');
      const runs = call('pfnRuns', () => pinsOf(mem).pfnRuns(shared));
      if (runs.ok && runs.r.some((v, i) => i % 2 === 0 && v >= N)) unexpected.push('pfnRuns: a pfn past the list');
    }
    // unpinUserPages / putUserPages: the pages a gup took, rewritten the same way.
    mm.mmap({ start: 0, count: N, populate: true });
    for (let round = 0; round < ROUNDS / 4; round++) {
      const pin = mm.pinUserPagesFast(0, N, { write: true });
      setGood(pin.pfns);
      let done = false;
      for (let t = 0; t < 50 && !done; t++) done = call('unpinUserPages', () => mm.unpinUserPages(shared, { write: true })).ok;
      if (!done) mm.unpinUserPages(pin.pfns, { write: true });
      const get = mm.getUserPagesFast(0, N);
      setGood(get.pfns);
      done = false;
      for (let t = 0; t < 50 && !done; t++) done = call('putUserPages', () => mm.putUserPages(shared)).ok;
      if (!done) mm.putUserPages(get.pfns);
    }
    mm.munmap({ start: 0, count: N });
    Atomics.store(stop, 0, 1);
    await worker.terminate();
    const s = mem.stats(), s2 = mem2.stats();
    let refcounts = 0;
    for (let p = 0; p < PAGES; p++) if (mem.refcount(p) !== 1) refcounts++;
    console.log(JSON.stringify({ unexpected: unexpected.slice(0, 5), tally, acquired: s.pinAcquired + s2.pinAcquired, released: s.pinReleased + s2.pinReleased, refcounts, free: mem2.freePages() === PAGES }));
  `;

  for (const scheme of ['bias', 'hybrid']) {
    it(`${scheme}: every call succeeds or throws ERANGE; pins and references balance`, () => {
      const r = runChild(script, { env: { ROUNDS: '4000', SCHEME: scheme }, timeoutMs: 120_000 });
      expect(r.status, describeChild(r)).toBe(0);
      const out = r.out as { unexpected: string[]; tally: { ok: number; refused: number }; acquired: number; released: number; refcounts: number; free: boolean };
      expect(out.unexpected).toEqual([]);
      expect(out.acquired).toBe(out.released);
      expect(out.refcounts).toBe(0);
      expect(out.free).toBe(true);
      expect(out.tally.ok).toBeGreaterThan(0);
    });
  }

  it('mapShared of a list rewritten meanwhile maps one consistent copy or nothing', () => {
    const script2 = `
      import { Worker } from 'node:worker_threads';
      import { PinlabError } from '${DIST}';
      import { native } from '${DIST_NATIVE}';
      const N = 64, HUGE = 0xfffffff0;
      const pa = new native.NativePageArray({ pages: 1024, scheme: 'hybrid', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: true, movablePages: 0 });
      const as = new native.NativeAddressSpace(pa, 1024);
      const shared = new Uint32Array(new SharedArrayBuffer(4 * N)).map((_, i) => 100 + i);
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const worker = new Worker(\`
        const { workerData: d } = require('node:worker_threads');
        const a = new Uint32Array(d.shared), stop = new Int32Array(d.stop);
        let j = 0;
        while (Atomics.load(stop, 0) === 0) { j = (j + 5) % a.length; a[j] = \${HUGE}; a[j] = 100 + j; }\`,
        { eval: true, execArgv: [], workerData: { shared: shared.buffer, stop: stop.buffer } });
      const unexpected = [];
      worker.on('error', (e) => unexpected.push('worker: ' + e.message));
      await new Promise((r) => worker.once('online', r));
      let ok = 0;
      for (let i = 0; i < 3000; i++) {
        try { as.mapShared(0, shared, false); ok++; as.munmap(0, N); }
        catch (e) { if (!(e instanceof PinlabError) || e.code !== 'ERANGE') unexpected.push(String(e.message)); }
      }
      Atomics.store(stop, 0, 1);
      await worker.terminate();
      let bad = 0;
      for (let p = 0; p < 1024; p++) if (pa.refcount(p) !== 1) bad++;
      console.log(JSON.stringify({ unexpected: unexpected.slice(0, 3), ok: ok > 0, bad }));
    `;
    const r = runChild(script2, { timeoutMs: 60_000 });
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ unexpected: [], ok: true, bad: 0 });
  });
});

describe('typed arrays that are not what they claim, at every list entry point', () => {
  // lib/ checks `instanceof Uint32Array`, which a prototype swap or a Proxy passes; the addon
  // reads the array's real type (napi_get_typedarray_info) and byte length itself. Before, a
  // 4-byte Uint8Array with Uint32Array's prototype was read as four 4-byte entries past its end.
  const script = `
    import { PageArray, AddressSpace, PinlabError } from '${DIST}';
    import { pinsOf } from '${DIST_PAGE_ARRAY}';
    import { native } from '${DIST_NATIVE}';
    const detached = () => { const u = new Uint32Array(64); structuredClone(u.buffer, { transfer: [u.buffer] }); return u; };
    const swap = (a) => Object.setPrototypeOf(a, Uint32Array.prototype);
    const tagged = (a) => { Object.defineProperty(a, Symbol.toStringTag, { value: 'Uint32Array' }); return swap(a); };
    const hostile = {
      'Uint8Array as Uint32Array': () => swap(new Uint8Array(4)),
      'Uint8Array with toStringTag': () => tagged(new Uint8Array(8)),
      'Int8Array as Uint32Array': () => swap(new Int8Array(16)),
      'Float64Array as Uint32Array': () => swap(new Float64Array(4)),
      'BigUint64Array as Uint32Array': () => swap(new BigUint64Array(4)),
      'Int32Array as Uint32Array': () => swap(new Int32Array(4)),
      'DataView as Uint32Array': () => swap(new DataView(new ArrayBuffer(64))),
      'Proxy of a Uint32Array': () => new Proxy(new Uint32Array([1, 2, 3]), {}),
      'plain object with the prototype': () => Object.create(Uint32Array.prototype),
      'detached Uint32Array': detached,
      'array of numbers': () => [1, 2, 3],
      'ArrayBuffer': () => new ArrayBuffer(16),
      'number': () => 7,
      'string': () => '1,2',
      'null': () => null,
      'undefined': () => undefined,
    };
    const mem = new PageArray({ pages: 1024, scheme: 'hybrid', debug: true });
    const mem2 = new PageArray({ pages: 1024, scheme: 'hybrid', populated: false });
    const mm = new AddressSpace(mem2, { pages: 1024 });
    const np = new native.NativePageArray({ pages: 1024, scheme: 'hybrid', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: true, movablePages: 0 });
    const nas = new native.NativeAddressSpace(new native.NativePageArray({ pages: 1024, scheme: 'hybrid', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: false, movablePages: 0 }), 1024);
    const good = new Uint32Array(8).map((_, i) => i);
    const entries = {
      'pinPages': (v) => mem.pinPages(v),
      'unpinPages': (v) => mem.unpinPages(v),
      'countMaybeDmaPinned': (v) => mem.countMaybeDmaPinned(v),
      'toBvecs': (v) => mem.toBvecs(v),
      'pfnRuns': (v) => pinsOf(mem).pfnRuns(v),
      'unpinUserPages': (v) => mm.unpinUserPages(v),
      'putUserPages': (v) => mm.putUserPages(v),
      'native pinList': (v) => np.pinList(v, 0),
      'native unpinList': (v) => np.unpinList(v, 0),
      'native bvecsList': (v) => np.bvecsList(v),
      'native countMaybeDmaPinnedList': (v) => np.countMaybeDmaPinnedList(v),
      'native pfnRunsInto (list)': (v) => np.pfnRunsInto(v, new Uint32Array(64)),
      'native pfnRunsInto (out)': (v) => np.pfnRunsInto(good, v),
      'native mapShared': (v) => nas.mapShared(0, v, false),
      'native unpinUserPages': (v) => nas.unpinUserPages(v, false, false),
      'native putUserPages': (v) => nas.putUserPages(v),
    };
    const before = JSON.stringify([mem.stats(), mem2.stats(), np.stats(), nas.info()]);
    const outcomes = {};
    for (const [entry, call] of Object.entries(entries)) {
      for (const [what, make] of Object.entries(hostile)) {
        let outcome;
        try { call(make()); outcome = 'returned'; }
        catch (e) { outcome = e instanceof PinlabError ? e.code : (e && e.constructor && e.constructor.name) + ': ' + (e && e.message); }
        if (outcome !== 'EINVAL') outcomes[entry + ' / ' + what] = outcome;
      }
    }
    const after = JSON.stringify([mem.stats(), mem2.stats(), np.stats(), nas.info()]);
    let refcounts = 0;
    for (let p = 0; p < 1024; p++) if (mem.refcount(p) !== 1 || np.refcount(p) !== 1) refcounts++;
    console.log(JSON.stringify({ notEinval: outcomes, unchanged: before === after, refcounts }));
  `;

  it('each is refused with a PinlabError EINVAL, and nothing changes', () => {
    const r = runChild(script);
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ notEinval: {}, unchanged: true, refcounts: 0 });
  });
});

describe('numbers and objects the addon is handed directly', () => {
  const script = `
    import { PinlabError } from '${DIST}';
    import { native } from '${DIST_NATIVE}';
    const opts = { pages: 64, scheme: 'hybrid', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: true, movablePages: 0 };
    const np = new native.NativePageArray(opts);
    const nas = new native.NativeAddressSpace(new native.NativePageArray({ ...opts, populated: false }), 64);
    const outcome = (f) => { try { f(); return 'returned'; } catch (e) { return e instanceof PinlabError ? e.code : e.constructor.name + ': ' + e.message; } };
    const cases = {
      'refcount(NaN)': () => np.refcount(NaN),
      'refcount(1.5)': () => np.refcount(1.5),
      'refcount("1")': () => np.refcount('1'),
      'refcount(Infinity)': () => np.refcount(Infinity),
      'getPage(0, 2**32 + 1)': () => np.getPage(0, 2 ** 32 + 1),
      'pinRange(0, 1, 8) (unknown flag)': () => np.pinRange(0, 1, 8),
      'pinRange(0, 1, -1)': () => np.pinRange(0, 1, -1),
      'pinRange(0, 1, 2**32 + 1)': () => np.pinRange(0, 1, 2 ** 32 + 1),
      'pinRange(0, NaN, 0)': () => np.pinRange(0, NaN, 0),
      'allocFolio(0, "yes")': () => np.allocFolio(0, 'yes'),
      'new NativePageArray({ pages: NaN })': () => new native.NativePageArray({ ...opts, pages: NaN }),
      'new NativePageArray({ pages: 2**32 + 64 })': () => new native.NativePageArray({ ...opts, pages: 2 ** 32 + 64 }),
      'new NativePageArray(null)': () => new native.NativePageArray(null),
      'new NativePageArray({ debug: 1 })': () => new native.NativePageArray({ ...opts, debug: 1 }),
      'gup(0, 1, 2**32 + 8)': () => nas.gup(0, 1, 2 ** 32 + 8),
      'gup(0, 1, 32) (unknown flag)': () => nas.gup(0, 1, 32),
      'mmap(0, 1, "w", false, false)': () => nas.mmap(0, 1, 'w', false, false),
      'setRaceHook(42)': () => nas.setRaceHook(42),
      'NativeAddressSpace over an address space': () => new native.NativeAddressSpace(nas, 16),
      'NativeAddressSpace over a fake page array': () => new native.NativeAddressSpace(Object.create(native.NativePageArray.prototype), 16),
      'NativeAddressSpace over a plain object': () => new native.NativeAddressSpace({}, 16),
      'runStress({ threads: 2**32 + 4 })': () => native.runStress({ scheme: 'hybrid', threads: 2 ** 32 + 4, durationMs: 10, regionPages: 512, regions: 1, seed: 1, debug: false }),
      'runBench threads 2**32 + 1': () => native.runBench([{ op: 'pin-unpin', scheme: 'bias', perPage: false, order: 0, listInput: false, threads: 2 ** 32 + 1, sharing: 'private', bufferPages: 512, pagesPerCall: 0 }], { trials: 1, trialMs: 1 }),
      'runBench trials 2**32': () => native.runBench([], { trials: 2 ** 32, trialMs: 1 }),
      'runBench trialMs NaN': () => native.runBench([], { trials: 1, trialMs: NaN }),
      'runBench onProgress 5': () => native.runBench([], { trials: 1, trialMs: 1 }, 5),
      'probeKernel trials 2**32 + 1': () => native.probeKernel({ bufferBytes: 1 << 21, huge: false, trials: 2 ** 32 + 1 }),
      'distributionTail(fixed NaN)': () => native.distributionTail({ kind: 'fixed', value: NaN }, 1),
      'takeSnapshot(path, -1)': () => native.takeSnapshot('/tmp/x.pksnap', -1),
    };
    const out = {};
    for (const [name, f] of Object.entries(cases)) out[name] = outcome(f);
    // The receiver is checked by V8 (the class's signature): a method called on another object.
    out['refcount.call(address space)'] = outcome(() => native.NativePageArray.prototype.refcount.call(nas, 0));
    console.log(JSON.stringify(out));
  `;

  it('non-integers, wrapping integers, unknown flag bits and impostor objects are EINVAL', () => {
    const r = runChild(script);
    expect(r.status, describeChild(r)).toBe(0);
    const out = r.out as Record<string, string>;
    const { ['refcount.call(address space)']: receiver, ...rest } = out;
    expect(receiver).toMatch(/^TypeError: Illegal invocation/);
    for (const [name, outcome] of Object.entries(rest)) expect(`${name}: ${outcome}`).toBe(`${name}: EINVAL`);
  });
});
