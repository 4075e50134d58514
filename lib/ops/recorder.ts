// OpRecorder: captures every engine-level call a page array's JS API makes (its own calls, its
// address spaces', and those that owners, bios and files make on their behalf) as op-stream
// records, in order, with the arguments the engine received (defaults filled in) and the result
// it gave (a count, or -code for a refusal). It listens where the calls reach the engine: the
// addon objects behind the page array and its address spaces, whose state-changing methods it
// shadows while recording (own properties over the prototype's, removed by stop()), so a page
// array that is not recording pays nothing.
import { fileURLToPath } from 'node:url';

import { PinlabError } from '../errors.js';
import { GupFlag, native, type NativeAddressSpace, type NativeOpHeader, type NativePageArray } from '../native.js';
import { OP_ADVICE, OP_CODES, OP_DATA, OP_ENTRIES_PER_DATA, OP_FLAGS, OP_NO_VALUE, OP_OUTPUT_WINDOW, OP_RECORD_WORDS, batchRecords, codeNumber, entryWord, u32 as formatU32 } from './format.js';
import { setSpaceListener, type SpaceListener } from './spaces.js';
import { show, stableList } from '../validate.js';

/** The local path of a file: URL, or PinlabError `EINVAL` (another scheme, a host, an encoded '/'). */
function filePathOf(url: URL): string {
  try {
    return fileURLToPath(url.href);
  } catch (e) {
    throw new PinlabError('EINVAL', `the path to save to must be a string or a local file: URL (${(e as Error).message})`);
  }
}

/** Set by {@link u32} when an argument had no u32 to stand for it (negative, fractional, 2^32 or more). */
let lossy = false;

/** An argument as a record field (OP_NO_VALUE where it has none), noting in `lossy` when it had none. */
function u32(v: number): number {
  const w = formatU32(v);
  if (w === OP_NO_VALUE && v !== OP_NO_VALUE) lossy = true;
  return w;
}

/** One op of a submitted batch: its index, its first word, its words (data records included) and its head's fields. */
/** What {@link OpRecorder.save} wrote. */
export interface OpSaveResult {
  /** The file written (binary `.pkops`, or the text form for a name ending in `.txt`). */
  path: string;
  /** Ops in it. */
  ops: number;
  /** Records in it (ops and their data records). */
  records: number;
  /** Its size in bytes. */
  bytes: number;
}

const CHUNK_WORDS = OP_RECORD_WORDS * 65536;

/** The recorded output PFNs of a gup's returned array, for output references. */
interface GupOutputs {
  /** The output number of its first element. */
  base: number;
  /** The PFNs as recorded (a copy: the caller may change its array). */
  values: Uint32Array;
}

type Method = (...args: never[]) => unknown;

/**
 * A recording of a page array's engine-level calls (see {@link PageArray.record}): every call the
 * JS API makes into the engine, in order, with its arguments after defaults and its result,
 * refusals included. Save it as a `.pkops` op stream (`pinlab replay` replays it under every
 * scheme) or take it as a batch for {@link PageArray.submit}.
 *
 * @example
 * ```ts
 * const mem = new PageArray({ pages: 1 << 16, populated: false, debug: true });
 * const rec = mem.record();                    // before the first call
 * const mm = new AddressSpace(mem, { pages: 4096 });
 * mm.mmap({ start: 0, count: 512, populate: true });
 * const { pfns } = mm.pinUserPagesFast(0, 64, { write: true });
 * mm.unpinUserPages(pfns, { write: true });
 * rec.stop();
 * rec.save('sim.pkops');                       // then: npx pinlab replay sim.pkops
 * ```
 */
export class OpRecorder {
  readonly #mem: NativePageArray;
  readonly #header: NativeOpHeader;
  #chunks: Uint32Array[] = [];
  #cur = new Uint32Array(CHUNK_WORDS);
  #pos = 0;
  #ops = 0;
  #records = 0;
  #active = true;
  /** While #result evaluates a refused call's record without writing it. */
  #dry = false;
  /** Set when an op that ran could not be recorded (no memory): the recording stopped there. */
  #lost: string | null = null;
  /** Outputs numbered so far, tag 0 (the JS API's calls are all tag 0). */
  #outputs = 0;
  /** Outputs numbered so far by the other tags, which only submitted batches use. */
  #tagOutputs = new Map<number, number>();
  /** The tag of the batch op that created each address space a batch made under a tag other than 0. */
  #creatorTag = new Map<number, number>();
  #gupOutputs = new WeakMap<ArrayBufferLike, GupOutputs>();
  readonly #tapped: { handle: object; names: string[] }[] = [];
  /** Where the last op record was written (its result word is at + 5). */
  #last: { words: Uint32Array; at: number } = { words: this.#cur, at: 0 };

  readonly #onStop: () => void;

  /** @internal Use {@link PageArray.record}. */
  constructor(mem: NativePageArray, header: NativeOpHeader, onStop: () => void = () => undefined) {
    this.#mem = mem;
    this.#onStop = onStop;
    this.#header = { ...header };
    this.#tapPageArray(mem);
    const listener: SpaceListener = {
      created: (id, pages, handle, error, swapPages) => {
        // The rules and THP orders it was created with (format version 2); a creation the core
        // refused records the defaults: its replay is refused for its pages or settings alike.
        // Its swap device's slots where they are not the default (format version 3).
        const settings = handle === null ? 0 : native.opSpaceSettings(handle);
        const swap = swapPages === undefined || swapPages === pages ? null : [u32(swapPages)];
        this.#keep(() => this.#result(error, () => this.#op(OP_CODES['mm-new'], 0, id, u32(pages), settings, 0, swap)));
        if (handle !== null) this.#tapSpace(handle, id);
      },
      forked: (parent, id, handle, error) => {
        this.#keep(() => this.#result(error, () => this.#op(OP_CODES.fork, 0, parent, id, 0, 0)));
        if (handle !== null) this.#tapSpace(handle, id);
      },
      adopted: (id, handle) => this.#tapSpace(handle, id),
      beforeFork: (parent) => {
        const tag = this.#creatorTag.get(parent);
        if (tag !== undefined) this.#refuseForeign(parent, tag, 'fork')();
      },
    };
    setSpaceListener(mem, listener);
  }

  /** Ops recorded so far. */
  get count(): number {
    return this.#ops;
  }

  /**
   * Whether the recorder still records: until {@link OpRecorder.stop}, or until an op that ran
   * could not be recorded for want of memory (then {@link OpRecorder.save} and
   * {@link OpRecorder.buffer} refuse with `ENOMEM`).
   */
  get active(): boolean {
    return this.#active;
  }

  /** Stops recording: later calls are not recorded (what was recorded stays, to save or take). */
  stop(): void {
    if (!this.#active) return;
    this.#active = false;
    for (const { handle, names } of this.#tapped) for (const n of names) delete (handle as Record<string, unknown>)[n];
    this.#tapped.length = 0;
    setSpaceListener(this.#mem, null);
    this.#onStop();
  }

  /**
   * Writes the recording to `path`: the binary `.pkops` format, or the text form when the name
   * ends in `.txt` (`trace.pkops.txt`). The file appears whole or not at all (a temporary beside
   * it, renamed into place); a symbolic link, FIFO or folder at `path` is refused. Synchronous.
   * `path` is a string or a `file:` URL.
   * @throws PinlabError `EINVAL` for a bad path (or one that is neither a string nor a file: URL), `ENOENT`/`EACCES` when the folder cannot be written,
   *   `ENOMEM` when an op that ran could not be recorded (the recording is not what ran)
   */
  save(path: string | URL): OpSaveResult {
    this.#checkWhole();
    // A string, a file: URL, or an object read once by its toString (one that answers
    // differently each time cannot make the file written, the one reported and the one measured
    // differ). Anything else (undefined, a number, a symbol) would name a file 'undefined' or
    // '5': refused. A NUL in it is refused natively.
    let file: string;
    if (typeof path === 'string') file = path;
    else if (path instanceof URL) file = filePathOf(path);
    else if (path !== null && typeof path === 'object') file = String(path);
    else throw new PinlabError('EINVAL', `the path to save to must be a string or a file: URL (got ${show(path)})`);
    const chunks = [...this.#chunks, this.#cur.subarray(0, this.#pos)];
    const { records, ops, bytes } = native.writeOps(file, this.#header, chunks);
    return { path: file, ops, records, bytes }; // the bytes written, not a later stat of the path
  }

  /**
   * The recorded ops as one `Uint32Array` of records: the layout {@link PageArray.submit} takes,
   * so `fresh.submit(rec.buffer())` replays the recording on another page array in one call.
   * @throws PinlabError `ENOMEM` when it does not fit in memory, or when an op that ran could not
   *   be recorded
   */
  buffer(): Uint32Array {
    this.#checkWhole();
    let out: Uint32Array;
    try {
      out = new Uint32Array(this.#records * OP_RECORD_WORDS);
    } catch (e) {
      // RangeError (past the largest typed array, or no memory for it): the house error.
      throw new PinlabError('ENOMEM', `the recording's ${this.#records} records do not fit in one Uint32Array: ${(e as Error).message}`);
    }
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    out.set(this.#cur.subarray(0, this.#pos), at);
    return out;
  }

  /**
   * @internal A submitted batch: its records that ran (`results[k]` is not `notRun`), with their
   * results. A batch numbers its gups' outputs from 0 per tag; in the recording they follow the
   * tag's earlier outputs, so its output references are moved up by as many.
   */
  appendBatch(ops: Uint32Array, results: Int32Array, notRun: number): void {
    if (!this.#active) return;
    this.#keep(() => this.#appendBatch(ops, results, notRun));
  }

  /**
   * @internal Before a batch runs: room for all its records in the current chunk, so that
   * appending what ran allocates nothing. A batch the recording cannot grow for is refused
   * before it runs (`ENOMEM`, nothing changed).
   */
  reserveBatch(words: number): void {
    if (this.#active) this.#reserve(words);
  }

  /**
   * @internal Before a batch runs: a stream's address space is used only by the tag that
   * created it (tag 0 for the JS API's), which a replay's threads rely on. A batch op on a live
   * address space under another tag would make the recording unreplayable: the batch is refused
   * (`EINVAL`, nothing ran). Ids the batch creates itself are the native framing's to check.
   */
  checkBatchTags(ops: Uint32Array, live: ReadonlySet<number>): void {
    if (!this.#active) return;
    for (const { k, i, tag } of batchRecords(ops)) {
      const id = ops[i + 1]!;
      if (id !== 0 && live.has(id)) {
        const creator = this.#creatorTag.get(id) ?? 0;
        if (tag !== creator) {
          throw new PinlabError(
            'EINVAL',
            `op ${k} of the batch uses mm#${id} under tag ${tag}, but mm#${id} was created under tag ${creator}: while recording, an address space is used only by the tag that created it (a replay runs each tag on a thread of its own)`,
          );
        }
      }
    }
  }

  #appendBatch(ops: Uint32Array, results: Int32Array, notRun: number): void {
    const base = new Map<number, number>();
    const baseOf = (tag: number): number => {
      let b = base.get(tag);
      if (b === undefined) base.set(tag, (b = this.#producedBy(tag)));
      return b;
    };
    for (const { k, i, span, tag, flags, code, n } of batchRecords(ops)) {
      const b = baseOf(tag); // the tag's outputs before the batch, taken at its first record
      if (results[k] !== notRun && tag !== 0 && (code === OP_CODES['mm-new'] || code === OP_CODES.fork)) {
        this.#creatorTag.set(code === OP_CODES.fork ? ops[i + 2]! : ops[i + 1]!, tag);
      }
      if (results[k] !== notRun) {
        this.#reserve(span);
        const at = this.#pos;
        this.#cur.set(ops.subarray(i, i + span), at);
        this.#cur[at + 5] = results[k]!;
        if ((flags & OP_FLAGS.refs) !== 0) {
          for (let e = 0; e < n; e++) {
            const w = at + entryWord(e);
            this.#cur[w] = (this.#cur[w]! + b) >>> 0;
          }
        }
        this.#pos += span;
        this.#records += span / OP_RECORD_WORDS;
        this.#ops++;
      }
      // A gup that ran numbers the outputs it carries, whatever its result (as the executor does).
      if ((code === OP_CODES['pin-user-fast'] || code === OP_CODES['pin-user'] || code === OP_CODES['get-user-fast']) && results[k] !== notRun) {
        this.#addProduced(tag, n);
      }
    }
  }

  #producedBy(tag: number): number {
    return tag === 0 ? this.#outputs : (this.#tagOutputs.get(tag) ?? 0);
  }

  #addProduced(tag: number, n: number): void {
    if (tag === 0) this.#outputs += n;
    else this.#tagOutputs.set(tag, (this.#tagOutputs.get(tag) ?? 0) + n);
  }

  // ---- encoding -------------------------------------------------------------------------------

  #reserve(words: number): void {
    if (this.#pos + words <= this.#cur.length) return;
    // The new chunk first: if it cannot be allocated, nothing of the recorder changed (the
    // chunk being filled stays current, its records counted once).
    let next: Uint32Array<ArrayBuffer>;
    try {
      next = new Uint32Array(Math.max(CHUNK_WORDS, words));
    } catch (e) {
      throw new PinlabError('ENOMEM', `the recording cannot grow by ${words} words: ${(e as Error).message}`);
    }
    this.#chunks.push(this.#cur.subarray(0, this.#pos));
    this.#cur = next;
    this.#pos = 0;
  }

  /** The words of an op with `entries` entries (its op and data records). */
  #opWords(entries: number): number {
    return OP_RECORD_WORDS * (1 + Math.ceil(entries / OP_ENTRIES_PER_DATA));
  }

  /** A copy of `list`, or PinlabError `ENOMEM` (which #keep turns into a lost record). */
  #copyOrLose(list: Uint32Array): Uint32Array {
    try {
      return list.slice();
    } catch (e) {
      throw new PinlabError('ENOMEM', `no memory for a copy of ${list.length} PFNs: ${(e as Error).message}`);
    }
  }

  /** `a` then `b` in one new array, or PinlabError `ENOMEM` (the call is then refused before it runs). */
  #joinOrLose(a: Uint32Array, b: Uint32Array): Uint32Array {
    let out: Uint32Array;
    try {
      out = new Uint32Array(a.length + b.length);
    } catch (e) {
      throw new PinlabError('ENOMEM', `no memory for a list of ${a.length + b.length} PFNs: ${(e as Error).message}`);
    }
    out.set(a);
    out.set(b, a.length);
    return out;
  }

  /** One op record and the data records of `entries`. */
  #op(code: number, flags: number, mm: number, a: number, b: number, result: number, entries: ArrayLike<number> | null = null, tag = 0): void {
    if (this.#dry) return; // #result's dry run: the arguments are evaluated, nothing is written
    const n = entries === null ? 0 : entries.length;
    this.#reserve(this.#opWords(n));
    const w = this.#cur;
    let at = this.#pos;
    this.#last = { words: w, at };
    w[at] = (code | (flags << 8) | (tag << 16)) >>> 0;
    w[at + 1] = mm;
    w[at + 2] = a;
    w[at + 3] = b;
    w[at + 4] = n;
    w[at + 5] = result;
    at += OP_RECORD_WORDS;
    for (let i = 0; i < n; i += OP_ENTRIES_PER_DATA) {
      const k = Math.min(OP_ENTRIES_PER_DATA, n - i);
      w[at] = OP_DATA | (k << 8);
      for (let j = 0; j < OP_ENTRIES_PER_DATA; j++) w[at + 1 + j] = j < k ? entries![i + j]! : 0;
      at += OP_RECORD_WORDS;
    }
    this.#records += (at - this.#pos) / OP_RECORD_WORDS;
    this.#pos = at;
    this.#ops++;
  }

  /**
   * Runs `record`, which records an op that has already run. If the recording cannot grow for
   * it (`ENOMEM`), the op's effect still stands, and so does the call's result: the recorder
   * stops there (a recording without that op would replay into another state), and save() and
   * buffer() refuse, naming the op. Never throws that error to the call's caller.
   */
  #keep(record: () => void): void {
    try {
      record();
    } catch (e) {
      if (!(e instanceof PinlabError) || e.code !== 'ENOMEM') throw e;
      this.#lost = `op ${this.#ops + 1} ran but could not be recorded (${e.message}): the recording stopped before it`;
      this.stop();
    }
  }

  #checkWhole(): void {
    if (this.#lost !== null) throw new PinlabError('ENOMEM', `the recording is incomplete: ${this.#lost}`);
  }

  /**
   * Records the op `emit(result)` describes: with `error` null the result `emit` was given, a
   * PinlabError as -code; any other exception is not the engine's refusal and is not recorded.
   */
  #result(error: unknown, emit: () => void): void {
    if (error === null) {
      emit();
      return;
    }
    const n = error instanceof PinlabError ? codeNumber(error.code) : undefined;
    if (n === undefined) return;
    // A call refused for an argument no record field can hold (a count of -1 or 1.5) changed
    // nothing, and its record could not say what it was given (its field would read 2^32 - 1,
    // which a replay refuses otherwise): it is not recorded. A dry run of `emit` tells.
    lossy = false;
    this.#dry = true;
    try {
      emit();
    } finally {
      this.#dry = false;
    }
    if (lossy) return;
    emit();
    this.#last.words[this.#last.at + 5] = -n;
  }

  /** A list the engine takes: output references where it is (part of) a gup's own array, unchanged. */
  #list(list: Uint32Array): { entries: Uint32Array; refs: boolean } {
    const g = this.#gupOutputs.get(list.buffer);
    if (g !== undefined && list.length > 0) {
      const off = list.byteOffset / 4;
      const first = g.base + off;
      if (off + list.length <= g.values.length && this.#outputs - first <= OP_OUTPUT_WINDOW) {
        let same = true;
        for (let i = 0; i < list.length && same; i++) same = list[i] === g.values[off + i];
        if (same) {
          const refs = new Uint32Array(list.length);
          for (let i = 0; i < list.length; i++) refs[i] = (first + i) >>> 0;
          return { entries: refs, refs: true };
        }
      }
    }
    return { entries: list, refs: false };
  }

  // ---- the taps -------------------------------------------------------------------------------

  #shadow(handle: object, methods: Record<string, (orig: Method) => Method>): void {
    const proto = Object.getPrototypeOf(handle) as Record<string, Method>;
    const names = Object.keys(methods);
    for (const name of names) {
      const orig = proto[name]!;
      Object.defineProperty(handle, name, { value: methods[name]!(orig), configurable: true, writable: true, enumerable: false });
    }
    this.#tapped.push({ handle, names });
  }

  /** Runs `call`; records `emit(result)` on success or the refusal, and returns or rethrows. */
  #call<T>(call: () => T, emit: (value: T | null) => void): T {
    let value: T;
    try {
      value = call();
    } catch (e) {
      this.#keep(() => this.#result(e, () => emit(null)));
      throw e;
    }
    this.#keep(() => emit(value));
    return value;
  }

  #tapPageArray(h: NativePageArray): void {
    const F = OP_FLAGS;
    const C = OP_CODES;
    const pinBits = F.write | F.perPage;
    const unpinBits = F.write | F.perPage | F.dirty;
    type PA = NativePageArray;
    this.#shadow(h, {
      pinRange: (orig) => (start: number, count: number, flags: number) =>
        this.#call(() => (orig as unknown as PA['pinRange']).call(h, start, count, flags), (n) => this.#op(C.pin, flags & pinBits, 0, u32(start), u32(count), n ?? 0)),
      pinList: (orig) => (pfns: Uint32Array, flags: number) => {
        pfns = stableList(pfns); // read once: what the engine runs is what is recorded
        const { entries, refs } = this.#list(pfns);
        return this.#call(() => (orig as unknown as PA['pinList']).call(h, pfns, flags), (n) =>
          this.#op(C.pin, (flags & pinBits) | F.list | (refs ? F.refs : 0), 0, 0, 0, n ?? 0, entries),
        );
      },
      unpinRange: (orig) => (start: number, count: number, flags: number) =>
        this.#call(() => (orig as unknown as PA['unpinRange']).call(h, start, count, flags), (ok) =>
          this.#op(C.unpin, flags & unpinBits, 0, u32(start), u32(count), ok === null ? 0 : Math.min(count, 0x7fffffff)),
        ),
      unpinList: (orig) => (pfns: Uint32Array, flags: number) => {
        pfns = stableList(pfns); // read once: what the engine runs is what is recorded
        const { entries, refs } = this.#list(pfns);
        return this.#call(() => (orig as unknown as PA['unpinList']).call(h, pfns, flags), (ok) =>
          this.#op(C.unpin, (flags & unpinBits) | F.list | (refs ? F.refs : 0), 0, 0, 0, ok === null ? 0 : pfns.length, entries),
        );
      },
      // An owner's drop under write-bias: the read and write unpins as one all-or-nothing
      // call, recorded as one unpin-lists op (format version 4): its a read PFNs, then its b
      // write PFNs. A refused drop is recorded too, so its replay refuses the same way and
      // counts the same rollback. Output references only where both lists are a gup's own
      // (the op's R flag covers both), else both as PFNs.
      unpinLists: (orig) => (reads: Uint32Array, writes: Uint32Array) => {
        reads = stableList(reads);
        writes = stableList(writes);
        const r = this.#list(reads);
        const w = this.#list(writes);
        const refs = (r.refs || reads.length === 0) && (w.refs || writes.length === 0) && reads.length + writes.length > 0;
        // Room for the record first: a recording that cannot grow refuses the drop before it
        // runs (ENOMEM, nothing released), which the owner reports as refused, unchanged.
        const entries = this.#joinOrLose(refs ? r.entries : reads, refs ? w.entries : writes);
        this.#reserve(this.#opWords(entries.length));
        return this.#call(() => (orig as unknown as PA['unpinLists']).call(h, reads, writes), (ok) =>
          this.#op(C['unpin-lists'], refs ? F.refs : 0, 0, u32(reads.length), u32(writes.length), ok === null ? 0 : Math.min(entries.length, 0x7fffffff), entries),
        );
      },
      getPage: (orig) => (pfn: number, refs: number) =>
        this.#call(() => (orig as unknown as PA['getPage']).call(h, pfn, refs), () => this.#op(C.get, 0, 0, u32(pfn), u32(refs), 0)),
      tryGetPage: (orig) => (pfn: number, refs: number) =>
        this.#call(() => (orig as unknown as PA['tryGetPage']).call(h, pfn, refs), (got) => this.#op(C['try-get'], 0, 0, u32(pfn), u32(refs), got === true ? 1 : 0)),
      putPage: (orig) => (pfn: number, refs: number) =>
        this.#call(() => (orig as unknown as PA['putPage']).call(h, pfn, refs), (freed) => this.#op(C.put, 0, 0, u32(pfn), u32(refs), freed === true ? 1 : 0)),
      makeFolio: (orig) => (head: number, order: number) =>
        this.#call(() => (orig as unknown as PA['makeFolio']).call(h, head, order), () => this.#op(C['make-folio'], 0, 0, u32(head), u32(order), 0)),
      splitFolio: (orig) => (head: number) =>
        this.#call(() => (orig as unknown as PA['splitFolio']).call(h, head), () => this.#op(C['split-folio'], 0, 0, u32(head), 0, 0)),
      allocFolio: (orig) => (order: number, movable: boolean) =>
        this.#call(() => (orig as unknown as PA['allocFolio']).call(h, order, movable), (head) =>
          this.#op(C['alloc-folio'], movable ? F.movable : 0, 0, 0, u32(order), head ?? 0, head === null ? null : [head]),
        ),
      setDirty: (orig) => (pfn: number) =>
        this.#call(() => (orig as unknown as PA['setDirty']).call(h, pfn), () => this.#op(C['set-dirty'], 0, 0, u32(pfn), 0, 0)),
      hugetlbSetPages: (orig) => (order: number, count: number) =>
        this.#call(() => (orig as unknown as PA['hugetlbSetPages']).call(h, order, count), () => this.#op(C['hugetlb-pool'], 0, 0, u32(order), u32(count), 0)),
      // A hugetlb file's pages: the heads it returned name those pages in a replay (as allocFolio's).
      hugetlbAllocPages: (orig) => (order: number, count: number) =>
        this.#call(() => (orig as unknown as PA['hugetlbAllocPages']).call(h, order, count), (heads) =>
          this.#op(C['hugetlb-alloc'], 0, 0, u32(order), u32(count), heads === null ? 0 : heads.length, heads),
        ),
    });
  }

  /** A JS API call that would change address space `id`, which a batch made under `tag`. */
  #refuseForeign(id: number, tag: number, name: string): () => never {
    return () => {
      throw new PinlabError(
        'EINVAL',
        `mm#${id} was created by a batch under tag ${tag}: while recording, its ${name} goes through mem.submit() under tag ${tag} (the JS API's calls are tag 0's)`,
      );
    };
  }

  /**
   * The taps of an address space a batch created under tag `tag` (not 0), met through the JS API while
   * recording: a stream uses it only under that tag. Its dispose is recorded as that tag's
   * munmap; any other change through the JS API is refused (`EINVAL`, nothing changed), since
   * the JS API's calls are tag 0's: submit a batch with that tag instead.
   */
  #foreignMethods(h: NativeAddressSpace, id: number, tag: number, names: readonly string[]): Record<string, (orig: Method) => Method> {
    type AS = NativeAddressSpace;
    const refuse = (name: string) => () => this.#refuseForeign(id, tag, name);
    const methods: Record<string, (orig: Method) => Method> = {};
    // checkCanMap too: a file mapping asks it before the file allocates its pages, so the
    // refusal comes before anything changed.
    for (const name of [...names, 'checkCanMap']) methods[name] = refuse(name === 'checkCanMap' ? 'file mapping' : name) as unknown as (orig: Method) => Method;
    methods['dispose'] = (orig) => (() => {
      const pages = h.isDisposed() ? 0 : h.info().pages;
      (orig as unknown as AS['dispose']).call(h);
      if (pages > 0) this.#keep(() => this.#op(OP_CODES.munmap, 0, id, 0, u32(pages), 0, null, tag));
    }) as unknown as Method;
    return methods;
  }

  #tapSpace(h: NativeAddressSpace, id: number): void {
    if (!this.#active) return;
    const creator = this.#creatorTag.get(id);
    const F = OP_FLAGS;
    const C = OP_CODES;
    type AS = NativeAddressSpace;
    const methods: Record<string, (orig: Method) => Method> = {
      mmap: (orig) => (start: number, count: number, write: boolean, populate: boolean, huge: boolean) =>
        this.#call(() => (orig as unknown as AS['mmap']).call(h, start, count, write, populate, huge), () =>
          this.#op(C.mmap, (write ? F.write : 0) | (populate ? F.populate : 0) | (huge ? F.huge : 0), id, u32(start), u32(count), 0),
        ),
      // A file's pages, shared or private; shmem (dirtyTracked false) as a flag (format version 3).
      mapShared: (orig) => (start: number, pfns: Uint32Array, write: boolean, dirtyTracked?: boolean) => {
        pfns = stableList(pfns); // read once: what the engine runs is what is recorded
        const { entries, refs } = this.#list(pfns);
        return this.#call(() => (orig as unknown as AS['mapShared']).call(h, start, pfns, write, dirtyTracked), () =>
          this.#op(C['mmap-file'], (write ? F.write : 0) | (dirtyTracked === false ? F.shmem : 0) | (refs ? F.refs : 0), id, u32(start), 0, 0, entries),
        );
      },
      mapPrivate: (orig) => (start: number, pfns: Uint32Array, write: boolean, dirtyTracked?: boolean) => {
        pfns = stableList(pfns);
        const { entries, refs } = this.#list(pfns);
        return this.#call(() => (orig as unknown as AS['mapPrivate']).call(h, start, pfns, write, dirtyTracked), () =>
          this.#op(C['mmap-file-private'], (write ? F.write : 0) | (dirtyTracked === false ? F.shmem : 0) | (refs ? F.refs : 0), id, u32(start), 0, 0, entries),
        );
      },
      zapFile: (orig) => (start: number, count: number, evenCows: boolean) =>
        this.#call(() => (orig as unknown as AS['zapFile']).call(h, start, count, evenCows), () =>
          this.#op(C['zap-file'], evenCows ? F.evenCows : 0, id, u32(start), u32(count), 0),
        ),
      mmapHugetlb: (orig) => (start: number, count: number, order: number, write: boolean, populate: boolean, shared: boolean) =>
        this.#call(() => (orig as unknown as AS['mmapHugetlb']).call(h, start, count, order, write, populate, shared), () =>
          this.#op(C['mmap-hugetlb'], (write ? F.write : 0) | (populate ? F.populate : 0) | (shared ? F.shared : 0), id, u32(start), u32(count), 0, [u32(order)]),
        ),
      mapHugetlbFile: (orig) => (start: number, heads: Uint32Array, order: number, write: boolean, shared: boolean) => {
        heads = stableList(heads);
        return this.#call(() => (orig as unknown as AS['mapHugetlbFile']).call(h, start, heads, order, write, shared), () =>
          this.#op(C['mmap-hugetlb-file'], (write ? F.write : 0) | (shared ? F.shared : 0), id, u32(start), u32(order), 0, heads),
        );
      },
      munmap: (orig) => (start: number, count: number) =>
        this.#call(() => (orig as unknown as AS['munmap']).call(h, start, count), () => this.#op(C.munmap, 0, id, u32(start), u32(count), 0)),
      // dispose() unmaps everything, as at process exit: recorded as the munmap of the whole
      // space, so a replay frees what the recording freed (the replay's space stays, empty).
      dispose: (orig) => () => {
        const pages = h.isDisposed() ? 0 : h.info().pages;
        (orig as unknown as AS['dispose']).call(h);
        if (pages > 0) this.#keep(() => this.#op(C.munmap, 0, id, 0, u32(pages), 0));
      },
      mprotect: (orig) => (start: number, count: number, write: boolean) =>
        this.#call(() => (orig as unknown as AS['mprotect']).call(h, start, count, write), () =>
          this.#op(C.mprotect, write ? F.write : 0, id, u32(start), u32(count), 0),
        ),
      zap: (orig) => (start: number, count: number) =>
        this.#call(() => (orig as unknown as AS['zap']).call(h, start, count), () => this.#op(C.zap, 0, id, u32(start), u32(count), 0)),
      touch: (orig) => (start: number, count: number, write: boolean) =>
        this.#call(() => (orig as unknown as AS['touch']).call(h, start, count, write), () => this.#op(C.touch, write ? F.write : 0, id, u32(start), u32(count), 0)),
      gup: (orig) => (start: number, count: number, flags: number) => {
        const pin = (flags & GupFlag.Pin) !== 0;
        const code = !pin ? C['get-user-fast'] : (flags & GupFlag.SlowOnly) !== 0 ? C['pin-user'] : C['pin-user-fast'];
        const bits = ((flags & GupFlag.Write) !== 0 ? F.write : 0) | ((flags & GupFlag.FastOnly) !== 0 ? F.fastOnly : 0) | ((flags & GupFlag.Longterm) !== 0 ? F.longterm : 0);
        return this.#call(() => (orig as unknown as AS['gup']).call(h, start, count, flags), (pfns) => {
          if (pfns === null) {
            this.#op(code, bits, id, u32(start), u32(count), 0);
            return;
          }
          // The PFNs it returned: recorded (they name its pages in a replay) and numbered. The
          // copy first: its allocation failing is a record lost, as the chunk's (#keep).
          const values = this.#copyOrLose(pfns);
          this.#op(code, bits, id, u32(start), u32(count), pfns.length, pfns);
          this.#gupOutputs.set(pfns.buffer, { base: this.#outputs, values });
          this.#outputs += pfns.length;
        });
      },
      unpinUserPages: (orig) => (pfns: Uint32Array, write: boolean, dirty: boolean) => {
        pfns = stableList(pfns); // read once: what the engine runs is what is recorded
        const { entries, refs } = this.#list(pfns);
        return this.#call(() => (orig as unknown as AS['unpinUserPages']).call(h, pfns, write, dirty), (ok) =>
          this.#op(C['unpin-user'], (write ? F.write : 0) | (dirty ? F.dirty : 0) | (refs ? F.refs : 0), id, 0, 0, ok === null ? 0 : pfns.length, entries),
        );
      },
      putUserPages: (orig) => (pfns: Uint32Array) => {
        pfns = stableList(pfns); // read once: what the engine runs is what is recorded
        const { entries, refs } = this.#list(pfns);
        return this.#call(() => (orig as unknown as AS['putUserPages']).call(h, pfns), (ok) =>
          this.#op(C['put-user'], refs ? F.refs : 0, id, 0, 0, ok === null ? 0 : pfns.length, entries),
        );
      },
      migrate: (orig) => (start: number, count: number) =>
        this.#call(() => (orig as unknown as AS['migrate']).call(h, start, count), (moved) => this.#op(C.migrate, 0, id, u32(start), u32(count), moved ?? 0)),
      compact: (orig) => () => this.#call(() => (orig as unknown as AS['compact']).call(h), (moved) => this.#op(C.compact, 0, id, 0, 0, moved ?? 0)),
      // Format version 3: madvise (MADV_COLLAPSE too), mremap and khugepaged.
      madvise: (orig) => (start: number, count: number, advice: number) =>
        this.#call(() => (orig as unknown as AS['madvise']).call(h, start, count, advice), () =>
          this.#op(C.madvise, 0, id, u32(start), u32(count), 0, [advice]),
        ),
      collapse: (orig) => (start: number, count: number) =>
        this.#call(() => (orig as unknown as AS['collapse']).call(h, start, count), (made) =>
          this.#op(C.madvise, 0, id, u32(start), u32(count), made ?? 0, [OP_ADVICE.collapse]),
        ),
      mremap: (orig) => (start: number, count: number, newCount: number, newStart: number, flags: number) =>
        this.#call(() => (orig as unknown as AS['mremap']).call(h, start, count, newCount, newStart, flags), (at) =>
          this.#op(
            C.mremap,
            ((flags & 1) !== 0 ? F.mayMove : 0) | ((flags & 2) !== 0 ? F.fixed : 0) | ((flags & 4) !== 0 ? F.dontUnmap : 0),
            id,
            u32(start),
            u32(count),
            at === null ? 0 : Math.min(at, 0x7fffffff),
            [u32(newCount), u32(newStart)],
          ),
        ),
      khugepaged: (orig) => (maxPtesNone: number, maxPtesShared: number) =>
        this.#call(() => (orig as unknown as AS['khugepaged']).call(h, maxPtesNone, maxPtesShared), (r) =>
          this.#op(C.khugepaged, 0, id, u32(maxPtesNone), u32(maxPtesShared), r === null ? 0 : Math.min(r.collapsed, 0x7fffffff)),
        ),
    };
    this.#shadow(h, creator === undefined ? methods : this.#foreignMethods(h, id, creator, Object.keys(methods)));
  }
}
