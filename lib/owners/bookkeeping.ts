// The owner and debug bookkeeping around one page array's pin calls: which calls are recorded
// (an owner's always, every call in debug mode), how a release is matched against the records
// before the native unpin runs, what a detected imbalance does (throw, or count and skip), and
// the leak checks. PageArray, AddressSpace, Bio and PageCacheFile pin and unpin through here
// (reached with pinsOf(mem)); the per-page hot path without owners skips all of it.
import { PinlabError } from '../errors.js';
import { PinFlag, type NativePageArray } from '../native.js';
import type { ImbalanceMode, OutstandingPin, PinOperation, PinOwnerRef } from '../types/owners.js';
import type { PinRecord } from './ledger.js';
import { forEachPage, rangeRuns } from './runs.js';
import { DropSkipped, PinTracking, describeLeaks } from './tracking.js';
import { stableList, uint32List } from '../validate.js';

/** How a page array's bookkeeping is set up (its constructor options, resolved). @internal */
export interface BookkeepingOptions {
  /** Base pages of the array (a range past them is `ERANGE`). */
  pages: number;
  /** Debug mode: every pin call is recorded, owner or not. */
  debug: boolean;
  /** What a detected imbalance does. */
  onImbalance: ImbalanceMode;
  /** Keep the JS stack of every recorded pin call. */
  captureStacks: boolean;
  /** Write-bias: read and write pins are told apart (an unpin must name the kind it releases). */
  writePinsApart: boolean;
}

/** The owner and debug bookkeeping of one page array's pin calls. @internal */
export class PinBookkeeping {
  /** The ledger, the registry of live owners and the detected imbalances. */
  readonly tracking: PinTracking;
  readonly #native: NativePageArray;
  readonly #pages: number;
  readonly #writePinsApart: boolean;
  #scratch = new Uint32Array(1024);
  /** Per owner dropped with `pins: 'release'`: the ids of the records that drop released. */
  readonly #releasedAtDrop = new WeakMap<PinOwnerRef, Set<number>>();

  constructor(handle: NativePageArray, options: BookkeepingOptions) {
    this.#native = handle;
    this.#pages = options.pages;
    this.#writePinsApart = options.writePinsApart;
    this.tracking = new PinTracking({
      debug: options.debug,
      mode: options.onImbalance,
      captureStacks: options.captureStacks,
      matchWrite: options.writePinsApart,
    });
  }

  /** Whether a pin call by `owner` (null: none) is recorded: an owner's always, every call in debug mode. */
  records(owner: PinOwnerRef | null): boolean {
    return owner !== null || this.tracking.recordsAll;
  }

  // ---- pins and unpins of a page array --------------------------------------------------------

  /**
   * pinPages of a range: its record's runs made first, then the native pin, then the record
   * (if recording fails the call gives back the pins it took: all or nothing).
   */
  pinRange(start: number, count: number, flags: number, owner: PinOwnerRef | null): number {
    const runs = this.records(owner) ? rangeRuns(start, count) : null;
    const n = this.#native.pinRange(start, count, flags);
    if (runs !== null) this.recordOrGiveBack(owner, 'pinPages', (flags & PinFlag.Write) !== 0, false, runs, null, () => this.#native.unpinRange(start, count, flags));
    return n;
  }

  /**
   * A pin of a PFN list on behalf of `operation` (pinPages, bios): the list read once and its
   * runs made first, then the native pin, then its record (given back if recording fails).
   */
  pinList(operation: PinOperation, pfns: Uint32Array, flags: number, owner: PinOwnerRef | null): number {
    const tracked = this.records(owner);
    const list = tracked ? stableList(pfns) : pfns; // read once: the ledger records what the core pinned
    const runs = tracked ? this.pfnRuns(list) : null; // allocated before any pin is taken
    const n = this.#native.pinList(list, flags);
    if (runs !== null) this.recordOrGiveBack(owner, operation, (flags & PinFlag.Write) !== 0, false, runs, null, () => this.#native.unpinList(list, flags));
    return n;
  }

  /**
   * Records a pin call that succeeded natively; if the record cannot be made (no memory, a Map
   * past its size limit) the call's own pins are given back through `giveBack` (an unpin of
   * pins this call holds, not a re-take) and the call fails with `ENOMEM`: every public call is
   * all or nothing, and no pin is left that no call could release.
   */
  recordOrGiveBack(owner: PinOwnerRef | null, operation: PinOperation, write: boolean, longterm: boolean, runs: Uint32Array, via: string | null, giveBack: () => void): void {
    try {
      this.record(owner, operation, write, longterm, runs, via);
    } catch (e) {
      giveBack();
      if (e instanceof PinlabError) throw e;
      throw new PinlabError('ENOMEM', `the pin call's record could not be kept (${e instanceof Error ? e.message : String(e)}); its pins were given back`);
    }
  }

  /** unpinPages of a range: matched against the records first where recorded. */
  unpinRange(start: number, count: number, flags: number, owner: PinOwnerRef | null): void {
    if (this.records(owner)) {
      if (start + count > this.#pages) throw new PinlabError('ERANGE', `page range start ${start} count ${count} is out of range`);
      const zero = this.#native.zeroPfn();
      if (zero !== null && zero >= start && zero - start < count) refuseZeroPage(zero); // as the core does, before the ledger
      const huge = this.#native.hugeZeroPfn();
      if (huge !== null && huge < start + count && start < huge + 512) refuseZeroPage(huge); // its 512 pages too
      this.release(owner, rangeRuns(start, count), (flags & PinFlag.Write) !== 0, () => this.#native.unpinRange(start, count, flags));
      return;
    }
    try {
      this.#native.unpinRange(start, count, flags);
    } catch (e) {
      this.tracking.coreError(e, start, start + count);
    }
  }

  /** unpinPages of a PFN list: matched against the records first where recorded. */
  unpinList(pfns: Uint32Array, flags: number, owner: PinOwnerRef | null): void {
    if (this.records(owner)) {
      const list = stableList(pfns); // read once: the ledger releases what the core unpins
      const zero = this.#native.zeroPfn();
      if (zero !== null && list.includes(zero)) refuseZeroPage(zero); // as the core does, before the ledger
      const huge = this.#native.hugeZeroPfn();
      if (huge !== null && list.some((p) => p >= huge && p < huge + 512)) refuseZeroPage(huge); // its 512 pages too
      this.release(owner, this.pfnRunsView(list), (flags & PinFlag.Write) !== 0, () => this.#native.unpinList(list, flags));
      return;
    }
    try {
      this.#native.unpinList(pfns, flags);
    } catch (e) {
      this.tracking.coreError(e, pfns[0] ?? 0, (pfns[0] ?? 0) + 1);
    }
  }

  /** putPage: a put the core refuses in debug mode (it would eat a pin's references) is a detection. */
  putPage(pfn: number, refs: number): boolean {
    try {
      return this.#native.putPage(pfn, refs);
    } catch (e) {
      this.tracking.coreError(e, pfn, pfn + 1);
      return false; // counted, and skipped
    }
  }

  // ---- records and releases (for every pin call of lib/) --------------------------------------

  /** Records a pin call that succeeded; `runs` are its pages (zero page excluded). */
  record(owner: PinOwnerRef | null, operation: PinOperation, write: boolean, longterm: boolean, runs: Uint32Array, via: string | null): void {
    this.tracking.record(owner, { operation, write, longterm, via, stack: null }, runs);
  }

  /**
   * A release through the ledger: matched against `owner`'s records first (nothing changes on a
   * mismatch), then `unpin`, then committed. `runs` null: not tracked (the core's detections
   * still count in `'count'` mode).
   */
  release(owner: PinOwnerRef | null, runs: Uint32Array | null, write: boolean, unpin: () => void): void {
    const lo = runs !== null && runs.length > 0 ? runs[0]! : 0;
    const plan = runs === null ? null : this.tracking.planRelease(owner, runs, write);
    if (runs !== null && plan === null) return; // counted, and skipped
    try {
      unpin();
    } catch (e) {
      this.tracking.coreError(e, lo, lo + 1);
      return;
    }
    if (plan !== null) this.tracking.ledger.commit(plan);
  }

  /** The flat runs of consecutive PFNs of a list (the ledger's unit): a fresh array the ledger may keep. */
  pfnRuns(pfns: Uint32Array): Uint32Array {
    return this.pfnRunsView(pfns).slice();
  }

  /**
   * The same runs as a view of a scratch buffer, valid until the next call (for matching a
   * release): no allocation in the addon, whose typed arrays cost ~0.5 us each.
   */
  pfnRunsView(pfns: Uint32Array): Uint32Array {
    uint32List('pfns', pfns);
    if (this.#scratch.length < 2 * pfns.length) this.#scratch = new Uint32Array(2 * pfns.length);
    return this.#scratch.subarray(0, this.#native.pfnRunsInto(pfns, this.#scratch));
  }

  // ---- owners and leaks -----------------------------------------------------------------------

  /** The runs still pinned: `owner`'s, or (null) every owner's and in debug mode the ownerless ones. */
  outstanding(owner: PinOwnerRef | null): OutstandingPin[] {
    if (!this.tracking.active) return [];
    return owner === null ? this.tracking.ledger.outstanding() : this.tracking.ledger.outstanding(owner);
  }

  /**
   * Every pin outstanding, or `ELEAK` naming each owner, call and run (and, outside debug mode,
   * how many pins were taken without an owner and not released). Counted, not thrown, in
   * `'count'` mode.
   */
  checkBalanced(): OutstandingPin[] {
    const leaks = this.outstanding(null);
    const { pinAcquired, pinReleased } = this.#native.stats();
    const tracked = this.tracking.active ? this.tracking.ledger.livePages : 0;
    const untracked = pinAcquired - pinReleased - tracked;
    if (leaks.length === 0 && untracked <= 0) return leaks;
    const parts: string[] = [];
    if (leaks.length > 0) parts.push(`${leaks.length} ${leaks.length === 1 ? 'run' : 'runs'} still pinned: ${describeLeaks(leaks)}`);
    if (untracked > 0) parts.push(`${untracked} pins taken without an owner are not released (debug: true lists their runs)`);
    this.tracking.detect('ELEAK', parts.join('; '), leaks, leaks);
    return leaks;
  }

  /** A dropped owner's outstanding pins are a leak: `ELEAK` naming each run (counted in `'count'` mode). */
  reportDropped(owner: PinOwnerRef, leaked: readonly OutstandingPin[]): void {
    if (leaked.length > 0) this.tracking.detect('ELEAK', `owner '${owner.name}' dropped with pins held: ${describeLeaks(leaked)}`, leaked, leaked);
  }

  /**
   * Whether a record with an id in [from, to) was released by {@link PinBookkeeping.releaseAll}
   * (a drop with `pins: 'release'`), not by an unpin: a bio asks for the pin call it made.
   */
  releasedAtDrop(owner: PinOwnerRef, from: number, to: number): boolean {
    const ids = this.#releasedAtDrop.get(owner);
    if (ids === undefined) return false;
    for (let id = from; id < to; id++) if (ids.has(id)) return true;
    return false;
  }

  /**
   * Unpins everything `owner` holds, all or nothing: one native all-or-nothing call. Under
   * write-bias, where read and write pins are told apart, the read and write lists go to the
   * core as one call (unpinLists) that validates both before releasing either: a refusal
   * changes nothing, and nothing is ever re-pinned to undo a release.
   * @throws DropSkipped when the core refused and `'count'` mode counted it (the owner stays)
   */
  releaseAll(owner: PinOwnerRef): number {
    if (!this.tracking.active) return 0;
    const records = this.tracking.ledger.records(owner);
    let first = 0;
    try {
      if (this.#writePinsApart) {
        const reads = pagesOf(records.filter((r) => !r.write));
        const writes = pagesOf(records.filter((r) => r.write));
        first = reads[0] ?? writes[0] ?? 0;
        if (reads.length > 0 || writes.length > 0) this.#native.unpinLists(reads, writes);
      } else {
        const pfns = pagesOf(records);
        first = pfns[0] ?? 0;
        if (pfns.length > 0) this.#native.unpinList(pfns, 0);
      }
    } catch (e) {
      this.tracking.coreError(e, first, first + 1); // 'count' mode: counted, the owner stays
      throw new DropSkipped();
    }
    let pages = 0;
    const released = new Set(records.map((r) => r.id));
    for (const r of records) {
      pages += r.pages;
      this.tracking.ledger.commit({ owner, steps: [{ record: r, keeps: null }] });
    }
    this.#releasedAtDrop.set(owner, released); // an owner is dropped once
    return pages;
  }
}

/** The core's refusal of a pin or unpin naming the zero page, for the ledger's path. */
function refuseZeroPage(pfn: number): never {
  throw new PinlabError('EINVAL', `pfn ${pfn} is the zero page (or the huge zero folio's head: its 512 pages), which is never counted (no get, put, pin or unpin)`);
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
