// Page-array operations the mm layer (address_space, gup) builds on: slow-path grabs of
// stable folios, mapping puts, exact pin queries, migration's freeze, and the count of the
// references page-table entries hold (mapped_refs).
#include <algorithm>

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
  if (put_and_test(head, refs)) free_folio(head);  // the last put frees
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
  // A lazy folio's mode may hold a reference that is no pin's: settle it first, so the count
  // is the kernel's (scheme_ops.h). The caller holds references, so this never frees; and
  // settling is no change anyone can see (refcount(), pincount() and maybeDmaPinned read the
  // same), so a refused freeze still changes nothing.
  if (may_be_lazy_at(head) && settle_lazy_and_test(head, true)) [[unlikely]] {
    free_folio(head);
    return false;
  }
  // seq_cst: the unmap side of the Dekker pair with gup_fast (see gup_ops.h): the caller has
  // cleared the PTE; either gup_fast's recheck sees that, or this sees gup_fast's grab.
  return ref_at(head).compare_exchange_strong(expected, 0, std::memory_order_seq_cst,
                                              std::memory_order_relaxed);
}

void PageArray::copy_folio_flags(uint64_t from_head, uint64_t to_head) {
  if (meta_at(from_head).load(std::memory_order_relaxed) & kFlagDirty) mark_dirty(to_head);
}

// ---- mapped references ----------------------------------------------------------------------

int64_t PageArray::mapped_refs_locked(uint64_t head) const {
  // relaxed: the map lock orders this folio's updates, and we hold it.
  const auto code = uint8_t(meta_at(head).load(std::memory_order_relaxed) >> kMapShift);
  if (code != kMapOverflow) return code;
  std::lock_guard<std::mutex> lock(map_mu_);
  const auto it = map_overflow_.find(head);
  return it == map_overflow_.end() ? 0 : it->second;  // always found: set with the code
}

int64_t PageArray::mapped_refs(uint64_t pfn) const {
  const uint64_t head = folio_head(pfn);
  // acquire: pairs with add_mapped_refs' release; 0..2 need no lock.
  const auto code = uint8_t(meta_at(head).load(std::memory_order_acquire) >> kMapShift);
  if (code != kMapOverflow) return code;
  FolioGuard<true> guard(map_locks_.get(), head);
  return mapped_refs_locked(head);
}

void PageArray::add_mapped_refs(uint64_t head, int64_t n) {
  FolioGuard<true> guard(map_locks_.get(), head);
  const int64_t before = mapped_refs_locked(head);
  const int64_t after = before + n;  // >= 0: the mm layer subtracts only what it added
  if (before >= kMapOverflow || after >= kMapOverflow) {
    std::lock_guard<std::mutex> lock(map_mu_);
    if (after >= kMapOverflow) map_overflow_[head] = after;
    else map_overflow_.erase(head);
  }
  const auto code = uint8_t(std::min<int64_t>(after, kMapOverflow) << kMapShift);
  auto meta = meta_at(head);
  uint8_t m = meta.load(std::memory_order_relaxed);
  // A CAS loop, not a store: mark_dirty sets the dirty bit in the same byte without our lock.
  // release: a lock-free reader that sees the new count sees what preceded it (the table).
  while (!meta.compare_exchange_weak(m, uint8_t((m & ~kMapMask) | code), std::memory_order_release,
                                     std::memory_order_relaxed)) {
  }
}

void PageArray::give_back_unused(uint64_t head) {
  // relaxed: nobody else ever saw the folio; the zone's mutex orders its next allocation.
  ref_at(head).store(0, std::memory_order_relaxed);
  return_to_zone(head);
}

}  // namespace pinlab
