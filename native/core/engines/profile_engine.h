// The false-positive profiler's engine: classifies every folio of a population under a
// scheme and bias against the exact truth (debug accounting), in native threads, and runs
// the kernel clients that trust "maybe pinned" (fork's early COW, migration) on a sample.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engines/population.h"
#include "base/status.h"
#include "base/threads.h"

namespace pinlab {

struct ProfileTally {
  uint64_t pages = 0;                // allocated base pages
  uint64_t unpinned_pages = 0;       // in folios with no pin
  uint64_t false_positive_pages = 0; // unpinned, but maybe pinned
  uint64_t pinned_pages = 0;         // in folios with a pin (write-bias: a write pin)
  uint64_t false_negative_pages = 0; // pinned, but not maybe pinned
  uint64_t read_only_pages = 0;      // write-bias: folios with read pins only
  uint64_t hidden_read_pages = 0;    // ... not reported pinned (by design)
  // The same, counting folios: each folio answers once for all its pages, so folios are the
  // independent trials a confidence interval is taken over.
  uint64_t folios = 0, unpinned_folios = 0, false_positive_folios = 0, pinned_folios = 0;
  uint64_t false_negative_folios = 0, read_only_folios = 0, hidden_read_folios = 0;
  void add(const ProfileTally& o);
};

constexpr size_t kProfileOrders = 19;    // 0..18
constexpr size_t kProfileRefBuckets = 33;  // bucket b: plain refs in [2^(b-1), 2^b), b >= 1

struct ProfileRun {
  Scheme scheme = Scheme::kBias;
  uint32_t bias = 1024;
  ProfileTally overall;
  std::array<ProfileTally, kProfileOrders> by_order{};
  std::array<ProfileTally, kProfileRefBuckets> by_refs{};
  uint64_t pins_taken = 0, overflow_refusals = 0;
  uint64_t sample_pages = 0, sample_early_cow_fp = 0, sample_migration_fp = 0;
  uint64_t sample_pageout_fp = 0;  // pages MADV_PAGEOUT kept on the sample though unpinned
  // Pages of the sample the collapse check (MADV_COLLAPSE / khugepaged) turned away whose folio
  // the scheme reported maybe pinned though it held no pin (issue 13).
  uint64_t sample_collapse_fp = 0;
  double scan_pages_per_second = 0;  // count_maybe_dma_pinned over the array, all threads
  // What the scheme is, from its policy (the report must not know schemes by name): the
  // orders < kProfileOrders whose folios keep an exact pincount (bit k: order k; no false
  // positives there), the refcount cost of one write pin of a small folio (the pin budget's
  // unit) and whether read pins are visible to maybe-pinned.
  uint32_t exact_orders = 0;
  int64_t pin_ref_cost = 1;
  bool read_pins_visible = true;
};

constexpr uint32_t kMaxProfileThreads = 1024;

struct ProfileConfig {
  std::vector<Scheme> schemes;
  std::vector<uint32_t> biases{1024};
  uint32_t threads = 1;           // 1..kMaxProfileThreads
  uint64_t sample_folios = 4096;  // for the AddressSpace clients (0: none)
};

using ProfileProgress = std::function<void(size_t done, size_t total, const std::string& what)>;

// EINVAL naming a bad field (threads 1..1024).
Status validate_profile_config(const ProfileConfig& cfg);

// EAGAIN if a thread cannot be started (the started ones are joined first); kCancelled if
// `control` asked the run to stop (checked between runs and while a population is built).
Status run_profile(const std::vector<PopFolio>& folios, uint64_t pages, const ProfileConfig& cfg,
                   const ProfileProgress& progress, std::vector<ProfileRun>* out,
                   const RunControl* control = nullptr);

}  // namespace pinlab
