#include "engines/stress.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "mm/address_space.h"

namespace pinlab {

namespace {

using Clock = std::chrono::steady_clock;

// Shared by the threads of one run.
struct Run {
  const StressConfig& cfg;
  std::shared_ptr<PageArray> mem;
  std::unique_ptr<AddressSpace> as;
  Clock::time_point deadline;
  std::mutex violations_mu;
  std::atomic<uint64_t> violations{0};
  std::string first_violation;
  std::atomic<uint64_t> pin_calls{0}, pinned_pages{0}, partial{0}, failed{0}, checked{0};
  std::atomic<uint64_t> munmaps{0}, mprotects{0}, forks{0}, compactions{0}, madvises{0};
  std::atomic<uint64_t> pageouts{0};
  std::atomic<uint64_t> mremaps{0}, collapse_calls{0};
  const RunControl* control = nullptr;
  // A private file mapping after the anonymous slots (file_start..+kFilePages): its page cache
  // (the folios this run allocated and holds, one reference each) belongs to the mutator
  // thread, which truncates and refills it while the others pin, fork and migrate.
  uint64_t file_start = 0;
  std::vector<uint32_t> page_cache{};
  std::atomic<uint64_t> file_truncates{0};
  std::atomic<bool> abandon{false};  // a thread could not be started: everyone stops

  uint64_t slot_start(uint64_t k) const { return k * uint64_t(cfg.region_pages); }
  bool huge_slot(uint64_t k) const { return k % 2 == 1; }
  // Two more slots after the regions: hugetlb memory of 2 MiB pages, private and shared
  // (remaps flip them), from a pool sized for faults, COW copies, forks and migration.
  static constexpr uint64_t kHugetlbSlots = 2;
  uint64_t slots() const { return uint64_t(cfg.regions) + kHugetlbSlots; }
  bool hugetlb_slot(uint64_t k) const { return k >= uint64_t(cfg.regions); }
  // Twice the slots' pages: their own, and as many again for COW copies, forks' early copies and
  // migration targets (it fits the normal zone, which is twice the address space).
  uint64_t hugetlb_pool_pages() const { return 2 * kHugetlbSlots * (uint64_t(cfg.region_pages) >> 9); }
  bool running() const {
    return Clock::now() < deadline && !abandon.load(std::memory_order_relaxed) &&
           !stop_requested(control);
  }

  void violation(const std::string& what) {
    if (violations.fetch_add(1, std::memory_order_relaxed) == 0) {
      std::lock_guard<std::mutex> lock(violations_mu);
      first_violation = what;
    }
  }
  void expect_ok(const Status& st, const char* op) {
    if (!st.ok()) violation(std::string(op) + ": " + describe(st));
  }
};

// A pin the harness was handed must be real: the page is allocated, answers maybe-pinned
// (zero false negatives; write-bias hides read pins by design), holds an exact pin in debug
// mode, and is outside ZONE_MOVABLE for a long-term pin.
void check_pinned(Run& run, uint32_t pfn, const GupFlags& f) {
  PageArray& mem = *run.mem;
  if (mem.is_zero_page(pfn)) return;
  const bool visible = f.write || scheme_info(mem.scheme()).read_pins_visible;
  if (mem.refcount(pfn) <= 0) run.violation("pinned pfn " + std::to_string(pfn) + " is free");
  if (visible && !mem.maybe_dma_pinned(pfn))
    run.violation("pinned pfn " + std::to_string(pfn) + " reads not maybe-pinned");
  if (mem.debug() && mem.pincount(pfn).value_or(0) < 1)
    run.violation("pinned pfn " + std::to_string(pfn) + " holds no exact pin");
  if (f.longterm && mem.is_movable(pfn))
    run.violation("long-term pin of pfn " + std::to_string(pfn) + " in ZONE_MOVABLE");
  run.checked.fetch_add(1, std::memory_order_relaxed);
}

void pinner(Run& run, AddressSpace& as, std::mt19937_64& rng, uint64_t span) {
  std::vector<uint32_t> pfns(span);
  const uint64_t start = rng() % span;
  const uint64_t count = 1 + (rng() % 4 == 0 ? rng() % (span - start) : rng() % 64 % (span - start));
  GupFlags f;
  f.pin = rng() % 8 != 0;  // some FOLL_GET too
  f.write = rng() % 2 == 0;
  f.longterm = f.pin && rng() % 8 == 0;
  f.fast_only = rng() % 16 == 0;
  uint64_t done = 0;
  const Status st = as.gup_fast(int64_t(start), int64_t(count), f, pfns.data(), &done);
  run.pin_calls.fetch_add(1, std::memory_order_relaxed);
  if (!st.ok()) {
    run.failed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (done < count) run.partial.fetch_add(1, std::memory_order_relaxed);
  if (done == 0) return;
  run.pinned_pages.fetch_add(done, std::memory_order_relaxed);
  if (f.pin)
    for (uint64_t i = 0; i < done; ++i) check_pinned(run, pfns[i], f);
  std::this_thread::yield();  // hold the pins while the mm changes under them
  if (f.pin) {
    for (uint64_t i = 0; i < done; ++i) check_pinned(run, pfns[i], f);
    run.expect_ok(as.unpin_user_pages(pfns.data(), done, f.write, rng() % 2 == 0),
                  "unpin_user_pages");
  } else {
    run.expect_ok(as.put_user_pages(pfns.data(), done), "put_user_pages");
  }
}

Status mmap_hugetlb_slot(Run& run, AddressSpace& as, uint64_t k, bool shared, bool populate) {
  HugetlbMmapArgs a;
  a.start = int64_t(run.slot_start(k));
  a.count = run.cfg.region_pages;
  a.order = kHugetlbOrder2M;
  a.shared = shared;
  a.populate = populate;
  return as.mmap_hugetlb(a);
}

// A hugetlb slot: whole 2 MiB pages only (a cut is EINVAL, checked too).
void hugetlb_mutator(Run& run, AddressSpace& as, std::mt19937_64& rng, uint64_t k) {
  const uint64_t huge_pages = uint64_t(run.cfg.region_pages) >> 9;
  const uint64_t s = run.slot_start(k) + ((rng() % huge_pages) << 9);
  const uint64_t n = (1 + rng() % std::min<uint64_t>(2, huge_pages - ((s - run.slot_start(k)) >> 9))) << 9;
  switch (rng() % 6) {
    case 0: {  // remap the whole slot, private or shared; ENOMEM: the pool is short right now
      run.expect_ok(as.munmap(int64_t(run.slot_start(k)), run.cfg.region_pages), "munmap");
      const Status st = mmap_hugetlb_slot(run, as, k, rng() % 2 == 0, rng() % 2 == 0);
      if (!st.ok() && st.code != Code::kENOMEM) run.expect_ok(st, "mmap_hugetlb");
      run.munmaps.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 1: {  // write-protect whole pages and give write access back
      const Status st = as.mprotect(int64_t(s), int64_t(n), false);
      if (st.ok()) run.expect_ok(as.mprotect(int64_t(s), int64_t(n), true), "mprotect");
      else if (st.code != Code::kENOMEM) run.expect_ok(st, "mprotect");  // a hole: ENOMEM
      run.mprotects.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 2: {  // MADV_DONTNEED whole pages of a private slot (EINVAL: a shared one)
      const Status st = as.madvise(int64_t(s), int64_t(n), Advice::kDontNeed);
      if (!st.ok() && st.code != Code::kENOMEM && st.code != Code::kEINVAL) run.expect_ok(st, "madvise");
      run.madvises.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 3: {  // a cut through a huge page is refused, and changes nothing
      const Status st = as.munmap(int64_t(s + 1), 1);
      if (st.code != Code::kEINVAL && !(st.ok() && as.translate(s).present == false))
        run.violation("munmap of part of a hugetlb page: " + describe(st));
      break;
    }
    default:  // write faults: fault-in (EFAULT: the pool is out) and whole-page COW breaks
      (void)as.touch(int64_t(s), int64_t(n), true);
  }
}

constexpr uint64_t kFilePages = 512;

// The page cache gives its references back (truncate's last step); nothing else holds them.
void drop_page_cache(Run& run) {
  for (uint32_t pfn : run.page_cache) {
    bool freed = false;
    run.expect_ok(run.mem->put_page(pfn, 1, &freed), "page cache put");
  }
  run.page_cache.clear();
}

// Fills the page cache (normal zone: page cache is never migrated) and maps it MAP_PRIVATE
// at file_start; ENOMEM leaves the slot unmapped (a later round tries again).
void map_file(Run& run, AddressSpace& as) {
  for (uint64_t i = 0; i < kFilePages; ++i) {
    uint64_t pfn = 0;
    if (!run.mem->alloc_folio(0, false, &pfn).ok()) break;
    run.page_cache.push_back(uint32_t(pfn));
  }
  if (run.page_cache.size() == kFilePages &&
      as.map_private(int64_t(run.file_start), run.page_cache.data(), kFilePages, true).ok())
    return;
  drop_page_cache(run);
}

// truncate(0) and a new file: the mapping's page-cache entries and the copies made from them
// are zapped (racing pins keep their pages), the page cache lets go, the slot is mapped again.
void file_churn(Run& run, AddressSpace& as, std::mt19937_64& rng) {
  if (!run.page_cache.empty()) {
    run.expect_ok(as.zap_file(int64_t(run.file_start), int64_t(kFilePages), true), "zap_file");
    drop_page_cache(run);
  }
  run.expect_ok(as.munmap(int64_t(run.file_start), int64_t(kFilePages)), "munmap");
  map_file(run, as);
  const uint64_t off = rng() % kFilePages;
  (void)as.touch(int64_t(run.file_start + off), 1, true);  // a COW from the page cache
  run.file_truncates.fetch_add(1, std::memory_order_relaxed);
}

void mm_mutator(Run& run, AddressSpace& as, std::mt19937_64& rng) {
  if (rng() % 32 == 0) {  // rarely: a churn maps 512 pages afresh
    file_churn(run, as, rng);
    return;
  }
  const uint64_t rp = uint64_t(run.cfg.region_pages);
  const uint64_t k = rng() % run.slots();
  if (run.hugetlb_slot(k)) {
    hugetlb_mutator(run, as, rng, k);
    return;
  }
  const uint64_t s = run.slot_start(k);
  const uint64_t off = rng() % rp, n = 1 + rng() % std::min<uint64_t>(64, rp - off);
  switch (rng() % 10) {
    case 8: {  // mremap: a stretch moves within its slot (MREMAP_FIXED over what was there)
      // or shrinks and grows back in place; pins taken through the old addresses stay valid
      MremapArgs m;
      m.start = int64_t(s + off);
      m.count = m.new_count = int64_t(n);
      const bool thp = run.huge_slot(k) && rp >= 2 * kPtesPerTable && rng() % 2 == 0;
      if (thp) {  // whole 2 MiB stretches: PMD leaves move whole (or split when misaligned)
        const uint64_t pmds = rp / kPtesPerTable;
        m.start = int64_t(s + (rng() % pmds) * kPtesPerTable);
        m.count = m.new_count = int64_t(kPtesPerTable);
      }
      const uint64_t len = uint64_t(m.count);
      const uint64_t to = s + rng() % (rp - len + 1);
      const bool disjoint = to + len <= uint64_t(m.start) || uint64_t(m.start) + len <= to;
      Status st = Status::Ok();
      if (disjoint && rng() % 3 != 0) {
        m.new_start = int64_t(to);
        m.may_move = m.fixed = true;
        m.dont_unmap = rng() % 4 == 0;
        uint64_t at = 0;
        st = as.mremap(m, &at);
        if (st.ok() && !m.dont_unmap) {  // the old place maps again (faulted in on demand)
          const Status mm = as.mmap(MmapArgs{m.start, m.count, true, false, run.huge_slot(k)});
          if (!mm.ok() && mm.code != Code::kENOMEM) run.expect_ok(mm, "mmap");
        }
      } else if (len > 1) {
        m.new_count = int64_t(len / 2);
        uint64_t at = 0;
        st = as.mremap(m, &at);
        if (st.ok()) {  // the tail is free now: it grows back in place
          m.count = m.new_count;
          m.new_count = int64_t(len);
          run.expect_ok(as.mremap(m, &at), "mremap grow");
        }
      }
      // EFAULT: a hole or a region boundary of another kind (MADV_DONTFORK) in the stretch.
      if (!st.ok() && st.code != Code::kEFAULT) run.expect_ok(st, "mremap");
      if (st.ok()) run.mremaps.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 9: {  // MADV_COLLAPSE of a 2 MiB stretch of a huge slot, or a khugepaged pass
      uint64_t made = 0, scanned = 0;
      Status st = Status::Ok();
      if (rng() % 4 == 0) {
        st = as.khugepaged(KhugepagedArgs{}, &made, &scanned);
        run.expect_ok(st, "khugepaged");
      } else {
        st = as.collapse(int64_t(s + (off & ~(kPtesPerTable - 1))), int64_t(kPtesPerTable), &made);
        // EAGAIN: a pin or reference (racing pinners); EINVAL: nothing mapped, not one kind of
        // region; ENOMEM: a hole, or no THP free.
        if (!st.ok() && st.code != Code::kEAGAIN && st.code != Code::kEINVAL &&
            st.code != Code::kENOMEM)
          run.expect_ok(st, "collapse");
      }
      run.collapse_calls.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 4: {  // MADV_DONTNEED a stretch: racing pins keep their pages; the next touch refaults
      const Status st = as.madvise(int64_t(s + off), int64_t(n), Advice::kDontNeed);
      if (!st.ok() && st.code != Code::kENOMEM) run.expect_ok(st, "madvise");  // ENOMEM: a hole
      if (st.ok()) (void)as.touch(int64_t(s + off), int64_t(n), true);  // fresh pages fault in
      run.madvises.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 5: {  // MADV_DONTFORK or MADV_DOFORK a stretch: forks' children leave it out or map it
      const Advice a = rng() % 2 == 0 ? Advice::kDontFork : Advice::kDoFork;
      const Status st = as.madvise(int64_t(s + off), int64_t(n), a);
      if (!st.ok() && st.code != Code::kENOMEM) run.expect_ok(st, "madvise");
      run.madvises.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 0: {  // remap the whole slot
      run.expect_ok(as.munmap(int64_t(s), int64_t(rp)), "munmap");
      MmapArgs a{int64_t(s), int64_t(rp), true, rng() % 2 == 0, run.huge_slot(k)};
      const Status st = as.mmap(a);
      if (!st.ok() && st.code != Code::kENOMEM) run.expect_ok(st, "mmap");
      run.munmaps.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 1: {  // write-protect a stretch and give write access back
      const Status st = as.mprotect(int64_t(s + off), int64_t(n), false);
      if (st.ok()) run.expect_ok(as.mprotect(int64_t(s + off), int64_t(n), true), "mprotect");
      run.mprotects.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    case 7: {  // MADV_PAGEOUT a stretch, then read it: swap-in (pinned folios stayed)
      const Status st = as.madvise(int64_t(s + off), int64_t(n), Advice::kPageOut);
      if (!st.ok() && st.code != Code::kENOMEM) run.expect_ok(st, "madvise(PAGEOUT)");
      run.pageouts.fetch_add(1, std::memory_order_relaxed);
      if (st.ok()) (void)as.touch(int64_t(s + off), int64_t(n), false);
      break;
    }
    case 2:  // write faults: fault-in and COW breaks
    case 6:
      (void)as.touch(int64_t(s + off), int64_t(n), true);
      break;
    default: {  // punch a hole and map it again (splits huge mappings)
      run.expect_ok(as.munmap(int64_t(s + off), int64_t(n)), "munmap");
      const Status st = as.mmap(MmapArgs{int64_t(s + off), int64_t(n), true, false, false});
      if (!st.ok() && st.code != Code::kENOMEM && st.code != Code::kEINVAL)
        run.expect_ok(st, "mmap");
      run.munmaps.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

// MADV_PAGEOUT of a stretch (racing pins: maybe-pinned folios stay), then a read of part of it
// (swap-in; a fork's child shares the swap entries and the swap cache with its parent).
void pager(Run& run, AddressSpace& as, std::mt19937_64& rng, uint64_t span) {
  // The anonymous slots only: MADV_PAGEOUT of hugetlb memory is EINVAL (the slots after them).
  span = std::min<uint64_t>(span, uint64_t(run.cfg.regions) * uint64_t(run.cfg.region_pages));
  const uint64_t s = rng() % span, n = 1 + rng() % std::min<uint64_t>(1024, span - s);
  const Status st = as.madvise(int64_t(s), int64_t(n), Advice::kPageOut);
  if (!st.ok() && st.code != Code::kENOMEM) run.expect_ok(st, "madvise(PAGEOUT)");  // a hole
  run.pageouts.fetch_add(1, std::memory_order_relaxed);
  if (st.ok()) (void)as.touch(int64_t(s), int64_t(std::min<uint64_t>(n, 1 + rng() % 64)), false);
}

void migrator(Run& run, AddressSpace& as, std::mt19937_64& rng, uint64_t span) {
  switch (rng() % 4) {
    case 3:
      pager(run, as, rng, span);
      break;
    case 0: {
      const uint64_t s = rng() % span;
      uint64_t moved = 0;
      run.expect_ok(as.migrate(int64_t(s), int64_t(1 + rng() % std::min<uint64_t>(1024, span - s)),
                               &moved), "migrate");
      break;
    }
    case 1: {
      uint64_t moved = 0;
      run.expect_ok(as.compact(&moved), "compact");
      run.compactions.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    default: {  // fork; the child writes (COW breaks), pins, and exits
      std::unique_ptr<AddressSpace> child;
      const Status st = as.fork(&child);
      if (!st.ok()) {
        if (st.code != Code::kENOMEM) run.expect_ok(st, "fork");
        break;
      }
      run.forks.fetch_add(1, std::memory_order_relaxed);
      const uint64_t s = rng() % span;
      (void)child->touch(int64_t(s), int64_t(1 + rng() % std::min<uint64_t>(64, span - s)), true);
      if (rng() % 2 == 0) pager(run, *child, rng, span);
      pinner(run, *child, rng, span);
    }
  }
}

}  // namespace

Status validate_stress(const StressConfig& c) {
  if (c.threads < 4 || c.threads > 256)
    return Status::BadOption("threads", c.threads, "an integer in 4..256");
  if (c.duration_ms < 1 || c.duration_ms > 600000)
    return Status::BadOption("durationMs", c.duration_ms, "an integer in 1..600000");
  if (c.region_pages < 512 || c.region_pages > (int64_t{1} << 20) || c.region_pages % 512 != 0)
    return Status::BadOption("regionPages", c.region_pages, "a multiple of 512 in 512..1048576");
  if (c.regions < 1 || c.regions > 64)
    return Status::BadOption("regions", c.regions, "an integer in 1..64");
  return Status::Ok();
}

Status run_stress(const StressConfig& cfg, StressReport* out, const RunControl* control) {
  if (Status st = validate_stress(cfg); !st.ok()) return st;
  // The anonymous slots, the hugetlb slots, then the private file mapping.
  const uint64_t slots_span = uint64_t(cfg.regions + int64_t(Run::kHugetlbSlots)) * uint64_t(cfg.region_pages);
  const uint64_t span = slots_span + kFilePages;  // the pinners' and forks' range, file included
  // Four times the address space: room for forks' COW copies and migration targets. Half is
  // ZONE_MOVABLE, so long-term pins must migrate what faults put there.
  PageArrayConfig pc;
  pc.pages = int64_t(span * 4);
  pc.scheme = cfg.scheme;
  pc.debug = cfg.debug;
  pc.populated = false;
  pc.movable_pages = int64_t(span * 2);
  std::unique_ptr<PageArray> pa;
  if (Status st = PageArray::create(pc, &pa); !st.ok()) return st;
  Run run{cfg, std::shared_ptr<PageArray>(std::move(pa)), nullptr, {}, {}, {}, {}};
  // Huge slots get every THP size: PMD leaves where a whole 2 MiB stretch is free, mTHPs
  // (orders 2..8, PTE-mapped) where write faults find smaller free blocks.
  if (Status st = AddressSpace::create(run.mem, int64_t(span), MmRules::mainline(), kAllThpOrders,
                                       &run.as);
      !st.ok())
    return st;
  // The pool first, from the still unfragmented normal zone.
  if (Status st = run.mem->hugetlb_set_pages(kHugetlbOrder2M, int64_t(run.hugetlb_pool_pages())); !st.ok())
    return st;
  run.file_start = slots_span;
  run.page_cache.reserve(kFilePages);
  map_file(run, *run.as);
  for (int64_t k = 0; k < cfg.regions; ++k) {
    MmapArgs a{int64_t(run.slot_start(uint64_t(k))), cfg.region_pages, true, true, run.huge_slot(uint64_t(k))};
    if (Status st = run.as->mmap(a); !st.ok()) return st;
  }
  for (uint64_t k = uint64_t(cfg.regions); k < run.slots(); ++k)
    if (Status st = mmap_hugetlb_slot(run, *run.as, k, k % 2 == 1, true); !st.ok()) return st;
  run.deadline = Clock::now() + std::chrono::milliseconds(cfg.duration_ms);
  run.control = control;
  ThreadGroup threads;
  for (int64_t t = 0; t < cfg.threads; ++t) {
    Status st = threads.start([&run, t, span] {
      std::mt19937_64 rng(uint64_t(run.cfg.seed) * 7919 + uint64_t(t));
      while (run.running()) {
        if (t == 0) mm_mutator(run, *run.as, rng);
        else if (t == 1) migrator(run, *run.as, rng, span);
        else pinner(run, *run.as, rng, span);
      }
    }, uint64_t(cfg.threads));
    if (!st.ok()) {
      run.abandon.store(true, std::memory_order_relaxed);
      threads.join();
      return st;
    }
  }
  threads.join();
  if (stop_requested(control)) return Status{Code::kEINVAL, Reason::kCancelled, "the stress run"};

  StressReport& r = *out;
  const AddressSpace& as = *run.as;
  r.fast_pages = as.stat(MmStat::kFastPages);
  r.slow_fallbacks = as.stat(MmStat::kSlowFallbacks);
  r.recheck_failures = as.stat(MmStat::kRecheckFailures);
  r.seq_retries = as.stat(MmStat::kSeqRetries);
  r.cow_copies = as.stat(MmStat::kCowCopies);
  r.early_cow_copies = as.stat(MmStat::kEarlyCowCopies);
  r.migrated = as.stat(MmStat::kMigrated);
  r.migration_refusals = as.stat(MmStat::kMigrationRefusals);
  r.migration_busy = as.stat(MmStat::kMigrationBusy);
  r.paged_out = as.stat(MmStat::kPagedOut);
  r.swap_ins = as.stat(MmStat::kSwapIns);
  r.collapsed = as.stat(MmStat::kCollapses);
  // Unmapped everything (the children are gone): every swap slot must be free again.
  run.expect_ok(run.as->munmap(0, int64_t(span)), "munmap");
  if (const SwapUsage u = run.as->swap_usage(); u.used != 0 || u.cached != 0)
    run.violation("swap slots still used at the end: " + std::to_string(u.used) + " (" +
                  std::to_string(u.cached) + " cached)");
  run.as.reset();  // every page must go back to the allocator
  drop_page_cache(run);  // and the page cache closes its file

  PageArray& mem = *run.mem;
  // Every hugetlb page back in the pool, nothing reserved: the pool can shrink to nothing.
  if (Status st = mem.hugetlb_set_pages(kHugetlbOrder2M, 0); !st.ok())
    run.violation("the hugetlb pool cannot be emptied: " + describe(st));
  r.pin_acquired = mem.stat(Stat::kPinAcquired);
  r.pin_released = mem.stat(Stat::kPinReleased);
  if (r.pin_acquired != r.pin_released)
    run.violation("pins acquired " + std::to_string(r.pin_acquired) + " != released " +
                  std::to_string(r.pin_released));
  const uint64_t zero = mem.zero_pages_held();  // the zero page and the huge zero folio
  if (mem.free_pages() != mem.pages() - zero)
    run.violation("free pages " + std::to_string(mem.free_pages()) + " != " +
                  std::to_string(mem.pages() - zero) + ": a reference leaked");
  for (uint64_t p = 0; p < mem.pages(); ++p) {
    if (mem.is_zero_page(p)) continue;
    // The stored word: a lazy folio's mode reference left behind would be a leak.
    if (mem.refcount_word(p) != 0 || mem.pincount(p).value_or(0) != 0) {
      run.violation("pfn " + std::to_string(p) + " not free at the end (refcount word " +
                    std::to_string(mem.refcount_word(p)) + ")");
      break;
    }
  }
  r.pin_calls = run.pin_calls;
  r.pinned_pages = run.pinned_pages;
  r.partial_calls = run.partial;
  r.failed_calls = run.failed;
  r.pins_checked = run.checked;
  r.madvises = run.madvises;
  r.pageouts = run.pageouts;
  r.mremaps = run.mremaps;
  r.collapse_calls = run.collapse_calls;
  r.file_truncates = run.file_truncates;
  r.munmaps = run.munmaps;
  r.mprotects = run.mprotects;
  r.forks = run.forks;
  r.compactions = run.compactions;
  r.violations = run.violations;
  r.first_violation = run.first_violation;
  r.balanced = r.violations == 0;
  return Status::Ok();
}

}  // namespace pinlab
