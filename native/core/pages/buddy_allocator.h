// A buddy allocator over one zone of the page array: free blocks of 2^order pages, naturally
// aligned, kept per order, merged with their buddy when both are free.
//
// It owns only the free-block bookkeeping; the page array writes the pages' refcount and order
// when it hands a block out or takes one back. Free lists are ordered sets, so allocation is
// deterministic (lowest address of the smallest order that fits) and memory is paid per free
// block, not per page. A mutex guards it: allocation is the slow path, as in the kernel.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>

namespace pinlab {

class BuddyAllocator {
 public:
  static constexpr uint32_t kOrders = 31;  // orders 0..30

  // The zone [start, end); empty until blocks are added.
  BuddyAllocator(uint64_t start, uint64_t end) : start_(start), end_(end) {}

  uint64_t start() const { return start_; }
  uint64_t end() const { return end_; }
  bool contains(uint64_t pfn) const { return pfn >= start_ && pfn < end_; }

  // Every page of the zone free: the zone cut into maximal aligned blocks.
  void add_whole_zone();
  // Takes a free block of 2^order pages; false when none is left.
  bool try_take(uint32_t order, uint64_t* head);
  // Takes the lowest-addressed free 2^order pages below `below` (splitting a larger block if
  // that is where they are); false when there are none (compaction's target).
  bool try_take_lowest(uint32_t order, uint64_t below, uint64_t* head);
  // Gives back a block (a freed folio), merging it with free buddies.
  void give(uint64_t head, uint32_t order);
  uint64_t free_pages() const;
  // Calls fn(head, order) for every free block, order by order, lowest head first (a snapshot
  // under the allocator's lock: fn must not call back into the allocator).
  template <typename F>
  void for_each_free_block(F&& fn) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t k = 0; k < kOrders; ++k)
      for (uint64_t head : free_[k]) fn(head, k);
  }

 private:
  void give_locked(uint64_t head, uint32_t order);
  // Removes free block `block` of order k and returns its first 2^order pages (k >= order).
  uint64_t take_locked(uint64_t block, uint32_t k, uint32_t order);

  const uint64_t start_, end_;
  mutable std::mutex mu_;
  std::set<uint64_t> free_[kOrders];
  uint64_t free_pages_ = 0;
};

}  // namespace pinlab
