// Pins and unpins of one page: the walks' semantics for a set of one run (pin_paths.cpp),
// without the cursors, tallies and layered Status returns, which cost several times the atomics
// themselves (callgrind, one hybrid page: 604 instructions per pin+unpin round through the
// walks, 366 through these as calls). Internal to the core.
//
// Inline, so a caller that runs many single-page calls (an op stream's run loop,
// engines/op_executor.cpp) can choose the scheme once and have the grab and release compiled
// into its loop: pin_page_as / unpin_page_as<S>. pin_page / unpin_page are the same calls with
// the scheme chosen per call.
#pragma once

#include "base/striped_lock.h"
#include "pages/page_array.h"
#include "pages/scheme_ops.h"

namespace pinlab {

template <Scheme S, typename Stats>
PINLAB_ALWAYS_INLINE Status PageArray::pin_one(uint64_t pfn, bool write, ZeroPfns zeros_at_check,
                                               Stats& stats) {
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  if (const Reason fault = try_grab_pin<S>(head, order, 1, write); fault != Reason::kNone)
      [[unlikely]] {
    const Status st = pin_fault(fault, pfn);
    stats.add(Stat::kRollbacks, 1);  // as pin_set: refused whole (nothing was taken)
    if (st.code == Code::kEOVERFLOW) stats.add(Stat::kOverflowRefusals, 1);
    return st;
  }
  // As pin_set: the page became the zero page since the call was checked (it was free then):
  // give back our own pin and refuse as if the zero page had been there first.
  if (zeros_at_check.zero() < 0 && zero_pfns().names(pfn)) [[unlikely]] {
    if (release_own_pin<S>(head, order, 1, write)) free_folio(head);
    stats.add(Stat::kRollbacks, 1);
    return Status::Fail(Code::kEINVAL, Reason::kZeroPageCounted, int64_t(pfn));
  }
  stats.add(Stat::kGrabs, 1);
  return Status::Ok();
}

template <Scheme S, typename Stats>
PINLAB_ALWAYS_INLINE Status PageArray::unpin_one(uint64_t pfn, const PinFlags& flags,
                                                 uint64_t* released, Stats& stats) {
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  *released = 0;
  // Validated first, as check_unpins: the pincount must hold the pin, the refcount its
  // references. relaxed: a snapshot to decide on; the release below is a CAS that checks again.
  const PinCost cost = pin_cost<S>(order, 1, flags.write);
  const bool exact = keeps_pins<S>(order);
  if ((exact && !holds_pins<S>(head, order, cost.pin)) ||
      release_refs_needed<S>(order, cost) > ref_at(head).load(std::memory_order_relaxed)) [[unlikely]] {
    stats.add(Stat::kRollbacks, 1);  // refused whole: nothing was written
    return pin_fault(Reason::kNotPinned, pfn);
  }
  // Dirty before the release, as unpin_user_pages_dirty_lock: the release may free it.
  if (flags.dirty) mark_dirty(head);
  bool reached_zero = false;
  if (const Reason fault = try_release_pin<S>(head, order, 1, flags.write, &reached_zero);
      fault != Reason::kNone) [[unlikely]] {
    // Another call released this pin since validation (as unpin_walk: nothing to take back).
    return Status::Fail(Code::kENOTPINNED,
                        fault == Reason::kRefsEaten ? fault : Reason::kReleaseRaced, int64_t(pfn));
  }
  *released = 1;
  stats.add(Stat::kGrabs, 1);
  if (reached_zero) [[unlikely]]
    free_folio(head);  // ours to free: the pass is done
  return Status::Ok();
}

// Outside debug mode and inside the array: the zero pages' check, then pin_one / unpin_one with
// the statistics into the tally. Anything else takes the general path, which names the refusal.
template <Scheme S>
PINLAB_ALWAYS_INLINE Code PageArray::pin_page_as(uint64_t pfn, bool write, StatTally* tally) {
  if (cfg_.debug || pfn >= pages()) [[unlikely]] return pin_page_general(pfn, write);
  // acquire (zero_pfns): as pin_pages.
  const ZeroPfns zero = zero_pfns();
  if (zero.names(pfn)) [[unlikely]]
    return Code::kEINVAL;  // kZeroPageCounted, as refuse_zero_page
  const Code code = pin_one<S>(pfn, write, zero, *tally).code;
  if (code == Code::kOk) tally->add(Stat::kPinAcquired, 1);
  return code;
}

template <Scheme S>
PINLAB_ALWAYS_INLINE Code PageArray::unpin_page_as(uint64_t pfn, const PinFlags& flags,
                                                   StatTally* tally) {
  if (cfg_.debug || pfn >= pages()) [[unlikely]] return unpin_page_general(pfn, flags);
  if (zero_pfns().names(pfn)) [[unlikely]]
    return Code::kEINVAL;  // kZeroPageCounted, as refuse_zero_page
  uint64_t released = 0;
  const Code code = unpin_one<S>(pfn, flags, &released, *tally).code;
  tally->add(Stat::kPinReleased, released);
  return code;
}

// ---- plain references of one page ------------------------------------------------------------
// get_page, try_get_page and put_page (page_array.cpp names their refusals as Statuses).

PINLAB_ALWAYS_INLINE Reason PageArray::get_page_step(uint64_t pfn, int64_t refs) {
  if (refs < 1 || refs > INT32_MAX) [[unlikely]] return Reason::kBadRefs;
  if (is_zero_page(pfn)) [[unlikely]] return Reason::kZeroPageCounted;
  const uint64_t head = folio_head(pfn);
  auto ref = ref_at(head);
  // A CAS loop, not add-then-check: an add on a free folio, even undone at once, could revive
  // it under an allocation that just stored its count.
  int32_t cur = ref.load(std::memory_order_relaxed);
  bool settled = false;
  for (;;) {
    if (cur == 0) [[unlikely]] return Reason::kPageFree;
    if (cur < 0) [[unlikely]] return Reason::kRefcountGuard;
    if (int64_t{cur} + refs > INT32_MAX) [[unlikely]] {
      // A lazy folio's mode may hold a reference that is no pin's, so the kernel's count may
      // have room: settle it once (the caller holds the folio) and decide again.
      if (!settled && may_be_lazy_at(head) && lazy_head(head)) {
        (void)settle_lazy_and_test(head, true);
        settled = true;
        cur = ref.load(std::memory_order_relaxed);
        continue;
      }
      stats_.add(Stat::kOverflowRefusals, 1);
      return Reason::kRefcountOverflow;
    }
    // relaxed: get_page's caller already holds the folio alive; taking a reference publishes
    // nothing. relaxed on failure: nothing written, and cur is reloaded.
    if (ref.compare_exchange_weak(cur, int32_t(cur + refs), std::memory_order_relaxed,
                                  std::memory_order_relaxed))
      return Reason::kNone;
  }
}

PINLAB_ALWAYS_INLINE Reason PageArray::try_get_page_step(uint64_t pfn, int64_t refs, bool* got) {
  if (refs < 1 || refs > INT32_MAX) [[unlikely]] return Reason::kBadRefs;
  if (is_zero_page(pfn)) [[unlikely]] return Reason::kZeroPageCounted;
  auto ref = ref_at(folio_head(pfn));
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    if (cur <= 0) {  // free, or in the negative guard band
      *got = false;
      return Reason::kNone;
    }
    if (int64_t{cur} + refs > INT32_MAX) [[unlikely]] {
      stats_.add(Stat::kOverflowRefusals, 1);
      return Reason::kRefcountOverflow;
    }
    // acquire on success: add-unless-zero is how a lockless finder takes a folio; pairs with
    // the release that published the folio (creation, split, or the last put's acq_rel).
  } while (!ref.compare_exchange_weak(cur, int32_t(cur + refs), std::memory_order_acquire,
                                      std::memory_order_relaxed));
  *got = true;
  return Reason::kNone;
}

PINLAB_ALWAYS_INLINE Reason PageArray::put_page_step(uint64_t pfn, int64_t refs, bool* freed) {
  *freed = false;
  if (refs < 1 || refs > INT32_MAX) [[unlikely]] return Reason::kBadRefs;
  // The zero page is never counted: a put would free the page every read fault maps.
  if (is_zero_page(pfn)) [[unlikely]] return Reason::kZeroPageCounted;
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  const Reason why = cfg_.debug ? put_refs_debug(head, order, refs, freed) : put_refs(head, refs, 0, freed);
  if (why != Reason::kNone) return why;
  if (*freed) [[unlikely]] free_folio(head);
  return Reason::kNone;
}

PINLAB_ALWAYS_INLINE Reason PageArray::put_refs(uint64_t head, int64_t refs, int64_t owed_to_pins,
                                                bool* reached_zero) {
  // A mapped folio: its mappings' references are not the caller's to put. Under the folio's
  // map lock its mapped references hold still, and every one of them is already in the
  // refcount (the mm layer takes a reference before it counts it mapped), so the check never
  // refuses a put of references the caller really holds. An unmapped folio (every folio of a
  // page array without an address space) takes the lock-free path: one byte load more.
  // acquire: pairs with add_mapped_refs' release, for the byte's lock-free readers.
  const bool mapped = (meta_at(head).load(std::memory_order_acquire) & kMapMask) != 0;
  MaybeFolioGuard map_guard(mapped ? map_locks_.get() : nullptr, head);
  const int64_t owed_to_mappings = mapped ? mapped_refs_locked(head) : 0;
  // Whether the folio may be lazy at all, read once: its shape holds still while the caller
  // holds it (a split needs the only reference), and only a lazy scheme's large folios pay more
  // than this one compare.
  const bool may_lazy = may_be_lazy_at(head);
  auto ref = ref_at(head);
  // acquire (and on the CAS's failure): a count that shows a settle's give-back also shows the
  // settled mode, so the discount below is never taken twice.
  int32_t cur = ref.load(std::memory_order_acquire);
  do {
    // A lazy folio's mode may hold a reference that is no pin's (scheme_ops.h): not the
    // caller's. Read after each load of the count: a settle that gives it back between makes
    // the CAS fail, and the next round reads the mode again.
    const int64_t lazy = may_lazy ? lazy_ref_unpinned(head, load_order(head)) : 0;
    const int64_t left = int64_t{cur} - lazy - refs;
    if (left < 0) [[unlikely]] return Reason::kPutBelowZero;
    if (left < owed_to_pins) [[unlikely]] return Reason::kPutEatsPin;
    if (left < owed_to_pins + owed_to_mappings) [[unlikely]] return Reason::kPutEatsMapping;
    // acq_rel: put_and_test; see try_release_pin. seq_cst: as put_and_test (lazy pins).
  } while (!ref.compare_exchange_weak(cur, int32_t(cur - refs), std::memory_order_seq_cst,
                                      std::memory_order_acquire));
  // The caller frees.
  *reached_zero = cur == refs || (may_lazy && settle_lazy_if_last(head, int64_t{cur} - refs));
  return Reason::kNone;
}

}  // namespace pinlab
