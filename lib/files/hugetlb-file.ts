// A hugetlb file: memfd_create(MFD_HUGETLB) or a hugetlbfs file, its pages from the page
// array's hugetlb pool. Mapping it (AddressSpace.mmap with `file`) maps these very pages,
// shared (MAP_SHARED: written in place, FOLL_LONGTERM|FOLL_WRITE allowed, hugetlbfs needs no
// dirty tracking) or private (MAP_PRIVATE: read-only until the first write or pin copies the
// whole huge page from the pool). A hole punch (punchHole, or MADV_REMOVE of a shared
// mapping) zaps every mapping of the pages, private copies included, and gives them back.
import { invalid } from '../errors.js';
import { nativeOf, type PageArray } from '../page-array.js';
import type { HugetlbOrder } from '../types/hugetlb.js';
import { integer, optionsObject, show } from '../validate.js';

import { MappedFile } from './file-mappings.js';
import type { LayoutChangeReport } from './page-cache-file.js';

/** Options of {@link HugetlbFile}'s constructor. */
export interface HugetlbFileOptions {
  /** The file's name, used in reports and errors. */
  name: string;
  /** The huge page size: order 9 (2 MiB, MFD_HUGE_2MB) or 18 (1 GiB, MFD_HUGE_1GB). */
  order: HugetlbOrder;
  /** Size in pages (4 KiB each), a multiple of the huge page size, at least one huge page. */
  pages: number;
}

/**
 * A hugetlb file of whole huge pages, allocated from the pool when it is created (as
 * ftruncate + fallocate would; `ENOMEM` if the pool has too few free unreserved pages). The
 * file holds one reference per page; {@link HugetlbFile.close} drops them, and each page goes
 * back to the pool once no mapping or pin holds it any more.
 *
 * {@link HugetlbFile.punchHole} (FALLOC_FL_PUNCH_HOLE, and what `madvise(range, 'remove')` of
 * a shared mapping does) removes pages: every mapping of them is zapped, the private copies
 * that private mappings made of them too (hugetlbfs has always done so: see the kernel's
 * selftest hugetlb-madvise.c), and the file lets go of them; a pinned page stays allocated
 * until its pins go. {@link HugetlbFile.fallocate} fills holes again. A mapping made over a
 * hole fills it first; an entry zapped by a punch stays empty (a later access is `EFAULT`, the
 * model's SIGBUS, as for a {@link PageCacheFile}), also after a fallocate.
 *
 * @example
 * ```ts
 * mem.setHugetlbPages(9, 4);
 * const file = new HugetlbFile(mem, { name: 'guest', order: 9, pages: 1024 }); // 2 huge pages
 * mm.mmap({ start: 0, count: 1024, file });                 // MAP_SHARED
 * mm.pinUserPagesFast(0, 1024, { write: true, longterm: true }); // allowed: no dirty tracking
 * mm.madvise({ start: 0, count: 512 }, 'remove');           // the first page leaves the file
 * file.fallocate(0, 512);                                   // a fresh page in the hole
 * ```
 */
export class HugetlbFile extends MappedFile {
  /** The page array the pages live in. */
  readonly mem: PageArray;
  /** The file's name. */
  readonly name: string;
  /** Its huge page size's order. */
  readonly order: HugetlbOrder;
  /** Size in pages (4 KiB). */
  readonly size: number;
  /** Per huge page, its head PFN, or HOLE. */
  readonly #heads: Uint32Array;
  #closed = false;

  /**
   * @throws PinlabError `EINVAL` naming a bad option; `ENOMEM` if the pool is short of pages
   */
  constructor(mem: PageArray, options: HugetlbFileOptions) {
    super();
    nativeOf(mem);
    if (options === undefined) invalid('hugetlb file options are required ({ name, order, pages })');
    const o = optionsObject('hugetlb file options', options, ['name', 'order', 'pages']);
    const native = nativeOf(mem); // after the options' getters, which may have disposed the array
    if (typeof o['name'] !== 'string' || o['name'].length === 0) invalid(`name must be a non-empty string (got ${show(o['name'])})`);
    const order = integer('order', o['order']);
    if (order !== 9 && order !== 18) invalid(`order must be 9 (2 MiB) or 18 (1 GiB) (got ${order})`);
    const pages = integer('pages', o['pages']);
    const huge = 2 ** order;
    if (pages < huge || pages % huge !== 0) invalid(`pages must be a positive multiple of ${huge} (got ${pages})`);
    this.mem = mem;
    this.name = o['name'];
    this.order = order;
    this.size = pages;
    this.#heads = native.hugetlbAllocPages(order, pages / huge);
  }

  /** @internal Whether `value` is a HugetlbFile its constructor made (not only its prototype). */
  static isGenuine(value: unknown): value is HugetlbFile {
    return typeof value === 'object' && value !== null && #closed in value;
  }

  /** Whether {@link HugetlbFile.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Pages (4 KiB units) the file holds: its size less its holes (once closed: the pages a mapping still holds). */
  get cachedPages(): number {
    return this.#presentHeads(0, this.#heads.length).length * 2 ** this.order;
  }

  /**
   * The PFN of file page `index` (4 KiB units).
   * @throws PinlabError `EINVAL` beyond the end, for a page in a hole (punched, not yet filled), or, once
   *   the file is closed, for a page no mapping holds any more (it left the file)
   */
  pfnAt(index: number): number {
    const i = integer('index', index);
    if (i < 0 || i >= this.size) invalid(`file page ${i} is beyond the end of '${this.name}' (size ${this.size})`);
    this.#forgetUnmapped();
    const head = this.#heads[Math.floor(i / 2 ** this.order)]!;
    if (head === HOLE && this.#closed) invalid(`file page ${i} of '${this.name}' is not in the closed file (no mapping holds it)`);
    if (head === HOLE) invalid(`file page ${i} of '${this.name}' is in a hole (punched; fallocate fills it)`);
    return head + (i % 2 ** this.order);
  }

  /**
   * FALLOC_FL_PUNCH_HOLE of file pages [offset, offset + count), whole huge pages: every
   * mapping of them is zapped (a shared one's entries, a private one's entries and the copies
   * it made: hugetlbfs zaps them all), and the file drops its reference on each page, which
   * goes back to the pool unless a pin (or another reference) still holds it. Holes in the
   * range are skipped.
   * @throws PinlabError `EINVAL` for a range that is not whole huge pages inside the file, or a closed file
   */
  punchHole(offset: number, count: number): LayoutChangeReport {
    const [first, last] = this.#pageRange('hole', offset, count);
    return this.removePages(first * 2 ** this.order, (last - first) * 2 ** this.order);
  }

  /**
   * @internal Would {@link HugetlbFile.removePages} of this range (whole huge pages inside the
   * file) be refused? Throws its refusal; changes nothing.
   */
  checkHolePunch(offset: number, count: number): void {
    const huge = 2 ** this.order;
    this.#checkOwnPuts(offset / huge, (offset + count) / huge);
  }

  /**
   * @internal The hole punch of whole huge pages [offset, offset + count) inside the file,
   * closed or not (MADV_REMOVE punches through a mapping, which keeps a closed file open): a
   * closed file's references are gone already, so only its mappings are zapped.
   */
  removePages(offset: number, count: number): LayoutChangeReport {
    const np = nativeOf(this.mem); // EINVAL once the page array is disposed
    const huge = 2 ** this.order;
    this.#checkOwnPuts(offset / huge, (offset + count) / huge);
    const zappedMappings = this.zapMapped(offset, count, true);
    let removed = 0;
    let stillReferenced = 0;
    for (let k = offset / huge; k < (offset + count) / huge; k++) {
      const head = this.#heads[k]!;
      if (head === HOLE) continue;
      this.#heads[k] = HOLE;
      removed += huge;
      // The file's reference (a closed file gave it up already): a pin keeps the page.
      const kept = this.#closed ? this.mem.refcount(head) > 0 : !np.putPage(head, 1);
      if (kept) stillReferenced += huge;
    }
    return { removedPages: removed, stillReferencedPages: stillReferenced, brokenLeases: [], zappedMappings };
  }

  /**
   * fallocate(2) of file pages [offset, offset + count), whole huge pages: a fresh page from
   * the pool for each hole there (all or none). Mappings already zapped by the punch stay
   * empty: map the range again to see the new pages.
   * @returns the pages (4 KiB units) allocated
   * @throws PinlabError `EINVAL` as {@link HugetlbFile.punchHole}; `ENOMEM` if the pool has too few free unreserved pages (nothing changes)
   */
  fallocate(offset: number, count: number): number {
    const [first, last] = this.#pageRange('fallocate', offset, count);
    return this.#fill(first, last);
  }

  /**
   * Closes the file (the last close of an unlinked memfd): its references on its pages go,
   * and each page returns to the pool once no mapping or pin holds it. Idempotent.
   * @throws PinlabError the refusal of a put of the file's references (one put behind its
   *   back), checked before any goes; `EINVAL` once the page array is disposed. The file stays
   *   open.
   */
  close(): void {
    if (this.#closed) return;
    const np = nativeOf(this.mem); // EINVAL once the page array is disposed: still open
    const heads = this.#presentHeads(0, this.#heads.length);
    if (heads.length > 0) np.checkPutPages(Uint32Array.from(heads)); // its puts checked before any goes
    this.#closed = true;
    for (const head of heads) np.putPage(head, 1);
    this.#forgetUnmapped(); // the pages no mapping holds went back to the pool
  }

  // ---- for AddressSpace (internal) ---------------------------------------------------------

  /**
   * @internal The heads of the huge pages covering [offset, offset + count), both aligned,
   * filling holes there first (as a fault would), and an undo that punches the holes it filled
   * again (for a mapping that then fails).
   */
  headsFor(offset: number, count: number): { heads: Uint32Array; undo: () => void } {
    const [first, last] = this.#pageRange('mapping', offset, count);
    const holes: number[] = [];
    for (let k = first; k < last; k++) if (this.#heads[k] === HOLE) holes.push(k);
    this.#fill(first, last);
    const undo = (): void => {
      for (const k of holes) {
        this.mem.putPage(this.#heads[k]!, 1);
        this.#heads[k] = HOLE;
      }
    };
    return { heads: this.#heads.slice(first, last), undo };
  }

  /** Huge pages [first, last) of a range of whole huge pages inside the open file. */
  #pageRange(what: string, offset: number, count: number): [number, number] {
    const off = integer('offset', offset);
    const n = integer('count', count);
    if (this.#closed) invalid(`hugetlb file '${this.name}' is closed`);
    const huge = 2 ** this.order;
    if (off < 0 || n < 0 || off % huge !== 0 || n % huge !== 0) invalid(`${what} offset and count must be non-negative multiples of the huge page size ${huge} (got ${off}, ${n})`);
    if (off + n > this.size) invalid(`${what} ${off}..${off + n - 1} is beyond the end of '${this.name}' (size ${this.size})`);
    return [off / huge, (off + n) / huge];
  }

  /**
   * The file's puts of its references on huge pages [first, last) checked before anything
   * changes, with the puts of the references the zap of their range drops (MappedFile): a
   * reference put behind the file's back would refuse one only after the others, or the
   * mappings' zaps, were done.
   */
  #checkOwnPuts(first: number, last: number): void {
    const huge = 2 ** this.order;
    // A closed file's references are gone already: only its mappings' zaps put any.
    const heads = this.#closed ? [] : this.#presentHeads(first, last);
    this.checkPutsAfterZap(heads, first * huge, (last - first) * huge);
  }

  /** The heads of huge pages [first, last) that are not holes. */
  #presentHeads(first: number, last: number): number[] {
    this.#forgetUnmapped();
    return Array.from(this.#heads.subarray(first, last)).filter((h) => h !== HOLE);
  }

  /**
   * A closed file keeps only the pages a mapping still maps (the mapping holds the file open):
   * a page no mapping maps any more left the file with its last mapping's reference, and may
   * already belong to another file, so it is forgotten (a hole).
   */
  #forgetUnmapped(): void {
    if (!this.#closed) return;
    const huge = 2 ** this.order;
    for (let k = 0; k < this.#heads.length; k++) {
      if (this.#heads[k] !== HOLE && !this.mapped(k * huge, huge)) this.#heads[k] = HOLE;
    }
  }

  /** Fills the holes among huge pages [first, last), all or none: the pages allocated. */
  #fill(first: number, last: number): number {
    let holes = 0;
    for (let k = first; k < last; k++) if (this.#heads[k] === HOLE) holes++;
    if (holes === 0) return 0;
    const fresh = nativeOf(this.mem).hugetlbAllocPages(this.order, holes); // ENOMEM: none taken
    let j = 0;
    for (let k = first; k < last; k++) if (this.#heads[k] === HOLE) this.#heads[k] = fresh[j++]!;
    return holes * 2 ** this.order;
  }
}

/** A hole's entry in the heads (PFNs stay below 2^31). */
const HOLE = 0xffff_ffff;
