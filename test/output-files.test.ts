// Output files (issue 12, item 13): --out is checked before the run; reports and snapshots are
// written through fresh temporaries (O_EXCL | O_NOFOLLOW) renamed into place and never through
// a symbolic link; a FIFO or device given as --snapshot is refused at once.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { EXIT } from '../lib/cli.js';
import { PinlabError } from '../lib/errors.js';
import { writeReport } from '../lib/bench/report.js';
import { writeReportOrStop } from '../lib/cli-util.js';
import { writeProfileReport } from '../lib/profile/report.js';
import { ReportStopped, prepareOutputDir, writeFileAtomic, writeReportFiles } from '../lib/report/files.js';
import { native } from '../lib/native.js';
import { runCli } from './cli-run.js';

const cli = runCli;

// Every scratch directory the file makes, removed when it ends.
const scratchDirs: string[] = [];
const scratch = () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinlab-out-'));
  scratchDirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});
// A run long enough that "refused before the run" is visible in its missing progress lines.
const BENCH = ['bench', '--scheme', 'bias', '--order', '0', '--op', 'pin-unpin', '--threads', '1', '--size', '1024', '--trials', '3', '--duration', '1', '--no-kernel'];

describe('--out is checked before the run', () => {
  it('bench: an existing regular file at --out is a usage error, before any work', async () => {
    const dir = scratch();
    const file = join(dir, 'taken');
    writeFileSync(file, 'mine');
    const r = await cli([...BENCH, '--out', file]);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(/will not write .*taken.*not a directory/);
    expect(r.err).not.toMatch(/%/); // no progress: the run never started
    expect(readFileSync(file, 'utf8')).toBe('mine');
  });

  it('bench and profile: a symlinked results.json is refused before the run, its target untouched', async () => {
    for (const args of [BENCH, ['profile', '--pages', '4096', '--scheme', 'bias', '--threads', '1']]) {
      const dir = scratch();
      const victim = join(dir, 'victim');
      writeFileSync(victim, 'precious');
      mkdirSync(join(dir, 'out'));
      symlinkSync(victim, join(dir, 'out', 'results.json'));
      const r = await cli([...args, '--out', join(dir, 'out')]);
      expect(r.status).toBe(EXIT.usage);
      expect(r.err).toMatch(/results\.json: it is a symbolic link/);
      expect(r.err).not.toMatch(/%/);
      expect(readFileSync(victim, 'utf8')).toBe('precious');
    }
  });

  it('a FIFO at results.md is refused, not opened (which would hang)', async () => {
    const dir = scratch();
    execFileSync('mkfifo', [join(dir, 'results.md')]);
    await expect(prepareOutputDir(dir, ['results.json', 'results.md'])).rejects.toThrow(/results\.md: it is a FIFO/);
  });

  it('a missing folder is created up front, like mkdir -p', async () => {
    const dir = join(scratch(), 'a', 'b');
    expect(await prepareOutputDir(dir, ['results.json'])).toBe(dir);
    expect(lstatSync(dir).isDirectory()).toBe(true);
  });
});

describe('atomic writes', () => {
  it('replace a regular file and leave no temporary behind', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'results.json'), 'old');
    const paths = await writeReportFiles(dir, [{ name: 'results.json', data: 'new' }, { name: 'x.svg', data: '<svg/>' }]);
    expect(paths).toEqual([join(dir, 'results.json'), join(dir, 'x.svg')]);
    expect(readFileSync(join(dir, 'results.json'), 'utf8')).toBe('new');
    expect(readdirSync(dir).sort()).toEqual(['results.json', 'x.svg']);
  });

  it('never write through a symbolic link', async () => {
    const dir = scratch();
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(dir, 'chart.svg'));
    await expect(writeFileAtomic(join(dir, 'chart.svg'), 'evil')).rejects.toBeInstanceOf(PinlabError);
    await expect(writeReportFiles(dir, [{ name: 'chart.svg', data: 'evil' }])).rejects.toThrow(/symbolic link/);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readdirSync(dir).sort()).toEqual(['chart.svg', 'victim']);
  });
});

describe('snapshots', () => {
  it('--out through a planted symlink is refused before reading /proc', async () => {
    const dir = scratch();
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(dir, 'snap.pksnap'));
    const r = await cli(['snapshot', '--out', join(dir, 'snap.pksnap'), '--max-pages', '64']);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(/will not write .*snap\.pksnap: a symbolic link/);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('--out in a missing folder or naming a folder fails at once', async () => {
    const dir = scratch();
    expect((await cli(['snapshot', '--out', join(dir, 'nope', 'x.pksnap')])).status).not.toBe(EXIT.ok);
    expect((await cli(['snapshot', '--out', dir])).err).toMatch(/a directory/);
  });

  it('the old fixed temporary name F.tmp-<pid> is not used: a link planted there is never followed', async () => {
    // The addon's own process writes; plant links for its pid and for neighbours.
    const dir = scratch();
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    const out = join(dir, 'snap.pksnap');
    for (let d = 0; d < 4; d++) symlinkSync(victim, `${out}.tmp-${process.pid + d}`);
    try {
      await native.takeSnapshot(out, 256);
    } catch (e) {
      // Reading /proc/kpage* needs root; the point is only that the victim is not written.
      expect(e).toBeInstanceOf(PinlabError);
    }
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    if (existsSync(out)) expect(lstatSync(out).isFile()).toBe(true);
  });

  it('a FIFO or a device given as --snapshot is refused at once', async () => {
    const dir = scratch();
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    // In a child process with a timeout: the old code blocked forever in open().
    const script = `
      const { runProfile } = await import(${JSON.stringify(join(import.meta.dirname, '..', 'dist', 'profile', 'run.js'))});
      for (const f of [${JSON.stringify(fifo)}, '/dev/zero']) {
        try { await runProfile({ snapshot: f, schemes: ['bias'], threads: 1 }); console.log('accepted ' + f); }
        catch (e) { console.log(e.code + ' ' + e.message); }
      }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.signal).toBeNull();
    expect(r.stdout).toMatch(/EINVAL .*pipe is a FIFO, not a regular file/);
    expect(r.stdout).toMatch(/EINVAL .*\/dev\/zero is a character device, not a regular file/);
  });
});

describe('Ctrl-C while a report is written (bench, profile): nothing written, no temporary', () => {
  it('writeReportOrStop: a SIGINT during the writing stops it before the renames; the handler goes after', async () => {
    const dir = scratch();
    const before = process.listenerCount('SIGINT');
    const r = await writeReportOrStop(async (signal) => {
      expect(process.listenerCount('SIGINT')).toBe(before + 1);
      process.emit('SIGINT'); // the handler aborts the signal, as a real Ctrl-C would
      return writeReportFiles(dir, [{ name: 'results.json', data: '{}' }, { name: 'results.md', data: '#' }], { signal });
    });
    expect(r).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
    expect(process.listenerCount('SIGINT')).toBe(before);
  });

  it('writeReportOrStop: without a signal the report is written and returned; other failures still throw', async () => {
    const dir = scratch();
    const paths = await writeReportOrStop((signal) => writeReportFiles(dir, [{ name: 'results.json', data: '{}' }], { signal }));
    expect(paths).toEqual([join(dir, 'results.json')]);
    await expect(writeReportOrStop(async () => { throw new PinlabError('EINVAL', 'boom'); })).rejects.toThrow(/boom/);
  });

  it("bench's and profile's report writers honour a stopped signal: ReportStopped, nothing written", async () => {
    const bench = await cli([...BENCH, '--json']);
    expect(bench.status).toBe(EXIT.ok);
    const dir = scratch();
    await expect(writeReport(JSON.parse(bench.out), dir, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(ReportStopped);
    expect(readdirSync(dir)).toEqual([]);
    const profile = await cli(['profile', '--pages', '4096', '--scheme', 'bias', '--json']);
    expect(profile.status).toBe(0);
    await expect(writeProfileReport(JSON.parse(profile.out), dir, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(ReportStopped);
    expect(readdirSync(dir)).toEqual([]);
    // Unstopped, both write their whole report.
    const paths = await writeReport(JSON.parse(bench.out), dir, { signal: new AbortController().signal });
    expect(existsSync(paths.json) && existsSync(paths.markdown)).toBe(true);
  });
});
