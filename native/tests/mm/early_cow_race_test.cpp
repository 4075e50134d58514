// fork's early COW reads maybe-pinned: a pinned page must be copied into the child, never
// shared. A refused over-unpin that dips the count for a moment (an add-then-undo, or a walk
// that releases and then rolls back) makes that read a false negative: fork shares a page a
// device may still be writing. Here gup_fast pins pages of a THP and of small pages and holds
// them; other threads hammer over-unpins of them (always refused); fork runs again and again
// and every child must hold copies of every pinned page. Tag "concurrency".
#include <atomic>
#include <memory>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kForks = 40;
#else
constexpr int kForks = 1500;
#endif

TEST_TAGGED(fork_copies_every_held_pin_while_refused_over_unpins_race, "concurrency") {
  for (Scheme s : kAllSchemes) {
    Mm mm = make_test_mm(s, MmShape{8192, 2048, false});
    std::shared_ptr<PageArray> mem = mm.mem;
    std::unique_ptr<AddressSpace> as = std::move(mm.as);
    constexpr uint64_t kSmall = 512, kSmallPages = 16;
    CHECK_OK(as->mmap(MmapArgs{0, 512, true, true, true}));                   // one THP
    CHECK_OK(as->mmap(MmapArgs{int64_t(kSmall), kSmallPages, true, true, false}));
    GupFlags f;
    f.write = true;  // write-bias hides read pins from maybe-pinned by design
    std::vector<uint32_t> huge(1), small(kSmallPages);
    uint64_t done = 0;
    CHECK_OK(as->gup_fast(0, 1, f, huge.data(), &done));
    CHECK_EQ(done, uint64_t{1});
    CHECK_OK(as->gup_fast(int64_t(kSmall), kSmallPages, f, small.data(), &done));
    CHECK_EQ(done, kSmallPages);

    std::atomic<bool> stop{false};
    std::atomic<int> unexpected{0}, shared_pinned{0};
    run_threads(3, [&](int t) {
      if (t < 2) {
        // Over-unpins: two pins of a THP subpage run that holds one, and one page named twice.
        // Both are refused whole (ENOTPINNED), before any count moves.
        const uint32_t thp[] = {huge[0], huge[0] + 1};
        for (uint64_t i = 0; !stop.load(std::memory_order_acquire); ++i) {
          const uint32_t twice[] = {small[i % kSmallPages], small[i % kSmallPages]};
          if (as->unpin_user_pages(thp, 2, true, false).code != Code::kENOTPINNED) ++unexpected;
          if (as->unpin_user_pages(twice, 2, true, false).code != Code::kENOTPINNED) ++unexpected;
        }
        return;
      }
      for (int k = 0; k < kForks; ++k) {
        std::unique_ptr<AddressSpace> child;
        if (!as->fork(&child).ok()) {
          ++unexpected;
          continue;
        }
        // Every pinned page was copied early: the child maps a page of its own there.
        if (child->translate(0).pfn == huge[0]) ++shared_pinned;
        for (uint64_t i = 0; i < kSmallPages; ++i)
          if (child->translate(kSmall + i).pfn == small[i]) ++shared_pinned;
      }
      stop.store(true, std::memory_order_release);  // pairs with the over-unpinners' acquire
    });
    CHECK_EQ(unexpected.load(), 0);
    CHECK_EQ(shared_pinned.load(), 0);
    CHECK_EQ(as->stat(MmStat::kEarlyCowCopies), uint64_t(kForks) * (512 + kSmallPages));
    CHECK_OK(as->unpin_user_pages(huge.data(), 1, true, false));
    CHECK_OK(as->unpin_user_pages(small.data(), kSmallPages, true, false));
    CHECK_EQ(mem->stat(Stat::kPinAcquired), mem->stat(Stat::kPinReleased));
    CHECK_OK(as->munmap(0, 2048));
    CHECK_EQ(mem->free_pages(), uint64_t{8192});
  }
}

}  // namespace
}  // namespace pinlab::test
