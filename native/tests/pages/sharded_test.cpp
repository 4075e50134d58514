// The 'sharded' scheme's own contract (pages/schemes/sharded.h): on a 2 MiB folio pins are
// counted in per-thread shards with an exact non-zero summary. Exact answers (maybe-pinned,
// pincount) whichever thread pinned and whichever unpins, an over-unpin spread over shards
// refused with nothing changed, EOVERFLOW exactly as separate's, no free under a pin, and no
// shard state left behind by an unpin, a split or a free. The concurrent linearizability of
// the same answers is history_test.cpp's (its order-9 scenarios). Tag "concurrency" on the
// threaded cases: they also run under ThreadSanitizer.
#include <atomic>
#include <climits>
#include <vector>

#include "fixtures.h"

namespace pinlab::test {
namespace {

constexpr uint64_t kHead = 512;  // an order-9 folio: 32 lines of words, 16 shards

std::unique_ptr<PageArray> sharded_array() {
  auto pa = make_array(1024, Scheme::kSharded);
  CHECK_OK(pa->make_folio(kHead, 9));
  return pa;
}

void pin(PageArray& pa, uint64_t refs) {
  uint64_t n = 0;
  CHECK_OK(pa.pin_pages(PageSet::range(kHead, refs), bvec(true), &n));
}

// Every page's word of a split (or freed and re-made) folio is its own pincount again: 0.
void check_no_shard_state_left(PageArray& pa) {
  CHECK_OK(pa.split_folio(kHead));
  for (uint64_t p = kHead; p < kHead + 512; ++p) {
    CHECK_EQ(pa.pincount(p).value_or(-1), int64_t{0});
    CHECK(!pa.maybe_dma_pinned(p));
  }
  CHECK_OK(pa.make_folio(kHead, 9));
  CHECK_EQ(pa.pincount(kHead).value_or(-1), int64_t{0});
}

TEST_TAGGED(sharded_pins_of_many_threads_are_counted_exactly, "concurrency") {
  auto pa = sharded_array();
  constexpr int kThreads = 4, kPins = 500;
  run_threads(kThreads, [&](int) {
    for (int i = 0; i < kPins; ++i) pin(*pa, 1);
  });
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{kThreads * kPins});
  CHECK_EQ(pa->refcount(kHead), 1 + kThreads * kPins);
  CHECK(pa->maybe_dma_pinned(kHead));
  // Unpinned by other threads than those that pinned (each takes from whichever shard has them).
  run_threads(kThreads, [&](int) {
    for (int i = 0; i < kPins; ++i) CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
  });
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
  CHECK_EQ(pa->refcount(kHead), 1);
  CHECK(!pa->maybe_dma_pinned(kHead));
  check_no_shard_state_left(*pa);
}

TEST_TAGGED(sharded_an_unpin_spread_over_shards_is_exact, "concurrency") {
  auto pa = sharded_array();
  // Two threads pin 2 subpages each: 2 pins in each of two shards, none holds 3.
  run_threads(2, [&](int) { pin(*pa, 2); });
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{4});
  // An over-unpin of 5: refused, nothing changed.
  Status st = pa->unpin_pages(PageSet::range(kHead, 5), bvec(true));
  CHECK_CODE(st, Code::kENOTPINNED);
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{4});
  CHECK_EQ(pa->refcount(kHead), 5);
  CHECK(pa->maybe_dma_pinned(kHead));
  // An unpin of 3 from this thread: taken from both shards at once.
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 3), bvec(true)));
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{1});
  CHECK(pa->maybe_dma_pinned(kHead));
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
  CHECK(!pa->maybe_dma_pinned(kHead));
  st = pa->unpin_pages(PageSet::range(kHead, 1), bvec(true));
  CHECK_CODE(st, Code::kENOTPINNED);
  CHECK_EQ(pa->refcount(kHead), 1);
  check_no_shard_state_left(*pa);
}

TEST(sharded_overflow_is_exact_as_separate) {
  for (Scheme s : {Scheme::kSeparate, Scheme::kSharded}) {
    auto pa = make_array(1024, s);
    CHECK_OK(pa->make_folio(kHead, 9));
    CHECK_OK(pa->get_page(kHead, INT32_MAX - 3 - pa->refcount(kHead)));
    uint64_t n = 0;
    CHECK_CODE(pa->pin_pages(PageSet::range(kHead, 4), bvec(true), &n), Code::kEOVERFLOW);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
    CHECK(!pa->maybe_dma_pinned(kHead));
    CHECK_OK(pa->pin_pages(PageSet::range(kHead, 3), bvec(true), &n));
    CHECK_CODE(pa->pin_pages(PageSet::range(kHead, 1), bvec(true), &n), Code::kEOVERFLOW);
    CHECK_EQ(pa->refcount(kHead), INT32_MAX);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{3});
  }
}

TEST(sharded_a_pinned_folio_is_never_freed) {
  auto pa = sharded_array();
  const uint64_t free_before = pa->free_pages();
  pin(*pa, 1);
  bool freed = true;
  CHECK_OK(pa->put_page(kHead, 1, &freed));  // the owner's reference: the pin still holds one
  CHECK(!freed);
  CHECK_EQ(pa->refcount(kHead), 1);
  CHECK(pa->maybe_dma_pinned(kHead));
  CHECK_EQ(pa->free_pages(), free_before);
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));  // the last reference
  CHECK_EQ(pa->refcount(kHead), 0);
  CHECK_EQ(pa->free_pages(), free_before + 512);
}

TEST(sharded_split_and_make_refuse_a_pinned_folio) {
  auto pa = sharded_array();
  pin(*pa, 1);
  CHECK_CODE(pa->split_folio(kHead), Code::kEBUSY);
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
  check_no_shard_state_left(*pa);
}

}  // namespace
}  // namespace pinlab::test
