// The page population of the false-positive profiler (lib/profile/), shared with the raw addon
// surface (lib/native.ts).

/** A distribution of non-negative integers (reference counts, pins per folio). */
export type Distribution =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number } // inclusive
  | { kind: 'geometric'; p: number; min?: number } // P(min + k) = (1-p)^k p
  | { kind: 'zipf'; s: number; max: number } // P(k) proportional to k^-s, k in 1..max
  | { kind: 'lognormal'; mu: number; sigma: number; max?: number } // round(exp(N(mu, sigma))), at least 1
  | { kind: 'mixture'; parts: { weight: number; dist: Distribution }[] };

/** A synthetic page population: every parameter in one object, reproducible from the seed. */
export interface Population {
  /** Base pages (4 KiB) of the array. */
  pages: number;
  /** Seed of every random choice. */
  seed: number;
  /** Folio order mix: the share of base pages in folios of each order. */
  orders: { order: number; weight: number }[];
  /** Plain references per allocated folio (FOLL_GET level; at least 1 is the allocation's). */
  refs: Distribution;
  /** Share of folios that are free (refcount 0). */
  freeFraction: number;
  /** Share of allocated folios that hold pins. */
  pinnedFraction: number;
  /** Pins per pinned folio (each on a random subpage of it). */
  pinsPerPinned: Distribution;
  /** Share of pins that are write pins (FOLL_WRITE). */
  writeFraction: number;
}
