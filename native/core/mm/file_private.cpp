// Private file mappings (MAP_PRIVATE of a page-cache file) and the rule switches that came with
// issue 13's remainder (anon_exclusive, pincount_min_order).
//
// A private file mapping maps the file's page-cache pages read-only (entry::kFile: not
// exclusive, not anonymous). A write fault copies the page to a new private anonymous page
// (COW from the page cache: handle_write_protect_fault never reuses a kFile entry). Pins follow
// the kernel's gup_must_unshare for non-anonymous pages: a short-term read pin pins the
// page-cache page itself; a FOLL_LONGTERM read pin unshares it first in a COW mapping (6.2,
// 84209e87c696, under MmRules::zero_page_unshare), so that the pin holds an anonymous page and
// sees the process's later writes; a write pin write-faults, so it pins the anonymous copy.
// Truncation zaps the page-cache entries and the anonymous copies made from them; a hole punch
// only the page-cache entries (the kernel's unmap_mapping_range with and without even_cows).
// fork: the child maps the same page-cache pages (no early COW: they are not anonymous); the
// anonymous copies follow the anonymous rules.
#include <algorithm>
#include <array>

#include "mm/address_space.h"
#include "pages/scheme.h"

namespace pinlab {

Status check_mm_rules_for(const MmRules& rules, const PageArray& mem) {
  // The pincount boundary is the array's (its counts are kept by it); an address space that
  // says it models another kernel's boundary would report pins the array counts otherwise.
  if (scheme_info(mem.scheme()).pincount == PincountHome::kFirstTail &&
      rules.pincount_min_order != mem.pincount_min_order())
    return Status::BadOption("rules.pincountMinOrder", rules.pincount_min_order,
                             "the page array's pincountMinOrder (31: none, as the 2019 kernels "
                             "counted every folio by the bias)");
  return Status::Ok();
}

Status AddressSpace::map_private(int64_t start, const uint32_t* pfns, uint64_t count, bool write,
                                 bool dirty_tracked) {
  if (Status st = check_range(start, int64_t(count)); !st.ok()) return st;  // count 0 too
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = take_file_pages_locked(start, pfns, count); !st.ok()) return st;
  const auto s = uint64_t(start);
  Region r{count, write, false, false, dirty_tracked};
  r.file_private = true;
  regions_.emplace(s, r);
  // Read-only whatever `write` says: the first write faults and copies.
  const uint64_t flags = entry::kPresent | entry::kFile;
  std::atomic<uint64_t>* t = nullptr;
  for (uint64_t v = s; v < s + count; ++v) {
    if (t == nullptr || (v & (kPtesPerTable - 1)) == 0) t = pte_table(v >> kPmdShift);
    // release: a walker that reads the entry finds the folio with our reference in it.
    t[v & (kPtesPerTable - 1)].store(entry::make(pfns[v - s], flags), std::memory_order_release);
  }
  stats_.add(MmStat::kFaults, count);  // as MAP_POPULATE faults each page in
  return Status::Ok();
}

Status AddressSpace::zap_file(int64_t start, int64_t count, bool even_cows) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  for (uint64_t v = s; v < e; ++v) {
    uint64_t rs = 0;
    const Region* r = region_at(v, &rs);
    if (r == nullptr || !(r->shared || r->file_private)) continue;  // not a file mapping
    std::atomic<uint64_t>* slot = pte_slot(v);  // file regions are PTE-mapped only
    if (slot == nullptr) continue;
    const uint64_t old = slot->load(std::memory_order_relaxed);  // we hold the mmap lock
    if (!entry::present(old) || entry::special(old)) continue;
    if (!entry::page_cache(old) && !(even_cows && r->file_private)) continue;
    // seq_cst: clear first, then put (the unmap half of the pair with gup_fast's recheck).
    slot->store(0, std::memory_order_seq_cst);
    const uint64_t head = mem_->folio_head(entry::pfn(old));
    mem_->add_mapped_refs(head, -1);  // uncounted before the put: refcount >= mapped refs
    mem_->put_folio_refs(head, 1);
  }
  drop_file_held(s, e);  // a shared mapping's held pages: the file dropped them too
  return Status::Ok();
}

Status AddressSpace::unshare_file_page(uint64_t vpage) {
  std::atomic<uint64_t>* slot = pte_slot(vpage);
  const uint64_t e = slot ? slot->load(std::memory_order_relaxed) : 0;  // we hold the lock
  if (!entry::present(e) || !entry::file(e)) return Status::Ok();
  // Outside ZONE_MOVABLE where it can, as unshare_zero_page (the pin would migrate it next).
  uint64_t fresh = 0;
  if (!mem_->alloc_folio(0, false, &fresh).ok()) {
    if (Status st = mem_->alloc_folio(0, true, &fresh); !st.ok()) return st;
  }
  // Exclusive and read-only (FAULT_FLAG_UNSHARE grants no write): the next write fault reuses
  // this very page, which the pin holds.
  return cow_copy_pte(slot, e, false, fresh);
}

bool AddressSpace::reuse_by_mapcount(uint64_t vpage, uint64_t e, bool huge) const {
  const uint64_t pfn = entry::pfn(e), head = mem_->folio_head(pfn);
  const uint32_t order = mem_->folio_order(head);
  const int64_t mapped = mem_->mapped_refs(head);
  if (huge) return mapped == 1;  // the PMD leaf's one: mapped by us alone
  if (order == 0) return mapped == 1;
  // A PTE-mapped large folio: the 2019 kernels reused it when no subpage of it was mapped more
  // than once (reuse_swap_page asked page_trans_huge_map_swapcount, the largest mapcount among
  // the folio's subpages). The model keeps the folio's mapcount: reused when every mapping of
  // it is one of this mm's PTEs, none mapping a subpage twice, which answers the same unless
  // another mm maps only subpages this one does not (then this copies where 2019 reused).
  // First the local look: subpage k at vbase + k, where it was faulted in.
  const uint64_t n = uint64_t{1} << order, off = pfn - head;
  if (off > vpage || n > kPtesPerTable) return false;
  const uint64_t vbase = vpage - off;
  int64_t ours = 0;
  for (uint64_t k = 0; k < n && vbase + k < pages_; ++k) {
    const std::atomic<uint64_t>* slot = pte_slot(vbase + k);
    const uint64_t x = slot ? slot->load(std::memory_order_relaxed) : 0;  // we hold the lock
    ours += entry::present(x) && !entry::special(x) && entry::pfn(x) == head + k;
  }
  if (ours == mapped) return true;
  // Subpages this mm maps elsewhere too (a partial mremap moved them): count this mm's PTEs
  // into the folio, per subpage, over every PTE table (under the mmap lock; 2019 rules only,
  // and only when the local look failed). Reused iff they are all the folio's mappings and
  // none maps a subpage twice: the largest subpage mapcount is 1.
  static_assert(kPtesPerTable == 512, "a PTE-mapped anonymous folio has at most 512 subpages");
  std::array<uint16_t, kPtesPerTable> per_subpage{};
  int64_t all = 0;
  bool twice = false;
  for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
    const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the lock
    if (entry::huge(pe)) {
      const uint64_t p = entry::pfn(pe);
      if (p < head + n && head < p + kPtesPerTable) return false;  // a leaf of it too: copy
      continue;
    }
    if (!entry::table(pe)) continue;
    const std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t k = 0; k < kPtesPerTable; ++k) {
      const uint64_t x = t[k].load(std::memory_order_relaxed);
      if (!entry::present(x) || entry::special(x) || entry::pfn(x) < head || entry::pfn(x) >= head + n)
        continue;
      ++all;
      twice |= ++per_subpage[entry::pfn(x) - head] > 1;
    }
  }
  return all == mapped && !twice;
}

}  // namespace pinlab
