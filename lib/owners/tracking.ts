// Per-PageArray pin tracking: the ledger (created on first use), the owners, and what happens
// on a detected imbalance. It sits under ./bookkeeping.ts (the classes of lib/ reach both
// through pinsOf(mem)) and touches no native state.
import { PinlabError, invalid } from '../errors.js';
import { show } from '../validate.js';
import type {
  Imbalance,
  ImbalanceCounts,
  ImbalanceKind,
  ImbalanceMode,
  OutstandingPin,
  PinOwnerRef,
  PinProvenance,
} from '../types/owners.js';
import { PinLedger, isMiss, provenanceOf, type PinCall, type PinRecord, type ReleasePlan } from './ledger.js';
import { showRun } from './runs.js';

const LOG_LIMIT = 1024;

/** @internal Thrown by a release-all that the core refused and `'count'` mode counted: nothing changed. */
export class DropSkipped extends Error {}

/** What {@link PinTracking.coreError} returns when a detection was counted and the call skipped. @internal */
export const SKIPPED: unique symbol = Symbol('skipped');

/** @internal */
export class PinTracking {
  readonly debug: boolean;
  readonly mode: ImbalanceMode;
  readonly captureStacks: boolean;
  readonly #matchWrite: boolean;
  #ledger: PinLedger | null = null;
  readonly #owners = new Map<string, PinOwnerRef>();
  readonly #counts: ImbalanceCounts = { EPINNED: 0, ENOTPINNED: 0, ELEAK: 0 };
  readonly #log: Imbalance[] = [];

  constructor(options: { debug: boolean; mode: ImbalanceMode; captureStacks: boolean; matchWrite: boolean }) {
    this.debug = options.debug;
    this.mode = options.mode;
    this.captureStacks = options.captureStacks;
    this.#matchWrite = options.matchWrite;
    // Debug mode records every pin call, owner or not, so every detection has provenance.
    if (this.debug) this.#ledger = new PinLedger(this.#matchWrite);
  }

  /** Whether a pin call without an owner is recorded too (debug mode). */
  get recordsAll(): boolean {
    return this.debug;
  }

  get ledger(): PinLedger {
    this.#ledger ??= new PinLedger(this.#matchWrite);
    return this.#ledger;
  }

  /** The id the next pin record will get (a ledger not yet made starts at 1); makes no ledger. */
  get nextRecordId(): number {
    return this.#ledger?.nextId ?? 1;
  }

  /** Whether anything was ever recorded (no ledger: nothing to report). */
  get active(): boolean {
    return this.#ledger !== null;
  }

  // ---- owners ---------------------------------------------------------------------------------

  registerOwner(owner: PinOwnerRef): void {
    const live = this.#owners.get(owner.name);
    if (live !== undefined && !live.dropped) invalid(`owner name ${show(owner.name)} is already in use`);
    this.#owners.set(owner.name, owner);
  }

  /** A dropped owner's name is free again (the registry does not grow with dropped owners). */
  forgetOwner(owner: PinOwnerRef): void {
    if (this.#owners.get(owner.name) === owner) this.#owners.delete(owner.name);
  }

  // ---- recording ------------------------------------------------------------------------------

  /** Records a pin call that succeeded; `runs` are its pages (zero page excluded). */
  record(owner: PinOwnerRef | null, call: PinCall, runs: Uint32Array): PinRecord {
    if (this.captureStacks) call.stack = captureStack();
    return this.ledger.record(owner, call, runs);
  }

  /**
   * Plans a release of `runs` by `owner`: the plan, or (after a detection in `'count'` mode)
   * null, meaning the caller must skip the release. Throws ENOTPINNED in `'throw'` mode.
   */
  planRelease(owner: PinOwnerRef | null, runs: Uint32Array, write: boolean): ReleasePlan | null {
    const plan = this.ledger.planRelease(owner, runs, write);
    if (!isMiss(plan)) return plan;
    this.detect('ENOTPINNED', this.#notPinnedMessage(owner, plan.pfn, write), this.#provenanceAt(plan.pfn, owner));
    return null;
  }

  // ---- detections -----------------------------------------------------------------------------

  /** A detected imbalance: counted and logged; thrown unless the mode is `'count'`. */
  detect(kind: ImbalanceKind, message: string, provenance: readonly PinProvenance[], leaks: readonly OutstandingPin[] = []): void {
    this.#counts[kind]++;
    this.#log.push({ kind, message, provenance });
    if (this.#log.length > LOG_LIMIT) this.#log.shift();
    if (this.mode === 'throw') throw new PinlabError(kind, message, { provenance, leaks });
  }

  /**
   * An error thrown by a core release: EPINNED or ENOTPINNED becomes a detection with the
   * provenance of the pins on the page the core names (else on `[lo, hi)`), and SKIPPED is
   * returned after a counted one (the core changed nothing). Anything else is rethrown.
   */
  coreError(e: unknown, lo: number, hi: number): typeof SKIPPED {
    if (!(e instanceof PinlabError) || (e.code !== 'EPINNED' && e.code !== 'ENOTPINNED')) throw e;
    // The core's message names the page ("pfn N ..."): look up who pins it.
    const named = /pfn (\d+)/.exec(e.message);
    const [a, b] = named === null ? [lo, hi] : [Number(named[1]), Number(named[1]) + 1];
    const provenance = this.holdersOf(a, b).map(provenanceOf);
    const message = e.message.slice(e.code.length + 2) + describeHolders(e.code, provenance);
    this.detect(e.code, message, provenance);
    return SKIPPED;
  }

  /** Records holding pins on [lo, hi) (nothing without a ledger). */
  holdersOf(lo: number, hi: number, filter?: (r: PinRecord) => boolean): PinRecord[] {
    return this.#ledger === null ? [] : this.#ledger.holdersOf(lo, hi, filter);
  }

  counts(): ImbalanceCounts {
    return { ...this.#counts };
  }

  log(): Imbalance[] {
    return [...this.#log];
  }

  #provenanceAt(pfn: number, owner: PinOwnerRef | null): PinProvenance[] {
    const holders = this.holdersOf(pfn, pfn + 1).map(provenanceOf);
    const last = this.#ledger?.lastReleaseOf(pfn, owner);
    return last === undefined ? holders : [...holders, provenanceOf(last)];
  }

  #notPinnedMessage(owner: PinOwnerRef | null, pfn: number, write: boolean): string {
    const who = owner === null ? 'no untracked' : `owner ${show(owner.name)} holds no`;
    const kind = this.#matchWrite ? (write ? ' write' : ' read') : '';
    let msg = `pfn ${pfn}: ${who}${kind} pin to release`;
    const holders = this.holdersOf(pfn, pfn + 1).map(provenanceOf);
    if (holders.length > 0) msg += `; its pins belong to ${holders.map(describeProvenance).join(', ')}`;
    const last = this.#ledger?.lastReleaseOf(pfn, owner);
    if (last !== undefined) msg += `; ${describeProvenance(provenanceOf(last))} already released it`;
    return msg;
  }
}

/** `owner 'rdma' (device) call #4 pinUserPagesFast via mm#1 vpages 0..511`. @internal */
export function describeProvenance(p: PinProvenance): string {
  const who = p.owner === null ? '(no owner)' : `owner '${p.owner}' (${p.ownerKind})`;
  const via = p.via === null ? '' : ` via ${p.via}`;
  return `${who} call #${p.callId} ${p.operation}${via}`;
}

/** One line per run for ELEAK messages (the first 10, then a count). @internal */
export function describeLeaks(leaks: readonly OutstandingPin[]): string {
  const lines = leaks.slice(0, 10).map((l) => {
    const flags = [l.write ? 'write' : 'read', ...(l.longterm ? ['long-term'] : [])].join(', ');
    return `${describeProvenance(l)}: pfn ${showRun(l.pfn, l.count)} (${l.count} ${l.count === 1 ? 'page' : 'pages'}, ${flags})`;
  });
  if (leaks.length > 10) lines.push(`... and ${leaks.length - 10} more runs`);
  return lines.join('; ');
}

function describeHolders(code: 'EPINNED' | 'ENOTPINNED', provenance: readonly PinProvenance[]): string {
  if (provenance.length === 0) return '';
  const who = provenance.map(describeProvenance).join(', ');
  // ENOTPINNED while the side table lists pins: someone released them without naming their owner.
  return code === 'EPINNED' ? ` (pinned by ${who})` : ` (the side table still lists pins by ${who}: released without their owner?)`;
}

function captureStack(): string {
  const stack = new Error().stack ?? '';
  // Drop the message line and pinlab's own frames: the stack starts at the caller.
  return stack
    .split('\n')
    .slice(1)
    .filter((l) => !/[\\/](lib|dist)[\\/](owners[\\/]|page-array|address-space|bio|files[\\/])/.test(l))
    .map((l) => l.trim())
    .join('\n');
}
