// Direct I/O through bios under the two release policies of 2019: 'flagged' (each bio_vec
// remembers whether it holds a pin or a plain reference) and 'all-pins' (every bio reference is a
// pin, page-cache pages included). Then a buggy caller that releases a bio with put_page, as
// caught by debug tracking (throw and count modes), and as it slips through without debug mode
// until checkBalanced() reports the leaked pins by owner.
//
//   node examples/direct-io.mjs [--seed N] [--out DIR] [--quick] [--trace FILE]
//
// --trace FILE records the 'flagged' policy's process (its bios, warm-up included) as an op
// stream (npx pinlab replay FILE).
import { AddressSpace, PageArray, PageCacheFile, PinlabError, bioAddPage, bioFromUserPages } from '../dist/index.js';
import { Rng, check, finishTrace, formatTable, groupedBarSpec, parseArgs, startTrace, writeOutputs } from './lib/common.mjs';

const NAME = 'direct-io';
const opts = await parseArgs(NAME);
const BIOS = opts.quick ? 2000 : 20000;
const WARMUP = opts.quick ? 500 : 1000;
const CHUNK = 500; // bios per timed chunk
const POLICIES = ['flagged', 'all-pins'];
const FILE_AT = 4096; // virtual page where the file is mapped shared
const FILE_PAGES = 512; // data.db: 2 MiB of 16 KiB page-cache folios

/** A process with a 4 MiB anonymous buffer, a 4 MiB THP buffer, and data.db mapped shared. */
function setup(memOptions, traced = false) {
  const mem = new PageArray({ pages: 1 << 14, populated: false, ...memOptions });
  const trace = traced ? startTrace(opts, mem) : null;
  const mm = new AddressSpace(mem, { pages: 8192 });
  mm.mmap({ start: 0, count: 1024, populate: true });
  mm.mmap({ start: 1024, count: 1024, populate: true, huge: true });
  const file = new PageCacheFile(mem, { name: 'data.db', pages: FILE_PAGES, folioOrder: 2 });
  mm.mmap({ start: FILE_AT, count: FILE_PAGES, file });
  return { mem, mm, file, trace };
}

/** The workload, the same for both policies: user buffer, direction, page-cache pages added. */
function workload(rng, n) {
  return Array.from({ length: n }, () => {
    const count = rng.int(1, 64);
    const inFile = rng.chance(0.25); // O_DIRECT into an mmapped file: pins page-cache pages
    const start = inFile ? FILE_AT + rng.int(0, FILE_PAGES - count) : rng.int(0, 2048 - count);
    const adds = Array.from({ length: rng.int(0, 2) }, () => {
      const n = rng.int(1, 4); // pages of one 4-page folio of the page cache (e.g. metadata blocks)
      return { index: rng.int(0, FILE_PAGES / 4 - 1) * 4 + rng.int(0, 4 - n), count: n };
    });
    return { start, count, write: rng.chance(0.5), adds }; // write: a read from disk (device writes)
  });
}

function submit(mm, file, w, policy, owner) {
  const bio = bioFromUserPages(mm, w.start, w.count, { policy, write: w.write, owner });
  for (const a of w.adds) bioAddPage(bio, file.pfnAt(a.index), { count: a.count });
  return bio;
}

/** One policy's process and counters: `run(ws)` submits and completes bios (µs per bio). */
function prepare(policy) {
  const { mem, mm, file, trace } = setup({ scheme: 'hybrid' }, policy === POLICIES[0]);
  const owner = mem.pinOwner(`dio:${policy}`, { kind: 'file' });
  const row = { policy, bios: 0, pages: 0, pins: 0, plainRefs: 0, usPerBio: 0, leaks: 0 };
  const run = (ws) => {
    const t0 = performance.now();
    for (const w of ws) {
      const bio = submit(mm, file, w, policy, owner);
      row.bios++;
      row.pages += bio.pages;
      for (const b of bio.bvecs) if (b.ref === 'get') row.plainRefs += b.count;
      bio.complete();
    }
    return ((performance.now() - t0) * 1000) / ws.length;
  };
  const reset = () => {
    Object.assign(row, { bios: 0, pages: 0, plainRefs: 0, pins: -mem.stats().pinAcquired });
  };
  const finish = (usPerBio) => {
    row.leaks = mem.checkBalanced().length; // throws ELEAK (by owner) if a bio kept a pin
    row.pins += mem.stats().pinAcquired;
    row.usPerBio = usPerBio;
    mm.munmap({ start: 0, count: 8192 });
    file.truncate(0);
    check(mem.freePages() === mem.pages, `${policy}: pages not back in the allocator`);
    finishTrace(opts, trace, `the '${policy}' process`);
    return row;
  };
  return { run, reset, finish };
}

/** Both policies run the same bios in interleaved chunks; µs per bio is the median chunk's. */
function runPolicies(work) {
  const runs = POLICIES.map(prepare);
  for (const r of runs) r.run(work.slice(0, WARMUP)); // JIT warm-up, not counted
  for (const r of runs) r.reset();
  const samples = runs.map(() => []);
  for (let at = 0; at < work.length; at += CHUNK) {
    const ws = work.slice(at, at + CHUNK);
    runs.forEach((r, i) => samples[i].push(r.run(ws)));
  }
  return runs.map((r, i) => r.finish(samples[i].sort((a, b) => a - b)[samples[i].length >> 1]));
}

// ---- the buggy caller: put_page on a bio whose references are pins --------------------------

function buggyBio(memOptions) {
  const { mem, mm, file } = setup({ scheme: 'hybrid', ...memOptions });
  const owner = mem.pinOwner('dio:buggy-driver', { kind: 'file' });
  const bio = submit(mm, file, { start: 0, count: 8, write: true, adds: [{ index: 0, count: 2 }] }, 'all-pins', owner);
  return { mem, bio };
}

function misuse() {
  const out = {};
  {
    const { mem, bio } = buggyBio({ debug: true });
    try {
      bio.release('put');
      check(false, "debug mode let bio.release('put') through");
    } catch (e) {
      if (!(e instanceof PinlabError)) throw e;
      out.throwMode = { code: e.code, message: e.message, owners: [...new Set(e.provenance.map((p) => p.owner))] };
    }
    bio.complete(); // the detection changed nothing: release it the right way
    check(mem.checkBalanced().length === 0, 'throw mode: balanced after the right release');
  }
  {
    const { mem, bio } = buggyBio({ debug: true, onImbalance: 'count' });
    bio.release('put'); // counted, then completed the right way
    out.countMode = { imbalances: mem.stats().imbalances, completed: bio.completed, leaks: mem.checkBalanced().length };
  }
  {
    const { mem, bio } = buggyBio({ debug: false });
    bio.release('put'); // goes through: the pins' references are put, the pins stay counted
    try {
      mem.checkBalanced();
      check(false, 'checkBalanced() missed the leaked pins');
    } catch (e) {
      if (!(e instanceof PinlabError)) throw e;
      const byOwner = {};
      for (const l of e.leaks) byOwner[`${l.owner} (${l.ownerKind})`] = (byOwner[`${l.owner} (${l.ownerKind})`] ?? 0) + l.count;
      out.noDebug = { code: e.code, message: e.message, leakedPagesByOwner: byOwner };
    }
  }
  return out;
}

const work = workload(new Rng(opts.seed), BIOS);
const rows = runPolicies(work);
for (const r of rows) check(r.leaks === 0, `${r.policy}: leaks`);
check(rows[1].plainRefs === 0, "'all-pins' takes no plain references");
check(rows[0].pins + rows[0].plainRefs === rows[1].pins, 'the same pages are referenced under both policies');

console.log(`direct-io: seed ${opts.seed}, ${BIOS} bios of 1..64 user pages (+0..2 page-cache runs), hybrid scheme\n`);
const columns = [
  ['policy', 'policy'],
  ['bios', 'bios'],
  ['pages', 'pages'],
  ['pins', 'pins'],
  ['plainRefs', 'plain refs'],
  ['usPerBio', 'µs/bio'],
  ['leaks', 'leaks'],
];
console.log(formatTable(columns, rows, 2));

const m = misuse();
console.log("\nbuggy caller: bio.release('put') on an 'all-pins' bio (pins dropped with put_page)");
console.log(`  debug, throw : ${m.throwMode.code} caught, nothing changed\n    ${m.throwMode.message}`);
const c = m.countMode.imbalances;
console.log(`  debug, count : stats().imbalances = EPINNED ${c.EPINNED}, ENOTPINNED ${c.ENOTPINNED}, ELEAK ${c.ELEAK}; bio completed the right way, leaks ${m.countMode.leaks}`);
const owners = Object.entries(m.noDebug.leakedPagesByOwner).map(([o, n]) => `${o}: ${n} pages`);
console.log(`  no debug     : the put went through; later checkBalanced() -> ${m.noDebug.code}, leaked pins by owner: ${owners.join(', ')}`);
console.log(`    ${m.noDebug.message}`);

const spec = groupedBarSpec({
  title: `Direct I/O: time per bio by release policy (seed ${opts.seed})`,
  xTitle: 'policy',
  yTitle: 'microseconds per bio',
  values: rows.map((r) => ({ x: r.policy, series: 'µs per bio', value: Number(r.usPerBio.toFixed(1)) })),
  xOrder: POLICIES,
  seriesOrder: ['µs per bio'],
});
for (const f of await writeOutputs(opts, NAME, rows, spec, { misuse: m })) console.log(`wrote ${f}`);
