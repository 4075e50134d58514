#include "bench_worker.h"

#include <string>
#include <vector>

#include "args.h"
#include "async_run.h"
#include "engines/bench_engine.h"
#include "errors.h"

namespace pinlab::addon {

namespace {

// The documented limits of a run's timing (lib/bench/matrix.ts says the same).
constexpr int64_t kMaxTrials = 1000;
constexpr double kMaxTrialMs = 60000;
constexpr size_t kMaxSpecs = 100000;

BenchOp parse_op(const std::string& s, Napi::Env env) {
  if (s == "pin-unpin") return BenchOp::kPinUnpin;
  if (s == "get-put") return BenchOp::kGetPut;
  if (s == "gup-fast") return BenchOp::kGupFast;
  if (s == "mixed") return BenchOp::kMixed;
  if (s == "raw-per-page") return BenchOp::kRawPerPage;
  if (s == "raw-per-folio") return BenchOp::kRawPerFolio;
  throw_status(env, Status{Code::kEINVAL, Reason::kFlags, "unknown benchmark op"});
}

BenchSharing parse_sharing(const std::string& s, Napi::Env env) {
  if (s == "private") return BenchSharing::kPrivate;
  if (s == "shared") return BenchSharing::kShared;
  if (s == "interleaved") return BenchSharing::kInterleaved;
  throw_status(env, Status{Code::kEINVAL, Reason::kFlags, "unknown sharing"});
}

// A spec object, checked here (types, and integers read without wrapping); the core checks
// the values' ranges and combinations (validate_bench_spec).
BenchSpec spec_from(Napi::Value v, Napi::Env env) {
  Napi::Object o = object_value(env, v, "benchmark spec");
  BenchSpec s;
  s.op = parse_op(string_value(env, option(o, "op"), "op"), env);
  const std::string scheme = string_value(env, option(o, "scheme"), "scheme");
  if (!parse_scheme(scheme.c_str(), &s.scheme))
    throw_status(env, unknown_scheme_status());
  s.per_page = bool_value(env, option(o, "perPage"), "perPage");
  s.order = uint32_t(int_value(env, option(o, "order"), "order", 0, 18));
  s.list_input = bool_value(env, option(o, "listInput"), "listInput");
  s.threads = uint32_t(int_value(env, option(o, "threads"), "threads", 1, 1024));
  s.sharing = parse_sharing(string_value(env, option(o, "sharing"), "sharing"), env);
  s.buffer_pages = uint64_t(int_value(env, option(o, "bufferPages"), "bufferPages", 1, int64_t{1} << 26));
  s.pages_per_call = uint64_t(int_value(env, option(o, "pagesPerCall"), "pagesPerCall", 0, int64_t{1} << 26));
  check(env, validate_bench_spec(s));  // bad values throw now, before any thread starts
  return s;
}

class BenchWorker : public AsyncRun {
 public:
  BenchWorker(Napi::Env env, std::vector<BenchSpec> specs, BenchTiming timing,
              Napi::Function on_progress)
      : AsyncRun(env, "pinlab.runBench", on_progress), specs_(std::move(specs)), timing_(timing) {}

 private:
  Status run(const RunControl& control, const Report& report) override {
    Status st;
    results_ = run_bench(specs_, timing_, report, &control, &st);
    return st;
  }

  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); ++i) {
      const BenchResult& r = results_[i];
      auto o = Napi::Object::New(env);
      o.Set("ok", r.ok);
      o.Set("error", r.error.empty() ? env.Null() : Napi::String::New(env, r.error));
      auto ns = Napi::Array::New(env, r.ns_per_page.size());
      for (size_t k = 0; k < r.ns_per_page.size(); ++k) ns[k] = r.ns_per_page[k];
      o.Set("nsPerPage", ns);
      o.Set("atomicsPerPage", r.atomics_per_page);
      o.Set("roundsPerTrial", double(r.rounds_per_trial));
      out[i] = o;
    }
    return out;
  }

  std::vector<BenchSpec> specs_;
  BenchTiming timing_;
  std::vector<BenchResult> results_;
};

}  // namespace

// runBench(specs[], { trials, trialMs }, onProgress?)
Napi::Value run_bench_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto arr = array_value(env, info[0], "specs");
  const uint32_t n = arr.Length();
  if (n > kMaxSpecs)
    throw_invalid(env, "specs: " + std::to_string(n) + " configurations, more than " +
                           std::to_string(kMaxSpecs));
  std::vector<BenchSpec> specs;
  specs.reserve(n);
  for (uint32_t i = 0; i < n; ++i) specs.push_back(spec_from(arr.Get(i), env));
  auto t = object_value(env, info[1], "timing");
  BenchTiming timing;
  timing.trials = uint32_t(int_value(env, option(t, "trials"), "trials", 1, kMaxTrials));
  timing.trial_ms = number_value(env, option(t, "trialMs"), "trialMs");
  if (!(timing.trial_ms > 0) || timing.trial_ms > kMaxTrialMs)
    throw_invalid(env, "trialMs must be a number in (0, 60000] (got " +
                           describe_value(env, option(t, "trialMs")) + ")");
  Napi::Function on_progress = progress_arg(info, 2);
  auto* worker = new BenchWorker(env, std::move(specs), timing, on_progress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
