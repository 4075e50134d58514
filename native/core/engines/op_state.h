// A page array's and its address spaces' whole observable state, folded into digests so two
// runs can be compared exactly (a live simulation and the replay of its recording; a batch
// and the same calls one by one). Read through public core methods only; a snapshot, exact
// once no call is running.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mm/address_space.h"
#include "pages/page_array.h"

namespace pinlab::ops {

struct StateDigest {
  // Per page: the folio head and order, refcount, exact pincount (or none), dirty flag and
  // maybe-pinned answer; in debug mode also the exact per-page pins.
  uint64_t pages = 0;
  // The allocator's free blocks (zone, order, head), and how many pages are free.
  uint64_t free_blocks = 0;
  uint64_t free_pages = 0;
  int64_t zero_pfn = -1;
  // Stat values, in Stat order.
  std::array<uint64_t, size_t(Stat::kCount)> stats{};
  // Per address space, by id: its size, regions, present pages, MMF_HAS_PINNED, every
  // virtual page's translation (present, pfn, writable, zero page, huge, shared), and its
  // MmStat counters.
  uint64_t spaces = 0;
  uint64_t space_count = 0;
  // MmStat values summed over the address spaces, in MmStat order.
  std::array<uint64_t, size_t(MmStat::kCount)> mm_stats{};
};

StateDigest digest_state(const PageArray& mem,
                         const std::vector<std::pair<uint32_t, const AddressSpace*>>& spaces);

// The names of the Stat and MmStat values as the JS API spells them (stats() keys).
const char* stat_key(Stat s);
const char* mm_stat_key(MmStat s);

}  // namespace pinlab::ops
