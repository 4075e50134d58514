// The `pinlab` command: `pinlab bench` runs the benchmark matrix (the main job).
import os from 'node:os';
import { parseArgs } from 'node:util';

import { PinlabError } from './errors.js';
import { compareResults, formatComparison, hasRegressions } from './bench/compare.js';
import type { BenchOptions, ModelOp } from './bench/matrix.js';
import { pinlabVersion } from './bench/machine.js';
import { writeReport } from './bench/report.js';
import { REPORT_FILES, prepareOutputDir } from './report/files.js';
import { runBench } from './bench/run.js';
import { UsageError, intOption, progressReporter, readInputFile, writeReportOrStop, type CliIo } from './cli-util.js';
import { replayCommand, traceCommand } from './ops/cli.js';
import { profileCommand, snapshotCommand } from './profile/cli.js';
import { validateBenchResults } from './bench/schema.js';
import { formatTable } from './bench/table.js';
import { BENCH_SCHEMA_ID, BENCH_SCHEMA_VERSION, type BenchResults, type BenchSharing } from './bench/types.js';
import type { PinPath } from './page-array.js';
import { SCHEMES, type Scheme } from './schemes.js';

/** Exit statuses of the CLI. */
export const EXIT = { ok: 0, regression: 1, failed: 2, usage: 64, stopped: 130 } as const;

const BENCH_HELP = `usage: pinlab bench [options]

Runs the benchmark matrix on native threads: every scheme, per-page versus bvec, 4 KiB and
2 MiB folios, 1 thread and all cores, private and shared buffers, gup_fast through an address
space, the raw-atomic baselines, and the host kernel's own pins (io_uring) where it allows.

  --quick               a short run for CI (3 short trials, at most 2 threads)
  --threads LIST        thread counts in 1..1024, e.g. 1,2,4 or 'all' (default: 1 and every core)
  --scheme LIST         ${SCHEMES.join(',')} (default: all)
  --order LIST          folio orders in 0..18, e.g. 0,9,18 (default: 0,9)
  --op LIST             pin-unpin,get-put,gup-fast,mixed (default: pin-unpin,gup-fast)
  --path LIST           per-page,bvec (default: both)
  --sharing LIST        private,shared,interleaved (default: private,shared)
  --input LIST          range,list (default: range)
  --size SIZE           buffer per thread, e.g. 64M, 1G, or pages, at most 2^26 pages (default 64M)
  --pages-per-call N    pages per call, like gup_test -n, 0..2^26 (default 0: the whole buffer)
  --duration MS         length of one trial in ms, up to 60000 (default 25; --quick 2)
  --trials N            trials per configuration, 1..1000 (default 11; --quick 3)
  --no-kernel           skip the host kernel probe
  --json                print the result document (JSON) instead of the table
  --out DIR             write results.json, results.md and SVG charts to DIR
  --compare OLD.json    print the change against an earlier run; exit 1 past the threshold
  --threshold FRAC      regression threshold for --compare (default 0.10 = 10% slower)
  --strict              exit 1 if a target is missed
  -h, --help            this help

Exit status: 0 done, 1 regression (--compare) or missed target (--strict), 2 a configuration
failed its checks, 64 bad arguments.`;

const HELP = `usage: pinlab <command> [options]

commands:
  bench     the benchmark matrix: schemes, bvec versus per-page, scaling, and the host kernel
            (pinlab bench --help)
  profile   how often "maybe pinned" is wrong, per scheme and bias, and what it costs
            (pinlab profile --help)
  snapshot  save this host's page population (/proc/kpagecount, /proc/kpageflags) to a file
            (pinlab snapshot --help)
  replay    replay an op stream (.pkops) natively under every scheme, side by side
            (pinlab replay --help)
  trace     make a synthetic op stream, or convert one between binary and text
            (pinlab trace --help)

  -v, --version   the pinlab version`;



export type { CliIo } from './cli-util.js';

/** Runs the CLI with `argv` (without node and the script); returns the exit status. */
export async function main(argv: string[], io: CliIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '-h' || command === '--help') {
      io.out.write(`${HELP}\n`);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    if (command === '-v' || command === '--version') {
      io.out.write(`${pinlabVersion()}\n`);
      return EXIT.ok;
    }
    if (command === 'bench') return await bench(rest, io);
    if (command === 'profile') return await profileCommand(rest, io);
    if (command === 'snapshot') return await snapshotCommand(rest, io);
    if (command === 'replay') return await replayCommand(rest, io);
    if (command === 'trace') return await traceCommand(rest, io);
    throw new UsageError(`unknown command '${command}' (try pinlab --help)`);
  } catch (e) {
    if (e instanceof UsageError || (e instanceof PinlabError && e.code === 'EINVAL')) {
      io.err.write(`pinlab: ${e.message}\n`);
      return EXIT.usage;
    }
    io.err.write(`pinlab: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.failed;
  }
}

async function bench(args: string[], io: CliIo): Promise<number> {
  const { values } = parseCli(args);
  if (values.help) {
    io.out.write(`${BENCH_HELP}\n`);
    return EXIT.ok;
  }
  const previous = values.compare !== undefined ? readPrevious(values.compare) : undefined;
  // --threshold checked now, with or without --compare, not after the run.
  const threshold = values.threshold === undefined ? 0.1 : fraction(values.threshold);
  const options = benchOptions(values);
  // A bad --out fails now, not after the run.
  if (values.out !== undefined) await prepareOutputDir(values.out, REPORT_FILES);
  const progress = progressReporter(io.err);
  let results: BenchResults;
  try {
    results = await runBench(options, { onProgress: progress.update });
  } finally {
    progress.done();
  }
  if (values.out !== undefined) {
    const out = values.out;
    const paths = await writeReportOrStop((signal) => writeReport(results, out, { signal }));
    if (paths === undefined) {
      io.err.write('pinlab: bench stopped; no report written\n');
      return EXIT.stopped;
    }
    io.err.write(`pinlab: wrote ${Object.values(paths).flat().join(', ')}\n`);
  }
  io.out.write(values.json ? `${JSON.stringify(results, null, 2)}\n` : formatTable(results));
  let status: number = EXIT.ok;
  if (previous !== undefined) {
    const cmp = compareResults(results, previous, { threshold });
    io.err.write(formatComparison(cmp));
    if (hasRegressions(cmp)) status = EXIT.regression;
  }
  if (values.strict && results.targets.some((t) => t.skipped === null && !t.met)) status = EXIT.regression;
  return status;
}

function parseCli(args: string[]) {
  try {
    return parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean' },
        threads: { type: 'string' },
        scheme: { type: 'string' },
        order: { type: 'string' },
        op: { type: 'string' },
        path: { type: 'string' },
        sharing: { type: 'string' },
        input: { type: 'string' },
        size: { type: 'string' },
        'pages-per-call': { type: 'string' },
        duration: { type: 'string' },
        trials: { type: 'string' },
        'no-kernel': { type: 'boolean' },
        json: { type: 'boolean' },
        out: { type: 'string' },
        compare: { type: 'string' },
        threshold: { type: 'string' },
        strict: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

type CliValues = ReturnType<typeof parseCli>['values'];

/** The run's options from the command line (only what was given: the rest stays default). */
export function benchOptions(v: CliValues): BenchOptions {
  const o: BenchOptions = {};
  if (v.quick) o.quick = true;
  if (v.threads !== undefined) {
    o.threads = v.threads === 'all'
      ? [...new Set([1, Math.min(os.availableParallelism(), MAX_THREADS)])]
      : list(v.threads, 'threads').map((t) => intOption(t, 'threads', 1, MAX_THREADS));
  }
  if (v.scheme !== undefined) o.schemes = list(v.scheme, 'scheme') as Scheme[];
  if (v.order !== undefined) o.orders = list(v.order, 'order').map((k) => intOption(k, 'order', 0, 18));
  if (v.op !== undefined) o.ops = list(v.op, 'op') as ModelOp[];
  if (v.path !== undefined) o.paths = list(v.path, 'path') as PinPath[];
  if (v.sharing !== undefined) o.sharing = list(v.sharing, 'sharing') as BenchSharing[];
  if (v.input !== undefined) o.inputs = list(v.input, 'input') as ('range' | 'list')[];
  if (v.size !== undefined) o.bufferPages = sizeToPages(v.size);
  if (v['pages-per-call'] !== undefined) o.pagesPerCall = intOption(v['pages-per-call'], 'pages-per-call', 0, MAX_BUFFER_PAGES);
  if (v.duration !== undefined) o.trialMs = positive(v.duration, 'duration', MAX_TRIAL_MS);
  if (v.trials !== undefined) o.trials = intOption(v.trials, 'trials', 1, MAX_TRIALS);
  if (v['no-kernel']) o.kernel = false;
  return o;
}

/** `64M`, `1G`, `512K` (bytes, 4 KiB pages) or a plain page count: 1..2^26 pages. */
export function sizeToPages(s: string): number {
  const m = /^(\d+)([KMG])?$/i.exec(s.trim());
  if (m === null) throw new UsageError(`--size: '${s}' is not a size (e.g. 64M, 1G, or a page count)`);
  const n = Number(m[1]);
  const unit = m[2]?.toUpperCase();
  const bytes = unit === undefined ? n * 4096 : n * { K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit as 'K' | 'M' | 'G'];
  if (!Number.isSafeInteger(bytes) || bytes < 4096 || bytes > MAX_BUFFER_PAGES * 4096) {
    throw new UsageError(`--size: ${s} is not in 1..${MAX_BUFFER_PAGES} pages (4 KiB .. 256G)`);
  }
  if (bytes % 4096 !== 0) throw new UsageError(`--size: ${s} is not a whole number of 4 KiB pages`);
  return bytes / 4096;
}

function list(s: string, name: string): string[] {
  const items = s.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
  if (items.length === 0) throw new UsageError(`--${name}: empty list`);
  return items;
}

// The documented limits of the numeric options (the addon enforces the same).
const MAX_THREADS = 1024;
const MAX_TRIALS = 1000;
const MAX_TRIAL_MS = 60000;
const MAX_BUFFER_PAGES = 2 ** 26;

function positive(s: string, name: string, max: number): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new UsageError(`--${name}: '${s}' is not a positive number up to ${max}`);
  return n;
}

function fraction(s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--threshold: '${s}' is not a positive fraction (e.g. 0.1)`);
  return n;
}

function readPrevious(file: string): BenchResults {
  let doc: unknown;
  try {
    doc = JSON.parse(readInputFile(file, '--compare'));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--compare: cannot read ${file}: ${(e as Error).message}`);
  }
  // Checked before the run, so a bad file fails fast rather than after minutes of work.
  const d = doc as Partial<BenchResults> | null;
  if (d?.schema === BENCH_SCHEMA_ID && d.version !== BENCH_SCHEMA_VERSION) {
    throw new UsageError(`--compare: ${file} has result schema version ${String(d.version)}; this pinlab reads version ${BENCH_SCHEMA_VERSION} only`);
  }
  const errors = validateBenchResults(doc);
  if (errors.length > 0) throw new UsageError(`--compare: ${file} is not a pinlab bench result: ${errors.slice(0, 3).join('; ')}`);
  return doc as BenchResults;
}

