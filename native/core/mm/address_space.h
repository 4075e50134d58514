// AddressSpace: a process's memory map over a PageArray (the kernel's mm_struct).
//
// Regions of anonymous private memory, a real two-level page table, faults (the zero page on
// read, COW on write), munmap/mprotect, fork with early COW of maybe-pinned pages, migration
// and compaction, and get/pin_user_pages with the lockless gup_fast walk (gup.cpp).
//
// Shared regions (MAP_SHARED of a file) map page-cache folios that the caller allocated and
// holds (the file's reference): map_shared installs every PTE at once (entry::kShared), and
// nothing faults pages into them later. A hole (after zap: truncate, hole punch) faults with
// EFAULT (SIGBUS). Their pages are never copied: no COW on write, no unshare for a pin, no
// early COW at fork (the child maps them too), and never migrated (no reverse map for the
// page cache in the model).
//
// Kernel rules (MmRules) select where the model follows today's mainline or the 2019 kernels:
// the zero page's long-term read pin, long-term write pins of dirty-tracked files, migration of
// PTE-mapped large folios. Huge regions get THPs of the enabled orders (kPmdThpOrders by
// default; mTHPs of orders 2..8 are PTE-mapped). madvise: DONTNEED, DONTFORK, DOFORK.
//
// Locking: every operation that changes the page table takes the mmap lock (exclusive; the
// model does not need the kernel's finer page-table locks). gup_fast takes no lock and races
// with all of them by design; the protocol that keeps it safe (grab, then recheck the entry
// against unmap's clear, then check the count; write_protect_seq against fork) is in gup.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>
#include <set>

#include "pages/page_array.h"
#include "mm/page_table.h"
#include "mm/swap.h"
#include "base/stats.h"
#include "base/status.h"

namespace pinlab {

enum class MmStat : uint8_t {
  kGupCalls = 0,           // get/pin_user_pages* calls
  kFastPages,              // pages the lockless walk took
  kSlowFallbacks,          // calls that handed pages to the slow path
  kSlowPages,              // pages the slow path took
  kRecheckFailures,        // speculative grabs released because the PTE or PMD changed
  kSeqRetries,             // fast walks undone because fork's write_protect_seq moved
  kFaults,                 // pages faulted in (4 KiB units)
  kCowCopies,              // write faults that copied a shared page
  kCowReuses,              // write faults that reused an exclusively owned page
  kEarlyCowCopies,         // pages fork copied at once because they were maybe pinned
  kEarlyCowFalsePositives, // ... of which the folio held no real pin (pages, as above)
  kMigrated,               // pages moved by migrate/compact/longterm (4 KiB units)
  kMigrationRefusals,      // folios migration refused because they were maybe pinned
  kMigrationFalsePositives,// ... of which the folio held no real pin
  kMigrationBusy,          // folios refused for other references (shared, racing gup)
  kLongtermMigrations,     // folios moved out of ZONE_MOVABLE for FOLL_LONGTERM
  kUnclassified,           // early-COW copies (pages) and refusals (folios), pins not exactly known
  // MADV_PAGEOUT and swap-in (swap.cpp), all in pages (4 KiB units):
  kPagedOut,               // pages MADV_PAGEOUT unmapped into swap entries
  kPageoutRefusals,        // pages it kept because their folio was maybe pinned
  kPageoutFalsePositives,  // ... of which the folio held no real pin (else unclassified, pages)
  kPageoutBusy,            // pages it kept otherwise: mapped by another mm, folio partly in the range, swap full
  kSwapIns,                // pages faulted back in from swap entries
  kSwapCacheHits,          // ... of which mapped the page the swap cache held
  // mremap and collapse (mremap.cpp, collapse.cpp)
  kRemaps,                 // mremap calls that changed the map (moved, grew or shrank)
  kRemapMovedPages,        // present entries mremap moved to new addresses (4 KiB units)
  kCollapses,              // THPs made by MADV_COLLAPSE or khugepaged
  kCollapseMaybePinned,    // pages collapse skipped: extra references, folio maybe pinned
  kCollapseFalsePositives, // ... of which the folio held no real pin
  kCollapseBusy,           // pages collapse skipped for other references (FOLL_GET, racing gup)
  // kUnclassified by decision (each in its decision's unit), so a report can say which:
  kEarlyCowUnclassified,   // early-COW pages whose folio's pins were not exactly known
  kMigrationUnclassified,  // migration refusals (folios), likewise
  kPageoutUnclassified,    // pageout refusals (pages), likewise
  kCollapseUnclassified,   // collapse skips (pages), likewise
  kCount
};

struct Region {
  uint64_t count;
  bool write;
  bool huge;
  bool shared = false;  // MAP_SHARED of page-cache folios (map_shared); else anonymous private
  // A shared mapping of a file system that tracks dirty pages through write faults (a regular
  // file); false for shmem/memfd-like files. Decides FOLL_LONGTERM|FOLL_WRITE under kRefuse.
  bool dirty_tracked = false;
  bool dontfork = false;  // MADV_DONTFORK: fork's child does not map the region
  // A hugetlb mapping (mm/hugetlb.cpp): the order of its pages (9: 2 MiB, 18: 1 GiB), else 0.
  // Its ranges are whole huge pages; munmap, mprotect and madvise that would cut one: EINVAL.
  uint8_t hugetlb_order = 0;
  // A MAP_PRIVATE mapping of a hugetlb file: its entries start as the file's pages, read-only
  // and not exclusive, so a write (or a pin) copies the whole huge page. A hole is SIGBUS.
  bool hugetlb_file = false;
  // MAP_PRIVATE of a file (map_private): its pages map the page cache read-only (entry::kFile)
  // until a write fault copies one to a private anonymous page. `shared` is false.
  bool file_private = false;
};

// FOLL_LONGTERM|FOLL_WRITE on a shared mapping of a dirty-tracked file (see MmRules).
enum class LongtermFileWrites : uint8_t {
  kRefuse = 0,  // EFAULT (mainline since 6.5, commits 8ac268436e6d and a6e79df92e4a)
  kAllow,       // pinned as any page (the 2019 kernels; the lease proposal guards them)
};

// The kernel rules an address space follows where they changed since 2019 (README: "Kernel
// rules"). Fixed at creation; fork's child inherits them. The lockless walk reads them freely.
struct MmRules {
  // 6.2 (84209e87c696): a FOLL_LONGTERM read pin of the zero page in a private (COW) mapping
  // unshares it first: the process gets its own page, and the pin holds it.
  bool zero_page_unshare = true;
  LongtermFileWrites longterm_file_writes = LongtermFileWrites::kRefuse;
  // Migration of a PTE-mapped large folio (after a partial munmap, mprotect or MADV_DONTNEED)
  // moves its mapped pages one by one (the kernel splits the folio); false: refused as busy.
  bool migrate_pte_mapped_thp = true;
  // 5.19 (6c287605fd56): PageAnonExclusive (entry::kExclusive) decides reuse versus copy on a
  // write fault, and a FOLL_PIN needs an exclusive page (FOLL_UNSHARE first). false: the 2019
  // kernels: a write fault reuses an anonymous page its mapcount says is mapped once, whatever
  // other references exist, and a R/O pin takes a COW-shared page as it is (the COW/GUP leak of
  // CVE-2020-29374 that cow.c's vmsplice() cases show).
  bool anon_exclusive = true;
  // hybrid's smallest folio order with an exact pincount: it must agree with the PageArray's
  // pincount_min_order wherever the array's scheme keeps a first-tail pincount (create checks
  // it). kNoPincountOrder: none (every folio bias-counted, the 2019 kernels).
  uint8_t pincount_min_order = 1;
  // The huge zero folio (transparent_hugepage/use_zero_page, on by default since 3.8, so on
  // under both rule sets): a read fault of an empty 2 MiB stretch of a THP region maps it by a
  // special PMD leaf instead of allocating a THP (mm/huge_zero.cpp). Off: such read faults
  // allocate a THP, as with use_zero_page 0.
  bool huge_zero_page = true;

  static constexpr uint8_t kNoPincountOrder = 31;
  static MmRules mainline() { return MmRules{}; }
  static MmRules v2019() {
    return MmRules{false, LongtermFileWrites::kAllow, false, false, kNoPincountOrder};
  }
};
// EINVAL for a value outside its enumeration (rules built from untrusted numbers).
Status check_mm_rules(const MmRules& rules);
// EINVAL unless rules.pincount_min_order is the array's where the array's scheme keeps a
// first-tail pincount (hybrid); other schemes count pins their own way and accept any value.
Status check_mm_rules_for(const MmRules& rules, const PageArray& mem);

// Per-size THP enablement, the kernel's /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/
// enabled (mTHP, Linux 6.8) set to "madvise": bit k lets a region mapped `huge` get anonymous
// folios of order k. Order 9 is the PMD-mapped THP (the default, alone); orders 2..8 are
// PTE-mapped, allocated by write faults (the largest enabled order whose aligned block lies in
// the region with every PTE empty; smaller ones, then 4 KiB, as fallbacks). MAP_POPULATE maps
// PMD leaves only (its other pages are 4 KiB).
constexpr uint32_t kPmdThpOrders = uint32_t{1} << 9;
constexpr uint32_t kAllThpOrders = 0x3FCu;  // orders 2..9
// EINVAL unless `orders` has bits of orders 2..9 only.
Status check_thp_orders(int64_t orders);

// madvise(2) advice the model implements.
enum class Advice : uint8_t {
  kDontNeed = 0,  // MADV_DONTNEED: zap the range; the next touch faults fresh zero-filled pages
  kDontFork,      // MADV_DONTFORK: fork's child does not map the range
  kDoFork,        // MADV_DOFORK: undoes kDontFork
  kPageOut,       // MADV_PAGEOUT: reclaim the range's private anonymous pages to swap (swap.cpp)
};

struct MmapArgs {
  int64_t start = 0;
  int64_t count = 0;
  bool write = true;
  bool populate = false;
  bool huge = false;
};

// mremap(2) of [start, start + count) to new_count pages (mremap.cpp). may_move:
// MREMAP_MAYMOVE; fixed: MREMAP_FIXED to new_start (needs may_move); dont_unmap:
// MREMAP_DONTUNMAP (needs may_move and new_count == count; anonymous memory only).
struct MremapArgs {
  int64_t start = 0;
  int64_t count = 0;
  int64_t new_count = 0;
  int64_t new_start = -1;  // with fixed only
  bool may_move = false;
  bool fixed = false;
  bool dont_unmap = false;
};

// khugepaged's limits per 2 MiB range (its sysfs knobs; MADV_COLLAPSE has none).
struct KhugepagedArgs {
  int64_t max_ptes_none = 511;    // empty or zero-page PTEs allowed
  int64_t max_ptes_shared = 256;  // PTEs of pages another mm maps too
};

struct GupFlags {
  bool pin = true;        // FOLL_PIN (else FOLL_GET)
  bool write = false;     // FOLL_WRITE
  bool longterm = false;  // FOLL_LONGTERM (pin only)
  bool fast_only = false; // FOLL_FAST_ONLY: no slow path
};

// mmap(MAP_HUGETLB) of anonymous memory (mm/hugetlb.cpp).
struct HugetlbMmapArgs {
  int64_t start = 0;
  int64_t count = 0;
  int64_t order = 9;     // 9: 2 MiB pages, 18: 1 GiB pages
  bool write = true;
  bool populate = false;
  bool shared = false;   // MAP_SHARED: the pages are allocated now and shared with forks
};

// What a PTE or PMD maps at a virtual page, for queries and tests.
struct Translation {
  bool present = false;
  uint64_t pfn = 0;
  bool writable = false;
  bool special = false;  // the zero page
  bool huge = false;     // mapped by a PMD leaf
  bool shared = false;   // a page-cache page of a shared mapping (entry::kShared)
  bool page_cache = false;  // a page-cache page, of a shared or a private file mapping
};

// Where the lockless walk calls a race hook (tests and simulations of a racing CPU).
enum class RacePoint : uint8_t {
  kBeforeGrab = 0,     // the entry is read, the folio not yet grabbed
  kBeforeRecheck,      // the folio is grabbed, the entry not yet re-read
  kBeforeSeqCheck,     // the walk is done (pins), write_protect_seq not yet re-read
};
using RaceHook = std::function<void(RacePoint, uint64_t vpage)>;

class AddressSpace {
 public:
  // pages: virtual pages, 1..2^31. Mainline's rules, with the array's pincount_min_order.
  static Status create(std::shared_ptr<PageArray> mem, int64_t pages,
                       std::unique_ptr<AddressSpace>* out);
  // With kernel rules other than mainline's: EINVAL (nothing created) for a bad rule value.
  static Status create(std::shared_ptr<PageArray> mem, int64_t pages, const MmRules& rules,
                       std::unique_ptr<AddressSpace>* out);
  // With per-size THP enablement too (see kAllThpOrders): EINVAL for a bad mask.
  static Status create(std::shared_ptr<PageArray> mem, int64_t pages, const MmRules& rules,
                       int64_t thp_orders, std::unique_ptr<AddressSpace>* out);
  // With a swap device of `swap_pages` slots (0..2^31; kDefaultSwap: as many as `pages`),
  // shared with every fork descendant: EINVAL for a bad size.
  static constexpr int64_t kDefaultSwap = -1;
  static Status create(std::shared_ptr<PageArray> mem, int64_t pages, const MmRules& rules,
                       int64_t thp_orders, int64_t swap_pages, std::unique_ptr<AddressSpace>* out);
  ~AddressSpace();  // unmaps everything (pins taken through it stay valid)

  uint64_t pages() const { return pages_; }
  const MmRules& rules() const { return rules_; }
  uint32_t thp_orders() const { return thp_orders_; }
  PageArray& mem() const { return *mem_; }
  const std::shared_ptr<PageArray>& mem_ptr() const { return mem_; }

  Status mmap(const MmapArgs& args);
  Status munmap(int64_t start, int64_t count);
  Status mprotect(int64_t start, int64_t count, bool write);
  // mmap(MAP_SHARED) of a file's pages, populated: a shared region [start, start + count)
  // whose page start + i maps pfns[i] by a PTE (a large folio is PTE-mapped), taking one
  // reference per PTE on its folio. Writable iff `write`. All or nothing: EINVAL (range,
  // overlap, count 0, the zero page), ERANGE (a PFN >= pages), EFREE (a free folio).
  // dirty_tracked: a regular file's pages (false: shmem/memfd), see MmRules.
  Status map_shared(int64_t start, const uint32_t* pfns, uint64_t count, bool write,
                    bool dirty_tracked = true);
  // EINVAL exactly where mmap/map_shared of [start, start + count) would fail on the range
  // (outside the address space, count < 1, overlapping a region); changes nothing. Lets a
  // caller validate before it allocates the pages it will map.
  Status check_can_map(int64_t start, int64_t count) const;
  // mmap(MAP_PRIVATE) of a file's pages, populated (file_private.cpp): as map_shared, but
  // every PTE maps its page-cache page read-only (entry::kFile) whatever `write` says, and a
  // write fault copies the page to a private anonymous one (the region is writable iff
  // `write`). Same validation and errors as map_shared, all or nothing.
  Status map_private(int64_t start, const uint32_t* pfns, uint64_t count, bool write,
                     bool dirty_tracked = true);
  // The file dropped pages [start, start + count) of a mapping of it (truncate, hole punch):
  // clears the page-cache entries there (shared or private), and with even_cows the private
  // anonymous copies made from them too (truncate does; a hole punch keeps them, as the
  // kernel's unmap_mapping_range). Holes and other entries are left alone.
  Status zap_file(int64_t start, int64_t count, bool even_cows);
  // zap_page_range: clears every entry in the range and drops its references as munmap does
  // (a PMD leaf partly covered is split first), but keeps the regions. Holes are fine.
  Status zap(int64_t start, int64_t count);
  // madvise(2): every page of the range must lie in a region (ENOMEM, as the kernel answers
  // for unmapped addresses) of anonymous memory (EINVAL for a shared file mapping: not
  // modelled); EINVAL for an unknown advice. Validated whole before any change.
  Status madvise(int64_t start, int64_t count, Advice advice);
  // MADV_REMOVE's checks, nothing changed (the punch itself is the files' own: the library
  // punches their holes, which zap every mapping of them): every page in a region (ENOMEM at
  // the first that is not), each region a shared mapping (EACCES for a private file mapping,
  // EINVAL for anonymous private memory: the kernel's madvise_remove, which needs VM_SHARED
  // and a file).
  Status check_madv_remove(int64_t start, int64_t count) const;
  // The stretches of [start, start + count) that lie in regions, as (start, count) pairs in
  // address order, adjacent regions joined (for the library's record of file mappings: a
  // fork's child lacks its parent's MADV_DONTFORK regions). Host memory: ENOMEM.
  Status region_runs(int64_t start, int64_t count, std::vector<uint64_t>* runs) const;
  // The PFNs of the file pages this mapping holds in [start, start + count) where no entry
  // maps them (file_held_: a huge page's by its first page), in address order: the references
  // a zap of the range puts besides its entries' (for the library's files, which check their
  // own puts after such zaps before any change). Host memory: ENOMEM.
  Status held_pages(int64_t start, int64_t count, std::vector<uint32_t>* pfns) const;
  // Faults the pages in as a read or write access would (EFAULT outside a region, or a write
  // to a read-only region).
  Status touch(int64_t start, int64_t count, bool write);

  // get/pin_user_pages_fast: the lockless walk, then the slow path for the rest. Writes the
  // PFNs to out[0..*done). Partial success is success; an error only when nothing was done.
  Status gup_fast(int64_t start, int64_t count, const GupFlags& flags, uint32_t* out,
                  uint64_t* done);
  // pin_user_pages / get_user_pages: the slow path alone, under the mmap lock.
  Status gup_slow(int64_t start, int64_t count, const GupFlags& flags, uint32_t* out,
                  uint64_t* done);
  // unpin_user_pages(_dirty_lock): batched by folio run; the zero page and the huge zero
  // folio are skipped. `write`
  // must match the pin under write-bias. All or nothing, as PageArray::unpin_pages.
  Status unpin_user_pages(const uint32_t* pfns, uint64_t count, bool write, bool dirty);
  // Releases FOLL_GET references (put_page each); the zero page and huge zero are skipped.
  Status put_user_pages(const uint32_t* pfns, uint64_t count);

  Status fork(std::unique_ptr<AddressSpace>* child);
  // Moves mapped pages to new folios; maybe-pinned ones are refused and stay. *moved: pages.
  Status migrate(int64_t start, int64_t count, uint64_t* moved);
  // Moves order-0 pages down to the lowest free PFNs, freeing higher blocks. *moved: pages.
  Status compact(uint64_t* moved);

  // mremap(2): shrinks in place, grows in place when the pages after the range are free, else
  // (may_move) moves the range to a free area (or to new_start with fixed, unmapping what was
  // there). Moving moves the entries themselves: every page, pin and reference stays as it was
  // (a PMD leaf moves whole when it lies wholly in the range and lands 2 MiB aligned, else it
  // is split first); the region's attributes go with it. *new_start: where the range is now.
  // All or nothing, validated first: EINVAL (bad arguments, fixed overlapping the old range,
  // dont_unmap of a shared file mapping), EFAULT (the old range not wholly mapped, or across
  // regions of different attributes: several VMAs), ENOMEM (cannot grow in place and may not
  // move, or no free area).
  Status mremap(const MremapArgs& args, uint64_t* new_start);
  // MADV_COLLAPSE: every 2 MiB-aligned stretch wholly inside the range that is mapped by PTEs
  // becomes one PMD-mapped THP, copied from the old pages (which lose this mm's mappings;
  // another mm's stay). Refused (EAGAIN) while a page has references beyond its mappings
  // (pins, FOLL_GET: the kernel's refcount check); ENOMEM (range not mapped, no THP free);
  // EINVAL (bad range, shared file mapping, a stretch with nothing mapped). All or nothing.
  // *collapsed: the THPs made.
  Status collapse(int64_t start, int64_t count, uint64_t* collapsed);
  // One khugepaged pass over every huge region (PMD order enabled): collapses each 2 MiB
  // stretch its limits allow (and with a writable PTE); each stretch all or nothing, skipped
  // stretches stay as they were. *collapsed: THPs made; *scanned: stretches examined.
  Status khugepaged(const KhugepagedArgs& args, uint64_t* collapsed, uint64_t* scanned);

  // Calls `hook` at each RacePoint of the lockless walk on this address space, so a test can
  // run munmap, migrate, fork or mprotect exactly there (the walk holds no lock). Set it only
  // while no gup_fast runs; an empty hook costs one predictable branch per entry.
  void set_race_hook(RaceHook hook) { race_hook_ = std::move(hook); }

  Translation translate(uint64_t vpage) const;  // lock-free snapshot
  bool has_pinned() const { return has_pinned_.load(std::memory_order_relaxed); }
  uint64_t stat(MmStat s) const { return stats_.read(s); }
  uint64_t regions() const;
  uint64_t mapped_pages() const;  // present PTE/PMD-mapped pages (4 KiB units)
  // Native bytes this address space holds (its page table; regions are small): for the
  // embedder's memory accounting. Grows as PTE tables are allocated; any thread.
  uint64_t memory_bytes() const { return sizeof(AddressSpace) + pt_.memory_bytes(); }
  // The file pages this mapping holds where no entry maps them (MADV_DONTNEED's zaps, a
  // private hugetlb copy's file page), by virtual page: for the state digest. Under the mmap
  // lock, so not while another thread changes this mm.
  std::vector<std::pair<uint64_t, uint64_t>> file_holds() const;

  // ---- swap (swap.cpp) -----------------------------------------------------------------------
  // The swap entry at vpage (a page MADV_PAGEOUT took), if there is one: lock-free snapshot.
  std::optional<SwapEntryInfo> swap_entry(uint64_t vpage) const;
  uint64_t swapped_pages() const;  // this mm's swap entries
  SwapUsage swap_usage() const;    // the swap device this mm shares with its fork family
  // ---- hugetlb (mm/hugetlb.cpp) --------------------------------------------------------------
  // mmap(MAP_HUGETLB): start and count multiples of the huge page size (EINVAL), every page
  // from the page array's pool. Private: the pages are reserved now (ENOMEM if the pool has
  // too few free unreserved pages) and faulted in on first touch, read or write (hugetlb has
  // no zero page). Shared: allocated and mapped now, shared by forks, never copied.
  Status mmap_hugetlb(const HugetlbMmapArgs& args);
  // mmap of a hugetlb file's pages (memfd_create(MFD_HUGETLB), hugetlbfs): `heads` are the
  // file's folios of `order` for the range, in order (n of them, the range n huge pages);
  // each mapping takes one reference per folio. Shared: the file's pages themselves, writable
  // iff `write`, never copied (FOLL_LONGTERM|FOLL_WRITE allowed: no dirty tracking). Private:
  // the file's pages read-only, copied whole on the first write or pin (COW), with the copies
  // reserved now. All or nothing: EINVAL (alignment, overlap, a head that is not a pool folio
  // of `order`, the zero page), ERANGE, EFREE, ENOMEM (reservation).
  Status map_hugetlb_file(int64_t start, const uint32_t* heads, uint64_t n, int64_t order,
                          bool write, bool shared);

 private:
  AddressSpace(std::shared_ptr<PageArray> mem, uint64_t pages, const MmRules& rules,
               uint32_t thp_orders);

  // ---- helpers under the mmap lock (address_space.cpp) -------------------------------------
  Status check_range(int64_t start, int64_t count) const;
  // EINVAL unless no region overlaps [start, start + count) (a checked range).
  Status check_unmapped(int64_t start, int64_t count) const;
  const Region* region_at(uint64_t vpage, uint64_t* region_start) const;
  // madvise's validations: check(region) for each region of [s, e) in address order, its
  // first failure returned; ENOMEM (the kernel's answer) at the first page in no region.
  // Under the mmap lock.
  template <typename Check>
  Status check_each_region(uint64_t s, uint64_t e, Check&& check) const {
    for (uint64_t v = s; v < e;) {
      uint64_t rs = 0;
      const Region* r = region_at(v, &rs);
      if (r == nullptr) return Status::Fail(Code::kENOMEM, Reason::kNoMapping, int64_t(v));
      if (Status st = check(*r); !st.ok()) return st;
      v = rs + r->count;
    }
    return Status::Ok();
  }
  void split_region_at(uint64_t vpage);
  uint64_t writable_bit(uint64_t vpage) const;  // kWritable if vpage's region is writable
  std::atomic<uint64_t>* pte_slot(uint64_t vpage) const;  // null without a PTE table
  // The slot's PTE table, allocated and linked from its PMD on first use (never under a leaf).
  std::atomic<uint64_t>* pte_table(uint64_t pmd_index);
  // map_shared's references: one get per run of consecutive subpages of one folio. take is
  // all or nothing (EFREE on a free folio gives back what it took); put is its inverse.
  Status take_shared_refs(const uint32_t* pfns, uint64_t count);
  // map_shared and map_private under the mmap lock, before their region: the range free, every
  // PFN in range, never the zero page, the PTE tables allocated, then take_shared_refs. All or
  // nothing (EINVAL, ERANGE, EFREE, or an allocation failure with nothing taken).
  Status take_file_pages_locked(int64_t start, const uint32_t* pfns, uint64_t count);
  void put_shared_refs(const uint32_t* pfns, uint64_t count);
  // ---- PMD splits and their references ------------------------------------------------------
  // A PMD leaf of an anonymous THP holds one reference and counts one mapped reference, as in
  // the kernel (do_huge_pmd_anonymous_page, copy_huge_pmd); its split makes that one per PTE,
  // kPtesPerTable - 1 more of each (__split_huge_pmd_locked). Taking them can be refused
  // (EOVERFLOW: the refcount would pass INT32_MAX), so a call that splits takes them while it
  // may still fail (take_split_refs, reserve_splits) and the split itself only spends them.
  // Takes the kPtesPerTable - 1 references the split of leaf pmd_index will need, once per
  // leaf (a second call for the same leaf takes nothing). Nothing to take for a huge zero leaf
  // (never counted), a hugetlb leaf (never split) or no leaf. EOVERFLOW (or ENOMEM for its
  // record): nothing taken. Never throws.
  Status take_split_refs(uint64_t pmd_index);
  // Turns a PMD leaf into 512 PTEs mapping the same folio, spending the references that
  // take_split_refs took for it (a precondition) as the 511 more PTEs' references, and counting
  // them as mapped. A huge zero leaf: the zero page's PTEs, nothing counted. Never fails.
  void split_pmd(uint64_t pmd_index);
  // Splits the PMD leaf that vpage cuts in two (vpage not 2 MiB aligned), if there is one
  // (its references taken by reserve_splits).
  void split_pmd_across(uint64_t vpage);
  // Before any change: the PTE tables that splits at start and end would need (host memory:
  // an exception) and the splits' references (take_split_refs: EOVERFLOW). What it took and
  // no split spent goes back when the call's SplitRefsScope ends.
  Status reserve_splits(uint64_t start, uint64_t end);
  // Puts back the split references taken since the first `mark` entries of split_refs_ and
  // not spent by a split (a refused call, or a leaf that was unmapped whole after all).
  void release_split_refs(size_t mark);
  // Every call that takes split references holds one: on leaving, by any path, what was taken
  // under it and not spent goes back. Scopes nest (each releases only its own).
  class SplitRefsScope {
   public:
    explicit SplitRefsScope(AddressSpace& as) : as_(as), mark_(as.split_refs_.size()) {}
    ~SplitRefsScope() { as_.release_split_refs(mark_); }
    SplitRefsScope(const SplitRefsScope&) = delete;
    SplitRefsScope& operator=(const SplitRefsScope&) = delete;

   private:
    AddressSpace& as_;
    size_t mark_;
  };
  // Clears the entries of [start, end) and puts their references (a pin keeps its folio).
  // MADV_DONTNEED alone calls it bare: its shared file mappings keep their held pages.
  void unmap_range(uint64_t start, uint64_t end);
  // munmap, zap, mremap and the destructor: unmap_range, and the file pages the range holds
  // for a refault (file_held_) are put too.
  void unmap_range_and_holds(uint64_t start, uint64_t end);
  // mmap's MAP_POPULATE of a new region [start, end): all or nothing.
  Status populate(uint64_t start, uint64_t end, bool write, bool huge);
  // Fault handling: makes vpage present (and writable for a write), allocating as needed.
  Status handle_fault(uint64_t vpage, bool write);
  Status fault_in_missing(uint64_t vpage, bool write, const Region& r, uint64_t region_start);
  // A write fault in a huge region: maps an mTHP (an enabled order below the PMD's) over the
  // aligned block around vpage if one fits and can be allocated; false: nothing changed.
  bool fault_in_mthp(uint64_t vpage, std::atomic<uint64_t>* table, const Region& r,
                     uint64_t region_start);
  bool pmd_thp_enabled() const { return (thp_orders_ & kPmdThpOrders) != 0; }
  Status handle_write_protect_fault(uint64_t vpage);
  // Replaces a shared (or zero-page) entry with a private copy of its page: `fresh`, a page the
  // caller allocated, or one allocated here (kAllocate).
  static constexpr uint64_t kAllocate = ~uint64_t{0};
  Status cow_copy_pte(std::atomic<uint64_t>* slot, uint64_t old, bool writable,
                      uint64_t fresh = kAllocate);
  // COW of one 4 KiB of a shared PMD leaf: allocates the copy's page, then splits the leaf
  // (ENOMEM: the leaf stays as it was).
  Status split_pmd_for_copy(uint64_t pmd_index, uint64_t* fresh);
  // FOLL_PIN on a COW-shared page makes it exclusive first (the kernel's FOLL_UNSHARE): reuse
  // if ours alone, else copy without granting write. A pin must hold this mm's page.
  Status unshare(uint64_t vpage);
  // FOLL_LONGTERM read pin under zero_page_unshare: a zero-page entry at vpage becomes a
  // private page of its own (exclusive, access unchanged), so the pin sees later writes.
  Status unshare_zero_page(uint64_t vpage);
  // FOLL_LONGTERM read pin under zero_page_unshare of a page-cache page in a private file
  // mapping (a COW mapping, gup_must_unshare): it becomes a private anonymous copy (exclusive,
  // read-only), so the pin sees later writes. Other entries: nothing to do.
  Status unshare_file_page(uint64_t vpage);
  // anon_exclusive off: whether a write fault may reuse the anonymous page `e` maps by the 2019
  // kernels' mapcount test (mapped once), whatever other references it has.
  bool reuse_by_mapcount(uint64_t vpage, uint64_t e, bool huge) const;
  // anon_exclusive: whether a write or unshare fault may reuse the anonymous folio `head`,
  // which the read-only, non-exclusive PTE at vpage maps (wp_can_reuse_anon_folio): an order-0
  // page with refcount 1, or (6.16, __wp_can_reuse_large_anon_folio) a PTE-mapped large folio
  // whose every reference is a PTE of this mm. This mm's PTEs of it are counted within its
  // size of vpage, where a folio mapped by one mm lies; one elsewhere (or another mm's, a pin,
  // a FOLL_GET, the swap cache) leaves the count short, and the fault copies.
  bool anon_folio_reusable(uint64_t vpage, uint64_t head) const;
  // mprotect's change of the entries of [start, end), the mmap lock held: taking write access
  // away clears every entry's write bit; granting it (MM_CP_TRY_CHANGE_WRITABLE,
  // can_change_pte_writable) sets it where a write fault would without a decision:
  // exclusive anonymous pages (PTEs and THP leaves) and shared mappings' pages of files that
  // want no write notification (shmem, hugetlbfs). A leaf covered in part is split first.
  void change_write_access(uint64_t start, uint64_t end, bool write);
  // An entry as change_write_access leaves it; upgrades_to_writable: whether granting write
  // access sets its write bit.
  uint64_t with_write_access(uint64_t e, bool write) const;
  bool upgrades_to_writable(uint64_t e) const;
  // Whether a shared file mapping's page is mapped writable before any write fault: in a
  // writable mapping of a file that wants no write notification (shmem, memfd); a
  // dirty-tracked file's pages are mapped read-only until a write faults (page_mkwrite).
  static constexpr bool shared_pte_writable(bool write, bool dirty_tracked) { return write && !dirty_tracked; }
  // check_vma_flags: EFAULT where the rules refuse this gup on vpage's region (FOLL_LONGTERM|
  // FOLL_WRITE on a dirty-tracked shared file mapping under kRefuse); changes nothing.
  Status check_gup_region(uint64_t vpage, const GupFlags& flags) const;
  // Whether fork's child maps vpage (not in a MADV_DONTFORK region).
  bool forks_at(uint64_t vpage) const;
  // Migration of the folio mapped at vpage to a new folio (movable or not); a refused folio
  // sets *refused. Shared by migrate, compact and FOLL_LONGTERM.
  enum class MigrateOutcome { kMoved, kNotMapped, kPinned, kBusy, kNoMemory, kNotLower };
  // *moved_pages (if given): the pages moved (4 KiB units).
  MigrateOutcome migrate_one(uint64_t vpage, bool to_movable, bool only_lower,
                             uint64_t* moved_pages = nullptr);
  // A PMD-mapped THP (head, mapped at vpage) when no free block of its order is left: the
  // leaf is split into 512 PTEs and the pages move one by one (migrate_pte_mapped_folio), as
  // the kernel's migrate_pages splits a large folio on -ENOMEM (try_split_folio; 5.4's
  // split_huge_page_to_list) so that a long-term pin of it, or migration, still succeeds.
  // kNoMemory, nothing split, if the 512 order-0 pages are not there either.
  MigrateOutcome split_and_migrate_thp(uint64_t vpage, uint64_t head, bool to_movable,
                                       uint64_t* moved_pages);
  // A large folio mapped by PTEs (vpage maps its subpage): mapped whole by this mm, it moves
  // whole to a free folio of its order (move_pte_mapped_folio_whole); otherwise (partly
  // mapped, or no block of its order free) every PTE of this mm that maps it moves to an
  // order-0 page of its own, all or nothing, and the folio is freed (the kernel splits it and
  // migrates the pieces). Busy if anything but those PTEs holds it.
  MigrateOutcome migrate_pte_mapped_folio(uint64_t vpage, uint64_t head, uint32_t order,
                                          bool to_movable, uint64_t* moved_pages);
  // A PTE-mapped large folio that this mm maps whole (`slots`: its n PTEs, in subpage order)
  // moves to `target`, a free folio of its order taken by the caller (given back if busy),
  // still PTE-mapped: one reference per PTE, as before. `olds`: empty, with room for n (no
  // allocation once the target is taken).
  MigrateOutcome move_pte_mapped_folio_whole(uint64_t head, uint32_t order, uint64_t target,
                                             const std::vector<std::atomic<uint64_t>*>& slots,
                                             std::vector<uint64_t>& olds, uint64_t* moved_pages);
  // fork's statistics, added only once the fork succeeds (pages, as the stats count them).
  struct ForkTally {
    uint64_t early_cow_copies = 0;
    uint64_t false_positives = 0;
    uint64_t unclassified = 0;
  };
  // fork: prepares the child's copy of one present entry (a PTE, or a PMD leaf when huge):
  // its references on a shared folio, or an early-COW copy. Changes nothing of the parent's.
  Status fork_entry(AddressSpace& child, std::atomic<uint64_t>& slot, std::atomic<uint64_t>& child_slot,
                    uint64_t vpage, bool huge, bool pinned_mm, ForkTally* tally);
  // fork of a maybe-pinned PMD-mapped THP (leaf entry e) of an mm that has pinned, as the
  // kernel's copy_huge_pmd, which will not share it: the child gets a PTE table of 512 order-0
  // copies (copy_present_page, page by page), and the parent's leaf is split to PTEs of the same
  // folio by fork's commit pass (its table reserved here, so the split cannot fail). ENOMEM when
  // a copy or a table cannot be had; the copies made so far are in the child's table, which
  // abandon_fork gives back.
  Status fork_pinned_thp(AddressSpace& child, std::atomic<uint64_t>& child_pmd, uint64_t e,
                         uint64_t vpage, ForkTally* tally);
  // Whether fork copies the anonymous page of entry e (folio head, order) into the child now
  // instead of sharing it: an mm that has pinned, a maybe-pinned folio, and under anon_exclusive
  // an exclusive entry (a shared one cannot be pinned).
  bool needs_early_cow(uint64_t e, uint64_t head, uint32_t order, bool pinned_mm) const;
  // abandon_fork's part for a child's table of early copies (fork_pinned_thp).
  void abandon_copied_table(AddressSpace& child, std::atomic<uint64_t>& child_pmd, uint64_t vpage);
  template <typename Fn>
  void for_each_fork_pair(AddressSpace& child, Fn&& fn);
  // A failed fork: gives back what fork_entry took for the child (never re-taking anything).
  void abandon_fork(AddressSpace& child);
  // A maybe-pinned decision: `units` more false positives if the folio held no real pin, or
  // unclassified if its pins are not exactly known (pages for early COW, folios for migration).
  void note_maybe_pinned_event(uint64_t head, uint32_t order, MmStat false_positive_stat,
                               uint64_t units = 1);
  Status gup_slow_locked(uint64_t start, uint64_t count, const GupFlags& flags, uint32_t* out,
                         uint64_t* done);
  // ---- mremap (mremap.cpp) and collapse (collapse.cpp) -------------------------------------
  // Moves the entries of [src, src + n) to [dst, dst + n) (disjoint; dst's entries empty, its
  // PTE tables allocated by reserve_move_tables). Never fails.
  void move_entries(uint64_t src, uint64_t dst, uint64_t n);
  // Before any change: the tables a move needs (an exception) and the references of every
  // leaf it will split (take_split_refs: EOVERFLOW, released by the caller's SplitRefsScope).
  Status reserve_move_tables(uint64_t src, uint64_t dst, uint64_t n);
  // The lowest free area of n pages (one congruent to `like` modulo 2 MiB preferred); false if none.
  bool find_free_area(uint64_t n, uint64_t like, uint64_t* out) const;
  struct CollapsePlan;
  enum class CollapseCheck { kOk, kMapped, kNothing, kLimits, kBusy, kNotEligible, kReadOnly };
  CollapseCheck check_collapse(uint64_t pmd_index, const KhugepagedArgs* limits,
                               CollapsePlan* plan);
  Status commit_collapses(std::vector<CollapsePlan>& plans);
  // A swap entry's slot has a swap-cache page held by more than the swap cache and mappings.
  bool swap_cache_page_busy(uint64_t e) const;

  // ---- swap (swap.cpp), under the mmap lock ------------------------------------------------
  // MADV_PAGEOUT of a validated range [start, end): see swap.cpp.
  Status pageout(uint64_t start, uint64_t end);
  // One folio met at vpage (its first entry in the range): swapped out whole, or kept.
  void pageout_folio(uint64_t vpage, uint64_t start, uint64_t end);
  // do_swap_page: the swap entry e at *slot becomes a present entry again.
  Status swap_in(uint64_t vpage, std::atomic<uint64_t>* slot, uint64_t e, bool write,
                 const Region& r);
  // An entry naming a slot is gone (zap, munmap, a failed fork's child): count - 1, and at 0
  // the swap-cache page is dropped and the slot freed.
  void free_swap_entry(uint64_t e);
  // fork: the child's copy of a swap entry (one more count; the marker cleared); EOVERFLOW.
  Status fork_swap_entry(uint64_t e, std::atomic<uint64_t>& child_slot);

  // ---- the lockless walk (gup.cpp) ---------------------------------------------------------
  // What maps a virtual page for the walk: a PMD leaf (n: the subpages this call wants from
  // it) or a PTE (n = 1), with the values read, for the recheck.
  struct WalkEntry {
    std::atomic<uint64_t>* pmd;
    uint64_t pe;
    std::atomic<uint64_t>* pte;  // null for a leaf
    uint64_t e;
    uint64_t pfn;
    uint64_t n;
    uint64_t leaves = 1;  // hugetlb: consecutive leaves of one page the grab covers
  };
  // Reads the entry for v; false where the fast path must stop (absent, special, read-only
  // for a write, COW-shared for a pin, ZONE_MOVABLE for a long-term pin).
  bool read_walk_entry(uint64_t v, uint64_t end, const GupFlags& f, WalkEntry* w) const;
  bool walk_entry_unchanged(const WalkEntry& w) const;
  void call_race_hook(RacePoint point, uint64_t vpage);
  template <Scheme S>
  uint64_t gup_fast_walk(uint64_t start, uint64_t count, const GupFlags& flags, uint32_t* out);
  template <Scheme S>
  void release_grabbed(const uint32_t* pfns, uint64_t n, const GupFlags& flags);

  // ---- hugetlb (mm/hugetlb.cpp) ------------------------------------------------------------
  // EINVAL if [start, end) cuts a huge page of a hugetlb region in two.
  Status check_hugetlb_cut(uint64_t start, uint64_t end) const;
  // v, or the start of the hugetlb page v falls inside (MADV_DONTNEED's end rounds down).
  uint64_t hugetlb_page_floor(uint64_t v) const;
  // A fault in a hugetlb region (the whole huge page around vpage).
  Status hugetlb_fault(uint64_t vpage, bool write, const Region& r, uint64_t region_start);
  // The write fault (write) or FOLL_UNSHARE (not write) of a present hugetlb page: reuse it if
  // it is ours alone, else copy it whole from the pool (EFAULT, SIGBUS, when the pool is out).
  Status hugetlb_wp(uint64_t vpage, bool write);
  // The first PMD index of the hugetlb page whose leaf is pe at PMD index i, and its head.
  void hugetlb_page_of(uint64_t i, uint64_t pe, uint64_t* first, uint64_t* head,
                       uint32_t* order) const;
  // Writes the leaves of a hugetlb page at virtual page vbase (PMD-aligned). seq_cst stores.
  void install_hugetlb(uint64_t vbase, uint64_t head, uint32_t order, uint64_t flags);
  // unmap_range of one hugetlb leaf: cleared; the page's reference goes with its last leaf.
  void unmap_hugetlb_leaf(uint64_t i, uint64_t pe);
  // munmap: gives back the reservations of huge pages never faulted in.
  void drop_hugetlb_reservations(uint64_t start, uint64_t end);
  Status fork_hugetlb_leaf(std::atomic<uint64_t>& slot, std::atomic<uint64_t>& child_slot,
                           uint64_t vpage, bool pinned_mm, ForkTally* tally);
  void abandon_hugetlb_leaf(std::atomic<uint64_t>& child_slot);
  MigrateOutcome migrate_hugetlb(uint64_t vpage, uint64_t* moved_pages);
  // gup_fast: extends a walk entry at a hugetlb leaf over the next leaves of the same page.
  void extend_hugetlb_walk(uint64_t v, uint64_t end, WalkEntry* w) const;
  // Huge pages (their first virtual page) of private mappings whose reservation is unused.
  std::set<uint64_t> hugetlb_resv_;

  // ---- a file mapping's hold on its pages (mm/file_hold.cpp), under the mmap lock ----------
  // A shared mapping (of the page cache; hugetlb, anonymous or of a file) and a private
  // mapping of a hugetlb file keep one reference on each file page they cover (the vma's
  // vm_file keeps the file, in the kernel): the reference of the entry that maps the page, or,
  // when no entry does (MADV_DONTNEED zapped it; a private hugetlb mapping's write copied it),
  // a held one in file_held_, by its virtual page (a huge page's first). A fault on the empty
  // entry maps the held page again, as the kernel finds it in the file. The file dropping its
  // pages (zap, zap_file: truncate, hole punch) drops their holds: SIGBUS from then on.
  // MADV_DONTNEED: zaps the entries of [s, e) (whole huge pages, all in regions) that map a
  // file page in a holding mapping, keeping each reference held; host memory first (the held
  // nodes), then the entries. Other entries are left to unmap_range.
  void zap_file_pages(uint64_t s, uint64_t e);
  // zap_file_pages' parts: the pages of [v, end) in a hugetlb file mapping of `order`, and in a
  // shared page-cache mapping, whose entries map a file page (virtual page -> PFN); one entry's
  // (or huge page's) clearing, its reference kept.
  void collect_hugetlb_file_pages(uint64_t v, uint64_t end, uint32_t order,
                                  std::map<uint64_t, uint64_t>* out) const;
  void collect_shared_file_ptes(uint64_t v, uint64_t end, std::map<uint64_t, uint64_t>* out) const;
  void clear_held_entry(uint64_t v, uint64_t pfn);
  // The held page at the empty entry of vpage in a shared page-cache mapping, mapped again
  // (writable as the region is); EFAULT (SIGBUS) if none is held.
  Status refault_shared_file_pte(uint64_t vpage, const Region& r);
  // The same for the huge page at vbase of a hugetlb file mapping (a write in a private one
  // maps a copy, the hold staying).
  Status refault_hugetlb_file_page(uint64_t vbase, bool write, const Region& r);
  // A private mapping's copy of the hugetlb page at src into vbase, exclusive (writable with
  // w): the page's reservation if it still has one, else a free pool page; EFAULT if none.
  Status install_hugetlb_copy(uint64_t vbase, uint64_t src, uint32_t order, uint64_t w);
  // unmap_range_and_holds and zap_file: puts the holds of [start, end).
  void drop_file_held(uint64_t start, uint64_t end);
  // mremap: the holds of [src, src + n) move to [dst, dst + n) (no allocation).
  void move_file_held(uint64_t src, uint64_t dst, uint64_t n);
  // fork, before the entries (host memory only): the child's holds, for the regions it
  // inherits. Then, after them: their references (one more on each page), all or none.
  std::map<uint64_t, uint64_t> file_held_for_child() const;
  Status take_file_held(const std::map<uint64_t, uint64_t>& held);
  std::map<uint64_t, uint64_t> file_held_;  // virtual page -> the held page's PFN

  // ---- the huge zero folio (mm/huge_zero.cpp), under the mmap lock --------------------------
  // A read fault of the empty 2 MiB stretch at PMD index i of a THP region: maps the huge zero
  // folio by a special PMD leaf, if the rules allow and it can be had; false: nothing changed
  // (the caller maps the zero page's PTEs instead: a read fault never fails for it).
  bool try_map_huge_zero(uint64_t i);
  // The write fault (write) or FOLL_UNSHARE (not write) of the huge zero leaf at PMD index i:
  // a fresh zero-filled THP replaces it (exclusive, writable iff the region is); if no order-9
  // block is free, the leaf is split to PTEs of the zero page (*replaced false) and the caller
  // finishes at 4 KiB. Fails only for host memory (an exception, nothing changed).
  Status huge_zero_wp(uint64_t i, bool write, bool* replaced);
  // split_pmd of a huge zero leaf: 512 read-only PTEs of the zero page, as the kernel's
  // __split_huge_zero_page_pmd (never the folio's subpages: nothing may count those).
  void split_huge_zero_pmd(uint64_t i);
  // pfns without the zero page and the huge zero folio's subpages: pfns itself if it names
  // none, else *kept filled with the others (gup.cpp; unpin and put of what gup handed out).
  const uint32_t* without_zero_pages(const uint32_t* pfns, uint64_t count,
                                     std::vector<uint32_t>* kept) const;

  std::shared_ptr<PageArray> mem_;
  uint64_t pages_;
  const MmRules rules_;
  const uint32_t thp_orders_;
  PageTable pt_;
  mutable std::mutex mmap_lock_;
  std::map<uint64_t, Region> regions_;  // by start page; never overlapping
  // The split references this call holds and no split has spent yet (take_split_refs):
  // {PMD index, folio head}. Under the mmap lock; empty between calls.
  std::vector<std::pair<uint64_t, uint64_t>> split_refs_;
  std::atomic<bool> has_pinned_{false};  // MMF_HAS_PINNED: sticky once set
  std::atomic<uint64_t> write_protect_seq_{0};  // odd while fork write-protects
  mutable ShardedCounters<MmStat> stats_;
  RaceHook race_hook_;
  std::shared_ptr<SwapSpace> swap_;  // shared by the fork family; set by create and fork
};

}  // namespace pinlab
