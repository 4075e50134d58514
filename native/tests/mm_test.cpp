// The mm layer: allocator, page table, faults, gup_fast and its slow path, fork's early COW,
// migration, and the stress harness (tagged for the ThreadSanitizer build).
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "address_space.h"
#include "fixtures.h"
#include "gup_ops.h"
#include "stress.h"

namespace pinlab::test {
namespace {

struct Mm {
  std::shared_ptr<PageArray> mem;
  std::unique_ptr<AddressSpace> as;
};

Mm make_mm(Scheme scheme, uint64_t pages = 8192, uint64_t vpages = 4096, bool debug = true,
           uint64_t movable = 0) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages);
  cfg.scheme = scheme;
  cfg.debug = debug;
  cfg.populated = false;
  cfg.movable_pages = int64_t(movable);
  std::unique_ptr<PageArray> pa;
  Status st = PageArray::create(cfg, &pa);
  if (!st.ok()) fail(__FILE__, __LINE__, describe(st));
  Mm mm{std::shared_ptr<PageArray>(std::move(pa)), nullptr};
  st = AddressSpace::create(mm.mem, int64_t(vpages), &mm.as);
  if (!st.ok()) fail(__FILE__, __LINE__, describe(st));
  return mm;
}

GupFlags pin_flags(bool write = false, bool longterm = false) {
  GupFlags f;
  f.write = write;
  f.longterm = longterm;
  return f;
}

TEST(allocator_hands_out_aligned_blocks_and_merges_them_back) {
  auto mm = make_mm(Scheme::kHybrid, 1024, 512, false);
  PageArray& mem = *mm.mem;
  CHECK_EQ(mem.free_pages(), uint64_t(1024));
  uint64_t a = 0, b = 0, big = 0;
  CHECK(mem.alloc_folio(0, false, &a).ok());
  CHECK(mem.alloc_folio(9, false, &b).ok());
  CHECK_EQ(b % 512, uint64_t(0));
  CHECK_EQ(mem.refcount(b + 7), 1);
  CHECK_EQ(mem.folio_order(b + 7), uint32_t(9));
  CHECK(mem.alloc_folio(10, false, &big).code == Code::kENOMEM);
  bool freed = false;
  CHECK(mem.put_page(a, 1, &freed).ok());
  CHECK(freed);
  CHECK(mem.put_page(b, 1, &freed).ok());
  CHECK_EQ(mem.free_pages(), uint64_t(1024));
  CHECK(mem.alloc_folio(10, false, &big).ok());  // merged back into one block
  CHECK_EQ(big, uint64_t(0));
}

TEST(fast_path_pins_populated_pages_and_huge_leaves_in_one_grab) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s);
    CHECK(mm.as->mmap(MmapArgs{0, 1024, true, true, true}).ok());
    CHECK(mm.as->mmap(MmapArgs{1024, 16, true, true, false}).ok());
    std::vector<uint32_t> out(1040);
    uint64_t done = 0;
    CHECK(mm.as->gup_fast(0, 1040, pin_flags(true), out.data(), &done).ok());
    CHECK_EQ(done, uint64_t(1040));
    CHECK_EQ(mm.as->stat(MmStat::kSlowFallbacks), uint64_t(0));
    CHECK_EQ(mm.as->stat(MmStat::kFastPages), uint64_t(1040));
    CHECK(mm.as->has_pinned());
    for (uint64_t i = 0; i < 1040; ++i) CHECK(mm.mem->maybe_dma_pinned(out[i]));
    CHECK_EQ(out[1], out[0] + 1);
    CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
    CHECK_EQ(mm.mem->refcount(out[0]), 512);  // the PMD mapping's references
    CHECK_EQ(mm.mem->refcount(out[1030]), 1);
    CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
  }
}

TEST(slow_path_faults_in_and_partial_success_returns_the_count) {
  auto mm = make_mm(Scheme::kBias);
  CHECK(mm.as->mmap(MmapArgs{0, 8, true, false, false}).ok());
  std::vector<uint32_t> out(16);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(4, 8, pin_flags(true), out.data(), &done).ok());
  CHECK_EQ(done, uint64_t(4));  // 4..7 faulted in; 8 is outside any region
  CHECK_EQ(mm.as->stat(MmStat::kSlowFallbacks), uint64_t(1));
  CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
  const Status st = mm.as->gup_fast(8, 2, pin_flags(), out.data(), &done);
  CHECK(st.code == Code::kEFAULT);
  GupFlags get = pin_flags();
  get.pin = false;
  get.longterm = true;
  CHECK(mm.as->gup_fast(0, 1, get, out.data(), &done).code == Code::kEINVAL);
}

TEST(read_faults_map_the_zero_page_which_is_never_counted) {
  auto mm = make_mm(Scheme::kHybrid);
  CHECK(mm.as->mmap(MmapArgs{0, 4, true, false, false}).ok());
  std::vector<uint32_t> out(4);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(0, 4, pin_flags(false), out.data(), &done).ok());
  CHECK_EQ(done, uint64_t(4));
  CHECK(mm.mem->is_zero_page(out[0]));
  CHECK_EQ(mm.mem->refcount(out[0]), 1);
  CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), uint64_t(0));
  CHECK(mm.as->unpin_user_pages(out.data(), done, false, false).ok());
  CHECK_EQ(mm.mem->stat(Stat::kPinReleased), uint64_t(0));
  CHECK(mm.as->touch(0, 1, true).ok());  // a write fault replaces it with a real page
  CHECK(!mm.as->translate(0).special);
}

TEST(fork_shares_cow_but_copies_maybe_pinned_pages_early) {
  auto mm = make_mm(Scheme::kBias);
  CHECK(mm.as->mmap(MmapArgs{0, 4, true, true, false}).ok());
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(1, 1, pin_flags(true), out.data(), &done).ok());
  // A false positive: 1024 plain references on page 2 read as a pin under bias.
  const uint64_t p2 = mm.as->translate(2).pfn;
  CHECK(mm.mem->get_page(p2, 1023).ok());
  std::unique_ptr<AddressSpace> child;
  CHECK(mm.as->fork(&child).ok());
  CHECK_EQ(child->translate(0).pfn, mm.as->translate(0).pfn);  // shared COW
  CHECK(!child->translate(0).writable);
  CHECK(!mm.as->translate(0).writable);
  CHECK(child->translate(1).pfn != out[0]);  // early COW: the child got a copy
  CHECK(mm.as->translate(1).writable);       // the parent keeps the pinned page writable
  CHECK(child->translate(2).pfn != p2);
  CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t(2));
  CHECK_EQ(mm.as->stat(MmStat::kEarlyCowFalsePositives), uint64_t(1));
  CHECK(child->touch(0, 1, true).ok());  // COW break in the child
  CHECK(child->translate(0).pfn != mm.as->translate(0).pfn);
  CHECK(mm.as->touch(0, 1, true).ok());  // the parent is alone again: reuse
  CHECK_EQ(mm.as->stat(MmStat::kCowReuses), uint64_t(1));
  bool freed = false;
  CHECK(mm.mem->put_page(p2, 1023, &freed).ok());
  CHECK(mm.as->unpin_user_pages(out.data(), 1, true, false).ok());
}

TEST(a_pinned_exclusive_page_survives_mprotect_and_a_write_fault) {
  auto mm = make_mm(Scheme::kBias);
  CHECK(mm.as->mmap(MmapArgs{0, 2, true, true, false}).ok());
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(0, 1, pin_flags(true), out.data(), &done).ok());
  CHECK(mm.as->mprotect(0, 2, false).ok());
  CHECK(mm.as->mprotect(0, 2, true).ok());
  CHECK(!mm.as->translate(0).writable);
  CHECK(mm.as->touch(0, 1, true).ok());  // exclusive: reused although its refcount is 1 + bias
  CHECK_EQ(mm.as->translate(0).pfn, uint64_t(out[0]));
  CHECK_EQ(mm.as->stat(MmStat::kCowCopies), uint64_t(0));
  CHECK(mm.as->unpin_user_pages(out.data(), 1, true, false).ok());
}

TEST(migration_refuses_maybe_pinned_pages_and_moves_the_rest) {
  auto mm = make_mm(Scheme::kHybrid);
  CHECK(mm.as->mmap(MmapArgs{0, 8, true, true, false}).ok());
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(3, 1, pin_flags(), out.data(), &done).ok());
  const uint64_t before = mm.as->translate(5).pfn;
  uint64_t moved = 0;
  CHECK(mm.as->migrate(0, 8, &moved).ok());
  CHECK_EQ(moved, uint64_t(7));
  CHECK_EQ(mm.as->translate(3).pfn, uint64_t(out[0]));
  CHECK(mm.as->translate(5).pfn != before);
  CHECK_EQ(mm.as->stat(MmStat::kMigrationRefusals), uint64_t(1));
  CHECK_EQ(mm.as->stat(MmStat::kMigrationFalsePositives), uint64_t(0));
  CHECK(mm.as->unpin_user_pages(out.data(), 1, false, false).ok());
}

TEST(longterm_pins_migrate_out_of_zone_movable) {
  auto mm = make_mm(Scheme::kSeparate, 8192, 4096, true, 4096);
  CHECK(mm.as->mmap(MmapArgs{0, 4, true, true, false}).ok());
  CHECK(mm.mem->is_movable(mm.as->translate(0).pfn));  // user memory lands in ZONE_MOVABLE
  std::vector<uint32_t> out(4);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(0, 4, pin_flags(true, true), out.data(), &done).ok());
  CHECK_EQ(done, uint64_t(4));
  for (uint32_t p : out) CHECK(!mm.mem->is_movable(p));
  CHECK_EQ(mm.as->stat(MmStat::kLongtermMigrations), uint64_t(4));
  CHECK(mm.as->unpin_user_pages(out.data(), done, true, false).ok());
}

TEST(unmapping_everything_returns_every_page) {
  auto mm = make_mm(Scheme::kWriteBias);
  CHECK(mm.as->mmap(MmapArgs{0, 2048, true, true, true}).ok());
  CHECK(mm.as->munmap(100, 3).ok());  // splits a PMD leaf
  CHECK(mm.as->translate(99).present && !mm.as->translate(99).huge);
  mm.as.reset();
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
}

TEST(a_walker_that_read_a_huge_leaf_never_grabs_past_a_reused_small_folio) {
  auto mm = make_mm(Scheme::kHybrid, 4096, 2048);
  CHECK(mm.as->mmap(MmapArgs{0, 512, true, true, true}).ok());
  const uint64_t head = mm.as->translate(0).pfn;
  uint64_t a = 0, b = 0;
  bool fired = false;
  mm.as->set_race_hook([&](RacePoint p, uint64_t v) {
    if (p != RacePoint::kBeforeGrab || v != 0 || fired) return;
    fired = true;
    CHECK(mm.as->munmap(0, 512).ok());  // the THP is freed; its pages come back as 4 KiB
    CHECK(mm.mem->alloc_folio(0, true, &a).ok());
    CHECK(mm.mem->alloc_folio(0, true, &b).ok());
  });
  std::vector<uint32_t> out(512);
  uint64_t done = 0;
  GupFlags f;
  f.fast_only = true;
  CHECK(mm.as->gup_fast(0, 512, f, out.data(), &done).ok());
  mm.as->set_race_hook(nullptr);
  CHECK(fired);
  CHECK_EQ(done, uint64_t(0));
  CHECK_EQ(a, head);
  CHECK_EQ(mm.mem->refcount(head + 1), 1);  // untouched by the stale 512-page grab
  CHECK_EQ(mm.mem->pincount(head + 1).value_or(-1), int64_t(0));
  bool freed = false;
  CHECK(mm.mem->put_page(b, 1, &freed).ok());
  CHECK(mm.mem->put_page(a, 1, &freed).ok());
}

TEST_TAGGED(a_stale_order_grab_never_lands_on_a_hybrid_pincount, "concurrency") {
  // A walker keeps grabbing through a stale PTE that names pfn 1, while the block is reused
  // as a pinned order-1 hybrid folio whose pincount lives in pfn 1's refcount slot.
  PageArrayConfig cfg;
  cfg.pages = 2;
  cfg.scheme = Scheme::kHybrid;
  cfg.populated = false;
  std::unique_ptr<PageArray> mem;
  CHECK(PageArray::create(cfg, &mem).ok());
  std::atomic<bool> stop{false};
  std::thread walker([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t h = 0;
      uint32_t o = 0;
      if (mem->try_grab_folio_fast<Scheme::kHybrid>(1, 1, true, false, &h, &o))
        mem->release_folio_refs<Scheme::kHybrid>(1, h, o, 1, true, false);  // recheck failed
    }
  });
  uint64_t bad = 0;
  for (int i = 0; i < 100000; ++i) {
    uint64_t head = 0;
    if (!mem->alloc_folio(1, false, &head).ok()) continue;  // the walker holds a page
    uint64_t pinned = 0;
    bad += !mem->pin_pages(PageSet::range(head, 1), PinFlags{}, &pinned).ok();
    bad += !mem->maybe_dma_pinned(head);
    bad += !mem->unpin_pages(PageSet::range(head, 1), PinFlags{}).ok();
    bool freed = false;
    bad += !mem->put_page(head, 1, &freed).ok();
  }
  stop = true;
  walker.join();
  CHECK_EQ(bad, uint64_t(0));
  CHECK_EQ(mem->free_pages(), uint64_t(2));
  CHECK_EQ(mem->refcount(1), 0);
}

TEST(put_pages_is_all_or_nothing_even_when_a_put_reached_zero) {
  auto mm = make_mm(Scheme::kBias);
  PageArray& mem = *mm.mem;
  uint64_t a = 0, b = 0;
  CHECK(mem.alloc_folio(0, false, &a).ok());
  CHECK(mem.alloc_folio(0, false, &b).ok());
  uint64_t pinned = 0;
  CHECK(mem.pin_pages(PageSet::range(b, 1), PinFlags{}, &pinned).ok());
  bool freed = false;
  CHECK(mem.put_page(b, 1, &freed).ok());  // b is now held by its pin alone
  const uint32_t list[] = {uint32_t(a), uint32_t(b)};
  const uint64_t free_before = mem.free_pages();
  CHECK(mem.put_pages(list, 2, -1).code == Code::kEPINNED);  // debug: b's put eats the pin
  CHECK_EQ(mem.refcount(a), 1);  // a's put (to zero) was undone, not freed
  CHECK_EQ(mem.free_pages(), free_before);
  CHECK(mem.put_pages(list, 1, -1).ok());
  CHECK_EQ(mem.free_pages(), free_before + 1);
  CHECK(mem.unpin_pages(PageSet::range(b, 1), PinFlags{}).ok());
}

TEST(a_read_pin_of_a_cow_shared_page_unshares_it_first) {
  auto mm = make_mm(Scheme::kHybrid);
  CHECK(mm.as->mmap(MmapArgs{0, 2, true, true, false}).ok());
  std::unique_ptr<AddressSpace> child;
  CHECK(mm.as->fork(&child).ok());
  const uint64_t shared = mm.as->translate(0).pfn;
  CHECK_EQ(child->translate(0).pfn, shared);
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK(mm.as->gup_fast(0, 1, pin_flags(false), out.data(), &done).ok());
  CHECK_EQ(mm.as->stat(MmStat::kSlowFallbacks), uint64_t(1));  // the fast path declined
  CHECK(out[0] != shared);                                      // the parent got its own copy
  CHECK_EQ(mm.as->translate(0).pfn, uint64_t(out[0]));
  CHECK(!mm.as->translate(0).writable);                         // ... still read-only
  CHECK(mm.as->touch(0, 1, true).ok());                         // exclusive now: reused
  CHECK_EQ(mm.as->translate(0).pfn, uint64_t(out[0]));
  CHECK(mm.as->unpin_user_pages(out.data(), 1, false, false).ok());
}

void stress_case(Scheme s, int64_t ms) {
  StressConfig cfg;
  cfg.scheme = s;
  cfg.duration_ms = ms;
  cfg.threads = 4;
  cfg.region_pages = 1024;
  StressReport r;
  const Status st = run_stress(cfg, &r);
  CHECK(st.ok());
  if (!r.balanced) fail(__FILE__, __LINE__, "stress: " + r.first_violation);
  CHECK(r.pin_calls > 0);
  CHECK_EQ(r.pin_acquired, r.pin_released);
}

TEST_TAGGED(stress_bias, "concurrency") { stress_case(Scheme::kBias, 300); }
TEST_TAGGED(stress_hybrid, "concurrency") { stress_case(Scheme::kHybrid, 300); }
TEST_TAGGED(stress_separate, "concurrency") { stress_case(Scheme::kSeparate, 300); }
TEST_TAGGED(stress_write_bias, "concurrency") { stress_case(Scheme::kWriteBias, 300); }

}  // namespace
}  // namespace pinlab::test
