// Findings of a kernel review and a hostile-user pass over issue 13's madvise, swap, mremap,
// collapse and hugetlb calls and issue 15's sharded scheme: each case states the kernel's (or
// the contract's) answer that the model gave wrongly before its fix.
import { describe, expect, it } from 'vitest';

import { expectCodeNoChange, makeMm } from './mm-helpers.js';

describe('MADV_COLLAPSE needs a writable entry (khugepaged.c: SCAN_PAGE_RO, EINVAL)', () => {
  it('refuses a stretch of a read-only region, nothing changed', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 512, populate: true });
    mm.mprotect({ start: 0, count: 512, write: false });
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
  });

  it('refuses a stretch whose entries fork write-protected (cow.c: "fully shared" is SKIP there)', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 512, populate: true });
    const child = mm.fork();
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
    // One writable entry is enough (the kernel's "lower/upper shared" cases collapse).
    mm.touch(3, 1, { write: true });
    mm.madvise({ start: 0, count: 512 }, 'collapse');
    expect(mm.translate(0)?.huge).toBe(true);
    child.dispose();
  });

  it('refuses a stretch of zero-page entries only, and one wholly swapped out', () => {
    const { mm } = makeMm();
    mm.mmap({ start: 0, count: 1024 });
    mm.touch(0, 512); // read faults: the zero page
    expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
    mm.touch(512, 512, { write: true });
    mm.madvise({ start: 512, count: 512 }, 'pageout');
    expect(mm.swappedPages).toBe(512);
    const used = mm.swapUsage().used;
    expectCodeNoChange(mm, () => mm.madvise({ start: 512, count: 512 }, 'collapse'), 'EINVAL', { vpages: 1024 });
    expect(mm.swappedPages).toBe(512);
    expect(mm.swapUsage().used).toBe(used);
  });
});
