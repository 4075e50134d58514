// What a scheme is, for the tests' expectations. The four schemes of the contract are written
// out in the reference model (test/model.ts, from pin-semantics.md, not from the native code); a
// scheme registered later (one file in native/core/pages/schemes/) has its traits from its
// policy, through the addon. A test that expects something of "the scheme" asks here, never
// compares the scheme's name: a name test would treat a new scheme like one of the four.
import { native } from '../lib/native.js';
import type { Scheme } from '../lib/schemes.js';
import { PinModel } from './model.js';

export interface SchemeTraits {
  /** Whether folios of this order keep an exact pincount (no false positives there). */
  exact(order: number): boolean;
  /** The refcount cost of one subpage pin of a folio of this order. */
  cost(order: number, write: boolean): number;
  /** Whether a folio of this order's pins share ONE reference between them (taken by the first pin). */
  sharesRef(order: number): boolean;
  /** Maybe-pinned does not see read pins (write-bias): pin for write to be seen. */
  readPinsHidden: boolean;
  /** Bytes per page of the arrays, without and with debug accounting (the policy's, from schemes()). */
  bytesPerPage(debug: boolean): number;
}

export function schemeTraits(scheme: Scheme, pinBias = 1024, pincountMinOrder = 1): SchemeTraits {
  const m = new PinModel({ pages: 1, scheme, pinBias, pincountMinOrder });
  const info = native.schemes().find((x) => x.name === scheme);
  if (info === undefined) throw new Error(`no registered scheme '${scheme}'`);
  return {
    exact: (order) => m.tracked(order),
    cost: (order, write) => m.pinRefCost(order, write),
    sharesRef: (order) => m.sharesRef(order),
    readPinsHidden: m.readPinsHidden,
    bytesPerPage: (debug) => info.bytesPerPage + (debug ? info.debugBytesPerPage : 0),
  };
}
