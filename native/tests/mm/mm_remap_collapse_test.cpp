// Issue 13: mremap (move, grow, shrink, MREMAP_FIXED, MREMAP_DONTUNMAP) and collapse
// (MADV_COLLAPSE, khugepaged), with gup_fast racing both (race hooks; the "concurrency" cases
// also under ThreadSanitizer, with a history check of gup_fast against mremap).
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

Mm make_mm(Scheme scheme, bool debug = true, uint64_t pages = 8192, uint64_t vpages = 4096) {
  Mm mm = make_test_mm(scheme, MmShape{pages, vpages, debug});
  return mm;
}

std::vector<uint64_t> pfns_of(const AddressSpace& as, uint64_t start, uint64_t n) {
  std::vector<uint64_t> out;
  for (uint64_t v = start; v < start + n; ++v) {
    const Translation tr = as.translate(v);
    out.push_back(tr.present ? tr.pfn : ~uint64_t{0});
  }
  return out;
}

// Every page back in the allocator once the address space is gone (the zero page aside).
void check_all_free(Mm& mm) {
  CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
  mm.as.reset();
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - (mm.mem->zero_pfn() >= 0 ? 1u : 0u));
}

MremapArgs move_to(int64_t start, int64_t count, int64_t to) {
  MremapArgs a;
  a.start = start;
  a.count = count;
  a.new_count = count;
  a.new_start = to;
  a.may_move = true;
  a.fixed = true;
  return a;
}

TEST(mremap_moves_pages_and_pins_stay_valid) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 64, true, true, false}));
    GupFlags f;
    f.write = true;
    std::vector<uint32_t> pinned(16);
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(8, 16, f, pinned.data(), &done));
    CHECK_EQ(done, uint64_t{16});
    const std::vector<uint64_t> before = pfns_of(*mm.as, 0, 64);
    const uint64_t refs = uint64_t(mm.mem->refcount(pinned[0]));
    uint64_t at = 0;
    CHECK_OK(mm.as->mremap(move_to(0, 64, 1000), &at));
    CHECK_EQ(at, uint64_t{1000});
    CHECK(pfns_of(*mm.as, 1000, 64) == before);          // the same pages, moved
    CHECK(!mm.as->translate(0).present);                   // gone from the old place
    CHECK_EQ(uint64_t(mm.mem->refcount(pinned[0])), refs);  // no reference changed
    CHECK(mm.mem->maybe_dma_pinned(pinned[0]));
    CHECK_EQ(mm.as->stat(MmStat::kRemapMovedPages), uint64_t{64});
    // A write fault at the new place reuses the exclusive pinned page: the pin sees it.
    CHECK_OK(mm.as->mprotect(1000, 64, false));
    CHECK_OK(mm.as->mprotect(1000, 64, true));
    CHECK_OK(mm.as->touch(1008, 16, true));
    CHECK(pfns_of(*mm.as, 1008, 16) == std::vector<uint64_t>(pinned.begin(), pinned.end()));
    CHECK_OK(mm.as->unpin_user_pages(pinned.data(), 16, true, false));
    check_all_free(mm);
  }
}

TEST(mremap_moves_a_thp_whole_when_aligned_and_splits_it_otherwise) {
  Mm mm = make_mm(Scheme::kHybrid);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 1024, true, true, true}));  // two PMD leaves
  CHECK(mm.as->translate(0).huge);
  const std::vector<uint64_t> before = pfns_of(*mm.as, 0, 1024);
  uint64_t at = 0;
  CHECK_OK(mm.as->mremap(move_to(0, 512, 2048), &at));  // aligned: the leaf moves whole
  CHECK(mm.as->translate(2048).huge);
  CHECK(pfns_of(*mm.as, 2048, 512) == std::vector<uint64_t>(before.begin(), before.begin() + 512));
  CHECK_OK(mm.as->mremap(move_to(512, 512, 3000), &at));  // misaligned: split into PTEs first
  CHECK(!mm.as->translate(3000).huge);
  CHECK(mm.as->translate(3000).present);
  CHECK(pfns_of(*mm.as, 3000, 512) == std::vector<uint64_t>(before.begin() + 512, before.end()));
  // Half a THP moved (the partially mremap()'ed THP of cow.c): both halves map the one folio.
  CHECK_OK(mm.as->mremap(move_to(2048 + 256, 256, 1024), &at));
  CHECK(!mm.as->translate(2048).huge);
  CHECK_EQ(mm.as->translate(1024).pfn, before[256]);
  CHECK_EQ(mm.mem->folio_head(mm.as->translate(1024).pfn), mm.mem->folio_head(before[0]));
  check_all_free(mm);
}

TEST(mremap_grows_in_place_moves_or_refuses_and_shrinks) {
  Mm mm = make_mm(Scheme::kBias);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 16, true, true, false}));
  MremapArgs a;
  a.start = 0;
  a.count = 16;
  a.new_count = 32;
  uint64_t at = 99;
  CHECK_OK(mm.as->mremap(a, &at));  // the pages after it are free: grows in place
  CHECK_EQ(at, uint64_t{0});
  CHECK_EQ(mm.as->regions(), uint64_t{1});
  CHECK_OK(mm.as->touch(31, 1, true));
  CHECK_OK(mm.as->mmap(MmapArgs{32, 8, true, true, false}));
  a.count = 32;
  a.new_count = 40;
  CHECK_CODE(mm.as->mremap(a, &at), Code::kENOMEM);  // blocked, may not move
  CHECK_EQ(at, uint64_t{0});
  const std::vector<uint64_t> before = pfns_of(*mm.as, 0, 32);
  a.may_move = true;
  CHECK_OK(mm.as->mremap(a, &at));  // moved to a free area
  CHECK(at >= 40);
  CHECK(pfns_of(*mm.as, at, 32) == before);
  CHECK(!mm.as->translate(at + 32).present);  // the grown tail: faulted later
  CHECK_OK(mm.as->touch(int64_t(at) + 39, 1, true));
  MremapArgs shrink;
  shrink.start = int64_t(at);
  shrink.count = 40;
  shrink.new_count = 4;
  uint64_t at2 = 0;
  CHECK_OK(mm.as->mremap(shrink, &at2));
  CHECK_EQ(at2, at);
  CHECK(!mm.as->translate(at + 4).present);
  CHECK_CODE(mm.as->touch(int64_t(at) + 4, 1, false), Code::kEFAULT);  // unmapped
  check_all_free(mm);
}

TEST(mremap_fixed_replaces_and_dontunmap_keeps_an_empty_region) {
  Mm mm = make_mm(Scheme::kSeparate);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 8, true, true, false}));
  CHECK_OK(mm.as->mmap(MmapArgs{100, 8, false, false, false}));  // replaced by FIXED
  const std::vector<uint64_t> before = pfns_of(*mm.as, 0, 8);
  uint64_t at = 0;
  CHECK_OK(mm.as->mremap(move_to(0, 8, 100), &at));
  CHECK(pfns_of(*mm.as, 100, 8) == before);
  CHECK_OK(mm.as->touch(100, 8, true));  // writable: the attributes moved with the range
  MremapArgs d;
  d.start = 100;
  d.count = 8;
  d.new_count = 8;
  d.may_move = true;
  d.dont_unmap = true;
  CHECK_OK(mm.as->mremap(d, &at));
  CHECK(at != 100);
  CHECK(pfns_of(*mm.as, at, 8) == before);
  CHECK(!mm.as->translate(100).present);       // entries moved out ...
  CHECK_OK(mm.as->touch(100, 1, true));         // ... the region stays: a fresh page
  CHECK(mm.as->translate(100).pfn != before[0]);
  check_all_free(mm);
}

TEST(mremap_refusals_change_nothing) {
  Mm mm = make_mm(Scheme::kWriteBias);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 16, true, true, false}));
  CHECK_OK(mm.as->mmap(MmapArgs{16, 16, false, true, false}));
  const std::vector<uint64_t> before = pfns_of(*mm.as, 0, 40);
  const uint64_t regions = mm.as->regions();
  uint64_t at = 12345;
  MremapArgs a = move_to(0, 16, 8);  // overlaps the old range
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEINVAL);
  a = move_to(0, 16, 4090);  // past the end
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEINVAL);
  a = move_to(0, 16, 200);
  a.may_move = false;  // fixed without mayMove
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEINVAL);
  a = move_to(0, 32, 200);  // across regions of different kinds
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEFAULT);
  a = move_to(30, 4, 200);  // partly unmapped
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEFAULT);
  a = move_to(0, 16, 200);
  a.new_count = 0;
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEINVAL);
  a.new_count = 8;
  a.dont_unmap = true;  // dontUnmap with another length
  CHECK_CODE(mm.as->mremap(a, &at), Code::kEINVAL);
  MremapArgs hostile;
  hostile.start = -1;
  hostile.count = INT64_MAX;
  hostile.new_count = INT64_MAX;
  CHECK_CODE(mm.as->mremap(hostile, &at), Code::kEINVAL);
  hostile.start = 0;
  hostile.count = 16;
  hostile.may_move = true;
  CHECK_CODE(mm.as->mremap(hostile, &at), Code::kEINVAL);  // newCount beyond the address space
  hostile.new_count = 4070;  // fits nowhere free (4064 pages are)
  CHECK_CODE(mm.as->mremap(hostile, &at), Code::kENOMEM);
  CHECK_EQ(at, uint64_t{12345});
  CHECK(pfns_of(*mm.as, 0, 40) == before);
  CHECK_EQ(mm.as->regions(), regions);
  CHECK_EQ(mm.as->stat(MmStat::kRemaps), uint64_t{0});
  check_all_free(mm);
}

// gup_fast grabbed through the old entry; mremap moves it before the recheck: the walker must
// let go (and the slow path pins the page at the new place, or nothing: the old place is empty).
TEST(gup_fast_recheck_fails_when_mremap_moves_the_entry) {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));   // a PMD leaf
    CHECK_OK(mm.as->mmap(MmapArgs{600, 8, true, true, false}));  // PTEs
    for (const uint64_t v : {uint64_t{0}, uint64_t{600}}) {
      const uint64_t n = v == 0 ? 512 : 8;
      bool fired = false;
      AddressSpace* as = mm.as.get();
      mm.as->set_race_hook([&](RacePoint p, uint64_t) {
        if (p != RacePoint::kBeforeRecheck || fired) return;
        fired = true;
        uint64_t at = 0;
        CHECK_OK(as->mremap(move_to(int64_t(v), int64_t(n), 2048), &at));
      });
      const uint64_t failures = mm.as->stat(MmStat::kRecheckFailures);
      GupFlags f;
      f.fast_only = true;
      std::vector<uint32_t> out(n);
      uint64_t done = 0;
      (void)mm.as->gup_fast(int64_t(v), int64_t(n), f, out.data(), &done);
      mm.as->set_race_hook(nullptr);
      CHECK(fired);
      CHECK_EQ(done, uint64_t{0});
      CHECK_EQ(mm.as->stat(MmStat::kRecheckFailures), failures + 1);
      CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
      uint64_t back = 0;
      CHECK_OK(mm.as->mremap(move_to(2048, int64_t(n), int64_t(v)), &back));
    }
    check_all_free(mm);
  }
}

// ---- collapse ---------------------------------------------------------------------------------

// A huge region of one PMD-aligned stretch mapped by 4 KiB pages (written page by page with the
// PMD THP size disabled for the faults: an mm with mTHP order 2 only would give 16 KiB folios).
Mm ptes_in_huge_region(Scheme s, bool debug = true) {
  Mm mm = make_mm(s, debug);
  CHECK_OK(mm.as->mmap(MmapArgs{512, 512, true, true, true}));  // a PMD leaf ...
  CHECK_OK(mm.as->mprotect(513, 1, false));                        // ... PTE-mapped
  CHECK_OK(mm.as->mprotect(513, 1, true));
  CHECK(!mm.as->translate(512).huge);
  return mm;
}

TEST(madvise_collapse_copies_into_a_new_thp) {
  for (Scheme s : kAllSchemes) {
    Mm mm = ptes_in_huge_region(s);
    CHECK_OK(mm.as->madvise(600, 8, Advice::kDontNeed));  // holes are fine for MADV_COLLAPSE
    const uint64_t old = mm.as->translate(512).pfn;
    uint64_t made = 0;
    CHECK_OK(mm.as->collapse(512, 512, &made));
    CHECK_EQ(made, uint64_t{1});
    const Translation tr = mm.as->translate(512);
    CHECK(tr.huge && tr.writable);
    CHECK(tr.pfn != old);
    CHECK_EQ(mm.mem->folio_order(tr.pfn), kPmdOrder);
    CHECK_EQ(mm.as->regions(), uint64_t{1});  // the mprotect's regions merged under the leaf
    CHECK_EQ(mm.as->stat(MmStat::kCollapses), uint64_t{1});
    CHECK_OK(mm.as->collapse(512, 512, &made));  // already PMD-mapped: done, nothing made
    CHECK_EQ(made, uint64_t{0});
    check_all_free(mm);  // the old folio was freed with its last mapping
  }
}

TEST(collapse_refuses_pins_and_gets_and_classifies_them) {
  for (Scheme s : kAllSchemes) {
    Mm mm = ptes_in_huge_region(s);
    GupFlags pin;
    pin.write = true;
    uint32_t p = 0;
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(700, 1, pin, &p, &done));
    const std::vector<uint64_t> before = pfns_of(*mm.as, 512, 512);
    uint64_t made = 0;
    CHECK_CODE(mm.as->collapse(512, 512, &made), Code::kEAGAIN);
    CHECK(pfns_of(*mm.as, 512, 512) == before);  // nothing changed
    CHECK_EQ(mm.as->stat(MmStat::kCollapseMaybePinned), uint64_t{512});  // the folio's pages here
    CHECK_EQ(mm.as->stat(MmStat::kCollapseFalsePositives), uint64_t{0});  // a real pin
    CHECK_OK(mm.as->unpin_user_pages(&p, 1, true, false));
    // A FOLL_GET reference refuses too (the refcount check): not maybe pinned, so "busy".
    GupFlags get;
    get.pin = false;
    CHECK_OK(mm.as->gup_fast(700, 1, get, &p, &done));
    CHECK_CODE(mm.as->collapse(512, 512, &made), Code::kEAGAIN);
    CHECK_EQ(mm.as->stat(MmStat::kCollapseBusy), uint64_t{512});
    CHECK_OK(mm.as->put_user_pages(&p, 1));
    CHECK_OK(mm.as->collapse(512, 512, &made));
    CHECK_EQ(made, uint64_t{1});
    check_all_free(mm);
  }
}

TEST(collapse_counts_bias_false_positives) {
  // 1024 FOLL_GET references on one 4 KiB page look like a pin under bias: maybe pinned, and
  // (debug accounting) a false positive. Refused all the same (they are references).
  Mm mm = make_mm(Scheme::kBias);
  // Not `huge` (a fault there maps a THP): MADV_COLLAPSE works on any anonymous region.
  CHECK_OK(mm.as->mmap(MmapArgs{512, 512, true, false, false}));
  for (uint64_t v = 512; v < 1024; v += 64) CHECK_OK(mm.as->touch(int64_t(v), 1, false));
  CHECK_OK(mm.as->touch(520, 1, true));  // one real page, the rest the zero page
  const uint64_t pfn = mm.as->translate(520).pfn;
  CHECK_EQ(mm.mem->folio_order(pfn), 0u);
  CHECK_OK(mm.mem->get_page(pfn, 1024));
  uint64_t made = 0;
  CHECK_CODE(mm.as->collapse(512, 512, &made), Code::kEAGAIN);
  CHECK_EQ(mm.as->stat(MmStat::kCollapseMaybePinned), uint64_t{1});
  CHECK_EQ(mm.as->stat(MmStat::kCollapseFalsePositives), uint64_t{1});
  bool freed = true;
  CHECK_OK(mm.mem->put_page(pfn, 1024, &freed));
  CHECK(!freed);
  CHECK_OK(mm.as->collapse(512, 512, &made));
  check_all_free(mm);
}

TEST(collapse_of_shared_pages_leaves_the_child_its_pages) {
  Mm mm = ptes_in_huge_region(Scheme::kHybrid);
  std::unique_ptr<AddressSpace> child;
  CHECK_OK(mm.as->fork(&child));
  const std::vector<uint64_t> before = pfns_of(*child, 512, 512);
  uint64_t made = 0;
  // fork write-protected every entry: no writable one, the kernel's SCAN_PAGE_RO (EINVAL).
  CHECK_CODE(mm.as->collapse(512, 512, &made), Code::kEINVAL);
  CHECK(pfns_of(*mm.as, 512, 512) == before);
  CHECK_OK(mm.as->touch(1000, 1, true));  // one COW copy: a writable entry
  CHECK_OK(mm.as->collapse(512, 512, &made));
  CHECK(pfns_of(*child, 512, 512) == before);
  CHECK(mm.as->translate(512).pfn != before[0]);
  CHECK_OK(mm.as->touch(512, 512, true));  // exclusive: no COW
  CHECK(pfns_of(*child, 512, 512) == before);
  child.reset();
  check_all_free(mm);
}

TEST(collapse_refusals_change_nothing) {
  Mm mm = ptes_in_huge_region(Scheme::kSharded);
  uint64_t made = 0;
  CHECK_CODE(mm.as->collapse(0, 1024, &made), Code::kENOMEM);  // [0, 512) is not mapped
  CHECK_CODE(mm.as->collapse(-5, 10, &made), Code::kEINVAL);
  CHECK_CODE(mm.as->collapse(0, INT64_MAX, &made), Code::kEINVAL);
  CHECK_OK(mm.as->mmap(MmapArgs{2048, 512, true, false, true}));
  CHECK_CODE(mm.as->collapse(2048, 512, &made), Code::kEINVAL);  // nothing mapped there
  CHECK_OK(mm.as->collapse(520, 100, &made));  // no whole stretch inside: nothing to do
  CHECK_EQ(made, uint64_t{0});
  CHECK_EQ(mm.as->stat(MmStat::kCollapses), uint64_t{0});
  CHECK(!mm.as->translate(512).huge);
  check_all_free(mm);
}

TEST(khugepaged_follows_its_limits) {
  Mm mm = ptes_in_huge_region(Scheme::kHybrid);
  CHECK_OK(mm.as->madvise(512, 300, Advice::kDontNeed));  // 300 empty PTEs
  KhugepagedArgs k;
  k.max_ptes_none = 100;
  uint64_t made = 0, scanned = 0;
  CHECK_OK(mm.as->khugepaged(k, &made, &scanned));
  CHECK_EQ(made, uint64_t{0});
  CHECK_EQ(scanned, uint64_t{1});
  k.max_ptes_none = 511;
  CHECK_OK(mm.as->khugepaged(k, &made, &scanned));
  CHECK_EQ(made, uint64_t{1});
  CHECK(mm.as->translate(512).huge);
  k.max_ptes_none = 512;
  CHECK_CODE(mm.as->khugepaged(k, &made, &scanned), Code::kEINVAL);
  k.max_ptes_none = 0;
  k.max_ptes_shared = -1;
  CHECK_CODE(mm.as->khugepaged(k, &made, &scanned), Code::kEINVAL);
  check_all_free(mm);
}

// gup_fast grabbed a page of the stretch; collapse runs before its recheck: collapse sees the
// grab (EAGAIN, nothing changed) and the walk keeps a valid pin of a page still mapped.
TEST(collapse_sees_a_racing_grab) {
  for (Scheme s : kAllSchemes) {
    Mm mm = ptes_in_huge_region(s);
    AddressSpace* as = mm.as.get();
    bool fired = false;
    mm.as->set_race_hook([&](RacePoint p, uint64_t) {
      if (p != RacePoint::kBeforeRecheck || fired) return;
      fired = true;
      uint64_t made = 0;
      CHECK_CODE(as->collapse(512, 512, &made), Code::kEAGAIN);
    });
    GupFlags f;
    f.fast_only = true;
    uint32_t out = 0;
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(700, 1, f, &out, &done));
    mm.as->set_race_hook(nullptr);
    CHECK(fired);
    CHECK_EQ(done, uint64_t{1});
    CHECK_EQ(uint64_t(out), mm.as->translate(700).pfn);
    CHECK_OK(mm.as->unpin_user_pages(&out, 1, false, false));
    check_all_free(mm);
  }
}

// ---- concurrency: pins racing mremap and collapse ----------------------------------------------

#if defined(__SANITIZE_THREAD__)
constexpr int kRounds = 150;
#else
constexpr int kRounds = 1500;
#endif

// One mutator moves a region back and forth between two places (MREMAP_FIXED; PMD leaves move
// whole or split, as the offset falls), collapses it, and refaults it; gup threads pin and get
// over both places and check every page they hold (allocated, maybe pinned), then release.
// Every count balances at the end and every page comes back.
TEST_TAGGED(gup_fast_races_mremap_and_collapse, "concurrency") {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_mm(s, true, 16384, 4096);
    constexpr int64_t kA = 0, kB = 2048, kN = 1024;
    CHECK_OK(mm.as->mmap(MmapArgs{kA, kN, true, true, true}));
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0}, release_failures{0};
    AddressSpace& as = *mm.as;
    PageArray& mem = *mm.mem;
    run_threads(3, [&](int t) {
      std::mt19937 rng(uint32_t(s) * 131 + uint32_t(t));
      if (t == 0) {
        int64_t at = kA;
        for (int i = 0; i < kRounds; ++i) {
          const uint32_t what = rng() % 4;
          if (what == 0) {
            const int64_t to = at == kA ? kB + int64_t(rng() % 2) * 256 : kA;
            uint64_t got = 0;
            CHECK_OK(as.mremap(move_to(at, kN, to), &got));
            at = to;
          } else if (what == 1) {
            uint64_t made = 0;
            const Status st = as.collapse(at - at % 512, 512, &made);
            CHECK(st.ok() || st.code == Code::kEAGAIN || st.code == Code::kEINVAL ||
                  st.code == Code::kENOMEM);
          } else if (what == 2) {
            CHECK_OK(as.madvise(at + int64_t(rng() % kN), 1, Advice::kDontNeed));
          } else {
            (void)as.touch(at + int64_t(rng() % (kN - 8)), 8, true);
          }
        }
        // relaxed: a plain flag; the join orders everything after it.
        stop.store(true, std::memory_order_relaxed);
        return;
      }
      std::vector<uint32_t> out(64);
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t base = rng() % 2 == 0 ? kA : kB;
        const int64_t start = base + int64_t(rng() % (kN + 256 - 64));
        GupFlags f;
        f.pin = rng() % 4 != 0;
        f.write = rng() % 2 == 0;
        f.fast_only = rng() % 2 == 0;
        uint64_t done = 0;
        (void)as.gup_fast(start, 1 + int64_t(rng() % 64), f, out.data(), &done);
        for (uint64_t k = 0; k < done; ++k) {
          if (mem.is_zero_page(out[k])) continue;  // a read of a hole: never counted
          const bool held = mem.refcount(out[k]) > 0 &&
                            (!f.pin || mem.maybe_dma_pinned(out[k]) || s == Scheme::kWriteBias);
          if (!held) bad.fetch_add(1, std::memory_order_relaxed);
        }
        if (done == 0) continue;
        const Status st = f.pin ? as.unpin_user_pages(out.data(), done, f.write, false)
                                : as.put_user_pages(out.data(), done);
        if (!st.ok()) release_failures.fetch_add(1, std::memory_order_relaxed);
      }
    });
    CHECK_EQ(bad.load(std::memory_order_relaxed), 0);
    CHECK_EQ(release_failures.load(std::memory_order_relaxed), 0);
    check_all_free(mm);
  }
}

}  // namespace
}  // namespace pinlab::test
