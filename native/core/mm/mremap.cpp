// mremap(2): shrink, grow in place, move (MREMAP_MAYMOVE), MREMAP_FIXED and MREMAP_DONTUNMAP.
//
// A move moves the page-table entries themselves (the kernel's move_page_tables): no folio's
// references change, so every pin taken through the old addresses stays valid and balanced,
// and PageAnonExclusive travels with its entry. A PMD leaf moves whole when it lies wholly in
// the moved range and lands on a 2 MiB boundary (move_huge_pmd); otherwise it is split first.
//
// Against the lockless gup_fast walk: an entry is cleared at its old place (seq_cst) before it
// is written at the new one (seq_cst). A walker that grabbed through the old entry either
// rechecks after the clear (and lets go), or before it, and then holds a reference on a page
// that is still mapped (at its new address): a valid pin, as in the kernel. A walker at the
// new address sees the entry only once it is there, with the folio's references unchanged.
//
// All or nothing: everything is validated, and every allocation (the new region map, PTE
// tables) made, before the first entry changes; what follows cannot fail.
#include <algorithm>

#include "mm/address_space.h"

namespace pinlab {

namespace {
constexpr uint64_t pmd_base(uint64_t pmd_index) { return pmd_index << kPmdShift; }
constexpr uint64_t pte_index(uint64_t vpage) { return vpage & (kPtesPerTable - 1); }

using RegionMap = std::map<uint64_t, Region>;

// Splits the region of `m` that contains v (v inside it, not at its start) in two at v.
void split_at(RegionMap& m, uint64_t v) {
  auto it = m.upper_bound(v);
  if (it == m.begin()) return;
  --it;
  if (v <= it->first || v >= it->first + it->second.count) return;
  Region upper = it->second;
  upper.count = it->first + it->second.count - v;
  it->second.count = v - it->first;
  m.emplace(v, upper);
}

// Removes [s, e) from the regions of `m` (splitting those that cross its ends).
void carve(RegionMap& m, uint64_t s, uint64_t e) {
  split_at(m, s);
  split_at(m, e);
  m.erase(m.lower_bound(s), m.lower_bound(e));
}

bool same_attributes(const Region& a, const Region& b) {
  return a.write == b.write && a.huge == b.huge && a.shared == b.shared &&
         a.dirty_tracked == b.dirty_tracked && a.dontfork == b.dontfork &&
         a.hugetlb_order == b.hugetlb_order && a.hugetlb_file == b.hugetlb_file &&
         a.file_private == b.file_private;
}
}  // namespace

bool AddressSpace::find_free_area(uint64_t n, uint64_t like, uint64_t* out) const {
  // Gaps between regions, lowest first: the first gap holding n pages at an address congruent
  // to `like` modulo 2 MiB (so that PMD leaves can move whole), else the first that holds n.
  bool fallback = false;
  uint64_t first_fit = 0;
  uint64_t gap = 0;
  auto consider = [&](uint64_t lo, uint64_t hi) {  // the free gap [lo, hi)
    if (hi <= lo || hi - lo < n) return false;
    if (!fallback) {
      fallback = true;
      first_fit = lo;
    }
    const uint64_t want = pte_index(like);
    const uint64_t aligned = (lo & ~(kPtesPerTable - 1)) + want;
    const uint64_t at = aligned >= lo ? aligned : aligned + kPtesPerTable;
    if (at >= lo && at <= hi && hi - at >= n) {
      *out = at;
      return true;
    }
    return false;
  };
  for (const auto& [rs, r] : regions_) {
    if (consider(gap, rs)) return true;
    gap = rs + r.count;
  }
  if (consider(gap, pages_)) return true;
  if (fallback) *out = first_fit;
  return fallback;
}

Status AddressSpace::reserve_move_tables(uint64_t src, uint64_t dst, uint64_t n) {
  // Host memory first (an exception changes nothing): the source's PTE table under every leaf
  // that will be split, and the destination's tables where PTEs will land. Unlinked until used.
  // Each such leaf's split references too (take_split_refs: EOVERFLOW; the caller's scope
  // gives back what it took).
  for (uint64_t off = 0; off < n;) {
    const uint64_t v = src + off, i = v >> kPmdShift;
    const uint64_t hi = std::min(src + n, pmd_base(i) + kPtesPerTable);
    const uint64_t pe = pt_.pmd(i).load(std::memory_order_relaxed);  // we hold the mmap lock
    const bool whole = v == pmd_base(i) && hi == v + kPtesPerTable && pte_index(dst + off) == 0;
    if (entry::huge(pe) && whole) {
      off = hi - src;
      continue;
    }
    if (entry::huge(pe)) pt_.ensure_table(i);
    if (entry::huge(pe) || entry::table(pe)) {
      for (uint64_t d = (dst + off) >> kPmdShift; d <= (dst + (hi - src) - 1) >> kPmdShift; ++d)
        pt_.ensure_table(d);
    }
    if (entry::huge(pe)) {
      if (Status st = take_split_refs(i); !st.ok()) return st;
    }
    off = hi - src;
  }
  return Status::Ok();
}

void AddressSpace::move_entries(uint64_t src, uint64_t dst, uint64_t n) {
  uint64_t moved = 0;
  std::atomic<uint64_t>* dt = nullptr;
  uint64_t dt_index = ~uint64_t{0};
  for (uint64_t off = 0; off < n;) {
    const uint64_t v = src + off, i = v >> kPmdShift;
    const uint64_t hi = std::min(src + n, pmd_base(i) + kPtesPerTable);
    std::atomic<uint64_t>& pmd = pt_.pmd(i);
    uint64_t pe = pmd.load(std::memory_order_relaxed);  // only the lock holder changes PMDs
    if (entry::huge(pe)) {
      if (v == pmd_base(i) && hi == v + kPtesPerTable && pte_index(dst + off) == 0) {
        // The whole leaf: cleared here first, then written there (see the top).
        pmd.store(0, std::memory_order_seq_cst);
        pt_.pmd((dst + off) >> kPmdShift).store(pe, std::memory_order_seq_cst);
        moved += kPtesPerTable;
        off = hi - src;
        continue;
      }
      split_pmd(i);  // its table and its split's references were reserved
      pe = pmd.load(std::memory_order_relaxed);
    }
    if (!entry::table(pe)) {
      off = hi - src;
      continue;
    }
    std::atomic<uint64_t>* t = pt_.table(i);
    for (uint64_t u = v; u < hi; ++u) {
      if (t[pte_index(u)].load(std::memory_order_relaxed) == 0) continue;
      // seq_cst: cleared at the old place before it appears at the new one.
      const uint64_t e = t[pte_index(u)].exchange(0, std::memory_order_seq_cst);
      const uint64_t to = dst + (u - src);
      if ((to >> kPmdShift) != dt_index) {
        dt_index = to >> kPmdShift;
        dt = pte_table(dt_index);  // reserved: links it (a release) on first use
      }
      dt[pte_index(to)].store(e, std::memory_order_seq_cst);
      moved += entry::present(e);
    }
    off = hi - src;
  }
  stats_.add(MmStat::kRemapMovedPages, moved);
}

Status AddressSpace::mremap(const MremapArgs& a, uint64_t* new_start) {
  // ---- the arguments, as the kernel checks them (EINVAL) -------------------------------------
  if (a.fixed && !a.may_move)
    return Status{Code::kEINVAL, Reason::kFlags, "mremap: fixed (MREMAP_FIXED) needs mayMove"};
  if (a.dont_unmap && !a.may_move)
    return Status{Code::kEINVAL, Reason::kFlags, "mremap: dontUnmap (MREMAP_DONTUNMAP) needs mayMove"};
  if (a.dont_unmap && a.new_count != a.count)
    return Status{Code::kEINVAL, Reason::kFlags,
                  "mremap: dontUnmap (MREMAP_DONTUNMAP) needs newCount equal to count"};
  if (!a.fixed && a.new_start != -1)
    return Status{Code::kEINVAL, Reason::kFlags, "mremap: newStart needs fixed (MREMAP_FIXED)"};
  if (Status st = check_range(a.start, a.count); !st.ok()) return st;
  if (a.new_count < 1) return Status::Fail(Code::kEINVAL, Reason::kBadCount, a.new_count);
  if (uint64_t(a.new_count) > pages_)
    return Status::Fail(Code::kEINVAL, Reason::kVaOutOfRange, a.start, a.new_count);
  const auto s = uint64_t(a.start), n_old = uint64_t(a.count), n_new = uint64_t(a.new_count);
  if (a.fixed) {
    if (Status st = check_range(a.new_start, a.new_count); !st.ok()) return st;
    const auto d = uint64_t(a.new_start);
    if (d < s + n_old && s < d + n_new)
      return Status{Code::kEINVAL, Reason::kFlags, "mremap: the fixed range overlaps the old range"};
  }
  std::lock_guard<std::mutex> lock(mmap_lock_);
  // ---- the old range: wholly mapped, one kind of region (a VMA) ------------------------------
  uint64_t rs = 0;
  const Region* first = region_at(s, &rs);
  if (first == nullptr) return Status::Fail(Code::kEFAULT, Reason::kNoMapping, int64_t(s));
  const Region attrs = *first;
  uint64_t last_end = 0;  // the end of the region holding the old range's last page
  for (uint64_t v = s; v < s + n_old;) {
    uint64_t here = 0;
    const Region* r = region_at(v, &here);
    if (r == nullptr) return Status::Fail(Code::kEFAULT, Reason::kNoMapping, int64_t(v));
    if (!same_attributes(*r, attrs))
      return Status{Code::kEFAULT, Reason::kFlags,
                    "mremap: the old range spans mappings of different kinds (several VMAs)"};
    last_end = here + r->count;
    v = last_end;
  }
  // hugetlb (mm/hugetlb.cpp): its leaves are never split and its reservations are per huge
  // page; moving them is not modelled (the kernel moves whole, aligned hugetlb ranges).
  if (attrs.hugetlb_order != 0)
    return Status{Code::kEINVAL, Reason::kHugetlb,
                  "mremap of a hugetlb mapping is not modelled (anonymous and file memory only)"};
  // MREMAP_FIXED over hugetlb memory: whole huge pages only, as munmap (EINVAL otherwise).
  if (a.fixed) {
    if (Status st = check_hugetlb_cut(uint64_t(a.new_start), uint64_t(a.new_start) + n_new);
        !st.ok())
      return st;
  }
  // A file mapping's new tail would map the file's next pages; the core maps a file's pages only
  // as mmap hands them over (the file lives in the library), so growing one is not modelled:
  // refused rather than left as a tail that every access finds "truncated" (EFAULT).
  if (n_new > n_old && (attrs.shared || attrs.file_private))
    return Status{Code::kEINVAL, Reason::kFlags,
                  "mremap: growing a file mapping (shared or private) is not modelled (shrink or move "
                  "it whole, or mmap the file's further pages)"};
  if (a.dont_unmap && (attrs.shared || attrs.file_private))
    return Status{Code::kEINVAL, Reason::kFlags,
                  "mremap: dontUnmap of a file mapping (shared or private) is not modelled (anonymous "
                  "memory only)"};
  // ---- the plan -------------------------------------------------------------------------------
  enum class Plan { kInPlace, kGrow, kMove } plan = Plan::kInPlace;
  uint64_t d = s;
  if (a.fixed) {
    plan = Plan::kMove;
    d = uint64_t(a.new_start);
  } else if (a.dont_unmap) {
    plan = Plan::kMove;  // MREMAP_DONTUNMAP always moves
  } else if (n_new > n_old) {
    const uint64_t e = s + n_old;
    const bool room = last_end == e && n_new - n_old <= pages_ - e &&
                      check_unmapped(int64_t(e), int64_t(n_new - n_old)).ok();
    if (room) plan = Plan::kGrow;
    else if (!a.may_move)
      return Status{Code::kENOMEM, Reason::kFlags,
                    "mremap: cannot grow in place (the pages after the range are mapped) and "
                    "mayMove is not set"};
    else plan = Plan::kMove;
  }
  if (plan == Plan::kMove && !a.fixed && !find_free_area(n_new, s, &d))
    return Status{Code::kENOMEM, Reason::kFlags, "mremap: no free area of newCount pages"};
  // ---- host memory: the new region map and the PTE tables (an exception changes nothing) -----
  const uint64_t n_move = std::min(n_old, n_new);
  RegionMap next = regions_;
  if (plan == Plan::kInPlace) {
    carve(next, s + n_new, s + n_old);  // nothing when n_new == n_old
  } else if (plan == Plan::kGrow) {
    auto it = next.upper_bound(s);
    --it;  // the region holding the old range's last page ends at s + n_old (checked above)
    while (it->first + it->second.count != s + n_old) ++it;
    it->second.count += n_new - n_old;
  } else {
    if (a.fixed) carve(next, d, d + n_new);
    if (!a.dont_unmap) carve(next, s, s + n_old);  // dontUnmap: the old region stays, empty
    Region moved = attrs;
    moved.count = n_new;
    next.emplace(d, moved);
  }
  // ---- and the references of the PMD leaves the change will split (EOVERFLOW) ----------------
  SplitRefsScope split_refs(*this);  // what no split spends goes back, whatever the outcome
  if (plan == Plan::kMove) {
    if (a.fixed) {
      if (Status st = reserve_splits(d, d + n_new); !st.ok()) return st;
    }
    if (Status st = reserve_splits(s + n_move, s + n_old); !st.ok()) return st;
    if (Status st = reserve_splits(s, s + n_move); !st.ok()) return st;
    if (Status st = reserve_move_tables(s, d, n_move); !st.ok()) return st;
  } else if (plan == Plan::kInPlace && n_new < n_old) {
    if (Status st = reserve_splits(s + n_new, s + n_old); !st.ok()) return st;
  }
  // ---- the change (cannot fail from here) -----------------------------------------------------
  if (plan == Plan::kInPlace && n_new < n_old) {
    unmap_range_and_holds(s + n_new, s + n_old);
  }
  if (plan == Plan::kMove) {
    if (a.fixed) {
      unmap_range_and_holds(d, d + n_new);  // MREMAP_FIXED replaces what was there
      drop_hugetlb_reservations(d, d + n_new);  // (the old regions still name their pages)
    }
    if (n_move < n_old) {
      unmap_range_and_holds(s + n_move, s + n_old);
    }
    move_file_held(s, d, n_move);  // a shared file mapping's held pages go with its entries
    // Leaves that the old range's ends cut (the old region keeps the rest) are split by the
    // move itself; one that the new region's ends would cut cannot exist (moved whole or split).
    move_entries(s, d, n_move);
  }
  regions_.swap(next);
  if (plan != Plan::kInPlace || n_new != n_old) stats_.add(MmStat::kRemaps, 1);
  *new_start = d;
  return Status::Ok();
}

}  // namespace pinlab
