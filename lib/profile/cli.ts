// `pinlab profile` and `pinlab snapshot`.
import { parseArgs } from 'node:util';

import { UsageError, intOption, progressReporter, readInputFile, writeReportOrStop, type CliIo } from '../cli-util.js';
import { SCHEMES, type Scheme } from '../schemes.js';
import type { Population } from '../types/population.js';
import { PRESETS, type PresetName } from './presets.js';
import { writeProfileReport } from './report.js';
import { REPORT_FILES, prepareOutputDir } from '../report/files.js';
import { runProfile, type ProfileOptions } from './run.js';
import { formatProfileTable } from './table.js';

const PROFILE_HELP = `usage: pinlab profile [options]

Profiles how often maybeDmaPinned is wrong, for each scheme, on a page population: false
positives (maybe pinned with no pin) and false negatives against the exact truth, overflow
refusals, what fork's early COW, migration and reclaim pay for the wrong answers, the
analytic expectation beside every rate, and optionally a sweep of the bias.

  --preset NAME         ${Object.keys(PRESETS).join(' | ')} (default desktop)
  --population FILE     a population JSON object (see the README) instead of a preset
  --snapshot FILE       a host snapshot from \`pinlab snapshot\` instead of a synthetic population
  --pages N             override the population's size in 4 KiB pages (1..2^31)
  --seed N              override the population's seed (0..2^53-1)
  --scheme LIST         ${SCHEMES.join(',')} (default: all)
  --bias N              the bias, a power of two in 2..2^20 (default 1024)
  --bias-sweep          also every bias 2^4..2^16
  --threads N           native threads, 1..1024 (default: every core)
  --json                print the result document (JSON) instead of the report
  --out DIR             write results.json, results.md and SVG charts to DIR
  -h, --help            this help

Exit status: 0 done, 1 a measured rate disagrees with its expectation, 64 bad arguments.`;

/** Runs `pinlab profile`; returns the exit status. */
export async function profileCommand(args: string[], io: CliIo): Promise<number> {
  const values = parse(args, {
    preset: { type: 'string' },
    population: { type: 'string' },
    snapshot: { type: 'string' },
    pages: { type: 'string' },
    seed: { type: 'string' },
    scheme: { type: 'string' },
    bias: { type: 'string' },
    'bias-sweep': { type: 'boolean' },
    threads: { type: 'string' },
    json: { type: 'boolean' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values['help']) {
    io.out.write(`${PROFILE_HELP}\n`);
    return 0;
  }
  const options: ProfileOptions = {};
  if (values['preset'] !== undefined) {
    if (!Object.hasOwn(PRESETS, String(values['preset']))) throw new UsageError(`--preset: unknown preset '${String(values['preset'])}' (known: ${Object.keys(PRESETS).join(', ')})`);
    options.preset = values['preset'] as PresetName;
  }
  if (values['population'] !== undefined) options.population = readJson(String(values['population'])) as Population;
  if (values['snapshot'] !== undefined) options.snapshot = String(values['snapshot']);
  if (values['pages'] !== undefined) options.pages = intOption(String(values['pages']), 'pages', 1, 2 ** 31);
  if (values['seed'] !== undefined) options.seed = intOption(String(values['seed']), 'seed', 0, Number.MAX_SAFE_INTEGER);
  if (values['scheme'] !== undefined) options.schemes = String(values['scheme']).split(',') as Scheme[];
  if (values['bias'] !== undefined) options.bias = intOption(String(values['bias']), 'bias', 2, 2 ** 20);
  if (values['bias-sweep']) options.biasSweep = true;
  if (values['threads'] !== undefined) options.threads = intOption(String(values['threads']), 'threads', 1, 1024);
  // A bad --out fails now, not after the run.
  if (values['out'] !== undefined) await prepareOutputDir(String(values['out']), REPORT_FILES);
  const progress = progressReporter(io.err, 'pinlab profile');
  let results;
  try {
    results = await runProfile({ ...options, onProgress: (e) => progress.update({ done: e.done, total: e.total, label: e.what }) });
  } finally {
    progress.done();
  }
  if (values['out'] !== undefined) {
    const out = String(values['out']);
    const paths = await writeReportOrStop((signal) => writeProfileReport(results, out, { signal }));
    if (paths === undefined) {
      io.err.write('pinlab: profile stopped; no report written\n');
      return 130;
    }
    io.err.write(`pinlab: wrote ${Object.values(paths).flat().join(', ')}\n`);
  }
  io.out.write(values['json'] ? `${JSON.stringify(results, null, 2)}\n` : formatProfileTable(results));
  return results.disagreements.length > 0 ? 1 : 0;
}

const SNAPSHOT_HELP = `usage: pinlab snapshot --out FILE [--max-pages N (0: all, up to 2^40)]

Reads this host's /proc/kpagecount and /proc/kpageflags (root, CAP_SYS_ADMIN) and saves the
page population (folios, orders, map counts, kinds) in a compact .pksnap file that
\`pinlab profile --snapshot FILE\` reads, here or on another machine.`;

/** Runs `pinlab snapshot`; returns the exit status. */
export async function snapshotCommand(args: string[], io: CliIo): Promise<number> {
  const values = parse(args, { out: { type: 'string' }, 'max-pages': { type: 'string' }, help: { type: 'boolean', short: 'h' } });
  if (values['help']) {
    io.out.write(`${SNAPSHOT_HELP}\n`);
    return 0;
  }
  if (values['out'] === undefined) throw new UsageError('snapshot: --out FILE is required');
  const { takeSnapshot } = await import('./snapshot.js');
  const progress = progressReporter(io.err, 'pinlab snapshot');
  let summary;
  try {
    summary = await takeSnapshot(String(values['out']), {
      maxPages: values['max-pages'] === undefined ? 0 : intOption(String(values['max-pages']), 'max-pages', 0, 2 ** 40),
      onProgress: (done: number, total: number) => progress.update({ done, total, label: 'reading /proc/kpage*' }),
    });
  } finally {
    progress.done();
  }
  io.out.write(`${summary}\n`);
  return 0;
}

type Spec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

function parse(args: string[], options: Spec): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readInputFile(file, '--population'));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--population: cannot read ${file}: ${(e as Error).message}`);
  }
}
