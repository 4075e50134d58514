// The page array's side of the hugetlb pool (hugetlb_pool.h): growing and shrinking it,
// reservations, allocation, and taking pages back when their last reference goes.
#include <algorithm>

#include "pages/page_array.h"

namespace pinlab {

static_assert(kHugetlbOrder1G <= kMaxOrder, "a 1 GiB folio's order fits the meta byte");

namespace {
Status check_hugetlb_order(int64_t order) {
  if (!is_hugetlb_order(order))
    return Status::BadOption("order", order, "9 (2 MiB) or 18 (1 GiB)");
  return Status::Ok();
}

Status pool_exhausted(uint32_t order) {
  return Status{Code::kENOMEM, Reason::kHugetlb,
                order == kHugetlbOrder1G ? "no free unreserved 1 GiB hugetlb page in the pool"
                                         : "no free unreserved 2 MiB hugetlb page in the pool"};
}
}  // namespace

Status PageArray::hugetlb_set_pages(int64_t order, int64_t count) {
  if (Status st = check_hugetlb_order(order); !st.ok()) return st;
  const auto k = uint32_t(order);
  if (count < 0 || uint64_t(count) > (pages() >> k))
    return Status::BadOption("count", count, "an integer in 0..pages >> order");
  std::lock_guard<std::mutex> lock(hugetlb_->mu_);
  HugetlbPool::Size& size = hugetlb_->sizes_[HugetlbPool::index(k)];
  const auto want = uint64_t(count);
  if (want >= size.total) {
    // Grow: every block first (ENOMEM gives back the ones taken, nobody saw them), then the
    // pool takes them over, free (refcount 0).
    std::vector<uint64_t> heads;
    heads.reserve(want - size.total);  // host memory first: an exception changes nothing
    // Room for every page of the pool on its free list, so a pool page's free
    // (return_to_hugetlb_pool's push_back) never allocates: a free cannot fail.
    size.free.reserve(want);
    for (uint64_t n = size.total; n < want; ++n) {
      uint64_t head = 0;
      if (Status st = alloc_folio(k, false, &head); !st.ok()) {
        for (const uint64_t h : heads) give_back_unused(h);
        return Status::Fail(Code::kENOMEM, Reason::kNoFreeBlock, order);
      }
      heads.push_back(head);
    }
    for (const uint64_t h : heads) {
      hugetlb_->set_member(h, k, true);
      // relaxed: nobody can reach the page; mu_ orders this before its first hugetlb_alloc.
      ref_at(h).store(0, std::memory_order_relaxed);
      size.free.push_back(h);
    }
    size.total = want;
    return Status::Ok();
  }
  // Shrink: only free pages nobody reserved can go (the kernel would leave surplus pages;
  // the model refuses instead, and changes nothing).
  const uint64_t drop = size.total - want;
  if (size.free.size() < size.reserved + drop)
    return Status{Code::kEBUSY, Reason::kHugetlb,
                  "the hugetlb pool cannot shrink that far: its other pages are in use or reserved"};
  for (uint64_t n = 0; n < drop; ++n) {
    const uint64_t h = size.free.back();
    size.free.pop_back();
    hugetlb_->set_member(h, k, false);
    // Back to its zone as any freed block: every page order 0, and the zone's mutex orders
    // these stores before the block's next allocation.
    for (uint64_t p = h; p < h + (uint64_t{1} << k); ++p) meta_at(p).store(0, std::memory_order_relaxed);
    zone_of(h).give(h, k);
  }
  size.total = want;
  return Status::Ok();
}

Status PageArray::hugetlb_counts(int64_t order, HugetlbCounts* out) const {
  if (Status st = check_hugetlb_order(order); !st.ok()) return st;
  std::lock_guard<std::mutex> lock(hugetlb_->mu_);
  const HugetlbPool::Size& size = hugetlb_->sizes_[HugetlbPool::index(uint32_t(order))];
  *out = HugetlbCounts{size.total, size.free.size(), size.reserved};
  return Status::Ok();
}

Status PageArray::hugetlb_reserve(uint32_t order, uint64_t n) {
  if (Status st = check_hugetlb_order(order); !st.ok()) return st;
  std::lock_guard<std::mutex> lock(hugetlb_->mu_);
  HugetlbPool::Size& size = hugetlb_->sizes_[HugetlbPool::index(order)];
  if (size.free.size() < size.reserved || size.free.size() - size.reserved < n)
    return pool_exhausted(order);
  size.reserved += n;
  return Status::Ok();
}

void PageArray::hugetlb_unreserve(uint32_t order, uint64_t n) {
  std::lock_guard<std::mutex> lock(hugetlb_->mu_);
  HugetlbPool::Size& size = hugetlb_->sizes_[HugetlbPool::index(order)];
  size.reserved -= std::min(n, size.reserved);
}

Status PageArray::hugetlb_alloc(uint32_t order, bool reserved, uint64_t* head) {
  if (Status st = check_hugetlb_order(order); !st.ok()) return st;
  std::lock_guard<std::mutex> lock(hugetlb_->mu_);
  HugetlbPool::Size& size = hugetlb_->sizes_[HugetlbPool::index(order)];
  if (reserved ? size.reserved == 0 || size.free.empty() : size.free.size() <= size.reserved)
    return pool_exhausted(order);
  if (reserved) --size.reserved;
  const uint64_t h = size.free.back();
  size.free.pop_back();
  // The page kept its order bytes in the pool. release: whoever takes the folio with an
  // acquiring add-unless-zero sees its state (its cleared pincount among it).
  ref_at(h).store(1, std::memory_order_release);
  *head = h;
  return Status::Ok();
}

Status PageArray::hugetlb_alloc_pages(int64_t order, int64_t n, std::vector<uint32_t>* heads) {
  if (Status st = check_hugetlb_order(order); !st.ok()) return st;
  if (n < 1 || uint64_t(n) > (pages() >> order))
    return Status::BadOption("count", n, "an integer in 1..pages >> order");
  heads->clear();
  heads->reserve(uint64_t(n));  // host memory first: an exception changes nothing
  for (int64_t k = 0; k < n; ++k) {
    uint64_t head = 0;
    if (Status st = hugetlb_alloc(uint32_t(order), false, &head); !st.ok()) {
      for (const uint32_t h : *heads) give_back_unused(h);  // nobody saw them
      heads->clear();
      return st;
    }
    heads->push_back(uint32_t(head));  // PFNs < 2^31
  }
  return Status::Ok();
}

void PageArray::return_to_hugetlb_pool(uint64_t head, uint32_t order) {
  // Refcount 0 and unmapped (return_to_zone cleared the pincount words): clear the head's
  // dirty and mapped bits, keep the order on every page (the shape never changes). relaxed:
  // mu_ below orders it before the page's next hugetlb_alloc.
  meta_at(head).store(uint8_t(order), std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(hugetlb_->mu_);
  // No allocation: hugetlb_set_pages reserved room for every page of the pool.
  hugetlb_->sizes_[HugetlbPool::index(order)].free.push_back(head);
}

}  // namespace pinlab
