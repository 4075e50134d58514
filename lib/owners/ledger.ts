// The pin ledger: a side table of pin calls (one record per call, its pages as runs), never
// touched by the per-page hot path. Releases are matched against an owner's records: a release
// of exactly a call's pages (the common case: unpin what you pinned) is one hash lookup; any
// other release is matched page by page, oldest record first.
import { appendAll } from '../arrays.js';
import type { OutstandingPin, PinOperation, PinOwnerRef, PinProvenance } from '../types/owners.js';
import { RunBuilder, forEachPage, runPages, sameRuns } from './runs.js';

/** One recorded pin call and the pages it still holds (a class: one hidden shape, no spreads on the pin path). @internal */
export class PinRecord {
  constructor(
    readonly id: number,
    readonly owner: PinOwnerRef | null,
    readonly operation: PinOperation,
    readonly write: boolean,
    readonly longterm: boolean,
    readonly via: string | null,
    readonly stack: string | null,
    /** Flat [pfn, count, ...]: the pages still pinned by this call. */
    public runs: Uint32Array,
    public pages: number,
  ) {}

  /** The same call holding `runs` (a released part, for the history). */
  withRuns(runs: Uint32Array): PinRecord {
    return new PinRecord(this.id, this.owner, this.operation, this.write, this.longterm, this.via, this.stack, runs, runPages(runs));
  }
}

/** What a pin call records. @internal */
export interface PinCall {
  operation: PinOperation;
  write: boolean;
  longterm: boolean;
  via: string | null;
  stack: string | null;
}

/** A release the ledger accepted, applied by {@link PinLedger.commit} once the unpin succeeded. @internal */
export interface ReleasePlan {
  readonly owner: PinOwnerRef | null;
  /** Each touched record and what it keeps (null: all of it goes). */
  readonly steps: ReadonlyArray<{ record: PinRecord; keeps: Uint32Array | null }>;
}

/** Why a release was refused: the first page the owner holds no (such) pin on. @internal */
export interface ReleaseMiss {
  readonly pfn: number;
}

interface OwnerBook {
  records: Map<number, PinRecord>; // by id: insertion order is call order
  byFirstPfn: Map<number, PinRecord[]>; // the exact-match index: candidates by first PFN
}

const HISTORY = 256;

/** @internal */
export class PinLedger {
  #nextId = 1;
  #books = new Map<PinOwnerRef | null, OwnerBook>();
  #livePages = 0;
  readonly #released: Array<PinRecord | undefined> = new Array<PinRecord | undefined>(HISTORY);
  #releasedNext = 0; // ring buffer: the next slot to overwrite
  /** Under write-bias a write unpin must release a write pin: match the write flag. */
  readonly #matchWrite: boolean;

  constructor(matchWrite: boolean) {
    this.#matchWrite = matchWrite;
  }

  /** Pages the ledger holds as pinned, all owners together. */
  get livePages(): number {
    return this.#livePages;
  }

  /** Records a pin call that pinned `runs` (already done: recording cannot fail). */
  /** The id the next record will get: the records of a call made in between have ids from here. */
  get nextId(): number {
    return this.#nextId;
  }

  record(owner: PinOwnerRef | null, call: PinCall, runs: Uint32Array): PinRecord {
    const pages = runPages(runs);
    const record = new PinRecord(this.#nextId++, owner, call.operation, call.write, call.longterm, call.via, call.stack, runs, pages);
    if (pages === 0) return record;
    const book = this.#book(owner);
    book.records.set(record.id, record);
    try {
      this.#index(book, record);
    } catch (e) {
      book.records.delete(record.id); // all or nothing: the caller gives its pins back
      throw e;
    }
    this.#livePages += pages;
    return record;
  }

  /** Matches a release of `runs` against `owner`'s records without changing anything. */
  planRelease(owner: PinOwnerRef | null, runs: Uint32Array, write: boolean): ReleasePlan | ReleaseMiss {
    const book = this.#books.get(owner);
    if (runs.length === 0) return { owner, steps: [] };
    if (book === undefined) return { pfn: runs[0]! };
    const candidates = book.byFirstPfn.get(runs[0]!);
    if (candidates !== undefined) {
      for (const r of candidates) {
        if ((!this.#matchWrite || r.write === write) && sameRuns(r.runs, runs)) return { owner, steps: [{ record: r, keeps: null }] };
      }
    }
    return this.#planPageByPage(owner, book, runs, write);
  }

  /** Applies an accepted release. */
  commit(plan: ReleasePlan): void {
    const book = this.#books.get(plan.owner);
    if (book === undefined) return;
    for (const { record, keeps } of plan.steps) {
      this.#unindex(book, record);
      if (keeps === null) {
        this.#remember(record); // all of it: the record itself becomes history
        book.records.delete(record.id);
        this.#livePages -= record.pages;
        continue;
      }
      const released = record.withRuns(subtractRuns(record.runs, keeps));
      this.#remember(released);
      record.runs = keeps;
      record.pages -= released.pages;
      this.#livePages -= released.pages;
      this.#index(book, record);
    }
    if (book.records.size === 0) this.#books.delete(plan.owner);
  }

  /** Calls `fn` for every live record, in no particular order (no copy, no sort). */
  forEachRecord(fn: (r: PinRecord) => void): void {
    for (const book of this.#books.values()) for (const r of book.records.values()) fn(r);
  }

  /** The records of one owner (or of all owners), in call order. */
  records(owner?: PinOwnerRef | null): PinRecord[] {
    if (owner !== undefined) return [...(this.#books.get(owner)?.records.values() ?? [])];
    const all: PinRecord[] = [];
    for (const book of this.#books.values()) appendAll(all, book.records.values());
    // Each book is in call order already: one book needs no sort.
    return this.#books.size <= 1 ? all : all.sort((a, b) => a.id - b.id);
  }

  /** Every run still pinned, by call, for reports. */
  outstanding(owner?: PinOwnerRef | null): OutstandingPin[] {
    const out: OutstandingPin[] = [];
    for (const r of this.records(owner)) {
      // One literal per run (no spread: a million-record report stays linear and fast).
      const name = r.owner?.name ?? null;
      const kind = r.owner?.kind ?? null;
      for (let i = 0; i < r.runs.length; i += 2) {
        out.push({
          callId: r.id,
          owner: name,
          ownerKind: kind,
          operation: r.operation,
          via: r.via,
          stack: r.stack,
          ownerObject: r.owner,
          pfn: r.runs[i]!,
          count: r.runs[i + 1]!,
          write: r.write,
          longterm: r.longterm,
        });
      }
    }
    return out;
  }

  /** The records holding a pin on any page of [lo, hi). A scan: for detections and reports only. */
  holdersOf(lo: number, hi: number, filter?: (r: PinRecord) => boolean): PinRecord[] {
    return this.records().filter((r) => (filter === undefined || filter(r)) && overlaps(r.runs, lo, hi));
  }

  /** The most recent released part of a call that covered `pfn`, if still remembered. */
  lastReleaseOf(pfn: number, owner?: PinOwnerRef | null): PinRecord | undefined {
    for (let k = 1; k <= HISTORY; k++) {
      const r = this.#released[(this.#releasedNext - k + HISTORY) % HISTORY];
      if (r === undefined) return undefined;
      if ((owner === undefined || r.owner === owner) && overlaps(r.runs, pfn, pfn + 1)) return r;
    }
    return undefined;
  }

  #planPageByPage(owner: PinOwnerRef | null, book: OwnerBook, runs: Uint32Array, write: boolean): ReleasePlan | ReleaseMiss {
    const need = new Map<number, number>();
    forEachPage(runs, (p) => need.set(p, (need.get(p) ?? 0) + 1));
    let left = runPages(runs);
    const steps: Array<{ record: PinRecord; keeps: Uint32Array | null }> = [];
    for (const record of book.records.values()) {
      if (left === 0) break;
      if (this.#matchWrite && record.write !== write) continue;
      const keeps = new RunBuilder();
      let took = 0;
      forEachPage(record.runs, (p) => {
        const n = need.get(p) ?? 0;
        if (n > 0) {
          need.set(p, n - 1);
          took++;
        } else keeps.push(p);
      });
      if (took === 0) continue;
      left -= took;
      steps.push({ record, keeps: keeps.empty ? null : keeps.finish() });
    }
    if (left === 0) return { owner, steps };
    for (const [pfn, n] of need) if (n > 0) return { pfn };
    return { pfn: runs[0]! };
  }

  #book(owner: PinOwnerRef | null): OwnerBook {
    let book = this.#books.get(owner);
    if (book === undefined) {
      book = { records: new Map(), byFirstPfn: new Map() };
      this.#books.set(owner, book);
    }
    return book;
  }

  #index(book: OwnerBook, record: PinRecord): void {
    const key = record.runs[0]!;
    const list = book.byFirstPfn.get(key);
    if (list === undefined) book.byFirstPfn.set(key, [record]);
    else list.push(record);
  }

  #unindex(book: OwnerBook, record: PinRecord): void {
    const key = record.runs[0]!;
    const list = book.byFirstPfn.get(key);
    if (list === undefined) return;
    const i = list.indexOf(record);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) book.byFirstPfn.delete(key);
  }

  #remember(released: PinRecord): void {
    this.#released[this.#releasedNext] = released;
    this.#releasedNext = (this.#releasedNext + 1) % HISTORY;
  }
}

/** The provenance part of a record. @internal */
export function provenanceOf(r: PinRecord): PinProvenance {
  return {
    callId: r.id,
    owner: r.owner?.name ?? null,
    ownerKind: r.owner?.kind ?? null,
    operation: r.operation,
    via: r.via,
    stack: r.stack,
  };
}

/** Whether a release result is a refusal. @internal */
export function isMiss(r: ReleasePlan | ReleaseMiss): r is ReleaseMiss {
  return 'pfn' in r;
}

function overlaps(runs: Uint32Array, lo: number, hi: number): boolean {
  for (let i = 0; i < runs.length; i += 2) {
    if (runs[i]! < hi && runs[i]! + runs[i + 1]! > lo) return true;
  }
  return false;
}

/** Pages of `all` not in `kept` (a multiset difference; `kept` is a sub-multiset of `all`). */
function subtractRuns(all: Uint32Array, kept: Uint32Array): Uint32Array {
  const keep = new Map<number, number>();
  forEachPage(kept, (p) => keep.set(p, (keep.get(p) ?? 0) + 1));
  const out = new RunBuilder();
  forEachPage(all, (p) => {
    const n = keep.get(p) ?? 0;
    if (n > 0) keep.set(p, n - 1);
    else out.push(p);
  });
  return out.finish();
}
