// mem.submit reads a batch once: a batch in a SharedArrayBuffer that another thread rewrites
// while submit runs cannot make the files' records of their mappings follow other ops than
// the ones that ran, nor pass a batch fork the check refuses (attack round 28: the check,
// the addon and the follow-up each read the caller's array). A worker flips the batch for the
// whole run; each iteration's outcome must be one of the two batches', whole. Before the fix
// both kinds of mismatch showed within a few hundred iterations.
import { Worker } from 'node:worker_threads';

import { afterEach, describe, expect, it } from 'vitest';

import { AddressSpace, OP_CODES, OpBatch, PageArray, PageCacheFile } from '../lib/index.js';

const ITERATIONS = 1500;

let worker: Worker | null = null;
afterEach(async () => {
  await worker?.terminate();
  worker = null;
});

/** A worker that writes `a` then `b` into word `word` of `sab`, forever. */
function flipper(sab: SharedArrayBuffer, word: number, a: number, b: number): Worker {
  return new Worker(
    `const { workerData: d } = require('node:worker_threads');
     const w = new Uint32Array(d.sab);
     for (;;) { w[d.word] = d.a; w[d.word] = d.b; }`,
    { eval: true, workerData: { sab, word, a, b } },
  );
}

function shared(template: Uint32Array): Uint32Array {
  const ops = new Uint32Array(new SharedArrayBuffer(template.byteLength));
  ops.set(template);
  return ops;
}

describe('submit of a batch another thread rewrites', () => {
  it('the records follow the munmap that ran: a truncate zaps the file mapping and nothing else', () => {
    const ops = shared(new OpBatch().push('munmap', { mm: 1, a: 0, b: 32 }).toArray());
    worker = flipper(ops.buffer as SharedArrayBuffer, 3, 32, 1); // word 3: the munmap's count
    const seen = new Set<number>();
    for (let i = 0; i < ITERATIONS; i++) {
      const mem = new PageArray({ pages: 1024, populated: false });
      const mm = new AddressSpace(mem, { pages: 256 });
      const f = new PageCacheFile(mem, { name: 'f', pages: 32 });
      mm.mmap({ start: 0, count: 32, file: f });
      mem.submit(ops);
      const ran = mm.translate(1) === null ? 32 : 1;
      seen.add(ran);
      if (ran === 32) {
        mm.mmap({ start: 1, count: 31, populate: true }); // anonymous memory where the file was
        f.truncate(0);
        expect(mm.translate(5), `iteration ${i}: a truncate zapped anonymous memory`).not.toBeNull();
      } else {
        f.truncate(0);
        expect(mm.translate(5), `iteration ${i}: a page the file dropped stays mapped`).toBeNull();
      }
      mem.dispose();
    }
    expect(seen.size).toBeGreaterThan(0);
  });

  it('a fork the check would refuse never runs, whatever the batch reads as afterwards', () => {
    const template = new OpBatch().push('fork', { mm: 1, a: 2 }).toArray();
    const ops = shared(template);
    const fork = template[0]!, compact = (template[0]! & ~0xff) | OP_CODES.compact;
    worker = flipper(ops.buffer as SharedArrayBuffer, 0, fork, compact);
    for (let i = 0; i < ITERATIONS; i++) {
      const mem = new PageArray({ pages: 1024, populated: false });
      const mm = new AddressSpace(mem, { pages: 256 });
      const f = new PageCacheFile(mem, { name: 'f', pages: 4 });
      mm.mmap({ start: 0, count: 4, file: f });
      try {
        mem.submit(ops);
      } catch {
        // refused as documented (a batch fork of a space that maps files): nothing ran
      }
      expect(AddressSpace.byId(mem, 2), `iteration ${i}: a batch fork ran`).toBeNull();
      mem.dispose();
    }
  });
});
