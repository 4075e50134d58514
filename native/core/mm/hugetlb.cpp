// hugetlb mappings: MAP_HUGETLB private and shared anonymous memory, and hugetlb files mapped
// shared or private, all from the page array's pool (pages/hugetlb_pool.h).
//
// Shape: a 2 MiB page is one PMD leaf (entry::kHugetlb); a 1 GiB page is 512 consecutive PMD
// leaves of one order-18 folio (no PUD level in this page table). Either way the mapping holds
// ONE reference on the folio (and one mapped reference), as the kernel's hugetlb mappings do,
// and every leaf of a page is installed, changed and cleared together under the mmap lock:
// a hugetlb page is never split. Ranges of munmap, mprotect and madvise must cover whole huge
// pages (EINVAL otherwise, as Linux answers for a hugetlb VMA split off its page size).
//
// gup_fast: a run over the leaves of one page is one grab (extend_hugetlb_walk), rechecked
// leaf by leaf afterwards; unmap clears every leaf before it puts the page's reference (the
// last leaf's clear), so a walker that grabbed through any leaf either sees a cleared leaf on
// its recheck or holds the folio alive with its own grab. The Dekker pairs are the same as
// for THP leaves (gup.cpp).
//
// COW: fork shares a private page read-only (one more reference), or copies a maybe-pinned
// page of an mm that has pinned at once (early COW, as copy_hugetlb_page_range does; an empty
// pool fails the fork with ENOMEM, nothing changed). A write fault reuses a page that is ours
// alone (exclusive, or mapped once: by mapcount) and otherwise copies the whole page from the
// pool; an empty pool is EFAULT (the kernel's SIGBUS), nothing changed. FOLL_PIN unshares the
// same way.
//
// Migration moves a hugetlb page to another free, unreserved pool page of its size (Linux
// migrates hugetlb folios too); a maybe-pinned one is refused, and one mapped elsewhere too
// (another mm, a file) is busy. Pool pages are in the normal zone, so FOLL_LONGTERM never
// needs to move one.
#include <algorithm>
#include <map>
#include <tuple>

#include "mm/address_space.h"

namespace pinlab {

static_assert(kHugetlbOrder2M == kPmdOrder, "a 2 MiB hugetlb page is one PMD leaf");
static_assert(entry::kHugetlb != entry::kFilePage && entry::kFilePage < (uint64_t{1} << entry::kPfnShift),
              "hugetlb flags are their own bits below the PFN");

namespace {
constexpr uint64_t leaves_of(uint32_t order) { return uint64_t{1} << (order - kPmdOrder); }
constexpr uint64_t pages_of(uint32_t order) { return uint64_t{1} << order; }

// A hugetlb mapping that keeps a hold on its pages (a file's, or the shared object's).
bool holds_file_pages(const Region& r) { return r.hugetlb_order != 0 && (r.shared || r.hugetlb_file); }

Status hugetlb_refused(Code code, const char* why) {
  return Status{code, Reason::kHugetlb, why};
}

Status check_hugetlb_range(int64_t start, int64_t count, int64_t order) {
  if (!is_hugetlb_order(order)) return Status::BadOption("hugetlb", order, "9 (2 MiB) or 18 (1 GiB)");
  const int64_t mask = (int64_t{1} << order) - 1;
  if ((start & mask) != 0 || (count & mask) != 0)
    return hugetlb_refused(Code::kEINVAL,
                           "a hugetlb mapping's start and count must be multiples of its page size");
  return Status::Ok();
}
}  // namespace

// ---- mapping -----------------------------------------------------------------------------------

void AddressSpace::install_hugetlb(uint64_t vbase, uint64_t head, uint32_t order, uint64_t flags) {
  const uint64_t first = vbase >> kPmdShift;
  // seq_cst (a release at least): publishes the folio, its reference taken, with each leaf.
  for (uint64_t k = 0; k < leaves_of(order); ++k)
    pt_.pmd(first + k).store(entry::make(head + (k << kPmdShift), flags | entry::kPresent |
                                                                      entry::kHuge | entry::kHugetlb),
                             std::memory_order_seq_cst);
}

Status AddressSpace::mmap_hugetlb(const HugetlbMmapArgs& a) {
  if (Status st = check_range(a.start, a.count); !st.ok()) return st;
  if (Status st = check_hugetlb_range(a.start, a.count, a.order); !st.ok()) return st;
  const auto order = uint32_t(a.order);
  const auto start = uint64_t(a.start), n = uint64_t(a.count) >> order;
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = check_unmapped(a.start, a.count); !st.ok()) return st;
  Region r{uint64_t(a.count), a.write, false, a.shared, false};
  r.hugetlb_order = uint8_t(order);
  if (a.shared) {
    // MAP_SHARED|MAP_HUGETLB: the pages are the shared object itself (the kernel's unlinked
    // hugetlbfs file), allocated now, all or nothing; each is the mapping's reference.
    std::vector<uint64_t> heads;
    heads.reserve(n);  // host memory first
    for (uint64_t k = 0; k < n; ++k) {
      uint64_t head = 0;
      if (Status st = mem_->hugetlb_alloc(order, false, &head); !st.ok()) {
        for (const uint64_t h : heads) mem_->give_back_unused(h);
        return st;
      }
      heads.push_back(head);
    }
    regions_.emplace(start, r);
    const uint64_t w = a.write ? entry::kWritable : 0;
    for (uint64_t k = 0; k < n; ++k) {
      mem_->add_mapped_refs(heads[k], 1);
      install_hugetlb(start + (k << order), heads[k], order, entry::kShared | w);
    }
    stats_.add(MmStat::kFaults, uint64_t(a.count));
    return Status::Ok();
  }
  // MAP_PRIVATE: reserve every page now (the kernel's mmap fails with ENOMEM otherwise).
  if (Status st = mem_->hugetlb_reserve(order, n); !st.ok()) return st;
  regions_.emplace(start, r);
  for (uint64_t k = 0; k < n; ++k) hugetlb_resv_.insert(start + (k << order));
  if (a.populate) {
    // MAP_POPULATE: every page faulted in now, from its reservation: cannot fail.
    for (uint64_t k = 0; k < n; ++k) (void)hugetlb_fault(start + (k << order), a.write, r, start);
  }
  return Status::Ok();
}

Status AddressSpace::map_hugetlb_file(int64_t start, const uint32_t* heads, uint64_t n,
                                      int64_t order, bool write, bool shared) {
  if (!is_hugetlb_order(order)) return Status::BadOption("hugetlb", order, "9 (2 MiB) or 18 (1 GiB)");
  if (n == 0 || n > (pages_ >> order)) return Status::Fail(Code::kEINVAL, Reason::kBadCount, int64_t(n));
  const auto k = uint32_t(order);
  const int64_t count = int64_t(n << k);
  if (Status st = check_range(start, count); !st.ok()) return st;
  if (Status st = check_hugetlb_range(start, count, order); !st.ok()) return st;
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = check_unmapped(start, count); !st.ok()) return st;
  // Validate before we mutate: every head a live pool folio of this order.
  for (uint64_t i = 0; i < n; ++i) {
    if (Status st = mem_->check_pfn(heads[i]); !st.ok()) return st;
    if (!mem_->is_hugetlb(heads[i]) || mem_->folio_order(heads[i]) != k ||
        mem_->folio_head(heads[i]) != heads[i])
      return hugetlb_refused(Code::kEINVAL, "a hugetlb file's page is not a pool page of its size");
  }
  if (!shared) {
    if (Status st = mem_->hugetlb_reserve(k, n); !st.ok()) return st;  // for the COW copies
  }
  // One reference per page; a free page (EFREE) gives back what was taken.
  for (uint64_t i = 0; i < n; ++i) {
    if (Status st = mem_->get_page(heads[i], 1); !st.ok()) {
      for (uint64_t j = 0; j < i; ++j) mem_->put_folio_refs(heads[j], 1);
      if (!shared) mem_->hugetlb_unreserve(k, n);
      return st;
    }
  }
  const auto s = uint64_t(start);
  Region r{uint64_t(count), write, false, shared, false};
  r.hugetlb_order = uint8_t(k);
  r.hugetlb_file = !shared;
  regions_.emplace(s, r);
  // Shared: the file's pages, writable as the mapping is. Private: read-only and not
  // exclusive (another holder, the file, keeps them): the first write copies.
  const uint64_t flags = shared ? entry::kShared | (write ? entry::kWritable : 0) : entry::kFilePage;
  for (uint64_t i = 0; i < n; ++i) {
    mem_->add_mapped_refs(heads[i], 1);
    install_hugetlb(s + (i << k), heads[i], k, flags);
    if (!shared) hugetlb_resv_.insert(s + (i << k));
  }
  stats_.add(MmStat::kFaults, uint64_t(count));
  return Status::Ok();
}

Status AddressSpace::check_hugetlb_cut(uint64_t start, uint64_t end) const {
  for (const uint64_t v : {start, end}) {
    uint64_t rs = 0;
    const Region* r = v < pages_ ? region_at(v, &rs) : nullptr;
    if (r != nullptr && r->hugetlb_order != 0 && ((v - rs) & (pages_of(r->hugetlb_order) - 1)) != 0)
      return hugetlb_refused(Code::kEINVAL, "the range cuts a hugetlb page (never split)");
  }
  return Status::Ok();
}

uint64_t AddressSpace::hugetlb_page_floor(uint64_t v) const {
  uint64_t rs = 0;
  const Region* r = v < pages_ ? region_at(v, &rs) : nullptr;
  if (r == nullptr || r->hugetlb_order == 0) return v;
  return v - ((v - rs) & (pages_of(r->hugetlb_order) - 1));
}

void AddressSpace::drop_hugetlb_reservations(uint64_t start, uint64_t end) {
  for (auto it = hugetlb_resv_.lower_bound(start); it != hugetlb_resv_.end() && *it < end;) {
    uint64_t rs = 0;
    const Region* r = region_at(*it, &rs);
    if (r != nullptr) mem_->hugetlb_unreserve(r->hugetlb_order, 1);
    it = hugetlb_resv_.erase(it);
  }
}

void AddressSpace::hugetlb_page_of(uint64_t i, uint64_t pe, uint64_t* first, uint64_t* head,
                                   uint32_t* order) const {
  const uint64_t pfn = entry::pfn(pe);
  *order = mem_->folio_order(pfn);  // stable: the mapping holds the folio
  *head = mem_->folio_head(pfn);
  *first = i - ((pfn - *head) >> kPmdShift);
}

void AddressSpace::unmap_hugetlb_leaf(uint64_t i, uint64_t pe) {
  uint64_t first = 0, head = 0;
  uint32_t order = 0;
  hugetlb_page_of(i, pe, &first, &head, &order);
  // Clear first, then put (as for every entry); the page's reference goes with its last leaf,
  // after every leaf is clear (the ranges cover whole pages, in ascending order).
  pt_.pmd(i).store(0, std::memory_order_seq_cst);
  if (i - first + 1 < leaves_of(order)) return;
  mem_->add_mapped_refs(head, -1);
  mem_->put_folio_refs(head, 1);
}

// ---- faults ------------------------------------------------------------------------------------

Status AddressSpace::hugetlb_fault(uint64_t vpage, bool write, const Region& r,
                                   uint64_t region_start) {
  const uint32_t order = r.hugetlb_order;
  const uint64_t vbase = region_start + ((vpage - region_start) & ~(pages_of(order) - 1));
  const uint64_t pe = pt_.pmd(vbase >> kPmdShift).load(std::memory_order_relaxed);  // we hold the lock
  // A leaf maps the page. A table entry (present too, PFN 0) is what an earlier PTE-mapped use
  // of this 2 MiB span left linked: its PTEs were cleared with that mapping, so it is empty
  // here, and the fault installs the page's leaf over it (the table stays owned, unused).
  if (entry::huge(pe)) {
    if (write && !entry::writable(pe)) return hugetlb_wp(vpage, true);
    return Status::Ok();
  }
  // A file mapping (shared, or private of a file): its page again, or SIGBUS for a hole.
  if (holds_file_pages(r)) return refault_hugetlb_file_page(vbase, write, r);
  // A fresh page from the pool: the mapping's reservation if this page still has it, else
  // (after MADV_DONTNEED used it, or in a fork's child) a free unreserved one; none: SIGBUS.
  const auto resv = hugetlb_resv_.find(vbase);
  uint64_t head = 0;
  if (!mem_->hugetlb_alloc(order, resv != hugetlb_resv_.end(), &head).ok())
    return hugetlb_refused(Code::kEFAULT, "no free hugetlb page for the fault (SIGBUS)");
  if (resv != hugetlb_resv_.end()) hugetlb_resv_.erase(resv);
  mem_->add_mapped_refs(head, 1);
  // Exclusive; writable when the fault writes (a read fault maps it read-only, and the next
  // write reuses it: hugetlb has no zero page to share).
  install_hugetlb(vbase, head, order, entry::kExclusive | (write ? entry::kWritable : 0));
  stats_.add(MmStat::kFaults, pages_of(order));
  return Status::Ok();
}

Status AddressSpace::hugetlb_wp(uint64_t vpage, bool write) {
  const uint64_t i = vpage >> kPmdShift;
  const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the lock
  uint64_t first = 0, head = 0;
  uint32_t order = 0;
  hugetlb_page_of(i, pe, &first, &head, &order);
  const uint64_t vbase = first << kPmdShift;
  const uint64_t w = write ? entry::kWritable : (pe & entry::kWritable);
  auto set_all = [&](uint64_t flags) {
    for (uint64_t k = 0; k < leaves_of(order); ++k) {
      std::atomic<uint64_t>& pmd = pt_.pmd(first + k);
      // seq_cst: every entry change is one a walker's recheck compares against.
      pmd.store(pmd.load(std::memory_order_relaxed) | flags, std::memory_order_seq_cst);
    }
  };
  if (entry::shared(pe)) {  // a shared mapping's page: written in place, never copied
    if (write) set_all(entry::kWritable);
    return Status::Ok();
  }
  // Ours alone: exclusive, or an anonymous page (not the file's) that only this mapping maps.
  // By mapcount, not refcount, as hugetlb_wp decides (so that fork-then-exit users do not need
  // a free pool page for a copy because of a passing reference, such as a FOLL_GET).
  if (entry::exclusive(pe) || (!(pe & entry::kFilePage) && mem_->mapped_refs(head) == 1)) {
    set_all(entry::kExclusive | w);
    stats_.add(MmStat::kCowReuses, pages_of(order));
    return Status::Ok();
  }
  // Copy the whole page. The file's page stays held by the mapping (host memory first: its
  // node before the copy), so that the page can be mapped again after MADV_DONTNEED.
  const bool file_page = (pe & entry::kFilePage) != 0;
  bool held = false;
  auto node = file_held_.end();
  if (file_page) std::tie(node, held) = file_held_.try_emplace(vbase, head);
  if (Status st = install_hugetlb_copy(vbase, head, order, w); !st.ok()) {
    if (held) file_held_.erase(node);
    return st;
  }
  mem_->add_mapped_refs(head, -1);  // replaced, then put (as unmap), or kept held
  if (!held) mem_->put_folio_refs(head, 1);
  return Status::Ok();
}

Status AddressSpace::install_hugetlb_copy(uint64_t vbase, uint64_t src, uint32_t order,
                                          uint64_t w) {
  const auto resv = hugetlb_resv_.find(vbase);
  uint64_t copy = 0;
  if (!mem_->hugetlb_alloc(order, resv != hugetlb_resv_.end(), &copy).ok())
    return hugetlb_refused(Code::kEFAULT, "no free hugetlb page to copy on write (SIGBUS)");
  if (resv != hugetlb_resv_.end()) hugetlb_resv_.erase(resv);
  mem_->copy_folio_flags(src, copy);
  mem_->add_mapped_refs(copy, 1);
  install_hugetlb(vbase, copy, order, entry::kExclusive | w);
  stats_.add(MmStat::kCowCopies, pages_of(order));
  return Status::Ok();
}

// ---- a file mapping's held pages (mm/file_hold.cpp) --------------------------------------------

Status AddressSpace::refault_hugetlb_file_page(uint64_t vbase, bool write, const Region& r) {
  const auto it = file_held_.find(vbase);
  if (it == file_held_.end()) return Status::Fail(Code::kEFAULT, Reason::kSharedNoPage, int64_t(vbase));
  const uint64_t head = it->second;
  const uint32_t order = r.hugetlb_order;
  // A write in a private mapping copies the file's page at once (the page stays held).
  if (!r.shared && write) return install_hugetlb_copy(vbase, head, order, entry::kWritable);
  file_held_.erase(it);
  mem_->add_mapped_refs(head, 1);  // the held reference is the entry's again
  // As mapped first: shared, writable as the mapping is; private, read-only, the file's page.
  install_hugetlb(vbase, head, order,
                  r.shared ? entry::kShared | (r.write ? entry::kWritable : 0) : entry::kFilePage);
  stats_.add(MmStat::kFaults, pages_of(order));
  return Status::Ok();
}

// ---- fork --------------------------------------------------------------------------------------

Status AddressSpace::fork_hugetlb_leaf(std::atomic<uint64_t>& slot,
                                       std::atomic<uint64_t>& child_slot, uint64_t vpage,
                                       bool pinned_mm, ForkTally* tally) {
  const uint64_t e = slot.load(std::memory_order_relaxed);  // we hold the mmap lock
  const uint64_t i = vpage >> kPmdShift;
  uint64_t first = 0, head = 0;
  uint32_t order = 0;
  hugetlb_page_of(i, e, &first, &head, &order);
  const uint64_t off = (i - first) << kPmdShift;
  // relaxed stores into the child's table: the child is not visible to anyone yet.
  if (i != first) {
    // The page's first leaf decided (fork visits leaves in ascending order): the same page
    // (shared), or the early copy the child got there.
    // PMD slots are one array (page_table.h), so the first leaf's slot is i - first before.
    // relaxed: the child is not visible to anyone yet.
    const uint64_t ce = (&child_slot - (i - first))->load(std::memory_order_relaxed);
    if (entry::present(ce)) child_slot.store(ce + (off << entry::kPfnShift), std::memory_order_relaxed);
    return Status::Ok();
  }
  if (entry::shared(e)) {  // a shared mapping: the child maps the same page, one more reference
    if (Status st = mem_->get_page(head, 1); !st.ok()) return st;
    mem_->add_mapped_refs(head, 1);
    child_slot.store(e, std::memory_order_relaxed);
    return Status::Ok();
  }
  if (needs_early_cow(e, head, order, pinned_mm)) {
    // Early COW, as copy_hugetlb_page_range: the child gets a copy from the pool now.
    uint64_t copy = 0;
    if (!mem_->hugetlb_alloc(order, false, &copy).ok())
      return hugetlb_refused(Code::kENOMEM, "no free hugetlb page for fork's early copy of a pinned page");
    mem_->copy_folio_flags(head, copy);
    mem_->add_mapped_refs(copy, 1);
    uint64_t rs = 0;
    const Region* r = region_at(vpage, &rs);
    const uint64_t w = r != nullptr && r->write ? entry::kWritable : 0;
    child_slot.store(entry::make(copy, entry::kPresent | entry::kHuge | entry::kHugetlb |
                                           entry::kExclusive | w),
                     std::memory_order_relaxed);
    tally->early_cow_copies += pages_of(order);
    const std::optional<int64_t> pins = mem_->exact_folio_pins(head, order);
    if (!pins) tally->unclassified += pages_of(order);
    else if (*pins == 0) tally->false_positives += pages_of(order);
    return Status::Ok();
  }
  // Shared COW: one more reference, the child's leaves read-only and not exclusive; fork's
  // commit pass write-protects the parent's.
  if (Status st = mem_->get_page(head, 1); !st.ok()) return st;
  mem_->add_mapped_refs(head, 1);
  child_slot.store(e & ~(entry::kWritable | entry::kExclusive), std::memory_order_relaxed);
  return Status::Ok();
}

void AddressSpace::abandon_hugetlb_leaf(std::atomic<uint64_t>& child_slot) {
  const uint64_t ce = child_slot.exchange(0, std::memory_order_relaxed);  // the child is unseen
  if (!entry::present(ce)) return;
  const uint64_t head = mem_->folio_head(entry::pfn(ce));
  if (entry::pfn(ce) != head) return;  // the page's reference went with its first leaf
  mem_->add_mapped_refs(head, -1);
  // An early copy is exclusive in the child (nobody saw it); a shared page never is.
  if (entry::exclusive(ce)) mem_->give_back_unused(head);
  else mem_->put_folio_refs(head, 1);
}

// ---- migration ---------------------------------------------------------------------------------

AddressSpace::MigrateOutcome AddressSpace::migrate_hugetlb(uint64_t vpage, uint64_t* moved_pages) {
  const uint64_t i = vpage >> kPmdShift;
  const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the lock
  uint64_t first = 0, head = 0;
  uint32_t order = 0;
  hugetlb_page_of(i, pe, &first, &head, &order);
  if (entry::shared(pe)) {  // a file's page (or a shared mapping's): no reverse map to move it by
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  if (mem_->maybe_pinned_head(head, order)) {
    note_maybe_pinned_event(head, order, MmStat::kMigrationFalsePositives);
    stats_.add(MmStat::kMigrationRefusals, 1);
    return MigrateOutcome::kPinned;
  }
  uint64_t target = 0;
  if (!mem_->hugetlb_alloc(order, false, &target).ok()) return MigrateOutcome::kNoMemory;
  const uint64_t n = leaves_of(order);
  std::vector<uint64_t> olds;
  try {
    olds.reserve(n);  // host memory first
  } catch (...) {
    mem_->give_back_unused(target);
    throw;
  }
  // seq_cst exchanges, then the seq_cst freeze from exactly our mapping's reference: the unmap
  // half of the pair with gup_fast's grab-then-recheck.
  for (uint64_t k = 0; k < n; ++k) olds.push_back(pt_.pmd(first + k).exchange(0, std::memory_order_seq_cst));
  if (!mem_->try_freeze(head, 1)) {
    for (uint64_t k = 0; k < n; ++k) pt_.pmd(first + k).store(olds[k], std::memory_order_seq_cst);
    mem_->give_back_unused(target);
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  mem_->copy_folio_flags(head, target);
  mem_->add_mapped_refs(target, 1);
  constexpr uint64_t kFlagMask = (uint64_t{1} << entry::kPfnShift) - 1;
  for (uint64_t k = 0; k < n; ++k)
    pt_.pmd(first + k).store(entry::make(target + (k << kPmdShift), olds[k] & kFlagMask),
                             std::memory_order_seq_cst);
  mem_->add_mapped_refs(head, -1);
  mem_->free_frozen_folio(head);  // back to the pool
  stats_.add(MmStat::kMigrated, pages_of(order));
  if (moved_pages != nullptr) *moved_pages = pages_of(order);
  return MigrateOutcome::kMoved;
}

// ---- gup_fast ------------------------------------------------------------------------------------

void AddressSpace::extend_hugetlb_walk(uint64_t v, uint64_t end, WalkEntry* w) const {
  // The leaves after this one that map the same page (a 1 GiB page's), as one run: one grab
  // for the whole page, as the kernel's PUD leaf takes. The order read is speculative (the
  // grab checks that the run lies in the folio it names); each leaf must be exactly the next
  // one, read seq_cst like the first, and walk_entry_unchanged rechecks them all.
  const uint32_t order = mem_->folio_order(w->pfn);
  const uint64_t head = w->pfn & ~(pages_of(order) - 1);
  const uint64_t page_end = std::min(head + pages_of(order) - w->pfn + v, end);  // a virtual bound
  const uint64_t i = v >> kPmdShift;
  while (v + w->n < page_end && i + w->leaves < pt_.pmd_count()) {
    const uint64_t next = pt_.pmd(i + w->leaves).load(std::memory_order_seq_cst);
    if (next != w->pe + ((w->leaves << kPmdShift) << entry::kPfnShift)) break;
    w->n = std::min(w->n + kPtesPerTable, page_end - v);
    ++w->leaves;
  }
}

}  // namespace pinlab
