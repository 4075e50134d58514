// Run cursors: turn a page set into runs of consecutive subpages of one folio.
//
// The bvec path takes maximal runs (one grab of the run length per run, the get_user_bvec
// idea); the per-page path takes runs of one subpage. Both paths share every other line of
// code, so they cannot drift apart. Internal to the core.
#pragma once

#include <algorithm>

#include "pages/page_array.h"
#include "base/scan.h"

namespace pinlab {

struct Run {
  uint64_t pfn;    // first subpage
  uint64_t head;   // its folio's head
  uint32_t order;  // its folio's order
  uint64_t count;  // subpages in the run
};

// { start, count }: walks folio by folio, so the bvec path costs per folio, not per page.
template <bool kPerPage>
class RangeCursor {
 public:
  RangeCursor(const PageArray& pa, uint64_t start, uint64_t count)
      : pa_(pa), start_(start), pfn_(start), end_(start + count) {}

  [[gnu::always_inline]] bool next(Run* run) {
    if (pfn_ >= end_) return false;
    const uint32_t order = pa_.load_order(pfn_);
    const uint64_t head = PageArray::head_of(pfn_, order);
    // order 0 first: a run over small folios is always one page, and the branch predicts.
    const uint64_t n =
        kPerPage || order == 0 ? 1 : std::min(end_, head + (uint64_t{1} << order)) - pfn_;
    *run = Run{pfn_, head, order, n};
    pfn_ += n;
    return true;
  }
  // The first `pages` pages of this set, as bvec runs: what a refused pin gives back.
  RangeCursor<false> prefix(uint64_t pages) const { return {pa_, start_, pages}; }
  // The whole set from its start, as validation walks it: by folio (bvec runs), not page.
  RangeCursor<false> for_validation() const { return {pa_, start_, end_ - start_}; }
  uint64_t size() const { return end_ - start_; }  // pages in the set

 private:
  const PageArray& pa_;
  uint64_t start_, pfn_, end_;
};

// A PFN list (any order, repeats allowed): a run is a stretch of entries that are consecutive
// PFNs of one folio, found by a cheap non-atomic scan before the one grab.
template <bool kPerPage>
class ListCursor {
 public:
  ListCursor(const PageArray& pa, const uint32_t* list, uint64_t count)
      : pa_(pa), list_(list), i_(0), n_(count) {}

  [[gnu::always_inline]] bool next(Run* run) {
    if (i_ >= n_) return false;
    const uint64_t pfn = list_[i_];
    const uint32_t order = pa_.load_order(pfn);
    const uint64_t head = PageArray::head_of(pfn, order);
    uint64_t n = 1;
    if constexpr (!kPerPage) {
      // A small folio is a run of one: no call (the scan is out of line, multiversioned), and
      // order 0 is tested first, as in RangeCursor, so a list of small folios pays one branch.
      if (order != 0) {
        const uint64_t limit = std::min(n_ - i_, head + (uint64_t{1} << order) - pfn);
        if (limit > 1) n = consecutive_run(list_ + i_, limit, uint32_t(pfn));  // PFNs < 2^31
      }
    }
    *run = Run{pfn, head, order, n};
    i_ += n;
    return true;
  }
  ListCursor<false> prefix(uint64_t entries) const { return {pa_, list_, entries}; }
  // The whole list as bvec runs: per run, not entry (a large folio's run is one scan).
  ListCursor<false> for_validation() const { return {pa_, list_, n_}; }
  uint64_t size() const { return n_; }  // entries in the list

 private:
  const PageArray& pa_;
  const uint32_t* list_;
  uint64_t i_, n_;
};

// Calls f(cursor) with the right cursor type for the set. Inlined, as the walks are into f: a
// cursor passed in memory between calls stalls store-to-load forwarding (pin_paths.cpp).
template <bool kPerPage, typename F>
[[gnu::always_inline]] inline decltype(auto) with_cursor(const PageArray& pa, const PageSet& set, F&& f) {
  if (set.is_list()) return std::forward<F>(f)(ListCursor<kPerPage>(pa, set.list, set.count));
  return std::forward<F>(f)(RangeCursor<kPerPage>(pa, set.start, set.count));
}

}  // namespace pinlab
