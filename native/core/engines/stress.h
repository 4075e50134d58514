// The stress harness: native threads run gup_fast pins while others munmap/mmap, mprotect,
// migrate, compact, fork and break COW on the same address space, for a bounded time. It
// checks every pin it is handed while it holds it, and at the end that every count balances
// and every page came back to the allocator.
#pragma once

#include <cstdint>
#include <string>

#include "pages/page_array.h"
#include "base/status.h"
#include "base/threads.h"

namespace pinlab {

struct StressConfig {
  Scheme scheme = Scheme::kHybrid;
  int64_t threads = 4;         // at least 4: one mm mutator, one migrator/forker, pinners
  int64_t duration_ms = 500;
  int64_t region_pages = 2048; // pages per region slot (a multiple of 512)
  int64_t regions = 4;         // region slots; odd slots are huge
  int64_t seed = 1;
  bool debug = true;           // exact per-page pins, so every pin can be checked as real
};

struct StressReport {
  uint64_t pin_calls = 0, pinned_pages = 0, partial_calls = 0, failed_calls = 0;
  uint64_t pins_checked = 0;
  uint64_t fast_pages = 0, slow_fallbacks = 0, recheck_failures = 0, seq_retries = 0;
  uint64_t munmaps = 0, mprotects = 0, forks = 0, cow_copies = 0, early_cow_copies = 0;
  uint64_t madvises = 0;  // madvise calls (DONTNEED, DONTFORK, DOFORK)
  uint64_t pageouts = 0;  // MADV_PAGEOUT calls (racing pins; the parent's and the forks' children's)
  uint64_t paged_out = 0, swap_ins = 0;  // the parent's pages swapped out and faulted back in
  uint64_t mremaps = 0;   // mremap calls that succeeded (moves over a stretch, shrink + grow back)
  uint64_t collapse_calls = 0, collapsed = 0;  // MADV_COLLAPSE and khugepaged calls; THPs made
  uint64_t migrated = 0, migration_refusals = 0, migration_busy = 0, compactions = 0;
  uint64_t pin_acquired = 0, pin_released = 0;
  uint64_t violations = 0;
  std::string first_violation;
  bool balanced = false;  // counts balance and every page is free again
  uint64_t file_truncates = 0;  // truncates (and remaps) of the private file mapping
};

Status validate_stress(const StressConfig& cfg);
// EAGAIN if a thread cannot be started (the started ones are stopped and joined first);
// kCancelled if `control` asked the run to stop (the threads stop at their next check).
Status run_stress(const StressConfig& cfg, StressReport* out, const RunControl* control = nullptr);

}  // namespace pinlab
