// Module entry: exports the native classes and the error-class hook. Node-API lives only in
// native/addon; native/core knows nothing of it.
#include <napi.h>

#include "address_space_wrap.h"
#include "bench_worker.h"
#include "kernel_probe_worker.h"
#include "ops_wrap.h"
#include "profile_worker.h"
#include "errors.h"
#include "page_array_wrap.h"
#include "pages/scheme.h"

namespace pinlab::addon {

namespace {

const char* pincount_home_name(PincountHome h) {
  switch (h) {
    case PincountHome::kNone: return "none";
    case PincountHome::kFirstTail: return "large-folios";
    case PincountHome::kSideArray: return "every-folio";
  }
  return "none";
}

// schemes(): the registered schemes (pages/schemes/registry.h), in registry order.
Napi::Value schemes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, kSchemeCount);
  for (size_t i = 0; i < kSchemeCount; ++i) {
    const SchemeInfo& s = scheme_info(kSchemes[i]);
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", std::string(s.name));
    o.Set("summary", std::string(s.summary));
    o.Set("pincount", pincount_home_name(s.pincount));
    o.Set("readPinsVisible", s.read_pins_visible);
    o.Set("bytesPerPage", s.bytes_per_page);
    o.Set("debugBytesPerPage", s.debug_bytes_per_page);
    out.Set(uint32_t(i), o);
  }
  return out;
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new InstanceData();
  env.SetInstanceData(data);  // freed by Node when the environment is torn down
  Napi::Function page_array = PageArrayWrap::define(env);
  data->page_array_ctor = Napi::Persistent(page_array);
  exports.Set("NativePageArray", page_array);
  Napi::Function address_space = AddressSpaceWrap::define(env);
  data->address_space_ctor = Napi::Persistent(address_space);
  exports.Set("NativeAddressSpace", address_space);
  exports.Set("runStress", Napi::Function::New(env, run_stress_async, "runStress"));
  exports.Set("runBench", Napi::Function::New(env, run_bench_async, "runBench"));
  exports.Set("probeKernel", Napi::Function::New(env, probe_kernel_async, "probeKernel"));
  exports.Set("runProfile", Napi::Function::New(env, run_profile_async, "runProfile"));
  exports.Set("distributionTail", Napi::Function::New(env, distribution_tail_sync, "distributionTail"));
  exports.Set("takeSnapshot", Napi::Function::New(env, take_snapshot_async, "takeSnapshot"));
  exports.Set("schemes", Napi::Function::New(env, schemes, "schemes"));
  exports.Set("setErrorClass", Napi::Function::New(env, set_error_class, "setErrorClass"));
  define_ops(env, exports);
  return exports;
}

}  // namespace pinlab::addon

static Napi::Object InitPinlab(Napi::Env env, Napi::Object exports) {
  return pinlab::addon::init(env, exports);
}

NODE_API_MODULE(pinlab, InitPinlab)
