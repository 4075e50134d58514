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
  HugetlbFile,
  PageCacheFile,
  PinlabError,
  SCHEMES,
  bioAddPage,
  bioFromUserPages,
  opResultName,
  runReplay,
  stateDigest,
  type GupResult,
  type OpFlagName,
  type OpName,
  type PageArrayOptions,
  type Scheme,
  type StateDigest,
} from '../lib/index.js';
import { runPlannedOp, type PlannedOp } from './ops-helpers.js';

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

/** The ops format 3 added for issue 13's calls. */
const ISSUE13_OPS: OpName[] = ['madvise', 'mremap', 'khugepaged', 'mmap-hugetlb', 'mmap-hugetlb-file', 'mmap-file-private', 'zap-file', 'hugetlb-pool', 'hugetlb-alloc'];

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
  // Issue 13's calls (format 3): an address space of its own with a small swap device, hugetlb
  // memory (anonymous private and shared, a hugetlb file shared and private), private file
  // mappings (a regular file and a shmem one), and a huge region for collapse and khugepaged.
  const r13 = new Rng(seed ^ 0x13);
  mem.setHugetlbPages(9, 6);
  const mb = new AddressSpace(mem, { pages: 8192, swapPages: 96, thpOrders: [4, 9] });
  spaces.push(mb);
  mb.mmap({ start: 0, count: 512, hugetlb: 9 }); // private: reserved now, faulted on touch
  mb.mmap({ start: 512, count: 512, hugetlb: 9, shared: true });
  const hfile = new HugetlbFile(mem, { name: 'h', order: 9, pages: 512 });
  mb.mmap({ start: 1024, count: 512, file: hfile }); // MAP_SHARED
  mb.mmap({ start: 1536, count: 512, file: hfile, shared: false, write: true });
  const pfile = new PageCacheFile(mem, { name: 'p', pages: 128, folioOrder: 2 });
  const sfile = new PageCacheFile(mem, { name: 's', pages: 64, shmem: true });
  mb.mmap({ start: 2048, count: 128, file: pfile, shared: false });
  mb.mmap({ start: 2304, count: 64, file: sfile, shared: false });
  mb.mmap({ start: 2560, count: 64, file: sfile }); // shared shmem: not dirty-tracked
  mb.mmap({ start: 4096, count: 2048, huge: true });
  mb.mmap({ start: 6144, count: 1024 }); // anonymous, for mremap and pageout
  const mbHeld: GupResult[] = [];
  const ADVICE = ['dontneed', 'dontfork', 'dofork', 'pageout', 'collapse'] as const;
  const issue13 = (): void => {
    const y = r13.int(0, 99);
    const anon = (): number => (r13.chance(0.5) ? r13.int(4096, 6143) : r13.int(6144, 7167));
    if (y < 22) {
      // Faults, writes and pins over every kind of mapping mb has (COW of private file and
      // hugetlb pages, swap-ins of paged-out ones).
      const at = r13.chance(0.4) ? r13.int(0, 2650) : anon();
      attempt(() => mb.touch(at, r13.int(1, 64), { write: r13.chance(0.6) }));
      attempt(() => mb.touch(r13.int(6144, 7100), r13.int(1, 64), { write: r13.chance(0.8) }));
      if (r13.chance(0.4)) {
        const r = attempt(() => mb.pinUserPagesFast(at, r13.int(1, 16), { write: r13.chance(0.5), longterm: r13.chance(0.3) }));
        if (r !== undefined && r.count > 0) mbHeld.push(r);
      }
    } else if (y < 30 && mbHeld.length > 0) {
      attempt(() => mb.unpinUserPages(mbHeld.splice(r13.int(0, mbHeld.length - 1), 1)[0]!.pfns, { write: false }));
    } else if (y < 50) {
      // madvise of every kind, on mb and on mm (where pins and a file mapping are).
      const advice = ADVICE[r13.int(0, 4)]!;
      const target = r13.chance(0.5) ? mb : mm;
      if (advice === 'collapse') {
        // The huge regions' 2 MiB stretches (mb's at 4096, mm's at 2048), sometimes elsewhere.
        const start = r13.chance(0.9) ? (target === mb ? 4096 : 2048) + 512 * r13.int(0, 3) : 512 * r13.int(0, 15);
        attempt(() => target.madvise({ start, count: 512 * r13.int(1, 2) }, advice));
      } else if (advice === 'pageout' && target === mb && r13.chance(0.7)) {
        // Whole THPs (a folio reaching outside the range stays), or mb's 4 KiB pages.
        if (r13.chance(0.4)) attempt(() => mb.madvise({ start: 4096 + 512 * r13.int(0, 3), count: 512 }, advice));
        else attempt(() => mb.madvise({ start: r13.int(6144, 7000), count: r13.int(16, 256) }, advice));
      } else {
        const start = target === mb ? (r13.chance(0.8) ? anon() : r13.int(0, 2600)) : r13.int(0, 6400);
        attempt(() => target.madvise({ start, count: r13.int(1, 256) }, advice));
      }
    } else if (y < 62) {
      // mremap: grow, shrink, move, MREMAP_FIXED, MREMAP_DONTUNMAP (and refusals).
      const start = r13.chance(0.8) ? r13.int(6144, 7100) : r13.int(0, 2600);
      const count = r13.int(1, 64);
      const k = r13.int(0, 4);
      if (k === 0) attempt(() => mb.mremap({ start, count, newCount: count + r13.int(1, 64) }));
      else if (k === 1) attempt(() => mb.mremap({ start, count, newCount: Math.max(1, count - r13.int(0, 8)) }));
      else if (k === 2) attempt(() => mb.mremap({ start, count, newCount: count + r13.int(0, 600), mayMove: true }));
      else if (k === 3) attempt(() => mb.mremap({ start, count, newCount: count, mayMove: true, fixed: true, newStart: r13.int(6144, 8100) }));
      else attempt(() => mb.mremap({ start, count, newCount: count, mayMove: true, dontUnmap: true }));
      if (r13.chance(0.2)) attempt(() => mm.mremap({ start: r13.int(4096, 5100), count: 16, newCount: 16, mayMove: true, fixed: true, newStart: r13.int(5200, 6000) }));
    } else if (y < 68) {
      attempt(() => (r13.chance(0.5) ? mb : mm).khugepaged({ maxPtesNone: r13.int(0, 511), maxPtesShared: r13.int(0, 512) }));
    } else if (y < 74) {
      // Split THPs (for collapse to collapse) and swap some out.
      const s = 4096 + 512 * r13.int(0, 3) + r13.int(0, 500);
      attempt(() => mb.mprotect({ start: s, count: 1, write: false }));
      attempt(() => mb.mprotect({ start: s, count: 1, write: true }));
    } else if (y < 80) {
      // Private and shared file pages: the files change under the mappings (zap-file).
      if (r13.chance(0.5)) attempt(() => pfile.truncate(r13.int(64, 128)));
      else attempt(() => sfile.punchHole(r13.int(0, 60), r13.int(1, 4)));
    } else if (y < 86) {
      // Hugetlb: the pool's size, more mappings (ENOMEM when it is short), a file's pages.
      const k = r13.int(0, 3);
      if (k === 0) attempt(() => mem.setHugetlbPages(9, r13.int(4, 9)));
      else if (k === 1) attempt(() => mb.mmap({ start: 512 * r13.int(15, 15), count: 512, hugetlb: 9, shared: r13.chance(0.5) }));
      else if (k === 2) {
        const f = attempt(() => new HugetlbFile(mem, { name: 'h2', order: 9, pages: 512 }));
        if (f !== undefined) f.close();
      } else attempt(() => mb.munmap({ start: 7680, count: 512 }));
    } else if (y < 92) {
      // A fork of mb: swap entries, hugetlb and DONTFORK ranges go (or not) with it; the child
      // writes and exits.
      const child = attempt(() => mb.fork());
      if (child !== undefined) {
        spaces.push(child);
        attempt(() => child.touch(r13.int(0, 2600), 8, { write: true }));
        attempt(() => child.touch(anon(), 8, { write: true }));
        attempt(() => child.munmap({ start: 0, count: 8192 }));
      }
    } else {
      // Refused on purpose: hugetlb sizes and orders, mremap and khugepaged arguments.
      attempt(() => mem.setHugetlbPages(9, 1 << 20));
      attempt(() => mb.mmap({ start: 7000, count: 512, hugetlb: 9 }));
      attempt(() => mb.mremap({ start: 6144, count: 4, newCount: 8, mayMove: true, fixed: true, newStart: 6146 }));
      attempt(() => mb.khugepaged({ maxPtesNone: 600 }));
      attempt(() => mb.madvise({ start: 3000, count: 4 }, 'pageout'));
    }
  };
  const held: { kind: 'pin' | 'get' | 'owned' | 'bio' | 'pa'; r: GupResult | Uint32Array; write: boolean; bio?: ReturnType<typeof bioFromUserPages> }[] = [];
  const folios: number[] = [];
  // A device's owner pins a page for reading and writing through the page array, then is
  // dropped: under write-bias one all-or-nothing engine call (unpin-lists, format 4), refused
  // whole when an unpin behind its back took one of its pins first (its pins then stay, leaked).
  const rd = new Rng(seed ^ 0xd0);
  let devices = 0;
  const device = (): void => {
    const tr = mm.translate(rd.int(0, 2047));
    if (tr === null || tr.zeroPage) return;
    const dev = mem.pinOwner(`dev${devices++}`);
    const list = new Uint32Array([tr.pfn, tr.pfn + (rd.chance(0.5) ? 0 : 1)]);
    attempt(() => mem.pinPages(list, { owner: dev }));
    attempt(() => mem.pinPages(list.subarray(0, 1), { owner: dev, write: true }));
    // Behind its back: a batch goes straight to the engine (debug mode's owner tracking would
    // refuse an ownerless unpinPages of an owned pin).
    if (rd.chance(0.4)) mem.submit(new OpBatch().push('unpin', { a: list[0]!, b: 1, flags: ['write'] }).toArray(), { onError: 'continue' });
    attempt(() => dev.drop({ pins: 'release' }));
  };
  for (let i = 0; i < steps; i++) {
    if (r13.chance(0.3)) issue13();
    if (rd.chance(0.04)) device();
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
      for (const op of ['mm-new', 'mmap', 'mmap-file', 'touch', 'pin-user-fast', 'pin-user', 'get-user-fast', 'unpin-user', 'put-user', 'fork', 'munmap', 'migrate', 'compact', 'mprotect', 'zap', 'pin', 'unpin', 'get', 'put', 'try-get', 'set-dirty', 'alloc-folio', ...ISSUE13_OPS]) {
        expect(text, op).toMatch(new RegExp(`^(mm#\\d+ )?${op} `, 'm'));
      }
      // Issue 13's calls, each kind: every advice, mremap's moves, the swap device, shmem.
      for (const advice of ['dontneed', 'dontfork', 'dofork', 'pageout', 'collapse']) expect(text, advice).toMatch(new RegExp(`madvise \\d+ \\d+ ${advice}( |$)`, 'm'));
      for (const f of ['may-move', 'fixed', 'dont-unmap']) expect(text, f).toMatch(new RegExp(`mremap .* ${f}( |$)`, 'm'));
      expect(text).toMatch(/mm-new 8192 thp-orders=4,9 swap=96$/m);
      expect(text).toMatch(/mmap-file-private \d+ \[.*\] write shmem|mmap-file-private \d+ \[.*\] shmem/);
      expect(text).toMatch(/mmap-file \d+ \[.*\] write shmem/);
      expect(text).toMatch(/mmap-hugetlb-file \d+ 9 \[.*\] write shared/);
      expect(text).toMatch(/mremap .* = \d+/); // a move's new start
      expect(text).toMatch(/madvise \d+ \d+ collapse = [1-9]/); // THPs made
      expect(text).toMatch(/ = (EFAULT|ERANGE|EINVAL|EFREE)$/m);
      expect(text).toMatch(/unpin-user \[&\d+/); // output references
      if (scheme === 'write-bias') {
        // Owner drops (format 4): one op each, those refused among them.
        expect(text).toMatch(/^unpin-lists \d+ \d+ \[.*\] = \d+$/m);
        expect(text).toMatch(/^unpin-lists \d+ \d+ \[.*\] = ENOTPINNED$/m);
      }
      const live = stateDigest(mem);
      expect(live.spaceCount).toBe(spaces.length);
      const liveStats = mem.stats();
      const { imbalances: _imbalances, ...nativeStats } = liveStats;
      expect(live.stats).toEqual(nativeStats);
      // The simulation made each kind of decision and refusal that the comparison covers.
      expect(live.mmStats['earlyCowCopies']! + live.mmStats['migratedPages']!).toBeGreaterThan(0);
      for (const k of ['pagedOutPages', 'swapIns', 'remaps', 'remapMovedPages', 'collapses', 'pageoutBusy']) expect(live.mmStats[k], k).toBeGreaterThan(0);
      expect(mem.hugetlbPool(9).total).toBeGreaterThan(0);
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

type Planned = PlannedOp;

function plan(seed: number, n: number): Planned[] {
  const rng = new Rng(seed);
  const out: Planned[] = [{ op: 'mm-new', mm: 1, a: 4096 }, { op: 'mmap', mm: 1, a: 0, b: 1024, flags: ['write', 'populate'] }, { op: 'mmap', mm: 1, a: 1024, b: 1024, flags: ['write', 'huge'] }];
  let nextId = 2;
  const allocated: number[] = [];
  const r13 = new Rng(seed ^ 0x13);
  const rl = new Rng(seed ^ 0x0a);
  const created = [1];
  for (let i = 0; i < n; i++) {
    if (i % 1000 === 500) {
      // A fresh address space: a collapse that makes a THP, a move, swap slots of its own.
      const mm = nextId++;
      created.push(mm);
      out.push({ op: 'mm-new', mm, a: 4096, entries: [32] }, { op: 'mmap', mm, a: 0, b: 512, flags: ['write', 'populate'] });
      out.push({ op: 'madvise', mm, a: 0, b: 512, entries: [4] }, { op: 'madvise', mm, a: 0, b: 64, entries: [3] });
      out.push({ op: 'mremap', mm, a: 0, b: 512, flags: ['mayMove', 'fixed'], entries: [512, 1536] }, { op: 'mremap', mm, a: 1536, b: 64, flags: ['mayMove'], entries: [640, 0xffffffff] });
      out.push({ op: 'madvise', mm, a: 1600, b: 100, entries: [r13.int(0, 2)] }, { op: 'touch', mm, a: 1536, b: 64, flags: ['write'] });
    }
    if (r13.chance(0.12)) {
      // Issue 13's calls (format 3), valid and refused (bad orders, sizes, ranges, limits).
      const y = r13.int(0, 9);
      const mm = r13.chance(0.7) ? 1 : r13.int(1, nextId - 1);
      if (y < 3) out.push({ op: 'madvise', mm, a: r13.chance(0.3) ? 1024 : r13.int(0, 2100), b: r13.chance(0.3) ? 512 * r13.int(1, 2) : r13.int(1, 200), entries: [r13.int(0, 4)] });
      else if (y < 5) {
        const flags: OpFlagName[] = r13.chance(0.6) ? ['mayMove', ...(r13.chance(0.3) ? ['fixed' as const] : r13.chance(0.3) ? ['dontUnmap' as const] : [])] : [];
        const count = r13.int(1, 64);
        out.push({ op: 'mremap', mm, a: r13.int(0, 2100), b: count, flags, entries: [flags.includes('dontUnmap') ? count : r13.int(1, 300), flags.includes('fixed') ? r13.int(2200, 4000) : 0xffffffff] });
      } else if (y < 6) out.push({ op: 'khugepaged', mm, a: r13.int(0, 600), b: r13.int(0, 600) });
      else if (y < 7) out.push({ op: 'hugetlb-pool', a: r13.chance(0.9) ? 9 : r13.int(0, 20), b: r13.int(0, 4) });
      else if (y < 8) out.push({ op: 'hugetlb-alloc', a: r13.chance(0.9) ? 9 : 18, b: r13.int(0, 2) });
      else if (y < 9) out.push({ op: 'mmap-hugetlb', mm, a: r13.chance(0.8) ? 2048 + 512 * r13.int(0, 3) : r13.int(0, 4000), b: 512 * r13.int(0, 1), entries: [r13.chance(0.9) ? 9 : 18], flags: ['write', ...(r13.chance(0.5) ? ['shared' as const] : []), ...(r13.chance(0.5) ? ['populate' as const] : [])] });
      else {
        created.push(nextId);
        out.push({ op: 'mm-new', mm: nextId++, a: 4096, entries: [r13.int(0, 64)] });
      }
    }
    // Mostly the pages the address space holds (ZONE_MOVABLE, the top 2048), some free, some out of range.
    const pfn = rng.chance(0.8) ? rng.int(6100, 8191) : rng.chance(0.5) ? rng.int(0, 6100) : rng.int(0, 2 ** 32 - 1);
    // An owner's drop under write-bias (format 4), of pins held or not: read pins on the first
    // `a`, write pins on the next `b`.
    if (rl.chance(0.03)) {
      const reads = rl.int(0, 2);
      const entries = Array.from({ length: reads + rl.int(0, 2) }, () => pfn + rl.int(0, 1));
      out.push({ op: 'unpin-lists', a: reads, b: entries.length - reads, entries });
    }
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
    // A fork of an mm-new's space (those always exist: a failed fork's child would not, and
    // its fork through the JS API could not even be tried, so no id would be used up there).
    else if (x < 92) out.push({ op: 'fork', mm: created[rng.int(0, created.length - 1)]!, a: nextId++ });
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
      const expected = planned.map((p) => runPlannedOp(a, spaces, p));
      const b = new PageArray(opts);
      const got = b.submit(batch.toArray(), { onError: 'continue' });
      expect([...got]).toEqual(expected);
      // Issue 13's ops (format 3) and unpin-lists (format 4) ran, some done and some refused.
      for (const op of ['madvise', 'mremap', 'khugepaged', 'hugetlb-pool', 'hugetlb-alloc', 'mmap-hugetlb', 'unpin-lists'] as const) {
        const rs = planned.flatMap((p, k) => (p.op === op ? [expected[k]!] : []));
        expect(rs.some((r) => r >= 0), `${op} done`).toBe(true);
        expect(rs.some((r) => r < 0), `${op} refused`).toBe(true);
      }
      expect(planned.some((p, k) => p.op === 'madvise' && p.entries![0] === 4 && expected[k]! > 0), 'a collapse made a THP').toBe(true);
      expect(planned.some((p, k) => p.op === 'mremap' && expected[k]! > 0 && expected[k] !== p.a), 'an mremap moved').toBe(true);
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

