// The randomized API fuzz (test/fuzz/api-fuzz.mjs): a million calls with valid and hostile
// arguments and workers terminated mid-run, in a child process so a crash is reported, not
// suffered. Every refused call must leave the state unchanged, and every round must balance.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const script = join(import.meta.dirname, 'fuzz', 'api-fuzz.mjs');

describe('API fuzz', () => {
  it('1M calls: no crash, no unexpected error, every invariant intact', () => {
    const r = spawnSync(process.execPath, [script, '--calls', '1000000', '--seed', '20261203', '--workers', '12'], {
      encoding: 'utf8',
      timeout: 600_000,
      maxBuffer: 1 << 24,
    });
    expect(r.signal, r.stderr.slice(-2000)).toBeNull();
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    expect(line, r.stderr.slice(-2000)).toMatch(/^\{/);
    const result = JSON.parse(line) as { calls: number; refused: number; rounds: number; violations: string[]; unexpected: string[]; workersTerminated: number };
    expect(result.violations).toEqual([]);
    expect(result.unexpected).toEqual([]);
    expect(result.calls).toBeGreaterThanOrEqual(1_000_000);
    expect(result.refused).toBeGreaterThan(100_000); // the hostile share really is refused
    expect(result.workersTerminated).toBe(12);
    expect(r.status).toBe(0);
  }, 600_000);
});
