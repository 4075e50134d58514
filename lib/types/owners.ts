// Public types of pin ownership and debug provenance (seeds 000 and 001): what pin records,
// errors and reports say about owners, shared by lib/errors.ts, lib/owners/ and the classes.

/**
 * What kind of context holds a pin, after Ira Weiny's vaddr_pin (seed 000): a process (`'mm'`),
 * an open file used for I/O such as an RDMA file (`'file'`), or a driver (`'device'`).
 */
export type OwnerKind = 'mm' | 'file' | 'device';

/** The API call that took a pin. */
export type PinOperation =
  | 'pinPages'
  | 'pinUserPages'
  | 'pinUserPagesFast'
  | 'bioFromUserPages'
  | 'bioAddPage';

/** Where a pin came from: the owner and the pin call that took it. */
export interface PinProvenance {
  /** The pin call's id: every recorded pin call gets the next id of its page array, from 1. */
  callId: number;
  /** The owner's name, or null for a pin taken without an owner (recorded in debug mode only). */
  owner: string | null;
  /** The owner's kind, or null without an owner. */
  ownerKind: OwnerKind | null;
  /** The call that took the pin. */
  operation: PinOperation;
  /** Where the pages were mapped when they were pinned, e.g. `'mm#2 vpages 0..511'`; null for physical pins. */
  via: string | null;
  /** The JS stack of the pin call, when the page array was made with `captureStacks: true`. */
  stack: string | null;
}

/** Options of {@link PageArray.pinOwner}. */
export interface PinOwnerOptions {
  /** What holds the pins: a process, an open file (e.g. an RDMA file), or a driver. Default `'device'`. */
  kind?: OwnerKind;
}

/** What {@link PinOwner.drop} does with pins the owner still holds. */
export type DropPolicy = 'release' | 'report';

/** Options of {@link PinOwner.drop}: the policy is required, so the choice is explicit. */
export interface DropOptions {
  /**
   * `'release'`: unpin every page the owner still holds (the device is torn down cleanly).
   * `'report'`: an outstanding pin is a leak: `ELEAK` naming each run (and in `'count'` mode the
   * owner is dropped anyway, its pins left pinned and listed as leaked).
   */
  pins: DropPolicy;
}

/** What {@link PinOwner.drop} did. */
export interface DropReport {
  /** Pages unpinned by the `'release'` policy. */
  releasedPages: number;
  /**
   * Runs left pinned: the `'report'` policy in `'count'` mode (the owner is dropped), or a
   * `'release'` the core refused in `'count'` mode (counted; the owner stays live).
   */
  leaked: OutstandingPin[];
}

/**
 * A {@link PinOwner} as pin records, reports and errors hold it: every member of the class but
 * its page array (`mem`). Each `PinOwnerRef` pinlab hands out is a `PinOwner` (narrow with
 * `instanceof PinOwner` to pass it back as an `owner` option).
 */
export interface PinOwnerRef {
  /** The owner's name, unique among the live owners of its page array. */
  readonly name: string;
  /** The owner's kind. */
  readonly kind: OwnerKind;
  /** Whether {@link PinOwner.drop} has dropped it: it takes no new pins (it may still unpin). */
  readonly dropped: boolean;
  /** The runs this owner still holds pinned, by pin call. */
  outstandingPins(): OutstandingPin[];
  /** Drops the owner (see {@link PinOwner.drop}). */
  drop(options: DropOptions): DropReport;
}

/** One run of consecutive pages a pin call still holds pinned. */
export interface OutstandingPin extends PinProvenance {
  /** The owner object (a {@link PinOwner}), or null without an owner. */
  ownerObject: PinOwnerRef | null;
  /** First PFN of the run. */
  pfn: number;
  /** Pages in the run (each holds one pin from this call). */
  count: number;
  /** Whether the pins are write pins (FOLL_WRITE). */
  write: boolean;
  /** Whether the pins are long-term (FOLL_LONGTERM): these are what file layout leases govern. */
  longterm: boolean;
}

/** The misuse kinds debug tracking detects, counted in `PageArray.stats().imbalances`. */
export type ImbalanceKind = 'EPINNED' | 'ENOTPINNED' | 'ELEAK';

/** What happens on a detected imbalance: throw a `PinlabError` (default), or count it and go on. */
export type ImbalanceMode = 'throw' | 'count';

/** One detected imbalance, as kept by `PageArray.imbalances()` (the most recent 1024). */
export interface Imbalance {
  /** The kind of misuse. */
  kind: ImbalanceKind;
  /** The message the `PinlabError` would have had (in `'throw'` mode, had). */
  message: string;
  /** The pins involved, when known. */
  provenance: readonly PinProvenance[];
}

/** Counts of detected imbalances by kind. */
export type ImbalanceCounts = Record<ImbalanceKind, number>;
