#!/usr/bin/env node
// Proves the extension point of native/core/README.md: a fifth scheme is one new file in
// native/core/pages/schemes/ plus its include and X(...) line in registry.h, and nothing else.
// In a scratch copy of the sources it adds 'bias-twin' (the bias arithmetic under another name),
// regenerates lib/schemes.ts, builds the native tests and runs them: every test that iterates
// the registry (semantics, concurrency, mm, one stress case per scheme) must now also run, and
// pass, for the new scheme. Writes .test-results/scheme-extension.json = { passed, failed }.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'pinlab-scheme-'));
const checks = [];
function check(what, ok, detail = '') {
  checks.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'}  ${what}${detail && !ok ? `: ${detail}` : ''}`);
}

try {
  for (const entry of ['CMakeLists.txt', 'native', 'bench/native', 'scripts/gen-schemes.mjs', 'lib/schemes.ts'])
    cpSync(join(root, entry), join(work, entry), { recursive: true });
  const schemes = join(work, 'native', 'core', 'pages', 'schemes');

  // 1. The one new file.
  writeFileSync(join(schemes, 'bias_twin.h'), `// bias-twin: the bias scheme's arithmetic under another name (scripts/scheme-extension-check.mjs).
#pragma once

#include "pages/schemes/scheme_api.h"

namespace pinlab {

struct BiasTwinScheme {
  static constexpr std::string_view kName = "bias-twin";
  static constexpr std::string_view kSummary = "bias, registered by the extension check";
  static constexpr PincountHome kPincount = PincountHome::kNone;
  static constexpr bool kReadPinsVisible = true;
  static constexpr PinCost pin_cost(const SchemeParams& p, uint32_t, int64_t refs, bool) {
    return {refs << p.bias_shift, 0};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return false; }
};

}  // namespace pinlab
`);
  // 2. Its registration: the include and the X(...) line.
  const registryPath = join(schemes, 'registry.h');
  let registry = readFileSync(registryPath, 'utf8');
  registry = registry.replace('#include "pages/schemes/write_bias.h"', '#include "pages/schemes/write_bias.h"\n#include "pages/schemes/bias_twin.h"');
  registry = registry.replace(/(X\(kWriteBias, WriteBiasScheme\))/, '$1 \\\n  X(kBiasTwin, BiasTwinScheme)');
  check('registry.h took the new line', registry.includes('X(kBiasTwin, BiasTwinScheme)') && registry.includes('bias_twin.h'));
  writeFileSync(registryPath, registry);

  // The TypeScript list follows the registry.
  const gen = spawnSync(process.execPath, [join(work, 'scripts', 'gen-schemes.mjs')], { cwd: work, encoding: 'utf8' });
  const ts = readFileSync(join(work, 'lib', 'schemes.ts'), 'utf8');
  check('gen-schemes puts bias-twin into lib/schemes.ts', gen.status === 0 && /SCHEMES = \[[^\]]*'bias-twin'\]/.test(ts), gen.stderr);

  // The core, its native tests and the benchmarks build, and every registry-driven test runs for it.
  const build = join(work, 'build');
  const cfg = spawnSync('cmake', ['-S', work, '-B', build, '-DCMAKE_BUILD_TYPE=Release'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const make = cfg.status === 0
    ? spawnSync('cmake', ['--build', build, '--parallel', '2'], { stdio: ['ignore', 'ignore', 'inherit'] })
    : cfg;
  check('core, native tests and benchmarks build with the fifth scheme', make.status === 0);
  if (make.status === 0) {
    const run = spawnSync(join(build, 'pinlab_core_tests'), [], { encoding: 'utf8' });
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(run.stdout ?? '');
    check('native tests pass with the fifth scheme', run.status === 0 && summary !== null && summary[2] === '0', (run.stdout ?? '').split('\n').filter((l) => l.startsWith('FAIL')).join('; '));
    check('a stress case runs for the fifth scheme', /^\s*ok\s+stress_bias_twin$/m.test(run.stdout ?? ''));
    const bench = spawnSync(join(build, 'pinlab_bench'), ['--quick', '--trials', '3', '--trial-ms', '1'], { encoding: 'utf8' });
    check('the native benchmark lists and checks it', bench.status === 0 && /bias-twin/.test(bench.stdout ?? '') && /all state checks passed/.test(bench.stdout ?? ''), bench.stderr);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const passed = checks.filter(Boolean).length;
const failed = checks.length - passed;
mkdirSync(join(root, '.test-results'), { recursive: true });
writeFileSync(join(root, '.test-results', 'scheme-extension.json'), JSON.stringify({ passed, failed }) + '\n');
console.log(`scheme extension: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
