// The address spaces of each page array, by id. Ids are per page array, 1, 2, ... in creation
// order, and a creation that fails uses up its id too: an op stream names address spaces the
// same way (op_format.h), so a recording, a replay and a batch submitted to a live array agree
// on every id. The registry holds weak references only: an address space still dies with its
// JS object. An active recorder hears of every creation here.
import { native, type NativeAddressSpace, type NativePageArray } from '../native.js';

/** What the registry tells an active recorder. @internal */
export interface SpaceListener {
  /** An address space `id` was created (`pages`) or its creation failed (`error`). */
  created(id: number, pages: number, handle: NativeAddressSpace | null, error: unknown, swapPages?: number): void;
  /** `parent` forked into `id` (`handle` null and `error` set when the fork failed). */
  forked(parent: number, id: number, handle: NativeAddressSpace | null, error: unknown): void;
  /** An address space made by a submitted batch (its ops are recorded with the batch). */
  adopted(id: number, handle: NativeAddressSpace): void;
  /** Before `parent` forks: throws to refuse the fork (nothing changed, no id used up). */
  beforeFork?(parent: number): void;
}

interface Registry {
  nextId: number;
  handles: Map<number, WeakRef<NativeAddressSpace>>;
  objects: Map<number, WeakRef<object>>;
  /**
   * The address spaces submitted batches created: nothing else holds them, and a batch's later
   * ops name them by id, so they live as long as the page array (their objects, or their
   * handles before the AddressSpace class is loaded).
   */
  held: Map<number, object>;
  listener: SpaceListener | null;
}

const registries = new WeakMap<NativePageArray, Registry>();

function registryOf(mem: NativePageArray): Registry {
  let r = registries.get(mem);
  if (r === undefined) {
    r = { nextId: 1, handles: new Map(), objects: new Map(), held: new Map(), listener: null };
    registries.set(mem, r);
  }
  return r;
}

/** The id the next address space of `mem` gets. @internal */
export function nextSpaceId(mem: NativePageArray): number {
  return registryOf(mem).nextId;
}

/** Whether any address space was ever created over `mem`. @internal */
export function hasSpaces(mem: NativePageArray): boolean {
  return registryOf(mem).nextId > 1;
}

/** Sets (or clears) the listener of `mem`'s creations. @internal */
export function setSpaceListener(mem: NativePageArray, listener: SpaceListener | null): void {
  registryOf(mem).listener = listener;
}

/**
 * `new AddressSpace(mem, { pages })`'s native half: the next id, the address space (its id is
 * used up even if the core refuses it), and the listener told.
 * @internal
 */
export function createSpace(mem: NativePageArray, pages: number, rules?: string | object, thpOrders?: number, swapPages?: number): { handle: NativeAddressSpace; id: number } {
  const r = registryOf(mem);
  const id = r.nextId++;
  let handle: NativeAddressSpace;
  try {
    handle = new native.NativeAddressSpace(mem, pages, rules, thpOrders, swapPages);
  } catch (e) {
    r.listener?.created(id, pages, null, e, swapPages);
    throw e;
  }
  r.handles.set(id, new WeakRef(handle));
  r.listener?.created(id, pages, handle, null, swapPages);
  return { handle, id };
}

/** fork()'s native half: the child's id (used up even if the fork fails), and the listener told. @internal */
export function forkSpace(mem: NativePageArray, parent: NativeAddressSpace, parentId: number): { handle: NativeAddressSpace; id: number } {
  const r = registryOf(mem);
  r.listener?.beforeFork?.(parentId);
  const id = r.nextId++;
  let handle: NativeAddressSpace;
  try {
    handle = parent.fork();
  } catch (e) {
    r.listener?.forked(parentId, id, null, e);
    throw e;
  }
  r.handles.set(id, new WeakRef(handle));
  r.listener?.forked(parentId, id, handle, null);
  return { handle, id };
}

/** Notes the JS object of address space `id` (for {@link spaceObject}). @internal */
export function registerSpaceObject(mem: NativePageArray, id: number, object: object): void {
  registryOf(mem).objects.set(id, new WeakRef(object));
}

/** The JS object of address space `id` of `mem`, if it is alive. @internal */
export function spaceObject(mem: NativePageArray, id: number): object | undefined {
  return registryOf(mem).objects.get(id)?.deref();
}

/** Forgets address space `id` of `mem` (disposed): no batch, byId or digest names it again. @internal */
export function forgetSpace(mem: NativePageArray, id: number): void {
  const r = registryOf(mem);
  r.handles.delete(id);
  r.objects.delete(id);
  r.held.delete(id);
}

/** Disposes every address space of `mem` (the page array is being disposed). @internal */
export function disposeSpaces(mem: NativePageArray): void {
  const r = registryOf(mem);
  for (const ref of r.handles.values()) ref.deref()?.dispose();
  r.handles.clear();
  r.objects.clear();
  r.held.clear();
}

/** [id, handle] of every live address space of `mem`, by id (dead ones are forgotten). @internal */
export function liveSpaces(mem: NativePageArray): [number, NativeAddressSpace][] {
  const r = registryOf(mem);
  const out: [number, NativeAddressSpace][] = [];
  for (const [id, ref] of r.handles) {
    const h = ref.deref();
    if (h === undefined) {
      r.handles.delete(id);
      r.objects.delete(id);
    } else {
      out.push([id, h]);
    }
  }
  return out;
}

const hooked = new WeakSet<NativeAddressSpace>();

/** Notes whether `handle` has a race hook (a batch does not run ops on one that has). @internal */
export function markRaceHook(handle: NativeAddressSpace, on: boolean): void {
  if (on) hooked.add(handle);
  else hooked.delete(handle);
}

/** Whether `handle` has a race hook. @internal */
export function hasRaceHook(handle: NativeAddressSpace): boolean {
  return hooked.has(handle);
}

/** Brings the JS side up to date after a submitted batch ran (its ops and their results). @internal */
export type BatchFollower = (mem: NativePageArray, ops: Uint32Array, results: Int32Array) => void;

let follower: BatchFollower | null = null;

/** Set once by the AddressSpace class: its records of file mappings follow a batch's layout ops. @internal */
export function setBatchFollower(fn: BatchFollower): void {
  follower = fn;
}

/**
 * Whether a batch over `spaces` needs the JS side's check and follow-up (an address space of
 * `spaces` maps a file: its records must follow the batch's layout ops).
 * @internal
 */
export type BatchNeedsFollow = (mem: NativePageArray, spaces: readonly [number, NativeAddressSpace][]) => boolean;

/** Refuses a batch the JS side could not follow (throws before it runs). @internal */
export type BatchChecker = (mem: NativePageArray, ops: Uint32Array) => void;

let needsFollow: BatchNeedsFollow | null = null;

/** Set once by the AddressSpace class. @internal */
export function setBatchNeedsFollow(fn: BatchNeedsFollow): void {
  needsFollow = fn;
}

/**
 * Whether {@link checkBatch} and {@link followBatch} have anything to do for a batch over
 * `spaces` (the address spaces a batch creates map no file, so the answer holds after it).
 * @internal
 */
export function batchNeedsFollow(mem: NativePageArray, spaces: readonly [number, NativeAddressSpace][]): boolean {
  return needsFollow?.(mem, spaces) ?? false;
}

let checker: BatchChecker | null = null;

/** Set once by the AddressSpace class. @internal */
export function setBatchChecker(fn: BatchChecker): void {
  checker = fn;
}

/** Before a submitted batch runs: its refusal changes nothing. @internal */
export function checkBatch(mem: NativePageArray, ops: Uint32Array): void {
  checker?.(mem, ops);
}

/** After a submitted batch, once the address spaces it made are adopted. @internal */
export function followBatch(mem: NativePageArray, ops: Uint32Array, results: Int32Array): void {
  follower?.(mem, ops, results);
}

/** Makes the JS object of an address space a submitted batch created. @internal */
export type SpaceAdopter = (mem: object, id: number, handle: NativeAddressSpace) => object;

let adopter: SpaceAdopter | null = null;

/** Set once by the AddressSpace class: how a batch's new address spaces become objects. @internal */
export function setSpaceAdopter(fn: SpaceAdopter): void {
  adopter = fn;
}

/**
 * The address spaces a submitted batch created (ids up to `nextId`): each gets its JS object,
 * held for the life of the page array (see Registry.held), and the registry's next id follows
 * the batch's.
 * @internal
 */
export function adoptSpaces(memObject: object, mem: NativePageArray, created: [number, NativeAddressSpace][], nextId: number): void {
  const r = registryOf(mem);
  r.nextId = Math.max(r.nextId, nextId);
  for (const [id, handle] of created) {
    r.handles.set(id, new WeakRef(handle));
    r.held.set(id, adopter === null ? handle : adopter(memObject, id, handle));
    r.listener?.adopted(id, handle);
  }
}
