#include "pages/buddy_allocator.h"

#include <algorithm>
#include <bit>
#include <new>

#include <sys/mman.h>

namespace pinlab {

BuddyAllocator::BuddyAllocator(uint64_t start, uint64_t end) : start_(start), end_(end) {
  uint64_t words = 0;
  for (uint32_t k = 0; k < kOrders; ++k) {
    const uint64_t bits = bits_at(start_, end_, k);
    if (bits > SummaryBitmap::kMaxBits) throw std::bad_alloc();
    words += SummaryBitmap::words_for(bits);
  }
  // MAP_NORESERVE and zero-filled: the bitmaps start all clear and cost only what is touched.
  if (words > 0 && !words_.allocate(words)) throw std::bad_alloc();
  // On 4 KiB pages, not the mapping's transparent huge pages: a zone's bitmaps are touched
  // sparsely (a small zone's fit in one 4 KiB page), and each first touch of a huge page would
  // commit 2 MiB (every small page array 2 MiB more, unseen by the GC). Advisory, like THP:
  // the result is ignored on purpose (a kernel without THP says EINVAL; where the VMA split is
  // refused, the bitmaps stay on huge pages, which costs memory but is still correct).
#ifdef MADV_NOHUGEPAGE
  madvise(words_.data(), words_.bytes(), MADV_NOHUGEPAGE);
#endif
  uint64_t* at = words_.data();
  for (uint32_t k = 0; k < kOrders; ++k) {
    const uint64_t bits = bits_at(start_, end_, k);
    free_[k].attach(at, bits);
    at += SummaryBitmap::words_for(bits);
  }
}

uint64_t BuddyAllocator::bitmap_bytes(uint64_t start, uint64_t end) {
  uint64_t words = 0;
  for (uint32_t k = 0; k < kOrders; ++k) words += SummaryBitmap::words_for(bits_at(start, end, k));
  return words * sizeof(uint64_t);
}

void BuddyAllocator::add_whole_zone() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t pfn = start_;
  while (pfn < end_) {
    // The largest aligned block that starts here and fits before the end.
    uint32_t order = std::min<uint32_t>(kOrders - 1, pfn == 0 ? 64 : std::countr_zero(pfn));
    while (pfn + (uint64_t{1} << order) > end_) --order;
    insert_locked(order, pfn);
    free_pages_ += uint64_t{1} << order;
    pfn += uint64_t{1} << order;
  }
}

uint64_t BuddyAllocator::lowest_locked(uint32_t k) const noexcept {
  const uint64_t i = free_[k].find_next(0);
  return i == SummaryBitmap::kNone ? SummaryBitmap::kNone : head_at(k, i);
}

bool BuddyAllocator::try_take(uint32_t order, uint64_t* head) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t k = order;
  while (k < kOrders && !free_[k].any()) ++k;
  if (k >= kOrders) return false;
  *head = take_locked(lowest_locked(k), k, order);
  return true;
}

bool BuddyAllocator::try_take_lowest(uint32_t order, uint64_t below, uint64_t* head) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t best_k = kOrders;
  uint64_t best = below;
  for (uint32_t k = order; k < kOrders; ++k) {
    const uint64_t lowest = lowest_locked(k);  // kNone (the largest value) when there is none
    // The pages taken are the block's first 2^order: all of them must lie below `below`.
    // (lowest < best <= below first: kNone + size would wrap.)
    if (lowest < best && lowest + (uint64_t{1} << order) <= below) {
      best = lowest;
      best_k = k;
    }
  }
  if (best_k == kOrders) return false;
  *head = take_locked(best, best_k, order);
  return true;
}

uint64_t BuddyAllocator::take_locked(uint64_t block, uint32_t k, uint32_t order) noexcept {
  free_[k].clear(index_of(k, block));
  // Split down to the order asked for: the upper halves go back, one per order.
  while (k > order) {
    --k;
    insert_locked(k, block + (uint64_t{1} << k));
  }
  free_pages_ -= uint64_t{1} << order;
  return block;
}

void BuddyAllocator::give(uint64_t head, uint32_t order) noexcept {
  // Callers give back what a take handed out (orders 0..30); a corrupt order must not index
  // past the bitmaps. Such a block is left out of the zone: never counted free twice.
  if (order >= kOrders || !contains(head)) [[unlikely]]
    return;
  std::lock_guard<std::mutex> lock(mu_);
  free_pages_ += uint64_t{1} << order;
  give_locked(head, order);
}

void BuddyAllocator::give_locked(uint64_t head, uint32_t order) noexcept {
  while (order + 1 < kOrders) {
    const uint64_t size = uint64_t{1} << order;
    const uint64_t buddy = head ^ size;
    if (buddy < start_ || buddy + size > end_) break;
    const uint64_t i = index_of(order, buddy);
    if (!free_[order].test(i)) break;
    free_[order].clear(i);
    head &= ~size;
    ++order;
  }
  insert_locked(order, head);
}

uint64_t BuddyAllocator::free_pages() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return free_pages_;
}

}  // namespace pinlab
