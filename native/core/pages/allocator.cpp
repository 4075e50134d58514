// The page array's allocator side: zones, alloc_folio, and freeing when a count reaches zero.
#include <algorithm>

#include "pages/page_array.h"

namespace pinlab {

Status PageArray::alloc_folio(int64_t order, bool movable, uint64_t* head) {
  return alloc_folio_below(order, movable, kNoLimit, head);
}

Status PageArray::alloc_folio_below(int64_t order, bool movable, uint64_t below,
                                    uint64_t* head) {
  if (order < 0 || order > kMaxOrder)
    return Status::Fail(Code::kEINVAL, Reason::kBadOrder, order);
  const auto k = uint32_t(order);
  uint64_t block = 0;
  auto take = [&](BuddyAllocator* zone) {
    if (zone == nullptr) return false;
    return below == kNoLimit ? zone->try_take(k, &block) : zone->try_take_lowest(k, below, &block);
  };
  // Movable allocations fall back to the normal zone; compaction's targets stay in their zone.
  const bool got = below == kNoLimit
                       ? (movable && take(movable_zone_.get())) || take(normal_zone_.get())
                       : take(movable ? movable_zone_.get() : normal_zone_.get());
  if (!got) return Status::Fail(Code::kENOMEM, Reason::kNoFreeBlock, order);
  // The block's pages were reset to order 0 when freed; give them the folio's order. Relaxed:
  // the head's count below publishes them.
  for (uint64_t p = block; p < block + (uint64_t{1} << k); ++p)
    meta_at(p).store(uint8_t(k), std::memory_order_relaxed);
  // release: whoever takes the folio with an acquiring add-unless-zero sees its shape.
  ref_at(block).store(1, std::memory_order_release);
  *head = block;
  return Status::Ok();
}

void PageArray::free_folio(uint64_t head) {
  stats_.add(Stat::kFoliosFreed, 1);
  return_to_zone(head);
}

void PageArray::return_to_zone(uint64_t head) {
  const uint32_t order = load_order(head);
  // A folio is freed unmapped (mappings hold references); should a bug free one that is
  // still counted mapped, its overflow entry must not outlive it.
  if (uint8_t(meta_at(head).load(std::memory_order_relaxed) >> kMapShift) == kMapOverflow) {
    std::lock_guard<std::mutex> lock(map_mu_);
    map_overflow_.erase(head);
  }
  const uint64_t end = head + (uint64_t{1} << order);
  // A count can only reach zero with no pins left, but a non-debug put may have eaten a pin's
  // references: never leave a stale pincount behind for the block's next user.
  if (order >= 1) ref_at(head + 1).store(0, std::memory_order_relaxed);
  // ... nor stale pincount words (separate's side array, a kOwn scheme's store, which may
  // keep state in its folio's tail words too: a sharded scheme's shards, scheme_api.h).
  const uint64_t words_end = pin_words_span_folio_ ? end : head + 1;
  for (uint64_t w = 0; w < pin_words_per_page_; ++w)
    for (uint64_t p = head; p < words_end; ++p)
      std::atomic_ref<int32_t>(pincount_.data()[w * pages() + p]).store(0, std::memory_order_relaxed);
  // A pool page keeps its shape and goes back to the pool (hugetlb_pool.h).
  if (hugetlb_->owns(head)) {
    return_to_hugetlb_pool(head, order);
    return;
  }
  // Every page becomes an order-0 free page, dirty flag cleared: no stale order byte may point
  // a later query (or a speculative gup_fast) at a head that the allocator hands out again.
  for (uint64_t p = head; p < end; ++p) meta_at(p).store(0, std::memory_order_relaxed);
  // The zone's mutex orders these stores before the block's next allocation.
  zone_of(head).give(head, order);
}

void PageArray::init_folio_unshared(uint64_t head, uint32_t order, int32_t refs) {
  // relaxed: nothing else can see the array yet; the caller publishes it as a whole.
  const uint64_t end = head + (uint64_t{1} << order);
  for (uint64_t p = head; p < end; ++p) {
    meta_at(p).store(refs > 0 ? uint8_t(order) : 0, std::memory_order_relaxed);
    ref_at(p).store(0, std::memory_order_relaxed);
  }
  ref_at(head).store(refs, std::memory_order_relaxed);
}

uint64_t PageArray::free_pages() const {
  return normal_zone_->free_pages() + (movable_zone_ ? movable_zone_->free_pages() : 0);
}

uint64_t PageArray::free_pages_for(bool movable) const {
  return movable ? free_pages() : normal_zone_->free_pages();
}

Status PageArray::zero_page(uint64_t* pfn) {
  ZeroPfns z = zero_pfns();  // acquire: pairs with the release store below; set once
  if (z.zero() < 0) {
    std::lock_guard<std::mutex> lock(zero_mu_);
    z.word = zero_pfns_.load(std::memory_order_relaxed);  // relaxed: zero_mu_ orders writers
    if (z.zero() < 0) {
      uint64_t head = 0;
      // The normal zone first; with none left there (an array all ZONE_MOVABLE), the movable
      // zone: the kernel's zero page is always there, so a read fault never fails while a page
      // is free (the zero page is special: never migrated, gup hands it out uncounted).
      if (!alloc_folio(0, false, &head).ok()) {
        if (Status st = alloc_folio(0, true, &head); !st.ok()) return st;
      }
      z.word |= head + 1;
      // release: a reader that sees the PFN sees the page allocated (its refcount and shape).
      zero_pfns_.store(z.word, std::memory_order_release);
    }
  }
  *pfn = uint64_t(z.zero());
  return Status::Ok();
}

Status PageArray::huge_zero_folio(uint64_t* head) {
  ZeroPfns z = zero_pfns();  // acquire: pairs with the release store below; set once
  if (z.huge_head() < 0) {
    uint64_t zero = 0;  // first: a split of a huge zero leaf maps the zero page's PTEs
    if (Status st = zero_page(&zero); !st.ok()) return st;
    std::lock_guard<std::mutex> lock(zero_mu_);
    z.word = zero_pfns_.load(std::memory_order_relaxed);  // relaxed: zero_mu_ orders writers
    if (z.huge_head() < 0) {
      uint64_t h = 0;
      if (Status st = alloc_frozen_folio(ZeroPfns::kHugeOrder, &h); !st.ok()) return st;
      z.word |= (h + 1) << 32;
      // release: a reader that sees the head sees the folio's shape (and its frozen count).
      zero_pfns_.store(z.word, std::memory_order_release);
    }
  }
  *head = uint64_t(z.huge_head());
  return Status::Ok();
}

Status PageArray::alloc_frozen_folio(uint32_t order, uint64_t* head) {
  // A pin or get may name any PFN, a page just allocated too (odd, but not refused): such a
  // grab between the allocation and the freeze makes the freeze fail, and the folio is left
  // to its holders (our reference put: their last put frees it) for another. After the
  // freeze no grab can succeed (add-unless-zero), so no pin ever lands on the folio.
  for (int attempt = 0; attempt < 3; ++attempt) {
    uint64_t h = 0;
    if (Status st = alloc_folio(order, false, &h); !st.ok()) return st;
    int32_t ours = 1;
    // acq_rel: a failed freeze reads the grabs that beat it; a successful one orders the
    // folio's initialisation before the publication that follows.
    if (ref_at(h).compare_exchange_strong(ours, 0, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      *head = h;
      return Status::Ok();
    }
    put_folio_refs(h, 1);
  }
  return Status::Fail(Code::kENOMEM, Reason::kNoFreeBlock, order);
}

}  // namespace pinlab
