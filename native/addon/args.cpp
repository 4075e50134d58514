#include "args.h"

#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>

#include "base/memory.h"
#include "errors.h"

namespace pinlab::addon {

namespace {

const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "an Int8Array";
    case napi_uint8_array: return "a Uint8Array";
    case napi_uint8_clamped_array: return "a Uint8ClampedArray";
    case napi_int16_array: return "an Int16Array";
    case napi_uint16_array: return "a Uint16Array";
    case napi_int32_array: return "an Int32Array";
    case napi_uint32_array: return "a Uint32Array";
    case napi_float32_array: return "a Float32Array";
    case napi_float64_array: return "a Float64Array";
    case napi_bigint64_array: return "a BigInt64Array";
    case napi_biguint64_array: return "a BigUint64Array";
    default: break;
  }
  return "a typed array";
}

std::string number_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == std::trunc(d) && std::fabs(d) < 1e18) return std::to_string(int64_t(d));
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

napi_valuetype type_of(Napi::Env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  if (v == nullptr || napi_typeof(env, v, &t) != napi_ok) return napi_undefined;
  return t;
}

// A typed array's type, data and length, and whether its buffer is detached; false if v is
// not a typed array (napi_get_typedarray_info refuses anything else, Proxies included). The
// hot path is one Node-API call: a detached buffer has length 0, so only then is it asked.
bool uint32_array_info(Napi::Env env, napi_value v, napi_typedarray_type* type, Uint32View* out,
                       bool* detached) {
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  if (v == nullptr ||
      napi_get_typedarray_info(env, v, type, &length, &data, &buffer, &offset) != napi_ok)
    return false;
  bool det = false;
  if (length == 0 && buffer != nullptr &&
      napi_is_detached_arraybuffer(env, buffer, &det) != napi_ok)
    det = false;
  *detached = det;
  *out = Uint32View{static_cast<uint32_t*>(data), length};
  return true;
}

}  // namespace

void throw_error(Napi::Env env, Code code, const std::string& message) {
  auto* data = env.GetInstanceData<InstanceData>();
  if (data != nullptr && !data->error_class.IsEmpty()) {
    Napi::Object err = data->error_class.New(
        {Napi::String::New(env, code_name(code)), Napi::String::New(env, message)});
    throw Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, std::string(code_name(code)) + ": " + message);
  err.Set("code", Napi::String::New(env, code_name(code)));
  throw err;
}

std::string describe_value(Napi::Env env, napi_value v) {
  switch (type_of(env, v)) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: {
      bool b = false;
      napi_get_value_bool(env, v, &b);
      return b ? "true" : "false";
    }
    case napi_number: {
      double d = 0;
      napi_get_value_double(env, v, &d);
      return number_text(d);
    }
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_object: break;
  }
  bool is = false;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type t = napi_uint8_array;
    size_t n = 0;
    if (napi_get_typedarray_info(env, v, &t, &n, nullptr, nullptr, nullptr) == napi_ok)
      return typed_array_name(t);
    return "a typed array";
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) return "a DataView";
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) return "an ArrayBuffer";
  if (napi_is_array(env, v, &is) == napi_ok && is) return "an array";
  return "an object";
}

namespace {

[[noreturn]] void bad_int(Napi::Env env, napi_value v, const char* name, int64_t lo, int64_t hi) {
  std::string rule;
  if (lo == INT64_MIN && hi == INT64_MAX) rule = "an integer";
  else if (hi == INT64_MAX) rule = "an integer >= " + std::to_string(lo);
  else rule = "an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
  throw_invalid(env, std::string(name) + " must be " + rule + " (got " + describe_value(env, v) + ")");
}

}  // namespace

int64_t int_value_slow(Napi::Env env, napi_value v, double d, bool is_number, const char* name,
                       int64_t lo, int64_t hi) {
  if (!is_number || !std::isfinite(d) || d != std::trunc(d)) bad_int(env, v, name, lo, hi);
  // Saturating: 2^63 and past are INT64_MAX, -2^63 and below INT64_MIN.
  const int64_t n = d >= 9223372036854775808.0 ? INT64_MAX
                    : d <= -9223372036854775808.0 ? INT64_MIN
                                                  : static_cast<int64_t>(d);
  if (n < lo || n > hi) bad_int(env, v, name, lo, hi);
  return n;
}

double number_value(Napi::Env env, napi_value v, const char* name) {
  double d = 0;
  if (v == nullptr || napi_get_value_double(env, v, &d) != napi_ok || !std::isfinite(d))
    throw_invalid(env, std::string(name) + " must be a finite number (got " +
                           describe_value(env, v) + ")");
  return d;
}

bool bool_value(Napi::Env env, napi_value v, const char* name) {
  bool b = false;
  if (v == nullptr || napi_get_value_bool(env, v, &b) != napi_ok)
    throw_invalid(env, std::string(name) + " must be a boolean (got " + describe_value(env, v) + ")");
  return b;
}

std::string string_value(Napi::Env env, napi_value v, const char* name) {
  if (type_of(env, v) != napi_string)
    throw_invalid(env, std::string(name) + " must be a string (got " + describe_value(env, v) + ")");
  std::string s = Napi::String(env, v).Utf8Value();
  // A NUL inside would cut a path short at open(2) ("a\0b" is not "a"): refused, never truncated.
  if (s.find('\0') != std::string::npos)
    throw_invalid(env, std::string(name) + " must not contain a NUL byte (got a string with one)");
  return s;
}

Napi::Object object_value(Napi::Env env, napi_value v, const char* name) {
  const napi_valuetype t = type_of(env, v);
  if (t != napi_object && t != napi_function)
    throw_invalid(env, std::string(name) + " must be an object (got " + describe_value(env, v) + ")");
  return Napi::Object(env, v);
}

Napi::Array array_value(Napi::Env env, napi_value v, const char* name) {
  bool is = false;
  if (v == nullptr || napi_is_array(env, v, &is) != napi_ok || !is)
    throw_invalid(env, std::string(name) + " must be an array (got " + describe_value(env, v) + ")");
  return Napi::Array(env, v);
}

bool is_function(Napi::Env env, napi_value v) { return type_of(env, v) == napi_function; }

Napi::Value option(Napi::Object o, const char* key) { return o.Get(key); }

Uint32View uint32_array_value(Napi::Env env, napi_value v, const char* name) {
  napi_typedarray_type type = napi_uint8_array;
  Uint32View view{nullptr, 0};
  bool detached = false;
  if (!uint32_array_info(env, v, &type, &view, &detached) || type != napi_uint32_array)
    throw_invalid(env, std::string(name) + " must be a Uint32Array (got " +
                           describe_value(env, v) + ")");
  if (detached)
    throw_invalid(env, std::string(name) + " is a Uint32Array whose buffer is detached");
  if (view.data == nullptr && view.length != 0)
    throw_invalid(env, std::string(name) + " is a Uint32Array without data");
  return view;
}

namespace {

// The per-thread buffer big lists are copied into (the JS thread's, in practice).
struct KeptBuffer {
  std::unique_ptr<uint32_t[]> data;
  size_t capacity = 0;
  bool in_use = false;  // a list holds it (a nested call takes the heap instead)
};
thread_local KeptBuffer t_kept;

}  // namespace

PfnList::~PfnList() {
  if (holds_kept_) t_kept.in_use = false;
}

PfnList::PfnList(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Uint32View v = uint32_array_value(info.Env(), info[i], name);
  size_ = v.length;
  if (size_ == 0) return;
  uint32_t* dst = inline_;
  if (size_ > kInline) {
    if (size_ <= kKeptEntries && !t_kept.in_use) {
      if (t_kept.capacity < size_) {
        t_kept.data.reset();
        t_kept.capacity = 0;
        t_kept.data.reset(new uint32_t[size_]);  // uninitialised: filled just below
        t_kept.capacity = size_;
      }
      t_kept.in_use = holds_kept_ = true;
      dst = t_kept.data.get();
    } else {
      heap_.reset(new uint32_t[size_]);
      dst = heap_.get();
    }
  }
  // One read of each entry. Another thread may write a shared buffer meanwhile: what is
  // copied is then some mix of old and new values, each checked by the core like any other.
  std::memcpy(dst, v.data, size_ * sizeof(uint32_t));
  data_ = dst;
}

namespace {

// Up to this many entries a typed array comes straight from Node-API (the hot paths: a
// gup of 512 pages, a bvec list); beyond, through the JS constructor.
constexpr size_t kDirectEntries = size_t{1} << 16;

template <typename Array>
Array new_typed_array(Napi::Env env, size_t n, napi_typedarray_type type,
                      Napi::FunctionReference InstanceData::*ctor) {
  if (n <= kDirectEntries) return Array::New(env, n);
  if (!fits_in_memory(n, 4))
    throw_error(env, Code::kENOMEM, "could not allocate a result of " + std::to_string(n) + " entries");
  auto* data = env.GetInstanceData<InstanceData>();
  napi_value result = nullptr;
  napi_value arg = nullptr;
  bool ok = data != nullptr && !(data->*ctor).IsEmpty() &&
            napi_create_double(env, double(n), &arg) == napi_ok &&
            napi_new_instance(env, (data->*ctor).Value(), 1, &arg, &result) == napi_ok;
  if (!ok) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);  // the RangeError: reported as ENOMEM
    }
    throw_error(env, Code::kENOMEM, "could not allocate a result of " + std::to_string(n) + " entries");
  }
  // The constructor is the one captured when the addon loaded; check what it made anyway.
  napi_typedarray_type t = napi_uint8_array;
  size_t length = 0;
  bool is = false;
  if (napi_is_typedarray(env, result, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, result, &t, &length, nullptr, nullptr, nullptr) != napi_ok ||
      t != type || length != n)
    throw_error(env, Code::kENOMEM, "could not allocate a result of " + std::to_string(n) + " entries");
  return Array(env, result);
}

}  // namespace

Napi::Uint32Array new_uint32_array(Napi::Env env, size_t n) {
  return new_typed_array<Napi::Uint32Array>(env, n, napi_uint32_array, &InstanceData::uint32_ctor);
}
Napi::Int32Array new_int32_array(Napi::Env env, size_t n) {
  return new_typed_array<Napi::Int32Array>(env, n, napi_int32_array, &InstanceData::int32_ctor);
}

void rethrow_as_pinlab_error(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw_error(env, Code::kENOMEM, "out of memory");
  } catch (const std::length_error&) {
    throw_error(env, Code::kENOMEM, "out of memory (a size past what can be allocated)");
  } catch (const std::exception& e) {
    throw_error(env, Code::kEINVAL, std::string("unexpected native failure: ") + e.what());
  } catch (...) {
    throw_error(env, Code::kEINVAL, "unexpected native failure");
  }
}

void adjust_external_memory(napi_env env, int64_t delta) {
  if (delta == 0) return;
  int64_t total = 0;
  (void)napi_adjust_external_memory(env, delta, &total);  // a hint: its failure changes nothing
}

void throw_disposed(Napi::Env env, const char* what) {
  throw_invalid(env, std::string(what) + " was disposed: no call can use it");
}

}  // namespace pinlab::addon
