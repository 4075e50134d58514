#!/usr/bin/env node
// Proves the extension point of native/core/README.md: a fifth scheme is one new file in
// native/core/pages/schemes/ plus its include and X(...) line in registry.h, and nothing else.
// In a scratch copy of the sources it adds two: 'bias-twin' (the bias arithmetic under another
// name: a scheme that only states its PinCost) and 'two-shard' (a pincount store and grab,
// release and maybe-pinned of its own, PincountHome::kOwn: the shape of a sharded scheme),
// regenerates lib/schemes.ts and the docs' JSON Schema, builds the native tests and runs them:
// every test that iterates the registry (semantics, concurrency, mm, one stress case per
// scheme) must now also run, and pass, for both. Then (unless --native-only) the addon and
// dist/: the vitest files that iterate SCHEMES (the property tests against the model among
// them), and the CLI's help, bench (results and charts) and profile (whose expectations must
// agree) with the new schemes. Nothing but the new file and the registry line is edited. Writes .test-results/scheme-extension.json = { passed, failed }.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The copy's builds only have to build, pass and load: -O1 (CMakeLists.txt's PINLAB_CXX_OPT)
// compiles them a third faster than -O3, which keeps .ci/run under its 20 minutes.
const buildEnv = { ...process.env, PINLAB_CXX_OPT: '-O1' };

/** The schemes the check registers: file -> text. */
const NEW_SCHEMES = {
  'bias_twin.h': `// bias-twin: the bias scheme's arithmetic under another name (scripts/scheme-extension-check.mjs).
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
`,
  'two_shard.h': `// two-shard: +1 on the refcount per pin, and every folio's exact pincount in two per-thread
// shards (PincountHome::kOwn, three int32 words a page: two shards and a release lock): a grab
// adds to its thread's shard, a release takes the pins under the folio's release lock (grabs
// only add meanwhile, so a total read under the lock can only be short of the truth: a
// refusal writes nothing, and a release that fits always completes), and the pincount is the
// shards' sum, read under the same lock (then maybe_pinned is linearizable). A small sharded scheme, registered by scripts/scheme-extension-check.mjs to
// prove that a scheme with a store and operations of its own is one file and one registry line.
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>

#include "pages/schemes/scheme_api.h"

namespace pinlab {

struct TwoShardScheme {
  static constexpr std::string_view kName = "two-shard";
  static constexpr std::string_view kSummary = "+1 on the refcount, the pincount in two per-thread shards";
  static constexpr PincountHome kPincount = PincountHome::kOwn;
  static constexpr bool kReadPinsVisible = true;
  static constexpr uint32_t kShards = 2;
  static constexpr uint32_t kLockWord = kShards;  // the release lock: 0 free, 1 held
  static constexpr uint32_t kPinWords = kShards + 1;

  static constexpr PinCost pin_cost(const SchemeParams&, uint32_t, int64_t refs, bool) {
    return {refs, refs};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return true; }

  static uint32_t shard() {
    static std::atomic<uint32_t> next{0};
    thread_local const uint32_t mine = next.fetch_add(1, std::memory_order_relaxed) % kShards;
    return mine;
  }

  static Reason grab_pins(const PinWords& w, uint64_t head, uint32_t, int64_t pins,
                          std::memory_order mo) {
    auto c = w.at(shard(), head);
    int32_t cur = c.load(std::memory_order_relaxed);
    do {
      if (int64_t{cur} + pins > INT32_MAX) return Reason::kPincountOverflow;  // nothing written
    } while (!c.compare_exchange_weak(cur, int32_t(cur + pins), mo, std::memory_order_relaxed));
    return Reason::kNone;
  }

  static Reason release_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t pins) {
    auto lock = w.at(kLockWord, head);
    int32_t free_ = 0;
    // acquire: the previous holder's takes happen before ours.
    while (!lock.compare_exchange_weak(free_, 1, std::memory_order_acquire, std::memory_order_relaxed))
      free_ = 0;
    Reason r = Reason::kNone;
    if (total(w, head) < pins) {
      r = Reason::kNotPinned;  // short: nothing taken
    } else {
      int64_t need = pins;
      for (uint32_t k = 0; k < kShards && need > 0; ++k) {
        auto c = w.at((shard() + k) % kShards, head);
        int32_t cur = c.load(std::memory_order_relaxed);
        int32_t t = 0;
        do {
          t = int32_t(std::min<int64_t>(std::max<int32_t>(cur, 0), need));
          // acq_rel: as the refcount release that follows (seq_cst keeps fork's reads exact).
        } while (t > 0 && !c.compare_exchange_weak(cur, cur - t, std::memory_order_seq_cst,
                                                   std::memory_order_relaxed));
        need -= t;
      }
      // need == 0: only releases take, and they hold the lock; grabs only add meanwhile.
    }
    (void)order;
    lock.store(0, std::memory_order_release);  // release: our takes before the next holder's
    return r;
  }

  static int64_t total(const PinWords& w, uint64_t head) {
    int64_t sum = 0;
    for (uint32_t s = 0; s < kShards; ++s) sum += w.at(s, head).load(std::memory_order_seq_cst);
    return sum;
  }

  // The sum under the release lock: there only grabs run, which only add, so two loads give a
  // value between the totals at the start and at the end of the read (not always one the total
  // took: grabs of 5 then 3 can read as 3), and non-zero whenever a pin was held throughout:
  // maybe_pinned is linearizable. Without the lock a release could move pins from the shard not
  // yet read to the one already read, and a held pin would read as none.
  static int64_t pins(const PinWords& w, uint64_t head, uint32_t, std::memory_order) {
    auto lock = w.at(kLockWord, head);
    int32_t free_ = 0;
    // acquire: the last holder's takes happen before our loads.
    while (!lock.compare_exchange_weak(free_, 1, std::memory_order_acquire, std::memory_order_relaxed))
      free_ = 0;
    const int64_t sum = total(w, head);
    lock.store(0, std::memory_order_release);  // release: our loads before the next holder's takes
    return sum;
  }

  static bool maybe_pinned(const PinWords& w, uint64_t head, uint32_t order, std::memory_order mo) {
    return pins(w, head, order, mo) > 0;
  }
};

}  // namespace pinlab
`,
};
const work = mkdtempSync(join(tmpdir(), 'pinlab-scheme-'));
const checks = [];
function check(what, ok, detail = '') {
  checks.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'}  ${what}${detail && !ok ? `: ${String(detail).slice(-4000)}` : ''}`);
}
const tail = (r) => `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');

/**
 * The vitest files that iterate SCHEMES or ask a scheme's traits (the property tests among them):
 * all must pass for the new ones. The kernel selftests' translations (test/selftests-*) are left
 * to `npm test`: thousands of mm cases per scheme that exercise the address space, not the
 * scheme's registration, and CI's time budget holds them once, not seven times.
 */
const JS_TESTS = readdirSync(join(root, 'test'))
  .filter((f) => f.endsWith('.test.ts') && f !== 'install-prebuilt.test.ts' && !f.startsWith('selftests-'))
  .filter((f) => /\bSCHEMES\b|schemeTraits/.test(readFileSync(join(root, 'test', f), 'utf8')))
  .map((f) => `test/${f}`);
const jsStage = !process.argv.includes('--native-only');

try {
  // The whole checkout but what a build makes; node_modules is linked, not copied.
  const skip = new Set(['node_modules', '.git', 'build', 'build-native', 'build-tsan', 'dist', 'prebuilds', '.test-results', 'bench-results']);
  cpSync(root, work, { recursive: true, filter: (src) => src === root || !skip.has(src.slice(root.length + 1).split('/')[0]) });
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'));
  const schemes = join(work, 'native', 'core', 'pages', 'schemes');

  // 1. The new files: one scheme of pin_cost arithmetic only, one with a pincount store and
  //    grab/release/maybe-pinned of its own (PincountHome::kOwn: the shape of a sharded scheme).
  for (const [file, text] of Object.entries(NEW_SCHEMES)) writeFileSync(join(schemes, file), text);
  // 2. Their registration: the includes and the X(...) lines, after the last ones there.
  const registryPath = join(schemes, 'registry.h');
  let registry = readFileSync(registryPath, 'utf8');
  const includes = [...registry.matchAll(/^#include "pages\/schemes\/\w+\.h"$/gm)];
  const lastInclude = includes[includes.length - 1];
  const at = lastInclude.index + lastInclude[0].length;
  registry = registry.slice(0, at) + Object.keys(NEW_SCHEMES).map((f) => `\n#include "pages/schemes/${f}"`).join('') + registry.slice(at);
  const lines = registry.split('\n');
  const lastX = lines.findLastIndex((l) => /^\s*X\(\w+,\s*\w+\)/.test(l));
  lines[lastX] = lines[lastX].replace(/\s*\\?\s*$/, ' \\');
  lines.splice(lastX + 1, 0, '  X(kBiasTwin, BiasTwinScheme) \\', '  X(kTwoShard, TwoShardScheme)');
  registry = lines.join('\n');
  check('registry.h took the new lines', registry.includes('X(kBiasTwin, BiasTwinScheme)') && registry.includes('X(kTwoShard, TwoShardScheme)'));
  writeFileSync(registryPath, registry);

  // Nothing else changes: from here on, only generators and builds touch the copy.
  const gen = spawnSync(process.execPath, [join(work, 'scripts', 'gen-schemes.mjs')], { cwd: work, encoding: 'utf8' });
  const ts = readFileSync(join(work, 'lib', 'schemes.ts'), 'utf8');
  check('gen-schemes puts both into lib/schemes.ts, last', gen.status === 0 && /SCHEMES = \[[^\]]*'bias-twin', 'two-shard'\]/.test(ts), gen.stderr);
  const docs = JSON.parse(readFileSync(join(work, 'docs', 'bench-results.schema.json'), 'utf8'));
  const docsEnum = JSON.stringify(docs).match(/"scheme":\{"enum":\[([^\]]*)\]/)?.[1] ?? '';
  check('gen-schemes puts both into the scheme enum of docs/bench-results.schema.json', /"bias-twin","two-shard",null$/.test(docsEnum), docsEnum);

  // The core, its native tests and the benchmarks build, and every registry-driven test runs for it.
  const build = join(work, 'build-native');
  const cfg = spawnSync('cmake', ['-S', work, '-B', build, '-DCMAKE_BUILD_TYPE=Release'], { stdio: ['ignore', 'ignore', 'inherit'], env: buildEnv });
  const make = cfg.status === 0
    ? spawnSync('cmake', ['--build', build, '--parallel', '2'], { stdio: ['ignore', 'ignore', 'inherit'] })
    : cfg;
  check('core, native tests and benchmarks build with the new schemes', make.status === 0);
  if (make.status === 0) {
    const run = spawnSync(join(build, 'pinlab_core_tests'), [], { encoding: 'utf8' });
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(run.stdout ?? '');
    check('native tests pass with the new schemes', run.status === 0 && summary !== null && summary[2] === '0', (run.stdout ?? '').split('\n').filter((l) => l.trim().startsWith('FAIL') || l.includes('CHECK')).slice(0, 20).join('; '));
    for (const name of ['bias_twin', 'two_shard'])
      check(`a stress case runs for ${name}`, new RegExp(`^\\s*ok\\s+stress_${name}$`, 'm').test(run.stdout ?? ''));
    const bench = spawnSync(join(build, 'pinlab_bench'), ['--quick', '--trials', '3', '--trial-ms', '1'], { encoding: 'utf8' });
    check('the native benchmark lists and checks them', bench.status === 0 && /bias-twin/.test(bench.stdout ?? '') && /two-shard/.test(bench.stdout ?? '') && /all state checks passed/.test(bench.stdout ?? ''), bench.stderr);
  }

  if (jsStage) {
    // The addon and dist/, as `npm run build` makes them, then the TypeScript side: the vitest
    // files that iterate SCHEMES, and the CLI's help, bench and profile with the new schemes.
    const addon = spawnSync(process.execPath, [join(work, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'compile', '--out', 'build'], { cwd: work, encoding: 'utf8', env: buildEnv });
    const tsc = addon.status === 0 ? spawnSync(process.execPath, [join(work, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: work, encoding: 'utf8' }) : addon;
    check('the addon and dist/ build with the new schemes', addon.status === 0 && tsc.status === 0, tail(tsc));
    if (addon.status === 0 && tsc.status === 0) {
      const vitest = spawnSync(process.execPath, [join(work, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...JS_TESTS], { cwd: work, encoding: 'utf8', maxBuffer: 256 << 20 });
      check(`the vitest files that iterate SCHEMES pass with the new schemes (${JS_TESTS.length} files)`, vitest.status === 0, tail(vitest));
      const cli = (...args) => spawnSync(process.execPath, [join(work, 'dist', 'bin.js'), ...args], { cwd: work, encoding: 'utf8', maxBuffer: 64 << 20 });
      for (const cmd of ['bench', 'profile']) {
        const help = cli(cmd, '--help');
        check(`pinlab ${cmd} --help lists them`, help.status === 0 && /--scheme LIST\s+[\w,-]*bias-twin,two-shard\b/.test(help.stdout), help.stdout);
      }
      const out = join(work, 'bench-out');
      const bench = cli('bench', '--quick', '--no-kernel', '--threads', '1', '--scheme', 'bias-twin,two-shard', '--out', out);
      const doc = bench.status === 0 ? JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) : { rows: [] };
      const benched = new Set(doc.rows.map((r) => r.scheme));
      check('pinlab bench runs them, and writes results and charts', bench.status === 0 && benched.has('bias-twin') && benched.has('two-shard') && readdirSync(out).some((f) => f.endsWith('.svg')), tail(bench));
      // Exit 1 if a rate disagrees with its expectation: the profiler must know from the policy
      // that two-shard counts every folio exactly (no false positives expected) and bias-twin not.
      const profile = cli('profile', '--scheme', 'bias-twin,two-shard', '--pages', '65536', '--threads', '1', '--json');
      const prof = profile.status === 0 ? JSON.parse(profile.stdout) : { schemes: [] };
      const by = new Map(prof.schemes.map((x) => [x.scheme, x]));
      check(
        'pinlab profile runs them and its expectations agree (two-shard exact, bias-twin as bias)',
        profile.status === 0 && by.get('two-shard')?.overall.falsePositives.count === 0 && by.get('two-shard')?.pinBudget > by.get('bias-twin')?.pinBudget,
        tail(profile),
      );
    }
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
