// The op stream format as lib/ sees it: the constants come from the addon (the core's
// engines/op_format.h is the one definition), and OpBatch builds records for PageArray.submit.
import { PinlabError, invalid } from '../errors.js';
import { native } from '../native.js';
import { show } from '../validate.js';

const FORMAT = native.opFormat();

/** Words (u32) per record: a batch for {@link PageArray.submit} is a `Uint32Array` of records. */
export const OP_RECORD_WORDS: number = FORMAT.recordWords;

/** Data entries (PFNs or output references) per data record. @internal */
export const OP_ENTRIES_PER_DATA: number = FORMAT.entriesPerData;

/** The opcode of a data record. @internal */
export const OP_DATA: number = FORMAT.dataOpcode;

/** How many of its tag's latest gup outputs an output reference may name. @internal */
export const OP_OUTPUT_WINDOW: number = FORMAT.outputWindow;

/** An argument that does not fit a u32 is recorded as this value, which every op refuses. @internal */
export const OP_NO_VALUE: number = FORMAT.noValue;

/**
 * The result {@link PageArray.submit} reports for an op that did not run (after the first error
 * with `onError: 'stop'`): -2^31, below every error code.
 */
export const OP_NOT_RUN: number = FORMAT.notRun;

/** The ops of a stream, by name: `pin`, `unpin`, `get`, ..., `mm-new`, `mmap`, ... (README: Op streams). */
export type OpName =
  | 'pin'
  | 'unpin'
  | 'get'
  | 'put'
  | 'try-get'
  | 'make-folio'
  | 'split-folio'
  | 'alloc-folio'
  | 'set-dirty'
  | 'unpin-lists'
  | 'mm-new'
  | 'mmap'
  | 'mmap-file'
  | 'munmap'
  | 'mprotect'
  | 'zap'
  | 'touch'
  | 'pin-user-fast'
  | 'pin-user'
  | 'get-user-fast'
  | 'unpin-user'
  | 'put-user'
  | 'fork'
  | 'migrate'
  | 'compact'
  | 'madvise'
  | 'mremap'
  | 'khugepaged'
  | 'mmap-hugetlb'
  | 'mmap-hugetlb-file'
  | 'mmap-file-private'
  | 'zap-file'
  | 'hugetlb-pool'
  | 'hugetlb-alloc';

/** An op's flags by name (which ones an op takes: README, Op streams). */
export type OpFlagName =
  | 'write'
  | 'perPage'
  | 'dirty'
  | 'list'
  | 'movable'
  | 'populate'
  | 'huge'
  | 'fastOnly'
  | 'longterm'
  | 'refs'
  | 'shmem'
  | 'shared'
  | 'mayMove'
  | 'fixed'
  | 'dontUnmap'
  | 'evenCows';

/** madvise's advice as an op stream records it (the `madvise` op's one entry), by name. */
export const OP_ADVICE: Readonly<Record<'dontneed' | 'dontfork' | 'dofork' | 'pageout' | 'collapse', number>> = Object.freeze({
  dontneed: 0,
  dontfork: 1,
  dofork: 2,
  pageout: 3,
  collapse: 4,
});

/** Opcodes by op name, as the addon reports them. */
export const OP_CODES: Readonly<Record<OpName, number>> = Object.freeze(FORMAT.ops as Record<OpName, number>);

/** Flag bits by name. */
export const OP_FLAGS: Readonly<Record<OpFlagName, number>> = Object.freeze({ ...FORMAT.flags });

/** The error code names a negative result stands for, by number (index 0: `'OK'`). @internal */
export const OP_CODE_NAMES: readonly string[] = Object.freeze([...FORMAT.codes]);

const CODE_NUMBERS = new Map(OP_CODE_NAMES.map((name, i) => [name, i]));

/** The number a {@link PinlabError} code is recorded as (negated in a result), or undefined. @internal */
export function codeNumber(code: string): number | undefined {
  const n = CODE_NUMBERS.get(code);
  return n === undefined || n === 0 ? undefined : n;
}

/**
 * The name of an op result: `'EINVAL'` for `-1`, ..., `'NOT_RUN'` for {@link OP_NOT_RUN}, or null
 * for a result that is not an error (a count).
 */
export function opResultName(result: number): string | null {
  if (result === OP_NOT_RUN) return 'NOT_RUN';
  if (result >= 0) return null;
  return OP_CODE_NAMES[-result] ?? null;
}

/** A u32 argument as the format records it: values outside 0..2^32-1 become {@link OP_NO_VALUE}. @internal */
/** The most entries one op may carry in a batch (2^26: 256 MiB of records). */
const OP_MAX_ENTRIES = 2 ** 26;

export function u32(v: number): number {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff ? v : OP_NO_VALUE;
}

/** Where entry `e` of a record lies, in words from the record's first: in its data records, after their opcode word. @internal */
export function entryWord(e: number): number {
  return OP_RECORD_WORDS * (1 + Math.floor(e / OP_ENTRIES_PER_DATA)) + 1 + (e % OP_ENTRIES_PER_DATA);
}

/** One op of a batch: its number k, its first word i, its words with its data records, and its fields. @internal */
export interface BatchRecord {
  k: number;
  i: number;
  span: number;
  tag: number;
  flags: number;
  code: number;
  n: number;
}

/**
 * The ops of a batch (submit's layout, already checked natively), one after the other; with
 * `only`, just the ops whose code it holds (the others are stepped over without an object each).
 * @internal
 */
export function* batchRecords(ops: Uint32Array, only?: ReadonlySet<number>): Generator<BatchRecord> {
  let k = 0;
  for (let i = 0; i + OP_RECORD_WORDS <= ops.length; k++) {
    const n = ops[i + 4]!;
    const span = OP_RECORD_WORDS * (1 + Math.ceil(n / OP_ENTRIES_PER_DATA));
    const code = ops[i]! & 0xff;
    if (only === undefined || only.has(code)) yield { k, i, span, tag: ops[i]! >>> 16, flags: (ops[i]! >>> 8) & 0xff, code, n };
    i += span;
  }
}

/** The fields of one op for {@link OpBatch.push}. */
export interface OpFields {
  /** First argument (a PFN, head, start, pages, or a fork's child id): see README, Op streams. Default 0. */
  a?: number;
  /**
   * Second argument (a count, refs, or order; for `mm-new`, the address space's rules and THP
   * orders that differ from the defaults, as the settings word of README's format section).
   * Default 0.
   */
  b?: number;
  /** The address space (its `id`) for mm ops; 0 (default) for page-array ops. */
  mm?: number;
  /** The thread that replays it (0..65535). Default 0. */
  tag?: number;
  /** The op's flags. `list` is set by itself when `entries` are given to `pin` or `unpin`. */
  flags?: readonly OpFlagName[];
  /**
   * A PFN list (pin/unpin lists, mmap-file, mmap-file-private, unpin-user, put-user;
   * unpin-lists: its `a` read pins, then its `b` write pins; the heads
   * for mmap-hugetlb-file), a gup's recorded output PFNs, or the arguments beyond `a` and `b` of
   * the ops that take more (madvise: `[advice]` as in {@link OP_ADVICE}; mremap: `[newCount,
   * newStart]`, newStart 2^32-1 without `fixed`; mmap-hugetlb: `[order]`; mm-new: `[swapPages]`,
   * optional).
   */
  entries?: ArrayLike<number>;
}

/**
 * Builds a batch of ops in the `.pkops` record layout for {@link PageArray.submit}.
 *
 * @example
 * ```ts
 * const batch = new OpBatch();
 * for (let pfn = 0; pfn < 1024; pfn++) batch.push('pin', { a: pfn, b: 1 }).push('unpin', { a: pfn, b: 1 });
 * const results = mem.submit(batch.toArray()); // one Int32Array entry per op: 1, 1, ...
 * ```
 */
export class OpBatch {
  #words = new Uint32Array(6 * 64);
  #length = 0;
  #ops = 0;

  /** Ops pushed so far. */
  get count(): number {
    return this.#ops;
  }

  /**
   * Appends one op (and the data records of its entries).
   * @throws PinlabError `EINVAL` for an unknown op or flag name, or a tag outside 0..65535
   */
  push(op: OpName, fields: OpFields = {}): this {
    // Every field is read once, and the entries copied, before the batch changes: a getter (or
    // a Proxy trap, or an entry's valueOf) that pushes onto this same batch, or throws, meets
    // a batch that has not started this op, and the op written is the one that was read.
    // Own names only: 'toString' or '__proto__' is no op, whatever Object.prototype holds.
    const code = typeof op === 'string' && Object.hasOwn(OP_CODES, op) ? (OP_CODES as Record<string, number>)[op] : undefined;
    if (code === undefined) invalid(`unknown op ${show(op)} (known: ${Object.keys(OP_CODES).join(', ')})`);
    if (fields === null || typeof fields !== 'object') invalid(`op fields must be an object (got ${show(fields)})`);
    const { a, b, mm, tag: tagField, flags: flagNames, entries: entriesField } = fields;
    if (flagNames !== undefined && !Array.isArray(flagNames)) invalid(`flags must be an array of flag names (got ${show(flagNames)})`);
    let flags = 0;
    for (const f of Array.from((flagNames ?? []) as unknown[])) {
      const bit = typeof f === 'string' && Object.hasOwn(OP_FLAGS, f) ? (OP_FLAGS as Record<string, number>)[f] : undefined;
      if (bit === undefined) invalid(`unknown op flag ${show(f)} (known: ${Object.keys(OP_FLAGS).join(', ')})`);
      flags |= bit;
    }
    const entries = entriesField ?? [];
    // The length read once, checked (a getter or Proxy cannot make the records disagree with
    // it, nor ask for an allocation past what a record can count: RangeError was not EINVAL).
    const n: unknown = entries.length;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > OP_MAX_ENTRIES) {
      invalid(`entries must be an array-like of at most ${OP_MAX_ENTRIES} PFNs (got length ${show(n)})`);
    }
    if ((op === 'pin' || op === 'unpin') && entriesField !== undefined) flags |= OP_FLAGS.list;
    const tag = tagField ?? 0;
    if (!Number.isInteger(tag) || tag < 0 || tag > 0xffff) invalid(`tag must be an integer in 0..65535 (got ${show(tag)})`);
    const head = [code | (flags << 8) | (tag << 16), u32(mm ?? 0), u32(a ?? 0), u32(b ?? 0), n, 0];
    let values: Uint32Array;
    try {
      values = new Uint32Array(n);
    } catch (e) {
      throw new PinlabError('ENOMEM', `the op's ${n} entries do not fit in memory: ${(e as Error).message}`);
    }
    for (let i = 0; i < n; i++) values[i] = u32(entries[i]!);
    // Nothing below runs JS of the caller's: the batch changes here, at once.
    this.#reserve(6 * (1 + Math.ceil(n / OP_ENTRIES_PER_DATA)));
    const w = this.#words;
    let at = this.#length;
    w.set(head, at);
    at += 6;
    for (let i = 0; i < n; i += OP_ENTRIES_PER_DATA) {
      const k = Math.min(OP_ENTRIES_PER_DATA, n - i);
      w[at] = OP_DATA | (k << 8) | (tag << 16);
      for (let j = 0; j < OP_ENTRIES_PER_DATA; j++) w[at + 1 + j] = j < k ? values[i + j]! : 0;
      at += 6;
    }
    this.#length = at;
    this.#ops++;
    return this;
  }

  /** The records so far, as a `Uint32Array` of their own. */
  toArray(): Uint32Array {
    return this.#words.slice(0, this.#length);
  }

  #reserve(words: number): void {
    if (this.#length + words <= this.#words.length) return;
    let next: Uint32Array<ArrayBuffer>;
    try {
      next = new Uint32Array(Math.max(this.#words.length * 2, this.#length + words));
    } catch (e) {
      throw new PinlabError('ENOMEM', `the batch cannot grow to ${this.#length + words} words: ${(e as Error).message}`);
    }
    next.set(this.#words.subarray(0, this.#length));
    this.#words = next;
  }
}
