// Op streams: the recorder's API, bad streams refused (files and batches) with nothing changed,
// the CLI (replay, trace synth and convert, the result document and its schema), tagged streams
// on threads, and Ctrl-C leaving no output behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  AddressSpace,
  OP_CODES,
  OP_FLAGS,
  OP_RECORD_WORDS,
  OpBatch,
  PageArray,
  PinlabError,
  REPLAY_RESULTS_SCHEMA,
  SCHEMES,
  runReplay,
  stateDigest,
  validateReplayResults,
  type ReplayResults,
} from '../lib/index.js';
import { runCli } from './cli-run.js';
import { rechecksum } from './ops-helpers.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'pinlab-ops-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = runCli;

/** A small recorded stream: an address space, pins and gets, a fork, a refusal. */
function recordSmall(file: string): number {
  const mem = new PageArray({ pages: 1 << 12, populated: false, debug: true, scheme: 'hybrid' });
  const rec = mem.record();
  const mm = new AddressSpace(mem, { pages: 2048 });
  mm.mmap({ start: 0, count: 1024, populate: true, huge: true });
  const { pfns } = mm.pinUserPagesFast(0, 600, { write: true });
  const child = mm.fork();
  child.munmap({ start: 0, count: 2048 });
  expect(() => mm.touch(1500, 1)).toThrow(PinlabError);
  mm.unpinUserPages(pfns, { write: true });
  mm.munmap({ start: 0, count: 2048 });
  rec.stop();
  rec.save(file);
  return rec.count;
}

async function expectRefused(file: string, pattern: RegExp): Promise<void> {
  const err = await runReplay({ file }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PinlabError);
  expect((err as PinlabError).code).toBe('EINVAL');
  expect((err as PinlabError).message).toMatch(pattern);
}

describe('OpRecorder', () => {
  it('counts ops, stops, saves binary and text, and hands its buffer to submit', () => {
    const mem = new PageArray({ pages: 1024 });
    const rec = mem.record();
    expect(rec.active).toBe(true);
    mem.pinPages({ start: 0, count: 4 });
    mem.getPage(7); // refs default 1, recorded as 1
    expect(() => mem.unpinPages({ start: 100, count: 1 })).toThrow(PinlabError); // a refusal is recorded too
    mem.unpinPages({ start: 0, count: 4 }, { dirty: true });
    expect(rec.count).toBe(4);
    expect(() => mem.record()).toThrow(/already recording/);
    rec.stop();
    mem.putPage(7); // not recorded
    expect(rec.count).toBe(4);
    const buf = rec.buffer();
    expect(buf.length).toBe(4 * OP_RECORD_WORDS);
    expect(buf[0]! & 0xff).toBe(OP_CODES.pin);
    expect([buf[6]! & 0xff, buf[8], buf[9]]).toEqual([OP_CODES.get, 7, 1]);
    expect(buf[12]! & 0xff).toBe(OP_CODES.unpin);
    expect(buf[12 + 5]! | 0).toBe(-7); // ENOTPINNED, as -code
    expect((buf[18]! >> 8) & OP_FLAGS.dirty).toBe(OP_FLAGS.dirty);
    const text = join(dir, 'rec.pkops.txt');
    const saved = rec.save(text);
    expect(saved).toMatchObject({ ops: 4, records: 4 });
    expect(readFileSync(text, 'utf8')).toContain('pin 0 4 = 4\nget 7 1\nunpin 100 1 = ENOTPINNED\nunpin 0 4 dirty = 4\n');
    const fresh = new PageArray({ pages: 1024 });
    expect([...fresh.submit(buf, { onError: 'continue' })]).toEqual([4, 0, -7, 4]);
    expect(fresh.refcount(7)).toBe(2);
    expect(fresh.isDirty(0)).toBe(true);
  });

  it('records a submitted batch too, its output references moved after the outputs before it', async () => {
    const mem = new PageArray({ pages: 4096, populated: false, debug: true });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 256 });
    mm.mmap({ start: 0, count: 64, populate: true });
    const { pfns } = mm.pinUserPagesFast(0, 8); // outputs 0..7 of the recording
    // A batch numbers its own gup outputs from 0: its unpin names them as &0, &1.
    const batch = new Uint32Array([
      OP_CODES['pin-user-fast'], mm.id, 16, 2, 2, 2, 0xff | (2 << 8), mm.translate(16)!.pfn, mm.translate(17)!.pfn, 0, 0, 0,
      OP_CODES['unpin-user'] | (OP_FLAGS.refs << 8), mm.id, 0, 0, 2, 0, 0xff | (2 << 8), 0, 1, 0, 0, 0,
    ]);
    expect([...mem.submit(batch)]).toEqual([2, 2]);
    mm.unpinUserPages(pfns);
    rec.stop();
    const file = join(dir, 'batch-in-recording.pkops');
    rec.save(file);
    const doc = await runReplay({ file, schemes: ['hybrid'] });
    expect(doc.schemes[0]).toMatchObject({ ops: 6, refused: 0, diverged: 0, balanced: true });
  });

  it('must start before the first address space, and one at a time', () => {
    const mem = new PageArray({ pages: 1024, populated: false });
    new AddressSpace(mem, { pages: 16 });
    expect(() => mem.record()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
  });

  it('a batch made address space lives with the array, by id', () => {
    const mem = new PageArray({ pages: 1024, populated: false });
    const b = new OpBatch().push('mm-new', { mm: 1, a: 64 }).push('mmap', { mm: 1, a: 0, b: 8, flags: ['write', 'populate'] }).push('fork', { mm: 1, a: 2 });
    expect([...mem.submit(b.toArray())]).toEqual([0, 0, 0]);
    const mm = AddressSpace.byId(mem, 1)!;
    expect(mm.mappedPages).toBe(8);
    expect(AddressSpace.byId(mem, 2)!.mappedPages).toBe(8);
    expect(new AddressSpace(mem, { pages: 8 }).id).toBe(3); // ids go on after the batch's
  });
});

describe('bad streams are refused, naming the record, with nothing changed', () => {
  const good = join(dir, 'good.pkops');
  let ops = 0;
  it('a good stream replays under every scheme, balanced', async () => {
    ops = recordSmall(good);
    const doc = await runReplay({ file: good });
    expect(doc.schemes.map((s) => s.scheme)).toEqual([...SCHEMES]);
    for (const s of doc.schemes) {
      expect(s.ops).toBe(ops);
      expect(s.balanced).toBe(true);
      expect(s.refusals).toEqual({ EFAULT: 1 });
    }
    expect(validateReplayResults(doc)).toEqual([]);
  });

  it('truncated, a wrong checksum, trailing bytes', async () => {
    const bytes = readFileSync(good);
    writeFileSync(join(dir, 'trunc.pkops'), bytes.subarray(0, bytes.length - 7));
    await expectRefused(join(dir, 'trunc.pkops'), /is truncated: \d+ bytes, its header needs \d+/);
    const flipped = Buffer.from(bytes);
    flipped[96 + 24 * 3 + 9]! ^= 1;
    writeFileSync(join(dir, 'sum.pkops'), flipped);
    await expectRefused(join(dir, 'sum.pkops'), /body checksum mismatch/);
    // A flipped opcode byte garbles record 0 into a malformed one: still reported as the
    // corruption it is (the rest of the body is summed first), not as an unknown opcode.
    const opcode = Buffer.from(bytes);
    opcode[96]! ^= 0x40;
    writeFileSync(join(dir, 'opcode.pkops'), opcode);
    await expectRefused(join(dir, 'opcode.pkops'), /body checksum mismatch/);
    writeFileSync(join(dir, 'trail.pkops'), Buffer.concat([bytes, Buffer.from([0])]));
    await expectRefused(join(dir, 'trail.pkops'), /trailing bytes/);
    const head = Buffer.from(bytes);
    head[24]! ^= 1; // pages, header checksum not updated
    writeFileSync(join(dir, 'head.pkops'), head);
    await expectRefused(join(dir, 'head.pkops'), /header checksum mismatch/);
  });

  it('an unknown opcode and an op on an address space that does not exist name their record', async () => {
    const bytes = readFileSync(good);
    const op3 = Buffer.from(bytes);
    op3[96 + 24 * 1] = 0x3e; // record 1 (mmap) gets a reserved opcode
    rechecksum(op3);
    writeFileSync(join(dir, 'opcode.pkops'), op3);
    await expectRefused(join(dir, 'opcode.pkops'), /record 1: unknown opcode \(62\)/);
    const id = Buffer.from(bytes);
    id.writeUInt32LE(9, 96 + 24 * 1 + 4); // record 1 names mm#9
    rechecksum(id);
    writeFileSync(join(dir, 'id.pkops'), id);
    await expectRefused(join(dir, 'id.pkops'), /record 1: no such address space .*\(9\)/);
  });

  it('a 20-byte file, and a whole header that claims 2^40 ops, cost nothing', async () => {
    const bytes = readFileSync(good);
    writeFileSync(join(dir, 'tiny.pkops'), bytes.subarray(0, 20));
    await expectRefused(join(dir, 'tiny.pkops'), /is truncated: 20 bytes, its header needs 96/);
    const huge = Buffer.from(bytes.subarray(0, 96));
    huge.writeBigUInt64LE(2n ** 40n, 40); // records
    huge.writeBigUInt64LE(2n ** 40n, 48); // ops
    rechecksum(huge);
    writeFileSync(join(dir, 'huge.pkops'), huge);
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    await expectRefused(join(dir, 'huge.pkops'), new RegExp(`truncated: 96 bytes, its header needs ${96 + 24 * 2 ** 40}`));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 << 20);
  });

  it('a bad text line, and a missing file', async () => {
    const text = join(dir, 'bad.pkops.txt');
    writeFileSync(text, 'pkops 1 pages=1024\npin 1 1\nfrobnicate 2\n');
    await expectRefused(text, /line 3: unknown op name/);
    const err = await runReplay({ file: join(dir, 'missing.pkops') }).catch((e: unknown) => e);
    expect((err as PinlabError).code).toBe('ENOENT');
  });

  it('a bad batch changes nothing: it is refused before its first op', () => {
    const mem = new PageArray({ pages: 1024, debug: true });
    mem.pinPages({ start: 5, count: 3 });
    const before = stateDigest(mem);
    const batch = new OpBatch().push('pin', { a: 0, b: 8 }).push('get', { a: 1, b: 1 }).toArray();
    const unknown = batch.slice();
    unknown[6] = (unknown[6]! & ~0xff) | 0x3e;
    expect(() => mem.submit(unknown)).toThrow(/ops: record 1: unknown opcode/);
    const noSpace = new OpBatch().push('pin', { a: 0, b: 8 }).push('touch', { mm: 4, a: 0, b: 1 }).toArray();
    expect(() => mem.submit(noSpace)).toThrow(/ops: record 1: no such address space/);
    const cut = new OpBatch().push('pin', { a: 0, b: 8 }).push('pin', { entries: [1, 2, 3, 4, 5, 6, 7] }).toArray().subarray(0, 18);
    expect(() => mem.submit(cut)).toThrow(/before the data records/);
    expect(() => mem.submit(new Uint32Array(7))).toThrow(/whole number of 6-word records/);
    expect(() => mem.submit(new Int32Array(6) as unknown as Uint32Array)).toThrow(PinlabError);
    expect(stateDigest(mem)).toEqual(before);
  });

  it('a batch over a detached buffer is EINVAL, not an empty batch, recorded or not', () => {
    const mem = new PageArray({ pages: 1024 });
    const detached = (): Uint32Array => {
      const ops = new OpBatch().push('pin', { a: 0, b: 8 }).toArray();
      structuredClone(ops.buffer, { transfer: [ops.buffer] });
      return ops;
    };
    const before = stateDigest(mem);
    expect(() => mem.submit(detached())).toThrow(/ops is a Uint32Array over a detached buffer/);
    const rec = mem.record();
    expect(() => mem.submit(detached())).toThrow(/detached/);
    expect(rec.count).toBe(0);
    rec.stop();
    expect(stateDigest(mem)).toEqual(before);
    // Nor can an own byteLength or a SharedArrayBuffer prototype hide the detached buffer from
    // the recording's copy.
    const rec2 = mem.record();
    const lying = detached();
    Object.defineProperty(lying, 'byteLength', { value: 24 });
    expect(() => mem.submit(lying)).toThrow(/detached/);
    const faked = detached();
    Object.setPrototypeOf(faked.buffer, SharedArrayBuffer.prototype);
    expect(() => mem.submit(faked)).toThrow(/detached/);
    expect(rec2.count).toBe(0);
    rec2.stop();
    // An empty batch of a live buffer is still an empty batch.
    expect(mem.submit(new Uint32Array(0))).toEqual(new Int32Array(0));
  });

  it('a text header field given twice, and mm#0, are refused naming the text line', async () => {
    const twice = join(dir, 'twice.pkops.txt');
    writeFileSync(twice, 'pkops 3 pages=4096 pages=8 threads=1\npin 1 1\n');
    await expectRefused(twice, /twice\.pkops\.txt: line 1: a header field is repeated/);
    const mm0 = join(dir, 'mm0.pkops.txt');
    writeFileSync(mm0, 'pkops 3 pages=64 threads=1\nmm#1 mm-new 64\nmm#0 munmap 0 4\n');
    await expectRefused(mm0, /mm0\.pkops\.txt: line 3: address space ids start at 1/);
    const r = await cli(['trace', 'convert', mm0, join(dir, 'mm0-out.pkops')]);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/mm0\.pkops\.txt: line 3/);
    expect(existsSync(join(dir, 'mm0-out.pkops'))).toBe(false);
  });

  it('a header with pincount-min-order 0 is refused where it is read, as --rules 0 is', async () => {
    const zero = join(dir, 'min0.pkops.txt');
    writeFileSync(zero, 'pkops 3 pages=64 pincount-min-order=0 threads=1\npin 1 1\n');
    await expectRefused(zero, /line 1: pincount-min-order must be 1\.\.31/);
    const bin = Buffer.from(readFileSync(good));
    bin[65] = 0; // the header's pincount_min_order
    rechecksum(bin);
    writeFileSync(join(dir, 'min0.pkops'), bin);
    await expectRefused(join(dir, 'min0.pkops'), /pincount_min_order must be 1\.\.31/);
    const r = await cli(['replay', good, '--rules', '0']);
    expect(r.status).toBe(64); // a usage error, before the stream is read
    expect(r.err).toMatch(/rules/);
  });

  it('replay rules are 1..31, as the pincount-min-order they set', async () => {
    const err = await runReplay({ file: good, schemes: ['hybrid'], rules: [0] }).catch((e: unknown) => e);
    expect((err as PinlabError).code).toBe('EINVAL');
    expect((err as PinlabError).message).toMatch(/rules must hold integers in 1\.\.31/);
    const doc = await runReplay({ file: good, schemes: ['hybrid'], rules: [1, 31] });
    expect(doc.schemes.map((s) => s.pincountMinOrder)).toEqual([1, 31]);
  });
});

describe('pinlab replay and pinlab trace', () => {
  it('synth -> replay --json (a valid document) -> convert to text and back, the same stream', async () => {
    const file = join(dir, 'synth.pkops');
    const r = await cli(['trace', 'synth', '--ops', '20000', '--seed', '3', '--threads', '2', '--pages', '4096', '--out', file]);
    expect(r.status).toBe(0);
    expect(r.out).toContain('20000 ops');
    const out = await cli(['replay', file, '--json', '--scheme', 'hybrid,bias', '--bias', '64,1024']);
    expect(out.status).toBe(0);
    const doc = JSON.parse(out.out) as ReplayResults;
    expect(validateReplayResults(doc)).toEqual([]);
    expect(doc.schema).toBe('pinlab-replay');
    expect(doc.stream.threads).toBe(2);
    expect(doc.schemes.map((s) => `${s.scheme}/${s.bias}`)).toEqual(['hybrid/64', 'hybrid/1024', 'bias/64', 'bias/1024']);
    for (const s of doc.schemes) {
      expect(s).toMatchObject({ ops: 20000, threads: 2, balanced: true, refused: 0 });
      expect(s.opsPerSecond).toBeGreaterThan(0);
      // Each thread's own CPU clock around its ops: inside the wall-clock window of every thread.
      expect(s.cpuSeconds).toBeGreaterThan(0);
      expect(s.cpuSeconds).toBeLessThanOrEqual(s.seconds * s.threads + 1e-4);
      expect(s.opsPerCpuSecond).toBeCloseTo(s.ops / s.cpuSeconds, 3);
      expect(typeof s.falsePositives).toBe('number');
    }
    expect(doc.schemes.find((s) => s.scheme === 'hybrid' && s.bias === 1024)!.diverged).toBe(0); // its own scheme
    const text = join(dir, 'synth.pkops.txt');
    const back = join(dir, 'synth2.pkops');
    expect((await cli(['trace', 'convert', file, text])).status).toBe(0);
    expect(readFileSync(text, 'utf8').split('\n')[1]).toMatch(/^pkops 3 pages=4096 /);
    expect((await cli(['trace', 'convert', text, back])).status).toBe(0);
    expect(readFileSync(back).equals(readFileSync(file))).toBe(true);
    const fromText = await cli(['replay', text, '--json', '--scheme', 'separate', '--threads', '1']);
    expect((JSON.parse(fromText.out) as ReplayResults).schemes[0]).toMatchObject({ ops: 20000, threads: 1, balanced: true });
  });

  it('the table, --out (results.json, results.md, charts), --rules, and a refused stream exits 2', async () => {
    const file = join(dir, 'mm.pkops');
    expect((await cli(['trace', 'synth', '--ops', '5000', '--mix', 'mm', '--pages', '65536', '--debug', '--scheme', 'bias', '--out', file])).status).toBe(0);
    const outDir = join(dir, 'report');
    const r = await cli(['replay', file, '--rules', '1,2', '--out', outDir]);
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/^scheme\s+bias\s+rule/m);
    expect(r.out).toMatch(/^hybrid\s+1024\s+2\s/m);
    expect(readdirSync(outDir).sort()).toEqual(['false-positives.svg', 'results.json', 'results.md', 'throughput.svg']);
    const doc = JSON.parse(readFileSync(join(outDir, 'results.json'), 'utf8')) as ReplayResults;
    expect(validateReplayResults(doc)).toEqual([]);
    expect(doc.schemes.length).toBe(SCHEMES.length + 1);
    expect(readFileSync(join(outDir, 'results.md'), 'utf8')).toContain('![throughput](throughput.svg)');
    writeFileSync(join(dir, 'junk.pkops'), 'not a stream at all, longer than a header......................................................................................');
    const bad = await cli(['replay', join(dir, 'junk.pkops')]);
    expect(bad.status).toBe(2);
    expect(bad.err).toMatch(/not a pinlab op stream/);
    expect((await cli(['replay'])).status).toBe(64);
    expect((await cli(['replay', file, '--scheme', 'nope'])).status).toBe(64);
    expect((await cli(['trace', 'synth', '--ops', '10'])).status).toBe(64);
  });

  it('docs/replay-results.schema.json is the schema the code validates with', () => {
    const doc = JSON.parse(readFileSync(join(root, 'docs', 'replay-results.schema.json'), 'utf8')) as unknown;
    expect(doc).toEqual(JSON.parse(JSON.stringify(REPLAY_RESULTS_SCHEMA)));
  });

  it('a document that breaks the schema is named', () => {
    expect(validateReplayResults({ schema: 'pinlab-replay' }).length).toBeGreaterThan(0);
  });
});

describe('an example traced once replays to every scheme\'s live figures', () => {
  it('fork-storm --trace: the replay of the bias run under each scheme is the example\'s own row for it', async () => {
    const trace = join(dir, 'fork-storm.pkops');
    const out = join(dir, 'fork-storm-out');
    const r = spawnSync(process.execPath, [join(root, 'examples', 'fork-storm.mjs'), '--quick', '--seed', '5', '--out', out, '--trace', trace], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote .*fork-storm\.pkops: \d+ ops of the bias run/);
    const rows = (JSON.parse(readFileSync(join(out, 'fork-storm.json'), 'utf8')) as { rows: { scheme: string; copied: number; fpPages: number }[] }).rows;
    const doc = await runReplay({ file: trace });
    expect(doc.stream.scheme).toBe(SCHEMES[0]);
    for (const s of doc.schemes) {
      const live = rows.find((x) => x.scheme === s.scheme)!;
      expect(s.decisions.earlyCow.decisions, s.scheme).toBe(live.copied);
      expect(s.decisions.earlyCow.falsePositives, s.scheme).toBe(live.fpPages);
      expect(s.balanced).toBe(true);
      expect(s.refused).toBe(0);
    }
  }, 60_000);
});

describe('Ctrl-C leaves no half-written output', () => {
  const bin = join(root, 'dist', 'bin.js');

  /** Runs `pinlab args`, sends SIGINT once stderr shows progress, and resolves with its status. */
  function interrupted(args: string[], after: RegExp): Promise<{ status: number | null; err: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (!sent && after.test(err)) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.on('close', (status) => resolve({ status, err }));
    });
  }

  it('trace synth: the file never appears, no temporary is left', async () => {
    const out = join(dir, 'ctrl-c', 'big.pkops');
    spawnSync('mkdir', ['-p', join(dir, 'ctrl-c')]);
    const r = await interrupted(['trace', 'synth', '--ops', String(2 ** 34), '--out', out], /\d+%|\(\d+\/\d+\)/);
    expect(r.status).toBe(130);
    expect(r.err).toContain('nothing written');
    expect(readdirSync(join(dir, 'ctrl-c'))).toEqual([]);
  });

  it('trace convert: the output never appears, an old one is kept, no temporary is left', async () => {
    const src = join(dir, 'convert-src.pkops');
    const made = await cli(['trace', 'synth', '--ops', '6000000', '--pages', '65536', '--out', src]);
    expect(made.status).toBe(0);
    const outDir = join(dir, 'ctrl-c-convert');
    spawnSync('mkdir', ['-p', outDir]);
    // Binary to text (about a second for 6 M ops here) and text to binary: interrupted at the
    // first progress line, long before either can finish.
    const text = join(outDir, 'big.pkops.txt');
    const r1 = await interrupted(['trace', 'convert', src, text], /pinlab trace convert:/);
    expect(r1.status).toBe(130);
    expect(r1.err).toContain('nothing written');
    expect(readdirSync(outDir)).toEqual([]);
    // An output that exists already is left as it was.
    const old = join(outDir, 'old.pkops.txt');
    writeFileSync(old, 'the previous conversion\n');
    const r2 = await interrupted(['trace', 'convert', src, old], /pinlab trace convert:/);
    expect(r2.status).toBe(130);
    expect(readFileSync(old, 'utf8')).toBe('the previous conversion\n');
    expect(readdirSync(outDir)).toEqual(['old.pkops.txt']);
  });

  it('replay --out: no report is written', async () => {
    const file = join(dir, 'long.pkops');
    const made = await cli(['trace', 'synth', '--ops', '6000000', '--pages', '65536', '--out', file]);
    expect(made.status).toBe(0);
    const size = statSync(file).size;
    const outDir = join(dir, 'interrupted-report');
    // Interrupted at its first progress line (reading the stream), long before it can finish.
    const r = await interrupted(['replay', file, '--out', outDir], /pinlab replay:/);
    expect(r.status).toBe(130);
    expect(r.err).toContain('nothing written');
    expect(existsSync(join(outDir, 'results.json'))).toBe(false);
    expect(readdirSync(outDir)).toEqual([]);
    expect(statSync(file).size).toBe(size); // the stream itself is only read
  });
});
