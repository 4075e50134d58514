// pin_pages / unpin_pages over the per-page and bvec paths, and the scans that read the
// scheme (to_bvecs, count_maybe_dma_pinned) or only the list (pfn runs).
//
// scheme_ops.h has the protocol of one grab or release; this file has the protocol of a call.
//
//   pin       One grab per run, each a CAS that refuses without writing. A call refused midway
//             gives back what it took as unpins of its own pins (acq_rel CASes; a folio whose
//             other holders all let go meanwhile is freed then, never leaked), so it is all or
//             nothing, but its grabs were real for that moment: another thread may have seen
//             extra pins (a maybe-pinned false positive, which the contract allows) or, on a
//             folio within a grab of INT32_MAX, had a grab refused. Validating pins ahead
//             would close that window at the price of a second pass over the counts, about
//             1 ns a page, which the per-page budget (bench target 1) has no room for; what a
//             refused pin shows is extra pins only, never a missing one.
//   unpin     First the whole call against one snapshot of each folio: the call's running
//             total per folio head (a list may name one folio many times, call_tallies.h)
//             against its pincount and refcount, and in debug mode per subpage against the
//             exact pins. A call refused here wrote nothing, and names the run where a walk in
//             call order would have failed. Then one release per run, none of which is ever
//             taken back. Re-taking a reference after letting it go is not safe without a
//             lock: once a release leaves a folio to its other holders they may drop it to zero
//             and free it, and the allocator may hand its pages to someone else; a rollback
//             would revive a free folio (a double free later) or pin a stranger's. Validation
//             makes the release pass certain for every caller that releases only pins it holds.
//             It can be refused only when another call released the same pins after our
//             snapshot (two callers unpinning one pin: one of them is wrong): that run is
//             skipped, never driven below zero, the rest of the call is released, and the call
//             reports ENOTPINNED (kReleaseRaced) for the first skipped run. Where both released
//             the same pins the counts read as if this call had released them and the other
//             had been refused. Folios the pass takes to zero are freed after it; the room to
//             note them is made before its first release (freed_heads.h).
//   zero page Never counted (gup hands it out uncounted): a pin or unpin naming it, or one of
//             the huge zero folio's 512 subpages, is EINVAL before the first change (one load
//             while neither exists, else one vectorised scan of a list for both). A pin whose
//             walk met a page that became the zero page meanwhile (it was free when the call
//             was checked) gives back its own pins and is refused the same. The huge zero
//             folio's refcount is frozen at 0 before it is published: no grab lands on it.
//   debug     The call holds the stripes of all its folios from validation to its last change
//             (HeldStripes), so against other debug-mode calls it is one critical section and
//             its release pass is never refused.
#include <type_traits>
#include <vector>

#include "base/scan.h"
#include "pages/call_tallies.h"
#include "pages/cursors.h"
#include "pages/freed_heads.h"
#include "pages/one_page.h"
#include "pages/page_array.h"
#include "pages/scheme_ops.h"

namespace pinlab {

namespace {
// At most how many folios a validated release pass over the cursor can take to zero (one per
// folio run; FreedHeads' room): its size while that fits inline, else its runs counted.
template <typename Cursor>
uint64_t runs_at_most(Cursor cursor) {
  if (cursor.size() <= FreedHeads::kInline) return cursor.size();
  auto runs = cursor.for_validation();
  uint64_t n = 0;
  Run r;
  while (runs.next(&r)) ++n;
  return n;
}

// Calls f(head) for every run of the cursor: the keys of the call's debug stripes.
template <typename Cursor>
auto heads_of(Cursor cursor) {
  return [cursor](auto&& f) {
    Cursor c = cursor;
    Run r;
    while (c.next(&r)) f(r.head);
  };
}
}  // namespace

// ---- validation -----------------------------------------------------------------------------

// A range's maximal runs are each a folio of its own, met once: no tallies needed.
template <typename Cursor>
constexpr bool kDistinctFolios = std::is_same_v<Cursor, RangeCursor<false>>;

// relaxed loads throughout: a snapshot to decide on; the releases that follow are CASes that
// check again, so a stale snapshot can only make the release pass refuse, never overshoot.
template <Scheme S, bool kDebug, bool kMapped, typename Cursor>
PINLAB_ALWAYS_INLINE Status PageArray::check_unpins(Cursor cursor, bool write, bool* unordered) const {
  // A local: the atomics in the loop would make the compiler reload the member every time.
  const SchemeParams params = params_;
  Run r;
  if constexpr (!kMapped && !kDebug && !kDistinctFolios<Cursor>) {
    // The hot path of an ascending list (no debug): the current folio's tally in locals, so
    // the loop keeps it in registers. (A range meets each folio once: the loop below, with no
    // tally kept at all, measured faster for it.)
    uint64_t head = ~uint64_t{0};  // no folio yet: no PFN is this large
    int64_t total = 0, count = 0, pins = 0;
    bool exact = false;
    while (cursor.next(&r)) {
      if (r.head != head) {
        if (r.head < head && head != ~uint64_t{0}) [[unlikely]] {
          *unordered = true;
          return Status::Ok();
        }
        head = r.head;
        total = 0;
        count = ref_at(head).load(std::memory_order_relaxed);
        exact = keeps_pins<S>(r.order);
        // (A kOwn store that answers holds_pins itself is asked per run below instead.)
        pins = exact && !kOwnHoldsPins<S> ? load_pins<S>(head, r.order, std::memory_order_relaxed) : 0;
      }
      total += int64_t(r.count);
      // As below: the pincount must hold the call's pins so far, the refcount their references.
      const PinCost cost = SchemePolicy<S>::pin_cost(params, r.order, total, write);
      bool short_of_pins;
      if constexpr (kOwnHoldsPins<S>) short_of_pins = exact && !holds_pins<S>(head, r.order, cost.pin);
      else short_of_pins = exact && cost.pin > pins;
      if (short_of_pins || release_refs_needed<S>(r.order, cost) > count) [[unlikely]]
        return pin_fault(Reason::kNotPinned, r.pfn);
    }
    return Status::Ok();
  }
  // subpages: debug mode's exact pins. The cursor's size bounds both tables' keys.
  Tallies<kMapped> folios(cursor.size(), 0), subpages(kDebug ? cursor.size() : 0, 1);
  while (cursor.next(&r)) {
    bool fresh = true;
    if constexpr (kDebug) {
      // Debug first, as the walk did: the exact per-subpage pins name the precise reason.
      for (uint64_t p = r.pfn; p < r.pfn + r.count; ++p) {
        Tally* t = subpages.find(p, &fresh);
        if (t == nullptr) [[unlikely]] {
          *unordered = true;
          return Status::Ok();
        }
        if (fresh) {
          t->count = debug_pins_at(p);
          t->pins = debug_write_pins_at(p);
        }
        t->total += 1;
        const Reason missing = debug_unpin_refusal(t->total, t->count, t->pins, write);
        if (missing != Reason::kNone) return Status::Fail(Code::kENOTPINNED, missing, int64_t(p));
      }
    }
    Tally one;
    Tally* t = &one;
    fresh = true;
    if constexpr (!kDistinctFolios<Cursor>) {
      t = folios.find(r.head, &fresh);
      if (t == nullptr) [[unlikely]] {
        *unordered = true;
        return Status::Ok();
      }
    }
    if (fresh) {
      t->count = ref_at(r.head).load(std::memory_order_relaxed);
      if (keeps_pins<S>(r.order)) {
        if constexpr (!kOwnHoldsPins<S>) t->pins = load_pins<S>(r.head, r.order, std::memory_order_relaxed);
        t->exact = true;
      }
    }
    t->total += int64_t(r.count);
    // The release of the call's pins so far: the pincount must hold them, and the refcount
    // their references (below either, the walk would have failed here).
    const PinCost cost = SchemePolicy<S>::pin_cost(params, r.order, t->total, write);
    bool short_of_pins;
    if constexpr (kOwnHoldsPins<S>) short_of_pins = t->exact && !holds_pins<S>(r.head, r.order, cost.pin);
    else short_of_pins = t->exact && cost.pin > t->pins;
    if (short_of_pins || release_refs_needed<S>(r.order, cost) > t->count) [[unlikely]]
      return pin_fault(Reason::kNotPinned, r.pfn);
  }
  return Status::Ok();
}

// Validation walks maximal runs whatever the path: its verdict depends only on each folio's
// (and subpage's) totals, which grow along the call, so both walks refuse the same calls, and
// the bvec walk costs per run, not page. A refused per-page call is walked again on its own
// runs to name the page where a walk in call order fails.
template <Scheme S, bool kDebug, typename Cursor>
PINLAB_ALWAYS_INLINE Status PageArray::validate_unpins(Cursor cursor, bool write) const {
  auto check = [&](auto runs) PINLAB_LAMBDA_INLINE {
    bool unordered = false;
    Status st = check_unpins<S, kDebug, false>(runs, write, &unordered);
    if (unordered) [[unlikely]]
      st = check_unpins<S, kDebug, true>(runs, write, &unordered);
    return st;
  };
  Status st = check(cursor.for_validation());
  if (!st.ok() && !std::is_same_v<Cursor, decltype(cursor.for_validation())>) [[unlikely]]
    st = check(cursor);
  return st;
}

// ---- pin ------------------------------------------------------------------------------------

template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
PINLAB_ALWAYS_INLINE Status PageArray::pin_walk(Cursor cursor, bool write, uint64_t* done, uint64_t* grabs) {
  // Counters in locals: the atomics below would otherwise make the compiler store them on
  // every iteration (it must assume they may alias).
  uint64_t pages = 0, runs = 0;
  Status st = Status::Ok();
  Run r;
  while (cursor.next(&r)) {
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
void PageArray::release_own_pins(Cursor cursor, bool write) {
  Run r;
  while (cursor.next(&r)) {
    if constexpr (kDebug) debug_drop_pins(r.pfn, r.count, write);
    if (release_own_pin<S>(r.head, r.order, int64_t(r.count), write)) [[unlikely]]
      free_folio(r.head);  // every other holder let go while we held it: ours to free
  }
}

template <Scheme S, bool kPerPage, bool kDebug>
Status PageArray::pin_set(const PageSet& set, bool write, ZeroPfns zeros_at_check, StatTally* tally) {
  // The first run's lines, while the cursor reads its order (about 3% of a short call).
  if (set.count != 0) prefetch_counts(set.first());
  return with_cursor<kPerPage>(*this, set, [&](auto cursor) PINLAB_LAMBDA_INLINE {
    HeldStripes held(debug_locks_.get());
    if constexpr (kDebug) held.lock_keys(heads_of(cursor));
    uint64_t done = 0, grabs = 0;
    Status st = pin_walk<S, kPerPage, kDebug>(cursor, write, &done, &grabs);
    // The zero page is made once, from a free page: if it appeared during the walk on a page
    // the call named (a page that was free when the call was checked, and allocated as the
    // zero page before its grab), the call gives back its own pins and is refused as if the
    // zero page had been there first. One load when the zero page exists already. (The huge
    // zero folio needs no recheck: its refcount is frozen at 0 before it is published, so no
    // grab can land on it, and a grab before the freeze keeps the block from becoming it.)
    if (st.ok() && zeros_at_check.zero() < 0) [[unlikely]] {
      if (const ZeroPfns now = zero_pfns(); now.word != zeros_at_check.word) {
        if (Status z = refuse_zero_page(set, now); !z.ok()) st = z;
      }
    }
    if (st.ok()) {
      add_stat(tally, Stat::kGrabs, grabs);
      return st;
    }
    release_own_pins<S, kDebug>(cursor.prefix(done), write);
    add_stat(tally, Stat::kRollbacks, 1);
    if (st.code == Code::kEOVERFLOW) add_stat(tally, Stat::kOverflowRefusals, 1);
    return st;
  });
}

Status PageArray::refuse_zero_page_slow(const PageSet& set, ZeroPfns zeros) {
  const int64_t zero = zeros.zero(), huge = zeros.huge_head();
  // A range names a page iff the page lies in it; it names the huge zero folio iff the two
  // ranges overlap. A list: one vectorised pass over both (a span of 0 where none is made).
  auto in_range = [&](int64_t lo, uint64_t n) {
    return lo >= 0 && uint64_t(lo) < set.start + set.count && set.start < uint64_t(lo) + n;
  };
  bool named = false;
  if (set.is_list()) {
    // uint32 value ~0 for "no zero page": never a PFN (PFNs < 2^31).
    named = any_equal_or_in(set.list, set.count, zero >= 0 ? uint32_t(zero) : ~uint32_t{0},
                            huge >= 0 ? uint32_t(huge) : 0,
                            huge >= 0 ? uint32_t(ZeroPfns::kHugePages) : 0);
  } else {
    named = in_range(zero, 1) || in_range(huge, ZeroPfns::kHugePages);
  }
  if (!named) return Status::Ok();
  // The value names what was refused: the zero page if the call names it, else the huge head.
  const bool names_zero = zero >= 0 && (set.is_list() ? any_equal(set.list, set.count, uint32_t(zero))
                                                      : in_range(zero, 1));
  return Status::Fail(Code::kEINVAL, Reason::kZeroPageCounted, names_zero ? zero : huge);
}

Status PageArray::pin_pages(const PageSet& set, const PinFlags& flags, uint64_t* pinned) {
  return pin_pages(set, flags, pinned, nullptr);
}

Status PageArray::pin_pages(const PageSet& set, const PinFlags& flags, uint64_t* pinned, StatTally* tally) {
  if (Status st = check_page_set(set); !st.ok()) [[unlikely]] return st;
  // acquire (zero_pfns): the zero page and the huge zero folio are published once each, with
  // a release store.
  const ZeroPfns zero = zero_pfns();
  if (Status st = refuse_zero_page(set, zero); !st.ok()) [[unlikely]] return st;
  return pin_checked(set, flags, zero, pinned, tally);  // built in our caller's Status
}

// On their success paths the calls of a path return their Status as prvalues, or as the one
// Status they return on every path, so the chain builds it in place in the caller's (copy
// elision): a copy of a Status just written field by field stalls store-to-load forwarding,
// which cost a multi-page call about half of its fixed cost.
Status PageArray::pin_checked(const PageSet& set, const PinFlags& flags, ZeroPfns zero, uint64_t* pinned,
                              StatTally* tally) {
  Status st = set.count == 1 && !cfg_.debug
                  ? dispatch_scheme(cfg_.scheme, [&](auto tag) {
                      constexpr Scheme S = decltype(tag)::value;
                      return tally != nullptr ? pin_one<S>(set.first(), flags.write, zero, *tally)
                                              : pin_one<S>(set.first(), flags.write, zero, stats_);
                    })
                  : dispatch_scheme(cfg_.scheme, [&](auto tag) {
                      return dispatch_bool(flags.per_page, [&](auto per_page) {
                        return dispatch_bool(cfg_.debug, [&](auto debug) {
                          return pin_set<decltype(tag)::value, per_page(), debug()>(set, flags.write, zero, tally);
                        });
                      });
                    });
  if (st.ok()) {
    add_stat(tally, Stat::kPinAcquired, set.count);
    *pinned = set.count;
  }
  return st;
}

// ---- unpin ----------------------------------------------------------------------------------

template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
PINLAB_ALWAYS_INLINE Status PageArray::unpin_walk(Cursor cursor, const PinFlags& flags, uint64_t* done,
                             uint64_t* grabs, FreedHeads* freed) {
  // Counters and the first skipped run in locals, as in pin_walk.
  uint64_t pages = 0, runs = 0, skipped_pfn = 0;
  Reason skipped = Reason::kNone;
  Run r;
  while (cursor.next(&r)) {
    if constexpr (kDebug) {
      // Validated under the call's stripes, which every pin and unpin takes: it holds.
      if (!debug_take_pins(r.pfn, r.count, flags.write).ok()) [[unlikely]] {
        if (skipped == Reason::kNone) skipped = Reason::kReleaseRaced, skipped_pfn = r.pfn;
        continue;
      }
    }
    // Dirty before the release, as unpin_user_pages_dirty_lock: the release may free it.
    if (flags.dirty) mark_dirty(r.head);
    bool reached_zero = false;
    const Reason fault =
        try_release_pin<S>(r.head, r.order, int64_t(r.count), flags.write, &reached_zero);
    if (fault != Reason::kNone) [[unlikely]] {
      // Another call released these pins since validation: skip the run, never take back
      // what this pass already released (see the top of the file).
      if constexpr (kDebug) {
        if (fault != Reason::kRefsEaten) debug_note_pins(r.pfn, r.count, flags.write);
      }
      if (skipped == Reason::kNone) {
        skipped = fault == Reason::kRefsEaten ? fault : Reason::kReleaseRaced;
        skipped_pfn = r.pfn;
      }
      continue;
    }
    pages += r.count;
    // Ours to free once the pass is done; at once only if its room is full (FreedHeads).
    if (reached_zero && !freed->try_add(r.head)) [[unlikely]]
      free_folio(r.head);
    ++runs;
  }
  *done = pages;
  *grabs = runs;
  if (skipped != Reason::kNone) [[unlikely]]
    return Status::Fail(Code::kENOTPINNED, skipped, int64_t(skipped_pfn));
  return Status::Ok();
}

template <Scheme S, bool kPerPage, bool kDebug>
Status PageArray::unpin_set(const PageSet& set, const PinFlags& flags, uint64_t* released,
                            StatTally* tally) {
  if (set.count != 0) prefetch_counts(set.first());  // as pin_set
  return with_cursor<kPerPage>(*this, set, [&](auto cursor) PINLAB_LAMBDA_INLINE {
    HeldStripes held(debug_locks_.get());
    if constexpr (kDebug) held.lock_keys(heads_of(cursor));
    *released = 0;
    if (Status st = validate_unpins<S, kDebug>(cursor, flags.write); !st.ok()) [[unlikely]] {
      add_stat(tally, Stat::kRollbacks, 1);  // refused whole: nothing was written
      return st;
    }
    return release_validated<S, kPerPage, kDebug>(cursor, flags, released, held, tally);
  });
}

// unpin_set's release pass, the call validated: its Status is the caller's (see pin_checked).
template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
PINLAB_ALWAYS_INLINE Status PageArray::release_validated(Cursor cursor, const PinFlags& flags, uint64_t* released,
                                    HeldStripes& held, StatTally* tally) {
  // Room for the folios the pass may free, before its first release (std::bad_alloc here is
  // the caller's ENOMEM with nothing changed).
  FreedHeads freed(runs_at_most(cursor));
  uint64_t grabs = 0;
  Status st = unpin_walk<S, kPerPage, kDebug>(cursor, flags, released, &grabs, &freed);
  held.unlock();
  add_stat(tally, Stat::kGrabs, grabs);
  // Only now, with the pass done, do the folios it took to zero go free.
  freed.for_each([this](uint64_t head) { free_folio(head); });
  return st;
}

Status PageArray::unpin_pages(const PageSet& set, const PinFlags& flags) {
  return unpin_pages(set, flags, nullptr);
}

Status PageArray::unpin_pages(const PageSet& set, const PinFlags& flags, StatTally* tally) {
  if (Status st = check_page_set(set); !st.ok()) [[unlikely]] return st;
  // The zero page is never counted, so it holds no pin to release (a page that becomes the
  // zero page after this check was free: validation refuses it, ENOTPINNED).
  if (Status st = refuse_zero_page(set, zero_pfns()); !st.ok()) [[unlikely]] return st;
  return unpin_checked(set, flags, tally);  // built in our caller's Status (see pin_checked)
}

Status PageArray::unpin_checked(const PageSet& set, const PinFlags& flags, StatTally* tally) {
  uint64_t released = 0;
  Status st = set.count == 1 && !cfg_.debug
                  ? dispatch_scheme(cfg_.scheme, [&](auto tag) {
                      constexpr Scheme S = decltype(tag)::value;
                      return tally != nullptr ? unpin_one<S>(set.first(), flags, &released, *tally)
                                              : unpin_one<S>(set.first(), flags, &released, stats_);
                    })
                  : dispatch_scheme(cfg_.scheme, [&](auto tag) {
                      return dispatch_bool(flags.per_page, [&](auto per_page) {
                        return dispatch_bool(cfg_.debug, [&](auto debug) {
                          return unpin_set<decltype(tag)::value, per_page(), debug()>(set, flags, &released, tally);
                        });
                      });
                    });
  add_stat(tally, Stat::kPinReleased, released);
  return st;
}

// ---- single pages, many calls at a time ------------------------------------------------------
// pin_page_as / unpin_page_as (pages/one_page.h) with the scheme chosen per call.

Code PageArray::pin_page(uint64_t pfn, bool write, StatTally* tally) {
  return dispatch_scheme(cfg_.scheme, [&](auto tag) { return pin_page_as<decltype(tag)::value>(pfn, write, tally); });
}

Code PageArray::unpin_page(uint64_t pfn, const PinFlags& flags, StatTally* tally) {
  return dispatch_scheme(cfg_.scheme, [&](auto tag) { return unpin_page_as<decltype(tag)::value>(pfn, flags, tally); });
}

Code PageArray::pin_page_general(uint64_t pfn, bool write) {
  uint64_t pinned = 0;
  return pin_pages(PageSet::range(pfn, 1), PinFlags{write, false, false}, &pinned).code;
}

Code PageArray::unpin_page_general(uint64_t pfn, const PinFlags& flags) {
  return unpin_pages(PageSet::range(pfn, 1), flags).code;
}

// ---- unpin of read and write pins as one call --------------------------------------------------

// The running totals of an unpin of read and write pins, per folio (or, in debug mode, per
// subpage), against one snapshot of it.
struct BothTally {
  int64_t reads = 0, writes = 0;  // the pins the call takes so far, by kind
  int64_t count = 0;  // the snapshot: refcount (a subpage: its exact pins)
  int64_t pins = 0;   // the snapshot: pincount (a subpage: its exact write pins)
  bool exact = false;  // the folio keeps a pincount (pins is meaningful)
};
static_assert(std::is_trivially_destructible_v<BothTally>);

template <Scheme S, bool kDebug, bool kMapped, typename Cursor>
Status PageArray::check_unpin_both(Cursor reads, Cursor writes, bool* unordered) const {
  const SchemeParams params = params_;
  // The lists' entries bound both tables' keys. relaxed loads, as check_unpins.
  const uint64_t keys = reads.size() + writes.size();
  Tallies<kMapped, BothTally> folios(keys, 0), subpages(kDebug ? keys : 0, 1);
  auto check = [&](Cursor c, bool write) -> Status {
    Run r;
    while (c.next(&r)) {
      bool fresh = true;
      if constexpr (kDebug) {
        // Debug first, as unpin_pages: the exact per-subpage pins name the precise reason.
        for (uint64_t p = r.pfn; p < r.pfn + r.count; ++p) {
          BothTally* t = subpages.find(p, &fresh);
          if (t == nullptr) [[unlikely]] {
            *unordered = true;
            return Status::Ok();
          }
          if (fresh) {
            t->count = debug_pins_at(p);
            t->pins = debug_write_pins_at(p);
          }
          (write ? t->writes : t->reads) += 1;
          Reason missing = debug_unpin_refusal(write ? t->writes : t->reads, t->count, t->pins, write);
          if (missing == Reason::kNone && t->reads + t->writes > t->count) missing = Reason::kNotPinned;
          if (missing != Reason::kNone) return Status::Fail(Code::kENOTPINNED, missing, int64_t(p));
        }
      }
      BothTally* t = folios.find(r.head, &fresh);
      if (t == nullptr) [[unlikely]] {
        *unordered = true;
        return Status::Ok();
      }
      if (fresh) {
        t->count = ref_at(r.head).load(std::memory_order_relaxed);
        if (keeps_pins<S>(r.order)) {
          t->pins = load_pins<S>(r.head, r.order, std::memory_order_relaxed);
          t->exact = true;
        }
      }
      (write ? t->writes : t->reads) += int64_t(r.count);
      // Both kinds' pins so far: the pincount must hold them, the refcount their references.
      const PinCost cr = SchemePolicy<S>::pin_cost(params, r.order, t->reads, false);
      const PinCost cw = SchemePolicy<S>::pin_cost(params, r.order, t->writes, true);
      if ((t->exact && cr.pin + cw.pin > t->pins) ||
          release_refs_needed<S>(r.order, PinCost{cr.ref + cw.ref, cr.pin + cw.pin}) > t->count) [[unlikely]]
        return pin_fault(Reason::kNotPinned, r.pfn);
    }
    return Status::Ok();
  };
  // The reads, then the writes: one sequence of keys, ordered only if it never goes back
  // (the mapped pass never stops; the caller's *unordered is already set then).
  Status st = check(reads, false);
  if (st.ok() && (kMapped || !*unordered)) st = check(writes, true);
  return st;
}

template <Scheme S, bool kDebug>
Status PageArray::unpin_both(const PageSet& reads, const PageSet& writes, uint64_t* released) {
  const ListCursor<false> rc(*this, reads.list, reads.count), wc(*this, writes.list, writes.count);
  HeldStripes held(debug_locks_.get());
  if constexpr (kDebug) {
    held.lock_keys([&](auto&& f) {
      heads_of(rc)(f);
      heads_of(wc)(f);
    });
  }
  *released = 0;
  // Validation of both lists against one snapshot of each folio (and, in debug mode, of each
  // subpage's exact pins), as validate_unpins: only the current key's totals while the keys
  // never go back (an owner's drop of ascending runs), a table otherwise (call_tallies.h, as
  // large as an unordered unpin's; std::bad_alloc, the caller's ENOMEM, before any change).
  bool unordered = false;
  Status st = check_unpin_both<S, kDebug, false>(rc, wc, &unordered);
  if (unordered) [[unlikely]]
    st = check_unpin_both<S, kDebug, true>(rc, wc, &unordered);
  if (!st.ok()) {
    stats_.add(Stat::kRollbacks, 1);  // refused whole: nothing was written
    return st;
  }
  // The release passes, as unpin_set's: never taken back; folios taken to zero freed after both.
  uint64_t done_r = 0, done_w = 0, grabs_r = 0, grabs_w = 0;
  FreedHeads freed(reads.count + writes.count);  // room first, as release_validated
  const Status sr = unpin_walk<S, false, kDebug>(rc, PinFlags{false, false, false}, &done_r, &grabs_r, &freed);
  const Status sw = unpin_walk<S, false, kDebug>(wc, PinFlags{true, false, false}, &done_w, &grabs_w, &freed);
  held.unlock();
  stats_.add(Stat::kGrabs, grabs_r + grabs_w);
  *released = done_r + done_w;
  freed.for_each([this](uint64_t head) { free_folio(head); });
  return sr.ok() ? sw : sr;
}

Status PageArray::unpin_pages_both(const uint32_t* reads, uint64_t n_reads, const uint32_t* writes,
                                   uint64_t n_writes) {
  const PageSet rs = PageSet::pfns(reads, n_reads), ws = PageSet::pfns(writes, n_writes);
  if (Status st = check_page_set(rs); !st.ok()) return st;
  if (Status st = check_page_set(ws); !st.ok()) return st;
  const ZeroPfns zero = zero_pfns();  // acquire: as pin_pages
  if (Status st = refuse_zero_page(rs, zero); !st.ok()) return st;
  if (Status st = refuse_zero_page(ws, zero); !st.ok()) return st;
  uint64_t released = 0;
  Status st = dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return dispatch_bool(cfg_.debug, [&](auto debug) {
      return unpin_both<decltype(tag)::value, debug()>(rs, ws, &released);
    });
  });
  stats_.add(Stat::kPinReleased, released);
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
