// PinOwner: the vaddr_pin idea (seed 000). Each pin call may name an owner; the owner's pins
// stay traceable (outstandingPins, checkBalanced, ELEAK) after the mapping that produced them
// is gone, and dropping the owner releases or reports them by an explicit policy.
import { invalid } from '../errors.js';
import type { PageArray } from '../page-array.js';
import type { DropOptions, DropPolicy, DropReport, OutstandingPin, OwnerKind, PinOwnerRef } from '../types/owners.js';
import { oneOf, optionsObject, show } from '../validate.js';
import { DropSkipped, describeLeaks, type PinTracking } from './tracking.js';

/** Internal operations an owner needs from its page array. @internal */
export interface OwnerHost {
  tracking: PinTracking;
  releaseAll(owner: PinOwner): number;
}

/**
 * A pin owner (see {@link PageArray.pinOwner}): pass it as the `owner` option of any pin call
 * (`pinPages`, `pinUserPages`, `pinUserPagesFast`, bios) and of the matching unpin.
 *
 * @example
 * ```ts
 * const mr = mem.pinOwner('rdma-mr-1', { kind: 'device' });
 * const { pfns } = mm.pinUserPagesFast(0, 512, { write: true, longterm: true, owner: mr });
 * mm.munmap({ start: 0, count: 512 });   // the pins stay, and stay traceable
 * mr.outstandingPins();                  // [{ owner: 'rdma-mr-1', pfn, count: 512, ... }]
 * mr.drop({ pins: 'release' });          // unpins them
 * ```
 */
export class PinOwner implements PinOwnerRef {
  /** The owner's name, unique among the live owners of its page array. */
  readonly name: string;
  /** The owner's kind. */
  readonly kind: OwnerKind;
  /** The page array whose pins this owner holds. */
  readonly mem: PageArray;
  readonly #host: OwnerHost;
  #dropped = false;

  /** @internal Use {@link PageArray.pinOwner}. */
  constructor(mem: PageArray, host: OwnerHost, name: string, kind: OwnerKind) {
    this.mem = mem;
    this.#host = host;
    this.name = name;
    this.kind = kind;
  }

  /** Whether {@link PinOwner.drop} has dropped it: it takes no new pins (it may still unpin). */
  get dropped(): boolean {
    return this.#dropped;
  }

  /** The runs this owner still holds pinned, by pin call. */
  outstandingPins(): OutstandingPin[] {
    return this.#host.tracking.active ? this.#host.tracking.ledger.outstanding(this) : [];
  }

  /**
   * Drops the owner. With `pins: 'release'` its outstanding pins are unpinned first (all or
   * nothing); with `pins: 'report'` outstanding pins are a leak (`ELEAK`, or counted).
   * @throws PinlabError `EINVAL` for a missing or bad policy or an owner already dropped;
   *   `ELEAK` (the owner stays live, nothing changes)
   */
  drop(options: DropOptions): DropReport {
    const policy = dropPolicy(options);
    if (this.#dropped) invalid(`owner '${this.name}' was already dropped`);
    if (policy === 'release') {
      let releasedPages: number;
      try {
        releasedPages = this.#host.releaseAll(this);
      } catch (e) {
        if (e instanceof DropSkipped) return { releasedPages: 0, leaked: this.outstandingPins() }; // counted; the owner stays
        throw e;
      }
      this.#markDropped();
      return { releasedPages, leaked: [] };
    }
    const leaked = this.outstandingPins();
    if (leaked.length > 0) {
      this.#host.tracking.detect('ELEAK', `owner '${this.name}' dropped with pins held: ${describeLeaks(leaked)}`, leaked, leaked);
    }
    this.#markDropped();
    return { releasedPages: 0, leaked };
  }

  #markDropped(): void {
    this.#dropped = true;
    this.#host.tracking.forgetOwner(this); // its name is free again; its leaked pins stay listed
  }
}

const POLICIES: readonly DropPolicy[] = ['release', 'report'];

function dropPolicy(options: unknown): DropPolicy {
  const o = optionsObject('drop options', options, ['pins']);
  if (o['pins'] === undefined) invalid(`drop needs { pins: 'release' | 'report' } (got ${show(options)})`);
  return oneOf('pins', o['pins'], POLICIES, 'release');
}
