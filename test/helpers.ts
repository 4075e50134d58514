// Shared test helpers: a seeded PRNG, error assertions and full state snapshots.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { expect } from 'vitest';

import { PageArray, PinlabError, runReplay, stateDigest, type AddressSpace, type OpRecorder, type PageArrayOptions, type PageCacheFile, type PinlabErrorCode, type Scheme } from '../lib/index.js';
import { PinModel } from './model.js';

export const INT32_MAX = 2 ** 31 - 1;

/** mulberry32: a tiny seeded PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/** Runs `fn`, asserts it throws a PinlabError with `code` (and a message matching `msg`). */
export function expectPinlabError(fn: () => unknown, code: PinlabErrorCode, msg?: RegExp): PinlabError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) throw new Error(`expected PinlabError ${code}, but the call returned normally`);
  expect(thrown, `expected a PinlabError ${code}, got ${String(thrown)}`).toBeInstanceOf(PinlabError);
  const err = thrown as PinlabError;
  expect(err.code, `error message: ${err.message}`).toBe(code);
  if (msg) expect(err.message).toMatch(msg);
  return err;
}

/** The code of the error `fn` throws, or null. */
export function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as { code?: string }).code ?? `non-coded error: ${String(e)}`;
  }
}

export interface PageState {
  head: number;
  order: number;
  refcount: number;
  pincount: number | null;
  maybe: boolean;
  dirty: boolean;
}

export function pageState(pa: PageArray | PinModel, pfn: number): PageState {
  return {
    head: pa.folioHead(pfn),
    order: pa.folioOrder(pfn),
    refcount: pa.refcount(pfn),
    pincount: pa.pincount(pfn),
    maybe: pa.maybeDmaPinned(pfn),
    dirty: pa.isDirty(pfn),
  };
}

/** Every page's observable state plus the counters a failed call must not move. */
export function snapshot(pa: PageArray): {
  pages: PageState[];
  stats: { pinAcquired: number; pinReleased: number; foliosFreed: number };
} {
  const pages: PageState[] = [];
  for (let p = 0; p < pa.pages; p++) pages.push(pageState(pa, p));
  const s = pa.stats();
  return { pages, stats: { pinAcquired: s.pinAcquired, pinReleased: s.pinReleased, foliosFreed: s.foliosFreed } };
}

/** Asserts `fn` throws `code` and leaves `pa`'s full state as it was. */
export function expectErrorNoChange(
  pa: PageArray,
  fn: () => unknown,
  code: PinlabErrorCode,
  msg?: RegExp,
): PinlabError {
  const before = snapshot(pa);
  const err = expectPinlabError(fn, code, msg);
  expect(snapshot(pa), `state changed by a call that threw ${code}`).toEqual(before);
  return err;
}

/** A PageArray and a model built with the same options. */
export function pair(opts: PageArrayOptions): { pa: PageArray; model: PinModel } {
  return { pa: new PageArray(opts), model: new PinModel(opts) };
}

/** Mismatches between the array and the model over `pfns` (empty when they agree). */
export function diffAgainstModel(pa: PageArray, model: PinModel, pfns: Iterable<number>, label = ''): string[] {
  const out: string[] = [];
  for (const p of pfns) {
    const a = pageState(pa, p);
    const m = pageState(model, p);
    if (
      a.head !== m.head ||
      a.order !== m.order ||
      a.refcount !== m.refcount ||
      a.pincount !== m.pincount ||
      a.maybe !== m.maybe ||
      a.dirty !== m.dirty
    ) {
      out.push(`${label}pfn ${p}: array ${JSON.stringify(a)} model ${JSON.stringify(m)}`);
      if (out.length > 10) break;
    }
  }
  return out;
}

export function range(n: number, start = 0): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

/**
 * Asserts `fn` throws `code` with a message matching every pattern and that `snapshot()` is
 * the same after as before (a refused call changes nothing).
 */
export function expectRefusedUnchanged<S>(snapshot: () => S, fn: () => unknown, code: PinlabErrorCode, msgs: readonly RegExp[]): PinlabError {
  const before = snapshot();
  const err = expectPinlabError(fn, code);
  for (const m of msgs) expect(err.message).toMatch(m);
  expect(snapshot(), `state changed by a call that threw ${code}`).toEqual(before);
  return err;
}

/** A real gc() inside a test: V8 exposes it to a fresh context once the flag is set. */
export function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * A file mapping test's end: its address spaces disposed and its file truncated to nothing,
 * then every pin given back and every page free again (the zero page aside).
 */
export function expectFileTestBalanced(mem: PageArray, mms: readonly AddressSpace[], file: PageCacheFile): void {
  for (const mm of mms) mm.dispose();
  file.truncate(0);
  const s = mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
  expect(mem.freePages()).toBe(mem.pages - (mem.zeroPfn === null ? 0 : 1));
}

/** Saves a stopped recording to `bin`, replays it under `scheme`, and expects the live state. */
export async function expectReplayMatchesLive(rec: OpRecorder, bin: string, mem: PageArray, scheme: Scheme): Promise<void> {
  rec.save(bin);
  const doc = await runReplay({ file: bin, schemes: [scheme], endState: true });
  expect(doc.schemes[0]!.diverged, scheme).toBe(0);
  expect(doc.schemes[0]!.endState).toEqual(stateDigest(mem));
}
