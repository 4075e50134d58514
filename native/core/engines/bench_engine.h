// The benchmark engine: a matrix of workloads run by native threads, with a start barrier,
// per-thread results on their own cache lines, a steady clock, warm-up, calibration and
// interleaved trials. `pinlab bench` drives it through the addon (an async worker).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pages/scheme.h"
#include "base/status.h"
#include "base/threads.h"

namespace pinlab {

enum class BenchOp : uint8_t {
  kPinUnpin = 0,  // PageArray pin_pages + unpin_pages
  kGetPut,        // PageArray get_page + put_page per run (FOLL_GET)
  kGupFast,       // AddressSpace gup_fast + unpin_user_pages (order 0: 4 KiB, 9: 2 MiB maps)
  kMixed,         // each thread alternates a pin-unpin call and a get-put call
  kRawPerPage,    // baseline: a fetch_add and a fetch_sub per page on a plain int32 array
  kRawPerFolio,   // baseline: a fetch_add and a fetch_sub per folio run
};

enum class BenchSharing : uint8_t {
  kPrivate = 0,  // each thread its own buffer
  kShared,       // every thread the same buffer: contention on the same heads
  kInterleaved,  // thread t takes pages t, t+T, ...: adjacent pages share cache lines/heads
};

struct BenchSpec {
  BenchOp op = BenchOp::kPinUnpin;
  Scheme scheme = Scheme::kBias;
  bool per_page = false;         // pin path: one grab per subpage (else one per folio run)
  uint32_t order = 0;            // folio order of the buffer (gup: 0 or 9, the mapping)
  bool list_input = false;       // PFN lists instead of ranges (interleaved: always lists)
  uint32_t threads = 1;
  BenchSharing sharing = BenchSharing::kPrivate;
  uint64_t buffer_pages = 16384; // pages each thread works over (shared: the one buffer)
  uint64_t pages_per_call = 0;   // 0: the whole buffer in one call
};

struct BenchTiming {
  uint32_t trials = 7;    // measured trials per configuration, interleaved across the matrix
  double trial_ms = 20;   // calibrated length of a trial
};

struct BenchResult {
  BenchSpec spec;
  bool ok = false;
  std::string error;                 // why the configuration failed (no figures then)
  std::vector<double> ns_per_page;   // per trial: ns per page per round, per thread
  double atomics_per_page = 0;       // RMW operations on counts per page and round
  uint64_t rounds_per_trial = 0;
};

// (configurations done, total, what runs now)
using BenchProgress = std::function<void(size_t done, size_t total, const std::string& label)>;

// EINVAL naming the bad field (threads 1..1024, buffer a multiple of the folio size, ...).
Status validate_bench_spec(const BenchSpec& spec);
std::string bench_label(const BenchSpec& spec);
// Runs every configuration; a configuration whose checks fail reports ok = false with the
// reason and no figures (the others still run).
// A thread that cannot be started (EAGAIN) or a stop requested through `control` (kCancelled)
// ends the whole run: the started threads are joined, *status (if given) says why, and the
// results so far come back (the configurations not measured marked failed). Otherwise
// *status is ok: a configuration that fails its own checks is marked in its result.
std::vector<BenchResult> run_bench(const std::vector<BenchSpec>& specs, const BenchTiming& timing,
                                   const BenchProgress& progress,
                                   const RunControl* control = nullptr, Status* status = nullptr);

}  // namespace pinlab
