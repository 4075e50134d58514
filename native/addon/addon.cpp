// Module entry: exports the native classes and the error-class hook. Node-API lives only in
// native/addon; native/core knows nothing of it.
#include <napi.h>

#include <bit>

#include "address_space_wrap.h"
#include "bench_worker.h"
#include "kernel_probe_worker.h"
#include "ops_wrap.h"
#include "profile_worker.h"
#include "errors.h"
#include "page_array_wrap.h"
#include "args.h"
#include "base/threads.h"
#include "pages/page_array.h"
#include "pages/scheme.h"

#include <cstdlib>

namespace pinlab::addon {

namespace {

const char* pincount_home_name(PincountHome h) {
  switch (h) {
    case PincountHome::kNone: return "none";
    case PincountHome::kFirstTail: return "large-folios";
    case PincountHome::kSideArray: return "every-folio";
    case PincountHome::kOwn: return "own";
  }
  return "unknown";
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
    o.Set("pinWords", s.pin_words);
    o.Set("readPinsVisible", s.read_pins_visible);
    o.Set("bytesPerPage", s.bytes_per_page);
    o.Set("debugBytesPerPage", s.debug_bytes_per_page);
    if (s.shard_min_order >= 0) o.Set("shardMinOrder", s.shard_min_order);
    else o.Set("shardMinOrder", env.Null());
    if (s.shared_ref_min_order >= 0) o.Set("sharedRefMinOrder", s.shared_ref_min_order);
    else o.Set("sharedRefMinOrder", env.Null());
    o.Set("lazyPins", s.lazy_pins);
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

// schemeArithmetic(name, pinBias, pincountMinOrder): what the scheme's policy does to one
// subpage pin of a folio of each order 0..kMaxOrder: { exact: bool[], read: number[], write:
// number[], sharedRef: bool[], pinLimit: number[] } (whether the folio keeps an exact pincount;
// the refcount cost of a read and of a write pin; whether its pins share one reference, taken
// by the first and given back by the last, and then the most pins it holds). For tools and test
// oracles that must not know schemes by name.
Napi::Value scheme_arithmetic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Scheme scheme;
  if (info.Length() < 3 || !info[0].IsString() || !parse_scheme(info[0].As<Napi::String>().Utf8Value(), &scheme))
    throw_status(env, unknown_scheme_status());
  const int64_t bias = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  const int64_t min_order = info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : -1;
  if (bias < kMinBias || bias > kMaxBias || (bias & (bias - 1)) != 0)
    throw_status(env, Status::BadOption("pinBias", bias, "a power of two in 2..1048576"));
  if (min_order < 1 || min_order > kMaxOrder)
    throw_status(env, Status::BadOption("pincountMinOrder", min_order, "an integer in 1..30"));
  const SchemeParams p{uint32_t(std::countr_zero(uint64_t(bias))), uint32_t(min_order)};
  Napi::Array exact = Napi::Array::New(env, kMaxOrder + 1);
  Napi::Array read = Napi::Array::New(env, kMaxOrder + 1);
  Napi::Array write = Napi::Array::New(env, kMaxOrder + 1);
  Napi::Array shared = Napi::Array::New(env, kMaxOrder + 1);
  Napi::Array limit = Napi::Array::New(env, kMaxOrder + 1);
  for (uint32_t k = 0; k <= kMaxOrder; ++k) {
    shared.Set(k, scheme_pins_share_ref(scheme, p, k));
    limit.Set(k, double(scheme_pin_limit(scheme, p, k)));
    exact.Set(k, scheme_keeps_pincount(scheme, p, k));
    read.Set(k, double(scheme_pin_cost(scheme, p, k, 1, false).ref));
    write.Set(k, double(scheme_pin_cost(scheme, p, k, 1, true).ref));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("exact", exact);
  out.Set("read", read);
  out.Set("write", write);
  out.Set("sharedRef", shared);
  out.Set("pinLimit", limit);
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
  export_fn<scheme_arithmetic>(env, exports, "schemeArithmetic");
  export_fn<set_error_class>(env, exports, "setErrorClass");
  define_ops(env, exports);
  return exports;
}

}  // namespace pinlab::addon

static Napi::Object InitPinlab(Napi::Env env, Napi::Object exports) {
  return pinlab::addon::init(env, exports);
}

NODE_API_MODULE(pinlab, InitPinlab)
