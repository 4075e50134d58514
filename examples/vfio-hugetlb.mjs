// A VM with hugetlb guest memory under VFIO-style long-term pins (device assignment): QEMU maps
// 1 GiB of guest RAM (4 KiB pages, 2 MiB hugetlb pages or one 1 GiB hugetlb page), VFIO pins all
// of it long-term for write in batches of 512 pages (vfio_pin_pages_remote's batch), the VMM
// forks a helper (the pins must stay reliable: the VM keeps writing the pinned pages, the child
// gets copies), and then: how many atomic operations did each scheme pay per GiB pinned, and how
// many full pins of the guest can coexist before a count overflows.
//
//   node examples/vfio-hugetlb.mjs [--seed N] [--out DIR] [--quick]
import { AddressSpace, PageArray, PinlabError, SCHEMES } from '../dist/index.js';
import { Rng, check, formatTable, groupedBarSpec, parseArgs, writeOutputs } from './lib/common.mjs';

const NAME = 'vfio-hugetlb';
const opts = await parseArgs(NAME);
const GUEST = 1 << 18; // 1 GiB of guest RAM, in 4 KiB pages
const BATCH = 512; // VFIO pins a page of struct page pointers at a time
const MAX_PINS = 9; // how far the overflow probe goes (bias overflows a 1 GiB page at 8)
const SAMPLES = opts.quick ? 64 : 1024; // guest pages checked after the fork

const BACKINGS = [
  { name: '4KiB', label: '4 KiB pages', order: 0 },
  { name: '2MiB-hugetlb', label: '2 MiB hugetlb', order: 9 },
  { name: '1GiB-hugetlb', label: '1 GiB hugetlb', order: 18 },
];

/** VFIO_IOMMU_MAP_DMA of the whole guest: long-term write pins, batch by batch; all or nothing. */
function vfioPinAll(mm, owner) {
  const batches = [];
  try {
    for (let v = 0; v < GUEST; v += BATCH) {
      const { pfns } = mm.pinUserPagesFast(v, BATCH, { write: true, longterm: true, owner });
      batches.push(pfns);
      if (pfns.length < BATCH) throw new PinlabError('EFAULT', `short pin at guest page ${v}`);
    }
  } catch (e) {
    for (const pfns of batches) mm.unpinUserPages(pfns, { write: true, owner });
    throw e;
  }
  return batches;
}

function vfioUnpinAll(mm, owner, batches) {
  for (const pfns of batches) mm.unpinUserPages(pfns, { write: true, dirty: true, owner });
}

function runOne(scheme, backing, rng) {
  const mem = new PageArray({ pages: 5 * GUEST, populated: false, scheme });
  if (backing.order > 0) mem.setHugetlbPages(backing.order, (2 * GUEST) >> backing.order); // the guest, and the helper's copies
  const mm = new AddressSpace(mem, { pages: GUEST });
  if (backing.order === 0) mm.mmap({ start: 0, count: GUEST, populate: true });
  else mm.mmap({ start: 0, count: GUEST, hugetlb: backing.order, populate: true });

  // VFIO: one owner for the container's DMA mappings.
  const vfio = mem.pinOwner('vfio', { kind: 'device' });
  const g0 = mem.stats().grabs;
  const t = performance.now();
  const pins = vfioPinAll(mm, vfio);
  const ms = performance.now() - t;
  const grabsPerGiB = mem.stats().grabs - g0; // the guest is 1 GiB
  // Each grab is one atomic on the head's refcount, and one more where the scheme keeps an
  // exact pincount for the folio (hybrid's large folios, separate, sharded's store).
  const atomicsPerGiB = grabsPerGiB * (mem.pincount(pins[0][0]) === null ? 1 : 2);
  // The same pin as one call over the whole guest (io_uring-style registration): per folio run.
  const g1 = mem.stats().grabs;
  const whole = mm.pinUserPagesFast(0, GUEST, { write: true, longterm: true });
  const oneCallGrabs = mem.stats().grabs - g1;
  mm.unpinUserPages(whole.pfns, { write: true });

  // Fork a helper: pinned pages of an mm that has pinned are copied into the child at once.
  const before = mm.stats().earlyCowCopies;
  const helper = mm.fork();
  const copied = mm.stats().earlyCowCopies - before;
  // The VM keeps running: it writes guest memory; every pinned page must still be the one it maps.
  let reliable = true;
  for (let i = 0; i < SAMPLES; i++) {
    const v = rng.int(0, GUEST - 1);
    mm.touch(v, 1, { write: true });
    if (mm.translate(v).pfn !== pins[Math.floor(v / BATCH)][v % BATCH]) reliable = false;
    if (helper.translate(v).pfn === mm.translate(v).pfn) reliable = false; // the helper has its own copy
  }
  helper.dispose(); // the helper exits

  // Overflow probe: more full pins of the whole guest on top of VFIO's, until a count would overflow.
  const extra = [];
  let fullPins = 1;
  while (fullPins < MAX_PINS) {
    // One call each (a partial result is a count that would overflow past its end).
    let pfns;
    try {
      ({ pfns } = mm.pinUserPagesFast(0, GUEST, { write: true, longterm: true, owner: vfio }));
    } catch (e) {
      if (e instanceof PinlabError && e.code === 'EOVERFLOW') break; // not even the first page fit
      throw e;
    }
    extra.push(pfns);
    if (pfns.length < GUEST) break;
    fullPins++;
  }
  for (const pfns of extra) mm.unpinUserPages(pfns, { write: true, owner: vfio });
  vfioUnpinAll(mm, vfio, pins);
  const leaks = vfio.drop({ pins: 'report' }).leaked.length;
  mm.dispose();
  const s = mem.stats();
  check(s.pinAcquired === s.pinReleased, `${scheme}/${backing.name}: pins balance`);
  if (backing.order > 0) {
    const pool = mem.hugetlbPool(backing.order);
    check(pool.used === 0 && pool.reserved === 0, `${scheme}/${backing.name}: every hugetlb page back in the pool`);
  }
  check(mem.freePages() === mem.pages - (mem.zeroPfn === null ? 0 : 1) - (backing.order > 0 ? 2 * GUEST : 0), `${scheme}/${backing.name}: every page back`);
  mem.dispose();
  return { scheme, backing: backing.name, grabsPerGiB, atomicsPerGiB, oneCallGrabs, copied, reliable: reliable ? 'yes' : 'NO', fullPins, leaks, ms };
}

const rows = [];
for (const scheme of SCHEMES) {
  for (const backing of BACKINGS) rows.push(runOne(scheme, backing, new Rng(opts.seed)));
}
for (const r of rows) {
  check(r.reliable === 'yes', `${r.scheme}/${r.backing}: long-term pins stay reliable across fork`);
  check(r.copied === GUEST, `${r.scheme}/${r.backing}: the helper got a copy of every pinned page`);
  check(r.leaks === 0, `${r.scheme}/${r.backing}: no leaks`);
}

console.log(`vfio-hugetlb: seed ${opts.seed}, 1 GiB guest, VFIO batches of ${BATCH} pages, overflow probe up to ${MAX_PINS} full pins\n`);
const columns = [
  ['scheme', 'scheme'],
  ['backing', 'backing'],
  ['grabsPerGiB', 'grabs/GiB (VFIO)'],
  ['atomicsPerGiB', 'atomics/GiB (VFIO)'],
  ['oneCallGrabs', 'grabs/GiB (1 call)'],
  ['copied', 'fork copies (pages)'],
  ['reliable', 'pins reliable'],
  ['fullPins', 'full pins fit'],
  ['ms', 'ms to pin'],
];
console.log(formatTable(columns, rows, 1));
console.log(`\ngrabs: pin operations on folio heads for one long-term pin of the whole guest (VFIO: batches of ${BATCH}; 1 call: the addon's 65536-page chunks);`);
console.log('atomics: grabs x (1 refcount + 1 exact pincount where the scheme keeps one); full pins fit: ' + `${MAX_PINS} means at least ${MAX_PINS}.`);

const spec = groupedBarSpec({
  title: `VFIO pin of a 1 GiB guest: atomic operations per GiB (seed ${opts.seed})`,
  xTitle: 'scheme',
  yTitle: 'atomic operations per GiB pinned',
  values: rows.map((r) => ({ x: r.scheme, series: r.backing, value: r.atomicsPerGiB })),
  xOrder: [...SCHEMES],
  seriesOrder: BACKINGS.map((b) => b.name),
});
for (const f of await writeOutputs(opts, NAME, rows, spec)) console.log(`wrote ${f}`);
