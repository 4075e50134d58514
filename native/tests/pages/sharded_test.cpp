// The 'sharded' scheme's own contract (pages/schemes/sharded.h): on a 2 MiB folio pins are
// counted in per-thread shards with an exact non-zero summary. Exact answers (maybe-pinned,
// pincount) whichever thread pinned and whichever unpins, an over-unpin spread over shards
// refused with nothing changed, the pins' ONE reference (taken by the first pin, given back by
// the last: scheme_api.h, SharedRefPinStore) and its refusals, EOVERFLOW exact at the pin limit
// and at a full refcount, no free under a pin, and no
// shard state left behind by an unpin, a split or a free. The concurrent linearizability of
// the same answers is history_test.cpp's (its order-9 scenarios). Tag "concurrency" on the
// threaded cases: they also run under ThreadSanitizer.
#include <atomic>
#include <climits>
#include <thread>
#include <vector>

#include "fixtures.h"
#include "pages/gup_ops.h"

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
  // The pins hold one reference between them: the owner's plus theirs.
  CHECK_EQ(pa->refcount(kHead), 2);
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
  CHECK_EQ(pa->refcount(kHead), 2);
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

TEST(sharded_overflow_is_exact_at_a_full_refcount) {
  // The refcount budget binds only the first pin (it takes the pins' reference); pins into a
  // pinned folio add no reference. separate, beside it, spends one reference a pin.
  for (Scheme s : {Scheme::kSeparate, Scheme::kSharded}) {
    auto pa = make_array(1024, s);
    CHECK_OK(pa->make_folio(kHead, 9));
    CHECK_OK(pa->get_page(kHead, INT32_MAX - pa->refcount(kHead)));
    uint64_t n = 0;
    CHECK_CODE(pa->pin_pages(PageSet::range(kHead, 1), bvec(true), &n), Code::kEOVERFLOW);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
    CHECK_EQ(pa->refcount(kHead), INT32_MAX);
    CHECK(!pa->maybe_dma_pinned(kHead));
    bool freed = false;
    CHECK_OK(pa->put_page(kHead, 3, &freed));
    CHECK_OK(pa->pin_pages(PageSet::range(kHead, 3), bvec(true), &n));
    if (s == Scheme::kSeparate) {
      CHECK_EQ(pa->refcount(kHead), INT32_MAX);
      CHECK_CODE(pa->pin_pages(PageSet::range(kHead, 1), bvec(true), &n), Code::kEOVERFLOW);
    } else {
      CHECK_EQ(pa->refcount(kHead), INT32_MAX - 2);
      CHECK_OK(pa->pin_pages(PageSet::range(kHead, 100), bvec(true), &n));
      CHECK_EQ(pa->refcount(kHead), INT32_MAX - 2);
      CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{103});
    }
  }
}

// The store itself (the page array can only reach INT32_MAX pins through 2^31 list entries):
// its take_ref and last, its exact limit, and refusals that leave every word as it was.
struct StoreFixture {
  std::vector<int32_t> words = std::vector<int32_t>(512, 0);
  PinWords w{words.data(), 512};
  int takes = 0;
  Reason take_answer = Reason::kNone;
  Reason grab(int64_t pins) {
    return ShardedScheme::grab_pins(w, 0, 9, pins, std::memory_order_relaxed, [&] {
      ++takes;
      return take_answer;
    });
  }
  Reason release(int64_t pins, bool* last) { return ShardedScheme::release_pins(w, 0, 9, pins, last); }
  bool all_zero() const {
    for (int32_t x : words)
      if (x != 0) return false;
    return true;
  }
};

TEST(sharded_pins_take_one_reference_and_give_it_back_once) {
  StoreFixture f;
  f.take_answer = Reason::kPageFree;  // a free folio: refused, nothing written
  CHECK(f.grab(1) == Reason::kPageFree);
  CHECK_EQ(f.takes, 1);
  CHECK(f.all_zero());
  f.take_answer = Reason::kRefcountOverflow;  // a full refcount: the same
  CHECK(f.grab(7) == Reason::kRefcountOverflow);
  CHECK(f.all_zero());
  f.take_answer = Reason::kNone;
  f.takes = 0;
  CHECK(f.grab(1) == Reason::kNone);
  CHECK(f.grab(5) == Reason::kNone);
  CHECK_EQ(f.takes, 1);  // the first pin only
  CHECK(ShardedScheme::maybe_pinned(f.w, 0, 9, std::memory_order_relaxed));
  bool last = false;
  CHECK(f.release(7, &last) == Reason::kNotPinned);  // an over-unpin: refused, not last
  CHECK(!last);
  CHECK_EQ(ShardedScheme::pins(f.w, 0, 9, std::memory_order_relaxed), int64_t{6});
  CHECK(f.release(4, &last) == Reason::kNone);
  CHECK(!last);
  CHECK(f.release(2, &last) == Reason::kNone);
  CHECK(last);  // the last pins: the page array gives the reference back
  CHECK(!ShardedScheme::maybe_pinned(f.w, 0, 9, std::memory_order_relaxed));
  CHECK(f.all_zero());
  // A first pin after the last: takes it again.
  CHECK(f.grab(1) == Reason::kNone);
  CHECK_EQ(f.takes, 2);
}

TEST(sharded_pin_limit_is_exact) {
  StoreFixture f;
  const int64_t limit = ShardedScheme::pin_limit({}, 9);
  CHECK(limit <= INT32_MAX && limit > INT32_MAX - 16);
  CHECK(f.grab(limit + 1) == Reason::kPincountOverflow);
  CHECK(f.all_zero());
  CHECK_EQ(f.takes, 0);
  // Spread over every shard (the slow path), then one more: refused, nothing changed.
  CHECK(f.grab(limit - 1) == Reason::kNone);
  CHECK(f.grab(1) == Reason::kNone);
  const std::vector<int32_t> full = f.words;
  CHECK(f.grab(1) == Reason::kPincountOverflow);
  CHECK(f.words == full);
  CHECK_EQ(ShardedScheme::pins(f.w, 0, 9, std::memory_order_relaxed), limit);
  CHECK_EQ(f.takes, 1);
  bool last = false;
  CHECK(f.release(limit + 1, &last) == Reason::kNotPinned);
  CHECK(f.words == full);
  CHECK(f.release(limit, &last) == Reason::kNone);
  CHECK(last);
  CHECK(f.all_zero());
}

TEST(sharded_gup_fast_pins_share_the_reference_and_refuse_a_free_folio) {
  auto pa = sharded_array();
  uint64_t head = 0;
  uint32_t order = 0;
  auto fast = [&](int64_t refs) {
    return pa->try_grab_folio_fast<Scheme::kSharded>(kHead + 3, refs, true, true, &head, &order);
  };
  CHECK(fast(1));
  CHECK(fast(2));
  CHECK_EQ(pa->refcount(kHead), 2);  // the owner's, and the pins' one (gup_fast's own is gone)
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{3});
  CHECK(pa->release_folio_refs<Scheme::kSharded>(kHead + 3, head, order, 2, true, true));
  CHECK(pa->release_folio_refs<Scheme::kSharded>(kHead + 3, head, order, 1, true, true));
  CHECK_EQ(pa->refcount(kHead), 1);
  bool freed = false;
  CHECK_OK(pa->put_page(kHead, 1, &freed));
  CHECK(freed);
  // A free folio: refused before any word of it is written.
  CHECK(!fast(1));
  CHECK_EQ(pa->refcount(kHead), 0);
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
  CHECK(!pa->maybe_dma_pinned(kHead));
}

// gup_fast's first pin of a sharded folio needs room for ONE reference, as separate's pin and
// the kernel's try_grab_folio_fast: its own speculative reference becomes the pins' (found by
// the history checker under load: at refcount INT32_MAX - 1 the grab took a second reference,
// overflowed and was refused where the end state, INT32_MAX, fits).
TEST(sharded_gup_fast_first_pin_at_a_nearly_full_refcount_fits) {
  for (Scheme s : {Scheme::kSeparate, Scheme::kSharded}) {
    auto pa = make_array(1024, s);
    CHECK_OK(pa->make_folio(kHead, 9));
    CHECK_OK(pa->get_page(kHead, INT32_MAX - 1 - pa->refcount(kHead)));
    uint64_t head = 0;
    uint32_t order = 0;
    const bool got = dispatch_scheme(s, [&](auto tag) {
      return pa->try_grab_folio_fast<decltype(tag)::value>(kHead + 7, 1, true, true, &head, &order);
    });
    CHECK(got);
    CHECK_EQ(pa->refcount(kHead), INT32_MAX);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{1});
    CHECK(pa->maybe_dma_pinned(kHead));
    // No room for a second grab's own reference: refused with nothing changed.
    const bool second = dispatch_scheme(s, [&](auto tag) {
      uint64_t h2 = 0;
      uint32_t o2 = 0;
      return pa->try_grab_folio_fast<decltype(tag)::value>(kHead + 8, 1, true, true, &h2, &o2);
    });
    CHECK(!second);
    CHECK_EQ(pa->refcount(kHead), INT32_MAX);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{1});
    const bool released = dispatch_scheme(s, [&](auto tag) {
      return pa->release_folio_refs<decltype(tag)::value>(kHead + 7, head, order, 1, true, true);
    });
    CHECK(released);
    CHECK_EQ(pa->refcount(kHead), INT32_MAX - 1);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
    CHECK(!pa->maybe_dma_pinned(kHead));
    // At INT32_MAX nothing fits: refused before any word is written.
    CHECK_OK(pa->get_page(kHead, 1));
    const bool full = dispatch_scheme(s, [&](auto tag) {
      return pa->try_grab_folio_fast<decltype(tag)::value>(kHead + 7, 1, true, true, &head, &order);
    });
    CHECK(!full);
    CHECK_EQ(pa->refcount(kHead), INT32_MAX);
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
  }
}

// A gup_fast grab gives its own reference back by a CAS that never goes below zero: a plain
// put of more than its caller holds (misuse that debug mode refuses) can eat the owner's, the
// pins' and the grab's own references at once and free the folio; the grab's put-back then
// finds nothing of its own left instead of taking the refcount to -1. (The first helper of
// stop 25 reproduced -1 with the plain fetch_sub this replaced.)
TEST_TAGGED(sharded_gup_fast_put_back_never_goes_below_zero, "concurrency") {
  int negative = 0;
  for (int round = 0; round < 50 && negative == 0; ++round) {
    auto pa = sharded_array();
    pin(*pa, 1);  // the pins' reference: refcount 2
    std::atomic<bool> done{false};
    run_threads(2, [&](int t) {
      if (t == 0) {
        for (int i = 0; i < 100000 && !done.load(std::memory_order_relaxed); ++i) {
          uint64_t h = 0;
          uint32_t o = 0;
          if (pa->try_grab_folio_fast<Scheme::kSharded>(kHead + 5, 1, true, true, &h, &o))
            (void)pa->release_folio_refs<Scheme::kSharded>(kHead + 5, h, o, 1, true, true);
          if (pa->refcount(kHead) < 0) done.store(true, std::memory_order_relaxed);
        }
        done.store(true, std::memory_order_relaxed);
        return;
      }
      const uint32_t three[3] = {uint32_t(kHead), uint32_t(kHead), uint32_t(kHead)};
      while (!done.load(std::memory_order_relaxed)) {
        // Refcount 3: the owner's, the pins' and a grab's own in flight. Eat them all.
        if (pa->refcount(kHead) == 3 && pa->put_pages(three, 3, -1).ok()) {
          while (pa->refcount(kHead) > 0 && !done.load(std::memory_order_relaxed)) {
          }
          done.store(true, std::memory_order_relaxed);
        }
      }
    });
    if (pa->refcount(kHead) < 0) ++negative;
  }
  CHECK_EQ(negative, 0);
}

TEST(sharded_a_pin_refused_midway_gives_the_reference_back) {
  // A list call pins the folio (its first pin takes the reference), then meets a free page:
  // EFREE, and its give-back is the folio's last unpin, so the reference goes too.
  auto pa = sharded_array();
  bool freed = false;
  CHECK_OK(pa->put_page(7, 1, &freed));
  CHECK(freed);
  const uint32_t list[] = {uint32_t(kHead), uint32_t(kHead + 1), 7};
  uint64_t n = 0;
  CHECK_CODE(pa->pin_pages(PageSet::pfns(list, 3), bvec(true), &n), Code::kEFREE);
  CHECK_EQ(pa->refcount(kHead), 1);
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
  CHECK(!pa->maybe_dma_pinned(kHead));
  check_no_shard_state_left(*pa);
}

TEST(sharded_a_pinned_folio_is_never_freed) {
  auto pa = sharded_array();
  const uint64_t free_before = pa->free_pages();
  pin(*pa, 1);
  bool freed = true;
  CHECK_OK(pa->put_page(kHead, 1, &freed));  // the owner's reference: the pins still hold one
  CHECK(!freed);
  CHECK_EQ(pa->refcount(kHead), 1);
  CHECK(pa->maybe_dma_pinned(kHead));
  CHECK_EQ(pa->free_pages(), free_before);
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));  // the last reference
  CHECK_EQ(pa->refcount(kHead), 0);
  CHECK_EQ(pa->free_pages(), free_before + 512);
}

// A plain put that eats the pins' one shared reference (a caller's bug): debug mode refuses it
// with EPINNED and nothing changed, whether it would free the folio or not. Outside debug mode
// it goes through, as in the kernel (README, the sharded scheme); the unpin that follows then
// finds the reference eaten (ENOTPINNED), and the folio is freed exactly once.
TEST(sharded_a_put_that_eats_the_pins_reference) {
  auto dbg = make_array(1024, Scheme::kSharded, /*debug=*/true);
  CHECK_OK(dbg->make_folio(kHead, 9));
  pin(*dbg, 2);  // two pins, one reference between them
  bool freed = false;
  CHECK_OK(dbg->put_page(kHead, 1, &freed));  // the owner's reference
  CHECK_EQ(dbg->refcount(kHead), 1);
  const uint64_t free_before = dbg->free_pages();
  CHECK(dbg->put_page(kHead + 7, 1, &freed).code == Code::kEPINNED);
  const uint32_t list[] = {uint32_t(kHead)};
  CHECK(dbg->put_pages(list, 1, -1).code == Code::kEPINNED);
  CHECK_EQ(dbg->refcount(kHead), 1);
  CHECK_EQ(dbg->pincount(kHead).value_or(-1), int64_t{2});
  CHECK(dbg->maybe_dma_pinned(kHead));
  CHECK_EQ(dbg->free_pages(), free_before);
  CHECK_OK(dbg->unpin_pages(PageSet::range(kHead, 2), bvec(true)));
  CHECK_EQ(dbg->refcount(kHead), 0);
  CHECK_EQ(dbg->free_pages(), free_before + 512);

  auto pa = sharded_array();  // debug off
  pin(*pa, 2);
  CHECK_OK(pa->put_page(kHead, 1, &freed));
  CHECK(!freed);
  const uint64_t before = pa->free_pages();
  CHECK_OK(pa->put_page(kHead, 1, &freed));  // eats the pins' reference: the folio goes
  CHECK(freed);
  CHECK_EQ(pa->free_pages(), before + 512);
  // The freed folio's words were cleared: nothing is left pinned, and the unpin is refused.
  CHECK(!pa->maybe_dma_pinned(kHead));
  CHECK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)).code == Code::kENOTPINNED);
  CHECK_EQ(pa->free_pages(), before + 512);
}

TEST(sharded_split_and_make_refuse_a_pinned_folio) {
  auto pa = sharded_array();
  pin(*pa, 1);
  CHECK_CODE(pa->split_folio(kHead), Code::kEBUSY);
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
  check_no_shard_state_left(*pa);
}

// ---- lazy mode (percpu_ref's mode switch) --------------------------------------------------
// Runs fn on a thread whose shard of an order-9 folio is not the calling thread's, so that its
// pins and the caller's overlap on two shards (registration indices are process-wide: after 16
// threads one may share the caller's shard, and then another is tried).
template <typename F>
void on_other_shard(F&& fn) {
  const uint32_t mine = ShardedScheme::my_shard(9);
  for (int tries = 0; tries < 64; ++tries) {
    bool ran = false;
    std::thread t([&] {
      if (ShardedScheme::my_shard(9) == mine) return;
      fn();
      ran = true;
    });
    t.join();
    if (ran) return;
  }
  CHECK(false);  // no thread got another shard
}

TEST(sharded_store_goes_lazy_when_two_threads_pins_overlap_and_settles_exactly) {
  StoreFixture f;
  CHECK(f.grab(2) == Reason::kNone);
  CHECK(!ShardedScheme::lazy(f.w, 0, 9));
  on_other_shard([&] { CHECK(f.grab(3) == Reason::kNone); });  // overlaps: the folio goes lazy
  CHECK(ShardedScheme::lazy(f.w, 0, 9));
  CHECK_EQ(f.takes, 1);  // the mode keeps the first pin's reference; no other was taken
  CHECK_EQ(ShardedScheme::pins(f.w, 0, 9, std::memory_order_relaxed), int64_t{5});
  CHECK(ShardedScheme::maybe_pinned(f.w, 0, 9, std::memory_order_relaxed));
  bool last = false;
  CHECK(f.release(5, &last) == Reason::kNone);  // spread over two shards: the frozen path
  CHECK(!last);  // a lazy folio never reports its last pins: its mode holds the reference
  CHECK(ShardedScheme::lazy(f.w, 0, 9));
  CHECK(!ShardedScheme::maybe_pinned(f.w, 0, 9, std::memory_order_relaxed));  // exact, lazy
  CHECK(!ShardedScheme::maybe_pinned(f.w, 0, 9, std::memory_order_seq_cst));
  CHECK(f.release(1, &last) == Reason::kNotPinned);  // an over-unpin: refused, nothing written
  CHECK(ShardedScheme::lazy(f.w, 0, 9));
  // Settling with no pin left: the mode's reference goes back, and every word is 0 again.
  CHECK(ShardedScheme::settle_lazy(f.w, 0, 9, &last));
  CHECK(last);
  CHECK(f.all_zero());
  CHECK(!ShardedScheme::settle_lazy(f.w, 0, 9, &last));  // not lazy: nothing to do
  CHECK(!last);
  // Lazy again, settled with pins left: the summary counts the non-zero shards, the reference
  // stays, and the last unpin reports it as an atomic folio's does.
  CHECK(f.grab(1) == Reason::kNone);
  CHECK_EQ(f.takes, 2);
  on_other_shard([&] { CHECK(f.grab(1) == Reason::kNone); });
  CHECK(ShardedScheme::lazy(f.w, 0, 9));
  on_other_shard([&] {
    bool l = false;
    CHECK(f.release(1, &l) == Reason::kNone);
    CHECK(!l);
  });
  CHECK(ShardedScheme::settle_lazy(f.w, 0, 9, &last));
  CHECK(!last);
  CHECK(!ShardedScheme::lazy(f.w, 0, 9));
  CHECK(ShardedScheme::maybe_pinned(f.w, 0, 9, std::memory_order_relaxed));
  CHECK(f.release(1, &last) == Reason::kNone);
  CHECK(last);
  CHECK(f.all_zero());
}

// A lazy folio: two threads' pins overlapped on it.
std::unique_ptr<PageArray> lazy_array(uint64_t main_pins, uint64_t other_pins) {
  auto pa = sharded_array();
  pin(*pa, main_pins);
  on_other_shard([&] { pin(*pa, other_pins); });
  CHECK(pa->lazy_folio(kHead));
  return pa;
}

TEST(sharded_lazy_folio_reads_the_kernels_refcount_and_frees_with_its_last_put) {
  auto pa = lazy_array(1, 1);
  const uint64_t free0 = pa->free_pages();
  CHECK_EQ(pa->refcount(kHead), 2);  // the owner's and the pins' one
  CHECK_EQ(pa->refcount_word(kHead), 2);
  on_other_shard([&] { CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true))); });
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
  // No pin left, still lazy (the owner's reference keeps the folio): the mode's reference is
  // in the word, not in refcount().
  CHECK(pa->lazy_folio(kHead));
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{0});
  CHECK(!pa->maybe_dma_pinned(kHead));
  CHECK_EQ(pa->refcount(kHead), 1);
  CHECK_EQ(pa->refcount_word(kHead), 2);
  // Puts are checked against the kernel's count: two is one too many (nothing changes).
  const uint32_t two[] = {uint32_t(kHead), uint32_t(kHead)};
  CHECK_CODE(pa->check_put_pages(two, 2), Code::kEINVAL);
  bool freed = false;
  CHECK_CODE(pa->put_page(kHead, 2, &freed), Code::kEINVAL);
  CHECK_CODE(pa->put_pages(two, 2, -1), Code::kEINVAL);
  CHECK_EQ(pa->refcount_word(kHead), 2);
  CHECK(pa->lazy_folio(kHead));
  CHECK_OK(pa->get_page(kHead, 1));
  CHECK_EQ(pa->refcount(kHead), 2);
  CHECK_OK(pa->put_page(kHead, 1, &freed));
  CHECK(!freed);
  // The owner's put is the last: it settles the folio and frees it, as the kernel's would.
  CHECK_OK(pa->put_page(kHead, 1, &freed));
  CHECK(freed);
  CHECK_EQ(pa->refcount(kHead), 0);
  CHECK_EQ(pa->refcount_word(kHead), 0);
  CHECK(!pa->lazy_folio(kHead));
  CHECK_EQ(pa->free_pages(), free0 + 512);
}

TEST(sharded_lazy_folio_is_freed_by_its_last_unpin_once_its_owner_let_go) {
  for (const bool other_last : {false, true}) {
    auto pa = lazy_array(2, 1);
    const uint64_t free0 = pa->free_pages();
    bool freed = false;
    CHECK_OK(pa->put_page(kHead, 1, &freed));  // the owner goes; the pins keep the folio
    CHECK(!freed);
    CHECK_EQ(pa->refcount(kHead), 1);
    CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
    CHECK_EQ(pa->free_pages(), free0);
    CHECK(pa->maybe_dma_pinned(kHead));
    auto unpin_other = [&] {
      on_other_shard([&] { CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true))); });
    };
    if (other_last) {
      CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
      CHECK_EQ(pa->free_pages(), free0);
      unpin_other();
    } else {
      unpin_other();
      CHECK_EQ(pa->free_pages(), free0);
      CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
    }
    // The last pin went: freed, as under every scheme.
    CHECK_EQ(pa->free_pages(), free0 + 512);
    CHECK_EQ(pa->refcount(kHead), 0);
    CHECK(!pa->maybe_dma_pinned(kHead));
    CHECK(!pa->lazy_folio(kHead));
  }
}

TEST(sharded_split_settles_a_lazy_folio_first) {
  {  // pinned: refused, and the pins stay exact in the settled folio
    auto pa = lazy_array(1, 2);
    CHECK_CODE(pa->split_folio(kHead), Code::kEBUSY);
    CHECK(!pa->lazy_folio(kHead));
    CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{3});
    CHECK(pa->maybe_dma_pinned(kHead));
    CHECK_EQ(pa->refcount(kHead), 2);
  }
  {  // no pin left: the mode's reference goes back and the split succeeds, as separate's
    auto pa = lazy_array(1, 1);
    CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 2), bvec(true)));
    CHECK(pa->lazy_folio(kHead));
    check_no_shard_state_left(*pa);
    CHECK(!pa->lazy_folio(kHead));
    CHECK_EQ(pa->refcount(kHead), 1);
  }
}

TEST(sharded_gup_fast_on_a_lazy_folio_keeps_the_kernels_count) {
  auto pa = lazy_array(1, 1);
  uint64_t head = 0;
  uint32_t order = 0;
  CHECK(pa->try_grab_folio_fast<Scheme::kSharded>(kHead + 7, 2, true, true, &head, &order));
  CHECK_EQ(pa->refcount(kHead), 2);  // gup_fast's own reference went back
  CHECK_EQ(pa->pincount(kHead).value_or(-1), int64_t{4});
  CHECK(pa->release_folio_refs<Scheme::kSharded>(kHead + 7, head, order, 2, true, true));
  CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 2), bvec(true)));
  CHECK(!pa->maybe_dma_pinned(kHead));
  CHECK_EQ(pa->refcount(kHead), 1);
}


// The last put and the last unpin of a lazy folio race (a Dekker pair: one of them settles and
// frees it), or, on odd rounds, the last two unpins of a lazy folio its owner already let go of
// (the one that leaves the mode's reference alone settles and frees it), while a third thread asks whether it is pinned (a query that may freeze the shards
// under a speculative reference) and a fourth allocates and frees folios, so that a freed folio's
// block is reused at once. The folio is freed exactly once, nothing leaks, no count goes below 0.
TEST_TAGGED(sharded_lazy_last_put_and_last_unpin_race_and_free_exactly_once, "concurrency") {
  int rounds = 0, lazy_rounds = 0;
  for (int round = 0; round < 400; ++round) {
    auto pa = sharded_array();
    const uint64_t free0 = pa->free_pages();
    const uint32_t mine = ShardedScheme::my_shard(9);
    std::atomic<int> stage{0};
    std::atomic<bool> done{false}, skipped{false}, negative{false};
    std::thread other([&] {
      while (stage.load() < 1) std::this_thread::yield();  // the caller pinned first
      if (ShardedScheme::my_shard(9) == mine) {
        skipped.store(true);
        stage.store(2);
        return;
      }
      pin(*pa, 1);  // overlaps the caller's pin: the folio goes lazy
      stage.store(2);
      while (stage.load() < 3) std::this_thread::yield();
      CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));  // the last unpin ...
    });
    std::thread query([&] {
      while (!done.load()) {
        (void)pa->maybe_dma_pinned(kHead + 3);
        if (pa->refcount(kHead) < 0 || pa->refcount_word(kHead) < 0) negative.store(true);
      }
    });
    std::thread churn([&] {
      while (!done.load()) {
        uint64_t h = 0;
        if (pa->alloc_folio(9, false, &h).ok()) pa->put_folio_refs(h, 1);
      }
    });
    const bool owner_first = round % 2 == 1;
    pin(*pa, 1);
    bool freed = false;
    if (owner_first) CHECK_OK(pa->put_page(kHead, 1, &freed));  // the pins alone hold it now
    stage.store(1);
    while (stage.load() < 2) std::this_thread::yield();
    if (!skipped.load()) {
      // Lazy, unless the query settled it already (a folio its pins alone hold settles when a
      // put, the query's own speculative reference included, leaves one reference).
      lazy_rounds += pa->lazy_folio(kHead) ? 1 : 0;
      if (owner_first) {
        stage.store(3);
        CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));  // ... against ours
      } else {
        CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));  // the other's is left
        stage.store(3);
        CHECK_OK(pa->put_page(kHead, 1, &freed));  // ... against the last put
      }
    } else if (owner_first) {
      CHECK_OK(pa->unpin_pages(PageSet::range(kHead, 1), bvec(true)));
    }
    other.join();
    done.store(true);
    query.join();
    churn.join();
    CHECK(!negative.load());
    if (skipped.load()) continue;
    ++rounds;
    CHECK_EQ(pa->free_pages(), free0 + 512);
    CHECK_EQ(pa->refcount_word(kHead), 0);
    CHECK(!pa->lazy_folio(kHead));
    CHECK(!pa->maybe_dma_pinned(kHead));
  }
  CHECK(rounds > 0);
  CHECK(lazy_rounds > 0);
}

}  // namespace
}  // namespace pinlab::test
