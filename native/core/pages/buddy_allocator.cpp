#include "pages/buddy_allocator.h"

#include <algorithm>
#include <bit>

namespace pinlab {

void BuddyAllocator::add_whole_zone() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t pfn = start_;
  while (pfn < end_) {
    // The largest aligned block that starts here and fits before the end.
    uint32_t order = std::min<uint32_t>(kOrders - 1, pfn == 0 ? 64 : std::countr_zero(pfn));
    while (pfn + (uint64_t{1} << order) > end_) --order;
    free_[order].insert(pfn);
    free_pages_ += uint64_t{1} << order;
    pfn += uint64_t{1} << order;
  }
}

bool BuddyAllocator::try_take(uint32_t order, uint64_t* head) {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t k = order;
  while (k < kOrders && free_[k].empty()) ++k;
  if (k == kOrders) return false;
  *head = take_locked(*free_[k].begin(), k, order);
  return true;
}

bool BuddyAllocator::try_take_lowest(uint32_t order, uint64_t below, uint64_t* head) {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t best_k = kOrders;
  uint64_t best = below;
  for (uint32_t k = order; k < kOrders; ++k) {
    if (!free_[k].empty() && *free_[k].begin() < best) {
      best = *free_[k].begin();
      best_k = k;
    }
  }
  if (best_k == kOrders) return false;
  *head = take_locked(best, best_k, order);
  return true;
}

uint64_t BuddyAllocator::take_locked(uint64_t block, uint32_t k, uint32_t order) {
  free_[k].erase(block);
  // Split down to the order asked for: the upper halves go back, one per order.
  while (k > order) {
    --k;
    free_[k].insert(block + (uint64_t{1} << k));
  }
  free_pages_ -= uint64_t{1} << order;
  return block;
}

void BuddyAllocator::give(uint64_t head, uint32_t order) {
  std::lock_guard<std::mutex> lock(mu_);
  free_pages_ += uint64_t{1} << order;
  give_locked(head, order);
}

void BuddyAllocator::give_locked(uint64_t head, uint32_t order) {
  while (order + 1 < kOrders) {
    const uint64_t size = uint64_t{1} << order;
    const uint64_t buddy = head ^ size;
    if (buddy < start_ || buddy + size > end_) break;
    auto it = free_[order].find(buddy);
    if (it == free_[order].end()) break;
    free_[order].erase(it);
    head &= ~size;
    ++order;
  }
  free_[order].insert(head);
}

uint64_t BuddyAllocator::free_pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_pages_;
}

}  // namespace pinlab
