// Shape checks of a population object from JS (values are checked again by the core, which
// names the bad field).
import { invalid } from '../errors.js';
import type { Distribution, Population } from '../types/population.js';

const KINDS: Record<string, string[]> = {
  fixed: ['value'],
  uniform: ['min', 'max'],
  geometric: ['p'],
  zipf: ['s', 'max'],
  lognormal: ['mu', 'sigma'],
  mixture: ['parts'],
};

/** How deep mixtures may nest (a mixture of mixtures is 2), as the core allows. */
export const MAX_MIXTURE_DEPTH = 8;

/** Checks a distribution's shape; `at` names where it sits, for the message. */
export function checkDistribution(d: unknown, at: string, depth = 1): asserts d is Distribution {
  if (d === null || typeof d !== 'object') invalid(`${at} must be a distribution object`);
  const kind = (d as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !(kind in KINDS)) {
    invalid(`${at}.kind must be one of ${Object.keys(KINDS).join(', ')} (got ${JSON.stringify(kind)})`);
  }
  for (const field of KINDS[kind]!) {
    if (!(field in d)) invalid(`${at} (${kind}) needs '${field}'`);
  }
  if (kind === 'mixture') {
    const parts = (d as { parts: unknown }).parts;
    if (!Array.isArray(parts) || parts.length === 0) invalid(`${at}.parts must be a non-empty array`);
    if (depth > MAX_MIXTURE_DEPTH) invalid(`${at}: mixtures nest at most ${MAX_MIXTURE_DEPTH} deep`);
    parts.forEach((p: unknown, i) => {
      const w = (p as { weight?: unknown } | null)?.weight;
      if (typeof w !== 'number' || !(w > 0)) invalid(`${at}.parts[${i}].weight must be a positive number`);
      checkDistribution((p as { dist?: unknown }).dist, `${at}.parts[${i}].dist`, depth + 1);
    });
  } else {
    for (const field of KINDS[kind]!) {
      const v = (d as Record<string, unknown>)[field];
      if (typeof v !== 'number' || !Number.isFinite(v)) invalid(`${at}.${field} must be a finite number (got ${JSON.stringify(v)})`);
    }
  }
}

/** Checks a population's shape (the core checks its values). */
export function checkPopulation(p: unknown): asserts p is Population {
  if (p === null || typeof p !== 'object') invalid('population must be an object');
  const o = p as Record<string, unknown>;
  for (const f of ['pages', 'seed', 'freeFraction', 'pinnedFraction', 'writeFraction']) {
    if (typeof o[f] !== 'number' || !Number.isFinite(o[f])) invalid(`population.${f} must be a finite number (got ${JSON.stringify(o[f])})`);
  }
  if (!Number.isInteger(o['pages']) || (o['pages'] as number) < 1) invalid(`population.pages must be a positive integer (got ${String(o['pages'])})`);
  if (!Array.isArray(o['orders']) || o['orders'].length === 0) invalid('population.orders must be a non-empty array of { order, weight }');
  (o['orders'] as unknown[]).forEach((e, i) => {
    const x = e as { order?: unknown; weight?: unknown } | null;
    if (!Number.isInteger(x?.order) || typeof x?.weight !== 'number') invalid(`population.orders[${i}] must be { order: integer, weight: number }`);
  });
  checkDistribution(o['refs'], 'population.refs');
  checkDistribution(o['pinsPerPinned'], 'population.pinsPerPinned');
}
