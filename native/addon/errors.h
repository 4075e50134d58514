// Turns a core Status into a thrown PinlabError (the class lives in lib/errors.ts and is
// handed to the addon once, at load, through setErrorClass).
#pragma once

#include <napi.h>

#include "base/status.h"

namespace pinlab::addon {

struct InstanceData {
  Napi::FunctionReference error_class;  // lib's PinlabError
  Napi::FunctionReference page_array_ctor;
  Napi::FunctionReference address_space_ctor;
};

// Throws (as a C++ exception that node-addon-api rethrows into JS) a PinlabError whose
// `code` is the status code and whose message names the offending value.
[[noreturn]] void throw_status(Napi::Env env, const Status& status);

// Throws unless `status` is ok.
inline void check(Napi::Env env, const Status& status) {
  if (!status.ok()) throw_status(env, status);
}

// Rejects an async call's promise with the PinlabError that throw_status would throw.
void reject_with_status(Napi::Env env, Napi::Promise::Deferred& deferred, const Status& status);

Napi::Value set_error_class(const Napi::CallbackInfo& info);

}  // namespace pinlab::addon
