// The mm layer: page table, faults, gup_fast and its slow path, fork's early COW,
// migration, shared (file-backed) mappings and zap (concurrency cases tagged for the
// ThreadSanitizer build). The stress harness's cases are in engines/stress_test.cpp.
#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"
#include "pages/gup_ops.h"

namespace pinlab::test {
namespace {

Mm make_mm(Scheme scheme, uint64_t pages = 8192, uint64_t vpages = 4096, bool debug = true,
           uint64_t movable = 0) {
  MmShape shape{pages, vpages, debug};
  shape.movable = movable;
  return make_test_mm(scheme, shape);
}

GupFlags pin_flags(bool write = false, bool longterm = false) {
  GupFlags f;
  f.write = write;
  f.longterm = longterm;
  return f;
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
    CHECK_EQ(mm.mem->refcount(out[0]), 1);  // the PMD mapping's one reference
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
  // Exclusive: mprotect makes it writable again at once (MM_CP_TRY_CHANGE_WRITABLE), although
  // its refcount is 1 + bias; the write then needs no fault.
  CHECK(mm.as->translate(0).writable);
  CHECK(mm.as->touch(0, 1, true).ok());
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

// check_put_pages answers as put_pages would, changing nothing; unmapping in between keeps its
// answer (the library's files ask it before the zaps that precede their puts).
TEST(check_put_pages_answers_as_put_pages_and_changes_nothing) {
  auto mm = make_mm(Scheme::kBias);
  PageArray& mem = *mm.mem;
  uint64_t a = 0, b = 0;
  CHECK(mem.alloc_folio(0, false, &a).ok());
  CHECK(mem.alloc_folio(0, false, &b).ok());
  const uint32_t list[] = {uint32_t(a), uint32_t(b), uint32_t(b)};
  const uint64_t free_before = mem.free_pages();
  CHECK(mem.check_put_pages(list, 2).ok());
  CHECK(mem.check_put_pages(list, 3).code == Code::kEINVAL);  // b's second put: below zero
  CHECK_EQ(mem.refcount(a), 1);
  CHECK_EQ(mem.refcount(b), 1);
  CHECK_EQ(mem.free_pages(), free_before);
  const uint32_t bad[] = {uint32_t(mem.pages())};
  CHECK(mem.check_put_pages(bad, 1).code == Code::kERANGE);
  // Mapped at vpage 0 (the mapping's reference): the owner's put is fine before and after the
  // unmap, and a second put would take the mapping's reference before it and go below 0 after.
  CHECK(mm.as->map_shared(0, list, 1, true).ok());
  const uint32_t twice[] = {uint32_t(a), uint32_t(a)};
  CHECK(mem.check_put_pages(list, 1).ok());
  CHECK(mem.check_put_pages(twice, 2).code == Code::kEBUSY);
  CHECK(mm.as->munmap(0, 1).ok());
  CHECK(mem.check_put_pages(list, 1).ok());
  CHECK(mem.check_put_pages(twice, 2).code == Code::kEINVAL);
  CHECK(mem.put_pages(list, 2, -1).ok());
  CHECK_EQ(mem.free_pages(), free_before + 2);
}

// check_put_pages_after_unpins checks the puts against the counts the unpins leave: a page held
// by a pin and a plain reference whose reference went behind the holder's back passes
// check_put_pages (the pin's references are still there) but is refused here, in every scheme,
// folio size and pin direction; with every reference in place it passes. Nothing changes.
TEST(check_put_pages_after_unpins_counts_what_the_unpins_release) {
  for (Scheme s : kAllSchemes) {
    for (const int shape : {0, 1, 2, 3, 4, 5, 6, 7}) {
      const bool huge = (shape & 1) != 0, write = (shape & 2) != 0, debug = (shape & 4) != 0;
      auto mm = make_mm(s, 8192, 4096, debug);
      PageArray& mem = *mm.mem;
      const int64_t count = huge ? 512 : 1;
      CHECK(mm.as->mmap(MmapArgs{0, count, true, true, huge}).ok());
      std::vector<uint32_t> pin(1);
      uint64_t done = 0;
      CHECK(mm.as->gup_fast(0, 1, pin_flags(write), pin.data(), &done).ok());
      CHECK(mem.get_page(pin[0], 1).ok());
      CHECK(mm.as->munmap(0, count).ok());  // the pin's and the get's references are the last
      CHECK(mem.check_put_pages_after_unpins(pin.data(), 1, pin.data(), 1, write).ok());
      bool freed = false;
      CHECK(mem.put_page(pin[0], 1, &freed).ok());  // the get, behind the holder's back
      const int32_t refs = mem.refcount(pin[0]);
      // Before the unpin it looks fine, but to debug mode, which sees the put eat a pin's reference.
      const Status alone = mem.check_put_pages(pin.data(), 1);
      CHECK(debug ? alone.code == Code::kEPINNED : alone.ok());
      CHECK(mem.check_put_pages_after_unpins(pin.data(), 1, pin.data(), 1, write).code == Code::kEINVAL);
      CHECK_EQ(mem.refcount(pin[0]), refs);
      const uint32_t out_of_range[] = {uint32_t(mem.pages())};
      CHECK(mem.check_put_pages_after_unpins(pin.data(), 1, out_of_range, 1, write).code == Code::kERANGE);
      CHECK(mem.get_page(pin[0], 1).ok());
      CHECK(mem.check_put_pages_after_unpins(pin.data(), 1, pin.data(), 1, write).ok());
      CHECK(mm.as->unpin_user_pages(pin.data(), 1, write, false).ok());
      CHECK(mem.put_page(pin[0], 1, &freed).ok());
      CHECK(freed);
    }
  }
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

// ---- shared (file-backed) mappings ----------------------------------------------------------

// A file's page cache as the TS layer builds it: folios of the normal zone, the file holding
// one reference each. `orders` lists the folios; the result lists every subpage in order.
std::vector<uint32_t> make_file(PageArray& mem, std::initializer_list<uint32_t> orders,
                                bool movable = false) {
  std::vector<uint32_t> pfns;
  for (uint32_t order : orders) {
    uint64_t head = 0;
    CHECK_OK(mem.alloc_folio(order, movable, &head));
    for (uint64_t k = 0; k < (uint64_t{1} << order); ++k) pfns.push_back(uint32_t(head + k));
  }
  return pfns;
}

// Drops the file's references (the TS layer does this when a file goes away).
void drop_file(PageArray& mem, const std::vector<uint32_t>& pfns) {
  for (size_t i = 0; i < pfns.size();) {
    const size_t folio = size_t{1} << mem.folio_order(pfns[i]);  // before the put frees it
    bool freed = false;
    CHECK_OK(mem.put_page(pfns[i], 1, &freed));
    i += folio;
  }
}

TEST(map_shared_takes_one_reference_per_pte_and_translates_as_shared) {
  auto mm = make_mm(Scheme::kHybrid);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 2, 0});  // 1 + 4 + 1 pages
  // shmem (no write notification): mapped writable at once, as a dirty-tracked file is not.
  CHECK_OK(mm.as->map_shared(10, file.data(), file.size(), true, false));
  CHECK_EQ(mm.mem->refcount(file[0]), 2);      // the file's and the PTE's
  CHECK_EQ(mm.mem->refcount(file[1]), 1 + 4);  // a PTE-mapped large folio: one per PTE
  CHECK_EQ(mm.mem->refcount(file[5]), 2);
  for (uint64_t i = 0; i < file.size(); ++i) {
    const Translation tr = mm.as->translate(10 + i);
    CHECK(tr.present && tr.shared && tr.writable && !tr.huge && !tr.special);
    CHECK_EQ(tr.pfn, uint64_t(file[i]));
  }
  CHECK(!mm.as->translate(9).present && !mm.as->translate(16).present);
  CHECK_EQ(mm.as->regions(), uint64_t(1));
  CHECK_EQ(mm.as->mapped_pages(), uint64_t(6));
  CHECK_EQ(mm.as->stat(MmStat::kFaults), uint64_t(6));
  CHECK_OK(mm.as->mmap(MmapArgs{100, 1, true, true, false}));  // anonymous: not shared
  CHECK(!mm.as->translate(100).shared);
  CHECK_OK(mm.as->map_shared(200, file.data(), 1, false));     // read-only
  CHECK(mm.as->translate(200).shared && !mm.as->translate(200).writable);
  CHECK_EQ(mm.mem->refcount(file[0]), 3);
  CHECK_OK(mm.as->munmap(10, 6));  // munmap puts the references, the file's stay
  CHECK_OK(mm.as->munmap(200, 1));
  CHECK_EQ(mm.mem->refcount(file[0]), 1);
  CHECK_EQ(mm.mem->refcount(file[1]), 1);
  drop_file(*mm.mem, file);
  mm.as.reset();
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
}

TEST(two_address_spaces_mapping_the_same_pages_see_the_same_pfns) {
  auto mm = make_mm(Scheme::kBias);
  std::unique_ptr<AddressSpace> other;
  CHECK_OK(AddressSpace::create(mm.mem, 4096, &other));
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 1});
  CHECK_OK(mm.as->map_shared(0, file.data(), file.size(), true));
  CHECK_OK(other->map_shared(700, file.data(), file.size(), true));
  CHECK_OK(mm.as->touch(0, 4, true));  // a write in one: no copy, both still see the page
  for (uint64_t i = 0; i < file.size(); ++i) {
    CHECK_EQ(mm.as->translate(i).pfn, uint64_t(file[i]));
    CHECK_EQ(other->translate(700 + i).pfn, uint64_t(file[i]));
  }
  CHECK_EQ(mm.mem->refcount(file[0]), 3);
  CHECK_EQ(mm.mem->refcount(file[2]), 1 + 2 + 2);
  CHECK_EQ(mm.as->stat(MmStat::kCowCopies) + other->stat(MmStat::kCowCopies), uint64_t(0));
  other.reset();  // its destructor puts its references
  CHECK_EQ(mm.mem->refcount(file[0]), 2);
  mm.as.reset();
  drop_file(*mm.mem, file);
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
}

TEST(a_write_to_a_shared_page_never_copies_even_after_mprotect) {
  auto mm = make_mm(Scheme::kSeparate);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0});
  CHECK_OK(mm.as->map_shared(0, file.data(), 2, true));
  CHECK_OK(mm.as->touch(0, 2, true));
  CHECK_OK(mm.as->touch(0, 2, false));
  CHECK_OK(mm.as->mprotect(0, 2, false));
  CHECK(!mm.as->translate(0).writable);
  CHECK_CODE(mm.as->touch(0, 1, true), Code::kEFAULT);  // read-only region
  CHECK_OK(mm.as->mprotect(0, 2, true));
  CHECK(!mm.as->translate(0).writable);  // until a write fault
  CHECK_OK(mm.as->touch(0, 1, true));     // sets the writable bit in place
  const Translation tr = mm.as->translate(0);
  CHECK(tr.writable && tr.shared);
  CHECK_EQ(tr.pfn, uint64_t(file[0]));
  CHECK(!mm.as->translate(1).writable);
  CHECK_EQ(mm.as->stat(MmStat::kCowCopies), uint64_t(0));
  CHECK_EQ(mm.as->stat(MmStat::kCowReuses), uint64_t(0));
  CHECK_EQ(mm.mem->refcount(file[0]), 2);
}

TEST(pins_of_shared_pages_pin_the_page_cache_page_itself) {
  for (Scheme s : kAllSchemes) {
    for (bool slow : {false, true}) {
      for (bool write : {false, true}) {
        auto mm = make_mm(s);
        // Mapped twice (a second mm), so an anonymous page would look COW-shared.
        std::unique_ptr<AddressSpace> other;
        CHECK_OK(AddressSpace::create(mm.mem, 4096, &other));
        const std::vector<uint32_t> file = make_file(*mm.mem, {0, 2, 0});
        const auto n = uint64_t(file.size());
        CHECK_OK(mm.as->map_shared(0, file.data(), n, true, false));
        CHECK_OK(other->map_shared(0, file.data(), n, true, false));
        std::vector<uint32_t> out(n);
        uint64_t done = 0;
        const GupFlags f = pin_flags(write);
        CHECK_OK(slow ? mm.as->gup_slow(0, int64_t(n), f, out.data(), &done)
                      : mm.as->gup_fast(0, int64_t(n), f, out.data(), &done));
        CHECK_EQ(done, n);
        CHECK(out == file);
        if (!slow) CHECK_EQ(mm.as->stat(MmStat::kSlowFallbacks), uint64_t(0));
        CHECK_EQ(mm.as->stat(MmStat::kCowCopies), uint64_t(0));
        CHECK_EQ(mm.as->stat(MmStat::kCowReuses), uint64_t(0));  // nothing unshared
        for (uint64_t i = 0; i < n; ++i) {
          CHECK_EQ(mm.as->translate(i).pfn, uint64_t(file[i]));
          CHECK(mm.as->translate(i).writable);  // not made exclusive, not write-protected
        }
        CHECK_EQ(mm.mem->pincount(file[0]).value_or(-1), int64_t(1));  // debug: exact
        CHECK_EQ(mm.mem->pincount(file[1]).value_or(-1), int64_t(4));
        if (write || s != Scheme::kWriteBias) CHECK(mm.mem->maybe_dma_pinned(file[0]));
        CHECK_OK(mm.as->unpin_user_pages(out.data(), done, write, false));
        CHECK_EQ(mm.mem->refcount(file[0]), 3);
        CHECK_EQ(mm.mem->refcount(file[1]), 1 + 4 + 4);
        CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
      }
    }
  }
}

TEST(a_write_pin_needs_a_writable_shared_entry) {
  auto mm = make_mm(Scheme::kHybrid);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0});
  CHECK_OK(mm.as->map_shared(0, file.data(), 1, false));
  CHECK_OK(mm.as->map_shared(1, file.data() + 1, 1, true));
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK_CODE(mm.as->gup_fast(0, 1, pin_flags(true), out.data(), &done), Code::kEFAULT);
  CHECK_OK(mm.as->gup_fast(0, 1, pin_flags(false), out.data(), &done));  // a read pin is fine
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, false, false));
  CHECK_OK(mm.as->mprotect(1, 1, false));
  CHECK_OK(mm.as->mprotect(1, 1, true));
  // The entry is read-only: the fast path declines, the slow path's write fault sets the bit.
  const uint64_t fallbacks = mm.as->stat(MmStat::kSlowFallbacks);
  CHECK_OK(mm.as->gup_fast(1, 1, pin_flags(true), out.data(), &done));
  CHECK_EQ(done, uint64_t(1));
  CHECK_EQ(out[0], file[1]);
  CHECK_EQ(mm.as->stat(MmStat::kSlowFallbacks), fallbacks + 1);
  CHECK(mm.as->translate(1).writable);
  CHECK_EQ(mm.as->stat(MmStat::kCowCopies), uint64_t(0));
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
}

TEST(a_longterm_pin_of_a_movable_shared_page_is_refused_not_migrated) {
  auto mm = make_mm(Scheme::kSeparate, 8192, 4096, true, 4096);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0}, true);
  CHECK(mm.mem->is_movable(file[0]));
  CHECK_OK(mm.as->map_shared(0, file.data(), 1, true, false));  // shmem: write pins allowed
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK_CODE(mm.as->gup_fast(0, 1, pin_flags(true, true), out.data(), &done), Code::kEBUSY);
  CHECK_CODE(mm.as->gup_slow(0, 1, pin_flags(false, true), out.data(), &done), Code::kEBUSY);
  CHECK_EQ(mm.as->translate(0).pfn, uint64_t(file[0]));
  CHECK_EQ(mm.as->stat(MmStat::kLongtermMigrations), uint64_t(0));
  CHECK_EQ(mm.mem->refcount(file[0]), 2);
  CHECK_EQ(mm.mem->pincount(file[0]).value_or(-1), int64_t(0));
  // A normal-zone file page pins long-term as it is.
  const std::vector<uint32_t> normal = make_file(*mm.mem, {0});
  CHECK_OK(mm.as->map_shared(1, normal.data(), 1, true, false));
  CHECK_OK(mm.as->gup_fast(1, 1, pin_flags(true, true), out.data(), &done));
  CHECK_EQ(out[0], normal[0]);
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
}

TEST(fork_shares_shared_mappings_without_cow_or_early_copies) {
  auto mm = make_mm(Scheme::kBias);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 1});
  CHECK_OK(mm.as->map_shared(0, file.data(), file.size(), true, false));
  CHECK_OK(mm.as->mmap(MmapArgs{100, 1, true, true, false}));
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK_OK(mm.as->gup_fast(0, 1, pin_flags(true), out.data(), &done));  // maybe pinned, mm pinned
  std::unique_ptr<AddressSpace> child;
  CHECK_OK(mm.as->fork(&child));
  for (uint64_t i = 0; i < file.size(); ++i) {
    const Translation p = mm.as->translate(i), c = child->translate(i);
    CHECK_EQ(c.pfn, uint64_t(file[i]));
    CHECK_EQ(p.pfn, uint64_t(file[i]));
    CHECK(c.shared && c.writable && p.writable);  // never write-protected
  }
  CHECK(!mm.as->translate(100).writable);  // the anonymous page is COW-shared as before
  CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t(0));
  CHECK_EQ(mm.mem->refcount(file[1]), 3);
  CHECK_EQ(mm.mem->refcount(file[2]), 1 + 2 + 2);
  CHECK_OK(child->touch(0, 4, true));  // the child writes the same pages
  CHECK_EQ(child->translate(0).pfn, uint64_t(file[0]));
  CHECK_EQ(child->stat(MmStat::kCowCopies), uint64_t(0));
  CHECK_OK(child->zap(1, 1));  // the child's region is shared too: a hole is SIGBUS
  const Status st = child->touch(1, 1, false);
  CHECK_CODE(st, Code::kEFAULT);
  CHECK(st.reason == Reason::kSharedNoPage);
  CHECK_EQ(mm.as->translate(1).pfn, uint64_t(file[1]));  // the parent still maps it
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
}

TEST(zap_keeps_the_region_and_a_later_fault_is_sigbus) {
  auto mm = make_mm(Scheme::kWriteBias);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 0, 0});
  CHECK_OK(mm.as->map_shared(0, file.data(), 4, true));
  CHECK_OK(mm.as->zap(1, 2));
  CHECK_EQ(mm.as->regions(), uint64_t(1));
  CHECK_EQ(mm.as->mapped_pages(), uint64_t(2));
  CHECK(!mm.as->translate(1).present && !mm.as->translate(2).present);
  CHECK_EQ(mm.mem->refcount(file[1]), 1);  // the file's reference alone
  CHECK_EQ(mm.mem->refcount(file[0]), 2);
  CHECK_OK(mm.as->zap(1, 2));  // holes are fine
  CHECK_OK(mm.as->touch(0, 1, true));
  const Status st = mm.as->touch(1, 1, false);
  CHECK_CODE(st, Code::kEFAULT);
  CHECK(st.reason == Reason::kSharedNoPage);
  CHECK(describe(st).find("virtual page 1 of a shared mapping has no page") != std::string::npos);
  std::vector<uint32_t> out(4);
  uint64_t done = 0;
  CHECK_CODE(mm.as->gup_fast(2, 1, pin_flags(), out.data(), &done), Code::kEFAULT);
  CHECK_OK(mm.as->gup_fast(0, 4, pin_flags(), out.data(), &done));  // partial: up to the hole
  CHECK_EQ(done, uint64_t(1));
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, false, false));
  CHECK_CODE(mm.as->zap(4000, 200), Code::kEINVAL);  // range errors as munmap
  CHECK_CODE(mm.as->zap(0, 0), Code::kEINVAL);
  CHECK_OK(mm.as->zap(2000, 10));  // no region there: nothing to do
  CHECK_OK(mm.as->munmap(0, 4));
  CHECK_EQ(mm.as->regions(), uint64_t(0));
  CHECK_EQ(mm.mem->refcount(file[0]), 1);
}

TEST(zap_of_anonymous_memory_splits_a_partly_covered_leaf_and_refaults) {
  auto mm = make_mm(Scheme::kHybrid);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
  const uint64_t head = mm.as->translate(0).pfn;
  CHECK(mm.as->translate(0).huge);
  CHECK_OK(mm.as->zap(10, 5));
  CHECK(mm.as->translate(9).present && !mm.as->translate(9).huge);
  CHECK(!mm.as->translate(10).present);
  CHECK_EQ(mm.mem->refcount(head), 512 - 5);
  CHECK_EQ(mm.as->regions(), uint64_t(1));
  CHECK_OK(mm.as->touch(10, 1, false));  // anonymous: a hole refaults (the zero page)
  CHECK(mm.as->translate(10).special);
  CHECK_OK(mm.as->zap(0, 512));
  CHECK_EQ(mm.as->mapped_pages(), uint64_t(0));
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - 1);  // only the zero page stays
}

TEST(zap_of_a_pinned_shared_page_drops_only_the_mapping_reference) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s);
    const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0});
    CHECK_OK(mm.as->map_shared(0, file.data(), 2, true));
    std::vector<uint32_t> out(1);
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(0, 1, pin_flags(true), out.data(), &done));
    const int32_t pinned = mm.mem->refcount(file[0]);
    CHECK_OK(mm.as->zap(0, 2));  // truncate: the mappings go
    CHECK_EQ(mm.mem->refcount(file[0]), pinned - 1);
    const uint64_t free_before = mm.mem->free_pages();
    drop_file(*mm.mem, file);  // ... and the page cache lets go
    CHECK_EQ(mm.mem->free_pages(), free_before + 1);  // the unpinned page only
    CHECK(mm.mem->refcount(file[0]) > 0);             // the pinned one stays allocated
    CHECK_EQ(mm.mem->pincount(file[0]).value_or(-1), int64_t(1));
    CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
    CHECK_EQ(mm.mem->refcount(file[0]), 0);  // freed by the unpin
    CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
  }
}

TEST(a_walker_that_grabbed_a_shared_page_lets_go_when_zap_clears_it) {
  auto mm = make_mm(Scheme::kBias);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0});
  CHECK_OK(mm.as->map_shared(0, file.data(), 1, true, false));
  bool fired = false;
  mm.as->set_race_hook([&](RacePoint p, uint64_t) {
    if (p != RacePoint::kBeforeRecheck || fired) return;
    fired = true;
    CHECK_OK(mm.as->zap(0, 1));  // clear, then put: the walker's grab keeps the page alive
    CHECK(mm.mem->refcount(file[0]) > 1);
  });
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  GupFlags f = pin_flags(true);
  f.fast_only = true;
  CHECK_OK(mm.as->gup_fast(0, 1, f, out.data(), &done));
  mm.as->set_race_hook(nullptr);
  CHECK(fired);
  CHECK_EQ(done, uint64_t(0));
  CHECK_EQ(mm.as->stat(MmStat::kRecheckFailures), uint64_t(1));
  CHECK_EQ(mm.mem->refcount(file[0]), 1);  // the file's alone: no pin, no leaked grab
  CHECK_EQ(mm.mem->pincount(file[0]).value_or(-1), int64_t(0));
}

TEST(migrate_compact_and_longterm_never_move_shared_pages) {
  auto mm = make_mm(Scheme::kHybrid, 1024, 512);
  // Free pages below the file's page, so compaction would want to move it down.
  uint64_t low0 = 0, low1 = 0;
  CHECK_OK(mm.mem->alloc_folio(0, false, &low0));
  CHECK_OK(mm.mem->alloc_folio(0, false, &low1));
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0});
  bool freed = false;
  CHECK_OK(mm.mem->put_page(low0, 1, &freed));
  CHECK_OK(mm.mem->put_page(low1, 1, &freed));
  CHECK_OK(mm.as->map_shared(0, file.data(), 2, true));
  CHECK_OK(mm.as->mmap(MmapArgs{8, 2, true, true, false}));
  uint64_t moved = 0;
  CHECK_OK(mm.as->migrate(0, 10, &moved));
  CHECK_EQ(moved, uint64_t(2));  // the anonymous pages
  CHECK_EQ(mm.as->stat(MmStat::kMigrationBusy), uint64_t(2));  // the shared ones
  CHECK_EQ(mm.as->stat(MmStat::kMigrationRefusals), uint64_t(0));
  CHECK_EQ(mm.as->translate(0).pfn, uint64_t(file[0]));
  CHECK_EQ(mm.as->translate(1).pfn, uint64_t(file[1]));
  CHECK_OK(mm.as->compact(&moved));
  CHECK_EQ(mm.as->translate(0).pfn, uint64_t(file[0]));
  CHECK_EQ(mm.as->translate(1).pfn, uint64_t(file[1]));
  CHECK_EQ(mm.as->stat(MmStat::kMigrationBusy), uint64_t(2));  // compact skipped them
  CHECK_EQ(mm.mem->refcount(file[0]), 2);
}

TEST(map_shared_is_all_or_nothing) {
  auto mm = make_mm(Scheme::kSeparate);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 2});
  uint64_t gone = 0;
  CHECK_OK(mm.mem->alloc_folio(0, false, &gone));
  bool freed = false;
  CHECK_OK(mm.mem->put_page(gone, 1, &freed));  // a free page
  std::vector<uint32_t> list = {file[0], file[1], file[2], uint32_t(gone), file[3]};
  Status st = mm.as->map_shared(0, list.data(), list.size(), true);
  CHECK_CODE(st, Code::kEFREE);
  CHECK_EQ(st.value, int64_t(gone));
  CHECK_EQ(mm.mem->refcount(file[0]), 1);  // every reference taken was given back
  CHECK_EQ(mm.mem->refcount(file[1]), 1);
  CHECK_EQ(mm.mem->refcount(gone), 0);
  CHECK_EQ(mm.as->regions(), uint64_t(0));
  CHECK(!mm.as->translate(0).present);
  list[3] = 9000;  // >= pages
  st = mm.as->map_shared(0, list.data(), list.size(), true);
  CHECK_CODE(st, Code::kERANGE);
  CHECK_EQ(st.value, int64_t(9000));
  CHECK_CODE(mm.as->map_shared(0, list.data(), 0, true), Code::kEINVAL);     // empty
  CHECK_CODE(mm.as->map_shared(4094, file.data(), 5, true), Code::kEINVAL);  // past the end
  CHECK_CODE(mm.as->map_shared(-1, file.data(), 1, true), Code::kEINVAL);
  CHECK_OK(mm.as->mmap(MmapArgs{10, 4, true, false, false}));
  CHECK_CODE(mm.as->map_shared(8, file.data(), 5, true), Code::kEINVAL);  // overlap
  uint64_t zero = 0;
  CHECK_OK(mm.mem->zero_page(&zero));
  const uint32_t z[] = {file[0], uint32_t(zero)};
  CHECK_CODE(mm.as->map_shared(100, z, 2, true), Code::kEINVAL);
  CHECK_EQ(mm.mem->refcount(file[0]), 1);
  CHECK_EQ(mm.as->regions(), uint64_t(1));
  CHECK_EQ(mm.as->mapped_pages(), uint64_t(0));
}

TEST(early_cow_false_positive_not_counted_when_the_copy_fails) {
  auto mm = make_mm(Scheme::kBias, 64, 1024);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 2, true, true, false}));
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK_OK(mm.as->gup_fast(1, 1, pin_flags(true), out.data(), &done));  // the mm has pinned
  CHECK_OK(mm.mem->get_page(mm.as->translate(0).pfn, 1024));  // maybe pinned, no real pin
  std::vector<uint64_t> hog;
  for (uint64_t p = 0; mm.mem->alloc_folio(0, false, &p).ok();) hog.push_back(p);
  std::unique_ptr<AddressSpace> child;
  CHECK_CODE(mm.as->fork(&child), Code::kENOMEM);
  CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t(0));
  CHECK_EQ(mm.as->stat(MmStat::kEarlyCowFalsePositives), uint64_t(0));
}

TEST(set_dirty_refuses_the_zero_page) {
  auto mm = make_mm(Scheme::kHybrid);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 1, true, false, false}));
  CHECK_OK(mm.as->touch(0, 1, false));  // a read fault maps the zero page
  const uint64_t z = mm.as->translate(0).pfn;
  CHECK(mm.mem->is_zero_page(z));
  CHECK_CODE(mm.mem->set_dirty(z), Code::kEINVAL);
  CHECK(!mm.mem->is_dirty(z));
}

TEST(check_can_map_refuses_what_mmap_would_and_changes_nothing) {
  auto mm = make_mm(Scheme::kHybrid);
  CHECK_OK(mm.as->check_can_map(0, 16));
  CHECK_OK(mm.as->mmap(MmapArgs{10, 4, true, false, false}));
  CHECK_CODE(mm.as->check_can_map(8, 4), Code::kEINVAL);    // overlap
  CHECK_CODE(mm.as->check_can_map(0, 0), Code::kEINVAL);    // empty
  CHECK_CODE(mm.as->check_can_map(4094, 5), Code::kEINVAL); // past the end
  CHECK_OK(mm.as->check_can_map(14, 4));                    // right after the region
  CHECK_EQ(mm.as->regions(), uint64_t(1));
}

TEST(set_dirty_marks_a_live_folio_and_refuses_a_free_one) {
  auto mm = make_mm(Scheme::kBias);
  uint64_t head = 0;
  CHECK_OK(mm.mem->alloc_folio(2, false, &head));
  CHECK(!mm.mem->is_dirty(head));
  CHECK_OK(mm.mem->set_dirty(head + 3));
  CHECK(mm.mem->is_dirty(head));
  bool freed = false;
  CHECK_OK(mm.mem->put_page(head, 1, &freed));
  CHECK(freed);
  CHECK_CODE(mm.mem->set_dirty(head), Code::kEFREE);
  CHECK_CODE(mm.mem->set_dirty(mm.mem->pages()), Code::kERANGE);
}

// A pinner thread takes gup_fast pins (read and write, fast-only or not) of the shared mapping
// of `file` at virtual page 0 and checks every PFN it is handed, while this thread runs
// `mutate(round, bad)` for at least 300 rounds and on until the pinner has really run beside
// them. Every pin must name the file's page and be released.
void race_pins_of_shared_pages(Mm& mm, const std::vector<uint32_t>& file,
                               const std::function<void(int, std::atomic<uint64_t>&)>& mutate) {
  const auto n = int64_t(file.size());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, calls{0};
  std::thread pinner([&] {
    std::vector<uint32_t> out(file.size());
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      uint64_t done = 0;
      GupFlags f = pin_flags(i & 1);
      f.fast_only = (i & 2) != 0;
      if (!mm.as->gup_fast(0, n, f, out.data(), &done).ok()) continue;  // e.g. a hole at 0
      for (uint64_t k = 0; k < done; ++k) bad += out[k] != file[k];
      if (!mm.as->unpin_user_pages(out.data(), done, f.write, false).ok()) ++bad;
      calls.fetch_add(1, std::memory_order_relaxed);
    }
  });
  // relaxed: a progress count, nothing is published through it.
  auto pinner_behind = [&] { return calls.load(std::memory_order_relaxed) < 300; };
  for (int round = 0; round < 300 || (pinner_behind() && round < 1000000); ++round) mutate(round, bad);
  stop = true;
  pinner.join();
  CHECK_EQ(bad.load(), uint64_t(0));
  CHECK(calls.load() >= 300);
}

TEST_TAGGED(gup_fast_racing_zap_of_shared_pages_balances, "concurrency") {
  for (Scheme s : {Scheme::kBias, Scheme::kHybrid}) {
    auto mm = make_mm(s, 4096, 2048);
    const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 0, 0, 2, 2});
    const auto n = int64_t(file.size());
    CHECK_OK(mm.as->map_shared(0, file.data(), file.size(), true));
    race_pins_of_shared_pages(mm, file, [&](int round, std::atomic<uint64_t>&) {
      CHECK_OK(mm.as->zap(round % n, 1 + round % 3));
      if (round % 4 == 3) {  // truncate and map the file again
        CHECK_OK(mm.as->munmap(0, n));
        CHECK_OK(mm.as->map_shared(0, file.data(), file.size(), true));
      }
    });
    CHECK_OK(mm.as->munmap(0, n));
    CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
    for (uint32_t p : file) CHECK_EQ(mm.mem->refcount(p), 1);  // the file's alone
    for (uint32_t p : file) CHECK_EQ(mm.mem->pincount(p).value_or(-1), int64_t(0));
  }
}

// ---- shared mappings: review cases (fork error path, split regions, races) -----------------

TEST(fork_failing_mid_way_gives_back_the_shared_references_it_took) {
  auto mm = make_mm(Scheme::kBias, 64, 1024);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 1});
  CHECK_OK(mm.as->map_shared(0, file.data(), file.size(), true, false));  // PTEs 0..3, forked first
  CHECK_OK(mm.as->mmap(MmapArgs{600, 1, true, true, false}));       // a later PMD
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK_OK(mm.as->gup_fast(600, 1, pin_flags(true), out.data(), &done));  // early COW due
  std::vector<uint64_t> hog;  // no page left for the early copy: ENOMEM after the shared PTEs
  for (uint64_t p = 0; mm.mem->alloc_folio(0, false, &p).ok();) hog.push_back(p);
  std::unique_ptr<AddressSpace> child;
  CHECK_CODE(mm.as->fork(&child), Code::kENOMEM);
  CHECK(child == nullptr);
  CHECK_EQ(mm.mem->refcount(file[0]), 2);      // the file's and the parent's PTE
  CHECK_EQ(mm.mem->refcount(file[2]), 1 + 2);  // order 1: one per PTE
  for (uint64_t i = 0; i < file.size(); ++i) {
    const Translation tr = mm.as->translate(i);
    CHECK(tr.shared && tr.writable);
    CHECK_EQ(tr.pfn, uint64_t(file[i]));
  }
  CHECK(mm.as->translate(600).writable);  // the pinned page was not write-protected
  CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t(0));
  for (uint64_t p : hog) {
    bool freed = false;
    CHECK_OK(mm.mem->put_page(p, 1, &freed));
  }
  CHECK_OK(mm.as->fork(&child));  // and with memory it works
  CHECK_EQ(mm.mem->refcount(file[0]), 3);
  child.reset();
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
  mm.as.reset();
  drop_file(*mm.mem, file);
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
}

TEST(regions_split_by_munmap_mprotect_and_fork_stay_shared) {
  auto mm = make_mm(Scheme::kHybrid);
  const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 0, 0, 0, 0, 0, 0});
  CHECK_OK(mm.as->map_shared(0, file.data(), 8, true));
  CHECK_OK(mm.as->munmap(3, 2));     // [0,3) and [5,8)
  CHECK_OK(mm.as->mprotect(1, 1, false));  // [0,1) [1,2) [2,3) [5,8)
  CHECK_EQ(mm.as->regions(), uint64_t(4));
  CHECK_OK(mm.as->zap(0, 8));
  std::unique_ptr<AddressSpace> child;
  CHECK_OK(mm.as->fork(&child));
  for (AddressSpace* as : {mm.as.get(), child.get()}) {
    for (int64_t v : {0, 1, 2, 5, 7}) {  // every piece is still a shared region: SIGBUS
      const Status st = as->touch(v, 1, false);
      CHECK_CODE(st, Code::kEFAULT);
      CHECK(st.reason == Reason::kSharedNoPage);
      CHECK(!as->translate(uint64_t(v)).present);  // no anonymous page faulted in
    }
    CHECK_CODE(as->touch(3, 1, false), Code::kEFAULT);  // the munmapped hole
  }
  CHECK_EQ(mm.as->stat(MmStat::kFaults), uint64_t(8));  // map_shared's alone
  child.reset();
  mm.as.reset();
  for (uint32_t p : file) CHECK_EQ(mm.mem->refcount(p), 1);
}

TEST_TAGGED(gup_fast_pins_of_shared_pages_racing_fork_and_mprotect_balance, "concurrency") {
  for (Scheme s : {Scheme::kBias, Scheme::kHybrid, Scheme::kWriteBias}) {
    auto mm = make_mm(s, 4096, 2048);
    const std::vector<uint32_t> file = make_file(*mm.mem, {0, 0, 2, 0, 1});
    const auto n = int64_t(file.size());
    CHECK_OK(mm.as->map_shared(0, file.data(), file.size(), true));
    race_pins_of_shared_pages(mm, file, [&](int round, std::atomic<uint64_t>& bad) {
      if (round % 3 == 0) {
        std::unique_ptr<AddressSpace> child;
        CHECK_OK(mm.as->fork(&child));
        for (int64_t v = 0; v < n; ++v) bad += child->translate(uint64_t(v)).pfn != file[size_t(v)];
      } else {
        CHECK_OK(mm.as->mprotect(round % (n - 1), 1 + round % 2, round % 3 == 2));
        if (round % 5 == 0) CHECK_OK(mm.as->mprotect(0, n, true));
      }
    });
    for (int64_t v = 0; v < n; ++v) CHECK(mm.as->translate(uint64_t(v)).shared);
    CHECK_EQ(mm.as->stat(MmStat::kCowCopies) + mm.as->stat(MmStat::kEarlyCowCopies), uint64_t(0));
    CHECK_OK(mm.as->munmap(0, n));
    CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
    for (uint32_t p : file) CHECK_EQ(mm.mem->refcount(p), 1);
    for (uint32_t p : file) CHECK_EQ(mm.mem->pincount(p).value_or(-1), int64_t(0));
  }
}

}  // namespace
}  // namespace pinlab::test
