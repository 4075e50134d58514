// AddressSpace: regions, faults, munmap/mprotect, fork. The walk of gup is in gup.cpp and
// migration in migrate.cpp.
#include "mm/address_space.h"

#include <algorithm>
#include <cstdlib>

#include "base/scan.h"

namespace pinlab {

namespace {
constexpr uint64_t pmd_base(uint64_t pmd_index) { return pmd_index << kPmdShift; }
constexpr uint64_t pte_index(uint64_t vpage) { return vpage & (kPtesPerTable - 1); }

// How many entries from p[0] (at most n) are consecutive subpages of p[0]'s folio: the pages
// one reference operation covers.
uint64_t folio_run(const PageArray& mem, const uint32_t* p, uint64_t n) {
  const uint64_t pfn = p[0], head = mem.folio_head(pfn);
  const uint64_t limit = std::min(n, head + (uint64_t{1} << mem.folio_order(head)) - pfn);
  return limit > 1 ? consecutive_run(p, limit, uint32_t(pfn)) : 1;  // PFNs < 2^31
}
}  // namespace

AddressSpace::AddressSpace(std::shared_ptr<PageArray> mem, uint64_t pages, const MmRules& rules,
                           uint32_t thp_orders)
    : mem_(std::move(mem)), pages_(pages), rules_(rules), thp_orders_(thp_orders), pt_(pages) {}

Status check_thp_orders(int64_t orders) {
  if (orders < 0 || (uint64_t(orders) & ~uint64_t(kAllThpOrders)) != 0)
    return Status::BadOption("thpOrders", orders, "a set of orders in 2..9");
  return Status::Ok();
}

Status check_mm_rules(const MmRules& rules) {
  const auto files = uint8_t(rules.longterm_file_writes);
  if (files > uint8_t(LongtermFileWrites::kAllow))
    return Status::BadOption("longtermFileWrites", files, "'refuse' or 'allow'");
  if (rules.pincount_min_order < 1 || rules.pincount_min_order > MmRules::kNoPincountOrder)
    return Status::BadOption("pincountMinOrder", rules.pincount_min_order,
                             "an integer in 1..31 (31: none)");
  return Status::Ok();
}

Status AddressSpace::create(std::shared_ptr<PageArray> mem, int64_t pages,
                            std::unique_ptr<AddressSpace>* out) {
  // Rules left unstated: mainline's switches, and the pincount boundary the array counts by.
  MmRules rules = MmRules::mainline();
  if (mem) rules.pincount_min_order = uint8_t(std::min<uint32_t>(mem->pincount_min_order(),
                                                                 MmRules::kNoPincountOrder));
  return create(std::move(mem), pages, rules, out);
}

Status AddressSpace::create(std::shared_ptr<PageArray> mem, int64_t pages, const MmRules& rules,
                            std::unique_ptr<AddressSpace>* out) {
  return create(std::move(mem), pages, rules, kPmdThpOrders, out);
}

Status AddressSpace::create(std::shared_ptr<PageArray> mem, int64_t pages, const MmRules& rules,
                            int64_t thp_orders, std::unique_ptr<AddressSpace>* out) {
  return create(std::move(mem), pages, rules, thp_orders, kDefaultSwap, out);
}

Status AddressSpace::create(std::shared_ptr<PageArray> mem, int64_t pages, const MmRules& rules,
                            int64_t thp_orders, int64_t swap_pages,
                            std::unique_ptr<AddressSpace>* out) {
  if (pages < 1 || uint64_t(pages) > kMaxPages)
    return Status::BadOption("pages", pages, "an integer in 1..2147483648");
  if (Status st = check_mm_rules(rules); !st.ok()) return st;
  if (Status st = check_thp_orders(thp_orders); !st.ok()) return st;
  if (mem) {
    if (Status st = check_mm_rules_for(rules, *mem); !st.ok()) return st;
  }
  if (swap_pages == kDefaultSwap) swap_pages = pages;
  if (swap_pages < 0 || uint64_t(swap_pages) > kMaxPages)
    return Status::BadOption("swapPages", swap_pages, "an integer in 0..2147483648");
  auto swap = std::make_shared<SwapSpace>(uint64_t(swap_pages));  // small: its arrays come later
  out->reset(new AddressSpace(std::move(mem), uint64_t(pages), rules, uint32_t(thp_orders)));
  (*out)->swap_ = std::move(swap);
  return Status::Ok();
}

AddressSpace::~AddressSpace() {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  drop_hugetlb_reservations(0, pages_);
  unmap_range_and_holds(0, pages_);
}

Status AddressSpace::check_range(int64_t start, int64_t count) const {
  if (count < 1) return Status::Fail(Code::kEINVAL, Reason::kBadCount, count);
  if (start < 0 || uint64_t(start) >= pages_ || uint64_t(count) > pages_ - uint64_t(start))
    return Status::Fail(Code::kEINVAL, Reason::kVaOutOfRange, start, count);
  return Status::Ok();
}

const Region* AddressSpace::region_at(uint64_t vpage, uint64_t* region_start) const {
  auto it = regions_.upper_bound(vpage);
  if (it == regions_.begin()) return nullptr;
  --it;
  if (vpage >= it->first + it->second.count) return nullptr;
  *region_start = it->first;
  return &it->second;
}

void AddressSpace::split_region_at(uint64_t vpage) {
  uint64_t rs = 0;
  const Region* r = region_at(vpage, &rs);
  if (r == nullptr || rs == vpage) return;
  // A PMD leaf never crosses a region boundary (the kernel's vma_adjust_trans_huge): split the
  // leaf the new boundary cuts, so that every leaf lies in one region and has that region's
  // protection. gup_fast, which cannot look at regions, may then take a leaf's pages in one
  // grab, and a write fault that makes a leaf writable makes only its region's pages so.
  split_pmd_across(vpage);
  Region upper = *r;
  upper.count = rs + r->count - vpage;
  regions_[rs].count = vpage - rs;
  regions_.emplace(vpage, upper);
}

uint64_t AddressSpace::regions() const {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  return regions_.size();
}

std::atomic<uint64_t>* AddressSpace::pte_slot(uint64_t vpage) const {
  const uint64_t i = vpage >> kPmdShift;
  if (!entry::table(pt_.pmd(i).load(std::memory_order_acquire))) return nullptr;
  std::atomic<uint64_t>* t = pt_.table(i);
  return t ? t + pte_index(vpage) : nullptr;
}

Translation AddressSpace::translate(uint64_t vpage) const {
  Translation tr;
  if (vpage >= pages_) return tr;
  // acquire: a snapshot that sees the entries a table's publication covers.
  const uint64_t pe = pt_.pmd(vpage >> kPmdShift).load(std::memory_order_acquire);
  uint64_t e = 0;
  if (entry::huge(pe)) {
    e = pe;
    tr.pfn = entry::pfn(pe) + pte_index(vpage);
    tr.huge = true;
  } else if (std::atomic<uint64_t>* slot = pte_slot(vpage)) {
    e = slot->load(std::memory_order_acquire);
    tr.pfn = entry::pfn(e);
  }
  tr.present = entry::present(e);
  if (!tr.present) return Translation{};
  tr.writable = entry::writable(e);
  tr.special = entry::special(e);
  tr.shared = entry::shared(e);
  tr.page_cache = entry::page_cache(e);
  return tr;
}

uint64_t AddressSpace::mapped_pages() const {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  uint64_t n = 0;
  for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
    const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);
    if (entry::huge(pe)) n += kPtesPerTable;
    if (!entry::table(pe)) continue;
    const std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t k = 0; k < kPtesPerTable; ++k)
      n += entry::present(t[k].load(std::memory_order_relaxed));
  }
  return n;
}

// ---- mmap ------------------------------------------------------------------------------------

Status AddressSpace::check_unmapped(int64_t start, int64_t count) const {
  const auto s = uint64_t(start), e = s + uint64_t(count);
  // Overlap: the first region at or after start, or the one before it reaching into start.
  uint64_t rs = 0;
  auto next = regions_.lower_bound(s);
  if (region_at(s, &rs) != nullptr || (next != regions_.end() && next->first < e))
    return Status::Fail(Code::kEINVAL, Reason::kRegionOverlap, start, count);
  return Status::Ok();
}

Status AddressSpace::check_can_map(int64_t start, int64_t count) const {
  if (Status st = check_range(start, count); !st.ok()) return st;
  std::lock_guard<std::mutex> lock(mmap_lock_);
  return check_unmapped(start, count);
}

Status AddressSpace::mmap(const MmapArgs& a) {
  if (Status st = check_range(a.start, a.count); !st.ok()) return st;
  const auto start = uint64_t(a.start), end = start + uint64_t(a.count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = check_unmapped(a.start, a.count); !st.ok()) return st;
  regions_.emplace(start, Region{uint64_t(a.count), a.write, a.huge});
  if (!a.populate) return Status::Ok();
  if (Status st = populate(start, end, a.write, a.huge); !st.ok()) {
    regions_.erase(start);
    return st;
  }
  return Status::Ok();
}

Status AddressSpace::populate(uint64_t start, uint64_t end, bool write, bool huge) {
  // MAP_POPULATE, all or nothing: every folio is allocated before the first entry is written,
  // and an allocation that fails gives back the ones before it unused (nobody saw them: no
  // statistic moves, no page stays taken). Then the entries, as the faults would have made
  // them: a PMD leaf for each whole 2 MiB stretch of a huge region while order-9 blocks last,
  // else a page per 4 KiB (the zero page for a read-only region).
  auto leaf_at = [&](uint64_t v) {
    return huge && pmd_thp_enabled() && pte_index(v) == 0 && v + kPtesPerTable <= end;
  };
  std::vector<uint32_t> heads;  // what was allocated, in address order (PFNs < 2^31)
  std::vector<bool> leaves;     // per 2 MiB stretch from start's: mapped by a leaf
  // Per stretch: a read-only one the huge zero folio maps if it can be had (its PTE table and
  // the zero page made as for 4 KiB zero PTEs, the fallback), as read faults would.
  std::vector<bool> zero_leaves;
  const bool read_zero_leaves = !write && rules_.huge_zero_page;
  auto give_back = [&] {
    for (uint32_t head : heads) mem_->give_back_unused(head);
  };
  bool need_zero = false;
  try {  // host memory (this list, PTE tables) fails by exception: give back, pass it on
    heads.reserve(std::min(end - start, mem_->free_pages()));
    leaves.resize(((end - 1) >> kPmdShift) - (start >> kPmdShift) + 1);
    zero_leaves.resize(leaves.size());
    for (uint64_t v = start; v < end;) {
      uint64_t head = 0;
      if (leaf_at(v) && read_zero_leaves) zero_leaves[(v >> kPmdShift) - (start >> kPmdShift)] = true;
      if (leaf_at(v) && !read_zero_leaves && mem_->alloc_folio(kPmdOrder, true, &head).ok()) {
        heads.push_back(uint32_t(head));
        leaves[(v >> kPmdShift) - (start >> kPmdShift)] = true;
        v += kPtesPerTable;
        continue;
      }
      if (pte_index(v) == 0 || v == start) pt_.ensure_table(v >> kPmdShift);  // unlinked yet
      if (!write) {
        need_zero = true;  // a read fault of anonymous memory maps the shared zero page
      } else if (Status st = mem_->alloc_folio(0, true, &head); !st.ok()) {
        give_back();
        return st;
      } else {
        heads.push_back(uint32_t(head));
      }
      ++v;
    }
  } catch (...) {
    give_back();
    throw;
  }
  // Last: once made they stay (never freed), so nothing may fail after them. The huge zero
  // folio first (it makes the zero page before itself); none free: the zero page's PTEs.
  uint64_t huge_zero = 0;
  const bool huge_zero_ok =
      std::find(zero_leaves.begin(), zero_leaves.end(), true) != zero_leaves.end() &&
      mem_->huge_zero_folio(&huge_zero).ok();
  uint64_t zero = 0;
  if (need_zero) {
    if (Status st = mem_->zero_page(&zero); !st.ok()) {
      give_back();
      return st;
    }
  }
  const uint64_t w = write ? entry::kWritable : 0;
  std::atomic<uint64_t>* t = nullptr;
  size_t k = 0;
  for (uint64_t v = start; v < end;) {
    const uint64_t i = v >> kPmdShift;
    if (huge_zero_ok && zero_leaves[i - (start >> kPmdShift)]) {
      // seq_cst (a release at least): as try_map_huge_zero. Its PTE table stays unlinked.
      pt_.pmd(i).store(entry::make(huge_zero, entry::kPresent | entry::kHuge | entry::kSpecial),
                       std::memory_order_seq_cst);
      v += kPtesPerTable;
      continue;
    }
    if (leaves[i - (start >> kPmdShift)]) {
      const uint64_t head = heads[k++];
      mem_->add_mapped_refs(head, 1);  // the leaf's one reference: the fresh folio's
      // seq_cst (a release at least): publishes the new folio with the entry.
      pt_.pmd(i).store(entry::make(head, entry::kPresent | entry::kHuge | entry::kExclusive | w),
                       std::memory_order_seq_cst);
      v += kPtesPerTable;
      continue;
    }
    if (t == nullptr || pte_index(v) == 0) t = pte_table(i);  // allocated above: links it
    uint64_t e = entry::make(zero, entry::kPresent | entry::kSpecial);
    if (write) {
      const uint64_t pfn = heads[k++];
      mem_->add_mapped_refs(pfn, 1);
      e = entry::make(pfn, entry::kPresent | entry::kExclusive | entry::kWritable);
    }
    t[pte_index(v)].store(e, std::memory_order_seq_cst);
    ++v;
  }
  stats_.add(MmStat::kFaults, end - start);
  return Status::Ok();
}

// ---- shared mappings --------------------------------------------------------------------------

Status AddressSpace::take_file_pages_locked(int64_t start, const uint32_t* pfns,
                                            uint64_t count) {
  if (Status st = check_unmapped(start, int64_t(count)); !st.ok()) return st;
  // Validate before we mutate: every PFN in range, none the zero page (never counted, so
  // its references could not balance), and then every folio live (EFREE: undone).
  if (Status st = mem_->check_page_set(PageSet::pfns(pfns, count)); !st.ok()) return st;
  if (const int64_t zero = mem_->zero_pfn(); zero >= 0 && any_equal(pfns, count, uint32_t(zero)))
    return Status::Fail(Code::kEINVAL, Reason::kZeroPageShared, zero);
  const auto s = uint64_t(start);
  // Host memory first (an exception changes nothing): the PTE tables, unlinked until used.
  for (uint64_t i = s >> kPmdShift; i <= (s + count - 1) >> kPmdShift; ++i) pt_.ensure_table(i);
  return take_shared_refs(pfns, count);
}

Status AddressSpace::map_shared(int64_t start, const uint32_t* pfns, uint64_t count,
                                bool write, bool dirty_tracked) {
  if (Status st = check_range(start, int64_t(count)); !st.ok()) return st;  // count 0 too
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = take_file_pages_locked(start, pfns, count); !st.ok()) return st;
  const auto s = uint64_t(start);
  regions_.emplace(s, Region{count, write, false, true, dirty_tracked});
  // PTEs only, even over a large folio: the page cache's folios are PTE-mapped here. A file
  // that wants write notification (dirty-tracked: vma_wants_writenotify) is mapped read-only
  // and clean, as MAP_POPULATE's read faults map it; its first write faults (page_mkwrite).
  const uint64_t flags = entry::kPresent | entry::kShared | (shared_pte_writable(write, dirty_tracked) ? entry::kWritable : 0) |
                        (dirty_tracked ? 0 : entry::kNoDirtyTracking);
  std::atomic<uint64_t>* t = nullptr;
  for (uint64_t v = s; v < s + count; ++v) {
    if (t == nullptr || pte_index(v) == 0) t = pte_table(v >> kPmdShift);
    // release: a walker that reads the entry finds the folio with our reference in it.
    t[pte_index(v)].store(entry::make(pfns[v - s], flags), std::memory_order_release);
  }
  stats_.add(MmStat::kFaults, count);  // as MAP_POPULATE faults each page in
  return Status::Ok();
}

Status AddressSpace::take_shared_refs(const uint32_t* pfns, uint64_t count) {
  for (uint64_t i = 0; i < count;) {
    const uint64_t n = folio_run(*mem_, pfns + i, count - i);
    // get_page refuses a free folio (refcount 0) without touching it: no revival.
    if (Status st = mem_->get_page(pfns[i], int64_t(n)); !st.ok()) {
      put_shared_refs(pfns, i);
      return st;
    }
    mem_->add_mapped_refs(mem_->folio_head(pfns[i]), int64_t(n));  // the PTEs' references
    i += n;
  }
  return Status::Ok();
}

void AddressSpace::put_shared_refs(const uint32_t* pfns, uint64_t count) {
  // The runs are the same as take's: our references keep every folio's shape as it was.
  for (uint64_t i = 0; i < count;) {
    const uint64_t n = folio_run(*mem_, pfns + i, count - i);
    const uint64_t head = mem_->folio_head(pfns[i]);
    mem_->add_mapped_refs(head, -int64_t(n));
    mem_->put_folio_refs(head, int64_t(n));
    i += n;
  }
}

Status AddressSpace::zap(int64_t start, int64_t count) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = check_hugetlb_cut(uint64_t(start), uint64_t(start) + uint64_t(count)); !st.ok())
    return st;
  SplitRefsScope split_refs(*this);
  if (Status st = reserve_splits(uint64_t(start), uint64_t(start) + uint64_t(count)); !st.ok())
    return st;
  // clear-then-put; the held file pages too (the file dropped them)
  unmap_range_and_holds(uint64_t(start), uint64_t(start) + uint64_t(count));
  return Status::Ok();
}

// ---- madvise ---------------------------------------------------------------------------------

Status AddressSpace::madvise(int64_t start, int64_t count, Advice advice) {
  if (uint8_t(advice) > uint8_t(Advice::kPageOut))
    return Status::BadOption("advice", uint8_t(advice),
                             "'dontneed', 'dontfork', 'dofork' or 'pageout'");
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // Validate before we mutate: every page in an anonymous region.
  const Status valid = check_each_region(s, e, [advice](const Region& r) {
    // Shared hugetlb mappings take every advice but pageout (below); page-cache ones
    // DONTNEED, and pageout, which skips them (swap.cpp). DONTFORK/DOFORK take every kind of
    // region (VM_DONTCOPY: fork leaves it out, its file holds included; the library's records
    // of a file's mappings ask region_runs what the child maps).
    const bool fork_advice = advice == Advice::kDontFork || advice == Advice::kDoFork;
    if (r.file_private && !fork_advice)  // MADV_PAGEOUT too (its COW copies would stay put)
      return Status{Code::kEINVAL, Reason::kFlags,
                    "MADV_DONTNEED/MADV_PAGEOUT of a private file mapping is not modelled (anonymous memory only)"};
    if (r.hugetlb_order != 0 && advice == Advice::kPageOut)  // can_madv_lru_vma: not hugetlb
      return Status{Code::kEINVAL, Reason::kHugetlb, "MADV_PAGEOUT of a hugetlb mapping (EINVAL, as the kernel answers)"};
    return Status::Ok();
  });
  if (!valid.ok()) return valid;
  if (advice == Advice::kDontNeed) {
    // hugetlb (Linux 6.1, madvise_dontneed_free_valid_vma): a start inside a huge page is
    // EINVAL; an end inside one rounds down to it, so only the pages covered whole are zapped
    // (none at all is success).
    const uint64_t end = std::max(s, hugetlb_page_floor(e));
    if (Status st = check_hugetlb_cut(s, end); !st.ok()) return st;
    if (end == s) return Status::Ok();
    SplitRefsScope split_refs(*this);
    if (Status st = reserve_splits(s, end); !st.ok()) return st;  // host memory, references
    // zap_page_range: entries cleared, their references put (a pin keeps its folio alive);
    // the regions stay, so the next access faults a fresh page in. A file mapping's entries
    // that map the file's pages keep their references held (address_space.h: file_held_):
    // the next access maps the same page again; private copies go (hugetlb: to the pool).
    zap_file_pages(s, end);
    unmap_range(s, end);
    return Status::Ok();
  }
  if (Status st = check_hugetlb_cut(s, e); !st.ok()) return st;
  if (advice == Advice::kPageOut) return pageout(s, e);
  SplitRefsScope split_refs(*this);
  if (Status st = reserve_splits(s, e); !st.ok()) return st;  // host memory, references
  split_region_at(s);
  split_region_at(e);
  for (auto it = regions_.lower_bound(s); it != regions_.end() && it->first < e; ++it)
    it->second.dontfork = advice == Advice::kDontFork;
  return Status::Ok();
}

Status AddressSpace::check_madv_remove(int64_t start, int64_t count) const {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  return check_each_region(s, e, [](const Region& r) {
    if (r.file_private || r.hugetlb_file)
      return Status{Code::kEACCES, Reason::kFlags,
                    "MADV_REMOVE of a private file mapping (EACCES, as the kernel answers: it needs a shared one)"};
    if (!r.shared)
      return Status{Code::kEINVAL, Reason::kFlags,
                    "MADV_REMOVE of anonymous private memory (EINVAL, as the kernel answers: no file to punch)"};
    return Status::Ok();
  });
}

Status AddressSpace::region_runs(int64_t start, int64_t count, std::vector<uint64_t>* runs) const {
  runs->clear();
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // The regions overlapping [s, e): the one containing s (if any), then those starting inside.
  auto it = regions_.upper_bound(s);
  if (it != regions_.begin() && std::prev(it)->first + std::prev(it)->second.count > s) --it;
  for (; it != regions_.end() && it->first < e; ++it) {
    const uint64_t a = std::max(s, it->first), b = std::min(e, it->first + it->second.count);
    if (!runs->empty() && runs->end()[-2] + runs->back() == a) {
      runs->back() += b - a;  // joins the previous region's stretch
      continue;
    }
    runs->push_back(a);  // std::bad_alloc: the addon's ENOMEM, nothing changed
    runs->push_back(b - a);
  }
  return Status::Ok();
}

bool AddressSpace::forks_at(uint64_t vpage) const {
  uint64_t rs = 0;
  const Region* r = region_at(vpage, &rs);
  return r == nullptr || !r->dontfork;
}

// ---- munmap, mprotect -----------------------------------------------------------------------

Status AddressSpace::munmap(int64_t start, int64_t count) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  if (Status st = check_hugetlb_cut(s, e); !st.ok()) return st;  // never split: EINVAL
  // Host memory first (PTE tables, the region map's nodes) and the splits' references, then
  // the pages.
  SplitRefsScope split_refs(*this);
  if (Status st = reserve_splits(s, e); !st.ok()) return st;
  split_region_at(s);
  split_region_at(e);
  unmap_range_and_holds(s, e);
  drop_hugetlb_reservations(s, e);
  regions_.erase(regions_.lower_bound(s), regions_.lower_bound(e));
  return Status::Ok();
}

Status AddressSpace::mprotect(int64_t start, int64_t count, bool write) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // Validate before we mutate: every page must be mapped. A hole is ENOMEM, the kernel's
  // answer (mprotect(2); do_mprotect_pkey), which has changed the mappings before the hole by
  // then: here a refused call changes nothing.
  for (uint64_t v = s; v < e;) {
    uint64_t rs = 0;
    const Region* r = region_at(v, &rs);
    if (r == nullptr) return Status::Fail(Code::kENOMEM, Reason::kNoMapping, int64_t(v));
    v = rs + r->count;
  }
  if (Status st = check_hugetlb_cut(s, e); !st.ok()) return st;  // never split: EINVAL
  SplitRefsScope split_refs(*this);
  if (Status st = reserve_splits(s, e); !st.ok()) return st;
  // Both ways: a leaf the range covers in part is split (at the region boundaries), whether
  // the change takes write access away or gives it back.
  split_region_at(s);
  split_region_at(e);
  for (auto it = regions_.lower_bound(s); it != regions_.end() && it->first < e; ++it)
    it->second.write = write;
  // Removing write access takes it from the entries now. Granting it makes writable at once
  // what a write fault would make writable without deciding anything; the rest stays
  // read-only until a write fault decides between reuse and copy, as for COW.
  change_write_access(s, e, write);
  return Status::Ok();
}

bool AddressSpace::upgrades_to_writable(uint64_t e) const {
  if (!entry::present(e) || entry::special(e) || entry::writable(e)) return false;
  // MAP_SHARED: the new protection itself is writable unless the file wants write
  // notification (a dirty-tracked file: its clean PTEs wait for the write fault; the model
  // keeps no PTE dirty bit, so all of them wait). hugetlbfs and shmem want none; the entry
  // says which (kHugetlb, kNoDirtyTracking).
  if (entry::shared(e)) return entry::hugetlb(e) || entry::no_dirty_tracking(e);
  // MAP_PRIVATE: only an exclusive anonymous page (can_change_pte_writable, Linux 6.0; the
  // 2019 rules have no PageAnonExclusive and upgrade none); a private hugetlb mapping's
  // protection stays copy-on-write (hugetlb_change_protection upgrades nothing), and a
  // page-cache page of a private mapping is never written in place.
  return rules_.anon_exclusive && entry::exclusive(e) && !entry::hugetlb(e) && !entry::non_anon(e);
}

uint64_t AddressSpace::with_write_access(uint64_t e, bool write) const {
  if (!write) return e & ~entry::kWritable;
  return upgrades_to_writable(e) ? e | entry::kWritable : e;
}

void AddressSpace::change_write_access(uint64_t start, uint64_t end, bool write) {
  // relaxed loads: we hold the mmap lock, and only its holder changes entries; seq_cst
  // stores: every entry change is one a walker's recheck compares against.
  const auto change = [&](std::atomic<uint64_t>& slot) {
    const uint64_t old = slot.load(std::memory_order_relaxed);
    if (const uint64_t now = with_write_access(old, write); now != old) slot.store(now, std::memory_order_seq_cst);
  };
  for (uint64_t i = start >> kPmdShift; i <= (end - 1) >> kPmdShift; ++i) {
    const uint64_t base = pmd_base(i);
    const uint64_t lo = std::max(start, base), hi = std::min(end, base + kPtesPerTable);
    std::atomic<uint64_t>& pmd = pt_.pmd(i);
    uint64_t pe = pmd.load(std::memory_order_relaxed);
    if (entry::huge(pe)) {
      if (lo == base && hi == base + kPtesPerTable) {
        change(pmd);
        continue;
      }
      split_pmd(i);  // covered in part (mprotect cut the regions there first)
      pe = pmd.load(std::memory_order_relaxed);
    }
    if (!entry::table(pe)) continue;
    std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t v = lo; v < hi; ++v) change(t[pte_index(v)]);
  }
}

void AddressSpace::unmap_range_and_holds(uint64_t start, uint64_t end) {
  unmap_range(start, end);
  drop_file_held(start, end);
}

void AddressSpace::unmap_range(uint64_t start, uint64_t end) {
  for (uint64_t i = start >> kPmdShift; i <= (end - 1) >> kPmdShift; ++i) {
    const uint64_t base = pmd_base(i);
    const uint64_t lo = std::max(start, base), hi = std::min(end, base + kPtesPerTable);
    std::atomic<uint64_t>& pmd = pt_.pmd(i);
    uint64_t pe = pmd.load(std::memory_order_relaxed);  // only the lock holder changes PMDs
    if (entry::hugetlb(pe)) {  // whole pages only (check_hugetlb_cut)
      unmap_hugetlb_leaf(i, pe);
      continue;
    }
    if (entry::huge(pe)) {
      if (lo == base && hi == base + kPtesPerTable) {
        // Clear the entry first, then put: a racing gup_fast either grabbed before (and keeps
        // the folio alive with its own reference) or sees the cleared entry on its recheck.
        pmd.store(0, std::memory_order_seq_cst);
        if (entry::special(pe)) continue;  // the huge zero folio: never counted
        mem_->add_mapped_refs(entry::pfn(pe), -1);  // the leaf's one reference
        mem_->put_folio_refs(entry::pfn(pe), 1);
        continue;
      }
      split_pmd(i);
      pe = pmd.load(std::memory_order_relaxed);
    }
    if (!entry::table(pe)) continue;
    std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t v = lo; v < hi; ++v) {
      // seq_cst: as above, clear first, then put.
      const uint64_t old = t[pte_index(v)].exchange(0, std::memory_order_seq_cst);
      if (entry::swap(old)) free_swap_entry(old);  // the slot loses an entry (swap.cpp)
      if (!entry::present(old) || entry::special(old)) continue;
      const uint64_t head = mem_->folio_head(entry::pfn(old));
      mem_->add_mapped_refs(head, -1);  // uncounted before the put: refcount >= mapped refs
      mem_->put_folio_refs(head, 1);
    }
  }
}

void AddressSpace::split_pmd_across(uint64_t vpage) {
  if (pte_index(vpage) != 0 && entry::huge(pt_.pmd(vpage >> kPmdShift).load(std::memory_order_relaxed)))
    split_pmd(vpage >> kPmdShift);
}

Status AddressSpace::reserve_splits(uint64_t start, uint64_t end) {
  // The PTE tables a split at start or end would need, allocated now: host memory can fail
  // (an exception), and it must do so before the call changes anything. Unlinked until used.
  // Then the splits' references (EOVERFLOW), which the caller's SplitRefsScope gives back if
  // the call ends without spending them.
  for (const uint64_t v : {start, end}) {
    const uint64_t i = v >> kPmdShift;
    if (pte_index(v) != 0 && i < pt_.pmd_count() &&
        entry::huge(pt_.pmd(i).load(std::memory_order_relaxed)))
      pt_.ensure_table(i);
  }
  for (const uint64_t v : {start, end}) {
    if (pte_index(v) == 0 || (v >> kPmdShift) >= pt_.pmd_count()) continue;
    if (Status st = take_split_refs(v >> kPmdShift); !st.ok()) return st;
  }
  return Status::Ok();
}

Status AddressSpace::take_split_refs(uint64_t i) {
  const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the mmap lock
  if (!entry::huge(pe) || entry::special(pe) || entry::hugetlb(pe)) return Status::Ok();
  for (const auto& taken : split_refs_)
    if (taken.first == i) return Status::Ok();  // taken already by this call
  // Host memory first (ENOMEM, nothing taken: callers such as fork's prepare pass and
  // pageout turn failures into Statuses, not exceptions), then the references: get_page's CAS
  // loop refuses a sum past INT32_MAX with nothing added (kRefcountOverflow, EOVERFLOW), as
  // every reference the model takes is refused.
  try {
    split_refs_.reserve(split_refs_.size() + 1);
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory,
                        int64_t((split_refs_.size() + 1) * sizeof(split_refs_[0])));
  }
  const uint64_t head = entry::pfn(pe);
  if (Status st = mem_->get_page(head, int64_t(kPtesPerTable) - 1); !st.ok()) return st;
  split_refs_.emplace_back(i, head);  // capacity reserved: cannot throw
  return Status::Ok();
}

void AddressSpace::release_split_refs(size_t mark) {
  // Unspent: the leaf was not split after all (a refused call, or unmapped whole). Never the
  // last put while the leaf maps the folio; if a whole unmap dropped the leaf's reference,
  // this put is the folio's last and frees it, as that unmap's put would have.
  while (split_refs_.size() > mark) {
    mem_->put_folio_refs(split_refs_.back().second, int64_t(kPtesPerTable) - 1);
    split_refs_.pop_back();
  }
}

void AddressSpace::split_pmd(uint64_t i) {
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  const uint64_t pe = pmd.load(std::memory_order_relaxed);
  if (entry::huge_zero(pe)) return split_huge_zero_pmd(i);  // the zero page's PTEs
  std::atomic<uint64_t>* t = pt_.ensure_table(i);  // reserved by the caller: no allocation
  // The references take_split_refs took for this leaf become the 511 more PTEs'.
  const auto taken = std::find_if(split_refs_.begin(), split_refs_.end(),
                                  [i](const auto& r) { return r.first == i; });
  // Unreachable: every path to a split of a counted leaf takes its references first. A caller
  // that did not would leave the PTEs without references (a later put frees a mapped folio):
  // stop rather than go on with a corrupt count.
  if (taken == split_refs_.end() || taken->second != entry::pfn(pe)) std::abort();
  split_refs_.erase(taken);
  mem_->add_mapped_refs(entry::pfn(pe), int64_t(kPtesPerTable) - 1);
  const uint64_t flags = entry::kPresent | (pe & (entry::kWritable | entry::kExclusive));
  // Relaxed entry stores: the PMD store below publishes them. The leaf's one reference and
  // the 511 taken for the split: one per PTE now.
  for (uint64_t k = 0; k < kPtesPerTable; ++k)
    t[k].store(entry::make(entry::pfn(pe) + k, flags), std::memory_order_relaxed);
  // seq_cst (a release at least): a walker that sees the table sees its entries; one that
  // grabbed through the old leaf sees the PMD change on its recheck and lets go.
  pmd.store(entry::make(0, entry::kTable | entry::kPresent), std::memory_order_seq_cst);
}

// ---- faults --------------------------------------------------------------------------------

Status AddressSpace::touch(int64_t start, int64_t count, bool write) {
  if (Status st = check_range(start, count); !st.ok()) return st;
  const auto s = uint64_t(start), e = s + uint64_t(count);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  for (uint64_t v = s; v < e;) {  // validate the whole range first
    uint64_t rs = 0;
    const Region* r = region_at(v, &rs);
    if (r == nullptr) return Status::Fail(Code::kEFAULT, Reason::kNoMapping, int64_t(v));
    if (write && !r->write) return Status::Fail(Code::kEFAULT, Reason::kReadOnly, int64_t(v));
    v = rs + r->count;
  }
  for (uint64_t v = s; v < e; ++v)
    if (Status st = handle_fault(v, write); !st.ok()) return st;
  return Status::Ok();
}

Status AddressSpace::handle_fault(uint64_t vpage, bool write) {
  uint64_t rs = 0;
  const Region* r = region_at(vpage, &rs);
  if (r == nullptr) return Status::Fail(Code::kEFAULT, Reason::kNoMapping, int64_t(vpage));
  if (write && !r->write) return Status::Fail(Code::kEFAULT, Reason::kReadOnly, int64_t(vpage));
  if (r->hugetlb_order != 0) return hugetlb_fault(vpage, write, *r, rs);
  const uint64_t pe = pt_.pmd(vpage >> kPmdShift).load(std::memory_order_relaxed);
  uint64_t e = pe;
  if (!entry::huge(pe)) {
    std::atomic<uint64_t>* slot = pte_slot(vpage);
    e = slot ? slot->load(std::memory_order_relaxed) : 0;
  }
  if (entry::swap(e)) return swap_in(vpage, pte_slot(vpage), e, write, *r);  // swap.cpp
  if (!entry::present(e)) {
    // A shared mapping's page is installed by map_shared, or mapped again from its hold after
    // MADV_DONTNEED; otherwise a hole is SIGBUS. So is a private file mapping's (its
    // page-cache pages are mapped by map_private only).
    if (r->shared) {
      if (Status st = refault_shared_file_pte(vpage, *r); !st.ok()) return st;
      return handle_fault(vpage, write);  // a write to a dirty-tracked file's page faults again
    }
    if (r->file_private) return Status::Fail(Code::kEFAULT, Reason::kSharedNoPage, int64_t(vpage));
    return fault_in_missing(vpage, write, *r, rs);
  }
  if (write && !entry::writable(e)) return handle_write_protect_fault(vpage);
  return Status::Ok();
}

Status AddressSpace::fault_in_missing(uint64_t vpage, bool write, const Region& r,
                                      uint64_t region_start) {
  const uint64_t i = vpage >> kPmdShift, base = pmd_base(i);
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  const uint64_t pe = pmd.load(std::memory_order_relaxed);
  // A huge region maps whole, aligned 2 MiB stretches with one PMD leaf when the slot is
  // empty; otherwise (or with no order-9 block free) it falls back to 4 KiB pages.
  if (r.huge && pmd_thp_enabled() && base >= region_start &&
      base + kPtesPerTable <= region_start + r.count) {
    // Empty: no entry, or a PTE table with nothing in it (it stays allocated for later).
    std::atomic<uint64_t>* t = pt_.table(i);
    bool empty = !entry::present(pe) || entry::table(pe);
    for (uint64_t k = 0; empty && entry::table(pe) && k < kPtesPerTable; ++k)
      empty = t[k].load(std::memory_order_relaxed) == 0;  // relaxed: we hold the mmap lock
    // A read fault maps the huge zero folio (huge_zero.cpp), or else the zero page's PTEs
    // below: with the huge zero page on, a read never allocates a THP (do_huge_pmd_anonymous_page).
    if (empty && !write && try_map_huge_zero(i)) return Status::Ok();
    uint64_t head = 0;
    if (empty && (write || !rules_.huge_zero_page) && mem_->alloc_folio(kPmdOrder, true, &head).ok()) {
      mem_->add_mapped_refs(head, 1);  // the leaf's one reference: the fresh folio's
      const uint64_t w = r.write ? entry::kWritable : 0;
      // seq_cst (a release at least): publishes the new folio with the entry.
      pmd.store(entry::make(head, entry::kPresent | entry::kHuge | entry::kExclusive | w),
                std::memory_order_seq_cst);
      stats_.add(MmStat::kFaults, kPtesPerTable);
      return Status::Ok();
    }
  }
  std::atomic<uint64_t>* t = pte_table(i);
  if (write && r.huge && fault_in_mthp(vpage, t, r, region_start)) return Status::Ok();
  uint64_t pfn = 0, flags = entry::kPresent;
  if (!write) {
    // A read fault of anonymous memory maps the shared zero page (never counted).
    if (Status st = mem_->zero_page(&pfn); !st.ok()) return st;
    flags |= entry::kSpecial;
  } else {
    if (Status st = mem_->alloc_folio(0, true, &pfn); !st.ok()) return st;
    mem_->add_mapped_refs(pfn, 1);
    flags |= entry::kWritable | entry::kExclusive;
  }
  t[pte_index(vpage)].store(entry::make(pfn, flags), std::memory_order_seq_cst);
  stats_.add(MmStat::kFaults, 1);
  return Status::Ok();
}

bool AddressSpace::fault_in_mthp(uint64_t vpage, std::atomic<uint64_t>* t, const Region& r,
                                 uint64_t region_start) {
  for (uint32_t order = kPmdOrder - 1; order >= 2; --order) {
    if ((thp_orders_ & (uint32_t{1} << order)) == 0) continue;
    const uint64_t n = uint64_t{1} << order, first = vpage & ~(n - 1);
    if (first < region_start || first + n > region_start + r.count) continue;
    bool empty = true;  // relaxed loads: we hold the mmap lock
    for (uint64_t k = 0; empty && k < n; ++k)
      empty = t[pte_index(first + k)].load(std::memory_order_relaxed) == 0;
    uint64_t head = 0;
    if (!empty || !mem_->alloc_folio(order, true, &head).ok()) continue;
    (void)mem_->get_page(head, int64_t(n) - 1);  // one reference per PTE (a fresh folio)
    mem_->add_mapped_refs(head, int64_t(n));
    const uint64_t flags = entry::kPresent | entry::kExclusive | (r.write ? entry::kWritable : 0);
    // seq_cst (a release at least): publishes the folio, its references taken, with each entry.
    for (uint64_t k = 0; k < n; ++k)
      t[pte_index(first + k)].store(entry::make(head + k, flags), std::memory_order_seq_cst);
    stats_.add(MmStat::kFaults, n);
    return true;
  }
  return false;
}

std::atomic<uint64_t>* AddressSpace::pte_table(uint64_t i) {
  std::atomic<uint64_t>* t = pt_.ensure_table(i);
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  // relaxed load: only the mmap lock holder changes PMDs. seq_cst store (a release at least):
  // a walker that sees the table entry sees the table's zeroed entries.
  if (!entry::table(pmd.load(std::memory_order_relaxed)))
    pmd.store(entry::make(0, entry::kTable | entry::kPresent), std::memory_order_seq_cst);
  return t;
}

Status AddressSpace::handle_write_protect_fault(uint64_t vpage) {
  const uint64_t i = vpage >> kPmdShift;
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  const uint64_t pe = pmd.load(std::memory_order_relaxed);
  if (entry::huge_zero(pe)) {
    bool replaced = false;  // a fresh THP, or else the zero page's PTEs and a 4 KiB COW below
    if (Status st = huge_zero_wp(i, true, &replaced); !st.ok() || replaced) return st;
    return handle_write_protect_fault(vpage);
  }
  if (entry::huge(pe)) {
    // Ours alone (exclusive, or the leaf's one reference and nothing else, as
    // do_huge_pmd_wp_page asks): reuse in place. Without anon_exclusive, the 2019 kernels'
    // mapcount test decides.
    if (rules_.anon_exclusive
            ? entry::exclusive(pe) || mem_->refcount(entry::pfn(pe)) == 1
            : reuse_by_mapcount(vpage, pe, true)) {
      pmd.store(pe | entry::kWritable | entry::kExclusive, std::memory_order_seq_cst);
      stats_.add(MmStat::kCowReuses, kPtesPerTable);
      return Status::Ok();
    }
    // Split, then copy just the 4 KiB written, as THP COW falls back to.
    uint64_t fresh = 0;
    if (Status st = split_pmd_for_copy(i, &fresh); !st.ok()) return st;
    std::atomic<uint64_t>* slot = pte_slot(vpage);
    return cow_copy_pte(slot, slot->load(std::memory_order_relaxed), true, fresh);
  }
  std::atomic<uint64_t>* slot = pte_slot(vpage);
  const uint64_t e = slot->load(std::memory_order_relaxed);
  if (entry::shared(e)) {
    // A page-cache page (a dirty-tracked file's, mapped clean; or of a region made writable
    // again): written in place, never copied, and dirtied as wp_page_shared's
    // fault_dirty_shared_page does (the file system was told: page_mkwrite). seq_cst: every
    // entry change is one a walker's recheck compares against.
    (void)mem_->set_dirty(entry::pfn(e));  // a page-cache page: live while its entry maps it
    slot->store(e | entry::kWritable, std::memory_order_seq_cst);
    return Status::Ok();
  }
  // A private file mapping's page-cache page is never reused: the write copies it (COW from
  // the page cache to an anonymous page).
  if (!entry::special(e) && !entry::file(e)) {
    const uint64_t head = mem_->folio_head(entry::pfn(e));
    const bool reuse = rules_.anon_exclusive ? entry::exclusive(e) || anon_folio_reusable(vpage, head)
                                             : reuse_by_mapcount(vpage, e, false);
    if (reuse) {
      slot->store(e | entry::kWritable | entry::kExclusive, std::memory_order_seq_cst);
      stats_.add(MmStat::kCowReuses, 1);
      return Status::Ok();
    }
  }
  return cow_copy_pte(slot, e, true);
}

bool AddressSpace::anon_folio_reusable(uint64_t vpage, uint64_t head) const {
  const uint32_t order = mem_->folio_order(head);
  const int64_t refs = mem_->refcount(head);
  if (order == 0) return refs == 1;
  // Every reference a mapping (a pin, a FOLL_GET or the swap cache adds one more), and every
  // mapping one of our PTEs near vpage. relaxed loads: we hold the mmap lock; a lockless grab
  // racing the count can only be gup_fast's FOLL_GET (a pin of a non-exclusive anonymous page
  // bails to the slow path, which takes the mmap lock), which has no COW guarantee in the
  // kernel either.
  if (refs != mem_->mapped_refs(head)) return false;
  const uint64_t n = uint64_t{1} << order;
  const uint64_t lo = vpage >= n - 1 ? vpage - (n - 1) : 0, hi = std::min(pages_, vpage + n);
  int64_t ours = 0;
  for (uint64_t v = lo; v < hi; ++v) {
    if (entry::huge(pt_.pmd(v >> kPmdShift).load(std::memory_order_relaxed))) {
      v |= kPtesPerTable - 1;  // a PMD leaf is another folio (or another mm's mapping of this)
      continue;
    }
    const std::atomic<uint64_t>* slot = pte_slot(v);
    if (slot == nullptr) {
      v |= kPtesPerTable - 1;
      continue;
    }
    const uint64_t pe = slot->load(std::memory_order_relaxed);
    if (entry::present(pe) && !entry::special(pe) && entry::pfn(pe) - head < n) ++ours;
  }
  return ours == refs;
}

Status AddressSpace::unshare(uint64_t vpage) {
  // FOLL_UNSHARE came with PageAnonExclusive: the 2019 kernels pinned a COW-shared page as it was.
  if (!rules_.anon_exclusive) return Status::Ok();
  const uint64_t i = vpage >> kPmdShift;
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  const uint64_t pe = pmd.load(std::memory_order_relaxed);  // relaxed: we hold the mmap lock
  if (entry::hugetlb(pe)) return entry::exclusive(pe) ? Status::Ok() : hugetlb_wp(vpage, false);
  // The huge zero folio, as the zero page: not anonymous, so only a long-term pin unshares it
  // (unshare_zero_page); other pins take it uncounted.
  if (entry::huge_zero(pe)) return Status::Ok();
  if (entry::huge(pe)) {
    if (entry::exclusive(pe)) return Status::Ok();
    if (mem_->refcount(entry::pfn(pe)) == 1) {  // ours alone again: the leaf's one reference
      pmd.store(pe | entry::kExclusive, std::memory_order_seq_cst);
      stats_.add(MmStat::kCowReuses, kPtesPerTable);
      return Status::Ok();
    }
    // Another mm shares the THP: split, and a copy of this 4 KiB, access unchanged.
    uint64_t fresh = 0;
    if (Status st = split_pmd_for_copy(i, &fresh); !st.ok()) return st;
    std::atomic<uint64_t>* slot = pte_slot(vpage);
    const uint64_t e = slot->load(std::memory_order_relaxed);
    return cow_copy_pte(slot, e, entry::writable(e), fresh);
  }
  std::atomic<uint64_t>* slot = pte_slot(vpage);
  const uint64_t e = slot ? slot->load(std::memory_order_relaxed) : 0;
  // Nothing to unshare: a hole, the zero page, ours already, or a page-cache page (a shared
  // mapping's page is the one to pin, whoever else maps it; a private mapping's is unshared
  // only for a long-term read pin, by unshare_file_page).
  if (!entry::present(e) || entry::special(e) || entry::exclusive(e) || entry::page_cache(e))
    return Status::Ok();
  const uint64_t head = mem_->folio_head(entry::pfn(e));
  if (anon_folio_reusable(vpage, head)) {
    slot->store(e | entry::kExclusive, std::memory_order_seq_cst);
    stats_.add(MmStat::kCowReuses, 1);
    return Status::Ok();
  }
  return cow_copy_pte(slot, e, entry::writable(e));  // a copy, access unchanged
}

Status AddressSpace::unshare_zero_page(uint64_t vpage) {
  // The huge zero folio: a fresh THP replaces it (huge_zero.cpp), or else its leaf is split to
  // the zero page's PTEs and this 4 KiB is unshared below.
  if (entry::huge_zero(pt_.pmd(vpage >> kPmdShift).load(std::memory_order_relaxed))) {
    bool replaced = false;
    if (Status st = huge_zero_wp(vpage >> kPmdShift, false, &replaced); !st.ok() || replaced)
      return st;
  }
  std::atomic<uint64_t>* slot = pte_slot(vpage);
  const uint64_t e = slot ? slot->load(std::memory_order_relaxed) : 0;  // we hold the lock
  if (!entry::present(e) || !entry::special(e)) return Status::Ok();
  // The page comes from outside ZONE_MOVABLE where it can (the long-term pin would migrate it
  // there next; the kernel allocates movable and migrates, the result is the same page kind).
  uint64_t fresh = 0;
  if (!mem_->alloc_folio(0, false, &fresh).ok()) {
    if (Status st = mem_->alloc_folio(0, true, &fresh); !st.ok()) return st;
  }
  // Exclusive and as writable as the zero-page entry was (never): the next write fault reuses
  // this very page, which the pin holds.
  return cow_copy_pte(slot, e, false, fresh);
}

Status AddressSpace::check_gup_region(uint64_t vpage, const GupFlags& f) const {
  if (!f.longterm || !f.write || rules_.longterm_file_writes != LongtermFileWrites::kRefuse)
    return Status::Ok();
  uint64_t rs = 0;
  const Region* r = region_at(vpage, &rs);
  if (r != nullptr && r->shared && r->dirty_tracked)
    return Status{Code::kEFAULT, Reason::kFlags,
                  "FOLL_LONGTERM|FOLL_WRITE of a shared file mapping that needs dirty tracking "
                  "(refused since 6.5: rules.longtermFileWrites 'refuse')"};
  return Status::Ok();
}

Status AddressSpace::split_pmd_for_copy(uint64_t i, uint64_t* fresh) {
  // What can fail comes first: the PTE table (host memory, an exception) and the copy's page
  // (ENOMEM), so that a failed COW leaves the leaf as it was.
  // Then the split's references (EOVERFLOW), given back by the scope if the allocation fails.
  pt_.ensure_table(i);
  SplitRefsScope split_refs(*this);
  if (Status st = take_split_refs(i); !st.ok()) return st;
  if (Status st = mem_->alloc_folio(0, true, fresh); !st.ok()) return st;
  split_pmd(i);
  return Status::Ok();
}

Status AddressSpace::cow_copy_pte(std::atomic<uint64_t>* slot, uint64_t old, bool writable,
                                  uint64_t fresh) {
  if (fresh == kAllocate) {
    if (Status st = mem_->alloc_folio(0, true, &fresh); !st.ok()) return st;
  }
  const bool zero = entry::special(old);
  const uint64_t old_head = zero ? 0 : mem_->folio_head(entry::pfn(old));
  // A page-cache page's flags (dirty: owed to the file) stay with the file's page.
  if (!zero && !entry::file(old)) mem_->copy_folio_flags(old_head, fresh);
  mem_->add_mapped_refs(fresh, 1);
  // Replace, then put the shared page (clear-then-put, as unmap).
  const uint64_t w = writable ? entry::kWritable : 0;
  slot->store(entry::make(fresh, entry::kPresent | entry::kExclusive | w),
              std::memory_order_seq_cst);
  if (!zero) {
    mem_->add_mapped_refs(old_head, -1);
    mem_->put_folio_refs(old_head, 1);
  }
  stats_.add(MmStat::kCowCopies, 1);
  return Status::Ok();
}

// ---- fork ----------------------------------------------------------------------------------

uint64_t AddressSpace::writable_bit(uint64_t vpage) const {
  uint64_t rs = 0;
  const Region* r = region_at(vpage, &rs);
  return r != nullptr && r->write ? entry::kWritable : 0;
}

// The per-decision unclassified statistic of the decision whose false positives are `fp`.
static MmStat unclassified_stat(MmStat fp) {
  switch (fp) {
    case MmStat::kEarlyCowFalsePositives: return MmStat::kEarlyCowUnclassified;
    case MmStat::kMigrationFalsePositives: return MmStat::kMigrationUnclassified;
    case MmStat::kPageoutFalsePositives: return MmStat::kPageoutUnclassified;
    default: return MmStat::kCollapseUnclassified;  // kCollapseFalsePositives
  }
}

void AddressSpace::note_maybe_pinned_event(uint64_t head, uint32_t order, MmStat false_positive,
                                           uint64_t units) {
  const std::optional<int64_t> pins = mem_->exact_folio_pins(head, order);
  if (!pins) {
    stats_.add(MmStat::kUnclassified, units);
    stats_.add(unclassified_stat(false_positive), units);
  } else if (*pins == 0) {
    stats_.add(false_positive, units);
  }
}

bool AddressSpace::needs_early_cow(uint64_t e, uint64_t head, uint32_t order, bool pinned_mm) const {
  if (!pinned_mm) return false;
  // PageAnonExclusive: an entry that is already shared (an earlier fork's COW) cannot hold a
  // pin, since a pin needs an exclusive page (the slow path unshares first): the kernel shares
  // it again without asking (__folio_try_dup_anon_rmap). Without the rule (2019) every
  // maybe-pinned page is copied.
  if (rules_.anon_exclusive && !entry::exclusive(e)) return false;
  return mem_->maybe_pinned_head(head, order, std::memory_order_seq_cst);
}

Status AddressSpace::fork_pinned_thp(AddressSpace& child, std::atomic<uint64_t>& child_pmd,
                                     uint64_t e, uint64_t vpage, ForkTally* tally) {
  const uint64_t i = vpage >> kPmdShift;
  const uint64_t head = mem_->folio_head(entry::pfn(e));
  std::atomic<uint64_t>* ct = nullptr;
  try {
    pt_.ensure_table(i);  // the parent's, for the split in the commit pass (unlinked until then)
    ct = child.pt_.ensure_table(i);
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(2 * kPtesPerTable * sizeof(uint64_t)));
  }
  // The references the commit pass's split of the parent's leaf will spend (EOVERFLOW: fork
  // fails, nothing changed); fork's SplitRefsScope gives them back if fork fails later.
  if (Status st = take_split_refs(i); !st.ok()) return st;
  // relaxed stores into the child's table: the child is not visible to anyone yet. The table
  // is linked first, so that abandon_fork finds every copy made before a failure.
  child_pmd.store(entry::make(0, entry::kTable | entry::kPresent), std::memory_order_relaxed);
  const uint64_t bits = entry::kPresent | entry::kExclusive | writable_bit(vpage);
  for (uint64_t k = 0; k < kPtesPerTable; ++k) {
    uint64_t copy = 0;
    if (Status st = mem_->alloc_folio(0, true, &copy); !st.ok()) return st;
    mem_->copy_folio_flags(head, copy);
    mem_->add_mapped_refs(copy, 1);
    ct[k].store(entry::make(copy, bits), std::memory_order_relaxed);
  }
  // Counted once fork succeeds, in pages.
  tally->early_cow_copies += kPtesPerTable;
  const std::optional<int64_t> pins = mem_->exact_folio_pins(head, kPmdOrder);
  if (!pins) tally->unclassified += kPtesPerTable;
  else if (*pins == 0) tally->false_positives += kPtesPerTable;
  return Status::Ok();
}

void AddressSpace::abandon_copied_table(AddressSpace& child, std::atomic<uint64_t>& child_pmd,
                                        uint64_t vpage) {
  std::atomic<uint64_t>* ct = child.pt_.table(vpage >> kPmdShift);
  for (uint64_t k = 0; k < kPtesPerTable; ++k) {
    const uint64_t ce = ct[k].exchange(0, std::memory_order_relaxed);
    if (!entry::present(ce)) continue;  // the copies stop where the allocation failed
    const uint64_t copy = mem_->folio_head(entry::pfn(ce));
    mem_->add_mapped_refs(copy, -1);
    mem_->give_back_unused(copy);
  }
  child_pmd.store(0, std::memory_order_relaxed);
}

Status AddressSpace::fork_entry(AddressSpace& child, std::atomic<uint64_t>& slot, std::atomic<uint64_t>& child_slot,
                               uint64_t vpage, bool huge, bool pinned_mm, ForkTally* tally) {
  const uint64_t e = slot.load(std::memory_order_relaxed);  // relaxed: we hold the mmap lock
  if (entry::swap(e)) return fork_swap_entry(e, child_slot);  // swap.cpp
  if (huge && entry::hugetlb(e)) return fork_hugetlb_leaf(slot, child_slot, vpage, pinned_mm, tally);
  // relaxed stores into the child's table: the child is not visible to anyone yet.
  if (entry::special(e)) {  // the zero page: shared as is, never counted
    child_slot.store(e, std::memory_order_relaxed);
    return Status::Ok();
  }
  if (entry::page_cache(e)) {
    // A page-cache page: the child maps it as it is (one more reference), writable as it
    // was; never write-protected, never copied early (a shared mapping has no COW to break,
    // and a private one's page-cache page is read-only and not anonymous: no early COW).
    if (Status st = mem_->get_page(entry::pfn(e), 1); !st.ok()) return st;
    mem_->add_mapped_refs(mem_->folio_head(entry::pfn(e)), 1);
    child_slot.store(e, std::memory_order_relaxed);
    return Status::Ok();
  }
  const uint64_t head = mem_->folio_head(entry::pfn(e));
  const uint32_t order = mem_->folio_order(head);
  if (needs_early_cow(e, head, order, pinned_mm)) {
    // Early COW: the child gets a copy now; the parent keeps the pinned page as it was. A THP
    // leaf: 512 copies of 4 KiB, the parent's leaf split (the kernel's copy_huge_pmd).
    if (huge) return fork_pinned_thp(child, child_slot, e, vpage, tally);
    uint64_t copy = 0;
    if (Status st = mem_->alloc_folio(0, true, &copy); !st.ok()) return st;
    mem_->copy_folio_flags(head, copy);
    mem_->add_mapped_refs(copy, 1);
    child_slot.store(entry::make(copy, entry::kPresent | entry::kExclusive | writable_bit(vpage)),
                     std::memory_order_relaxed);
    // Counted once fork succeeds, in pages: one.
    tally->early_cow_copies += 1;
    const std::optional<int64_t> pins = mem_->exact_folio_pins(head, order);
    if (!pins) tally->unclassified += 1;
    else if (*pins == 0) tally->false_positives += 1;
    return Status::Ok();
  }
  // Shared copy-on-write: the child's entry read-only and not exclusive now; the parent's is
  // write-protected by fork's commit pass once every entry is prepared. One reference for the
  // child's entry, a PTE or a PMD leaf alike (copy_huge_pmd takes one for the leaf).
  if (Status st = mem_->get_page(entry::pfn(e), 1); !st.ok()) return st;
  mem_->add_mapped_refs(head, 1);
  child_slot.store(e & ~(entry::kWritable | entry::kExclusive), std::memory_order_relaxed);
  return Status::Ok();
}

// Calls fn(parent slot, child slot, huge) for every present entry of the parent.
template <typename Fn>
void AddressSpace::for_each_fork_pair(AddressSpace& child, Fn&& fn) {
  for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
    std::atomic<uint64_t>& pmd = pt_.pmd(i);
    const uint64_t pe = pmd.load(std::memory_order_relaxed);  // relaxed: we hold the lock
    if (entry::huge(pe)) {
      fn(pmd, child.pt_.pmd(i), pmd_base(i), true);
      continue;
    }
    if (!entry::table(pe)) continue;
    std::atomic<uint64_t>* t = pt_.table(i);
    std::atomic<uint64_t>* ct = child.pt_.table(i);
    for (uint64_t k = 0; k < kPtesPerTable; ++k) {
      const uint64_t e = t[k].load(std::memory_order_relaxed);
      if (entry::present(e) || entry::swap(e)) fn(t[k], ct[k], pmd_base(i) + k, false);
    }
  }
}

void AddressSpace::abandon_fork(AddressSpace& child) {
  // Gives back exactly what fork_entry took, entry by entry, and clears the child's entries
  // (so its destructor finds nothing). The parent's entries still map the shared folios, so
  // these puts never free one; the early copies, never seen by anyone, go back unused.
  for_each_fork_pair(child, [&](std::atomic<uint64_t>&, std::atomic<uint64_t>& child_slot,
                                uint64_t vpage, bool huge) {
    if (huge && entry::hugetlb(child_slot.load(std::memory_order_relaxed))) {
      abandon_hugetlb_leaf(child_slot);  // one reference per page, not per leaf
      return;
    }
    if (huge && entry::table(child_slot.load(std::memory_order_relaxed))) {
      abandon_copied_table(child, child_slot, vpage);  // a pinned THP's 4 KiB copies
      return;
    }
    const uint64_t ce = child_slot.exchange(0, std::memory_order_relaxed);
    if (entry::swap(ce)) free_swap_entry(ce);  // never the last: the parent's entry names it
    if (!entry::present(ce) || entry::special(ce)) return;  // not reached, or the zero page
    const uint64_t head = mem_->folio_head(entry::pfn(ce));
    mem_->add_mapped_refs(head, -1);  // one per entry, a PTE or a PMD leaf
    // An early copy is exclusive in the child; a shared page (COW or page cache) never is.
    if (entry::exclusive(ce)) mem_->give_back_unused(head);
    else mem_->put_folio_refs(head, 1);
  });
}

Status AddressSpace::fork(std::unique_ptr<AddressSpace>* out) {
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // All or nothing: everything that can fail comes before the parent changes. First the
  // child and its page tables (host memory: an exception, and nothing has changed). Then,
  // with write_protect_seq odd, the child's entries: its references on the shared folios and
  // the early-COW copies (EOVERFLOW, ENOMEM). Only then does the parent change, by a pass
  // that cannot fail: its COW-shared entries lose write access. A failed fork gives back what
  // the child took (abandon_fork) and leaves the parent's entries, counts and statistics as
  // they were.
  std::unique_ptr<AddressSpace> child(new AddressSpace(mem_, pages_, rules_, thp_orders_));
  child->swap_ = swap_;  // one swap device for the fork family: the entries name its slots
  child->regions_ = regions_;
  std::erase_if(child->regions_, [](const auto& kv) { return kv.second.dontfork; });
  // The child's holds: host memory now, their references after its entries, and the child
  // owns them only then (its destructor puts what it owns).
  std::map<uint64_t, uint64_t> held = file_held_for_child();
  for (uint64_t i = 0; i < pt_.pmd_count(); ++i) {
    const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);
    if (!entry::table(pe)) continue;
    child->pt_.ensure_table(i);
    child->pt_.pmd(i).store(pe, std::memory_order_relaxed);  // the child is not visible yet
  }
  // Odd while we write-protect: gup_fast pins that overlap fork back off (write_protect_seq).
  // seq_cst: pairs with gup_fast's samples before and after its walk.
  write_protect_seq_.fetch_add(1, std::memory_order_seq_cst);
  const bool pinned_mm = has_pinned_.load(std::memory_order_seq_cst);
  SplitRefsScope split_refs(*this);  // the pinned THPs' splits (fork_pinned_thp)
  ForkTally tally;
  Status st = Status::Ok();
  for_each_fork_pair(*child, [&](std::atomic<uint64_t>& slot, std::atomic<uint64_t>& child_slot,
                                 uint64_t vpage, bool huge) {
    // MADV_DONTFORK: the child's entry stays empty (a leaf lies in one region).
    if (st.ok() && forks_at(vpage)) st = fork_entry(*child, slot, child_slot, vpage, huge, pinned_mm, &tally);
  });
  if (st.ok()) st = take_file_held(held);  // none taken on failure
  if (!st.ok()) {
    abandon_fork(*child);
    write_protect_seq_.fetch_add(1, std::memory_order_seq_cst);
    return st;
  }
  // Commit. seq_cst on the parent's entry: a walker that grabbed through the writable entry
  // sees the change on its recheck.
  for_each_fork_pair(*child, [&](std::atomic<uint64_t>& slot, std::atomic<uint64_t>& child_slot,
                                 uint64_t vpage, bool huge) {
    const uint64_t e = slot.load(std::memory_order_relaxed);
    // A pinned THP the child got 4 KiB copies of: the parent's leaf becomes 512 PTEs of the same
    // folio, writable and exclusive as it was (its table and references taken by fork_pinned_thp).
    if (huge && !entry::hugetlb(e) && entry::table(child_slot.load(std::memory_order_relaxed))) {
      split_pmd(vpage >> kPmdShift);
      return;
    }
    if (entry::swap(e)) {
      // A shared swap entry: neither side keeps SWP_EXCLUSIVE (as for a present page).
      if (entry::swap(child_slot.load(std::memory_order_relaxed)) && entry::exclusive(e))
        slot.store(e & ~entry::kExclusive, std::memory_order_seq_cst);
      return;
    }
    if (entry::special(e) || entry::page_cache(e)) return;  // never write-protected
    const uint64_t ce = child_slot.load(std::memory_order_relaxed);
    if (!entry::present(ce)) return;  // MADV_DONTFORK: the child does not map it
    // Shared COW (an early copy has a PFN of its own): both sides read-only, neither exclusive.
    if (entry::pfn(ce) != entry::pfn(e)) return;
    const uint64_t cow = e & ~(entry::kWritable | entry::kExclusive);
    if (cow != e) slot.store(cow, std::memory_order_seq_cst);
  });
  child->file_held_.swap(held);
  stats_.add(MmStat::kEarlyCowCopies, tally.early_cow_copies);
  stats_.add(MmStat::kEarlyCowFalsePositives, tally.false_positives);
  stats_.add(MmStat::kUnclassified, tally.unclassified);
  stats_.add(MmStat::kEarlyCowUnclassified, tally.unclassified);
  write_protect_seq_.fetch_add(1, std::memory_order_seq_cst);
  *out = std::move(child);
  return Status::Ok();
}

}  // namespace pinlab
