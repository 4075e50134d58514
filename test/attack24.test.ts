// Attack on op streams, round 24: a text stream of a few bytes whose list would fill the
// machine's memory, a stop that lands after the last op ran, op and flag names that only
// Object.prototype knows, paths that are not strings, documents that are not replay results,
// the 2019 rule (pincountMinOrder 31) in a recording, and a refused call whose arguments no
// record field can hold. Each case failed on the code before this round.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import {
  AddressSpace,
  HugetlbFile,
  OpBatch,
  PageArray,
  PageCacheFile,
  PinOwner,
  PinlabError,
  formatReplayMarkdown,
  formatReplayTable,
  runReplay,
  stateDigest,
} from '../lib/index.js';

import { runCli } from './cli-run.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-attack24-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
const fresh = (name: string): string => join(dir, `${++seq}-${name}`);

const HEADER = 'pkops 3 pages=64 movable=0 folio-order=0 pincount-min-order=1 bias=64 debug=1 populated=0 scheme=bias threads=1';

async function rejection(p: Promise<unknown>): Promise<PinlabError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PinlabError);
    return e as PinlabError;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): PinlabError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PinlabError);
    return e as PinlabError;
  }
  throw new Error('expected a PinlabError');
}

describe('a text list too long to expand in memory', () => {
  // 136 bytes that name 2^32 - 1 PFNs: 16 GiB of entries, and their records twice over.
  const bomb = (): string => {
    const file = fresh('bomb.pkops.txt');
    writeFileSync(file, `${HEADER}\npin [0..4294967294] = 3\n`);
    return file;
  };

  it('runReplay refuses it with ENOMEM naming the line, before expanding it', async () => {
    const t0 = performance.now();
    const e = await rejection(runReplay({ file: bomb(), schemes: ['bias'] }));
    expect(e.code).toBe('ENOMEM');
    expect(e.message).toMatch(/line 2: a list too long to expand/);
    expect(performance.now() - t0).toBeLessThan(5000); // refused, not expanded (it took minutes)
  });

  it('trace convert refuses it too and writes nothing', async () => {
    const out = fresh('bomb-out.pkops');
    const r = await runCli(['trace', 'convert', bomb(), out]);
    expect(r.status).not.toBe(0);
    expect(r.err).toMatch(/ENOMEM.*line 2/);
    expect(existsSync(out)).toBe(false);
  });

  it('a list that fits is still expanded as written', async () => {
    const file = fresh('fits.pkops.txt');
    writeFileSync(file, `${HEADER}\npin [0..63] = 64\nunpin [0..63] = 64\n`);
    const doc = await runReplay({ file, schemes: ['bias'] });
    expect(doc.schemes[0]!.balanced).toBe(true);
    expect(doc.stream.ops).toBe(2);
  });
});

describe('runReplay and a stop that lands after the last op', () => {
  it('rejects once its signal was aborted, even when the ops had all run', async () => {
    const file = fresh('small.pkops.txt');
    writeFileSync(file, `${HEADER}\npin [0..7] = 8\nunpin [0..7] = 8\n`);
    const ac = new AbortController();
    // The last progress report ('done') comes after every op ran, before the promise settles.
    const e = await rejection(
      runReplay({
        file,
        schemes: ['bias'],
        signal: ac.signal,
        onProgress: (p) => {
          if (p.what === 'done') ac.abort();
        },
      }),
    );
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/stopped/);
  });
});

describe('OpBatch.push names', () => {
  it('an op or flag name that only Object.prototype has is EINVAL, as any unknown name', () => {
    for (const name of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      const e = thrown(() => new OpBatch().push(name as never));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toMatch(/unknown op/);
      const f = thrown(() => new OpBatch().push('pin', { flags: [name as never] }));
      expect(f.code).toBe('EINVAL');
      expect(f.message).toMatch(/unknown op flag/);
    }
  });

  it('flags that are not an array of names are EINVAL, never a TypeError', () => {
    for (const flags of [5, {}, 'write', null, new Set(['write'])]) {
      const e = thrown(() => new OpBatch().push('pin', { flags: flags as never }));
      expect(e.code).toBe('EINVAL');
    }
    // The batch is unchanged by the refused pushes.
    const b = new OpBatch();
    thrown(() => b.push('pin', { flags: 5 as never }));
    expect(b.toArray().length).toBe(0);
  });
});

describe('OpRecorder.save paths', () => {
  it('a path that is neither a string nor a file: URL is EINVAL and writes no file', () => {
    const mem = new PageArray({ pages: 64, populated: true });
    const rec = mem.record();
    mem.pinPages({ start: 0, count: 2 });
    const cwd = process.cwd();
    const here = fresh('cwd');
    mkdirSync(here);
    process.chdir(here);
    try {
      for (const p of [undefined, 5, Symbol('x'), true, null, new URL('http://example.com/x')]) {
        expect(thrown(() => rec.save(p as never)).code).toBe('EINVAL');
      }
      expect(readdirSync(here)).toEqual([]);
    } finally {
      process.chdir(cwd);
    }
    const url = pathToFileURL(fresh('by-url.pkops'));
    const saved = rec.save(url);
    expect(existsSync(saved.path)).toBe(true);
    expect(saved.ops).toBe(1);
  });
});

describe('replay report formatting of something that is not a replay document', () => {
  it('formatReplayTable / formatReplayMarkdown: EINVAL, never a TypeError', () => {
    for (const doc of [null, undefined, {}, { schema: 'pinlab-replay' }, 5]) {
      expect(thrown(() => formatReplayTable(doc as never)).code).toBe('EINVAL');
      expect(thrown(() => formatReplayMarkdown(doc as never)).code).toBe('EINVAL');
    }
  });
});

describe('the 2019 rule in a recording (pincountMinOrder 31: no exact pincount)', () => {
  it('records, saves in both forms, and replays in the same end state', async () => {
    const opts = { pages: 1 << 12, populated: false, scheme: 'hybrid' as const, pincountMinOrder: 31 };
    const mem = new PageArray(opts);
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 1024 });
    mm.mmap({ start: 0, count: 512, huge: true, populate: true });
    const r = mm.pinUserPagesFast(0, 8, { write: true });
    expect(mem.pincount(r.pfns[0]!)).toBeNull(); // no exact pincount under this rule
    rec.stop();
    const bin = rec.save(fresh('p31.pkops'));
    const txt = rec.save(fresh('p31.pkops.txt'));
    for (const file of [bin.path, txt.path]) {
      const doc = await runReplay({ file, schemes: ['hybrid'], endState: true });
      const s = doc.schemes[0]!;
      expect(s.pincountMinOrder).toBe(31);
      const live = stateDigest(mem);
      expect(s.endState!.pages).toBe(live.pages);
      expect(s.endState!.spaces).toBe(live.spaces);
      expect(s.endState!.stats).toEqual(live.stats);
    }
    // And as a replay rule of its own.
    const doc = await runReplay({ file: bin.path, schemes: ['hybrid'], rules: [1, 31] });
    expect(doc.schemes.map((s) => s.pincountMinOrder)).toEqual([1, 31]);
  });
});

describe('a refused call whose argument no record field can hold', () => {
  it('is not recorded, and the recording replays with nothing diverged', async () => {
    const mem = new PageArray({ pages: 256, populated: false, scheme: 'bias' });
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 256 });
    mm.mmap({ start: 0, count: 16, populate: true });
    const before = rec.count;
    for (const count of [-1, 1.5, 2 ** 32]) {
      expect(thrown(() => mm.pinUserPagesFast(0, count)).code).toMatch(/EINVAL|EFAULT/);
      expect(thrown(() => mm.getUserPagesFast(0, count)).code).toMatch(/EINVAL|EFAULT/);
    }
    expect(rec.count).toBe(before);
    // 2^32 - 1 fits a field: refused (EFAULT) and recorded, and the replay refuses it alike.
    expect(thrown(() => mm.pinUserPagesFast(0, 2 ** 32 - 1)).code).toBe('EFAULT');
    expect(rec.count).toBe(before + 1);
    const file = rec.save(fresh('lossy.pkops')).path;
    const doc = await runReplay({ file, schemes: ['bias'] });
    expect(doc.schemes[0]!.diverged).toBe(0);
    expect(doc.schemes[0]!.refusals).toMatchObject({ EFAULT: 1 });
  });
});

describe('tags while recording: an address space is used only by the tag that created it', () => {
  const opts = { pages: 1 << 12, populated: false, debug: true, scheme: 'bias' as const, pinBias: 64 };

  it('a batch op on a JS-made address space under another tag is refused before it runs', () => {
    const mem = new PageArray(opts);
    const rec = mem.record();
    const mm = new AddressSpace(mem, { pages: 1024 });
    mm.mmap({ start: 0, count: 64, populate: true });
    const before = stateDigest(mem);
    const count = rec.count;
    const batch = new OpBatch().push('touch', { mm: 1, a: 0, b: 4, tag: 0, flags: ['write'] }).push('touch', { mm: 1, a: 8, b: 4, tag: 1, flags: ['write'] });
    const e = thrown(() => mem.submit(batch.toArray()));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/op 1 of the batch uses mm#1 under tag 1, but mm#1 was created under tag 0/);
    expect(stateDigest(mem)).toEqual(before); // not even op 0 ran
    expect(rec.count).toBe(count);
    // Under tag 0 it runs and is recorded; the recording replays.
    expect([...mem.submit(new OpBatch().push('touch', { mm: 1, a: 8, b: 4, flags: ['write'] }).toArray())]).toEqual([0]);
    rec.stop();
    const fresh = new PageArray(opts);
    fresh.submit(rec.buffer());
    expect(stateDigest(fresh)).toEqual(stateDigest(mem));
    // Not recording, the tag is only a label: the batch runs.
    expect([...mem.submit(batch.toArray())]).toEqual([0, 0]);
  });

  it('an address space a batch made under tag 2: JS changes refused, its dispose recorded as tag 2, the recording replays', async () => {
    const mem = new PageArray(opts);
    const rec = mem.record();
    mem.submit(new OpBatch().push('mm-new', { mm: 1, a: 1024, tag: 2 }).push('mmap', { mm: 1, a: 0, b: 16, tag: 2, flags: ['populate', 'write'] }).toArray());
    const mm = AddressSpace.byId(mem, 1)!;
    const before = stateDigest(mem);
    expect(thrown(() => mm.mmap({ start: 64, count: 16, populate: true })).message).toMatch(/created by a batch under tag 2/);
    expect(thrown(() => mm.pinUserPagesFast(0, 1)).code).toBe('EINVAL');
    expect(thrown(() => mm.fork()).code).toBe('EINVAL');
    expect(stateDigest(mem)).toEqual(before);
    // Tag 2's batches still use it.
    expect([...mem.submit(new OpBatch().push('touch', { mm: 1, a: 0, b: 4, tag: 2, flags: ['write'] }).toArray())]).toEqual([0]);
    mm.dispose();
    rec.stop();
    const file = rec.save(fresh('tag2.pkops')).path;
    const doc = await runReplay({ file, schemes: ['bias'], endState: true });
    const s = doc.schemes[0]!;
    expect(s.diverged).toBe(0);
    expect(s.endState!.pages).toBe(stateDigest(mem).pages);
    expect(s.endState!.freePages).toBe(stateDigest(mem).freePages);
  });
});

describe('review round 24', () => {
  it('a file mapping into a space a batch made under another tag is refused before the file allocates', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false, debug: true, scheme: 'bias', pinBias: 64 });
    const rec = mem.record();
    mem.submit(new OpBatch().push('mm-new', { mm: 1, a: 2048, tag: 1 }).push('mmap', { mm: 1, a: 0, b: 64, tag: 1, flags: ['populate', 'write'] }).toArray());
    const file = new PageCacheFile(mem, { name: 'f', pages: 64 });
    const mm = AddressSpace.byId(mem, 1)!;
    const before = stateDigest(mem);
    const count = rec.count;
    const e = thrown(() => mm.mmap({ start: 1024, count: 16, file, shared: true }));
    expect(e.code).toBe('EINVAL');
    expect(stateDigest(mem)).toEqual(before);
    expect(rec.count).toBe(count);
  });

  it('save() of a file: URL that names no local path is EINVAL, never a TypeError', () => {
    const mem = new PageArray({ pages: 64, populated: true });
    const rec = mem.record();
    mem.pinPages({ start: 0, count: 1 });
    for (const u of [new URL('file://server/x.pkops'), new URL('file:///tmp/a%2Fb.pkops'), new Proxy(new URL('file:///tmp/x.pkops'), {})]) {
      expect(thrown(() => rec.save(u)).code).toBe('EINVAL');
    }
  });
});

describe('hostile use of the core API (round 24)', () => {
  it('an options getter is read once: a file that changes between reads cannot map another array\'s pages', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const mem2 = new PageArray({ pages: 1 << 12, populated: false });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const mine = new PageCacheFile(mem, { name: 'mine', pages: 16 });
    const theirs = new PageCacheFile(mem2, { name: 'theirs', pages: 16 });
    let reads = 0;
    const options = { start: 0, count: 4, get file() { return reads++ === 0 ? mine : theirs; } };
    mm.mmap(options as never);
    expect(reads).toBe(1);
    expect(mm.translate(0)!.pfn).toBe(mine.pfnAt(0));
    expect(theirs.cachedPages).toBe(0);
  });

  it('a file of 2^31 pages of holes costs nothing, and truncate to 2^31 keeps pfnAt and mappings right', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const free0 = mem.freePages();
    const big = new PageCacheFile(mem, { name: 'big', pages: 2 ** 31 });
    expect(big.cachedPages).toBe(0);
    expect(big.pfnAt(2 ** 31 - 1)).toBeNull();
    const f = new PageCacheFile(mem, { name: 'f', pages: 16 });
    f.truncate(2 ** 31);
    expect(f.size).toBe(2 ** 31);
    expect(f.pfnAt(100)).toBeNull();
    const mm = new AddressSpace(mem, { pages: 1024 });
    mm.mmap({ start: 0, count: 16, file: f, offset: 100 });
    expect(f.pfnAt(100)).toBe(mm.translate(0)!.pfn);
    mm.munmap({ start: 0, count: 16 });
    expect(f.truncate(0).removedPages).toBe(16);
    expect(f.cachedPages).toBe(0);
    expect(big.truncate(0).removedPages).toBe(0);
    expect(mem.freePages()).toBe(free0);
  });

  it('an object with only the prototype of PinOwner, PageCacheFile or HugetlbFile is EINVAL, never a TypeError', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const mm = new AddressSpace(mem, { pages: 1024 });
    const fakeOwner = Object.create(PinOwner.prototype, { mem: { value: mem } }) as PinOwner;
    expect(thrown(() => mem.pinPages({ start: 0, count: 1 }, { owner: fakeOwner })).code).toBe('EINVAL');
    const fakeFile = Object.create(PageCacheFile.prototype, { mem: { value: mem }, name: { value: 'x' } }) as PageCacheFile;
    expect(thrown(() => mm.mmap({ start: 0, count: 4, file: fakeFile })).code).toBe('EINVAL');
    const fakeH = Object.create(HugetlbFile.prototype, { mem: { value: mem }, name: { value: 'h' } }) as HugetlbFile;
    expect(thrown(() => mm.mmap({ start: 512, count: 512, file: fakeH })).code).toBe('EINVAL');
    expect(mem.stats().pinAcquired).toBe(0);
  });
});

describe('hostile use, round 24 (second helper)', () => {
  it('a PageCacheFile or HugetlbFile whose options getter disposes the array is EINVAL; so are a disposed array\'s file calls', () => {
    const mem = new PageArray({ pages: 1 << 12, populated: false });
    const e = thrown(() => new PageCacheFile(mem, { name: 'f', get pages() { mem.dispose(); return 16; } } as never));
    expect(e.code).toBe('EINVAL');
    const mem2 = new PageArray({ pages: 1 << 12, populated: false });
    const f = new PageCacheFile(mem2, { name: 'g', pages: 16 });
    mem2.dispose();
    expect(thrown(() => f.truncate(32)).code).toBe('EINVAL');
    expect(thrown(() => f.punchHole(0, 1)).code).toBe('EINVAL');
    const mem3 = new PageArray({ pages: 1 << 12, populated: false });
    expect(thrown(() => new HugetlbFile(mem3, { name: 'h', order: 9, get pages() { mem3.dispose(); return 512; } } as never)).code).toBe('EINVAL');
  });

  it('pinlab profile --preset with an Object.prototype name is an unknown preset; bench --threshold is checked before the run', async () => {
    for (const p of ['constructor', '__proto__', 'toString']) {
      const r = await runCli(['profile', '--preset', p]);
      expect(r.status).toBe(64);
      expect(r.err).toMatch(/unknown preset/);
    }
    const b = await runCli(['bench', '--threshold', 'bogus']);
    expect(b.status).toBe(64);
    expect(b.err).toMatch(/--threshold/);
    expect(b.err).not.toMatch(/%/); // refused before any progress line
  });
});
