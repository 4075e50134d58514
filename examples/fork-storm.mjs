// Fork storms with long-term pins: a parent with THPs and 4 KiB pages holds long-term pins on
// part of its memory (owner kind 'mm', e.g. io_uring fixed buffers) and many get_user_pages
// references (in-flight I/O) that push refcounts towards a small pin bias; then it forks again
// and again. fork copies every "maybe pinned" page of a pinning mm at once (early COW): how many
// of those copies were false positives, and did any scheme miss a real pin?
//
//   node examples/fork-storm.mjs [--seed N] [--out DIR] [--quick] [--trace FILE]
//
// --trace FILE records the first scheme's run as an op stream (npx pinlab replay FILE).
import { AddressSpace, PageArray, SCHEMES } from '../dist/index.js';
import { Rng, check, finishTrace, formatTable, groupedBarSpec, parseArgs, startTrace, writeOutputs } from './lib/common.mjs';

const NAME = 'fork-storm';
const opts = await parseArgs(NAME);
const FORKS = opts.quick ? 8 : 64;
const BIAS = 64; // a small GUP_PIN_COUNTING_BIAS, so plain references reach it
const THPS = 8; // 2 MiB THPs, virtual pages 0..4095
const SMALL_AT = 8192; // 4 KiB pages, virtual pages 8192..12287
const SMALL = 4096;
const VPAGES = 16384;

/** Long-term pins: part of some THPs and short runs of 4 KiB pages, half of them read pins. */
function takePins(rng, mm, owner) {
  const pins = [];
  const pin = (start, count) => {
    const write = rng.chance(0.5);
    const { pfns } = mm.pinUserPagesFast(start, count, { write, longterm: true, owner });
    pins.push({ start, pfns, write });
  };
  for (let t = 0; t < THPS; t++) if (rng.chance(0.25)) pin(t * 512 + rng.int(0, 384), rng.int(1, 128));
  for (let k = 0; k < 24; k++) pin(SMALL_AT + rng.int(0, SMALL - 32), rng.int(1, 32));
  return pins;
}

/** In-flight I/O: a hot run of 4 KiB pages referenced 1..1.5 x BIAS times, or one whole THP once. */
function hotRef(rng, mm) {
  if (rng.chance(0.2)) return [mm.getUserPagesFast(rng.int(0, THPS - 1) * 512, 512).pfns];
  const start = SMALL_AT + rng.int(0, SMALL - 16);
  const count = rng.int(1, 16);
  return Array.from({ length: rng.int(1, (BIAS * 3) / 2) }, () => mm.getUserPagesFast(start, count).pfns);
}

/** Between forks some I/O completes (its references are put) and new I/O starts. */
function churn(rng, mm, hot) {
  for (let i = 0; i < hot.length; i++) {
    if (!rng.chance(0.25)) continue;
    for (const pfns of hot[i]) mm.putUserPages(pfns);
    hot[i] = hotRef(rng, mm);
  }
}

function runScheme(scheme) {
  const rng = new Rng(opts.seed); // the same draws for every scheme
  const mem = new PageArray({ pages: 1 << 16, scheme, pinBias: BIAS, populated: false, debug: true });
  const trace = scheme === SCHEMES[0] ? startTrace(opts, mem) : null;
  const parent = new AddressSpace(mem, { pages: VPAGES });
  parent.mmap({ start: 0, count: THPS * 512, populate: true, huge: true });
  parent.mmap({ start: SMALL_AT, count: SMALL, populate: true });
  const owner = mem.pinOwner('parent', { kind: 'mm' });
  const pins = takePins(rng, parent, owner);
  const hot = Array.from({ length: 40 }, () => hotRef(rng, parent));

  // The truth: every folio holding a real pin, with one virtual page that maps it.
  const pinned = new Map(); // folio head -> { size, vpage }
  for (const p of pins) {
    p.pfns.forEach((pfn, i) => {
      const head = mem.folioHead(pfn);
      if (!pinned.has(head)) pinned.set(head, { size: 1 << mem.folioOrder(pfn), vpage: p.start + i });
    });
  }
  const pinnedPages = [...pinned.values()].reduce((n, f) => n + f.size, 0);

  let missed = 0;
  let ms = 0;
  for (let i = 0; i < FORKS; i++) {
    const t0 = performance.now();
    const child = parent.fork();
    ms += performance.now() - t0;
    // A pinned folio the child maps too was not copied: the parent's next write would COW away
    // from the page the device holds (the bug early COW exists to prevent).
    for (const f of pinned.values()) if (child.translate(f.vpage).pfn === parent.translate(f.vpage).pfn) missed += f.size;
    child.touch(SMALL_AT + rng.int(0, SMALL - 8), 8, { write: true }); // the child runs a little
    child.munmap({ start: 0, count: VPAGES }); // ... and exits
    churn(rng, parent, hot);
  }
  const st = parent.stats();
  const fpPages = st.earlyCowFalsePositives; // pages copied for folios without a real pin

  for (const p of pins) parent.unpinUserPages(p.pfns, { write: p.write, owner });
  for (const refs of hot) for (const pfns of refs) parent.putUserPages(pfns);
  const leaks = mem.checkBalanced(); // throws ELEAK naming owner 'parent' if a pin were left
  parent.munmap({ start: 0, count: VPAGES });
  check(mem.freePages() === mem.pages, `${scheme}: pages not back in the allocator`);
  finishTrace(opts, trace, `the ${scheme} run`);
  return {
    scheme,
    forks: FORKS,
    copied: st.earlyCowCopies,
    pinnedPages: FORKS * pinnedPages,
    fpPages,
    missed,
    unclassified: st.unclassified,
    msPerFork: ms / FORKS,
    leaks: leaks.length,
  };
}

const rows = SCHEMES.map(runScheme);
for (const r of rows) {
  check(r.fpPages >= 0 && r.fpPages <= r.copied, `${r.scheme}: false-positive pages within the copies`);
  check(r.copied === r.pinnedPages - r.missed + r.fpPages, `${r.scheme}: early-COW = pinned - missed + false positives`);
  check(r.unclassified === 0 && r.leaks === 0, `${r.scheme}: exact classification, no leaks`);
  check(r.missed === 0 || r.scheme === 'write-bias', `${r.scheme}: only write-bias may miss (read) pins`);
}
const bySep = rows.find((r) => r.scheme === 'separate');
check(bySep.fpPages === 0, 'separate counts pins exactly: no false positives');

console.log(`fork-storm: seed ${opts.seed}, ${FORKS} forks, ${THPS} THPs + ${SMALL} x 4 KiB pages, pinBias ${BIAS}\n`);
const columns = [
  ['scheme', 'scheme'],
  ['forks', 'forks'],
  ['copied', 'early-COW (pages)'],
  ['pinnedPages', 'pinned (pages)'],
  ['fpPages', 'false pos (pages)'],
  ['missed', 'missed pins'],
  ['msPerFork', 'ms/fork'],
];
console.log(formatTable(columns, rows, 3));
console.log('\npinned: pages of folios holding a real pin, summed over forks; early-COW = pinned - missed + false pos.');

const values = rows.flatMap((r) => [
  { x: r.scheme, series: 'early-COW copies', value: r.copied },
  { x: r.scheme, series: 'false positives', value: r.fpPages },
]);
const spec = groupedBarSpec({
  title: `Fork storm: pages copied at fork, pinBias ${BIAS} (seed ${opts.seed})`,
  xTitle: 'scheme',
  yTitle: `4 KiB pages over ${FORKS} forks`,
  values,
  xOrder: [...SCHEMES],
  seriesOrder: ['early-COW copies', 'false positives'],
});
for (const f of await writeOutputs(opts, NAME, rows, spec)) console.log(`wrote ${f}`);
