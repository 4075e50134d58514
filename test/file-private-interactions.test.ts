// Issue 13, the features together: private file mappings (file13) under MADV_PAGEOUT (swap13),
// mremap and MADV_COLLAPSE/khugepaged (remap13) and hugetlb mmap options (hugetlb13), under every
// scheme and both rule sets. Each refusal is EINVAL with nothing changed.
import { describe, expect, it } from 'vitest';

import { AddressSpace, PageArray, PageCacheFile, SCHEMES, type KernelRuleSet, type Scheme } from '../lib/index.js';
import { expectCodeNoChange } from './mm-helpers.js';

const RULE_SETS: readonly KernelRuleSet[] = ['mainline', '2019'];

function world(scheme: Scheme, rules: KernelRuleSet) {
  const mem = new PageArray({ pages: 4096, populated: false, scheme, debug: true, pincountMinOrder: rules === '2019' ? 31 : 1 });
  const mm = new AddressSpace(mem, { pages: 2048, rules, swapPages: 256 });
  const file = new PageCacheFile(mem, { name: 'f', pages: 4, shmem: false });
  mm.mmap({ start: 0, count: 16, populate: true }); // anonymous, right below the file mapping
  mm.mmap({ start: 16, count: 4, file, shared: false });
  mm.touch(0, 20); // the file's pages mapped (read faults)
  return { mem, mm, file };
}

function balanced(mem: PageArray, mm: AddressSpace, file: PageCacheFile): void {
  mm.dispose();
  file.truncate(0);
  const s = mem.stats();
  expect(s.pinAcquired).toBe(s.pinReleased);
  expect(mem.freePages()).toBe(mem.pages - (mem.zeroPfn === null ? 0 : 1));
}

for (const scheme of SCHEMES) {
  for (const rules of RULE_SETS) {
    describe(`scheme ${scheme}, rules ${rules}: private file mappings with swap, mremap, collapse, hugetlb`, () => {
      it('MADV_PAGEOUT of a private file mapping, or of a range reaching into one, is EINVAL and pages nothing out', () => {
        const { mem, mm, file } = world(scheme, rules);
        expect(mm.translate(16)!.pfn).toBe(file.pfnAt(0)); // the page cache's page
        expectCodeNoChange(mm, () => mm.madvise({ start: 16, count: 4 }, 'pageout'), 'EINVAL', { vpages: 32, mmStats: 'unchanged' });
        expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 20 }, 'pageout'), 'EINVAL', { vpages: 32, mmStats: 'unchanged' });
        expect(mm.swapUsage().used).toBe(0);
        mm.madvise({ start: 0, count: 16 }, 'pageout'); // the anonymous part alone is paged out
        expect(mm.swapEntry(0)).not.toBeNull();
        expect(mm.translate(16)!.pfn).toBe(file.pfnAt(0));
        balanced(mem, mm, file);
      });

      it('MADV_COLLAPSE of a range holding a private file mapping is EINVAL; khugepaged leaves it alone', () => {
        const { mem, mm, file } = world(scheme, rules);
        expectCodeNoChange(mm, () => mm.madvise({ start: 0, count: 512 }, 'collapse'), 'EINVAL', { vpages: 32, mmStats: 'unchanged' });
        mm.khugepaged();
        expect(mm.translate(16)!.pfn).toBe(file.pfnAt(0));
        balanced(mem, mm, file);
      });

      it('mremap: dontUnmap of a private file mapping is EINVAL; anonymous and private file memory are not one kind (EFAULT); a move keeps the page cache mapped and truncate finds it there', () => {
        const { mem, mm, file } = world(scheme, rules);
        expectCodeNoChange(mm, () => mm.mremap({ start: 16, count: 4, newCount: 4, mayMove: true, dontUnmap: true }), 'EINVAL', { vpages: 2048, mmStats: 'unchanged' });
        expectCodeNoChange(mm, () => mm.mremap({ start: 12, count: 8, newCount: 8, mayMove: true, fixed: true, newStart: 1024 }), 'EFAULT', { vpages: 2048, mmStats: 'unchanged' });
        mm.touch(17, 1, { write: true }); // a COW copy at file page 1
        const copy = mm.translate(17)!.pfn;
        expect(copy).not.toBe(file.pfnAt(1));
        expect(mm.mremap({ start: 16, count: 4, newCount: 4, mayMove: true, fixed: true, newStart: 1024 })).toBe(1024);
        expect(mm.translate(16)).toBeNull();
        expect(mm.translate(1024)!.pfn).toBe(file.pfnAt(0)); // still the page cache's, read-only
        expect(mm.translate(1024)!.writable).toBe(false);
        expect(mm.translate(1025)!.pfn).toBe(copy);
        mm.touch(1024, 1, { write: true }); // COW from the page cache at the new place
        expect(mm.translate(1024)!.pfn).not.toBe(file.pfnAt(0));
        file.truncate(0); // zaps the moved mapping's entries, copies included
        expect(mm.translate(1024)).toBeNull();
        expect(mm.translate(1025)).toBeNull();
        balanced(mem, mm, file);
      });

      it('mmap: private (a PageCacheFile option) with hugetlb is EINVAL', () => {
        const { mem, mm, file } = world(scheme, rules);
        expectCodeNoChange(mm, () => mm.mmap({ start: 512, count: 512, hugetlb: 9, private: true } as never), 'EINVAL', { vpages: 1024 });
        balanced(mem, mm, file);
      });
    });
  }
}
