// Op stream format version 2: an address space's kernel rules and THP orders are recorded with
// its creation and replayed (live, recorded, replayed and submitted states agree); version 1
// streams still replay as before; bad settings are refused naming the record, nothing changed.
// Also the single-page batch path: its results and state match one call per op.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, OpBatch, PageArray, PinlabError, SCHEMES, runReplay, stateDigest, type StateDigest } from '../lib/index.js';

import { rechecksum } from './ops-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-ops-v2-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MEM = { pages: 1 << 14, populated: false, debug: true, scheme: 'bias', pinBias: 64 } as const;

function expectSame(a: StateDigest, b: StateDigest, what: string): void {
  expect(a.pages, `${what}: pages`).toBe(b.pages);
  expect(a.freeBlocks, `${what}: free lists`).toBe(b.freeBlocks);
  expect(a.zeroPfn, `${what}: zero page`).toBe(b.zeroPfn);
  expect(a.spaces, `${what}: page tables`).toBe(b.spaces);
  expect(a.stats, `${what}: stats`).toEqual(b.stats);
  expect(a.mmStats, `${what}: mm stats`).toEqual(b.mmStats);
}

/**
 * A simulation whose end state depends on its address spaces' settings: a long-term read pin of
 * zero-page entries (mainline unshares them, '2019' pins nothing), write faults in a huge region
 * (mTHP order 4 folios, or 2 MiB ones), and a fork that inherits both.
 */
function simulate(mem: PageArray, options: { rules?: '2019' | 'mainline' | { longtermFileWrites: 'allow' }; thpOrders?: number[] }): AddressSpace {
  const mm = new AddressSpace(mem, { pages: 4096, ...options });
  mm.mmap({ start: 0, count: 64 });
  mm.touch(0, 16); // read faults: the zero page
  mm.pinUserPagesFast(0, 16, { longterm: true });
  mm.mmap({ start: 512, count: 512, huge: true });
  mm.touch(512, 64, { write: true });
  const child = mm.fork();
  child.touch(512, 16, { write: true });
  return mm;
}

describe('format version 2: rules and thpOrders', () => {
  it("records an address space's rules and THP orders, and replay, submit and the text form keep them", async () => {
    const mem = new PageArray(MEM);
    const rec = mem.record();
    const mm = simulate(mem, { rules: '2019', thpOrders: [4, 9] });
    rec.stop();
    const file = join(dir, 'rules.pkops');
    rec.save(file);
    rec.save(`${file}.txt`);
    const text = readFileSync(`${file}.txt`, 'utf8');
    expect(text).toMatch(/^pkops 3 /m);
    expect(text).toMatch(/^mm#1 mm-new 4096 thp-orders=4,9 zero-page-unshare=0 longterm-file-writes=allow migrate-pte-mapped-thp=0 anon-exclusive=0$/m);
    const live = stateDigest(mem);
    for (const f of [file, `${file}.txt`]) {
      const doc = await runReplay({ file: f, schemes: ['bias'], bias: [64], endState: true });
      expect(doc.schemes[0]!.diverged, f).toBe(0);
      expectSame(doc.schemes[0]!.endState!, live, `replay of ${f}`);
    }
    const fresh = new PageArray(MEM);
    fresh.submit(rec.buffer());
    expectSame(stateDigest(fresh), live, 'submit');
    const again = AddressSpace.byId(fresh, 1)!;
    expect(again.rules).toEqual(mm.rules);
    expect(again.thpOrders).toEqual([4, 9]);
    expect(AddressSpace.byId(fresh, 2)!.rules).toEqual(mm.rules); // the fork inherited them
    // And the settings matter: the same simulation under the defaults ends elsewhere.
    const plain = new PageArray(MEM);
    simulate(plain, {});
    expect(stateDigest(plain).pages).not.toBe(live.pages);
  });

  it('the defaults record as 0, which version 1 streams hold: an old stream replays as before', async () => {
    const mem = new PageArray(MEM);
    const rec = mem.record();
    simulate(mem, {});
    rec.stop();
    const buf = rec.buffer();
    expect(buf[3]).toBe(0); // mm-new's settings word
    const file = join(dir, 'v1.pkops');
    rec.save(file);
    // The same bytes as version 1 (the version field and the header checksum patched).
    const bytes = readFileSync(file);
    expect(bytes.readUInt32LE(8)).toBe(3);
    bytes.writeUInt32LE(1, 8);
    rechecksum(bytes);
    writeFileSync(file, bytes);
    const live = stateDigest(mem);
    const doc = await runReplay({ file, schemes: ['bias'], bias: [64], endState: true });
    expect(doc.schemes[0]!.diverged).toBe(0);
    expectSame(doc.schemes[0]!.endState!, live, 'version 1 replay');
    const text = join(dir, 'v1.pkops.txt');
    writeFileSync(text, 'pkops 1 pages=1024 populated=0 scheme=bias\nmm#1 mm-new 64\nmm#1 mmap 0 8 write populate\nmm#1 touch 0 8 write\n');
    const t = await runReplay({ file: text, schemes: ['bias'] });
    expect(t.schemes[0]!.refused).toBe(0);
    expect(t.schemes[0]!.ops).toBe(3);
  });
});

async function refusal(file: string): Promise<PinlabError> {
  const err = await runReplay({ file }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PinlabError);
  expect((err as PinlabError).code).toBe('EINVAL');
  return err as PinlabError;
}

describe('hostile settings are refused naming the record, nothing changed', () => {
  // Field values no rule takes, unknown rule bits, THP orders 0 and 1, bits 10-15.
  const BAD = [2 << 16, 3 << 18, 2 << 20, 2 << 22, 2 << 24, 1 << 26, 1 << 31, 1, 2, 1 << 10];

  it('in a batch', () => {
    const mem = new PageArray({ pages: 1024, debug: true });
    const live = new AddressSpace(mem, { pages: 64 });
    mem.pinPages({ start: 5, count: 1 });
    const before = stateDigest(mem);
    for (const b of BAD) {
      const batch = new OpBatch().push('pin', { a: 0, b: 1 }).push('mm-new', { mm: 2, a: 64, b }).push('mmap', { mm: 2, a: 0, b: 8 }).toArray();
      expect(() => mem.submit(batch), String(b)).toThrow(/ops: record 1: mm-new settings/);
    }
    expect(stateDigest(mem)).toEqual(before);
    expect(AddressSpace.byId(mem, 2)).toBeNull();
    // The next creation still takes id 2: the refused batches used up nothing.
    expect(new AddressSpace(mem, { pages: 8 }).id).toBe(2);
    expect(live.id).toBe(1);
  });

  it('in binary and text files, and in a version 1 file', async () => {
    const mem = new PageArray({ pages: 1024, populated: false });
    const rec = mem.record();
    new AddressSpace(mem, { pages: 64, rules: '2019' }).mmap({ start: 0, count: 8, populate: true });
    rec.stop();
    const good = join(dir, 'good.pkops');
    rec.save(good);
    const bytes = readFileSync(good);
    const settingsAt = 96 + 12; // record 0 (mm-new), word 3
    expect(bytes.readUInt32LE(settingsAt)).not.toBe(0);
    for (const b of BAD) {
      const bad = Buffer.from(bytes);
      bad.writeUInt32LE(b >>> 0, settingsAt);
      rechecksum(bad);
      writeFileSync(join(dir, 'bad.pkops'), bad);
      expect((await refusal(join(dir, 'bad.pkops'))).message).toMatch(/record 0: mm-new settings/);
    }
    const v1 = Buffer.from(bytes);
    v1.writeUInt32LE(1, 8);
    rechecksum(v1);
    writeFileSync(join(dir, 'v1bad.pkops'), v1);
    expect((await refusal(join(dir, 'v1bad.pkops'))).message).toMatch(/record 0: mm-new settings in a version 1 stream/);
    const text = join(dir, 'bad.pkops.txt');
    writeFileSync(text, 'pkops 2 pages=1024\nmm#1 mm-new 64 settings=131072\n');
    expect((await refusal(text)).message).toMatch(/record 0: mm-new settings/);
    writeFileSync(text, 'pkops 2 pages=1024\nmm#1 mm-new 64 longterm-file-writes=sometimes\n');
    expect((await refusal(text)).message).toMatch(/line 2: .*value/);
    writeFileSync(text, 'pkops 2 pages=1024\nmm#1 mm-new 64 thp-orders=1,9\n');
    expect((await refusal(text)).message).toMatch(/line 2: thp-orders/);
  });
});

describe('single-page batches', () => {
  it('end in the state and results of one call per op, under every scheme, debug or not', () => {
    for (const scheme of SCHEMES) {
      for (const debug of [false, true]) {
        const opts = { pages: 256, scheme, debug, pinBias: 64 };
        const one = new PageArray(opts);
        const batched = new PageArray(opts);
        const batch = new OpBatch();
        const expected: number[] = [];
        let seed = 17;
        const rnd = (n: number): number => {
          seed = (seed * 1103515245 + 12345) >>> 0;
          return (seed >>> 8) % n;
        };
        for (let i = 0; i < 1200; i++) {
          const pfn = rnd(40) === 0 ? 256 + rnd(3) : rnd(12);
          const write = rnd(2) === 1;
          const pin = rnd(2) === 0;
          const flags = write ? (['write'] as const) : ([] as const);
          try {
            if (pin) one.pinPages({ start: pfn, count: 1 }, { write });
            else one.unpinPages({ start: pfn, count: 1 }, { write });
            expected.push(1);
          } catch (e) {
            expected.push(-1); // a refusal: compared by sign below, the codes by the digest's stats
            void e;
          }
          batch.push(pin ? 'pin' : 'unpin', { a: pfn, b: 1, flags: [...flags] });
        }
        const results = batched.submit(batch.toArray(), { onError: 'continue' });
        expect(Array.from(results, (r) => Math.sign(r))).toEqual(expected);
        expect(expected.filter((r) => r < 0).length).toBeGreaterThan(0);
        const a = stateDigest(one);
        const b = stateDigest(batched);
        expect(b.pages, `${scheme} debug ${debug}`).toBe(a.pages);
        // (In debug mode the JS layer refuses a bad unpin itself, before the core counts a
        // rollback; a batch goes around it: README, Batches.)
        if (!debug) expect(b.stats, `${scheme}`).toEqual(a.stats);
        else expect([b.stats.pinAcquired, b.stats.pinReleased]).toEqual([a.stats.pinAcquired, a.stats.pinReleased]);
      }
    }
  });
});
