// A buddy allocator over one zone of the page array: free blocks of 2^order pages, naturally
// aligned, kept per order, merged with their buddy when both are free.
//
// It owns only the free-block bookkeeping; the page array writes the pages' refcount and order
// when it hands a block out or takes one back. Each order's free blocks are a bitmap with one
// bit per possible block head in the zone, under 64-ary summary levels (base/summary_bitmap.h):
// allocation stays deterministic (lowest address of the smallest order that fits) at
// O(log64 pages) word scans, and all the bitmaps are laid out by the constructor in one lazily
// committed mapping (about a quarter of a byte per page, only what is touched is paid for).
// After construction nothing here allocates: a free (give) cannot fail, so a put that drops the
// last reference never meets std::bad_alloc after the count reached zero. (The first write to a
// bitmap page is still the kernel's page fault on the lazily committed mapping: under memory
// pressure that is the OOM killer's business, as for every page of the page array.) A mutex guards it:
// allocation is the slow path, as in the kernel.
#pragma once

#include <cstdint>
#include <mutex>

#include "base/mapped_array.h"
#include "base/summary_bitmap.h"

namespace pinlab {

class BuddyAllocator {
 public:
  static constexpr uint32_t kOrders = 31;  // orders 0..30

  // The zone [start, end); empty until blocks are added. Maps the bitmaps of every order
  // (bitmap_bytes(start, end) of them): throws std::bad_alloc when the mapping is refused.
  BuddyAllocator(uint64_t start, uint64_t end);
  BuddyAllocator(const BuddyAllocator&) = delete;
  BuddyAllocator& operator=(const BuddyAllocator&) = delete;

  // The bytes a zone [start, end)'s bitmaps take (every order, summaries included).
  static uint64_t bitmap_bytes(uint64_t start, uint64_t end);
  uint64_t bitmap_bytes() const { return words_.bytes(); }

  uint64_t start() const { return start_; }
  uint64_t end() const { return end_; }
  bool contains(uint64_t pfn) const { return pfn >= start_ && pfn < end_; }

  // Every page of the zone free: the zone cut into maximal aligned blocks.
  void add_whole_zone() noexcept;
  // Takes a free block of 2^order pages; false when none is left.
  bool try_take(uint32_t order, uint64_t* head) noexcept;
  // Takes the lowest-addressed free 2^order pages that lie wholly below `below` (head +
  // 2^order <= below; splitting a larger block if that is where they are); false when there
  // are none (compaction's target).
  bool try_take_lowest(uint32_t order, uint64_t below, uint64_t* head) noexcept;
  // Gives back a block (a freed folio), merging it with free buddies. Allocates nothing.
  void give(uint64_t head, uint32_t order) noexcept;
  uint64_t free_pages() const noexcept;
  // Calls fn(head, order) for every free block, order by order, lowest head first (a snapshot
  // under the allocator's lock: fn must not call back into the allocator).
  template <typename F>
  void for_each_free_block(F&& fn) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t k = 0; k < kOrders; ++k) {
      const SummaryBitmap& map = free_[k];
      for (uint64_t i = map.find_next(0); i != SummaryBitmap::kNone; i = map.find_next(i + 1))
        fn(head_at(k, i), k);
    }
  }

 private:
  // The bit of order k's bitmap for the block at `head` (aligned to 2^k, inside the zone).
  uint64_t index_of(uint32_t k, uint64_t head) const { return (head >> k) - (start_ >> k); }
  uint64_t head_at(uint32_t k, uint64_t index) const { return ((start_ >> k) + index) << k; }
  // Order k's bitmap: a bit for every 2^k-aligned head from the zone's first to its last page.
  static uint64_t bits_at(uint64_t start, uint64_t end, uint32_t k) {
    return end > start ? ((end - 1) >> k) - (start >> k) + 1 : 0;
  }
  // The lowest free block of order k, or SummaryBitmap::kNone.
  uint64_t lowest_locked(uint32_t k) const noexcept;
  void insert_locked(uint32_t k, uint64_t head) noexcept { free_[k].set(index_of(k, head)); }
  void give_locked(uint64_t head, uint32_t order) noexcept;
  // Removes free block `block` of order k and returns its first 2^order pages (k >= order).
  uint64_t take_locked(uint64_t block, uint32_t k, uint32_t order) noexcept;

  const uint64_t start_, end_;
  mutable std::mutex mu_;
  MappedArray<uint64_t> words_;  // every order's bitmap and summaries, zeroed: all clear
  SummaryBitmap free_[kOrders];  // views into words_
  uint64_t free_pages_ = 0;
};

}  // namespace pinlab
