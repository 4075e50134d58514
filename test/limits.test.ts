// Sizes and counts that cannot be had: threads the system will not start, numbers that would
// wrap, results and files too big to allocate. Each is a PinlabError (EAGAIN, EINVAL, ENOMEM,
// EFAULT), never an abort, a wrapped value or a hang. The allocation cases run in a child
// process under an address-space limit (ulimit -v), where they used to abort the process.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, describe, expect, it } from 'vitest';

import { main } from '../lib/cli.js';
import { DIST, DIST_NATIVE, DIST_PROFILE, describeChild, runChild } from './child.js';

// ---- threads ----------------------------------------------------------------------------------

describe('native threads that cannot be started', () => {
  // PINLAB_TEST_THREAD_LIMIT=k: the addon's test hook refuses every thread start after k, as a
  // system at its limit does. Before, std::thread's constructor threw std::system_error with
  // threads already started and joinable: std::terminate.
  const script = `
    import { runStress, PinlabError } from '${DIST}';
    import { runProfile } from '${DIST_PROFILE}';
    import { native } from '${DIST_NATIVE}';
    const outcome = async (p) => { try { await p; return 'resolved'; } catch (e) { return e instanceof PinlabError ? e.message : 'other: ' + e; } };
    const out = {};
    out.stress = await outcome(runStress({ threads: 16, durationMs: 100 }));
    out.bench = await outcome(native.runBench([{ op: 'pin-unpin', scheme: 'bias', perPage: false, order: 0, listInput: false, threads: 8, sharing: 'private', bufferPages: 512, pagesPerCall: 0 }], { trials: 2, trialMs: 1 }));
    out.profile = await outcome(runProfile({ population: { pages: 4096, seed: 1, orders: [{ order: 0, weight: 1 }], refs: { kind: 'fixed', value: 1 }, freeFraction: 0, pinnedFraction: 0.1, pinsPerPinned: { kind: 'fixed', value: 1 }, writeFraction: 0.5 }, schemes: ['hybrid'], threads: 8, sampleFolios: 0 }));
    console.log(JSON.stringify(out));
  `;

  it('runStress, runBench and runProfile reject with EAGAIN after joining what started', () => {
    const r = runChild(script, { env: { PINLAB_TEST_THREAD_LIMIT: '5' } });
    expect(r.status, describeChild(r)).toBe(0);
    const out = r.out as Record<string, string>;
    expect(out['stress']).toMatch(/^EAGAIN: could not start native thread 6 of 16/);
    expect(out['bench']).toMatch(/^EAGAIN: could not start native thread \d of 8/);
    expect(out['profile']).toMatch(/^EAGAIN: could not start native thread \d of 8/);
  });

  it('a real limit: 256 stress threads with 256 MiB stacks in an 8 GB address space', () => {
    const r = runChild(
      `
      import { runStress, PinlabError } from '${DIST}';
      let outcome;
      try { const rep = await runStress({ threads: 256, durationMs: 50 }); outcome = rep.balanced ? 'balanced' : 'unbalanced'; }
      catch (e) { outcome = e instanceof PinlabError ? e.code : String(e); }
      console.log(JSON.stringify({ outcome }));
    `,
      { ulimits: ['-s 262144', '-v 8000000'] },
    );
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.stderr).not.toMatch(/terminate called/);
    // On any machine: refused with EAGAIN, or (with room for every stack) a clean run.
    expect(['EAGAIN', 'balanced']).toContain((r.out as { outcome: string }).outcome);
  });
});

// ---- numbers that would wrap --------------------------------------------------------------------

function capture(): { io: { out: Writable; err: Writable }; text: () => string } {
  let buf = '';
  const sink = () => new Writable({ write(chunk, _enc, cb) { buf += String(chunk); cb(); } });
  return { io: { out: sink(), err: sink() }, text: () => buf };
}

describe('numeric options are integers in their documented range, never wrapped', () => {
  const cases: [string[], RegExp][] = [
    [['bench', '--threads', '4294967297'], /--threads: '4294967297' is not an integer in 1\.\.1024/],
    [['bench', '--threads', '0'], /--threads/],
    [['bench', '--threads', '1,1025'], /--threads: '1025'/],
    [['bench', '--trials', '4294967296'], /--trials: '4294967296' is not an integer in 1\.\.1000/],
    [['bench', '--trials', '0'], /--trials/],
    [['bench', '--order', '4294967305'], /--order/],
    [['bench', '--pages-per-call', '18446744073709551616'], /--pages-per-call/],
    [['bench', '--duration', '1e12'], /--duration/],
    [['bench', '--size', '99999999999'], /--size/],
    [['bench', '--size', '0'], /--size/],
    [['profile', '--threads', '4294967297'], /--threads: '4294967297' is not an integer in 1\.\.1024/],
    [['profile', '--pages', '2147483649'], /--pages/],
    [['profile', '--seed', '9007199254740993'], /--seed/],
    [['profile', '--bias', '4294968320'], /--bias/],
    [['snapshot', '--out', '/nonexistent/x.pksnap', '--max-pages', '2199023255553'], /--max-pages/],
  ];
  for (const [argv, message] of cases) {
    it(`pinlab ${argv.join(' ')}: usage error (exit 64)`, async () => {
      const { io, text } = capture();
      const code = await main(argv, io);
      expect(code, text()).toBe(64);
      expect(text()).toMatch(message);
    });
  }
});

// ---- allocation: results, populations and files too big ----------------------------------------

describe('sizes that cannot be allocated are ENOMEM (or refused first), never an abort', () => {
  it('a 2^31-page gup, a huge debug result and a huge bvec list under ulimit -v', () => {
    const r = runChild(
      `
      import { PageArray, AddressSpace, PinlabError } from '${DIST}';
      const outcome = (f) => { try { return f(); } catch (e) { return e instanceof PinlabError ? e.code : 'other: ' + e; } };
      const out = {};
      // An address space of 2^31 pages with 16 mapped: the gup returns those 16 without
      // allocating 8 GiB first (before: V8's fatal out-of-memory).
      const mem = new PageArray({ pages: 1 << 16, populated: false });
      const mm = new AddressSpace(mem, { pages: 2 ** 31 });
      mm.mmap({ start: 0, count: 16, populate: true });
      out.gup = outcome(() => { const g = mm.pinUserPagesFast(0, 2 ** 31); mm.unpinUserPages(g.pfns); return g.count; });
      out.gupOutside = outcome(() => mm.pinUserPagesFast(2 ** 31 - 8, 2 ** 28).count);
      // 2^28 pages in debug mode: a per-page result of 1 GiB, and a bvec list of 4 GiB.
      const big = outcome(() => new PageArray({ pages: 2 ** 28, debug: true, populated: false }));
      out.debugPagePins = typeof big === 'string' ? big : outcome(() => big.debugPagePins({ start: 0, count: 2 ** 28 }).length);
      out.toBvecs = typeof big === 'string' ? big : outcome(() => big.toBvecs({ start: 0, count: 2 ** 28 }).length);
      const s = mem.stats();
      console.log(JSON.stringify({ ...out, balanced: s.pinAcquired === s.pinReleased }));
    `,
      { ulimits: ['-v 4000000'] },
    );
    expect(r.status, describeChild(r)).toBe(0);
    const out = r.out as Record<string, unknown>;
    expect(out['gup']).toBe(16);
    expect(out['gupOutside']).toBe('EFAULT');
    expect(out['debugPagePins']).toBe('ENOMEM');
    expect(out['toBvecs']).toBe('ENOMEM');
    expect(out['balanced']).toBe(true);
  });

  it('a population too big for memory: runProfile rejects with ENOMEM', () => {
    const r = runChild(
      `
      import { PinlabError } from '${DIST}';
      import { runProfile } from '${DIST_PROFILE}';
      let outcome;
      try { await runProfile({ population: { pages: 2 ** 31, seed: 1, orders: [{ order: 0, weight: 1 }], refs: { kind: 'fixed', value: 1 }, freeFraction: 0, pinnedFraction: 0, pinsPerPinned: { kind: 'fixed', value: 1 }, writeFraction: 0 }, schemes: ['hybrid'], threads: 1, sampleFolios: 0 }); outcome = 'resolved'; }
      catch (e) { outcome = e instanceof PinlabError ? e.code : 'other: ' + e.message; }
      console.log(JSON.stringify({ outcome }));
    `,
      { ulimits: ['-v 4000000'], timeoutMs: 60_000 },
    );
    expect(r.status, describeChild(r)).toBe(0);
    expect(r.out).toEqual({ outcome: 'ENOMEM' });
  });
});

// ---- crafted .pksnap files -----------------------------------------------------------------------

function varint(v: bigint): number[] {
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

/** A .pksnap file (snapshot.h's format, checksum included) with the given header and runs. */
function pksnap(pages: bigint, folios: bigint, runs: { gap: bigint; order: number; count: bigint }[]): Buffer {
  const body = runs.flatMap((r) => [...varint(r.gap), ...varint(BigInt(r.order)), ...varint(1n), ...varint(1n), ...varint(r.count)]);
  const head = Buffer.alloc(60);
  head.write('PKSNAP1\0', 0, 'latin1');
  head.writeUInt32LE(1, 8);
  head.writeBigUInt64LE(pages, 16);
  head.writeBigUInt64LE(folios, 24);
  head.writeBigUInt64LE(BigInt(body.length), 48);
  const file = Buffer.concat([head, Buffer.from(body), Buffer.alloc(8)]);
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < file.length - 8; i++) h = ((h ^ BigInt(file[i]!)) * 0x100000001b3n) & 0xffffffffffffffffn;
  file.writeBigUInt64LE(h, file.length - 8);
  return file;
}

describe('crafted .pksnap files are checked against what they can hold before allocating', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinlab-pksnap-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const files: Record<string, Buffer> = {
    // A few bytes that claim 2^40 folios: decoded, 16 TiB of folios.
    'claims 2^40 folios': pksnap(2n ** 40n, 2n ** 40n, [{ gap: 0n, order: 0, count: 2n ** 40n }]),
    // More pages than a PageArray can hold: profiling it expanded 2^31 population entries first.
    'spans 2^31 + 512 pages': pksnap(2n ** 31n + 512n, 1n, [{ gap: 0n, order: 9, count: 1n }]),
    // Exactly a PageArray's limit, every page a folio: 32 GiB of folios, refused or ENOMEM.
    'claims 2^31 folios in 2^31 pages': pksnap(2n ** 31n, 2n ** 31n, [{ gap: 0n, order: 0, count: 2n ** 31n }]),
  };
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, `${name}.pksnap`), bytes);
  const fifo = join(dir, 'fifo.pksnap');
  const hasFifo = spawnSync('mkfifo', [fifo]).status === 0;

  const script = `
    import { PinlabError } from '${DIST}';
    import { runProfile } from '${DIST_PROFILE}';
    const file = process.env.SNAP;
    const t0 = Date.now();
    let outcome;
    try { await runProfile({ snapshot: file, schemes: ['hybrid'], threads: 1, sampleFolios: 0 }); outcome = 'resolved'; }
    catch (e) { outcome = e instanceof PinlabError ? e.message : 'other: ' + e.message; }
    console.log(JSON.stringify({ outcome, ms: Date.now() - t0 }));
  `;
  const expected: Record<string, RegExp> = {
    'claims 2^40 folios': /^EINVAL: .* spans 1099511627776 pages, more than the 2147483648 this can use/,
    'spans 2^31 + 512 pages': /^EINVAL: .* spans 2147484160 pages, more than the 2147483648/,
    'claims 2^31 folios in 2^31 pages': /^ENOMEM: /,
  };
  for (const name of Object.keys(files)) {
    it(`${name} (${files[name]!.length} bytes): ${String(expected[name])}`, () => {
      const r = runChild(script, { env: { SNAP: join(dir, `${name}.pksnap`) }, ulimits: ['-v 4000000'], timeoutMs: 60_000 });
      expect(r.status, describeChild(r)).toBe(0);
      const out = r.out as { outcome: string; ms: number };
      expect(out.outcome).toMatch(expected[name]!);
      expect(out.ms).toBeLessThan(10_000);
    });
  }

  it.skipIf(!hasFifo)('a FIFO is refused, not waited on', () => {
    const r = runChild(script, { env: { SNAP: fifo }, timeoutMs: 20_000 });
    expect(r.status, describeChild(r)).toBe(0);
    expect((r.out as { outcome: string }).outcome).toMatch(/^EINVAL: .*not a regular file/);
  });
});
