// Counters under misuse and concurrency: a refused grab or release is never visible to another
// thread (no add-then-undo window), and no call ever takes back a reference it gave up (a
// rollback could revive a folio another thread freed meanwhile). Each case makes the old
// failure likely: threads hammer the refused operation while others check what they see.
// Tag "concurrency": they also run under ThreadSanitizer (with fewer rounds).
#include <atomic>
#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "fixtures.h"

namespace pinlab::test {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kRounds = 4000;  // ThreadSanitizer runs each access ~10x slower
constexpr uint32_t kDoublePages = 1u << 13;
#else
constexpr int kRounds = 60000;
constexpr uint32_t kDoublePages = 1u << 16;  // two calls of ~20,000 runs: they overlap
#endif

// Every scheme, and hybrid twice: with an exact pincount for the order-2 folios used here
// (pincountMinOrder 1) and without one (3: they count as bias).
struct Variant {
  Scheme scheme;
  uint32_t min_order;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  for (Scheme s : kAllSchemes) {
    v.push_back({s, 1});
    if (s == Scheme::kHybrid) v.push_back({s, 3});
  }
  return v;
}

std::string variant_name(const Variant& v) {
  return std::string(scheme_name(v.scheme)) + (v.scheme == Scheme::kHybrid
                                                   ? " (pincountMinOrder " + std::to_string(v.min_order) + ")"
                                                   : "");
}

// write-bias hides read pins from maybe-pinned by design: the cases pin for write.
bool write_pins(Scheme s) { return s == Scheme::kWriteBias; }

// Violations, counted by kind, with the first few printed.
struct Violations {
  std::atomic<int> n{0};
  void add(const std::string& variant, const char* what, int64_t value) {
    if (n.fetch_add(1, std::memory_order_relaxed) < 5)
      std::fprintf(stderr, "    %s: %s (%lld)\n", variant.c_str(), what, (long long)value);
  }
};

// Item 6: threads over-unpin a folio (more pins than it holds: always refused) while another
// thread pins, unpins, gets and puts on it (never refused: it only releases what it holds),
// and another watches it. An unpin that subtracts first and undoes on refusal shows a
// negative count for a moment: the pinner's unpin or put is refused, maybe-pinned reads false
// under an exact pincount, a query reads below what is surely held.
TEST_TAGGED(refused_over_unpins_are_never_seen, "concurrency") {
  for (const Variant& v : variants()) {
    const std::string name = variant_name(v);
    auto pa = make_array(64, v.scheme, false, 0, v.min_order);
    constexpr uint64_t F = 8;
    CHECK_OK(pa->make_folio(F, 2));  // 4 subpages: an over-unpin of all 4 is one release
    const bool write = write_pins(v.scheme);
    uint64_t n = 0;
    CHECK_OK(pa->pin_pages(PageSet::range(F, 1), bvec(write), &n));  // held throughout
    const int32_t held = pa->refcount(F);  // 1 + one pin's references
    const int64_t one_pin = held - 1;
    const bool exact = pa->pincount(F).has_value();
    Violations bad;
    std::atomic<bool> stop{false};
    run_threads(4, [&](int t) {
      if (t < 2) {
        // Over-unpins: 4 pins released where at most 2 are held. Always ENOTPINNED.
        while (!stop.load(std::memory_order_acquire)) {
          const Status st = pa->unpin_pages(PageSet::range(F, 4), bvec(write));
          if (st.code != Code::kENOTPINNED) bad.add(name, "over-unpin not refused", int64_t(st.code));
        }
      } else if (t == 2) {
        // The pinner: releases only what it holds, so nothing it does may be refused.
        for (int i = 0; i < kRounds; ++i) {
          bool freed = false;
          if (!pa->get_page(F + 1, 1).ok()) bad.add(name, "get refused", i);
          if (!pa->pin_pages(PageSet::range(F + 1, 1), bvec(write), &n).ok())
            bad.add(name, "pin refused", i);
          if (!pa->unpin_pages(PageSet::range(F + 1, 1), bvec(write)).ok())
            bad.add(name, "unpin of a held pin refused", i);
          if (!pa->put_page(F + 1, 1, &freed).ok() || freed)
            bad.add(name, "put of a held reference refused", i);
        }
        stop.store(true, std::memory_order_release);  // pairs with the loops' acquire
      } else {
        // The watcher: one pin is held throughout, the pinner adds at most one pin and one
        // reference.
        while (!stop.load(std::memory_order_acquire)) {
          if (!pa->maybe_dma_pinned(F)) bad.add(name, "maybe pinned false while pinned", 0);
          const int32_t ref = pa->refcount(F);
          if (ref < held || ref > held + one_pin + 1) bad.add(name, "refcount out of bounds", ref);
          if (exact) {
            const int64_t pins = pa->pincount(F).value_or(-1);
            if (pins < 1 || pins > 2) bad.add(name, "pincount out of bounds", pins);
          }
        }
      }
    });
    CHECK_EQ(bad.n.load(), 0);
    CHECK_EQ(pa->refcount(F), held);
    if (exact) CHECK_EQ(pa->pincount(F).value_or(-1), int64_t{1});
  }
}

// Item 6: a folio with room for exactly 3 one-subpage pins. Threads try to pin all 4 subpages
// (always EOVERFLOW) while another pins and unpins one subpage (always fits) and another gets,
// puts and watches. A grab that adds first and undoes on overflow wraps the count for a
// moment: the fitting pin is refused, a get sees the guard band, a query reads a negative.
TEST_TAGGED(refused_overflowing_pins_are_never_seen, "concurrency") {
  for (const Variant& v : variants()) {
    const std::string name = variant_name(v);
    auto pa = make_array(64, v.scheme, false, 0, v.min_order, 1u << 20);
    constexpr uint64_t F = 8;
    CHECK_OK(pa->make_folio(F, 2));
    const bool write = write_pins(v.scheme);
    uint64_t n = 0;
    CHECK_OK(pa->pin_pages(PageSet::range(F, 1), bvec(write), &n));
    const int64_t c = pa->refcount(F) - 1;  // one subpage pin's references
    CHECK_OK(pa->unpin_pages(PageSet::range(F, 1), bvec(write)));
    const int32_t base = int32_t(INT32_MAX - 3 * c);
    CHECK_OK(pa->get_page(F, base - pa->refcount(F)));
    CHECK_EQ(pa->refcount(F), base);
    Violations bad;
    std::atomic<bool> stop{false};
    run_threads(4, [&](int t) {
      if (t < 2) {
        while (!stop.load(std::memory_order_acquire)) {
          const Status st = pa->pin_pages(PageSet::range(F, 4), bvec(write), &n);
          if (st.code != Code::kEOVERFLOW) bad.add(name, "overflowing pin not refused", int64_t(st.code));
        }
      } else if (t == 2) {
        for (int i = 0; i < kRounds; ++i) {
          if (!pa->pin_pages(PageSet::range(F + 2, 1), bvec(write), &n).ok())
            bad.add(name, "a pin that fits refused", i);
          if (!pa->unpin_pages(PageSet::range(F + 2, 1), bvec(write)).ok())
            bad.add(name, "unpin of a held pin refused", i);
        }
        stop.store(true, std::memory_order_release);  // pairs with the loops' acquire
      } else {
        while (!stop.load(std::memory_order_acquire)) {
          bool freed = false;
          // base + c (the pinner's) + 1 <= INT32_MAX - 2c + 1: a get of 1 always fits.
          if (!pa->get_page(F + 3, 1).ok()) bad.add(name, "a get that fits refused", 0);
          const int32_t ref = pa->refcount(F);
          if (ref < base || ref > base + c + 1) bad.add(name, "refcount out of bounds", ref);
          if (!pa->put_page(F + 3, 1, &freed).ok()) bad.add(name, "put of a held reference refused", 0);
        }
      }
    });
    CHECK_EQ(bad.n.load(), 0);
    CHECK_EQ(pa->refcount(F), base);
    CHECK_EQ(pa->stat(Stat::kPinAcquired), pa->stat(Stat::kPinReleased));
  }
}

// Item 7: an unpin_pages of a long list whose last page is not pinned. The old walk released
// every page, then re-took them all when it met the last one; a thread that dropped the last
// plain reference of the first page in between freed that folio, and the rollback revived it:
// a free folio with a count, freed a second time by the next unpin. Validation first, the
// kernel's unpin (which never rolls back), never lets the refcount dip.
TEST_TAGGED(an_unpin_refused_midway_never_revives_a_freed_folio, "concurrency") {
#if defined(__SANITIZE_THREAD__)
  constexpr uint64_t N = uint64_t{1} << 14;
#else
  constexpr uint64_t N = uint64_t{1} << 16;  // the old walk's window: ~65,000 releases
#endif
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      for (int attempt = 0; attempt < 3; ++attempt) {
        auto pa = make_array(N, s, debug);
        const bool write = write_pins(s);
        uint64_t n = 0;
        CHECK_OK(pa->pin_pages(PageSet::range(0, N - 1), bvec(write), &n));  // not page N-1
        const int32_t pinned = pa->refcount(0);
        std::vector<uint32_t> list(N);
        for (uint64_t p = 0; p < N; ++p) list[p] = uint32_t(p);
        std::atomic<bool> done{false};
        bool freed = false;
        Status unpin = Status::Ok();
        run_threads(2, [&](int t) {
          if (t == 0) {
            unpin = pa->unpin_pages(PageSet::pfns(list.data(), N), bvec(write));
            done.store(true, std::memory_order_release);  // pairs with the watcher's acquire
            return;
          }
          // The owner of page 0's last plain reference drops it once the pin looks gone.
          while (!done.load(std::memory_order_acquire)) {
            if (pa->refcount(0) == 1) {
              CHECK_OK(pa->put_page(0, 1, &freed));
              break;
            }
          }
        });
        CHECK_CODE(unpin, Code::kENOTPINNED);
        if (freed) {
          // The unpin did release page 0 (the old rollback): then it must stay released.
          CHECK_EQ(pa->refcount(0), 0);
          CHECK_EQ(pa->free_pages(), 1u);
          break;
        }
        // Refused whole: every pin still there, nothing freed.
        CHECK_EQ(pa->refcount(0), pinned);
        CHECK_EQ(pa->refcount(N / 2), pinned);
        CHECK_EQ(pa->free_pages(), 0u);
        CHECK_OK(pa->unpin_pages(PageSet::range(0, N - 1), bvec(write)));
        CHECK_EQ(pa->refcount(0), 1);
        CHECK_EQ(pa->free_pages(), 0u);
      }
    }
  }
}

// Item 7, the same for put_pages: one put per listed page, the last one a free page.
TEST_TAGGED(a_put_pages_refused_midway_never_revives_a_freed_folio, "concurrency") {
#if defined(__SANITIZE_THREAD__)
  constexpr uint64_t N = uint64_t{1} << 14;
#else
  constexpr uint64_t N = uint64_t{1} << 17;
#endif
  for (bool debug : {false, true}) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto pa = make_array(N, Scheme::kHybrid, debug);
      bool freed = false;
      CHECK_OK(pa->put_page(N - 1, 1, &freed));  // page N-1 is free: its put is refused
      CHECK(freed);
      std::vector<uint32_t> list(N);
      for (uint64_t p = 0; p < N; ++p) {
        list[p] = uint32_t(p);
        if (p + 1 < N) CHECK_OK(pa->get_page(p, 1));  // refcount 2: the list's put + 1
      }
      std::atomic<bool> done{false};
      bool dropped = false;
      Status put = Status::Ok();
      run_threads(2, [&](int t) {
        if (t == 0) {
          put = pa->put_pages(list.data(), N, -1);
          done.store(true, std::memory_order_release);  // pairs with the watcher's acquire
          return;
        }
        while (!done.load(std::memory_order_acquire)) {
          if (pa->refcount(0) == 1) {
            CHECK_OK(pa->put_page(0, 1, &dropped));
            break;
          }
        }
      });
      CHECK_CODE(put, Code::kEINVAL);
      if (dropped) {
        CHECK_EQ(pa->refcount(0), 0);
        CHECK_EQ(pa->free_pages(), 2u);
        break;
      }
      CHECK_EQ(pa->refcount(0), 2);
      CHECK_EQ(pa->free_pages(), 1u);
    }
  }
}

// A pin call refused midway gives back the pins it took. If another thread's over-unpin took
// one of them meanwhile (it sees the count of the pin while the call holds it), that unpin
// released it already: giving it back again drove the count negative.
TEST_TAGGED(a_refused_pin_call_never_gives_back_more_than_it_holds, "concurrency") {
  for (const Variant& v : variants()) {
    const std::string name = variant_name(v);
    auto pa = make_array(4096, v.scheme, false, 0, v.min_order);
    const bool write = write_pins(v.scheme);
    bool freed = false;
    CHECK_OK(pa->put_page(4095, 1, &freed));  // free: the list's last entry is refused
    std::vector<uint32_t> list;
    for (uint32_t p = 0; p < 4095; p += 8) list.push_back(p);  // page 0 first, then others
    list.push_back(4095);
    Violations bad;
    std::atomic<bool> stop{false};
    run_threads(3, [&](int t) {
      if (t == 0) {
        for (int i = 0; i < kRounds / 20; ++i) {
          uint64_t n = 0;
          const Status st = pa->pin_pages(PageSet::pfns(list.data(), list.size()), bvec(write), &n);
          if (st.code != Code::kEFREE) bad.add(name, "pin of a free page not refused", int64_t(st.code));
        }
        stop.store(true, std::memory_order_release);  // pairs with the loops' acquire
        return;
      }
      while (!stop.load(std::memory_order_acquire)) {
        // Nobody holds a pin on page 0 but the refused call, for a moment: an over-unpin
        // can take that one (the count cannot tell), but must never go below zero.
        (void)pa->unpin_pages(PageSet::range(0, 1), bvec(write));
        if (pa->refcount(0) < 0) bad.add(name, "refcount below zero", pa->refcount(0));
      }
    });
    CHECK_EQ(bad.n.load(), 0);
    CHECK_EQ(pa->refcount(0), 1);
    CHECK_EQ(pa->refcount(4), 1);
    if (pa->pincount(0)) CHECK_EQ(*pa->pincount(0), int64_t{0});
  }
}

// Two callers unpin the same pins at once (one of them is wrong). Whatever the interleaving,
// every pin is released exactly once: a call refused whole changed nothing, a call that lost
// the race for some runs (kReleaseRaced) released the rest, and no count goes below zero.
TEST_TAGGED(a_double_unpin_releases_each_pin_exactly_once, "concurrency") {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      for (int round = 0; round < 8; ++round) {
        auto pa = make_array(kDoublePages, s, debug);
        CHECK_OK(pa->make_folio(512, 9));
        const bool write = write_pins(s);
        std::vector<uint32_t> list;  // small folios and a large one; long enough to overlap
        for (uint32_t p = 0; p < kDoublePages; p += 3) list.push_back(p);
        const PageSet set = PageSet::pfns(list.data(), list.size());
        uint64_t n = 0;
        CHECK_OK(pa->pin_pages(set, bvec(write), &n));
        Status st[2];
        run_threads(2, [&](int t) { st[t] = pa->unpin_pages(set, {write, t == 1, false}); });
        // Each call: released all, refused whole by validation (debug names the subpage's
        // reason), or lost the race for some runs (never in debug mode: it holds the stripes).
        for (const Status& x : st) {
          CHECK(x.ok() || x.code == Code::kENOTPINNED);
          if (debug) CHECK(x.reason != Reason::kReleaseRaced);
        }
        auto released = [](const Status& x) { return x.ok() || x.reason == Reason::kReleaseRaced; };
        CHECK(released(st[0]) || released(st[1]));
        CHECK_EQ(pa->stat(Stat::kPinReleased), uint64_t(list.size()));
        for (uint32_t p : list) {
          if (pa->refcount(p) != 1) CHECK_EQ(pa->refcount(p), 1);
          if (pa->pincount(p).value_or(0) != 0) CHECK_EQ(pa->pincount(p).value_or(0), int64_t{0});
        }
        CHECK_EQ(pa->free_pages(), 0u);
      }
    }
  }
}

// The same for put_pages: two callers put the last reference of the same pages at once. Each
// page is put, and freed, exactly once: the allocator never counts a page twice.
TEST_TAGGED(a_double_put_pages_frees_each_page_exactly_once, "concurrency") {
  for (bool debug : {false, true}) {
    for (int round = 0; round < 8; ++round) {
      auto pa = make_array(kDoublePages, Scheme::kSeparate, debug);
      std::vector<uint32_t> list;
      for (uint32_t p = 0; p < kDoublePages; p += 2) list.push_back(p);  // each holds 1 reference
      Status st[2];
      run_threads(2, [&](int t) { st[t] = pa->put_pages(list.data(), list.size(), -1); });
      for (const Status& x : st) {
        CHECK(x.ok() || (x.code == Code::kEINVAL &&
                         (x.reason == Reason::kPutBelowZero || x.reason == Reason::kPutRaced)));
        if (debug) CHECK(x.reason != Reason::kPutRaced);
      }
      for (uint32_t p : list)
        if (pa->refcount(p) != 0) CHECK_EQ(pa->refcount(p), 0);
      CHECK_EQ(pa->free_pages(), uint64_t(list.size()));
      CHECK_EQ(pa->stat(Stat::kFoliosFreed), uint64_t(list.size()));
    }
  }
}

// Validation sums what a list takes from each folio, in any order and with repeats: a list that
// names a folio more often than it holds pins is refused whole, before any release.
TEST(unpin_and_put_validate_the_sum_per_folio_of_an_unordered_list) {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      auto pa = make_array(2048, s, debug);
      CHECK_OK(pa->make_folio(512, 9));
      const bool write = write_pins(s);
      uint64_t n = 0;
      const uint32_t pinned[] = {5, 9, 600};
      CHECK_OK(pa->pin_pages(PageSet::pfns(pinned, 3), bvec(write), &n));
      const int32_t ref5 = pa->refcount(5), ref600 = pa->refcount(600);
      // 600 twice: one pin too many on the large folio (an exact count, or debug, or the
      // refcount: the folio holds 1 + one pin's references).
      const uint32_t twice[] = {600, 9, 5, 600};
      const Status st = pa->unpin_pages(PageSet::pfns(twice, 4), bvec(write));
      CHECK_CODE(st, Code::kENOTPINNED);
      CHECK_EQ(st.value, int64_t{600});
      CHECK_EQ(pa->refcount(5), ref5);
      CHECK_EQ(pa->refcount(600), ref600);
      CHECK_EQ(pa->refcount(9), ref5);
      const uint32_t once[] = {600, 9, 5};
      CHECK_OK(pa->unpin_pages(PageSet::pfns(once, 3), per_page(write)));
      CHECK_EQ(pa->refcount(5), 1);
      CHECK_EQ(pa->refcount(600), 1);
      // Puts: page 7 holds 1 + 2 references; four puts of it, interleaved, are one too many.
      CHECK_OK(pa->get_page(7, 2));
      const uint32_t puts[] = {7, 8, 7, 7, 7};
      CHECK_CODE(pa->put_pages(puts, 5, -1), Code::kEINVAL);
      CHECK_EQ(pa->refcount(7), 3);
      CHECK_EQ(pa->refcount(8), 1);
      const uint32_t fine[] = {7, 3, 7};
      CHECK_OK(pa->put_pages(fine, 3, -1));
      CHECK_EQ(pa->refcount(7), 1);
      CHECK_EQ(pa->refcount(3), 0);
      CHECK_EQ(pa->free_pages(), 1u);
    }
  }
  // A long unordered list (its own table): every page of a range backwards, pinned once; the
  // same list with one page named again at the end is refused whole, the list itself is not.
  auto pa = make_array(1 << 15, Scheme::kSeparate);
  std::vector<uint32_t> back;
  for (uint32_t p = 1 << 14; p-- > 0;) back.push_back(p);
  uint64_t n = 0;
  CHECK_OK(pa->pin_pages(PageSet::range(0, 1 << 14), bvec(), &n));
  back.push_back(1234);
  const Status st = pa->unpin_pages(PageSet::pfns(back.data(), back.size()), per_page());
  CHECK_CODE(st, Code::kENOTPINNED);
  CHECK_EQ(st.value, int64_t{1234});
  CHECK_EQ(pa->pincount(1234).value_or(-1), int64_t{1});
  back.pop_back();
  CHECK_OK(pa->unpin_pages(PageSet::pfns(back.data(), back.size()), per_page()));
  CHECK_EQ(pa->pincount(1234).value_or(-1), int64_t{0});
  CHECK_EQ(pa->stat(Stat::kPinReleased), uint64_t{1} << 14);
}

}  // namespace
}  // namespace pinlab::test
