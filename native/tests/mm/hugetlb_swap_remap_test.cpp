// Issue 13, the features together: hugetlb mappings under MADV_PAGEOUT, MADV_COLLAPSE,
// khugepaged and mremap (refused with EINVAL, nothing changed, as documented in the README),
// and a fork that copies hugetlb leaves and swap entries together.
#include <memory>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

constexpr uint64_t k2M = 512;

// 2 MiB hugetlb memory at [0, 1024) (private, populated) and [1024, 1536) (shared), anonymous
// 4 KiB pages at [2048, 2064).
Mm make_mm(Scheme scheme) {
  Mm mm = make_test_mm(scheme);
  CHECK_OK(mm.mem->hugetlb_set_pages(9, 6));  // 3 mapped, 2 for the child's COW
  HugetlbMmapArgs a;
  a.start = 0;
  a.count = 2 * k2M;
  a.order = 9;
  a.populate = true;
  CHECK_OK(mm.as->mmap_hugetlb(a));
  a.start = 2 * k2M;
  a.count = k2M;
  a.shared = true;
  CHECK_OK(mm.as->mmap_hugetlb(a));
  CHECK_OK(mm.as->mmap(MmapArgs{2048, 16, true, true, false}));
  return mm;
}

void check_all_free(Mm& mm) {
  CHECK_OK(mm.as->munmap(0, int64_t(mm.as->pages())));
  CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
  CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
  mm.as.reset();
  HugetlbCounts c;
  CHECK_OK(mm.mem->hugetlb_counts(9, &c));
  CHECK_EQ(c.free, c.total);  // every hugetlb page back in the pool
  CHECK_EQ(c.reserved, uint64_t(0));
  CHECK_OK(mm.mem->hugetlb_set_pages(9, 0));
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - (mm.mem->zero_pfn() >= 0 ? 1u : 0u));
}

TEST(pageout_collapse_and_mremap_refuse_hugetlb_and_change_nothing) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    const uint64_t p0 = mm.as->translate(0).pfn, p1 = mm.as->translate(1024).pfn;
    CHECK_CODE(mm.as->madvise(0, 2 * k2M, Advice::kPageOut), Code::kEINVAL);
    CHECK_CODE(mm.as->madvise(1024, k2M, Advice::kPageOut), Code::kEINVAL);  // shared too
    CHECK_CODE(mm.as->madvise(1500, 600, Advice::kPageOut), Code::kEINVAL);  // anon beside it
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));  // not even the anonymous pages went
    uint64_t made = 0, scanned = 0;
    CHECK_CODE(mm.as->collapse(0, 2 * k2M, &made), Code::kEINVAL);
    CHECK_OK(mm.as->khugepaged(KhugepagedArgs{}, &made, &scanned));  // skips hugetlb
    CHECK_EQ(made, uint64_t(0));
    MremapArgs m;
    m.start = 0;
    m.count = m.new_count = int64_t(k2M);
    m.new_start = 3072;
    m.may_move = m.fixed = true;
    uint64_t at = 12345;
    CHECK_CODE(mm.as->mremap(m, &at), Code::kEINVAL);
    CHECK_EQ(at, uint64_t(12345));
    MremapArgs shrink;
    shrink.start = 0;
    shrink.count = int64_t(2 * k2M);
    shrink.new_count = int64_t(k2M);
    CHECK_CODE(mm.as->mremap(shrink, &at), Code::kEINVAL);
    CHECK_EQ(mm.as->translate(0).pfn, p0);
    CHECK_EQ(mm.as->translate(1024).pfn, p1);
    CHECK_EQ(mm.as->stat(MmStat::kRemaps), uint64_t(0));
    CHECK_EQ(mm.as->stat(MmStat::kCollapses), uint64_t(0));
    check_all_free(mm);
  }
}

TEST(mremap_fixed_over_hugetlb_takes_whole_pages_and_gives_their_reservations_back) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    CHECK_OK(mm.as->munmap(0, int64_t(2 * k2M)));
    HugetlbMmapArgs h;
    h.start = 0;
    h.count = int64_t(2 * k2M);
    h.order = 9;
    CHECK_OK(mm.as->mmap_hugetlb(h));  // private, not faulted in: two reservations
    HugetlbCounts c;
    CHECK_OK(mm.mem->hugetlb_counts(9, &c));
    CHECK_EQ(c.reserved, uint64_t(2));
    MremapArgs m;
    m.start = 2048;
    m.count = m.new_count = 16;
    m.new_start = 100;  // a cut through the first hugetlb page
    m.may_move = m.fixed = true;
    uint64_t at = 0;
    CHECK_CODE(mm.as->mremap(m, &at), Code::kEINVAL);
    m.new_count = int64_t(k2M);  // grows while it moves: exactly the first hugetlb page
    m.new_start = 0;
    CHECK_OK(mm.as->mremap(m, &at));
    CHECK_EQ(at, uint64_t(0));
    CHECK_OK(mm.mem->hugetlb_counts(9, &c));
    CHECK_EQ(c.reserved, uint64_t(1));  // page 0's reservation went with its mapping
    CHECK_OK(mm.as->touch(0, 16, true));  // anonymous 4 KiB pages now
    CHECK(!mm.as->translate(0).huge);
    check_all_free(mm);
  }
}

TEST(fork_copies_hugetlb_leaves_and_swap_entries_together) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    CHECK_OK(mm.as->touch(2048, 16, true));
    CHECK_OK(mm.as->madvise(2048, 16, Advice::kPageOut));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t(16));
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));
    CHECK_EQ(child->swapped_pages(), uint64_t(16));
    CHECK_EQ(child->translate(1024).pfn, mm.as->translate(1024).pfn);  // shared hugetlb
    CHECK_OK(child->touch(0, 2 * k2M, true));  // COW of the private hugetlb pages
    CHECK_OK(child->touch(2048, 16, false));   // swap-in through the swap cache
    child.reset();
    CHECK_OK(mm.as->touch(2048, 16, true));
    CHECK_EQ(mm.as->swap_usage().used, uint64_t(0));
    check_all_free(mm);
  }
}

// MADV_REMOVE's checks (the punch itself is the library's files'), and the region runs a fork's
// child records its file mappings by: read-only, nothing changed.
TEST(madv_remove_checks_regions_and_region_runs_join_them) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    std::vector<uint32_t> heads;
    CHECK_OK(mm.mem->hugetlb_alloc_pages(9, 1, &heads));
    CHECK_OK(mm.as->map_hugetlb_file(3072, heads.data(), 1, 9, true, false));  // private file
    const uint64_t free_before = mm.mem->free_pages();
    CHECK_CODE(mm.as->check_madv_remove(0, 2 * k2M), Code::kEINVAL);     // private anonymous hugetlb
    CHECK_OK(mm.as->check_madv_remove(1024, k2M));                      // shared
    CHECK_CODE(mm.as->check_madv_remove(2048, 16), Code::kEINVAL);      // anonymous
    CHECK_CODE(mm.as->check_madv_remove(3072, k2M), Code::kEACCES);     // private file
    CHECK_CODE(mm.as->check_madv_remove(1024, 600), Code::kENOMEM);     // runs past the shared one
    CHECK_CODE(mm.as->check_madv_remove(1024 + 256, 2000), Code::kENOMEM);
    CHECK_CODE(mm.as->check_madv_remove(-1, 2), Code::kEINVAL);
    CHECK_CODE(mm.as->check_madv_remove(0, 0), Code::kEINVAL);
    std::vector<uint64_t> runs{99};
    CHECK_OK(mm.as->region_runs(0, 4096, &runs));
    CHECK(runs == (std::vector<uint64_t>{0, 1536, 2048, 16, 3072, 512}));
    CHECK_OK(mm.as->region_runs(100, 2000, &runs));
    CHECK(runs == (std::vector<uint64_t>{100, 1436, 2048, 16}));
    CHECK_OK(mm.as->region_runs(1536, 512, &runs));
    CHECK(runs.empty());
    CHECK_CODE(mm.as->region_runs(4000, 200, &runs), Code::kEINVAL);
    CHECK(runs.empty());
    CHECK_EQ(mm.mem->free_pages(), free_before);
    CHECK_OK(mm.as->munmap(3072, int64_t(k2M)));
    bool freed = false;
    CHECK_OK(mm.mem->put_page(heads[0], 1, &freed));
    CHECK(freed);
    check_all_free(mm);
  }
}

}  // namespace
}  // namespace pinlab::test
