#!/usr/bin/env node
// The cost of the "is it pinned?" queries per scheme, through the public API (dist/ and the
// built addon), side by side in one run, best of several trials:
//   maybeDmaPinned(pfn) on a pinned 2 MiB folio (ns per call, the JS call included), and
//   countMaybeDmaPinned over 2^24 pages of 2 MiB folios, one in eight pinned (ns per folio).
// Each figure is also given as a ratio to separate's (the exact single-counter scheme), which
// the issue's targets compare a sharded scheme with (<= 5x and <= 2x).
//   node bench/maybe-pinned.mjs [--json] [--pages N]
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { PageArray, SCHEMES } = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);
const json = process.argv.includes('--json');
const at = process.argv.indexOf('--pages');
const PAGES = at > 0 ? Number(process.argv[at + 1]) : 2 ** 24;
const ORDER = 9;
const FOLIO = 2 ** ORDER;
const TRIALS = 5;
const CALLS = 200_000;

function best(f) {
  let min = Infinity;
  for (let t = 0; t < TRIALS; t++) {
    const t0 = process.hrtime.bigint();
    f();
    min = Math.min(min, Number(process.hrtime.bigint() - t0));
  }
  return min;
}

const rows = [];
for (const scheme of SCHEMES) {
  const mem = new PageArray({ pages: PAGES, scheme, folioOrder: ORDER });
  for (let head = 0; head < PAGES; head += 8 * FOLIO) mem.pinPages({ start: head, count: 1 });
  let sink = 0;
  const query = best(() => {
    for (let i = 0; i < CALLS; i++) sink += mem.maybeDmaPinned(0) ? 1 : 0;
  }) / CALLS;
  const scan = best(() => {
    sink += mem.countMaybeDmaPinned({ start: 0, count: PAGES });
  }) / (PAGES / FOLIO);
  if (sink < 0) console.log(sink);
  rows.push({ scheme, maybeDmaPinnedNs: query, scanNsPerFolio: scan });
}
const sep = rows.find((r) => r.scheme === 'separate');
for (const r of rows) {
  r.queryVsSeparate = r.maybeDmaPinnedNs / sep.maybeDmaPinnedNs;
  r.scanVsSeparate = r.scanNsPerFolio / sep.scanNsPerFolio;
}
if (json) {
  process.stdout.write(JSON.stringify({ pages: PAGES, order: ORDER, rows }) + '\n');
} else {
  console.log(`maybe-pinned queries, ${PAGES} pages of order-${ORDER} folios, best of ${TRIALS}`);
  console.log(`${'scheme'.padEnd(12)}${'maybeDmaPinned ns'.padStart(19)}${'vs separate'.padStart(13)}${'scan ns/folio'.padStart(15)}${'vs separate'.padStart(13)}`);
  for (const r of rows) {
    console.log(
      `${r.scheme.padEnd(12)}${r.maybeDmaPinnedNs.toFixed(1).padStart(19)}${`${r.queryVsSeparate.toFixed(2)}x`.padStart(13)}` +
        `${r.scanNsPerFolio.toFixed(2).padStart(15)}${`${r.scanVsSeparate.toFixed(2)}x`.padStart(13)}`,
    );
  }
}
