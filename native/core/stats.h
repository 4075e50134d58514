// Event counters sharded per thread, like the kernel's per-CPU vmstat counters.
//
// Each thread adds to its own cache line (no sharing, so no contention on the hot path);
// readers sum the shards. Counts are exact once the writers are quiescent.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pinlab {

enum class Stat : uint8_t {
  kPinAcquired = 0,   // logical subpage pins taken (nr_foll_pin_acquired)
  kPinReleased,       // logical subpage pins dropped (nr_foll_pin_released)
  kGrabs,             // atomic grab/release operations on folio heads by pin paths
  kFoliosFreed,       // folios whose refcount reached 0
  kOverflowRefusals,  // pins/gets refused with EOVERFLOW
  kRollbacks,         // multi-page calls that failed and undid their work
  kCount
};

constexpr size_t kCacheLine = 64;
constexpr size_t kStatFields = static_cast<size_t>(Stat::kCount);

struct alignas(kCacheLine) StatShard {
  std::atomic<uint64_t> field[kStatFields];
};
static_assert(sizeof(StatShard) == kCacheLine, "one shard per cache line: no false sharing");
static_assert(std::atomic<uint64_t>::is_always_lock_free);

class ShardedStats {
 public:
  static constexpr size_t kShards = 32;

  ShardedStats();
  void add(Stat s, uint64_t n) {
    // relaxed: a statistic orders nothing; sums are read after the writers finish.
    shards_[my_shard()].field[static_cast<size_t>(s)].fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t read(Stat s) const;
  void reset();

 private:
  static size_t my_shard();
  StatShard shards_[kShards];
};

}  // namespace pinlab
