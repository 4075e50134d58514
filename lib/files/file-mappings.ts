// The live mappings of one file (the kernel's i_mmap tree of a file's address_space): which
// address space maps which file range where, so that a hole punch or truncate can zap them all.
// Shared by PageCacheFile and HugetlbFile; AddressSpace adds, trims and forks the entries.
import { nativeOf, type PageArray } from '../page-array.js';

/** A live mapping of a file range into an address space. @internal */
export interface FileMapping {
  /** Identifies the address space (held weakly, so a dropped one is not kept alive). */
  readonly mm: WeakRef<object>;
  start: number;
  offset: number;
  count: number;
  /**
   * Zaps [start, start+count) of the address space (no-op once it is gone: false); `evenCows`:
   * also a private mapping's anonymous copies of the file's pages (truncate; a hole punch keeps
   * them).
   */
  readonly zap: (start: number, count: number, evenCows: boolean) => boolean;
  /**
   * The file pages [start, start+count) of the address space holds where no entry maps them
   * (after MADV_DONTNEED, or a private hugetlb mapping's copy): a zap puts these references too.
   */
  readonly held: (start: number, count: number) => Uint32Array;
  /** A private (MAP_PRIVATE) mapping. */
  readonly private?: boolean;
}

/** @internal The set of a file's live mappings. */
export class FileMappings {
  readonly #mappings = new Set<FileMapping>();

  add(m: FileMapping): void {
    this.#prune();
    this.#mappings.add(m);
  }

  /** An address space unmapped [start, start+count): trims its mappings there. */
  unmapped(mm: object, start: number, count: number): void {
    const end = start + count;
    for (const m of [...this.#mappings]) {
      if (m.mm.deref() !== mm) continue;
      const mEnd = m.start + m.count;
      if (mEnd <= start || m.start >= end) continue;
      this.#mappings.delete(m);
      if (m.start < start) this.#mappings.add({ ...m, count: start - m.start });
      if (mEnd > end) this.#mappings.add({ ...m, start: end, offset: m.offset + (end - m.start), count: mEnd - end });
    }
  }

  /** The mappings `mm` has of the file. */
  of(mm: object): FileMapping[] {
    this.#prune();
    return [...this.#mappings].filter((m) => m.mm.deref() === mm);
  }

  /** Zaps file pages [offset, offset+count) wherever they are mapped: the mappings zapped. */
  zap(offset: number, count: number, evenCows: boolean): number {
    let zapped = 0;
    for (const [m, start, n] of this.#overlapping(offset, count)) if (m.zap(start, n, evenCows)) zapped++;
    return zapped;
  }

  /** Whether a live mapping maps any of file pages [offset, offset+count). */
  maps(offset: number, count: number): boolean {
    return this.#overlapping(offset, count).length > 0;
  }

  /** The PFNs the mappings of file pages [offset, offset+count) hold without an entry there. */
  held(offset: number, count: number): number[] {
    const out: number[] = [];
    for (const [m, start, n] of this.#overlapping(offset, count)) out.push(...m.held(start, n));
    return out;
  }

  /** The mappings of file pages [offset, offset+count), each with the virtual range it maps them at. */
  #overlapping(offset: number, count: number): Array<[FileMapping, number, number]> {
    const end = offset + count;
    this.#prune();
    const out: Array<[FileMapping, number, number]> = [];
    for (const m of this.#mappings) {
      const a = Math.max(offset, m.offset);
      const b = Math.min(end, m.offset + m.count);
      if (a < b) out.push([m, m.start + (a - m.offset), b - a]);
    }
    return out;
  }

  /** Mappings of collected address spaces are dropped (called wherever the set is walked). */
  #prune(): void {
    for (const m of this.#mappings) if (m.mm.deref() === undefined) this.#mappings.delete(m);
  }
}

/**
 * @internal What a file that address spaces map keeps of them: the records AddressSpace adds,
 * trims and forks, and the zap of a range wherever it is mapped (PageCacheFile, HugetlbFile).
 */
export abstract class MappedFile {
  readonly #mappings = new FileMappings();

  /** @internal */
  addMapping(m: FileMapping): void {
    this.#mappings.add(m);
  }

  /** @internal An address space unmapped [start, start+count): trim its mappings of this file. */
  unmapped(mm: object, start: number, count: number): void {
    this.#mappings.unmapped(mm, start, count);
  }

  /** @internal The mappings `mm` has of this file (for fork). */
  mappingsOf(mm: object): FileMapping[] {
    return this.#mappings.of(mm);
  }

  /** Whether a live mapping maps any of file pages [offset, offset+count). */
  protected mapped(offset: number, count: number): boolean {
    return this.#mappings.maps(offset, count);
  }

  /** Zaps file pages [offset, offset+count) wherever they are mapped: the mappings zapped. */
  protected zapMapped(offset: number, count: number, evenCows: boolean): number {
    return this.#mappings.zap(offset, count, evenCows);
  }

  /**
   * Would the file's own puts of `heads` (one each) be refused after a zap of file pages
   * [offset, offset+count)? Throws that refusal, changing nothing. The zap puts its entries'
   * references, each a mapping reference too (the check's answer stays), and the references
   * its mappings hold without an entry, plain ones: those are checked as puts beside the
   * file's (a reference put behind the file's back shows up here, not after the zap).
   */
  protected checkPutsAfterZap(heads: readonly number[], offset: number, count: number): void {
    const puts = [...heads, ...this.#mappings.held(offset, count)];
    if (puts.length > 0) nativeOf(this.mem).checkPutPages(Uint32Array.from(puts));
  }

  /** The page array the file's pages live in. */
  abstract readonly mem: PageArray;
}
