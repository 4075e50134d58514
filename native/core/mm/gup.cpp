// get_user_pages / pin_user_pages: the lockless gup_fast walk, the slow path under the mmap
// lock, and unpin_user_pages.
//
// gup_fast against unmap, migration and COW (pin-semantics.md section 5):
//   1. pins: set the mm's has-pinned flag (test first), sample write_protect_seq (odd: fork
//      is write-protecting, use the slow path);
//   2. per entry: read it (bail if absent, special, read-only for a write, COW-shared anon
//      for a pin; a shared mapping's page-cache page needs no unshare), grab the folio
//      speculatively (add-unless-zero, gup_ops.h), re-read the entry and the PMD above it; if
//      either changed, release the grab and stop;
//   3. pins: if write_protect_seq moved, fork may have shared a page we pinned: release all.
// The entry loads, the grab's CAS and the re-reads are seq_cst: they pair with unmap's and
// migration's clear-then-check (address_space.cpp, migrate.cpp) and fork's seq-then-check.
#include <algorithm>
#include <iterator>
#include <thread>
#include <vector>

#include "mm/address_space.h"
#include "pages/gup_ops.h"
#include "base/scan.h"

namespace pinlab {

namespace {
Status check_gup_flags(const GupFlags& f, bool slow_only) {
  if (f.longterm && !f.pin)
    return Status{Code::kEINVAL, Reason::kFlags, "longterm requires a pin (FOLL_LONGTERM only with FOLL_PIN)"};
  if (f.fast_only && slow_only)
    return Status{Code::kEINVAL, Reason::kFlags, "fastOnly contradicts the slow path"};
  return Status::Ok();
}

Status check_gup_range(int64_t start, int64_t count, uint64_t pages) {
  if (count < 0) return Status::Fail(Code::kEINVAL, Reason::kBadCount, count);
  if (start < 0 || uint64_t(start) > pages || uint64_t(count) > pages - uint64_t(start))
    return Status::Fail(Code::kEFAULT, Reason::kVaOutOfRange, start, count);
  return Status::Ok();
}
}  // namespace

void AddressSpace::call_race_hook(RacePoint point, uint64_t vpage) {
  const RaceHook hook = race_hook_;  // a copy: the hook may replace or remove itself
  hook(point, vpage);
}

bool AddressSpace::read_walk_entry(uint64_t v, uint64_t end, const GupFlags& f,
                                   WalkEntry* w) const {
  w->pmd = &pt_.pmd(v >> kPmdShift);
  w->pe = w->pmd->load(std::memory_order_seq_cst);
  w->pte = nullptr;
  w->e = w->pe;
  w->n = 1;
  w->leaves = 1;
  if (entry::huge(w->pe)) {
    // One grab of every subpage this call wants from the 2 MiB leaf. A leaf lies in one
    // region (split_region_at splits any leaf a region boundary would cut), so its entry's
    // protection is every one of its pages' and the grab never runs past the region.
    const uint64_t off = v & (kPtesPerTable - 1);
    w->n = std::min(end - v, kPtesPerTable - off);
    w->pfn = entry::pfn(w->pe) + off;
    w->leaves = 1;
    if (entry::hugetlb(w->pe)) extend_hugetlb_walk(v, end, w);  // one grab per hugetlb page
  } else {
    std::atomic<uint64_t>* t = entry::table(w->pe) ? pt_.table(v >> kPmdShift) : nullptr;
    if (t == nullptr) return false;
    w->pte = t + (v & (kPtesPerTable - 1));
    w->e = w->pte->load(std::memory_order_seq_cst);
    w->pfn = entry::pfn(w->e);
  }
  const uint64_t e = w->e;
  if (!entry::present(e) || entry::special(e) || (f.write && !entry::writable(e))) return false;
  // A read pin through a read-only entry may have to unshare first (gup_must_unshare without
  // a vma): a COW-shared anonymous page (not exclusive; without anon_exclusive, 2019, nothing
  // is unshared), or under the 6.2 rules any page-cache page when the pin is FOLL_LONGTERM,
  // shared mapping or private, which only the slow path can tell apart by its region (it pins
  // a shared mapping's page as it is, and unshares a private one's). A short-term pin of page
  // cache never unshares. A writable entry needs none: anonymous, it is exclusive.
  const bool must_unshare =
      !entry::writable(e) && (entry::non_anon(e) ? f.longterm && rules_.zero_page_unshare
                                                 : rules_.anon_exclusive && !entry::exclusive(e));
  if (f.pin && must_unshare) return false;
  // FOLL_LONGTERM|FOLL_WRITE of page cache that needs dirty tracking: refused, by the slow
  // path's check_vma_flags (gup_fast_folio_allowed leaves it to it). shmem and hugetlb need
  // none: pinned here (the entry says so for shmem, entry::kNoDirtyTracking).
  if (f.longterm && f.write && entry::shared(e) && !entry::hugetlb(e) &&
      !entry::no_dirty_tracking(e) && rules_.longterm_file_writes == LongtermFileWrites::kRefuse)
    return false;
  // FOLL_LONGTERM may not keep a page of ZONE_MOVABLE (a folio never straddles zones, so the
  // PFN answers before any grab): the slow path migrates it first.
  return !(f.longterm && mem_->is_movable(w->pfn));
}

bool AddressSpace::walk_entry_unchanged(const WalkEntry& w) const {
  // The recheck: the entry we grabbed through, and the PMD above it (seq_cst: see the top).
  if (w.pte != nullptr && w.pte->load(std::memory_order_seq_cst) != w.e) return false;
  // Every leaf of a hugetlb run (w.leaves consecutive PMDs of one page, see hugetlb.cpp).
  for (uint64_t k = 0; k < w.leaves; ++k)
    if (w.pmd[k].load(std::memory_order_seq_cst) != w.pe + ((k << kPmdShift) << entry::kPfnShift))
      return false;
  return true;
}

template <Scheme S>
uint64_t AddressSpace::gup_fast_walk(uint64_t start, uint64_t count, const GupFlags& f,
                                     uint32_t* out) {
  PageArray& mem = *mem_;
  uint64_t seq = 0;
  if (f.pin) {
    // Test before set: a store on every call would bounce the mm's line between CPUs.
    // acquire on the test: another pinner's set (and what preceded it) is seen before our
    // first sample of write_protect_seq.
    if (!has_pinned_.load(std::memory_order_acquire))
      has_pinned_.store(true, std::memory_order_seq_cst);
    seq = write_protect_seq_.load(std::memory_order_seq_cst);
    if (seq & 1) {
      stats_.add(MmStat::kSeqRetries, 1);
      return 0;
    }
  }
  const uint64_t end = start + count;
  uint64_t v = start, grabs = 0;
  WalkEntry w;
  while (v < end && read_walk_entry(v, end, f, &w)) {
    const uint64_t pfn = w.pfn, n = w.n;
    if (race_hook_) [[unlikely]]
      call_race_hook(RacePoint::kBeforeGrab, v);
    uint64_t head = 0;
    uint32_t order = 0;
    if (!mem.try_grab_folio_fast<S>(pfn, int64_t(n), f.pin, f.write, &head, &order)) break;
    if (race_hook_) [[unlikely]]
      call_race_hook(RacePoint::kBeforeRecheck, v);
    if (!walk_entry_unchanged(w)) {
      mem.release_folio_refs<S>(pfn, head, order, int64_t(n), f.pin, f.write);
      stats_.add(MmStat::kRecheckFailures, 1);
      break;
    }
    // 32-bit arithmetic: the fill of a 2 MiB leaf vectorises (PFNs fit in 32 bits).
    uint32_t* o = out + (v - start);
    const auto p0 = uint32_t(pfn);
    for (uint32_t k = 0; k < uint32_t(n); ++k) o[k] = p0 + k;
    v += n;
    ++grabs;
  }
  const uint64_t done = v - start;
  if (f.pin && done > 0 && race_hook_) [[unlikely]]
    call_race_hook(RacePoint::kBeforeSeqCheck, start + done);
  if (f.pin && done > 0 && write_protect_seq_.load(std::memory_order_seq_cst) != seq) {
    // fork ran meanwhile and may have shared a page we pinned: give everything back.
    release_grabbed<S>(out, done, f);
    stats_.add(MmStat::kSeqRetries, 1);
    return 0;
  }
  if (done > 0) {
    stats_.add(MmStat::kFastPages, done);
    if (f.pin) {
      mem.add_stat(Stat::kPinAcquired, done);
      mem.add_stat(Stat::kGrabs, grabs);
    }
  }
  return done;
}

template <Scheme S>
void AddressSpace::release_grabbed(const uint32_t* pfns, uint64_t n, const GupFlags& f) {
  // Batched by folio run, like unpin_user_pages: one release per run of one folio.
  for (uint64_t i = 0; i < n;) {
    const uint64_t pfn = pfns[i];
    const uint32_t order = mem_->folio_order(pfn);  // stable: we hold references
    const uint64_t head = pfn & ~((uint64_t{1} << order) - 1);
    uint64_t run = 1;
    while (i + run < n && pfns[i + run] == pfn + run && pfn + run < head + (uint64_t{1} << order))
      ++run;
    mem_->release_folio_refs<S>(pfn, head, order, int64_t(run), f.pin, f.write);
    i += run;
  }
}

Status AddressSpace::gup_fast(int64_t start, int64_t count, const GupFlags& flags,
                              uint32_t* out, uint64_t* done) {
  if (Status st = check_gup_flags(flags, false); !st.ok()) return st;
  if (Status st = check_gup_range(start, count, pages_); !st.ok()) return st;
  *done = 0;
  if (count == 0) return Status::Ok();
  stats_.add(MmStat::kGupCalls, 1);
  uint64_t n = dispatch_scheme(mem_->scheme(), [&](auto tag) {
    return gup_fast_walk<decltype(tag)::value>(uint64_t(start), uint64_t(count), flags, out);
  });
  Status st = Status::Ok();
  if (n < uint64_t(count) && !flags.fast_only) {
    stats_.add(MmStat::kSlowFallbacks, 1);
    std::lock_guard<std::mutex> lock(mmap_lock_);
    uint64_t m = 0;
    st = gup_slow_locked(uint64_t(start) + n, uint64_t(count) - n, flags, out + n, &m);
    n += m;
  }
  *done = n;
  return n == 0 ? st : Status::Ok();  // partial success is success
}

Status AddressSpace::gup_slow(int64_t start, int64_t count, const GupFlags& flags,
                              uint32_t* out, uint64_t* done) {
  if (Status st = check_gup_flags(flags, true); !st.ok()) return st;
  if (Status st = check_gup_range(start, count, pages_); !st.ok()) return st;
  *done = 0;
  if (count == 0) return Status::Ok();
  stats_.add(MmStat::kGupCalls, 1);
  if (flags.pin && !has_pinned_.load(std::memory_order_relaxed))
    has_pinned_.store(true, std::memory_order_seq_cst);
  std::lock_guard<std::mutex> lock(mmap_lock_);
  uint64_t n = 0;
  Status st = gup_slow_locked(uint64_t(start), uint64_t(count), flags, out, &n);
  *done = n;
  return n == 0 ? st : Status::Ok();
}

Status AddressSpace::gup_slow_locked(uint64_t start, uint64_t count, const GupFlags& f,
                                     uint32_t* out, uint64_t* done) {
  Status st = Status::Ok();
  uint64_t i = 0;
  while (i < count) {
    const uint64_t v = start + i;
    st = check_gup_region(v, f);  // EFAULT where the rules refuse this pin: nothing taken
    if (st.ok()) st = handle_fault(v, f.write);  // EFAULT outside a region or on a read-only one
    // A long-term read pin must see the process's later writes: not through the zero page
    // (a private region: every anonymous one here, since mprotect may make it writable).
    if (st.ok() && f.longterm && !f.write && rules_.zero_page_unshare) st = unshare_zero_page(v);
    if (st.ok() && f.longterm && !f.write && rules_.zero_page_unshare) st = unshare_file_page(v);
    // A pin holds this mm's own page; a private hugetlb mapping's file page is unshared for
    // FOLL_LONGTERM only (as page cache in a COW mapping: gup_must_unshare). A private file
    // page (entry::kFile) is left to unshare_file_page above: unshare() keeps page cache.
    // relaxed: we hold the mmap lock, the only writer of PMDs.
    const bool file_page = (pt_.pmd(v >> kPmdShift).load(std::memory_order_relaxed) & entry::kFilePage) != 0;
    if (st.ok() && f.pin && (f.longterm || !file_page)) st = unshare(v);
    if (!st.ok()) break;
    Translation tr = translate(v);
    if (tr.special) {  // the zero page: handed out, never counted
      out[i++] = uint32_t(tr.pfn);
      continue;
    }
    if (f.longterm && mem_->is_movable(tr.pfn) && tr.page_cache) {
      // Page cache is never migrated here (no reverse map): refuse rather than move it.
      st = Status::Fail(Code::kEBUSY, Reason::kMigrateBusy, int64_t(v));
      break;
    }
    if (f.longterm && mem_->is_movable(tr.pfn)) {
      // A racing gup_fast's speculative grab can make the freeze fail: retry a few times, as
      // the kernel's migrate_pages does.
      MigrateOutcome m = MigrateOutcome::kBusy;
      for (int attempt = 0; attempt < 3 && m == MigrateOutcome::kBusy; ++attempt) {
        if (attempt > 0) std::this_thread::yield();
        m = migrate_one(v, false, false);
      }
      if (m != MigrateOutcome::kMoved) {
        st = m == MigrateOutcome::kNoMemory
                 ? Status::Fail(Code::kENOMEM, Reason::kNoFreeBlock, tr.huge ? kPmdOrder : 0)
                 : Status::Fail(Code::kEBUSY, Reason::kMigrateBusy, int64_t(v));
        break;
      }
      stats_.add(MmStat::kLongtermMigrations, 1);
      tr = translate(v);
    }
    // A PMD leaf: the subpages this call wants, to the leaf's end and never past the region's
    // (a leaf lies in one region, split_region_at keeps it so: the bound is a second guard).
    uint64_t n = 1;
    if (tr.huge) {
      uint64_t rs = 0;
      const Region* r = region_at(v, &rs);  // handle_fault found it
      n = std::min({count - i, kPtesPerTable - (v & (kPtesPerTable - 1)), rs + r->count - v});
      // A hugetlb page: to its end (its leaves are installed and cleared together).
      if (r->hugetlb_order != 0) {
        const uint64_t head = mem_->folio_head(tr.pfn);
        n = std::min({count - i, head + (uint64_t{1} << r->hugetlb_order) - tr.pfn, rs + r->count - v});
      }
    }
    st = mem_->grab_folio(tr.pfn, int64_t(n), f.pin, f.write);
    if (!st.ok()) break;
    for (uint64_t k = 0; k < n; ++k) out[i + k] = uint32_t(tr.pfn + k);
    i += n;
  }
  stats_.add(MmStat::kSlowPages, i);
  *done = i;
  return st;
}

Status AddressSpace::unpin_user_pages(const uint32_t* pfns, uint64_t count, bool write,
                                      bool dirty) {
  // The zero page and the huge zero folio were never counted: leave them out (copying the list
  // only if it names one).
  std::vector<uint32_t> kept;
  const uint32_t* list = without_zero_pages(pfns, count, &kept);
  const uint64_t n = list == pfns ? count : kept.size();
  if (n == 0) return Status::Ok();
  PinFlags pf;
  pf.write = write;
  pf.dirty = dirty;
  return mem_->unpin_pages(PageSet::pfns(list, n), pf);
}

Status AddressSpace::put_user_pages(const uint32_t* pfns, uint64_t count) {
  // The zero page and the huge zero folio were never counted: left out, as unpin_user_pages.
  std::vector<uint32_t> kept;
  const uint32_t* list = without_zero_pages(pfns, count, &kept);
  if (list == pfns) return mem_->put_pages(pfns, count, -1);
  return kept.empty() ? Status::Ok() : mem_->put_pages(kept.data(), kept.size(), -1);
}

const uint32_t* AddressSpace::without_zero_pages(const uint32_t* pfns, uint64_t count,
                                                 std::vector<uint32_t>* kept) const {
  const ZeroPfns zeros = mem_->zero_pfns();  // acquire: each published once, released
  if (zeros.none()) return pfns;
  const int64_t zero = zeros.zero(), huge = zeros.huge_head();
  if (!any_equal_or_in(pfns, count, zero >= 0 ? uint32_t(zero) : ~uint32_t{0},
                       huge >= 0 ? uint32_t(huge) : 0, huge >= 0 ? uint32_t(ZeroPfns::kHugePages) : 0))
    return pfns;
  std::copy_if(pfns, pfns + count, std::back_inserter(*kept),
               [&](uint32_t p) { return !zeros.names(p); });
  return kept->data();
}

}  // namespace pinlab
