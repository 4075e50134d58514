// pinlab_ops_bench: the op-stream executor's per-op cost, without Node-API. Runs what
// mem.submit does for a batch (copy into owned memory, the framing check, the executor) over
// single-page ops, and prints CPU ns per op beside the core's own single-page calls. Meant for
// callgrind too (instruction counts are stable on a loaded machine):
//
//   pinlab_ops_bench [--scheme S] [--batch N] [--rounds R] [--mix pin|get] [--phase all|run]
//   valgrind --tool=callgrind build-native/pinlab_ops_bench --rounds 4
//
// --mix pin: pin(p), unpin(p), pin(p+1), ... (as bench/ops.bench.mjs); get: get/put of one page.
// --phase run times the executor alone (no copy, no framing check).
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "engines/op_executor.h"
#include "engines/op_format.h"
#include "pages/page_array.h"

using namespace pinlab;
using namespace pinlab::ops;

namespace {

double cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

const char* arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

uint64_t num_arg(int argc, char** argv, const char* name, uint64_t fallback) {
  const char* v = arg(argc, argv, name, nullptr);
  if (v == nullptr) return fallback;
  uint64_t x = 0;
  if (!bench::parse_u64_value(v, &x) || x == 0) bench::die("%s needs a positive integer", name);
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  const char* scheme_name_arg = arg(argc, argv, "--scheme", "hybrid");
  const uint64_t batch = num_arg(argc, argv, "--batch", 65536);
  const uint64_t rounds = num_arg(argc, argv, "--rounds", 64);
  const std::string mix = arg(argc, argv, "--mix", "pin");
  const bool run_only = std::string(arg(argc, argv, "--phase", "all")) == "run";
  constexpr uint64_t kPages = 262144;

  PageArrayConfig cfg;
  cfg.pages = kPages;
  if (!parse_scheme(scheme_name_arg, &cfg.scheme)) bench::die("unknown scheme %s", scheme_name_arg);
  std::unique_ptr<PageArray> pa;
  if (!PageArray::create(cfg, &pa).ok()) bench::die("page array");
  std::shared_ptr<PageArray> mem(std::move(pa));

  std::vector<Record> ops(batch);
  for (uint64_t i = 0; i < batch; ++i) {
    const uint32_t p = uint32_t((7 + (i >> 1)) % kPages);
    const bool first = i % 2 == 0;
    const Op op = mix == "get" ? (first ? Op::kGet : Op::kPut) : (first ? Op::kPin : Op::kUnpin);
    ops[i] = make_op(op, 0, 0, 0, p, 1, 0, 0);
  }
  std::vector<Record> copy(batch);
  std::vector<int32_t> results(batch);
  SpaceTable table;
  Executor exec(mem, &table);
  RunOptions o;
  o.stop_on_error = true;

  auto round = [&] {
    if (!run_only) {
      std::memcpy(copy.data(), ops.data(), batch * kRecordBytes);
      FramingChecker checker("ops", IdRules{});
      if (!checker.feed(copy.data(), copy.size()).ok() || !checker.finish().ok()) bench::die("framing");
    }
    exec.run(run_only ? ops.data() : copy.data(), batch, o, results.data(), nullptr);
  };
  round();  // warm-up
  const double c0 = cpu_ns();
  const auto t0 = bench::Clock::now();
  for (uint64_t r = 0; r < rounds; ++r) round();
  const double wall = bench::elapsed_ns(t0, bench::Clock::now());
  const double cpu = cpu_ns() - c0;
  for (uint64_t i = 0; i < batch; ++i)
    if (results[i] < 0) bench::die("op %llu refused (%d)", (unsigned long long)i, results[i]);

  // The core's own single-page calls, the floor.
  const double f0 = cpu_ns();
  uint64_t pinned = 0;
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint64_t i = 0; i < batch; i += 2) {
      const PageSet one = PageSet::range((7 + (i >> 1)) % kPages, 1);
      if (mix == "get") {
        bool freed = false;
        (void)mem->get_page(one.start, 1);
        (void)mem->put_page(one.start, 1, &freed);
      } else {
        (void)mem->pin_pages(one, PinFlags{}, &pinned);
        (void)mem->unpin_pages(one, PinFlags{});
      }
    }
  }
  const double floor_cpu = cpu_ns() - f0;
  const double n = double(batch * rounds);
  std::printf("scheme %s mix %s batch %llu: executor %.1f ns/op CPU (%.1f wall)%s; core calls %.1f ns/op CPU\n",
              scheme_name_arg, mix.c_str(), (unsigned long long)batch, cpu / n, wall / n,
              run_only ? " (run only)" : " (copy, framing, run)", floor_cpu / n);
  return 0;
}
