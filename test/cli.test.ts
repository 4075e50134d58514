// The pinlab CLI: argument errors, the bench command's outputs, --out, --compare, and the
// installed executable.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { EXIT, sizeToPages } from '../lib/cli.js';
import { validateBenchResults } from '../lib/bench/schema.js';
import type { BenchResults } from '../lib/bench/types.js';
import { runCli } from './cli-run.js';

// Every temporary directory the file makes, removed when it ends.
const tempDirs: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SMALL = ['bench', '--scheme', 'bias', '--order', '0,9', '--op', 'pin-unpin', '--threads', '1', '--size', '1024', '--trials', '2', '--duration', '1', '--no-kernel'];

const cli = runCli;

describe('pinlab CLI', () => {
  it('help, version and unknown commands', async () => {
    expect((await cli(['--help'])).status).toBe(EXIT.ok);
    expect((await cli(['bench', '--help'])).out).toMatch(/--compare OLD\.json/);
    expect((await cli(['--version'])).out).toMatch(/^\d+\.\d+\.\d+/);
    const r = await cli(['frobnicate']);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(/unknown command 'frobnicate'/);
  });

  it.each([
    [['bench', '--frob'], /frob/],
    [['bench', '--threads', 'x'], /--threads: 'x'/],
    [['bench', '--size', '3Q'], /--size: '3Q'/],
    [['bench', '--size', '6K'], /whole number of 4 KiB pages/],
    [['bench', '--duration', '0'], /--duration/],
    [['bench', '--scheme', 'nope'], /schemes: unknown value nope/],
    [['bench', '--order', '7', '--op', 'gup-fast', '--no-kernel'], /order/],
    [['bench', '--compare', '/nonexistent/old.json'], /cannot read/],
  ])('argument error %j exits 64 with a message', async (args, re) => {
    const r = await cli(args);
    expect(r.status).toBe(EXIT.usage);
    expect(r.err).toMatch(re);
  });

  it('sizes: 64M is 16384 pages, a bare number is pages', () => {
    expect(sizeToPages('64M')).toBe(16384);
    expect(sizeToPages('1G')).toBe(262144);
    expect(sizeToPages('512')).toBe(512);
  });

  it('bench --json prints a valid result document; --out writes the report', async () => {
    const dir = tempDir('pinlab-cli-');
    const r = await cli([...SMALL, '--json', '--out', dir]);
    expect(r.status, r.err).toBe(EXIT.ok);
    const doc = JSON.parse(r.out) as BenchResults;
    expect(validateBenchResults(doc)).toEqual([]);
    expect(doc.rows.length).toBeGreaterThan(4);
    for (const f of ['results.json', 'results.md']) expect(existsSync(join(dir, f)), f).toBe(true);
    expect(readFileSync(join(dir, 'results.md'), 'utf8')).toMatch(/\| op \|/);
    expect(readFileSync(join(dir, 'bvec-speedup.svg'), 'utf8').startsWith('<svg')).toBe(true);
  });

  it('bench prints the table with the machine and the targets', async () => {
    const r = await cli(SMALL);
    expect(r.status, r.err).toBe(EXIT.ok);
    expect(r.out).toMatch(/machine: /);
    expect(r.out).toMatch(/targets: /);
    expect(r.out).toMatch(/pin-unpin\s+bias\s+bvec\s+2M/);
    expect(r.err).toMatch(/pinlab bench: 100%/); // plain progress lines off a terminal
  });

  it('--compare exits 1 on a regression past the threshold, 0 within it', async () => {
    const dir = tempDir('pinlab-cmp-');
    const base = JSON.parse((await cli([...SMALL, '--json'])).out) as BenchResults;
    // An earlier run 1000x faster on every row: this run regresses everywhere (1000x: a loaded
    // machine must not make the run under test look like anything else).
    const faster = structuredClone(base);
    for (const row of faster.rows) for (const k of ['median', 'min', 'max', 'q1', 'q3'] as const) row.nsPerPage[k] /= 1000;
    writeFileSync(join(dir, 'fast.json'), JSON.stringify(faster));
    const r = await cli([...SMALL, '--compare', join(dir, 'fast.json')]);
    expect(r.status).toBe(EXIT.regression);
    expect(r.err).toMatch(/regress/i);
    // An earlier run 1000x slower: no regression.
    const slower = structuredClone(base);
    for (const row of slower.rows) for (const k of ['median', 'min', 'max', 'q1', 'q3'] as const) row.nsPerPage[k] *= 1000;
    writeFileSync(join(dir, 'slow.json'), JSON.stringify(slower));
    expect((await cli([...SMALL, '--compare', join(dir, 'slow.json')])).status).toBe(EXIT.ok);
    // A result of another schema version is refused before the run.
    writeFileSync(join(dir, 'v2.json'), JSON.stringify({ ...base, version: 2 }));
    const v2 = await cli([...SMALL, '--compare', join(dir, 'v2.json')]);
    expect(v2.status).toBe(EXIT.usage);
    expect(v2.err).toMatch(/version 2/);
  });

  it('the installed executable runs (dist/bin.js with its shebang)', () => {
    const bin = join(root, 'dist', 'bin.js');
    if (!existsSync(bin)) expect.fail('dist/ is missing: build it with npx tsc -p tsconfig.build.json');
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node')).toBe(true);
    const r = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});
