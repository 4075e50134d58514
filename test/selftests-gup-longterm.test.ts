// The kernel's tools/testing/selftests/mm/gup_longterm.c, translated: every case the model can
// express, named as the selftest names it ("<case> ... with <file>"), with the selftest's
// expectation as the assertion: R/O long-term pins always work; R/W long-term pins of a
// MAP_SHARED file mapping work only on file systems without dirty tracking by write faults
// (tmpfs/memfd, hugetlbfs) and fail with EFAULT elsewhere (Linux 6.5). Under rules '2019' every
// such pin works (what the 2019 kernels did). Written from the selftest's description of each
// case (no code taken); the inventory of the rest is in the README ("Kernel selftests").
//
// Memory: memfd is a shmem PageCacheFile; tmpfile and local tmpfile are regular files of a
// file system that needs dirty tracking (the selftest's ext4/xfs/btrfs, which is what /tmp is on
// a typical test machine; the model has no file-system types beyond that distinction).
import { describe, expect, it } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, PageCacheFile, SCHEMES, type HugetlbOrder, type KernelRuleSet, type Scheme } from '../lib/index.js';
import { expectPinlabError } from './helpers.js';
import { pinVisible } from './mm-helpers.js';

const RULE_SETS: readonly KernelRuleSet[] = ['mainline', '2019'];

interface FileKind {
  name: string;
  shmem: boolean;
}

const FILES: readonly FileKind[] = [
  { name: 'memfd', shmem: true },
  { name: 'tmpfile', shmem: false },
  { name: 'local tmpfile', shmem: false },
];

type PinType = 'RO' | 'RO_FAST' | 'RW' | 'RW_FAST' | 'IOURING';

/** The selftest's MAP_SHARED cases (its MAP_PRIVATE ones are below). */
const CASES: readonly [string, PinType][] = [
  ['R/W longterm GUP pin in MAP_SHARED file mapping', 'RW'],
  ['R/W longterm GUP-fast pin in MAP_SHARED file mapping', 'RW_FAST'],
  ['R/O longterm GUP pin in MAP_SHARED file mapping', 'RO'],
  ['R/O longterm GUP-fast pin in MAP_SHARED file mapping', 'RO_FAST'],
  ['io_uring fixed buffer with MAP_SHARED file mapping', 'IOURING'],
];

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`gup_longterm.c, scheme ${scheme}, rules ${rules}`, () => {
      for (const [name, type] of CASES) {
        for (const kind of FILES) {
          it(`${name} ... with ${kind.name}`, () => {
            const mem = new PageArray({ pages: 1024, populated: false, scheme, debug: true, pincountMinOrder: rules === '2019' ? 31 : 1 });
            const mm = new AddressSpace(mem, { pages: 1024, rules });
            // ftruncate + fallocate: a file of one page; mmap it shared, R/W; memset faults it in.
            const file = new PageCacheFile(mem, { name: 'test', pages: 1, shmem: kind.shmem });
            mm.mmap({ start: 16, count: 1, file });
            mm.touch(16, 1, { write: true });
            const rw = type === 'RW' || type === 'RW_FAST' || type === 'IOURING';
            const fast = type === 'RO_FAST' || type === 'RW_FAST' || type === 'IOURING';
            if (!rw) mm.mprotect({ start: 16, count: 1, write: false }); // more unsharing decisions
            // R/O pins, and R/W pins of shmem, always work; R/W pins of other files only where the
            // rules allow long-term writes to dirty-tracked files.
            const shouldWork = !rw || kind.shmem || rules === '2019';
            const pfn = file.pfnAt(0)!;
            const refs = mem.refcount(pfn);
            const pin = (): Uint32Array => {
              const r = fast ? mm.pinUserPagesFast(16, 1, { longterm: true, write: rw }) : mm.pinUserPages(16, 1, { longterm: true, write: rw });
              return r.pfns;
            };
            if (shouldWork) {
              const pfns = pin();
              expect(Array.from(pfns)).toEqual([pfn]); // the page cache's own page
              expect(mem.maybeDmaPinned(pfn)).toBe(pinVisible(scheme, rw)); // a scheme may hide read pins
              mm.unpinUserPages(pfns, { write: rw });
            } else {
              expectPinlabError(pin, 'EFAULT'); // Should have failed
            }
            expect(mem.refcount(pfn)).toBe(refs); // balanced, or nothing taken
            expect(mem.maybeDmaPinned(pfn)).toBe(false);
          });
        }
      }
    });
  }
}

// ---- memfd hugetlb (run_with_memfd_hugetlb) -------------------------------------------------------
// All 10 cases with memfd_create(MFD_HUGETLB) files of each huge page size: hugetlbfs needs no
// dirty tracking, so R/W long-term pins of MAP_SHARED mappings work (under both rule sets: the
// 6.5 refusal never covered hugetlbfs), and every pin of a MAP_PRIVATE mapping works. The file is
// one huge page, fallocate'd; memset faults the mapping in (a private mapping's write copies the
// file's page into a page of its own, from the pool: the mapping reserved it). One page array
// per scheme and size is reused by every case; its pool must be whole again after each.

const HUGETLB_CASES: readonly [string, PinType, boolean][] = [
  ...CASES.map(([name, type]): [string, PinType, boolean] => [name, type, true]),
  ['R/W longterm GUP pin in MAP_PRIVATE file mapping', 'RW', false],
  ['R/W longterm GUP-fast pin in MAP_PRIVATE file mapping', 'RW_FAST', false],
  ['R/O longterm GUP pin in MAP_PRIVATE file mapping', 'RO', false],
  ['R/O longterm GUP-fast pin in MAP_PRIVATE file mapping', 'RO_FAST', false],
  ['io_uring fixed buffer with MAP_PRIVATE file mapping', 'IOURING', false],
];

const hugeArrays = new Map<string, PageArray>();

function hugeArray(scheme: Scheme, order: HugetlbOrder, rules: KernelRuleSet): PageArray {
  const key = `${scheme}/${order}/${rules}`;
  let mem = hugeArrays.get(key);
  if (mem === undefined) {
    // rules '2019' over a hybrid array needs the 2019 kernels' pincountMinOrder (none: 31).
    mem = new PageArray({ pages: 2 * 2 ** order + 1024, populated: false, scheme, debug: true, pincountMinOrder: rules === '2019' ? 31 : 1 });
    mem.setHugetlbPages(order, 2); // the file's page, and a private mapping's copy
    hugeArrays.set(key, mem);
  }
  return mem;
}

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`gup_longterm.c hugetlb, scheme ${scheme}, rules ${rules}`, () => {
      for (const [name, type, shared] of HUGETLB_CASES) {
        for (const order of [9, 18] as const) {
          it(`${name} ... with memfd hugetlb (${4 << order} kB)`, () => {
            const mem = hugeArray(scheme, order, rules);
            const size = 2 ** order;
            const mm = new AddressSpace(mem, { pages: 2 * size, rules });
            const file = new HugetlbFile(mem, { name: 'test', order, pages: size }); // ftruncate + fallocate
            mm.mmap({ start: size, count: size, file, shared });
            mm.touch(size, size, { write: true }); // memset(mem, 0, size)
            const rw = type === 'RW' || type === 'RW_FAST' || type === 'IOURING';
            const fast = type === 'RO_FAST' || type === 'RW_FAST' || type === 'IOURING';
            if (!rw) mm.mprotect({ start: size, count: size, write: false });
            // should_work: always, for hugetlbfs (shared) and for any private mapping.
            const pfn = mm.translate(size)!.pfn;
            expect(pfn === file.pfnAt(0)).toBe(shared); // a private mapping wrote into its own copy
            const refs = mem.refcount(pfn);
            const r = fast
              ? mm.pinUserPagesFast(size, size, { longterm: true, write: rw })
              : mm.pinUserPages(size, size, { longterm: true, write: rw });
            expect(r.count).toBe(size);
            expect(r.pfns[0]).toBe(mm.translate(size)!.pfn); // the page the process maps
            expect(r.pfns[size - 1]).toBe(r.pfns[0]! + size - 1); // one folio, in order
            // A scheme may hide read pins (write-bias; 2^18 read pins of a 1 GiB page still show as references).
            if (pinVisible(scheme, rw)) expect(mem.maybeDmaPinned(r.pfns[0]!)).toBe(true);
            expect(mem.isMovable(r.pfns[0]!)).toBe(false);
            mm.unpinUserPages(r.pfns, { write: rw });
            expect(mem.refcount(r.pfns[0]!)).toBe(refs);
            expect(mem.maybeDmaPinned(r.pfns[0]!)).toBe(false);
            mm.dispose();
            file.close();
            expect(mem.hugetlbPool(order)).toMatchObject({ free: 2, reserved: 0, used: 0 });
            const s = mem.stats();
            expect(s.pinAcquired).toBe(s.pinReleased);
          });
        }
      }
    });
  }
}

// ---- the MAP_PRIVATE cases: private file mappings (always expected to work) ------------------------

/**
 * The selftest's MAP_PRIVATE cases: R/O and R/W long-term pins (and the io_uring fixed buffer, a
 * R/W one) of a private file mapping always work, under both rule sets: memset() already copied
 * the page to a private anonymous page (COW from the page cache), which is what the pin holds.
 */
const PRIVATE_CASES: readonly [string, PinType][] = [
  ['R/W longterm GUP pin in MAP_PRIVATE file mapping', 'RW'],
  ['R/W longterm GUP-fast pin in MAP_PRIVATE file mapping', 'RW_FAST'],
  ['R/O longterm GUP pin in MAP_PRIVATE file mapping', 'RO'],
  ['R/O longterm GUP-fast pin in MAP_PRIVATE file mapping', 'RO_FAST'],
  ['io_uring fixed buffer with MAP_PRIVATE file mapping', 'IOURING'],
];

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`gup_longterm.c MAP_PRIVATE, scheme ${scheme}, rules ${rules}`, () => {
      for (const [name, type] of PRIVATE_CASES) {
        for (const kind of FILES) {
          it(`${name} ... with ${kind.name}`, () => {
            const mem = new PageArray({ pages: 1024, populated: false, scheme, debug: true, pincountMinOrder: rules === '2019' ? 31 : 1 });
            const mm = new AddressSpace(mem, { pages: 1024, rules });
            const file = new PageCacheFile(mem, { name: 'test', pages: 1, shmem: kind.shmem });
            mm.mmap({ start: 16, count: 1, file, shared: false });
            mm.touch(16, 1, { write: true }); // memset: the write copies the page-cache page
            const cachePfn = file.pfnAt(0)!;
            const anon = mm.translate(16)!.pfn;
            expect(anon).not.toBe(cachePfn);
            const rw = type === 'RW' || type === 'RW_FAST' || type === 'IOURING';
            const fast = type === 'RO_FAST' || type === 'RW_FAST' || type === 'IOURING';
            if (!rw) mm.mprotect({ start: 16, count: 1, write: false });
            const refs = mem.refcount(anon);
            const pin = fast ? mm.pinUserPagesFast(16, 1, { longterm: true, write: rw }) : mm.pinUserPages(16, 1, { longterm: true, write: rw });
            expect(Array.from(pin.pfns)).toEqual([anon]); // Should have worked: the process's own page
            expect(mem.maybeDmaPinned(anon)).toBe(pinVisible(scheme, rw));
            expect(mem.maybeDmaPinned(cachePfn)).toBe(false); // the page cache's page is not involved
            mm.unpinUserPages(pin.pfns, { write: rw });
            expect(mem.refcount(anon)).toBe(refs);
            mm.dispose();
            file.truncate(0);
            expect(mem.freePages()).toBe(mem.pages);
          });
        }
      }
    });
  }
}
