// The hugetlb pool: pre-reserved huge pages of 2 MiB (order 9) and 1 GiB (order 18), carved
// out of the page array (the kernel's per-node pools behind /proc/sys/vm/nr_hugepages and
// /sys/kernel/mm/hugepages/hugepages-<size>kB/). One pool per page array: every address space
// over the array, and every fork, draws from it, as the kernel's pools are shared system-wide.
//
// A pool page keeps its folio shape for life. Free, it has refcount 0 and sits on the pool's
// free list, not in the buddy allocator, so a speculative gup_fast grab (add-unless-zero) fails
// on it as on any free page. Allocated, it is an ordinary folio of its order with refcount 1;
// when the last reference goes, the page array hands it back here (PageArray::return_to_zone)
// instead of to its zone. Pool pages come from the normal zone: the kernel's hugetlb pages are
// not in ZONE_MOVABLE unless configured so, and FOLL_LONGTERM never has to migrate them.
//
// Reservations (resv_hugepages): a private hugetlb mapping reserves its pages at mmap time, so
// that its faults cannot fail later; a reserved page is still free. An allocation without a
// reservation (COW, a fork's child, migration's target) may only take free pages that nobody
// reserved, and fails when there are none (the mm layer turns that into EFAULT: SIGBUS).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace pinlab {

constexpr uint32_t kHugetlbOrder2M = 9;
constexpr uint32_t kHugetlbOrder1G = 18;
static_assert(kHugetlbOrder1G - kHugetlbOrder2M == 9, "a 1 GiB page is 512 pages of 2 MiB");
constexpr bool is_hugetlb_order(int64_t order) {
  return order == kHugetlbOrder2M || order == kHugetlbOrder1G;
}

// One size's counters, as the kernel's sysfs files name them.
struct HugetlbCounts {
  uint64_t total = 0;     // nr_hugepages
  uint64_t free = 0;      // free_hugepages (reserved ones included)
  uint64_t reserved = 0;  // resv_hugepages: promised to mappings, not yet faulted in
};

// The pool's bookkeeping; the page array owns one and does the page work (hugetlb.cpp).
class HugetlbPool {
 public:
  explicit HugetlbPool(uint64_t pages)
      : blocks_((pages >> kHugetlbOrder2M) + 1), member_(new std::atomic<uint8_t>[blocks_]) {
    for (uint64_t i = 0; i < blocks_; ++i) member_[i].store(0, std::memory_order_relaxed);
  }

  // Whether pfn lies in a pool page. relaxed: membership is set before the page is first
  // handed out and cleared only while it is free in the pool, both under mu_; whoever frees a
  // pool page held a reference taken after it was handed out, which orders the set before.
  bool owns(uint64_t pfn) const {
    return member_[pfn >> kHugetlbOrder2M].load(std::memory_order_relaxed) != 0;
  }

 private:
  friend class PageArray;
  static int index(uint32_t order) { return order == kHugetlbOrder1G ? 1 : 0; }
  void set_member(uint64_t head, uint32_t order, bool on) {
    // relaxed: see owns(); the caller holds mu_.
    for (uint64_t b = head >> kHugetlbOrder2M; b < (head + (uint64_t{1} << order)) >> kHugetlbOrder2M; ++b)
      member_[b].store(on ? 1 : 0, std::memory_order_relaxed);
  }

  struct Size {
    uint64_t total = 0;
    uint64_t reserved = 0;
    std::vector<uint64_t> free;  // heads, refcount 0; the last one is handed out first
  };

  const uint64_t blocks_;
  std::unique_ptr<std::atomic<uint8_t>[]> member_;  // per 2 MiB block: part of a pool page
  std::mutex mu_;
  Size sizes_[2];
};

}  // namespace pinlab
