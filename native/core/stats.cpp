#include "stats.h"

namespace pinlab {

ShardedStats::ShardedStats() { reset(); }

size_t ShardedStats::my_shard() {
  // relaxed: only uniqueness of the ticket matters, not ordering.
  static std::atomic<size_t> next{0};
  thread_local const size_t shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

uint64_t ShardedStats::read(Stat s) const {
  uint64_t sum = 0;
  for (const auto& shard : shards_)
    sum += shard.field[static_cast<size_t>(s)].load(std::memory_order_relaxed);
  return sum;
}

void ShardedStats::reset() {
  for (auto& shard : shards_)
    for (auto& f : shard.field) f.store(0, std::memory_order_relaxed);
}

}  // namespace pinlab
