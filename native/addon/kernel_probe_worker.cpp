#include "kernel_probe_worker.h"

#include "host/kernel_probe.h"

namespace pinlab::addon {

namespace {

Napi::Array numbers(Napi::Env env, const std::vector<double>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = v[i];
  return a;
}

class KernelProbeWorker : public Napi::AsyncWorker {
 public:
  KernelProbeWorker(Napi::Env env, const KernelProbeConfig& cfg)
      : Napi::AsyncWorker(env), cfg_(cfg), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override { result_ = probe_kernel_pins(cfg_); }  // no Node-API here

  void OnOK() override {
    Napi::Env env = Env();
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
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  KernelProbeConfig cfg_;
  Napi::Promise::Deferred deferred_;
  KernelProbeResult result_;
};

}  // namespace

Napi::Value probe_kernel_async(const Napi::CallbackInfo& info) {
  auto o = info[0].As<Napi::Object>();
  KernelProbeConfig cfg;
  cfg.buffer_bytes = uint64_t(o.Get("bufferBytes").As<Napi::Number>().Int64Value());
  cfg.huge = o.Get("huge").As<Napi::Boolean>().Value();
  cfg.trials = o.Get("trials").As<Napi::Number>().Uint32Value();
  auto* worker = new KernelProbeWorker(info.Env(), cfg);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon
