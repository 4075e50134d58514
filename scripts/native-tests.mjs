#!/usr/bin/env node
// Builds and runs the native (C++) tests of the core with plain CMake (no Node-API).
//   node scripts/native-tests.mjs          release build, every case      (build-native/)
//   node scripts/native-tests.mjs --tsan   ThreadSanitizer build, the concurrency cases (build-tsan/)
//   node scripts/native-tests.mjs --soak   release build, the linearizability histories for
//                                          PINLAB_SOAK_SECONDS (default 60) seconds each
// Writes .test-results/native[-tsan].json = { passed, failed } for the summary in scripts/test.mjs
// (the soak writes native-soak.json, which the summary does not read).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsan = process.argv.includes('--tsan');
const soak = process.argv.includes('--soak');
const buildDir = join(root, tsan ? 'build-tsan' : 'build-native');
const label = tsan ? 'native-tsan' : soak ? 'native-soak' : 'native';

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...options });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function record(passed, failed) {
  mkdirSync(join(root, '.test-results'), { recursive: true });
  writeFileSync(join(root, '.test-results', `${label}.json`), JSON.stringify({ passed, failed }) + '\n');
}

if (!existsSync(join(buildDir, 'CMakeCache.txt'))) {
  const args = ['-S', '.', '-B', buildDir, `-DCMAKE_BUILD_TYPE=${tsan ? 'RelWithDebInfo' : 'Release'}`];
  if (tsan) args.push('-DPINLAB_TSAN=ON');
  if (run('cmake', args) !== 0) {
    record(0, 1);
    process.exit(1);
  }
}
if (run('cmake', ['--build', buildDir, '--parallel', '2', '--target', 'pinlab_core_tests']) !== 0) {
  console.error(`${label}: build failed`);
  record(0, 1);
  process.exit(1);
}

const soakSeconds = process.env.PINLAB_SOAK_SECONDS ?? '60';
const testArgs = soak ? ['--soak', soakSeconds] : tsan ? ['--tag', 'concurrency'] : [];
const env = { ...process.env };
// Make any data race fail the run, not just print a report.
if (tsan) env.TSAN_OPTIONS = `halt_on_error=1 exitcode=66 ${env.TSAN_OPTIONS ?? ''}`.trim();
console.log(`\n${label}: running ${join(buildDir, 'pinlab_core_tests')} ${testArgs.join(' ')}`);
const r = spawnSync(join(buildDir, 'pinlab_core_tests'), testArgs, { cwd: root, env, encoding: 'utf8' });
process.stdout.write(r.stdout ?? '');
process.stderr.write(r.stderr ?? '');
const m = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout ?? '');
let passed = m ? Number(m[1]) : 0;
let failed = m ? Number(m[2]) : 0;
// A crash or a sanitizer abort counts as a failure even if the summary line looked clean.
if (r.status !== 0 && failed === 0) failed = 1;
record(passed, failed);
process.exit(failed === 0 && r.status === 0 ? 0 : 1);
