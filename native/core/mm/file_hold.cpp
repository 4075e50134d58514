// A file mapping's hold on its pages: what a shared mapping (of the page cache; hugetlb,
// anonymous or of a file) and a private mapping of a hugetlb file keep of a page that no entry
// maps, so that MADV_DONTNEED zaps only the entries and the next fault maps the same page
// again, as the kernel's fault finds it in the file (address_space.h: file_held_).
//
// The hold is the entry's own reference, kept: zapping a held page changes its mapped count
// and not its refcount, and a walker that grabbed through the entry before it was cleared
// holds a live folio whatever it finds on its recheck. Host memory first: every node of a zap
// is allocated before the first entry changes, and moves between maps splice nodes.
#include <algorithm>
#include <map>

#include "mm/address_space.h"

namespace pinlab {

namespace {
// A hugetlb leaf that maps its file's page (not a private copy of it).
bool maps_hugetlb_file_page(uint64_t pe) {
  return entry::hugetlb(pe) && (entry::shared(pe) || (pe & entry::kFilePage) != 0);
}
}  // namespace

void AddressSpace::collect_hugetlb_file_pages(uint64_t v, uint64_t end, uint32_t order,
                                              std::map<uint64_t, uint64_t>* out) const {
  // v is a page boundary (check_hugetlb_cut), so each step is a page's first leaf.
  for (; v < end; v += uint64_t{1} << order) {
    const uint64_t pe = pt_.pmd(v >> kPmdShift).load(std::memory_order_relaxed);  // the lock
    if (maps_hugetlb_file_page(pe)) out->emplace_hint(out->end(), v, mem_->folio_head(entry::pfn(pe)));
  }
}

void AddressSpace::collect_shared_file_ptes(uint64_t v, uint64_t end,
                                            std::map<uint64_t, uint64_t>* out) const {
  for (; v < end; ++v) {
    const std::atomic<uint64_t>* slot = pte_slot(v);  // file regions are PTE-mapped only
    const uint64_t e = slot ? slot->load(std::memory_order_relaxed) : 0;  // we hold the lock
    if (entry::present(e) && !entry::special(e) && entry::shared(e))
      out->emplace_hint(out->end(), v, entry::pfn(e));
  }
}

void AddressSpace::clear_held_entry(uint64_t v, uint64_t pfn) {
  const uint64_t head = mem_->folio_head(pfn);
  // seq_cst: the unmap half of the pair with gup_fast's recheck (the reference stays, held).
  if (entry::hugetlb(pt_.pmd(v >> kPmdShift).load(std::memory_order_relaxed))) {
    const uint64_t leaves = uint64_t{1} << (mem_->folio_order(head) - kPmdOrder);
    for (uint64_t k = 0; k < leaves; ++k) pt_.pmd((v >> kPmdShift) + k).store(0, std::memory_order_seq_cst);
  } else {
    pte_slot(v)->store(0, std::memory_order_seq_cst);
  }
  mem_->add_mapped_refs(head, -1);
}

void AddressSpace::zap_file_pages(uint64_t s, uint64_t e) {
  std::map<uint64_t, uint64_t> fresh;  // host memory first: every node, then the entries
  for (uint64_t v = s; v < e;) {
    uint64_t rs = 0;
    const Region* r = region_at(v, &rs);  // validated: the range lies in regions
    const uint64_t end = std::min(e, rs + r->count);
    if (r->hugetlb_order != 0 && (r->shared || r->hugetlb_file))
      collect_hugetlb_file_pages(v, end, r->hugetlb_order, &fresh);
    else if (r->shared) collect_shared_file_ptes(v, end, &fresh);
    v = end;
  }
  for (const auto& [v, pfn] : fresh) clear_held_entry(v, pfn);
  file_held_.merge(fresh);  // splices the nodes: no allocation
  // A page held already where an entry mapped one cannot happen (a fault maps a held page by
  // moving its hold into the entry); were it ever so, the entry's reference would stay in
  // `fresh`: given back, never leaked.
  for (const auto& [v, pfn] : fresh) mem_->put_folio_refs(mem_->folio_head(pfn), 1);
}

Status AddressSpace::refault_shared_file_pte(uint64_t vpage, const Region& r) {
  const auto it = file_held_.find(vpage);
  if (it == file_held_.end()) return Status::Fail(Code::kEFAULT, Reason::kSharedNoPage, int64_t(vpage));
  std::atomic<uint64_t>* t = pte_table(vpage >> kPmdShift);  // host memory first
  const uint64_t pfn = it->second;
  file_held_.erase(it);
  mem_->add_mapped_refs(mem_->folio_head(pfn), 1);  // the held reference is the entry's again
  // As map_shared: a dirty-tracked file's page comes back read-only (its write faults again).
  const uint64_t flags = entry::kPresent | entry::kShared |
                         (shared_pte_writable(r.write, r.dirty_tracked) ? entry::kWritable : 0) |
                         (r.dirty_tracked ? 0 : entry::kNoDirtyTracking);
  // seq_cst (a release at least): publishes the page, its reference held, with the entry.
  t[vpage & (kPtesPerTable - 1)].store(entry::make(pfn, flags), std::memory_order_seq_cst);
  stats_.add(MmStat::kFaults, 1);
  return Status::Ok();
}

Status AddressSpace::held_pages(int64_t start, int64_t count, std::vector<uint32_t>* pfns) const {
  pfns->clear();
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  for (auto it = file_held_.lower_bound(s); it != file_held_.end() && it->first < e; ++it)
    pfns->push_back(uint32_t(it->second));  // std::bad_alloc: the addon's ENOMEM; PFNs < 2^31
  return Status::Ok();
}

void AddressSpace::drop_file_held(uint64_t start, uint64_t end) {
  auto it = file_held_.lower_bound(start);
  for (; it != file_held_.end() && it->first < end; it = file_held_.erase(it))
    mem_->put_folio_refs(mem_->folio_head(it->second), 1);
}

void AddressSpace::move_file_held(uint64_t src, uint64_t dst, uint64_t n) {
  std::map<uint64_t, uint64_t> moved;  // nodes spliced, never allocated
  for (auto it = file_held_.lower_bound(src); it != file_held_.end() && it->first < src + n;) {
    auto node = file_held_.extract(it++);
    node.key() = dst + (node.key() - src);
    moved.insert(std::move(node));
  }
  file_held_.merge(moved);
  // The destination is empty of holds (mremap clears it first): nothing is left in `moved`.
  for (const auto& [v, pfn] : moved) mem_->put_folio_refs(mem_->folio_head(pfn), 1);
}

std::vector<std::pair<uint64_t, uint64_t>> AddressSpace::file_holds() const {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  return {file_held_.begin(), file_held_.end()};
}

std::map<uint64_t, uint64_t> AddressSpace::file_held_for_child() const {
  std::map<uint64_t, uint64_t> held;
  for (const auto& [v, pfn] : file_held_)
    if (forks_at(v)) held.emplace_hint(held.end(), v, pfn);
  return held;
}

Status AddressSpace::take_file_held(const std::map<uint64_t, uint64_t>& held) {
  for (auto it = held.begin(); it != held.end(); ++it) {
    if (Status st = mem_->get_page(it->second, 1); !st.ok()) {
      for (auto j = held.begin(); j != it; ++j) mem_->put_folio_refs(mem_->folio_head(j->second), 1);
      return st;
    }
  }
  return Status::Ok();
}

}  // namespace pinlab
