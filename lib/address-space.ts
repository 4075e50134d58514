import { PinlabError, invalid } from './errors.js';
import { HugetlbFile } from './files/hugetlb-file.js';
import { PageCacheFile } from './files/page-cache-file.js';
import { GupFlag, type NativeAddressSpace, type NativePageArray } from './native.js';
import { OP_CODES, OP_FLAGS, OP_NOT_RUN, batchRecords, entryWord } from './ops/format.js';
import { createSpace, forgetSpace, forkSpace, markRaceHook, registerSpaceObject, setBatchChecker, setBatchFollower, setBatchNeedsFollow, setSpaceAdopter, spaceObject } from './ops/spaces.js';
import type { PinBookkeeping } from './owners/bookkeeping.js';
import { withoutZeroPfns } from './owners/runs.js';
import { DISPOSE, isDisposedArray, nativeOf, ownerOption, pinsOf, type PageArray, type PinOwner } from './page-array.js';
import type { AddressSpaceStats, KernelRules, KernelRuleSet, SwapEntry, SwapUsage } from './types/address-space.js';
import type { HugetlbOrder } from './types/hugetlb.js';
import { bool, integer, oneOf, optionsObject, show, stableList, uint32List } from './validate.js';

export type { KernelRules, KernelRuleSet } from './types/address-space.js';

/** Options of {@link AddressSpace}'s constructor. */
export interface AddressSpaceOptions {
  /** Virtual pages (4 KiB each), integer 1..2^31. */
  pages: number;
  /**
   * The kernel rules to follow: a named set, or switches over mainline's (keys left out keep
   * mainline's value). Default `'mainline'`. Fork's child inherits them.
   */
  rules?: KernelRuleSet | Partial<KernelRules>;
  /**
   * Per-size THP enablement (the kernel's `hugepages-<size>kB/enabled`, mTHP, Linux 6.8, set to
   * "madvise"): the folio orders, 2..9, that regions mapped with `huge` may get. 9 is the 2 MiB
   * PMD-mapped THP; 2..8 (16 KiB..1 MiB) are PTE-mapped folios that write faults allocate (the
   * largest enabled order whose aligned block lies in the region with nothing mapped there yet,
   * then smaller ones, then 4 KiB). `populate` maps 2 MiB leaves only. Default `[9]`.
   */
  thpOrders?: number[];
  /**
   * The swap device's size in 4 KiB slots, integer 0..2^31, for `madvise(range, 'pageout')`:
   * shared with every fork descendant (a fork shares the swap entries). 0 is a machine without
   * swap (pageout keeps every page); when the slots run out, the pages stay. Default: `pages`.
   * The slot arrays are allocated on the first pageout.
   */
  swapPages?: number;
}

/** madvise(2) advice: MADV_DONTNEED, MADV_DONTFORK, MADV_DOFORK, MADV_PAGEOUT, MADV_COLLAPSE, MADV_REMOVE. */
export type MadviseAdvice = 'dontneed' | 'dontfork' | 'dofork' | 'pageout' | 'collapse' | 'remove';

/** The ops a batch's check of file mappings looks at (fork), and those its follow-up does (munmap, mremap). */
const FORK_CODES: ReadonlySet<number> = new Set([OP_CODES.fork]);
const LAYOUT_CODES: ReadonlySet<number> = new Set([OP_CODES.munmap, OP_CODES.mremap]);

/** The advice's number for the addon. */
const ADVICE: Record<Exclude<MadviseAdvice, 'collapse' | 'remove'>, number> = { dontneed: 0, dontfork: 1, dofork: 2, pageout: 3 };

/** Options of {@link AddressSpace.mremap}: mremap(2) of `[start, start + count)` to `newCount` pages. */
export interface MremapOptions extends VirtualRange {
  /** The new length in pages, at least 1. */
  newCount: number;
  /** MREMAP_MAYMOVE: may move the range when it cannot grow in place. Default false. */
  mayMove?: boolean;
  /** MREMAP_FIXED (needs `mayMove`): move to exactly `newStart`, unmapping what was there. Default false. */
  fixed?: boolean;
  /** With `fixed`: the new first page. */
  newStart?: number;
  /**
   * MREMAP_DONTUNMAP (needs `mayMove` and `newCount === count`; anonymous memory only): move
   * the pages, but keep the old range mapped, empty (its next access faults fresh pages).
   * Default false.
   */
  dontUnmap?: boolean;
}

/** Options of {@link AddressSpace.khugepaged}: its sysfs limits per 2 MiB stretch. */
export interface KhugepagedOptions {
  /** khugepaged/max_ptes_none: empty or zero-page PTEs allowed, 0..511. Default 511. */
  maxPtesNone?: number;
  /** khugepaged/max_ptes_shared: PTEs of pages another mm maps too (by the mappings, as the kernel's mapcount test; a page whose other mm went away counts no more), 0..512. Default 256. */
  maxPtesShared?: number;
}

/** What a {@link AddressSpace.khugepaged} pass did. */
export interface KhugepagedResult {
  /** THPs made. */
  collapsed: number;
  /** 2 MiB stretches of huge regions mapped by PTEs that the pass examined. */
  scanned: number;
}

/** A virtual page range. */
export interface VirtualRange {
  /** First virtual page. */
  start: number;
  /** Number of pages, at least 1. */
  count: number;
}

/** Options of {@link AddressSpace.mmap}. */
export interface MmapOptions extends VirtualRange {
  /** Writable mapping. Default true. */
  write?: boolean;
  /** Fault every page in now (MAP_POPULATE; write faults where writable). Default false. */
  populate?: boolean;
  /** Back aligned 2 MiB stretches with order-9 folios mapped by PMD leaves (THP). Default false. Anonymous memory only. */
  huge?: boolean;
  /**
   * Map this file's page-cache folios shared (MAP_SHARED) instead of anonymous memory: every
   * mapping of the file sees the same pages, writes never copy, pins pin the page cache's
   * pages, and fork shares them. Holes in the range get folios now. Default: anonymous.
   */
  file?: PageCacheFile | HugetlbFile;
  /** With `file`: the first file page mapped. Default 0. */
  offset?: number;
  /**
   * MAP_HUGETLB: anonymous memory of hugetlb pages from the page array's pool (see
   * {@link PageArray.setHugetlbPages}), 9 for 2 MiB pages, 18 for 1 GiB pages. `start` and
   * `count` must be multiples of the page size. Private mappings reserve their pages now
   * (`ENOMEM` if the pool is short) and fault them in on first touch; hugetlb pages are never
   * split, COW copies whole pages. With a {@link HugetlbFile} the file's order applies.
   */
  hugetlb?: HugetlbOrder;
  /**
   * MAP_SHARED (true) or MAP_PRIVATE (false), for a file or `hugetlb`. Default: true for a file,
   * false for anonymous hugetlb memory. A private mapping of a {@link PageCacheFile} maps every
   * page-cache page read-only, and the first write to a page copies it to a private anonymous
   * page (COW from the page cache); a long-term read pin unshares it the same way under
   * mainline rules, a short-term one pins the page-cache page. Truncate removes the copies too,
   * a hole punch keeps them. Shared hugetlb memory is allocated and mapped now, shared with
   * forks and never copied. Anonymous memory without `hugetlb` is always private.
   */
  shared?: boolean;
}

/** Options of {@link AddressSpace.mprotect}. */
export interface MprotectOptions extends VirtualRange {
  /** Write access for the range. */
  write: boolean;
}

/** Options of {@link AddressSpace.touch}. */
export interface TouchOptions {
  /** A write access: faults pages in writable and breaks COW. Default false (read). */
  write?: boolean;
}

/** Options of {@link AddressSpace.pinUserPagesFast} and {@link AddressSpace.pinUserPages}. */
export interface PinUserOptions {
  /** FOLL_WRITE: the pages must be writable (a COW page is copied first by the slow path). Default false. */
  write?: boolean;
  /** FOLL_LONGTERM: pages in ZONE_MOVABLE are migrated out before they are pinned. Default false. */
  longterm?: boolean;
  /** FOLL_FAST_ONLY: no slow path; returns what the lockless walk took (possibly 0). Default false. */
  fastOnly?: boolean;
  /** The pins' owner (see {@link PageArray.pinOwner}); the unpin must name it too. Default: none. */
  owner?: PinOwner;
}

/** Options of {@link AddressSpace.getUserPagesFast} (FOLL_GET). */
export interface GetUserOptions {
  /** FOLL_WRITE. Default false. */
  write?: boolean;
  /** Rejected with `EINVAL`: FOLL_LONGTERM needs FOLL_PIN. Present so the contradiction is reported. */
  longterm?: boolean;
  /** FOLL_FAST_ONLY. Default false. */
  fastOnly?: boolean;
}

/** Options of {@link AddressSpace.unpinUserPages}. */
export interface UnpinUserOptions {
  /** Mark the folios dirty first (unpin_user_pages_dirty_lock). Default false. */
  dirty?: boolean;
  /** Must match the pin under `'write-bias'` (write pins carry the bias). Default false. */
  write?: boolean;
  /** The owner the pins were taken for; required if they were taken with one. */
  owner?: PinOwner;
}

/** What get/pin_user_pages took: `count` PFNs, one per virtual page from `start`. */
export interface GupResult {
  /** The PFNs taken, in virtual-address order (`pfns.length === count`). */
  pfns: Uint32Array;
  /** How many pages were taken: fewer than asked is partial success. */
  count: number;
}

/** What a virtual page maps (see {@link AddressSpace.translate}). */
export interface Translation {
  /** The PFN of the 4 KiB page. */
  pfn: number;
  /** A shared mapping's page-cache page (see {@link MmapOptions.file}). */
  shared: boolean;
  /**
   * Present (`true`) only for a private file mapping's page-cache page ({@link MmapOptions.shared}: false):
   * mapped read-only until a write copies it. A shared mapping's page-cache page is `shared`.
   */
  pageCache?: true;
  /** Whether the entry allows writes (false for COW-shared, read-only and zero-page entries). */
  writable: boolean;
  /** The shared zero page, or with `huge` a page of the huge zero folio (mapped by read faults, never counted). */
  zeroPage: boolean;
  /** Mapped by a 2 MiB PMD leaf. */
  huge: boolean;
}

/**
 * Where the lockless walk calls a race hook: after reading an entry and before grabbing its
 * folio (`'beforeGrab'`), after the grab and before the recheck of PTE and PMD
 * (`'beforeRecheck'`), and for pins after the walk and before write_protect_seq is re-read
 * (`'beforeSeqCheck'`, with the first virtual page the walk did not take).
 */
export type RacePoint = 'beforeGrab' | 'beforeRecheck' | 'beforeSeqCheck';

/** A race hook: runs synchronously inside the walk, which holds no lock. */
export type RaceHook = (point: RacePoint, vpage: number) => void;

/** A native address space (and its id) the next constructor call adopts: fork's child, or a batch's. */
let adopting: { handle: NativeAddressSpace; id: number } | undefined;

/**
 * A process address space over a {@link PageArray}: anonymous private regions, a real
 * two-level page table (PTE tables of 512 entries under PMD entries; PMD leaves map 2 MiB
 * folios), faults with the zero page and copy-on-write, `fork` with early COW of maybe-pinned
 * pages, migration, and get/pin_user_pages with the lockless gup_fast walk.
 *
 * gup_fast runs without the mmap lock and is safe against every other operation, from any
 * number of threads (see `runStress`); the other operations take the mmap lock.
 *
 * @example
 * ```ts
 * const mem = new PageArray({ pages: 1 << 16, populated: false });
 * const mm = new AddressSpace(mem, { pages: 1 << 14 });
 * mm.mmap({ start: 0, count: 4096, populate: true, huge: true });
 * const { pfns, count } = mm.pinUserPagesFast(0, 1024, { write: true });
 * mm.unpinUserPages(pfns.subarray(0, count), { write: true, dirty: true });
 * ```
 */
export class AddressSpace {
  /** The page array the pages come from. */
  readonly mem: PageArray;
  /** Virtual pages. */
  readonly pages: number;
  /**
   * Names this address space in pin provenance (`'mm#3 vpages 0..511'`) and in op streams: 1, 2,
   * ... in creation order per page array (a creation the core refuses uses up its id too).
   */
  readonly id: number;
  /** The kernel rules this address space follows, resolved (see {@link AddressSpaceOptions.rules}). */
  readonly rules: Readonly<KernelRules>;
  /** The THP orders enabled for `huge` regions (see {@link AddressSpaceOptions.thpOrders}), ascending. */
  readonly thpOrders: readonly number[];

  readonly #handle: NativeAddressSpace;
  readonly #pins: PinBookkeeping;
  #disposed = false;
  readonly #files = new Set<PageCacheFile | HugetlbFile>();

  /**
   * @param mem - the physical memory (a `populated: false` array suits simulations that allocate)
   * @param options - see {@link AddressSpaceOptions}
   * @throws PinlabError `EINVAL` naming a bad option
   */
  constructor(mem: PageArray, options: AddressSpaceOptions) {
    const handle = nativeOf(mem);
    if (options === undefined) invalid('AddressSpace options are required ({ pages })');
    const o = optionsObject('AddressSpace options', options, ['pages', 'rules', 'thpOrders', 'swapPages']);
    const pages = integer('pages', o['pages']);
    const swapPages = o['swapPages'] === undefined ? undefined : integer('swapPages', o['swapPages']);
    if (swapPages !== undefined && (swapPages < 0 || swapPages > 2 ** 31)) invalid(`swapPages must be an integer in 0..2^31 (got ${swapPages})`);
    const made = adopting ?? createSpace(handle, pages, rulesOption(o['rules']), thpOrdersOption(o['thpOrders']), swapPages);
    this.#handle = made.handle;
    this.mem = mem;
    this.#pins = pinsOf(mem);
    this.pages = this.#native.info().pages;
    this.id = made.id;
    const info = this.#native.info();
    this.rules = Object.freeze(info.rules);
    this.thpOrders = Object.freeze([2, 3, 4, 5, 6, 7, 8, 9].filter((k) => (info.thpOrders & (1 << k)) !== 0));
    registerSpaceObject(handle, this.id, this);
  }

  /**
   * The native half, for a call: `EINVAL` once this address space or its page array was
   * disposed (the addon refuses a disposed address space too).
   */
  get #native(): NativeAddressSpace {
    if (this.#disposed) invalid('this AddressSpace was disposed: no call can use it');
    if (isDisposedArray(this.mem)) invalid("this AddressSpace's PageArray was disposed: no call can use it");
    return this.#handle;
  }

  /**
   * Frees the address space's native memory now (its page table), instead of when the garbage
   * collector gets to it: everything is unmapped, as at process exit (pins taken through it stay
   * valid and are released with {@link AddressSpace.unpinUserPages} or their owner). Afterwards
   * every call on it throws `EINVAL`, and {@link AddressSpace.byId} no longer finds it.
   * Idempotent. `using mm = new AddressSpace(...)` calls it at the end of the scope; disposing
   * the page array disposes its address spaces too.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (!isDisposedArray(this.mem)) forgetSpace(nativeOf(this.mem), this.id);
    this.#handle.dispose();
  }

  /** `using` support: the same as {@link AddressSpace.dispose}. */
  [DISPOSE](): void {
    this.dispose();
  }

  /** Whether this address space was disposed (by {@link AddressSpace.dispose} or its page array's). */
  get disposed(): boolean {
    return this.#disposed || this.#handle.isDisposed();
  }

  /**
   * The live address space of `mem` with this `id`, or null: for address spaces that a batch
   * ({@link PageArray.submit}) created, which have no other name in JS.
   */
  static byId(mem: PageArray, id: number): AddressSpace | null {
    const found = spaceObject(nativeOf(mem), integer('id', id));
    return found instanceof AddressSpace ? found : null;
  }

  /**
   * Declares an anonymous private region, faulted in on demand (or now with `populate`).
   * @throws PinlabError `EINVAL` for a range outside the address space or overlapping a region,
   *   or a hugetlb range not aligned to its page size; `ENOMEM` when `populate` runs out of
   *   pages, or the hugetlb pool has too few free unreserved pages (then nothing is mapped)
   */
  mmap(options: MmapOptions): void {
    const o = optionsObject('mmap options', options, ['start', 'count', 'write', 'populate', 'huge', 'file', 'offset', 'hugetlb', 'shared']);
    const start = integer('start', o['start']);
    const count = integer('count', o['count']);
    const write = bool('write', o['write'], true);
    const populate = bool('populate', o['populate'], false);
    const huge = bool('huge', o['huge'], false);
    if (o['hugetlb'] !== undefined || o['file'] instanceof HugetlbFile) {
      this.#mmapHugetlb(o, start, count, write, populate, huge);
      return;
    }
    if (o['file'] === undefined) {
      if (o['offset'] !== undefined) invalid('offset needs a file');
      if (o['shared'] !== undefined) invalid('shared needs a file or hugetlb (anonymous memory here is private; shared anonymous memory is a shmem PageCacheFile)');
      this.#native.mmap(start, count, write, populate, huge);
      return;
    }
    if (!PageCacheFile.isGenuine(o['file'])) invalid(`file must be a PageCacheFile (got ${show(o['file'])})`);
    if (o['file'].mem !== this.mem) invalid(`file '${o['file'].name}' lives in another page array`);
    if (huge) invalid('huge maps anonymous memory; a file maps its own folios (see PageCacheFile folioOrder)');
    const priv = !bool('shared', o['shared'], true);
    this.#mapFile(o['file'], start, count, o['offset'] === undefined ? 0 : integer('offset', o['offset']), write, priv);
  }

  /** Unmaps a range (holes allowed): each entry is cleared, then its folio reference put. */
  munmap(range: VirtualRange): void {
    const { start, count } = virtualRange('munmap', range);
    this.#native.munmap(start, count);
    for (const file of this.#files) file.unmapped(this, start, count);
  }

  /**
   * madvise(2) on anonymous memory, hugetlb mappings and shared page-cache file mappings.
   * `'dontneed'` (MADV_DONTNEED) zaps the range like a partial munmap that keeps the regions:
   * the next access faults a fresh zero-filled page (the zero page on a read), and a pinned page
   * stays allocated by its pins alone. Of a shared file mapping (page cache or hugetlb) or a
   * private hugetlb file mapping, the file keeps its pages and the next access maps the same
   * page again (a private mapping's copies are freed; see the README's hugetlb section). `'dontfork'`
   * (MADV_DONTFORK) keeps the range out of fork's children, whatever it maps (anonymous memory,
   * hugetlb, shared or private file mappings: the child neither maps it nor appears among the
   * file's mappings); `'dofork'` undoes it.
   * `'pageout'` (MADV_PAGEOUT) reclaims the range's private anonymous folios to swap: each
   * entry becomes a swap entry (see {@link AddressSpace.swapEntry}) and the folio is freed (a
   * PMD THP is split into PTE swap entries and swapped out whole); the next access faults the
   * page back in (swap-in). A maybe-pinned folio stays (counted in `pageoutRefusals`, its false
   * positives in `pageoutFalsePositives`); so does one another address space maps too, one that
   * reaches outside the range, and every page once the swap is full (`pageoutBusy`). The zero
   * page and shared file mappings are skipped. A folio someone else holds a reference on
   * (FOLL_GET) leaves the page tables but stays in the swap cache, and the next access maps
   * it again.
   * `'collapse'` (MADV_COLLAPSE) turns every 2 MiB-aligned stretch wholly inside the range that
   * PTEs map into one PMD-mapped THP, a new folio copied from the old pages (which lose this
   * mm's mappings: a child after fork keeps them), whatever the region's `huge` and the THP
   * sizes enabled; a stretch already PMD-mapped counts as done.
   * `'remove'` (MADV_REMOVE) punches a hole in the files behind the range, which must be shared
   * file mappings: {@link PageCacheFile.punchHole} or {@link HugetlbFile.punchHole} of the
   * file pages the range maps, rounded inward to whole folios (huge pages; the kernel zeroes a
   * partly covered one and frees nothing of it). Every mapping of those pages in every address
   * space is zapped (for a hugetlb file, private mappings' copies too, as hugetlbfs does) and a
   * later access is `EFAULT` (the model's SIGBUS; the kernel would fault in a fresh page).
   * @throws PinlabError `ENOMEM` if part of the range is not mapped (as the kernel answers), the
   *   swap's slot arrays cannot be allocated (`'pageout'`), or no THP is free for a collapse;
   *   `EINVAL` for a bad range or advice, a private page-cache file mapping in the range for
   *   `'dontneed'` and `'pageout'` (not modelled; `'pageout'` skips shared file mappings), a hugetlb mapping in the range for `'pageout'` and `'collapse'`
   *   (as the kernel answers), or (`'collapse'`) a stretch to collapse with nothing mapped,
   *   across mappings of different kinds, or without a writable entry (SCAN_PAGE_RO); `EAGAIN` (`'collapse'`) when a page of a stretch to
   *   collapse has references beyond its mappings (a pin or FOLL_GET reference: the kernel's
   *   refcount check). `'remove'`: `EACCES` for a private file mapping in the range, `EINVAL`
   *   for anonymous memory (shared anonymous hugetlb memory: not modelled; a shmem
   *   {@link PageCacheFile} or a {@link HugetlbFile} mapped shared is), `EBUSY` as a page-cache
   *   file's hole punch (unleased long-term pins). Nothing changes on an error (a collapse is
   *   all or nothing over the range). A `count` of 0 succeeds and changes nothing, wherever it
   *   starts (do_madvise's answer to an empty range).
   */
  madvise(range: VirtualRange, advice: MadviseAdvice): void {
    const { start, count } = virtualRange('madvise', range);
    const a = oneOf('advice', advice, ['dontneed', 'dontfork', 'dofork', 'pageout', 'collapse', 'remove'] as const, 'dontneed');
    if (advice === undefined) invalid("madvise needs an advice ('dontneed', 'dontfork', 'dofork', 'pageout', 'collapse' or 'remove')");
    if (count === 0 && start >= 0) {
      this.#native; // EINVAL once disposed
      return; // do_madvise: an empty range is done (whatever lies there)
    }
    if (a === 'collapse') {
      this.#native.collapse(start, count);
      return;
    }
    if (a === 'remove') {
      this.#remove(start, count);
      return;
    }
    this.#native.madvise(start, count, ADVICE[a]);
  }

  /**
   * MADV_REMOVE (madvise_remove): the hole punch of the files behind the range's shared
   * mappings, each file range rounded inward to whole folios (huge pages), as the kernel's punch
   * zeroes a partly covered one and frees nothing of it. Checked whole first: the regions
   * (native), then the files' own refusals (a page-cache file's unleased long-term pins); then
   * punched.
   */
  #remove(start: number, count: number): void {
    this.#native.checkMadvRemove(start, count); // ENOMEM, EACCES (private file), EINVAL (anonymous)
    const end = start + count;
    const pieces: { file: PageCacheFile | HugetlbFile; at: number; offset: number; count: number }[] = [];
    for (const file of this.#files) {
      for (const m of file.mappingsOf(this)) {
        const a = Math.max(start, m.start), b = Math.min(end, m.start + m.count);
        if (a < b && m.private !== true) pieces.push({ file, at: a, offset: m.offset + (a - m.start), count: b - a });
      }
    }
    pieces.sort((x, y) => x.at - y.at);
    let covered = start;
    for (const p of pieces) {
      if (p.at > covered) break;
      covered = Math.max(covered, p.at + p.count);
    }
    if (covered < end) invalid(`MADV_REMOVE of shared anonymous hugetlb memory (page ${covered}) is not modelled: map a HugetlbFile shared instead`);
    const punches = pieces.flatMap((p) => {
      const unit = p.file instanceof HugetlbFile ? 2 ** p.file.order : 2 ** p.file.folioOrder;
      const lo = Math.ceil(p.offset / unit) * unit, hi = Math.floor((p.offset + p.count) / unit) * unit;
      return hi > lo ? [{ file: p.file, offset: lo, count: hi - lo }] : [];
    });
    for (const p of punches) p.file.checkHolePunch(p.offset, p.count); // EBUSY, the files' own puts
    // A page-cache file's ranges go in one call: its leases break once, after every range was
    // checked against them (one by one, the first punch's breaks would refuse the next).
    const byFile = new Map<PageCacheFile | HugetlbFile, { offset: number; count: number }[]>();
    for (const p of punches) byFile.set(p.file, [...(byFile.get(p.file) ?? []), { offset: p.offset, count: p.count }]);
    let first: unknown;
    let failed = false;
    for (const [file, ranges] of byFile) {
      try {
        if (file instanceof HugetlbFile) for (const r of ranges) file.removePages(r.offset, r.count);
        else file.punchHoles(ranges);
      } catch (e) {
        // Only a lease holder's onBreak throws here, once its punch is complete: go on.
        if (!failed) first = e;
        failed = true;
      }
    }
    if (failed) throw first;
  }

  /**
   * mremap(2): shrinks in place, grows in place when the pages after the range are free, else
   * (with `mayMove`) moves the range to the lowest free area (one at the same offset within
   * 2 MiB preferred, so THPs move whole), or with `fixed` to `newStart`, unmapping what was
   * there. A move moves the page-table entries: every page, pin and reference stays as it was
   * (pins taken through the old addresses remain valid and are released as usual), a 2 MiB leaf
   * moves whole when it lies wholly in the range and lands 2 MiB aligned (else it is split into
   * PTEs first), and the region's attributes (write access, `huge`, MADV_DONTFORK, a file
   * mapping's file) go with it.
   * @returns the range's first page now
   * @throws PinlabError `EINVAL` (bad arguments: `fixed` or `dontUnmap` without `mayMove`,
   *   `dontUnmap` with another length or on a file mapping, a file mapping grown (its tail
   *   would map the file's next pages: not modelled), `newStart` without `fixed`, a fixed
   *   range overlapping the old one or outside the address space; a hugetlb mapping: not
   *   modelled); `EFAULT` (the old range not
   *   wholly mapped, or across mappings of different kinds); `ENOMEM` (it cannot grow in place
   *   and may not move, or no free area is large enough). Nothing changes on an error.
   */
  mremap(options: MremapOptions): number {
    const o = optionsObject('mremap options', options, ['start', 'count', 'newCount', 'mayMove', 'fixed', 'newStart', 'dontUnmap']);
    if (options === undefined) invalid('mremap needs { start, count, newCount }');
    const start = integer('start', o['start']);
    const count = integer('count', o['count']);
    const newCount = integer('newCount', o['newCount']);
    const mayMove = bool('mayMove', o['mayMove'], false);
    const fixed = bool('fixed', o['fixed'], false);
    const dontUnmap = bool('dontUnmap', o['dontUnmap'], false);
    const newStart = o['newStart'] === undefined ? -1 : integer('newStart', o['newStart']);
    if (o['newStart'] !== undefined && newStart < 0) invalid(`newStart must be >= 0 (got ${newStart})`);
    const at = this.#native.mremap(start, count, newCount, newStart, (mayMove ? 1 : 0) | (fixed ? 2 : 0) | (dontUnmap ? 4 : 0));
    this.#remapFileMappings(start, count, newCount, at, fixed);
    return at;
  }

  /**
   * One pass of khugepaged over the huge regions (when the 2 MiB THP size is enabled): every
   * 2 MiB-aligned stretch mapped by PTEs with at most `maxPtesNone` empty or zero-page entries,
   * at most `maxPtesShared` entries of pages another mm maps too, and one writable entry becomes
   * a PMD-mapped THP copied from the old pages, unless a page holds references beyond its
   * mappings (a pin or FOLL_GET reference: skipped, see {@link AddressSpaceStats}'s
   * `collapseMaybePinned`). Each stretch is collapsed or left as it was.
   * @throws PinlabError `EINVAL` for a limit out of range
   */
  khugepaged(options?: KhugepagedOptions): KhugepagedResult {
    const o = optionsObject('khugepaged options', options, ['maxPtesNone', 'maxPtesShared']);
    const none = o['maxPtesNone'] === undefined ? 511 : integer('maxPtesNone', o['maxPtesNone']);
    const shared = o['maxPtesShared'] === undefined ? 256 : integer('maxPtesShared', o['maxPtesShared']);
    return this.#native.khugepaged(none, shared);
  }

  /**
   * Changes write access. Removing it write-protects the entries now; granting it leaves them
   * read-only until a write fault reuses or copies the page.
   * A `count` of 0 succeeds and changes nothing, wherever it starts (as mprotect(2) answers).
   * @throws PinlabError `ENOMEM` if part of the range is not mapped, as the kernel's mprotect(2)
   *   answers (nothing changes: the kernel would have changed the mappings before the hole)
   */
  mprotect(options: MprotectOptions): void {
    const o = optionsObject('mprotect options', options, ['start', 'count', 'write']);
    if (typeof o['write'] !== 'boolean') invalid(`write must be a boolean (got ${show(o['write'])})`);
    const start = integer('start', o['start']), count = integer('count', o['count']);
    const native = this.#native; // EINVAL once disposed
    if (count === 0 && start >= 0) return; // do_mprotect_pkey: an empty range is done
    native.mprotect(start, count, o['write']);
  }

  /**
   * Accesses pages as a load or store would: faults them in (the zero page on a read) and, for
   * a write, breaks copy-on-write.
   * @throws PinlabError `EFAULT` outside a region or for a write to a read-only one (checked
   *   before any fault); `ENOMEM` when no page is free
   */
  touch(start: number, count: number, options?: TouchOptions): void {
    const o = optionsObject('touch options', options, ['write']);
    this.#native.touch(integer('start', start), integer('count', count), bool('write', o['write'], false));
  }

  /**
   * pin_user_pages_fast: the lockless walk (speculative grab, recheck of PTE and PMD, one grab
   * per 2 MiB leaf), then the slow path under the mmap lock for what it left (faults, COW,
   * FOLL_LONGTERM migration). Partial success returns the count done; the caller must unpin
   * those pages. An error is thrown only when nothing was pinned.
   * @throws PinlabError `EFAULT` (outside any region, or a write to a read-only one), `EINVAL`
   *   (contradictory flags), `ENOMEM`, `EBUSY` (a long-term page could not be migrated)
   */
  pinUserPagesFast(start: number, count: number, options?: PinUserOptions): GupResult {
    return this.#gup(start, count, options, GupFlag.Pin, 'pinUserPagesFast');
  }

  /** get_user_pages_fast: like {@link AddressSpace.pinUserPagesFast} with FOLL_GET references (release with {@link AddressSpace.putUserPages}). */
  getUserPagesFast(start: number, count: number, options?: GetUserOptions): GupResult {
    return this.#gup(start, count, options, 0, 'getUserPagesFast');
  }

  /** pin_user_pages: the slow path alone, under the mmap lock. `fastOnly` is rejected (`EINVAL`). */
  pinUserPages(start: number, count: number, options?: PinUserOptions): GupResult {
    return this.#gup(start, count, options, GupFlag.Pin | GupFlag.SlowOnly, 'pinUserPages');
  }

  /**
   * unpin_user_pages: releases pins batched by folio run (one atomic per run). The zero page is
   * skipped (never counted). All or nothing.
   * @throws PinlabError `ENOTPINNED`, `ERANGE` (nothing changes)
   */
  unpinUserPages(pfns: Uint32Array, options?: UnpinUserOptions): void {
    const o = optionsObject('unpin options', options, ['dirty', 'write', 'owner']);
    const list = stableList(pfnList(pfns)); // read once: the ledger releases what the core unpins
    const write = bool('write', o['write'], false);
    const dirty = bool('dirty', o['dirty'], false);
    const owner = ownerOption(this.mem, o['owner'], true);
    const runs = this.#pins.records(owner) ? this.#pins.pfnRunsView(withoutZeroPfns(list, this.mem)) : null;
    this.#pins.release(owner, runs, write, () => this.#native.unpinUserPages(list, write, dirty));
  }

  /** Releases FOLL_GET references from {@link AddressSpace.getUserPagesFast} (put_page each; the zero page skipped). */
  putUserPages(pfns: Uint32Array): void {
    const list = pfnList(pfns);
    try {
      this.#native.putUserPages(list);
    } catch (e) {
      this.#pins.tracking.coreError(e, list[0] ?? 0, (list[0] ?? 0) + 1); // debug EPINNED: counted in 'count' mode
    }
  }

  /**
   * fork(): a child address space. Holds write_protect_seq while it copies the page table;
   * private pages are shared copy-on-write (both sides write-protected), except pages that are
   * maybe pinned in an mm that has pinned: those are copied into the child at once (early COW).
   * @throws PinlabError `ENOMEM` when an early-COW copy finds no free page (no child is made)
   */
  fork(): AddressSpace {
    adopting = forkSpace(nativeOf(this.mem), this.#native, this.id);
    let child: AddressSpace;
    try {
      child = new AddressSpace(this.mem, { pages: this.pages });
    } finally {
      adopting = undefined;
    }
    child.#inheritFileMappings(this);
    return child;
  }

  /**
   * Moves the mapped pages of a range to newly allocated folios (a 2 MiB leaf moves whole).
   * Maybe-pinned folios are refused and stay; see {@link AddressSpaceStats} for the refusals.
   * @returns pages moved (4 KiB units)
   */
  migrate(range: VirtualRange): number {
    const { start, count } = virtualRange('migrate', range);
    return this.#native.migrate(start, count);
  }

  /** Compaction: moves order-0 pages down to the lowest free PFNs, so higher blocks merge. Refuses maybe-pinned pages. @returns pages moved */
  compact(): number {
    return this.#native.compact();
  }

  /** What `vpage` maps now (a lock-free snapshot), or null if nothing is mapped there. */
  translate(vpage: number): Translation | null {
    return this.#native.translate(integer('vpage', vpage));
  }

  /**
   * MMF_HAS_PINNED: set by the first pin call through this address space whose range is valid,
   * never cleared. As the kernel's gup sets it on entry, before the walk: a pin call that then
   * finds nothing to pin (`EFAULT`, a hole or a read-only page for a write) sets it too, and the
   * next fork copies maybe-pinned pages early. A call refused for its arguments (`EINVAL`, a
   * range past the end) does not (the kernel's fast path would set it there as well).
   */
  get hasPinned(): boolean {
    return this.#native.info().hasPinned;
  }

  /** Number of regions (a munmap or mprotect inside a region splits it). */
  get regions(): number {
    return this.#native.info().regions;
  }

  /** Present pages (4 KiB units), zero-page entries included. */
  get mappedPages(): number {
    return this.#native.info().mappedPages;
  }

  /** Swap entries (pages MADV_PAGEOUT took that were not faulted back in). */
  get swappedPages(): number {
    return this.#native.info().swappedPages;
  }

  /**
   * The swap entry at `vpage`, or null (present, or nothing there): pagemap's swap bit and
   * offset, and the SWP_EXCLUSIVE marker. {@link AddressSpace.translate} reports a swapped-out
   * page as null (not present).
   */
  swapEntry(vpage: number): SwapEntry | null {
    return this.#native.swapEntry(integer('vpage', vpage));
  }

  /** The swap device this address space shares with its fork family: slots, used, cached. */
  swapUsage(): SwapUsage {
    return this.#native.swapUsage();
  }

  /**
   * Installs (or, with null, removes) a race hook: the lockless walk calls it at each
   * {@link RacePoint} with the virtual page, so a test or simulation can munmap, migrate, fork
   * or mprotect exactly there and watch the walk's recheck, release and fallback. If the hook
   * throws, the walk still completes its protocol, gives back what it took, and the call
   * rethrows the hook's exception.
   */
  setRaceHook(hook: RaceHook | null): void {
    if (hook !== null && typeof hook !== 'function') invalid(`hook must be a function or null (got ${show(hook)})`);
    this.#native.setRaceHook(hook as ((point: string, vpage: number) => void) | null);
    markRaceHook(this.#native, hook !== null);
  }

  /** Event counters (see {@link AddressSpaceStats}). */
  stats(): AddressSpaceStats {
    return this.#native.stats();
  }

  /** @internal pin_user_pages_fast on behalf of `operation` (bios): the PFNs pinned. */
  pinUserPagesAs(operation: 'bioFromUserPages', start: number, count: number, options: PinUserOptions): Uint32Array {
    return this.#gup(start, count, options, GupFlag.Pin, operation).pfns;
  }

  #mmapHugetlb(o: Record<string, unknown>, start: number, count: number, write: boolean, populate: boolean, huge: boolean): void {
    if (huge) invalid('huge (THP) and hugetlb exclude each other');
    const file = o['file'];
    if (file !== undefined && !HugetlbFile.isGenuine(file)) invalid(`a hugetlb mapping's file must be a HugetlbFile (got ${show(file)})`);
    const order = file === undefined ? integer('hugetlb', o['hugetlb']) : file.order;
    if (order !== 9 && order !== 18) invalid(`hugetlb must be 9 (2 MiB) or 18 (1 GiB) (got ${order})`);
    if (file === undefined) {
      if (o['offset'] !== undefined) invalid('offset needs a file');
      this.#native.mmapHugetlb(start, count, order, write, populate, bool('shared', o['shared'], false));
      return;
    }
    if (file.mem !== this.mem) invalid(`file '${file.name}' lives in another page array`);
    if (o['hugetlb'] !== undefined && integer('hugetlb', o['hugetlb']) !== file.order) invalid(`hugetlb ${show(o['hugetlb'])} differs from file '${file.name}''s order ${file.order}`);
    if (populate) invalid('populate: a hugetlb file mapping maps the file\'s pages now anyway');
    const offset = o['offset'] === undefined ? 0 : integer('offset', o['offset']);
    const shared = bool('shared', o['shared'], true);
    this.#native.checkCanMap(start, count); // before the file fills any hole
    const { heads, undo } = file.headsFor(offset, count);
    try {
      this.#native.mapHugetlbFile(start, heads, order, write, shared);
    } catch (e) {
      undo();
      throw e;
    }
    this.#trackFileMapping(file, start, offset, count, !shared);
  }

  #mapFile(file: PageCacheFile, start: number, count: number, offset: number, write: boolean, priv: boolean): void {
    if (offset < 0) invalid(`offset must be >= 0 (got ${offset})`);
    this.#native.checkCanMap(start, count); // before the file allocates anything
    const { pfns, undo } = file.pagesFor(offset, count);
    try {
      if (priv) this.#native.mapPrivate(start, pfns, write, !file.shmem);
      else this.#native.mapShared(start, pfns, write, !file.shmem);
    } catch (e) {
      undo();
      throw e;
    }
    this.#trackFileMapping(file, start, offset, count, priv);
  }

  /** After an mremap: the file mappings the old range held now lie where the range went. */
  #remapFileMappings(start: number, count: number, newCount: number, at: number, fixed: boolean): void {
    // The records as they were (the native mremap does not touch them), before any is trimmed.
    const before = [...this.#files].map((file) => ({ file, mappings: file.mappingsOf(this) }));
    if (fixed) for (const { file } of before) file.unmapped(this, at, newCount); // MREMAP_FIXED replaced them
    const kept = Math.min(count, newCount); // a shrink unmapped the tail
    for (const { file, mappings } of before) {
      file.unmapped(this, start, count); // what lies outside the old range stays
      for (const m of mappings) {
        const lo = Math.max(m.start, start), hi = Math.min(m.start + m.count, start + kept);
        if (hi > lo) this.#trackFileMapping(file, at + (lo - start), m.offset + (lo - m.start), hi - lo, m.private === true);
      }
    }
  }

  /** A fork's child: the parent's file mappings that it maps too. */
  #inheritFileMappings(parent: AddressSpace): void {
    for (const file of parent.#files) {
      for (const m of file.mappingsOf(parent)) {
        // Only what the child maps: a MADV_DONTFORK region (hugetlb) stayed with the parent.
        const runs = this.#handle.regionRuns(m.start, m.count);
        for (let i = 0; i < runs.length; i += 2) {
          const at = runs[i]!;
          this.#trackFileMapping(file, at, m.offset + (at - m.start), runs[i + 1]!, m.private === true);
        }
      }
    }
  }

  // The batch hooks of ops/submit.ts (which cannot import this class).
  static {
    setBatchNeedsFollow((mem, spaces) => spaces.some(([id]) => AddressSpace.#mapsFiles(mem, id)));
    setBatchChecker((mem, ops) => AddressSpace.#checkBatch(mem, ops));
    setBatchFollower((mem, ops, results) => AddressSpace.#followBatch(mem, ops, results));
  }

  /**
   * Before a batch runs: a `fork` of an address space that maps files is refused (EINVAL,
   * nothing ran). Which of its file mappings the child inherits depends on the MADV_DONTFORK
   * ranges at the moment of the fork, which a batch's earlier ops may change and the records,
   * followed after the batch, cannot see; a wrong record would let a truncate or hole punch zap
   * the child's other memory. `mm.fork()` keeps them exactly.
   */
  static #checkBatch(mem: NativePageArray, ops: Uint32Array): void {
    for (const { k, i } of batchRecords(ops, FORK_CODES)) {
      const mm = spaceObject(mem, ops[i + 1]!);
      if (!(mm instanceof AddressSpace) || ![...mm.#files].some((f) => f.mappingsOf(mm).length > 0)) continue;
      invalid(`op ${k} of the batch forks mm#${mm.id}, which maps files: fork it with mm.fork() (a batch's fork cannot keep the files' records of the child's mappings)`);
    }
  }

  /** Whether address space `id` of `mem` has a file's record of its mappings to keep. */
  static #mapsFiles(mem: NativePageArray, id: number): boolean {
    const mm = spaceObject(mem, id);
    return mm instanceof AddressSpace && mm.#files.size > 0;
  }

  /**
   * After a submitted batch: the records of file mappings follow its layout ops that ran, in
   * order, as the one-by-one calls keep them (munmap trims them, mremap moves them; a fork of
   * a space that maps files is refused before the batch runs), so a truncate or hole punch
   * zaps what maps the file and nothing else. A batch's `mmap-file` maps PFNs, not a file: no
   * record (README, op streams).
   */
  static #followBatch(mem: NativePageArray, ops: Uint32Array, results: Int32Array): void {
    for (const { k, i, code } of batchRecords(ops, LAYOUT_CODES)) {
      const result = results[k]!;
      if (result < 0 || result === OP_NOT_RUN) continue; // refused or not run: nothing changed
      const mm = spaceObject(mem, ops[i + 1]!);
      if (!(mm instanceof AddressSpace) || mm.#files.size === 0) continue;
      const start = ops[i + 2]!, count = ops[i + 3]!;
      if (code === OP_CODES.munmap) {
        for (const file of mm.#files) file.unmapped(mm, start, count);
      } else {
        const fixed = ((ops[i]! >>> 8) & OP_FLAGS.fixed) !== 0;
        mm.#remapFileMappings(start, count, ops[i + entryWord(0)]!, result, fixed); // entry 0: newCount
      }
    }
  }

  #trackFileMapping(file: PageCacheFile | HugetlbFile, start: number, offset: number, count: number, priv: boolean): void {
    const self = new WeakRef<AddressSpace>(this);
    const hugetlb = file instanceof HugetlbFile;
    const zap = (s: number, c: number, evenCows: boolean): boolean => {
      const mm = self.deref();
      if (mm === undefined || mm.#disposed) return false; // a disposed one maps nothing
      // A private mapping of the page cache: its page-cache entries, and on truncate the copies
      // made from them. Of a hugetlb file: everything, copies too (hugetlb_vmdelete_list).
      if (priv && !hugetlb) mm.#handle.zapFile(s, c, evenCows);
      else mm.#handle.zap(s, c);
      return true;
    };
    const held = (s: number, c: number): Uint32Array => {
      const mm = self.deref();
      return mm === undefined || mm.#disposed ? new Uint32Array(0) : mm.#handle.heldPages(s, c);
    };
    file.addMapping({ mm: self, start, offset, count, zap, held, private: priv });
    this.#files.add(file);
  }

  #gup(start: number, count: number, options: unknown, base: number, op: GupOperation): GupResult {
    const pin = (base & GupFlag.Pin) !== 0;
    const o = optionsObject('gup options', options, pin ? ['write', 'longterm', 'fastOnly', 'owner'] : ['write', 'longterm', 'fastOnly']);
    let flags = base;
    const write = bool('write', o['write'], false);
    const longterm = bool('longterm', o['longterm'], false);
    if (write) flags |= GupFlag.Write;
    if (longterm) flags |= GupFlag.Longterm;
    if (bool('fastOnly', o['fastOnly'], false)) flags |= GupFlag.FastOnly;
    const owner = pin ? ownerOption(this.mem, o['owner']) : null;
    const s = integer('start', start);
    const pfns = this.#native.gup(s, integer('count', count), flags);
    if (op !== 'getUserPagesFast' && pfns.length > 0 && this.#pins.records(owner)) {
      // The call holds its pins (or references) until recorded: any failure from here gives
      // them back, so the call is all or nothing.
      const giveBack = (): void => {
        if (pin) this.#handle.unpinUserPages(pfns, write, false);
        else this.#handle.putUserPages(pfns);
      };
      let runs: Uint32Array;
      try {
        runs = this.#pins.pfnRuns(withoutZeroPfns(pfns, this.mem));
      } catch (e) {
        giveBack();
        if (e instanceof PinlabError) throw e;
        throw new PinlabError('ENOMEM', `the pin call's record could not be made (${e instanceof Error ? e.message : String(e)}); its pins were given back`);
      }
      const via = `mm#${this.id} vpages ${s}..${s + pfns.length - 1}`;
      this.#pins.recordOrGiveBack(owner, op, write, longterm, runs, via, giveBack);
    }
    return { pfns, count: pfns.length };
  }
}

type GupOperation = 'pinUserPagesFast' | 'pinUserPages' | 'getUserPagesFast' | 'bioFromUserPages';

// A batch's new address spaces become AddressSpace objects here (ops/spaces.ts cannot import
// this class: the page array, which submits batches, is imported by it).
setSpaceAdopter((mem, id, handle) => {
  adopting = { handle, id };
  try {
    return new AddressSpace(mem as PageArray, { pages: handle.info().pages });
  } finally {
    adopting = undefined;
  }
});

function thpOrdersOption(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) invalid(`thpOrders must be an array of orders 2..9 (got ${show(value)})`);
  let mask = 0;
  for (const v of value as unknown[]) {
    const k = integer('thpOrders entry', v);
    if (k < 2 || k > 9) invalid(`thpOrders entries must be orders 2..9 (got ${k})`);
    if ((mask & (1 << k)) !== 0) invalid(`thpOrders lists order ${k} twice`);
    mask |= 1 << k;
  }
  return mask;
}

function rulesOption(value: unknown): KernelRuleSet | Partial<KernelRules> | undefined {
  if (value === undefined || typeof value === 'string') {
    return value === undefined ? undefined : oneOf('rules', value, ['mainline', '2019'] as const, 'mainline');
  }
  const o = optionsObject('rules', value, ['zeroPageUnshare', 'longtermFileWrites', 'migratePteMappedThp', 'anonExclusive', 'pincountMinOrder', 'hugeZeroPage']);
  const r: Partial<KernelRules> = {};
  if (o['zeroPageUnshare'] !== undefined) r.zeroPageUnshare = bool('rules.zeroPageUnshare', o['zeroPageUnshare'], true);
  if (o['longtermFileWrites'] !== undefined) r.longtermFileWrites = oneOf('rules.longtermFileWrites', o['longtermFileWrites'], ['refuse', 'allow'] as const, 'refuse');
  if (o['migratePteMappedThp'] !== undefined) r.migratePteMappedThp = bool('rules.migratePteMappedThp', o['migratePteMappedThp'], true);
  if (o['anonExclusive'] !== undefined) r.anonExclusive = bool('rules.anonExclusive', o['anonExclusive'], true);
  if (o['hugeZeroPage'] !== undefined) r.hugeZeroPage = bool('rules.hugeZeroPage', o['hugeZeroPage'], true);
  if (o['pincountMinOrder'] !== undefined) {
    const v = o['pincountMinOrder'];
    if (v !== null) {
      const k = integer('rules.pincountMinOrder', v);
      if (k < 1 || k > 31) invalid(`rules.pincountMinOrder must be 1..31 or null (got ${k})`);
    }
    r.pincountMinOrder = v === null ? null : (v as number);
  }
  return r;
}

function virtualRange(what: string, range: unknown): VirtualRange {
  const o = optionsObject(`${what} range`, range, ['start', 'count']);
  if (range === undefined) invalid(`${what} needs { start, count }`);
  return { start: integer('start', o['start']), count: integer('count', o['count']) };
}

function pfnList(pfns: unknown): Uint32Array {
  return uint32List('pfns', pfns);
}
