// Runs a script in a child `node` (an ES module against the compiled dist/), so that a crash,
// an abort or a hang is reported as a failed expectation instead of taking the test run down.
// The script prints its findings as JSON on its last line of stdout.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const root = join(import.meta.dirname, '..');

/** `import ... from DIST` in a child script: the compiled package's entry point. */
export const DIST = pathToFileURL(join(root, 'dist', 'index.js')).href;
/** dist/schemes.js: the registry's list of schemes. */
export const DIST_SCHEMES = pathToFileURL(join(root, 'dist', 'schemes.js')).href;
/** dist/page-array.js, for its internals (pinsOf). */
export const DIST_PAGE_ARRAY = pathToFileURL(join(root, 'dist', 'page-array.js')).href;
/** The compiled addon surface (lib/native.ts), for calling the native methods directly. */
export const DIST_NATIVE = pathToFileURL(join(root, 'dist', 'native.js')).href;
/** The compiled profiler (runProfile is not exported from the package's entry point). */
export const DIST_PROFILE = pathToFileURL(join(root, 'dist', 'profile', 'run.js')).href;

export interface ChildResult {
  status: number | null;
  signal: string | null;
  /** The last line of stdout, parsed as JSON (null if it was not JSON). */
  out: unknown;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface ChildOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Runs the child under `sh -c 'ulimit L1 && ulimit L2 && ...'`, e.g. ['-v 4000000'] (KB). */
  ulimits?: string[];
  /** Flags for the child `node` itself, e.g. ['--expose-gc', '--max-old-space-size=64']. */
  nodeArgs?: string[];
}

export function runChild(script: string, options: ChildOptions = {}): ChildResult {
  if (!existsSync(join(root, 'dist', 'index.js'))) {
    throw new Error('dist/ is missing: build it with `npm run build:ts`');
  }
  const env = { ...process.env, ...options.env, PINLAB_CHILD_SCRIPT: script };
  const t0 = Date.now();
  const res =
    options.ulimits === undefined
      ? spawnSync(process.execPath, [...(options.nodeArgs ?? []), '--input-type=module', '-e', script], {
          cwd: root,
          env,
          encoding: 'utf8',
          timeout: options.timeoutMs ?? 60_000,
          maxBuffer: 16 << 20,
        })
      : spawnSync(
          '/bin/sh',
          ['-c', `${options.ulimits.map((l) => `ulimit ${l} && `).join('')}exec "$0" ${(options.nodeArgs ?? []).join(' ')} --input-type=module -e "$PINLAB_CHILD_SCRIPT"`, process.execPath],
          { cwd: root, env, encoding: 'utf8', timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 << 20 },
        );
  const stdout = res.stdout ?? '';
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let out: unknown = null;
  try {
    out = JSON.parse(line);
  } catch {
    out = null;
  }
  return { status: res.status, signal: res.signal, out, stdout, stderr: res.stderr ?? '', ms: Date.now() - t0 };
}

/** A readable summary of a child that did not end as expected. */
export function describeChild(r: ChildResult): string {
  return `status ${r.status} signal ${r.signal} after ${r.ms} ms\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-2000)}`;
}
