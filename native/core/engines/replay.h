// Replays an op stream natively under several schemes, one after the other, each on a fresh
// page array built from the stream's header (pages, initial folio order, populated, ZONE_MOVABLE
// pages, debug) with the variant's scheme, bias and hybrid rule, and fresh address spaces as the
// stream creates them. A stream's tags run on native threads at once (tag t on thread
// t % threads; one thread runs its tags' ops in stream order), so a multi-tag stream measures
// the schemes under contention. Per variant: ops per second, refusals by code, results that
// differ from the recording, the array's and the address spaces' counters (fork's early COW and
// migration decisions with their false positives), a reclaim scan of the end state (which folios
// reclaim would skip as maybe pinned, and how many of those hold no pin: debug accounting is
// the truth), whether the end state balances, and optionally a digest of the whole end state.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "engines/op_executor.h"
#include "engines/op_files.h"
#include "engines/op_state.h"
#include "pages/scheme.h"

namespace pinlab::ops {

struct ReplayVariant {
  Scheme scheme = Scheme::kHybrid;
  uint32_t pin_bias = 1024;
  uint32_t pincount_min_order = 1;
};

struct ReplayRequest {
  std::vector<ReplayVariant> variants;
  uint32_t threads = 0;  // native threads; 0: one per tag of the stream; at most 1024
  int debug = -1;        // -1: the stream's; 0 or 1: forced (changes misuse refusals)
  bool digest = false;   // fold the end state into a StateDigest (costs a pass over everything)
  const std::atomic<bool>* stop = nullptr;  // a run that reads true returns kOpsStopped
};

// The end state through the eyes of reclaim: allocated folios, those "maybe pinned" (reclaim
// would skip them), and of those the ones with no pin (false positives) or whose pins are not
// exactly known (unclassified: bias-counted folios without debug mode); `missed`: folios with a
// pin that read as not maybe pinned (write-bias's read pins, by design).
struct ReclaimScan {
  uint64_t folios = 0;
  uint64_t maybe_pinned = 0;
  uint64_t false_positives = 0;
  uint64_t unclassified = 0;
  uint64_t missed = 0;
};

struct ReplayResult {
  ReplayVariant variant;
  bool debug = false;
  uint32_t threads = 1;
  Tally tally;
  double seconds = 0;  // wall time of the ops, all threads (array building and scans excluded)
  // CPU time the threads spent running their ops, summed over the threads (each thread's own
  // clock, read before and after its run): what a machine busy with other work distorts least.
  double cpu_seconds = 0;
  std::array<uint64_t, size_t(Stat::kCount)> stats{};
  std::array<uint64_t, size_t(MmStat::kCount)> mm_stats{};  // summed over the address spaces
  uint64_t spaces = 0;  // address spaces created
  ReclaimScan reclaim;
  int64_t pins_outstanding = 0;  // pinAcquired - pinReleased
  uint64_t debug_pinned_pages = 0;  // debug mode: pages still holding pins
  bool balanced = false;
  bool has_digest = false;
  StateDigest digest;
};

using ReplayProgress = std::function<void(uint64_t done, uint64_t total, const std::string& what)>;

Status replay_stream(const OpStream& stream, const ReplayRequest& request,
                     const ReplayProgress& progress, std::vector<ReplayResult>* out);

// Test hook: after `n` more thread starts, every replay thread start fails as if the system
// refused it (n < 0: never, the default). Process-wide; for the EAGAIN path's tests.
void set_replay_thread_starts_for_testing(int64_t n);

// The page array a replay builds for a variant (for tests and the submit path's checks).
PageArrayConfig replay_config(const Header& h, const ReplayVariant& v, bool debug);

}  // namespace pinlab::ops
