// Issue 12 item 6, the hostile review: each confirmed finding as a test (crash cases in a
// child process).
import { describe, expect, it } from 'vitest';
import { AddressSpace, PageArray, PinlabError } from '../lib/index.js';
import { DIST_NATIVE, describeChild, root, runChild } from './child.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const DIST_FORMAT = pathToFileURL(join(root, 'dist', 'ops', 'format.js')).href;

const setup = `
  import { native } from '${DIST_NATIVE}';
  import { OpBatch } from '${DIST_FORMAT}';
  const m = new native.NativePageArray({ pages: 4096, scheme: 'hybrid', pinBias: 1024, pincountMinOrder: 1, folioOrder: 0, debug: false, populated: false, movablePages: 0 });
  const a = new native.NativeAddressSpace(m, 4096);
  a.mmap(0, 64, true, true, false);
  const batch = new OpBatch().push('pin-user-fast', { mm: 1, a: 0, b: 8 });
  const result = (f) => { try { const r = f(); return ArrayBuffer.isView(r) ? Array.from(r) : r; } catch (e) { return e.code ?? String(e); } };
`;

describe('hostile arguments to op batches (native submitOps)', () => {
  it('a getter in the spaces list that detaches the ops buffer: EINVAL (a detached batch), nothing runs, no use-after-free', () => {
    const r = runChild(`${setup}
      const ops = batch.toArray();
      const spaces = [];
      Object.defineProperty(spaces, 0, { enumerable: true, get() { structuredClone(ops.buffer, { transfer: [ops.buffer] }); return [1, a]; } });
      const out = result(() => native.submitOps(m, ops, true, spaces, 2, new Int32Array(16)));
      console.log(JSON.stringify({ out, pages: a.info().mappedPages }));`);
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ out: 'EINVAL', pages: 64 });
  });

  it('a getter in the spaces list that disposes the page array or an address space: EINVAL, nothing runs', () => {
    const r = runChild(`${setup}
      const ops = batch.toArray();
      const b = new native.NativeAddressSpace(m, 64);
      const s1 = [[1, a]];
      Object.defineProperty(s1, 1, { enumerable: true, get() { b.dispose(); return [2, a]; } });
      const one = result(() => native.submitOps(m, ops, true, [[2, b], s1[1]], 3, new Int32Array(16)));
      const s2 = [];
      Object.defineProperty(s2, 0, { enumerable: true, get() { m.dispose(); return [1, a]; } });
      const two = result(() => native.submitOps(m, ops, true, s2, 2, new Int32Array(16)));
      const digest = result(() => native.stateDigest(m, []));
      console.log(JSON.stringify({ one, two, digest, gup: a.gup(0, 4, 0).length }));`);
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ one: 'EINVAL', two: 'EINVAL', digest: 'EINVAL', gup: 4 });
  });

  it('a race hook that detaches the scratch array during the batch: results land in a fresh array', () => {
    const r = runChild(`${setup}
      const scratch = new Int32Array(16);
      let fired = 0;
      a.setRaceHook(() => { if (fired++ === 0) structuredClone(scratch.buffer, { transfer: [scratch.buffer] }); });
      const out = result(() => native.submitOps(m, batch.toArray(), true, [[1, a]], 2, scratch));
      console.log(JSON.stringify({ out, fired: fired > 0 }));`);
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ out: [8], fired: true });
  });

  it('a race hook that disposes the address space and the page array during the batch', () => {
    const r = runChild(`${setup}
      a.setRaceHook(() => { a.dispose(); m.dispose(); });
      const out = result(() => native.submitOps(m, batch.toArray(), true, [[1, a]], 2, new Int32Array(16)));
      console.log(JSON.stringify({ out, disposed: a.isDisposed() && m.isDisposed(), after: result(() => a.info()) }));`);
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ out: 1, disposed: true, after: 'EINVAL' });
  });
});

describe('hostile lists in the ledger paths', () => {
  it('a detached list to unpinUserPages / pinPages / unpinPages with an owner is EINVAL, never a TypeError', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false, debug: true });
    const mm = new AddressSpace(mem, { pages: 1 << 12 });
    mm.mmap({ start: 0, count: 64, populate: true });
    const owner = mem.pinOwner('dev');
    const detached = () => {
      const l = new Uint32Array([1, 2, 3]);
      structuredClone(l.buffer, { transfer: [l.buffer] });
      return l;
    };
    for (const call of [
      () => mm.unpinUserPages(detached(), { owner }),
      () => mem.pinPages(detached(), { owner }),
      () => mem.unpinPages(detached(), { owner }),
      () => mem.unpinPages(detached()),
    ]) {
      try {
        call();
      } catch (e) {
        expect(e).toBeInstanceOf(PinlabError);
      }
    }
    expect(mem.checkBalanced()).toEqual([]);
  });
});

describe('OpBatch with hostile entries', () => {
  it('a length past what a record can count, or not an integer, is EINVAL (not a RangeError)', async () => {
    const { OpBatch } = await import('../lib/ops/format.js');
    for (const length of [2 ** 40, -1, 1.5, NaN, '3', 2 ** 26 + 1]) {
      let err: unknown;
      try {
        new OpBatch().push('pin', { entries: { length } as unknown as ArrayLike<number> });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PinlabError);
      expect((err as PinlabError).code).toBe('EINVAL');
    }
  });

  it('a length getter that changes between reads cannot make the records disagree with themselves', async () => {
    const { OpBatch } = await import('../lib/ops/format.js');
    let reads = 0;
    const entries = { get length() { return reads++ === 0 ? 2 : 50; }, 0: 1, 1: 2 } as unknown as ArrayLike<number>;
    const ops = new OpBatch().push('pin', { entries }).toArray();
    const mem = new PageArray({ pages: 64 });
    expect(Array.from(mem.submit(ops))).toEqual([2]);
    expect(reads).toBe(1);
  });
});

describe('workers terminated in the middle of op-stream jobs and with native memory held', () => {
  it('runReplay, synth, convert and disposing/undisposed page arrays: terminate() mid-run never takes the process down', () => {
    // The streams (about 900 MB) go to a directory of the test's own, removed whatever the child did.
    const streams = mkdtempSync(join(tmpdir(), 'pinlab-term-'));
    try {
      terminateMidRun(streams);
    } finally {
      rmSync(streams, { recursive: true, force: true });
    }
  }, 130_000);
});

/** The child of the test above: its streams go to `streams`, which the test removes. */
function terminateMidRun(streams: string): void {
  const r = runChild(`
    import { Worker } from 'node:worker_threads';
    import { join } from 'node:path';
    const DIST = ${JSON.stringify(pathToFileURL(join(root, 'dist', 'index.js')).href)};
    const NATIVE = ${JSON.stringify(DIST_NATIVE)};
    const dir = ${JSON.stringify(streams)};
    const file = join(dir, 'big.pkops');
    // A stream big enough that a replay or convert is still running when terminated.
    const { native } = await import(NATIVE);
    const job = native.startSynth(file, { ops: 3_000_000, seed: 1, threads: 2, pages: 1 << 16, scheme: 'hybrid', bias: 1024, debug: false, mix: 'mm' });
    await job.promise;
    const bodies = [
      "await p.runReplay({ file: " + JSON.stringify(file) + ", threads: 2 });",
      "const { native } = await import(" + JSON.stringify(NATIVE) + "); await native.startSynth(" + JSON.stringify(join(dir, 'synth2.pkops')) + ", { ops: 50_000_000, seed: 2, threads: 2, pages: 1 << 16, scheme: 'bias', bias: 1024, debug: false, mix: 'pages' }).promise;",
      "const { native } = await import(" + JSON.stringify(NATIVE) + "); await native.startConvert(" + JSON.stringify(file) + ", " + JSON.stringify(join(dir, 'big.txt')) + ").promise;",
      "const m = new p.PageArray({ pages: 1 << 22, populated: false }); const mm = new p.AddressSpace(m, { pages: 1 << 20 }); mm.mmap({ start: 0, count: 1 << 16, populate: true }); mm.fork(); const d = new p.PageArray({ pages: 1 << 20 }); d.dispose(); await new Promise(() => {});",
      "const m = new p.PageArray({ pages: 1 << 22 }); process.exit(5);",
    ];
    let terminated = 0;
    for (let round = 0; round < 2; round++) {
      for (const body of bodies) {
        const w = new Worker("const { parentPort } = require('node:worker_threads'); import(" + JSON.stringify(DIST) + ").then(async (p) => { parentPort.postMessage('started'); " + body + " });", { eval: true, execArgv: [] });
        const started = await new Promise((res) => w.once('message', () => res(true)).once('error', (e) => res(String(e))).once('exit', () => res(false)));
        if (started !== true) throw new Error('a worker did not start: ' + started);
        await new Promise((res) => setTimeout(res, 20 + 40 * round));
        await w.terminate();
        terminated++;
      }
    }
    const { PageArray } = await import(DIST);
    const after = new PageArray({ pages: 64 });
    after.pinPages({ start: 0, count: 64 });
    after.unpinPages({ start: 0, count: 64 });
    console.log(JSON.stringify({ terminated }));`, { timeoutMs: 120_000 });
  expect(r.status, describeChild(r)).toBe(0);
  expect(r.out).toEqual({ terminated: 10 });
}

describe('recording reads each input once', () => {
  it('an owner drop under write-bias while recording is recorded, and the replay reaches the same state', async () => {
    const { stateDigest } = await import('../lib/ops/state.js');
    const mem = new PageArray({ pages: 64, scheme: 'write-bias' });
    const rec = mem.record();
    const owner = mem.pinOwner('dev');
    mem.pinPages(new Uint32Array([1, 2, 3]), { owner });
    mem.pinPages(new Uint32Array([3, 4]), { owner, write: true });
    owner.drop({ pins: 'release' });
    rec.stop();
    const fresh = new PageArray({ pages: 64, scheme: 'write-bias' });
    const results = fresh.submit(rec.buffer());
    expect(Array.from(results).every((r) => r >= 0)).toBe(true);
    expect(stateDigest(fresh)).toEqual(stateDigest(mem));
  });

  it('a batch in a SharedArrayBuffer that another thread rewrites: the recording is what ran', () => {
    const r = runChild(`
      import { Worker } from 'node:worker_threads';
      const { PageArray, OpBatch, stateDigest } = await import(${JSON.stringify(pathToFileURL(join(root, 'dist', 'index.js')).href)});
      const words = new OpBatch().push('get', { a: 1, b: 1 }).toArray();
      const sab = new SharedArrayBuffer(words.byteLength);
      const ops = new Uint32Array(sab);
      ops.set(words);
      // A worker flips the op's PFN between 1 and 2 as fast as it can.
      const w = new Worker("const { workerData } = require('node:worker_threads'); const a = new Uint32Array(workerData); for (;;) { Atomics.store(a, 2, 1); Atomics.store(a, 2, 2); }", { eval: true, workerData: sab, execArgv: [] });
      await new Promise((res) => setTimeout(res, 50));
      const mem = new PageArray({ pages: 64 });
      const rec = mem.record();
      for (let i = 0; i < 20000; i++) mem.submit(ops);
      rec.stop();
      await w.terminate();
      const fresh = new PageArray({ pages: 64 });
      fresh.submit(rec.buffer());
      const same = JSON.stringify(stateDigest(fresh)) === JSON.stringify(stateDigest(mem));
      console.log(JSON.stringify({ same, refs: mem.refcount(1) + mem.refcount(2) }));`, { timeoutMs: 60_000 });
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ same: true, refs: 20002 });
  });
});
