// The kernel's tools/testing/selftests/mm/cow.c, translated: every case the model can express,
// named as the selftest names it ("<case> ... with <memory>"), with the selftest's expectation as
// the assertion. Page identity stands for page contents: "the child still reads the old values"
// is "the child maps the pages it mapped before the parent wrote"; "the pin sees the write" is
// "the pinned PFN is the PFN the process writes". Written from the selftest's description of
// each case (no code taken). The inventory of what is not expressed, and why, is below and in
// the README ("Kernel selftests").
//
// Every case runs under every scheme and both rule sets; the expectation differs only where a
// rule changed: the long-term R/O pin of the zero page or of a private file mapping's page-cache
// page (unshared since Linux 6.2), and the anonymous cases that PageAnonExclusive (5.19) fixed:
// the vmsplice() leaks and the R/O pin of a shared page (rules.anonExclusive off under '2019').
import { afterEach, describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, PageCacheFile, SCHEMES, type KernelRuleSet, type Scheme } from '../lib/index.js';

const PMD = 512; // pages of a 2 MiB THP
const BASE = 1024; // a THP-aligned virtual page: the test memory starts here
const RULE_SETS: readonly KernelRuleSet[] = ['mainline', '2019'];

interface World {
  mem: PageArray;
  mm: AddressSpace;
}

/** The test memory of one case: where it starts, how many pages the test function uses. */
interface Area {
  start: number;
  size: number;
  /** Pages per identity sample (hugetlb: 512, one per leaf of a page that is never split). Default 1. */
  step?: number;
  /**
   * hugetlb memory: cow.c marks its four vmsplice() cases XFAIL there ("expected to fail because
   * (a) harder to fix and (b) nobody really cares"): hugetlb_wp reuses a page mapped once whatever
   * references a pipe holds, so they assert the leak. Default false.
   */
  hugetlb?: boolean;
  /**
   * Other pages of the test memory's folio stay mapped outside the area (a partial mremap()
   * moved them), so after fork() both processes still map them. The 2019 kernels' write fault
   * asked the folio's largest subpage mapcount (page_trans_huge_map_swapcount: the maximum over
   * its subpages), 2 there: they copied, so the vmsplice() cases do not leak under '2019' either.
   * Default false.
   */
  foliosSharedOutside?: boolean;
}

/** The worlds a case made: disposed after it (6350 cases would otherwise wait for the GC: 23 GB of RSS in one worker). */
const made: World[] = [];
afterEach(() => {
  for (const w of made.splice(0)) w.mem.dispose();
});

function world(scheme: Scheme, rules: KernelRuleSet, thpOrders: number[] = [9]): World {
  // The 2019 kernels had no exact pincount: hybrid's pincountMinOrder is the rule set's (null: 31).
  const mem = new PageArray({ pages: 8192, populated: false, scheme, pincountMinOrder: rules === '2019' ? 31 : 1 });
  const mm = new AddressSpace(mem, { pages: 4096, rules, thpOrders });
  made.push({ mem, mm });
  return { mem, mm };
}

/** What the process reads there: a read access first (it faults a swapped-out page back in, as the selftest's memcpy/memcmp does), then the pages (every step-th). */
function pfns(mm: AddressSpace, start: number, count: number, step = 1): number[] {
  mm.touch(start, count);
  const out: number[] = [];
  for (let v = start; v < start + count; v += step) out.push(mm.translate(v)?.pfn ?? -1);
  return out;
}

/** Every step-th entry of a gup result (as pfns() samples the mapping). */
function sample(list: Uint32Array, step = 1): number[] {
  const out: number[] = [];
  for (let i = 0; i < list.length; i += step) out.push(list[i]!);
  return out;
}

/** A child's exit: it unmaps everything. */
function exit(child: AddressSpace): void {
  child.munmap({ start: 0, count: child.pages });
}

/** mprotect(PROT_READ) then mprotect(PROT_READ|PROT_WRITE): entries stay read-only until a write fault. */
function mprotectRoRw(mm: AddressSpace, a: Area): void {
  mm.mprotect({ start: a.start, count: a.size, write: false });
  mm.mprotect({ start: a.start, count: a.size, write: true });
}

/** memset(mem, 0xff, size): a write access to every page. */
function write(mm: AddressSpace, a: Area): void {
  mm.touch(a.start, a.size, { write: true });
}

// ---- the memory types of anonymous private mappings (run_anon_test_case) --------------------

interface AnonMemory {
  name: string;
  /** The THP sizes enabled (the selftest enables the one it tests and disables the PMD size). */
  thpOrders?: number[];
  setup(w: World): Area;
}

/** A populated THP of 2^order pages at BASE (a mapping of twice its size, as the selftest maps for alignment). */
function thp(w: World, order: number): Area {
  const size = 1 << order;
  w.mm.mmap({ start: BASE, count: 2 * size, huge: true });
  w.mm.touch(BASE, 1, { write: true }); // mem[0] = 1: faults the whole THP
  expect(w.mm.translate(BASE + size - 1)).not.toBeNull(); // "Did not get a THP populated" otherwise
  expect(w.mem.folioOrder(w.mm.translate(BASE)!.pfn)).toBe(order);
  w.mm.touch(BASE, size, { write: true }); // memset(mem, 1, thpsize)
  return { start: BASE, size };
}

/** The memory types run_anon_test_case runs for one THP size (order 9: the PMD size). */
function thpMemories(order: number): AnonMemory[] {
  const size = 1 << order;
  const label = `(${4 << order} kB)`;
  const orders = [order];
  const types: AnonMemory[] = [];
  if (order === 9) types.push({ name: `THP ${label}`, thpOrders: orders, setup: (w) => thp(w, order) });
  types.push(
    {
      name: `PTE-mapped THP ${label}`,
      thpOrders: orders,
      setup: (w) => {
        const a = thp(w, order);
        w.mm.mprotect({ start: a.start + 1, count: 1, write: false }); // PTE-maps a PMD THP
        w.mm.mprotect({ start: a.start + 1, count: 1, write: true });
        expect(w.mm.translate(a.start)?.huge).toBe(false);
        return a;
      },
    },
    {
      name: `single PTE of THP ${label}`,
      thpOrders: orders,
      setup: (w) => {
        const a = thp(w, order);
        w.mm.madvise({ start: a.start + 1, count: size - 1 }, 'dontneed'); // all but one subpage
        expect(w.mm.translate(a.start + 1)).toBeNull();
        return { start: a.start, size: 1 };
      },
    },
    {
      name: `partially shared THP ${label}`,
      thpOrders: orders,
      setup: (w) => {
        const a = thp(w, order);
        // Share the first page with a child that quits: the rest of the THP was never shared.
        w.mm.madvise({ start: a.start + 1, count: size - 1 }, 'dontfork');
        const child = w.mm.fork();
        expect(child.translate(a.start + 1)).toBeNull();
        exit(child);
        w.mm.madvise({ start: a.start + 1, count: size - 1 }, 'dofork');
        return a;
      },
    },
  );
  return types;
}

const ANON_MEMORY: readonly AnonMemory[] = [
  {
    name: 'base page',
    setup: (w) => {
      w.mm.mmap({ start: BASE, count: 1 });
      w.mm.touch(BASE, 1, { write: true });
      return { start: BASE, size: 1 };
    },
  },
  // The THP sizes of an mTHP kernel, orders 2..9 (16 kB .. 2048 kB), smallest first as detected.
  ...[2, 3, 4, 5, 6, 7, 8, 9].flatMap(thpMemories),
];

// ---- the anonymous test cases (anon_test_cases) -------------------------------------------------

type AnonTest = (w: World, a: Area, rules: KernelRuleSet) => void;

/**
 * Under rules '2019' (anonExclusive off: the kernels before PageAnonExclusive, 5.19) a write
 * fault reuses a page its mapcount says is mapped once, whatever references a pipe holds, and a
 * R/O pin takes a COW-shared page as it is. The vmsplice() cases then leak (CVE-2020-29374: the
 * write lands in the page the pipe holds) and the R/O pin of a shared page never sees the write:
 * the selftest itself fails on such a kernel, and these assert what that kernel does instead.
 */
function expectAll(a: readonly number[], b: ArrayLike<number>, same: boolean): void {
  for (let i = 0; i < a.length; i++) {
    if (same) expect(a[i]).toBe(b[i]);
    else expect(a[i]).not.toBe(b[i]);
  }
}

/** Basic COW: the parent writes after fork(); the child must still read the old pages. */
function cowInParent(doMprotect: boolean): AnonTest {
  return ({ mm }, a) => {
    const child = mm.fork();
    const childView = pfns(child, a.start, a.size, a.step); // the child's backup of the content
    if (doMprotect) mprotectRoRw(mm, a);
    write(mm, a);
    // No leak from parent into child.
    expect(pfns(child, a.start, a.size, a.step)).toEqual(childView);
    const parent = pfns(mm, a.start, a.size, a.step);
    for (let i = 0; i < parent.length; i++) expect(parent[i]).not.toBe(childView[i]);
    exit(child);
  };
}

/**
 * Whether the 2019 kernels (no PageAnonExclusive) reused the pipe's pages on the write, the
 * CVE-2020-29374 leak: every subpage of the written folio mapped once. Mainline never does.
 */
function leaks2019(rules: KernelRuleSet, a: Area): boolean {
  return rules === '2019' && a.foliosSharedOutside !== true;
}

/** vmsplice() (R/O FOLL_GET) + unmap in the child; the parent writes: the pipe keeps the old pages. */
function vmspliceInChild(doMprotect: boolean): AnonTest {
  return ({ mm }, a, rules) => {
    const child = mm.fork();
    const pipe = child.getUserPagesFast(a.start, a.size);
    expect(pipe.count).toBe(a.size);
    child.munmap({ start: a.start, count: a.size });
    if (doMprotect) mprotectRoRw(mm, a);
    write(mm, a);
    // No leak into the pipe (mainline); 2019, and hugetlb (XFAIL): the parent reused the pipe's pages, the leak.
    expectAll(pfns(mm, a.start, a.size, a.step), sample(pipe.pfns, a.step), leaks2019(rules, a) || a.hugetlb === true);
    child.putUserPages(pipe.pfns);
    exit(child);
  };
}

/** vmsplice() in the parent (before or after fork), unmap in the parent; the child writes. */
function vmspliceInParent(beforeFork: boolean): AnonTest {
  return ({ mm }, a, rules) => {
    pfns(mm, a.start, a.size); // memcpy(old, mem, size)
    let pipe = beforeFork ? mm.getUserPagesFast(a.start, a.size) : null;
    const child = mm.fork();
    pipe ??= mm.getUserPagesFast(a.start, a.size);
    expect(pipe.count).toBe(a.size);
    mm.munmap({ start: a.start, count: a.size });
    write(child, a);
    // No leak from child into parent (mainline); 2019, and hugetlb (XFAIL): the child reused the pipe's pages, the leak.
    expectAll(pfns(child, a.start, a.size, a.step), sample(pipe.pfns, a.step), leaks2019(rules, a) || a.hugetlb === true);
    mm.putUserPages(pipe.pfns);
    exit(child);
  };
}

/** An io_uring fixed buffer: a R/W long-term pin; then R/O-map (or fork), write: the pin sees it. */
function iouring(useFork: boolean): AnonTest {
  return ({ mm }, a) => {
    const pin = mm.pinUserPagesFast(a.start, a.size, { write: true, longterm: true });
    expect(pin.count).toBe(a.size);
    const child = useFork ? mm.fork() : null;
    if (!useFork) mprotectRoRw(mm, a);
    write(mm, a);
    expect(pfns(mm, a.start, a.size, a.step)).toEqual(sample(pin.pfns, a.step)); // Longterm R/W pin is reliable
    if (child !== null) exit(child);
    mm.unpinUserPages(pin.pfns, { write: true });
  };
}

type RoPinTest = 'plain' | 'shared' | 'previously shared' | 'ro exclusive';

/** A long-term R/O pin (GUP or GUP-fast); then the process writes: the pin must see it. */
function roPin(test: RoPinTest, fast: boolean): AnonTest {
  return ({ mm }, a, rules) => {
    let child: AddressSpace | null = null;
    if (test === 'shared' || test === 'previously shared') child = mm.fork();
    if (test === 'previously shared') {
      exit(child!); // mapped R/O in our page table, no longer shared
      child = null;
    }
    if (test === 'ro exclusive') mprotectRoRw(mm, a);
    const pin = fast ? mm.pinUserPagesFast(a.start, a.size, { longterm: true }) : mm.pinUserPages(a.start, a.size, { longterm: true });
    expect(pin.count).toBe(a.size);
    write(mm, a);
    // Longterm R/O pin is reliable (mainline); 2019 pinned the shared page, and the write copied it.
    expectAll(pfns(mm, a.start, a.size, a.step), sample(pin.pfns, a.step), !(rules === '2019' && test === 'shared'));
    mm.unpinUserPages(pin.pfns);
    if (child !== null) exit(child);
  };
}

const ANON_CASES: readonly [string, AnonTest][] = [
  ['Basic COW after fork()', cowInParent(false)],
  ['Basic COW after fork() with mprotect() optimization', cowInParent(true)],
  ['vmsplice() + unmap in child', vmspliceInChild(false)],
  ['vmsplice() + unmap in child with mprotect() optimization', vmspliceInChild(true)],
  ['vmsplice() before fork(), unmap in parent after fork()', vmspliceInParent(true)],
  ['vmsplice() + unmap in parent after fork()', vmspliceInParent(false)],
  ['R/O-mapping a page registered as iouring fixed buffer', iouring(false)],
  ['fork() with an iouring fixed buffer', iouring(true)],
  ['R/O GUP pin on R/O-mapped shared page', roPin('shared', false)],
  ['R/O GUP-fast pin on R/O-mapped shared page', roPin('shared', true)],
  ['R/O GUP pin on R/O-mapped previously-shared page', roPin('previously shared', false)],
  ['R/O GUP-fast pin on R/O-mapped previously-shared page', roPin('previously shared', true)],
  ['R/O GUP pin on R/O-mapped exclusive page', roPin('ro exclusive', false)],
  ['R/O GUP-fast pin on R/O-mapped exclusive page', roPin('ro exclusive', true)],
];

// ---- the non-anonymous cases (non_anon_test_cases) with the shared zero page ---------------------

type ZeroTest = (w: World, mem: number, smem: number, rules: KernelRuleSet) => void;

/** R/O long-term pin of the zero page: mainline (6.2) unshares, so the pin sees the write; 2019 pins the zero page. */
function zeroRoPin(fast: boolean): ZeroTest {
  return ({ mm, mem: pa }, mem, _smem, rules) => {
    const pin = fast ? mm.pinUserPagesFast(mem, 1, { longterm: true }) : mm.pinUserPages(mem, 1, { longterm: true });
    expect(pin.count).toBe(1);
    write(mm, { start: mem, size: 1 });
    if (rules === 'mainline') {
      expect(pfns(mm, mem, 1)).toEqual(Array.from(pin.pfns)); // Longterm R/O pin is reliable
    } else {
      expect(pin.pfns[0]).toBe(pa.zeroPfn); // 2019: the pin holds the zero page ...
      expect(pfns(mm, mem, 1)[0]).not.toBe(pin.pfns[0]); // ... and never sees the write
    }
    mm.unpinUserPages(pin.pfns);
  };
}

const ZERO_CASES: readonly [string, ZeroTest][] = [
  [
    'Basic COW',
    ({ mm, mem: pa }, mem, smem) => {
      const old = pfns(mm, smem, 1);
      write(mm, { start: mem, size: 1 });
      expect(pfns(mm, smem, 1)).toEqual(old); // Other mapping not modified
      expect(mm.translate(smem)?.pfn).toBe(pa.zeroPfn);
      expect(mm.translate(mem)?.pfn).not.toBe(pa.zeroPfn);
    },
  ],
  ['R/O longterm GUP pin', zeroRoPin(false)],
  ['R/O longterm GUP-fast pin', zeroRoPin(true)],
];

// ---- the non-anonymous cases with private file mappings: memfd and tmpfile ------------------------

interface FileMemory {
  name: string;
  /** memfd is shmem; tmpfile a regular file of a dirty-tracked file system (ext4/xfs/btrfs /tmp). */
  shmem: boolean;
}

const FILE_MEMORY: readonly FileMemory[] = [
  { name: 'memfd', shmem: true },
  { name: 'tmpfile', shmem: false },
];

type FileTest = (w: World, mem: number, smem: number, rules: KernelRuleSet, cachePfn: number) => void;

/**
 * R/O long-term pin of a private file mapping's page-cache page: mainline (6.2) unshares it to
 * an anonymous page, which the write then reuses, so the pin sees the write; 2019 pins the
 * page-cache page itself, and the write copies it (the pin never sees the write).
 */
function fileRoPin(fast: boolean): FileTest {
  return ({ mm }, mem, _smem, rules, cachePfn) => {
    const pin = fast ? mm.pinUserPagesFast(mem, 1, { longterm: true }) : mm.pinUserPages(mem, 1, { longterm: true });
    expect(pin.count).toBe(1);
    write(mm, { start: mem, size: 1 });
    if (rules === 'mainline') {
      expect(pfns(mm, mem, 1)).toEqual(Array.from(pin.pfns)); // Longterm R/O pin is reliable
      expect(pin.pfns[0]).not.toBe(cachePfn); // an anonymous copy, not the page cache's page
    } else {
      expect(pin.pfns[0]).toBe(cachePfn); // 2019: the pin holds the page-cache page ...
      expect(pfns(mm, mem, 1)[0]).not.toBe(pin.pfns[0]); // ... and never sees the write
    }
    mm.unpinUserPages(pin.pfns);
  };
}

const FILE_CASES: readonly [string, FileTest][] = [
  [
    'Basic COW',
    ({ mm }, mem, smem, _rules, cachePfn) => {
      write(mm, { start: mem, size: 1 });
      expect(pfns(mm, smem, 1)).toEqual([cachePfn]); // Other mapping not modified
      expect(mm.translate(smem)?.pageCache).toBe(true);
      expect(mm.translate(mem)?.pfn).not.toBe(cachePfn); // the writer got a private copy
      expect(mm.translate(mem)?.pageCache).toBeUndefined();
    },
  ],
  ['R/O longterm GUP pin', fileRoPin(false)],
  ['R/O longterm GUP-fast pin', fileRoPin(true)],
];

/** Nothing stays pinned or referenced beyond the mappings once a case has cleaned up. */
function expectBalanced(w: World): void {
  const s = w.mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
  w.mm.munmap({ start: 0, count: w.mm.pages });
  expect(w.mem.freePages()).toBe(w.mem.pages - (w.mem.zeroPfn === null ? 0 : 1));
}

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`cow.c, scheme ${scheme}, rules ${rules}`, () => {
      describe('Anonymous memory tests in private mappings', () => {
        for (const [name, fn] of ANON_CASES) {
          for (const m of ANON_MEMORY) {
            it(`${name} ... with ${m.name}`, () => {
              const w = world(scheme, rules, m.thpOrders);
              fn(w, m.setup(w), rules);
              expectBalanced(w);
            });
          }
        }
      });
      describe('Non-anonymous memory tests in private mappings', () => {
        for (const [name, fn] of ZERO_CASES) {
          it(`${name} ... with shared zeropage`, () => {
            const w = world(scheme, rules);
            w.mm.mmap({ start: BASE, count: 1 }); // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANON
            w.mm.mmap({ start: BASE + 2, count: 1, write: false }); // PROT_READ
            w.mm.touch(BASE, 1);
            w.mm.touch(BASE + 2, 1); // a read of each populates the shared zero page
            expect(w.mm.translate(BASE)?.zeroPage).toBe(true);
            fn(w, BASE, BASE + 2, rules);
            expectBalanced(w);
          });
        }
        for (const [name, fn] of FILE_CASES) {
          for (const f of FILE_MEMORY) {
            it(`${name} ... with ${f.name}`, () => {
              const w = world(scheme, rules);
              // ftruncate + fallocate one page; mmap it MAP_PRIVATE twice, R/W and R/O; read both.
              const file = new PageCacheFile(w.mem, { name: 'test', pages: 1, shmem: f.shmem });
              w.mm.mmap({ start: BASE, count: 1, file, shared: false });
              w.mm.mmap({ start: BASE + 2, count: 1, file, shared: false, write: false });
              w.mm.touch(BASE, 1);
              w.mm.touch(BASE + 2, 1);
              const cachePfn = file.pfnAt(0)!;
              expect([BASE, BASE + 1, BASE + 2].map((v) => w.mm.translate(v)?.pfn ?? -1)).toEqual([cachePfn, -1, cachePfn]); // the page cache's page, read-only (BASE + 1: a hole, not touched)
              expect(w.mm.translate(BASE)?.writable).toBe(false);
              fn(w, BASE, BASE + 2, rules, cachePfn);
              w.mm.munmap({ start: 0, count: w.mm.pages });
              file.truncate(0); // close(fd): the page cache gives its page back
              expectBalanced(w);
            });
          }
        }
      });
    });
  }
}

// ---- the non-anonymous cases with the huge zero page (run_with_huge_zeropage) ------------------
// A R/W and a R/O private anonymous mapping, each 2 MiB-aligned with MADV_HUGEPAGE, read once:
// the read faults map the huge zero folio by a PMD leaf (the selftest checks that a second
// subpage is populated too). The case functions then run over the whole 2 MiB (pmdsize).
// Mainline replaces the leaf on the write, or on the long-term R/O pin's unshare, by a fresh
// THP (do_huge_zero_wp_pmd); 2019 pins the huge zero folio itself and never sees the write.

/** R/O long-term pin of the huge zero folio's 2 MiB: as zeroRoPin, 512 pages at once. */
function hugeZeroRoPin(fast: boolean): ZeroTest {
  return ({ mm, mem: pa }, mem, _smem, rules) => {
    const pin = fast ? mm.pinUserPagesFast(mem, PMD, { longterm: true }) : mm.pinUserPages(mem, PMD, { longterm: true });
    expect(pin.count).toBe(PMD);
    write(mm, { start: mem, size: PMD });
    if (rules === 'mainline') {
      expect(pfns(mm, mem, PMD)).toEqual(Array.from(pin.pfns)); // Longterm R/O pin is reliable
      expect(pa.folioOrder(pin.pfns[0]!)).toBe(9); // unshared to a fresh THP, which the write reuses
    } else {
      expect(Array.from(pin.pfns)).toEqual(Array.from({ length: PMD }, (_, k) => pa.hugeZeroPfn! + k)); // 2019: the pin holds the huge zero folio ...
      expect(pfns(mm, mem, PMD)).not.toContain(pin.pfns[0]); // ... and never sees the write
    }
    mm.unpinUserPages(pin.pfns);
  };
}

const HUGE_ZERO_CASES: readonly [string, ZeroTest][] = [
  [
    'Basic COW',
    ({ mm, mem: pa }, mem, smem) => {
      const old = pfns(mm, smem, PMD);
      write(mm, { start: mem, size: PMD }); // memset(mem, 0xff, pmdsize)
      expect(pfns(mm, smem, PMD)).toEqual(old); // Other mapping not modified
      expect(old[0]).toBe(pa.hugeZeroPfn);
      expect(mm.translate(mem)?.zeroPage).toBe(false); // the writer got a THP of its own
      expect(mm.translate(mem)?.huge).toBe(true);
    },
  ],
  ['R/O longterm GUP pin', hugeZeroRoPin(false)],
  ['R/O longterm GUP-fast pin', hugeZeroRoPin(true)],
];

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`cow.c huge zeropage, scheme ${scheme}, rules ${rules}`, () => {
      describe('Non-anonymous memory tests in private mappings', () => {
        for (const [name, fn] of HUGE_ZERO_CASES) {
          it(`${name} ... with huge zeropage`, () => {
            const w = world(scheme, rules);
            const mem = BASE, smem = BASE + 2 * PMD;
            w.mm.mmap({ start: mem - PMD, count: 2 * PMD, huge: true }); // PROT_READ|PROT_WRITE, MADV_HUGEPAGE
            w.mm.mmap({ start: smem - PMD, count: 2 * PMD, huge: true, write: false }); // PROT_READ
            w.mm.touch(mem, 1);
            w.mm.touch(smem, 1); // FORCE_READ(*mem), FORCE_READ(*smem)
            for (const v of [mem + 1, smem + 1]) expect(w.mm.translate(v)).toMatchObject({ pfn: w.mem.hugeZeroPfn! + 1, zeroPage: true, huge: true }); // else "Did not get THPs populated"
            fn(w, mem, smem, rules);
            const s = w.mem.stats();
            expect(s.pinAcquired).toBe(s.pinReleased);
            w.mm.munmap({ start: 0, count: w.mm.pages });
            expect(w.mem.freePages()).toBe(w.mem.pages - 1 - PMD); // all back but the zero page and the huge zero folio
          });
        }
      });
    });
  }
}

// ---- the swapped-out memory types (run_with_base_page_swap, run_with_thp_swap,
// run_with_pte_mapped_thp_swap, run_with_single_pte_of_thp_swap) ------------------------------
//
// The same setups, then MADV_PAGEOUT of the test memory, verified as the selftest verifies it
// (range_is_swapped: pagemap reports every page swapped, here AddressSpace.swapEntry). The cases
// then fault the pages back in: the process's reads (pfns) and writes, the pins' and vmsplice's
// gup slow paths. Run under every scheme with mainline's rules: no rule that differs in 2019
// touches a swapped-out page (the zero-page rule concerns untouched pages).

/** MADV_PAGEOUT of the test memory; "MADV_PAGEOUT did not work" otherwise. */
function pageout(w: World, a: Area): Area {
  w.mm.madvise({ start: a.start, count: a.size }, 'pageout');
  for (let v = a.start; v < a.start + a.size; v++) expect(w.mm.swapEntry(v)).not.toBeNull(); // range_is_swapped
  expect(w.mm.translate(a.start)).toBeNull();
  return a;
}

/** The swapped-out variants run_anon_test_case runs for one THP size. */
function swappedThpMemories(order: number): AnonMemory[] {
  const label = `(${4 << order} kB)`;
  const plain = thpMemories(order);
  const pteMapped = plain.find((m) => m.name.startsWith('PTE-mapped'))!;
  const singlePte = plain.find((m) => m.name.startsWith('single PTE'))!;
  const types: AnonMemory[] = [];
  if (order === 9) types.push({ name: `swapped-out THP ${label}`, thpOrders: [order], setup: (w) => pageout(w, thp(w, order)) });
  types.push(
    { name: `swapped-out, PTE-mapped THP ${label}`, thpOrders: [order], setup: (w) => pageout(w, pteMapped.setup(w)) },
    { name: `single PTE of swapped-out THP ${label}`, thpOrders: [order], setup: (w) => pageout(w, singlePte.setup(w)) },
  );
  return types;
}

const SWAPPED_ANON_MEMORY: readonly AnonMemory[] = [
  { name: 'swapped out base page', setup: (w) => pageout(w, ANON_MEMORY[0]!.setup(w)) },
  ...[2, 3, 4, 5, 6, 7, 8, 9].flatMap(swappedThpMemories),
];

for (const scheme of SCHEMES) {
  describe(`cow.c swapped out, scheme ${scheme}, rules mainline`, () => {
    describe('Anonymous memory tests in private mappings', () => {
      for (const [name, fn] of ANON_CASES) {
        for (const m of SWAPPED_ANON_MEMORY) {
          it(`${name} ... with ${m.name}`, () => {
            const w = world(scheme, 'mainline', m.thpOrders);
            fn(w, m.setup(w), 'mainline');
            expectBalanced(w);
            expect(w.mm.swapUsage()).toMatchObject({ used: 0, cached: 0 }); // every slot free again
            w.mem.dispose(); // native memory back now, not at the next GC (1260 cases)
          });
        }
      }
    });
  });
}

// ---- issue 13: the partially mremap()'ed THP memory type, and the anonymous THP collapse cases ----
// (blocks of their own; the cases above count without them.)

/** mremap() the upper half of a THP of 2^order pages elsewhere (MREMAP_MAYMOVE|MREMAP_FIXED over a fresh PROT_NONE mapping): the test runs on the lower half. */
function partialMremapThp(order: number): AnonMemory {
  const size = 1 << order;
  return {
    name: `partially mremap()'ed THP (${4 << order} kB)`,
    thpOrders: [order],
    setup: (w) => {
      const a = thp(w, order);
      const half = size / 2;
      const away = 3072; // mremap_mem = mmap(NULL, half, PROT_NONE, ...): somewhere free
      w.mm.mmap({ start: away, count: half, write: false });
      const at = w.mm.mremap({ start: a.start + half, count: half, newCount: half, mayMove: true, fixed: true, newStart: away });
      expect(at).toBe(away);
      expect(w.mm.translate(away)?.pfn).toBe(w.mm.translate(a.start)!.pfn + half); // the folio's upper half, moved
      return { start: a.start, size: half, foliosSharedOutside: true };
    },
  };
}

const PARTIAL_MREMAP_MEMORY: readonly AnonMemory[] = [2, 3, 4, 5, 6, 7, 8, 9].map(partialMremapThp);

type CollapseTest = 'unshared' | 'fully shared' | 'lower shared' | 'upper shared';

/** do_test_anon_thp_collapse: PTE-map a PMD THP, MADV_COLLAPSE before or after fork(), the parent writes; the child must still read the old pages. */
function anonThpCollapse(test: CollapseTest): AnonTest {
  return ({ mm }, a) => {
    const half = a.size / 2;
    mprotectRoRwOne(mm, a.start + 1); // PTE-map the THP, so that it can be collapsed
    expect(mm.translate(a.start)?.huge).toBe(false);
    if (test === 'unshared') mm.madvise({ start: a.start, count: a.size }, 'collapse'); // before COW-sharing
    if (test === 'lower shared') mm.madvise({ start: a.start + half, count: half }, 'dontfork');
    if (test === 'upper shared') mm.madvise({ start: a.start, count: half }, 'dontfork');
    const child = mm.fork();
    const checked: Area = test === 'lower shared' ? { start: a.start, size: half } : test === 'upper shared' ? { start: a.start + half, size: half } : a;
    const childView = pfns(child, checked.start, checked.size); // the child's backup
    if (test === 'lower shared' || test === 'upper shared') mm.madvise({ start: a.start, count: a.size }, 'dofork');
    if (test === 'fully shared') {
      // Every entry is fork's write-protected one: the kernel's MADV_COLLAPSE fails with EINVAL
      // (SCAN_PAGE_RO), and cow.c reports this case as SKIP ("MADV_COLLAPSE failed"). Its
      // expectation is that answer, with nothing changed.
      const before = pfns(mm, a.start, a.size);
      expect(() => mm.madvise({ start: a.start, count: a.size }, 'collapse')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      expect(pfns(mm, a.start, a.size)).toEqual(before);
      exit(child);
      return;
    }
    if (test !== 'unshared') mm.madvise({ start: a.start, count: a.size }, 'collapse'); // before anyone modified the COW-shared page
    expect(mm.translate(a.start)?.huge).toBe(true);
    write(mm, a); // memset(mem, 0xff, size)
    // No leak from parent into child.
    expect(pfns(child, checked.start, checked.size)).toEqual(childView);
    const parent = pfns(mm, checked.start, checked.size);
    for (let i = 0; i < checked.size; i++) expect(parent[i]).not.toBe(childView[i]);
    exit(child);
  };
}

/** mprotect(PROT_READ) then mprotect(PROT_READ|PROT_WRITE) of one page. */
function mprotectRoRwOne(mm: AddressSpace, page: number): void {
  mm.mprotect({ start: page, count: 1, write: false });
  mm.mprotect({ start: page, count: 1, write: true });
}

const ANON_THP_CASES: readonly [string, AnonTest][] = [
  ['Basic COW after fork() when collapsing before fork()', anonThpCollapse('unshared')],
  ['Basic COW after fork() when collapsing after fork() (fully shared)', anonThpCollapse('fully shared')],
  ['Basic COW after fork() when collapsing after fork() (lower shared)', anonThpCollapse('lower shared')],
  ['Basic COW after fork() when collapsing after fork() (upper shared)', anonThpCollapse('upper shared')],
];

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`cow.c (issue 13 memory), scheme ${scheme}, rules ${rules}`, () => {
      describe('Anonymous memory tests in private mappings', () => {
        for (const [name, fn] of ANON_CASES) {
          for (const m of PARTIAL_MREMAP_MEMORY) {
            it(`${name} ... with ${m.name}`, () => {
              const w = world(scheme, rules, m.thpOrders);
              fn(w, m.setup(w), rules);
              expectBalanced(w);
            });
          }
        }
      });
      describe('Anonymous THP tests', () => {
        for (const [name, fn] of ANON_THP_CASES) {
          it(name, () => {
            const w = world(scheme, rules, [9]);
            fn(w, thp(w, 9), rules); // do_run_with_thp(THP_RUN_PMD, pmdsize)
            expectBalanced(w);
          });
        }
      });
    });
  }
}

// ---- hugetlb (run_with_hugetlb, run_with_memfd_hugetlb) -----------------------------------------
// The 14 anonymous cases with MAP_PRIVATE|MAP_HUGETLB memory of each size, and the 3
// non-anonymous cases with a private mapping of a memfd_create(MFD_HUGETLB) file beside a
// read-only shared one. The selftest runs each with a pool of (at least) two free pages of the
// size, so that COW and unsharing have a page to copy into; so does this. A hugetlb page is
// never split, so page identity is checked once per 2 MiB leaf (a 1 GiB page's 512 leaves
// each map their part of the one folio). One page array per scheme and size is reused by every
// case (its pool must be whole again after each); the expectations are the same under both
// rule sets (the rules that differ concern the zero page), so the cases run under mainline's.

interface HugeWorld extends World {
  order: 9 | 18;
}

const hugeArrays = new Map<string, PageArray>();

function hugeWorld(scheme: Scheme, order: 9 | 18): HugeWorld {
  const key = `${scheme}/${order}`;
  let mem = hugeArrays.get(key);
  if (mem === undefined) {
    mem = new PageArray({ pages: 2 * (1 << order) + 4096, populated: false, scheme });
    mem.setHugetlbPages(order, 2); // the selftest's two free huge pages
    hugeArrays.set(key, mem);
  }
  const mm = new AddressSpace(mem, { pages: 2 * (1 << order) });
  return { mem, mm, order };
}

/** One PFN per 2 MiB leaf (hugetlb pages are never split: the leaves stand for every page). */
function leafPfns(mm: AddressSpace, start: number, count: number): number[] {
  const out: number[] = [];
  for (let v = start; v < start + count; v += PMD) out.push(mm.translate(v)?.pfn ?? -1);
  return out;
}

/** Every hugetlb page back in the pool, nothing reserved, every pin released; the mm unmapped. */
function expectHugeBalanced(w: HugeWorld): void {
  w.mm.munmap({ start: 0, count: w.mm.pages });
  w.mm.dispose();
  const s = w.mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
  const pool = w.mem.hugetlbPool(w.order);
  expect(pool).toMatchObject({ total: 2, free: 2, reserved: 0, used: 0 });
}

for (const scheme of SCHEMES) {
  describe(`cow.c hugetlb, scheme ${scheme}`, () => {
    for (const order of [9, 18] as const) {
      const label = `(${4 << order} kB)`;
      describe(`Anonymous memory tests in private mappings, hugetlb ${label}`, () => {
        for (const [name, fn] of ANON_CASES) {
          it(`${name} ... with hugetlb ${label}`, () => {
            const w = hugeWorld(scheme, order);
            const size = 1 << order;
            w.mm.mmap({ start: 0, count: size, hugetlb: order }); // MAP_PRIVATE|MAP_ANON|MAP_HUGETLB
            expect(w.mem.hugetlbPool(order).reserved).toBe(1); // reserved at mmap
            w.mm.touch(0, size, { write: true }); // memset(mem, 1, hugetlbsize)
            expect(w.mem.folioOrder(w.mm.translate(0)!.pfn)).toBe(order);
            fn(w, { start: 0, size, step: PMD, hugetlb: true }, 'mainline'); // hugeWorld: mainline (no rule differs for hugetlb)
            expectHugeBalanced(w);
          });
        }
      });
      describe(`Non-anonymous memory tests in private mappings, memfd hugetlb ${label}`, () => {
        for (const [name] of ZERO_CASES) {
          it(`${name} ... with memfd hugetlb ${label}`, () => {
            const w = hugeWorld(scheme, order);
            const size = 1 << order;
            const file = new HugetlbFile(w.mem, { name: 'test', order, pages: size }); // fallocate
            const mem = 0;
            const smem = size;
            w.mm.mmap({ start: mem, count: size, file, shared: false }); // PROT_READ|PROT_WRITE, MAP_PRIVATE
            w.mm.mmap({ start: smem, count: size, file, write: false }); // PROT_READ, MAP_SHARED
            w.mm.touch(mem, 1);
            w.mm.touch(smem, 1); // fault the page in (both map the file's page)
            const filePfn = file.pfnAt(0);
            expect(leafPfns(w.mm, mem, size)).toEqual(leafPfns(w.mm, smem, size));
            if (name === 'Basic COW') {
              write(w.mm, { start: mem, size });
              expect(leafPfns(w.mm, smem, size)).toEqual(Array.from({ length: size / PMD }, (_, i) => filePfn + i * PMD)); // Other mapping not modified
              expect(w.mm.translate(mem)!.pfn).not.toBe(filePfn);
            } else {
              const fast = name === 'R/O longterm GUP-fast pin';
              const pin = fast ? w.mm.pinUserPagesFast(mem, size, { longterm: true }) : w.mm.pinUserPages(mem, size, { longterm: true });
              expect(pin.count).toBe(size);
              write(w.mm, { start: mem, size });
              // Longterm R/O pin is reliable: the pin holds the page the process now writes.
              expect(leafPfns(w.mm, mem, size)).toEqual(Array.from({ length: size / PMD }, (_, i) => pin.pfns[i * PMD]));
              expect(pin.pfns[0]).not.toBe(filePfn); // unshared from the page cache first
              w.mm.unpinUserPages(pin.pfns);
            }
            w.mm.munmap({ start: 0, count: w.mm.pages });
            file.close();
            expectHugeBalanced(w);
          });
        }
      });
    }
  });
}
