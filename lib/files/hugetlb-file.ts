// A hugetlb file: memfd_create(MFD_HUGETLB) or a hugetlbfs file, its pages from the page
// array's hugetlb pool. Mapping it (AddressSpace.mmap with `file`) maps these very pages,
// shared (MAP_SHARED: written in place, FOLL_LONGTERM|FOLL_WRITE allowed, hugetlbfs needs no
// dirty tracking) or private (MAP_PRIVATE: read-only until the first write or pin copies the
// whole huge page from the pool).
import { invalid } from '../errors.js';
import { nativeOf, type PageArray } from '../page-array.js';
import type { HugetlbOrder } from '../types/hugetlb.js';
import { integer, optionsObject, show } from '../validate.js';

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
 * @example
 * ```ts
 * mem.setHugetlbPages(9, 4);
 * const file = new HugetlbFile(mem, { name: 'guest', order: 9, pages: 1024 }); // 2 huge pages
 * mm.mmap({ start: 0, count: 1024, file });                 // MAP_SHARED
 * mm.pinUserPagesFast(0, 1024, { write: true, longterm: true }); // allowed: no dirty tracking
 * ```
 */
export class HugetlbFile {
  /** The page array the pages live in. */
  readonly mem: PageArray;
  /** The file's name. */
  readonly name: string;
  /** Its huge page size's order. */
  readonly order: HugetlbOrder;
  /** Size in pages (4 KiB). */
  readonly size: number;
  readonly #heads: Uint32Array;
  #closed = false;

  /**
   * @throws PinlabError `EINVAL` naming a bad option; `ENOMEM` if the pool is short of pages
   */
  constructor(mem: PageArray, options: HugetlbFileOptions) {
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

  /** The PFN of file page `index` (4 KiB units). */
  pfnAt(index: number): number {
    const i = integer('index', index);
    if (i < 0 || i >= this.size) invalid(`file page ${i} is beyond the end of '${this.name}' (size ${this.size})`);
    return this.#heads[Math.floor(i / 2 ** this.order)]! + (i % 2 ** this.order);
  }

  /** @internal The heads of the huge pages covering [offset, offset + count), both aligned. */
  headsFor(offset: number, count: number): Uint32Array {
    if (this.#closed) invalid(`hugetlb file '${this.name}' is closed`);
    const huge = 2 ** this.order;
    if (offset < 0 || offset % huge !== 0 || count % huge !== 0) invalid(`offset and count must be multiples of the huge page size ${huge} (got ${offset}, ${count})`);
    if (offset + count > this.size) invalid(`offset ${offset} + count ${count} runs past the end of '${this.name}' (size ${this.size})`);
    return this.#heads.slice(offset / huge, (offset + count) / huge);
  }

  /**
   * Closes the file (the last close of an unlinked memfd): its references on its pages go,
   * and each page returns to the pool once no mapping or pin holds it. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const head of this.#heads) this.mem.putPage(head, 1);
  }
}
