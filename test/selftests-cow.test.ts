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
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, type KernelRuleSet, type Scheme } from '../lib/index.js';

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
}

function world(scheme: Scheme, rules: KernelRuleSet, thpOrders: number[] = [9]): World {
  // The 2019 kernels had no exact pincount: hybrid's pincountMinOrder is the rule set's (null: 31).
  const mem = new PageArray({ pages: 8192, populated: false, scheme, pincountMinOrder: rules === '2019' ? 31 : 1 });
  const mm = new AddressSpace(mem, { pages: 4096, rules, thpOrders });
  return { mem, mm };
}

function pfns(mm: AddressSpace, start: number, count: number): number[] {
  const out: number[] = [];
  for (let v = start; v < start + count; v++) out.push(mm.translate(v)?.pfn ?? -1);
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
    const childView = pfns(child, a.start, a.size); // the child's backup of the content
    if (doMprotect) mprotectRoRw(mm, a);
    write(mm, a);
    // No leak from parent into child.
    expect(pfns(child, a.start, a.size)).toEqual(childView);
    const parent = pfns(mm, a.start, a.size);
    for (let i = 0; i < a.size; i++) expect(parent[i]).not.toBe(childView[i]);
    exit(child);
  };
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
    // No leak into the pipe (mainline); 2019: the parent reused the pipe's pages, the leak.
    expectAll(pfns(mm, a.start, a.size), pipe.pfns, rules === '2019');
    child.putUserPages(pipe.pfns);
    exit(child);
  };
}

/** vmsplice() in the parent (before or after fork), unmap in the parent; the child writes. */
function vmspliceInParent(beforeFork: boolean): AnonTest {
  return ({ mm }, a, rules) => {
    let pipe = beforeFork ? mm.getUserPagesFast(a.start, a.size) : null;
    const child = mm.fork();
    pipe ??= mm.getUserPagesFast(a.start, a.size);
    expect(pipe.count).toBe(a.size);
    mm.munmap({ start: a.start, count: a.size });
    write(child, a);
    // No leak from child into parent (mainline); 2019: the child reused the pipe's pages, the leak.
    expectAll(pfns(child, a.start, a.size), pipe.pfns, rules === '2019');
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
    expect(pfns(mm, a.start, a.size)).toEqual(Array.from(pin.pfns)); // Longterm R/W pin is reliable
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
    expectAll(pfns(mm, a.start, a.size), pin.pfns, !(rules === '2019' && test === 'shared'));
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
              w.mm.mmap({ start: BASE, count: 1, file, private: true });
              w.mm.mmap({ start: BASE + 2, count: 1, file, private: true, write: false });
              w.mm.touch(BASE, 1);
              w.mm.touch(BASE + 2, 1);
              const cachePfn = file.pfnAt(0)!;
              expect(pfns(w.mm, BASE, 3)).toEqual([cachePfn, -1, cachePfn]); // the page cache's page, read-only
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
