// Trust under misuse: the mm layer's calls are all or nothing, a write pin never takes a page
// a write could not touch, a gup over a PMD leaf stays inside its region, and the page
// array refuses shape changes and puts that would free memory an address space still maps.
// Every case here failed before its fix (the "trust_" prefix: --filter trust_).
#include <memory>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

Mm make_mm(Scheme scheme, uint64_t pages, uint64_t vpages, bool debug = true) {
  return make_test_mm(scheme, MmShape{pages, vpages, debug});
}

// Everything a failed call must leave as it was: every entry, every page's counts and shape,
// the free memory, and both sets of statistics.
struct Snapshot {
  std::vector<Translation> entries;
  std::vector<int64_t> pages;  // per pfn: refcount, pincount (-1 unknown), order, dirty
  uint64_t free_pages = 0, regions = 0, mapped = 0;
  std::vector<uint64_t> mm_stats, mem_stats;
  bool has_pinned = false;
};

Snapshot snapshot(const AddressSpace& as) {
  const PageArray& mem = as.mem();
  Snapshot s;
  for (uint64_t v = 0; v < as.pages(); ++v) s.entries.push_back(as.translate(v));
  for (uint64_t p = 0; p < mem.pages(); ++p) {
    s.pages.push_back(mem.refcount(p));
    s.pages.push_back(mem.pincount(p).value_or(-1));
    s.pages.push_back(mem.folio_order(p));
    s.pages.push_back(mem.is_dirty(p));
  }
  s.free_pages = mem.free_pages();
  s.regions = as.regions();
  s.mapped = as.mapped_pages();
  for (size_t k = 0; k < size_t(MmStat::kCount); ++k) s.mm_stats.push_back(as.stat(MmStat(k)));
  // Not kRollbacks nor kOverflowRefusals: those count failed calls (as test/mm-helpers.ts).
  for (Stat k : {Stat::kPinAcquired, Stat::kPinReleased, Stat::kGrabs, Stat::kFoliosFreed})
    s.mem_stats.push_back(mem.stat(k));
  s.has_pinned = as.has_pinned();
  return s;
}

bool same(const Translation& a, const Translation& b) {
  return a.present == b.present && a.pfn == b.pfn && a.writable == b.writable &&
         a.special == b.special && a.huge == b.huge && a.shared == b.shared;
}

void check_unchanged(const Snapshot& a, const Snapshot& b, const char* file, int line) {
  for (size_t v = 0; v < a.entries.size(); ++v) {
    if (!same(a.entries[v], b.entries[v])) {
      fail(file, line, "the entry of virtual page " + std::to_string(v) + " changed");
      break;
    }
  }
  for (size_t i = 0; i < a.pages.size(); ++i) {
    if (a.pages[i] != b.pages[i]) {
      static const char* const kWhat[] = {"refcount", "pincount", "order", "dirty flag"};
      fail(file, line, std::string("the ") + kWhat[i % 4] + " of pfn " + std::to_string(i / 4) +
                           " changed: " + std::to_string(a.pages[i]) + " -> " +
                           std::to_string(b.pages[i]));
      break;
    }
  }
  if (a.free_pages != b.free_pages) fail(file, line, "free pages changed");
  if (a.regions != b.regions || a.mapped != b.mapped) fail(file, line, "regions or mapped pages changed");
  for (size_t k = 0; k < a.mm_stats.size(); ++k)
    if (a.mm_stats[k] != b.mm_stats[k]) fail(file, line, "mm statistic " + std::to_string(k) + " changed");
  for (size_t k = 0; k < a.mem_stats.size(); ++k)
    if (a.mem_stats[k] != b.mem_stats[k]) fail(file, line, "page statistic " + std::to_string(k) + " changed");
  if (a.has_pinned != b.has_pinned) fail(file, line, "has_pinned changed");
}
#define CHECK_UNCHANGED(a, b) check_unchanged(a, b, __FILE__, __LINE__)
// ---- item 9: shape changes and puts under mapped pages --------------------------------------

TEST(trust_make_folio_refuses_pages_an_address_space_maps) {
  auto mm = make_mm(Scheme::kHybrid, 64, 64);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 4, true, true, false}));
  for (uint64_t v = 0; v < 4; ++v) CHECK_EQ(mm.as->translate(v).pfn, v);  // pfns 0..3
  const Snapshot before = snapshot(*mm.as);
  CHECK_CODE(mm.mem->make_folio(0, 2), Code::kEBUSY);  // each looks idle: refcount 1
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  CHECK_OK(mm.as->munmap(0, 1));
  CHECK_EQ(mm.mem->free_pages(), uint64_t(64 - 3));  // page 0 alone went back
  for (uint64_t v = 1; v < 4; ++v) CHECK_EQ(mm.mem->refcount(mm.as->translate(v).pfn), 1);
  uint64_t again = 0;
  CHECK_OK(mm.mem->alloc_folio(0, false, &again));
  CHECK_EQ(again, uint64_t(0));  // never a page that is still mapped
  CHECK_OK(mm.as->munmap(0, 4));
  bool freed = false;
  CHECK_OK(mm.mem->put_page(again, 1, &freed));
  CHECK_EQ(mm.mem->free_pages(), uint64_t(64));
}

TEST(trust_split_folio_refuses_a_mapped_folio) {
  auto mm = make_mm(Scheme::kSeparate, 64, 64);
  uint64_t head = 0;
  CHECK_OK(mm.mem->alloc_folio(2, false, &head));  // a page-cache folio: the file's reference
  const uint32_t sub = uint32_t(head + 1);
  CHECK_OK(mm.as->map_shared(0, &sub, 1, true));
  bool freed = false;
  CHECK_OK(mm.mem->put_page(head, 1, &freed));  // the file lets go; the PTE still maps it
  CHECK(!freed);
  const Snapshot before = snapshot(*mm.as);
  CHECK_CODE(mm.mem->split_folio(head), Code::kEBUSY);
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  CHECK_OK(mm.as->munmap(0, 1));  // the last reference: the whole folio goes back
  CHECK_EQ(mm.mem->free_pages(), uint64_t(64));
}

TEST(trust_a_put_never_frees_a_page_an_address_space_maps) {
  auto mm = make_mm(Scheme::kBias, 2048, 2048, false);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));  // one PMD leaf: 512 references
  CHECK_OK(mm.as->mmap(MmapArgs{512, 1, true, true, false}));
  const uint64_t thp = mm.as->translate(0).pfn, small = mm.as->translate(512).pfn;
  const Snapshot before = snapshot(*mm.as);
  bool freed = false;
  CHECK_CODE(mm.mem->put_page(small, 1, &freed), Code::kEBUSY);
  CHECK_CODE(mm.mem->put_page(thp + 3, 1, &freed), Code::kEBUSY);
  const uint32_t list[] = {uint32_t(small)};
  CHECK_CODE(mm.mem->put_pages(list, 1, -1), Code::kEBUSY);
  CHECK_CODE(mm.as->put_user_pages(list, 1), Code::kEBUSY);
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  CHECK_CODE(mm.mem->split_folio(thp), Code::kEBUSY);
  // A reference of the caller's own on top of the mapping's is put as ever.
  CHECK_OK(mm.mem->get_page(small, 1));
  CHECK_OK(mm.mem->put_page(small, 1, &freed));
  CHECK(!freed);
  mm.as.reset();
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages());
}

TEST(trust_the_zero_page_is_never_got_or_put) {
  auto mm = make_mm(Scheme::kHybrid, 64, 64);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 2, true, false, false}));
  CHECK_OK(mm.as->touch(0, 2, false));  // both map the zero page
  const uint64_t zero = mm.as->translate(0).pfn;
  CHECK(mm.mem->is_zero_page(zero));
  uint64_t buddy = 0;  // the zero page's buddy, idle: a folio of the two would look fine
  CHECK_OK(mm.mem->alloc_folio(0, false, &buddy));
  CHECK_EQ(buddy, zero ^ 1);
  const Snapshot before = snapshot(*mm.as);
  bool freed = false;
  CHECK_CODE(mm.mem->put_page(zero, 1, &freed), Code::kEINVAL);
  CHECK_CODE(mm.mem->get_page(zero, 1), Code::kEINVAL);
  bool got = false;
  CHECK_CODE(mm.mem->try_get_page(zero, 1, &got), Code::kEINVAL);
  const uint32_t list[] = {uint32_t(zero)};
  CHECK_CODE(mm.mem->put_pages(list, 1, -1), Code::kEINVAL);
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  CHECK_OK(mm.as->put_user_pages(list, 1));  // gup hands it out uncounted: skipped
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  CHECK_CODE(mm.mem->make_folio(zero & ~uint64_t(1), 1), Code::kEBUSY);
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  uint64_t other = 0;
  CHECK_OK(mm.mem->alloc_folio(0, false, &other));
  CHECK(other != zero);
}

GupFlags pin(bool write) {
  GupFlags f;
  f.write = write;
  return f;
}

// ---- item 8: write pins and PMD leaves under mprotect ---------------------------------------

// A THP made read-only whole, then writable again for its first 8 pages only: pages 8.. stay
// read-only, and no write pin, fast or slow, may take one of them.
TEST(trust_write_pins_stop_at_a_read_only_part_of_a_thp) {
  for (Scheme s : kAllSchemes) {
    for (bool slow : {false, true}) {
      auto mm = make_mm(s, 2048, 2048);
      CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
      CHECK(mm.as->translate(0).huge);
      CHECK_OK(mm.as->mprotect(0, 512, false));
      CHECK_OK(mm.as->mprotect(0, 8, true));
      std::vector<uint32_t> out(16);
      uint64_t done = 0;
      const GupFlags w = pin(true);
      CHECK_OK(slow ? mm.as->gup_slow(0, 16, w, out.data(), &done)
                    : mm.as->gup_fast(0, 16, w, out.data(), &done));
      CHECK_EQ(done, uint64_t(8));  // partial: page 8 is read-only
      CHECK(mm.as->translate(7).writable);
      for (uint64_t v : {8, 100, 511}) {
        CHECK(!mm.as->translate(v).writable);
        CHECK_CODE(mm.as->touch(int64_t(v), 1, true), Code::kEFAULT);
        uint32_t one = 0;
        uint64_t got = 0;
        CHECK_CODE(mm.as->gup_fast(int64_t(v), 1, w, &one, &got), Code::kEFAULT);
        CHECK_CODE(mm.as->gup_slow(int64_t(v), 1, w, &one, &got), Code::kEFAULT);
        CHECK_EQ(got, uint64_t(0));
      }
      CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
      CHECK_EQ(mm.mem->stat(Stat::kPinAcquired), mm.mem->stat(Stat::kPinReleased));
    }
  }
}

// The same from a region that was never writable (a read fault maps the THP read-only), and
// a read pin over the whole leaf still gets every page.
TEST(trust_mprotect_writable_splits_a_read_only_thp_it_covers_in_part) {
  auto mm = make_mm(Scheme::kHybrid, 2048, 2048);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 512, false, true, true}));
  CHECK(mm.as->translate(0).huge && !mm.as->translate(0).writable);
  CHECK_OK(mm.as->mprotect(504, 8, true));
  CHECK(!mm.as->translate(0).huge);  // split where the protection changes
  std::vector<uint32_t> out(512);
  uint64_t done = 0;
  CHECK_CODE(mm.as->gup_fast(500, 12, pin(true), out.data(), &done), Code::kEFAULT);
  CHECK_EQ(done, uint64_t(0));  // page 500 is read-only: nothing
  CHECK_OK(mm.as->gup_fast(504, 8, pin(true), out.data(), &done));
  CHECK_EQ(done, uint64_t(8));
  CHECK_CODE(mm.as->touch(503, 1, true), Code::kEFAULT);
  CHECK(!mm.as->translate(503).writable);
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
  CHECK_OK(mm.as->gup_fast(0, 512, pin(false), out.data(), &done));
  CHECK_EQ(done, uint64_t(512));
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, false, false));
}


// Takes every free page of order 0 but `leave`, so that an allocation fails after `leave`.
std::vector<uint64_t> hog_all_but(PageArray& mem, uint64_t leave) {
  std::vector<uint64_t> hog;
  while (mem.free_pages() > leave) {
    uint64_t p = 0;
    if (!mem.alloc_folio(0, false, &p).ok()) break;
    hog.push_back(p);
  }
  return hog;
}

void release(PageArray& mem, const std::vector<uint64_t>& hog) {
  for (uint64_t p : hog) {
    bool freed = false;
    CHECK_OK(mem.put_page(p, 1, &freed));
  }
}

// ---- item 10: fork is all or nothing --------------------------------------------------------

// Pinned pages need early-COW copies; memory runs out part way. Before the fix the parent's
// earlier pages stayed write-protected and shared and the copies made were counted.
TEST(trust_fork_that_runs_out_of_memory_changes_nothing) {
  for (Scheme s : kAllSchemes) {
    auto mm = make_mm(s, 128, 1024);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 8, true, true, false}));   // shared COW at fork
    CHECK_OK(mm.as->mmap(MmapArgs{8, 8, true, true, false}));   // pinned: early COW
    CHECK_OK(mm.as->mmap(MmapArgs{600, 2, true, false, false}));
    CHECK_OK(mm.as->touch(600, 1, false));  // the zero page
    CHECK_OK(mm.as->touch(601, 1, true));
    std::vector<uint32_t> out(8);
    uint64_t done = 0;
    CHECK_OK(mm.as->gup_fast(8, 8, pin(true), out.data(), &done));
    CHECK_EQ(done, uint64_t(8));
    CHECK_OK(mm.mem->set_dirty(out[3]));
    const std::vector<uint64_t> hog = hog_all_but(*mm.mem, 3);  // 3 of the 8 copies fit
    const Snapshot before = snapshot(*mm.as);
    std::unique_ptr<AddressSpace> child;
    CHECK_CODE(mm.as->fork(&child), Code::kENOMEM);
    CHECK(child == nullptr);
    CHECK_UNCHANGED(before, snapshot(*mm.as));
    for (uint64_t v = 0; v < 8; ++v) CHECK(mm.as->translate(v).writable);
    release(*mm.mem, hog);
    CHECK_OK(mm.as->fork(&child));  // with memory it works
    CHECK_EQ(mm.as->stat(MmStat::kEarlyCowCopies), uint64_t(8));
    CHECK(!mm.as->translate(0).writable && !child->translate(0).writable);
    CHECK(mm.as->translate(8).writable);
    CHECK(child->translate(11).pfn != out[3]);
    CHECK(mm.mem->is_dirty(child->translate(11).pfn));
    child.reset();
    CHECK_OK(mm.as->unpin_user_pages(out.data(), done, true, false));
    mm.as.reset();
    CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - 1);  // the zero page stays
  }
}

// A pinned THP needs an order-9 copy: the small pages before it were already shared.
TEST(trust_fork_that_finds_no_block_for_a_thp_copy_changes_nothing) {
  auto mm = make_mm(Scheme::kHybrid, 1024, 2048);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 4, true, true, false}));
  CHECK_OK(mm.as->mmap(MmapArgs{512, 512, true, true, true}));
  CHECK(mm.as->translate(512).huge);
  std::vector<uint32_t> out(1);
  uint64_t done = 0;
  CHECK_OK(mm.as->gup_fast(700, 1, pin(false), out.data(), &done));
  const Snapshot before = snapshot(*mm.as);  // 508 pages free, no order-9 block
  std::unique_ptr<AddressSpace> child;
  CHECK_CODE(mm.as->fork(&child), Code::kENOMEM);
  CHECK_UNCHANGED(before, snapshot(*mm.as));
  CHECK_OK(mm.as->unpin_user_pages(out.data(), done, false, false));
  CHECK_OK(mm.as->fork(&child));  // unpinned: shared, no copy needed
  CHECK(!mm.as->translate(600).writable && child->translate(600).huge);
}

// ---- the same class elsewhere: a COW of a shared THP, MAP_POPULATE -----------------------------

// A write fault (or a pin's unshare) on a THP another mm shares splits the leaf and copies the
// 4 KiB touched. With no page for the copy, it used to split first and fail after.
TEST(trust_a_thp_cow_that_finds_no_page_leaves_the_leaf_as_it_was) {
  for (bool pin_it : {false, true}) {
    auto mm = make_mm(Scheme::kHybrid, 1024, 1024);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 512, true, true, true}));
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(mm.as->fork(&child));  // the leaf is shared, read-only on both sides
    const std::vector<uint64_t> hog = hog_all_but(*mm.mem, 0);
    const Snapshot before = snapshot(*mm.as);
    std::vector<uint32_t> out(1);
    uint64_t done = 0;
    CHECK_CODE(pin_it ? mm.as->gup_slow(7, 1, pin(false), out.data(), &done)
                      : mm.as->touch(7, 1, true),
               Code::kENOMEM);
    Snapshot after = snapshot(*mm.as);
    if (pin_it) {  // a gup call counts, and sets has_pinned first, refused or not (the kernel's)
      after.mm_stats[size_t(MmStat::kGupCalls)] = before.mm_stats[size_t(MmStat::kGupCalls)];
      after.has_pinned = before.has_pinned;
    }
    CHECK_UNCHANGED(before, after);
    CHECK(mm.as->translate(7).huge);
    release(*mm.mem, hog);
    CHECK_OK(mm.as->touch(7, 1, true));  // with a page it splits and copies
    CHECK(!mm.as->translate(7).huge && mm.as->translate(8).pfn == child->translate(8).pfn);
  }
}

// ---- MAP_POPULATE ---------------------------------------------------------------------------

// populate used to fault pages in one by one and unmap them again on ENOMEM: the entries came
// back, but the faults and the freed folios stayed counted.
TEST(trust_mmap_populate_that_runs_out_of_memory_changes_nothing) {
  for (bool huge : {false, true}) {
    auto mm = make_mm(Scheme::kHybrid, 1024, 2048);
    CHECK_OK(mm.as->mmap(MmapArgs{0, 4, true, true, false}));
    const std::vector<uint64_t> hog = hog_all_but(*mm.mem, 10);
    const Snapshot before = snapshot(*mm.as);
    CHECK_CODE(mm.as->mmap(MmapArgs{512, 20, true, true, huge}), Code::kENOMEM);
    CHECK_UNCHANGED(before, snapshot(*mm.as));
    CHECK_OK(mm.as->mmap(MmapArgs{512, 10, true, true, huge}));  // the range is free again
    CHECK_EQ(mm.mem->free_pages(), uint64_t(0));
    release(*mm.mem, hog);
  }
}

TEST(trust_mmap_populate_maps_leaves_while_blocks_last_then_pages) {
  auto mm = make_mm(Scheme::kBias, 1024, 4096);
  CHECK_OK(mm.as->mmap(MmapArgs{0, 4, true, true, false}));  // one order-9 block left
  CHECK_OK(mm.as->mmap(MmapArgs{2048, 1024, false, true, true}));  // read-only, huge
  CHECK(mm.as->translate(2048).huge && !mm.as->translate(2048).writable);
  // Read-only: the huge zero folio (it takes the last block) maps both stretches.
  CHECK(mm.as->translate(2048).special && mm.as->translate(2560).special && mm.as->translate(2560).huge);
  CHECK_EQ(mm.as->mapped_pages(), uint64_t(4 + 1024));
  CHECK_EQ(mm.as->stat(MmStat::kFaults), uint64_t(4 + 1024));
  CHECK_OK(mm.as->mmap(MmapArgs{1000, 30, true, true, true}));  // unaligned: pages only
  CHECK(!mm.as->translate(1024).huge && mm.as->translate(1024).writable);
  mm.as.reset();
  CHECK_EQ(mm.mem->free_pages(), mm.mem->pages() - 1 - 512);  // the zero page and huge zero
}

}  // namespace
}  // namespace pinlab::test
