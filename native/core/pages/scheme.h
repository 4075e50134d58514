// The pin-counting schemes (pin-semantics.md section 2), as registered in schemes/registry.h,
// and their compile-time dispatch. Nothing here names a particular scheme.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/status.h"
#include "pages/schemes/registry.h"
#include "pages/schemes/scheme_api.h"

namespace pinlab {

enum class Scheme : uint8_t {
#define PINLAB_SCHEME_ENUM(id, Policy) id,
  PINLAB_SCHEME_REGISTRY(PINLAB_SCHEME_ENUM)
#undef PINLAB_SCHEME_ENUM
};

// Every registered scheme, in registry order.
inline constexpr Scheme kSchemes[] = {
#define PINLAB_SCHEME_VALUE(id, Policy) Scheme::id,
    PINLAB_SCHEME_REGISTRY(PINLAB_SCHEME_VALUE)
#undef PINLAB_SCHEME_VALUE
};
inline constexpr size_t kSchemeCount = sizeof(kSchemes) / sizeof(kSchemes[0]);

// The policy type of a scheme: SchemePolicy<Scheme::kBias> is BiasScheme.
template <Scheme S>
struct SchemePolicyOf;
#define PINLAB_SCHEME_POLICY(id, Policy)  \
  template <>                             \
  struct SchemePolicyOf<Scheme::id> {     \
    static_assert(PinScheme<Policy>);     \
    using type = Policy;                  \
  };
PINLAB_SCHEME_REGISTRY(PINLAB_SCHEME_POLICY)
#undef PINLAB_SCHEME_POLICY
template <Scheme S>
using SchemePolicy = typename SchemePolicyOf<S>::type;

template <Scheme S>
using SchemeTag = std::integral_constant<Scheme, S>;

// Calls f(SchemeTag<S>{}) for the runtime scheme, so loops below are specialised per scheme
// and carry no scheme branches per page. An unregistered value (never produced by
// parse_scheme) dispatches to the first scheme.
template <typename F>
decltype(auto) dispatch_scheme(Scheme s, F&& f) {
  switch (s) {
#define PINLAB_SCHEME_CASE(id, Policy) \
  case Scheme::id: return std::forward<F>(f)(SchemeTag<Scheme::id>{});
    PINLAB_SCHEME_REGISTRY(PINLAB_SCHEME_CASE)
#undef PINLAB_SCHEME_CASE
  }
  return std::forward<F>(f)(SchemeTag<kSchemes[0]>{});
}

// Calls f(std::bool_constant<b>{}) so a runtime flag becomes a template parameter.
template <typename F>
decltype(auto) dispatch_bool(bool b, F&& f) {
  if (b) return std::forward<F>(f)(std::true_type{});
  return std::forward<F>(f)(std::false_type{});
}

// What the tools show of a scheme, derived from its policy.
struct SchemeInfo {
  Scheme scheme;
  std::string_view name;
  std::string_view summary;
  PincountHome pincount;
  uint32_t pin_words;             // int32 pincount words per page: 0, 1 (side array) or kOwn's
  bool read_pins_visible;
  uint32_t bytes_per_page;        // refcount + meta, plus the pincount words
  uint32_t debug_bytes_per_page;  // what debug mode adds: per-page pins (+ write pins apart)
  int32_t shard_min_order;        // the smallest order it counts pins in shards (-1: none)
  int32_t shared_ref_min_order;   // the smallest order whose pins share one reference (-1: none)
  bool lazy_pins;                 // a shared folio's pins may go lazy (scheme_api.h, has_lazy_pins_of)
};

const SchemeInfo& scheme_info(Scheme s);
// The scheme's arithmetic at run time, for the tools that report it (the profiler's exact
// orders and pin budget): whether a folio of `order` has an exact pincount, and the cost of
// one grab of `refs` subpages.
bool scheme_keeps_pincount(Scheme s, const SchemeParams& p, uint32_t order);
PinCost scheme_pin_cost(Scheme s, const SchemeParams& p, uint32_t order, int64_t refs, bool write);
// Whether a folio's pins share one reference (scheme_api.h, SharedRefPinStore), and then the
// most pins it holds (INT32_MAX otherwise: the refcount's budget bounds them).
bool scheme_pins_share_ref(Scheme s, const SchemeParams& p, uint32_t order);
int64_t scheme_pin_limit(Scheme s, const SchemeParams& p, uint32_t order);
const char* scheme_name(Scheme s);
// Parses a registered name ("bias", "hybrid", ...); false if unknown.
bool parse_scheme(std::string_view name, Scheme* out);
// "'bias', 'hybrid', 'separate' or 'write-bias'": the rule of the scheme option's message.
const char* scheme_names_rule();
// EINVAL naming the scheme option and the registered names.
Status unknown_scheme_status();

}  // namespace pinlab
