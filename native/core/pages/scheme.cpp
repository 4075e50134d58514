#include "pages/scheme.h"

#include <climits>
#include <string>

#include "base/status.h"

namespace pinlab {
namespace {

// The smallest order whose pins share one reference (scheme_api.h, SharedRefPinStore), with the
// default parameters; -1 if none does.
template <typename P>
constexpr int32_t shared_ref_min_order_of() {
  if constexpr (pins_may_share_ref_of<P>()) {
    for (uint32_t k = 0; k <= 30; ++k)
      if (P::pins_share_ref(SchemeParams{10, 1}, k)) return int32_t(k);
  }
  return -1;
}

template <typename P>
constexpr SchemeInfo info_of(Scheme s) {
  return SchemeInfo{s,
                    P::kName,
                    P::kSummary,
                    P::kPincount,
                    pin_words_of<P>(),
                    P::kReadPinsVisible,
                    5u + 4u * pin_words_of<P>(),
                    P::kReadPinsVisible ? 4u : 8u,
                    shard_min_order_of<P>(),
                    shared_ref_min_order_of<P>(),
                    has_lazy_pins_of<P>()};
}

constexpr SchemeInfo kInfo[] = {
#define PINLAB_SCHEME_INFO(id, Policy) info_of<Policy>(Scheme::id),
    PINLAB_SCHEME_REGISTRY(PINLAB_SCHEME_INFO)
#undef PINLAB_SCHEME_INFO
};
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == kSchemeCount);

constexpr bool names_unique() {
  for (size_t i = 0; i < kSchemeCount; ++i)
    for (size_t j = i + 1; j < kSchemeCount; ++j)
      if (kInfo[i].name == kInfo[j].name) return false;
  return true;
}
static_assert(names_unique(), "two registered schemes share a name");

}  // namespace

const SchemeInfo& scheme_info(Scheme s) {
  for (const SchemeInfo& i : kInfo)
    if (i.scheme == s) return i;
  return kInfo[0];
}

bool scheme_keeps_pincount(Scheme s, const SchemeParams& p, uint32_t order) {
  return dispatch_scheme(s, [&](auto tag) {
    using P = SchemePolicy<decltype(tag)::value>;
    return P::kPincount != PincountHome::kNone && P::keeps_pincount(p, order);
  });
}

PinCost scheme_pin_cost(Scheme s, const SchemeParams& p, uint32_t order, int64_t refs, bool write) {
  return dispatch_scheme(s, [&](auto tag) {
    return SchemePolicy<decltype(tag)::value>::pin_cost(p, order, refs, write);
  });
}

const char* scheme_name(Scheme s) { return scheme_info(s).name.data(); }

bool parse_scheme(std::string_view name, Scheme* out) {
  for (const SchemeInfo& i : kInfo) {
    if (i.name == name) {
      *out = i.scheme;
      return true;
    }
  }
  return false;
}

const char* scheme_names_rule() {
  static const std::string rule = [] {
    std::string r;
    for (size_t i = 0; i < kSchemeCount; ++i) {
      if (i > 0) r.append(i + 1 == kSchemeCount ? " or " : ", ");
      r.append(1, '\'').append(kInfo[i].name).append(1, '\'');
    }
    return r;
  }();
  return rule.c_str();
}

Status unknown_scheme_status() {
  Status st = Status::Fail(Code::kEINVAL, Reason::kOptionScheme);
  st.subject = "scheme";
  st.rule = scheme_names_rule();
  return st;
}

}  // namespace pinlab

namespace pinlab {

bool scheme_pins_share_ref(Scheme s, const SchemeParams& p, uint32_t order) {
  return dispatch_scheme(s, [&](auto tag) {
    using P = SchemePolicy<decltype(tag)::value>;
    if constexpr (pins_may_share_ref_of<P>()) return P::pins_share_ref(p, order);
    else return false;
  });
}

int64_t scheme_pin_limit(Scheme s, const SchemeParams& p, uint32_t order) {
  return dispatch_scheme(s, [&](auto tag) -> int64_t {
    using P = SchemePolicy<decltype(tag)::value>;
    if constexpr (pins_may_share_ref_of<P>()) {
      if (P::pins_share_ref(p, order)) return P::pin_limit(p, order);
    }
    return INT32_MAX;
  });
}

}  // namespace pinlab
