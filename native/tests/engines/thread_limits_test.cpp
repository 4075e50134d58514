// The engines when a thread cannot be started (the ThreadGroup test hook stands in for
// RLIMIT_NPROC or an address-space limit): EAGAIN, the started threads stopped and joined,
// and a stop requested through RunControl ends a run early with kCancelled.
#include <chrono>
#include <thread>

#include "check.h"
#include "engines/bench_engine.h"
#include "engines/population.h"
#include "engines/profile_engine.h"
#include "engines/stress.h"

namespace pinlab::test {
namespace {

struct NoThreadLimitAfter {
  ~NoThreadLimitAfter() { set_thread_start_limit_for_testing(-1); }
};

BenchSpec small_spec(uint32_t threads) {
  BenchSpec s;
  s.op = BenchOp::kPinUnpin;
  s.scheme = Scheme::kHybrid;
  s.threads = threads;
  s.buffer_pages = 512;
  return s;
}

TEST_TAGGED(bench_reports_eagain_when_a_thread_cannot_start, "concurrency") {
  NoThreadLimitAfter restore;
  set_thread_start_limit_for_testing(2);
  BenchTiming t;
  t.trials = 2;
  t.trial_ms = 1;
  Status st;
  auto results = run_bench({small_spec(4)}, t, nullptr, nullptr, &st);
  CHECK_CODE(st, Code::kEAGAIN);
  CHECK_EQ(results.size(), size_t{1});
  CHECK(!results[0].ok);
  CHECK(results[0].error.find("EAGAIN") != std::string::npos ||
        results[0].error.find("could not start") != std::string::npos);
}

TEST_TAGGED(bench_stops_when_asked, "concurrency") {
  RunControl c;
  c.request_stop();
  BenchTiming t;
  t.trials = 1000;
  t.trial_ms = 50;
  Status st;
  auto results = run_bench({small_spec(1)}, t, nullptr, &c, &st);
  CHECK(st.reason == Reason::kCancelled);
  CHECK(!results[0].ok);
}

TEST_TAGGED(stress_reports_eagain_and_stops_its_threads, "concurrency") {
  NoThreadLimitAfter restore;
  set_thread_start_limit_for_testing(5);
  StressConfig cfg;
  cfg.threads = 16;
  cfg.duration_ms = 60000;  // the started threads must stop long before this
  cfg.region_pages = 512;
  cfg.regions = 1;
  StressReport r;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_CODE(run_stress(cfg, &r), Code::kEAGAIN);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
}

TEST_TAGGED(stress_stops_when_asked, "concurrency") {
  StressConfig cfg;
  cfg.threads = 4;
  cfg.duration_ms = 60000;
  cfg.region_pages = 512;
  cfg.regions = 1;
  StressReport r;
  RunControl c;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    c.request_stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  const Status st = run_stress(cfg, &r, &c);
  stopper.join();
  CHECK(st.reason == Reason::kCancelled);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
}

TEST_TAGGED(profile_reports_eagain_and_refuses_absurd_thread_counts, "concurrency") {
  NoThreadLimitAfter restore;
  PopulationSpec pop;
  pop.pages = 4096;
  const std::vector<PopFolio> folios = draw_population(pop);
  ProfileConfig cfg;
  cfg.schemes = {Scheme::kHybrid};
  cfg.sample_folios = 0;
  std::vector<ProfileRun> runs;
  cfg.threads = 100000;
  CHECK_CODE(run_profile(folios, pop.pages, cfg, nullptr, &runs), Code::kEINVAL);
  cfg.threads = 0;
  CHECK_CODE(run_profile(folios, pop.pages, cfg, nullptr, &runs), Code::kEINVAL);
  cfg.threads = 8;
  set_thread_start_limit_for_testing(3);
  CHECK_CODE(run_profile(folios, pop.pages, cfg, nullptr, &runs), Code::kEAGAIN);
}

}  // namespace
}  // namespace pinlab::test
