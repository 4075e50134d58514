// Page-array operations the mm layer (address_space, gup) builds on: slow-path grabs of
// stable folios, mapping puts, exact pin queries, and migration's freeze.
#include "pages/page_array.h"
#include "pages/scheme_ops.h"

namespace pinlab {

Status PageArray::grab_folio(uint64_t pfn, int64_t refs, bool pin, bool write) {
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  if (!pin) return get_page(pfn, refs);
  return dispatch_scheme(cfg_.scheme, [&](auto tag) {
    constexpr Scheme S = decltype(tag)::value;
    MaybeFolioGuard guard(debug_locks_.get(), head);
    const Reason fault = try_grab_pin<S>(head, order, refs, write);
    if (fault != Reason::kNone) {
      if (fault == Reason::kRefcountOverflow || fault == Reason::kPincountOverflow)
        stats_.add(Stat::kOverflowRefusals, 1);
      return pin_fault(fault, pfn);
    }
    if (cfg_.debug) debug_note_pins(pfn, uint64_t(refs), write);
    stats_.add(Stat::kPinAcquired, uint64_t(refs));
    stats_.add(Stat::kGrabs, 1);
    return Status::Ok();
  });
}

void PageArray::put_folio_refs(uint64_t head, int64_t refs) {
  // acq_rel: put_and_test (see try_release_pin); the last put frees.
  if (int64_t{ref_at(head).fetch_sub(int32_t(refs), std::memory_order_acq_rel)} == refs)
    free_folio(head);
}

std::optional<int64_t> PageArray::exact_folio_pins(uint64_t head, uint32_t order) const {
  if (cfg_.debug) return debug_folio_pins(head, order);
  return dispatch_scheme(cfg_.scheme, [&](auto tag) -> std::optional<int64_t> {
    constexpr Scheme S = decltype(tag)::value;
    if (keeps_pins<S>(order)) return load_pins<S>(head, order, std::memory_order_relaxed);
    return std::nullopt;
  });
}

bool PageArray::maybe_pinned_head(uint64_t head, uint32_t order, std::memory_order mo) const {
  return dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return maybe_pinned_folio<decltype(tag)::value>(head, order, mo);
  });
}

bool PageArray::try_freeze(uint64_t head, int32_t expected) {
  // seq_cst: the unmap side of the Dekker pair with gup_fast (see gup_ops.h): the caller has
  // cleared the PTE; either gup_fast's recheck sees that, or this sees gup_fast's grab.
  return ref_at(head).compare_exchange_strong(expected, 0, std::memory_order_seq_cst,
                                              std::memory_order_relaxed);
}

void PageArray::copy_folio_flags(uint64_t from_head, uint64_t to_head) {
  if (meta_at(from_head).load(std::memory_order_relaxed) & kFlagDirty) mark_dirty(to_head);
}

}  // namespace pinlab
