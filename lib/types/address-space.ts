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
  /** Early-COW copies (pages) and migration refusals (folios) whose pins were not known exactly (bias-counted folios without debug mode). */
  unclassified: number;
}
