// What the pinlab commands share: usage errors, where they write, progress reporting.
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
