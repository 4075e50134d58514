// hybrid (mainline since 5.7/5.8): the bias for small folios, and for large ones (order >=
// pincount_min_order) +1 per pin on the refcount plus an exact pincount in the first tail,
// since the bias would overflow a 1 GiB folio after ~8 full pins.
#pragma once

#include "pages/schemes/scheme_api.h"

namespace pinlab {

struct HybridScheme {
  static constexpr std::string_view kName = "hybrid";
  static constexpr std::string_view kSummary =
      "bias for small folios, +1 and an exact pincount (first tail) for large ones (mainline)";
  static constexpr PincountHome kPincount = PincountHome::kFirstTail;
  static constexpr bool kReadPinsVisible = true;

  static constexpr bool keeps_pincount(const SchemeParams& p, uint32_t order) {
    return order >= p.pincount_min_order;
  }
  static constexpr PinCost pin_cost(const SchemeParams& p, uint32_t order, int64_t refs, bool) {
    if (keeps_pincount(p, order)) return {refs, refs};
    return {refs << p.bias_shift, 0};
  }
};

static_assert(PinScheme<HybridScheme>);

}  // namespace pinlab
