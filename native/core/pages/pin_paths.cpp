// pin_pages / unpin_pages over the per-page and bvec paths, with all-or-nothing rollback,
// and the scans that read the scheme (to_bvecs, count_maybe_dma_pinned) or only the list
// (pfn runs).
#include <vector>

#include "pages/cursors.h"
#include "pages/page_array.h"
#include "base/scan.h"
#include "pages/scheme_ops.h"

namespace pinlab {

// ---- pin ------------------------------------------------------------------------------------

template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
Status PageArray::pin_walk(Cursor cursor, bool write, uint64_t* done, uint64_t* grabs) {
  // Counters in locals: the atomics below would otherwise make the compiler store them on
  // every iteration (it must assume they may alias).
  uint64_t pages = 0, runs = 0;
  Status st = Status::Ok();
  Run r;
  while (cursor.next(&r)) {
    FolioGuard<kDebug> guard(debug_locks_.get(), r.head);
    // One grab per run: the run's length in one atomic (bvec), or 1 (per-page).
    const Reason fault = try_grab_pin<S>(r.head, r.order, int64_t(r.count), write);
    if (fault != Reason::kNone) [[unlikely]] {
      st = pin_fault(fault, r.pfn);
      break;
    }
    if constexpr (kDebug) debug_note_pins(r.pfn, r.count, write);
    pages += r.count;
    ++runs;
  }
  *done = pages;
  *grabs = runs;
  return st;
}

template <Scheme S, bool kDebug, typename Cursor>
void PageArray::undo_pins(Cursor cursor, bool write) {
  Run r;
  while (cursor.next(&r)) {
    FolioGuard<kDebug> guard(debug_locks_.get(), r.head);
    if constexpr (kDebug) debug_drop_pins(r.pfn, r.count, write);
    undo_grab_pin<S>(r.head, r.order, int64_t(r.count), write);
  }
}

template <Scheme S, bool kPerPage, bool kDebug>
Status PageArray::pin_set(const PageSet& set, bool write) {
  return with_cursor<kPerPage>(*this, set, [&](auto cursor) {
    uint64_t done = 0, grabs = 0;
    Status st = pin_walk<S, kPerPage, kDebug>(cursor, write, &done, &grabs);
    if (!st.ok()) {
      undo_pins<S, kDebug>(cursor.prefix(done), write);
      stats_.add(Stat::kRollbacks, 1);
      if (st.code == Code::kEOVERFLOW) stats_.add(Stat::kOverflowRefusals, 1);
      return st;
    }
    stats_.add(Stat::kGrabs, grabs);
    return st;
  });
}

Status PageArray::pin_pages(const PageSet& set, const PinFlags& flags, uint64_t* pinned) {
  if (Status st = check_page_set(set); !st.ok()) return st;
  Status st = dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return dispatch_bool(flags.per_page, [&](auto per_page) {
      return dispatch_bool(cfg_.debug, [&](auto debug) {
        return pin_set<decltype(tag)::value, per_page(), debug()>(set, flags.write);
      });
    });
  });
  if (!st.ok()) return st;
  stats_.add(Stat::kPinAcquired, set.count);
  *pinned = set.count;
  return st;
}

// ---- unpin ----------------------------------------------------------------------------------

template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
Status PageArray::unpin_walk(Cursor cursor, const PinFlags& flags, uint64_t* done,
                             uint64_t* grabs, std::vector<uint64_t>* freed,
                             std::vector<uint64_t>* dirtied) {
  uint64_t pages = 0, runs = 0;
  Status st = Status::Ok();
  Run r;
  while (cursor.next(&r)) {
    FolioGuard<kDebug> guard(debug_locks_.get(), r.head);
    if constexpr (kDebug) {
      // Debug first: an unpin of a page with no such pin is refused before any count moves.
      st = debug_take_pins(r.pfn, r.count, flags.write);
      if (!st.ok()) break;
    }
    // Dirty before the release, as unpin_user_pages_dirty_lock: the release may free it.
    if (flags.dirty && mark_dirty(r.head)) dirtied->push_back(r.head);
    bool reached_zero = false;
    const Reason fault =
        try_release_pin<S>(r.head, r.order, int64_t(r.count), flags.write, &reached_zero);
    if (fault != Reason::kNone) [[unlikely]] {
      if constexpr (kDebug) debug_note_pins(r.pfn, r.count, flags.write);
      st = pin_fault(fault, r.pfn);
      break;
    }
    pages += r.count;
    if (reached_zero) [[unlikely]]
      freed->push_back(r.head);
    ++runs;
  }
  *done = pages;
  *grabs = runs;
  return st;
}

template <Scheme S, bool kDebug, typename Cursor>
void PageArray::undo_unpins(Cursor cursor, bool write) {
  Run r;
  while (cursor.next(&r)) {
    FolioGuard<kDebug> guard(debug_locks_.get(), r.head);
    undo_release_pin<S>(r.head, r.order, int64_t(r.count), write);
    if constexpr (kDebug) debug_note_pins(r.pfn, r.count, write);
  }
}

template <Scheme S, bool kPerPage, bool kDebug>
Status PageArray::unpin_set(const PageSet& set, const PinFlags& flags) {
  return with_cursor<kPerPage>(*this, set, [&](auto cursor) {
    uint64_t done = 0, grabs = 0;
    std::vector<uint64_t> freed, dirtied;
    Status st = unpin_walk<S, kPerPage, kDebug>(cursor, flags, &done, &grabs, &freed, &dirtied);
    if (!st.ok()) {
      // Re-take what this call released (a folio it took to zero comes back to life: nothing
      // else may have touched it, since freeing is only acted on after success), and clear
      // the dirty flags it set.
      undo_unpins<S, kDebug>(cursor.prefix(done), flags.write);
      for (uint64_t head : dirtied) clear_dirty(head);
      stats_.add(Stat::kRollbacks, 1);
      return st;
    }
    stats_.add(Stat::kGrabs, grabs);
    // Only now, with the whole call done, do the folios this call took to zero go free.
    for (uint64_t head : freed) free_folio(head);
    return st;
  });
}

Status PageArray::unpin_pages(const PageSet& set, const PinFlags& flags) {
  if (Status st = check_page_set(set); !st.ok()) return st;
  Status st = dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return dispatch_bool(flags.per_page, [&](auto per_page) {
      return dispatch_bool(cfg_.debug, [&](auto debug) {
        return unpin_set<decltype(tag)::value, per_page(), debug()>(set, flags);
      });
    });
  });
  if (st.ok()) stats_.add(Stat::kPinReleased, set.count);
  return st;
}

// ---- scans ----------------------------------------------------------------------------------

Status PageArray::to_bvecs(const PageSet& set, std::vector<Bvec>* out) const {
  if (Status st = check_page_set(set); !st.ok()) return st;
  out->clear();
  with_cursor<false>(*this, set, [&](auto cursor) {
    Run r;
    while (cursor.next(&r)) out->push_back(Bvec{r.pfn, r.count});
  });
  return Status::Ok();
}

Status PageArray::count_maybe_dma_pinned(const PageSet& set, uint64_t* out) const {
  if (Status st = check_page_set(set); !st.ok()) return st;
  *out = dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return with_cursor<false>(*this, set, [&](auto cursor) {
      uint64_t n = 0;
      Run r;
      // One answer per folio run, weighted by the run's base pages.
      while (cursor.next(&r))
        n += maybe_pinned_folio<decltype(tag)::value>(r.head, r.order) ? r.count : 0;
      return n;
    });
  });
  return Status::Ok();
}

Status PageArray::count_pfn_runs(const uint32_t* list, uint64_t n, uint64_t* runs) const {
  if (Status st = check_page_set(PageSet::pfns(list, n)); !st.ok()) return st;
  *runs = count_ascending_runs(list, n);  // branch-free: one pass to size the output
  return Status::Ok();
}

void PageArray::write_pfn_runs(const uint32_t* list, uint64_t n, uint32_t* out) {
  for (uint64_t i = 0; i < n; out += 2) {
    const uint64_t len = ascending_run(list + i, n - i);
    out[0] = list[i];
    out[1] = uint32_t(len);  // <= n < 2^32 (a Uint32Array's length)
    i += len;
  }
}

}  // namespace pinlab
