// A file modelled as its own page-cache folios, with layout leases (seed 000: Ira Weiny's
// "fail truncate with a lease", Jan Kara's vaddr_pin_leased_pages). Mapping it into an
// AddressSpace (mmap with `file`) maps these very folios shared; truncate and hole punch zap
// those mappings, drop the page cache's references, and respect long-term pins.
import { PinlabError, invalid } from '../errors.js';
import { provenanceOf, type PinRecord } from '../owners/ledger.js';
import { showRun } from '../owners/runs.js';
import { describeProvenance } from '../owners/tracking.js';
import { PinOwner, nativeOf, pinsOf, type PageArray } from '../page-array.js';
import type { PinOwnerRef } from '../types/owners.js';
import { bool, integer, optionsObject, show } from '../validate.js';

import { MappedFile } from './file-mappings.js';

/** Options of {@link PageCacheFile}'s constructor. */
export interface PageCacheFileOptions {
  /** The file's name, used in reports and errors. */
  name: string;
  /** Size in pages (4 KiB each), a multiple of the folio size. Pages are allocated when first mapped. */
  pages: number;
  /** Order of the page-cache folios (0: 4 KiB, 9: 2 MiB). Default 0. */
  folioOrder?: number;
  /**
   * A shmem/memfd file (tmpfs): no dirty tracking by write faults, so FOLL_LONGTERM|FOLL_WRITE
   * pins of its shared mappings stay allowed under every rule set. Default false: a regular
   * file of a file system that needs dirty tracking (see {@link KernelRules.longtermFileWrites}).
   */
  shmem?: boolean;
}

/** What a layout change was: a truncate (shrinking the file) or a hole punch. */
export type LayoutChange = 'truncate' | 'punchHole';

/** A lease break, as reported to the lease holder's `onBreak` and listed by {@link PageCacheFile.leaseBreaks}. */
export interface LeaseBreak {
  /** The file's name. */
  file: string;
  /** The lease holder's name. */
  owner: string;
  /** What broke it. */
  reason: LayoutChange;
  /** First file page removed. */
  offset: number;
  /** File pages removed. */
  count: number;
  /** Pages in the removed range the holder still held long-term pins on: they leave the file and stay allocated until unpinned. */
  pinnedPages: number;
}

/** Options of {@link PageCacheFile.takeLease}. */
export interface LeaseOptions {
  /** Called once, after the layout change that broke the lease has completed. */
  onBreak?: (event: LeaseBreak) => void;
}

/** What a truncate or hole punch did. */
export interface LayoutChangeReport {
  /** File pages removed from the page cache. */
  removedPages: number;
  /** Of those, pages whose folio stayed allocated (pinned, or referenced elsewhere) after the page cache let go. */
  stillReferencedPages: number;
  /** Leases broken by the change. */
  brokenLeases: LeaseBreak[];
  /** Page-table entries zapped in the address spaces that mapped the range. */
  zappedMappings: number;
}

/**
 * A layout lease (F_LAYOUT-style) on a {@link PageCacheFile}: its holder may keep long-term
 * pins on the file's pages through a truncate or hole punch, which then breaks the lease and
 * tells the holder. Without a lease, such pins make the layout change fail with `EBUSY`.
 */
export class Lease {
  /** The file. */
  readonly file: PageCacheFile;
  /** The holder. */
  readonly owner: PinOwner;
  /** The break that ended the lease, or null while it holds. */
  breakReport: LeaseBreak | null = null;
  #released = false;
  readonly #onBreak: ((event: LeaseBreak) => void) | undefined;

  /** @internal Use {@link PageCacheFile.takeLease}. */
  constructor(file: PageCacheFile, owner: PinOwner, onBreak?: (event: LeaseBreak) => void) {
    this.file = file;
    this.owner = owner;
    this.#onBreak = onBreak;
  }

  /** Whether the lease still protects its holder's pins (not broken, not released, holder not dropped). */
  get held(): boolean {
    return this.breakReport === null && !this.#released && !this.owner.dropped;
  }

  /** Gives the lease up. */
  release(): void {
    this.#released = true;
  }

  /** @internal */
  breakWith(event: LeaseBreak): void {
    this.breakReport = event;
  }

  /** @internal */
  notify(): void {
    if (this.breakReport !== null) this.#onBreak?.(this.breakReport);
  }
}

interface HeldPages {
  pages: number;
  pfn: number;
  count: number;
}

/**
 * A file as page-cache folios of one order. The page cache holds one reference per folio;
 * mapping the file maps these folios shared (every mapping sees the same pages, writes never
 * copy). Truncate and hole punch remove folios: they are refused with `EBUSY` while an owner
 * without a layout lease holds long-term pins there.
 *
 * @example
 * ```ts
 * const file = new PageCacheFile(mem, { name: 'data', pages: 1024 });
 * mm.mmap({ start: 0, count: 1024, file });
 * const rdma = mem.pinOwner('rdma', { kind: 'device' });
 * mm.pinUserPagesFast(0, 256, { write: true, longterm: true, owner: rdma });
 * file.truncate(0);                       // EBUSY: 'rdma' pins pages 0..255 without a lease
 * file.takeLease(rdma, { onBreak: (b) => console.log(b) });
 * file.truncate(0);                       // proceeds; the lease breaks and rdma is told
 * ```
 */
export class PageCacheFile extends MappedFile {
  /** The page array the page cache lives in. */
  readonly mem: PageArray;
  /** The file's name. */
  readonly name: string;
  /** Order of its folios. */
  readonly folioOrder: number;
  /** A shmem/memfd file (see {@link PageCacheFileOptions.shmem}). */
  readonly shmem: boolean;
  #size: number;
  /** Per folio index, the head PFN of a cached folio; a hole has no entry (a file may be 2^31 pages of holes). */
  #heads = new Map<number, number>();
  readonly #leases: Lease[] = [];
  readonly #breaks: LeaseBreak[] = [];

  /**
   * @throws PinlabError `EINVAL` naming a bad option (a size that is not a multiple of the folio size)
   */
  constructor(mem: PageArray, options: PageCacheFileOptions) {
    super();
    nativeOf(mem);
    const o = optionsObject('file options', options, ['name', 'pages', 'folioOrder', 'shmem']);
    if (options === undefined) invalid('file options are required ({ name, pages })');
    if (typeof o['name'] !== 'string' || o['name'].length === 0) invalid(`name must be a non-empty string (got ${show(o['name'])})`);
    const order = o['folioOrder'] === undefined ? 0 : integer('folioOrder', o['folioOrder']);
    if (order < 0 || order > 18) invalid(`folioOrder must be 0..18 (got ${order})`);
    this.mem = mem;
    this.name = o['name'];
    this.folioOrder = order;
    this.shmem = bool('shmem', o['shmem'], false);
    this.#size = this.#checkSize('pages', integer('pages', o['pages']));
    nativeOf(mem); // again: an option's getter may have disposed the array
  }

  /** @internal Whether `value` is a PageCacheFile its constructor made (not only its prototype). */
  static isGenuine(value: unknown): value is PageCacheFile {
    return typeof value === 'object' && value !== null && #leases in value;
  }

  /** Size in pages. */
  get size(): number {
    return this.#size;
  }

  /** The PFN caching file page `index`, or null for a hole (never mapped, or punched). */
  pfnAt(index: number): number | null {
    const i = integer('index', index);
    if (i < 0 || i >= this.#size) throw new PinlabError('ERANGE', `file page ${i} is beyond the end of '${this.name}' (size ${this.#size})`);
    const head = this.#heads.get(i >> this.folioOrder); // i < 2^31: the shift keeps its sign
    return head === undefined ? null : head + (i & ((1 << this.folioOrder) - 1));
  }

  /** Pages the page cache holds (holes excluded). */
  get cachedPages(): number {
    return this.#heads.size * 2 ** this.folioOrder;
  }

  /**
   * Takes a layout lease for `owner`: its long-term pins on this file no longer block a
   * truncate or hole punch, which instead breaks the lease and reports it.
   * @throws PinlabError `EINVAL` if the owner already holds a lease on this file, is dropped, or belongs to another page array
   */
  takeLease(owner: PinOwner, options?: LeaseOptions): Lease {
    const o = optionsObject('lease options', options, ['onBreak']);
    if (o['onBreak'] !== undefined && typeof o['onBreak'] !== 'function') invalid(`onBreak must be a function (got ${show(o['onBreak'])})`);
    if (!PinOwner.isGenuine(owner) || owner.mem !== this.mem) invalid(`owner must be a PinOwner of this file's page array (got ${show(owner)})`);
    if (owner.dropped) invalid(`owner '${owner.name}' was dropped`);
    if (this.#leaseOf(owner) !== undefined) invalid(`owner '${owner.name}' already holds a lease on '${this.name}'`);
    const lease = new Lease(this, owner, o['onBreak'] as LeaseOptions['onBreak']);
    this.#pruneLeases();
    this.#leases.push(lease);
    return lease;
  }

  /** The leases that still hold. */
  leases(): Lease[] {
    return this.#leases.filter((l) => l.held);
  }

  /** The lease breaks so far, oldest first (the most recent 1024). */
  leaseBreaks(): LeaseBreak[] {
    return [...this.#breaks];
  }

  /**
   * Sets the size to `pages`. Growing adds holes; shrinking removes the tail as
   * {@link PageCacheFile.punchHole} does (and the same `EBUSY` rule applies).
   * @throws PinlabError `EINVAL` for a size that is not a multiple of the folio size; `EBUSY`
   *   when an owner without a lease holds long-term pins in the removed range; the refusal of
   *   the page cache's own put of a removed folio (a reference put, or folios merged, behind
   *   the file's back), checked before anything changes. Nothing changes on an error.
   */
  truncate(pages: number): LayoutChangeReport {
    const size = this.#checkSize('pages', integer('pages', pages));
    nativeOf(this.mem); // EINVAL once the page array is disposed
    if (size >= this.#size) {
      this.#size = size; // holes: nothing to store
      return { removedPages: 0, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 0 };
    }
    const { report, broken } = this.#remove(size, this.#size - size, 'truncate');
    this.#size = size;
    notifyAll(broken); // once the change is complete
    return report;
  }

  /**
   * Removes `count` pages from `offset` (FALLOC_FL_PUNCH_HOLE): their mappings are zapped (a
   * later access is `EFAULT`, the model's SIGBUS) and the page cache drops its references.
   * @throws PinlabError `EINVAL` for a misaligned or out-of-file range; `EBUSY` as {@link PageCacheFile.truncate}
   */
  punchHole(offset: number, count: number): LayoutChangeReport {
    nativeOf(this.mem); // EINVAL once the page array is disposed
    const off = this.#checkSize('offset', integer('offset', offset));
    const n = this.#checkSize('count', integer('count', count));
    if (off + n > this.#size) invalid(`hole ${off}..${off + n - 1} is beyond the end of '${this.name}' (size ${this.#size})`);
    if (n === 0) return { removedPages: 0, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 0 };
    const { report, broken } = this.#remove(off, n, 'punchHole');
    notifyAll(broken); // once the change is complete
    return report;
  }

  // ---- for AddressSpace (internal) ---------------------------------------------------------

  /**
   * @internal The PFNs of file pages [offset, offset+count), allocating folios for holes, and
   * an undo that gives back the folios this call allocated (for a mapping that then fails).
   */
  pagesFor(offset: number, count: number): { pfns: Uint32Array; undo: () => void } {
    if (offset < 0 || count < 1 || offset + count > this.#size) {
      invalid(`file range ${offset}..${offset + count - 1} is outside '${this.name}' (size ${this.#size})`);
    }
    const first = offset >> this.folioOrder;
    const last = (offset + count - 1) >> this.folioOrder;
    const allocated: number[] = [];
    const undo = (): void => {
      for (const f of allocated) {
        this.mem.putPage(this.#heads.get(f)!);
        this.#heads.delete(f);
      }
    };
    try {
      for (let f = first; f <= last; f++) {
        if (this.#heads.has(f)) continue;
        this.#heads.set(f, this.mem.allocFolio(this.folioOrder)); // normal zone: never migrated
        allocated.push(f);
      }
    } catch (e) {
      undo();
      throw e;
    }
    const pfns = new Uint32Array(count);
    for (let i = 0; i < count; i++) pfns[i] = this.pfnAt(offset + i)!;
    return { pfns, undo };
  }

  /**
   * @internal Would {@link PageCacheFile.punchHole} of this range (folio-aligned, inside the
   * file) be refused? Throws its `EBUSY` if so; changes nothing.
   */
  checkHolePunch(offset: number, count: number): void {
    const folios = this.#presentFolios(offset, count);
    this.#refuseUnleased(this.#longtermHolders(folios), offset, count, 'punchHole');
    this.#checkOwnPuts(folios, offset, count);
  }

  /**
   * The page cache's puts of its references on `folios` checked before anything changes, with
   * the puts of the references the zap of [offset, offset+count) drops (MappedFile): a
   * reference put behind the file's back, or folios merged by makeFolio, would refuse one of
   * them only after the mappings were zapped.
   */
  #checkOwnPuts(folios: ReadonlyArray<{ head: number }>, offset: number, count: number): void {
    this.checkPutsAfterZap(folios.map((f) => f.head), offset, count);
  }

  // ---- layout changes ---------------------------------------------------------------------

  /** Removes the range; the caller finishes its own state, then notifies the broken leases. */
  #remove(offset: number, count: number, reason: LayoutChange): { report: LayoutChangeReport; broken: Lease[] } {
    const plan = this.#planRemoval(offset, count, reason);
    const brokenLeases = this.#breakLeases(plan.holders, offset, count, reason);
    const report = this.#applyRemoval(plan, reason);
    return { report: { ...report, brokenLeases: brokenLeases.map((l) => l.breakReport!) }, broken: brokenLeases };
  }

  /**
   * @internal Punches several folio-aligned ranges inside the file as ONE call (madvise
   * MADV_REMOVE over several mappings of the file): every range is checked against the leases
   * as they are before the first change, the leases break once, then each range is removed.
   * (Punched one by one, the first punch's lease breaks would refuse the second's leased pins:
   * a refusal after a change.) Overlapping ranges are punched once. Returns one report for all.
   * @throws PinlabError `EINVAL` for anything but an array of `{ offset, count }` each as
   *   {@link PageCacheFile.punchHole} takes them, then as punchHole; nothing changes on an error.
   */
  punchHoles(ranges: ReadonlyArray<{ offset: number; count: number }>): LayoutChangeReport {
    nativeOf(this.mem); // EINVAL once the page array is disposed
    if (!Array.isArray(ranges)) invalid(`ranges must be an array of { offset, count } (got ${show(ranges)})`);
    // Each range read once, into our own objects, and checked as punchHole checks it.
    const own = Array.from(ranges as unknown[], (r, k) => {
      const o = optionsObject(`range ${k}`, r, ['offset', 'count']);
      const off = this.#checkSize('offset', integer('offset', o['offset']));
      const n = this.#checkSize('count', integer('count', o['count']));
      if (off + n > this.#size) invalid(`hole ${off}..${off + n - 1} is beyond the end of '${this.name}' (size ${this.#size})`);
      return { offset: off, count: n };
    });
    const merged: { offset: number; count: number }[] = [];
    for (const r of own.filter((x) => x.count > 0).sort((a, b) => a.offset - b.offset)) {
      const last = merged[merged.length - 1];
      if (last !== undefined && r.offset <= last.offset + last.count) {
        last.count = Math.max(last.count, r.offset + r.count - last.offset);
      } else {
        merged.push({ ...r });
      }
    }
    const empty: LayoutChangeReport = { removedPages: 0, stillReferencedPages: 0, brokenLeases: [], zappedMappings: 0 };
    if (merged.length === 0) return empty;
    const plans = merged.map((r) => this.#planRemoval(r.offset, r.count, 'punchHole')); // every check first
    const holders = new Map<PinRecord, HeldPages>();
    for (const plan of plans) {
      for (const [r, held] of plan.holders) {
        const prev = holders.get(r); // a pin call holding pages in two ranges: its pages add up
        holders.set(r, prev === undefined ? held : { ...prev, pages: prev.pages + held.pages });
      }
    }
    const first = merged[0]!, end = merged[merged.length - 1]!.offset + merged[merged.length - 1]!.count;
    const broken = this.#breakLeases(holders, first.offset, end - first.offset, 'punchHole');
    const report = plans.reduce((sum, plan) => {
      const one = this.#applyRemoval(plan, 'punchHole');
      return {
        removedPages: sum.removedPages + one.removedPages,
        stillReferencedPages: sum.stillReferencedPages + one.stillReferencedPages,
        brokenLeases: [],
        zappedMappings: sum.zappedMappings + one.zappedMappings,
      };
    }, empty);
    notifyAll(broken); // once the change is complete
    return { ...report, brokenLeases: broken.map((l) => l.breakReport!) };
  }

  /** The checks of a removal of [offset, offset+count), nothing changed: what it removes. */
  #planRemoval(offset: number, count: number, reason: LayoutChange): RemovalPlan {
    const folios = this.#presentFolios(offset, count);
    const holders = this.#longtermHolders(folios);
    this.#refuseUnleased(holders, offset, count, reason);
    this.#checkOwnPuts(folios, offset, count);
    return { offset, count, folios, holders };
  }

  /** A checked removal (its leases broken by the caller): zaps the mappings, drops the folios. */
  #applyRemoval(plan: RemovalPlan, reason: LayoutChange): LayoutChangeReport {
    const zappedMappings = this.zapMapped(plan.offset, plan.count, reason === 'truncate');
    let stillReferencedPages = 0;
    const np = nativeOf(this.mem);
    for (const { index, head } of plan.folios) {
      // The page cache's own reference: a pinned (or otherwise held) folio outlives it.
      if (!np.putPage(head, 1)) stillReferencedPages += 1 << this.folioOrder;
      this.#heads.delete(index);
    }
    return { removedPages: plan.folios.length * 2 ** this.folioOrder, stillReferencedPages, brokenLeases: [], zappedMappings };
  }

  #presentFolios(offset: number, count: number): Array<{ index: number; head: number }> {
    // The cached folios only (a range of 2^31 pages of holes costs nothing), in index order.
    const size = 2 ** this.folioOrder;
    const out: Array<{ index: number; head: number }> = [];
    for (const [f, head] of this.#heads) if (f * size >= offset && f * size < offset + count) out.push({ index: f, head });
    return out.sort((a, b) => a.index - b.index);
  }

  /**
   * Long-term pins on the folios: per pin call, the pages it pins there and its first run
   * there. One pass over the long-term records, each run located among the sorted folio heads
   * by binary search: the cost follows the records and runs, not records x folios.
   */
  #longtermHolders(folios: Array<{ head: number }>): Map<PinRecord, HeldPages> {
    const tracking = pinsOf(this.mem).tracking;
    const holders = new Map<PinRecord, HeldPages>();
    if (folios.length === 0 || !tracking.active) return holders;
    const size = 1 << this.folioOrder;
    const heads = folios.map((f) => f.head).sort((a, b) => a - b);
    tracking.ledger.forEachRecord((r) => {
      if (!r.longterm) return;
      for (let i = 0; i < r.runs.length; i += 2) {
        const lo = r.runs[i]!;
        const hi = lo + r.runs[i + 1]!;
        for (let k = firstHeadEndingAfter(heads, lo, size); k < heads.length && heads[k]! < hi; k++) {
          const a = Math.max(lo, heads[k]!);
          const b = Math.min(hi, heads[k]! + size);
          const held = holders.get(r);
          if (held === undefined) {
            holders.set(r, { pages: b - a, pfn: a, count: b - a });
            continue;
          }
          held.pages += b - a;
          if (a === held.pfn + held.count) held.count += b - a; // the first run, grown across folios
        }
      }
    });
    return holders;
  }

  #refuseUnleased(holders: Map<PinRecord, HeldPages>, offset: number, count: number, reason: LayoutChange): void {
    const blocking = [...holders.keys()].filter((r) => r.owner === null || this.#leaseOf(r.owner) === undefined);
    if (blocking.length === 0) return;
    const first = blocking[0]!;
    const { pfn, count: runCount, pages } = holders.get(first)!;
    const what = reason === 'truncate' ? 'truncate' : 'hole punch';
    throw new PinlabError(
      'EBUSY',
      `${what} of '${this.name}' pages ${showRun(offset, count)} refused: ${pages} ${pages === 1 ? 'page' : 'pages'} from pfn ${showRun(pfn, runCount)} long-term pinned by ` +
        `${describeProvenance(provenanceOf(first))} without a layout lease` +
        (blocking.length > 1 ? ` (and ${blocking.length - 1} more pin calls)` : ''),
      { provenance: blocking.map(provenanceOf) },
    );
  }

  /** Every held lease breaks on a layout change; the holder's pinned pages in the range are reported. */
  #breakLeases(holders: Map<PinRecord, HeldPages>, offset: number, count: number, reason: LayoutChange): Lease[] {
    const broken: Lease[] = [];
    for (const lease of this.leases()) {
      let pinnedPages = 0;
      for (const [r, held] of holders) if (r.owner === lease.owner) pinnedPages += held.pages;
      const event: LeaseBreak = { file: this.name, owner: lease.owner.name, reason, offset, count, pinnedPages };
      lease.breakWith(event);
      this.#breaks.push(event);
      if (this.#breaks.length > BREAK_HISTORY) this.#breaks.shift();
      broken.push(lease);
    }
    return broken;
  }

  #leaseOf(owner: PinOwnerRef): Lease | undefined {
    return this.#leases.find((l) => l.owner === owner && l.held);
  }

  #checkSize(name: string, n: number): number {
    const size = 1 << this.folioOrder;
    if (n < 0 || n % size !== 0) invalid(`${name} must be a non-negative multiple of the folio size ${size} (got ${n})`);
    if (n > MAX_FILE_PAGES) invalid(`${name} ${n} is too large (at most ${MAX_FILE_PAGES} pages, the largest page array)`);
    return n;
  }

  /** Leases that no longer hold are dropped from the list (their breaks stay in leaseBreaks). */
  #pruneLeases(): void {
    for (let i = this.#leases.length - 1; i >= 0; i--) if (!this.#leases[i]!.held) this.#leases.splice(i, 1);
  }
}

const BREAK_HISTORY = 1024;
const MAX_FILE_PAGES = 2 ** 31;

/** The index of the first sorted head whose folio [head, head+size) ends after `pfn`. */
function firstHeadEndingAfter(heads: readonly number[], pfn: number, size: number): number {
  let lo = 0;
  let hi = heads.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (heads[mid]! + size <= pfn) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A removal checked and not yet made (PageCacheFile's truncate, hole punch). */
interface RemovalPlan {
  offset: number;
  count: number;
  folios: Array<{ index: number; head: number }>;
  holders: Map<PinRecord, HeldPages>;
}

/**
 * Tells every broken lease's holder, even if one `onBreak` throws; the first error is rethrown
 * once all were told (the layout change itself is complete by then).
 */
function notifyAll(broken: readonly Lease[]): void {
  let first: unknown;
  let failed = false;
  for (const lease of broken) {
    try {
      lease.notify();
    } catch (e) {
      if (!failed) first = e;
      failed = true;
    }
  }
  if (failed) throw first;
}
