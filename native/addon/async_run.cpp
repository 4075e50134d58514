#include "async_run.h"

#include "args.h"

namespace pinlab::addon {

Napi::Function progress_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return Napi::Function();
  if (!is_function(info.Env(), info[i]))
    throw_invalid(info.Env(), "onProgress must be a function (got " +
                                  describe_value(info.Env(), info[i]) + ")");
  return info[i].As<Napi::Function>();
}

}  // namespace pinlab::addon
