#include "base/stats.h"

namespace pinlab {

size_t take_stat_ticket() {
  // relaxed: only uniqueness of the ticket matters, not ordering.
  static std::atomic<size_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed) & ~kNoStatTicket;
}

}  // namespace pinlab
