// Linearizability of gup_fast against munmap, migrate, fork, pageout and mremap (issues 12, 13), with the history
// checker's idea (history_test.cpp): every call is recorded with the ticks of a global clock
// just before and just after it, and every result must be explained by some moment in between.
//
// One mutator thread changes the mappings of a region: munmap + mmap (fresh pages), migrate
// (pages move to new folios; pinned ones are refused and stay), fork (the child is dropped
// again at once; the parent's PFNs do not change, its entries become write-protected) and
// MADV_PAGEOUT followed by a read of the region (swap-out, swap-in: new PFNs, or the same one
// from the swap cache for a page a get held; pinned ones stay). It is
// the only thread that changes what a virtual page maps, so after each of its operations the
// mapping of every page, read by translate, holds until its next operation: a mapping epoch
// (v, pfn) spans [start of the op that made it, end of the op that ends it]. Gup threads take
// gup_fast pins and gets (fast-only or with the slow path) over random stretches, and check:
//   - every PFN returned for virtual page v is one that v mapped in an epoch overlapping the
//     gup call (never a page v had stopped mapping before the call began, nor a stranger);
//   - while held, the page is allocated, and a pin's folio is maybe pinned (pins only: fast-only
//     write or read pins; gets read only, so no thread but the mutator changes a mapping: a
//     pin's FOLL_UNSHARE and a write get's COW would);
// then release what they took. At the end every pin and reference is balanced and, once the
// address space is gone, every page is back in the allocator.
//
// Tag "concurrency": also under ThreadSanitizer (fewer rounds).
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kMutations = 150;
#else
constexpr int kMutations = 1500;
#endif
constexpr int kGupThreads = 3;
constexpr uint64_t kRegion = 96;  // virtual pages (not 2 MiB: no PMD leaves)

// seq_cst: the ticks order the calls in real time across threads (a total order that every
// thread's program order agrees with), which is what the checker relies on.
std::atomic<uint64_t> g_clock{0};
uint64_t tick() { return g_clock.fetch_add(1, std::memory_order_seq_cst); }

struct Epoch {
  uint32_t pfn;
  uint64_t from, to;  // the op that made it started at `from`; the one that ended it ended at `to`
};

struct Gup {
  uint64_t start, end;
  int64_t vstart;
  std::vector<uint32_t> pfns;
};

void run_scenario(Scheme scheme, bool debug, uint32_t seed) {
  PageArrayConfig cfg;
  cfg.pages = 4096;
  cfg.scheme = scheme;
  cfg.debug = debug;
  cfg.populated = false;
  std::unique_ptr<PageArray> pa;
  CHECK_OK(PageArray::create(cfg, &pa));
  std::shared_ptr<PageArray> mem(std::move(pa));
  std::unique_ptr<AddressSpace> as;
  CHECK_OK(AddressSpace::create(mem, int64_t(kRegion), &as));
  MmapArgs region{0, int64_t(kRegion), true, true, false};
  const uint64_t t0 = tick();
  CHECK_OK(as->mmap(region));
  std::vector<std::vector<Epoch>> epochs(kRegion);
  auto note_mapping = [&](uint64_t op_start) {
    for (uint64_t v = 0; v < kRegion; ++v) {
      const Translation tr = as->translate(v);
      std::vector<Epoch>& e = epochs[v];
      if (!e.empty() && e.back().to == UINT64_MAX) {
        if (tr.present && e.back().pfn == tr.pfn) continue;  // unchanged: the epoch goes on
        e.back().to = ~uint64_t{0} - 1;                         // closed by the op's end, below
      }
      if (tr.present) e.push_back({uint32_t(tr.pfn), op_start, UINT64_MAX});
    }
  };
  auto close_epochs = [&](uint64_t op_end) {
    for (auto& e : epochs)
      for (Epoch& x : e)
        if (x.to == ~uint64_t{0} - 1) x.to = op_end;
  };
  note_mapping(t0);
  close_epochs(tick());

  std::atomic<bool> stop{false};
  std::mutex gups_mu;
  std::vector<Gup> gups;
  std::atomic<int> held_violations{0};
  std::atomic<int> release_failures{0};  // relaxed counters: read after the joins
  std::string first_held;
  std::mutex first_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < kGupThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed * 31 + uint32_t(t));
      std::vector<Gup> mine;
      std::vector<uint32_t> out(kRegion);
      // relaxed: stop is a plain flag; the join below orders everything after it.
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t start = int64_t(rng() % kRegion);
        const int64_t count = 1 + int64_t(rng() % (kRegion - uint64_t(start)));
        GupFlags f;
        f.pin = (rng() % 3) != 0;
        f.fast_only = f.pin || (rng() % 2) == 0;  // a pin on the slow path may unshare
        f.write = f.pin && (rng() % 2) == 0;
        uint64_t done = 0;
        Gup g;
        g.vstart = start;
        g.start = tick();
        const Status st = as->gup_fast(start, count, f, out.data(), &done);
        g.end = tick();
        (void)st;  // EFAULT while unmapped, partial success: both fine
        for (uint64_t i = 0; i < done; ++i) {
          const uint32_t p = out[i];
          const bool bad = mem->refcount(p) <= 0 || (f.pin && !mem->maybe_dma_pinned(p) &&
                                                     scheme != Scheme::kWriteBias);
          if (bad && held_violations.fetch_add(1, std::memory_order_relaxed) == 0) {
            std::lock_guard<std::mutex> lock(first_mu);
            first_held = "held page " + std::to_string(p) + " refcount " +
                         std::to_string(mem->refcount(p));
          }
        }
        g.pfns.assign(out.begin(), out.begin() + int64_t(done));
        if (done > 0) {
          const Status rel = f.pin ? as->unpin_user_pages(out.data(), done, f.write, false)
                                   : as->put_user_pages(out.data(), done);
          if (!rel.ok()) release_failures.fetch_add(1, std::memory_order_relaxed);
          mine.push_back(std::move(g));
        }
      }
      std::lock_guard<std::mutex> lock(gups_mu);
      for (Gup& g : mine) gups.push_back(std::move(g));
    });
  }

  std::mt19937 rng(seed);
  for (int i = 0; i < kMutations; ++i) {
    const uint32_t what = rng() % 5;
    const uint64_t s = tick();
    if (what == 0) {
      CHECK_OK(as->munmap(0, int64_t(kRegion)));
      CHECK_OK(as->mmap(region));
    } else if (what == 1) {
      uint64_t moved = 0;
      const Status st = as->migrate(0, int64_t(kRegion), &moved);
      CHECK(st.ok() || st.code == Code::kEBUSY || st.code == Code::kENOMEM);
    } else if (what == 3) {
      // MADV_PAGEOUT (swap entries: gup_fast bails on them; pinned folios stay), then a read of
      // the whole region swaps everything back in (a get's slow path may swap a page in first,
      // within this op: the read then keeps the page it mapped).
      CHECK_OK(as->madvise(0, int64_t(kRegion), Advice::kPageOut));
      CHECK_OK(as->touch(0, int64_t(kRegion), false));
    } else if (what == 4) {
      // mremap (issue 13): the lower half moves over the upper (MREMAP_FIXED replaces it), and
      // fresh pages fill the lower half: a page's mapping moves to another virtual page.
      MremapArgs m;
      m.start = 0;
      m.count = m.new_count = int64_t(kRegion / 2);
      m.new_start = int64_t(kRegion / 2);
      m.may_move = m.fixed = true;
      uint64_t at = 0;
      CHECK_OK(as->mremap(m, &at));
      CHECK_OK(as->mmap(MmapArgs{0, int64_t(kRegion / 2), true, true, false}));
    } else {
      std::unique_ptr<AddressSpace> child;
      CHECK_OK(as->fork(&child));
      child.reset();  // the parent's PFNs stay; its entries are write-protected now
    }
    note_mapping(s);
    close_epochs(tick());
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : threads) th.join();

  // The check: every returned PFN is explained by an epoch of its virtual page overlapping the call.
  int violations = 0;
  std::string first;
  for (const Gup& g : gups) {
    for (size_t i = 0; i < g.pfns.size(); ++i) {
      const uint64_t v = uint64_t(g.vstart) + i;
      bool ok = false;
      for (const Epoch& e : epochs[v])
        if (e.pfn == g.pfns[i] && e.from <= g.end && e.to >= g.start) ok = true;
      if (!ok && violations++ == 0)
        first = "gup [" + std::to_string(g.start) + ", " + std::to_string(g.end) + "] returned pfn " +
                std::to_string(g.pfns[i]) + " for vpage " + std::to_string(v) +
                ", which it did not map during the call";
    }
  }
  if (violations > 0) fail(__FILE__, __LINE__, std::string(scheme_name(scheme)) + ": " + first);
  if (held_violations.load(std::memory_order_relaxed) > 0)
    fail(__FILE__, __LINE__, std::string(scheme_name(scheme)) + ": " + first_held);
  CHECK(!gups.empty());
  CHECK_EQ(release_failures.load(std::memory_order_relaxed), 0);
  CHECK_EQ(mem->stat(Stat::kPinAcquired), mem->stat(Stat::kPinReleased));
  as.reset();
  // Everything back: the zero page (never mapped here) aside, every page is free again.
  const bool has_zero = mem->zero_pfn() >= 0;
  CHECK_EQ(mem->free_pages(), mem->pages() - (has_zero ? 1u : 0u));
}

TEST_TAGGED(gup_fast_linearizes_against_munmap_migrate_fork_mremap, "concurrency") {
  uint32_t seed = 12;
  for (Scheme s : kAllSchemes)
    for (bool debug : {false, true}) run_scenario(s, debug, seed++);
}

}  // namespace
}  // namespace pinlab::test
