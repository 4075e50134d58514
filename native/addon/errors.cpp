#include "errors.h"

namespace pinlab::addon {

void throw_status(Napi::Env env, const Status& status) {
  const std::string message = describe(status);
  auto* data = env.GetInstanceData<InstanceData>();
  if (data != nullptr && !data->error_class.IsEmpty()) {
    Napi::Object err = data->error_class.New(
        {Napi::String::New(env, code_name(status.code)), Napi::String::New(env, message)});
    throw Napi::Error(env, err);
  }
  // Loaded without lib/ (raw addon use): a plain Error that still carries the code.
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code_name(status.code)));
  throw err;
}

void reject_with_status(Napi::Env env, Napi::Promise::Deferred& deferred, const Status& status) {
  try {
    throw_status(env, status);
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  }
}

Napi::Value set_error_class(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorClass(fn)");
  info.Env().GetInstanceData<InstanceData>()->error_class =
      Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

}  // namespace pinlab::addon
