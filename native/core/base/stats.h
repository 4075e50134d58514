// Event counters sharded per thread, like the kernel's per-CPU vmstat counters.
//
// Each thread adds to its own cache-line-aligned shard (no sharing, so no contention on the
// hot path); readers sum the shards. Counts are exact once the writers are quiescent.
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
  kRollbacks,         // multi-page calls refused whole (validated unpins and puts change
                      // nothing; a pin gives back what it took)
  kCount
};

constexpr size_t kCacheLine = 64;

// The calling thread's ticket: threads get tickets round-robin, on their first event. The
// thread_local is constant-initialised (no guard, no wrapper call: the hot paths add a
// statistic or two per call), and the ticket taken out of line once per thread. Initial-exec
// TLS: the addon is a dlopen'ed library, whose default (global-dynamic) TLS costs a
// __tls_get_addr call per statistic; 8 bytes fit glibc's static TLS reserve for such modules.
constexpr size_t kNoStatTicket = size_t{1} << (sizeof(size_t) * 8 - 1);
size_t take_stat_ticket();  // never kNoStatTicket
inline size_t my_stat_ticket() {
  [[gnu::tls_model("initial-exec")]] static thread_local size_t ticket = kNoStatTicket;
  if (ticket == kNoStatTicket) [[unlikely]] ticket = take_stat_ticket();
  return ticket;
}

// Counters named by an enum class E with a kCount member.
template <typename E>
class ShardedCounters {
 public:
  static constexpr size_t kShards = 32;
  static_assert((kShards & (kShards - 1)) == 0, "a mask picks the shard");
  static constexpr size_t kFields = static_cast<size_t>(E::kCount);

  ShardedCounters() { reset(); }
  void add(E e, uint64_t n) {
    // relaxed: a statistic orders nothing; sums are read after the writers finish.
    shards_[my_stat_ticket() & (kShards - 1)].field[static_cast<size_t>(e)].fetch_add(
        n, std::memory_order_relaxed);
  }
  uint64_t read(E e) const {
    uint64_t sum = 0;
    for (const auto& shard : shards_)
      sum += shard.field[static_cast<size_t>(e)].load(std::memory_order_relaxed);
    return sum;
  }
  void reset() {
    for (auto& shard : shards_)
      for (auto& f : shard.field) f.store(0, std::memory_order_relaxed);
  }

 private:
  struct alignas(kCacheLine) Shard {
    std::atomic<uint64_t> field[kFields];
  };
  static_assert(sizeof(Shard) % kCacheLine == 0, "shards on their own cache lines");
  static_assert(std::atomic<uint64_t>::is_always_lock_free);
  Shard shards_[kShards];
};

using ShardedStats = ShardedCounters<Stat>;

}  // namespace pinlab

namespace pinlab {

// Statistics counted locally over many calls and added to a ShardedStats at once
// (ShardedStats::add_tally): a batch of single-page calls pays two plain adds per call instead
// of two thread-local shard lookups and atomics (op_executor.cpp's fast path).
struct StatTally {
  uint64_t n[size_t(Stat::kCount)] = {};
  void add(Stat s, uint64_t v) { n[size_t(s)] += v; }
  bool empty() const {
    for (uint64_t v : n)
      if (v != 0) return false;
    return true;
  }
};

// Adds a tally's counts (one atomic per non-zero field) and clears it.
inline void add_tally(ShardedStats& stats, StatTally* t) {
  for (size_t i = 0; i < size_t(Stat::kCount); ++i) {
    if (t->n[i] != 0) stats.add(Stat(i), t->n[i]);
    t->n[i] = 0;
  }
}

}  // namespace pinlab
