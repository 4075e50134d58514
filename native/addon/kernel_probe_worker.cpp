#include "kernel_probe_worker.h"

#include "args.h"
#include "async_run.h"
#include "host/kernel_probe.h"

namespace pinlab::addon {

namespace {

Napi::Array numbers(Napi::Env env, const std::vector<double>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = v[i];
  return a;
}

class KernelProbeWorker : public AsyncRun {
 public:
  KernelProbeWorker(Napi::Env env, const KernelProbeConfig& cfg)
      : AsyncRun(env, "pinlab.probeKernel", Napi::Function()), cfg_(cfg) {}

 private:
  Status run(const RunControl& control, const Report&) override {
    KernelProbeConfig cfg = cfg_;
    cfg.control = &control;
    result_ = probe_kernel_pins(cfg);
    return Status::Ok();
  }

  Napi::Value result(Napi::Env env) override {
    const KernelProbeResult& r = result_;
    auto o = Napi::Object::New(env);
    o.Set("available", r.available);
    o.Set("reason", r.reason.empty() ? env.Null() : Napi::String::New(env, r.reason));
    o.Set("pages", double(r.pages));
    o.Set("pinNsPerPage", numbers(env, r.pin_ns_per_page));
    o.Set("unpinNsPerPage", numbers(env, r.unpin_ns_per_page));
    o.Set("nrFollPinAcquiredDelta", double(r.nr_foll_pin_acquired_delta));
    o.Set("nrFollPinReleasedDelta", double(r.nr_foll_pin_released_delta));
    o.Set("thpConfirmed", r.thp_confirmed);
    o.Set("anonHugeKb", double(r.anon_huge_kb));
    return o;
  }

  KernelProbeConfig cfg_;
  KernelProbeResult result_;
};

}  // namespace

// probeKernel({ bufferBytes, huge, trials }): integers read checked; the probe itself
// validates their ranges (and reports a refusal as unavailable, with the reason).
Napi::Value probe_kernel_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = object_value(env, info[0], "probe options");
  KernelProbeConfig cfg;
  cfg.buffer_bytes = uint64_t(int_value(env, option(o, "bufferBytes"), "bufferBytes", 1, kMaxSafeInteger));
  cfg.huge = bool_value(env, option(o, "huge"), "huge");
  cfg.trials = uint32_t(int_value(env, option(o, "trials"), "trials", 1, UINT32_MAX));
  auto* worker = new KernelProbeWorker(env, cfg);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
