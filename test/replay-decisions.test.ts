// A replay reports every decision that read "maybe pinned" with its false positives: besides
// fork's early COW, migration and the end-state reclaim scan, THP collapse (MADV_COLLAPSE and
// khugepaged) and MADV_PAGEOUT. Each figure is the one the same calls make live under that
// scheme, and every false positive is counted in the total.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, SCHEMES, formatReplayTable, runReplay, validateReplayResults, type Scheme } from '../lib/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pinlab-replay-decisions-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh array of 8192 pages, unpopulated. */
function array(scheme: Scheme, debug: boolean): PageArray {
  return new PageArray({ pages: 1 << 13, populated: false, debug, scheme });
}

/** Records `run` on a fresh `bias` array into `name` (in the test's directory), with its result. */
function recorded<T>(name: string, debug: boolean, run: (mem: PageArray) => T): { file: string; result: T } {
  const file = join(dir, name);
  const mem = array('bias', debug);
  const rec = mem.record();
  const result = run(mem);
  rec.stop();
  rec.save(file);
  return { file, result };
}

/**
 * The decisions that read "maybe pinned", each meeting a real pin and a page with 1100 plain
 * references (a false positive wherever the scheme counts plain references as pins):
 * MADV_COLLAPSE and khugepaged over two PTE-mapped THPs and MADV_PAGEOUT over eight small pages,
 * after, with `forkAndMigrate`, a fork (early COW of the pinned pages, into a second address
 * space) and a migration. Everything is released at the end (balanced). Returns the address
 * spaces.
 */
function simulate(mem: PageArray, { forkAndMigrate = false } = {}): AddressSpace[] {
  const mm = new AddressSpace(mem, { pages: 2048, swapPages: 64 });
  mm.mmap({ start: 0, count: 1024, huge: true });
  mm.touch(0, 1024, { write: true });
  for (const at of [1, 513]) {
    mm.mprotect({ start: at, count: 1, write: false });
    mm.mprotect({ start: at, count: 1, write: true });
  }
  mm.mmap({ start: 1024, count: 8 });
  mm.touch(1024, 8, { write: true });
  const pins = [mm.pinUserPagesFast(0, 1, { write: true }), mm.pinUserPagesFast(1024, 1, { write: true })];
  const gots = [mm.translate(512)!.pfn, mm.translate(1025)!.pfn];
  for (const pfn of gots) mem.getPage(pfn, 1100);
  const spaces = [mm];
  if (forkAndMigrate) {
    spaces.push(mm.fork());
    mm.migrate({ start: 1024, count: 8 });
  }
  for (const start of [0, 512]) {
    try {
      mm.madvise({ start, count: 512 }, 'collapse');
    } catch {
      // EAGAIN: the references keep it from collapsing (counted either way)
    }
  }
  mm.khugepaged({ maxPtesNone: 511, maxPtesShared: 511 });
  mm.madvise({ start: 1024, count: 8 }, 'pageout');
  for (const p of pins) mm.unpinUserPages(p.pfns, { write: true });
  for (const pfn of gots) mem.putPage(pfn, 1100);
  return spaces;
}

/** The address spaces' statistics, summed. */
function summed(spaces: AddressSpace[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of spaces) for (const [k, v] of Object.entries(s.stats())) out[k] = (out[k] ?? 0) + (v as number);
  return out;
}

describe('replay: collapse and pageout decisions', () => {
  it('each scheme reports the live run\'s collapse and pageout figures, false positives included', async () => {
    const { file } = recorded('decisions.pkops', true, (mem) => simulate(mem));
    const doc = await runReplay({ file });
    expect(validateReplayResults(doc)).toEqual([]);
    let someFalsePositive = false;
    for (const s of doc.schemes) {
      const live = summed(simulate(array(s.scheme as Scheme, true)));
      expect(live['collapseMaybePinned'], s.scheme).toBeGreaterThan(0); // the real pin, at least
      expect(live['pageoutRefusals'], s.scheme).toBeGreaterThan(0);
      expect(s.decisions.collapse, s.scheme).toEqual({ decisions: live['collapseMaybePinned'], falsePositives: live['collapseFalsePositives'], unclassified: 0 });
      expect(s.decisions.pageout, s.scheme).toEqual({ decisions: live['pageoutRefusals'], falsePositives: live['pageoutFalsePositives'], unclassified: 0 });
      const d = s.decisions;
      expect(s.falsePositives, s.scheme).toBe(
        d.earlyCow.falsePositives + d.migration.falsePositives + d.reclaim.falsePositives + d.collapse.falsePositives + d.pageout.falsePositives,
      );
      someFalsePositive ||= d.collapse.falsePositives > 0 && d.pageout.falsePositives > 0;
      expect(s.balanced, s.scheme).toBe(true);
      if (s.scheme === 'bias') expect(s.diverged, 'the recording\'s own scheme').toBe(0);
    }
    expect(someFalsePositive, 'bias counts 1100 plain references as pins').toBe(true);
    expect(doc.schemes.map((s) => s.scheme)).toEqual([...SCHEMES]);
    const exact = doc.schemes.find((s) => s.scheme === 'separate')!;
    expect(exact.decisions.collapse.falsePositives + exact.decisions.pageout.falsePositives).toBe(0);
    const table = formatReplayTable(doc);
    expect(table).toMatch(/collapse skips \(fp\)/);
    expect(table).toMatch(/pageout kept \(fp\)/);
  });

  it('without debug accounting, pageout of small pinned pages is reported as not exactly known, under pageout alone', async () => {
    const { file, result: live } = recorded('nodebug.pkops', false, (mem) => {
      const mm = new AddressSpace(mem, { pages: 1024, swapPages: 64 });
      mm.mmap({ start: 0, count: 8 });
      mm.touch(0, 8, { write: true });
      const pin = mm.pinUserPagesFast(0, 2, { write: true });
      mm.madvise({ start: 0, count: 8 }, 'pageout');
      const stats = mm.stats();
      mm.unpinUserPages(pin.pfns, { write: true });
      return stats;
    });
    expect(live.pageoutRefusals).toBe(2);
    expect(live.unclassified).toBe(2);
    const doc = await runReplay({ file, schemes: ['bias'] });
    expect(doc.schemes[0]!.decisions.pageout).toEqual({ decisions: 2, falsePositives: 0, unclassified: 2 });
    expect(doc.schemes[0]!.decisions.earlyCow.unclassified).toBe(0);
  });
});

describe('replay: a stream of every decision', () => {
  it('each scheme reports the live run\'s figures for fork, migration, collapse, khugepaged and pageout together', async () => {
    const { file } = recorded('mixed.pkops', true, (mem) => simulate(mem, { forkAndMigrate: true }));
    const doc = await runReplay({ file });
    expect(validateReplayResults(doc)).toEqual([]);
    for (const s of doc.schemes) {
      const live = summed(simulate(array(s.scheme as Scheme, true), { forkAndMigrate: true }));
      const d = s.decisions;
      expect(live['earlyCowCopies'], s.scheme).toBeGreaterThan(0);
      expect(live['migrationRefusals'], s.scheme).toBeGreaterThan(0);
      expect(d.earlyCow, s.scheme).toEqual({ decisions: live['earlyCowCopies'], falsePositives: live['earlyCowFalsePositives'], unclassified: 0 });
      expect(d.migration, s.scheme).toEqual({ decisions: live['migrationRefusals'], falsePositives: live['migrationFalsePositives'], unclassified: 0 });
      expect(d.collapse, s.scheme).toEqual({ decisions: live['collapseMaybePinned'], falsePositives: live['collapseFalsePositives'], unclassified: 0 });
      expect(d.pageout, s.scheme).toEqual({ decisions: live['pageoutRefusals'], falsePositives: live['pageoutFalsePositives'], unclassified: 0 });
      expect(s.balanced, s.scheme).toBe(true);
    }
  });

  it('without debug accounting, each decision reports its own unclassified ones, never more than it took', async () => {
    const { file, result: live } = recorded('mixed-nodebug.pkops', false, (mem) => summed(simulate(mem, { forkAndMigrate: true })));
    const doc = await runReplay({ file, schemes: ['bias'] });
    expect(validateReplayResults(doc)).toEqual([]);
    const d = doc.schemes[0]!.decisions;
    const kinds = [d.earlyCow, d.migration, d.collapse, d.pageout];
    expect(kinds.filter((k) => k.decisions > 0).length, 'several kinds taken').toBeGreaterThan(1);
    for (const k of kinds) expect(k.unclassified).toBeLessThanOrEqual(k.decisions);
    expect(kinds.reduce((n, k) => n + k.unclassified, 0)).toBe(live['unclassified']);
    expect(d.earlyCow.unclassified).toBe(live['earlyCowUnclassified']);
    expect(d.migration.unclassified).toBe(live['migrationUnclassified']);
    expect(d.collapse.unclassified).toBe(live['collapseUnclassified']);
    expect(d.pageout.unclassified).toBe(live['pageoutUnclassified']);
    // bias without debug does not know a small folio's pins: the pinned small page's refusals.
    expect(d.migration.unclassified).toBeGreaterThan(0);
    expect(d.pageout.unclassified).toBeGreaterThan(0);
  });
});
