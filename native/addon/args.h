// Reading JS arguments in the addon, checked here: the addon does not rely on lib/'s type
// checks (anything can call the native methods directly). A value of the wrong type, a number
// that is not an integer in its range, or a typed array of the wrong kind (its real type, not
// its prototype) throws a PinlabError EINVAL naming the argument, before anything changes.
//
// PFN lists are copied, each entry read exactly once, into memory the addon owns before the
// core sees them: a Uint32Array over a SharedArrayBuffer that another thread writes during the
// call cannot hand the core an entry it did not validate (the core reads a list more than once:
// validate, walk, roll back).
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"

namespace pinlab::addon {

inline constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;

// Throws a PinlabError with `code` and `message`.
[[noreturn]] void throw_error(Napi::Env env, Code code, const std::string& message);
[[noreturn]] inline void throw_invalid(Napi::Env env, const std::string& message) {
  throw_error(env, Code::kEINVAL, message);
}

// "a Uint8Array", "a number", "an object", ... for messages.
std::string describe_value(Napi::Env env, napi_value v);

// The slow path of int_value: an integer past the int64 range (saturated), or EINVAL.
int64_t int_value_slow(Napi::Env env, napi_value v, double d, bool is_number, const char* name,
                       int64_t lo, int64_t hi);

// An integer-valued finite number in [lo, hi]. Integers past the int64 range saturate (so a
// huge PFN is still ERANGE from the core when the range is left open). Inline: on the hot
// path it is one Node-API call and a few instructions.
inline int64_t int_value(Napi::Env env, napi_value v, const char* name, int64_t lo = INT64_MIN,
                         int64_t hi = INT64_MAX) {
  double d = 0;
  const bool is_number = napi_get_value_double(env, v, &d) == napi_ok;
  // The open interval excludes NaN and the infinities; inside it the cast is defined.
  if (is_number && d > -9223372036854775808.0 && d < 9223372036854775808.0) {
    const auto n = static_cast<int64_t>(d);
    if (static_cast<double>(n) == d && n >= lo && n <= hi) return n;
  }
  return int_value_slow(env, v, d, is_number, name, lo, hi);
}
inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name,
                       int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) {
  return int_value(info.Env(), info[i], name, lo, hi);
}
// A finite number.
double number_value(Napi::Env env, napi_value v, const char* name);
bool bool_value(Napi::Env env, napi_value v, const char* name);
inline bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return bool_value(info.Env(), info[i], name);
}
std::string string_value(Napi::Env env, napi_value v, const char* name);
Napi::Object object_value(Napi::Env env, napi_value v, const char* name);
Napi::Array array_value(Napi::Env env, napi_value v, const char* name);
bool is_function(Napi::Env env, napi_value v);

// o[key], read once (a getter or a Proxy trap runs once).
Napi::Value option(Napi::Object o, const char* key);

// The data and length of a Uint32Array argument: its real type (napi_get_typedarray_info,
// not its prototype) must be Uint32Array and its buffer not detached, else EINVAL.
struct Uint32View {
  uint32_t* data;
  size_t length;
};
Uint32View uint32_array_value(Napi::Env env, napi_value v, const char* name);

// A PFN list argument, copied into memory the addon owns: inline for up to kInline entries
// (no allocation on the hot path); beyond, a per-thread buffer kept between calls (up to
// kKeptEntries, so a big list costs a copy, not an allocation and its page faults each
// time), or the heap while that buffer is in use or for a bigger list (std::bad_alloc: ENOMEM).
class PfnList {
 public:
  static constexpr size_t kInline = 1024;
  static constexpr size_t kKeptEntries = size_t{1} << 22;  // 16 MiB
  PfnList(const Napi::CallbackInfo& info, size_t i, const char* name);
  ~PfnList();
  PfnList(const PfnList&) = delete;
  PfnList& operator=(const PfnList&) = delete;
  const uint32_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint32_t inline_[kInline];
  std::unique_ptr<uint32_t[]> heap_;
  const uint32_t* data_ = inline_;
  size_t size_ = 0;
  bool holds_kept_ = false;  // this list uses the thread's kept buffer
};

// New typed arrays that cannot abort the process: napi_create_arraybuffer (V8's
// ArrayBuffer::New) treats an allocation failure as a fatal out-of-memory, so anything past a
// small size is made through the Uint32Array / Int32Array constructor instead, whose failure
// is a RangeError, turned into ENOMEM. Zero-filled.
Napi::Uint32Array new_uint32_array(Napi::Env env, size_t n);
Napi::Int32Array new_int32_array(Napi::Env env, size_t n);

// Runs an entry point's body: an allocation failure (std::bad_alloc, std::length_error)
// becomes a PinlabError ENOMEM, never an abort; any other C++ exception a PinlabError EINVAL;
// Napi errors (PinlabErrors among them) pass through.
[[noreturn]] void rethrow_as_pinlab_error(Napi::Env env);
template <typename F>
Napi::Value guard(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrow_as_pinlab_error(env);
  }
}

}  // namespace pinlab::addon

namespace pinlab::addon {
// Tells V8 about `delta` bytes of native memory held (positive) or given back (negative), so
// that its GC runs when dropped objects hold a lot of it (napi_adjust_external_memory).
void adjust_external_memory(napi_env env, int64_t delta);
// EINVAL: "`what` was disposed".
[[noreturn]] void throw_disposed(Napi::Env env, const char* what);
}  // namespace pinlab::addon

// Declares, for a class with dispose(), a member template `guarded<&Class::method>` that runs
// the method under guard(), refuses it with EINVAL once the object was disposed, and counts the
// calls in progress (depth_): a dispose() from inside one (a race hook, a getter, re-entrant)
// releases the native state only when the outermost call returns, never under a running call.
// After every call the class's after_call() runs (memory accounting). The class defines
// `bool disposed_`, `int depth_`, `void release()` and `void after_call()`.
#define PINLAB_DISPOSABLE_METHODS(Class, what)                                       \
  template <Napi::Value (Class::*M)(const Napi::CallbackInfo&)>                      \
  Napi::Value guarded(const Napi::CallbackInfo& info) {                              \
    return ::pinlab::addon::guard(info.Env(), [&] {                                  \
      if (this->disposed_) ::pinlab::addon::throw_disposed(info.Env(), what);        \
      struct InCall {                                                                \
        Class* w;                                                                    \
        ~InCall() {                                                                  \
          w->after_call();                                                           \
          if (--w->depth_ == 0 && w->disposed_) w->release();                        \
        }                                                                            \
      };                                                                             \
      ++this->depth_;                                                                \
      InCall in_call{this};                                                          \
      return (this->*M)(info);                                                       \
    });                                                                              \
  }

// Declares a member template `guarded<&Class::method>` that runs the method under guard():
// register methods as InstanceMethod<&Class::guarded<&Class::method>>("name").
#define PINLAB_GUARDED_METHODS(Class)                                             \
  template <Napi::Value (Class::*M)(const Napi::CallbackInfo&)>                   \
  Napi::Value guarded(const Napi::CallbackInfo& info) {                           \
    return ::pinlab::addon::guard(info.Env(), [&] { return (this->*M)(info); }); \
  }
