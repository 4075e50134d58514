// hugetlb (pages/hugetlb_pool.h, mm/hugetlb.cpp): the pool's accounting and refusals, whole-page
// faults, COW, fork and migration, one grab per page on the lockless walk, and the races of a
// 1 GiB page's 512 leaves against gup_fast (tagged for the ThreadSanitizer build).
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

constexpr uint64_t k2M = uint64_t{1} << 9;
constexpr uint64_t k1G = uint64_t{1} << 18;

Mm make_mm(Scheme scheme, uint64_t pages, uint64_t vpages, bool debug = true) {
  Mm mm = make_test_mm(scheme, MmShape{pages, vpages, debug});
  return mm;
}

HugetlbCounts counts(PageArray& mem, uint32_t order) {
  HugetlbCounts c;
  CHECK(mem.hugetlb_counts(order, &c).ok());
  return c;
}

HugetlbMmapArgs hugetlb_args(int64_t start, int64_t count, uint32_t order, bool shared = false) {
  HugetlbMmapArgs a;
  a.start = start;
  a.count = count;
  a.order = order;
  a.shared = shared;
  return a;
}

// An address space whose first page of `order` is a private hugetlb mapping, written once
// (faulted in), over a pool of `pool` such pages: most tests' starting point.
Mm make_faulted_hugetlb_mm(Scheme s, uint64_t pages, uint64_t vpages, uint32_t order, int64_t pool,
                           bool debug = true) {
  Mm mm = make_mm(s, pages, vpages, debug);
  CHECK(mm.mem->hugetlb_set_pages(order, pool).ok());
  CHECK(mm.as->mmap_hugetlb(hugetlb_args(0, int64_t(uint64_t{1} << order), order)).ok());
  CHECK(mm.as->touch(0, 1, true).ok());
  return mm;
}

GupFlags pin(bool write, bool longterm = false) {
  GupFlags f;
  f.write = write;
  f.longterm = longterm;
  return f;
}

TEST(hugetlb_pool_grows_shrinks_and_refuses_all_or_nothing) {
  auto mm = make_mm(Scheme::kHybrid, 4096, 4096);
  PageArray& mem = *mm.mem;
  const uint64_t free0 = mem.free_pages();
  CHECK(mem.hugetlb_set_pages(9, 4).ok());
  CHECK_EQ(counts(mem, 9).total, uint64_t(4));
  CHECK_EQ(counts(mem, 9).free, uint64_t(4));
  CHECK_EQ(mem.free_pages(), free0 - 4 * k2M);  // out of the buddy allocator
  // Too large: nothing taken. Bad order or count: EINVAL.
  CHECK_CODE(mem.hugetlb_set_pages(9, 9), Code::kEINVAL);  // > pages >> 9
  uint64_t page = 0;
  CHECK(mem.alloc_folio(0, false, &page).ok());  // breaks one of the 4 blocks left
  CHECK_CODE(mem.hugetlb_set_pages(9, 8), Code::kENOMEM);  // only 3 more blocks exist
  CHECK_EQ(counts(mem, 9).total, uint64_t(4));
  CHECK_EQ(mem.free_pages(), free0 - 4 * k2M - 1);
  CHECK_CODE(mem.hugetlb_set_pages(10, 1), Code::kEINVAL);
  CHECK_CODE(mem.hugetlb_set_pages(18, 1), Code::kEINVAL);  // 4096 pages hold no 1 GiB page
  CHECK_CODE(mem.hugetlb_set_pages(9, -1), Code::kEINVAL);
  // A mapping reserves; the pool cannot shrink below what is used or reserved.
  CHECK(mm.as->mmap_hugetlb(hugetlb_args(0, 3 * k2M, 9)).ok());
  CHECK_EQ(counts(mem, 9).reserved, uint64_t(3));
  CHECK_CODE(mem.hugetlb_set_pages(9, 2), Code::kEBUSY);
  CHECK_EQ(counts(mem, 9).total, uint64_t(4));
  CHECK(mm.as->touch(0, 1, true).ok());
  CHECK_EQ(counts(mem, 9).free, uint64_t(3));
  CHECK_EQ(counts(mem, 9).reserved, uint64_t(2));
  // Exhaustion at mmap: 2 more cannot be reserved (1 free unreserved).
  CHECK_CODE(mm.as->mmap_hugetlb(hugetlb_args(4 * k2M, 2 * k2M, 9)), Code::kENOMEM);
  CHECK_EQ(mm.as->regions(), uint64_t(1));
  CHECK(mm.as->munmap(0, int64_t(3 * k2M)).ok());
  CHECK_EQ(counts(mem, 9).free, uint64_t(4));
  CHECK_EQ(counts(mem, 9).reserved, uint64_t(0));
  CHECK(mem.hugetlb_set_pages(9, 0).ok());
  CHECK_EQ(mem.free_pages(), free0 - 1);
  bool freed = false;
  CHECK(mem.put_page(page, 1, &freed).ok());
  CHECK_EQ(mem.free_pages(), free0);
}

TEST(hugetlb_ranges_must_cover_whole_pages) {
  auto mm = make_mm(Scheme::kBias, 8192, 8192);
  CHECK(mm.mem->hugetlb_set_pages(9, 4).ok());
  CHECK_CODE(mm.as->mmap_hugetlb(hugetlb_args(1, int64_t(k2M), 9)), Code::kEINVAL);
  CHECK_CODE(mm.as->mmap_hugetlb(hugetlb_args(0, int64_t(k2M) + 1, 9)), Code::kEINVAL);
  CHECK_CODE(mm.as->mmap_hugetlb(hugetlb_args(0, int64_t(k2M), 12)), Code::kEINVAL);
  CHECK(mm.as->mmap_hugetlb(hugetlb_args(0, 2 * int64_t(k2M), 9)).ok());
  CHECK(mm.as->touch(0, 2 * int64_t(k2M), true).ok());
  const Translation before = mm.as->translate(5);
  CHECK_CODE(mm.as->munmap(1, 10), Code::kEINVAL);
  CHECK_CODE(mm.as->munmap(0, int64_t(k2M) + 1), Code::kEINVAL);
  CHECK_CODE(mm.as->mprotect(256, 512, false), Code::kEINVAL);
  // MADV_DONTNEED (Linux 6.1): a start inside a huge page is EINVAL; an end inside one rounds
  // down to it, so a range inside the first page from its start zaps nothing and succeeds.
  CHECK_CODE(mm.as->madvise(1, 10, Advice::kDontNeed), Code::kEINVAL);
  CHECK(mm.as->madvise(0, 1, Advice::kDontNeed).ok());
  CHECK_CODE(mm.as->zap(3, 1), Code::kEINVAL);
  CHECK_EQ(mm.as->translate(5).pfn, before.pfn);  // nothing changed
  CHECK(mm.as->translate(5).writable);
  // Whole pages: fine, and the second page stays as it was.
  CHECK(mm.as->mprotect(int64_t(k2M), int64_t(k2M), false).ok());
  CHECK(!mm.as->translate(k2M).writable);
  CHECK(mm.as->translate(0).writable);
  CHECK(mm.as->munmap(0, int64_t(k2M)).ok());
  CHECK(!mm.as->translate(0).present);
  CHECK(mm.as->translate(k2M).present);
}

TEST(hugetlb_fork_cow_copies_whole_pages_and_an_empty_pool_is_sigbus) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_faulted_hugetlb_mm(s, 8192, 4096, 9, 2);
    PageArray& mem = *mm.mem;
    const uint64_t page = mm.as->translate(0).pfn;
    std::unique_ptr<AddressSpace> child;
    CHECK(mm.as->fork(&child).ok());
    CHECK_EQ(child->translate(7).pfn, page + 7);  // shared, read-only on both sides
    CHECK(!child->translate(7).writable);
    CHECK(!mm.as->translate(7).writable);
    CHECK_EQ(mem.refcount(page), 2);  // one reference per mapping of the page
    // A child fork of the child: the third mapping needs no page.
    std::unique_ptr<AddressSpace> grandchild;
    CHECK(child->fork(&grandchild).ok());
    // The parent's write copies the whole page (the one free page).
    CHECK(mm.as->touch(100, 1, true).ok());
    const uint64_t copy = mm.as->translate(0).pfn;
    CHECK(copy != page);
    CHECK_EQ(mm.as->translate(511).pfn, copy + 511);
    CHECK_EQ(mem.folio_order(copy), uint32_t(9));
    CHECK_EQ(mm.as->stat(MmStat::kCowCopies), k2M);
    CHECK_EQ(counts(mem, 9).free, uint64_t(0));
    // The child's write needs another page: the pool is out (SIGBUS: EFAULT), nothing changed.
    CHECK_CODE(child->touch(0, 1, true), Code::kEFAULT);
    CHECK_EQ(child->translate(0).pfn, page);
    grandchild.reset();  // now the child's page is its alone: reused, no copy
    CHECK(child->touch(0, 1, true).ok());
    CHECK_EQ(child->translate(0).pfn, page);
    CHECK(child->translate(0).writable);
    child.reset();
    CHECK(mm.as->munmap(0, int64_t(k2M)).ok());
    CHECK_EQ(counts(mem, 9).free, uint64_t(2));
    CHECK_EQ(mem.stat(Stat::kPinAcquired), mem.stat(Stat::kPinReleased));
  }
}

TEST(hugetlb_fork_copies_a_pinned_page_early_or_fails_without_a_free_page) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_faulted_hugetlb_mm(s, 8192, 4096, 9, 1);
    PageArray& mem = *mm.mem;
    std::vector<uint32_t> out(k2M);
    uint64_t done = 0;
    CHECK(mm.as->gup_fast(0, int64_t(k2M), pin(true, true), out.data(), &done).ok());
    CHECK_EQ(done, k2M);
    std::unique_ptr<AddressSpace> child;
    CHECK_CODE(mm.as->fork(&child), Code::kENOMEM);  // no page for the early copy
    CHECK(mm.as->translate(0).writable);  // the parent as it was
    CHECK(mem.hugetlb_set_pages(9, 2).ok());
    CHECK(mm.as->fork(&child).ok());
    CHECK(child->translate(0).pfn != out[0]);  // early COW: the child got a copy
    CHECK_EQ(mm.as->translate(0).pfn, uint64_t(out[0]));
    CHECK(mm.as->translate(0).writable);  // the pinned page stays the parent's
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), k2M);
    CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
    child.reset();
    mm.as.reset();
    CHECK_EQ(counts(mem, 9).free, uint64_t(2));
    CHECK_EQ(mem.stat(Stat::kPinAcquired), mem.stat(Stat::kPinReleased));
  }
}

TEST(hugetlb_1g_page_is_one_grab_and_one_reference) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_faulted_hugetlb_mm(s, 2 * k1G, k1G, 18, 1, false);
    PageArray& mem = *mm.mem;
    const uint64_t head = mm.as->translate(0).pfn;
    CHECK_EQ(mem.refcount(head), 1);  // one reference for 512 leaves
    CHECK_EQ(mm.as->translate(k1G - 1).pfn, head + k1G - 1);
    CHECK_EQ(mm.as->mapped_pages(), k1G);
    std::vector<uint32_t> out(k1G);
    uint64_t done = 0;
    const uint64_t grabs = mem.stat(Stat::kGrabs);
    CHECK(mm.as->gup_fast(0, int64_t(k1G), pin(true, true), out.data(), &done).ok());
    CHECK_EQ(done, k1G);
    CHECK_EQ(mem.stat(Stat::kGrabs) - grabs, uint64_t(1));  // the whole page in one atomic
    CHECK_EQ(out[k1G - 1], uint32_t(head + k1G - 1));
    CHECK(mem.maybe_dma_pinned(head));
    // Part of the page, from its middle: one grab too.
    std::vector<uint32_t> part(1000);
    uint64_t got = 0;
    CHECK(mm.as->gup_fast(700, 1000, pin(false), part.data(), &got).ok());
    CHECK_EQ(got, uint64_t(1000));
    CHECK_EQ(mem.stat(Stat::kGrabs) - grabs, uint64_t(2));
    CHECK(mm.as->unpin_user_pages(part.data(), got, false, false).ok());
    CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
    // Migration refuses while pinned, moves it whole once not (to the pool's other page).
    uint64_t moved = 0;
    CHECK(mm.as->migrate(0, int64_t(k1G), &moved).ok());
    CHECK_EQ(moved, uint64_t(0));
    CHECK(mem.hugetlb_set_pages(18, 1).ok());  // still one: the migration had no target anyway
    CHECK(mm.as->munmap(0, int64_t(k1G)).ok());
    CHECK_EQ(counts(mem, 18).free, uint64_t(1));
    CHECK_EQ(mem.stat(Stat::kPinAcquired), mem.stat(Stat::kPinReleased));
  }
}

TEST(hugetlb_migration_moves_a_page_whole_and_refuses_a_pinned_one) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_faulted_hugetlb_mm(s, 8192, 4096, 9, 2);
    PageArray& mem = *mm.mem;
    const uint64_t page = mm.as->translate(0).pfn;
    std::vector<uint32_t> out(4);
    uint64_t done = 0;
    CHECK(mm.as->gup_fast(8, 4, pin(true), out.data(), &done).ok());
    uint64_t moved = 0;
    CHECK(mm.as->migrate(0, 1, &moved).ok());
    CHECK_EQ(moved, uint64_t(0));
    CHECK_EQ(mm.as->stat(MmStat::kMigrationRefusals), uint64_t(1));
    CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
    CHECK(mm.as->migrate(0, int64_t(k2M), &moved).ok());
    CHECK_EQ(moved, k2M);
    CHECK(mm.as->translate(0).pfn != page);
    CHECK(mem.is_hugetlb(mm.as->translate(0).pfn));
    CHECK_EQ(counts(mem, 9).free, uint64_t(1));  // the old page went back to the pool
    CHECK_EQ(mem.refcount(page), 0);
    mm.as.reset();
    CHECK_EQ(counts(mem, 9).free, uint64_t(2));
  }
}

TEST(hugetlb_shared_mapping_is_shared_by_forks_and_pinned_long_term_for_write) {
  auto mm = make_mm(Scheme::kHybrid, 8192, 4096);
  PageArray& mem = *mm.mem;
  CHECK(mem.hugetlb_set_pages(9, 2).ok());
  CHECK(mm.as->mmap_hugetlb(hugetlb_args(0, int64_t(k2M), 9, true)).ok());
  CHECK_EQ(counts(mem, 9).free, uint64_t(1));  // allocated at mmap
  const uint64_t page = mm.as->translate(0).pfn;
  CHECK(mm.as->translate(0).shared);
  std::unique_ptr<AddressSpace> child;
  CHECK(mm.as->fork(&child).ok());
  CHECK(child->touch(0, 1, true).ok());
  CHECK_EQ(child->translate(0).pfn, page);  // written in place, never copied
  CHECK(mm.as->translate(0).writable);
  std::vector<uint32_t> out(k2M);
  uint64_t done = 0;
  CHECK(child->gup_fast(0, int64_t(k2M), pin(true, true), out.data(), &done).ok());
  CHECK_EQ(done, k2M);
  CHECK_EQ(out[0], uint32_t(page));
  // MADV_DONTNEED: the entries go, the page stays (the shared object's), mapped again next.
  CHECK(child->madvise(0, int64_t(k2M), Advice::kDontNeed).ok());
  CHECK(!child->translate(0).present);
  CHECK_EQ(counts(mem, 9).free, uint64_t(1));
  CHECK(child->touch(5, 1, false).ok());
  CHECK_EQ(child->translate(0).pfn, page);
  CHECK(child->translate(0).writable);
  CHECK(child->madvise(0, int64_t(k2M), Advice::kDontNeed).ok());  // left zapped
  child.reset();  // the pins keep the page
  mm.as.reset();
  CHECK_EQ(counts(mem, 9).free, uint64_t(1));
  CHECK(mem.unpin_pages(PageSet::pfns(out.data(), done), PinFlags{true, false, false}).ok());
  CHECK_EQ(counts(mem, 9).free, uint64_t(2));  // the last unpin gave it back to the pool
}

// MADV_DONTNEED of hugetlb file mappings: a shared one keeps the file's pages (every leaf of a
// 1 GiB page cleared and mapped again), a private one's copies go back to the pool and a read
// maps the file's page again, each page held by the mapping while no entry maps it.
TEST(hugetlb_dontneed_of_file_mappings_keeps_the_file_pages) {
  for (Scheme s : kAllSchemes) {
    for (const uint32_t order : {9u, 18u}) {
      const uint64_t huge = uint64_t{1} << order;
      auto mm = make_mm(s, 5 * huge, 4 * huge);
      PageArray& mem = *mm.mem;
      CHECK(mem.hugetlb_set_pages(order, 3).ok());
      std::vector<uint32_t> heads;
      CHECK(mem.hugetlb_alloc_pages(order, 1, &heads).ok());  // the file's page
      const uint64_t file_page = heads[0];
      CHECK(mm.as->map_hugetlb_file(0, heads.data(), 1, order, true, true).ok());
      CHECK(mm.as->map_hugetlb_file(int64_t(huge), heads.data(), 1, order, true, false).ok());
      CHECK(mm.as->touch(int64_t(huge), 1, true).ok());  // the private copy
      CHECK_EQ(counts(mem, order).free, uint64_t(1));
      const int32_t refs = mem.refcount(file_page);
      CHECK(mm.as->madvise(0, int64_t(2 * huge), Advice::kDontNeed).ok());
      CHECK_EQ(counts(mem, order).free, uint64_t(2));  // the copy went back
      CHECK_EQ(mem.refcount(file_page), refs);  // held, not put
      CHECK_EQ(mem.mapped_refs(file_page), int64_t(0));
      for (uint64_t v = 0; v < 2 * huge; v += k2M) CHECK(!mm.as->translate(v).present);
      CHECK(mm.as->touch(int64_t(huge - 1), 1, false).ok());  // the last leaf of the shared page
      CHECK(mm.as->touch(int64_t(2 * huge - 1), 1, false).ok());
      for (uint64_t v = 0; v < 2 * huge; v += k2M)
        CHECK_EQ(mm.as->translate(v).pfn, file_page + v % huge);
      CHECK(!mm.as->translate(huge).writable);  // the private mapping's: read-only
      CHECK_EQ(mem.mapped_refs(file_page), int64_t(2));
      std::vector<uint32_t> out(huge);
      uint64_t done = 0;  // one grab over every leaf again
      CHECK(mm.as->gup_fast(0, int64_t(huge), pin(true, true), out.data(), &done).ok());
      CHECK_EQ(done, huge);
      CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
      mem.put_folio_refs(file_page, 1);  // the file's close
      mm.as.reset();
      CHECK_EQ(counts(mem, order).free, uint64_t(3));
      CHECK_EQ(mem.stat(Stat::kPinAcquired), mem.stat(Stat::kPinReleased));
    }
  }
}

// A fork that fails (no pool page for an early copy) takes no hold on the zapped pages of a
// shared mapping: their counts are as before, and the parent maps them again after.
TEST(hugetlb_failed_fork_takes_no_hold_on_zapped_pages) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_faulted_hugetlb_mm(s, 8192, 4096, 9, 2);
    PageArray& mem = *mm.mem;
    CHECK(mm.as->mmap_hugetlb(hugetlb_args(int64_t(k2M), int64_t(k2M), 9, true)).ok());
    const uint64_t shared_page = mm.as->translate(k2M).pfn;
    CHECK(mm.as->madvise(int64_t(k2M), int64_t(k2M), Advice::kDontNeed).ok());
    const int32_t refs = mem.refcount(shared_page);
    std::vector<uint32_t> out(k2M);
    uint64_t done = 0;
    CHECK(mm.as->gup_fast(0, int64_t(k2M), pin(true, true), out.data(), &done).ok());
    std::unique_ptr<AddressSpace> child;
    CHECK_CODE(mm.as->fork(&child), Code::kENOMEM);  // the pool is out
    CHECK_EQ(mem.refcount(shared_page), refs);
    CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
    CHECK(mm.as->fork(&child).ok());  // now it shares, and holds the zapped page too
    CHECK_EQ(mem.refcount(shared_page), refs + 1);
    CHECK(child->touch(int64_t(k2M), 1, true).ok());
    CHECK_EQ(child->translate(k2M).pfn, shared_page);
    mm.as.reset();
    child.reset();
    CHECK_EQ(counts(mem, 9).free, uint64_t(2));
  }
}

// gup_fast over a 1 GiB page (512 leaves, one grab) against munmap, fork and migration of it:
// every pin handed out must be real, and at the end every count balances.
TEST_TAGGED(hugetlb_1g_gup_fast_races_unmap_fork_and_migration, "concurrency") {
  for (Scheme s : {Scheme::kHybrid, Scheme::kBias}) {
    auto mm = make_mm(s, 3 * k1G, k1G, true);
    PageArray& mem = *mm.mem;
    CHECK(mem.hugetlb_set_pages(18, 3).ok());
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> pinned{0};
    std::thread pinner([&] {
      std::vector<uint32_t> out(k1G);
      while (!stop.load(std::memory_order_relaxed)) {
        GupFlags f = pin(true);
        f.fast_only = true;
        uint64_t done = 0;
        if (!mm.as->gup_fast(0, int64_t(k1G), f, out.data(), &done).ok() || done == 0) continue;
        const uint64_t head = mem.folio_head(out[0]);
        if (mem.refcount(head) <= 0 || !mem.maybe_dma_pinned(head) || out[done - 1] != out[0] + done - 1)
          fail(__FILE__, __LINE__, "a 1 GiB pin that is not real");
        pinned.fetch_add(done, std::memory_order_relaxed);
        CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
      }
    });
    for (int round = 0; round < 30; ++round) {
      HugetlbMmapArgs a = hugetlb_args(0, int64_t(k1G), 18);
      a.populate = true;
      CHECK(mm.as->mmap_hugetlb(a).ok());
      std::unique_ptr<AddressSpace> child;
      const Status st = mm.as->fork(&child);
      CHECK(st.ok() || st.code == Code::kENOMEM);
      if (child) (void)child->touch(0, 1, true);
      child.reset();
      (void)mm.as->touch(0, 1, true);
      uint64_t moved = 0;
      CHECK(mm.as->migrate(0, int64_t(k1G), &moved).ok());
      CHECK(mm.as->munmap(0, int64_t(k1G)).ok());
    }
    stop.store(true, std::memory_order_relaxed);
    pinner.join();
    CHECK_EQ(counts(mem, 18).free, uint64_t(3));
    CHECK_EQ(mem.stat(Stat::kPinAcquired), mem.stat(Stat::kPinReleased));
  }
}

}  // namespace
}  // namespace pinlab::test
