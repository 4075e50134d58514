// Native runs whose JS environment goes away mid-run: a worker thread that starts runStress,
// runBench, runProfile, probeKernel or takeSnapshot and is then terminated (or calls
// process.exit()). Before, the run's completion threw Napi::Error out of a Node callback
// ("terminate called after throwing an instance of 'Napi::Error'") and aborted the whole
// process, and terminate() waited for the run to end. Each case runs in a child process whose
// main thread must survive, run natively again, print a sentinel and exit 0, quickly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DIST, DIST_NATIVE, DIST_SCHEMES, describeChild, runChild } from './child.js';

const RUNS = ['stress', 'bench', 'profile', 'probe', 'snapshot'] as const;

// The worker starts one long run (a minute or more if left alone) and tells the main thread;
// the main thread then terminates it, or the worker exits by itself.
const script = (dir: string) => `
  import { Worker } from 'node:worker_threads';
  import { runStress } from '${DIST}';
  const which = process.env.RUN, mode = process.env.MODE, ROUNDS = 3;
  const workerCode = \`
    const { parentPort, workerData } = require('node:worker_threads');
    Promise.all([import('${DIST_NATIVE}'), import('${DIST_SCHEMES}')]).then(([{ native }, { SCHEMES }]) => {
      const { which, mode, round } = workerData;
      const population = { pages: 1 << 20, seed: 1, orders: [{ order: 0, weight: 1 }], refs: { kind: 'fixed', value: 1 },
        freeFraction: 0, pinnedFraction: 0.01, pinsPerPinned: { kind: 'fixed', value: 1 }, writeFraction: 0.5 };
      const p =
        which === 'stress' ? native.runStress({ scheme: 'hybrid', threads: 4, durationMs: 60000, regionPages: 512, regions: 2, seed: 1, debug: false })
        : which === 'bench' ? native.runBench([{ op: 'pin-unpin', scheme: 'bias', perPage: false, order: 0, listInput: false, threads: 2, sharing: 'private', bufferPages: 4096, pagesPerCall: 512 }], { trials: 1000, trialMs: 100 }, () => {})
        : which === 'profile' ? native.runProfile({ population, schemes: SCHEMES, biases: [16, 64, 256, 1024, 4096, 16384, 65536], threads: 1, sampleFolios: 64 }, () => {})
        : which === 'probe' ? native.probeKernel({ bufferBytes: 1 << 26, huge: false, trials: 1000 })
        : native.takeSnapshot('${dir}/snap-' + round + '.pksnap', 1 << 20, () => {});
      p.then(() => {}, () => {});
      parentPort.postMessage('started');
      if (mode === 'exit') setTimeout(() => process.exit(0), 30);
    });
  \`;
  const t0 = Date.now();
  for (let round = 0; round < ROUNDS; round++) {
    const w = new Worker(workerCode, { eval: true, execArgv: [], workerData: { which, mode, round } });
    await new Promise((resolve, reject) => {
      w.once('message', () => { if (mode === 'terminate') setTimeout(() => w.terminate(), 30); });
      w.once('exit', resolve);
      w.once('error', reject);
    });
  }
  const ms = Date.now() - t0;
  // The main thread is unharmed: a native run still works here.
  const r = await runStress({ threads: 4, durationMs: 20, regionPages: 512, regions: 1 });
  console.log(JSON.stringify({ sentinel: 'main thread alive', balanced: r.balanced, fast: ms < 20000 }));
`;

describe('a worker thread that ends while a native run is in flight', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinlab-workers-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const mode of ['terminate', 'exit'] as const) {
    for (const run of RUNS) {
      it(`${run}: worker ${mode === 'terminate' ? 'terminated' : 'calls process.exit()'} mid-run, 3 times: the process lives on`, () => {
        const r = runChild(script(dir), { env: { RUN: run, MODE: mode }, timeoutMs: 60_000 });
        expect(r.status, describeChild(r)).toBe(0);
        expect(r.stderr).not.toMatch(/terminate called|Napi::Error|FATAL|Aborted/);
        expect(r.out).toEqual({ sentinel: 'main thread alive', balanced: true, fast: true });
      });
    }
  }
});

describe('a progress callback that throws', () => {
  it('stops the run; the promise rejects with the callback’s exception', () => {
    const r = runChild(`
      import { native } from '${DIST_NATIVE}';
      const specs = [{ op: 'pin-unpin', scheme: 'bias', perPage: false, order: 0, listInput: false, threads: 1, sharing: 'private', bufferPages: 512, pagesPerCall: 0 }];
      let calls = 0;
      const t0 = Date.now();
      const e = await native.runBench(specs, { trials: 1000, trialMs: 20 }, () => { calls++; throw new Error('progress boom'); }).then(() => null, (err) => err);
      console.log(JSON.stringify({ message: e && e.message, calls, quick: Date.now() - t0 < 10000 }));
    `);
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ message: 'progress boom', calls: 1, quick: true });
  });
});
