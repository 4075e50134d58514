// The schemes' arithmetic and their grab/release primitives. Internal to the core.
//
// Check, then change: every primitive decides with a compare-and-swap loop that refuses
// without writing, never by an add that is undone afterwards. An add-then-undo is seen by
// every other thread in its window: a pin that fits refused with EOVERFLOW, the unpin of a
// held pin refused with ENOTPINNED, the put of a held reference refused with EINVAL, and, under
// an exact pincount, maybe-pinned false on a pinned folio (the false negative fork's early COW
// must never see). A refused call therefore leaves no trace in any count, not even for a moment.
//
// Two counters (an exact pincount beside the refcount) cannot change in one atomic step, so
// their order is the protocol. It rests on one invariant, P <= R: the pincount P counts a
// subset of the pins whose references the refcount R holds, because
//   - a grab adds to R first (a CAS with the full check: the only step that refuses) and to P
//     second, and
//   - a release takes from P first (a CAS that refuses below zero: the only step that refuses)
//     and from R second.
// Every pin is thus in R before it is in P and leaves P before it leaves R. Hence:
//   - grab, second step: P + pin <= R <= INT32_MAX, since our own pin is already in R: the
//     pincount add cannot overflow once the refcount took the pin;
//   - release, second step: our pin left P, so R still holds at least its references: the
//     refcount release cannot go below zero once the pincount released the pin;
//   - maybe-pinned reads P: a pin counts from its second step (a grab that is refused never
//     reaches P) to its release's first step, and no refused call ever moves P.
// The invariant only breaks when a plain put eats the references that pins hold (a misuse that
// debug mode refuses with EPINNED). For that case each second step still checks (a CAS). A
// grab refused there gives back its refcount step: the one place a refused grab can be seen,
// and only on a folio already corrupted that way. A release refused there keeps its pincount
// step (the put already took the references the refcount would have given back) and reports
// kRefsEaten; unpin_pages validates the refcount too, so it meets this only in a race.
//
// Pins that share one reference (a SharedRefPinStore scheme, for the folios where its
// pins_share_ref holds): the pin costs no reference of its own (cost.ref 0), and the same
// invariant reads "R holds the pins' one reference whenever P > 0": the store's grab takes it
// (try_take_pin_ref, an add-unless-zero CAS with the full check, the grab's only refusal of the
// refcount) before its pins become visible, and its release reports the last pins gone after
// they stopped being visible, then the page array gives it back (give_back_pin_ref). A grab
// into a store that already holds pins touches no refcount at all: those pins' reference keeps
// the folio alive, so only the store's lines are written. gup_fast, which may meet a free folio,
// holds a reference of its own around the grab (gup_ops.h).
//
// Calls of many runs (pin_paths.cpp): unpin_pages and put_pages validate the whole call before
// the first release and never take a release back (once a folio is left to its other holders
// they may free it, and a re-take would revive it); pin_pages gives back its grabs if one is
// refused midway, as unpins of pins it holds (try_release_pin: it cannot revive anything, and
// if an over-unpin took one of them meanwhile, nothing is given back twice).
//
// Memory orders: a physical-level pin is the kernel's slow-path grab, whose caller vouches
// that the folio stays allocated, so the grab itself only counts (relaxed). The release that
// may drop the last reference is acq_rel, the put_and_test pattern; a refused CAS publishes
// nothing and takes nothing over (relaxed).
#pragma once

#include <climits>

#include "pages/page_array.h"

// The per-page path calls the primitives once per subpage: they must not stay calls.
#define PINLAB_ALWAYS_INLINE [[gnu::always_inline]] inline
// The same for a lambda (after its parameter list): a call's path passes its cursor and its
// Status through lambdas, and a struct passed in memory between calls stalls store-to-load
// forwarding (pin_paths.cpp, pin_checked).
#define PINLAB_LAMBDA_INLINE __attribute__((always_inline))

namespace pinlab {

template <Scheme S>
PinCost PageArray::pin_cost(uint32_t order, int64_t refs, bool write) const {
  return SchemePolicy<S>::pin_cost(params_, order, refs, write);
}

// Why a grab of `add` references on a refcount of `cur` must be refused (kNone: it fits).
PINLAB_ALWAYS_INLINE Reason refcount_grab_refusal(int32_t cur, int64_t add) {
  if (cur <= 0) [[unlikely]]
    return cur == 0 ? Reason::kPageFree : Reason::kRefcountGuard;
  if (int64_t{cur} + add > INT32_MAX) [[unlikely]]
    return Reason::kRefcountOverflow;
  return Reason::kNone;
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
PINLAB_ALWAYS_INLINE bool PageArray::pins_share_ref(uint32_t order) const {
  using P = SchemePolicy<S>;
  if constexpr (pins_may_share_ref_of<P>()) return P::pins_share_ref(params_, order);
  else {
    (void)order;
    return false;
  }
}

template <Scheme S>
PINLAB_ALWAYS_INLINE int64_t PageArray::release_refs_needed(uint32_t order, const PinCost& cost) const {
  if (pins_share_ref<S>(order)) return cost.pin > 0 ? 1 : 0;
  return cost.ref;
}

PINLAB_ALWAYS_INLINE Reason PageArray::try_take_pin_ref(uint64_t head, std::memory_order mo) const {
  auto ref = ref_at(head);
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    if (Reason why = refcount_grab_refusal(cur, 1); why != Reason::kNone) return why;
    // mo on success: relaxed from the physical pin (counting only, the caller holds the folio),
    // seq_cst from gup_fast (its Dekker pair with unmap and migration's freeze); relaxed on
    // failure: nothing written.
  } while (!ref.compare_exchange_weak(cur, cur + 1, mo, std::memory_order_relaxed));
  return Reason::kNone;
}

PINLAB_ALWAYS_INLINE Reason PageArray::give_back_pin_ref(uint64_t head, bool* freed) {
  auto ref = ref_at(head);
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    // A plain put ate the pins' reference (the misuse debug mode refuses): the pins' release
    // stands, as try_release_pin's (header comment).
    if (cur <= 0) [[unlikely]]
      return Reason::kRefsEaten;
    // acq_rel: put_and_test (see try_release_pin); seq_cst: a put's side of lazy mode's Dekker
    // pair (settle_lazy_if_last below). relaxed on failure: nothing written.
  } while (!ref.compare_exchange_weak(cur, cur - 1, std::memory_order_seq_cst, std::memory_order_relaxed));
  // A give-back is a put: if it leaves one reference on a folio that went lazy since its last
  // pins went (a new overlap), that one may be the mode's alone (lazy pins, below).
  *freed = cur == 1 || settle_lazy_if_last(head, int64_t{cur} - 1);
  return Reason::kNone;
}

// Both refuse with nothing written (a CAS, never an add that is undone: header comment).
// Where the scheme's pins share one reference, a grab takes it on the folio's none -> some
// transition (try_take_pin_ref), and a release reports its some -> none in *last.
template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::grab_pins(uint64_t head, uint32_t order, int64_t pins,
                                                 std::memory_order mo) {
  using P = SchemePolicy<S>;
  if constexpr (pins_may_share_ref_of<P>()) {
    // A physical pin's caller vouches for the folio, but a hostile one may pin a folio nobody
    // holds while another thread splits or makes it (README, lazy mode's known limits). So the
    // grab asks whether the shape it was given still holds before it writes any word, and once
    // it holds the reference a first pin takes (then the folio can no longer be split: if the
    // split came first, the reference went to the split head, and goes back as gup_fast's does).
    auto shape_holds = [this, head, order]() PINLAB_LAMBDA_INLINE {
      // acquire fence: a count the caller read or took just before (a small folio's relaxed
      // CAS) then synchronizes with the release that published the folio with its shape
      // (split, make-folio store the order bytes, then the count).
      std::atomic_thread_fence(std::memory_order_acquire);
      return load_order(head) == order;
    };
    // Freed only once the store let go of its words: it holds some busy while take_ref runs.
    bool free_after = false;
    const Reason why = P::grab_pins(
        pin_words(), head, order, pins, mo,
        [this, head, mo, &shape_holds, &free_after] {
          // acquire (or gup_fast's seq_cst): the shape check below reads what the count's last
          // writer published.
          const Reason took = try_take_pin_ref(head, mo == std::memory_order_seq_cst ? mo : std::memory_order_acquire);
          if (took != Reason::kNone || shape_holds()) return took;
          free_after = try_put_back_and_test(head, 1);  // not the folio we meant
          return Reason::kPageFree;
        },
        shape_holds);
    if (free_after) [[unlikely]] free_folio(head);
    return why;
  } else if constexpr (P::kPincount == PincountHome::kOwn) {
    return P::grab_pins(pin_words(), head, order, pins, mo);
  } else {
    return pincount_slot<S>(head, order).add_within(pins, mo) ? Reason::kNone
                                                               : Reason::kPincountOverflow;
  }
}

template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::grab_pins_handing_ref(uint64_t head, uint32_t order, int64_t pins,
                                                             std::memory_order mo, bool* handed) {
  using P = SchemePolicy<S>;
  *handed = false;
  if constexpr (!pins_may_share_ref_of<P>()) {
    return grab_pins<S>(head, order, pins, mo);  // no shared reference to hand over
  } else {
    // The store calls this at most once, and only once the grab is decided (scheme_api.h): the
    // caller's reference, taken by its own seq_cst CAS before the store is touched, is held
    // before maybe_pinned can answer true, as a reference taken here would be.
    const Reason why = P::grab_pins(pin_words(), head, order, pins, mo, [handed] {
      *handed = true;
      return Reason::kNone;
    });
    if (why != Reason::kNone) *handed = false;  // refused: nothing of the caller's was kept
    return why;
  }
}

template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::release_pins(uint64_t head, uint32_t order, int64_t pins, bool* last) {
  using P = SchemePolicy<S>;
  if constexpr (pins_may_share_ref_of<P>()) {
    return P::release_pins(pin_words(), head, order, pins, last);
  } else if constexpr (P::kPincount == PincountHome::kOwn) {
    (void)last;
    return P::release_pins(pin_words(), head, order, pins);
  } else {
    (void)last;
    // relaxed: the refcount release that follows carries the ordering for the whole unpin.
    return pincount_slot<S>(head, order).add_within(-pins, std::memory_order_relaxed)
               ? Reason::kNone
               : Reason::kNotPinned;
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
PINLAB_ALWAYS_INLINE bool PageArray::holds_pins(uint64_t head, uint32_t order, int64_t pins) const {
  // relaxed: a snapshot to validate an unpin call with; its releases check again (CAS).
  if constexpr (kOwnHoldsPins<S>) return SchemePolicy<S>::holds_pins(pin_words(), head, order, pins);
  else return load_pins<S>(head, order, std::memory_order_relaxed) >= pins;
}

template <Scheme S>
bool PageArray::maybe_pinned_folio(uint64_t head, uint32_t order, std::memory_order mo) const {
  // relaxed by default: the answer is a snapshot by contract. fork passes seq_cst: its read
  // pairs with gup_fast's seq_cst grab (the store-buffer pattern of write_protect_seq).
  using P = SchemePolicy<S>;
  if (keeps_pins<S>(order)) {
    if constexpr (has_lazy_pins_of<P>()) {
      // One read of the mode decides whether the store may be written (a frozen snapshot): only
      // under a reference of ours (maybe_pinned_lazy_folio), since the caller may hold none.
      const int answer = P::maybe_pinned_unfrozen(pin_words(), head, order, mo);
      if (answer >= 0) [[likely]] return answer != 0;
      return maybe_pinned_lazy_folio<S>(head, order, mo);
    }
    if constexpr (P::kPincount == PincountHome::kOwn) return P::maybe_pinned(pin_words(), head, order, mo);
    else return load_pins<S>(head, order, mo) > 0;
  }
  // Unsigned compare: a refcount in the negative guard band (overflow) reads as pinned.
  const auto ref = static_cast<uint32_t>(ref_at(head).load(mo));
  return ref >= cfg_.pin_bias;
}

template <Scheme S>
bool PageArray::maybe_pinned_lazy_folio(uint64_t head, uint32_t order, std::memory_order mo) const {
  // The frozen snapshot writes the folio's words: hold it (the caller may not), as gup_fast does.
  // seq_cst: a speculative reference, as gup_fast's (its Dekker pair with a freeze).
  switch (try_take_pin_ref(head, std::memory_order_seq_cst)) {
    case Reason::kNone: break;
    case Reason::kPageFree:  // free, or frozen by migration or split: no pin
    case Reason::kRefcountGuard: return false;
    default:  // a full refcount: 2^31 holders keep it, and no reference of ours fits
      return SchemePolicy<S>::maybe_pinned(pin_words(), head, order, mo);
  }
  // Stable under our reference (a held folio is never split or reshaped); if it changed before,
  // ask about the folio that holds head now.
  const uint32_t now = load_order(head);
  const bool pinned = now == order && head_of(head, now) == head
                          ? SchemePolicy<S>::maybe_pinned(pin_words(), head, now, mo)
                          : maybe_pinned_folio<S>(head_of(head, now), now, mo);
  // Our reference goes as gup_fast's put-back (never below zero, if a misused put ate it; it may
  // be the last now, or leave a lazy folio's mode alone). A query is const to its callers;
  // freeing a folio its holders all left is not a change they can see.
  auto* self = const_cast<PageArray*>(this);
  if (self->try_put_back_and_test(head, 1)) self->free_folio(head);
  return pinned;
}

// The grab and release primitives return a Reason (kNone on success), not a Status: they run
// once per page on the per-page path, and a 40-byte Status built and copied per page cost
// more than the atomics. The walk turns a failure into a Status (pin_fault) once.

template <Scheme S>
PINLAB_ALWAYS_INLINE Reason PageArray::try_grab_pin(uint64_t head, uint32_t order, int64_t refs,
                                                    bool write) {
  const PinCost cost = pin_cost<S>(order, refs, write);
  // Pins that share one reference: the store takes it on its none -> some transition, and a
  // grab into a store that holds pins writes no refcount at all (header comment).
  // relaxed: counting only, as below.
  if (pins_share_ref<S>(order)) return grab_pins<S>(head, order, cost.pin, std::memory_order_relaxed);
  auto ref = ref_at(head);
  // relaxed: counting only (see the header comment); the caller vouches the folio is live.
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    if (Reason why = refcount_grab_refusal(cur, cost.ref); why != Reason::kNone) return why;
    // relaxed: counting only.
  } while (!ref.compare_exchange_weak(cur, int32_t(cur + cost.ref), std::memory_order_relaxed,
                                      std::memory_order_relaxed));
  // The pincount second: our pin is in the refcount now, so P + pin <= R <= INT32_MAX and the
  // add fits (header comment). Looked up only now: the loop above stays as light as bias's.
  if (keeps_pins<S>(order)) {
    // relaxed: counting only. Refused only when a plain put ate pins' references (P > R):
    // give back the references we just took, as a put (they may be the last ones now).
    if (const Reason why = grab_pins<S>(head, order, cost.pin, std::memory_order_relaxed);
        why != Reason::kNone) [[unlikely]] {
      if (put_and_test(head, cost.ref)) free_folio(head);
      return why;
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
  const bool pc = keeps_pins<S>(order);
  // Refused below zero with nothing written: an over-unpin never dips the pincount
  // (maybe-pinned). The refcount release below carries the ordering for the whole unpin.
  if (pc) {
    bool last = false;
    if (const Reason why = release_pins<S>(head, order, cost.pin, &last); why != Reason::kNone) [[unlikely]]
      return why;
    if (pins_share_ref<S>(order)) {
      // The pins' one reference goes back only with the folio's last pins (header comment).
      *freed = false;
      if (last) return give_back_pin_ref(head, freed);
      if constexpr (has_lazy_pins_of<SchemePolicy<S>>()) {
        // A lazy folio never reports its last pins: its mode holds the reference. If that may
        // be the folio's only one, settle (giving it back if this was the last pin). seq_cst:
        // the load side of the Dekker pair with a put (its decrement, then its mode read); our
        // store side is the shard's seq_cst CAS. Either we see its decrement or its settle
        // sees our release.
        if (SchemePolicy<S>::lazy(pin_words(), head, order) &&
            ref_at(head).load(std::memory_order_seq_cst) == 1) [[unlikely]]
          *freed = settle_lazy_and_test(head);
      }
      return Reason::kNone;
    }
  }
  auto ref = ref_at(head);
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    if (int64_t{cur} - cost.ref < 0) [[unlikely]] {
      // Only when a plain put ate the pin's references (P > R, header comment), or when no
      // pincount checks first and another call released these references since the caller
      // validated them (unpin_walk skips the run). The pincount release stands: the put
      // already took the references that the refcount would have given back.
      return pc ? Reason::kRefsEaten : Reason::kNotPinned;
    }
    // acq_rel: release orders our use of the page before the drop; acquire lets the thread
    // that reaches zero see every other holder's accesses before the folio is freed. relaxed
    // on failure: nothing was written.
  } while (!ref.compare_exchange_weak(cur, int32_t(cur - cost.ref), std::memory_order_acq_rel,
                                      std::memory_order_relaxed));
  *freed = (int64_t{cur} == cost.ref);
  return Reason::kNone;
}

// The Status for a failed grab or release of the run starting at pfn.
inline Status pin_fault(Reason reason, uint64_t pfn) {
  const Code code = reason == Reason::kPageFree    ? Code::kEFREE
                    : reason == Reason::kNotPinned ? Code::kENOTPINNED
                    : reason == Reason::kRefsEaten ? Code::kENOTPINNED
                                                   : Code::kEOVERFLOW;
  return Status::Fail(code, reason, int64_t(pfn));
}

// Gives back the pins this call grabbed (a pin call refused midway): the unpin of pins the
// call holds, so it is refused only if another call's over-unpin took them meanwhile (that
// unpin then released them for us: nothing is left to give back, and nothing goes below zero).
// Returns whether the refcount reached zero (every other holder let go): the caller frees.
template <Scheme S>
bool PageArray::release_own_pin(uint64_t head, uint32_t order, int64_t refs, bool write) {
  bool freed = false;
  (void)try_release_pin<S>(head, order, refs, write, &freed);
  return freed;
}

inline bool PageArray::put_and_test(uint64_t head, int64_t refs) {
  // acq_rel: put_and_test (see try_release_pin); seq_cst where a lazy mode may hold the last
  // reference besides ours: the store side of its Dekker pair with the unpin (settle_lazy
  // reads the mode after this).
  const int64_t before = ref_at(head).fetch_sub(int32_t(refs), std::memory_order_seq_cst);
  return before == refs || settle_lazy_if_last(head, before - refs);
}

inline bool PageArray::try_put_back_and_test(uint64_t head, int64_t refs) {
  auto ref = ref_at(head);
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    // Eaten: an over-unpin or a plain put took our references meanwhile (the misuse that bias
    // cannot see and debug mode refuses), and the folio may be free already. Nothing of ours
    // is left to give back, and a refcount never goes below zero.
    if (int64_t{cur} < refs) [[unlikely]]
      return false;
    // acq_rel: put_and_test (see try_release_pin); relaxed on failure: nothing written.
    // seq_cst: as put_and_test.
  } while (!ref.compare_exchange_weak(cur, int32_t(cur - refs), std::memory_order_seq_cst,
                                      std::memory_order_relaxed));
  return int64_t{cur} == refs || settle_lazy_if_last(head, int64_t{cur} - refs);
}

// ---- lazy pins (scheme_api.h, has_lazy_pins_of) ---------------------------------------------
// A lazy folio's mode holds its pins' one reference even when no pin is left, so the refcount
// reads one more than the kernel's. Exactness comes back by settling (the store leaves lazy
// mode; with no pin left the mode's reference is given back, as a last unpin's), done
//   - by a put that leaves one reference (put_and_test, try_put_back_and_test, put_refs), and
//     by an unpin of a lazy folio that leaves one (try_release_pin): a Dekker pair, each side
//     a seq_cst write of its own count then a seq_cst read of the other's, so of the last put
//     and the last unpin at least one sees the other and settles, and the folio is freed
//     exactly when the kernel's would be;
//   - before a freeze or a split, which compare the refcount with an exact expectation
//     (try_freeze, split_folio);
// and discounted by what only reads the refcount (refcount(), put validation, put_refs):
// lazy_ref_unpinned.

}  // namespace pinlab

namespace pinlab {

// Debug: how much of the folio's refcount belongs to its pins, from the exact per-subpage
// accounting. A plain put may not take the refcount below this.
template <Scheme S>
int64_t PageArray::debug_pin_references(uint64_t head, uint32_t order) const {
  const int64_t pins = debug_folio_pins(head, order);
  if (pins_share_ref<S>(order)) return pins > 0 ? 1 : 0;  // one reference for all of them
  if constexpr (!SchemePolicy<S>::kReadPinsVisible) {  // write and read pins cost differently
    const int64_t writes = debug_folio_write_pins(head, order);
    return pin_cost<S>(order, writes, true).ref + pin_cost<S>(order, pins - writes, false).ref;
  } else {
    return pin_cost<S>(order, pins, false).ref;
  }
}

}  // namespace pinlab
