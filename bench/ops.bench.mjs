#!/usr/bin/env node
// `npm run bench:ops`: what op streams buy. Prints figures and the targets' verdicts; it never
// fails a test (speed lives here, not in timed tests).
//
//   node bench/ops.bench.mjs [--quick] [--json] [--scheme S] [--ops N] [--replay-pages P] [--no-native]
//
// 1. Submit: ns per single-page op (pin and unpin of one page, alternating, over a 262144-page
//    array) for batches of 1, 16, 1024 and 65536 ops through mem.submit, beside one JS call per
//    op (mem.pinPages / mem.unpinPages of { start, count: 1 }) and the core's own pin+unpin of one
//    page (./build-native/pinlab_bench --single --count 1, the floor; skipped with --no-native).
//    After a warm-up of 600 ms (300 with --quick; see measure()), 15 trials (7 with --quick) of
//    ~2^20 ops each: the median, the best and the mean trial; wall-clock and CPU time
//    (process.cpuUsage, the work is single-threaded) are both printed, since a shared machine
//    inflates the first. Target: batches of 1024 or more at most 15 ns per op, by the mean.
// 2. Replay: `pinlab trace synth` streams of page-array ops (--ops N, default 4M; --quick 1M)
//    over 65536 pages (--replay-pages P) with 1 tag and with one tag per core, replayed under
//    every scheme on as many native threads: ops per second per thread, wall-clock and per
//    second of the replay threads' own CPU time while they ran the ops (`cpuSeconds`: what a
//    loaded machine distorts least). Target: at least 30 M
//    page-array ops per second per thread.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { benchBin, buildNativeBench, root } from '../scripts/native-bench.mjs';

const argv = process.argv.slice(2);
function opt(name, fallback) {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  if (i + 1 >= argv.length) throw new Error(`${name} needs a value`);
  return argv[i + 1];
}
const quick = argv.includes('--quick');
const json = argv.includes('--json');
const withNative = !argv.includes('--no-native');
const scheme = opt('--scheme', 'hybrid');
const replayOps = Number(opt('--ops', quick ? 1_000_000 : 4_000_000));
const TRIALS = quick ? 7 : 15;
const WARMUP_MS = quick ? 300 : 600;
const TRIAL_OPS = 1 << 20;
const PAGES = 262144;
// The replayed streams' array: 65536 pages, whose refcounts and flags (320 KiB) stay in the
// L2 cache, so the figure is the engine's, not the memory's (--replay-pages to change it).
const REPLAY_PAGES = Number(opt('--replay-pages', 65536));
const SUBMIT_TARGET_NS = 15;
const REPLAY_TARGET = 30e6;
const log = json ? (...a) => console.error(...a) : (...a) => console.log(...a);

const dist = join(root, 'dist', 'index.js');
if (!existsSync(dist) || !existsSync(join(root, 'build', 'Release', 'pinlab.node'))) {
  console.error('bench/ops: build first (npm run build)');
  process.exit(2);
}
const { PageArray, OpBatch, SCHEMES, runReplay } = await import(pathToFileURL(dist).href);
const { main } = await import(pathToFileURL(join(root, 'dist', 'cli.js')).href);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * Runs `work()` (which does `ops` ops) in trials of ~TRIAL_OPS ops, after a warm-up of at least
 * WARMUP_MS: median and mean wall and CPU ns per op, and the best trial.
 *
 * The warm-up is long on purpose. Every `submit` returns a fresh Int32Array, whose backing store
 * the C library takes from its heap, and V8 frees only when a scavenge finds it dead: for the
 * first few hundred milliseconds (and briefly now and then after) the heap grows into fresh
 * pages, and the process spends as much system time faulting them in as it spends on the ops
 * (measured: 11 ns/op of system time in such a trial of batches of 1024, none once the heap has
 * grown; a control that returns a view on the scratch array instead runs flat). A simulation
 * that submits batches for a while runs in the second state, so the trials start there; the
 * verdict takes the mean of all trials (total time over total ops), so a later stretch of
 * faulting still counts.
 */
function measure(work, ops) {
  const reps = Math.max(1, Math.round(TRIAL_OPS / ops));
  const warmEnd = process.hrtime.bigint() + BigInt(WARMUP_MS) * 1_000_000n;
  for (let i = 0; i < 64 || process.hrtime.bigint() < warmEnd; i++) work(); // JIT, the arrays' pages, the heap
  const wall = [];
  const cpu = [];
  for (let t = 0; t < TRIALS; t++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) work();
    const dt = Number(process.hrtime.bigint() - t0);
    const dc = process.cpuUsage(c0);
    wall.push(dt / (reps * ops));
    cpu.push(((dc.user + dc.system) * 1000) / (reps * ops));
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return { wallNs: median(wall), cpuNs: median(cpu), meanWallNs: mean(wall), meanCpuNs: mean(cpu), minWallNs: Math.min(...wall) };
}

// ---- 1. submit against one call per op -----------------------------------------------------------

const mem = new PageArray({ pages: PAGES, scheme });
/** `n` single-page ops: pin(p), unpin(p), pin(p+1), unpin(p+1), ... from page `first`. */
function pinUnpinBatch(n, first) {
  const b = new OpBatch();
  for (let i = 0; i < n; i++) b.push(i % 2 === 0 ? 'pin' : 'unpin', { a: (first + (i >> 1)) % PAGES, b: 1 });
  return b.toArray();
}
const submit = [];
for (const size of [1, 16, 1024, 65536]) {
  let work;
  if (size === 1) {
    const pin = new OpBatch().push('pin', { a: 5, b: 1 }).toArray();
    const unpin = new OpBatch().push('unpin', { a: 5, b: 1 }).toArray();
    work = () => {
      mem.submit(pin);
      mem.submit(unpin);
    };
  } else {
    const batch = pinUnpinBatch(size, 7);
    work = () => mem.submit(batch);
  }
  const m = measure(work, size === 1 ? 2 : size);
  submit.push({ batch: size, ...m });
}
const range = { start: 0, count: 1 };
const oneCall = measure(() => {
  for (let p = 0; p < 1024; p++) {
    range.start = p;
    mem.pinPages(range);
    mem.unpinPages(range);
  }
}, 2048);
if (mem.stats().pinAcquired !== mem.stats().pinReleased) throw new Error('bench/ops: the submit workload did not balance');

let native = null;
if (withNative) {
  try {
    buildNativeBench();
    const r = spawnSync(benchBin, ['--single', '--pages', String(PAGES), '--count', '1', '--scheme', scheme, '--json', '--trials', String(TRIALS)], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const doc = JSON.parse(r.stdout);
    native = { wallNs: doc.nsPerRound.median / 2, minWallNs: doc.nsPerRound.min / 2 };
  } catch (e) {
    log(`bench/ops: no native floor (${e.message})`);
  }
}

// ---- 2. replay ------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'pinlab-ops-bench-'));
const cores = Math.max(1, Math.min(os.availableParallelism(), 8));
const replay = [];
const quiet = { out: { write: () => true }, err: { write: () => true } };
try {
  for (const tags of [...new Set([1, cores])]) {
    const file = join(dir, `synth-${tags}.pkops`);
    const made = await main(['trace', 'synth', '--ops', String(replayOps), '--threads', String(tags), '--pages', String(REPLAY_PAGES), '--scheme', scheme, '--out', file], quiet);
    if (made !== 0) throw new Error(`bench/ops: trace synth failed (${made})`);
    for (let t = 0; t < (quick ? 1 : 3); t++) {
      // One scheme per call. Each replay thread reads its own CPU clock around its ops
      // (`cpuSeconds`): a loaded machine inflates wall-clock figures far more.
      for (const sc of SCHEMES) {
        const doc = await runReplay({ file, threads: tags, schemes: [sc] });
        const s = doc.schemes[0];
        replay.push({ tags, trial: t, scheme: s.scheme, threads: s.threads, opsPerSecondPerThread: s.opsPerSecondPerThread, opsPerCpuSecondPerThread: s.opsPerCpuSecond, balanced: s.balanced });
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const replayRows = [];
for (const tags of [...new Set(replay.map((r) => r.tags))]) {
  for (const s of SCHEMES) {
    const runs = replay.filter((r) => r.tags === tags && r.scheme === s);
    if (runs.length === 0) continue;
    replayRows.push({
      scheme: s,
      threads: runs[0].threads,
      opsPerSecondPerThread: median(runs.map((r) => r.opsPerSecondPerThread)),
      opsPerCpuSecondPerThread: median(runs.map((r) => r.opsPerCpuSecondPerThread)),
      balanced: runs.every((r) => r.balanced),
    });
  }
}

// ---- report ---------------------------------------------------------------------------------

const f = (x) => (x === null || x === undefined ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const big = submit.filter((s) => s.batch >= 1024);
const targets = [
  {
    name: 'submit <= 15 ns/op (batches >= 1024)',
    value: Math.max(...big.map((s) => s.meanWallNs)),
    cpuValue: Math.max(...big.map((s) => s.meanCpuNs)),
    limit: SUBMIT_TARGET_NS,
    met: Math.max(...big.map((s) => s.meanWallNs)) <= SUBMIT_TARGET_NS,
  },
  {
    name: 'replay >= 30 M page-array ops/s per thread',
    value: Math.min(...replayRows.map((r) => r.opsPerSecondPerThread)) / 1e6,
    cpuValue: Math.min(...replayRows.map((r) => r.opsPerCpuSecondPerThread)) / 1e6,
    limit: REPLAY_TARGET / 1e6,
    met: Math.min(...replayRows.map((r) => r.opsPerSecondPerThread)) >= REPLAY_TARGET,
    // Per scheme, its slowest row (any thread count): which schemes meet it and which do not.
    bySchemes: SCHEMES.filter((sc) => replayRows.some((r) => r.scheme === sc)).map((sc) => {
      const rows = replayRows.filter((r) => r.scheme === sc);
      const value = Math.min(...rows.map((r) => r.opsPerSecondPerThread)) / 1e6;
      return { scheme: sc, value, cpuValue: Math.min(...rows.map((r) => r.opsPerCpuSecondPerThread)) / 1e6, met: value * 1e6 >= REPLAY_TARGET };
    }),
  },
];
const doc = {
  scheme,
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), loadavg: os.loadavg() },
  submit,
  oneCallPerOp: oneCall,
  nativeFloor: native,
  replay: replayRows,
  replayOps,
  replayPages: REPLAY_PAGES,
  targets,
};
if (json) {
  console.log(JSON.stringify(doc, null, 2));
} else {
  log(`bench/ops: scheme ${scheme}, ${PAGES} pages; ${doc.machine.cpu}, ${doc.machine.cores} cores, load average ${doc.machine.loadavg.map((x) => x.toFixed(1)).join(' ')}`);
  log('');
  log('single-page pin/unpin ops        ns/op (wall)   ns/op (cpu)   best trial (wall)   mean (wall)   mean (cpu)');
  const row = (m) => `${f(m.wallNs).padStart(8)}      ${f(m.cpuNs).padStart(8)}      ${f(m.minWallNs).padStart(8)}            ${f(m.meanWallNs).padStart(8)}     ${f(m.meanCpuNs).padStart(8)}`;
  for (const s of submit) log(`  submit, batches of ${String(s.batch).padEnd(6)}     ${row(s)}`);
  log(`  one JS call per op              ${row(oneCall)}`);
  if (native !== null) log(`  the core's own call (floor)     ${f(native.wallNs).padStart(8)}             -      ${f(native.minWallNs).padStart(8)}`);
  log('');
  log(`replay of ${replayOps} page-array ops (trace synth, ${REPLAY_PAGES} pages), per scheme:`);
  log('  scheme      threads   M ops/s per thread (wall)   (cpu)   balanced');
  for (const r of replayRows) log(`  ${r.scheme.padEnd(10)}  ${String(r.threads).padStart(7)}   ${f(r.opsPerSecondPerThread / 1e6).padStart(25)}   ${f(r.opsPerCpuSecondPerThread / 1e6).padStart(5)}   ${r.balanced ? 'yes' : 'NO'}`);
  log('');
  for (const t of targets) {
    const cpu = t.cpuValue === undefined ? '' : ` (cpu time: ${f(t.cpuValue)})`;
    log(`target ${t.name}: ${f(t.value)}${cpu} -> ${t.met ? 'met' : 'MISSED'}`);
    if (t.bySchemes !== undefined) {
      const met = t.bySchemes.filter((b) => b.met).map((b) => b.scheme);
      const missed = t.bySchemes.filter((b) => !b.met).map((b) => `${b.scheme} ${f(b.value)} (cpu time: ${f(b.cpuValue)})`);
      log(`  met by: ${met.length > 0 ? met.join(', ') : 'none'}; missed by: ${missed.length > 0 ? missed.join(', ') : 'none'}`);
    }
  }
}
