// Output paths, round 25: an empty --out (which resolved to the current folder, or wrote a
// temporary named '.tmp-...' there and failed only at the rename, after the whole run) and a
// folder that passes access(2) but takes no file (/proc as root: the run went to the end and
// failed with a raw ENOENT). Both are now refused before any work, as EINVAL naming the path.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { EXIT } from '../lib/cli.js';
import { AddressSpace, PageArray, PageCacheFile, PinlabError, stateDigest } from '../lib/index.js';
import { prepareOutputDir, writeFileAtomic } from '../lib/report/files.js';

import { runCli } from './cli-run.js';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'dist', 'bin.js');
const dir = mkdtempSync(join(tmpdir(), 'pinlab-attack25-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
/** A fresh empty folder: the working directory of a CLI run whose output must not land there. */
const freshDir = (): string => mkdtempSync(join(dir, `${++seq}-`));

/** `pinlab args` in its own process, in folder `cwd`. */
function pinlab(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** A small stream to replay and convert. */
function stream(): string {
  const where = freshDir();
  const file = join(where, 'in.pkops');
  const r = pinlab(where, ['trace', 'synth', '--ops', '5000', '--out', file]);
  expect(r.status, r.err).toBe(EXIT.ok);
  return file;
}


describe('an empty output path is refused before the run, and nothing lands in the current folder', () => {
  it('replay --out ""', () => {
    const input = stream();
    const cwd = freshDir();
    const r = pinlab(cwd, ['replay', input, '--scheme', 'bias', '--out', '']);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(/EINVAL: will not write '': an empty path/);
    expect(r.err).not.toMatch(/done/); // the replay never ran
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('bench and profile --out ""', async () => {
    for (const args of [
      ['bench', '--scheme', 'bias', '--order', '0', '--op', 'pin-unpin', '--threads', '1', '--size', '1024', '--trials', '3', '--duration', '1', '--no-kernel'],
      ['profile', '--pages', '4096', '--scheme', 'bias', '--threads', '1'],
    ]) {
      const r = await runCli([...args, '--out', '']);
      expect(r.status, args[0]).toBe(EXIT.usage);
      expect(r.err).toMatch(/an empty path/);
      expect(r.err).not.toMatch(/%/);
    }
  });

  it('trace synth --out "" and trace convert IN "": no work, no temporary', () => {
    const input = stream();
    for (const args of [['trace', 'synth', '--ops', '100000', '--out', ''], ['trace', 'convert', input, '']]) {
      const cwd = freshDir();
      const r = pinlab(cwd, args);
      expect(r.status, args.join(' ')).toBe(EXIT.usage);
      expect(r.err).toMatch(/EINVAL.*an empty path names no file/);
      expect(r.err).not.toMatch(/100%/);
      expect(readdirSync(cwd)).toEqual([]); // was a '.tmp-<pid>-<hex>' file, renamed to '' (ENOENT)
    }
  });

  it('an output file named with a trailing slash is refused: it names a folder', () => {
    const cwd = freshDir();
    const r = pinlab(cwd, ['trace', 'synth', '--ops', '10', '--out', 'sub/']);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(/EINVAL.*it names a folder, not a file|EINVAL.*folder does not exist/);
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('the library calls: save(""), prepareOutputDir(""), writeFileAtomic("")', async () => {
    const mem = new PageArray({ pages: 64 });
    try {
      const rec = mem.record();
      mem.getPage(0);
      const e = (() => {
        try {
          rec.save('');
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(PinlabError);
      expect((e as PinlabError).code).toBe('EINVAL');
      expect((e as PinlabError).message).toMatch(/empty path/);
    } finally {
      mem.dispose();
    }
    await expect(prepareOutputDir('', ['results.json'])).rejects.toThrow(/EINVAL: will not write '': an empty path/);
    await expect(writeFileAtomic('', 'x')).rejects.toThrow(/EINVAL: will not write '': an empty path/);
  });
});

// /proc/self/ is a folder that root's access(2) calls writable, but no file can be created in it
// (for another user access(2) already refuses it: the same EINVAL).
describe('a folder that passes access(2) but takes no file is refused before the run', () => {
  it('replay --out /proc/self: EINVAL naming the folder, before the replay', () => {
    const input = stream();
    const r = pinlab(freshDir(), ['replay', input, '--scheme', 'bias', '--out', '/proc/self']);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(/EINVAL: will not write \/proc\/self: no file can be created in it/);
    expect(r.err).not.toMatch(/done/);
  });

  it('prepareOutputDir leaves nothing behind in a folder it could write', async () => {
    const where = freshDir();
    expect(await prepareOutputDir(where, ['results.json'])).toBe(where);
    expect(readdirSync(where)).toEqual([]); // the probe file is gone
  });

  it('trace convert IN /proc/F and trace synth --out /proc/F: EINVAL, before the work', () => {
    const input = stream();
    for (const args of [['trace', 'convert', input, '/proc/pinlab-x.pkops.txt'], ['trace', 'synth', '--ops', '100000', '--out', '/proc/self/x.pkops']]) {
      const r = pinlab(freshDir(), args);
      expect(r.status, args.join(' ')).toBe(EXIT.usage);
      expect(r.err).toMatch(/EINVAL: .*(no file can be created in its folder|its folder is not writable)/);
      expect(r.err).not.toMatch(/100%/);
    }
  });
});

// The second look (a hostile user of this round's own change): a folder under /proc made
// Node's recursive mkdir spin forever; ENOTDIR, ENAMETOOLONG, a NUL byte or a number came out as
// raw Node errors; a legal 250-byte name had no room for its temporary's suffix; and a regular
// file where the folder should be was "not a regular file".
describe('output paths, second look', () => {
  it('--out /proc/self/newdir is refused at once (it used to spin in mkdir), nothing created', () => {
    const input = stream();
    const r = spawnSync(process.execPath, [bin, 'replay', input, '--scheme', 'bias', '--out', '/proc/self/pinlab-new/sub'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.signal).toBeNull(); // not killed by the timeout
    expect(r.status).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/EINVAL: will not write \/proc\/self: no file can be created in it/);
  });

  it('a path through a regular file, a too-long name, a NUL byte, a number: PinlabError EINVAL', async () => {
    const where = freshDir();
    const file = join(where, 'plain');
    writeFileSync(file, 'x');
    const cases: [unknown, RegExp][] = [
      [join(file, 'sub'), /a part of it is not a directory/],
      [join(where, 'n'.repeat(300)), /too long/],
      [join(where, 'a\0b'), /cannot hold a NUL byte/],
      [5, /must be a string/],
      [undefined, /must be a string/],
      [file, /it is a regular file, not a directory/],
    ];
    for (const [dir, why] of cases) {
      const e = await prepareOutputDir(dir as string, ['results.json']).then(() => undefined, (err: unknown) => err);
      expect(e, String(dir)).toBeInstanceOf(PinlabError);
      expect((e as PinlabError).code).toBe('EINVAL');
      expect((e as PinlabError).message).toMatch(why);
    }
    expect(readdirSync(where)).toEqual(['plain']);
    const cli = await runCli(['profile', '--pages', '4096', '--scheme', 'bias', '--threads', '1', '--out', join(file, 'sub')]);
    expect(cli.status).toBe(EXIT.usage); // was 2, with a raw ENOTDIR
  });

  it('a legal name of 250 bytes is written (its temporary takes a short name); one of 256 is refused', () => {
    const where = freshDir();
    const long = join(where, `${'n'.repeat(244)}.pkops`); // 250 bytes
    const ok = pinlab(where, ['trace', 'synth', '--ops', '100', '--out', long]);
    expect(ok.status, ok.err).toBe(EXIT.ok);
    expect(readdirSync(where)).toEqual([`${'n'.repeat(244)}.pkops`]);
    const tooLong = pinlab(where, ['trace', 'synth', '--ops', '100', '--out', join(where, `${'n'.repeat(250)}.pkops`)]);
    expect(tooLong.status).toBe(EXIT.usage);
    expect(tooLong.err).toMatch(/EINVAL: .*its name is longer than 255 bytes/);
  });
});

describe('the state digest sees a mapping\'s file holds (MADV_DONTNEED of a shared file mapping)', () => {
  it('two states alike in every count, one holding the zapped page and one not, digest apart', () => {
    // A: the mapping holds the zapped page (the next touch maps it). B: the same refcount from
    // two plain references, the hold dropped by a hole punch (the next touch is SIGBUS).
    const build = (withHold: boolean) => {
      const mem = new PageArray({ pages: 64, populated: false, scheme: 'separate' });
      const mm = new AddressSpace(mem, { pages: 64 });
      const file = new PageCacheFile(mem, { name: 'f', pages: 1 });
      mm.mmap({ start: 16, count: 1, file });
      const p = file.pfnAt(0)!;
      if (!withHold) mem.getPage(p, 2);
      mm.madvise({ start: 16, count: 1 }, 'dontneed');
      if (!withHold) file.punchHole(0, 1);
      return { mem, mm, p };
    };
    const a = build(true);
    const b = build(false);
    expect(a.mem.refcount(a.p)).toBe(b.mem.refcount(b.p));
    const da = stateDigest(a.mem);
    const db = stateDigest(b.mem);
    expect(da.pages).toBe(db.pages);
    expect(da.spaces).not.toBe(db.spaces);
    a.mm.touch(16, 1);
    expect(a.mm.translate(16)?.pfn).toBe(a.p);
    expect(() => b.mm.touch(16, 1)).toThrow(/EFAULT/);
  });
});
