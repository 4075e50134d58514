#include "address_space_wrap.h"

#include <string>

#include "errors.h"
#include "page_array_wrap.h"
#include "engines/stress.h"

namespace pinlab::addon {

namespace {

constexpr uint32_t kGupWrite = 1, kGupLongterm = 2, kGupFastOnly = 4, kGupPin = 8,
                   kGupSlowOnly = 16;

int64_t int_arg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int64Value();
}
bool bool_arg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Boolean>().Value();
}

}  // namespace

Napi::Function AddressSpaceWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeAddressSpace",
                     {
                         InstanceMethod<&AddressSpaceWrap::mmap>("mmap"),
                         InstanceMethod<&AddressSpaceWrap::munmap>("munmap"),
                         InstanceMethod<&AddressSpaceWrap::mprotect>("mprotect"),
                         InstanceMethod<&AddressSpaceWrap::map_shared>("mapShared"),
                         InstanceMethod<&AddressSpaceWrap::check_can_map>("checkCanMap"),
                         InstanceMethod<&AddressSpaceWrap::zap>("zap"),
                         InstanceMethod<&AddressSpaceWrap::touch>("touch"),
                         InstanceMethod<&AddressSpaceWrap::gup>("gup"),
                         InstanceMethod<&AddressSpaceWrap::unpin_user_pages>("unpinUserPages"),
                         InstanceMethod<&AddressSpaceWrap::put_user_pages>("putUserPages"),
                         InstanceMethod<&AddressSpaceWrap::fork>("fork"),
                         InstanceMethod<&AddressSpaceWrap::migrate>("migrate"),
                         InstanceMethod<&AddressSpaceWrap::compact>("compact"),
                         InstanceMethod<&AddressSpaceWrap::translate>("translate"),
                         InstanceMethod<&AddressSpaceWrap::stats>("stats"),
                         InstanceMethod<&AddressSpaceWrap::info_>("info"),
                         InstanceMethod<&AddressSpaceWrap::set_race_hook>("setRaceHook"),
                     });
}

AddressSpaceWrap::AddressSpaceWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<AddressSpaceWrap>(info) {
  if (info[0].IsExternal()) {  // a child from fork()
    std::unique_ptr<AddressSpace> child(info[0].As<Napi::External<AddressSpace>>().Data());
    core_ = std::move(child);
    return;
  }
  PageArrayWrap* mem = PageArrayWrap::Unwrap(info[0].As<Napi::Object>());
  std::unique_ptr<AddressSpace> as;
  check(info.Env(), AddressSpace::create(mem->core(), int_arg(info, 1), &as));
  core_ = std::move(as);
}

// mmap(start, count, write, populate, huge)
Napi::Value AddressSpaceWrap::mmap(const Napi::CallbackInfo& info) {
  MmapArgs a{int_arg(info, 0), int_arg(info, 1), bool_arg(info, 2), bool_arg(info, 3),
             bool_arg(info, 4)};
  check(info.Env(), core_->mmap(a));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::munmap(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->munmap(int_arg(info, 0), int_arg(info, 1)));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::mprotect(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->mprotect(int_arg(info, 0), int_arg(info, 1), bool_arg(info, 2)));
  return info.Env().Undefined();
}
// mapShared(start, pfns: Uint32Array, write): the list is copied first, since map_shared
// reads it three times (validate, take references, install) and a SharedArrayBuffer could
// change under it in between.
Napi::Value AddressSpaceWrap::map_shared(const Napi::CallbackInfo& info) {
  auto arr = info[1].As<Napi::Uint32Array>();
  const std::vector<uint32_t> pfns(arr.Data(), arr.Data() + arr.ElementLength());
  check(info.Env(), core_->map_shared(int_arg(info, 0), pfns.data(), pfns.size(), bool_arg(info, 2)));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::zap(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->zap(int_arg(info, 0), int_arg(info, 1)));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::check_can_map(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->check_can_map(int_arg(info, 0), int_arg(info, 1)));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::touch(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->touch(int_arg(info, 0), int_arg(info, 1), bool_arg(info, 2)));
  return info.Env().Undefined();
}

// gup(start, count, flags) -> Uint32Array of the PFNs taken (its length is the count done).
Napi::Value AddressSpaceWrap::gup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t start = int_arg(info, 0), count = int_arg(info, 1);
  const uint32_t bits = info[2].As<Napi::Number>().Uint32Value();
  GupFlags f;
  f.write = bits & kGupWrite;
  f.longterm = bits & kGupLongterm;
  f.fast_only = bits & kGupFastOnly;
  f.pin = bits & kGupPin;
  // The core checks the range (EFAULT) before touching out: a bad count allocates nothing.
  auto out = Napi::Uint32Array::New(env, count > 0 && count <= int64_t(core_->pages()) ? size_t(count) : 0);
  uint64_t done = 0;
  const Status st = (bits & kGupSlowOnly) ? core_->gup_slow(start, count, f, out.Data(), &done)
                                          : core_->gup_fast(start, count, f, out.Data(), &done);
  if (hook_error_) {
    // The walk finished cleanly; now the hook's exception surfaces. What the call took stays
    // taken (the caller sees the exception, so give it back first).
    if (done > 0) {
      if (f.pin) (void)core_->unpin_user_pages(out.Data(), done, f.write, false);
      else (void)core_->put_user_pages(out.Data(), done);
    }
    std::unique_ptr<Napi::Error> err = std::move(hook_error_);
    throw *err;
  }
  check(env, st);
  return Napi::Uint32Array::New(env, size_t(done), out.ArrayBuffer(), 0);
}

Napi::Value AddressSpaceWrap::unpin_user_pages(const Napi::CallbackInfo& info) {
  auto arr = info[0].As<Napi::Uint32Array>();
  check(info.Env(), core_->unpin_user_pages(arr.Data(), arr.ElementLength(), bool_arg(info, 1),
                                            bool_arg(info, 2)));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::put_user_pages(const Napi::CallbackInfo& info) {
  auto arr = info[0].As<Napi::Uint32Array>();
  check(info.Env(), core_->put_user_pages(arr.Data(), arr.ElementLength()));
  return info.Env().Undefined();
}

Napi::Value AddressSpaceWrap::fork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unique_ptr<AddressSpace> child;
  check(env, core_->fork(&child));
  auto* data = env.GetInstanceData<InstanceData>();
  // The constructor adopts the pointer; if it threw before that, the child would leak, but it
  // cannot: adopting is its first statement.
  return data->address_space_ctor.New({Napi::External<AddressSpace>::New(env, child.release())});
}

Napi::Value AddressSpaceWrap::migrate(const Napi::CallbackInfo& info) {
  uint64_t moved = 0;
  check(info.Env(), core_->migrate(int_arg(info, 0), int_arg(info, 1), &moved));
  return Napi::Number::New(info.Env(), double(moved));
}
Napi::Value AddressSpaceWrap::compact(const Napi::CallbackInfo& info) {
  uint64_t moved = 0;
  check(info.Env(), core_->compact(&moved));
  return Napi::Number::New(info.Env(), double(moved));
}

Napi::Value AddressSpaceWrap::translate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t v = int_arg(info, 0);
  const Translation tr = v < 0 ? Translation{} : core_->translate(uint64_t(v));
  if (!tr.present) return env.Null();
  auto o = Napi::Object::New(env);
  o.Set("pfn", double(tr.pfn));
  o.Set("writable", tr.writable);
  o.Set("zeroPage", tr.special);
  o.Set("huge", tr.huge);
  o.Set("shared", tr.shared);
  return o;
}

Napi::Value AddressSpaceWrap::stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  const AddressSpace& as = *core_;
  auto set = [&](const char* name, MmStat s) { o.Set(name, double(as.stat(s))); };
  set("gupCalls", MmStat::kGupCalls);
  set("fastPathPages", MmStat::kFastPages);
  set("slowPathFallbacks", MmStat::kSlowFallbacks);
  set("slowPathPages", MmStat::kSlowPages);
  set("recheckFailures", MmStat::kRecheckFailures);
  set("seqRetries", MmStat::kSeqRetries);
  set("faults", MmStat::kFaults);
  set("cowCopies", MmStat::kCowCopies);
  set("cowReuses", MmStat::kCowReuses);
  set("earlyCowCopies", MmStat::kEarlyCowCopies);
  set("earlyCowFalsePositives", MmStat::kEarlyCowFalsePositives);
  set("migratedPages", MmStat::kMigrated);
  set("migrationRefusals", MmStat::kMigrationRefusals);
  set("migrationFalsePositives", MmStat::kMigrationFalsePositives);
  set("migrationBusy", MmStat::kMigrationBusy);
  set("longtermMigrations", MmStat::kLongtermMigrations);
  set("unclassified", MmStat::kUnclassified);
  return o;
}

Napi::Value AddressSpaceWrap::info_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("pages", double(core_->pages()));
  o.Set("hasPinned", core_->has_pinned());
  o.Set("regions", double(core_->regions()));
  o.Set("mappedPages", double(core_->mapped_pages()));
  return o;
}

// setRaceHook(fn | null): fn(point, vpage) runs synchronously inside the walk.
Napi::Value AddressSpaceWrap::set_race_hook(const Napi::CallbackInfo& info) {
  if (info[0].IsNull() || info[0].IsUndefined()) {
    core_->set_race_hook(nullptr);
    race_hook_.Reset();
    return info.Env().Undefined();
  }
  race_hook_ = Napi::Persistent(info[0].As<Napi::Function>());
  Napi::Env env = info.Env();
  core_->set_race_hook([this, env](RacePoint point, uint64_t vpage) {
    if (hook_error_) return;  // the hook already threw during this walk: stay out of JS
    static const char* const kNames[] = {"beforeGrab", "beforeRecheck", "beforeSeqCheck"};
    try {
      race_hook_.Call({Napi::String::New(env, kNames[size_t(point)]),
                       Napi::Number::New(env, double(vpage))});
    } catch (const Napi::Error& e) {
      hook_error_ = std::make_unique<Napi::Error>(e);
    }
  });
  return env.Undefined();
}

// ---- the stress harness, asynchronously ------------------------------------------------------

namespace {

class StressWorker : public Napi::AsyncWorker {
 public:
  StressWorker(Napi::Env env, const StressConfig& cfg)
      : Napi::AsyncWorker(env), cfg_(cfg), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

  // No Node-API here: the worker thread only runs the core.
  void Execute() override { status_ = run_stress(cfg_, &report_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) {
      reject_with_status(env, deferred_, status_);
      return;
    }
    const StressReport& r = report_;
    auto o = Napi::Object::New(env);
    o.Set("pinCalls", double(r.pin_calls));
    o.Set("pinnedPages", double(r.pinned_pages));
    o.Set("partialCalls", double(r.partial_calls));
    o.Set("failedCalls", double(r.failed_calls));
    o.Set("pinsChecked", double(r.pins_checked));
    o.Set("fastPathPages", double(r.fast_pages));
    o.Set("slowPathFallbacks", double(r.slow_fallbacks));
    o.Set("recheckFailures", double(r.recheck_failures));
    o.Set("seqRetries", double(r.seq_retries));
    o.Set("munmaps", double(r.munmaps));
    o.Set("mprotects", double(r.mprotects));
    o.Set("forks", double(r.forks));
    o.Set("cowCopies", double(r.cow_copies));
    o.Set("earlyCowCopies", double(r.early_cow_copies));
    o.Set("migratedPages", double(r.migrated));
    o.Set("migrationRefusals", double(r.migration_refusals));
    o.Set("migrationBusy", double(r.migration_busy));
    o.Set("compactions", double(r.compactions));
    o.Set("pinAcquired", double(r.pin_acquired));
    o.Set("pinReleased", double(r.pin_released));
    o.Set("violations", double(r.violations));
    o.Set("firstViolation", r.first_violation.empty() ? env.Null()
                                                      : Napi::String::New(env, r.first_violation));
    o.Set("balanced", r.balanced);
    deferred_.Resolve(o);
  }

 private:
  StressConfig cfg_;
  Napi::Promise::Deferred deferred_;
  Status status_;
  StressReport report_;
};

}  // namespace

// runStress({ scheme, threads, durationMs, regionPages, regions, seed, debug })
Napi::Value run_stress_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = info[0].As<Napi::Object>();
  StressConfig cfg;
  const std::string scheme = o.Get("scheme").As<Napi::String>().Utf8Value();
  if (!parse_scheme(scheme.c_str(), &cfg.scheme))
    throw_status(env, unknown_scheme_status());
  cfg.threads = o.Get("threads").As<Napi::Number>().Int64Value();
  cfg.duration_ms = o.Get("durationMs").As<Napi::Number>().Int64Value();
  cfg.region_pages = o.Get("regionPages").As<Napi::Number>().Int64Value();
  cfg.regions = o.Get("regions").As<Napi::Number>().Int64Value();
  cfg.seed = o.Get("seed").As<Napi::Number>().Int64Value();
  cfg.debug = o.Get("debug").As<Napi::Boolean>().Value();
  check(env, validate_stress(cfg));  // bad options throw now, before any thread starts
  auto* worker = new StressWorker(env, cfg);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
