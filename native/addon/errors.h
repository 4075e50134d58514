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
  // The global Uint32Array and Int32Array constructors as they were when the addon loaded
  // (large results are made through them: see new_uint32_array in args.h).
  Napi::FunctionReference uint32_ctor;
  Napi::FunctionReference int32_ctor;
};

// Type tags (napi_type_tag_object) of the objects the addon hands out, so that an object
// passed back is checked to be what it claims before it is unwrapped.
extern const napi_type_tag kPageArrayTag;
extern const napi_type_tag kForkedSpaceTag;
extern const napi_type_tag kAddressSpaceTag;

// Throws (as a C++ exception that node-addon-api rethrows into JS) a PinlabError whose
// `code` is the status code and whose message names the offending value.
[[noreturn]] void throw_status(Napi::Env env, const Status& status);

// Throws unless `status` is ok.
inline void check(Napi::Env env, const Status& status) {
  if (!status.ok()) throw_status(env, status);
}

// The PinlabError that throw_status would throw, as a value (for rejecting a promise).
Napi::Value status_error(Napi::Env env, const Status& status);

Napi::Value set_error_class(const Napi::CallbackInfo& info);

}  // namespace pinlab::addon
