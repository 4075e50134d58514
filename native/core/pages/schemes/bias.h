// bias: every pin adds GUP_PIN_COUNTING_BIAS to the refcount, so "refcount >= bias" means
// "maybe pinned" (2019's pin_user_pages). No pincount; false positives from >= bias plain
// references; a small page overflows after INT32_MAX >> log2(bias) pins (2^21 at 1024).
#pragma once

#include "pages/schemes/scheme_api.h"

namespace pinlab {

struct BiasScheme {
  static constexpr std::string_view kName = "bias";
  static constexpr std::string_view kSummary =
      "every pin adds the bias to the refcount; maybe pinned = refcount >= bias";
  static constexpr PincountHome kPincount = PincountHome::kNone;
  static constexpr bool kReadPinsVisible = true;

  static constexpr PinCost pin_cost(const SchemeParams& p, uint32_t, int64_t refs, bool) {
    return {refs << p.bias_shift, 0};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return false; }
};

static_assert(PinScheme<BiasScheme>);

}  // namespace pinlab
