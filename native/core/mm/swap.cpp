// Swap: the slot device (SwapSpace), MADV_PAGEOUT and swap-in (the kernel's madvise_pageout,
// try_to_unmap and do_swap_page, as the model needs them).
//
// MADV_PAGEOUT, per folio the range maps (under the mmap lock, then the swap lock):
//   - skipped: the zero page, page-cache pages of shared mappings, anything not present;
//   - kept as busy: a folio another mm maps too (the kernel's folio_maybe_mapped_shared), a
//     folio whose entries in this mm reach outside the range (the kernel splits it and pages
//     out the part in range; the model keeps it whole), or not enough free slots (full swap);
//   - kept as maybe pinned: a folio mapped exclusive (PageAnonExclusive) that the scheme says
//     may be pinned (try_to_unmap's folio_try_share_anon_rmap refuses it), with its false
//     positives counted like early COW's and migration's;
//   - otherwise swapped out whole: a PMD leaf is split into PTEs first (TTU_SPLIT_HUGE_PMD),
//     each entry becomes a swap entry of a slot of its own (SWP_EXCLUSIVE if it was exclusive),
//     and the folio's count is frozen from exactly the entries' references and the folio freed.
//     If anything else holds it (a FOLL_GET reference, a racing gup_fast grab), the freeze fails
//     and the folio stays in the swap cache instead, as the kernel's __remove_mapping leaves
//     such a folio: the entries' next swap-in maps that very page again.
// The pin check runs again after the entries are cleared (seq_cst): gup_fast grabs, then
// re-reads the entry; pageout clears the entry, then reads the pins. Either gup_fast sees the
// swap entry and lets go, or pageout sees the pin and puts the entries back.
//
// Swap-in (a fault on a swap entry): the swap-cache page if the slot has one, else a new 4 KiB
// page (a swapped-out THP comes back page by page: mTHP swap-in is not modelled). If other
// entries still name the slot, the page goes into the swap cache so that they map it too. The
// page is mapped exclusive if the entry carried SWP_EXCLUSIVE or the page is ours alone (an
// order-0 page with one reference), and then writable where the region is (do_swap_page maps
// an exclusive page writable on a read fault too); otherwise read-only and shared, and a write
// fault then copies it (do_wp_page). The model behaves as a synchronous device (zram): a slot
// nobody else names is read into a page of its own, not into the swap cache.
#include <sys/mman.h>

#include <algorithm>
#include <array>

#include "mm/address_space.h"

namespace pinlab {

namespace {
constexpr uint64_t pte_index(uint64_t vpage) { return vpage & (kPtesPerTable - 1); }
}  // namespace

// ---- SwapSpace --------------------------------------------------------------------------------

SlotArray::~SlotArray() {
  if (data_ != nullptr) munmap(data_, bytes_);
}

bool SlotArray::allocate(uint64_t count) {
  const uint64_t bytes = count * sizeof(uint32_t);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) return false;
  data_ = static_cast<uint32_t*>(p);
  bytes_ = bytes;
  return true;
}

Status SwapSpace::reserve() {
  if (reserved_ || capacity_ == 0) return Status::Ok();
  // Zero-filled and reserved lazily: a slot costs memory once it is used. A partial failure
  // keeps what was mapped (unused) for the next try; nothing else changed.
  if ((count_.data() == nullptr && !count_.allocate(capacity_)) ||
      (cache_.data() == nullptr && !cache_.allocate(capacity_)) ||
      (free_.data() == nullptr && !free_.allocate(capacity_)))
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(capacity_ * 12));
  reserved_ = true;
  return Status::Ok();
}

uint32_t SwapSpace::alloc() {
  const uint32_t slot = free_top_ > 0 ? free_.data()[--free_top_] : uint32_t(high_++);
  count_.data()[slot] = 1;
  ++used_;
  return slot;
}

bool SwapSpace::try_dup(uint32_t slot) {
  uint32_t& c = count_.data()[slot];
  if (c >= kMaxCount) return false;
  ++c;
  return true;
}

bool SwapSpace::put_and_test(uint32_t slot) {
  if (--count_.data()[slot] != 0) return false;
  free_.data()[free_top_++] = slot;  // free_top_ < high_ <= capacity_: the stack has room
  --used_;
  return true;
}

bool SwapSpace::cache_page(uint32_t slot, uint64_t* pfn) const {
  const uint32_t c = cache_.data()[slot];
  if (c == 0) return false;
  *pfn = c - 1;
  return true;
}

void SwapSpace::set_cache(uint32_t slot, uint64_t pfn) {
  cache_.data()[slot] = uint32_t(pfn + 1);  // PFNs < 2^31
  ++cached_;
}

void SwapSpace::clear_cache(uint32_t slot) {
  cache_.data()[slot] = 0;
  --cached_;
}

// ---- queries ----------------------------------------------------------------------------------

std::optional<SwapEntryInfo> AddressSpace::swap_entry(uint64_t vpage) const {
  if (vpage >= pages_) return std::nullopt;
  const std::atomic<uint64_t>* slot = pte_slot(vpage);
  // acquire: a snapshot, as translate() takes one.
  const uint64_t e = slot ? slot->load(std::memory_order_acquire) : 0;
  if (!entry::swap(e)) return std::nullopt;
  return SwapEntryInfo{uint32_t(entry::pfn(e)), entry::exclusive(e)};
}

uint64_t AddressSpace::swapped_pages() const {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  uint64_t n = 0;
  for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
    if (!entry::table(pt_.pmd(i).load(std::memory_order_relaxed))) continue;
    const std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t k = 0; k < kPtesPerTable; ++k)
      n += entry::swap(t[k].load(std::memory_order_relaxed));  // relaxed: under the mmap lock
  }
  return n;
}

SwapUsage AddressSpace::swap_usage() const {
  std::lock_guard<std::mutex> lock(swap_->lock());
  return SwapUsage{swap_->capacity(), swap_->used(), swap_->cached()};
}

// ---- MADV_PAGEOUT -----------------------------------------------------------------------------

Status AddressSpace::pageout(uint64_t start, uint64_t end) {
  // Everything that can fail comes first (the range was validated by madvise): the slot arrays
  // (ENOMEM) and the PTE tables of the PMD leaves a pageout may split (an exception). After
  // that, pageout cannot fail: a folio it cannot take is kept and counted.
  {
    std::lock_guard<std::mutex> lock(swap_->lock());
    if (Status st = swap_->reserve(); !st.ok()) return st;
  }
  for (uint64_t i = start >> kPmdShift; i <= (end - 1) >> kPmdShift; ++i)
    if (entry::huge(pt_.pmd(i).load(std::memory_order_relaxed))) pt_.ensure_table(i);
  for (uint64_t v = start; v < end;) {
    const uint64_t i = v >> kPmdShift;
    const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the mmap lock
    if (entry::huge(pe)) {
      // The leaf as a whole; the huge zero folio's is skipped (nothing to reclaim).
      if (!entry::special(pe)) pageout_folio(v, start, end);
      v = (i + 1) << kPmdShift;
      continue;
    }
    if (!entry::table(pe)) {
      v = (i + 1) << kPmdShift;
      continue;
    }
    const uint64_t e = pt_.table(i)[pte_index(v)].load(std::memory_order_relaxed);
    if (entry::present(e) && !entry::special(e) && !entry::page_cache(e)) {
      // A large folio is met at each of its PTEs: act at the first one in the range only.
      const uint64_t pfn = entry::pfn(e), head = mem_->folio_head(pfn);
      const uint64_t vbase = v - (pfn - head);
      bool first = true;
      for (uint64_t u = v; first && u > std::max(start, vbase);) {
        --u;
        const uint64_t f = pte_slot(u) ? pte_slot(u)->load(std::memory_order_relaxed) : 0;
        first = !(entry::present(f) && !entry::special(f) && !entry::page_cache(f) &&
                  mem_->folio_head(entry::pfn(f)) == head);
      }
      if (first) pageout_folio(v, start, end);
    }
    ++v;
  }
  return Status::Ok();
}

void AddressSpace::pageout_folio(uint64_t vpage, uint64_t start, uint64_t end) {
  const uint64_t i = vpage >> kPmdShift;
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  const uint64_t pe = pmd.load(std::memory_order_relaxed);  // relaxed: we hold the mmap lock
  const bool leaf = entry::huge(pe);
  const uint64_t first_pfn = leaf ? entry::pfn(pe) : entry::pfn(pte_slot(vpage)->load(std::memory_order_relaxed));
  const uint64_t head = mem_->folio_head(first_pfn);
  const uint32_t order = mem_->folio_order(head);
  const uint64_t n = uint64_t{1} << order;
  const uint64_t vbase = leaf ? (i << kPmdShift) : vpage - (first_pfn - head);
  // This mm's entries that map the folio: subpage k at vbase + k (an anonymous folio is mapped
  // where it was faulted in), and whether they all lie in the range and any is exclusive.
  // `mapped` counts pages (the statistics' unit, the swap slots); `ours` the mapped references
  // our entries hold: one per PTE, one for a PMD leaf.
  std::array<uint32_t, kPtesPerTable> subpages;  // the subpages our PTEs map
  uint64_t mapped = 0;
  bool inside = true, exclusive = leaf && entry::exclusive(pe);
  if (leaf) {
    mapped = kPtesPerTable;
    inside = vbase >= start && vbase + kPtesPerTable <= end;
  } else {
    for (uint64_t k = 0; k < n && vbase + k < pages_; ++k) {
      const std::atomic<uint64_t>* slot = pte_slot(vbase + k);
      const uint64_t e = slot ? slot->load(std::memory_order_relaxed) : 0;
      if (!entry::present(e) || entry::special(e) || entry::page_cache(e) || entry::pfn(e) != head + k)
        continue;
      subpages[mapped++] = uint32_t(k);
      inside = inside && vbase + k >= start && vbase + k < end;
      exclusive = exclusive || entry::exclusive(e);
    }
  }
  // Another mm maps it (or the swap cache holds part of it): not ours to reclaim alone.
  const int64_t ours = leaf ? 1 : int64_t(mapped);
  if (!inside || mem_->mapped_refs(head) != ours) {
    stats_.add(MmStat::kPageoutBusy, mapped);
    return;
  }
  if (exclusive && mem_->maybe_pinned_head(head, order)) {
    note_maybe_pinned_event(head, order, MmStat::kPageoutFalsePositives, mapped);
    stats_.add(MmStat::kPageoutRefusals, mapped);
    return;
  }
  std::lock_guard<std::mutex> swap_lock(swap_->lock());
  if (swap_->free_slots() < mapped) {  // full swap: the pages stay
    stats_.add(MmStat::kPageoutBusy, mapped);
    return;
  }
  if (leaf) {
    // TTU_SPLIT_HUGE_PMD: the swap entries are PTEs (its table is reserved), one reference
    // each, so the split takes 511 more. Refused (EOVERFLOW: the refcount would pass
    // INT32_MAX): the folio is kept and counted, as one the call cannot take.
    SplitRefsScope split_refs(*this);
    if (!take_split_refs(i).ok()) {
      stats_.add(MmStat::kPageoutBusy, mapped);
      return;
    }
    split_pmd(i);
    for (uint64_t k = 0; k < kPtesPerTable; ++k) subpages[k] = uint32_t(k);
  }
  std::array<uint32_t, kPtesPerTable> slots;
  std::array<uint64_t, kPtesPerTable> olds;
  for (uint64_t j = 0; j < mapped; ++j) {
    const uint64_t v = vbase + subpages[j];
    slots[j] = swap_->alloc();
    const uint64_t old = pte_slot(v)->load(std::memory_order_relaxed);
    const uint64_t swp = entry::make(slots[j], entry::kSwap | (old & entry::kExclusive));
    // seq_cst: the unmap half of the pair with gup_fast's grab-then-recheck (see the top).
    olds[j] = pte_slot(v)->exchange(swp, std::memory_order_seq_cst);
  }
  if (exclusive && mem_->maybe_pinned_head(head, order, std::memory_order_seq_cst)) {
    // A racing gup_fast pinned it before it saw our swap entries: the entries go back.
    for (uint64_t j = 0; j < mapped; ++j) {
      pte_slot(vbase + subpages[j])->store(olds[j], std::memory_order_seq_cst);
      (void)swap_->put_and_test(slots[j]);
    }
    note_maybe_pinned_event(head, order, MmStat::kPageoutFalsePositives, mapped);
    stats_.add(MmStat::kPageoutRefusals, mapped);
    return;
  }
  // Written out. Freed if the entries' references are all there is (seq_cst freeze: see the
  // top); else the folio stays in the swap cache with those references, one per slot, still
  // counted as mapped so that no caller's put can take them.
  if (mem_->try_freeze(head, int32_t(mapped))) {
    mem_->add_mapped_refs(head, -int64_t(mapped));
    mem_->free_frozen_folio(head);
  } else {
    for (uint64_t j = 0; j < mapped; ++j) swap_->set_cache(slots[j], head + subpages[j]);
  }
  stats_.add(MmStat::kPagedOut, mapped);
}

// ---- swap-in, fork, free ----------------------------------------------------------------------

Status AddressSpace::swap_in(uint64_t vpage, std::atomic<uint64_t>* slot, uint64_t e, bool write,
                             const Region& r) {
  const auto s = uint32_t(entry::pfn(e));
  uint64_t pfn = 0;
  {
    std::lock_guard<std::mutex> swap_lock(swap_->lock());
    const bool hit = swap_->cache_page(s, &pfn);
    const bool last = swap_->count(s) == 1;
    if (!hit) {
      // Read in: a new page, from the normal or the movable zone (user memory).
      if (Status st = mem_->alloc_folio(0, true, &pfn); !st.ok()) return st;  // nothing changed
      if (!last) {  // other entries name the slot: they will find this page in the swap cache
        (void)mem_->get_page(pfn, 1);  // a fresh page: cannot fail
        mem_->add_mapped_refs(pfn, 1);
        swap_->set_cache(s, pfn);
      }
    } else {
      (void)mem_->get_page(pfn, 1);  // the swap cache's reference keeps the folio: cannot fail
    }
    const uint64_t head = mem_->folio_head(pfn);
    mem_->add_mapped_refs(head, 1);  // our PTE's reference
    if (hit && last) {  // the last entry: the swap cache lets go of the page
      swap_->clear_cache(s);
      mem_->add_mapped_refs(head, -1);
      mem_->put_folio_refs(head, 1);  // never the last: our PTE holds one
    }
    (void)swap_->put_and_test(s);
    if (hit) stats_.add(MmStat::kSwapCacheHits, 1);
  }
  const uint64_t head = mem_->folio_head(pfn);
  const bool exclusive = entry::exclusive(e) || (mem_->folio_order(head) == 0 && mem_->refcount(head) == 1);
  const uint64_t flags = entry::kPresent | (exclusive ? entry::kExclusive : 0) |
                         (exclusive && r.write ? entry::kWritable : 0);
  // seq_cst (a release at least): publishes the page, its reference taken, with the entry.
  slot->store(entry::make(pfn, flags), std::memory_order_seq_cst);
  stats_.add(MmStat::kSwapIns, 1);
  stats_.add(MmStat::kFaults, 1);
  // A write to a page still shared (the swap cache, another mm): do_wp_page copies it.
  if (write && !exclusive) return handle_write_protect_fault(vpage);
  return Status::Ok();
}

void AddressSpace::free_swap_entry(uint64_t e) {
  const auto s = uint32_t(entry::pfn(e));
  std::lock_guard<std::mutex> swap_lock(swap_->lock());
  uint64_t pfn = 0;
  if (swap_->count(s) == 1 && swap_->cache_page(s, &pfn)) {
    // The last entry: the swap-cache page goes (freed with its last reference).
    swap_->clear_cache(s);
    const uint64_t head = mem_->folio_head(pfn);
    mem_->add_mapped_refs(head, -1);
    mem_->put_folio_refs(head, 1);
  }
  (void)swap_->put_and_test(s);
}

Status AddressSpace::fork_swap_entry(uint64_t e, std::atomic<uint64_t>& child_slot) {
  {
    std::lock_guard<std::mutex> swap_lock(swap_->lock());
    if (!swap_->try_dup(uint32_t(entry::pfn(e))))
      return Status{Code::kEOVERFLOW, Reason::kFlags, "a swap slot's count would pass 2^31-1"};
  }
  // relaxed: the child is not visible to anyone yet. Shared now: no SWP_EXCLUSIVE (fork's
  // commit pass clears the parent's marker).
  child_slot.store(e & ~entry::kExclusive, std::memory_order_relaxed);
  return Status::Ok();
}

}  // namespace pinlab
