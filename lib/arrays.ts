// Array helpers that stay correct at any length: spreading a large array into a call
// (`push(...xs)`, `Math.max(...xs)`) passes one argument per element and throws RangeError past
// the engine's argument limit (about 120k elements in V8).

/** Appends every element of `src` to `dst` (in order) and returns `dst`. */
export function appendAll<T>(dst: T[], src: Iterable<T>): T[] {
  for (const x of src) dst.push(x);
  return dst;
}

/** The largest of `values`, or `empty` for none. */
export function maxOf(values: Iterable<number>, empty = -Infinity): number {
  let m = empty;
  let any = false;
  for (const v of values) {
    m = any ? Math.max(m, v) : v;
    any = true;
  }
  return any ? m : empty;
}
