// The host kernel beside the model: io_uring buffer registration pins every page with
// FOLL_PIN | FOLL_LONGTERM (and unregistration unpins), for 4 KiB pages and for 2 MiB THP.
import { native, type NativeKernelProbe } from '../native.js';
import { spread } from './derive.js';
import type { ResolvedBenchOptions } from './matrix.js';
import type { BenchRow } from './types.js';

/** The kernel's rows, or why there are none. */
export interface KernelRows {
  available: boolean;
  reason: string | null;
  rows: BenchRow[];
}

/** Probes the kernel with the run's buffer size, for the orders the run measures (0 and/or 9). */
export async function probeKernelRows(r: ResolvedBenchOptions): Promise<KernelRows> {
  const orders = r.orders.filter((o) => o === 0 || o === 9);
  if (orders.length === 0) return { available: false, reason: 'no 4 KiB or 2 MiB order in this run', rows: [] };
  const bufferBytes = Math.max(r.bufferPages, 512) * 4096;
  const rows: BenchRow[] = [];
  const reasons: string[] = [];
  for (const order of orders) {
    const p = await native.probeKernel({ bufferBytes, huge: order === 9, trials: r.trials });
    if (!p.available) {
      reasons.push(`${order === 9 ? '2 MiB' : '4 KiB'}: ${p.reason ?? 'unavailable'}`);
      continue;
    }
    rows.push(kernelRow(p, order));
  }
  return { available: rows.length > 0, reason: reasons.length > 0 ? reasons.join('; ') : null, rows };
}

function kernelRow(p: NativeKernelProbe, order: number): BenchRow {
  const both = p.pinNsPerPage.map((pin, i) => pin + (p.unpinNsPerPage[i] ?? 0));
  const ns = spread(both);
  const median = (v: number[]): number => spread(v).median;
  return {
    id: `io_uring-register/-/-/o${order}/range/private/t1/b${p.pages}/c${p.pages}`,
    kind: 'kernel',
    op: 'io_uring-register',
    scheme: null,
    path: null,
    order,
    input: 'range',
    threads: 1,
    sharing: 'private',
    bufferPages: p.pages,
    pagesPerCall: p.pages,
    nsPerPage: ns,
    pagesPerSecond: { perThread: 1e9 / ns.median, total: 1e9 / ns.median },
    atomicsPerPage: 0, // not observable from user space: 0 means "not measured" on kernel rows
    scalingEfficiency: null,
    speedupVsOneThread: null,
    bvecSpeedup: null,
    vsRawPerPage: null,
    vsRawPerFolio: null,
    trials: both.length,
    kernel: {
      pinNsPerPage: median(p.pinNsPerPage),
      unpinNsPerPage: median(p.unpinNsPerPage),
      nrFollPinAcquiredDelta: p.nrFollPinAcquiredDelta,
      nrFollPinReleasedDelta: p.nrFollPinReleasedDelta,
      thpConfirmed: order === 9 ? p.thpConfirmed : null,
    },
  };
}
