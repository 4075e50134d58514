// Issue 13: the kernel rule sets (MmRules), madvise (DONTNEED, DONTFORK/DOFORK), and the
// migration of PTE-mapped large folios (concurrency cases tagged for the ThreadSanitizer build).
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

Mm make_mm(Scheme scheme, const MmRules& rules, uint64_t movable = 0, uint64_t pages = 8192) {
  MmShape shape{pages, 4096, true, rules};
  shape.movable = movable;
  return make_test_mm(scheme, shape);
}

GupFlags longterm(bool write) {
  GupFlags f;
  f.write = write;
  f.longterm = true;
  return f;
}

TEST(a_bad_rule_value_creates_nothing) {
  PageArrayConfig cfg;
  cfg.pages = 64;
  cfg.populated = false;
  cfg.pincount_min_order = MmRules::kNoPincountOrder;  // the 2019 kernels' (none)
  std::unique_ptr<PageArray> pa;
  CHECK_OK(PageArray::create(cfg, &pa));
  std::shared_ptr<PageArray> mem(std::move(pa));
  MmRules bad;
  bad.longterm_file_writes = LongtermFileWrites(7);
  std::unique_ptr<AddressSpace> as;
  CHECK_CODE(AddressSpace::create(mem, 16, bad, &as), Code::kEINVAL);
  CHECK(as == nullptr);
  CHECK_OK(AddressSpace::create(mem, 16, MmRules::v2019(), &as));
  CHECK(!as->rules().zero_page_unshare);
  std::unique_ptr<AddressSpace> child;
  CHECK_OK(as->fork(&child));
  CHECK(child->rules().longterm_file_writes == LongtermFileWrites::kAllow);  // inherited
}

TEST(mainline_unshares_the_zero_page_for_a_longterm_read_pin_and_2019_pins_it) {
  for (Scheme s : kAllSchemes) {
    for (const bool mainline : {true, false}) {
      auto mm = make_mm(s, mainline ? MmRules::mainline() : MmRules::v2019());
      CHECK_OK(mm.as->mmap(MmapArgs{0, 4, true, false, false}));
      CHECK_OK(mm.as->touch(0, 2, false));  // pages 0-1 map the zero page; 2-3 are holes
      std::vector<uint32_t> out(4);
      uint64_t done = 0;
      CHECK_OK(mm.as->gup_fast(0, 4, longterm(false), out.data(), &done));
      CHECK_EQ(done, uint64_t(4));
      const int64_t zero = mm.mem->zero_pfn();
      for (uint64_t v = 0; v < 4; ++v) {
        const Translation tr = mm.as->translate(v);
        CHECK_EQ(tr.special, !mainline);
        CHECK_EQ(int64_t(out[v]) == zero, !mainline);
        if (mainline) CHECK_EQ(tr.pfn, uint64_t(out[v]));
      }
      CHECK_OK(mm.as->touch(0, 4, true));  // the process writes
      for (uint64_t v = 0; v < 4; ++v)
        CHECK_EQ(mm.as->translate(v).pfn == out[v], mainline);  // the pin sees it (mainline)
      CHECK_OK(mm.as->unpin_user_pages(out.data(), done, false, false));
    }
  }
}

TEST(mainline_refuses_longterm_write_pins_of_dirty_tracked_files_but_not_shmem) {
  for (Scheme s : kAllSchemes) {
    for (const bool mainline : {true, false}) {
      auto mm = make_mm(s, mainline ? MmRules::mainline() : MmRules::v2019());
      uint64_t a = 0, b = 0;
      CHECK_OK(mm.mem->alloc_folio(0, false, &a));
      CHECK_OK(mm.mem->alloc_folio(0, false, &b));
      const uint32_t file[] = {uint32_t(a)}, shmem[] = {uint32_t(b)};
      CHECK_OK(mm.as->map_shared(0, file, 1, true, true));
      CHECK_OK(mm.as->map_shared(8, shmem, 1, true, false));
      uint32_t out = 0;
      uint64_t done = 0;
      const int32_t refs = mm.mem->refcount(a);
      const Status st = mm.as->gup_fast(0, 1, longterm(true), &out, &done);
      if (mainline) {
        CHECK_CODE(st, Code::kEFAULT);
        CHECK_EQ(done, uint64_t(0));
        CHECK_EQ(mm.mem->refcount(a), refs);  // nothing taken
        CHECK(!mm.mem->maybe_dma_pinned(a));
      } else {
        CHECK_OK(st);
        CHECK_OK(mm.as->unpin_user_pages(&out, 1, true, false));
      }
      // A read pin of the file, and a write pin of shmem, are fine under every rule set.
      CHECK_OK(mm.as->gup_slow(0, 1, longterm(false), &out, &done));
      CHECK_OK(mm.as->unpin_user_pages(&out, 1, false, false));
      CHECK_OK(mm.as->gup_fast(8, 1, longterm(true), &out, &done));
      CHECK_EQ(uint64_t(out), b);
      CHECK_OK(mm.as->unpin_user_pages(&out, 1, true, false));
      CHECK_OK(mm.as->munmap(0, 16));
      bool freed = false;
      CHECK_OK(mm.mem->put_page(a, 1, &freed));
      CHECK_OK(mm.mem->put_page(b, 1, &freed));
    }
  }
}

TEST(a_pte_mapped_thp_in_zone_movable_migrates_for_a_longterm_pin_under_mainline) {
  for (Scheme s : kAllSchemes) {
    for (const bool mainline : {true, false}) {
      auto mm = make_mm(s, mainline ? MmRules::mainline() : MmRules::v2019(), 4096);
      CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
      const uint64_t head = mm.as->translate(0).pfn;
      CHECK(mm.mem->is_movable(head));
      CHECK_OK(mm.as->munmap(500, 12));  // PTE-maps the THP
      const uint64_t free_before = mm.mem->free_pages();
      std::vector<uint32_t> out(16);
      uint64_t done = 0;
      const Status st = mm.as->gup_fast(10, 16, longterm(true), out.data(), &done);
      if (!mainline) {
        CHECK_CODE(st, Code::kEBUSY);
        CHECK_EQ(mm.as->translate(10).pfn, head + 10);  // nothing moved
        CHECK_EQ(mm.mem->free_pages(), free_before);
        continue;
      }
      CHECK_OK(st);
      CHECK_EQ(done, uint64_t(16));
      for (uint64_t i = 0; i < 16; ++i) {
        CHECK(!mm.mem->is_movable(out[i]));
        CHECK_EQ(mm.mem->folio_order(out[i]), uint32_t(0));
      }
      // Every mapped page of the folio moved (500 PTEs), the folio is gone (512 pages free
      // again, 500 taken in the normal zone).
      CHECK_EQ(mm.as->stat(MmStat::kMigrated), uint64_t(500));
      CHECK_EQ(mm.mem->refcount(head), 0);
      CHECK_EQ(mm.mem->free_pages(), free_before + 512 - 500);
      for (uint64_t v = 0; v < 500; ++v) CHECK(mm.as->translate(v).writable);
      CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
      CHECK_OK(mm.as->munmap(0, 512));
      CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - 0);
    }
  }
}

TEST(a_pinned_pte_mapped_thp_is_refused_and_stays) {
  auto mm = make_mm(Scheme::kHybrid, MmRules::mainline());
  CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
  const uint64_t head = mm.as->translate(0).pfn;
  CHECK_OK(mm.as->mprotect(1, 1, false));  // PTE-maps it
  uint32_t pinned = 0;
  uint64_t done = 0;
  GupFlags f;
  f.write = true;
  CHECK_OK(mm.as->gup_fast(300, 1, f, &pinned, &done));
  uint64_t moved = 0;
  CHECK_OK(mm.as->migrate(0, 512, &moved));
  CHECK_EQ(moved, uint64_t(0));
  CHECK_EQ(mm.as->translate(0).pfn, head);
  CHECK_EQ(mm.as->stat(MmStat::kMigrationRefusals), uint64_t(1));  // one folio
  CHECK_OK(mm.as->unpin_user_pages(&pinned, 1, true, false));
  CHECK_OK(mm.as->migrate(0, 512, &moved));
  CHECK_EQ(moved, uint64_t(512));
  CHECK_EQ(mm.mem->refcount(head), 0);
}

TEST(madvise_dontneed_zaps_and_the_next_touch_faults_a_fresh_page) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s, MmRules::mainline());
    CHECK_OK(mm.as->mmap(MmapArgs{0, 1024, true, true, true}));
    uint32_t pinned = 0;
    uint64_t done = 0;
    GupFlags f;
    f.write = true;
    CHECK_OK(mm.as->gup_fast(5, 1, f, &pinned, &done));
    CHECK_OK(mm.as->madvise(1, 511, Advice::kDontNeed));
    CHECK(!mm.as->translate(5).present);
    CHECK(mm.as->translate(0).present);
    CHECK_EQ(mm.as->regions(), uint64_t(1));  // the region stays
    CHECK(mm.mem->maybe_dma_pinned(pinned));  // the pin keeps its page
    CHECK_OK(mm.as->touch(5, 1, false));
    CHECK(mm.as->translate(5).special);  // a read faults the zero page
    CHECK_OK(mm.as->touch(5, 1, true));
    CHECK(mm.as->translate(5).pfn != pinned);  // a fresh page
    CHECK_OK(mm.as->unpin_user_pages(&pinned, 1, true, false));
    // A whole 2 MiB stretch zapped faults a new THP.
    CHECK_OK(mm.as->madvise(512, 512, Advice::kDontNeed));
    CHECK_OK(mm.as->touch(600, 1, true));
    CHECK(mm.as->translate(600).huge);
    CHECK_OK(mm.as->munmap(0, 1024));
    CHECK_EQ(mm.mem->free_pages() + (mm.mem->zero_pfn() >= 0 ? 1 : 0), mm.mem->pages());
  }
}

TEST(madvise_refuses_whole_calls_and_changes_nothing) {
  auto mm = make_mm(Scheme::kBias, MmRules::mainline());
  CHECK_OK(mm.as->mmap(MmapArgs{0, 8, true, true, false}));
  uint64_t a = 0;
  CHECK_OK(mm.mem->alloc_folio(0, false, &a));
  const uint32_t file[] = {uint32_t(a)};
  CHECK_OK(mm.as->map_shared(8, file, 1, true));
  CHECK_CODE(mm.as->madvise(9, 4, Advice::kDontNeed), Code::kENOMEM);  // a hole at 9
  CHECK_OK(mm.as->madvise(0, 9, Advice::kDontFork));  // any mapping: a shared file page too
  CHECK_OK(mm.as->madvise(0, 9, Advice::kDoFork));
  CHECK_CODE(mm.as->madvise(0, 4, Advice(9)), Code::kEINVAL);
  CHECK_CODE(mm.as->madvise(0, 0, Advice::kDontNeed), Code::kEINVAL);
  CHECK_EQ(mm.as->mapped_pages(), uint64_t(9));
  CHECK_EQ(mm.as->regions(), uint64_t(2));
  CHECK_OK(mm.as->munmap(8, 1));
  bool freed = false;
  CHECK_OK(mm.mem->put_page(a, 1, &freed));
}

TEST(madvise_dontfork_keeps_a_range_out_of_the_child_and_dofork_undoes_it) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s, MmRules::mainline());
    CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
    const uint64_t head = mm.as->translate(0).pfn;
    CHECK_OK(mm.as->madvise(1, 511, Advice::kDontFork));
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));
    CHECK(child->translate(0).present);
    CHECK(!child->translate(1).present);
    CHECK_CODE(child->touch(1, 1, false), Code::kEFAULT);  // no region there in the child
    CHECK(!mm.as->translate(0).writable);  // shared COW
    CHECK(mm.as->translate(1).writable);  // never shared: untouched
    CHECK_EQ(mm.mem->refcount(head), int32_t(512 + 1));
    child.reset();
    CHECK_OK(mm.as->madvise(0, 512, Advice::kDoFork));
    CHECK_OK(mm.as->fork(&child));
    CHECK(child->translate(1).present);
    child.reset();
    CHECK_OK(mm.as->munmap(0, 512));
    CHECK_EQ(mm.mem->refcount(head), 0);
  }
}

TEST(mthp_write_faults_map_the_largest_enabled_order_that_fits) {
  PageArrayConfig cfg;
  cfg.pages = 8192;
  cfg.populated = false;
  cfg.debug = true;
  std::unique_ptr<PageArray> pa;
  CHECK_OK(PageArray::create(cfg, &pa));
  std::shared_ptr<PageArray> mem(std::move(pa));
  std::unique_ptr<AddressSpace> as;
  CHECK_CODE(AddressSpace::create(mem, 4096, MmRules::mainline(), int64_t{1} << 1, &as), Code::kEINVAL);
  CHECK_CODE(AddressSpace::create(mem, 4096, MmRules::mainline(), int64_t{1} << 10, &as), Code::kEINVAL);
  CHECK(as == nullptr);
  CHECK_OK(AddressSpace::create(mem, 4096, MmRules::mainline(), (1 << 4) | (1 << 2), &as));
  CHECK_OK(as->mmap(MmapArgs{1024, 44, true, false, true}));  // [1024, 1068)
  CHECK_OK(as->touch(1025, 1, true));  // order 4: [1024, 1040)
  const uint64_t head = as->translate(1024).pfn;
  CHECK_EQ(mem->folio_order(head), uint32_t(4));
  CHECK_EQ(mem->refcount(head), int32_t(16));
  CHECK(!as->translate(1024).huge);
  CHECK_OK(as->touch(1060, 1, true));  // [1056, 1072) leaves the region: order 2 [1060, 1064)
  CHECK_EQ(mem->folio_order(as->translate(1060).pfn), uint32_t(2));
  CHECK_OK(as->touch(1064, 1, false));  // a read fault maps the zero page
  CHECK(as->translate(1064).special);
  CHECK_OK(as->touch(1066, 1, true));  // order 2 cannot: 1064 is mapped; order 0
  CHECK_EQ(mem->folio_order(as->translate(1066).pfn), uint32_t(0));
  // A pin of an mTHP's subpages through the lockless walk, fork and COW, then migration.
  std::vector<uint32_t> out(16);
  uint64_t done = 0;
  GupFlags f;
  f.write = true;
  CHECK_OK(as->gup_fast(1024, 16, f, out.data(), &done));
  CHECK_EQ(done, uint64_t(16));
  CHECK_EQ(as->stat(MmStat::kSlowFallbacks), uint64_t(0));
  std::unique_ptr<AddressSpace> child;
  CHECK_OK(as->fork(&child));  // pinned: the child gets copies
  CHECK(child->translate(1024).pfn != head);
  CHECK_EQ(as->translate(1024).pfn, head);
  CHECK_OK(as->unpin_user_pages(out.data(), done, true, false));
  child.reset();
  uint64_t moved = 0;
  CHECK_OK(as->migrate(1024, 16, &moved));
  CHECK_EQ(moved, uint64_t(16));
  CHECK_EQ(mem->refcount(head), 0);
  CHECK_OK(as->munmap(0, 4096));
  CHECK_EQ(mem->free_pages() + 1, mem->pages());  // the zero page stays
}

// gup_fast races madvise(DONTNEED) and a PTE-mapped THP's migration: every pin it returns
// holds the page it pinned, and everything balances.
TEST_TAGGED(gup_fast_races_dontneed_and_pte_mapped_thp_migration, "concurrency") {
  auto mm = make_mm(Scheme::kHybrid, MmRules::mainline(), 0, 16384);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 2048, true, false, true}));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0};
  std::thread pinner([&] {
    std::vector<uint32_t> out(64);
    uint64_t i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const int64_t start = int64_t((i++ * 67) % 1984);
      uint64_t done = 0;
      GupFlags f;
      f.write = true;
      f.fast_only = true;
      if (!mm.as->gup_fast(start, 64, f, out.data(), &done).ok()) continue;
      for (uint64_t k = 0; k < done; ++k) bad += !mm.mem->maybe_dma_pinned(out[k]);
      if (done > 0) bad += !mm.as->unpin_user_pages(out.data(), done, true, false).ok();
    }
  });
  for (int round = 0; round < 200; ++round) {
    CHECK_OK(mm.as->touch(0, 2048, true));
    CHECK_OK(mm.as->mprotect(3, 1, false));  // PTE-maps the first THP
    CHECK_OK(mm.as->mprotect(3, 1, true));
    uint64_t moved = 0;
    CHECK_OK(mm.as->migrate(0, 2048, &moved));
    CHECK_OK(mm.as->madvise(int64_t(round * 7 % 1700), 300, Advice::kDontNeed));
  }
  stop = true;
  pinner.join();
  CHECK_EQ(bad.load(), uint64_t(0));
  CHECK_OK(mm.as->munmap(0, 2048));
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
}

// mprotect granting write (MM_CP_TRY_CHANGE_WRITABLE): exclusive anonymous PTEs and THP
// leaves and shmem pages are writable at once under mainline; a COW-shared page, a regular
// file's page and (2019 rules) every anonymous page wait for a write fault.
TEST(mprotect_upgrades_what_a_write_fault_would_make_writable) {
  for (Scheme s : kAllSchemes) {
    for (const bool mainline : {true, false}) {
      auto mm = make_mm(s, mainline ? MmRules::mainline() : MmRules::v2019());
      CHECK_OK(mm.as->mmap(MmapArgs{0, 4, true, true, false}));
      CHECK_OK(mm.as->mmap(MmapArgs{512, 512, true, true, true}));
      uint64_t a = 0, b = 0;
      CHECK_OK(mm.mem->alloc_folio(0, false, &a));
      CHECK_OK(mm.mem->alloc_folio(0, false, &b));
      const uint32_t shm[] = {uint32_t(a)}, reg[] = {uint32_t(b)};
      CHECK_OK(mm.as->map_shared(1100, shm, 1, true, false));  // shmem
      CHECK_OK(mm.as->map_shared(1101, reg, 1, true, true));   // a regular file
      CHECK(!mm.as->translate(1101).writable);                 // mapped clean: write-notify
      for (const auto& [start, count] : {std::pair<int64_t, int64_t>{0, 4}, {512, 512}, {1100, 2}}) {
        CHECK_OK(mm.as->mprotect(start, count, false));
        CHECK_OK(mm.as->mprotect(start, count, true));
      }
      CHECK_EQ(mm.as->translate(0).writable, mainline);
      CHECK_EQ(mm.as->translate(600).writable, mainline);
      CHECK(mm.as->translate(600).huge);
      CHECK(mm.as->translate(1100).writable);
      CHECK(!mm.as->translate(1101).writable);
      CHECK(!mm.mem->is_dirty(b));
      CHECK_OK(mm.as->touch(1101, 1, true));  // the write fault: writable and dirty
      CHECK(mm.as->translate(1101).writable);
      CHECK(mm.mem->is_dirty(b));
      CHECK_OK(mm.as->munmap(1100, 2));
      bool freed = false;
      CHECK_OK(mm.mem->put_page(a, 1, &freed));
      CHECK_OK(mm.mem->put_page(b, 1, &freed));
    }
  }
}

// 6.16's __wp_can_reuse_large_anon_folio: a write to a PTE-mapped THP whose every reference is
// a PTE of this mm reuses the page; a FOLL_GET beside the mappings makes it copy.
TEST(a_pte_mapped_thp_mapped_by_this_mm_alone_is_reused_on_a_write) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s, MmRules::mainline());
    CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
    const uint64_t head = mm.as->translate(0).pfn;
    {
      std::unique_ptr<AddressSpace> child;
      CHECK_OK(mm.as->fork(&child));
      CHECK_OK(mm.as->mprotect(0, 8, false));  // splits the shared leaf to PTEs
    }  // the child goes: this mm maps the folio alone, its entries not exclusive
    CHECK_OK(mm.as->mprotect(0, 8, true));
    CHECK_EQ(mm.mem->refcount(head), 512);
    CHECK(!mm.as->translate(3).writable);
    const uint64_t reuses = mm.as->stat(MmStat::kCowReuses);
    CHECK_OK(mm.as->touch(3, 1, true));
    CHECK_EQ(mm.as->translate(3).pfn, head + 3);
    CHECK_EQ(mm.as->stat(MmStat::kCowReuses), reuses + 1);
    CHECK_OK(mm.mem->get_page(head + 9, 1));  // a FOLL_GET-like reference
    CHECK_OK(mm.as->touch(5, 1, true));
    CHECK(mm.as->translate(5).pfn != head + 5);  // copied
    bool freed = false;
    CHECK_OK(mm.mem->put_page(head + 9, 1, &freed));
  }
}

// 6.12's migrate_pages_batch: a PTE-mapped THP mapped whole moves whole (order 9, PTE-mapped,
// one reference per PTE); one partly mapped is split into order-0 pages.
TEST(migration_moves_a_whole_pte_mapped_thp_whole) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s, MmRules::mainline());
    CHECK_OK(mm.as->mmap(MmapArgs{0, 1024, true, true, true}));
    CHECK_OK(mm.as->mprotect(0, 8, false));
    CHECK_OK(mm.as->mprotect(512, 8, false));
    CHECK_OK(mm.as->munmap(600, 1));
    const uint64_t a = mm.as->translate(0).pfn;
    uint64_t moved = 0;
    CHECK_OK(mm.as->migrate(0, 1024, &moved));
    CHECK_EQ(moved, uint64_t(1023));
    const uint64_t b = mm.as->translate(0).pfn;
    CHECK(b != a);
    CHECK_EQ(mm.mem->folio_order(b), uint32_t(9));
    CHECK_EQ(mm.mem->refcount(b), 512);
    CHECK_EQ(mm.as->translate(511).pfn, b + 511);
    CHECK(!mm.as->translate(7).writable && mm.as->translate(8).writable);  // flags moved too
    CHECK_EQ(mm.mem->folio_order(mm.as->translate(512).pfn), uint32_t(0));
    CHECK_OK(mm.as->munmap(0, 1024));
  }
}

}  // namespace
}  // namespace pinlab::test
