// The huge zero folio (mm/huge_zero.cpp): read faults of whole 2 MiB stretches of THP regions
// map it by a special PMD leaf, uncounted; writes and long-term unshares replace it; splits
// map the zero page; every counting path refuses or skips its 512 pages. The last tests race
// gup_fast against the write fault that replaces the leaf and against munmap, and a pin of a
// free block against that block becoming the huge zero folio (tag "concurrency", TSan).
#include <atomic>
#include <memory>
#include <vector>

#include "mm/mm_fixtures.h"

namespace pinlab::test {
namespace {

constexpr uint64_t kPmd = kPtesPerTable;

// A huge R/W region [0, 2048) and a huge R/O one [2048, 3072), nothing faulted in.
Mm huge_world(Scheme s, MmShape shape = {}) {
  Mm mm = make_test_mm(s, shape);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 2048, true, false, true}));
  CHECK_OK(mm.as->mmap(MmapArgs{2048, 1024, false, false, true}));
  return mm;
}

// An mm under `rules` over an array whose hybrid pincount boundary is the rules' (2019: 31).
Mm rules_mm(Scheme s, const MmRules& rules, bool debug = true) {
  Mm mm{std::shared_ptr<PageArray>(make_array(8192, s, debug, 0, rules.pincount_min_order,
                                              kDefaultBias, false)),
        nullptr};
  CHECK_OK(AddressSpace::create(mm.mem, 4096, rules, kPmdThpOrders, AddressSpace::kDefaultSwap,
                                &mm.as));
  return mm;
}

// Every page free again but the zero page and the huge zero folio; no pin left.
void check_balanced(const Mm& mm) {
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - mm.mem->zero_pages_held());
  CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
  const int64_t h = mm.mem->huge_zero_pfn();
  if (h >= 0) {
    CHECK_EQ(mm.mem->refcount(uint64_t(h)), 0);  // frozen: never counted
    CHECK_EQ(mm.mem->mapped_refs(uint64_t(h)), int64_t{0});
    CHECK_EQ(mm.mem->folio_order(uint64_t(h)), uint32_t{9});
  }
}

TEST(huge_zero_read_fault_maps_one_uncounted_folio_for_every_mm) {
  for (Scheme s : kAllSchemes) {
    Mm mm = huge_world(s);
    const uint64_t before = mm.mem->free_pages();
    CHECK_OK(mm.as->touch(5, 1, false));
    const int64_t h = mm.mem->huge_zero_pfn();
    CHECK(h >= 0 && mm.mem->zero_pfn() >= 0);
    for (uint64_t v : {uint64_t{0}, uint64_t{5}, kPmd - 1}) {
      const Translation t = mm.as->translate(v);
      CHECK(t.present && t.huge && t.special && !t.writable);
      CHECK_EQ(t.pfn, uint64_t(h) + v);
    }
    CHECK_EQ(before - mm.mem->free_pages(), uint64_t{513});  // the zero page made first
    CHECK_EQ(mm.as->stat(MmStat::kFaults), kPmd);
    // Another stretch, the R/O region, and a second mm over the same array: the same folio.
    CHECK_OK(mm.as->touch(int64_t(kPmd), 1, false));
    CHECK_OK(mm.as->touch(2048, 1, false));
    std::unique_ptr<AddressSpace> other;
    CHECK_OK(AddressSpace::create(mm.mem, 4096, &other));
    CHECK_OK(other->mmap(MmapArgs{0, 512, true, false, true}));
    CHECK_OK(other->touch(0, 1, false));
    CHECK_EQ(other->translate(7).pfn, uint64_t(h) + 7);
    CHECK_EQ(before - mm.mem->free_pages(), uint64_t{513});
    CHECK_EQ(mm.mem->refcount(uint64_t(h)), 0);
    CHECK(mm.mem->is_zero_page(uint64_t(h) + 511) && !mm.mem->is_zero_page(uint64_t(h) + 512));
    other.reset();
    CHECK_OK(mm.as->munmap(0, 4096));
    check_balanced(mm);
  }
}

TEST(huge_zero_off_or_unavailable_falls_back) {
  // rules.huge_zero_page off: a read fault allocates a THP, as use_zero_page 0.
  MmShape off;
  off.rules.huge_zero_page = false;
  Mm mm = huge_world(Scheme::kHybrid, off);
  CHECK_OK(mm.as->touch(0, 1, false));
  CHECK(mm.as->translate(0).huge && !mm.as->translate(0).special);
  CHECK_EQ(mm.mem->huge_zero_pfn(), int64_t{-1});
  // No order-9 block free: the zero page's PTE, never a failed read fault.
  MmShape tiny;
  tiny.pages = 1024;
  Mm t = huge_world(Scheme::kHybrid, tiny);
  uint64_t block = 0;
  CHECK_OK(t.mem->alloc_folio(9, true, &block));  // one of the two blocks
  CHECK_OK(t.as->touch(0, 1, false));             // the zero page breaks the other
  const Translation tr = t.as->translate(0);
  CHECK(tr.present && tr.special && !tr.huge);
  CHECK_EQ(int64_t(tr.pfn), t.mem->zero_pfn());
  CHECK_EQ(t.mem->huge_zero_pfn(), int64_t{-1});
  bool freed = false;
  CHECK_OK(t.mem->put_page(block, 1, &freed));
}

TEST(huge_zero_write_fault_replaces_it_by_a_thp_or_splits_to_zero_ptes) {
  for (Scheme s : kAllSchemes) {
    for (const MmRules& rules : {MmRules::mainline(), MmRules::v2019()}) {
      Mm mm = rules_mm(s, rules);
      CHECK_OK(mm.as->mmap(MmapArgs{0, 2048, true, false, true}));
      CHECK_OK(mm.as->touch(0, 1, false));
      const int64_t h = mm.mem->huge_zero_pfn();
      CHECK_OK(mm.as->touch(3, 1, true));
      const Translation t = mm.as->translate(3);
      CHECK(t.huge && !t.special && t.writable);
      CHECK(!mm.mem->is_zero_page(t.pfn));
      CHECK_EQ(mm.mem->folio_order(t.pfn), uint32_t{9});
      CHECK_EQ(mm.mem->refcount(t.pfn), 1);  // the new leaf's one reference
      CHECK_EQ(mm.mem->mapped_refs(t.pfn), 1);
      CHECK_EQ(mm.as->stat(MmStat::kCowCopies), kPmd);
      CHECK_EQ(mm.mem->refcount(uint64_t(h)), 0);
      CHECK_OK(mm.as->munmap(0, 4096));
      check_balanced(mm);
    }
  }
  // No order-9 block for the copy: the leaf becomes the zero page's PTEs, and the written
  // 4 KiB a page of its own.
  MmShape tiny;
  tiny.pages = 1024;
  Mm t = huge_world(Scheme::kHybrid, tiny);
  CHECK_OK(t.as->touch(0, 1, false));  // the zero page in one block, the huge zero in the other
  CHECK(t.mem->huge_zero_pfn() >= 0);
  CHECK_OK(t.as->touch(7, 1, true));
  const Translation w = t.as->translate(7);
  CHECK(w.present && !w.huge && !w.special && w.writable);
  for (uint64_t v : {uint64_t{0}, uint64_t{6}, uint64_t{8}, kPmd - 1}) {
    const Translation z = t.as->translate(v);
    CHECK(z.special && !z.huge);
    CHECK_EQ(int64_t(z.pfn), t.mem->zero_pfn());
  }
  CHECK_OK(t.as->munmap(0, 4096));
  check_balanced(t);
}

TEST(huge_zero_splits_to_the_zero_page_and_moves_whole) {
  for (Scheme s : kAllSchemes) {
    Mm mm = huge_world(s);
    CHECK_OK(mm.as->touch(0, 2048, false));  // four leaves
    const int64_t z = mm.mem->zero_pfn(), h = mm.mem->huge_zero_pfn();
    CHECK_OK(mm.as->munmap(10, 1));                              // leaf 0
    CHECK_OK(mm.as->mprotect(int64_t(kPmd) + 1, 1, false));      // leaf 1
    CHECK_OK(mm.as->madvise(2 * int64_t(kPmd) + 1, 1, Advice::kDontNeed));  // leaf 2
    for (uint64_t v : {uint64_t{9}, uint64_t{11}, kPmd, 2 * kPmd}) {
      const Translation t = mm.as->translate(v);
      CHECK(t.special && !t.huge);
      CHECK_EQ(int64_t(t.pfn), z);
    }
    CHECK(!mm.as->translate(10).present && !mm.as->translate(2 * kPmd + 1).present);
    CHECK(mm.as->translate(3 * kPmd).huge);
    // fork shares the leaf; migrate, pageout and collapse leave it; mremap moves it whole.
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));
    CHECK_EQ(child->translate(3 * kPmd + 4).pfn, uint64_t(h) + 4);
    CHECK(child->translate(3 * kPmd + 4).special);
    uint64_t moved = 1, made = 1, at = 0;
    CHECK_OK(mm.as->migrate(0, 2048, &moved));
    CHECK_EQ(moved, uint64_t{0});
    CHECK_OK(mm.as->compact(&moved));
    CHECK_OK(mm.as->madvise(3 * int64_t(kPmd), int64_t(kPmd), Advice::kPageOut));
    CHECK_EQ(mm.as->swapped_pages(), uint64_t{0});
    CHECK_OK(mm.as->collapse(3 * int64_t(kPmd), int64_t(kPmd), &made));
    CHECK_EQ(mm.as->translate(3 * kPmd).pfn, uint64_t(h));
    MremapArgs r;
    r.start = 3 * int64_t(kPmd);
    r.count = r.new_count = int64_t(kPmd);
    r.may_move = r.fixed = true;
    r.new_start = 3584;  // 2 MiB aligned, inside nothing: the leaf moves
    CHECK_OK(mm.as->mmap(MmapArgs{3584, 512, true, false, true}));
    CHECK_OK(mm.as->munmap(3584, 512));
    CHECK_OK(mm.as->mremap(r, &at));
    CHECK_EQ(at, uint64_t{3584});
    CHECK(mm.as->translate(3584).huge && mm.as->translate(3584).special);
    CHECK_EQ(mm.as->translate(3584 + 9).pfn, uint64_t(h) + 9);
    CHECK_EQ(mm.mem->refcount(uint64_t(h)), 0);
    child.reset();
    CHECK_OK(mm.as->munmap(0, 4096));
    check_balanced(mm);
  }
}

TEST(huge_zero_pins_gets_and_puts_refused_with_nothing_changed) {
  for (Scheme s : kAllSchemes) {
    Mm mm = huge_world(s);
    CHECK_OK(mm.as->touch(0, 1, false));
    const uint64_t h = uint64_t(mm.mem->huge_zero_pfn());
    uint64_t other = 0;  // a live page beside it in the calls
    CHECK_OK(mm.mem->alloc_folio(0, true, &other));
    const uint64_t acquired = mm.mem->stat(Stat::kPinAcquired);
    uint64_t n = 0;
    const uint32_t list[] = {uint32_t(other), uint32_t(h + 300)};
    CHECK_CODE(mm.mem->pin_pages(PageSet::pfns(list, 2), bvec(), &n), Code::kEINVAL);
    CHECK_CODE(mm.mem->pin_pages(PageSet::range(h + 511, 1), bvec(true), &n), Code::kEINVAL);
    CHECK_CODE(mm.mem->pin_pages(PageSet::range(h - 1, 2), per_page(), &n), Code::kEINVAL);
    CHECK_CODE(mm.mem->unpin_pages(PageSet::range(h, 512), bvec()), Code::kEINVAL);
    CHECK_CODE(mm.mem->unpin_pages(PageSet::pfns(list, 2), bvec()), Code::kEINVAL);
    CHECK_CODE(mm.mem->unpin_pages_both(list, 2, nullptr, 0), Code::kEINVAL);
    StatTally tally;
    CHECK(mm.mem->pin_page(h + 1, false, &tally) == Code::kEINVAL);
    CHECK(mm.mem->unpin_page(h + 1, bvec(), &tally) == Code::kEINVAL);
    bool got = false, freed = false;
    CHECK_CODE(mm.mem->get_page(h + 2, 1), Code::kEINVAL);
    CHECK_CODE(mm.mem->try_get_page(h + 2, 1, &got), Code::kEINVAL);
    CHECK_CODE(mm.mem->put_page(h, 1, &freed), Code::kEINVAL);
    CHECK_CODE(mm.mem->put_pages(list, 2, -1), Code::kEINVAL);
    CHECK_CODE(mm.mem->set_dirty(h + 3), Code::kEINVAL);
    CHECK_CODE(mm.mem->split_folio(h), Code::kEBUSY);
    CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), acquired);
    CHECK_EQ(mm.mem->refcount(h), 0);
    CHECK_EQ(mm.mem->refcount(other), 1);
    CHECK_EQ(mm.mem->folio_order(h + 7), uint32_t{9});
    CHECK(!mm.mem->is_dirty(h));
    // gup hands its pages out uncounted; unpin and put of them skip them.
    std::vector<uint32_t> out(kPmd);
    GupFlags get;
    get.pin = false;
    CHECK_OK(mm.as->gup_fast(0, int64_t(kPmd), get, out.data(), &n));
    CHECK_EQ(n, kPmd);
    CHECK_EQ(uint64_t(out[17]), h + 17);
    CHECK_EQ(mm.as->stat(MmStat::kFastPages), uint64_t{0});  // gup_fast bails on the leaf
    CHECK_OK(mm.as->put_user_pages(out.data(), n));
    GupFlags pin;  // a short-term read pin: not unshared (not anonymous), uncounted
    CHECK_OK(mm.as->gup_fast(0, int64_t(kPmd), pin, out.data(), &n));
    CHECK_EQ(uint64_t(out[0]), h);
    CHECK_OK(mm.as->unpin_user_pages(out.data(), n, false, false));
    CHECK_EQ(mm.mem->refcount(h), 0);
    CHECK_OK(mm.mem->put_page(other, 1, &freed));
    CHECK_OK(mm.as->munmap(0, 4096));
    check_balanced(mm);
  }
}

TEST(huge_zero_longterm_read_pin_unshares_under_mainline_only) {
  for (Scheme s : kAllSchemes) {
    for (bool mainline : {true, false}) {
      Mm mm = rules_mm(s, mainline ? MmRules::mainline() : MmRules::v2019());
      CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, false, true}));
      CHECK_OK(mm.as->touch(0, 1, false));
      const uint64_t h = uint64_t(mm.mem->huge_zero_pfn());
      GupFlags lt;
      lt.longterm = true;
      std::vector<uint32_t> out(kPmd);
      uint64_t n = 0;
      CHECK_OK(mm.as->gup_fast(0, int64_t(kPmd), lt, out.data(), &n));
      CHECK_EQ(n, kPmd);
      if (mainline) {
        CHECK(!mm.mem->is_zero_page(out[0]));
        CHECK_EQ(mm.mem->folio_order(out[0]), uint32_t{9});
        CHECK(!mm.mem->is_movable(out[0]));
        CHECK(mm.as->translate(0).huge && !mm.as->translate(0).special);
      } else {
        CHECK_EQ(uint64_t(out[0]), h);  // the huge zero folio itself, uncounted
      }
      CHECK_OK(mm.as->touch(0, int64_t(kPmd), true));
      CHECK_EQ(mm.as->translate(9).pfn == out[9], mainline);  // the pin sees the write
      CHECK_OK(mm.as->unpin_user_pages(out.data(), n, false, false));
      CHECK_OK(mm.as->munmap(0, 4096));
      check_balanced(mm);
    }
  }
}

TEST(huge_zero_populate_of_a_read_only_region) {
  Mm mm = make_test_mm(Scheme::kHybrid);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 1024 + 3, false, true, true}));
  CHECK(mm.as->translate(512).huge && mm.as->translate(512).special);
  CHECK_EQ(mm.as->translate(512 + 4).pfn, uint64_t(mm.mem->huge_zero_pfn()) + 4);
  CHECK(mm.as->translate(1025).special && !mm.as->translate(1025).huge);
  CHECK_EQ(mm.as->mapped_pages(), uint64_t{1027});
  CHECK_OK(mm.as->munmap(0, 4096));
  check_balanced(mm);
}

#if defined(__SANITIZE_THREAD__)
constexpr int kRounds = 30;
#else
constexpr int kRounds = 400;
#endif

// gup_fast (pins and gets, read and write) races the fault that maps the huge zero leaf, the
// write fault that replaces it, and munmap/mmap: every pin is of a real page or handed out
// uncounted, and in the end everything balances and the huge zero folio was never counted.
TEST_TAGGED(huge_zero_gup_fast_races_replace_and_munmap, "concurrency") {
  for (Scheme s : kAllSchemes) {
    MmShape shape;
    shape.debug = false;
    Mm mm = make_test_mm(s, shape);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 1024, true, false, true}));
    CHECK_OK(mm.as->touch(0, 1, false));
    const int64_t h = mm.mem->huge_zero_pfn();
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    run_threads(3, [&](int t) {
      if (t == 0) {
        for (int r = 0; r < kRounds; ++r) {
          const int64_t base = int64_t(r % 2) * int64_t(kPmd);
          (void)mm.as->touch(base, 1, false);           // the huge zero leaf
          (void)mm.as->touch(base + 3, 1, true);        // replaced by a THP
          if (mm.as->munmap(base, int64_t(kPmd)).code != Code::kOk) ++bad;
          if (mm.as->mmap(MmapArgs{base, int64_t(kPmd), true, false, true}).code != Code::kOk) ++bad;
          (void)mm.as->touch(base, 1, false);
          if (mm.as->munmap(base + 5, 1).code != Code::kOk) ++bad;  // split to zero PTEs
          if (mm.as->mmap(MmapArgs{base + 5, 1, true, false, true}).code != Code::kOk) ++bad;
        }
        stop.store(true, std::memory_order_release);
        return;
      }
      std::vector<uint32_t> out(2 * kPmd);
      for (uint64_t i = 0; !stop.load(std::memory_order_acquire); ++i) {
        GupFlags f;
        f.pin = (i + uint64_t(t)) % 3 != 0;
        f.write = i % 4 == 1;
        f.longterm = f.pin && i % 5 == 0;
        f.fast_only = i % 2 == 0;
        uint64_t n = 0;
        const Status st = mm.as->gup_fast(int64_t(i % 7), int64_t(kPmd + 40), f, out.data(), &n);
        if (!st.ok() && st.code != Code::kEFAULT && st.code != Code::kENOMEM) ++bad;
        for (uint64_t k = 0; k < n; ++k) {
          const bool huge_zero = h >= 0 && out[k] >= uint64_t(h) && out[k] < uint64_t(h) + kPmd;
          if (huge_zero && (f.write || (f.longterm && mm.as->rules().zero_page_unshare))) ++bad;
          if (!mm.mem->is_zero_page(out[k]) && mm.mem->refcount(out[k]) <= 0) ++bad;
        }
        if (f.pin) {
          if (!mm.as->unpin_user_pages(out.data(), n, f.write, false).ok()) ++bad;
        } else if (!mm.as->put_user_pages(out.data(), n).ok()) {
          ++bad;
        }
      }
    });
    CHECK_EQ(bad.load(), 0);
    CHECK_EQ(mm.mem->huge_zero_pfn(), h);
    CHECK_OK(mm.as->munmap(0, 4096));
    check_balanced(mm);
  }
}

// A pin of a free 2 MiB block races that block becoming the huge zero folio: a pin that
// grabbed the block before its refcount was frozen keeps it from becoming the huge zero folio
// (made from nothing else here: ENOMEM, and read faults fall back); once frozen, no pin can
// land (EFREE before publication, EINVAL after). The huge zero folio never holds a pin.
TEST_TAGGED(huge_zero_made_during_a_pin_of_its_block_refuses_the_pin, "concurrency") {
  for (Scheme s : kAllSchemes) {
    for (int r = 0; r < kRounds / 4 + 1; ++r) {
      std::shared_ptr<PageArray> mem(make_array(1024, s, false, 0, 1, kDefaultBias, false).release());
      uint64_t zero = 0;
      CHECK_OK(mem->zero_page(&zero));
      const uint64_t block = zero < 512 ? 512 : 0;  // the one order-9 block left
      std::atomic<int> bad{0};
      run_threads(2, [&](int t) {
        if (t == 0) {
          uint64_t h = 0;
          const Status st = mem->huge_zero_folio(&h);
          if (st.ok() ? h != block : st.code != Code::kENOMEM) ++bad;
          return;
        }
        for (int k = 0; k < 50; ++k) {
          uint64_t n = 0;
          const PageSet set = r % 2 == 0 ? PageSet::range(block, 512) : PageSet::range(block + 3, 1);
          const Status st = mem->pin_pages(set, bvec(), &n);
          if (st.ok()) {
            if (mem->is_zero_page(block) || !mem->unpin_pages(set, bvec()).ok()) ++bad;
          } else if (st.code != Code::kEFREE && st.code != Code::kEINVAL) {
            ++bad;
          }
        }
      });
      CHECK_EQ(bad.load(), 0);
      if (mem->huge_zero_pfn() >= 0) CHECK_EQ(mem->refcount(block), 0);
      CHECK_EQ(mem->stat(Stat::kPinAcquired), mem->stat(Stat::kPinReleased));
      CHECK_EQ(mem->free_pages(), mem->pages() - mem->zero_pages_held());
    }
  }
}

}  // namespace
}  // namespace pinlab::test
