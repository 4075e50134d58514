// Core semantics: scheme arithmetic, folios, rollback, overflow, debug detections, memory,
// and the list and debug scans (pfn runs, exact per-page pins).
#include <vector>

#include "fixtures.h"

namespace pinlab::test {
namespace {

uint64_t pin(PageArray& pa, uint64_t start, uint64_t count, PinFlags f = bvec()) {
  uint64_t n = 0;
  CHECK_OK(pa.pin_pages(PageSet::range(start, count), f, &n));
  return n;
}

TEST(create_rejects_bad_options) {
  PageArrayConfig cfg;
  std::unique_ptr<PageArray> pa;
  cfg.pages = 0;
  CHECK_CODE(PageArray::create(cfg, &pa), Code::kEINVAL);
  cfg.pages = (int64_t{1} << 31) + 1;
  CHECK_CODE(PageArray::create(cfg, &pa), Code::kEINVAL);
  cfg.pages = 1024;
  cfg.pin_bias = 3;
  CHECK_CODE(PageArray::create(cfg, &pa), Code::kEINVAL);
  CHECK(describe(PageArray::create(cfg, &pa)).find("pinBias") != std::string::npos);
  cfg.pin_bias = 1 << 21;
  CHECK_CODE(PageArray::create(cfg, &pa), Code::kEINVAL);
  cfg.pin_bias = 1024;
  cfg.folio_order = 11;  // 2048 pages > 1024
  CHECK_CODE(PageArray::create(cfg, &pa), Code::kEINVAL);
  cfg.folio_order = 0;
  cfg.pincount_min_order = 0;
  CHECK_CODE(PageArray::create(cfg, &pa), Code::kEINVAL);
  CHECK(pa == nullptr);
}

TEST(every_page_starts_allocated_in_folios) {
  auto pa = make_array(4096, Scheme::kHybrid, false, 9);
  CHECK_EQ(pa->folio_order(1000), 9u);
  CHECK_EQ(pa->folio_head(1000), 512u);
  CHECK_EQ(pa->refcount(1000), 1);
  CHECK_EQ(pa->pincount(1000).value_or(-1), 0);
  CHECK(!pa->maybe_dma_pinned(1000));
}

TEST(scheme_deltas_small_and_large) {
  for (Scheme s : kAllSchemes) {
    auto pa = make_array(2048, s);
    CHECK_OK(pa->make_folio(512, 9));
    pin(*pa, 3, 1, bvec(true));
    pin(*pa, 512, 512, bvec(true));
    const int32_t small = pa->refcount(3), large = pa->refcount(512);
    switch (s) {
      case Scheme::kBias:
        CHECK_EQ(small, 1 + 1024);
        CHECK_EQ(large, 1 + 512 * 1024);
        break;
      case Scheme::kHybrid:
        CHECK_EQ(small, 1 + 1024);
        CHECK_EQ(large, 1 + 512);
        CHECK_EQ(pa->pincount(600).value_or(-1), 512);
        CHECK(!pa->pincount(3).has_value());
        break;
      case Scheme::kSeparate:
        CHECK_EQ(small, 2);
        CHECK_EQ(large, 1 + 512);
        CHECK_EQ(pa->pincount(3).value_or(-1), 1);
        break;
      case Scheme::kWriteBias:
        CHECK_EQ(small, 1 + 1024);
        CHECK_EQ(large, 1 + 512 * 1024);
        break;
      default: {  // a scheme registered after these four: what its own policy says
        const SchemeParams p{10, 1};
        const PinCost one = scheme_pin_cost(s, p, 0, 1, true);
        const PinCost all = scheme_pin_cost(s, p, 9, 512, true);
        // Pins that share one reference (scheme_api.h): 1 for all of them, else their costs.
        CHECK_EQ(small, 1 + (scheme_pins_share_ref(s, p, 0) ? 1 : one.ref));
        CHECK_EQ(large, 1 + (scheme_pins_share_ref(s, p, 9) ? 1 : all.ref));
        if (scheme_keeps_pincount(s, p, 9)) CHECK_EQ(pa->pincount(600).value_or(-1), all.pin);
        else CHECK(!pa->pincount(600).has_value());
        if (scheme_keeps_pincount(s, p, 0)) CHECK_EQ(pa->pincount(3).value_or(-1), one.pin);
        else CHECK(!pa->pincount(3).has_value());
        break;
      }
    }
    CHECK(pa->maybe_dma_pinned(3));
    CHECK(pa->maybe_dma_pinned(1000));
    CHECK_OK(pa->unpin_pages(PageSet::range(3, 1), bvec(true)));
    CHECK_OK(pa->unpin_pages(PageSet::range(512, 512), per_page(true)));
    CHECK_EQ(pa->refcount(3), 1);
    CHECK_EQ(pa->refcount(512), 1);
    CHECK(!pa->maybe_dma_pinned(1000));
    CHECK_EQ(pa->stat(Stat::kPinAcquired), 513u);
    CHECK_EQ(pa->stat(Stat::kPinReleased), 513u);
  }
}

TEST(hybrid_pincount_lives_in_first_tail_and_min_order_2) {
  auto pa = make_array(64, Scheme::kHybrid, false, 0, 2);
  CHECK_OK(pa->make_folio(0, 1));  // order 1 < min order 2: bias
  CHECK_OK(pa->make_folio(4, 2));  // order 2: exact pincount
  pin(*pa, 0, 2);
  pin(*pa, 4, 4);
  CHECK_EQ(pa->refcount(0), 1 + 2 * 1024);
  CHECK(!pa->pincount(0).has_value());
  CHECK_EQ(pa->refcount(4), 1 + 4);
  CHECK_EQ(pa->pincount(7).value_or(-1), 4);
}

TEST(write_bias_hides_read_pins) {
  auto pa = make_array(16, Scheme::kWriteBias);
  pin(*pa, 0, 1, bvec(false));
  CHECK_EQ(pa->refcount(0), 2);
  CHECK(!pa->maybe_dma_pinned(0));  // by design
  pin(*pa, 0, 1, bvec(true));
  CHECK(pa->maybe_dma_pinned(0));
}

TEST(false_positive_at_the_bias) {
  for (Scheme s : kAllSchemes) {
    auto pa = make_array(16, s, false, 0, 1, 64);
    CHECK_OK(pa->get_page(0, 62));  // refcount 63 = B - 1
    CHECK(!pa->maybe_dma_pinned(0));
    CHECK_OK(pa->get_page(0, 1));  // refcount 64 = B: looks pinned unless counted exactly
    CHECK_EQ(pa->maybe_dma_pinned(0), !scheme_keeps_pincount(s, {6, 1}, 0));  // not separate
  }
}

TEST(list_runs_group_consecutive_subpages_of_one_folio) {
  auto pa = make_array(2048, Scheme::kBias);
  CHECK_OK(pa->make_folio(512, 9));
  const uint32_t list[] = {1022, 1023, 1024, 520, 521, 521, 5, 4};
  std::vector<Bvec> runs;
  CHECK_OK(pa->to_bvecs(PageSet::pfns(list, 8), &runs));
  CHECK_EQ(runs.size(), size_t(6));  // {1022,2} {1024,1} {520,2} {521,1} {5,1} {4,1}
  CHECK_EQ(runs[0].count, 2u);
  CHECK_EQ(runs[2].pfn, 520u);
  CHECK_EQ(runs[2].count, 2u);
}

TEST(pin_rolls_back_on_free_page_both_paths_both_inputs) {
  for (Scheme s : kAllSchemes) {
    for (bool pp : {false, true}) {
      auto pa = make_array(1024, s);
      bool freed = false;
      CHECK_OK(pa->put_page(100, 1, &freed));
      CHECK(freed);
      uint64_t n = 0;
      CHECK_CODE(pa->pin_pages(PageSet::range(90, 20), {false, pp, false}, &n), Code::kEFREE);
      const uint32_t list[] = {7, 8, 9, 100};
      CHECK_CODE(pa->pin_pages(PageSet::pfns(list, 4), {false, pp, false}, &n), Code::kEFREE);
      for (uint64_t p : {7, 8, 9, 90, 99, 101}) {
        CHECK_EQ(pa->refcount(p), 1);
        CHECK(!pa->maybe_dma_pinned(p));
      }
      CHECK_EQ(pa->stat(Stat::kPinAcquired), 0u);
      CHECK_EQ(pa->stat(Stat::kRollbacks), 2u);
    }
  }
}

TEST(unpin_rolls_back_and_restores_dirty) {
  auto pa = make_array(64, Scheme::kBias);
  pin(*pa, 0, 4);
  CHECK_CODE(pa->unpin_pages(PageSet::range(0, 5), {false, false, true}), Code::kENOTPINNED);
  for (uint64_t p = 0; p < 5; ++p) {
    CHECK_EQ(pa->refcount(p), p < 4 ? 1 + 1024 : 1);
    CHECK(!pa->is_dirty(p));
  }
  CHECK_OK(pa->unpin_pages(PageSet::range(0, 4), {false, false, true}));
  CHECK(pa->is_dirty(3));
}

TEST(overflow_small_page_after_2_to_21_pins) {
  auto pa = make_array(4, Scheme::kBias);
  // refcount starts at 1: floor((2^31 - 2) / 1024) pins fit.
  const int64_t fit = (int64_t{INT32_MAX} - 1) / 1024;
  std::vector<uint32_t> list(size_t(fit), 2);
  uint64_t n = 0;
  CHECK_OK(pa->pin_pages(PageSet::pfns(list.data(), list.size()), per_page(), &n));
  CHECK_CODE(pa->pin_pages(PageSet::range(2, 1), bvec(), &n), Code::kEOVERFLOW);
  CHECK_EQ(pa->refcount(2), int32_t(1 + fit * 1024));
  CHECK_EQ(pa->stat(Stat::kOverflowRefusals), 1u);
}

TEST(overflow_gigantic_folio_bias_versus_hybrid) {
  for (Scheme s : {Scheme::kBias, Scheme::kHybrid}) {
    auto pa = make_array(uint64_t{1} << 18, s, false, 18);
    uint64_t n = 0;
    int ok = 0;
    for (int i = 0; i < 9; ++i)
      if (pa->pin_pages(PageSet::range(0, 1 << 18), bvec(), &n).ok()) ++ok;
    CHECK_EQ(ok, s == Scheme::kBias ? 7 : 9);  // 1 + 8 * 2^28 > 2^31 - 1 under pure bias
  }
}

TEST(folio_make_and_split) {
  auto pa = make_array(1024, Scheme::kSeparate);
  CHECK_CODE(pa->make_folio(3, 2), Code::kEINVAL);     // misaligned
  CHECK_CODE(pa->make_folio(2048, 0), Code::kERANGE);  // out of range
  pin(*pa, 6, 1);
  CHECK_CODE(pa->make_folio(4, 2), Code::kEBUSY);  // page 6 pinned: nothing changes
  CHECK_EQ(pa->refcount(4), 1);
  CHECK_EQ(pa->folio_order(5), 0u);
  CHECK_OK(pa->make_folio(8, 3));
  CHECK_EQ(pa->folio_head(15), 8u);
  CHECK_EQ(pa->refcount(15), 1);
  pin(*pa, 9, 2);
  CHECK_CODE(pa->split_folio(8), Code::kEBUSY);
  CHECK_CODE(pa->split_folio(9), Code::kEINVAL);  // not the head
  CHECK_OK(pa->unpin_pages(PageSet::range(9, 2), bvec()));
  CHECK_OK(pa->split_folio(8));
  for (uint64_t p = 8; p < 16; ++p) {
    CHECK_EQ(pa->folio_order(p), 0u);
    CHECK_EQ(pa->refcount(p), 1);
  }
  CHECK_CODE(pa->split_folio(8), Code::kEINVAL);  // order 0 now
}

TEST(gets_and_puts) {
  auto pa = make_array(16, Scheme::kHybrid);
  bool b = false;
  CHECK_OK(pa->get_page(1, 5));
  CHECK_EQ(pa->refcount(1), 6);
  CHECK_CODE(pa->put_page(1, 7, &b), Code::kEINVAL);
  CHECK_EQ(pa->refcount(1), 6);
  CHECK_OK(pa->put_page(1, 6, &b));
  CHECK(b);
  CHECK_CODE(pa->get_page(1, 1), Code::kEFREE);
  CHECK_OK(pa->try_get_page(1, 1, &b));
  CHECK(!b);
  CHECK_OK(pa->try_get_page(2, 3, &b));
  CHECK(b);
  CHECK_CODE(pa->get_page(2, 0), Code::kEINVAL);
  CHECK_CODE(pa->get_page(2, INT32_MAX), Code::kEOVERFLOW);
  CHECK_EQ(pa->refcount(2), 4);
}

TEST(debug_detects_put_eating_pins_and_unpin_without_pin) {
  for (Scheme s : kAllSchemes) {
    auto pa = make_array(2048, s, true);
    CHECK_OK(pa->make_folio(512, 9));
    pin(*pa, 600, 1, bvec(true));
    bool b = false;
    // Dropping the folio's own reference is fine (the pin keeps it); a second put would eat
    // the pin's references or free the pinned folio.
    CHECK_CODE(pa->put_page(600, 2, &b), Code::kEPINNED);
    CHECK_EQ(pa->pincount(512).value_or(-1), 1);
    // Another subpage of the same folio holds no pin: only debug mode can tell.
    CHECK_CODE(pa->unpin_pages(PageSet::range(601, 1), bvec(true)), Code::kENOTPINNED);
    CHECK_OK(pa->put_page(600, 1, &b));
    CHECK(!b);
    CHECK_CODE(pa->put_page(600, 1, &b), Code::kEPINNED);
    CHECK_OK(pa->unpin_pages(PageSet::range(600, 1), bvec(true)));  // the pin frees it
    CHECK_EQ(pa->refcount(600), 0);
  }
}

TEST(write_bias_debug_checks_the_kind_of_pin) {
  auto pa = make_array(16, Scheme::kWriteBias, true);
  pin(*pa, 0, 1, bvec(false));
  CHECK_CODE(pa->unpin_pages(PageSet::range(0, 1), bvec(true)), Code::kENOTPINNED);
  CHECK_EQ(pa->refcount(0), 2);
  CHECK_OK(pa->unpin_pages(PageSet::range(0, 1), bvec(false)));
}

TEST(memory_per_page) {
  CHECK_EQ(make_array(1 << 20, Scheme::kBias)->memory().bytes_per_page, 5.0);
  CHECK_EQ(make_array(1 << 20, Scheme::kHybrid)->memory().bytes_per_page, 5.0);
  CHECK_EQ(make_array(1 << 20, Scheme::kSeparate)->memory().bytes_per_page, 9.0);
  CHECK_EQ(make_array(1 << 20, Scheme::kBias, true)->memory().bytes_per_page, 9.0);
  for (Scheme s : kAllSchemes) {  // what schemes() reports is what an array takes
    CHECK_EQ(make_array(1 << 16, s)->memory().bytes_per_page, double(scheme_info(s).bytes_per_page));
    CHECK_EQ(make_array(1 << 16, s, true)->memory().bytes_per_page,
             double(scheme_info(s).bytes_per_page + scheme_info(s).debug_bytes_per_page));
  }
}

TEST(count_maybe_dma_pinned_weights_runs) {
  auto pa = make_array(4096, Scheme::kHybrid);
  CHECK_OK(pa->make_folio(1024, 9));
  pin(*pa, 1030, 1);
  pin(*pa, 7, 1);
  uint64_t n = 0;
  CHECK_OK(pa->count_maybe_dma_pinned(PageSet::range(0, 4096), &n));
  CHECK_EQ(n, 513u);
  const uint32_t list[] = {7, 7, 8, 1500, 2000};
  CHECK_OK(pa->count_maybe_dma_pinned(PageSet::pfns(list, 5), &n));
  CHECK_EQ(n, 3u);
}

// pfnRuns through the core's two steps, as the addon calls them.
std::vector<uint32_t> pfn_runs(const PageArray& pa, const std::vector<uint32_t>& list) {
  uint64_t runs = 0;
  CHECK_OK(pa.count_pfn_runs(list.data(), list.size(), &runs));
  std::vector<uint32_t> out(runs * 2);
  PageArray::write_pfn_runs(list.data(), list.size(), out.data());
  return out;
}

// The same runs, one entry at a time: the reference the scans are checked against.
std::vector<uint32_t> naive_runs(const std::vector<uint32_t>& list) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0 && list[i] == list[i - 1] + 1) {
      ++out.back();
    } else {
      out.push_back(list[i]);
      out.push_back(1);
    }
  }
  return out;
}

TEST(pfn_runs_are_the_maximal_ascending_runs_in_list_order) {
  auto pa = make_array(1 << 16, Scheme::kHybrid, false, 9);
  CHECK(pfn_runs(*pa, {5, 6, 7, 9, 9, 10}) == std::vector<uint32_t>({5, 3, 9, 1, 9, 2}));
  CHECK(pfn_runs(*pa, {}).empty());
  CHECK(pfn_runs(*pa, {42}) == std::vector<uint32_t>({42, 1}));
  CHECK(pfn_runs(*pa, {3, 2, 1}) == std::vector<uint32_t>({3, 1, 2, 1, 1, 1}));
  // Runs cross folio boundaries (511 -> 512) and run long enough for the block scan.
  std::vector<uint32_t> list;
  for (uint32_t p = 100; p < 1300; ++p) list.push_back(p);
  list.push_back(7);
  for (uint32_t p = 20; p < 37; ++p) list.push_back(p);  // 17: just past the probe
  CHECK(pfn_runs(*pa, list) == std::vector<uint32_t>({100, 1200, 7, 1, 20, 17}));
  // Random lists of short and long runs against the entry-by-entry reference.
  uint32_t seed = 12345;
  auto next = [&] { return seed = seed * 1103515245u + 12345u, (seed >> 8) & 0xffff; };
  for (int trial = 0; trial < 200; ++trial) {
    list.clear();
    while (list.size() < 600) {
      const uint32_t start = next(), len = 1 + next() % (trial % 2 ? 3 : 150);
      for (uint32_t k = 0; k < len && start + k < (1u << 16); ++k) list.push_back(start + k);
    }
    CHECK(pfn_runs(*pa, list) == naive_runs(list));
  }
  const std::vector<uint32_t> bad = {1, 2, 70000, 3};
  uint64_t runs = 0;
  const Status st = pa->count_pfn_runs(bad.data(), bad.size(), &runs);
  CHECK_CODE(st, Code::kERANGE);
  CHECK_EQ(st.value, int64_t(70000));
}

TEST(count_pfn_runs_refuses_the_largest_pfns_before_the_writer) {
  // The largest PFNs (base/scan_test.cpp checks the two scans agree there): out of range.
  const uint32_t top[] = {UINT32_MAX - 1, UINT32_MAX, 0, 1, UINT32_MAX};
  auto pa = make_array(64, Scheme::kBias);
  uint64_t runs = 0;
  CHECK_CODE(pa->count_pfn_runs(top, 5, &runs), Code::kERANGE);  // never reaches the writer
}

TEST(debug_pinned_runs_and_page_pins_report_exact_per_page_pins) {
  for (Scheme s : kAllSchemes) {
    auto pa = make_array(4096, s, true);
    CHECK_OK(pa->make_folio(512, 9));
    pin(*pa, 4, 4);                 // 4..7: 1
    pin(*pa, 6, 2, bvec(true));     // 6..7: 2
    pin(*pa, 8, 1);                 // 8: 1 (a new run: 7 has 2)
    pin(*pa, 510, 4);               // 510..513: 1, across a folio boundary
    std::vector<uint32_t> runs;
    CHECK_OK(pa->debug_pinned_runs(&runs));
    CHECK(runs == std::vector<uint32_t>({4, 2, 1, 6, 2, 2, 8, 1, 1, 510, 4, 1}));
    std::vector<int32_t> pins;
    CHECK_OK(pa->debug_page_pins(3, 7, &pins));
    CHECK(pins == std::vector<int32_t>({0, 1, 1, 2, 2, 1, 0}));
    CHECK_OK(pa->debug_page_pins(4096, 0, &pins));
    CHECK(pins.empty());
    CHECK_CODE(pa->debug_page_pins(4090, 7, &pins), Code::kERANGE);
    CHECK_CODE(pa->debug_page_pins(-1, 2, &pins), Code::kERANGE);
    CHECK_CODE(pa->debug_page_pins(0, -2, &pins), Code::kERANGE);
    CHECK_OK(pa->unpin_pages(PageSet::range(6, 2), bvec(true)));
    CHECK_OK(pa->debug_pinned_runs(&runs));
    CHECK(runs == std::vector<uint32_t>({4, 5, 1, 510, 4, 1}));  // 4..8 now all 1
  }
  auto plain = make_array(64, Scheme::kBias);
  std::vector<uint32_t> runs;
  std::vector<int32_t> pins;
  const Status st = plain->debug_pinned_runs(&runs);
  CHECK_CODE(st, Code::kEINVAL);
  CHECK(describe(st).find("debugPinnedRuns needs debug mode") != std::string::npos);
  CHECK_CODE(plain->debug_page_pins(0, 1, &pins), Code::kEINVAL);
  CHECK_CODE(plain->debug_page_pins(-1, 1, &pins), Code::kEINVAL);  // debug is checked first
}

}  // namespace
}  // namespace pinlab::test
