// Types of lib/address-space.ts that the raw addon surface (lib/native.ts) shares.

/** Event counters of an {@link AddressSpace}. */
export interface AddressSpaceStats {
  /** get/pin_user_pages calls. */
  gupCalls: number;
  /** Pages the lockless walk took. */
  fastPathPages: number;
  /** Calls that handed pages to the slow path. */
  slowPathFallbacks: number;
  /** Pages the slow path took. */
  slowPathPages: number;
  /** Speculative grabs released because the PTE or PMD changed under them. */
  recheckFailures: number;
  /** Fast walks given up because fork's write_protect_seq was odd or moved. */
  seqRetries: number;
  /** Pages faulted in (4 KiB units; a THP fault counts 512). */
  faults: number;
  /** Write faults that copied a shared (COW) or zero page. */
  cowCopies: number;
  /** Write faults that reused an exclusively owned page (4 KiB units). */
  cowReuses: number;
  /** Pages fork copied at once because they were maybe pinned in an mm that has pinned. */
  earlyCowCopies: number;
  /** ... of which the folio held no real pin, in pages like `earlyCowCopies` (known exactly: debug mode or an exact scheme). */
  earlyCowFalsePositives: number;
  /** Pages moved by migrate, compact and FOLL_LONGTERM (4 KiB units). */
  migratedPages: number;
  /** Folios migration refused because they were maybe pinned. */
  migrationRefusals: number;
  /** ... of which the folio held no real pin (known exactly). */
  migrationFalsePositives: number;
  /** Folios refused for other references (COW-shared, a racing gup_fast, PTE-mapped THP). */
  migrationBusy: number;
  /** Folios moved out of ZONE_MOVABLE for long-term pins. */
  longtermMigrations: number;
  /**
   * Early-COW copies (pages), migration refusals (folios), pageout refusals and collapse skips
   * (pages) whose pins were not known exactly (bias-counted folios without debug mode): the sum
   * of `earlyCowUnclassified`, `migrationUnclassified`, `pageoutUnclassified` and
   * `collapseUnclassified`.
   */
  unclassified: number;
  /** Pages MADV_PAGEOUT unmapped into swap entries (4 KiB units; a swapped-out THP counts 512). */
  pagedOutPages: number;
  /** Pages MADV_PAGEOUT kept because their folio was maybe pinned (try_to_unmap refuses an exclusive, maybe-pinned folio). */
  pageoutRefusals: number;
  /** ... of which the folio held no real pin, in pages (known exactly: debug mode or an exact scheme). */
  pageoutFalsePositives: number;
  /** Pages MADV_PAGEOUT kept for other reasons: the folio is mapped by another address space too, reaches outside the range, or the swap is full. */
  pageoutBusy: number;
  /** Pages faulted back in from swap entries. */
  swapIns: number;
  /** ... of which mapped the page the swap cache held (a parent and a child faulting the same entry map the same page). */
  swapCacheHits: number;
  /** mremap calls that changed the map (moved, grew or shrank a range). */
  remaps: number;
  /** Present entries mremap moved to new addresses (4 KiB units; a PMD leaf counts 512). */
  remapMovedPages: number;
  /** THPs made by MADV_COLLAPSE (`madvise(range, 'collapse')`) or {@link AddressSpace.khugepaged}. */
  collapses: number;
  /**
   * Pages collapse turned away because their folio held references beyond its mappings and the
   * scheme reported it maybe pinned (the kernel's check is the refcount, which any pin or
   * FOLL_GET reference fails; this is what a diagnosis trusting "maybe pinned" blames on pins).
   */
  collapseMaybePinned: number;
  /** ... of which the folio held no real pin (known exactly: debug mode or an exact scheme). */
  collapseFalsePositives: number;
  /** Pages collapse turned away for other references (FOLL_GET, write-bias's hidden read pins). */
  collapseBusy: number;
  /** Of `earlyCowCopies`, the pages whose folio's pins were not known exactly (part of `unclassified`). */
  earlyCowUnclassified: number;
  /** Of `migrationRefusals`, the folios whose pins were not known exactly (part of `unclassified`). */
  migrationUnclassified: number;
  /** Of `pageoutRefusals`, the pages whose folio's pins were not known exactly (part of `unclassified`). */
  pageoutUnclassified: number;
  /** Of `collapseMaybePinned`, the pages whose folio's pins were not known exactly (part of `unclassified`). */
  collapseUnclassified: number;
}

/** A swap entry (see {@link AddressSpace.swapEntry}): where MADV_PAGEOUT put the page. */
export interface SwapEntry {
  /** The swap slot (pagemap's swap offset). */
  slot: number;
  /** SWP_EXCLUSIVE: the page was this address space's alone when it was paged out (fork clears it). */
  exclusive: boolean;
}

/** The swap device an address space shares with its fork family (see {@link AddressSpace.swapUsage}). */
export interface SwapUsage {
  /** Slots (4 KiB each): the `swapPages` option. */
  pages: number;
  /** Slots some swap entry names. */
  used: number;
  /** ... of which hold a page in the swap cache (a page read in for one entry that others still name, or one that could not be freed). */
  cached: number;
}

/** The named kernel rule sets (see {@link KernelRules}): today's mainline, or the kernels of 2019. */
export type KernelRuleSet = 'mainline' | '2019';

/**
 * The kernel rules an address space follows where the kernel changed them since 2019, as named
 * switches (the README's "Kernel rules" table gives each one's kernel version or proposal).
 */
export interface KernelRules {
  /**
   * Linux 6.2 (commit 84209e87c696): a FOLL_LONGTERM read pin of the shared zero page (an
   * untouched page) in a private mapping unshares it first: the process gets its own page, the
   * pin holds it, and the process's later writes land in the pinned page. Off (2019): the pin
   * gets the zero page and the next write goes to a new page the pin never sees.
   */
  zeroPageUnshare: boolean;
  /**
   * FOLL_LONGTERM|FOLL_WRITE on a shared mapping of a file that needs dirty tracking (a
   * PageCacheFile without `shmem`): `'refuse'` answers `EFAULT` and pins nothing (Linux
   * 6.5, commits 8ac268436e6d and a6e79df92e4a); `'allow'` pins as any page (2019; the layout-lease proposal guards
   * such pins, see PageCacheFile.takeLease). shmem and anonymous memory are always allowed.
   */
  longtermFileWrites: 'refuse' | 'allow';
  /**
   * Migration of a PTE-mapped large folio (a THP after a partial munmap, mprotect or
   * MADV_DONTNEED) moves its mapped pages, as the kernel splits the folio and migrates the
   * pieces; so FOLL_LONGTERM pins of such ranges in ZONE_MOVABLE succeed. Off: refused as busy
   * (pinlab before issue 13).
   */
  migratePteMappedThp: boolean;
  /**
   * PageAnonExclusive (Linux 5.19, commit 6c287605fd56): an exclusive marker on each anonymous
   * page this mm maps alone decides reuse versus copy on a write fault, and a FOLL_PIN needs an
   * exclusive page (a R/O pin of a COW-shared page unshares it first, FOLL_UNSHARE). Off (2019):
   * a write fault reuses an anonymous page its mapcount says is mapped once, whatever other
   * references it has, and a R/O pin takes a COW-shared page as it is: the COW/GUP leak of
   * CVE-2020-29374 (a child's vmsplice() reference sees the parent's later writes).
   */
  anonExclusive: boolean;
  /**
   * hybrid's smallest folio order with an exact pincount, or `null` for none (every folio
   * counted by the bias, the 2019 kernels): 2 from Linux 5.7 (commit 47e29d32afba) to 6.14,
   * 1 on 64-bit since folio_has_pincount (6.15). The PageArray counts the pins, so the value
   * must be its `pincountMinOrder` (null: 31) when its scheme keeps a first-tail pincount
   * (hybrid); other schemes accept any value. `EINVAL` otherwise, nothing created. Left
   * unstated (no `rules`, or an object without this key) it is the array's; the named sets
   * state theirs (`'mainline'` 1, `'2019'` null).
   */
  pincountMinOrder: number | null;
  /**
   * The huge zero page (`/sys/kernel/mm/transparent_hugepage/use_zero_page`, on by default since
   * Linux 3.8, so on under both named sets): a read fault of a whole, empty, 2 MiB-aligned
   * stretch of a `huge` region maps the array's huge zero folio ({@link PageArray.hugeZeroPfn})
   * by one read-only PMD leaf instead of allocating a THP. A write fault (or the unshare of a
   * long-term read pin under `zeroPageUnshare`) replaces it with a fresh THP, or with the zero
   * page's PTEs and a 4 KiB page when no 2 MiB block is free. Off: such read faults allocate a
   * THP (use_zero_page 0). Default `true`.
   */
  hugeZeroPage: boolean;
}
