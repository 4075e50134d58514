// PageArray, the page array's API, and PinOwner, the owners of its pins (the two name each
// other: owner.mem, mem.pinOwner()). The owner and debug bookkeeping around the pin calls lives
// in ./owners/bookkeeping.ts; the other classes of lib/ reach it and the addon object through
// pinsOf(mem) and nativeOf(mem).
import { PinlabError, invalid } from './errors.js';
import { native, PinFlag, type NativePageArray } from './native.js';
import type { OpRecorder } from './ops/recorder.js';
import { disposeSpaces } from './ops/spaces.js';
import { startRecording, submitOps, type SubmitOptions } from './ops/submit.js';
import { PinBookkeeping } from './owners/bookkeeping.js';
import { DropSkipped } from './owners/tracking.js';
import { SCHEMES, type Scheme } from './schemes.js';
import type {
  DropOptions,
  DropPolicy,
  DropReport,
  Imbalance,
  ImbalanceMode,
  OutstandingPin,
  OwnerKind,
  PinOwnerOptions,
  PinOwnerRef,
} from './types/owners.js';
import type { PageArrayStats } from './types/page-array.js';
import type { HugetlbOrder, HugetlbPoolCounts } from './types/hugetlb.js';
import { bool, integer, isUint32Array, oneOf, optionsObject, pfnArg, show } from './validate.js';

/** How a pin call walks its pages: one grab per subpage, or one per run of a folio. */
export type PinPath = 'per-page' | 'bvec';

/** Options of {@link PageArray}'s constructor. */
export interface PageArrayOptions {
  /** Base pages (PFN 0..pages-1), integer 1..2^31. */
  pages: number;
  /** Pin-counting scheme. Default `'hybrid'` (64-bit mainline). */
  scheme?: Scheme;
  /** GUP_PIN_COUNTING_BIAS: a power of two, 2..2^20. Default 1024. */
  pinBias?: number;
  /** Hybrid: smallest folio order with an exact pincount. 1 = 64-bit mainline (default), 2 = v5.7 / 32-bit. */
  pincountMinOrder?: number;
  /** Initial folio order of every aligned block of pages (its size must divide `pages`). Default 0. */
  folioOrder?: number;
  /** Keep an exact pin count per page whatever the scheme, and turn misuse into errors. Default false. */
  debug?: boolean;
  /**
   * Whether every page starts allocated (default true). `false` starts every page free, for
   * simulations that allocate with {@link PageArray.allocFolio} or through an {@link AddressSpace}.
   */
  populated?: boolean;
  /**
   * Pages at the top of the PFN range that form ZONE_MOVABLE (default 0). User memory is
   * allocated there first, and long-term pins must migrate it out first.
   */
  movablePages?: number;
  /**
   * What a detected imbalance does (`EPINNED`, `ENOTPINNED`, `ELEAK`): `'throw'` a
   * {@link PinlabError} (default), or `'count'` it in {@link PageArrayStats.imbalances} and
   * {@link PageArray.imbalances} and skip the offending release ("warn and count").
   */
  onImbalance?: ImbalanceMode;
  /** Keep the JS stack of every recorded pin call in its provenance (costly: a stack per call). Default false. */
  captureStacks?: boolean;
}

/** A page list: a contiguous PFN range, or a `Uint32Array` of PFNs (any order, repeats allowed). */
export type PageSet =
  | {
      /** First PFN. */
      start: number;
      /** Number of pages. */
      count: number;
    }
  | Uint32Array;

/** Options of {@link PageArray.pinPages}. */
export interface PinOptions {
  /** FOLL_WRITE. Under `'write-bias'` only write pins add the bias. Default false. */
  write?: boolean;
  /** `'bvec'` (default): one grab per run of a folio; `'per-page'`: one grab per subpage. */
  path?: PinPath;
  /**
   * The pin's owner (see {@link PageArray.pinOwner}): the call is recorded in the owner's side
   * table, and the unpin must name the same owner. Default: none (no side-table cost).
   */
  owner?: PinOwner;
}

/** Options of {@link PageArray.unpinPages}. */
export interface UnpinOptions extends PinOptions {
  /** Mark the folios dirty first (unpin_user_pages_dirty_lock). Default false. */
  dirty?: boolean;
}

/** One run of the bvec path: `count` consecutive subpages of one folio, from `pfn`. */
export interface Bvec {
  /** First PFN of the run. */
  pfn: number;
  /** Number of base pages in the run. */
  count: number;
}

/** Bytes the per-page arrays take for this configuration. */
export interface MemoryUsage {
  /** Bytes reserved for the per-page arrays. */
  bytes: number;
  /** `bytes / pages`: 5 for bias and hybrid, 9 for separate, +4 in debug mode (+8 for write-bias). */
  bytesPerPage: number;
}

const CONSTRUCTOR_OPTIONS = [
  'pages',
  'scheme',
  'pinBias',
  'pincountMinOrder',
  'folioOrder',
  'debug',
  'populated',
  'movablePages',
  'onImbalance',
  'captureStacks',
] as const;

const IMBALANCE_MODES: readonly ImbalanceMode[] = ['throw', 'count'];
/**
 * The schemes whose read pins maybe-pinned does not see (their read and write pins cost
 * differently, so an unpin must match its pin's kind), from each scheme's policy in the addon.
 */
const READ_PINS_HIDDEN: ReadonlySet<string> = new Set(native.schemes().filter((s) => !s.readPinsVisible).map((s) => s.name));
const OWNER_KINDS: readonly OwnerKind[] = ['mm', 'file', 'device'];

/** A run of pages with the same exact pin count (see {@link PageArray.debugPinnedRuns}). */
export interface PinnedRun {
  /** First PFN. */
  pfn: number;
  /** Pages in the run. */
  count: number;
  /** Pins on each page of the run. */
  pins: number;
}

/** Options of {@link PageArray.outstandingPins}. */
export interface OutstandingPinsOptions {
  /** Only this owner's pins. Default: every owner's (and in debug mode the ownerless ones). */
  owner?: PinOwner;
}

/** Options of {@link PageArray.allocFolio}. */
export interface AllocOptions {
  /** Allocate as user memory: ZONE_MOVABLE first, then the normal zone. Default false (normal zone only). */
  movable?: boolean;
}

/** What the other classes of lib/ reach behind a PageArray. */
interface Internals {
  native: NativePageArray;
  pins: PinBookkeeping;
  disposed: boolean;
}
const internals = new WeakMap<PageArray, Internals>();

function internalsOf(mem: PageArray): Internals {
  const i = mem instanceof PageArray ? internals.get(mem) : undefined;
  if (i === undefined) invalid(`mem must be a PageArray (got ${show(mem)})`);
  if (i.disposed) invalid('this PageArray was disposed: no call can use it');
  return i;
}

/** Whether `mem` was disposed (for the other classes of lib/, which refuse then). @internal */
export function isDisposedArray(mem: PageArray): boolean {
  return internals.get(mem)?.disposed ?? true;
}

/**
 * `Symbol.dispose` (Node 18.18+ and 20.4+ define it; `Symbol.for('nodejs.dispose')` is the
 * same symbol there, and stands in for it on a runtime that lacks it).
 * @internal
 */
export const DISPOSE: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

/** The addon object behind a PageArray (for the other classes of lib/). @internal */
export function nativeOf(mem: PageArray): NativePageArray {
  return internalsOf(mem).native;
}

/** The owner and debug bookkeeping of a page array's pin calls (for the other classes of lib/). @internal */
export function pinsOf(mem: PageArray): PinBookkeeping {
  return internalsOf(mem).pins;
}

const PIN_OPTIONS = ['write', 'path', 'owner'] as const;
const UNPIN_OPTIONS = ['write', 'path', 'dirty', 'owner'] as const;
const PATHS: readonly PinPath[] = ['per-page', 'bvec'];

/**
 * A dense array of `pages` base pages with atomic refcounts, folios and DMA pins counted by
 * one of the schemes of the 2019 debate. Every page starts allocated: each aligned block of
 * 2^folioOrder pages is a folio with refcount 1 and no pins.
 *
 * Calls are synchronous and cheap: a call over many pages makes one native call, never one
 * per page. A failing call throws a {@link PinlabError} and changes nothing.
 *
 * The per-page arrays live in native memory (5 to 13 bytes a page), reported to V8 so that its
 * garbage collector sees them; {@link PageArray.dispose} (or `using`) frees them at once.
 *
 * @example
 * ```ts
 * const mem = new PageArray({ pages: 1 << 20, scheme: 'hybrid' });
 * mem.makeFolio(512, 9);                       // a 2 MiB folio
 * mem.pinPages({ start: 512, count: 512 });    // one atomic for 512 subpages (bvec path)
 * mem.maybeDmaPinned(700);                     // true
 * mem.unpinPages({ start: 512, count: 512 }, { dirty: true });
 * ```
 */
export class PageArray {
  /** Number of base pages. */
  readonly pages: number;
  /** The pin-counting scheme. */
  readonly scheme: Scheme;
  /** The bias a pin adds where the scheme uses one. */
  readonly pinBias: number;
  /** Hybrid: smallest folio order with an exact pincount. */
  readonly pincountMinOrder: number;
  /** Whether debug accounting is on. */
  readonly debug: boolean;
  /** The options this array was created with, defaults filled in. */
  readonly options: Readonly<Required<PageArrayOptions>>;

  readonly #native: NativePageArray;
  readonly #pins: PinBookkeeping;
  readonly #internals: Internals;

  /**
   * @param options - see {@link PageArrayOptions}
   * @throws PinlabError `EINVAL` naming the bad option, `ENOMEM` if the arrays cannot be mapped
   */
  constructor(options: PageArrayOptions) {
    if (options === undefined) invalid('PageArray options are required ({ pages })');
    const o = optionsObject('PageArray options', options, CONSTRUCTOR_OPTIONS);
    const resolved: Required<PageArrayOptions> = {
      pages: integer('pages', o['pages']),
      scheme: oneOf('scheme', o['scheme'], SCHEMES, 'hybrid'),
      pinBias: o['pinBias'] === undefined ? 1024 : integer('pinBias', o['pinBias']),
      pincountMinOrder: o['pincountMinOrder'] === undefined ? 1 : integer('pincountMinOrder', o['pincountMinOrder']),
      folioOrder: o['folioOrder'] === undefined ? 0 : integer('folioOrder', o['folioOrder']),
      debug: bool('debug', o['debug'], false),
      populated: bool('populated', o['populated'], true),
      movablePages: o['movablePages'] === undefined ? 0 : integer('movablePages', o['movablePages']),
      onImbalance: oneOf('onImbalance', o['onImbalance'], IMBALANCE_MODES, 'throw'),
      captureStacks: bool('captureStacks', o['captureStacks'], false),
    };
    this.#native = new native.NativePageArray(resolved);
    this.#pins = new PinBookkeeping(this.#native, {
      pages: resolved.pages,
      debug: resolved.debug,
      onImbalance: resolved.onImbalance,
      captureStacks: resolved.captureStacks,
      writePinsApart: READ_PINS_HIDDEN.has(resolved.scheme),
    });
    this.#internals = { native: this.#native, pins: this.#pins, disposed: false };
    internals.set(this, this.#internals);
    this.pages = resolved.pages;
    this.scheme = resolved.scheme;
    this.pinBias = resolved.pinBias;
    this.pincountMinOrder = resolved.pincountMinOrder;
    this.debug = resolved.debug;
    this.options = Object.freeze(resolved);
  }

  // ---- lifetime -----------------------------------------------------------------------------

  /**
   * Frees the page array's native memory now, instead of when the garbage collector gets to it.
   * Every address space over it is disposed too ({@link AddressSpace.dispose}). Afterwards every
   * call on the page array, its address spaces, owners, bios and files throws `EINVAL`; pins
   * still held are dropped with the memory (nothing outside pinlab can see them). Idempotent.
   * `using mem = new PageArray(...)` calls it at the end of the scope.
   *
   * (The per-page arrays go when their last holder does: an address space's native half keeps
   * them alive while one of its calls runs, so a dispose() from a race hook is safe; the memory
   * goes when that call returns.)
   */
  dispose(): void {
    if (this.#internals.disposed) return;
    this.#internals.disposed = true;
    disposeSpaces(this.#native);
    this.#native.dispose();
  }

  /** `using` support: the same as {@link PageArray.dispose}. */
  [DISPOSE](): void {
    this.dispose();
  }

  /** Whether {@link PageArray.dispose} was called. */
  get disposed(): boolean {
    return this.#internals.disposed;
  }

  #live(): void {
    if (this.#internals.disposed) invalid('this PageArray was disposed: no call can use it');
  }

  // ---- folios -------------------------------------------------------------------------------

  /**
   * Makes the 2^order pages from `head` one folio with refcount 1.
   * @throws PinlabError `EINVAL` (misaligned head, bad order, too large), `ERANGE`,
   *   `EBUSY` if a page is not an idle order-0 page (refcount 1, unpinned)
   */
  makeFolio(head: number, order: number): void {
    this.#native.makeFolio(pfnArg('head', head), integer('order', order));
  }

  /**
   * Splits the folio at `head` into order-0 pages, each with refcount 1.
   * @throws PinlabError `EBUSY` unless its refcount is 1 and it has no pins; `EINVAL` if
   *   `head` is not the head of a large folio
   */
  splitFolio(head: number): void {
    this.#native.splitFolio(pfnArg('head', head));
  }

  /** The head PFN of `pfn`'s folio. */
  folioHead(pfn: number): number {
    return this.#native.folioHead(pfnArg('pfn', pfn));
  }

  /** The order of `pfn`'s folio (0 for a base page, 9 for 2 MiB, 18 for 1 GiB). */
  folioOrder(pfn: number): number {
    return this.#native.folioOrder(pfnArg('pfn', pfn));
  }

  // ---- plain references (FOLL_GET) ------------------------------------------------------------

  /**
   * Takes `refs` plain references on `pfn`'s folio.
   * @throws PinlabError `EFREE` on a free folio, `EOVERFLOW` past 2^31-1
   */
  getPage(pfn: number, refs = 1): void {
    this.#native.getPage(pfnArg('pfn', pfn), integer('refs', refs));
  }

  /** Add-unless-zero: takes `refs` references unless the folio is free (or its refcount negative). */
  tryGetPage(pfn: number, refs = 1): boolean {
    return this.#native.tryGetPage(pfnArg('pfn', pfn), integer('refs', refs));
  }

  /**
   * Drops `refs` references; returns true when the folio reached 0 (freed).
   * @throws PinlabError `EINVAL` if the refcount would go below 0; in debug mode `EPINNED` if the
   *   put would eat references that belong to pins. Nothing changes on error.
   */
  putPage(pfn: number, refs = 1): boolean {
    this.#live();
    return this.#pins.putPage(pfnArg('pfn', pfn), integer('refs', refs));
  }

  // ---- pins (FOLL_PIN) ----------------------------------------------------------------------

  /**
   * Pins every listed subpage and returns how many. All or nothing.
   * @throws PinlabError `EFREE` on a free page, `EOVERFLOW` when a count would pass 2^31-1,
   *   `ERANGE` for a PFN out of range; nothing stays pinned
   */
  pinPages(pages: PageSet, options?: PinOptions): number {
    this.#live();
    const o = optionsObject('pin options', options, PIN_OPTIONS);
    const flags = pinFlags(o, false);
    const owner = ownerOption(this, o['owner']);
    if (isUint32Array(pages)) return this.#pins.pinList('pinPages', pages, flags, owner);
    const { start, count } = pageRange(pages);
    return this.#pins.pinRange(start, count, flags, owner);
  }

  /**
   * Releases pins taken by {@link PageArray.pinPages}. `write` must match the pin under
   * `'write-bias'`. All or nothing.
   * @throws PinlabError `ENOTPINNED` for a page without such a pin (always caught when a count
   *   would go below 0; every case in debug mode), `ERANGE`
   */
  unpinPages(pages: PageSet, options?: UnpinOptions): void {
    this.#live();
    const o = optionsObject('unpin options', options, UNPIN_OPTIONS);
    const flags = pinFlags(o, bool('dirty', o['dirty'], false));
    const owner = ownerOption(this, o['owner'], true);
    if (isUint32Array(pages)) {
      this.#pins.unpinList(pages, flags, owner);
      return;
    }
    const { start, count } = pageRange(pages);
    this.#pins.unpinRange(start, count, flags, owner);
  }

  // ---- owners, leaks and debug provenance ---------------------------------------------------

  /**
   * Creates a pin owner (the vaddr_pin idea of seed 000): pass it as the `owner` option of pin
   * and unpin calls; its pins stay listed by {@link PageArray.outstandingPins} until released,
   * whatever happens to the mapping they came from.
   * @throws PinlabError `EINVAL` for an empty name, a name a live owner has, or a bad kind
   */
  pinOwner(name: string, options?: PinOwnerOptions): PinOwner {
    this.#live();
    if (typeof name !== 'string' || name.length === 0) invalid(`owner name must be a non-empty string (got ${show(name)})`);
    const o = optionsObject('owner options', options, ['kind']);
    const kind = oneOf('kind', o['kind'], OWNER_KINDS, 'device');
    const owner = new PinOwner(this, this.#pins, name, kind);
    this.#pins.tracking.registerOwner(owner);
    return owner;
  }

  /**
   * The runs of pages still pinned, by owner and pin call: every owner's (or `owner`'s) pins,
   * and in debug mode the pins taken without an owner too (`owner: null`).
   */
  outstandingPins(options?: OutstandingPinsOptions): OutstandingPin[] {
    this.#live();
    const o = optionsObject('outstandingPins options', options, ['owner']);
    return this.#pins.outstanding(ownerOption(this, o['owner'], true));
  }

  /**
   * Checks that no pin is outstanding: throws `ELEAK` naming each owner, call and run still
   * pinned (and, outside debug mode, how many pins were taken without an owner and not
   * released). Returns the leaks, empty when balanced (in `'count'` mode a non-empty list is
   * counted, not thrown).
   * @throws PinlabError `ELEAK`
   */
  checkBalanced(): OutstandingPin[] {
    this.#live();
    return this.#pins.checkBalanced();
  }

  /**
   * Debug mode's exact truth: the runs of consecutive pages holding the same non-zero number of
   * pins (the per-page debug counts, whoever took the pins). Exact once no call is running.
   * @throws PinlabError `EINVAL` outside debug mode
   */
  debugPinnedRuns(): PinnedRun[] {
    const flat = this.#native.debugPinnedRuns();
    const runs: PinnedRun[] = new Array<PinnedRun>(flat.length / 3);
    for (let i = 0; i < runs.length; i++) runs[i] = { pfn: flat[3 * i]!, count: flat[3 * i + 1]!, pins: flat[3 * i + 2]! };
    return runs;
  }

  /**
   * Debug mode: the exact pins of each page of a range (an `Int32Array`, one count per page).
   * @throws PinlabError `EINVAL` outside debug mode, `ERANGE`
   */
  debugPagePins(range: { start: number; count: number }): Int32Array {
    return this.#native.debugPagePins(...rangeArgs(range));
  }

  /** The most recent detected imbalances (up to 1024), oldest first, with their provenance. */
  imbalances(): Imbalance[] {
    this.#live();
    return this.#pins.tracking.log();
  }

  /** The runs the bvec path would use for `pages`: consecutive subpages of one folio each. */
  toBvecs(pages: PageSet): Bvec[] {
    const flat =
      isUint32Array(pages)
        ? this.#native.bvecsList(pages)
        : this.#native.bvecsRange(...rangeArgs(pages));
    const runs: Bvec[] = new Array<Bvec>(flat.length / 2);
    for (let i = 0; i < runs.length; i++) runs[i] = { pfn: flat[2 * i]!, count: flat[2 * i + 1]! };
    return runs;
  }

  // ---- queries ------------------------------------------------------------------------------

  /** The refcount of `pfn`'s folio. */
  refcount(pfn: number): number {
    return this.#native.refcount(pfnArg('pfn', pfn));
  }

  /**
   * Exact pins of `pfn`'s folio where they are tracked: hybrid large folios, `'separate'`, or any
   * scheme in debug mode. Otherwise null (the bias scheme cannot tell pins from references).
   */
  pincount(pfn: number): number | null {
    return this.#native.pincount(pfnArg('pfn', pfn));
  }

  /** The scheme's "maybe pinned" answer for `pfn`: false positives possible, false negatives not (except read pins under `'write-bias'`). */
  maybeDmaPinned(pfn: number): boolean {
    return this.#native.maybeDmaPinned(pfnArg('pfn', pfn));
  }

  /** Whether `pfn`'s folio was marked dirty by an unpin with `dirty: true`. */
  isDirty(pfn: number): boolean {
    return this.#native.isDirty(pfnArg('pfn', pfn));
  }

  /**
   * set_page_dirty: marks `pfn`'s folio dirty (as a completed read I/O does to the pages it
   * filled). {@link PageArray.unpinPages} with `dirty` does the same for pinned pages.
   * @throws PinlabError `EFREE` on a free folio, `ERANGE`
   */
  setDirty(pfn: number): void {
    this.#native.setDirty(pfnArg('pfn', pfn));
  }

  /** How many listed base pages are maybe pinned, in one native scan. */
  countMaybeDmaPinned(pages: PageSet): number {
    if (isUint32Array(pages)) return this.#native.countMaybeDmaPinnedList(pages);
    return this.#native.countMaybeDmaPinnedRange(...rangeArgs(pages));
  }

  /** Event counters (see {@link PageArrayStats}). */
  stats(): PageArrayStats {
    return { ...this.#native.stats(), imbalances: this.#pins.tracking.counts() };
  }

  // ---- the allocator ------------------------------------------------------------------------

  /**
   * Allocates a free, aligned block of 2^order pages as one folio with refcount 1 and returns
   * its head. The lowest free block of the smallest fitting order is taken (deterministic).
   * A folio goes back to the allocator by itself when its refcount reaches 0.
   * @throws PinlabError `ENOMEM` when no free block of that order is left, `EINVAL` for a bad order
   */
  allocFolio(order: number, options?: AllocOptions): number {
    const o = optionsObject('alloc options', options, ['movable']);
    return this.#native.allocFolio(integer('order', order), bool('movable', o['movable'], false));
  }

  /** How many base pages are free (in the allocator). */
  freePages(): number {
    return this.#native.freePages();
  }

  /** Whether `pfn` is in ZONE_MOVABLE (see {@link PageArrayOptions.movablePages}). */
  isMovable(pfn: number): boolean {
    return this.#native.isMovable(pfnArg('pfn', pfn));
  }

  /**
   * Sets the hugetlb pool's size for one huge page size, as writing
   * `/sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages` does: `order` 9 (2 MiB pages) or
   * 18 (1 GiB pages, a page array of at least 2^18 pages). Growing takes free blocks of the
   * normal zone (they leave {@link PageArray.freePages}); shrinking gives free, unreserved pool
   * pages back. The pool belongs to the page array: every address space over it, forks
   * included, draws from it (`mmap({ hugetlb })`, {@link HugetlbFile}).
   * @throws PinlabError `EINVAL` for another order or a count outside 0..pages >> order;
   *   `ENOMEM` if the zone has too few free aligned blocks; `EBUSY` if pages in use or
   *   reserved keep the pool from shrinking that far. Nothing changes on an error.
   */
  setHugetlbPages(order: HugetlbOrder, count: number): void {
    this.#native.hugetlbSetPages(integer('order', order), integer('count', count));
  }

  /** The hugetlb pool's counters for one size (order 9 or 18); see {@link HugetlbPoolCounts}. */
  hugetlbPool(order: HugetlbOrder): HugetlbPoolCounts {
    const k = integer('order', order);
    const c = this.#native.hugetlbCounts(k);
    return { order: k as HugetlbOrder, pageSizeKb: 4 << k, total: c.total, free: c.free, reserved: c.reserved, used: c.total - c.free };
  }

  /** The shared zero page's PFN, or null before the first read fault maps it. It is never counted. */
  get zeroPfn(): number | null {
    return this.#native.zeroPfn();
  }

  /**
   * The huge zero folio's head PFN, or null before the first read fault of a 2 MiB stretch of a
   * THP region maps it (an AddressSpace's `rules.hugeZeroPage`). An order-9 folio of the normal zone,
   * made on first use (after the zero page) and never freed; its 512 pages are never counted:
   * pin, unpin, get and put of any of them are `EINVAL` (as of the zero page), and migration,
   * compaction, pageout and collapse leave them alone. `null` while none could be made (no
   * 2 MiB block free): read faults then map the zero page's PTEs.
   */
  get hugeZeroPfn(): number | null {
    return this.#native.hugeZeroPfn();
  }

  /** Bytes the per-page arrays take (see {@link MemoryUsage}). */
  memoryUsage(): MemoryUsage {
    const info = this.#native.info();
    return { bytes: info.memoryBytes, bytesPerPage: info.bytesPerPage };
  }

  // ---- op streams (lib/ops/) ----------------------------------------------------------------

  /**
   * Starts recording every engine-level call this page array's JS API makes (its own calls, its
   * address spaces', and those owners, bios and files make for them) as an op stream: see
   * {@link OpRecorder}. Start it right after construction: a replay starts from a fresh page
   * array built from this one's options, and names address spaces by the ids they get here.
   * @throws PinlabError `EBUSY` if a recorder is already active, or an address space was created
   *   over this array before
   */
  record(): OpRecorder {
    this.#live();
    const o = this.options;
    return startRecording(this.#native, {
      pages: o.pages,
      movablePages: o.movablePages,
      folioOrder: o.folioOrder,
      pincountMinOrder: o.pincountMinOrder,
      pinBias: o.pinBias,
      debug: o.debug,
      populated: o.populated,
      scheme: o.scheme,
    });
  }

  /**
   * Runs a batch of ops in one native call: `ops` is a `Uint32Array` of op-stream records (the
   * `.pkops` record layout: {@link OpBatch} builds them, {@link OpRecorder.buffer} returns them).
   * Each op runs exactly as its one-by-one call would, all or nothing, and its result lands in the
   * returned `Int32Array` (one entry per op): a count (pages pinned, unpinned, taken or moved; 1
   * for a put that freed or a tryGet that took; an allocated folio's head; else 0), or a negative
   * error code (`-1` EINVAL, ...: {@link opResultName}). Address spaces are named by their `id`;
   * ones the batch creates (`mm-new`, `fork`) take the next ids and live as long as this array
   * (`AddressSpace.byId`). The batch goes around the JS bookkeeping: owners, debug provenance and
   * `'count'` mode see none of it (the core's own checks all apply); the files' records of
   * their mappings follow its `munmap` and `mremap` (a batch's `mmap-file` maps PFNs, not a
   * file), and a `fork` of an address space that maps files is refused (use `mm.fork()`).
   * @throws PinlabError `EINVAL` naming the first bad record (unknown opcode, flags, framing, an
   *   address space that does not exist, a fork of one that maps files) before any op runs:
   *   then nothing changed
   */
  submit(ops: Uint32Array, options?: SubmitOptions): Int32Array {
    this.#live();
    return submitOps(this, this.#native, ops, options);
  }
}

/**
 * A pin owner (see {@link PageArray.pinOwner}): pass it as the `owner` option of any pin call
 * (`pinPages`, `pinUserPages`, `pinUserPagesFast`, bios) and of the matching unpin. This is the
 * vaddr_pin idea of seed 000: the owner's pins stay traceable (`outstandingPins`,
 * `checkBalanced`, `ELEAK`) after the mapping that produced them is gone, and dropping the owner
 * releases or reports them by an explicit policy.
 *
 * @example
 * ```ts
 * const mr = mem.pinOwner('rdma-mr-1', { kind: 'device' });
 * const { pfns } = mm.pinUserPagesFast(0, 512, { write: true, longterm: true, owner: mr });
 * mm.munmap({ start: 0, count: 512 });   // the pins stay, and stay traceable
 * mr.outstandingPins();                  // [{ owner: 'rdma-mr-1', pfn, count: 512, ... }]
 * mr.drop({ pins: 'release' });          // unpins them
 * ```
 */
export class PinOwner implements PinOwnerRef {
  /** The owner's name, unique among the live owners of its page array. */
  readonly name: string;
  /** The owner's kind. */
  readonly kind: OwnerKind;
  /** The page array whose pins this owner holds. */
  readonly mem: PageArray;
  readonly #pins: PinBookkeeping;
  #dropped = false;

  /** @internal Use {@link PageArray.pinOwner}. */
  constructor(mem: PageArray, pins: PinBookkeeping, name: string, kind: OwnerKind) {
    this.mem = mem;
    this.#pins = pins;
    this.name = name;
    this.kind = kind;
  }

  /**
   * @internal Whether `value` is a PinOwner made by mem.pinOwner() (its private state is there),
   * not an object that only has the prototype (`instanceof` answers true for that).
   */
  static isGenuine(value: unknown): value is PinOwner {
    return typeof value === 'object' && value !== null && #dropped in value;
  }

  /** Whether {@link PinOwner.drop} has dropped it: it takes no new pins (it may still unpin). */
  get dropped(): boolean {
    return this.#dropped;
  }

  /** The runs this owner still holds pinned, by pin call. */
  outstandingPins(): OutstandingPin[] {
    if (isDisposedArray(this.mem)) invalid('this PinOwner\'s PageArray was disposed: no call can use it');
    return this.#pins.outstanding(this);
  }

  /**
   * Drops the owner. With `pins: 'release'` its outstanding pins are unpinned first (all or
   * nothing); with `pins: 'report'` outstanding pins are a leak (`ELEAK`, or counted).
   * @throws PinlabError `EINVAL` for a missing or bad policy or an owner already dropped;
   *   `ELEAK` (the owner stays live, nothing changes)
   */
  drop(options: DropOptions): DropReport {
    if (isDisposedArray(this.mem)) invalid('this PinOwner\'s PageArray was disposed: no call can use it');
    const policy = dropPolicy(options);
    if (this.#dropped) invalid(`owner '${this.name}' was already dropped`);
    if (policy === 'release') {
      let releasedPages: number;
      try {
        releasedPages = this.#pins.releaseAll(this);
      } catch (e) {
        if (e instanceof DropSkipped) return { releasedPages: 0, leaked: this.outstandingPins() }; // counted; the owner stays
        throw e;
      }
      this.#markDropped();
      return { releasedPages, leaked: [] };
    }
    const leaked = this.outstandingPins();
    this.#pins.reportDropped(this, leaked);
    this.#markDropped();
    return { releasedPages: 0, leaked };
  }

  #markDropped(): void {
    this.#dropped = true;
    this.#pins.tracking.forgetOwner(this); // its name is free again; its leaked pins stay listed
  }
}

const POLICIES: readonly DropPolicy[] = ['release', 'report'];

function dropPolicy(options: unknown): DropPolicy {
  const o = optionsObject('drop options', options, ['pins']);
  if (o['pins'] === undefined) invalid(`drop needs { pins: 'release' | 'report' } (got ${show(options)})`);
  return oneOf('pins', o['pins'], POLICIES, 'release');
}

function pinFlags(o: Record<string, unknown>, dirty: boolean): number {
  let flags = 0;
  if (bool('write', o['write'], false)) flags |= PinFlag.Write;
  if (oneOf('path', o['path'], PATHS, 'bvec') === 'per-page') flags |= PinFlag.PerPage;
  if (dirty) flags |= PinFlag.Dirty;
  return flags;
}

/** @internal The `owner` option: a live owner of `mem` (a dropped one only where `mayBeDropped`), or null. */
export function ownerOption(mem: PageArray, value: unknown, mayBeDropped = false): PinOwner | null {
  if (value === undefined) return null;
  if (!PinOwner.isGenuine(value)) invalid(`owner must be a PinOwner from mem.pinOwner() (got ${show(value)})`);
  if (value.mem !== mem) invalid(`owner '${value.name}' belongs to another page array`);
  if (value.dropped && !mayBeDropped) invalid(`owner '${value.name}' was dropped and takes no new pins`);
  return value;
}

function pageRange(pages: unknown): { start: number; count: number } {
  if (pages === null || typeof pages !== 'object' || Array.isArray(pages) || ArrayBuffer.isView(pages) || pages instanceof Uint32Array) {
    invalid(`pages must be { start, count } or a Uint32Array (got ${show(pages)})`);
  }
  const p = pages as { start?: unknown; count?: unknown };
  const start = integer('start', p.start);
  const count = integer('count', p.count);
  if (start < 0 || count < 0) {
    throw new PinlabError('ERANGE', `page range start ${start} count ${count} is out of range`);
  }
  return { start, count };
}

function rangeArgs(pages: unknown): [number, number] {
  const { start, count } = pageRange(pages);
  return [start, count];
}
