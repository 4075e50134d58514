// The huge zero folio: what a read fault of a whole 2 MiB stretch of a THP region maps.
//
// As the zero page, but 2 MiB: an order-9 folio of the normal zone (PageArray::huge_zero_folio),
// made on first use and never freed, mapped read-only by special PMD leaves (entry::kHuge |
// entry::kSpecial) in any number of address spaces and never counted: no reference, no mapped
// reference, no pin. Every path that counts pages leaves it alone the way it leaves the zero
// page alone (PageArray::is_zero_page names both): the pin paths refuse its 512 PFNs, gup
// hands them out uncounted, migration, compaction, pageout and collapse skip it, fork shares
// the leaf as it is, mremap moves it, unmap clears it without a put. The kernel does not count
// its PMD mappings either: mainline holds one reference on it per mm that ever mapped it
// (mm_get_huge_zero_folio, marked by a flag of the mm), none per leaf, and the model, which never
// frees it, holds none at all. So the rule "a PMD leaf holds one reference" (address_space.h,
// take_split_refs) covers anonymous THPs only; a huge zero leaf holds none, and its split makes
// the zero page's PTEs, which hold none.
//
// The fresh THP that replaces it holds one reference for its leaf, as any anonymous THP leaf.
//
// What replaces it (the kernel's do_huge_pmd_wp_page of a huge zero PMD):
//   - a write fault, or the FOLL_UNSHARE of a long-term read pin under
//     MmRules::zero_page_unshare: a fresh THP, zero-filled, exclusive, writable iff the region
//     is (mainline's do_huge_zero_wp_pmd, Linux 6.13; the 2019 kernels allocated one the same
//     way before 5.8 made them split). No order-9 block free: the leaf is split to the zero
//     page's PTEs and the fault finishes at 4 KiB (a copy of one page, or its unshare);
//   - munmap, mprotect, MADV_DONTNEED or mremap of part of it: split to 512 PTEs of the zero
//     page (__split_huge_zero_page_pmd), never PTEs of its own subpages.
// gup_fast bails on the special leaf (as on the zero page's PTE); the slow path hands its
// subpages out uncounted to FOLL_GET and to short-term FOLL_PIN reads, and a long-term read pin
// under zero_page_unshare replaces it first (gup_must_unshare: not anonymous, FOLL_LONGTERM).
#include "mm/address_space.h"

namespace pinlab {

bool AddressSpace::try_map_huge_zero(uint64_t i) {
  if (!rules_.huge_zero_page) return false;
  uint64_t head = 0;
  if (!mem_->huge_zero_folio(&head).ok()) return false;  // no order-9 block: 4 KiB zero PTEs
  // seq_cst (a release at least): a walker that reads the leaf sees the folio made (its
  // publication is a release of its own; this keeps every entry change one order).
  pt_.pmd(i).store(entry::make(head, entry::kPresent | entry::kHuge | entry::kSpecial),
                   std::memory_order_seq_cst);
  stats_.add(MmStat::kFaults, kPtesPerTable);
  return true;
}

Status AddressSpace::huge_zero_wp(uint64_t i, bool write, bool* replaced) {
  std::atomic<uint64_t>& pmd = pt_.pmd(i);
  *replaced = false;
  // Host memory first (an exception changes nothing): the PTE table a fallback split needs.
  pt_.ensure_table(i);
  // An unshare for a long-term pin takes a THP outside ZONE_MOVABLE where it can (the pin would
  // migrate it there next, as unshare_zero_page); a write fault takes one as any fault does.
  uint64_t head = 0;
  bool got = !write && mem_->alloc_folio(kPmdOrder, false, &head).ok();
  if (!got) got = mem_->alloc_folio(kPmdOrder, true, &head).ok();
  if (!got) {
    split_huge_zero_pmd(i);
    return Status::Ok();
  }
  mem_->add_mapped_refs(head, 1);  // the leaf's one reference: the fresh folio's
  // seq_cst (a release at least): publishes the new folio with the entry; a walker that read
  // the old leaf took nothing (special), so no recheck is owed.
  pmd.store(entry::make(head, entry::kPresent | entry::kHuge | entry::kExclusive |
                                  writable_bit(i << kPmdShift)),
            std::memory_order_seq_cst);
  stats_.add(MmStat::kCowCopies, kPtesPerTable);
  *replaced = true;
  return Status::Ok();
}

void AddressSpace::split_huge_zero_pmd(uint64_t i) {
  // The zero page exists: huge_zero_folio makes it before the huge zero folio.
  const int64_t zero = mem_->zero_pfn();
  std::atomic<uint64_t>* t = pt_.ensure_table(i);
  // Relaxed entry stores: the PMD store below publishes them.
  for (uint64_t k = 0; k < kPtesPerTable; ++k)
    t[k].store(entry::make(uint64_t(zero), entry::kPresent | entry::kSpecial),
               std::memory_order_relaxed);
  // seq_cst (a release at least): a walker that sees the table sees its entries.
  pt_.pmd(i).store(entry::make(0, entry::kTable | entry::kPresent), std::memory_order_seq_cst);
}

}  // namespace pinlab
