// The machine a benchmark runs on, for BenchResults.machine.
import { existsSync, readFileSync } from 'node:fs';
import { arch, cpus, platform, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { BenchMachine } from './types.js';

let cachedVersion: string | undefined;

/**
 * pinlab's version from its package.json, found by walking up from this module: from
 * lib/bench/ (sources, under vitest) or dist/bench/ (compiled) it is two folders up, one above
 * lib/ or dist/. `unknown` if no package.json named `pinlab` is found.
 */
export function pinlabVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  cachedVersion = 'unknown';
  for (let i = 0; i < 4; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
        if (pkg.name === 'pinlab' && typeof pkg.version === 'string') {
          cachedVersion = pkg.version;
          break;
        }
      } catch {
        // an unreadable package.json on the way up is not ours; keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return cachedVersion;
}

/**
 * Describes this machine and build for a {@link BenchResults} document.
 *
 * @param build - how the measured code was built, e.g. `Release (g++ 12.2, -O2)`
 * @returns cpu model (of the first logical CPU), logical cores, kernel release (`os.release()`),
 *   `platform arch` (e.g. `linux x64`), Node version (`process.version`), `build`, and pinlab's
 *   version from its package.json
 */
export function describeMachine(build: string): BenchMachine {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim().replace(/\s+/g, ' ') || 'unknown',
    cores: Math.max(1, list.length),
    kernel: release(),
    os: `${platform()} ${arch()}`,
    node: process.version,
    build,
    pinlab: pinlabVersion(),
  };
}
