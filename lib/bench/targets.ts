// The targets, checked on the rows of a run; a target whose rows the run did not
// measure is reported as skipped, never as met.
import { native } from '../native.js';
import type { BenchRow, BenchTarget } from './types.js';

type Find = Partial<Pick<BenchRow, 'op' | 'scheme' | 'path' | 'order' | 'input' | 'threads' | 'sharing'>>;

function find(rows: readonly BenchRow[], q: Find): BenchRow | undefined {
  return rows.find((r) => Object.entries(q).every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v));
}

function target(name: string, description: string, value: number | null | undefined, op: '<=' | '>=', limit: number, missing: string): BenchTarget {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return { name, description, value: null, limit, op, met: false, skipped: missing };
  }
  return { name, description, value, limit, op, met: op === '<=' ? value <= limit : value >= limit, skipped: null };
}

/** Every target of the benchmark, on this run's rows (`durationMs`: the whole run). */
export function checkTargets(rows: readonly BenchRow[], durationMs: number, defaultRun: boolean): BenchTarget[] {
  const t1 = { threads: 1, sharing: 'private' as const, scheme: 'bias' as const, op: 'pin-unpin' as const };
  const perPage4k = find(rows, { ...t1, path: 'per-page', order: 0, input: 'range' });
  const bvec2mRange = find(rows, { ...t1, path: 'bvec', order: 9, input: 'range' });
  const bvec2mList = find(rows, { ...t1, path: 'bvec', order: 9, input: 'list' });
  const private2 = find(rows, { op: 'pin-unpin', scheme: 'bias', path: 'per-page', order: 0, input: 'range', threads: 2, sharing: 'private' });
  const shared2 = find(rows, { op: 'pin-unpin', scheme: 'bias', path: 'bvec', order: 9, input: 'range', threads: 2, sharing: 'shared' });
  const out = [
    target('bias-per-page-vs-raw', 'bias per-page pin+unpin (4 KiB folios, 1 thread) within 1.5x of the raw per-page baseline', perPage4k?.vsRawPerPage, '<=', 1.5, 'needs pin-unpin, bias, per-page, order 0, range, 1 thread'),
    target('bvec-2m-range', 'bvec over 2 MiB folios at least 100x faster per 4 KiB than per-page ({ start, count } ranges)', bvec2mRange?.bvecSpeedup, '>=', 100, 'needs pin-unpin, bias, both paths, order 9, range, 1 thread'),
    target('bvec-2m-list', 'bvec over 2 MiB folios at least 10x faster per 4 KiB than per-page (PFN lists)', bvec2mList?.bvecSpeedup, '>=', 10, 'needs pin-unpin, bias, both paths, order 9, list, 1 thread'),
    target('scaling-2-private', '2 threads on private buffers at least 1.8x one thread\'s throughput (bias per-page, 4 KiB)', private2?.speedupVsOneThread, '>=', 1.8, 'needs 2 threads, private'),
    target('bvec-2m-shared-2', 'on shared 2 MiB folios at 2 threads, bvec keeps at least 20x over per-page', shared2?.bvecSpeedup, '>=', 20, 'needs 2 threads, shared, order 9, both paths'),
  ];
  out.push(...shardedTargets(rows));
  out.push(target('default-run-time', 'the default run finishes in under 2 minutes', defaultRun ? durationMs / 1000 : null, '<=', 120, 'only checked on a default run (no options)'));
  return out;
}

/**
 * The scaling targets of every scheme that counts a 2 MiB folio's pins in per-thread shards
 * (its `shardMinOrder` trait from the addon, never its name): pin+unpin of one shared 2 MiB
 * folio from 2 threads at least 1.7x one thread's throughput, on both paths; private buffers
 * within 1.5x of the exact single-counter scheme's (separate's) time per page.
 */
function shardedTargets(rows: readonly BenchRow[]): BenchTarget[] {
  const out: BenchTarget[] = [];
  for (const s of native.schemes()) {
    if (s.shardMinOrder === null || s.shardMinOrder > 9) continue;
    const scheme = s.name as BenchRow['scheme'];
    const q = { op: 'pin-unpin' as const, order: 9, input: 'range' as const, threads: 2 };
    // What its pins write of the shared lines (its sharedRefMinOrder and lazyPins traits): with
    // one folio reference for all pins, the refcount only on the folio's zero / non-zero
    // transitions; lazy, only the pinning thread's own shard.
    const lines = s.sharedRefMinOrder === null || s.sharedRefMinOrder > 9
      ? 'every pin writes the refcount'
      : s.lazyPins
        ? 'pins share one folio reference; a folio shared by threads goes lazy: pins write only their own shard'
        : 'pins share one folio reference: refcount and summary written only on zero / non-zero transitions';
    for (const path of ['bvec', 'per-page'] as const) {
      const shared = find(rows, { ...q, scheme, path, sharing: 'shared' });
      out.push(target(`${s.name}-shared-2m-${path}-2`, `${s.name}: ${path} pin+unpin of one shared 2 MiB folio at 2 threads at least 1.7x one thread's throughput (${lines})`, shared?.speedupVsOneThread, '>=', 1.7, `needs pin-unpin, ${s.name}, ${path}, order 9, 1 and 2 threads, shared`));
    }
    const mine = find(rows, { ...q, scheme, path: 'bvec', sharing: 'private' });
    const exact = find(rows, { ...q, scheme: 'separate', path: 'bvec', sharing: 'private' });
    const ratio = mine && exact ? mine.nsPerPage.median / exact.nsPerPage.median : null;
    out.push(target(`${s.name}-private-vs-separate`, `${s.name}: bvec pin+unpin of private 2 MiB folios at 2 threads within 1.5x of separate's time per page`, ratio, '<=', 1.5, `needs pin-unpin, ${s.name} and separate, bvec, order 9, 2 threads, private`));
  }
  return out;
}
