// Folio shape changes: make a large folio from idle order-0 pages, split one back.
//
// Both follow the kernel's freeze protocol: the refcount is swapped from its expected value
// to 0 first (so concurrent add-unless-zero fails and slow-path pins see a free folio), the
// shape is rewritten, and the refcount is released last. The caller must own the pages.
//
// A page a page table maps is never the caller's, even at refcount 1 (the mapping's reference
// looks idle): both refuse it (EBUSY) by its mapped references, and so the zero page, which
// every read fault maps uncounted. Both check every page before they freeze the first, so a
// refusal changes nothing; a freeze that still fails (a racing reference) thaws what it froze.
#include "pages/page_array.h"
#include "pages/scheme_ops.h"

namespace pinlab {

namespace {
constexpr uint64_t folio_pages(uint32_t order) { return uint64_t{1} << order; }
}  // namespace

Reason PageArray::idle_page_fault(uint64_t pfn) const {
  // relaxed: the caller owns the page; other threads only race through bugs of theirs.
  auto zero_at = [pfn](const MappedArray<int32_t>& a) {
    return a.empty() ||
           std::atomic_ref<int32_t>(a.data()[pfn]).load(std::memory_order_relaxed) == 0;
  };
  if (is_zero_page(pfn) || mapped_refs(pfn) != 0) return Reason::kFolioMapped;
  // An order-0 page's own pincount (separate's side array, a kOwn store: their pins() of it).
  const bool pins_zero = dispatch_scheme(cfg_.scheme, [&](auto tag) {
    using P = SchemePolicy<decltype(tag)::value>;
    if constexpr (P::kPincount == PincountHome::kOwn)
      return P::pins(pin_words(), pfn, 0, std::memory_order_relaxed) == 0;
    else return zero_at(pincount_);
  });
  const bool unpinned = pins_zero && zero_at(dbg_pins_);
  if (load_order(pfn) != 0 || !unpinned ||
      ref_at(pfn).load(std::memory_order_relaxed) != 1)
    return Reason::kFolioNotIdle;
  return Reason::kNone;
}

bool PageArray::try_freeze_idle_page(uint64_t pfn) {
  if (idle_page_fault(pfn) != Reason::kNone) return false;
  int32_t expected = 1;
  // acquire: we take the page over from its last user.
  return ref_at(pfn).compare_exchange_strong(expected, 0, std::memory_order_acquire,
                                             std::memory_order_relaxed);
}

Status PageArray::make_folio(uint64_t head, int64_t order_arg) {
  if (Status st = check_pfn(head); !st.ok()) return st;
  if (order_arg < 0 || order_arg > kMaxOrder)
    return Status::Fail(Code::kEINVAL, Reason::kBadOrder, order_arg);
  const auto order = uint32_t(order_arg);
  if (head & (folio_pages(order) - 1))
    return Status::Fail(Code::kEINVAL, Reason::kHeadMisaligned, int64_t(head), order);
  if (folio_pages(order) > pages() - head)
    return Status::Fail(Code::kEINVAL, Reason::kFolioTooLarge, int64_t(head), order);
  const uint64_t end = head + folio_pages(order);
  if (is_movable(head) != is_movable(end - 1))  // a folio never straddles zones
    return Status::Fail(Code::kEINVAL, Reason::kFolioStraddlesZones, int64_t(head), order);

  // Validate before we mutate: every page idle and unmapped, or nothing changes.
  for (uint64_t p = head; p < end; ++p)
    if (const Reason r = idle_page_fault(p); r != Reason::kNone)
      return Status::Fail(Code::kEBUSY, r, int64_t(p));
  // Freeze every page 1 -> 0; on the first page that is not idle (a racing reference), thaw
  // the ones before it.
  for (uint64_t p = head; p < end; ++p) {
    if (!try_freeze_idle_page(p)) {
      // release: publish the unchanged pages again.
      for (uint64_t q = head; q < p; ++q) ref_at(q).store(1, std::memory_order_release);
      return Status::Fail(Code::kEBUSY, Reason::kFolioNotIdle, int64_t(p));
    }
  }

  // All frozen: rewrite the shape. The dirty flag of any page carries to the folio.
  uint8_t dirty = 0;
  for (uint64_t p = head; p < end; ++p)
    dirty |= meta_at(p).load(std::memory_order_relaxed) & kFlagDirty;
  for (uint64_t p = head; p < end; ++p)
    meta_at(p).store(uint8_t(order), std::memory_order_relaxed);
  meta_at(head).store(uint8_t(order | dirty), std::memory_order_relaxed);
  // Tails keep refcount 0 (frozen); the hybrid pincount slot (page[1]) starts at 0.
  // release: the new shape is visible to whoever takes the folio next.
  ref_at(head).store(1, std::memory_order_release);
  return Status::Ok();
}

Status PageArray::split_folio(uint64_t head) {
  if (Status st = check_pfn(head); !st.ok()) return st;
  const uint32_t order = load_order(head);
  if (order == 0) return Status::Fail(Code::kEINVAL, Reason::kNotLargeFolio, int64_t(head));
  if (head_of(head, order) != head)
    return Status::Fail(Code::kEINVAL, Reason::kNotHead, int64_t(head));
  if (is_hugetlb(head))  // a pool page keeps its shape for life (hugetlb_pool.h)
    return Status{Code::kEBUSY, Reason::kHugetlb, "a hugetlb pool page is never split"};
  if (is_zero_page(head))  // the huge zero folio: mapped by every huge read fault, kept whole
    return Status::Fail(Code::kEBUSY, Reason::kFolioMapped, int64_t(head));
  const uint64_t end = head + folio_pages(order);
  auto pinned = [&] {
    return dispatch_scheme(cfg_.scheme, [&](auto tag) {
      constexpr Scheme S = decltype(tag)::value;
      return (keeps_pins<S>(order) && load_pins<S>(head, order, std::memory_order_relaxed) != 0) ||
             (cfg_.debug && debug_folio_pins(head, order) != 0);
    });
  };
  // Validate before we mutate. A mapped folio is not the caller's to reshape (a PMD leaf maps
  // it whole, or PTEs map its pages), whatever its refcount says.
  if (mapped_refs(head) != 0)
    return Status::Fail(Code::kEBUSY, Reason::kFolioMapped, int64_t(head));
  // A lazy folio's mode may hold a reference that is no pin's: settle it first, so the count
  // checked below is the kernel's (scheme_ops.h). Not a change anyone can see: refcount(),
  // pincount() and maybeDmaPinned read the same before and after.
  if (may_be_lazy(order) && settle_lazy_and_test(head)) [[unlikely]] {
    free_folio(head);  // every holder let go meanwhile: it is free, and split nothing
    return Status::Fail(Code::kEFREE, Reason::kPageFree, int64_t(head));
  }
  // relaxed: a check for the caller's error; the freeze below is the decision.
  if (pinned() || ref_at(head).load(std::memory_order_relaxed) != 1)
    return Status::Fail(Code::kEBUSY, Reason::kFolioBusy, int64_t(head));

  // Freeze 1 -> 0: only an idle folio (its single owner's reference) may be split. A pin or a
  // mapping that raced in after the checks above is seen once the count is frozen.
  int32_t expected = 1;
  // acquire: take the folio over from its last user.
  if (!ref_at(head).compare_exchange_strong(expected, 0, std::memory_order_acquire,
                                            std::memory_order_relaxed))
    return Status::Fail(Code::kEBUSY, Reason::kFolioBusy, int64_t(head));
  if (pinned() || mapped_refs(head) != 0) {
    ref_at(head).store(1, std::memory_order_release);  // release: thaw unchanged
    return Status::Fail(Code::kEBUSY, Reason::kFolioBusy, int64_t(head));
  }

  const uint8_t dirty = meta_at(head).load(std::memory_order_relaxed) & kFlagDirty;
  for (uint64_t p = head; p < end; ++p) meta_at(p).store(dirty, std::memory_order_relaxed);
  // release: each new order-0 folio (and its order byte above) is published by its count.
  for (uint64_t p = head + 1; p < end; ++p) ref_at(p).store(1, std::memory_order_release);
  ref_at(head).store(1, std::memory_order_release);
  return Status::Ok();
}

}  // namespace pinlab
