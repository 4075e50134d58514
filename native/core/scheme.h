// The pin-counting schemes (pin-semantics.md section 2) and their compile-time dispatch.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace pinlab {

enum class Scheme : uint8_t {
  kBias,       // every pin adds BIAS to the refcount; maybe pinned = refcount >= BIAS
  kHybrid,     // bias for small folios, exact pincount (in the first tail) for large ones
  kSeparate,   // +1 on the refcount and an exact pincount in a side array, every folio
  kWriteBias,  // write pins add BIAS, read pins add 1 (read pins invisible by design)
};

template <Scheme S>
using SchemeTag = std::integral_constant<Scheme, S>;

// What one grab of `refs` subpages adds to a folio: `ref` to its refcount, `pin` to its exact
// pincount (0 when the scheme keeps none for this folio).
struct PinCost {
  int64_t ref;
  int64_t pin;
};

// Calls f(SchemeTag<S>{}) for the runtime scheme, so loops below are specialised per scheme
// and carry no scheme branches per page.
template <typename F>
decltype(auto) dispatch_scheme(Scheme s, F&& f) {
  switch (s) {
    case Scheme::kBias: return std::forward<F>(f)(SchemeTag<Scheme::kBias>{});
    case Scheme::kHybrid: return std::forward<F>(f)(SchemeTag<Scheme::kHybrid>{});
    case Scheme::kSeparate: return std::forward<F>(f)(SchemeTag<Scheme::kSeparate>{});
    case Scheme::kWriteBias: break;
  }
  return std::forward<F>(f)(SchemeTag<Scheme::kWriteBias>{});
}

// Calls f(std::bool_constant<b>{}) so a runtime flag becomes a template parameter.
template <typename F>
decltype(auto) dispatch_bool(bool b, F&& f) {
  if (b) return std::forward<F>(f)(std::true_type{});
  return std::forward<F>(f)(std::false_type{});
}

const char* scheme_name(Scheme s);
// Parses "bias" | "hybrid" | "separate" | "write-bias"; false if unknown.
bool parse_scheme(const char* name, Scheme* out);

}  // namespace pinlab
