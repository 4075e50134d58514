#!/usr/bin/env node
// `npm run bench:native`: builds the native benchmark with plain CMake (Release, build-native/, no
// Node-API) and runs ./build-native/pinlab_bench with this script's arguments; then, unless
// --no-memory (or --single), runs bench/memory.mjs.
//
//   npm run bench:native                       the table and the targets, then the memory figures
//   npm run bench:native -- --quick            fewer, shorter trials (CI smoke)
//   npm run bench:native -- --json             one JSON document on stdout: { native, memory }
//   npm run bench:native -- --trials 31        more trials
//   npm run bench:native -- --strict           exit 1 if a target is missed
//   npm run bench:native -- --no-memory        skip bench/memory.mjs
//   npm run bench:native -- --single ...       one configuration per call (see bench/README.md)
//
// Build output goes to stderr, so that stdout carries only the figures (or the JSON).
// Also exports buildNativeBench() for bench/js-calls.bench.mjs.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const buildDir = join(root, 'build-native');
export const benchBin = join(buildDir, 'pinlab_bench');

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 2, 2], ...options });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function hasNinja() {
  const r = spawnSync('ninja', ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/**
 * Configures build-native/ (Release) if needed and builds `target` there; returns the binary.
 * Throws on failure. Shared by the benchmark scripts (`label` prefixes their messages).
 */
export function buildNativeTarget(target, label) {
  const cache = join(buildDir, 'CMakeCache.txt');
  const args = ['-S', '.', '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release'];
  if (!existsSync(cache)) {
    if (hasNinja()) args.push('-G', 'Ninja');
  } else {
    // The directory is shared with the native tests; a benchmark of a Debug build would be
    // meaningless, so say so (re-running cmake with -DCMAKE_BUILD_TYPE=Release fixes it).
    const type = /^CMAKE_BUILD_TYPE:STRING=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1];
    if (type !== 'Release') console.error(`${label}: build-native was ${type || 'untyped'}; reconfiguring as Release`);
  }
  if (run('cmake', args) !== 0) throw new Error(`${label}: cmake configure failed`);
  if (run('cmake', ['--build', buildDir, '--parallel', '2', '--target', target]) !== 0) {
    throw new Error(`${label}: build of ${target} failed`);
  }
  return join(buildDir, target);
}

/** Configures build-native/ (Release) if needed and builds the pinlab_bench target. Throws on failure. */
export function buildNativeBench() {
  return buildNativeTarget('pinlab_bench', 'native-bench');
}

function main() {
  const args = process.argv.slice(2);
  const noMemory = args.includes('--no-memory') || args.includes('--single');
  const benchArgs = args.filter((a) => a !== '--no-memory');
  const json = benchArgs.includes('--json');
  const strict = benchArgs.includes('--strict');

  try {
    buildNativeBench();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }

  if (!json) {
    const r = spawnSync(benchBin, benchArgs, { cwd: root, stdio: 'inherit' });
    if (r.error) throw r.error;
    let status = r.status ?? 1;
    if (r.signal) console.error(`native-bench: pinlab_bench killed by ${r.signal}`);
    if (status !== 0 && status !== 1) process.exit(status); // 2: a failed state check, 64: usage
    if (!noMemory) {
      console.log('');
      const m = spawnSync(process.execPath, [join(root, 'bench', 'memory.mjs'), ...(strict ? ['--strict'] : [])], {
        cwd: root,
        stdio: 'inherit',
      });
      if (m.error) throw m.error;
      if ((m.status ?? 1) !== 0) status = m.status ?? 1;
    }
    process.exit(status);
  }

  // --json: one document on stdout.
  const r = spawnSync(benchBin, benchArgs, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0 && r.status !== 1) {
    process.stdout.write(r.stdout ?? '');
    process.exit(r.status ?? 1);
  }
  const out = { native: JSON.parse(r.stdout) };
  let status = r.status;
  if (!noMemory) {
    const m = spawnSync(process.execPath, [join(root, 'bench', 'memory.mjs'), '--json', ...(strict ? ['--strict'] : [])], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
    });
    if (m.error) throw m.error;
    if (m.status !== 0) status = m.status ?? 1;
    out.memory = m.stdout.trim() ? JSON.parse(m.stdout) : null;
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  process.exit(status);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
