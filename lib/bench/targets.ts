// The targets, checked on the rows of a run; a target whose rows the run did not
// measure is reported as skipped, never as met.
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
  out.push(target('default-run-time', 'the default run finishes in under 2 minutes', defaultRun ? durationMs / 1000 : null, '<=', 120, 'only checked on a default run (no options)'));
  return out;
}
