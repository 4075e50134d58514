// Op streams, the proof: a seeded random simulation run live through the JS API and the replay
// of its recording end in the identical state, for every scheme; a batch and the same ops one by
// one end in the identical state with the identical results.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  AddressSpace,
  OP_NOT_RUN,
  OpBatch,
  PageArray,
  PageCacheFile,
  PinlabError,
  SCHEMES,
  bioAddPage,
  bioFromUserPages,
  opResultName,
  runReplay,
  stateDigest,
  type GupResult,
  type OpName,
  type PageArrayOptions,
  type Scheme,
  type StateDigest,
} from '../lib/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-ops-diff-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** mulberry32, as the examples use. */
class Rng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Runs `f`, swallowing the refusals a random simulation makes on purpose (PinlabError only). */
function attempt<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof PinlabError) return undefined;
    throw e;
  }
}

const MEM: Omit<PageArrayOptions, 'scheme'> = { pages: 1 << 14, populated: false, debug: true, movablePages: 1 << 12, pinBias: 64 };

/**
 * A seeded random simulation through the public API: address spaces (anonymous, THP and a
 * shared file mapping), faults, gets and pins (fast, slow, long-term, with owners), bios, forks
 * with children that write and exit, migration, compaction, mprotect, page-array pins, gets
 * and puts on the allocated pages, folio allocation, and calls that are refused on purpose.
 */
function simulate(mem: PageArray, seed: number, steps: number): AddressSpace[] {
  const rng = new Rng(seed);
  const spaces: AddressSpace[] = [];
  const mm = new AddressSpace(mem, { pages: 8192 });
  spaces.push(mm);
  mm.mmap({ start: 0, count: 2048, populate: true });
  mm.mmap({ start: 2048, count: 2048, populate: true, huge: true });
  mm.mmap({ start: 4096, count: 1024 }); // faulted on demand
  const file = new PageCacheFile(mem, { name: 'f', pages: 256, folioOrder: 2 });
  mm.mmap({ start: 6144, count: 256, file });
  const owner = mem.pinOwner('rdma');
  const held: { kind: 'pin' | 'get' | 'owned' | 'bio' | 'pa'; r: GupResult | Uint32Array; write: boolean; bio?: ReturnType<typeof bioFromUserPages> }[] = [];
  const folios: number[] = [];
  for (let i = 0; i < steps; i++) {
    const x = rng.int(0, 99);
    const start = rng.chance(0.6) ? rng.int(0, 2047) : rng.int(2048, 4095);
    const count = Math.min(rng.int(1, rng.chance(0.3) ? 512 : 16), 8191 - start);
    const write = rng.chance(0.5);
    if (x < 22) {
      const r = attempt(() => mm.pinUserPagesFast(start, count, { write, longterm: rng.chance(0.1) }));
      if (r !== undefined && r.count > 0) held.push({ kind: 'pin', r, write });
    } else if (x < 30) {
      const r = attempt(() => mm.pinUserPages(start, count, { write }));
      if (r !== undefined && r.count > 0) held.push({ kind: 'pin', r, write });
    } else if (x < 38) {
      const r = attempt(() => mm.getUserPagesFast(start, Math.min(count, 64)));
      if (r !== undefined && r.count > 0) held.push({ kind: 'get', r, write: false });
    } else if (x < 42) {
      const r = attempt(() => mm.pinUserPagesFast(start, Math.min(count, 8), { write: true, owner }));
      if (r !== undefined && r.count > 0) held.push({ kind: 'owned', r, write: true });
    } else if (x < 46) {
      const bio = attempt(() => bioFromUserPages(mm, rng.int(0, 2000), rng.int(1, 32), { policy: rng.chance(0.5) ? 'flagged' : 'all-pins', write }));
      if (bio !== undefined) {
        attempt(() => bioAddPage(bio, file.pfnAt(rng.int(0, 63) * 4)!, { count: rng.int(1, 4) }));
        held.push({ kind: 'bio', r: new Uint32Array(0), write, bio });
      }
    } else if (x < 70 && held.length > 0) {
      const h = held.splice(rng.int(0, held.length - 1), 1)[0]!;
      const pfns = h.r instanceof Uint32Array ? h.r : h.r.pfns;
      if (h.kind === 'pin') attempt(() => mm.unpinUserPages(pfns, { write: h.write, dirty: rng.chance(0.3) }));
      else if (h.kind === 'get') attempt(() => mm.putUserPages(pfns));
      else if (h.kind === 'owned') attempt(() => mm.unpinUserPages(pfns, { write: true, owner }));
      else if (h.kind === 'pa') attempt(() => mem.unpinPages(pfns, { write: h.write }));
      else h.bio!.complete();
    } else if (x < 74) {
      const child = attempt(() => mm.fork());
      if (child !== undefined) {
        spaces.push(child);
        attempt(() => child.touch(rng.int(0, 2040), 8, { write: true }));
        attempt(() => child.pinUserPagesFast(rng.int(0, 2040), 4, { write: false }));
        attempt(() => child.munmap({ start: 0, count: 8192 })); // exits (its pin stays, unowned)
      }
    } else if (x < 78) {
      attempt(() => mm.migrate({ start: rng.chance(0.5) ? 2048 + 512 * rng.int(0, 3) : rng.int(0, 1800), count: rng.chance(0.5) ? 512 : 200 }));
    } else if (x < 79) {
      attempt(() => mm.compact());
    } else if (x < 82) {
      attempt(() => mm.touch(rng.int(4096, 5100), rng.int(1, 16), { write: rng.chance(0.5) }));
    } else if (x < 84) {
      const s = rng.int(4096, 5000);
      attempt(() => mm.mprotect({ start: s, count: 16, write: rng.chance(0.5) }));
    } else if (x < 88) {
      // Page-array calls on pages a mapping holds: pins of a PFN list, gets and puts.
      const tr = mm.translate(rng.int(0, 2047));
      if (tr !== null && !tr.zeroPage) {
        const list = new Uint32Array([tr.pfn, tr.pfn]);
        if (attempt(() => mem.pinPages(list, { write })) !== undefined) held.push({ kind: 'pa', r: list, write });
        if (attempt(() => mem.getPage(tr.pfn, 2)) !== undefined) attempt(() => mem.putPage(tr.pfn, 2));
        attempt(() => mem.tryGetPage(tr.pfn)) && attempt(() => mem.putPage(tr.pfn));
        attempt(() => mem.setDirty(tr.pfn));
      }
    } else if (x < 91) {
      const head = attempt(() => mem.allocFolio(rng.int(0, 3), { movable: rng.chance(0.5) }));
      if (head !== undefined) folios.push(head);
      if (folios.length > 0 && rng.chance(0.5)) attempt(() => mem.putPage(folios.splice(0, 1)[0]!));
    } else if (x < 94) {
      // Refused on purpose: out of range, free pages, a bad order, an unpin of nothing.
      attempt(() => mem.pinPages({ start: (1 << 14) - 1, count: 4 }));
      attempt(() => mem.getPage(0xfffffff));
      attempt(() => mem.allocFolio(31));
      attempt(() => mm.touch(7000, 4));
      attempt(() => mm.pinUserPagesFast(9000, 1));
    } else if (x < 96) {
      attempt(() => file.truncate(rng.int(200, 256)));
    } else {
      attempt(() => mm.munmap({ start: rng.int(4096, 5100), count: rng.int(1, 64) }));
    }
  }
  return spaces;
}

function expectSameState(replayed: StateDigest, live: StateDigest, what: string): void {
  expect(replayed.pages, `${what}: pages (refcounts, pincounts, dirty, folios, debug pins)`).toBe(live.pages);
  expect(replayed.freeBlocks, `${what}: free lists`).toBe(live.freeBlocks);
  expect(replayed.freePages, `${what}: free pages`).toBe(live.freePages);
  expect(replayed.zeroPfn, `${what}: zero page`).toBe(live.zeroPfn);
  expect(replayed.spaces, `${what}: page tables and address-space counters`).toBe(live.spaces);
  expect(replayed.spaceCount, `${what}: address spaces`).toBe(live.spaceCount);
  expect(replayed.stats, `${what}: stats()`).toEqual(live.stats);
  expect(replayed.mmStats, `${what}: address spaces' stats()`).toEqual(live.mmStats);
}

describe('a recording replays to the identical state', () => {
  for (const scheme of SCHEMES) {
    it(`${scheme}: live simulation == native replay of its recording == submit of its buffer`, async () => {
      const mem = new PageArray({ ...MEM, scheme });
      const rec = mem.record();
      const spaces = simulate(mem, 42, 700);
      rec.stop();
      expect(rec.count).toBeGreaterThan(1000);
      const file = join(dir, `sim-${scheme}.pkops`);
      rec.save(file);
      // The recording holds every kind of call the simulation makes, refusals among them.
      rec.save(`${file}.txt`);
      const text = readFileSync(`${file}.txt`, 'utf8');
      for (const op of ['mm-new', 'mmap', 'mmap-file', 'touch', 'pin-user-fast', 'pin-user', 'get-user-fast', 'unpin-user', 'put-user', 'fork', 'munmap', 'migrate', 'compact', 'mprotect', 'zap', 'pin', 'unpin', 'get', 'put', 'try-get', 'set-dirty', 'alloc-folio']) {
        expect(text, op).toMatch(new RegExp(`^(mm#\\d+ )?${op} `, 'm'));
      }
      expect(text).toMatch(/ = (EFAULT|ERANGE|EINVAL|EFREE)$/m);
      expect(text).toMatch(/unpin-user \[&\d+/); // output references
      const live = stateDigest(mem);
      expect(live.spaceCount).toBe(spaces.length);
      const liveStats = mem.stats();
      const { imbalances: _imbalances, ...nativeStats } = liveStats;
      expect(live.stats).toEqual(nativeStats);
      // The simulation made each kind of decision and refusal that the comparison covers.
      expect(live.mmStats['earlyCowCopies']! + live.mmStats['migratedPages']!).toBeGreaterThan(0);
      const doc = await runReplay({ file, schemes: [scheme], endState: true });
      const s = doc.schemes[0]!;
      expect(s.diverged, 'every result as recorded').toBe(0);
      expect(s.refused).toBeGreaterThan(0);
      expectSameState(s.endState!, live, `replay under ${scheme}`);
      // The same recording, submitted to a fresh array in one call, ends there too.
      const mem2 = new PageArray({ ...MEM, scheme });
      const results = mem2.submit(rec.buffer(), { onError: 'continue' });
      expect(results.length).toBe(rec.count);
      expectSameState(stateDigest(mem2), live, `submit under ${scheme}`);
      // Every page and entry through the public API too, not only the digests.
      for (let pfn = 0; pfn < mem.pages; pfn += 1) {
        if (mem.refcount(pfn) !== mem2.refcount(pfn) || mem.pincount(pfn) !== mem2.pincount(pfn) || mem.isDirty(pfn) !== mem2.isDirty(pfn) || mem.folioOrder(pfn) !== mem2.folioOrder(pfn)) {
          expect.fail(`pfn ${pfn} differs after submit`);
        }
      }
      expect(mem2.debugPinnedRuns()).toEqual(mem.debugPinnedRuns());
      for (const a of spaces) {
        const b = AddressSpace.byId(mem2, a.id)!;
        expect(b.stats()).toEqual(a.stats());
        const differ: number[] = [];
        for (let v = 0; v < a.pages; v++) if (JSON.stringify(b.translate(v)) !== JSON.stringify(a.translate(v))) differ.push(v);
        expect(differ, `mm#${a.id}: virtual pages whose entries differ`).toEqual([]);
      }
      // ...and the comparison can fail: one more reference anywhere changes the digest.
      const somePage = spaces[0]!.translate(0)!.pfn;
      mem2.getPage(somePage);
      expect(stateDigest(mem2).pages).not.toBe(live.pages);
      expect(stateDigest(mem2).spaces).toBe(live.spaces);
    }, 60_000);
  }
});

// ---- a batch and the same ops one by one ------------------------------------------------------

type Planned = { op: OpName; a?: number; b?: number; mm?: number; flags?: ('write' | 'perPage' | 'dirty' | 'populate' | 'huge' | 'movable')[]; entries?: number[] };

/** The same op through the JS API: its result as submit reports it (a count, or -code). */
function oneByOne(mem: PageArray, spaces: Map<number, AddressSpace>, p: Planned): number {
  const has = (f: string): boolean => p.flags?.includes(f as never) === true;
  // An address space whose creation failed does not exist: its ops are EINVAL in a batch.
  if (p.op !== 'mm-new' && p.mm !== undefined && !spaces.has(p.mm)) return -1;
  try {
    switch (p.op) {
      case 'pin':
        return p.entries !== undefined
          ? mem.pinPages(new Uint32Array(p.entries), { write: has('write'), path: has('perPage') ? 'per-page' : 'bvec' })
          : mem.pinPages({ start: p.a!, count: p.b! }, { write: has('write'), path: has('perPage') ? 'per-page' : 'bvec' });
      case 'unpin':
        if (p.entries !== undefined) {
          mem.unpinPages(new Uint32Array(p.entries), { write: has('write'), dirty: has('dirty'), path: has('perPage') ? 'per-page' : 'bvec' });
          return p.entries.length;
        }
        mem.unpinPages({ start: p.a!, count: p.b! }, { write: has('write'), dirty: has('dirty'), path: has('perPage') ? 'per-page' : 'bvec' });
        return p.b!;
      case 'get':
        mem.getPage(p.a!, p.b!);
        return 0;
      case 'put':
        return mem.putPage(p.a!, p.b!) ? 1 : 0;
      case 'try-get':
        return mem.tryGetPage(p.a!, p.b!) ? 1 : 0;
      case 'set-dirty':
        mem.setDirty(p.a!);
        return 0;
      case 'alloc-folio':
        return mem.allocFolio(p.b!, { movable: has('movable') });
      case 'mm-new':
        spaces.set(p.mm!, new AddressSpace(mem, { pages: p.a! }));
        return 0;
      case 'mmap':
        spaces.get(p.mm!)!.mmap({ start: p.a!, count: p.b!, write: has('write'), populate: has('populate'), huge: has('huge') });
        return 0;
      case 'touch':
        spaces.get(p.mm!)!.touch(p.a!, p.b!, { write: has('write') });
        return 0;
      case 'munmap':
        spaces.get(p.mm!)!.munmap({ start: p.a!, count: p.b! });
        return 0;
      case 'migrate':
        return spaces.get(p.mm!)!.migrate({ start: p.a!, count: p.b! });
      case 'fork': {
        const child = spaces.get(p.mm!)!.fork();
        spaces.set(p.a!, child);
        return 0;
      }
      default:
        throw new Error(`not planned: ${p.op}`);
    }
  } catch (e) {
    if (!(e instanceof PinlabError)) throw e;
    const names = ['OK', 'EINVAL', 'ERANGE', 'EFREE', 'EOVERFLOW', 'EBUSY', 'EPINNED', 'ENOTPINNED', 'ENOMEM', 'EFAULT', 'EACCES', 'ENOENT', 'EAGAIN'];
    const n = names.indexOf(e.code);
    expect(opResultName(-n)).toBe(e.code); // the table above agrees with the addon's
    return -n;
  }
}

function plan(seed: number, n: number): Planned[] {
  const rng = new Rng(seed);
  const out: Planned[] = [{ op: 'mm-new', mm: 1, a: 4096 }, { op: 'mmap', mm: 1, a: 0, b: 1024, flags: ['write', 'populate'] }, { op: 'mmap', mm: 1, a: 1024, b: 1024, flags: ['write', 'huge'] }];
  let nextId = 2;
  const allocated: number[] = [];
  for (let i = 0; i < n; i++) {
    // Mostly the pages the address space holds (ZONE_MOVABLE, the top 2048), some free, some out of range.
    const pfn = rng.chance(0.8) ? rng.int(6100, 8191) : rng.chance(0.5) ? rng.int(0, 6100) : rng.int(0, 2 ** 32 - 1);
    const x = rng.int(0, 99);
    const flags = [...(rng.chance(0.5) ? ['write' as const] : []), ...(rng.chance(0.3) ? ['perPage' as const] : [])];
    if (x < 25) out.push({ op: 'pin', a: pfn, b: rng.int(0, 8), flags });
    else if (x < 45) out.push({ op: 'unpin', a: pfn, b: rng.int(1, 8), flags: [...flags, ...(rng.chance(0.3) ? ['dirty' as const] : [])] });
    else if (x < 52) out.push({ op: 'pin', entries: [pfn, pfn + 1, pfn], flags });
    else if (x < 58) out.push({ op: 'unpin', entries: [pfn, pfn + 1, pfn], flags });
    else if (x < 66) out.push({ op: 'get', a: pfn, b: rng.int(0, 3) });
    else if (x < 74) out.push({ op: 'put', a: pfn, b: 1 });
    else if (x < 78) out.push({ op: 'try-get', a: pfn, b: 1 });
    else if (x < 80) out.push({ op: 'set-dirty', a: pfn });
    else if (x < 84) out.push({ op: 'alloc-folio', b: rng.int(0, 4), flags: rng.chance(0.5) ? ['movable'] : [] });
    else if (x < 88 && allocated.length >= 0) out.push({ op: 'touch', mm: rng.int(1, nextId - 1), a: rng.int(0, 2100), b: rng.int(1, 8), flags: rng.chance(0.5) ? ['write'] : [] });
    else if (x < 91) out.push({ op: 'migrate', mm: 1, a: rng.int(0, 2000), b: rng.int(1, 600) });
    else if (x < 92) out.push({ op: 'fork', mm: rng.int(1, nextId - 1), a: nextId++ });
    else if (x < 94) out.push({ op: 'munmap', mm: rng.int(1, nextId - 1), a: rng.int(0, 3000), b: rng.int(1, 100) });
    else out.push({ op: 'mmap', mm: 1, a: rng.int(2048, 4000), b: rng.int(1, 64), flags: ['write'] }); // often overlapping: EINVAL
  }
  return out;
}

describe('submit: a batch and the same ops one by one', () => {
  for (const scheme of SCHEMES) {
    it(`${scheme}: identical results and state, and 'stop' stops at the first refusal`, () => {
      const opts: PageArrayOptions = { pages: 1 << 13, scheme, populated: false, movablePages: 1 << 11 };
      const planned = plan(9, 3000);
      const batch = new OpBatch();
      for (const p of planned) batch.push(p.op, { ...p, flags: p.flags ?? [] });
      const a = new PageArray(opts);
      const spaces = new Map<number, AddressSpace>();
      const expected = planned.map((p) => oneByOne(a, spaces, p));
      const b = new PageArray(opts);
      const got = b.submit(batch.toArray(), { onError: 'continue' });
      expect([...got]).toEqual(expected);
      expect(expected.filter((r) => r < 0).length).toBeGreaterThan(100); // refusals of every kind were compared
      expect(new Set(expected.filter((r) => r < 0)).size).toBeGreaterThanOrEqual(4);
      expectSameState(stateDigest(b), stateDigest(a), `submit under ${scheme}`);
      // stats() but the JS bookkeeping's imbalance counts, which a batch goes around by design.
      const { imbalances: _a, ...sa } = a.stats();
      const { imbalances: _b, ...sb } = b.stats();
      expect(sb).toEqual(sa);
      expect(sa.pinAcquired).toBeGreaterThan(100);
      // 'stop' (the default): the first refusal ends the batch, and the state is that of the ops
      // up to and including the refused one (which changed nothing but the refusal counters).
      const first = expected.findIndex((r) => r < 0);
      const c = new PageArray(opts);
      const stopped = c.submit(batch.toArray());
      expect([...stopped.subarray(0, first + 1)]).toEqual(expected.slice(0, first + 1));
      expect([...stopped.subarray(first + 1)].every((r) => r === OP_NOT_RUN)).toBe(true);
      expect(opResultName(OP_NOT_RUN)).toBe('NOT_RUN');
      const d = new PageArray(opts);
      const prefix = new OpBatch();
      for (const p of planned.slice(0, first + 1)) prefix.push(p.op, { ...p, flags: p.flags ?? [] });
      d.submit(prefix.toArray(), { onError: 'continue' });
      expectSameState(stateDigest(c), stateDigest(d), 'stopped batch');
    });
  }
});

describe('the differential comparison covers each scheme the registry has', () => {
  it('SCHEMES is the registry list', () => {
    expect(SCHEMES.length).toBeGreaterThanOrEqual(4);
    const s: Scheme = SCHEMES[0]!;
    expect(typeof s).toBe('string');
  });
});
