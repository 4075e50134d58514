#include "errors.h"

#include "args.h"

namespace pinlab::addon {

// Random 128-bit values, fixed for the addon's life.
const napi_type_tag kPageArrayTag = {0x70696e6c61622d70ull, 0x6167652d61727261ull};
const napi_type_tag kForkedSpaceTag = {0x70696e6c61622d66ull, 0x6f726b65642d6173ull};
const napi_type_tag kAddressSpaceTag = {0x70696e6c61622d61ull, 0x6464722d73706163ull};

void throw_status(Napi::Env env, const Status& status) {
  throw_error(env, status.code, describe(status));
}

Napi::Value status_error(Napi::Env env, const Status& status) {
  try {
    throw_status(env, status);
  } catch (const Napi::Error& e) {
    return e.Value();
  }
}

Napi::Value set_error_class(const Napi::CallbackInfo& info) {
  if (!is_function(info.Env(), info[0])) throw Napi::TypeError::New(info.Env(), "setErrorClass(fn)");
  info.Env().GetInstanceData<InstanceData>()->error_class =
      Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

}  // namespace pinlab::addon
