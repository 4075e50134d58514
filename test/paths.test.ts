// Randomised differential test: the same random operations on two identical arrays, one pinning
// through the per-page path and one through the bvec path, and on the reference model. Every
// outcome (result or error code), every touched page, the whole array at intervals, and the
// statistics must agree.
import { describe, expect, it } from 'vitest';

import { PageArray, SCHEMES, type PageArrayOptions, type PageSet, type PinPath } from '../lib/index.js';
import { INT32_MAX, Rng, diffAgainstModel, pageState, range } from './helpers.js';
import { PinModel } from './model.js';

const PAGES = 1024;
const OPS = 450;
const FULL_CHECK_EVERY = 15;
// More seeds for a longer soak: PINLAB_SEEDS=50 npx vitest run test/paths.test.ts
const SEEDS = range(Math.max(1, Number(process.env['PINLAB_SEEDS'] ?? 2)), 1);

type Op =
  | { k: 'pin'; set: PageSet; write: boolean }
  | { k: 'unpin'; set: PageSet; write: boolean; dirty: boolean }
  | { k: 'get'; pfn: number; refs: number }
  | { k: 'tryget'; pfn: number; refs: number }
  | { k: 'put'; pfn: number; refs: number }
  | { k: 'make'; head: number; order: number }
  | { k: 'split'; head: number }
  | { k: 'bvecs'; set: PageSet }
  | { k: 'count'; set: PageSet };

type Outcome = { ok: true; value: unknown } | { ok: false; code: string };

function outcome(fn: () => unknown): Outcome {
  try {
    const value = fn();
    return { ok: true, value: value === undefined ? null : value };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string') throw e; // not a coded error: a real failure of the test or library
    return { ok: false, code };
  }
}

function applyArray(pa: PageArray, op: Op, path: PinPath): Outcome {
  return outcome(() => {
    switch (op.k) {
      case 'pin':
        return pa.pinPages(op.set, { write: op.write, path });
      case 'unpin':
        return pa.unpinPages(op.set, { write: op.write, dirty: op.dirty, path });
      case 'get':
        return pa.getPage(op.pfn, op.refs);
      case 'tryget':
        return pa.tryGetPage(op.pfn, op.refs);
      case 'put':
        return pa.putPage(op.pfn, op.refs);
      case 'make':
        return pa.makeFolio(op.head, op.order);
      case 'split':
        return pa.splitFolio(op.head);
      case 'bvecs':
        return pa.toBvecs(op.set);
      case 'count':
        return pa.countMaybeDmaPinned(op.set);
    }
  });
}

function applyModel(m: PinModel, op: Op): Outcome {
  return outcome(() => {
    switch (op.k) {
      case 'pin':
        return m.pinPages(op.set, op.write);
      case 'unpin':
        return m.unpinPages(op.set, op.write, op.dirty);
      case 'get':
        return m.getPage(op.pfn, op.refs);
      case 'tryget':
        return m.tryGetPage(op.pfn, op.refs);
      case 'put':
        return m.putPage(op.pfn, op.refs);
      case 'make':
        return m.makeFolio(op.head, op.order);
      case 'split':
        return m.splitFolio(op.head);
      case 'bvecs':
        return m.toBvecs(op.set);
      case 'count':
        return m.countMaybeDmaPinned(op.set);
    }
  });
}

function listOf(set: PageSet): number[] {
  return set instanceof Uint32Array ? Array.from(set) : range(set.count, set.start);
}

function describeSet(set: PageSet): string {
  return set instanceof Uint32Array ? `[${Array.from(set).join(',')}]` : `{start:${set.start},count:${set.count}}`;
}

function describeOp(op: Op): string {
  const { k, ...rest } = op;
  const fields = Object.entries(rest).map(([key, v]) =>
    key === 'set' ? `set=${describeSet(v as PageSet)}` : `${key}=${String(v)}`,
  );
  return `${k}(${fields.join(' ')})`;
}

function genSet(rng: Rng, pages: number): PageSet {
  if (rng.bool(0.4)) {
    const count = Math.min(pages, rng.bool(0.1) ? rng.int(0, 600) : rng.int(1, 40));
    return { start: rng.int(0, pages - count), count };
  }
  const parts: number[][] = [];
  const n = rng.int(1, 5);
  for (let i = 0; i < n; i++) {
    const kind = rng.int(0, 3);
    if (kind <= 1) {
      // a run of consecutive PFNs, sometimes reversed
      const len = Math.min(pages, rng.int(1, 24));
      const start = rng.int(0, pages - len);
      const run = range(len, start);
      parts.push(rng.bool(0.2) ? run.reverse() : run);
    } else if (kind === 2) {
      // a repeated PFN
      parts.push(new Array<number>(rng.int(2, 4)).fill(rng.int(0, pages - 1)));
    } else {
      parts.push([rng.int(0, pages - 1)]);
    }
  }
  return new Uint32Array(rng.shuffle(parts).flat());
}

function genOutOfRange(rng: Rng, pages: number): PageSet {
  if (rng.bool()) return { start: rng.int(pages - 10, pages), count: rng.int(11, 30) };
  const list = [rng.int(0, pages - 1), rng.int(0, pages - 1), pages + rng.int(0, 5)];
  return new Uint32Array(rng.shuffle(list));
}

/** Random layout: aligned folios of orders 0..9, the same on every target. */
function buildLayout(rng: Rng, targets: { makeFolio(h: number, o: number): void }[], pages: number): void {
  const orders = [0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 9];
  for (let p = 0; p < pages; ) {
    let order = rng.pick(orders);
    while (order > 0 && (p % 2 ** order !== 0 || p + 2 ** order > pages)) order--;
    if (order > 0) for (const t of targets) t.makeFolio(p, order);
    p += 2 ** order;
  }
}

interface Config {
  name: string;
  opts: Omit<PageArrayOptions, 'pages'>;
}

const CONFIGS: Config[] = [
  ...SCHEMES.flatMap((scheme) =>
    [false, true].map((debug) => ({ name: `${scheme}${debug ? ' debug' : ''}`, opts: { scheme, debug } })),
  ),
  { name: 'hybrid pincountMinOrder 2', opts: { scheme: 'hybrid', pincountMinOrder: 2 } },
  { name: 'hybrid pincountMinOrder 2 debug', opts: { scheme: 'hybrid', pincountMinOrder: 2, debug: true } },
  { name: 'bias pinBias 4', opts: { scheme: 'bias', pinBias: 4 } },
  { name: 'write-bias pinBias 2 debug', opts: { scheme: 'write-bias', pinBias: 2, debug: true } },
];

describe.each(CONFIGS.map((c, i) => [c.name, c, i] as const))('random ops: %s', (_name, config, index) => {
  it.each(SEEDS)('seed %d: per-page path, bvec path and model agree', (seedNo) => {
    const rng = new Rng(0x5eed0000 + index * 97 + seedNo * 7919);
    const opts: PageArrayOptions = { pages: PAGES, ...config.opts };
    const A = new PageArray(opts); // pins through 'per-page'
    const V = new PageArray(opts); // pins through 'bvec'
    const M = new PinModel(opts);
    buildLayout(rng, [A, V, M], PAGES);

    /** A PFN to put `refs` on, avoiding puts that would free a big folio (that would starve the run). */
    const putTarget = (refs: number): number | null => {
      for (let tries = 0; tries < 50; tries++) {
        const pfn = rng.int(0, PAGES - 1);
        if (M.folioOrder(pfn) < 3 || M.refcount(pfn) > refs) return pfn;
      }
      return null;
    };
    /** An operation on a set that reaches past the array: ERANGE before anything changes. */
    const outOfRangeOp = (): Op => {
      const set = genOutOfRange(rng, PAGES);
      const k = rng.pick(['pin', 'unpin', 'count', 'bvecs'] as const);
      if (k === 'count' || k === 'bvecs') return { k, set };
      return k === 'pin' ? { k, set, write: rng.bool() } : { k, set, write: rng.bool(), dirty: rng.bool() };
    };
    const outstanding: { set: PageSet; write: boolean }[] = [];
    const bigGets: { pfn: number; refs: number }[] = [];
    const tally = new Map<string, number>();
    const history: string[] = [];

    const failures: string[] = [];
    const check = (cond: boolean, what: () => string) => {
      if (!cond) failures.push(what());
    };

    const statsOf = (x: PageArray | PinModel) => {
      const s = x instanceof PageArray ? x.stats() : x.stats;
      return {
        pinAcquired: s.pinAcquired,
        pinReleased: s.pinReleased,
        foliosFreed: s.foliosFreed,
        overflowRefusals: s.overflowRefusals,
        rollbacks: s.rollbacks,
      };
    };

    const compareAll = (pfns: Iterable<number>, label: string) => {
      const list = [...pfns];
      for (const [pa, tag] of [
        [A, 'per-page'],
        [V, 'bvec'],
      ] as const) {
        const d = diffAgainstModel(pa, M, list, `${tag} `);
        check(d.length === 0, () => `${label}: ${d.join('\n')}`);
      }
      const sa = statsOf(A);
      const sv = statsOf(V);
      const sm = statsOf(M);
      check(
        JSON.stringify(sa) === JSON.stringify(sm) && JSON.stringify(sv) === JSON.stringify(sm),
        () => `${label}: stats per-page ${JSON.stringify(sa)} bvec ${JSON.stringify(sv)} model ${JSON.stringify(sm)}`,
      );
      const all = { start: 0, count: PAGES };
      const ca = A.countMaybeDmaPinned(all);
      const cv = V.countMaybeDmaPinned(all);
      const cm = M.countMaybeDmaPinned(all);
      check(ca === cm && cv === cm, () => `${label}: countMaybeDmaPinned per-page ${ca} bvec ${cv} model ${cm}`);
    };

    const run = (op: Op, opNo: number): Outcome => {
      // The pages this operation may change, taken before it runs.
      let touched: number[];
      if ('set' in op) touched = listOf(op.set).filter((p) => p < PAGES);
      else if (op.k === 'make') touched = range(Math.min(2 ** op.order, PAGES - op.head), op.head);
      else if (op.k === 'split') touched = range(2 ** M.folioOrder(op.head), M.folioHead(op.head));
      else touched = [op.pfn];
      const oa = applyArray(A, op, 'per-page');
      const ov = applyArray(V, op, 'bvec');
      const om = applyModel(M, op);
      const label = `op ${opNo} ${describeOp(op)}`;
      history.push(`${label} -> ${JSON.stringify(om)}`);
      const key = `${op.k}:${om.ok ? 'ok' : om.code}`;
      tally.set(key, (tally.get(key) ?? 0) + 1);
      check(
        JSON.stringify(oa) === JSON.stringify(om) && JSON.stringify(ov) === JSON.stringify(om),
        () => `${label}: per-page ${JSON.stringify(oa)} bvec ${JSON.stringify(ov)} model ${JSON.stringify(om)}`,
      );
      compareAll(new Set(touched), label);
      if (opNo % FULL_CHECK_EVERY === 0) compareAll(range(PAGES), `${label} (full check)`);
      return om;
    };

    // Free a few folios (their only reference is the allocation's), so pins meet free pages.
    for (let i = 0; i < 3; i++) {
      const pfn = putTarget(1);
      if (pfn !== null) run({ k: 'put', pfn, refs: 1 }, -1);
    }

    for (let i = 0; i < OPS && failures.length === 0; i++) {
      if (i % 40 === 20) {
        run(outOfRangeOp(), i);
        continue;
      }
      const r = rng.next();
      let op: Op;
      if (r < 0.3) {
        op = { k: 'pin', set: genSet(rng, PAGES), write: rng.bool() };
        const o = run(op, i);
        if (o.ok) outstanding.push({ set: op.set, write: op.write });
        continue;
      }
      if (r < 0.55 && outstanding.length > 0) {
        // unpin something that was pinned: as it was, shuffled, or in two parts
        const idx = rng.int(0, outstanding.length - 1);
        const rec = outstanding[idx]!;
        const write = rng.bool(0.1) ? !rec.write : rec.write;
        const dirty = rng.bool(0.3);
        const v = rng.int(0, 2);
        if (v === 0) {
          op = { k: 'unpin', set: rec.set, write, dirty };
          if (run(op, i).ok) outstanding.splice(idx, 1);
        } else if (v === 1) {
          op = { k: 'unpin', set: new Uint32Array(rng.shuffle(listOf(rec.set))), write, dirty };
          if (run(op, i).ok) outstanding.splice(idx, 1);
        } else {
          const list = listOf(rec.set);
          const cut = rng.int(0, list.length);
          op = { k: 'unpin', set: new Uint32Array(list.slice(0, cut)), write, dirty };
          if (run(op, i).ok) outstanding[idx] = { set: new Uint32Array(list.slice(cut)), write: rec.write };
        }
        continue;
      }
      if (r < 0.62) op = { k: 'unpin', set: genSet(rng, PAGES), write: rng.bool(), dirty: rng.bool(0.3) };
      else if (r < 0.7) op = { k: 'get', pfn: rng.int(0, PAGES - 1), refs: rng.int(1, 3) };
      else if (r < 0.73) op = { k: 'tryget', pfn: rng.int(0, PAGES - 1), refs: rng.int(1, 2) };
      else if (r < 0.76) {
        const refs = rng.int(1, 2);
        const pfn = putTarget(refs);
        op = pfn === null ? { k: 'get', pfn: rng.int(0, PAGES - 1), refs } : { k: 'put', pfn, refs };
      }
      else if (r < 0.8) {
        // push a folio close to the overflow limit, so that pins (and gets) overflow
        const pfn = rng.int(0, PAGES - 1);
        const cur = M.refcount(pfn);
        // slack below the limit: up to two write pins' worth on this folio
        const slack = rng.int(0, 2 * M.pinRefCost(M.folioOrder(pfn), true));
        const refs = Math.max(1, INT32_MAX - cur - slack);
        op = { k: rng.bool(0.8) ? 'get' : 'tryget', pfn, refs };
        if (run(op, i).ok && cur > 0) {
          bigGets.push({ pfn, refs });
          // and pin through it: the pin overflows midway (or at the end) and must roll back
          const set = genSet(rng, PAGES);
          const list = rng.bool() ? [...listOf(set), pfn] : [pfn, ...listOf(set)];
          run({ k: 'pin', set: new Uint32Array(list), write: rng.bool() }, i);
        }
        continue;
      } else if (r < 0.83 && bigGets.length > 0) op = { k: 'put', ...bigGets.pop()! };
      else if (r < 0.87) {
        const order = rng.int(1, 5);
        op = { k: 'make', head: rng.int(0, PAGES / 2 ** order - 1) * 2 ** order, order };
      } else if (r < 0.91) {
        const pfn = rng.int(0, PAGES - 1);
        op = { k: 'split', head: rng.bool(0.8) ? M.head(pfn) : pfn };
      } else if (r < 0.95) op = { k: 'bvecs', set: genSet(rng, PAGES) };
      else if (r < 0.98) op = { k: 'count', set: genSet(rng, PAGES) };
      else op = outOfRangeOp();
      run(op, i);
    }
    // Release what is still pinned, then a last full comparison.
    for (const rec of outstanding) {
      if (failures.length > 0) break;
      run({ k: 'unpin', set: rec.set, write: rec.write, dirty: false }, OPS);
    }
    compareAll(range(PAGES), 'final');

    if (failures.length > 0) {
      const tail = history.slice(-8).join('\n');
      expect.fail(`${failures.slice(0, 5).join('\n')}\n--- last operations ---\n${tail}`);
    }
    if (process.env.TALLY) console.log(config.name, seedNo, JSON.stringify([...tally].sort()));
    // The run must have exercised the interesting outcomes, not just trivia.
    const has = (key: string) => (tally.get(key) ?? 0) > 0;
    const seen = JSON.stringify([...tally]);
    expect(tally.get('pin:ok') ?? 0, seen).toBeGreaterThanOrEqual(20);
    expect(tally.get('unpin:ok') ?? 0, seen).toBeGreaterThanOrEqual(20);
    // pins that fail midway and roll back (free folios, overflow)
    expect(has('pin:EFREE') || has('pin:EOVERFLOW'), seen).toBe(true);
    expect(has('unpin:ENOTPINNED'), seen).toBe(true);
    expect(['pin', 'unpin', 'count', 'bvecs'].some((k) => has(`${k}:ERANGE`)), seen).toBe(true);
    // Both arrays answer every query alike (compareAll checked them against the model; this is
    // the direct per-page vs bvec comparison the contract asks for).
    for (let p = 0; p < PAGES; p++) {
      const a = pageState(A, p);
      const v = pageState(V, p);
      if (JSON.stringify(a) !== JSON.stringify(v)) expect.fail(`pfn ${p}: per-page ${JSON.stringify(a)} bvec ${JSON.stringify(v)}`);
    }
    const sa = A.stats();
    const sv = V.stats();
    expect(sa.pinAcquired).toBe(sv.pinAcquired);
    expect(sa.pinReleased).toBe(sv.pinReleased);
    expect(sa.pinAcquired).toBeGreaterThan(0);
  });
});
