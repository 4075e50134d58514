// RDMA memory-region churn: processes register and deregister memory regions (long-term write
// pins, one PinOwner per MR) over 4 KiB pages and 2 MiB THPs, while short-lived
// get_user_pages references come and go and compaction and migration run between rounds.
// For each pin scheme: how many migrations were refused as "maybe pinned", and how many of those
// refusals were false positives (debug mode knows every folio's exact pins).
//
//   node examples/rdma-churn.mjs [--seed N] [--out DIR] [--quick] [--trace FILE]
//
// --trace FILE records the first scheme's run as an op stream (npx pinlab replay FILE).
import { AddressSpace, PageArray, PinlabError, SCHEMES } from '../dist/index.js';
import { Rng, check, finishTrace, formatTable, groupedBarSpec, parseArgs, startTrace, sum, writeOutputs } from './lib/common.mjs';

const NAME = 'rdma-churn';
const opts = await parseArgs(NAME);
const PROCS = opts.quick ? 2 : 4; // processes
const ROUNDS = opts.quick ? 15 : 80;
const SMALL = 2048; // 4 KiB pages per process, virtual pages 0..2047 (8 MiB)
const THPS = 8; // 2 MiB THPs per process (16 MiB)
const HUGE = 4096; // first virtual page of the THP region (2 MiB aligned)
const TOTAL = 1 << 16; // 256 MiB of physical memory ...
const MOVABLE = 1 << 15; // ... the top half of it ZONE_MOVABLE

/** One process: an 8 MiB region of 4 KiB pages, a 16 MiB region of THPs, its MRs and its gets. */
class Proc {
  constructor(mem, id) {
    this.id = id;
    this.mm = new AddressSpace(mem, { pages: HUGE + THPS * 512 });
    this.mrs = []; // { owner, pfns }
    this.gets = []; // pfn lists held by get_user_pages
    this.map();
  }
  map() {
    this.mm.mmap({ start: 0, count: SMALL, populate: true });
    this.mm.mmap({ start: HUGE, count: THPS * 512, populate: true, huge: true });
  }
  /** A random range: 4 KiB pages, or part (often all) of one THP and maybe the next. */
  range(rng, maxSmall) {
    if (rng.chance(0.5)) {
      const count = rng.int(1, maxSmall);
      return { start: rng.int(0, SMALL - count), count };
    }
    const start = HUGE + rng.int(0, THPS - 1) * 512;
    const count = rng.chance(0.5) ? 512 : rng.int(64, 512);
    return { start, count: Math.min(count + (rng.chance(0.2) ? 512 : 0), HUGE + THPS * 512 - start) };
  }
}

let mrSeq = 0;

/** ibv_reg_mr: pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM) for a new owner; all or nothing. */
function register(mem, proc, { start, count }, row) {
  const owner = mem.pinOwner(`p${proc.id}/mr${++mrSeq}`, { kind: 'device' });
  let got = 0;
  try {
    const { pfns } = proc.mm.pinUserPagesFast(start, count, { write: true, longterm: true, owner });
    got = pfns.length;
    if (got === count) {
      proc.mrs.push({ owner, pfns });
      row.mrs++;
      return;
    }
  } catch (e) {
    if (!(e instanceof PinlabError) || e.code !== 'EBUSY') throw e; // a page could not leave ZONE_MOVABLE
  }
  owner.drop({ pins: 'release' }); // a partial registration gives back what it pinned
  row.regFailed++;
}

/** ibv_dereg_mr: unpin (dirty: the device wrote), then drop the owner, which must hold nothing. */
function deregister(proc, mr) {
  proc.mm.unpinUserPages(mr.pfns, { write: true, dirty: true, owner: mr.owner });
  const { leaked } = mr.owner.drop({ pins: 'report' });
  check(leaked.length === 0, `${mr.owner.name} still holds pins after dereg`);
}

function runScheme(scheme) {
  const rng = new Rng(opts.seed); // the same draws for every scheme
  const mem = new PageArray({ pages: TOTAL, scheme, populated: false, movablePages: MOVABLE, debug: true });
  const trace = scheme === SCHEMES[0] ? startTrace(opts, mem) : null;
  const procs = Array.from({ length: PROCS }, (_, i) => new Proc(mem, i));
  const row = { scheme, mrs: 0, regFailed: 0 };
  const t0 = performance.now();
  for (let round = 0; round < ROUNDS; round++) {
    for (const p of procs) {
      // In-flight I/O: get_user_pages references, held until the end of the round.
      for (let k = rng.int(1, 3); k > 0; k--) {
        const { start, count } = p.range(rng, 64);
        p.gets.push(p.mm.getUserPagesFast(start, count).pfns);
      }
      for (let k = rng.int(0, 2); k > 0; k--) register(mem, p, p.range(rng, 256), row);
      if (p.mrs.length > 0 && rng.chance(0.5)) deregister(p, p.mrs.splice(rng.int(0, p.mrs.length - 1), 1)[0]);
    }
    // Between rounds: compaction, and migration of each THP region and of some 4 KiB pages.
    for (const p of procs) {
      p.mm.compact();
      p.mm.migrate({ start: HUGE, count: THPS * 512 });
      p.mm.migrate({ start: rng.int(0, SMALL - 256), count: 256 });
    }
    for (const p of procs) {
      for (const pfns of p.gets.splice(0)) p.mm.putUserPages(pfns);
      if (rng.chance(0.05)) {
        // The process exits and restarts: its mappings go first, its MRs' pins stay (still
        // owned), then closing the verbs file releases them through the owners.
        p.mm.munmap({ start: 0, count: HUGE + THPS * 512 });
        for (const mr of p.mrs.splice(0)) mr.owner.drop({ pins: 'release' });
        p.map();
      }
    }
  }
  for (const p of procs) for (const mr of p.mrs.splice(0)) deregister(p, mr);
  const leaks = mem.checkBalanced(); // throws ELEAK naming owner, call and pages if anything is left
  check(leaks.length === 0, `${scheme}: pins left after deregistering everything`);
  for (const p of procs) p.mm.munmap({ start: 0, count: HUGE + THPS * 512 });
  check(mem.freePages() === mem.pages, `${scheme}: ${mem.pages - mem.freePages()} pages not back in the allocator`);
  finishTrace(opts, trace, `the ${scheme} run`);
  const st = procs.map((p) => p.mm.stats());
  return {
    ...row,
    pins: mem.stats().pinAcquired,
    migrated: sum(st, 'migratedPages'),
    longterm: sum(st, 'longtermMigrations'),
    refused: sum(st, 'migrationRefusals'),
    falsePos: sum(st, 'migrationFalsePositives'),
    busy: sum(st, 'migrationBusy'),
    unclassified: sum(st, 'unclassified'),
    leaks: leaks.length,
    ms: performance.now() - t0,
  };
}

const rows = SCHEMES.map(runScheme);
for (const r of rows) {
  check(r.falsePos <= r.refused, `${r.scheme}: more false positives than refusals`);
  check(r.unclassified === 0, `${r.scheme}: debug mode classifies every refusal`);
}
console.log(
  `rdma-churn: seed ${opts.seed}, ${PROCS} processes x ${ROUNDS} rounds, ` +
    `${SMALL} x 4 KiB + ${THPS} x 2 MiB THP each, ZONE_MOVABLE ${MOVABLE} of ${TOTAL} pages, pinBias 1024\n`,
);
const columns = [
  ['scheme', 'scheme'],
  ['mrs', 'MRs'],
  ['regFailed', 'reg failed'],
  ['pins', 'pins (pages)'],
  ['migrated', 'migrated (pages)'],
  ['longterm', 'longterm migr'],
  ['refused', 'refused'],
  ['falsePos', 'false pos'],
  ['busy', 'busy'],
  ['leaks', 'leaks'],
  ['ms', 'ms'],
];
console.log(formatTable(columns, rows));
console.log('\nrefused/false pos/busy count folios; every scheme ended balanced (checkBalanced() = [], all pages free).');

const values = rows.flatMap((r) => [
  { x: r.scheme, series: 'refused (maybe pinned)', value: r.refused },
  { x: r.scheme, series: 'false positives', value: r.falsePos },
]);
const spec = groupedBarSpec({
  title: `RDMA MR churn: migrations refused as pinned (seed ${opts.seed})`,
  xTitle: 'scheme',
  yTitle: 'folios',
  values,
  xOrder: [...SCHEMES],
  seriesOrder: ['refused (maybe pinned)', 'false positives'],
});
for (const f of await writeOutputs(opts, NAME, rows, spec)) console.log(`wrote ${f}`);
