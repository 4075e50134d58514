// What the pinlab commands share: usage errors, where they write, progress reporting.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

import type { BenchProgressEvent } from './bench/run.js';

/** A bad command line: the CLI prints it and exits 64. */
export class UsageError extends Error {}

/**
 * A decimal integer option in min..max (both inclusive, safe integers): refused, not wrapped
 * or rounded, when it is out of range (`--threads 4294967297` is not 1).
 */
export function intOption(s: string, name: string, min: number, max: number): number {
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name}: '${s}' is not an integer in ${min}..${max}`);
  }
  return n;
}

/** The most an input file (a population, a previous result) may hold: 64 MiB. */
export const MAX_INPUT_BYTES = 64 << 20;

/**
 * Reads a small input file named on the command line as UTF-8: opened without blocking
 * (O_NONBLOCK, so a FIFO with no writer cannot hang the command), then checked on the open
 * descriptor itself (no race with the path): a regular file of at most `maxBytes`, else a
 * UsageError naming `option`, the path and the reason (a FIFO, a directory, a device, too large).
 */
export function readInputFile(file: string, option: string, maxBytes = MAX_INPUT_BYTES): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new UsageError(`${option}: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    const what = st.isFIFO() ? 'a FIFO' : st.isDirectory() ? 'a directory' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : st.isFile() ? null : 'not a regular file';
    if (what !== null) throw new UsageError(`${option}: cannot read ${file}: it is ${what}, not a regular file`);
    if (st.size > maxBytes) throw new UsageError(`${option}: cannot read ${file}: it is too large (${st.size} bytes; at most ${maxBytes})`);
    // Read to the end, never past the cap (the file may grow while it is read).
    const buf = Buffer.alloc(Math.min(maxBytes, st.size) + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n === buf.length) throw new UsageError(`${option}: cannot read ${file}: it is too large (it grew while read)`);
    }
    return buf.toString('utf8', 0, n);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${option}: cannot read ${file}: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/** Where the CLI writes: stdout for results, stderr for progress and messages. */
export interface CliIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/** A progress bar on a terminal; plain lines (every 10%) otherwise. */
export function progressReporter(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }, name = 'pinlab bench') {
  const tty = stream.isTTY === true;
  let lastDecile = -1;
  let drawn = false;
  return {
    update: (p: BenchProgressEvent): void => {
      const frac = p.total > 0 ? p.done / p.total : 1;
      if (tty) {
        const width = 30;
        const filled = Math.round(frac * width);
        const label = p.label.slice(0, Math.max(10, (stream.columns ?? 80) - width - 20));
        stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(frac * 100)).padStart(3)}% ${label}\x1b[K`);
        drawn = true;
        return;
      }
      const decile = Math.floor(frac * 10);
      if (decile > lastDecile) {
        lastDecile = decile;
        stream.write(`${name}: ${decile * 10}% (${p.done}/${p.total}) ${p.label}\n`);
      }
    },
    done: (): void => {
      if (tty && drawn) stream.write('\r\x1b[K');
    },
  };
}

/**
 * Calls `cancel` on Ctrl-C (and SIGTERM) while a run or a report's writing is in flight; returns
 * the uninstaller and whether it fired. Installed only around work that `cancel` really stops:
 * elsewhere the default (the process ends) stands.
 */
export function interruptible(cancel: () => void): { done: () => void; fired: () => boolean } {
  let fired = false;
  const handler = (): void => {
    fired = true;
    cancel();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    done: () => {
      process.removeListener('SIGINT', handler);
      process.removeListener('SIGTERM', handler);
    },
    fired: () => fired,
  };
}

/**
 * Writes a report (`write`, all or none: lib/report/files.ts) with Ctrl-C handled: a stop before
 * its files are renamed into place leaves none of them written (no temporary left behind) and
 * resolves `undefined`, for the caller's exit status 130.
 */
export async function writeReportOrStop<T>(write: (signal: AbortSignal) => Promise<T>): Promise<T | undefined> {
  const controller = new AbortController();
  const stop = interruptible(() => controller.abort());
  try {
    return await write(controller.signal);
  } catch (e) {
    if (stop.fired()) return undefined;
    throw e;
  } finally {
    stop.done();
  }
}
