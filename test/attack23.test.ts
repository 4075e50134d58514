// Attack on op streams (issue 14: mem.record(), mem.submit(), runReplay, `pinlab replay`, the
// examples' --out and --trace): options read more than once or not checked, paths cut short at
// a NUL byte, typed arrays whose species or length lie, a batch re-entered from a getter, a
// report half written when Ctrl-C lands during the writing, outputs written through links, a
// recorder left inconsistent by a failed allocation, and the ids of creations that never ran.
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';

import { afterAll, describe, expect, it } from 'vitest';

import {
  AddressSpace,
  OP_CODES,
  OP_NOT_RUN,
  OP_RECORD_WORDS,
  OpBatch,
  PageArray,
  PinlabError,
  ReportStopped,
  runReplay,
  type ReplayOptions,
} from '../lib/index.js';
import { native } from '../lib/native.js';
import { replayCommand } from '../lib/ops/cli.js';
import { writeReportFiles } from '../lib/report/files.js';

import { gcFunction } from './helpers.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'pinlab-attack23-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
const fresh = (name: string): string => join(dir, `${++seq}-${name}`);

/** A small recorded stream at `file`: an address space, a pin and its unpin. */
function recordSmall(file: string): void {
  const mem = new PageArray({ pages: 1 << 12, populated: false, debug: true, scheme: 'hybrid' });
  const rec = mem.record();
  const mm = new AddressSpace(mem, { pages: 1024 });
  mm.mmap({ start: 0, count: 256, populate: true });
  const { pfns } = mm.pinUserPagesFast(0, 64, { write: true });
  mm.unpinUserPages(pfns, { write: true });
  mm.munmap({ start: 0, count: 1024 });
  rec.stop();
  rec.save(file);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (e: unknown) => e,
  );
}

async function expectEinval(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(PinlabError);
  expect((e as PinlabError).code).toBe('EINVAL');
  expect((e as PinlabError).message).toMatch(pattern);
}

function expectThrowsCode(fn: () => unknown, code: string, pattern?: RegExp): void {
  let caught: unknown = null;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PinlabError);
  expect((caught as PinlabError).code).toBe(code);
  if (pattern !== undefined) expect((caught as PinlabError).message).toMatch(pattern);
}

/** The op records of a batch or recording: [code, n] per op. */
function opsOf(words: Uint32Array): { code: number; n: number }[] {
  const out: { code: number; n: number }[] = [];
  for (let i = 0; i < words.length; ) {
    const n = words[i + 4]!;
    out.push({ code: words[i]! & 0xff, n });
    i += OP_RECORD_WORDS * (1 + Math.ceil(n / 5));
  }
  return out;
}

// ---- 1. runReplay's options ---------------------------------------------------------------------

describe('runReplay reads each option once and checks them all before it starts', () => {
  const stream = fresh('small.pkops');
  recordSmall(stream);

  it('a signal that is not an AbortSignal, an onProgress that is not a function, schemes: 5 are EINVAL rejections', async () => {
    await expectEinval(runReplay({ file: stream, signal: {} as AbortSignal }), /signal must be an AbortSignal/);
    await expectEinval(runReplay({ file: stream, signal: { aborted: false, addEventListener() {}, removeEventListener() {} } as unknown as AbortSignal }), /signal/);
    await expectEinval(runReplay({ file: stream, onProgress: 'yes' as unknown as ReplayOptions['onProgress'] }), /onProgress must be a function/);
    await expectEinval(runReplay({ file: stream, schemes: 5 as unknown as ReplayOptions['schemes'] }), /schemes must be/);
    await expectEinval(runReplay({ file: stream, endState: 1 as unknown as boolean }), /endState must be a boolean/);
  });

  it('bias 0, rules -1 (the native side\'s "the stream\'s own") and other out-of-range values are refused', async () => {
    await expectEinval(runReplay({ file: stream, bias: 0 }), /bias must hold powers of two/);
    await expectEinval(runReplay({ file: stream, bias: [1024, 3] }), /bias must hold powers of two/);
    await expectEinval(runReplay({ file: stream, bias: 1 << 21 }), /bias/);
    await expectEinval(runReplay({ file: stream, rules: -1 }), /rules must hold integers in 1\.\.31/);
    await expectEinval(runReplay({ file: stream, rules: [1, 32] }), /rules/);
    const ok = await runReplay({ file: stream, schemes: 'hybrid' as unknown as ReplayOptions['schemes'], bias: 64, rules: [1, 2] });
    expect(ok.schemes.map((s) => [s.scheme, s.bias, s.pincountMinOrder])).toEqual([
      ['hybrid', 64, 1],
      ['hybrid', 64, 2],
    ]);
  });

  it('every option is read exactly once; the file replayed, reported and measured is the first one read', async () => {
    const other = fresh('other.pkops.txt');
    await runReplay({ file: stream, schemes: ['bias'] }); // warm
    await native.startConvert(stream, other).promise;
    expect(statSync(other).size).not.toBe(statSync(stream).size);
    const reads = new Map<string, number>();
    const files = [stream, other, other, other, other, other];
    const values: Record<string, unknown> = {
      schemes: ['bias', 'hybrid'],
      bias: 1024,
      rules: 1,
      threads: 1,
      debug: true,
      endState: false,
      signal: new AbortController().signal,
      onProgress: () => undefined,
    };
    const options = {} as ReplayOptions;
    for (const key of ['file', ...Object.keys(values)]) {
      Object.defineProperty(options, key, {
        enumerable: true,
        get() {
          const n = (reads.get(key) ?? 0) + 1;
          reads.set(key, n);
          return key === 'file' ? files[n - 1] : values[key];
        },
      });
    }
    const r = await runReplay(options);
    for (const key of ['file', ...Object.keys(values)]) expect(reads.get(key), key).toBe(1);
    expect(r.stream.file).toBe(stream);
    expect(r.stream.bytes).toBe(statSync(stream).size);
    expect(r.schemes.map((s) => s.scheme)).toEqual(['bias', 'hybrid']);
  });

  it("stream.bytes is the native side's count of what it read, for the text form too", async () => {
    const text = fresh('small.pkops.txt');
    const job = native.startConvert(stream, text);
    await job.promise;
    const r = await runReplay({ file: text, schemes: ['bias'] });
    expect(r.stream.bytes).toBe(statSync(text).size);
    const raw = await native.startReplay({ file: stream, variants: [{ scheme: 'bias', bias: 0, pincountMinOrder: -1 }], threads: 0, debug: -1, digest: false }, () => undefined).promise;
    expect(raw.stream.bytes).toBe(statSync(stream).size);
  });
});

// ---- 2. NUL bytes in paths ---------------------------------------------------------------------

describe('a path with a NUL byte is refused, never cut short', () => {
  it('save(), startReplay, startSynth, startConvert and takeSnapshot refuse it in the addon (EINVAL), writing nothing', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    mem.pinPages({ start: 0, count: 1 });
    rec.stop();
    const short = fresh('cut');
    expectThrowsCode(() => rec.save(`${short}\0.txt`), 'EINVAL', /NUL/);
    expect(existsSync(short)).toBe(false);
    const variants = [{ scheme: 'bias', bias: 0, pincountMinOrder: -1 }];
    expectThrowsCode(() => native.startReplay({ file: `${short}\0x`, variants, threads: 0, debug: -1, digest: false }, () => undefined), 'EINVAL', /NUL/);
    const synth = { ops: 10, seed: 1, threads: 1, pages: 1024, scheme: 'bias', bias: 1024, debug: false, mix: 'pages' };
    expectThrowsCode(() => native.startSynth(`${short}\0.pkops`, synth, () => undefined), 'EINVAL', /NUL/);
    expectThrowsCode(() => native.startConvert(`${short}\0a`, `${short}-out`), 'EINVAL', /NUL/);
    expectThrowsCode(() => native.startConvert(`${short}-in`, `${short}\0b`), 'EINVAL', /NUL/);
    expect(existsSync(short)).toBe(false);
  });

  it("the args.cpp reader (takeSnapshot's path) refuses it too, and runReplay before the addon", async () => {
    const short = fresh('snap');
    expectThrowsCode(() => native.takeSnapshot(`${short}\0x`, 1, () => undefined), 'EINVAL', /NUL/);
    const stream = fresh('nul.pkops');
    recordSmall(stream);
    await expectEinval(runReplay({ file: `${stream}\0junk` }), /NUL/);
  });
});

// ---- 3. submit's copy ---------------------------------------------------------------------------

function twoPins(): Uint32Array {
  return new OpBatch().push('pin', { a: 1, b: 1 }).push('unpin', { a: 1, b: 1 }).toArray();
}

describe("mem.submit copies the batch by the built-ins, not the array's own species or length", () => {
  it('a subclass whose Symbol.species returns a longer array runs (and records) its own ops only', () => {
    const extra = new OpBatch().push('get', { a: 2, b: 1 }).toArray();
    class Species extends Uint32Array {}
    Object.defineProperty(Species, Symbol.species, {
      get: () =>
        function (n: number) {
          const a = new Uint32Array(n + extra.length);
          a.set(extra, n);
          return a;
        },
    });
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    const ops = new Species(twoPins());
    const results = mem.submit(ops);
    rec.stop();
    expect(Array.from(results)).toEqual([1, 1]);
    expect(mem.refcount(2)).toBe(1); // the smuggled get did not run
    expect(rec.count).toBe(2);
    expect(opsOf(rec.buffer()).length).toBe(2);
  });

  it('a subclass whose length (or subarray) lies is recorded as it ran', () => {
    class Liar extends Uint32Array {}
    Object.defineProperty(Liar.prototype, 'length', { get: () => 0 });
    Object.defineProperty(Liar.prototype, 'subarray', { value: () => new Uint32Array(0) });
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    const results = mem.submit(new Liar(twoPins()));
    rec.stop();
    expect(Array.from(results)).toEqual([1, 1]);
    expect(rec.count).toBe(2);
    const again = new PageArray({ pages: 1 << 10, populated: true });
    expect(Array.from(again.submit(rec.buffer()))).toEqual([1, 1]);
  });
});

// ---- 4. stableList through the built-ins --------------------------------------------------------

describe('lists are read by the built-in getters, not their own length', () => {
  class Short extends Uint32Array {}
  Object.defineProperty(Short.prototype, 'length', { get: () => 0 });

  it('pinPages/unpinPages of a list whose length lies are recorded with every PFN the engine ran', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    mem.pinPages(new Short([3, 4, 5]));
    mem.unpinPages(new Short([3, 4, 5]));
    rec.stop();
    expect(opsOf(rec.buffer()).map((o) => o.n)).toEqual([3, 3]);
    const again = new PageArray({ pages: 1 << 10, populated: true });
    expect(Array.from(again.submit(rec.buffer()))).toEqual([3, 3]);
    expect(again.stats().pinAcquired).toBe(3);
  });

  it("unpinUserPages of such a list is recorded with its PFNs and its count", () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false, debug: true });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 256 });
    mm.mmap({ start: 0, count: 16, populate: true });
    const { pfns } = mm.pinUserPagesFast(0, 4, { write: true });
    mm.unpinUserPages(new Short(pfns), { write: true });
    rec.stop();
    const ops = opsOf(rec.buffer());
    expect(ops.at(-1)!.n).toBe(4);
    const words = rec.buffer();
    expect(words[words.length - OP_RECORD_WORDS * 2 + 5]).toBe(4); // its result: 4 pages
  });
});

// ---- 5. a report is written all or none ---------------------------------------------------------

describe('report files: all or none, and Ctrl-C during the writing writes nothing', () => {
  it('a stop (signal) while the files are written leaves no file and no temporary', async () => {
    const out = fresh('report');
    mkdirSync(out);
    writeFileSync(join(out, 'results.json'), 'old');
    const ac = new AbortController();
    const files = [
      { name: 'results.json', data: 'new' },
      {
        name: 'results.md',
        get data() {
          ac.abort();
          return '# new';
        },
      },
      { name: 'chart.svg', data: '<svg/>' },
    ];
    const e = await rejection(writeReportFiles(out, files, { signal: ac.signal }));
    expect(e).toBeInstanceOf(ReportStopped);
    expect(e).toBeInstanceOf(PinlabError);
    expect(readdirSync(out).sort()).toEqual(['results.json']);
    expect(readFileSync(join(out, 'results.json'), 'utf8')).toBe('old');
  });

  it('a file refused after others were written changes none of them', async () => {
    const out = fresh('report');
    mkdirSync(out);
    writeFileSync(join(out, 'results.json'), 'old');
    const files = [
      { name: 'results.json', data: 'new' },
      {
        name: 'results.md',
        get data() {
          mkdirSync(join(out, 'results.md')); // a folder appears where the second file goes
          return '# new';
        },
      },
    ];
    await expect(writeReportFiles(out, files)).rejects.toThrow(/results\.md.*directory/);
    expect(readFileSync(join(out, 'results.json'), 'utf8')).toBe('old');
    expect(readdirSync(out).sort()).toEqual(['results.json', 'results.md']);
  });

  it('pinlab replay --out: Ctrl-C once the replay is done and the report is being written exits 130 with nothing written', async () => {
    const stream = fresh('cli.pkops');
    recordSmall(stream);
    const out = fresh('cli-out');
    const err = new PassThrough() as PassThrough & { isTTY: boolean; columns: number };
    err.isTTY = true;
    err.columns = 80;
    let text = '';
    let fired = false;
    const write = err.write.bind(err);
    err.write = ((chunk: string, ...rest: never[]) => {
      text += chunk;
      // progress.done() clears the bar once the replay has finished: Ctrl-C lands there.
      if (!fired && chunk === '\r\x1b[K') {
        fired = true;
        process.emit('SIGINT');
      }
      return write(chunk, ...rest);
    }) as typeof err.write;
    const stdout = new PassThrough();
    let printed = '';
    stdout.on('data', (d: Buffer) => (printed += d.toString()));
    const status = await replayCommand([stream, '--scheme', 'bias', '--out', out], { out: stdout, err });
    expect(fired).toBe(true);
    expect(status).toBe(130);
    expect(text).toMatch(/stopped; nothing written/);
    expect(printed).toBe('');
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
    expect(process.listenerCount('SIGINT')).toBe(0); // the handler is removed once done
  });
});

// ---- 6. OpBatch.push re-entered -----------------------------------------------------------------

describe('OpBatch.push re-entered from a getter keeps the batch whole', () => {
  it('a field getter that pushes onto the same batch: both ops, each as given', () => {
    const batch = new OpBatch();
    const fields = {
      b: 1,
      get a() {
        batch.push('get', { a: 7, b: 1 });
        return 5;
      },
    };
    batch.push('pin', fields);
    const words = batch.toArray();
    expect(batch.count).toBe(2);
    expect(words.length).toBe(2 * OP_RECORD_WORDS);
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    expect(Array.from(mem.submit(words))).toEqual([0, 1]);
    expect(mem.refcount(7)).toBe(2);
    expect(mem.stats().pinAcquired).toBe(1);
  });

  it('an entry getter that pushes (and grows the batch) does not tear the outer op', () => {
    const batch = new OpBatch();
    const entries = [1, 2, 3];
    let pushed = false;
    Object.defineProperty(entries, 1, {
      get() {
        if (!pushed) {
          pushed = true;
          for (let i = 0; i < 100; i++) batch.push('get', { a: 9, b: 1 }); // past the first allocation
        }
        return 2;
      },
    });
    batch.push('pin', { entries });
    expect(batch.count).toBe(101);
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const results = mem.submit(batch.toArray());
    expect(results.length).toBe(101);
    expect(Array.from(results).filter((r) => r === 3)).toEqual([3]);
    expect(mem.refcount(9)).toBe(101);
  });
});

// ---- 7. the examples' output paths --------------------------------------------------------------

function example(name: string, args: string[]) {
  return spawnSync(process.execPath, [join(root, 'examples', `${name}.mjs`), '--quick', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
}

describe("the examples check --out and --trace before the run and never write through a link", () => {
  it('--out naming a regular file fails before the run (no table printed)', () => {
    const file = fresh('taken');
    writeFileSync(file, 'mine');
    const r = example('rdma-churn', ['--out', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--out: .*not a directory/);
    expect(r.stdout).toBe('');
    expect(readFileSync(file, 'utf8')).toBe('mine');
  });

  it('a symbolic link at --out DIR/NAME.json or at --trace is refused before the run, its target untouched', () => {
    const out = fresh('ex-out');
    mkdirSync(out);
    const victim = fresh('victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(out, 'fork-storm.json'));
    const r = example('fork-storm', ['--out', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/symbolic link/);
    expect(r.stdout).toBe('');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    const link = fresh('trace-link.pkops');
    symlinkSync(victim, link);
    const t = example('direct-io', ['--trace', link]);
    expect(t.status).toBe(2);
    expect(t.stderr).toMatch(/--trace: .*symbolic link/);
    expect(t.stdout).toBe('');
    const missing = example('direct-io', ['--trace', join(dir, 'no-such-folder', 't.pkops')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--trace: .*no-such-folder/);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('the files are written by a temporary renamed into place: a hard link at the target keeps its old contents', () => {
    const out = fresh('ex-hard');
    mkdirSync(out);
    const victim = fresh('hard-victim');
    writeFileSync(victim, 'precious');
    linkSync(victim, join(out, 'fork-storm.json'));
    const r = example('fork-storm', ['--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(JSON.parse(readFileSync(join(out, 'fork-storm.json'), 'utf8'))).toMatchObject({ example: 'fork-storm' });
    expect(readdirSync(out).sort()).toEqual(['fork-storm.json', 'fork-storm.svg']);
  });
});

// ---- 8. the recorder ----------------------------------------------------------------------------

/** Makes `new Uint32Array(n)` throw a RangeError for n >= `words` while `fn` runs. */
function failingBigArrays<T>(words: number, fn: () => T): T {
  const real = globalThis.Uint32Array;
  globalThis.Uint32Array = new Proxy(real, {
    construct(target, args: unknown[], newTarget) {
      if (typeof args[0] === 'number' && args[0] >= words) throw new RangeError('Array buffer allocation failed');
      return Reflect.construct(target, args, newTarget === globalThis.Uint32Array ? target : newTarget) as object;
    },
  });
  try {
    return fn();
  } finally {
    globalThis.Uint32Array = real;
  }
}

describe('the recorder', () => {
  it('save(path) reads the path once: the file written is the one reported and measured', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    mem.pinPages({ start: 0, count: 4 });
    rec.stop();
    const first = fresh('first.pkops');
    const names = [first, fresh('second.pkops'), fresh('third.pkops')];
    let calls = 0;
    const path = { toString: () => names[Math.min(calls++, 2)]! };
    const r = rec.save(path as unknown as string);
    expect(calls).toBe(1);
    expect(r.path).toBe(first);
    expect(r.bytes).toBe(statSync(first).size);
    expect(existsSync(names[1]!) || existsSync(names[2]!)).toBe(false);
    // The size reported is what the addon wrote, the text form's too.
    const text = rec.save(fresh('saved.pkops.txt'));
    expect(text.bytes).toBe(statSync(text.path).size);
  });

  it('a chunk that cannot be allocated leaves the recorder as it was (no record counted twice)', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    const chunkOps = 65536; // CHUNK_WORDS / OP_RECORD_WORDS: the first chunk's records
    const fill = new OpBatch();
    for (let i = 0; i < chunkOps - 1; i++) fill.push('get', { a: 1, b: 1 });
    mem.submit(fill.toArray());
    expect(rec.count).toBe(chunkOps - 1);
    // The next ops need a second chunk; its allocation fails.
    expect(() => failingBigArrays(OP_RECORD_WORDS * chunkOps, () => mem.submit(new OpBatch().push('get', { a: 1, b: 1 }).push('get', { a: 1, b: 1 }).toArray()))).toThrow(
      expect.objectContaining({ code: 'ENOMEM' }) as Error,
    );
    const afterFailure = rec.count;
    // Refused before it ran: neither get took a reference (the recording still is what ran).
    expect(mem.refcount(1)).toBe(1 + (chunkOps - 1));
    expect(rec.active).toBe(true);
    mem.submit(new OpBatch().push('put', { a: 1, b: 1 }).push('put', { a: 1, b: 1 }).toArray());
    rec.stop();
    const words = rec.buffer();
    expect(words.length).toBe(OP_RECORD_WORDS * (afterFailure + 2));
    expect(opsOf(words).length).toBe(rec.count);
  });

  it('a single call whose recording cannot grow keeps its effect and result; the recording refuses to be saved', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true, scheme: 'separate' });
    const rec = mem.record();
    const chunkOps = 65536;
    const fill = new OpBatch();
    for (let i = 0; i < chunkOps; i++) fill.push('get', { a: 3, b: 1 });
    mem.submit(fill.toArray()); // the first chunk is full
    expect(rec.count).toBe(chunkOps);
    // The pin runs; its record needs a second chunk, which cannot be had.
    expect(() => failingBigArrays(OP_RECORD_WORDS * 2, () => mem.pinPages({ start: 5, count: 2 }))).not.toThrow();
    expect(mem.pincount(5)).toBe(1);
    expect(mem.pincount(6)).toBe(1);
    expect(rec.active).toBe(false); // stopped at the op it lost
    expect(rec.count).toBe(chunkOps);
    mem.unpinPages({ start: 5, count: 2 }); // not recorded, not refused
    expect(rec.count).toBe(chunkOps);
    const refused = expect.objectContaining({ code: 'ENOMEM', message: expect.stringContaining(`op ${chunkOps + 1} ran but could not be recorded`) as string }) as Error;
    expect(() => rec.buffer()).toThrow(refused);
    const target = fresh('lost.pkops');
    expect(() => rec.save(target)).toThrow(refused);
    expect(existsSync(target)).toBe(false);
  });

  it('a refused call whose refusal cannot be recorded still throws its own error', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    const fill = new OpBatch();
    for (let i = 0; i < 65536; i++) fill.push('get', { a: 3, b: 1 });
    mem.submit(fill.toArray());
    expect(() => failingBigArrays(OP_RECORD_WORDS * 2, () => mem.unpinPages({ start: 9, count: 1 }))).toThrow(expect.objectContaining({ code: 'ENOTPINNED' }) as Error);
    expect(rec.active).toBe(false);
    expect(() => rec.buffer()).toThrow(expect.objectContaining({ code: 'ENOMEM' }) as Error);
  });

  /** Fills the first chunk of `rec` but `left` records with gets of page 3. */
  function fillChunk(mem: PageArray, rec: { buffer(): Uint32Array }, left: number): void {
    const used = rec.buffer().length / OP_RECORD_WORDS;
    const fill = new OpBatch();
    for (let i = 0; i < 65536 - used - left; i++) fill.push('get', { a: 3, b: 1 });
    mem.submit(fill.toArray());
  }

  it("an address space's dispose whose munmap cannot be recorded still disposes; the recording refuses to be saved", () => {
    const mem = new PageArray({ pages: 1 << 10, populated: false });
    const rec = mem.record();
    const a = new AddressSpace(mem, { pages: 64 });
    const b = new AddressSpace(mem, { pages: 64 });
    a.mmap({ start: 0, count: 4, populate: true });
    b.mmap({ start: 0, count: 4, populate: true });
    fillChunk(mem, rec, 0);
    expect(() => failingBigArrays(OP_RECORD_WORDS * 2, () => mem.dispose())).not.toThrow();
    expect(a.disposed && b.disposed).toBe(true); // the second space too
    expect(rec.active).toBe(false);
    expect(() => rec.buffer()).toThrow(expect.objectContaining({ code: 'ENOMEM' }) as Error);
  });

  it("an owner's drop under write-bias that cannot be recorded is refused before it releases anything", () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true, scheme: 'write-bias' });
    const rec = mem.record();
    const o = mem.pinOwner('o');
    mem.pinPages({ start: 2, count: 1 }, { write: true, owner: o });
    mem.pinPages({ start: 5, count: 1 }, { owner: o });
    const before = [mem.refcount(2), mem.refcount(5)];
    fillChunk(mem, rec, 1); // room for one record, not the drop's unpin-lists and its data record
    expect(() => failingBigArrays(OP_RECORD_WORDS * 2, () => o.drop({ pins: 'release' }))).toThrow(expect.objectContaining({ code: 'ENOMEM' }) as Error);
    expect([mem.refcount(2), mem.refcount(5)]).toEqual(before); // nothing released
    expect(o.dropped).toBe(false);
    expect(rec.active).toBe(true); // refused whole: the recording is still what ran
    o.drop({ pins: 'release' }); // the next chunk can be had now
    expect(o.dropped).toBe(true);
    rec.stop();
    const ops = opsOf(rec.buffer());
    // The drop that ran, once: one unpin-lists op (format version 4), after the fill's gets.
    expect(ops.slice(-2).map((op) => op.code)).toEqual([OP_CODES.get, OP_CODES['unpin-lists']]);
    expect(ops.filter((op) => op.code === OP_CODES['unpin-lists'])).toHaveLength(1);
  });

  it('a stopped recorder is not kept alive by its page array: its recording goes with the last reference', async () => {
    const gc = gcFunction();
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
    const make = (): WeakRef<object> => {
      const rec = mem.record();
      mem.pinPages({ start: 0, count: 4 });
      mem.unpinPages({ start: 0, count: 4 });
      rec.stop();
      return new WeakRef(rec);
    };
    const collect = async (): Promise<void> => {
      for (let i = 0; i < 3; i++) {
        await tick();
        gc();
        await tick();
      }
    };
    const gone = make();
    await collect(); // before any other record(), which would replace it
    expect(gone.deref()).toBeUndefined();
    // An active one is held by the page array (it records every call), even unreferenced.
    const active = ((): WeakRef<object> => new WeakRef(mem.record()))();
    await collect();
    expect(active.deref()).toBeDefined();
    mem.getPage(1); // recorded by the active one
    (active.deref() as { stop(): void }).stop();
  });

  it('buffer() turns a failed allocation into ENOMEM', () => {
    const mem = new PageArray({ pages: 1 << 10, populated: true });
    const rec = mem.record();
    mem.pinPages({ start: 0, count: 2 });
    mem.unpinPages({ start: 0, count: 2 });
    rec.stop();
    expect(() => failingBigArrays(OP_RECORD_WORDS * 2, () => rec.buffer())).toThrow(expect.objectContaining({ code: 'ENOMEM' }) as Error);
    expect(rec.buffer().length).toBe(OP_RECORD_WORDS * 2);
  });
});

// ---- 9. submit's next id ------------------------------------------------------------------------

describe("submit's next id counts the creations that ran", () => {
  const PAGES = 1 << 10;
  const stopped = (): Uint32Array =>
    new OpBatch()
      .push('mm-new', { mm: 1, a: 64 })
      .push('get', { a: PAGES + 5, b: 1 }) // ERANGE: the batch stops here
      .push('mm-new', { mm: 2, a: 64 })
      .toArray();

  it('after a batch that stopped before its second creation, the next address space is id 2', () => {
    const mem = new PageArray({ pages: PAGES, populated: false });
    const results = mem.submit(stopped());
    expect(results[2]).toBe(OP_NOT_RUN);
    const mm = new AddressSpace(mem, { pages: 64 });
    expect(mm.id).toBe(2);
  });

  it('a recording across such a batch replays (its creations are in sequence)', async () => {
    const mem = new PageArray({ pages: PAGES, populated: false, debug: true });
    const rec = mem.record();
    mem.submit(stopped());
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 8, populate: true });
    mm.munmap({ start: 0, count: 8 });
    rec.stop();
    const file = fresh('ids.pkops');
    rec.save(file);
    const r = await runReplay({ file, schemes: ['bias'] });
    expect(r.schemes[0]!.addressSpaces).toBe(2);
  });

  it("with onError 'continue' every creation runs and counts", () => {
    const mem = new PageArray({ pages: PAGES, populated: false });
    mem.submit(stopped(), { onError: 'continue' });
    expect(new AddressSpace(mem, { pages: 64 }).id).toBe(3);
  });
});

// ---- 10. README ---------------------------------------------------------------------------------

describe('README', () => {
  it('says paths are taken as named', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    expect(readme).toMatch(/\*\*Paths are taken as named\*\*/);
    const bullet = readme.slice(readme.indexOf('**Paths are taken as named**'), readme.indexOf('**Paths are taken as named**') + 1200);
    expect(bullet).toMatch(/NUL/);
    expect(bullet).toMatch(/read once/);
    expect(bullet).toMatch(/never\s+followed for writing/);
  });
});
