#include "engines/bench_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include "engines/bench_workloads.h"
#include "mm/page_table.h"
#include "base/stats.h"
#include "base/threads.h"

namespace pinlab {

namespace {

using Clock = std::chrono::steady_clock;
static_assert(Clock::is_steady, "trials need a monotonic clock");

// One thread's outcome of a trial, on its own cache line.
struct alignas(kCacheLine) ThreadSlot {
  Clock::time_point end;
  Status status;
};

const char* op_name(BenchOp op) {
  switch (op) {
    case BenchOp::kPinUnpin: return "pin-unpin";
    case BenchOp::kGetPut: return "get-put";
    case BenchOp::kGupFast: return "gup-fast";
    case BenchOp::kMixed: return "mixed";
    case BenchOp::kRawPerPage: return "raw-per-page";
    case BenchOp::kRawPerFolio: return "raw-per-folio";
  }
  return "?";
}

const char* sharing_name(BenchSharing s) {
  switch (s) {
    case BenchSharing::kPrivate: return "private";
    case BenchSharing::kShared: return "shared";
    case BenchSharing::kInterleaved: return "interleaved";
  }
  return "?";
}

// Pins the calling thread to one CPU (round robin over the CPUs this process may use), so
// that a trial measures the work, not the scheduler's placement of fresh threads: two new
// threads start on their parent's CPU and are spread only later. Best effort; Linux only.
void pin_to_cpu(uint32_t t) {
#if defined(__linux__)
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  const int n = CPU_COUNT(&allowed);
  if (n <= 0) return;
  int want = int(t % uint32_t(n)), cpu = -1;
  for (int c = 0; c < CPU_SETSIZE && want >= 0; ++c)
    if (CPU_ISSET(c, &allowed) && want-- == 0) cpu = c;
  if (cpu < 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
#else
  (void)t;
#endif
}

// Runs `rounds` rounds on every thread, released together by a start barrier; returns the
// wall time from the release to the last thread's end, or a failed thread's status. If a
// thread cannot be started, the started ones are released without working and joined, and
// the status is EAGAIN.
Status run_trial(Workload& w, uint32_t threads, uint64_t rounds, double* ns) {
  std::vector<ThreadSlot> slots(threads);
  std::atomic<uint32_t> ready{0};
  std::atomic<bool> go{false}, abandon{false};
  ThreadGroup pool;
  for (uint32_t t = 0; t < threads; ++t) {
    Status st = pool.start([&, t] {
      pin_to_cpu(t);
      ready.fetch_add(1, std::memory_order_relaxed);
      // acquire: pairs with the release of `go`; everything set up before it is visible.
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      if (abandon.load(std::memory_order_relaxed)) return;
      for (uint64_t r = 0; r < rounds && slots[t].status.ok(); ++r) slots[t].status = w.round(t);
      slots[t].end = Clock::now();
    }, threads);
    if (!st.ok()) {
      abandon.store(true, std::memory_order_relaxed);
      go.store(true, std::memory_order_release);
      pool.join();
      return st;
    }
  }
  while (ready.load(std::memory_order_relaxed) < threads) std::this_thread::yield();
  const Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);  // release: the start barrier opens
  pool.join();
  Clock::time_point end = start;
  for (const ThreadSlot& s : slots) {
    if (!s.status.ok()) return s.status;
    end = std::max(end, s.end);
  }
  *ns = std::chrono::duration<double, std::nano>(end - start).count();
  return Status::Ok();
}

struct Config {
  std::unique_ptr<Workload> work;
  BenchResult result;
  uint64_t rounds = 1;
  bool alive = false;
};

// A status that ends the whole run (no thread could be started, or a stop was requested),
// rather than one configuration.
bool ends_run(const Status& st) {
  return st.code == Code::kEAGAIN || st.reason == Reason::kCancelled;
}

// A trial plus its checks; marks the configuration failed on the first problem. A status
// that ends the run is returned (the configuration marked failed with it).
Status measure(Config& c, bool record) {
  Workload& w = *c.work;
  w.begin_trial();
  double ns = 0;
  Status st = run_trial(w, c.result.spec.threads, c.rounds, &ns);
  std::string problem = st.ok() ? w.check(c.rounds) : describe(st);
  if (!problem.empty()) {
    c.alive = false;
    c.result.ok = false;
    c.result.error = problem;
    return ends_run(st) ? st : Status::Ok();
  }
  if (!record) return Status::Ok();
  c.result.ns_per_page.push_back(ns / (double(c.rounds) * double(w.pages_per_thread())));
  c.result.atomics_per_page = w.atomics_per_page(c.rounds);
  return Status::Ok();
}

// Warm-up, then rounds per trial so that a trial lasts about trial_ms.
Status calibrate(Config& c, double trial_ms) {
  Workload& w = *c.work;
  double ns = 0;
  for (int i = 0; i < 2 && c.alive; ++i) {  // the second run is the estimate
    w.begin_trial();
    Status st = run_trial(w, c.result.spec.threads, 1, &ns);
    std::string problem = st.ok() ? w.check(1) : describe(st);
    if (!problem.empty()) {
      c.alive = false;
      c.result.error = problem;
      if (ends_run(st)) return st;
    }
  }
  c.rounds = std::max<uint64_t>(1, uint64_t(trial_ms * 1e6 / std::max(ns, 1.0)));
  return Status::Ok();
}

}  // namespace

Status validate_bench_spec(const BenchSpec& s) {
  if (s.threads < 1 || s.threads > 1024)
    return Status::BadOption("threads", s.threads, "an integer in 1..1024");
  if (s.order > 18) return Status::BadOption("order", s.order, "a folio order in 0..18");
  if (s.op == BenchOp::kGupFast && s.order != 0 && s.order != kPmdOrder)
    return Status::BadOption("order", s.order, "0 (4 KiB mappings) or 9 (2 MiB) for gup-fast");
  const uint64_t folio = uint64_t{1} << s.order;
  const uint64_t align = s.op == BenchOp::kGupFast ? kPtesPerTable : folio;
  if (s.buffer_pages < folio || s.buffer_pages % align != 0 || s.buffer_pages > (1u << 26))
    return Status::BadOption("bufferPages", int64_t(s.buffer_pages),
                             "a multiple of the folio size (gup-fast: of 512), at most 2^26");
  const uint64_t arrays = s.sharing == BenchSharing::kPrivate ? s.buffer_pages * s.threads
                                                              : s.buffer_pages;
  if (arrays > (uint64_t{1} << 30))
    return Status::BadOption("bufferPages", int64_t(s.buffer_pages),
                             "small enough that threads x bufferPages <= 2^30");
  if (s.sharing == BenchSharing::kInterleaved && s.buffer_pages % s.threads != 0)
    return Status::BadOption("bufferPages", int64_t(s.buffer_pages),
                             "a multiple of threads when interleaved");
  return Status::Ok();
}

std::string bench_label(const BenchSpec& s) {
  std::string l = op_name(s.op);
  if (s.op != BenchOp::kRawPerPage && s.op != BenchOp::kRawPerFolio) {
    l += std::string("/") + scheme_name(s.scheme);
    if (s.op != BenchOp::kGupFast) l += s.per_page ? "/per-page" : "/bvec";
  }
  l += "/o" + std::to_string(s.order) + (s.list_input ? "/list" : "/range") + "/" +
       sharing_name(s.sharing) + "/t" + std::to_string(s.threads);
  return l;
}

std::vector<BenchResult> run_bench(const std::vector<BenchSpec>& specs, const BenchTiming& timing,
                                   const BenchProgress& progress, const RunControl* control,
                                   Status* status) {
  std::vector<Config> configs(specs.size());
  const size_t total = specs.size() * (timing.trials + 1);
  size_t done = 0;
  Status fatal = Status::Ok();
  auto step = [&](const BenchSpec& s) {
    if (progress) progress(++done, total, bench_label(s));
  };
  auto stopped = [&] {
    if (fatal.ok() && stop_requested(control))
      fatal = Status{Code::kEINVAL, Reason::kCancelled, "the benchmark run"};
    return !fatal.ok();
  };
  for (size_t i = 0; i < specs.size() && !stopped(); ++i) {  // set up and calibrate everything first
    Config& c = configs[i];
    c.result.spec = specs[i];
    if (Status st = validate_bench_spec(specs[i]); !st.ok()) {
      c.result.error = describe(st);
    } else {
      c.work = make_workload(specs[i]);
      Status st2 = c.work->setup();
      c.alive = st2.ok();
      if (!st2.ok()) c.result.error = describe(st2);
      if (c.alive) fatal = calibrate(c, timing.trial_ms);
    }
    step(specs[i]);
  }
  // Interleaved trials: trial k of every configuration before trial k+1 of any, so that a
  // burst of noise spreads over the matrix instead of ruining one row.
  for (uint32_t k = 0; k < timing.trials && !stopped(); ++k) {
    for (size_t i = 0; i < configs.size() && !stopped(); ++i) {
      if (configs[i].alive) fatal = measure(configs[i], true);
      step(specs[i]);
    }
  }
  std::vector<BenchResult> out;
  out.reserve(configs.size());
  for (size_t i = 0; i < configs.size(); ++i) {
    Config& c = configs[i];
    c.result.spec = specs[i];
    c.result.ok = fatal.ok() && c.alive && !c.result.ns_per_page.empty();
    if (!fatal.ok() && c.result.error.empty()) c.result.error = describe(fatal);
    c.result.rounds_per_trial = c.rounds;
    out.push_back(std::move(c.result));
  }
  if (status != nullptr) *status = fatal;
  return out;
}

}  // namespace pinlab
