// `pinlab replay` and `pinlab trace synth|convert`.
import { parseArgs } from 'node:util';

import { UsageError, interruptible, progressReporter, type CliIo } from '../cli-util.js';
import { PinlabError } from '../errors.js';
import { native } from '../native.js';
import { REPORT_FILES, ReportStopped, prepareOutputDir } from '../report/files.js';
import { SCHEMES, type Scheme } from '../schemes.js';
import { formatReplayTable, writeReplayReport } from './report.js';
import { runReplay, type ReplayOptions } from './replay.js';
import type { ReplayResults } from './types.js';

const REPLAY_HELP = `usage: pinlab replay FILE [options]

Replays an op stream (a .pkops file, or its text form FILE.pkops.txt) natively under every
scheme, each on a fresh page array built from the stream's header, and reports per scheme:
ops per second, refusals by code, overflow refusals, the decisions that read "maybe pinned"
(fork's early COW, migration, reclaim) with their false positives, imbalances, and whether
the end state balances. A stream's tags replay on native threads at once.

  --scheme LIST     ${SCHEMES.join(',')} (default: all)
  --bias LIST       GUP_PIN_COUNTING_BIAS values, e.g. 64,1024 (default: the recording's)
  --rules LIST      hybrid's smallest order with an exact pincount, e.g. 1,2 (1: 64-bit
                    mainline, 2: v5.7 / 32-bit, 31: none; default: the recording's)
  --threads N       native threads per scheme (default: one per tag of the stream)
  --debug           force debug accounting on (exact false positives; refuses misuse)
  --no-debug        force it off (default: the recording's)
  --json            print the result document (JSON) instead of the table
  --out DIR         write results.json, results.md and SVG charts to DIR
  -h, --help        this help

Ctrl-C stops the replay and writes nothing. Exit status: 0 done, 2 the stream was refused,
64 bad arguments, 130 stopped.`;

const TRACE_HELP = `usage: pinlab trace synth --ops N --out FILE [options]
       pinlab trace convert IN OUT

synth     writes a seeded synthetic op stream of N ops, made as it is written (never held in
          memory): each tag works on its own pages (--mix pages) or address space (--mix mm),
          and the stream ends balanced. The generator runs every op on a live page array, so
          the stream carries the results and the PFNs its gups returned.
  --ops N           ops to write (1..2^40)
  --seed S          the seed (default 1)
  --threads T       tags (threads a replay runs at once), 1..1024 (default 1)
  --pages P         the page array's pages (default 1048576)
  --mix pages|mm    page-array ops (default), or address spaces (mmap, gup, fork, migrate)
  --scheme S        the scheme it is made under (default hybrid)
  --bias B          its bias (default 1024)
  --debug           debug accounting on in the header (exact false positives in a replay)
  --out FILE        where: FILE.pkops, or the text form for a name ending in .txt

convert   converts between the binary (.pkops) and text (.txt) forms, by extension; a binary
          input's checksum is checked before the output appears.

Output files appear whole or not at all (Ctrl-C leaves nothing). Exit status: 0 done, 2 a
stream was refused, 64 bad arguments, 130 stopped.`;

type Spec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

function parse(args: string[], options: Spec, positionals: boolean) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function int(s: string, name: string, lo: number, hi: number): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`--${name}: '${s}' is not a non-negative integer`);
  const n = Number(s);
  if (n < lo || n > hi) throw new UsageError(`--${name}: ${n} is not in ${lo}..${hi}`);
  return n;
}

function ints(s: string, name: string, lo: number, hi: number): number[] {
  const items = s.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
  if (items.length === 0) throw new UsageError(`--${name}: empty list`);
  return items.map((x) => int(x, name, lo, hi));
}

const STOPPED = 130;

/** Runs `pinlab replay`; returns the exit status. */
export async function replayCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      scheme: { type: 'string' },
      bias: { type: 'string' },
      rules: { type: 'string' },
      threads: { type: 'string' },
      debug: { type: 'boolean' },
      'no-debug': { type: 'boolean' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help === true) {
    io.out.write(`${REPLAY_HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('replay needs one FILE (try pinlab replay --help)');
  const options: ReplayOptions = { file: positionals[0]! };
  if (values.scheme !== undefined) {
    const schemes = String(values.scheme).split(',').map((x) => x.trim());
    for (const s of schemes) if (!SCHEMES.includes(s as Scheme)) throw new UsageError(`--scheme: unknown scheme '${s}' (known: ${SCHEMES.join(', ')})`);
    options.schemes = schemes as Scheme[];
  }
  if (values.bias !== undefined) options.bias = ints(String(values.bias), 'bias', 2, 1 << 20);
  if (values.rules !== undefined) options.rules = ints(String(values.rules), 'rules', 1, 31);
  if (values.threads !== undefined) options.threads = int(String(values.threads), 'threads', 1, 1024);
  if (values.debug === true && values['no-debug'] === true) throw new UsageError('--debug and --no-debug contradict each other');
  if (values.debug === true) options.debug = true;
  if (values['no-debug'] === true) options.debug = false;
  // A bad --out fails now, not after the replay.
  if (values.out !== undefined) await prepareOutputDir(String(values.out), REPORT_FILES);
  const controller = new AbortController();
  // Ctrl-C stays handled until the report's files are written: a stop during the writing
  // removes its temporaries and writes none of them (exit 130), never half a report.
  const stop = interruptible(() => controller.abort());
  let results: ReplayResults;
  try {
    const progress = progressReporter(io.err, 'pinlab replay');
    try {
      results = await runReplay({ ...options, signal: controller.signal, onProgress: (e) => progress.update({ done: e.done, total: e.total, label: e.what }) });
    } catch (e) {
      if (stop.fired()) {
        io.err.write('pinlab: replay stopped; nothing written\n');
        return STOPPED;
      }
      throw refusal(e);
    } finally {
      progress.done();
    }
    if (values.out !== undefined) {
      let paths;
      try {
        paths = await writeReplayReport(results, String(values.out), { signal: controller.signal });
      } catch (e) {
        if (e instanceof ReportStopped || stop.fired()) {
          io.err.write('pinlab: replay stopped; nothing written\n');
          return STOPPED;
        }
        throw e;
      }
      io.err.write(`pinlab: wrote ${[paths.json, paths.markdown, ...paths.charts].join(', ')}\n`);
    }
    if (stop.fired()) {
      // Stopped once the report was whole (its renames are not stopped): it stays, and the
      // table is not printed.
      io.err.write('pinlab: replay stopped\n');
      return STOPPED;
    }
  } finally {
    stop.done();
  }
  io.out.write(values.json === true ? `${JSON.stringify(results, null, 2)}\n` : formatReplayTable(results));
  return 0;
}

/** A stream the core refused is not a usage error (exit 2, not 64): it names the file and record. */
function refusal(e: unknown): unknown {
  if (e instanceof PinlabError && e.code === 'EINVAL' && /record|line|header|checksum|truncated|trailing|op stream|not a regular file/.test(e.message)) {
    return new StreamRefused(e.message);
  }
  return e;
}

/** A refused stream: the CLI prints it and exits 2. @internal */
export class StreamRefused extends Error {}

/** Runs `pinlab trace synth|convert`; returns the exit status. */
export async function traceCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '-h' || sub === '--help') {
    io.out.write(`${TRACE_HELP}\n`);
    return sub === undefined ? 64 : 0;
  }
  if (sub === 'synth') return synth(rest, io);
  if (sub === 'convert') return convert(rest, io);
  throw new UsageError(`unknown trace command '${sub}' (synth or convert; try pinlab trace --help)`);
}

async function synth(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(
    args,
    {
      ops: { type: 'string' },
      seed: { type: 'string' },
      threads: { type: 'string' },
      pages: { type: 'string' },
      mix: { type: 'string' },
      scheme: { type: 'string' },
      bias: { type: 'string' },
      debug: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help === true) {
    io.out.write(`${TRACE_HELP}\n`);
    return 0;
  }
  if (values.ops === undefined) throw new UsageError('trace synth: --ops N is required');
  if (values.out === undefined) throw new UsageError('trace synth: --out FILE is required');
  const scheme = String(values.scheme ?? 'hybrid');
  if (!SCHEMES.includes(scheme as Scheme)) throw new UsageError(`--scheme: unknown scheme '${scheme}' (known: ${SCHEMES.join(', ')})`);
  const mix = String(values.mix ?? 'pages');
  if (mix !== 'pages' && mix !== 'mm') throw new UsageError(`--mix: '${mix}' is not pages or mm`);
  const options = {
    ops: int(String(values.ops), 'ops', 1, 2 ** 40),
    seed: values.seed === undefined ? 1 : int(String(values.seed), 'seed', 0, Number.MAX_SAFE_INTEGER),
    threads: values.threads === undefined ? 1 : int(String(values.threads), 'threads', 1, 1024),
    pages: values.pages === undefined ? 1 << 20 : int(String(values.pages), 'pages', 1, 2 ** 31),
    scheme,
    bias: values.bias === undefined ? 1024 : int(String(values.bias), 'bias', 2, 1 << 20),
    debug: values.debug === true,
    mix,
  };
  const progress = progressReporter(io.err, 'pinlab trace synth');
  const r = await untilDoneOrStopped(
    native.startSynth(String(values.out), options, (done, total) => progress.update({ done, total, label: String(values.out) })),
    'synthesis',
    io,
    (e) => e,
    () => progress.done(),
  );
  if (r === null) return STOPPED;
  io.out.write(`wrote ${r.path}: ${r.ops} ops, ${r.records} records (seed ${options.seed}, ${options.threads} tag${options.threads === 1 ? '' : 's'}, mix ${mix})\n`);
  return 0;
}

async function convert(args: string[], io: CliIo): Promise<number> {
  const { positionals, values } = parse(args, { help: { type: 'boolean', short: 'h' } }, true);
  if (values.help === true) {
    io.out.write(`${TRACE_HELP}\n`);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError('trace convert needs IN and OUT');
  const [input, output] = positionals as [string, string];
  const progress = progressReporter(io.err, 'pinlab trace convert');
  const r = await untilDoneOrStopped(
    native.startConvert(input, output, (done, total, what) => progress.update({ done, total, label: what })),
    'conversion',
    io,
    refusal,
    () => progress.done(),
  );
  if (r === null) return STOPPED;
  io.out.write(`wrote ${output}: ${r.records} records\n`);
  return 0;
}

/**
 * Awaits a native job that Ctrl-C cancels (its output is written all or none): its result, or
 * null once Ctrl-C stopped it (said on stderr: nothing written). Any other failure is thrown as
 * `failure` maps it; `finish` runs either way, before anything is said.
 */
async function untilDoneOrStopped<T>(
  job: { promise: Promise<T>; cancel(): void },
  what: string,
  io: CliIo,
  failure: (e: unknown) => unknown,
  finish: () => void = () => undefined,
): Promise<T | null> {
  const stop = interruptible(() => job.cancel());
  try {
    return await job.promise;
  } catch (e) {
    if (!stop.fired()) throw failure(e);
  } finally {
    finish();
    stop.done();
  }
  io.err.write(`pinlab: ${what} stopped; nothing written\n`);
  return null;
}
