// Op streams, format version 4: a write-bias owner's drop is one all-or-nothing engine call
// (the read pins of one list and the write pins of another), recorded as one `unpin-lists` op.
// Before, a successful drop was recorded as two unpins and a refused one not at all, so a
// refused drop's one `rollbacks` count was missing from its replay (issue 14's differential:
// the replay of a recording ends in the live state, stats() included). Streams without the op
// are still written as version 3.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, OP_CODES, OP_FLAGS, OP_RECORD_WORDS, OpBatch, PageArray, SCHEMES, runReplay, stateDigest } from '../lib/index.js';

import { runCli } from './cli-run.js';
import { codeOf, expectReplayMatchesLive } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-unpin-lists-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const file = (ext: string): string => join(dir, `${++seq}${ext}`);

/** The owner of `mem` with 8 read pins (0..7) and 8 write pins (8..15). */
function pinnedOwner(mem: PageArray) {
  const owner = mem.pinOwner('dev');
  mem.pinPages({ start: 0, count: 8 }, { owner });
  mem.pinPages({ start: 8, count: 8 }, { owner, write: true });
  return owner;
}

/** The version word of a binary stream's header. */
const binaryVersion = (path: string): number => readFileSync(path).readUInt32LE(8);
/** The header line of a text stream. */
const textHeader = (path: string): string => readFileSync(path, 'utf8').split('\n').find((l) => l.startsWith('pkops '))!;

describe('a write-bias owner drop is recorded as one unpin-lists op', () => {
  it('a refused drop is recorded with its code, and its replay counts the same rollback', async () => {
    const mem = new PageArray({ pages: 64, scheme: 'write-bias' });
    const rec = mem.record();
    const owner = pinnedOwner(mem);
    // Behind the owner's back, an ownerless unpin takes one of its write pins away.
    mem.unpinPages({ start: 15, count: 1 }, { write: true });
    const rollbacks = mem.stats().rollbacks;
    expect(codeOf(() => owner.drop({ pins: 'release' }))).toBe('ENOTPINNED');
    expect(mem.stats().rollbacks).toBe(rollbacks + 1);
    rec.stop();
    const buf = rec.buffer();
    // pin, pin, unpin, then the drop: reads 8, writes 8, 16 entries, result -ENOTPINNED.
    const at = rec.count - 1;
    let op = 0;
    let k = 0;
    for (let i = 0; i < buf.length; i += OP_RECORD_WORDS * (1 + Math.ceil(buf[i + 4]! / 5)), k++) if (k === at) op = i;
    expect(buf[op]! & 0xff).toBe(OP_CODES['unpin-lists']);
    expect([buf[op + 2], buf[op + 3], buf[op + 4]]).toEqual([8, 8, 16]);
    expect(buf[op + 5]! | 0).toBe(-7); // ENOTPINNED
    await expectReplayMatchesLive(rec, file('.pkops'), mem, 'write-bias');
  });

  it('a drop that succeeds replays to the live state, and its stream is version 4', async () => {
    const mem = new PageArray({ pages: 64, scheme: 'write-bias', folioOrder: 2 });
    const rec = mem.record();
    const owner = pinnedOwner(mem);
    expect(owner.drop({ pins: 'release' }).releasedPages).toBe(16);
    rec.stop();
    const bin = file('.pkops');
    await expectReplayMatchesLive(rec, bin, mem, 'write-bias');
    expect(binaryVersion(bin)).toBe(4);
    const text = file('.pkops.txt');
    rec.save(text);
    expect(textHeader(text)).toMatch(/^pkops 4 /);
    expect(readFileSync(text, 'utf8')).toContain('unpin-lists 8 8 [0..15] = 16\n');
    // The text form reads back into the same replay.
    const doc = await runReplay({ file: text, schemes: ['write-bias'], endState: true });
    expect(doc.schemes[0]!.diverged).toBe(0);
    expect(doc.schemes[0]!.endState).toEqual(stateDigest(mem));
  });

  it('a drop of pins taken by gups replays to the live state', async () => {
    const mem = new PageArray({ pages: 4096, populated: false, scheme: 'write-bias' });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 64 });
    mm.mmap({ start: 0, count: 16, write: true, populate: true });
    const owner = mem.pinOwner('dev');
    mm.pinUserPagesFast(0, 8, { owner });
    mm.pinUserPagesFast(8, 8, { owner, write: true });
    // The owner's lists are its own (not the gups' arrays): recorded as PFNs, which name the
    // pages the latest gups returned in the replay.
    expect(owner.drop({ pins: 'release' }).releasedPages).toBe(16);
    rec.stop();
    await expectReplayMatchesLive(rec, file('.pkops'), mem, 'write-bias');
  });

  it('a recording without an owner drop is still written as version 3', () => {
    const mem = new PageArray({ pages: 64, scheme: 'write-bias' });
    const rec = mem.record();
    mem.pinPages({ start: 0, count: 4 });
    mem.unpinPages({ start: 0, count: 4 });
    rec.stop();
    const bin = file('.pkops');
    rec.save(bin);
    expect(binaryVersion(bin)).toBe(3);
    const text = file('.pkops.txt');
    rec.save(text);
    expect(textHeader(text)).toMatch(/^pkops 3 /);
  });
});

describe('unpin-lists through submit, the text form and the framing', () => {
  for (const scheme of SCHEMES) {
    it(`${scheme}: a batch's unpin-lists is all or nothing, as the call`, () => {
      const mem = new PageArray({ pages: 64, scheme });
      mem.pinPages({ start: 0, count: 4 });
      mem.pinPages({ start: 4, count: 4 }, { write: true });
      const before = stateDigest(mem);
      // One write pin too many (page 8 holds none): refused whole, one rollback, nothing released.
      const refused = new OpBatch().push('unpin-lists', { a: 4, b: 5, entries: [0, 1, 2, 3, 4, 5, 6, 7, 8] });
      const rollbacks = mem.stats().rollbacks;
      expect(Array.from(mem.submit(refused.toArray()))).toEqual([-7]);
      expect(mem.stats().rollbacks).toBe(rollbacks + 1);
      const after = stateDigest(mem);
      expect({ ...after, stats: { ...after.stats, rollbacks: 0 } }).toEqual({ ...before, stats: { ...before.stats, rollbacks: 0 } });
      const ok = new OpBatch().push('unpin-lists', { a: 4, b: 4, entries: [0, 1, 2, 3, 4, 5, 6, 7] });
      expect(Array.from(mem.submit(ok.toArray()))).toEqual([8]);
      expect(mem.checkBalanced()).toEqual([]);
      for (let p = 0; p < 8; p++) expect(mem.refcount(p)).toBe(1);
    });
  }

  it('entries that are not a + b are refused with the stream, naming the record', () => {
    const mem = new PageArray({ pages: 64 });
    const bad = new OpBatch().push('unpin-lists', { a: 2, b: 2, entries: [0, 1, 2] });
    expect(() => mem.submit(bad.toArray())).toThrow(/record 0: unpin-lists' entries are not its reads and writes \(a \+ b\)/);
  });

  it('a version 3 stream may not hold it; a version 4 stream may', async () => {
    const body = 'pin 0 2 = 2\npin 2 2 write = 2\nunpin-lists 2 2 [0 1 2 3] = 4\n';
    const v3 = file('.pkops.txt');
    writeFileSync(v3, `pkops 3 pages=64 scheme=write-bias\n${body}`);
    await expect(runReplay({ file: v3, schemes: ['write-bias'] })).rejects.toThrow(/an op of a later format version than the stream's/);
    const v4 = file('.pkops.txt');
    writeFileSync(v4, `pkops 4 pages=64 scheme=write-bias\n${body}`);
    const doc = await runReplay({ file: v4, schemes: ['write-bias', 'bias', 'separate'] });
    for (const s of doc.schemes) expect(s).toMatchObject({ refused: 0, balanced: true, diverged: 0 });
    // Converted to binary and back: version 4 both ways, the same line.
    const bin = file('.pkops');
    const back = file('.pkops.txt');
    expect((await runCli(['trace', 'convert', v4, bin])).status).toBe(0);
    expect(binaryVersion(bin)).toBe(4);
    expect((await runCli(['trace', 'convert', bin, back])).status).toBe(0);
    expect(textHeader(back)).toMatch(/^pkops 4 /);
    expect(readFileSync(back, 'utf8')).toContain('unpin-lists 2 2 [0..3] = 4\n');
    // A text version this build does not read.
    const v5 = file('.pkops.txt');
    writeFileSync(v5, `pkops 5 pages=64\n`);
    await expect(runReplay({ file: v5 })).rejects.toThrow(/unsupported text version \(this build reads 1, 2, 3 and 4\)/);
  });

  it('the flags it takes: output references only', () => {
    const mem = new PageArray({ pages: 64 });
    const bad = new OpBatch().push('unpin-lists', { a: 1, b: 0, entries: [0], flags: ['write'] });
    expect(() => mem.submit(bad.toArray())).toThrow(/flag bits the op does not take/);
    expect(OP_FLAGS.refs).toBe(0x80);
  });
});
