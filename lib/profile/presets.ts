// Named populations for `pinlab profile --preset`: documented, reproducible starting points.
import type { Population } from '../types/population.js';

/** The preset names. */
export type PresetName = 'desktop' | 'database-server' | 'rdma-node';

/** Every preset, with what it stands for. */
export const PRESETS: Readonly<Record<PresetName, { description: string; population: Population }>> = {
  desktop: {
    description:
      'A desktop: mostly 4 KiB pages, a quarter THP; references from a mixture of private pages (1-3 refs) and ' +
      'shared library pages mapped by many processes (Zipf up to 4096); few pins (GPU and USB DMA), mostly writes.',
    population: {
      pages: 1 << 22, // 16 GiB
      seed: 1,
      orders: [
        { order: 0, weight: 0.75 },
        { order: 9, weight: 0.25 },
      ],
      refs: {
        kind: 'mixture',
        parts: [
          { weight: 0.85, dist: { kind: 'uniform', min: 1, max: 3 } },
          { weight: 0.15, dist: { kind: 'zipf', s: 0.9, max: 4096 } },
        ],
      },
      freeFraction: 0.2,
      pinnedFraction: 0.002,
      pinsPerPinned: { kind: 'fixed', value: 1 },
      writeFraction: 0.7,
    },
  },
  'database-server': {
    description:
      'A database server: a large buffer pool in 2 MiB THPs with O_DIRECT I/O (short-term read and write pins), ' +
      'shared memory mapped by hundreds of connection processes (log-normal references, median ~20), many pinned folios.',
    population: {
      pages: 1 << 23, // 32 GiB
      seed: 2,
      orders: [
        { order: 0, weight: 0.3 },
        { order: 9, weight: 0.7 },
      ],
      refs: { kind: 'lognormal', mu: 3, sigma: 2, max: 1 << 20 },
      freeFraction: 0.05,
      pinnedFraction: 0.05,
      pinsPerPinned: { kind: 'geometric', p: 0.5, min: 1 },
      writeFraction: 0.5,
    },
  },
  'rdma-node': {
    description:
      'An RDMA node: registered memory regions pinned long term in 2 MiB and 1 GiB folios (several registrations ' +
      'per region), plus 4 KiB pages whose references follow a heavy Zipf tail (page cache shared by many workers).',
    population: {
      pages: 1 << 22,
      seed: 3,
      orders: [
        { order: 0, weight: 0.4 },
        { order: 9, weight: 0.4 },
        { order: 18, weight: 0.2 },
      ],
      refs: { kind: 'zipf', s: 1.1, max: 1 << 16 },
      freeFraction: 0.1,
      pinnedFraction: 0.3,
      pinsPerPinned: { kind: 'uniform', min: 1, max: 8 },
      writeFraction: 0.9,
    },
  },
};
