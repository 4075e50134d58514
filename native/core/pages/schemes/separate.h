// separate: +1 on the refcount and an exact pincount for every folio, in a side array (the
// 2019 alternative to the bias: 4 more bytes per page, no false positives).
#pragma once

#include "pages/schemes/scheme_api.h"

namespace pinlab {

struct SeparateScheme {
  static constexpr std::string_view kName = "separate";
  static constexpr std::string_view kSummary =
      "+1 on the refcount and an exact pincount per folio in a side array";
  static constexpr PincountHome kPincount = PincountHome::kSideArray;
  static constexpr bool kReadPinsVisible = true;

  static constexpr PinCost pin_cost(const SchemeParams&, uint32_t, int64_t refs, bool) {
    return {refs, refs};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return true; }
};

static_assert(PinScheme<SeparateScheme>);

}  // namespace pinlab
