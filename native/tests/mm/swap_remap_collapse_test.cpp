// Issue 13, the features together: swap entries (MADV_PAGEOUT) under mremap and collapse
// (MADV_COLLAPSE, khugepaged), and MADV_PAGEOUT of a folio a partial mremap left at two places.
// Every test ends with every page and every swap slot free again.
#include <memory>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

Mm make_mm(Scheme scheme) {
  Mm mm = make_test_mm(scheme, MmShape{8192, 4096, true, MmRules::mainline(), kAllThpOrders});
  return mm;
}

// Everything unmapped: every slot and every page free again.
void check_all_free(Mm& mm, std::unique_ptr<AddressSpace>* child = nullptr) {
  if (child != nullptr) child->reset();
  CHECK_OK(mm.as->munmap(0, int64_t(mm.as->pages())));
  const SwapUsage u = mm.as->swap_usage();
  CHECK_EQ(u.used, uint64_t(0));
  CHECK_EQ(u.cached, uint64_t(0));
  CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
  mm.as.reset();
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - (mm.mem->zero_pfn() >= 0 ? 1u : 0u));
}

// A huge region [512, 1024) mapped by the PTEs of one PMD THP (a PMD leaf, then mprotect).
void ptes_in_huge_region(Mm& mm) {
  CHECK_OK(mm.as->mmap(MmapArgs{512, 512, true, true, true}));
  CHECK_OK(mm.as->mprotect(513, 1, false));
  CHECK_OK(mm.as->mprotect(513, 1, true));
  CHECK(!mm.as->translate(512).huge);
}

TEST(madvise_collapse_swaps_in_the_swap_entries_of_a_stretch) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    ptes_in_huge_region(mm);
    CHECK_OK(mm.as->madvise(512, 512, Advice::kPageOut));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(512));
    uint64_t made = 0;
    // Swap entries alone: not "nothing mapped", but no writable entry either (the kernel's
    // SCAN_PAGE_RO, EINVAL): nothing changes. One page swapped in for a write makes it collapsible.
    CHECK_CODE(mm.as->collapse(512, 512, &made), Code::kEINVAL);
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(512));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(512));
    CHECK_OK(mm.as->touch(512, 1, true));
    CHECK_OK(mm.as->collapse(512, 512, &made));
    CHECK_EQ(made, uint64_t(1));
    CHECK(mm.as->translate(512).huge);
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(0));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));  // every slot let go
    // Half swapped in by faults, half still swap entries.
    CHECK_OK(mm.as->mprotect(513, 1, false));
    CHECK_OK(mm.as->mprotect(513, 1, true));
    CHECK_OK(mm.as->madvise(512, 512, Advice::kPageOut));
    CHECK_OK(mm.as->touch(512, 256, true));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(256));
    CHECK_OK(mm.as->collapse(512, 512, &made));
    CHECK_EQ(made, uint64_t(1));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
    check_all_free(mm);
  }
}

TEST(collapse_leaves_a_child_its_shared_swap_entries) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    ptes_in_huge_region(mm);
    CHECK_OK(mm.as->madvise(512, 512, Advice::kPageOut));
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(512));  // one slot, two entries each
    uint64_t made = 0;
    CHECK_OK(mm.as->touch(512, 1, true));  // a writable entry (a COW copy of the swapped-in page)
    CHECK_OK(mm.as->collapse(512, 512, &made));
    CHECK_EQ(made, uint64_t(1));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(0));
    CHECK_EQ(child->swapped_pages(), uint64_t(512));  // the child's entries stay ...
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(512));  // ... and keep their slots
    CHECK_OK(child->touch(512, 512, false));  // and swap in (no swap cache: the last entries)
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
    CHECK(child->translate(512).pfn != mm.as->translate(512).pfn);
    check_all_free(mm, &child);
  }
}

TEST(collapse_refuses_a_swap_cache_page_held_by_a_get_reference) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    ptes_in_huge_region(mm);
    const uint64_t pfn = mm.as->translate(600).pfn;
    CHECK_OK(mm.mem->get_page(pfn, 1));  // FOLL_GET: pageout leaves the folio in the swap cache
    CHECK_OK(mm.as->madvise(512, 512, Advice::kPageOut));
    CHECK_EQ(mm.as->swap_usage().cached, uint64_t(512));
    const uint64_t busy = mm.as->stat(MmStat::kCollapseBusy);
    uint64_t made = 0;
    CHECK_CODE(mm.as->collapse(512, 512, &made), Code::kEAGAIN);
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(512));  // nothing changed
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(512));
    CHECK_EQ(mm.as->stat(MmStat::kCollapseBusy), busy + 512);
    bool freed = false;
    CHECK_OK(mm.mem->put_page(pfn, 1, &freed));
    CHECK(!freed);  // the swap cache still holds it
    CHECK_OK(mm.as->touch(513, 1, true));  // a writable entry (swap entries alone: SCAN_PAGE_RO)
    CHECK_OK(mm.as->collapse(512, 512, &made));
    CHECK_EQ(made, uint64_t(1));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
    CHECK_EQ(mm.as->swap_usage().cached, uint64_t(0));
    check_all_free(mm);
  }
}

TEST(khugepaged_takes_at_most_64_swap_entries_a_stretch) {
  Mm mm = make_mm(Scheme::kHybrid);
  ptes_in_huge_region(mm);
  CHECK_OK(mm.as->madvise(512, 512, Advice::kPageOut));
  CHECK_OK(mm.as->touch(512, 512 - 65, true));  // 65 swap entries left
  KhugepagedArgs k;
  uint64_t made = 0, scanned = 0;
  CHECK_OK(mm.as->khugepaged(k, &made, &scanned));
  CHECK_EQ(made, uint64_t(0));
  CHECK_EQ(scanned, uint64_t(1));
  CHECK_OK(mm.as->touch(512 + 512 - 65, 1, true));  // 64 now
  CHECK_OK(mm.as->khugepaged(k, &made, &scanned));
  CHECK_EQ(made, uint64_t(1));
  CHECK(mm.as->translate(512).huge);
  CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
  check_all_free(mm);
}

TEST(mremap_moves_swap_entries_and_frees_what_it_unmaps) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 16, true, true, false}));
    CHECK_OK(mm.as->madvise(0, 16, Advice::kPageOut));
    std::vector<uint32_t> slots;
    for (uint64_t v = 0; v < 16; ++v) slots.push_back(mm.as->swap_entry(v)->slot);
    MremapArgs a;
    a.start = 0;
    a.count = a.new_count = 16;
    a.new_start = 2000;
    a.may_move = a.fixed = true;
    uint64_t at = 0;
    CHECK_OK(mm.as->mremap(a, &at));
    CHECK_EQ(at, uint64_t(2000));
    for (uint64_t v = 0; v < 16; ++v) {
      CHECK(!mm.as->swap_entry(v).has_value());
      const auto se = mm.as->swap_entry(2000 + v);
      CHECK(se.has_value());
      CHECK_EQ(se->slot, slots[v]);  // the same slot, the marker kept
      CHECK(se->exclusive);
    }
    CHECK_EQ(mm.as->stat(MmStat::kRemapMovedPages), uint64_t(0));  // present entries only
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(16));
    // Shrink in place: the slots of the cut entries are freed.
    MremapArgs shrink;
    shrink.start = 2000;
    shrink.count = 16;
    shrink.new_count = 8;
    CHECK_OK(mm.as->mremap(shrink, &at));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(8));
    // DONTUNMAP: the entries move, the old range stays mapped, empty.
    MremapArgs keep;
    keep.start = 2000;
    keep.count = keep.new_count = 8;
    keep.may_move = keep.dont_unmap = true;
    CHECK_OK(mm.as->mremap(keep, &at));
    CHECK(at != uint64_t(2000));
    CHECK(!mm.as->swap_entry(2000).has_value());
    CHECK(mm.as->swap_entry(at).has_value());
    CHECK_OK(mm.as->touch(at, 8, true));  // swap-in at the new place
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
    CHECK_OK(mm.as->touch(2000, 8, false));  // the old range faults fresh pages
    check_all_free(mm);
  }
}

TEST(pageout_keeps_a_folio_that_a_partial_mremap_left_at_two_places) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{512, 512, true, true, true}));  // a PMD THP
    MremapArgs a;
    a.start = 768;
    a.count = a.new_count = 256;
    a.new_start = 3000;
    a.may_move = a.fixed = true;
    uint64_t at = 0;
    CHECK_OK(mm.as->mremap(a, &at));
    const uint64_t busy = mm.as->stat(MmStat::kPageoutBusy);
    CHECK_OK(mm.as->madvise(512, 256, Advice::kPageOut));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(0));  // kept whole
    CHECK_EQ(mm.as->stat(MmStat::kPageoutBusy), busy + 256);
    CHECK_OK(mm.as->madvise(3000, 256, Advice::kPageOut));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(0));
    check_all_free(mm);
  }
}

}  // namespace
}  // namespace pinlab::test
