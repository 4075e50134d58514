// Issue 12 item 6, the CLI's input files: a FIFO, a directory, a link to a FIFO or a device,
// or a huge file given as --population (profile) or --compare (bench) is refused at once with
// a message; never a hang (a FIFO without a writer blocked the read forever) nor an OOM.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const bin = join(import.meta.dirname, '..', 'dist', 'bin.js');
const dir = mkdtempSync(join(tmpdir(), 'pinlab-cli-inputs-'));
spawnSync('mkfifo', [join(dir, 'fifo')]);
symlinkSync(join(dir, 'fifo'), join(dir, 'link-to-fifo'));
mkdirSync(join(dir, 'folder'));
writeFileSync(join(dir, 'huge.json'), '');
truncateSync(join(dir, 'huge.json'), 2 ** 31); // sparse: 2 GiB of NULs
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
}

describe('CLI input files', () => {
  const cases: [string, string[], RegExp][] = [
    ['profile --population FIFO', ['profile', '--population', 'fifo'], /FIFO/],
    ['profile --population link to a FIFO', ['profile', '--population', 'link-to-fifo'], /FIFO/],
    ['profile --population directory', ['profile', '--population', 'folder'], /directory/],
    ['profile --population /dev/zero', ['profile', '--population', '/dev/zero'], /device|not a regular file/],
    ['profile --population huge', ['profile', '--population', 'huge.json'], /too large/],
    ['bench --compare FIFO', ['bench', '--compare', 'fifo'], /FIFO/],
    ['bench --compare /dev/zero', ['bench', '--compare', '/dev/zero'], /device|not a regular file/],
  ];
  for (const [name, args, message] of cases) {
    it(`${name}: refused at once`, () => {
      const r = run(args);
      expect(r.signal, `hung or crashed: ${r.stderr}`).toBeNull();
      expect(r.status).toBe(64);
      expect(r.stderr).toMatch(message);
    });
  }
});
