// Migration: the client of "maybe pinned" that must never move a pinned page. Page-cache
// pages of shared mappings are never moved (migrate counts them busy, compact skips them).
//
// Protocol for one folio, under the mmap lock, racing gup_fast: refuse if maybe pinned; take
// the target folio; clear the entry (the migration entry); freeze the count from exactly the
// mapping's references to 0, which fails if any pin or other reference (a racing gup_fast's
// speculative grab included) is there, and then the entry goes back. gup_fast grabs, then
// re-reads the entry: with both sides seq_cst, either it sees the cleared entry and lets go,
// or the freeze sees its grab.
#include <algorithm>
#include <unordered_set>
#include <vector>

#include "mm/address_space.h"

namespace pinlab {

AddressSpace::MigrateOutcome AddressSpace::migrate_one(uint64_t vpage, bool to_movable,
                                                       bool only_lower, uint64_t* moved_pages) {
  const uint64_t i = vpage >> kPmdShift;
  std::atomic<uint64_t>* slot = &pt_.pmd(i);
  uint64_t e = slot->load(std::memory_order_relaxed);
  if (entry::hugetlb(e)) return migrate_hugetlb(vpage, moved_pages);  // mm/hugetlb.cpp
  if (entry::huge_zero(e)) return MigrateOutcome::kNotMapped;  // never migrated, as the zero page
  uint32_t order = kPmdOrder;
  int32_t expected = 1;  // a PMD leaf's one reference (folio_expected_refs: one per mapping)
  if (!entry::huge(e)) {
    slot = pte_slot(vpage);
    e = slot ? slot->load(std::memory_order_relaxed) : 0;
    if (!entry::present(e) || entry::special(e)) return MigrateOutcome::kNotMapped;
    if (entry::page_cache(e)) {  // page cache: the model has no reverse map to move it by
      stats_.add(MmStat::kMigrationBusy, 1);
      return MigrateOutcome::kBusy;
    }
    order = 0;
    expected = 1;
  }
  const uint64_t head = mem_->folio_head(entry::pfn(e));
  if (mem_->folio_order(head) != order) {  // a PTE-mapped large folio
    if (rules_.migrate_pte_mapped_thp && !only_lower)
      return migrate_pte_mapped_folio(vpage, head, mem_->folio_order(head), to_movable,
                                      moved_pages);
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  if (mem_->maybe_pinned_head(head, order)) {
    note_maybe_pinned_event(head, order, MmStat::kMigrationFalsePositives);
    stats_.add(MmStat::kMigrationRefusals, 1);
    return MigrateOutcome::kPinned;
  }
  uint64_t target = 0;
  const uint64_t below = only_lower ? head : PageArray::kNoLimit;
  if (!mem_->alloc_folio_below(order, to_movable, below, &target).ok()) {
    if (only_lower) return MigrateOutcome::kNotLower;
    // No free block of a PMD THP's order: its pages move one by one (below).
    if (order == kPmdOrder && rules_.migrate_pte_mapped_thp)
      return split_and_migrate_thp(vpage, head, to_movable, moved_pages);
    return MigrateOutcome::kNoMemory;
  }
  // seq_cst exchange, then the seq_cst freeze: the unmap half of the pair (see above).
  const uint64_t old = slot->exchange(0, std::memory_order_seq_cst);
  if (!mem_->try_freeze(head, expected)) {
    slot->store(old, std::memory_order_seq_cst);
    mem_->give_back_unused(target);  // never mapped: back as if never taken
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  mem_->copy_folio_flags(head, target);
  if (expected > 1) (void)mem_->get_page(target, expected - 1);
  // The mapping's references move with it: counted on the target, gone from the old folio.
  mem_->add_mapped_refs(target, expected);
  const uint64_t flags = old & ((uint64_t{1} << entry::kPfnShift) - 1);
  slot->store(entry::make(target, flags), std::memory_order_seq_cst);
  mem_->add_mapped_refs(head, -int64_t(expected));
  mem_->free_frozen_folio(head);
  stats_.add(MmStat::kMigrated, uint64_t{1} << order);
  if (moved_pages != nullptr) *moved_pages = uint64_t{1} << order;
  return MigrateOutcome::kMoved;
}

AddressSpace::MigrateOutcome AddressSpace::split_and_migrate_thp(uint64_t vpage, uint64_t head,
                                                                 bool to_movable,
                                                                 uint64_t* moved_pages) {
  const uint64_t i = vpage >> kPmdShift;
  // Only the leaf's own reference may hold it, or the move would be refused after the split
  // (can_split_folio refuses the split itself then): busy, nothing split. relaxed: a snapshot
  // under the mmap lock; the move's freeze checks again.
  if (mem_->refcount(head) != 1) {
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  // Room for the pieces first: without it nothing is split (kNoMemory, as before). The move
  // takes them below; under the mmap lock only another address space's allocation can come
  // between, and then the split stays, as the kernel's may.
  if (mem_->free_pages_for(to_movable) < kPtesPerTable) return MigrateOutcome::kNoMemory;
  // The split: its PTE table (host memory, before any change) and its references (EOVERFLOW
  // near INT32_MAX: then it stays a leaf, busy).
  pt_.ensure_table(i);
  SplitRefsScope scope(*this);
  if (!take_split_refs(i).ok()) {
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  split_pmd(i);
  return migrate_pte_mapped_folio(vpage, head, kPmdOrder, to_movable, moved_pages);
}

AddressSpace::MigrateOutcome AddressSpace::migrate_pte_mapped_folio(uint64_t vpage, uint64_t head,
                                                                    uint32_t order, bool to_movable,
                                                                    uint64_t* moved_pages) {
  // The PTEs of this mm that map the folio: subpage k lies at vbase + k (an anonymous folio
  // is mapped where it was faulted in; nothing here moves it to other addresses).
  const uint64_t pfn = entry::pfn(pte_slot(vpage)->load(std::memory_order_relaxed));
  const uint64_t n = uint64_t{1} << order, vbase = vpage - (pfn - head);
  std::vector<std::atomic<uint64_t>*> slots;
  std::vector<uint64_t> olds, targets;
  slots.reserve(n);  // host memory first: an exception changes nothing
  olds.reserve(n);
  targets.reserve(n);
  for (uint64_t k = 0; k < n && vbase + k < pages_; ++k) {
    std::atomic<uint64_t>* slot = pte_slot(vbase + k);
    const uint64_t e = slot ? slot->load(std::memory_order_relaxed) : 0;  // we hold the lock
    if (entry::present(e) && !entry::special(e) && !entry::page_cache(e) && entry::pfn(e) == head + k)
      slots.push_back(slot);
  }
  if (mem_->maybe_pinned_head(head, order)) {
    note_maybe_pinned_event(head, order, MmStat::kMigrationFalsePositives);
    stats_.add(MmStat::kMigrationRefusals, 1);
    return MigrateOutcome::kPinned;
  }
  // Mapped whole by this mm: the folio moves whole to a folio of its order, still PTE-mapped,
  // when a block is free (migrate_pages_batch splits first only a partially mapped folio, and
  // otherwise only when the target cannot be allocated: 6.12's folio_test_partially_mapped).
  if (slots.size() == n) {
    uint64_t whole = 0;
    if (mem_->alloc_folio(order, to_movable, &whole).ok())
      return move_pte_mapped_folio_whole(head, order, whole, slots, olds, moved_pages);
  }
  // The pieces' pages, all before the first change (ENOMEM: the ones taken go back unused).
  for (size_t k = 0; k < slots.size(); ++k) {
    uint64_t target = 0;
    if (!mem_->alloc_folio(0, to_movable, &target).ok()) {
      for (const uint64_t t : targets) mem_->give_back_unused(t);
      return MigrateOutcome::kNoMemory;
    }
    targets.push_back(target);
  }
  // seq_cst exchanges, then the seq_cst freeze from exactly our PTEs' references: the unmap
  // half of the pair with gup_fast's grab-then-recheck (see the top).
  for (std::atomic<uint64_t>* slot : slots) olds.push_back(slot->exchange(0, std::memory_order_seq_cst));
  const auto expected = int32_t(slots.size());
  if (!mem_->try_freeze(head, expected)) {
    for (size_t k = 0; k < slots.size(); ++k) slots[k]->store(olds[k], std::memory_order_seq_cst);
    for (const uint64_t t : targets) mem_->give_back_unused(t);
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  constexpr uint64_t kFlagMask = (uint64_t{1} << entry::kPfnShift) - 1;
  for (size_t k = 0; k < slots.size(); ++k) {
    mem_->copy_folio_flags(head, targets[k]);
    mem_->add_mapped_refs(targets[k], 1);
    slots[k]->store(entry::make(targets[k], olds[k] & kFlagMask), std::memory_order_seq_cst);
  }
  mem_->add_mapped_refs(head, -int64_t(expected));
  mem_->free_frozen_folio(head);  // the unmapped subpages go with it
  stats_.add(MmStat::kMigrated, slots.size());
  if (moved_pages != nullptr) *moved_pages = slots.size();
  return MigrateOutcome::kMoved;
}

AddressSpace::MigrateOutcome AddressSpace::move_pte_mapped_folio_whole(
    uint64_t head, uint32_t order, uint64_t target, const std::vector<std::atomic<uint64_t>*>& slots,
    std::vector<uint64_t>& olds, uint64_t* moved_pages) {
  const uint64_t n = uint64_t{1} << order;
  // `olds` has room for n entries already (the caller's, reserved before anything was taken).
  // seq_cst exchanges, then the seq_cst freeze from exactly our PTEs' references: the unmap
  // half of the pair with gup_fast's grab-then-recheck (see the top).
  for (std::atomic<uint64_t>* slot : slots) olds.push_back(slot->exchange(0, std::memory_order_seq_cst));
  if (!mem_->try_freeze(head, int32_t(n))) {
    for (uint64_t k = 0; k < n; ++k) slots[k]->store(olds[k], std::memory_order_seq_cst);
    mem_->give_back_unused(target);
    stats_.add(MmStat::kMigrationBusy, 1);
    return MigrateOutcome::kBusy;
  }
  mem_->copy_folio_flags(head, target);
  (void)mem_->get_page(target, int64_t(n) - 1);  // one reference per PTE (a fresh folio's 1 first)
  mem_->add_mapped_refs(target, int64_t(n));
  constexpr uint64_t kFlagMask = (uint64_t{1} << entry::kPfnShift) - 1;
  for (uint64_t k = 0; k < n; ++k)
    slots[k]->store(entry::make(target + k, olds[k] & kFlagMask), std::memory_order_seq_cst);
  mem_->add_mapped_refs(head, -int64_t(n));
  mem_->free_frozen_folio(head);
  stats_.add(MmStat::kMigrated, n);
  if (moved_pages != nullptr) *moved_pages = n;
  return MigrateOutcome::kMoved;
}

Status AddressSpace::migrate(int64_t start, int64_t count, uint64_t* moved) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // First the folios the range maps, one virtual page each (a folio moves whole: a PMD leaf,
  // or every PTE of a PTE-mapped large folio), then the moves: so that no page a move made is
  // met again.
  std::vector<uint64_t> firsts;
  std::unordered_set<uint64_t> large_seen;
  for (uint64_t v = s; v < e;) {
    const bool leaf = entry::huge(pt_.pmd(v >> kPmdShift).load(std::memory_order_relaxed));
    const uint64_t here = v;
    v = leaf ? ((v >> kPmdShift) + 1) << kPmdShift : v + 1;
    const Translation tr = translate(here);
    if (!tr.present || tr.special) continue;
    const uint64_t head = mem_->folio_head(tr.pfn);
    if (!leaf && !tr.page_cache && mem_->folio_order(head) > 0 && !large_seen.insert(head).second) continue;
    if (leaf && mem_->is_hugetlb(head) && !large_seen.insert(head).second) continue;  // 1 GiB: 512 leaves
    firsts.push_back(here);
  }
  uint64_t pages = 0;
  for (const uint64_t v : firsts) {
    const Translation tr = translate(v);  // stay in the same zone as the page was
    uint64_t moved = 0;
    if (migrate_one(v, mem_->is_movable(tr.pfn), false, &moved) == MigrateOutcome::kMoved)
      pages += moved;
  }
  *moved = pages;
  return Status::Ok();
}

Status AddressSpace::compact(uint64_t* moved) {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // Order-0 pages from the highest PFN down, each to the lowest free page below it; once no
  // free page lies below the highest page left, none lies below the others either.
  std::vector<std::pair<uint64_t, uint64_t>> mapped;  // (pfn, vpage)
  for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
    if (!entry::table(pt_.pmd(i).load(std::memory_order_relaxed))) continue;
    const std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t k = 0; k < kPtesPerTable; ++k) {
      const uint64_t e = t[k].load(std::memory_order_relaxed);
      // Anonymous order-0 pages only: page cache (kShared) is never moved, just skipped.
      if (entry::present(e) && !entry::special(e) && !entry::page_cache(e) &&
          mem_->folio_order(entry::pfn(e)) == 0)
        mapped.emplace_back(entry::pfn(e), (i << kPmdShift) + k);
    }
  }
  std::sort(mapped.rbegin(), mapped.rend());
  uint64_t pages = 0;
  for (const auto& [pfn, vpage] : mapped) {
    const MigrateOutcome out = migrate_one(vpage, mem_->is_movable(pfn), true);
    if (out == MigrateOutcome::kMoved) ++pages;
    if (out == MigrateOutcome::kNotLower || out == MigrateOutcome::kNoMemory) break;
  }
  *moved = pages;
  return Status::Ok();
}

}  // namespace pinlab
