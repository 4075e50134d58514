#!/usr/bin/env node
// `npm run bench:gup`: builds the gup_fast benchmark with plain CMake (Release, build-native/,
// no Node-API) and runs ./build-native/pinlab_gup_bench with this script's arguments.
//
//   npm run bench:gup                       the tables and the targets (~10 s on 2 cores)
//   npm run bench:gup -- --quick            fewer, shorter trials (CI smoke)
//   npm run -s bench:gup -- --json          one JSON document on stdout
//   npm run bench:gup -- --threads 1,2,4,8  thread counts (default: 1 and all cores)
//   npm run bench:gup -- --trials 31        more trials
//   npm run bench:gup -- --strict           exit 1 if a target is missed
//
// Build output goes to stderr, so that stdout carries only the figures (or the JSON).
// Exit status: the benchmark's (0, 1 with --strict and a target missed, 2 a failed state
// check, 64 bad arguments); 1 if the build failed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const buildDir = join(root, 'build-native');
export const gupBenchBin = join(buildDir, 'pinlab_gup_bench');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function hasNinja() {
  const r = spawnSync('ninja', ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** Configures build-native/ (Release) if needed and builds the pinlab_gup_bench target. Throws on failure. */
export function buildGupBench() {
  const cache = join(buildDir, 'CMakeCache.txt');
  const args = ['-S', '.', '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release'];
  if (!existsSync(cache)) {
    if (hasNinja()) args.push('-G', 'Ninja');
  } else {
    // Shared with the native tests and pinlab_bench; a Debug build's figures mean nothing.
    const type = /^CMAKE_BUILD_TYPE:STRING=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1];
    if (type !== 'Release') console.error(`gup-bench: build-native was ${type || 'untyped'}; reconfiguring as Release`);
  }
  if (run('cmake', args) !== 0) throw new Error('gup-bench: cmake configure failed');
  if (run('cmake', ['--build', buildDir, '--parallel', '2', '--target', 'pinlab_gup_bench']) !== 0) {
    throw new Error('gup-bench: build of pinlab_gup_bench failed');
  }
  return gupBenchBin;
}

function main() {
  try {
    buildGupBench();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
  // stdout is the benchmark's own: text figures, or with --json one JSON document.
  const r = spawnSync(gupBenchBin, process.argv.slice(2), { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.signal) {
    console.error(`gup-bench: pinlab_gup_bench killed by ${r.signal}`);
    process.exit(1);
  }
  process.exit(r.status ?? 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
