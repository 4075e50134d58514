// The kernel's tools/testing/selftests/mm/gup_test.c as run_vmtests.sh runs it: its three plain
// runs (`-u`, `-a`, `-ct -F 0x1 0 19 0x1000`) and run_gup_matrix (THP on/off/hugetlb x five
// commands x write/read x shared/private x 1/512/123 pages per call), translated: each run is
// named by its command line. The selftest passes when the gup_test ioctl succeeds; the kernel
// side of it takes the pages batch by batch, checks that pins are visible as maybe-DMA-pinned
// and that long-term pins are outside ZONE_MOVABLE, and puts everything back. Here the same:
// every page is taken (never truncated), pins are visible (where the scheme shows read pins),
// long-term pins are not movable, and every count is back where it was afterwards.
//
// Memory: /dev/zero MAP_PRIVATE is anonymous memory; /dev/zero MAP_SHARED is shmem (a shmem
// PageCacheFile, 4 KiB folios as with the kernel's default shmem_enabled=never). The size is
// scaled from the selftest's 128 MiB to 4 MiB (two THPs; 32 MiB for the dump run, which needs
// page 0x1000). The hugetlb runs (-H) map the same 4 MiB with MAP_HUGETLB (two 2 MiB pages
// from a pool of two; shared with -S), scaled from the selftest's 256 MiB.
// GUP_BASIC_TEST's get_user_pages (slow path, FOLL_GET) is taken with getUserPagesFast: the
// model exposes FOLL_GET only through the fast entry point (the result is the same pages).
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, type Scheme } from '../lib/index.js';
import { pinVisible } from './mm-helpers.js';

type Command = '-u' | '-U' | '-a' | '-b' | '-L' | '-c';

interface Run {
  cmd: Command;
  thp: boolean | null; // -t, -T, or neither (the system default: no THP)
  hugetlb?: boolean; // -H: MAP_HUGETLB, 2 MiB pages from the pool
  write: boolean; // -w (default) or -W
  shared: boolean; // -S
  nrPages: number; // -n
  pages: number; // -m, in 4 KiB pages here
  dump?: number[]; // -c's page indices
}

const SIZE = 1024;

/** The run's command line, as run_vmtests.sh writes it. */
function commandLine(r: Run): string {
  if (r.cmd === '-c') return `./gup_test -ct -F 0x1 ${r.dump!.map((p) => (p >= 0x1000 ? `0x${p.toString(16)}` : String(p))).join(' ')}`;
  if (r.thp === null) return `./gup_test ${r.cmd}`;
  if (r.hugetlb === true) return `./gup_test -H -m 256 ${r.cmd} ${r.write ? '-w' : '-W'}${r.shared ? ' -S' : ''} -n ${r.nrPages}`;
  return `./gup_test ${r.thp ? '-t' : '-T'} ${r.cmd} ${r.write ? '-w' : '-W'}${r.shared ? ' -S' : ''} -n ${r.nrPages}`;
}

const RUNS: Run[] = [
  { cmd: '-u', thp: null, write: true, shared: false, nrPages: 1, pages: SIZE },
  { cmd: '-a', thp: null, write: true, shared: false, nrPages: 1, pages: SIZE },
  { cmd: '-c', thp: true, write: true, shared: false, nrPages: 1, pages: 8 * SIZE, dump: [0, 19, 0x1000] },
];
// run_gup_matrix's -H runs (`-H -m $hugetlb_mb`: 256 with 2 MiB pages), after the THP ones.
const HUGETLB_RUNS: Run[] = [];
for (const cmd of ['-u', '-U', '-a', '-b', '-L'] as const) {
  for (const write of [true, false]) {
    for (const shared of [true, false]) {
      for (const nrPages of [1, 512, 123]) HUGETLB_RUNS.push({ cmd, thp: false, hugetlb: true, write, shared, nrPages, pages: SIZE });
    }
  }
}

for (const thp of [true, false]) {
  for (const cmd of ['-u', '-U', '-a', '-b', '-L'] as const) {
    for (const write of [true, false]) {
      for (const shared of [true, false]) {
        for (const nrPages of [1, 512, 123]) RUNS.push({ cmd, thp, write, shared, nrPages, pages: SIZE });
      }
    }
  }
}

function runGupTest(scheme: Scheme, r: Run): void {
  const mem = new PageArray({ pages: 2 * r.pages + 1024, populated: false, scheme, movablePages: r.pages });
  const mm = new AddressSpace(mem, { pages: r.pages });
  if (r.hugetlb === true) {
    // The pool (the normal zone's: hugetlb pages are not movable), then MAP_HUGETLB of it all.
    mem.setHugetlbPages(9, r.pages / 512);
    mm.mmap({ start: 0, count: r.pages, hugetlb: 9, shared: r.shared });
  } else if (r.shared) {
    const file = new PageCacheFile(mem, { name: '/dev/zero', pages: r.pages, shmem: true });
    mm.mmap({ start: 0, count: r.pages, file });
  } else {
    mm.mmap({ start: 0, count: r.pages, huge: r.thp === true });
  }
  mm.touch(0, r.pages, { write: true }); // fault them in from user space
  const pin = r.cmd === '-a' || r.cmd === '-b' || r.cmd === '-L';
  const write = r.write || r.cmd === '-c'; // -F 0x1: FOLL_WRITE
  const refsBefore = range(r.pages).map((v) => mem.refcount(mm.translate(v)!.pfn));
  const taken: number[] = [];
  for (let v = 0; v < r.pages; v += r.nrPages) {
    const n = Math.min(r.nrPages, r.pages - v);
    const got =
      r.cmd === '-a'
        ? mm.pinUserPagesFast(v, n, { write })
        : r.cmd === '-b'
          ? mm.pinUserPages(v, n, { write })
          : r.cmd === '-L'
            ? mm.pinUserPages(v, n, { write, longterm: true })
            : mm.getUserPagesFast(v, n, { write });
    expect(got.count).toBe(n); // never truncated
    taken.push(...got.pfns);
  }
  for (const [i, pfn] of taken.entries()) {
    expect(pfn).toBe(mm.translate(i)!.pfn); // the pages the process maps (after a long-term move)
    // verify_dma_pinned (a scheme that hides read pins of small folios may answer false there)
    if (pin && pinVisible(scheme, write)) expect(mem.maybeDmaPinned(pfn)).toBe(true);
    if (r.cmd === '-L') expect(mem.isMovable(pfn)).toBe(false); // folio_is_longterm_pinnable
  }
  if (r.dump !== undefined) for (const p of r.dump) expect(taken[p]).toBe(mm.translate(p)!.pfn);
  const list = Uint32Array.from(taken);
  if (pin) mm.unpinUserPages(list, { write });
  else mm.putUserPages(list);
  // Everything put back: the mappings' references alone (a long-term move kept their number).
  expect(range(r.pages).map((v) => mem.refcount(mm.translate(v)!.pfn))).toEqual(refsBefore);
  const s = mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

for (const scheme of SCHEMES) {
  describe(`gup_test.c (run_vmtests.sh), scheme ${scheme}`, () => {
    for (const r of RUNS) it(commandLine(r), () => runGupTest(scheme, r));
    for (const r of HUGETLB_RUNS) it(commandLine(r), () => runGupTest(scheme, r));
  });
}
