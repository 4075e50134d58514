// Concurrency: pins, unpins, gets and puts from several threads on the same folios balance
// exactly; a held pin is never reported unpinned; add-unless-zero never revives a freed
// folio. These cases also run under ThreadSanitizer (tag "concurrency").
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "fixtures.h"

namespace pinlab::test {
namespace {

// Kept small so the ThreadSanitizer build stays quick; the release build does the same mix.
constexpr int kThreads = 4;
constexpr int kIterations = 3000;

TEST_TAGGED(concurrent_pins_unpins_gets_puts_balance, "concurrency") {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      auto pa = make_array(4096, s, debug);
      // Shared folios: 2 MiB at 0 and 1024, small pages elsewhere; every thread hits them.
      CHECK_OK(pa->make_folio(0, 9));
      CHECK_OK(pa->make_folio(1024, 9));
      std::atomic<int> violations{0};
      run_threads(kThreads, [&](int t) {
        std::mt19937 rng(uint32_t(t) * 7919u + 1);
        std::vector<uint32_t> list;
        for (int i = 0; i < kIterations; ++i) {
          const uint64_t start = rng() % 2048;
          const uint64_t count = 1 + rng() % 64;
          const bool write = rng() & 1;
          const PinFlags f{write, bool(rng() & 2), false};
          uint64_t n = 0;
          if (rng() & 4) {
            if (!pa->pin_pages(PageSet::range(start, count), f, &n).ok()) violations++;
            // While we hold the pin, no scheme may call it unpinned (write-bias: write pins).
            if ((s != Scheme::kWriteBias || write) && !pa->maybe_dma_pinned(start)) violations++;
            if (!pa->unpin_pages(PageSet::range(start, count), {write, bool(rng() & 8), true}).ok())
              violations++;
          } else {
            list.clear();
            for (uint64_t k = 0; k < count; ++k) list.push_back(uint32_t(rng() % 2048));
            const PageSet set = PageSet::pfns(list.data(), list.size());
            if (!pa->pin_pages(set, f, &n).ok()) violations++;
            if (!pa->unpin_pages(set, f).ok()) violations++;
          }
          // Plain references racing the pins on the same heads.
          bool freed = false;
          if (!pa->get_page(start, 3).ok()) violations++;
          if (!pa->put_page(start, 3, &freed).ok() || freed) violations++;
        }
      });
      CHECK_EQ(violations.load(), 0);
      for (uint64_t p = 0; p < 4096; ++p) {
        const bool head = pa->folio_head(p) == p;
        if (head && pa->refcount(p) != 1) CHECK_EQ(pa->refcount(p), 1);
        if (pa->maybe_dma_pinned(p)) CHECK(!pa->maybe_dma_pinned(p));
      }
      CHECK_EQ(pa->stat(Stat::kPinAcquired), pa->stat(Stat::kPinReleased));
      CHECK_EQ(pa->stat(Stat::kFoliosFreed), 0u);
    }
  }
}

TEST_TAGGED(add_unless_zero_never_revives_a_freed_folio, "concurrency") {
  constexpr uint64_t kFolios = 256;
  auto pa = make_array(kFolios, Scheme::kHybrid);
  std::atomic<uint64_t> freed_events{0};
  std::atomic<int> revived{0};
  std::atomic<bool> owner_done{false};
  run_threads(kThreads, [&](int t) {
    if (t == 0) {
      // The owner drops each folio's initial reference; whoever reaches zero frees it.
      for (uint64_t p = 0; p < kFolios; ++p) {
        bool freed = false;
        pa->put_page(p, 1, &freed);
        if (freed) freed_events++;
        std::this_thread::yield();
      }
      owner_done.store(true, std::memory_order_release);  // pairs with the readers' acquire
      return;
    }
    std::mt19937 rng{uint32_t(t)};
    while (!owner_done.load(std::memory_order_acquire)) {
      const uint64_t p = rng() % kFolios;
      bool got = false;
      pa->try_get_page(p, 1, &got);
      if (!got) continue;
      bool freed = false;
      pa->put_page(p, 1, &freed);
      if (freed) freed_events++;
    }
    // After the owner is done every folio is (or is being) freed: none may be taken again
    // once its last reader is gone.
  });
  for (uint64_t p = 0; p < kFolios; ++p) {
    bool got = true;
    pa->try_get_page(p, 1, &got);
    if (got) revived++;
    CHECK_EQ(pa->refcount(p), 0);
  }
  CHECK_EQ(revived.load(), 0);
  CHECK_EQ(freed_events.load(), kFolios);  // each folio freed exactly once
}

TEST_TAGGED(contended_overflow_refusals_leave_counts_exact, "concurrency") {
  // Every thread pins one small page until the bias budget refuses; the refused grabs undo
  // themselves, so the final refcount is exactly 1 + accepted * bias.
  auto pa = make_array(8, Scheme::kBias, false, 0, 1, 1 << 20);  // 2^11 - 1 pins fit
  std::atomic<uint64_t> accepted{0};
  run_threads(kThreads, [&](int) {
    for (int i = 0; i < 1000; ++i) {
      uint64_t n = 0;
      if (pa->pin_pages(PageSet::range(5, 1), bvec(), &n).ok()) accepted++;
    }
  });
  CHECK_EQ(accepted.load(), uint64_t((int64_t{INT32_MAX} - 1) >> 20));
  CHECK_EQ(int64_t(pa->refcount(5)), 1 + int64_t(accepted.load()) * (1 << 20));
}

}  // namespace
}  // namespace pinlab::test
