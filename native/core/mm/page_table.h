// A two-level page table: PMD entries over PTE tables of 512 entries, atomic 64-bit entries.
//
// Entry layout: bits 0-6 flags, bits 32-63 the PFN. A PMD entry is none (0), a table (kTable:
// the slot's PTE table is in use) or a leaf (kHuge: maps a 2 MiB folio from its head PFN).
// PTE tables are allocated on first use and kept until the table dies, so a lockless walker
// can never read a freed table (the kernel gets the same from IRQs off / RCU).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace pinlab {

namespace entry {
constexpr uint64_t kPresent = 1u << 0;
constexpr uint64_t kWritable = 1u << 1;
// The zero page (a PTE), or the huge zero folio (with kHuge: a PMD leaf of its 512 pages):
// never counted, never writable, gup_fast bails.
constexpr uint64_t kSpecial = 1u << 2;
constexpr uint64_t kHuge = 1u << 3;     // PMD leaf
constexpr uint64_t kTable = 1u << 4;    // PMD pointing at the slot's PTE table
// This mm maps the page alone (PageAnonExclusive, kept on the entry here): a write fault on a
// read-only exclusive entry reuses the page whatever its refcount, so a pin survives
// mprotect; fork clears it on both sides when it shares the page.
constexpr uint64_t kExclusive = 1u << 5;
// A page-cache page of a shared (file-backed, MAP_SHARED) mapping: never COW, never unshared,
// never exclusive, never a PMD leaf here, and never migrated (the model keeps no reverse map
// for the page cache). The page's references are one per such PTE, plus the file's own.
constexpr uint64_t kShared = 1u << 6;
// A swap entry (never present): the PFN field holds the swap slot (mm/swap.h), kExclusive the
// SWP_EXCLUSIVE marker (PageAnonExclusive carried across swap, Linux 5.19). Only PTEs: a PMD
// THP is split into PTE swap entries when it is paged out. (Bit 15: room below it for other
// entry kinds; the static_assert below keeps it apart from every flag.)
constexpr uint64_t kSwap = 1u << 15;
// A PMD leaf of a hugetlb page (hugetlb_pool.h): never split. A 2 MiB page is one leaf; a
// 1 GiB page is 512 consecutive leaves of one folio (no PUD level here) that are installed,
// changed and cleared together under the mmap lock and hold ONE reference between them.
constexpr uint64_t kHugetlb = 1u << 8;
// A MAP_PRIVATE hugetlb leaf that maps the file's own page (not an anonymous copy): a write
// always copies it, and only a FOLL_LONGTERM pin unshares it (gup_must_unshare of page cache).
constexpr uint64_t kFilePage = 1u << 9;
// A page-cache page of a private file mapping (MAP_PRIVATE of a file, map_private): mapped
// read-only, never exclusive, never a PMD leaf; a write fault copies it to a private anonymous
// page (COW from the page cache), and a FOLL_LONGTERM read pin unshares it the same way under
// MmRules::zero_page_unshare. Never migrated, as kShared. Bit 11 (8 and 9 are hugetlb's, 15
// the swap entry's; asserted apart below).
constexpr uint64_t kFile = 1u << 11;
// With kShared: the page cache of a file that needs no dirty tracking by write faults (shmem,
// memfd: the region's !dirty_tracked). gup_fast may take a FOLL_LONGTERM|FOLL_WRITE pin of it
// itself, as the kernel's gup_fast_folio_allowed does for shmem_mapping; the walk cannot see
// the region, so the entry says it. Set wherever such an entry is made; kept by every change.
constexpr uint64_t kNoDirtyTracking = 1u << 12;
constexpr unsigned kPfnShift = 32;

constexpr uint64_t make(uint64_t pfn, uint64_t flags) { return (pfn << kPfnShift) | flags; }
constexpr uint64_t pfn(uint64_t e) { return e >> kPfnShift; }
constexpr bool present(uint64_t e) { return e & kPresent; }
constexpr bool writable(uint64_t e) { return e & kWritable; }
constexpr bool special(uint64_t e) { return e & kSpecial; }
constexpr bool huge(uint64_t e) { return e & kHuge; }
constexpr bool table(uint64_t e) { return e & kTable; }
constexpr bool exclusive(uint64_t e) { return e & kExclusive; }
constexpr bool shared(uint64_t e) { return e & kShared; }
constexpr bool swap(uint64_t e) { return (e & (kSwap | kPresent)) == kSwap; }
constexpr bool hugetlb(uint64_t e) { return e & kHugetlb; }
constexpr bool file(uint64_t e) { return e & kFile; }
constexpr bool no_dirty_tracking(uint64_t e) { return e & kNoDirtyTracking; }
// A page the kernel would not call PageAnon: page cache, shared or private, and a private
// hugetlb mapping's file page (gup_must_unshare's !PageAnon branch).
constexpr bool non_anon(uint64_t e) { return e & (kShared | kFile | kFilePage); }
// A page-cache page, mapped shared or privately: never migrated or compacted here.
constexpr bool page_cache(uint64_t e) { return e & (kShared | kFile); }
// A PMD leaf of the huge zero folio (mm/huge_zero.cpp).
constexpr bool huge_zero(uint64_t e) { return (e & (kHuge | kSpecial)) == (kHuge | kSpecial); }
}  // namespace entry

constexpr unsigned kPmdShift = 9;
constexpr uint64_t kPtesPerTable = uint64_t{1} << kPmdShift;  // 512: a 2 MiB PMD span
constexpr uint32_t kPmdOrder = kPmdShift;

static_assert(std::atomic<uint64_t>::is_always_lock_free, "page table entries are lock-free");
static_assert(entry::kShared < (uint64_t{1} << entry::kPfnShift), "flags below the PFN");
static_assert(entry::kSwap < (uint64_t{1} << entry::kPfnShift), "flags below the PFN");
static_assert(entry::kFilePage < (uint64_t{1} << entry::kPfnShift), "flags below the PFN");
static_assert((entry::kSwap & (entry::kPresent | entry::kWritable | entry::kSpecial | entry::kHuge |
                               entry::kTable | entry::kExclusive | entry::kShared |
                               entry::kHugetlb | entry::kFilePage | entry::kFile)) == 0,
              "a swap entry's bit is a flag of its own");
static_assert(entry::kFile < (uint64_t{1} << entry::kPfnShift), "flags below the PFN");
static_assert(((entry::kHugetlb | entry::kFilePage) &
               (entry::kPresent | entry::kWritable | entry::kSpecial | entry::kHuge | entry::kTable |
                entry::kExclusive | entry::kShared | entry::kFile)) == 0 &&
                  (entry::kHugetlb & entry::kFilePage) == 0,
              "hugetlb bits apart from each other and from the other flags");
static_assert((entry::kFile & (entry::kPresent | entry::kWritable | entry::kSpecial | entry::kHuge |
                               entry::kTable | entry::kExclusive | entry::kShared)) == 0,
              "a private file page's bit is a flag of its own");
static_assert((entry::kNoDirtyTracking &
               (entry::kPresent | entry::kWritable | entry::kSpecial | entry::kHuge | entry::kTable |
                entry::kExclusive | entry::kShared | entry::kSwap | entry::kHugetlb |
                entry::kFilePage | entry::kFile)) == 0,
              "the no-dirty-tracking bit is a flag of its own");

class PageTable {
 public:
  explicit PageTable(uint64_t pages);

  uint64_t pmd_count() const { return pmds_; }
  std::atomic<uint64_t>& pmd(uint64_t pmd_index) const { return pmd_[pmd_index]; }
  // The slot's PTE table, or null if none was ever allocated. acquire: pairs with the release
  // that published a new table, so its zeroed entries are seen.
  std::atomic<uint64_t>* table(uint64_t pmd_index) const {
    return tables_[pmd_index].load(std::memory_order_acquire);
  }
  // The slot's PTE table, allocated on first use (caller holds the mmap lock).
  std::atomic<uint64_t>* ensure_table(uint64_t pmd_index);
  // Bytes the table holds: its PMD level and the PTE tables allocated so far (they are kept
  // until the table dies, so this only grows). Readable from any thread.
  uint64_t memory_bytes() const {
    // relaxed: a statistic for the embedder's memory accounting, not a synchronisation point.
    return pmds_ * (sizeof(std::atomic<uint64_t>) + sizeof(std::atomic<uint64_t>*) +
                    sizeof(std::unique_ptr<std::atomic<uint64_t>[]>)) +
           tables_allocated_.load(std::memory_order_relaxed) * kPtesPerTable *
               sizeof(std::atomic<uint64_t>);
  }

 private:
  uint64_t pmds_;
  std::atomic<uint64_t> tables_allocated_{0};
  std::unique_ptr<std::atomic<uint64_t>[]> pmd_;
  std::unique_ptr<std::atomic<std::atomic<uint64_t>*>[]> tables_;
  std::unique_ptr<std::unique_ptr<std::atomic<uint64_t>[]>[]> owned_;
};

}  // namespace pinlab
