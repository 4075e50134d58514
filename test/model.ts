// A small, slow, obviously-correct reference model of pinlab's semantics, written from the API
// contract and /work/shared/reference/pin-semantics.md (not from the native code).
//
// State: per page the order of its folio; per folio head its refcount, its exact pincount (where
// the scheme keeps one) and its dirty flag; in debug mode the exact pins of every subpage (and,
// for write-bias, how many of them are write pins).
//
// Every mutating call is all or nothing: the model applies a call entry by entry (the per-page
// view) on the live state and restores a snapshot on failure. Because pins only add and unpins only
// subtract, the first failing entry and its error code are the same whatever the batching.
//
// The four schemes of the 2019 debate are written out here, independently of the native code. A
// scheme registered later (one file in native/core/pages/schemes/) has no arithmetic of its own
// here: the model takes its pin costs, exact orders and read-pin visibility from its policy
// through the addon (schemeArithmetic, schemes()), so every property test runs for it too and
// checks the paths, rollback and overflow machinery against that policy.
import { native } from '../lib/native.js';
import type { Scheme } from '../lib/schemes.js';


export interface ModelOptions {
  pages: number;
  scheme?: Scheme;
  pinBias?: number;
  pincountMinOrder?: number;
  folioOrder?: number;
  debug?: boolean;
}

export type ModelPageSet = { start: number; count: number } | Uint32Array | readonly number[];

export interface ModelStats {
  pinAcquired: number;
  pinReleased: number;
  foliosFreed: number;
  overflowRefusals: number;
  rollbacks: number;
}

export const INT32_MAX = 2 ** 31 - 1;

/** The error a model call throws: only its errno-like code matters. */
export class ModelError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

function fail(code: string, message: string): never {
  throw new ModelError(code, message);
}

export class PinModel {
  readonly pages: number;
  readonly scheme: Scheme;
  readonly bias: number;
  readonly minOrder: number;
  readonly debug: boolean;

  /** Order of the folio each page belongs to. */
  readonly order: Uint8Array;
  /** Refcount, meaningful on folio heads (0 = free). */
  ref: Float64Array;
  /** Exact folio pincount (on heads) where the scheme keeps one. */
  pin: Float64Array;
  /** Dirty flag, on heads. */
  dirty: Uint8Array;
  /** Debug mode: exact pins per subpage, and of those the write pins. */
  dbg: Int32Array;
  dbgW: Int32Array;

  readonly stats: ModelStats = {
    pinAcquired: 0,
    pinReleased: 0,
    foliosFreed: 0,
    overflowRefusals: 0,
    rollbacks: 0,
  };

  /** A scheme not written out here: its policy's arithmetic, from the addon. */
  private readonly policy: { exact: boolean[]; read: number[]; write: number[]; sharedRef: boolean[]; pinLimit: number[] } | null = null;
  /** Maybe-pinned does not see read pins (write-bias): read and write pins cost differently, so debug mode counts write pins apart. */
  readonly readPinsHidden: boolean;

  constructor(o: ModelOptions) {
    this.pages = o.pages;
    this.scheme = o.scheme ?? 'hybrid';
    this.bias = o.pinBias ?? 1024;
    this.minOrder = o.pincountMinOrder ?? 1;
    this.debug = o.debug ?? false;
    if (this.writtenOutCost(0, true) === null) {
      // not one of the schemes written out below: its policy's arithmetic
      this.policy = native.schemeArithmetic(this.scheme, this.bias, this.minOrder);
      this.readPinsHidden = native.schemes().find((x) => x.name === this.scheme)?.readPinsVisible === false;
    } else {
      this.readPinsHidden = this.scheme === 'write-bias';
    }
    const fo = o.folioOrder ?? 0;
    this.order = new Uint8Array(this.pages).fill(fo);
    this.ref = new Float64Array(this.pages);
    for (let h = 0; h < this.pages; h += 2 ** fo) this.ref[h] = 1;
    this.pin = new Float64Array(this.pages);
    this.dirty = new Uint8Array(this.pages);
    this.dbg = new Int32Array(this.pages);
    this.dbgW = new Int32Array(this.pages);
  }

  // ---- helpers -------------------------------------------------------------------------------

  head(pfn: number): number {
    const size = 2 ** this.order[pfn]!;
    return pfn - (pfn % size);
  }

  /** Whether the scheme keeps an exact pincount for a folio of this order. */
  tracked(order: number): boolean {
    if (this.policy !== null) return this.policy.exact[order]!;
    if (this.scheme === 'separate') return true;
    if (this.scheme === 'hybrid') return order >= this.minOrder;
    return false;
  }

  /**
   * Whether the folio's pins share ONE reference (taken by its first pin, given back by its
   * last): refcount = gets + 1 while pinned, and the pincount bounded by pinLimit(order). None of
   * the four written-out schemes does; a later one says so through the addon.
   */
  sharesRef(order: number): boolean {
    return this.policy?.sharedRef[order] ?? false;
  }

  /** The most pins a folio whose pins share one reference holds. */
  pinLimit(order: number): number {
    return this.policy?.pinLimit[order] ?? INT32_MAX;
  }

  /** What one subpage pin adds to the folio's refcount. */
  pinRefCost(order: number, write: boolean): number {
    if (this.policy !== null) return (write ? this.policy.write : this.policy.read)[order]!;
    const cost = this.writtenOutCost(order, write);
    if (cost === null) throw new Error(`model: no arithmetic for scheme '${this.scheme}'`);
    return cost;
  }

  /** The contract's table for the schemes this model writes out; null for any other. */
  private writtenOutCost(order: number, write: boolean): number | null {
    switch (this.scheme) {
      case 'bias':
        return this.bias;
      case 'hybrid':
        return order >= this.minOrder ? 1 : this.bias;
      case 'separate':
        return 1;
      case 'write-bias':
        return write ? this.bias : 1;
    }
    return null;
  }

  private checkPfn(pfn: number): void {
    if (!Number.isInteger(pfn)) fail('EINVAL', `pfn ${pfn}`);
    if (pfn < 0 || pfn >= this.pages) fail('ERANGE', `pfn ${pfn}`);
  }

  private checkRefs(refs: number): void {
    if (!Number.isInteger(refs) || refs < 1 || refs > INT32_MAX) fail('EINVAL', `refs ${refs}`);
  }

  /** The listed PFNs in order (validated: ERANGE before anything changes). */
  expand(set: ModelPageSet): number[] {
    if ('start' in set && !(set instanceof Uint32Array) && !Array.isArray(set)) {
      const { start, count } = set as { start: number; count: number };
      if (start < 0 || count < 0 || start + count > this.pages) fail('ERANGE', `range ${start}+${count}`);
      return Array.from({ length: count }, (_, i) => start + i);
    }
    const list = Array.from(set as ArrayLike<number>);
    for (const p of list) if (p >= this.pages) fail('ERANGE', `pfn ${p}`);
    return list;
  }

  private snapshot() {
    return {
      ref: this.ref.slice(),
      pin: this.pin.slice(),
      dirty: this.dirty.slice(),
      dbg: this.dbg.slice(),
      dbgW: this.dbgW.slice(),
    };
  }

  private restore(s: ReturnType<PinModel['snapshot']>): void {
    this.ref = s.ref;
    this.pin = s.pin;
    this.dirty = s.dirty;
    this.dbg = s.dbg;
    this.dbgW = s.dbgW;
  }

  /** Debug: the refcount that belongs to the folio's pins. */
  private owedToPins(head: number): number {
    const o = this.order[head]!;
    let owed = 0;
    if (this.sharesRef(o)) {
      for (let p = head; p < head + 2 ** o; p++) if (this.dbg[p]! > 0) return 1;
      return 0;
    }
    for (let p = head; p < head + 2 ** o; p++) {
      const w = this.dbgW[p]!;
      const r = this.dbg[p]! - w;
      owed += w * this.pinRefCost(o, true) + r * this.pinRefCost(o, false);
    }
    return owed;
  }

  // ---- queries -------------------------------------------------------------------------------

  folioHead(pfn: number): number {
    this.checkPfn(pfn);
    return this.head(pfn);
  }

  folioOrder(pfn: number): number {
    this.checkPfn(pfn);
    return this.order[pfn]!;
  }

  refcount(pfn: number): number {
    this.checkPfn(pfn);
    return this.ref[this.head(pfn)]!;
  }

  pincount(pfn: number): number | null {
    this.checkPfn(pfn);
    const h = this.head(pfn);
    const o = this.order[h]!;
    if (this.tracked(o)) return this.pin[h]!;
    if (this.debug) {
      let sum = 0;
      for (let p = h; p < h + 2 ** o; p++) sum += this.dbg[p]!;
      return sum;
    }
    return null;
  }

  maybeDmaPinned(pfn: number): boolean {
    this.checkPfn(pfn);
    const h = this.head(pfn);
    if (this.tracked(this.order[h]!)) return this.pin[h]! > 0;
    return this.ref[h]! >>> 0 >= this.bias;
  }

  isDirty(pfn: number): boolean {
    this.checkPfn(pfn);
    return this.dirty[this.head(pfn)] === 1;
  }

  countMaybeDmaPinned(set: ModelPageSet): number {
    return this.expand(set).filter((p) => this.maybeDmaPinned(p)).length;
  }

  /** Runs of listed entries that are consecutive PFNs of one folio. */
  toBvecs(set: ModelPageSet): { pfn: number; count: number }[] {
    const list = this.expand(set);
    const runs: { pfn: number; count: number }[] = [];
    for (let i = 0; i < list.length; ) {
      const pfn = list[i]!;
      const end = this.head(pfn) + 2 ** this.order[pfn]!;
      let n = 1;
      while (i + n < list.length && list[i + n] === pfn + n && pfn + n < end) n++;
      runs.push({ pfn, count: n });
      i += n;
    }
    return runs;
  }

  // ---- plain references ----------------------------------------------------------------------

  getPage(pfn: number, refs = 1): void {
    this.checkPfn(pfn);
    this.checkRefs(refs);
    const h = this.head(pfn);
    if (this.ref[h] === 0) fail('EFREE', `pfn ${pfn}`);
    if (this.ref[h]! + refs > INT32_MAX) {
      this.stats.overflowRefusals++;
      fail('EOVERFLOW', `pfn ${pfn}`);
    }
    this.ref[h]! += refs;
  }

  tryGetPage(pfn: number, refs = 1): boolean {
    this.checkPfn(pfn);
    this.checkRefs(refs);
    const h = this.head(pfn);
    if (this.ref[h]! <= 0) return false;
    if (this.ref[h]! + refs > INT32_MAX) {
      this.stats.overflowRefusals++;
      fail('EOVERFLOW', `pfn ${pfn}`);
    }
    this.ref[h]! += refs;
    return true;
  }

  putPage(pfn: number, refs = 1): boolean {
    this.checkPfn(pfn);
    this.checkRefs(refs);
    const h = this.head(pfn);
    const after = this.ref[h]! - refs;
    if (after < 0) fail('EINVAL', `put below 0 on ${pfn}`);
    if (this.debug && after < this.owedToPins(h)) fail('EPINNED', `put eats pins on ${pfn}`);
    this.ref[h] = after;
    if (after === 0) this.free(h);
    return after === 0;
  }

  // A folio whose count reached 0 goes back to the allocator: its pages become free order-0
  // pages with no flags, and any stale pincount is cleared.
  private free(head: number): void {
    const o = this.order[head]!;
    for (let p = head; p < head + 2 ** o; p++) {
      this.order[p] = 0;
      this.dirty[p] = 0;
      this.pin[p] = 0;
    }
    this.stats.foliosFreed++;
  }

  // ---- folio shape ---------------------------------------------------------------------------

  private idlePage(p: number): boolean {
    return (
      this.order[p] === 0 &&
      this.ref[p] === 1 &&
      (!this.tracked(0) || this.pin[p] === 0) &&
      (!this.debug || this.dbg[p] === 0)
    );
  }

  makeFolio(head: number, order: number): void {
    this.checkPfn(head);
    if (!Number.isInteger(order) || order < 0 || order > 30) fail('EINVAL', `order ${order}`);
    const size = 2 ** order;
    if (head % size !== 0) fail('EINVAL', `head ${head} misaligned`);
    if (head + size > this.pages) fail('EINVAL', `folio too large`);
    for (let p = head; p < head + size; p++) if (!this.idlePage(p)) fail('EBUSY', `pfn ${p}`);
    let dirty = 0;
    for (let p = head; p < head + size; p++) {
      dirty |= this.dirty[p]!;
      this.order[p] = order;
      this.ref[p] = 0;
      this.pin[p] = 0;
      this.dirty[p] = 0;
    }
    this.ref[head] = 1;
    this.dirty[head] = dirty;
  }

  splitFolio(head: number): void {
    this.checkPfn(head);
    const o = this.order[head]!;
    if (o === 0) fail('EINVAL', `pfn ${head} is order 0`);
    if (this.head(head) !== head) fail('EINVAL', `pfn ${head} is not a head`);
    if (this.ref[head] !== 1) fail('EBUSY', `refcount ${this.ref[head]}`);
    if (this.tracked(o) && this.pin[head] !== 0) fail('EBUSY', 'pinned');
    if (this.debug && this.pincount(head) !== 0) fail('EBUSY', 'pinned (debug)');
    const dirty = this.dirty[head]!;
    for (let p = head; p < head + 2 ** o; p++) {
      this.order[p] = 0;
      this.ref[p] = 1;
      this.pin[p] = 0;
      this.dirty[p] = dirty;
    }
  }

  // ---- pins ----------------------------------------------------------------------------------

  private checkLedger(list: number[], write: boolean): void {
    const need = new Map<number, number>();
    for (const pfn of list) need.set(pfn, (need.get(pfn) ?? 0) + 1);
    for (const [pfn, n] of need) {
      const w = this.dbgW[pfn]!;
      const all = this.dbg[pfn]!;
      const held = this.readPinsHidden ? (write ? w : all - w) : all;
      if (held < n) fail('ENOTPINNED', `pfn ${pfn} (ledger)`);
    }
  }

  pinPages(set: ModelPageSet, write = false): number {
    const list = this.expand(set);
    const saved = this.snapshot();
    try {
      for (const pfn of list) {
        const h = this.head(pfn);
        const o = this.order[h]!;
        if (this.ref[h]! <= 0) fail('EFREE', `pfn ${pfn}`);
        if (this.sharesRef(o)) {
          // The pin limit, then the one reference, which only the first pin takes.
          const first = this.pin[h] === 0;
          if (this.pin[h]! + 1 > this.pinLimit(o) || (first && this.ref[h]! + 1 > INT32_MAX)) {
            this.stats.overflowRefusals++;
            fail('EOVERFLOW', `pfn ${pfn}`);
          }
          if (first) this.ref[h]! += 1;
          this.pin[h]! += 1;
          if (this.debug) {
            this.dbg[pfn]! += 1;
            if (write && this.readPinsHidden) this.dbgW[pfn]! += 1;
          }
          continue;
        }
        const cost = this.pinRefCost(o, write);
        if (this.ref[h]! + cost > INT32_MAX) {
          this.stats.overflowRefusals++;
          fail('EOVERFLOW', `pfn ${pfn}`);
        }
        this.ref[h]! += cost;
        if (this.tracked(o)) this.pin[h]! += 1;
        if (this.debug) {
          this.dbg[pfn]! += 1;
          if (write && this.readPinsHidden) this.dbgW[pfn]! += 1;
        }
      }
    } catch (e) {
      this.restore(saved);
      this.stats.rollbacks++;
      throw e;
    }
    this.stats.pinAcquired += list.length;
    return list.length;
  }

  unpinPages(set: ModelPageSet, write = false, dirty = false): void {
    const list = this.expand(set);
    // Debug mode records every pin call: the pin ledger refuses an unpin without matching pins
    // before the core runs, so no rollback is counted.
    if (this.debug) this.checkLedger(list, write);
    const saved = this.snapshot();
    const freed: number[] = [];
    try {
      for (const pfn of list) {
        const h = this.head(pfn);
        const o = this.order[h]!;
        if (this.debug) {
          const w = this.dbgW[pfn]!;
          const all = this.dbg[pfn]!;
          if (this.readPinsHidden) {
            if (write ? w <= 0 : all - w <= 0) fail('ENOTPINNED', `pfn ${pfn} (debug)`);
          } else if (all <= 0) fail('ENOTPINNED', `pfn ${pfn} (debug)`);
          this.dbg[pfn] = all - 1;
          if (write && this.readPinsHidden) this.dbgW[pfn] = w - 1;
        }
        if (dirty) this.dirty[h] = 1;
        if (this.tracked(o)) {
          if (this.pin[h]! - 1 < 0) fail('ENOTPINNED', `pfn ${pfn}`);
          this.pin[h]! -= 1;
        }
        if (this.sharesRef(o)) {
          // The last pin gives the pins' one reference back.
          if (this.pin[h] === 0) {
            if (this.ref[h]! - 1 < 0) fail('ENOTPINNED', `pfn ${pfn}`);
            this.ref[h]! -= 1;
            if (this.ref[h] === 0) freed.push(h);
          }
          continue;
        }
        const cost = this.pinRefCost(o, write);
        if (this.ref[h]! - cost < 0) fail('ENOTPINNED', `pfn ${pfn}`);
        this.ref[h]! -= cost;
        if (this.ref[h] === 0) freed.push(h);
      }
    } catch (e) {
      this.restore(saved);
      this.stats.rollbacks++;
      throw e;
    }
    this.stats.pinReleased += list.length;
    for (const h of freed) this.free(h);
  }
}
