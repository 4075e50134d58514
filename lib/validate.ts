// Type checks for JS values, shared by the public classes. Values (ranges, alignment, power
// of two) are checked once, in the native core, which names the offending value.
import { PinlabError, invalid } from './errors.js';

/** Shows a bad value in a message: strings quoted, objects named by their type. @internal */
export function show(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  if (Array.isArray(value)) return 'an array';
  const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'Object';
  return ArrayBuffer.isView(value) ? `a ${name}` : `an object (${name})`;
}

// %TypedArray%.prototype[Symbol.toStringTag]'s getter reads the array's internal type name:
// a prototype swap, an own toStringTag, a Proxy or a DataView cannot fake it.
const typedArrayName = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag)!
  .get as (this: unknown) => string | undefined;

/** Whether `value` really is a Uint32Array (not one by prototype only, nor a Proxy of one). @internal */
export function isUint32Array(value: unknown): value is Uint32Array {
  // instanceof first: a range object answers at the cost of today's check (the hot path).
  return value instanceof Uint32Array && typedArrayName.call(value) === 'Uint32Array';
}

const bufferOf = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'buffer')!
  .get as (this: unknown) => ArrayBufferLike;

const lengthOf = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'length')!
  .get as (this: unknown) => number;

const byteOffsetOf = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'byteOffset')!
  .get as (this: unknown) => number;

// %TypedArray%.prototype.set with a typed array source copies by the internal slots (no
// Symbol.species, no `length` property read), and SharedArrayBuffer.prototype.byteLength's
// getter throws for anything but a real SharedArrayBuffer (a prototype swap cannot fake one).
const typedSet = Object.getPrototypeOf(Uint8Array.prototype).set as (this: unknown, source: unknown, offset?: number) => void;
const sharedByteLength = Object.getOwnPropertyDescriptor(SharedArrayBuffer.prototype, 'byteLength')!.get as (this: unknown) => number;

/** Whether `buffer` really is a SharedArrayBuffer (by its internal slots, not its prototype). */
function isShared(buffer: unknown): boolean {
  try {
    Reflect.apply(sharedByteLength, buffer, []);
    return true;
  } catch {
    return false;
  }
}

/**
 * A copy of a real Uint32Array as a plain Uint32Array of our own, read by the built-ins only:
 * its internal length and elements (a subclass's Symbol.species, an own or inherited `length`
 * getter, a `slice` or `subarray` of its own are never consulted). @internal
 */
export function copyUint32(list: Uint32Array): Uint32Array {
  const n = Reflect.apply(lengthOf, list, []);
  const out = new Uint32Array(n);
  if (n > 0) Reflect.apply(typedSet, out, [list]);
  return out;
}

/**
 * A list read once, as a plain Uint32Array the caller can trust: a view of the same memory
 * made by the built-in getters (its buffer, offset and length as the engine sees them), so a
 * subclass or an own property that lies about `length`, `buffer` or its methods cannot make
 * the ledger or a recording read another list than the addon runs; a copy if the memory is a
 * SharedArrayBuffer (another thread may rewrite it between the ledger's read and the addon's).
 * @internal
 */
export function stableList(list: Uint32Array): Uint32Array {
  // A detached list is EINVAL, as the addon refuses it, before any step of the ledger meets it
  // (array methods throw a TypeError on a detached buffer). Only an empty-looking list can be
  // detached; the intrinsic getters, as an own `length` or `buffer` cannot lie.
  const n = Reflect.apply(lengthOf, list, []);
  const buffer = Reflect.apply(bufferOf, list, []);
  if (n === 0) {
    try {
      new Uint8Array(buffer, 0, 0); // throws a TypeError on a detached buffer
    } catch {
      invalid('pfns must be a Uint32Array whose buffer is not detached');
    }
    return new Uint32Array(0);
  }
  if (isShared(buffer)) return copyUint32(list);
  return new Uint32Array(buffer, Reflect.apply(byteOffsetOf, list, []), n);
}

const sliceBuffer = ArrayBuffer.prototype.slice;

/** Whether a typed array's buffer was detached (transferred): only an empty view can be. */
function isDetached(value: Uint32Array): boolean {
  // The built-in getters (an own `byteLength` or a faked prototype cannot lie).
  if (Reflect.apply(lengthOf, value, []) !== 0) return false;
  const buffer = Reflect.apply(bufferOf, value, []);
  if (isShared(buffer)) return false; // a SharedArrayBuffer cannot be detached
  try {
    sliceBuffer.call(buffer, 0, 0); // throws on a detached buffer (Node 20 has no .detached)
    return false;
  } catch {
    return true;
  }
}

/** A real Uint32Array over a live buffer, or EINVAL naming `name`. @internal */
export function uint32List(name: string, value: unknown): Uint32Array {
  if (!isUint32Array(value)) invalid(`${name} must be a Uint32Array (got ${show(value)})`);
  if (isDetached(value)) invalid(`${name} is a Uint32Array over a detached buffer`);
  return value;
}

/** An integer (any sign) or EINVAL naming `name`. @internal */
export function integer(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    invalid(`${name} must be an integer (got ${show(value)})`);
  }
  return value;
}

/** A PFN: a non-negative integer (the core checks it is below `pages`: ERANGE). @internal */
export function pfnArg(name: string, value: unknown): number {
  const n = integer(name, value);
  if (n < 0) throw new PinlabError('ERANGE', `${name} ${n} is out of range (must be >= 0)`);
  return n;
}

/** A boolean option, `fallback` when undefined. @internal */
export function bool(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') invalid(`${name} must be a boolean (got ${show(value)})`);
  return value;
}

/** One of `allowed`, `fallback` when undefined. @internal */
export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    invalid(`${name} must be ${allowed.map((a) => `'${a}'`).join(' | ')} (got ${show(value)})`);
  }
  return value as T;
}

/** An options object (or undefined) with no keys outside `known`: typos fail loudly. @internal */
export function optionsObject(what: string, value: unknown, known: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    invalid(`${what} must be an object (got ${show(value)})`);
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) invalid(`${what}: unknown option '${key}' (known: ${known.join(', ')})`);
  }
  // Each known option read once, into an object of our own: a getter (or a Proxy trap) that
  // answers differently on a second read cannot make the check and the use disagree.
  const read: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const key of known) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) read[key] = v;
  }
  return read;
}
