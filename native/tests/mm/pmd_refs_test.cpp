// A PMD leaf of an anonymous THP holds one reference and one mapped reference, as the kernel's
// PMD mapping does (do_huge_pmd_anonymous_page maps the fresh folio with refcount 1,
// copy_huge_pmd takes one more at fork, only __split_huge_pmd_locked makes it one per PTE).
// Every path that installs, copies, moves, splits or drops a leaf keeps to that, in every
// scheme; a split that would push the refcount past INT32_MAX is refused with nothing changed.
#include <climits>
#include <memory>
#include <vector>

#include "mm/mm_fixtures.h"

namespace pinlab::test {
namespace {

constexpr uint64_t kPmd = kPtesPerTable;

GupFlags get_flags() { return GupFlags{false, false, false, false}; }
GupFlags pin_write() { return GupFlags{true, true, false, false}; }

// A populated, writable THP region of `count` pages at `start` (one leaf per 2 MiB).
Mm thp_mm(Scheme s, uint64_t count = kPmd, const MmShape& shape = {}) {
  Mm mm = make_test_mm(s, shape);
  CHECK_OK(mm.as->mmap(MmapArgs{0, int64_t(count), true, true, true}));
  CHECK(mm.as->translate(0).huge);
  return mm;
}

}  // namespace

TEST(pmd_leaf_holds_one_reference_after_fault_populate_and_fork) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_test_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{0, int64_t(kPmd), true, true, true}));  // MAP_POPULATE
    CHECK_OK(mm.as->mmap(MmapArgs{kPmd, int64_t(kPmd), true, false, true}));
    CHECK_OK(mm.as->touch(int64_t(kPmd) + 7, 1, true));  // a write fault maps a fresh THP
    for (const uint64_t v : {uint64_t{0}, kPmd}) {
      const Translation t = mm.as->translate(v);
      CHECK(t.huge);
      CHECK_EQ(mm.mem->refcount(t.pfn), 1);
      CHECK_EQ(mm.mem->mapped_refs(t.pfn), int64_t(1));
      CHECK(!mm.mem->maybe_dma_pinned(t.pfn));
    }
    const uint64_t h = mm.as->translate(0).pfn;
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));  // no pin anywhere: shared, one more reference
    CHECK_EQ(mm.mem->refcount(h), 2);
    CHECK_EQ(mm.mem->mapped_refs(h), int64_t(2));
    CHECK(!mm.mem->maybe_dma_pinned(h));  // bias: 2 < 1024, no false positive
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t{0});
    child.reset();
    CHECK_EQ(mm.mem->refcount(h), 1);
    CHECK_EQ(mm.mem->mapped_refs(h), int64_t(1));
  }
}

TEST(pmd_leaf_with_512_gets_is_513_and_fork_copies_only_the_pinned_page) {
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{1024, 1, true, true, false}));
    const uint64_t h = mm.as->translate(0).pfn;
    std::vector<uint32_t> out(kPmd);
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(0, int64_t(kPmd), get_flags(), out.data(), &done));
    CHECK_EQ(done, kPmd);
    CHECK_EQ(mm.mem->refcount(h), 513);
    CHECK(!mm.mem->maybe_dma_pinned(h));  // bias too: 513 < 1024
    uint32_t pinned = 0;
    CHECK_OK(mm.as->gup_fast(1024, 1, pin_write(), &pinned, &done));
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));  // MMF_HAS_PINNED: only the pinned 4 KiB page is copied
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t{1});
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowFalsePositives), uint64_t{0});
    CHECK(child->translate(0).huge && child->translate(0).pfn == h);
    CHECK_EQ(mm.mem->refcount(h), 514);
    CHECK_OK(mm.as->unpin_user_pages(&pinned, 1, true, false));
    CHECK_OK(mm.mem->put_pages(out.data(), kPmd, -1));
    CHECK_EQ(mm.mem->refcount(h), 2);
  }
}

TEST(pmd_split_by_munmap_mprotect_and_madvise_makes_one_reference_per_pte) {
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s, 3 * kPmd);
    const uint64_t h0 = mm.as->translate(0).pfn, h1 = mm.as->translate(kPmd).pfn;
    const uint64_t h2 = mm.as->translate(2 * kPmd).pfn;
    CHECK_OK(mm.as->mprotect(256, 8, false));  // splits the first leaf: 512 PTEs
    CHECK(!mm.as->translate(0).huge);
    CHECK_EQ(mm.mem->refcount(h0), int32_t(kPmd));
    CHECK_EQ(mm.mem->mapped_refs(h0), int64_t(kPmd));
    CHECK_OK(mm.as->munmap(int64_t(kPmd), 1));  // splits the second, unmaps one PTE
    CHECK_EQ(mm.mem->refcount(h1), int32_t(kPmd) - 1);
    CHECK_EQ(mm.mem->mapped_refs(h1), int64_t(kPmd) - 1);
    CHECK_OK(mm.as->madvise(int64_t(2 * kPmd) + 500, 12, Advice::kDontNeed));  // the third
    CHECK_EQ(mm.mem->refcount(h2), int32_t(kPmd) - 12);
    CHECK_EQ(mm.mem->mapped_refs(h2), int64_t(kPmd) - 12);
    CHECK_OK(mm.as->munmap(0, int64_t(3 * kPmd)));
    CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
  }
}

TEST(pmd_cow_after_fork_splits_and_reuse_after_the_child_exits) {
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s, 2 * kPmd);
    const uint64_t h0 = mm.as->translate(0).pfn, h1 = mm.as->translate(kPmd).pfn;
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));
    CHECK_EQ(mm.mem->refcount(h0), 2);
    // Shared: the write splits the parent's leaf (511 more references) and copies 4 KiB.
    CHECK_OK(mm.as->touch(3, 1, true));
    CHECK(!mm.as->translate(0).huge && mm.as->translate(3).pfn != h0 + 3);
    CHECK_EQ(mm.mem->refcount(h0), 1 + int32_t(kPmd) - 1);  // the child's leaf, our 511 PTEs
    CHECK_EQ(mm.mem->mapped_refs(h0), int64_t(kPmd));
    child.reset();
    CHECK_EQ(mm.mem->refcount(h1), 1);
    // Ours alone again (refcount 1, do_huge_pmd_wp_page's test): reused in place, whole.
    const uint64_t reuses = mm.as->stat(MmStat::kCowReuses), copies = mm.as->stat(MmStat::kCowCopies);
    CHECK_OK(mm.as->touch(int64_t(kPmd) + 9, 1, true));
    const Translation t = mm.as->translate(kPmd + 9);
    CHECK(t.huge && t.writable && t.pfn == h1 + 9);
    CHECK_EQ(mm.as->stat(MmStat::kCowReuses) - reuses, kPmd);
    CHECK_EQ(mm.as->stat(MmStat::kCowCopies), copies);
    CHECK_EQ(mm.mem->refcount(h1), 1);
  }
}

TEST(pmd_migration_expects_one_reference_per_leaf) {
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s);
    const uint64_t h = mm.as->translate(0).pfn;
    // A FOLL_GET reference beyond the leaf's: the freeze from 1 fails, nothing moves.
    uint32_t got = 0;
    uint64_t done = 0, moved = 0;
    CHECK_OK(mm.as->gup_fast(5, 1, get_flags(), &got, &done));
    CHECK_OK(mm.as->migrate(0, int64_t(kPmd), &moved));
    CHECK_EQ(moved, uint64_t{0});
    CHECK_EQ(mm.as->translate(0).pfn, h);
    CHECK_OK(mm.mem->put_pages(&got, 1, -1));
    CHECK_OK(mm.as->migrate(0, int64_t(kPmd), &moved));
    CHECK_EQ(moved, kPmd);
    const Translation t = mm.as->translate(0);
    CHECK(t.huge && t.pfn != h);
    CHECK_EQ(mm.mem->refcount(t.pfn), 1);
    CHECK_EQ(mm.mem->mapped_refs(t.pfn), int64_t(1));
    CHECK_EQ(mm.mem->refcount(h), 0);  // the old folio is free
  }
}

TEST(pmd_collapse_installs_a_leaf_with_one_reference) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_test_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{0, int64_t(kPmd), true, true, false}));  // 4 KiB pages
    CHECK(!mm.as->translate(0).huge);
    uint64_t made = 0;
    CHECK_OK(mm.as->collapse(0, int64_t(kPmd), &made));
    CHECK_EQ(made, uint64_t{1});
    const Translation t = mm.as->translate(0);
    CHECK(t.huge);
    CHECK_EQ(mm.mem->refcount(t.pfn), 1);
    CHECK_EQ(mm.mem->mapped_refs(t.pfn), int64_t(1));
    // Its own check: the leaf's one reference is all there is, so a PTE-mapped stretch of the
    // same folio after a split collapses again (512 references, 512 mapped).
    CHECK_OK(mm.as->mprotect(0, 4, true));  // same protection: a region boundary splits it
    CHECK(!mm.as->translate(0).huge);
    CHECK_EQ(mm.mem->refcount(t.pfn), int32_t(kPmd));
    CHECK_OK(mm.as->collapse(0, int64_t(kPmd), &made));
    CHECK(mm.as->translate(0).huge);
    CHECK_EQ(mm.mem->refcount(mm.as->translate(0).pfn), 1);
  }
}

TEST(pmd_pageout_splits_to_swap_entries_and_frees_the_folio) {
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s);
    const uint64_t h = mm.as->translate(0).pfn;
    CHECK_OK(mm.as->madvise(0, int64_t(kPmd), Advice::kPageOut));
    CHECK_EQ(mm.as->stat(MmStat::kPagedOut), kPmd);
    CHECK_EQ(mm.as->swapped_pages(), kPmd);
    CHECK_EQ(mm.mem->refcount(h), 0);
    CHECK_EQ(mm.mem->mapped_refs(h), int64_t(0));
    // Shared with a child: mapped twice, not ours to reclaim alone.
    Mm mm2 = thp_mm(s);
    const uint64_t h2 = mm2.as->translate(0).pfn;
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm2.as->fork(&child));
    CHECK_OK(mm2.as->madvise(0, int64_t(kPmd), Advice::kPageOut));
    CHECK_EQ(mm2.as->stat(MmStat::kPageoutBusy), kPmd);
    CHECK(mm2.as->translate(0).huge);
    CHECK_EQ(mm2.mem->refcount(h2), 2);
    // A FOLL_GET reference keeps the folio in the swap cache after the split.
    child.reset();
    uint32_t got = 0;
    uint64_t done = 0;
    CHECK_OK(mm2.as->gup_fast(0, 1, get_flags(), &got, &done));
    CHECK_OK(mm2.as->madvise(0, int64_t(kPmd), Advice::kPageOut));
    CHECK_EQ(mm2.as->swapped_pages(), kPmd);
    CHECK_EQ(mm2.mem->refcount(h2), int32_t(kPmd) + 1);  // one per swap-cache slot, and ours
    CHECK_OK(mm2.as->touch(0, int64_t(kPmd), false));      // swapped in from the swap cache
    CHECK_OK(mm2.mem->put_pages(&got, 1, -1));
    CHECK_EQ(mm2.mem->refcount(h2), int32_t(kPmd));
  }
}

TEST(pmd_split_past_int32_max_is_refused_with_nothing_changed) {
  // The split's 511 references are taken before the call changes anything (get_page's
  // overflow refusal, EOVERFLOW, as every reference the model takes); a refused call gives
  // back what it took for other leaves and leaves the entries, counts and regions as they were.
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s, 2 * kPmd);
    const int64_t b = int64_t(kPmd);  // the second leaf's: the one near INT32_MAX
    const uint64_t h0 = mm.as->translate(0).pfn, h = mm.as->translate(kPmd).pfn;
    // Plain references up to 100 below INT32_MAX: a split's 511 more would pass it.
    const int64_t extra = int64_t(INT32_MAX) - 100 - 1;
    CHECK_OK(mm.mem->get_page(h, extra));
    const int32_t before = mm.mem->refcount(h);
    const uint64_t regions = mm.as->regions();
    auto unchanged = [&] {
      const Translation t = mm.as->translate(kPmd);
      CHECK(t.huge && t.writable && t.pfn == h);
      CHECK_EQ(mm.mem->refcount(h), before);
      CHECK_EQ(mm.mem->mapped_refs(h), int64_t(1));
      CHECK(mm.as->translate(0).huge);  // the other leaf: its split's references given back
      CHECK_EQ(mm.mem->refcount(h0), 1);
      CHECK_EQ(mm.as->regions(), regions);
      CHECK_EQ(mm.as->swapped_pages(), uint64_t{0});
      CHECK_EQ(mm.as->stat(MmStat::kPagedOut), uint64_t{0});
    };
    CHECK_CODE(mm.as->munmap(b, 1), Code::kEOVERFLOW);
    unchanged();
    CHECK_CODE(mm.as->munmap(4, b), Code::kEOVERFLOW);  // two cuts: the first's refs go back
    unchanged();
    CHECK_CODE(mm.as->mprotect(4, b, false), Code::kEOVERFLOW);
    unchanged();
    CHECK_CODE(mm.as->madvise(b - 8, 16, Advice::kDontNeed), Code::kEOVERFLOW);
    unchanged();
    CHECK_CODE(mm.as->madvise(b - 8, 16, Advice::kDontFork), Code::kEOVERFLOW);
    unchanged();
    CHECK_CODE(mm.as->zap(b - 8, 16), Code::kEOVERFLOW);
    unchanged();
    uint64_t at = 0;
    CHECK_CODE(mm.as->mremap(MremapArgs{b, b, 100}, &at), Code::kEOVERFLOW);  // shrink in place
    unchanged();
    CHECK_CODE(mm.as->mremap(MremapArgs{4, 2 * b - 4, 2 * b - 4, 3004, true, true}, &at),
               Code::kEOVERFLOW);  // a misaligned move splits both leaves
    unchanged();
    // MADV_PAGEOUT cannot fail: the folio is kept (busy, or refused as maybe pinned).
    CHECK_OK(mm.as->madvise(0, 2 * b, Advice::kPageOut));
    CHECK(mm.as->swapped_pages() == kPmd && !mm.as->translate(0).present);  // the first went
    CHECK(mm.as->translate(kPmd).huge && mm.mem->refcount(h) == before);
    // A write fault of a COW-shared leaf splits it: refused too, the leaf as it was.
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));  // one more reference: still 99 below INT32_MAX
    CHECK_CODE(mm.as->touch(b + 3, 1, true), Code::kEOVERFLOW);
    CHECK(mm.as->translate(kPmd).huge && !mm.as->translate(kPmd).writable);
    CHECK_EQ(mm.mem->refcount(h), before + 1);
    CHECK_EQ(mm.mem->mapped_refs(h), int64_t(2));
    child.reset();
    // With the references gone, the same calls split it.
    bool freed = false;
    CHECK_OK(mm.mem->put_page(h, extra, &freed));
    CHECK_EQ(mm.mem->refcount(h), 1);
    CHECK_OK(mm.as->munmap(b, 1));
    CHECK_EQ(mm.mem->refcount(h), int32_t(kPmd) - 1);
    CHECK_EQ(mm.mem->mapped_refs(h), int64_t(kPmd) - 1);
    CHECK_OK(mm.as->munmap(0, 2 * b));
    CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - (mm.mem->zero_pfn() >= 0 ? 1 : 0));
  }
}

TEST(pmd_fork_of_a_pinned_thp_near_int32_max_is_refused_with_nothing_changed) {
  // A maybe-pinned THP's early COW splits the parent's leaf: its references are taken in
  // fork's prepare pass, so an overflow fails fork before the parent changes.
  for (Scheme s : kAllSchemes) {
    Mm mm = thp_mm(s);
    const uint64_t h = mm.as->translate(0).pfn;
    uint32_t pinned = 0;
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(0, 1, pin_write(), &pinned, &done));
    const int32_t now = mm.mem->refcount(h);
    const int64_t extra = int64_t(INT32_MAX) - 100 - now;
    CHECK_OK(mm.mem->get_page(h, extra));
    const int32_t before = mm.mem->refcount(h);
    const uint64_t free_before = mm.mem->free_pages();
    std::unique_ptr<AddressSpace> child;
    CHECK_CODE(mm.as->fork(&child), Code::kEOVERFLOW);
    CHECK(child == nullptr);
    CHECK(mm.as->translate(0).huge && mm.as->translate(0).writable);
    CHECK_EQ(mm.mem->refcount(h), before);
    CHECK_EQ(mm.mem->free_pages(), free_before);
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t{0});
    bool freed = false;
    CHECK_OK(mm.mem->put_page(h, extra, &freed));
    CHECK_OK(mm.as->fork(&child));  // now it fits: 512 copies, the parent's leaf split
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), kPmd);
    CHECK(!mm.as->translate(0).huge);
    CHECK_EQ(mm.mem->mapped_refs(h), int64_t(kPmd));
    CHECK_OK(mm.as->unpin_user_pages(&pinned, 1, true, false));
    CHECK_EQ(mm.mem->refcount(h), int32_t(kPmd));
  }
}

}  // namespace pinlab::test
