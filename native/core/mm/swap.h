// The swap device of an address space and its fork descendants (the kernel's swap_info with its
// swap_map and the swap cache), for MADV_PAGEOUT and swap-in (swap.cpp).
//
// A slot holds one swapped-out 4 KiB page. Its count is the number of swap entries (non-present
// PTEs, entry::kSwap) that name it: pageout makes it 1, fork adds one per child that copies the
// entry, and a swap-in, a zap or a munmap of an entry takes one away; at 0 the slot is free. A
// slot may also have a page in the swap cache: the page that the entries' next swap-in maps
// instead of reading the slot again (a parent and a child faulting the same entry map the same
// page). The cache holds one reference on the page's folio for each cached slot; those
// references count as mapped references (PageArray::add_mapped_refs), so that a caller's put can
// never take them. The model drops a slot's cache page as soon as the slot's count reaches 0
// (the kernel leaves that to reclaim or to the next fault): a cached page always has entries.
//
// The slot arrays are mmap'd on the first pageout (MAP_NORESERVE: untouched slots cost nothing;
// an address space that never pages out pays nothing). Every access takes the swap lock, which
// an address space takes inside its mmap lock (lock order: mmap lock, swap lock, folio locks).
#pragma once

#include <cstdint>
#include <mutex>

#include "base/status.h"

namespace pinlab {

// A zero-filled uint32 array mmap'd with MAP_NORESERVE on 4 KiB pages (no MADV_HUGEPAGE, unlike
// MappedArray: a few slots must cost a few pages, not 2 MiB each).
class SlotArray {
 public:
  SlotArray() = default;
  ~SlotArray();
  SlotArray(const SlotArray&) = delete;
  SlotArray& operator=(const SlotArray&) = delete;
  bool allocate(uint64_t count);  // false (still empty) if the host refuses
  uint32_t* data() const { return data_; }

 private:
  uint32_t* data_ = nullptr;
  uint64_t bytes_ = 0;
};

class SwapSpace {
 public:
  // capacity: slots, 0..2^31 (0: no swap device, pageout keeps every page).
  explicit SwapSpace(uint64_t capacity) : capacity_(capacity) {}

  uint64_t capacity() const { return capacity_; }
  std::mutex& lock() const { return mu_; }

  // ---- under lock() ----------------------------------------------------------------------
  // Maps the slot arrays on first use: ENOMEM (nothing changed) if the host refuses.
  Status reserve();
  uint64_t free_slots() const { return capacity_ - used_; }
  uint64_t used() const { return used_; }
  uint64_t cached() const { return cached_; }
  // A free slot with count 1 and no cache page (the caller checked free_slots() > 0).
  uint32_t alloc();
  uint32_t count(uint32_t slot) const { return count_.data()[slot]; }
  // Another entry names the slot (fork); false (nothing changed) at the count's limit.
  bool try_dup(uint32_t slot);
  // One entry fewer; true if that was the last (the caller has dropped the cache page first:
  // the slot is then free).
  bool put_and_test(uint32_t slot);
  // The slot's swap-cache page, if any: true and *pfn set.
  bool cache_page(uint32_t slot, uint64_t* pfn) const;
  void set_cache(uint32_t slot, uint64_t pfn);
  void clear_cache(uint32_t slot);

  static constexpr uint32_t kMaxCount = 0x7FFFFFFFu;  // a count fits in int32 like a refcount

 private:
  const uint64_t capacity_;
  mutable std::mutex mu_;
  bool reserved_ = false;
  uint64_t used_ = 0;      // slots with a count
  uint64_t cached_ = 0;    // slots with a swap-cache page
  uint64_t high_ = 0;      // slots [high_, capacity_) were never used
  uint64_t free_top_ = 0;  // free_[0..free_top_) are freed slots below high_
  SlotArray count_;
  SlotArray cache_;  // pfn + 1 of the cached page, 0 for none (PFNs < 2^31)
  SlotArray free_;
};

// A swap entry as a query reports it (pagemap's swap bit, offset and exclusive marker).
struct SwapEntryInfo {
  uint32_t slot = 0;
  bool exclusive = false;  // SWP_EXCLUSIVE: the page was this mm's alone when it left
};

// The swap space as a whole, for queries and the end-of-run balance checks.
struct SwapUsage {
  uint64_t capacity = 0;  // slots
  uint64_t used = 0;      // slots some entry names
  uint64_t cached = 0;    // ... of which with a page in the swap cache
};

}  // namespace pinlab
