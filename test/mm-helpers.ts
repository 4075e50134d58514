// Helpers shared by the mm-layer suites (allocator, address space, gup, fork/migrate, stress).
import { expect } from 'vitest';

import {
  AddressSpace,
  PageArray,
  PinlabError,
  type AddressSpaceOptions,
  type AddressSpaceStats,
  type PinlabErrorCode,
  type PageArrayStats,
  type RacePoint,
  type Scheme,
  type Translation,
} from '../lib/index.js';
import { expectPinlabError } from './helpers.js';
import { schemeTraits } from './scheme-traits.js';

export const BIAS = 1024;
export const PMD = 512;
/** The references a PMD leaf of an anonymous THP holds: one, as the kernel's (a split makes it one per PTE). */
export const LEAF = 1;

/** Runs `fn` and asserts it throws a PinlabError with `code` (the shared helper, by another name). */
export function expectCode(fn: () => unknown, code: PinlabErrorCode, msg?: RegExp): PinlabError {
  return expectPinlabError(fn, code, msg);
}

/** What `fn` threw (or a marker if it returned). */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return Symbol.for('returned normally');
}

export interface MmOptions {
  scheme?: Scheme;
  pages?: number;
  vpages?: number;
  movablePages?: number;
  debug?: boolean;
  rules?: AddressSpaceOptions['rules'];
}

/** A free, debug page array and an address space over it. */
export function makeMm(o: MmOptions = {}): { mem: PageArray; mm: AddressSpace } {
  const mem = new PageArray({
    pages: o.pages ?? 4096,
    populated: false,
    debug: o.debug ?? true,
    scheme: o.scheme ?? 'hybrid',
    movablePages: o.movablePages ?? 0,
    // The 2019 kernels had no exact pincount (rules.pincountMinOrder null: 31 in the array).
    pincountMinOrder: o.rules === '2019' ? 31 : 1,
  });
  const mm = new AddressSpace(mem, { pages: o.vpages ?? 4096, ...(o.rules === undefined ? {} : { rules: o.rules }) });
  return { mem, mm };
}

/**
 * Refcount a pin of `n` subpages adds to an unpinned folio of `order` under `scheme`
 * (pin-semantics.md §2); a folio whose pins share one reference (sharded, large) gains 1.
 */
export function pinRefs(scheme: Scheme, order: number, write: boolean, n = 1, pincountMinOrder = 1): number {
  switch (scheme) {
    case 'bias':
      return n * BIAS;
    case 'hybrid':
      return order >= pincountMinOrder ? n : n * BIAS;
    case 'separate':
      return n;
    case 'write-bias':
      return write ? n * BIAS : n;
  }
  // A scheme registered later: its policy's cost (test/scheme-traits.ts).
  const traits = schemeTraits(scheme, BIAS, pincountMinOrder);
  if (traits.sharesRef(order)) return n > 0 ? 1 : 0;
  return n * traits.cost(order, write);
}

/** Whether a pin is visible to maybeDmaPinned (write-bias read pins are not, by design). */
export function pinVisible(scheme: Scheme, write: boolean): boolean {
  return !(schemeTraits(scheme).readPinsHidden && !write);
}

/** Numeric difference of two stats objects, key by key. */
export function delta<T extends object>(after: T, before: T): Record<keyof T, number> {
  const out = {} as Record<keyof T, number>;
  for (const k of Object.keys(after) as (keyof T)[]) {
    if (typeof after[k] !== 'number') continue; // nested counts (imbalances) are checked apart
    out[k] = (after[k] as unknown as number) - (before[k] as unknown as number);
  }
  return out;
}

/** Every counter zero except the ones named. */
export function zeroDelta<T extends object>(stats: T, nonzero: Partial<Record<keyof T, number>>): Record<keyof T, number> {
  const out = {} as Record<keyof T, number>;
  for (const k of Object.keys(stats) as (keyof T)[]) if (typeof stats[k] === 'number') out[k] = nonzero[k] ?? 0;
  return out;
}

/** Observable state of an mm and its memory, for "nothing changed" checks. */
export interface MmState {
  translations: (Translation | null)[];
  pages: { refcount: number; pincount: number | null; maybe: boolean; order: number; head: number; dirty: boolean }[];
  freePages: number;
  /** The counters a failed call must not move (rollbacks and overflowRefusals count failures). */
  memStats: Pick<PageArrayStats, 'pinAcquired' | 'pinReleased' | 'grabs' | 'foliosFreed'>;
  regions: number;
  mappedPages: number;
}

export function mmState(mm: AddressSpace, vpages = mm.pages): MmState {
  const mem = mm.mem;
  const translations: (Translation | null)[] = [];
  for (let v = 0; v < vpages; v++) translations.push(mm.translate(v));
  const pages: MmState['pages'] = [];
  for (let p = 0; p < mem.pages; p++) {
    pages.push({
      refcount: mem.refcount(p),
      pincount: mem.pincount(p),
      maybe: mem.maybeDmaPinned(p),
      order: mem.folioOrder(p),
      head: mem.folioHead(p),
      dirty: mem.isDirty(p),
    });
  }
  return {
    translations,
    pages,
    freePages: mem.freePages(),
    memStats: (({ pinAcquired, pinReleased, grabs, foliosFreed }) => ({ pinAcquired, pinReleased, grabs, foliosFreed }))(
      mem.stats(),
    ),
    regions: mm.regions,
    mappedPages: mm.mappedPages,
  };
}

/** Asserts `fn` throws `code` and leaves the mm, its memory and (unless told) its stats unchanged. */
export function expectCodeNoChange(
  mm: AddressSpace,
  fn: () => unknown,
  code: PinlabErrorCode,
  opts: { vpages?: number; mmStats?: Partial<Record<keyof AddressSpaceStats, number>> | 'unchanged' } = {},
): PinlabError {
  const before = mmState(mm, opts.vpages);
  const statsBefore = mm.stats();
  const err = expectCode(fn, code);
  expect(mmState(mm, opts.vpages), `state changed by a call that threw ${code}`).toEqual(before);
  if (opts.mmStats !== undefined) {
    const expected = opts.mmStats === 'unchanged' ? zeroDelta(statsBefore, {}) : zeroDelta(statsBefore, opts.mmStats);
    expect(delta(mm.stats(), statsBefore)).toEqual(expected);
  }
  return err;
}

/** The PFNs `vpages` map now (throws if one is unmapped). */
export function pfnsOf(mm: AddressSpace, start: number, count: number): number[] {
  const out: number[] = [];
  for (let v = start; v < start + count; v++) {
    const t = mm.translate(v);
    if (t === null) throw new Error(`vpage ${v} is not mapped`);
    out.push(t.pfn);
  }
  return out;
}

/** A race hook that records every call. */
export function recordingHook(
  log: [RacePoint, number][],
  inner?: (point: RacePoint, vpage: number) => void,
): (point: RacePoint, vpage: number) => void {
  return (point, vpage) => {
    log.push([point, vpage]);
    inner?.(point, vpage);
  };
}

/** A hook that runs `action` once, the first time the walk reaches `point` at `vpage`. */
export function onceAt(
  point: RacePoint,
  vpage: number,
  action: () => void,
): { hook: (p: RacePoint, v: number) => void; fired: () => number } {
  let fired = 0;
  return {
    hook: (p, v) => {
      if (p === point && v === vpage && fired === 0) {
        fired++;
        action();
      }
    },
    fired: () => fired,
  };
}
