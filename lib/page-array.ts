import type { AddressSpace } from './address-space.js';
import { PinlabError, invalid } from './errors.js';
import { native, PinFlag, type NativePageArray } from './native.js';
import { PinOwner, type OwnerHost, type PinOwnerOptions } from './owners/owner.js';
import type { PinRecord } from './owners/ledger.js';
import { forEachPage, rangeRuns } from './owners/runs.js';
import { DropSkipped, PinTracking, describeLeaks } from './owners/tracking.js';
import type { Imbalance, ImbalanceCounts, ImbalanceMode, OutstandingPin, OwnerKind, PinOperation } from './owners/types.js';
import { bool, integer, isUint32Array, oneOf, optionsObject, pfnArg, show, stableList, uint32List } from './validate.js';

import { SCHEMES, type Scheme } from './schemes.js';
export { SCHEMES, type Scheme };

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

/** Event counters of a {@link PageArray}, exact once no call is running. */
export interface PageArrayStats {
  /** Logical subpage pins taken (like the kernel's nr_foll_pin_acquired). */
  pinAcquired: number;
  /** Logical subpage pins released (nr_foll_pin_released). */
  pinReleased: number;
  /** Atomic grab and release operations the pin paths made on folio heads. */
  grabs: number;
  /** Folios whose refcount reached 0. */
  foliosFreed: number;
  /** Gets and pins refused with `EOVERFLOW`. */
  overflowRefusals: number;
  /** Multi-page calls that failed and rolled back. */
  rollbacks: number;
  /** Detected imbalances by kind (see {@link PageArrayOptions.onImbalance}). */
  imbalances: ImbalanceCounts;
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

const handles = new WeakMap<PageArray, NativePageArray>();

/** The addon object behind a PageArray (for the other classes of lib/). @internal */
export function nativeOf(mem: PageArray): NativePageArray {
  const h = mem instanceof PageArray ? handles.get(mem) : undefined;
  if (h === undefined) invalid(`mem must be a PageArray (got ${show(mem)})`);
  return h;
}
/** The pin tracking of a page array (for the other classes of lib/). @internal */
export function trackingOf(mem: PageArray): PinTracking {
  nativeOf(mem);
  return trackings.get(mem)!;
}
const trackings = new WeakMap<PageArray, PinTracking>();

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
  readonly #tracking: PinTracking;
  #scratch = new Uint32Array(1024);

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
    handles.set(this, this.#native);
    this.#tracking = new PinTracking({
      debug: resolved.debug,
      mode: resolved.onImbalance,
      captureStacks: resolved.captureStacks,
      matchWrite: resolved.scheme === 'write-bias',
    });
    trackings.set(this, this.#tracking);
    this.pages = resolved.pages;
    this.scheme = resolved.scheme;
    this.pinBias = resolved.pinBias;
    this.pincountMinOrder = resolved.pincountMinOrder;
    this.debug = resolved.debug;
    this.options = Object.freeze(resolved);
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
    const p = pfnArg('pfn', pfn);
    const n = integer('refs', refs);
    try {
      return this.#native.putPage(p, n);
    } catch (e) {
      this.#tracking.coreError(e, p, p + 1);
      return false; // counted, and skipped
    }
  }

  // ---- pins (FOLL_PIN) ----------------------------------------------------------------------

  /**
   * Pins every listed subpage and returns how many. All or nothing.
   * @throws PinlabError `EFREE` on a free page, `EOVERFLOW` when a count would pass 2^31-1,
   *   `ERANGE` for a PFN out of range; nothing stays pinned
   */
  pinPages(pages: PageSet, options?: PinOptions): number {
    const o = optionsObject('pin options', options, PIN_OPTIONS);
    const flags = pinFlags(o, false);
    const owner = ownerOption(this, o['owner']);
    if (isUint32Array(pages)) return this.#pinList('pinPages', pages, flags, owner);
    const { start, count } = pageRange(pages);
    const n = this.#native.pinRange(start, count, flags);
    if (owner !== null || this.#tracking.recordsAll) this.#recordPins(owner, 'pinPages', flags, rangeRuns(start, count));
    return n;
  }

  /**
   * Releases pins taken by {@link PageArray.pinPages}. `write` must match the pin under
   * `'write-bias'`. All or nothing.
   * @throws PinlabError `ENOTPINNED` for a page without such a pin (always caught when a count
   *   would go below 0; every case in debug mode), `ERANGE`
   */
  unpinPages(pages: PageSet, options?: UnpinOptions): void {
    const o = optionsObject('unpin options', options, UNPIN_OPTIONS);
    const flags = pinFlags(o, bool('dirty', o['dirty'], false));
    const owner = ownerOption(this, o['owner'], true);
    const write = (flags & PinFlag.Write) !== 0;
    if (isUint32Array(pages)) {
      if (owner !== null || this.#tracking.recordsAll) {
        const list = stableList(pages); // the ledger releases what the core unpins
        this.releasePins(owner, this.pfnRunsView(list), write, () => this.#native.unpinList(list, flags));
        return;
      }
      try {
        this.#native.unpinList(pages, flags);
      } catch (e) {
        this.#tracking.coreError(e, pages[0] ?? 0, (pages[0] ?? 0) + 1);
      }
      return;
    }
    const { start, count } = pageRange(pages);
    if (owner !== null || this.#tracking.recordsAll) {
      if (start + count > this.pages) throw new PinlabError('ERANGE', `page range start ${start} count ${count} is out of range`);
      this.releasePins(owner, rangeRuns(start, count), write, () => this.#native.unpinRange(start, count, flags));
      return;
    }
    try {
      this.#native.unpinRange(start, count, flags);
    } catch (e) {
      this.#tracking.coreError(e, start, start + count);
    }
  }

  // ---- owners, leaks and debug provenance ---------------------------------------------------

  /**
   * Creates a pin owner (the vaddr_pin idea of seed 000): pass it as the `owner` option of pin
   * and unpin calls; its pins stay listed by {@link PageArray.outstandingPins} until released,
   * whatever happens to the mapping they came from.
   * @throws PinlabError `EINVAL` for an empty name, a name a live owner has, or a bad kind
   */
  pinOwner(name: string, options?: PinOwnerOptions): PinOwner {
    if (typeof name !== 'string' || name.length === 0) invalid(`owner name must be a non-empty string (got ${show(name)})`);
    const o = optionsObject('owner options', options, ['kind']);
    const kind = oneOf('kind', o['kind'], OWNER_KINDS, 'device');
    const host: OwnerHost = { tracking: this.#tracking, releaseAll: (owner) => this.#releaseAll(owner) };
    const owner = new PinOwner(this, host, name, kind);
    this.#tracking.registerOwner(owner);
    return owner;
  }

  /**
   * The runs of pages still pinned, by owner and pin call: every owner's (or `owner`'s) pins,
   * and in debug mode the pins taken without an owner too (`owner: null`).
   */
  outstandingPins(options?: OutstandingPinsOptions): OutstandingPin[] {
    const o = optionsObject('outstandingPins options', options, ['owner']);
    const owner = ownerOption(this, o['owner'], true);
    if (!this.#tracking.active) return [];
    return owner === null ? this.#tracking.ledger.outstanding() : this.#tracking.ledger.outstanding(owner);
  }

  /**
   * Checks that no pin is outstanding: throws `ELEAK` naming each owner, call and run still
   * pinned (and, outside debug mode, how many pins were taken without an owner and not
   * released). Returns the leaks, empty when balanced (in `'count'` mode a non-empty list is
   * counted, not thrown).
   * @throws PinlabError `ELEAK`
   */
  checkBalanced(): OutstandingPin[] {
    const leaks = this.outstandingPins();
    const { pinAcquired, pinReleased } = this.#native.stats();
    const tracked = this.#tracking.active ? this.#tracking.ledger.livePages : 0;
    const untracked = pinAcquired - pinReleased - tracked;
    if (leaks.length === 0 && untracked <= 0) return leaks;
    const parts: string[] = [];
    if (leaks.length > 0) parts.push(`${leaks.length} ${leaks.length === 1 ? 'run' : 'runs'} still pinned: ${describeLeaks(leaks)}`);
    if (untracked > 0) parts.push(`${untracked} pins taken without an owner are not released (debug: true lists their runs)`);
    this.#tracking.detect('ELEAK', parts.join('; '), leaks, leaks);
    return leaks;
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
    return this.#tracking.log();
  }

  /** @internal The flat runs of consecutive PFNs of a list (the side table's unit): a fresh array the side table may keep. */
  pfnRuns(pfns: Uint32Array): Uint32Array {
    return this.pfnRunsView(pfns).slice();
  }

  /**
   * @internal The same runs as a view of a scratch buffer, valid until the next call (for
   * matching a release): no allocation in the addon, whose typed arrays cost ~0.5 us each.
   */
  pfnRunsView(pfns: Uint32Array): Uint32Array {
    uint32List('pfns', pfns);
    if (this.#scratch.length < 2 * pfns.length) this.#scratch = new Uint32Array(2 * pfns.length);
    return this.#scratch.subarray(0, this.#native.pfnRunsInto(pfns, this.#scratch));
  }

  /**
   * @internal A release through the ledger: matched against `owner`'s records first (nothing
   * changes on a mismatch), then `unpin`, then committed. `runs` null: not tracked (the core's
   * detections still count in `'count'` mode).
   */
  releasePins(owner: PinOwner | null, runs: Uint32Array | null, write: boolean, unpin: () => void): void {
    const lo = runs !== null && runs.length > 0 ? runs[0]! : 0;
    const plan = runs === null ? null : this.#tracking.planRelease(owner, runs, write);
    if (runs !== null && plan === null) return; // counted, and skipped
    try {
      unpin();
    } catch (e) {
      this.#tracking.coreError(e, lo, lo + 1);
      return;
    }
    if (plan !== null) this.#tracking.ledger.commit(plan);
  }

  /** @internal Records a pin call that succeeded. */
  recordPins(owner: PinOwner | null, operation: PinOperation, write: boolean, longterm: boolean, runs: Uint32Array, via: string | null): void {
    this.#tracking.record(owner, { operation, write, longterm, via, stack: null }, runs);
  }

  #recordPins(owner: PinOwner | null, operation: PinOperation, flags: number, runs: Uint32Array): void {
    this.recordPins(owner, operation, (flags & PinFlag.Write) !== 0, false, runs, null);
  }

  /** @internal pinPages of a PFN list on behalf of `operation` (bios). */
  pinPagesAs(operation: PinOperation, pfns: Uint32Array, write: boolean, owner: PinOwner | null): number {
    return this.#pinList(operation, pfns, write ? PinFlag.Write : 0, owner);
  }

  #pinList(operation: PinOperation, pfns: Uint32Array, flags: number, owner: PinOwner | null): number {
    const tracked = owner !== null || this.#tracking.recordsAll;
    const list = tracked ? stableList(pfns) : pfns; // the ledger records what the core pinned
    const n = this.#native.pinList(list, flags);
    if (tracked) this.#recordPins(owner, operation, flags, this.pfnRuns(list));
    return n;
  }

  /**
   * Unpins everything `owner` holds, all or nothing: one native (all-or-nothing) unpin per kind
   * of pin (read and write are told apart only under write-bias), so a refused unpin changes
   * nothing. Under write-bias with both kinds held, a refusal of the second call is undone by
   * re-pinning the first, which holds unless the first call freed a folio its pins alone kept.
   */
  #releaseAll(owner: PinOwner): number {
    if (!this.#tracking.active) return 0;
    const records = this.#tracking.ledger.records(owner);
    const classes = this.scheme === 'write-bias' ? [false, true] : [null];
    const lists = classes.map((write) => ({ write, pfns: pagesOf(records.filter((r) => write === null || r.write === write)) }));
    let done = 0;
    try {
      for (; done < lists.length; done++) {
        const { write, pfns } = lists[done]!;
        if (pfns.length > 0) this.#native.unpinList(pfns, write === true ? PinFlag.Write : 0);
      }
    } catch (e) {
      for (let i = 0; i < done; i++) {
        const { write, pfns } = lists[i]!;
        if (pfns.length > 0) this.#native.pinList(pfns, write === true ? PinFlag.Write : 0);
      }
      const first = lists[done]!.pfns[0] ?? 0;
      this.#tracking.coreError(e, first, first + 1); // 'count' mode: counted, the owner stays
      throw new DropSkipped();
    }
    let pages = 0;
    for (const r of records) {
      pages += r.pages;
      this.#tracking.ledger.commit({ owner, steps: [{ record: r, keeps: null }] });
    }
    return pages;
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
    return { ...this.#native.stats(), imbalances: this.#tracking.counts() };
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

  /** The shared zero page's PFN, or null before the first read fault maps it. It is never counted. */
  get zeroPfn(): number | null {
    return this.#native.zeroPfn();
  }

  /** Bytes the per-page arrays take (see {@link MemoryUsage}). */
  memoryUsage(): MemoryUsage {
    const info = this.#native.info();
    return { bytes: info.memoryBytes, bytesPerPage: info.bytesPerPage };
  }
}

function pinFlags(o: Record<string, unknown>, dirty: boolean): number {
  let flags = 0;
  if (bool('write', o['write'], false)) flags |= PinFlag.Write;
  if (oneOf('path', o['path'], PATHS, 'bvec') === 'per-page') flags |= PinFlag.PerPage;
  if (dirty) flags |= PinFlag.Dirty;
  return flags;
}

/** Every page the records pin, one entry per pin (a PFN list for one native unpin). */
function pagesOf(records: readonly PinRecord[]): Uint32Array {
  let n = 0;
  for (const r of records) n += r.pages;
  const out = new Uint32Array(n);
  let k = 0;
  for (const r of records) forEachPage(r.runs, (p) => (out[k++] = p));
  return out;
}

/** @internal The `owner` option: a live owner of `mem` (a dropped one only where `mayBeDropped`), or null. */
export function ownerOption(mem: PageArray, value: unknown, mayBeDropped = false): PinOwner | null {
  if (value === undefined) return null;
  if (!(value instanceof PinOwner)) invalid(`owner must be a PinOwner from mem.pinOwner() (got ${show(value)})`);
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
