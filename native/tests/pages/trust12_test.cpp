// Issue 12: the pin paths refuse the zero page (never counted), and unpin_pages_both releases
// read and write pins as one all-or-nothing call.
#include <vector>

#include "fixtures.h"

namespace pinlab::test {
namespace {

TEST(pin_paths_refuse_the_zero_page) {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      auto pa = make_array(256, s, debug, 0, 1, kDefaultBias, false);
      uint64_t z = 0, other = 0;
      CHECK_OK(pa->zero_page(&z));
      CHECK_OK(pa->alloc_folio(0, false, &other));
      const int32_t ref = pa->refcount(z);
      const uint32_t list[] = {uint32_t(other), uint32_t(z)};
      for (bool per_page : {false, true}) {
        for (bool write : {false, true}) {
          const PinFlags f{write, per_page, false};
          uint64_t n = 0;
          CHECK_CODE(pa->pin_pages(PageSet::range(z, 1), f, &n), Code::kEINVAL);
          CHECK_CODE(pa->pin_pages(PageSet::pfns(list, 2), f, &n), Code::kEINVAL);
          CHECK_CODE(pa->unpin_pages(PageSet::range(z, 1), f), Code::kEINVAL);
          CHECK_CODE(pa->unpin_pages(PageSet::pfns(list, 2), f), Code::kEINVAL);
        }
      }
      CHECK_CODE(pa->unpin_pages_both(list, 2, nullptr, 0), Code::kEINVAL);
      CHECK_EQ(pa->refcount(z), ref);
      CHECK_EQ(pa->refcount(other), 1);
      CHECK_EQ(pa->stat(Stat::kPinAcquired), 0u);
      CHECK_EQ(pa->stat(Stat::kPinReleased), 0u);
    }
  }
}

TEST(unpin_pages_both_is_all_or_nothing) {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      auto pa = make_array(64, s, debug, 2);
      const std::vector<uint32_t> reads = {0, 1, 2, 3, 4};
      const std::vector<uint32_t> writes = {2, 3, 4, 5};
      uint64_t n = 0;
      CHECK_OK(pa->pin_pages(PageSet::pfns(reads.data(), reads.size()), PinFlags{false, false, false}, &n));
      CHECK_OK(pa->pin_pages(PageSet::pfns(writes.data(), writes.size()), PinFlags{true, false, false}, &n));
      std::vector<int32_t> before;
      for (uint32_t p = 0; p < 8; ++p) before.push_back(pa->refcount(p));
      const uint64_t released = pa->stat(Stat::kPinReleased);
      // One write pin too many (page 6 holds none): refused whole, nothing released.
      const std::vector<uint32_t> too_many = {2, 3, 4, 5, 6};
      CHECK_CODE(pa->unpin_pages_both(reads.data(), reads.size(), too_many.data(), too_many.size()),
                 Code::kENOTPINNED);
      // Twice the reads: refused whole too.
      std::vector<uint32_t> twice = reads;
      twice.insert(twice.end(), reads.begin(), reads.end());
      CHECK_CODE(pa->unpin_pages_both(twice.data(), twice.size(), writes.data(), writes.size()),
                 Code::kENOTPINNED);
      for (uint32_t p = 0; p < 8; ++p) CHECK_EQ(pa->refcount(p), before[p]);
      CHECK_EQ(pa->stat(Stat::kPinReleased), released);
      CHECK_OK(pa->unpin_pages_both(reads.data(), reads.size(), writes.data(), writes.size()));
      for (uint32_t p = 0; p < 8; ++p) CHECK_EQ(pa->refcount(p), 1);
      CHECK_EQ(pa->stat(Stat::kPinReleased), pa->stat(Stat::kPinAcquired));
      CHECK(!pa->maybe_dma_pinned(0));
    }
  }
}

// The two lists are validated together whether their keys only go up (one running total per
// folio and subpage, no table) or go back (a table): the same verdicts either way, for a folio
// and a subpage named in both lists, under every scheme, in and out of debug mode.
TEST(unpin_pages_both_validates_ordered_and_unordered_lists_alike) {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      auto pa = make_array(64, s, debug, 2);
      uint64_t n = 0;
      // Read pins on 0..7, write pins on 4..7 (page 4..7: one read and one write pin each).
      CHECK_OK(pa->pin_pages(PageSet::range(0, 8), PinFlags{false, false, false}, &n));
      CHECK_OK(pa->pin_pages(PageSet::range(4, 4), PinFlags{true, false, false}, &n));
      const uint64_t released = pa->stat(Stat::kPinReleased);
      const uint64_t rollbacks = pa->stat(Stat::kRollbacks);
      // Writes before reads in key order (the sequence goes back), one write pin too many on 7.
      const std::vector<uint32_t> r_back = {4, 5, 6, 7, 0, 1, 2, 3}, w_over = {4, 5, 6, 7, 7};
      CHECK_CODE(pa->unpin_pages_both(r_back.data(), r_back.size(), w_over.data(), w_over.size()),
                 Code::kENOTPINNED);
      // Ascending throughout, two read pins too many on 3 (write-bias outside debug mode counts
      // a read pin as a plain reference: one more would take the folio's own).
      const std::vector<uint32_t> r_over = {0, 1, 2, 3, 3, 3}, w_up = {4, 5, 6, 7};
      CHECK_CODE(pa->unpin_pages_both(r_over.data(), r_over.size(), w_up.data(), w_up.size()),
                 Code::kENOTPINNED);
      CHECK_EQ(pa->stat(Stat::kPinReleased), released);
      CHECK_EQ(pa->stat(Stat::kRollbacks), rollbacks + 2);
      for (uint32_t p = 4; p < 8; ++p) CHECK(pa->maybe_dma_pinned(p));  // write pins: every scheme sees them
      // The reads going back, then the writes: taken whole.
      CHECK_OK(pa->unpin_pages_both(r_back.data(), r_back.size(), w_up.data(), w_up.size()));
      CHECK_EQ(pa->stat(Stat::kPinReleased), released + 12);
      for (uint32_t p = 0; p < 8; ++p) CHECK_EQ(pa->refcount(p), 1);
    }
  }
}

}  // namespace
}  // namespace pinlab::test
