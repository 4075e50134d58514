// gup_fast's grab and release of a folio, specialised per scheme. Internal to the core.
//
// The fast path may race with a folio being freed and its pages reused in another shape, so
// its grab is the kernel's speculative one: add-unless-zero on the head that pfn's order byte
// names, then a check that pfn still belongs to a folio of that order. The caller then
// re-reads the page table entry; if it changed, it releases with release_folio_refs.
#pragma once

#include <climits>

#include "pages/one_page.h"
#include "pages/scheme_ops.h"

namespace pinlab {

template <Scheme S>
PINLAB_ALWAYS_INLINE bool PageArray::try_grab_folio_fast(uint64_t pfn, int64_t refs, bool pin,
                                                         bool write, uint64_t* head_out,
                                                         uint32_t* order_out) {
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  const PinCost cost = pin ? pin_cost<S>(order, refs, write) : PinCost{refs, 0};
  if (cost.ref > INT32_MAX) [[unlikely]]
    return false;
  // Pins that share one reference (scheme_ops.h) cost none of their own, but the folio may be
  // free or reused here: gup_fast holds one reference of its own (`hold`) from the speculative
  // grab to the end of the store's grab, so the store's words are written only on a live folio
  // of the order checked below; where the grab is the folio's first pin, that reference becomes
  // the pins' one (grab_pins_handing_ref).
  const bool shared_ref = pin && pins_share_ref<S>(order);
  const int64_t hold = shared_ref ? 1 : cost.ref;
  // A PMD leaf's run read with a stale (smaller) order would spill past the folio it names.
  if (pfn - head + uint64_t(refs) > (uint64_t{1} << order)) [[unlikely]]
    return false;
  MaybeFolioGuard guard(debug_locks_.get(), head);
  auto ref = ref_at(head);
  // Add-unless-zero of the whole cost in one CAS: the folio may be free, or be a tail slot of
  // a reused block (0, or a hybrid pincount: then the shape check below undoes us). Refusing
  // here rather than after an add leaves no transient overflow for others to see.
  int32_t cur = ref.load(std::memory_order_relaxed);
  do {
    if (cur <= 0 || int64_t{cur} + hold > INT32_MAX) [[unlikely]]
      return false;
    // seq_cst: the Dekker pair with unmap and migration. We grab, then re-read the PTE; they
    // clear the PTE, then read the count. One of the two sees the other.
  } while (!ref.compare_exchange_weak(cur, int32_t(cur + hold), std::memory_order_seq_cst,
                                      std::memory_order_relaxed));
  // The shape check: acquire would do, seq_cst keeps TSan's model simple (architecture.md).
  if ((meta_at(pfn).load(std::memory_order_seq_cst) & kOrderMask) != order) [[unlikely]] {
    // Not the folio we meant: put back exactly what we added (it may be the last reference of
    // a folio freed meanwhile by its owner, whose put our grab made miss zero: free it then;
    // or eaten by a misused over-unpin while we were away: then nothing is given back).
    if (try_put_back_and_test(head, hold)) free_folio(head);
    return false;
  }
  if (shared_ref) {
    // seq_cst: as below (fork's maybe-pinned read). Where this grab is the folio's first pin,
    // our own reference becomes the pins' (taken by the seq_cst CAS above, the Dekker pair with
    // migration's freeze), so a first pin needs room for one reference, as the kernel's
    // try_grab_folio_fast; otherwise it goes: the pins hold theirs (or, refused, nothing of
    // ours is left).
    bool handed = false;
    const Reason why = grab_pins_handing_ref<S>(head, order, cost.pin, std::memory_order_seq_cst, &handed);
    if (!handed && try_put_back_and_test(head, hold)) free_folio(head);
    if (why != Reason::kNone) [[unlikely]]
      return false;
    if (cfg_.debug) debug_note_pins(pfn, uint64_t(refs), write);
  } else if (pin) {
    // The pincount second, as every grab (scheme_ops.h): our pin is in the refcount now, so
    // P + pin <= R <= INT32_MAX and the add fits. It still checks (a CAS, not an unchecked
    // add that could wrap the pincount): refused only on a folio whose pins' references a
    // plain put ate, and then we give back our grab as above.
    // seq_cst: fork reads the pincount (seq_cst) after bumping write_protect_seq; this add
    // and that read must not both miss each other (the store-buffer pattern).
    if (keeps_pins<S>(order) &&
        grab_pins<S>(head, order, cost.pin, std::memory_order_seq_cst) != Reason::kNone) [[unlikely]] {
      if (try_put_back_and_test(head, cost.ref)) free_folio(head);
      return false;
    }
    if (cfg_.debug) debug_note_pins(pfn, uint64_t(refs), write);
  }
  *head_out = head;
  *order_out = order;
  return true;
}

template <Scheme S>
bool PageArray::release_folio_refs(uint64_t pfn, uint64_t head, uint32_t order, int64_t refs,
                                   bool pin, bool write) {
  MaybeFolioGuard guard(debug_locks_.get(), head);
  bool freed = false;
  if (pin) {
    // The unpin of pins this call holds: refused only if another call's over-unpin took them
    // meanwhile (then that unpin released them, and nothing may go below zero: scheme_ops.h).
    if (try_release_pin<S>(head, order, refs, write, &freed) != Reason::kNone) [[unlikely]]
      return false;
    if (cfg_.debug) debug_drop_pins(pfn, uint64_t(refs), write);
  } else {
    // The put of references this call holds: refused only if another call put them (EINVAL).
    if (put_refs(head, refs, 0, &freed) != Reason::kNone) [[unlikely]]
      return false;
  }
  if (freed) free_folio(head);
  return true;
}

}  // namespace pinlab
