// writeReportFiles: a rename that fails partway puts back the files it already replaced, so a
// report folder changes whole or not at all. The failure is injected by mocking node's rename.
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

/** Names whose rename fails (EIO), whatever the source. */
const failing = new Set<string>();

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    rename: async (from: string, to: string) => {
      // Only the renames of temporaries into place fail (putting an old file back still works).
      if (failing.has(basename(to)) && from.includes('.tmp-')) throw Object.assign(new Error(`EIO: injected, rename '${from}' -> '${to}'`), { code: 'EIO' });
      return real.rename(from, to);
    },
  };
});

const { writeReportFiles } = await import('../lib/report/files.js');

const root = mkdtempSync(join(tmpdir(), 'pinlab-renames-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let seq = 0;
beforeEach(() => failing.clear());

const files = [
  { name: 'results.json', data: '{"new":1}' },
  { name: 'results.md', data: '# new' },
  { name: 'chart.svg', data: '<svg>new</svg>' },
];

describe('writeReportFiles: a rename failing partway', () => {
  it('puts back the old files it replaced and removes the new ones that replaced nothing', async () => {
    const dir = join(root, `r${++seq}`);
    await writeReportFiles(dir, [{ name: 'results.json', data: 'old json' }]);
    failing.add('chart.svg'); // the third rename fails: the first two already happened
    await expect(writeReportFiles(dir, files)).rejects.toThrow(/EIO: injected/);
    expect(readFileSync(join(dir, 'results.json'), 'utf8')).toBe('old json');
    expect(existsSync(join(dir, 'results.md'))).toBe(false);
    expect(readdirSync(dir)).toEqual(['results.json']); // no temporary or kept copy left
  });

  it('when every file existed, all keep their old contents', async () => {
    const dir = join(root, `r${++seq}`);
    await writeReportFiles(dir, files.map((f) => ({ name: f.name, data: `old ${f.name}` })));
    failing.add('results.md');
    await expect(writeReportFiles(dir, files)).rejects.toThrow(/EIO/);
    for (const f of files) expect(readFileSync(join(dir, f.name), 'utf8')).toBe(`old ${f.name}`);
    expect(readdirSync(dir).sort()).toEqual(files.map((f) => f.name).sort());
  });

  it('a first rename that fails changes nothing; a later success leaves no kept copies', async () => {
    const dir = join(root, `r${++seq}`);
    await writeReportFiles(dir, files.map((f) => ({ name: f.name, data: 'old' })));
    failing.add('results.json');
    await expect(writeReportFiles(dir, files)).rejects.toThrow(/EIO/);
    for (const f of files) expect(readFileSync(join(dir, f.name), 'utf8')).toBe('old');
    failing.clear();
    await writeReportFiles(dir, files);
    for (const f of files) expect(readFileSync(join(dir, f.name), 'utf8')).toBe(f.data);
    expect(readdirSync(dir).sort()).toEqual(files.map((f) => f.name).sort());
  });

  it('an old file is kept by a hard link, not a copy: the same file (inode, mode) is put back', async () => {
    const dir = join(root, `r${++seq}`);
    await writeReportFiles(dir, [{ name: 'results.json', data: 'old' }]);
    const target = join(dir, 'results.json');
    chmodSync(target, 0o600);
    const before = statSync(target);
    failing.add('results.md');
    await expect(writeReportFiles(dir, files.slice(0, 2))).rejects.toThrow(/EIO/);
    const after = statSync(target);
    expect([after.ino, after.mode, after.nlink]).toEqual([before.ino, before.mode, 1]);
    expect(readFileSync(target, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['results.json']);
  });

  it('a report that names one path twice is refused before anything is written', async () => {
    const dir = join(root, `r${++seq}`);
    await writeReportFiles(dir, [{ name: 'results.json', data: 'old' }]);
    failing.add('results.md');
    for (const twice of ['results.json', './results.json', `../${basename(dir)}/results.json`]) {
      await expect(writeReportFiles(dir, [{ name: 'results.json', data: 'a' }, { name: twice, data: 'b' }, { name: 'results.md', data: '#' }])).rejects.toThrow(
        expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('twice') as string }) as Error,
      );
    }
    expect(readFileSync(join(dir, 'results.json'), 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['results.json']);
  });
});
