#!/usr/bin/env node
// `npm test`: the native tests of the core, then the vitest suite, then one summary line.
// Exits non-zero if anything failed. Counts land in .test-results/ for .ci/run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const results = join(root, '.test-results');
rmSync(join(results, 'native.json'), { force: true });
rmSync(join(results, 'vitest.json'), { force: true });
mkdirSync(results, { recursive: true });

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const nativeStatus = run(process.execPath, [join(root, 'scripts', 'native-tests.mjs')]);

const vitestJson = join(results, 'vitest-report.json');
rmSync(vitestJson, { force: true });
const vitestBin = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const vitestStatus = run(process.execPath, [
  vitestBin,
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${vitestJson}`,
]);

let vPassed = 0;
let vFailed = 0;
if (existsSync(vitestJson)) {
  const report = JSON.parse(readFileSync(vitestJson, 'utf8'));
  vPassed = report.numPassedTests ?? 0;
  vFailed = (report.numFailedTests ?? 0) + (report.numFailedTestSuites ?? 0);
}
// A runner that died before reporting still counts as a failure.
if (vitestStatus !== 0 && vFailed === 0) vFailed = 1;
writeFileSync(join(results, 'vitest.json'), JSON.stringify({ passed: vPassed, failed: vFailed }) + '\n');

const native = existsSync(join(results, 'native.json'))
  ? JSON.parse(readFileSync(join(results, 'native.json'), 'utf8'))
  : { passed: 0, failed: 1 };
const passed = native.passed + vPassed;
const failed = native.failed + vFailed;
console.log(`\nnative: ${native.passed} passed, ${native.failed} failed; vitest: ${vPassed} passed, ${vFailed} failed`);
console.log(`total: ${passed} passed, ${failed} failed`);
process.exit(nativeStatus === 0 && vitestStatus === 0 && failed === 0 ? 0 : 1);
