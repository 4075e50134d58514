// MADV_COLLAPSE and khugepaged: a 2 MiB-aligned stretch of anonymous memory mapped by PTEs
// (4 KiB pages, PTE-mapped THPs, mTHPs, zero-page and empty entries) becomes one PMD-mapped
// THP, a new folio copied from the old pages (anonymous collapse always copies). The old pages
// lose this mm's mappings; a folio mapped elsewhere too (another mm after fork, another part
// of this one after mremap) lives on there.
//
// The check is the kernel's (mm/khugepaged.c, is_refcount_suitable / the expected refcount):
// every folio of the stretch must hold no reference beyond its mappings, refcount == mapped
// references. So a pin or a FOLL_GET reference refuses the collapse exactly; the kernel does
// not ask folio_maybe_dma_pinned() here. The scheme's "maybe pinned" answer only classifies
// the refusals (MmStat::kCollapseMaybePinned, and the false positives among them through
// note_maybe_pinned_event): the pages a diagnosis that trusts it would blame on pins.
//
// Against the lockless gup_fast walk (migration's pair): the entries are cleared (seq_cst),
// then a seq_cst fence, then the counts are read again; a walker grabs (seq_cst), then
// rechecks its entry (seq_cst). Either the walker sees the cleared entry and lets go, or the
// second read sees its grab: then the entries go back and the call fails with EAGAIN (the
// kernel's transient SCAN_PAGE_COUNT). No reference is taken or given up before that point.
//
// Swap entries (MADV_PAGEOUT, swap.cpp) in a stretch are swapped in by the collapse, as the
// kernel's __collapse_huge_page_swapin does: the new THP holds their contents, and each entry
// lets go of its slot at the commit (free_swap_entry: the slot's swap-cache page goes with its
// last entry). A slot whose swap-cache page holds references beyond the swap cache's and its
// mappings' (FOLL_GET) turns the stretch away like a present page would (kCollapseBusy).
// khugepaged takes a stretch with at most kMaxPtesSwap swap entries (khugepaged/max_ptes_swap's
// default); MADV_COLLAPSE takes any number. Before the commit nothing touches the swap space.
#include <algorithm>
#include <atomic>

#include "mm/address_space.h"

namespace pinlab {

namespace {
constexpr uint64_t pmd_base(uint64_t pmd_index) { return pmd_index << kPmdShift; }
// khugepaged/max_ptes_swap's default (HPAGE_PMD_NR / 8): swap entries a khugepaged stretch may hold.
constexpr uint64_t kMaxPtesSwap = kPtesPerTable / 8;
}  // namespace

struct AddressSpace::CollapsePlan {
  uint64_t pmd_index = 0;
  bool writable = false;           // the region's write access: the new leaf's
  uint64_t head = 0;               // the new THP, once allocated
  std::vector<uint64_t> entries;   // the old PTEs (kPtesPerTable, 0 where empty)
  std::vector<uint64_t> folios;    // the distinct old folio heads (zero page excluded)
};

bool AddressSpace::swap_cache_page_busy(uint64_t e) const {
  std::lock_guard<std::mutex> swap_lock(swap_->lock());
  uint64_t pfn = 0;
  if (!swap_->cache_page(uint32_t(entry::pfn(e)), &pfn)) return false;
  const uint64_t head = mem_->folio_head(pfn);
  // The swap cache's references count as mapped ones (swap.h): anything more is someone's.
  return int64_t(mem_->refcount(head)) != mem_->mapped_refs(head);
}

AddressSpace::CollapseCheck AddressSpace::check_collapse(uint64_t i, const KhugepagedArgs* limits,
                                                         CollapsePlan* plan) {
  const uint64_t base = pmd_base(i);
  // The stretch lies in anonymous private regions of one kind (Linux: one VMA).
  uint64_t rs = 0;
  const Region* first = region_at(base, &rs);
  if (first == nullptr || first->shared || first->file_private || first->hugetlb_order != 0 ||
      (limits != nullptr && !first->huge))
    return CollapseCheck::kNotEligible;
  for (uint64_t v = rs + first->count; v < base + kPtesPerTable;) {
    uint64_t here = 0;
    const Region* r = region_at(v, &here);
    if (r == nullptr || r->write != first->write || r->huge != first->huge || r->shared ||
        r->file_private || r->hugetlb_order != 0 ||
        r->dontfork != first->dontfork)
      return CollapseCheck::kNotEligible;
    v = here + r->count;
  }
  const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the mmap lock
  if (entry::huge(pe)) return CollapseCheck::kMapped;
  if (!entry::table(pe)) return CollapseCheck::kNothing;
  const std::atomic<uint64_t>* t = pt_.table(i);
  plan->pmd_index = i;
  plan->writable = first->write;
  plan->entries.assign(kPtesPerTable, 0);
  plan->folios.clear();
  uint64_t none = 0, shared = 0, present = 0, swapped = 0, swap_busy = 0;
  bool writable = false;
  for (uint64_t k = 0; k < kPtesPerTable; ++k) {
    const uint64_t e = t[k].load(std::memory_order_relaxed);
    plan->entries[k] = e;
    if (entry::swap(e)) {  // swapped in by the collapse (see the top)
      ++swapped;
      swap_busy += swap_cache_page_busy(e);
      continue;
    }
    if (!entry::present(e)) {
      ++none;
      continue;
    }
    ++present;
    if (entry::special(e)) {  // the zero page counts as empty (none_or_zero)
      ++none;
      continue;
    }
    writable |= entry::writable(e);
    const uint64_t head = mem_->folio_head(entry::pfn(e));
    if (plan->folios.empty() || plan->folios.back() != head) plan->folios.push_back(head);
  }
  // khugepaged/max_ptes_shared counts the entries whose folio another mm maps too (the kernel's
  // folio_maybe_mapped_shared, page_mapcount > 1 before it): by the mappings, not by the
  // exclusive bit, which fork clears for good (a parent whose child exited maps every page
  // alone again). Mappings beyond this stretch's own entries of the folio count as another mm's.
  if (limits != nullptr) {
    std::vector<uint64_t> heads;  // the stretch's entries' folios, sorted: its mappings of each
    heads.reserve(kPtesPerTable);
    for (const uint64_t e : plan->entries)
      if (entry::present(e) && !entry::special(e)) heads.push_back(mem_->folio_head(entry::pfn(e)));
    std::sort(heads.begin(), heads.end());
    for (const uint64_t e : plan->entries) {
      if (!entry::present(e) || entry::special(e) || entry::exclusive(e)) continue;
      const uint64_t head = mem_->folio_head(entry::pfn(e));
      const auto [lo, hi] = std::equal_range(heads.begin(), heads.end(), head);
      shared += mem_->mapped_refs(head) > int64_t(hi - lo);
    }
  }
  if (present == 0 && swapped == 0) return CollapseCheck::kNothing;
  if (limits != nullptr && (none > uint64_t(limits->max_ptes_none) || swapped > kMaxPtesSwap ||
                            shared > uint64_t(limits->max_ptes_shared) || !writable))
    return CollapseCheck::kLimits;
  std::sort(plan->folios.begin(), plan->folios.end());
  plan->folios.erase(std::unique(plan->folios.begin(), plan->folios.end()), plan->folios.end());
  // The refcount check, folio by folio; every refused folio is classified (not just the first),
  // in pages of this stretch, so that the statistics count what the check turned away.
  bool busy = swap_busy > 0;
  stats_.add(MmStat::kCollapseBusy, swap_busy);
  for (const uint64_t head : plan->folios) {
    if (int64_t(mem_->refcount(head)) == mem_->mapped_refs(head)) continue;
    busy = true;
    uint64_t pages = 0;
    for (const uint64_t e : plan->entries)
      pages += entry::present(e) && !entry::special(e) && mem_->folio_head(entry::pfn(e)) == head;
    const uint32_t order = mem_->folio_order(head);
    if (mem_->maybe_pinned_head(head, order)) {
      stats_.add(MmStat::kCollapseMaybePinned, pages);
      note_maybe_pinned_event(head, order, MmStat::kCollapseFalsePositives, pages);
    } else {
      stats_.add(MmStat::kCollapseBusy, pages);
    }
  }
  if (busy) return CollapseCheck::kBusy;
  // No writable entry (read-only region, entries fork write-protected, only zero-page or swap
  // entries): the kernel's scan answers SCAN_PAGE_RO after its per-page checks, for
  // MADV_COLLAPSE too (EINVAL); khugepaged's limits above already turned it away.
  return writable ? CollapseCheck::kOk : CollapseCheck::kReadOnly;
}

Status AddressSpace::commit_collapses(std::vector<CollapsePlan>& plans) {
  // 1. The new THPs (ENOMEM: the ones taken go back unused).
  for (size_t p = 0; p < plans.size(); ++p) {
    if (Status st = mem_->alloc_folio(kPmdOrder, true, &plans[p].head); !st.ok()) {
      for (size_t q = 0; q < p; ++q) mem_->give_back_unused(plans[q].head);
      return Status::Fail(Code::kENOMEM, Reason::kNoFreeBlock, int64_t(kPmdOrder));
    }
  }
  // 2. Clear the old entries (the unmap half of the pair with gup_fast, see the top).
  for (CollapsePlan& plan : plans) {
    std::atomic<uint64_t>* t = pt_.table(plan.pmd_index);
    for (uint64_t k = 0; k < kPtesPerTable; ++k)
      if (plan.entries[k] != 0) t[k].store(0, std::memory_order_seq_cst);
  }
  // seq_cst fence: orders the clears above before the count reads below against gup_fast's
  // seq_cst grab-then-recheck (a grab that precedes the fence is seen by the reads; one that
  // follows it rechecks after the clears). ThreadSanitizer does not model fences (-Wtsan):
  // it neither needs nor checks this pairing, the race cases run under it all the same.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // 3. No reference appeared meanwhile (a racing grab): else everything goes back as it was.
  for (const CollapsePlan& plan : plans) {
    for (const uint64_t head : plan.folios) {
      if (int64_t(mem_->refcount(head)) == mem_->mapped_refs(head)) continue;
      for (CollapsePlan& undo : plans) {
        std::atomic<uint64_t>* t = pt_.table(undo.pmd_index);
        for (uint64_t k = 0; k < kPtesPerTable; ++k)
          if (undo.entries[k] != 0) t[k].store(undo.entries[k], std::memory_order_seq_cst);
        mem_->give_back_unused(undo.head);
      }
      return Status{Code::kEAGAIN, Reason::kFlags,
                    "collapse: a page gained a reference during the collapse (a racing gup); "
                    "nothing changed, try again"};
    }
  }
  // 4. Commit: the new leaf maps the copy; the old pages lose these mappings (clear-then-put).
  for (CollapsePlan& plan : plans) {
    // The leaf's one reference: the fresh folio's (collapse_huge_page maps it with refcount 1).
    mem_->add_mapped_refs(plan.head, 1);
    for (const uint64_t old : plan.folios) mem_->copy_folio_flags(old, plan.head);
    const uint64_t w = plan.writable ? entry::kWritable : 0;
    // seq_cst (a release at least): publishes the new folio with the leaf.
    pt_.pmd(plan.pmd_index)
        .store(entry::make(plan.head, entry::kPresent | entry::kHuge | entry::kExclusive | w),
               std::memory_order_seq_cst);
    for (const uint64_t e : plan.entries) {
      if (entry::swap(e)) free_swap_entry(e);  // its contents are in the new THP
      if (!entry::present(e) || entry::special(e)) continue;
      const uint64_t head = mem_->folio_head(entry::pfn(e));
      mem_->add_mapped_refs(head, -1);
      mem_->put_folio_refs(head, 1);
    }
    // A leaf lies in one region (see split_region_at): the stretch's regions, of one kind,
    // merge (as the kernel's VMAs of one kind are one).
    const uint64_t base = pmd_base(plan.pmd_index);
    auto it = regions_.upper_bound(base);
    --it;  // the region at base (checked)
    for (auto next = std::next(it); next != regions_.end() &&
                                    next->first == it->first + it->second.count &&
                                    next->first < base + kPtesPerTable;
         next = std::next(it)) {
      it->second.count += next->second.count;
      regions_.erase(next);
    }
    stats_.add(MmStat::kCollapses, 1);
  }
  return Status::Ok();
}

Status AddressSpace::collapse(int64_t start, int64_t count, uint64_t* collapsed) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  for (uint64_t v = s; v < e;) {  // madvise: the whole range mapped (ENOMEM), anonymous
    uint64_t rs = 0;
    const Region* r = region_at(v, &rs);
    if (r == nullptr) return Status::Fail(Code::kENOMEM, Reason::kNoMapping, int64_t(v));
    if (r->shared)
      return Status{Code::kEINVAL, Reason::kFlags,
                    "madvise collapse of a shared file mapping is not modelled (anonymous memory only)"};
    if (r->file_private)  // its page-cache pages are never collapsed here
      return Status{Code::kEINVAL, Reason::kFlags,
                    "madvise collapse of a private file mapping is not modelled (anonymous memory only)"};
    if (r->hugetlb_order != 0)  // hugetlb pages are huge already: the kernel answers EINVAL
      return Status{Code::kEINVAL, Reason::kHugetlb,
                    "madvise collapse of a hugetlb mapping (EINVAL, as the kernel answers)"};
    v = rs + r->count;
  }
  // The 2 MiB stretches wholly inside the range (none: nothing to do, as the kernel answers).
  const uint64_t first = (s + kPtesPerTable - 1) >> kPmdShift, last = e >> kPmdShift;
  std::vector<CollapsePlan> plans;
  Status refused = Status::Ok();
  for (uint64_t i = first; i < last; ++i) {
    CollapsePlan plan;
    switch (check_collapse(i, nullptr, &plan)) {
      case CollapseCheck::kOk:
        plans.push_back(std::move(plan));
        break;
      case CollapseCheck::kMapped:
        break;  // already a PMD-mapped THP: counts as done
      case CollapseCheck::kBusy:
        if (refused.ok() || refused.code != Code::kEAGAIN)
          refused = Status{Code::kEAGAIN, Reason::kFlags,
                           "madvise collapse: a page has references beyond its mappings (a pin or "
                           "FOLL_GET reference); nothing changed"};
        break;
      case CollapseCheck::kReadOnly:
        if (refused.ok())
          refused = Status{Code::kEINVAL, Reason::kFlags,
                           "madvise collapse: a 2 MiB stretch has no writable entry (the kernel's "
                           "SCAN_PAGE_RO); nothing changed"};
        break;
      case CollapseCheck::kNothing:
        if (refused.ok())
          refused = Status{Code::kEINVAL, Reason::kFlags,
                           "madvise collapse: a 2 MiB stretch has nothing mapped; nothing changed"};
        break;
      default:
        if (refused.ok())
          refused = Status{Code::kEINVAL, Reason::kFlags,
                           "madvise collapse: a 2 MiB stretch crosses mappings of different "
                           "kinds; nothing changed"};
        break;
    }
  }
  if (!refused.ok()) return refused;
  if (Status st = commit_collapses(plans); !st.ok()) return st;
  *collapsed = plans.size();
  return Status::Ok();
}

Status AddressSpace::khugepaged(const KhugepagedArgs& args, uint64_t* collapsed,
                                uint64_t* scanned) {
  if (args.max_ptes_none < 0 || args.max_ptes_none > int64_t(kPtesPerTable) - 1)
    return Status::BadOption("maxPtesNone", args.max_ptes_none, "an integer in 0..511");
  if (args.max_ptes_shared < 0 || args.max_ptes_shared > int64_t(kPtesPerTable))
    return Status::BadOption("maxPtesShared", args.max_ptes_shared, "an integer in 0..512");
  std::lock_guard<std::mutex> lock(mmap_lock_);
  uint64_t made = 0, seen = 0;
  if (pmd_thp_enabled()) {
    std::vector<CollapsePlan> one(1);
    for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
      if (!entry::table(pt_.pmd(i).load(std::memory_order_relaxed))) continue;
      if (pmd_base(i) + kPtesPerTable > pages_) break;
      const CollapseCheck c = check_collapse(i, &args, &one[0]);
      if (c == CollapseCheck::kNotEligible) continue;
      ++seen;
      // Each stretch on its own: ENOMEM or a racing grab leaves it as it was.
      if (c == CollapseCheck::kOk && commit_collapses(one).ok()) ++made;
    }
  }
  *collapsed = made;
  *scanned = seen;
  return Status::Ok();
}

}  // namespace pinlab
