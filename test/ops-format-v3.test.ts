// Op-stream format version 3: the records of issue 13's calls (madvise of every advice,
// mremap, khugepaged, hugetlb, private file mappings, file zaps, shmem, swap slots). A recording
// of them converts to text and back byte for byte, replays under every scheme, and hostile
// streams with the new opcodes are refused naming the record, with nothing changed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  AddressSpace,
  HugetlbFile,
  OP_ADVICE,
  OP_CODES,
  OpBatch,
  PageArray,
  PageCacheFile,
  PinlabError,
  SCHEMES,
  opResultName,
  runReplay,
  stateDigest,
  type OpFlagName,
  type OpName,
  type PageArrayOptions,
} from '../lib/index.js';
import { runCli } from './cli-run.js';
import { rechecksum } from './ops-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-ops-v3-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MEM: PageArrayOptions = { pages: 1 << 13, populated: false, debug: true, scheme: 'hybrid' };

/** Every call format 3 added, each at least once, through the public API. */
function issue13Calls(mem: PageArray): AddressSpace {
  mem.setHugetlbPages(9, 4);
  const mm = new AddressSpace(mem, { pages: 4096, swapPages: 40 });
  mm.mmap({ start: 0, count: 512, hugetlb: 9 });
  mm.mmap({ start: 512, count: 512, hugetlb: 9, shared: true });
  const hf = new HugetlbFile(mem, { name: 'h', order: 9, pages: 512 });
  mm.mmap({ start: 1024, count: 512, file: hf, shared: false });
  const file = new PageCacheFile(mem, { name: 'f', pages: 16 });
  const shm = new PageCacheFile(mem, { name: 's', pages: 16, shmem: true });
  mm.mmap({ start: 1536, count: 16, file, shared: false });
  mm.mmap({ start: 1600, count: 16, file: shm });
  // Allowed for shmem only (no dirty tracking): a replay that mapped it dirty-tracked would refuse it.
  const lt = mm.pinUserPagesFast(1600, 4, { write: true, longterm: true });
  expect(lt.count).toBe(4);
  mm.unpinUserPages(lt.pfns, { write: true });
  expect(() => mm.mmap({ start: 1700, count: 4, file })).not.toThrow();
  expect(() => mm.pinUserPagesFast(1700, 1, { write: true, longterm: true })).toThrow(PinlabError);
  mm.munmap({ start: 1700, count: 4 });
  mm.mmap({ start: 2048, count: 1024, huge: true, populate: true });
  mm.mmap({ start: 3072, count: 256, populate: true });
  mm.touch(0, 512, { write: true });
  mm.touch(1024, 8, { write: true }); // COW of the hugetlb file's page
  mm.touch(1536, 4, { write: true }); // COW of the private file's pages
  file.truncate(8); // zap-file, even-cows
  mm.mprotect({ start: 2049, count: 1, write: false }); // PTE-maps the THP
  mm.mprotect({ start: 2049, count: 1, write: true });
  mm.madvise({ start: 2048, count: 512 }, 'collapse');
  mm.madvise({ start: 3072, count: 64 }, 'pageout');
  mm.madvise({ start: 3136, count: 8 }, 'dontneed');
  mm.madvise({ start: 3144, count: 8 }, 'dontfork');
  mm.madvise({ start: 3144, count: 8 }, 'dofork');
  mm.touch(3072, 4, { write: true }); // swap-ins
  mm.mmap({ start: 1700, count: 16, populate: true });
  mm.mremap({ start: 1700, count: 16, newCount: 16, mayMove: true, dontUnmap: true });
  expect(mm.mremap({ start: 3072, count: 128, newCount: 200, mayMove: true })).not.toBe(3072);
  mm.mremap({ start: 2560, count: 512, newCount: 512, mayMove: true, fixed: true, newStart: 3584 });
  mm.khugepaged({ maxPtesNone: 100, maxPtesShared: 10 });
  expect(() => mm.madvise({ start: 0, count: 512 }, 'collapse')).toThrow(PinlabError); // hugetlb: EINVAL
  expect(() => mem.setHugetlbPages(9, 1 << 20)).toThrow(PinlabError);
  hf.close();
  return mm;
}

describe('format 3: every new record', () => {
  it('records, converts text <-> binary byte for byte, and replays to the live state under every scheme', async () => {
    for (const scheme of SCHEMES) {
      const mem = new PageArray({ ...MEM, scheme });
      const rec = mem.record();
      issue13Calls(mem);
      rec.stop();
      const bin = join(dir, `all-${scheme}.pkops`);
      const txt = join(dir, `all-${scheme}.pkops.txt`);
      rec.save(bin);
      rec.save(txt);
      const text = readFileSync(txt, 'utf8');
      expect(text).toMatch(/^pkops 3 /m);
      for (const op of ['madvise', 'mremap', 'khugepaged', 'mmap-hugetlb', 'mmap-hugetlb-file', 'mmap-file-private', 'zap-file', 'hugetlb-pool', 'hugetlb-alloc']) {
        expect(text, op).toMatch(new RegExp(`^(mm#\\d+ )?${op} `, 'm'));
      }
      expect(text).toMatch(/^mm#1 mm-new 4096 swap=40$/m);
      expect(text).toMatch(/^mm#1 mmap-file 1600 \[\d+\.\.\d+\] write shmem$/m);
      expect(text).toMatch(/^mm#1 mmap-file-private 1536 \[\d+\.\.\d+\] write$/m);
      expect(text).toMatch(/^mm#1 zap-file 1544 8 even-cows$/m);
      expect(text).toMatch(/^mm#1 mremap 2560 512 512 3584 may-move fixed = 3584$/m);
      expect(text).toMatch(/^mm#1 mremap 1700 16 16 4294967295 may-move dont-unmap = \d+$/m);
      expect(text).toMatch(/^mm#1 madvise 2048 512 collapse = 1$/m);
      expect(text).toMatch(/^mm#1 madvise 0 512 collapse = EINVAL$/m);
      expect(text).toMatch(/^hugetlb-alloc 9 1 \[\d+\] = 1$/m);
      expect(text).toMatch(/^hugetlb-pool 9 1048576 = EINVAL$/m);
      // Text -> binary is the recorder's binary, binary -> text its text.
      const back = join(dir, `back-${scheme}.pkops`);
      const backText = join(dir, `back-${scheme}.pkops.txt`);
      expect((await runCli(['trace', 'convert', txt, back])).status).toBe(0);
      expect(readFileSync(back).equals(readFileSync(bin))).toBe(true);
      expect((await runCli(['trace', 'convert', bin, backText])).status).toBe(0);
      expect(readFileSync(backText, 'utf8')).toBe(text);
      // The replay (binary and text) ends where the live calls did, every result as recorded.
      const live = stateDigest(mem);
      for (const file of [bin, txt]) {
        const doc = await runReplay({ file, schemes: [scheme], endState: true });
        const s = doc.schemes[0]!;
        expect(s.diverged, `${scheme} ${file}`).toBe(0);
        expect(s.endState).toEqual(live);
      }
    }
  });

  it('a version 2 stream is still read, and replays as before', async () => {
    const file = join(dir, 'v2.pkops.txt');
    writeFileSync(file, 'pkops 2 pages=1024 populated=0 scheme=bias\nmm#1 mm-new 64\nmm#1 mmap 0 8 write populate\nmm#1 touch 0 8 write\n');
    const t = await runReplay({ file, schemes: ['bias'] });
    expect(t.schemes[0]!.refused).toBe(0);
    expect(t.schemes[0]!.ops).toBe(3);
  });
});

// ---- hostile streams -----------------------------------------------------------------------

/** A text stream's refusal by runReplay: EINVAL naming what the pattern says. */
async function refusedText(name: string, body: string, version = 3): Promise<string> {
  const file = join(dir, `${name}.pkops.txt`);
  writeFileSync(file, `pkops ${version} pages=4096 populated=0 scheme=hybrid\n${body}`);
  const err = await runReplay({ file }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, name).toBeInstanceOf(PinlabError);
  expect((err as PinlabError).code).toBe('EINVAL');
  return (err as PinlabError).message;
}

type Raw = { code: number; flags?: number; mm?: number; a?: number; b?: number; entries?: number[] };

/** Records as words, framed by hand (entries in data records), so any field can be hostile. */
function raw(ops: Raw[]): Uint32Array {
  const words: number[] = [];
  for (const o of ops) {
    const e = o.entries ?? [];
    words.push(o.code | ((o.flags ?? 0) << 8), o.mm ?? 0, o.a ?? 0, o.b ?? 0, e.length, 0);
    for (let i = 0; i < e.length; i += 5) {
      const k = Math.min(5, e.length - i);
      words.push(0xff | (k << 8), ...Array.from({ length: 5 }, (_, j) => (j < k ? e[i + j]! : 0)));
    }
  }
  return new Uint32Array(words);
}

describe('hostile records with the new opcodes', () => {
  const C = OP_CODES;
  // Each refused by the framing, before anything runs: [what, record, pattern].
  const BAD: [string, Raw, RegExp][] = [
    ['an advice past collapse', { code: C.madvise, mm: 1, a: 0, b: 4, entries: [5] }, /record 2: madvise's advice must be 0\.\.4/],
    ['an advice of 2^32-1', { code: C.madvise, mm: 1, a: 0, b: 4, entries: [0xffffffff] }, /record 2: madvise's advice/],
    ['a madvise without its advice', { code: C.madvise, mm: 1, a: 0, b: 4 }, /record 2: the op's argument entries are not as many as it takes/],
    ['a madvise with two entries', { code: C.madvise, mm: 1, a: 0, b: 4, entries: [0, 0] }, /record 2: the op's argument entries/],
    ['an mremap with one entry', { code: C.mremap, mm: 1, a: 0, b: 4, entries: [8] }, /record 2: the op's argument entries/],
    ['an mremap flag it does not take', { code: C.mremap, flags: 8, mm: 1, a: 0, b: 4, entries: [8, 0] }, /record 2: flag bits the op does not take/],
    ['an mmap-hugetlb without its order', { code: C['mmap-hugetlb'], mm: 1, a: 0, b: 512 }, /record 2: the op's argument entries/],
    ['khugepaged with entries', { code: C.khugepaged, mm: 1, a: 1, b: 1, entries: [1] }, /record 2: entries on an op that takes none/],
    ['an mm op on an address space that does not exist', { code: C.mremap, mm: 7, a: 0, b: 4, entries: [8, 0] }, /record 2: no such address space/],
    ['khugepaged of no address space', { code: C.khugepaged, mm: 0 }, /record 2: an mm op names no address space/],
    ['a page-array op naming an address space', { code: C['hugetlb-pool'], mm: 1, a: 9, b: 1 }, /record 2: an address space on a page-array op/],
    ['hugetlb-alloc with more heads than asked', { code: C['hugetlb-alloc'], a: 9, b: 1, entries: [0, 512] }, /record 2: hugetlb-alloc records more heads than it asked for/],
    ['zap-file with a flag it does not take', { code: C['zap-file'], flags: 2, mm: 1, a: 0, b: 4 }, /record 2: flag bits/],
    ['mmap-hugetlb-file with a list flag', { code: C['mmap-hugetlb-file'], flags: 8, mm: 1, a: 0, b: 9, entries: [0] }, /record 2: flag bits/],
    ['an opcode past the new ones', { code: 0x38, mm: 1 }, /record 2: unknown opcode/],
  ];

  for (const [what, rec, pattern] of BAD) {
    it(`a batch: ${what}`, () => {
      const mem = new PageArray({ pages: 4096, populated: false, debug: true });
      const mm = new AddressSpace(mem, { pages: 1024 });
      mm.mmap({ start: 0, count: 64, populate: true });
      const before = stateDigest(mem);
      // Record 0: a valid op that would change the state; record 1 (hostile) refuses the whole batch.
      const batch = raw([{ code: C.touch, flags: 1, mm: mm.id, a: 0, b: 64 }, { code: C.mmap, flags: 1, mm: mm.id, a: 100, b: 8 }, rec]);
      let err: unknown = null;
      try {
        mem.submit(batch);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PinlabError);
      expect((err as PinlabError).code).toBe('EINVAL');
      expect((err as PinlabError).message).toMatch(pattern);
      expect(stateDigest(mem)).toEqual(before);
    });
  }

  it('in files: text lines and binary streams name the record or line', async () => {
    expect(await refusedText('advice', 'mm#1 mm-new 64\nmm#1 madvise 0 4 sideways\n')).toMatch(/line 3: an argument is missing or not a number/);
    expect(await refusedText('advice-num', 'mm#1 mm-new 64\nmm#1 madvise 0 4 9\n')).toMatch(/record 1: madvise's advice must be 0\.\.4/);
    expect(await refusedText('mremap-list', 'mm#1 mm-new 64\nmm#1 mremap 0 4 [8 0]\n')).toMatch(/line 3: this op takes no list/);
    expect(await refusedText('swap-twice', 'mm#1 mm-new 64 swap=4 swap=5\n')).toMatch(/line 2: mm-new takes one swap=N/);
    expect(await refusedText('no-mm', 'khugepaged 1 1\n')).toMatch(/line 2: this op needs mm#ID/);
    // The new ops, the shmem flag and the swap slots are refused in streams of earlier versions.
    expect(await refusedText('v2-op', 'mm#1 mm-new 64\nmm#1 khugepaged 1 1\n', 2)).toMatch(/record 1: an op of a later format version than the stream's/);
    expect(await refusedText('v2-pool', 'hugetlb-pool 9 1\n', 2)).toMatch(/record 0: an op of a later format version/);
    expect(await refusedText('v2-swap', 'mm#1 mm-new 64 swap=4\n', 2)).toMatch(/record 0: argument entries in a stream before version 3/);
    expect(await refusedText('v2-shmem', 'mm#1 mm-new 64\nmm#1 mmap-file 0 [5] shmem\n', 2)).toMatch(/record 1: mmap-file's shmem flag in a stream before version 3/);
    // A binary file: a bad advice, the checksums right.
    const mem = new PageArray({ pages: 4096, populated: false, debug: true });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 1024 });
    mm.mmap({ start: 0, count: 8, populate: true });
    mm.madvise({ start: 0, count: 8 }, 'pageout');
    rec.stop();
    const file = join(dir, 'bad-advice.pkops');
    rec.save(file);
    const bytes = readFileSync(file);
    const at = 96 + 24 * 3; // record 3: the madvise's data record (mm-new, mmap, madvise)
    expect(bytes.readUInt32LE(at) & 0xff).toBe(0xff);
    expect(bytes.readUInt32LE(at + 4)).toBe(OP_ADVICE.pageout);
    bytes.writeUInt32LE(7, at + 4);
    rechecksum(bytes);
    writeFileSync(file, bytes);
    const err = await runReplay({ file }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PinlabError);
    expect((err as PinlabError).message).toMatch(/record 2: madvise's advice must be 0\.\.4 .*\(7\)/);
  });

  it('values the core refuses are refused per op, as the calls are, and change nothing', () => {
    for (const scheme of SCHEMES) {
      const mem = new PageArray({ pages: 4096, populated: false, debug: true, scheme });
      const mm = new AddressSpace(mem, { pages: 2048 });
      mm.mmap({ start: 0, count: 64, populate: true });
      mm.mmap({ start: 512, count: 512, populate: true, huge: true });
      const before = stateDigest(mem);
      const b = new OpBatch();
      const push = (op: OpName, f: { mm?: number; a?: number; b?: number; entries?: number[]; flags?: OpFlagName[] }): void => {
        b.push(op, { ...f, flags: f.flags ?? [] });
      };
      push('hugetlb-pool', { a: 7, b: 1 }); // no such hugetlb size
      push('hugetlb-pool', { a: 9, b: 1 << 20 }); // more than the array has
      push('hugetlb-pool', { a: 9, b: 8 }); // 4096 pages: the zones cannot give 8 free 2 MiB blocks
      push('hugetlb-alloc', { a: 9, b: 1 }); // the pool is empty
      push('hugetlb-alloc', { a: 18, b: 0xffffffff });
      push('mmap-hugetlb', { mm: mm.id, a: 1024, b: 512, entries: [10], flags: ['write'] });
      push('mmap-hugetlb', { mm: mm.id, a: 1024, b: 512, entries: [9], flags: ['write'] }); // pool empty: ENOMEM
      push('mmap-hugetlb-file', { mm: mm.id, a: 1024, b: 9, entries: [0] }); // not a pool folio
      push('mremap', { mm: mm.id, a: 0, b: 64, entries: [0xffffffff, 0xffffffff], flags: ['mayMove'] });
      push('mremap', { mm: mm.id, a: 0, b: 64, entries: [64, 0xffffffff], flags: ['fixed'] }); // fixed without mayMove
      push('mremap', { mm: mm.id, a: 0, b: 64, entries: [64, 10], flags: ['mayMove', 'fixed'] }); // overlaps itself
      push('khugepaged', { mm: mm.id, a: 512, b: 0 });
      push('khugepaged', { mm: mm.id, a: 0, b: 0xffffffff });
      push('madvise', { mm: mm.id, a: 0, b: 4096, entries: [OP_ADVICE.pageout] }); // past the end
      push('madvise', { mm: mm.id, a: 100, b: 8, entries: [OP_ADVICE.dontneed] }); // unmapped: ENOMEM
      push('madvise', { mm: mm.id, a: 0, b: 512, entries: [OP_ADVICE.collapse] }); // not wholly mapped
      push('mm-new', { mm: 2, a: 64, entries: [0xffffffff] }); // swap slots past 2^31
      push('zap-file', { mm: mm.id, a: 4000, b: 100, flags: ['evenCows'] });
      push('mmap-file-private', { mm: mm.id, a: 2000, entries: [5000] }); // a PFN past the array
      const results = mem.submit(b.toArray(), { onError: 'continue' });
      expect([...results].map((r) => opResultName(r)).join(' '), scheme).toBe(
        'EINVAL EINVAL ENOMEM ENOMEM EINVAL EINVAL ENOMEM EINVAL EINVAL EINVAL EINVAL EINVAL EINVAL EINVAL ENOMEM ENOMEM EINVAL EINVAL ERANGE',
      );
      expect(stateDigest(mem).pages).toBe(before.pages);
      expect(stateDigest(mem).freeBlocks).toBe(before.freeBlocks);
      expect(stateDigest(mem).spaces).toBe(before.spaces);
      expect(mem.hugetlbPool(9).total).toBe(0);
    }
  });
});
