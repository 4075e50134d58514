// Runs the `pinlab` CLI in-process with its output captured (for the CLI tests).
import { PassThrough } from 'node:stream';

import { main } from '../lib/cli.js';

/** main(args) with stdout and stderr captured as text. */
export async function runCli(args: string[]): Promise<{ status: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const status = await main(args, { out, err });
  return { status, out: o, err: e };
}
