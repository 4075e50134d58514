// Types of lib/stress.ts that the raw addon surface (lib/native.ts) shares.

/** The harness's counters and verdict. */
export interface StressReport {
  /** pin/get_user_pages_fast calls made by the pinner threads (and forked children). */
  pinCalls: number;
  /** Pages those calls returned. */
  pinnedPages: number;
  /** Calls that returned fewer pages than asked (a region was unmapped under them). */
  partialCalls: number;
  /** Calls that returned an error (nothing was mapped there at all). */
  failedCalls: number;
  /** Pin checks made while holding a pin (allocated, maybe-pinned, exact pin in debug mode). */
  pinsChecked: number;
  /** Pages the lockless walk took. */
  fastPathPages: number;
  /** Calls that fell back to the slow path. */
  slowPathFallbacks: number;
  /** Speculative grabs released after a failed recheck. */
  recheckFailures: number;
  /** Fast walks undone because fork ran. */
  seqRetries: number;
  /** munmap calls (whole regions and holes). */
  munmaps: number;
  /** mprotect round trips. */
  mprotects: number;
  /** madvise calls (MADV_DONTNEED, MADV_DONTFORK, MADV_DOFORK on a stretch of a region). */
  madvises: number;
  /** MADV_PAGEOUT calls racing the pins (maybe-pinned folios stay), each followed by a read that swaps (part of) the stretch back in; forks' children page out too. */
  pageouts: number;
  /** Pages those calls swapped out (the parent's). */
  pagedOutPages: number;
  /** Pages faulted back in from swap (the parent's). */
  swapIns: number;
  /** mremap calls that succeeded (a stretch moved within its slot with MREMAP_FIXED, sometimes MREMAP_DONTUNMAP; or shrunk and grown back in place). */
  mremaps: number;
  /** MADV_COLLAPSE calls (a 2 MiB stretch of a huge slot) and khugepaged passes. */
  collapseCalls: number;
  /** THPs those collapses made (refused ones: pins or references were there). */
  collapsed: number;
  /** Truncates of the private file mapping (its page-cache pages and COW copies zapped, then mapped afresh). */
  fileTruncates: number;
  /** forks (each child writes, pins and exits). */
  forks: number;
  /** COW copies in the parent (write faults on shared pages). */
  cowCopies: number;
  /** Early-COW copies at fork. */
  earlyCowCopies: number;
  /** Pages moved by migrate, compact and long-term pins. */
  migratedPages: number;
  /** Folios migration refused as maybe pinned. */
  migrationRefusals: number;
  /** Folios migration refused for other references. */
  migrationBusy: number;
  /** compact() calls. */
  compactions: number;
  /** Logical pins acquired and released over the run (must be equal). */
  pinAcquired: number;
  /** See {@link StressReport.pinAcquired}. */
  pinReleased: number;
  /** Broken invariants found (0 when the run is sound). */
  violations: number;
  /** The first broken invariant, or null. */
  firstViolation: string | null;
  /** Every count balanced, every pin was real, and every page went back to the allocator. */
  balanced: boolean;
}
