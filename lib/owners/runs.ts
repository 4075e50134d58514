// Page runs: a pin call's pages as flat [pfn, count, pfn, count, ...] runs of consecutive PFNs.
// The side table stores these (one entry per run, not per page).

/** Pages in a flat run list. @internal */
export function runPages(runs: Uint32Array): number {
  let n = 0;
  for (let i = 1; i < runs.length; i += 2) n += runs[i]!;
  return n;
}

/** Whether two flat run lists are equal. @internal */
export function sameRuns(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Builds a flat run list one page at a time, merging consecutive PFNs. @internal */
export class RunBuilder {
  #out: number[] = [];

  push(pfn: number, count = 1): void {
    const o = this.#out;
    const n = o.length;
    if (n > 0 && o[n - 2]! + o[n - 1]! === pfn) o[n - 1] = o[n - 1]! + count;
    else o.push(pfn, count);
  }

  get empty(): boolean {
    return this.#out.length === 0;
  }

  finish(): Uint32Array {
    return Uint32Array.from(this.#out);
  }
}

/** Calls `fn` for every page of a flat run list, in order. @internal */
export function forEachPage(runs: Uint32Array, fn: (pfn: number) => void): void {
  for (let i = 0; i < runs.length; i += 2) {
    const end = runs[i]! + runs[i + 1]!;
    for (let p = runs[i]!; p < end; p++) fn(p);
  }
}

/** The range `{start, count}` as flat runs. @internal */
export function rangeRuns(start: number, count: number): Uint32Array {
  return count > 0 ? Uint32Array.of(start, count) : new Uint32Array(0);
}

/** `pfns` without `skip` (the zero page, which pins skip), or `pfns` itself if absent. @internal */
export function withoutPfn(pfns: Uint32Array, skip: number | null): Uint32Array {
  if (skip === null || pfns.indexOf(skip) < 0) return pfns;
  return pfns.filter((p) => p !== skip);
}

/** Whether pfn is the zero page or one of the huge zero folio's 512 pages (never counted). @internal */
export function isZeroPfn(pfn: number, zero: number | null, hugeZero: number | null): boolean {
  return pfn === zero || (hugeZero !== null && pfn >= hugeZero && pfn < hugeZero + 512);
}

/** pfns without the zero page and the huge zero folio's pages (gup hands them out uncounted). @internal */
export function withoutZeroPfns(pfns: Uint32Array, mem: { readonly zeroPfn: number | null; readonly hugeZeroPfn: number | null }): Uint32Array {
  const huge = mem.hugeZeroPfn;
  if (huge === null) return withoutPfn(pfns, mem.zeroPfn);
  const zero = mem.zeroPfn;
  if (!pfns.some((p) => isZeroPfn(p, zero, huge))) return pfns;
  return pfns.filter((p) => !isZeroPfn(p, zero, huge));
}

/** `'12..15'` or `'12'`: a run for messages. @internal */
export function showRun(pfn: number, count: number): string {
  return count === 1 ? `${pfn}` : `${pfn}..${pfn + count - 1}`;
}
