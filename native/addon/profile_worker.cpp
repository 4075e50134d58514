#include "profile_worker.h"

#include <map>
#include <string>
#include <vector>

#include "args.h"
#include "async_run.h"
#include "base/memory.h"
#include "errors.h"
#include "engines/profile_engine.h"
#include "host/snapshot.h"

namespace pinlab::addon {

namespace {

// o[key] as a finite number; `fallback` when absent (undefined). EINVAL for anything else.
double num(Napi::Env env, Napi::Object o, const char* key, double fallback = 0) {
  Napi::Value v = option(o, key);
  if (v.IsUndefined()) return fallback;
  return number_value(env, v, key);
}

// A distribution object (shapes checked here as well as in lib/; values by the core). Mixtures
// nest at most kMaxMixtureDepth deep: the recursion here must not exhaust the stack.
Distribution distribution_from(Napi::Value v, Napi::Env env, int depth = 1) {
  Napi::Object o = object_value(env, v, "distribution");
  Distribution d;
  const std::string kind = string_value(env, option(o, "kind"), "distribution kind");
  using K = Distribution::Kind;
  if (kind == "fixed") {
    d.kind = K::kFixed;
    d.a = num(env, o, "value");
  } else if (kind == "uniform") {
    d.kind = K::kUniform;
    d.a = num(env, o, "min");
    d.b = num(env, o, "max");
  } else if (kind == "geometric") {
    d.kind = K::kGeometric;
    d.a = num(env, o, "p");
    d.b = num(env, o, "min", 1);
  } else if (kind == "zipf") {
    d.kind = K::kZipf;
    d.a = num(env, o, "s");
    d.b = num(env, o, "max");
  } else if (kind == "lognormal") {
    d.kind = K::kLognormal;
    d.a = num(env, o, "mu");
    d.b = num(env, o, "sigma");
    d.c = num(env, o, "max", 0);
  } else if (kind == "mixture") {
    d.kind = K::kMixture;
    if (depth > kMaxMixtureDepth)
      throw_status(env, Status::BadOption("mixture depth", depth, "mixtures nested at most 8 deep"));
    auto parts = array_value(env, option(o, "parts"), "mixture parts");
    const uint32_t n = parts.Length();
    if (n > 1024) throw_invalid(env, "mixture: more than 1024 parts");
    for (uint32_t i = 0; i < n; ++i) {
      auto part = object_value(env, parts.Get(i), "mixture part");
      const double weight = num(env, part, "weight");
      d.parts.emplace_back(weight, distribution_from(option(part, "dist"), env, depth + 1));
    }
  } else {
    throw_status(env, Status{Code::kEINVAL, Reason::kFlags, "unknown distribution kind"});
  }
  return d;
}

PopulationSpec population_from(Napi::Value v, Napi::Env env) {
  Napi::Object o = object_value(env, v, "population");
  PopulationSpec p;
  p.pages = uint64_t(int_value(env, option(o, "pages"), "pages", 1, int64_t(kMaxPages)));
  p.seed = uint64_t(int_value(env, option(o, "seed"), "seed", -kMaxSafeInteger, kMaxSafeInteger));
  p.orders.clear();
  auto orders = array_value(env, option(o, "orders"), "orders");
  const uint32_t n = orders.Length();
  if (n > 1024) throw_invalid(env, "orders: more than 1024 entries");
  for (uint32_t i = 0; i < n; ++i) {
    auto e = object_value(env, orders.Get(i), "orders entry");
    p.orders.emplace_back(uint32_t(int_value(env, option(e, "order"), "orders: order", 0, UINT32_MAX)),
                          num(env, e, "weight"));
  }
  p.refs = distribution_from(option(o, "refs"), env);
  p.free_fraction = num(env, o, "freeFraction");
  p.pinned_fraction = num(env, o, "pinnedFraction");
  p.pins_per_pinned = distribution_from(option(o, "pinsPerPinned"), env);
  p.write_fraction = num(env, o, "writeFraction");
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

class ProfileWorker : public AsyncRun {
 public:
  ProfileWorker(Napi::Env env, PopulationSpec pop, std::string snapshot, ProfileConfig cfg,
                Napi::Function on_progress)
      : AsyncRun(env, "pinlab.runProfile", on_progress),
        pop_(std::move(pop)),
        snapshot_(std::move(snapshot)),
        cfg_(std::move(cfg)) {}

 private:
  Status run(const RunControl& control, const Report& report) override {
    report(0, cfg_.schemes.size() * cfg_.biases.size(), "building the population");
    std::vector<PopFolio> folios;
    uint64_t pages = pop_.pages;
    if (snapshot_.empty()) {
      // At most one folio per page, reserved up front: a size memory cannot hold is ENOMEM.
      if (!fits_in_memory(pages, sizeof(PopFolio)))
        return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(pages * sizeof(PopFolio)));
      folios = draw_population(pop_);
    } else {
      HostSnapshot snap;
      // A PageArray holds at most kMaxPages: a bigger snapshot is refused before its folios
      // are expanded, and a population of one entry per page must fit in memory.
      if (Status st = read_snapshot(snapshot_, &snap, kMaxPages); !st.ok()) return st;
      if (!fits_in_memory(snap.pages, sizeof(PopFolio)))
        return Status::Fail(Code::kENOMEM, Reason::kNoMemory,
                            int64_t(snap.pages * sizeof(PopFolio)));
      if (control.stop_requested())
        return Status{Code::kEINVAL, Reason::kCancelled, "the profile run"};
      folios = population_from_snapshot(snap, pop_);
      pages = snap.pages;
    }
    folios_ = folios.size();
    pages_ = pages;
    return run_profile(folios, pages, cfg_, report, &runs_, &control);
  }

  Napi::Value result(Napi::Env env) override {
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
      o.Set("samplePageoutFalsePositives", double(r.sample_pageout_fp));
      o.Set("sampleCollapseFalsePositives", double(r.sample_collapse_fp));
      o.Set("scanPagesPerSecond", r.scan_pages_per_second);
      Napi::Array exact = Napi::Array::New(env, kProfileOrders);
      for (uint32_t k = 0; k < kProfileOrders; ++k) exact.Set(k, ((r.exact_orders >> k) & 1) != 0);
      o.Set("exactOrders", exact);
      o.Set("pinRefCost", double(r.pin_ref_cost));
      o.Set("readPinsVisible", r.read_pins_visible);
      runs[i] = o;
    }
    out.Set("runs", runs);
    return out;
  }

  PopulationSpec pop_;
  std::string snapshot_;
  ProfileConfig cfg_;
  std::vector<ProfileRun> runs_;
  size_t folios_ = 0;
  uint64_t pages_ = 0;
};

class SnapshotWorker : public AsyncRun {
 public:
  SnapshotWorker(Napi::Env env, std::string path, uint64_t max_pages, Napi::Function on_progress)
      : AsyncRun(env, "pinlab.takeSnapshot", on_progress),
        path_(std::move(path)),
        max_pages_(max_pages) {}

 private:
  Status run(const RunControl& control, const Report& report) override {
    Status st = read_host_snapshot(
        "/proc/kpagecount", "/proc/kpageflags", max_pages_,
        [&](uint64_t done, uint64_t total) { report(size_t(done), size_t(total), "reading"); },
        &snap_, &control);
    if (st.ok()) st = write_snapshot(path_, snap_);
    return st;
  }

  // onProgress(done, total), for the latest of the queued events only.
  void deliver(Napi::Env env, Napi::Function cb, const RunEvent* events, size_t n) override {
    if (n == 0) return;
    cb.Call({Napi::Number::New(env, double(events[n - 1].done)),
             Napi::Number::New(env, double(events[n - 1].total))});
  }

  Napi::Value result(Napi::Env env) override {
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
    return o;
  }

  std::string path_;
  uint64_t max_pages_;
  HostSnapshot snap_;
};

}  // namespace

// distributionTail(dist, k): P(X >= k), the analytic expectation's building block.
Napi::Value distribution_tail_sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Distribution d = distribution_from(info[0], env);
  check(env, validate_distribution(d, "distribution"));
  const int64_t k = int_arg(info, 1, "k", 0, INT64_MAX);
  return Napi::Number::New(env, distribution_tail(d, uint64_t(k)));
}

// runProfile({ population, schemes, biases, threads, sampleFolios, snapshot? }, onProgress?)
Napi::Value run_profile_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = object_value(env, info[0], "profile request");
  PopulationSpec pop = population_from(option(req, "population"), env);
  ProfileConfig cfg;
  auto schemes = array_value(env, option(req, "schemes"), "schemes");
  const uint32_t ns = schemes.Length();
  if (ns > 1024) throw_invalid(env, "schemes: more than 1024 entries");
  for (uint32_t i = 0; i < ns; ++i) {
    Scheme s;
    const std::string name = string_value(env, schemes.Get(i), "scheme");
    if (!parse_scheme(name.c_str(), &s)) throw_status(env, unknown_scheme_status());
    cfg.schemes.push_back(s);
  }
  cfg.biases.clear();
  auto biases = array_value(env, option(req, "biases"), "biases");
  const uint32_t nb = biases.Length();
  if (nb > 1024) throw_invalid(env, "biases: more than 1024 entries");
  for (uint32_t i = 0; i < nb; ++i) {
    const int64_t b = int_value(env, biases.Get(i), "bias");
    if (b < kMinBias || b > kMaxBias || (b & (b - 1)) != 0)
      throw_status(env, Status::BadOption("bias", b, "a power of two in 2..1048576"));
    cfg.biases.push_back(uint32_t(b));
  }
  Napi::Value threads = option(req, "threads");
  cfg.threads = threads.IsUndefined()
                    ? 1
                    : uint32_t(int_value(env, threads, "threads", 1, kMaxProfileThreads));
  check(env, validate_profile_config(cfg));
  Napi::Value snap = option(req, "snapshot");
  const std::string snapshot = snap.IsUndefined() ? "" : string_value(env, snap, "snapshot");
  Napi::Value sample = option(req, "sampleFolios");
  cfg.sample_folios = sample.IsUndefined()
                          ? 4096
                          : uint64_t(int_value(env, sample, "sampleFolios", 0, kMaxSafeInteger));
  Napi::Function on_progress = progress_arg(info, 1);
  auto* worker = new ProfileWorker(env, std::move(pop), snapshot, std::move(cfg), on_progress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// takeSnapshot(path, maxPages, onProgress?) -> Promise<summary>
Napi::Value take_snapshot_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = string_value(env, info[0], "path");
  const auto max_pages = uint64_t(int_arg(info, 1, "maxPages", 0, int64_t(kSnapMaxPages)));
  Napi::Function on_progress = progress_arg(info, 2);
  // A bad --out fails now, not after the whole of /proc/kpage* has been read.
  if (Status st = check_snapshot_output(path); !st.ok()) throw_status(env, st);
  auto* worker = new SnapshotWorker(env, path, max_pages, on_progress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
