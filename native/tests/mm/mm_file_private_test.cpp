// Issue 13: private file mappings (map_private, zap_file, COW from the page cache, the pin
// rules of gup_must_unshare for page-cache pages), rules.anon_exclusive and
// rules.pincount_min_order, with a concurrency case for the ThreadSanitizer build.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "mm/mm_fixtures.h"
#include "mm/address_space.h"
#include "pages/scheme.h"

namespace pinlab::test {
namespace {

struct World {
  std::shared_ptr<PageArray> mem;
  std::unique_ptr<AddressSpace> as;
  std::vector<uint32_t> file;  // the "page cache": folios this test allocated and holds
};

World make_world(Scheme scheme, const MmRules& rules, uint64_t file_pages) {
  Mm mm = make_test_mm(scheme, MmShape{4096, 1024, true, rules});
  World w{std::move(mm.mem), std::move(mm.as), {}};
  Status st;
  for (uint64_t i = 0; i < file_pages; ++i) {
    uint64_t pfn = 0;
    st = w.mem->alloc_folio(0, false, &pfn);
    if (!st.ok()) fail(__FILE__, __LINE__, describe(st));
    w.file.push_back(uint32_t(pfn));
  }
  return w;
}

// Drops the address space and the page cache's references: every page must be free again.
void expect_all_free(World& w) {
  w.as.reset();
  for (uint32_t pfn : w.file) {
    bool freed = false;
    CHECK_OK(w.mem->put_page(pfn, 1, &freed));
  }
  CHECK_EQ(w.mem->free_pages() + (w.mem->zero_pfn() >= 0 ? 1 : 0), uint64_t(4096));
}

GupFlags pin(bool write, bool longterm) {
  GupFlags f;
  f.write = write;
  f.longterm = longterm;
  return f;
}

// MADV_DONTNEED of a shared file mapping: the entries go, each page held by the mapping (a
// put of the file's own reference frees none), the next touch maps the same page again; zap and
// zap_file (the file dropping its pages) drop the holds, and the pages go free.
TEST(map_shared_dontneed_holds_the_pages_until_refault_or_the_file_drops_them) {
  for (Scheme s : kAllSchemes) {
    World w = make_world(s, MmRules::mainline(), 4);
    const uint64_t free0 = w.mem->free_pages();
    CHECK_OK(w.as->map_shared(8, w.file.data(), 4, true, true));
    CHECK_OK(w.as->madvise(8, 4, Advice::kDontNeed));
    CHECK(!w.as->translate(9).present);
    CHECK_EQ(w.mem->refcount(w.file[1]), 2);  // the cache's and the hold
    CHECK_EQ(w.mem->mapped_refs(w.file[1]), int64_t(0));
    for (uint32_t pfn : w.file) {
      bool freed = false;
      CHECK_OK(w.mem->put_page(pfn, 1, &freed));  // a hostile put of the cache's reference
      CHECK(!freed);
    }
    CHECK_OK(w.as->touch(8, 2, false));
    // A dirty-tracked file's page comes back clean and read-only on a read; a write faults.
    const Translation tr = w.as->translate(9);
    CHECK(tr.present && tr.shared && !tr.writable);
    CHECK_OK(w.as->touch(9, 1, true));
    CHECK(w.as->translate(9).writable);
    CHECK_EQ(tr.pfn, uint64_t(w.file[1]));
    CHECK_EQ(w.mem->mapped_refs(w.file[1]), int64_t(1));
    CHECK_OK(w.as->madvise(8, 4, Advice::kDontNeed));
    CHECK_OK(w.as->zap(8, 2));  // drops the holds of two pages: they go free
    CHECK_CODE(w.as->touch(8, 1, false), Code::kEFAULT);
    CHECK_OK(w.as->zap_file(10, 2, false));  // and the other two
    CHECK_CODE(w.as->touch(11, 1, false), Code::kEFAULT);
    CHECK_EQ(w.mem->free_pages(), free0 + 4);
  }
}

TEST(map_private_maps_page_cache_read_only_and_a_write_copies_it) {
  for (Scheme s : kAllSchemes) {
    World w = make_world(s, MmRules::mainline(), 4);
    CHECK_OK(w.as->map_private(8, w.file.data(), 4, true));
    const Translation tr = w.as->translate(9);
    CHECK(tr.present && tr.page_cache && !tr.shared && !tr.writable);
    CHECK_EQ(tr.pfn, uint64_t(w.file[1]));
    CHECK_EQ(w.mem->refcount(w.file[1]), 2);
    CHECK_EQ(w.mem->mapped_refs(w.file[1]), int64_t(1));
    CHECK_OK(w.as->touch(9, 1, true));
    const Translation copy = w.as->translate(9);
    CHECK(copy.writable && !copy.page_cache && copy.pfn != w.file[1]);
    CHECK_EQ(w.mem->refcount(w.file[1]), 1);
    CHECK_EQ(w.as->stat(MmStat::kCowCopies), uint64_t(1));
    // All or nothing: an overlap, the zero page, a PFN out of range change nothing.
    CHECK_CODE(w.as->map_private(10, w.file.data(), 1, true), Code::kEINVAL);
    const uint32_t far[] = {4096};
    CHECK_CODE(w.as->map_private(100, far, 1, true), Code::kERANGE);
    CHECK_EQ(w.as->regions(), uint64_t(1));
    expect_all_free(w);
  }
}

TEST(pins_of_private_file_pages_follow_gup_must_unshare) {
  for (Scheme s : kAllSchemes) {
    for (const bool mainline : {true, false}) {
      World w = make_world(s, mainline ? MmRules::mainline() : MmRules::v2019(), 3);
      CHECK_OK(w.as->map_private(0, w.file.data(), 3, true));
      std::vector<uint32_t> out(3);
      uint64_t done = 0;
      // Short-term R/O: the page-cache page, on the fast path.
      CHECK_OK(w.as->gup_fast(0, 1, pin(false, false), out.data(), &done));
      CHECK_EQ(out[0], w.file[0]);
      CHECK_EQ(w.as->stat(MmStat::kSlowFallbacks), uint64_t(0));
      CHECK_OK(w.as->unpin_user_pages(out.data(), done, false, false));
      // Long-term R/O: mainline unshares (slow path), 2019 pins the page cache.
      CHECK_OK(w.as->gup_fast(1, 1, pin(false, true), out.data(), &done));
      CHECK_EQ(out[0] == w.file[1], !mainline);
      CHECK_EQ(w.as->translate(1).page_cache, !mainline);
      CHECK_OK(w.as->touch(1, 1, true));
      CHECK_EQ(w.as->translate(1).pfn == out[0], mainline);
      CHECK_OK(w.as->unpin_user_pages(out.data(), done, false, false));
      // Write pins (long-term, of a dirty-tracked file): the anonymous copy.
      CHECK_OK(w.as->gup_slow(2, 1, pin(true, true), out.data(), &done));
      CHECK(out[0] != w.file[2]);
      CHECK_EQ(w.as->translate(2).pfn, uint64_t(out[0]));
      CHECK_OK(w.as->unpin_user_pages(out.data(), done, true, false));
      expect_all_free(w);
    }
  }
}

TEST(zap_file_takes_page_cache_entries_and_copies_only_with_even_cows) {
  World w = make_world(Scheme::kHybrid, MmRules::mainline(), 4);
  CHECK_OK(w.as->map_private(0, w.file.data(), 4, true));
  CHECK_OK(w.as->touch(0, 2, true));  // pages 0-1 copied
  CHECK_OK(w.as->zap_file(0, 4, false));  // a hole punch: the copies stay
  CHECK(w.as->translate(0).present && w.as->translate(1).present);
  CHECK(!w.as->translate(2).present && !w.as->translate(3).present);
  CHECK_CODE(w.as->touch(2, 1, false), Code::kEFAULT);  // SIGBUS
  CHECK_OK(w.as->zap_file(0, 4, true));  // truncate: the copies too
  CHECK(!w.as->translate(0).present && !w.as->translate(1).present);
  CHECK_CODE(w.as->zap_file(-1, 4, true), Code::kEINVAL);
  CHECK_CODE(w.as->zap_file(0, 0, true), Code::kEINVAL);
  expect_all_free(w);
}

TEST(fork_shares_page_cache_pages_and_never_copies_them_early) {
  for (Scheme s : kAllSchemes) {
    World w = make_world(s, MmRules::mainline(), 2);
    CHECK_OK(w.as->map_private(0, w.file.data(), 2, true));
    uint32_t out = 0;
    uint64_t done = 0;
    CHECK_OK(w.as->gup_fast(0, 1, pin(false, false), &out, &done));  // pinned, mm has pinned
    std::unique_ptr<AddressSpace> child;
    CHECK_OK(w.as->fork(&child));
    CHECK_EQ(child->translate(0).pfn, uint64_t(w.file[0]));
    CHECK(child->translate(0).page_cache);
    CHECK_EQ(w.as->stat(MmStat::kEarlyCowCopies), uint64_t(0));
    CHECK_OK(child->touch(1, 1, true));
    CHECK(child->translate(1).pfn != w.file[1]);
    CHECK_EQ(w.as->translate(1).pfn, uint64_t(w.file[1]));
    child.reset();
    CHECK_OK(w.as->unpin_user_pages(&out, 1, false, false));
    expect_all_free(w);
  }
}

TEST(anon_exclusive_off_reuses_by_mapcount_and_pins_shared_pages_as_they_are) {
  MmRules r = MmRules::mainline();
  r.anon_exclusive = false;
  World w = make_world(Scheme::kBias, r, 0);
  CHECK_OK(w.as->mmap(MmapArgs{0, 2, true, true, false}));
  const uint64_t p0 = w.as->translate(0).pfn;
  std::unique_ptr<AddressSpace> child;
  CHECK_OK(w.as->fork(&child));
  uint32_t out[2] = {0, 0};
  uint64_t done = 0;
  GupFlags get;
  get.pin = false;
  CHECK_OK(child->gup_fast(0, 1, get, out, &done));  // vmsplice(): a reference
  child.reset();  // the child exits: page 0 is mapped once, referenced twice
  CHECK_OK(w.as->touch(0, 1, true));
  CHECK_EQ(w.as->translate(0).pfn, p0);  // reused: the pipe sees the write (the 2019 leak)
  CHECK_OK(w.as->put_user_pages(out, 1));
  CHECK_OK(w.as->fork(&child));
  CHECK_OK(w.as->gup_fast(1, 1, pin(false, false), out, &done));  // R/O pin, no unshare
  CHECK_EQ(uint64_t(out[0]), child->translate(1).pfn);
  CHECK_EQ(w.as->stat(MmStat::kSlowFallbacks), uint64_t(0));
  CHECK_OK(w.as->unpin_user_pages(out, 1, false, false));
  child.reset();
  expect_all_free(w);
}

TEST(pincount_min_order_must_agree_with_a_hybrid_array) {
  for (Scheme s : kAllSchemes) {
    PageArrayConfig cfg;
    cfg.pages = 64;
    cfg.scheme = s;
    cfg.populated = false;
    std::unique_ptr<PageArray> pa;
    CHECK_OK(PageArray::create(cfg, &pa));
    std::shared_ptr<PageArray> mem(std::move(pa));
    std::unique_ptr<AddressSpace> as;
    MmRules r = MmRules::mainline();
    r.pincount_min_order = 2;
    const bool hybrid = scheme_info(s).pincount == PincountHome::kFirstTail;
    CHECK_EQ(AddressSpace::create(mem, 16, r, &as).ok(), !hybrid);
    CHECK_EQ(as != nullptr, !hybrid);
    as.reset();
    // Unstated (the two-argument create, which the engines use): the array's boundary.
    cfg.pincount_min_order = 2;
    std::unique_ptr<PageArray> pa2;
    CHECK_OK(PageArray::create(cfg, &pa2));
    std::shared_ptr<PageArray> mem2(std::move(pa2));
    CHECK_OK(AddressSpace::create(mem2, 16, &as));
    CHECK_EQ(uint32_t(as->rules().pincount_min_order), uint32_t(2));
    as.reset();
    r.pincount_min_order = 0;
    CHECK_CODE(AddressSpace::create(mem, 16, r, &as), Code::kEINVAL);
    r.pincount_min_order = 32;
    CHECK_CODE(AddressSpace::create(mem, 16, r, &as), Code::kEINVAL);
    CHECK(as == nullptr);
  }
}

TEST_TAGGED(private_file_pins_race_fork_and_truncate_balanced, "concurrency") {
  World w = make_world(Scheme::kHybrid, MmRules::mainline(), 64);
  CHECK_OK(w.as->map_private(0, w.file.data(), 64, true));
  std::atomic<bool> stop{false};
  std::thread pinner([&] {
    std::vector<uint32_t> out(64);
    for (int round = 0; round < 2000; ++round) {
      uint64_t done = 0;
      const bool longterm = (round & 1) != 0;
      if (w.as->gup_fast(0, 64, pin(false, longterm), out.data(), &done).ok() && done > 0)
        CHECK_OK(w.as->unpin_user_pages(out.data(), done, false, false));
    }
    stop.store(true, std::memory_order_release);  // release: pairs with the loop's acquire
  });
  while (!stop.load(std::memory_order_acquire)) {  // acquire: see the pinner's last unpins
    std::unique_ptr<AddressSpace> child;
    if (w.as->fork(&child).ok()) child.reset();
    (void)w.as->touch(5, 1, true);
    (void)w.as->zap_file(5, 1, true);
  }
  pinner.join();
  expect_all_free(w);
}

}  // namespace
}  // namespace pinlab::test
