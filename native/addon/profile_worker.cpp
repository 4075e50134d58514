#include "profile_worker.h"

#include <map>
#include <string>
#include <vector>

#include "errors.h"
#include "engines/profile_engine.h"
#include "host/snapshot.h"

namespace pinlab::addon {

namespace {

double num(Napi::Object o, const char* key, double fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

// A distribution object from lib/ (shapes checked there; values checked by the core). Mixtures
// nest at most kMaxMixtureDepth deep: the recursion here must not exhaust the stack.
Distribution distribution_from(Napi::Object o, Napi::Env env, int depth = 1) {
  Distribution d;
  const std::string kind = o.Get("kind").As<Napi::String>().Utf8Value();
  using K = Distribution::Kind;
  if (kind == "fixed") {
    d.kind = K::kFixed;
    d.a = num(o, "value");
  } else if (kind == "uniform") {
    d.kind = K::kUniform;
    d.a = num(o, "min");
    d.b = num(o, "max");
  } else if (kind == "geometric") {
    d.kind = K::kGeometric;
    d.a = num(o, "p");
    d.b = num(o, "min", 1);
  } else if (kind == "zipf") {
    d.kind = K::kZipf;
    d.a = num(o, "s");
    d.b = num(o, "max");
  } else if (kind == "lognormal") {
    d.kind = K::kLognormal;
    d.a = num(o, "mu");
    d.b = num(o, "sigma");
    d.c = num(o, "max", 0);
  } else if (kind == "mixture") {
    d.kind = K::kMixture;
    if (depth > kMaxMixtureDepth)
      throw_status(env, Status::BadOption("mixture depth", depth, "mixtures nested at most 8 deep"));
    auto parts = o.Get("parts").As<Napi::Array>();
    for (uint32_t i = 0; i < parts.Length(); ++i) {
      auto part = parts.Get(i).As<Napi::Object>();
      d.parts.emplace_back(num(part, "weight"), distribution_from(part.Get("dist").As<Napi::Object>(), env, depth + 1));
    }
  } else {
    throw_status(env, Status{Code::kEINVAL, Reason::kFlags, "unknown distribution kind"});
  }
  return d;
}

PopulationSpec population_from(Napi::Object o, Napi::Env env) {
  PopulationSpec p;
  p.pages = uint64_t(num(o, "pages"));
  p.seed = uint64_t(num(o, "seed"));
  p.orders.clear();
  auto orders = o.Get("orders").As<Napi::Array>();
  for (uint32_t i = 0; i < orders.Length(); ++i) {
    auto e = orders.Get(i).As<Napi::Object>();
    p.orders.emplace_back(uint32_t(num(e, "order")), num(e, "weight"));
  }
  p.refs = distribution_from(o.Get("refs").As<Napi::Object>(), env);
  p.free_fraction = num(o, "freeFraction");
  p.pinned_fraction = num(o, "pinnedFraction");
  p.pins_per_pinned = distribution_from(o.Get("pinsPerPinned").As<Napi::Object>(), env);
  p.write_fraction = num(o, "writeFraction");
  check(env, validate_population(p));
  return p;
}

Napi::Object tally_value(Napi::Env env, const ProfileTally& t) {
  auto o = Napi::Object::New(env);
  o.Set("pages", double(t.pages));
  o.Set("unpinnedPages", double(t.unpinned_pages));
  o.Set("falsePositivePages", double(t.false_positive_pages));
  o.Set("pinnedPages", double(t.pinned_pages));
  o.Set("falseNegativePages", double(t.false_negative_pages));
  o.Set("readOnlyPages", double(t.read_only_pages));
  o.Set("hiddenReadPages", double(t.hidden_read_pages));
  o.Set("folios", double(t.folios));
  o.Set("unpinnedFolios", double(t.unpinned_folios));
  o.Set("falsePositiveFolios", double(t.false_positive_folios));
  o.Set("pinnedFolios", double(t.pinned_folios));
  o.Set("falseNegativeFolios", double(t.false_negative_folios));
  o.Set("readOnlyFolios", double(t.read_only_folios));
  o.Set("hiddenReadFolios", double(t.hidden_read_folios));
  return o;
}

template <size_t N>
Napi::Array tallies_value(Napi::Env env, const std::array<ProfileTally, N>& a) {
  auto arr = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) arr[i] = tally_value(env, a[i]);
  return arr;
}

struct Progress {
  size_t done;
  size_t total;
  std::string what;
};

class ProfileWorker : public Napi::AsyncProgressQueueWorker<Progress> {
 public:
  ProfileWorker(Napi::Env env, PopulationSpec pop, std::string snapshot, ProfileConfig cfg,
                Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<Progress>(env),
        pop_(std::move(pop)),
        snapshot_(std::move(snapshot)),
        cfg_(std::move(cfg)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) on_progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {  // no Node-API here
    Progress start{0, cfg_.schemes.size() * cfg_.biases.size(), "building the population"};
    progress.Send(&start, 1);
    std::vector<PopFolio> folios;
    uint64_t pages = pop_.pages;
    if (snapshot_.empty()) {
      folios = draw_population(pop_);
    } else {
      HostSnapshot snap;
      status_ = read_snapshot(snapshot_, &snap);
      if (!status_.ok()) return;
      folios = population_from_snapshot(snap, pop_);
      pages = snap.pages;
    }
    folios_ = folios.size();
    pages_ = pages;
    status_ = run_profile(folios, pages, cfg_, [&](size_t d, size_t t, const std::string& w) {
      Progress p{d, t, w};
      progress.Send(&p, 1);
    }, &runs_);
  }

  void OnProgress(const Progress* data, size_t count) override {
    if (on_progress_.IsEmpty()) return;
    Napi::Env env = Env();
    for (size_t i = 0; i < count; ++i)
      on_progress_.Call({Napi::Number::New(env, double(data[i].done)),
                         Napi::Number::New(env, double(data[i].total)),
                         Napi::String::New(env, data[i].what)});
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) {
      reject_with_status(env, deferred_, status_);
      return;
    }
    auto out = Napi::Object::New(env);
    out.Set("folios", double(folios_));
    out.Set("pages", double(pages_));
    auto runs = Napi::Array::New(env, runs_.size());
    for (size_t i = 0; i < runs_.size(); ++i) {
      const ProfileRun& r = runs_[i];
      auto o = Napi::Object::New(env);
      o.Set("scheme", scheme_name(r.scheme));
      o.Set("bias", double(r.bias));
      o.Set("overall", tally_value(env, r.overall));
      o.Set("byOrder", tallies_value(env, r.by_order));
      o.Set("byRefs", tallies_value(env, r.by_refs));
      o.Set("pinsTaken", double(r.pins_taken));
      o.Set("overflowRefusals", double(r.overflow_refusals));
      o.Set("samplePages", double(r.sample_pages));
      o.Set("sampleEarlyCowFalsePositives", double(r.sample_early_cow_fp));
      o.Set("sampleMigrationFalsePositives", double(r.sample_migration_fp));
      o.Set("scanPagesPerSecond", r.scan_pages_per_second);
      Napi::Array exact = Napi::Array::New(env, kProfileOrders);
      for (uint32_t k = 0; k < kProfileOrders; ++k) exact.Set(k, ((r.exact_orders >> k) & 1) != 0);
      o.Set("exactOrders", exact);
      o.Set("pinRefCost", double(r.pin_ref_cost));
      o.Set("readPinsVisible", r.read_pins_visible);
      runs[i] = o;
    }
    out.Set("runs", runs);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  PopulationSpec pop_;
  std::string snapshot_;
  ProfileConfig cfg_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_progress_;
  Status status_;
  std::vector<ProfileRun> runs_;
  size_t folios_ = 0;
  uint64_t pages_ = 0;
};

class SnapshotWorker : public Napi::AsyncProgressQueueWorker<Progress> {
 public:
  SnapshotWorker(Napi::Env env, std::string path, uint64_t max_pages, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<Progress>(env),
        path_(std::move(path)),
        max_pages_(max_pages),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) on_progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {  // no Node-API here
    status_ = read_host_snapshot("/proc/kpagecount", "/proc/kpageflags", max_pages_,
                                 [&](uint64_t done, uint64_t total) {
                                   Progress p{size_t(done), size_t(total), "reading"};
                                   progress.Send(&p, 1);
                                 }, &snap_);
    if (status_.ok()) status_ = write_snapshot(path_, snap_);
  }
  void OnProgress(const Progress* data, size_t count) override {
    if (on_progress_.IsEmpty() || count == 0) return;
    Napi::Env env = Env();
    on_progress_.Call({Napi::Number::New(env, double(data[count - 1].done)),
                       Napi::Number::New(env, double(data[count - 1].total))});
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) {
      reject_with_status(env, deferred_, status_);
      return;
    }
    auto o = Napi::Object::New(env);
    o.Set("pages", double(snap_.pages));
    o.Set("folios", double(snap_.folios.size()));
    auto orders = Napi::Object::New(env);
    std::map<int, uint64_t> by_order;
    uint64_t allocated = 0;
    for (const SnapshotFolio& f : snap_.folios) {
      by_order[f.order] += 1;
      allocated += uint64_t{1} << f.order;
    }
    for (const auto& [k, n] : by_order) orders.Set(std::to_string(k), double(n));
    o.Set("foliosByOrder", orders);
    o.Set("allocatedPages", double(allocated));
    o.Set("source", snap_.source);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string path_;
  uint64_t max_pages_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_progress_;
  Status status_;
  HostSnapshot snap_;
};

}  // namespace

// distributionTail(dist, k): P(X >= k), the analytic expectation's building block.
Napi::Value distribution_tail_sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Distribution d = distribution_from(info[0].As<Napi::Object>(), env);
  check(env, validate_distribution(d, "distribution"));
  return Napi::Number::New(env, distribution_tail(d, uint64_t(info[1].As<Napi::Number>().Int64Value())));
}

// runProfile({ population, schemes, biases, threads, sampleFolios }, onProgress?)
Napi::Value run_profile_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = info[0].As<Napi::Object>();
  PopulationSpec pop = population_from(req.Get("population").As<Napi::Object>(), env);
  ProfileConfig cfg;
  auto schemes = req.Get("schemes").As<Napi::Array>();
  for (uint32_t i = 0; i < schemes.Length(); ++i) {
    Scheme s;
    const std::string name = schemes.Get(i).As<Napi::String>().Utf8Value();
    if (!parse_scheme(name.c_str(), &s)) throw_status(env, unknown_scheme_status());
    cfg.schemes.push_back(s);
  }
  cfg.biases.clear();
  auto biases = req.Get("biases").As<Napi::Array>();
  for (uint32_t i = 0; i < biases.Length(); ++i) {
    const auto b = int64_t(biases.Get(i).As<Napi::Number>().Int64Value());
    if (b < kMinBias || b > kMaxBias || (b & (b - 1)) != 0)
      throw_status(env, Status::BadOption("bias", b, "a power of two in 2..1048576"));
    cfg.biases.push_back(uint32_t(b));
  }
  cfg.threads = uint32_t(num(req, "threads", 1));
  const std::string snapshot =
      req.Get("snapshot").IsString() ? req.Get("snapshot").As<Napi::String>().Utf8Value() : "";
  cfg.sample_folios = uint64_t(num(req, "sampleFolios", 4096));
  Napi::Function on_progress =
      info.Length() > 1 && info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function();
  auto* worker = new ProfileWorker(env, std::move(pop), snapshot, std::move(cfg), on_progress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// takeSnapshot(path, maxPages, onProgress?) -> Promise<summary>
Napi::Value take_snapshot_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const auto max_pages = uint64_t(info[1].As<Napi::Number>().Int64Value());
  Napi::Function on_progress =
      info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  // A bad --out fails now, not after the whole of /proc/kpage* has been read.
  if (Status st = check_snapshot_output(path); !st.ok()) throw_status(env, st);
  auto* worker = new SnapshotWorker(env, path, max_pages, on_progress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
