// The benchmark engine: every workload kind runs, checks itself and reports sane figures.
#include <cmath>
#include <vector>

#include "engines/bench_engine.h"
#include "check.h"

namespace pinlab::test {
namespace {

std::vector<BenchResult> run_small(std::vector<BenchSpec> specs) {
  BenchTiming t;
  t.trials = 2;
  t.trial_ms = 1;
  size_t last = 0, total = 0;
  auto results = run_bench(specs, t, [&](size_t done, size_t n, const std::string&) {
    CHECK(done > last);  // progress only moves forward
    last = done;
    total = n;
  });
  CHECK_EQ(last, total);
  return results;
}

BenchSpec spec(BenchOp op, uint32_t order, uint32_t threads, BenchSharing sharing, bool per_page) {
  BenchSpec s;
  s.op = op;
  s.scheme = Scheme::kHybrid;
  s.order = order;
  s.threads = threads;
  s.sharing = sharing;
  s.per_page = per_page;
  s.buffer_pages = 2048;
  s.pages_per_call = 256;
  return s;
}

TEST_TAGGED(every_workload_kind_runs_and_balances, "concurrency") {
  std::vector<BenchSpec> specs;
  for (BenchOp op : {BenchOp::kPinUnpin, BenchOp::kGetPut, BenchOp::kGupFast, BenchOp::kMixed,
                     BenchOp::kRawPerPage, BenchOp::kRawPerFolio})
    for (BenchSharing sh : {BenchSharing::kPrivate, BenchSharing::kShared, BenchSharing::kInterleaved})
      for (uint32_t order : {0u, 9u}) specs.push_back(spec(op, order, 2, sh, false));
  for (const BenchResult& r : run_small(specs)) {
    if (!r.ok) fail(__FILE__, __LINE__, bench_label(r.spec) + ": " + r.error);
    CHECK_EQ(r.ns_per_page.size(), size_t(2));
    for (double ns : r.ns_per_page) CHECK(std::isfinite(ns) && ns > 0);
    CHECK(r.atomics_per_page > 0);
  }
}

TEST(bvec_takes_fewer_atomics_than_per_page_on_large_folios) {
  auto results = run_small({spec(BenchOp::kPinUnpin, 9, 1, BenchSharing::kPrivate, true),
                            spec(BenchOp::kPinUnpin, 9, 1, BenchSharing::kPrivate, false)});
  CHECK(results[0].ok && results[1].ok);
  CHECK_EQ(results[0].atomics_per_page, 4.0);           // hybrid large: ref + pincount, twice
  // bvec: one grab per run; calls of 256 pages cut each 2 MiB folio into two runs.
  CHECK_EQ(results[1].atomics_per_page, 2 * 4.0 / 512);
}

TEST(bad_specs_are_refused_with_the_field_named) {
  BenchSpec s = spec(BenchOp::kGupFast, 3, 1, BenchSharing::kPrivate, false);
  Status st = validate_bench_spec(s);
  CHECK(st.code == Code::kEINVAL);
  CHECK(describe(st).find("order") != std::string::npos);
  s = spec(BenchOp::kPinUnpin, 9, 1, BenchSharing::kPrivate, false);
  s.buffer_pages = 1000;  // not a multiple of the folio size
  CHECK(describe(validate_bench_spec(s)).find("bufferPages") != std::string::npos);
  s = spec(BenchOp::kPinUnpin, 0, 0, BenchSharing::kPrivate, false);
  CHECK(describe(validate_bench_spec(s)).find("threads") != std::string::npos);
  auto results = run_small({s});
  CHECK(!results[0].ok);
  CHECK(results[0].error.find("threads") != std::string::npos);
}

}  // namespace
}  // namespace pinlab::test
