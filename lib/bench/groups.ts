// The display order of BenchResults rows: model rows by op then folio order, the host kernel's
// rows beside the model's gup-fast (else pin-unpin) rows of the same mapping, then baselines.
import { SCHEMES } from '../schemes.js';
import { orderWords } from './format.js';
import type { BenchOp, BenchRow } from './types.js';

/** A titled run of rows shown together. */
export interface RowGroup {
  /** e.g. `pin-unpin, 2 MiB folios` or `gup-fast + kernel, 4 KiB mappings`. */
  title: string;
  rows: BenchRow[];
}

const OP_ORDER: readonly BenchOp[] = [
  'pin-unpin',
  'get-put',
  'mixed',
  'gup-fast',
  'io_uring-register',
  'raw-per-page',
  'raw-per-folio',
];
const SCHEME_ORDER = [...SCHEMES, null];
const PATH_ORDER = ['per-page', 'bvec', null];
const INPUT_ORDER = ['range', 'list'];
const SHARING_ORDER = ['private', 'shared', 'interleaved'];
const KIND_ORDER = ['model', 'kernel', 'baseline'];

function rank(list: readonly unknown[], value: unknown): number {
  const i = list.indexOf(value);
  return i < 0 ? list.length : i;
}

/** Orders rows within a group: kind, op, scheme, path, input, threads, sharing, then id. */
export function compareRows(a: BenchRow, b: BenchRow): number {
  return (
    rank(KIND_ORDER, a.kind) - rank(KIND_ORDER, b.kind) ||
    rank(OP_ORDER, a.op) - rank(OP_ORDER, b.op) ||
    rank(SCHEME_ORDER, a.scheme) - rank(SCHEME_ORDER, b.scheme) ||
    rank(PATH_ORDER, a.path) - rank(PATH_ORDER, b.path) ||
    rank(INPUT_ORDER, a.input) - rank(INPUT_ORDER, b.input) ||
    a.threads - b.threads ||
    rank(SHARING_ORDER, a.sharing) - rank(SHARING_ORDER, b.sharing) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

function unit(op: BenchOp | 'baselines'): string {
  return op === 'gup-fast' || op === 'io_uring-register' ? 'mappings' : 'folios';
}

/**
 * Splits the rows into display groups: model rows by op (pin-unpin, get-put, mixed, gup-fast)
 * then folio order; each kernel row joins the gup-fast group of its order, else the pin-unpin
 * group, else a kernel group of its own; baselines last, by order. Empty groups are dropped.
 *
 * @param rows - the rows of a {@link BenchResults} document, in any order
 * @returns the groups, each sorted by {@link compareRows}
 */
export function groupRows(rows: readonly BenchRow[]): RowGroup[] {
  const model = new Map<string, { op: BenchOp; order: number; rows: BenchRow[]; kernel: boolean }>();
  const baselines = new Map<number, BenchRow[]>();
  const kernelOnly = new Map<number, BenchRow[]>();
  const key = (op: BenchOp, order: number): string => `${op}/${order}`;
  for (const r of rows) {
    if (r.kind === 'model') {
      const k = key(r.op, r.order);
      const g = model.get(k) ?? { op: r.op, order: r.order, rows: [], kernel: false };
      g.rows.push(r);
      model.set(k, g);
    } else if (r.kind === 'baseline') {
      baselines.set(r.order, [...(baselines.get(r.order) ?? []), r]);
    }
  }
  for (const r of rows) {
    if (r.kind !== 'kernel') continue;
    const host = model.get(key('gup-fast', r.order)) ?? model.get(key('pin-unpin', r.order));
    if (host) {
      host.rows.push(r);
      host.kernel = true;
    } else kernelOnly.set(r.order, [...(kernelOnly.get(r.order) ?? []), r]);
  }
  const groups: RowGroup[] = [...model.values()]
    .sort((a, b) => rank(OP_ORDER, a.op) - rank(OP_ORDER, b.op) || a.order - b.order)
    .map((g) => ({
      title: `${g.op}${g.kernel ? ' + host kernel' : ''}, ${orderWords(g.order)} ${unit(g.op)}`,
      rows: g.rows.sort(compareRows),
    }));
  const byOrder = (m: Map<number, BenchRow[]>, title: string, what: BenchOp | 'baselines'): void => {
    for (const order of [...m.keys()].sort((a, b) => a - b)) {
      groups.push({ title: `${title}, ${orderWords(order)} ${unit(what)}`, rows: (m.get(order) ?? []).sort(compareRows) });
    }
  };
  byOrder(kernelOnly, 'host kernel', 'io_uring-register');
  byOrder(baselines, 'baselines', 'baselines');
  return groups;
}
