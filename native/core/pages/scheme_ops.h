// The schemes' arithmetic and their grab/release primitives. Internal to the core.
//
// Each primitive wraps the atomic operations of one grab or release of `refs` subpages of a
// folio and fails with nothing changed (a failed grab undoes its own add before returning).
// Memory orders: a physical-level pin is the kernel's slow-path grab, whose caller vouches
// that the folio stays allocated, so the grab itself only counts (relaxed). The release that
// may drop the last reference is acq_rel, the put_and_test pattern.
#pragma once

#include <climits>

#include "pages/page_array.h"

// The per-page path calls the primitives once per subpage: they must not stay calls.
#define PINLAB_ALWAYS_INLINE [[gnu::always_inline]] inline

namespace pinlab {

template <Scheme S>
PinCost PageArray::pin_cost(uint32_t order, int64_t refs, bool write) const {
  return SchemePolicy<S>::pin_cost(params_, order, refs, write);
}

template <Scheme S>
PinSlot PageArray::pincount_slot(uint64_t head, uint32_t order) const {
  using P = SchemePolicy<S>;
  if constexpr (P::kPincount == PincountHome::kFirstTail) {
    // The first tail's refcount slot is unused by the refcount itself: _pincount lives there,
    // negated (see PinSlot). pincount_min_order >= 1, so such a folio has a first tail.
    if (P::keeps_pincount(params_, order)) return PinSlot(&refcount_.data()[head + 1], true);
  } else if constexpr (P::kPincount == PincountHome::kSideArray) {
    if (P::keeps_pincount(params_, order)) return PinSlot(&pincount_.data()[head], false);
  }
  (void)head;
  (void)order;
  return PinSlot();
}

// ---- the pin side: a folio's exact pincount, wherever the scheme keeps it -------------------
// Callers ask keeps_pins first; the others are only called for a folio that keeps one. A
// built-in home (first tail, side array) is one int32 behind a PinSlot; a kOwn scheme's store
// is its own (scheme_api.h, OwnPinStore). Everything here inlines into the paths: no scheme
// pays for another's store.

template <Scheme S>
PINLAB_ALWAYS_INLINE bool PageArray::keeps_pins(uint32_t order) const {
  using P = SchemePolicy<S>;
  if constexpr (P::kPincount == PincountHome::kNone) {
    (void)order;
    return false;
  } else {
    return P::keeps_pincount(params_, order);
  }
}

template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::grab_pins(uint64_t head, uint32_t order, int64_t pins,
                                                 std::memory_order mo) {
  using P = SchemePolicy<S>;
  if constexpr (P::kPincount == PincountHome::kOwn) {
    return P::grab_pins(pin_words(), head, order, pins, mo);
  } else {
    const PinSlot pc = pincount_slot<S>(head, order);
    // pins <= cost.ref <= INT32_MAX (every scheme adds at least refs to the refcount).
    if (int64_t{pc.fetch_add(int32_t(pins), mo)} + pins > INT32_MAX) [[unlikely]] {
      pc.fetch_add(-int32_t(pins), std::memory_order_relaxed);
      return Reason::kPincountOverflow;
    }
    return Reason::kNone;
  }
}

template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::release_pins(uint64_t head, uint32_t order, int64_t pins) {
  using P = SchemePolicy<S>;
  if constexpr (P::kPincount == PincountHome::kOwn) {
    return P::release_pins(pin_words(), head, order, pins);
  } else {
    const PinSlot pc = pincount_slot<S>(head, order);
    // relaxed: the refcount release that follows carries the ordering for the whole unpin.
    if (int64_t{pc.fetch_add(-int32_t(pins), std::memory_order_relaxed)} - pins < 0) [[unlikely]] {
      pc.fetch_add(int32_t(pins), std::memory_order_relaxed);
      return Reason::kNotPinned;
    }
    return Reason::kNone;
  }
}

template <Scheme S>
PINLAB_ALWAYS_INLINE void PageArray::adjust_pins(uint64_t head, uint32_t order, int64_t delta,
                                                 std::memory_order mo) {
  using P = SchemePolicy<S>;
  if constexpr (P::kPincount == PincountHome::kOwn) {
    P::adjust_pins(pin_words(), head, order, delta, mo);
  } else {
    pincount_slot<S>(head, order).fetch_add(int32_t(delta), mo);
  }
}

template <Scheme S>
int64_t PageArray::load_pins(uint64_t head, uint32_t order, std::memory_order mo) const {
  using P = SchemePolicy<S>;
  if constexpr (P::kPincount == PincountHome::kOwn) {
    return P::pins(pin_words(), head, order, mo);
  } else {
    return pincount_slot<S>(head, order).load(mo);
  }
}

template <Scheme S>
bool PageArray::maybe_pinned_folio(uint64_t head, uint32_t order, std::memory_order mo) const {
  // relaxed by default: the answer is a snapshot by contract. fork passes seq_cst: its read
  // pairs with gup_fast's seq_cst grab (the store-buffer pattern of write_protect_seq).
  using P = SchemePolicy<S>;
  if (keeps_pins<S>(order)) {
    if constexpr (P::kPincount == PincountHome::kOwn) return P::maybe_pinned(pin_words(), head, order, mo);
    else return load_pins<S>(head, order, mo) > 0;
  }
  // Unsigned compare: a refcount in the negative guard band (overflow) reads as pinned.
  const auto ref = static_cast<uint32_t>(ref_at(head).load(mo));
  return ref >= cfg_.pin_bias;
}

// The grab and release primitives return a Reason (kNone on success), not a Status: they run
// once per page on the per-page path, and a 40-byte Status built and copied per page cost
// more than the atomics. The walk turns a failure into a Status (pin_fault) once.
template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::try_grab_pin(uint64_t head, uint32_t order, int64_t refs,
                                                    bool write) {
  const PinCost cost = pin_cost<S>(order, refs, write);
  auto ref = ref_at(head);
  // relaxed: a sanity check, not a synchronisation; the caller vouches the folio is live.
  const int32_t cur = ref.load(std::memory_order_relaxed);
  if (cur <= 0) [[unlikely]]
    return cur == 0 ? Reason::kPageFree : Reason::kRefcountGuard;
  if (cost.ref > INT32_MAX) [[unlikely]]
    return Reason::kRefcountOverflow;
  // relaxed: counting only (see the header comment).
  const int32_t old = ref.fetch_add(int32_t(cost.ref), std::memory_order_relaxed);
  // old <= 0: a concurrent grab pushed the count into the negative guard band (or the folio
  // was freed) between our load and our add; that grab undoes its own add, and so do we.
  if (old <= 0 || int64_t{old} + cost.ref > INT32_MAX) [[unlikely]] {
    ref.fetch_sub(int32_t(cost.ref), std::memory_order_relaxed);  // undo our own add
    return old == 0 ? Reason::kPageFree : Reason::kRefcountOverflow;
  }
  if (keeps_pins<S>(order)) {
    // relaxed: counting only, as the refcount add above.
    if (const Reason r = grab_pins<S>(head, order, cost.pin, std::memory_order_relaxed);
        r != Reason::kNone) [[unlikely]] {
      ref.fetch_sub(int32_t(cost.ref), std::memory_order_relaxed);  // undo our own add
      return r;
    }
  }
  return Reason::kNone;
}

template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::try_release_pin(uint64_t head, uint32_t order,
                                                       int64_t refs, bool write, bool* freed) {
  const PinCost cost = pin_cost<S>(order, refs, write);
  // A release larger than any count can hold was never pinned (cost.pin <= cost.ref).
  if (cost.ref > INT32_MAX) [[unlikely]]
    return Reason::kNotPinned;
  const bool pins = keeps_pins<S>(order);
  if (pins) {
    if (const Reason r = release_pins<S>(head, order, cost.pin); r != Reason::kNone) [[unlikely]]
      return r;
  }
  // acq_rel: release orders our use of the page before the drop; acquire lets the thread that
  // reaches zero see every other holder's accesses before the folio is freed.
  const int32_t old = ref_at(head).fetch_sub(int32_t(cost.ref), std::memory_order_acq_rel);
  if (int64_t{old} - cost.ref < 0) [[unlikely]] {
    ref_at(head).fetch_add(int32_t(cost.ref), std::memory_order_relaxed);
    if (pins) adjust_pins<S>(head, order, cost.pin, std::memory_order_relaxed);
    return Reason::kNotPinned;
  }
  *freed = (int64_t{old} == cost.ref);
  return Reason::kNone;
}

// The Status for a failed grab or release of the run starting at pfn.
inline Status pin_fault(Reason reason, uint64_t pfn) {
  const Code code = reason == Reason::kPageFree    ? Code::kEFREE
                    : reason == Reason::kNotPinned ? Code::kENOTPINNED
                                                   : Code::kEOVERFLOW;
  return Status::Fail(code, reason, int64_t(pfn));
}

// Exact inverses used by rollback: they cannot fail, since they undo what this call did.
template <Scheme S>
void PageArray::undo_grab_pin(uint64_t head, uint32_t order, int64_t refs, bool write) {
  const PinCost cost = pin_cost<S>(order, refs, write);
  if (keeps_pins<S>(order)) adjust_pins<S>(head, order, -cost.pin, std::memory_order_relaxed);
  ref_at(head).fetch_sub(int32_t(cost.ref), std::memory_order_relaxed);
}

template <Scheme S>
void PageArray::undo_release_pin(uint64_t head, uint32_t order, int64_t refs, bool write) {
  const PinCost cost = pin_cost<S>(order, refs, write);
  ref_at(head).fetch_add(int32_t(cost.ref), std::memory_order_relaxed);
  if (keeps_pins<S>(order)) adjust_pins<S>(head, order, cost.pin, std::memory_order_relaxed);
}

}  // namespace pinlab

namespace pinlab {

// Debug: how much of the folio's refcount belongs to its pins, from the exact per-subpage
// accounting. A plain put may not take the refcount below this.
template <Scheme S>
int64_t PageArray::debug_pin_references(uint64_t head, uint32_t order) const {
  const int64_t pins = debug_folio_pins(head, order);
  if constexpr (!SchemePolicy<S>::kReadPinsVisible) {  // write and read pins cost differently
    const int64_t writes = debug_folio_write_pins(head, order);
    return pin_cost<S>(order, writes, true).ref + pin_cost<S>(order, pins - writes, false).ref;
  } else {
    return pin_cost<S>(order, pins, false).ref;
  }
}

}  // namespace pinlab
