#include "bench_worker.h"

#include <string>
#include <vector>

#include "engines/bench_engine.h"
#include "errors.h"

namespace pinlab::addon {

namespace {

struct Progress {
  size_t done;
  size_t total;
  std::string label;
};

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

// A spec object from lib/ (types checked there; values checked here by the core).
BenchSpec spec_from(Napi::Object o, Napi::Env env) {
  BenchSpec s;
  s.op = parse_op(o.Get("op").As<Napi::String>().Utf8Value(), env);
  const std::string scheme = o.Get("scheme").As<Napi::String>().Utf8Value();
  if (!parse_scheme(scheme.c_str(), &s.scheme))
    throw_status(env, unknown_scheme_status());
  s.per_page = o.Get("perPage").As<Napi::Boolean>().Value();
  s.order = o.Get("order").As<Napi::Number>().Uint32Value();
  s.list_input = o.Get("listInput").As<Napi::Boolean>().Value();
  s.threads = o.Get("threads").As<Napi::Number>().Uint32Value();
  s.sharing = parse_sharing(o.Get("sharing").As<Napi::String>().Utf8Value(), env);
  s.buffer_pages = uint64_t(o.Get("bufferPages").As<Napi::Number>().Int64Value());
  s.pages_per_call = uint64_t(o.Get("pagesPerCall").As<Napi::Number>().Int64Value());
  check(env, validate_bench_spec(s));  // bad values throw now, before any thread starts
  return s;
}

class BenchWorker : public Napi::AsyncProgressQueueWorker<Progress> {
 public:
  BenchWorker(Napi::Env env, std::vector<BenchSpec> specs, BenchTiming timing,
              Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<Progress>(env),
        specs_(std::move(specs)),
        timing_(timing),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) on_progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  // No Node-API here: only the core, reporting through the queue.
  void Execute(const ExecutionProgress& progress) override {
    results_ = run_bench(specs_, timing_, [&](size_t done, size_t total, const std::string& l) {
      Progress p{done, total, l};
      progress.Send(&p, 1);
    });
  }

  void OnProgress(const Progress* data, size_t count) override {
    if (on_progress_.IsEmpty()) return;
    Napi::Env env = Env();
    for (size_t i = 0; i < count; ++i) {
      on_progress_.Call({Napi::Number::New(env, double(data[i].done)),
                         Napi::Number::New(env, double(data[i].total)),
                         Napi::String::New(env, data[i].label)});
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
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
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::vector<BenchSpec> specs_;
  BenchTiming timing_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_progress_;
  std::vector<BenchResult> results_;
};

}  // namespace

// runBench(specs[], { trials, trialMs }, onProgress?)
Napi::Value run_bench_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto arr = info[0].As<Napi::Array>();
  std::vector<BenchSpec> specs;
  specs.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i)
    specs.push_back(spec_from(arr.Get(i).As<Napi::Object>(), env));
  auto t = info[1].As<Napi::Object>();
  BenchTiming timing;
  timing.trials = t.Get("trials").As<Napi::Number>().Uint32Value();
  timing.trial_ms = t.Get("trialMs").As<Napi::Number>().DoubleValue();
  Napi::Function on_progress =
      info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto* worker = new BenchWorker(env, std::move(specs), timing, on_progress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
