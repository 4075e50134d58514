// Module entry: exports the native classes and the error-class hook. Node-API lives only in
// native/addon; native/core knows nothing of it.
#include <napi.h>

#include "address_space_wrap.h"
#include "bench_worker.h"
#include "kernel_probe_worker.h"
#include "profile_worker.h"
#include "errors.h"
#include "page_array_wrap.h"
#include "args.h"
#include "base/threads.h"
#include "pages/scheme.h"

#include <cstdlib>

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

// A module function under guard(): std::bad_alloc is ENOMEM, never an abort.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded_fn(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] { return F(info); });
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
void export_fn(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, guarded_fn<F>, name));
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
  // The typed-array constructors as they are now (large results are made through them).
  Napi::Object global = env.Global();
  if (Napi::Value c = global.Get("Uint32Array"); c.IsFunction())
    data->uint32_ctor = Napi::Persistent(c.As<Napi::Function>());
  if (Napi::Value c = global.Get("Int32Array"); c.IsFunction())
    data->int32_ctor = Napi::Persistent(c.As<Napi::Function>());
  // Test hook: PINLAB_TEST_THREAD_LIMIT=k makes every native thread start after the first k
  // fail as if the system refused it (see set_thread_start_limit_for_testing).
  if (const char* limit = std::getenv("PINLAB_TEST_THREAD_LIMIT"); limit != nullptr && *limit)
    set_thread_start_limit_for_testing(std::strtoll(limit, nullptr, 10));
  export_fn<run_stress_async>(env, exports, "runStress");
  export_fn<run_bench_async>(env, exports, "runBench");
  export_fn<probe_kernel_async>(env, exports, "probeKernel");
  export_fn<run_profile_async>(env, exports, "runProfile");
  export_fn<distribution_tail_sync>(env, exports, "distributionTail");
  export_fn<take_snapshot_async>(env, exports, "takeSnapshot");
  export_fn<schemes>(env, exports, "schemes");
  export_fn<set_error_class>(env, exports, "setErrorClass");
  return exports;
}

}  // namespace pinlab::addon

static Napi::Object InitPinlab(Napi::Env env, Napi::Object exports) {
  return pinlab::addon::init(env, exports);
}

NODE_API_MODULE(pinlab, InitPinlab)
