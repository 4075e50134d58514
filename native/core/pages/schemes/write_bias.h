// write-bias (seed 003): only write pins threaten a page's contents, so only they add the bias;
// read pins are plain references and maybe_dma_pinned does not see them, by design.
#pragma once

#include "pages/schemes/scheme_api.h"

namespace pinlab {

struct WriteBiasScheme {
  static constexpr std::string_view kName = "write-bias";
  static constexpr std::string_view kSummary =
      "write pins add the bias, read pins add 1 (read pins invisible by design)";
  static constexpr PincountHome kPincount = PincountHome::kNone;
  static constexpr bool kReadPinsVisible = false;

  static constexpr PinCost pin_cost(const SchemeParams& p, uint32_t, int64_t refs, bool write) {
    return {write ? refs << p.bias_shift : refs, 0};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return false; }
};

static_assert(PinScheme<WriteBiasScheme>);

}  // namespace pinlab
