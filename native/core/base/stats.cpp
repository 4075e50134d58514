#include "base/stats.h"

namespace pinlab {

size_t my_stat_shard(size_t shards) {
  // relaxed: only uniqueness of the ticket matters, not ordering.
  static std::atomic<size_t> next{0};
  thread_local const size_t ticket = next.fetch_add(1, std::memory_order_relaxed);
  return ticket % shards;
}

}  // namespace pinlab
