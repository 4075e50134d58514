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
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { buildDir, buildNativeTarget, root } from './native-bench.mjs';

export const gupBenchBin = join(buildDir, 'pinlab_gup_bench');

/** Configures build-native/ (Release) if needed and builds the pinlab_gup_bench target. Throws on failure. */
export function buildGupBench() {
  return buildNativeTarget('pinlab_gup_bench', 'gup-bench');
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
