// Mapped references (PageArray::mapped_refs): the part of a folio's refcount that page-table
// entries hold, kept by the mm layer through faults, COW, fork, migration, compaction, PMD
// splits, shared mappings, zap and munmap, and checked against the page tables themselves.
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {
namespace {

std::shared_ptr<PageArray> make_memory(Scheme scheme, uint64_t pages) {
  return std::shared_ptr<PageArray>(make_array(pages, scheme, /*debug=*/true, 0, 1, kDefaultBias,
                                               /*populated=*/false));
}

std::unique_ptr<AddressSpace> make_as(const std::shared_ptr<PageArray>& mem, uint64_t vpages) {
  std::unique_ptr<AddressSpace> as;
  Status st = AddressSpace::create(mem, int64_t(vpages), &as);
  if (!st.ok()) fail(__FILE__, __LINE__, describe(st));
  return as;
}

// Every folio's mapped references equal the entries that map its pages in `spaces` (a PMD
// leaf's 512 subpages count one each, as its 512 references do), and no folio counts more.
void check_mapped_refs(const PageArray& mem, std::initializer_list<const AddressSpace*> spaces,
                       const char* file, int line) {
  std::map<uint64_t, int64_t> expected;
  for (const AddressSpace* as : spaces) {
    for (uint64_t v = 0; v < as->pages(); ++v) {
      const Translation tr = as->translate(v);
      // A PMD leaf holds one mapped reference for its 512 pages; a PTE one for its page.
      if (tr.present && !tr.special && (!tr.huge || v % kPtesPerTable == 0))
        ++expected[mem.folio_head(tr.pfn)];
    }
  }
  for (uint64_t p = 0; p < mem.pages(); ++p) {
    if (mem.folio_head(p) != p) continue;
    const auto it = expected.find(p);
    const int64_t want = it == expected.end() ? 0 : it->second;
    if (mem.mapped_refs(p) != want) {
      fail(file, line, "folio " + std::to_string(p) + ": mapped refs " +
                           std::to_string(mem.mapped_refs(p)) + ", entries " +
                           std::to_string(want));
      return;
    }
    if (mem.refcount(p) < want) {
      fail(file, line, "folio " + std::to_string(p) + ": refcount below its mapped refs");
      return;
    }
  }
}
#define CHECK_MAPPED(mem, ...) check_mapped_refs(mem, {__VA_ARGS__}, __FILE__, __LINE__)

TEST(mapped_refs_follow_faults_cow_fork_migration_splits_and_unmaps) {
  for (Scheme s : kAllSchemes) {
    auto mem = make_memory(s, 4096);
    auto as = make_as(mem, 2048);
    CHECK_OK(as->mmap(MmapArgs{0, 512, true, true, true}));  // a PMD leaf: one
    CHECK_OK(as->mmap(MmapArgs{512, 16, true, true, false}));
    CHECK_OK(as->mmap(MmapArgs{600, 4, true, false, false}));
    CHECK_OK(as->touch(600, 4, false));  // the zero page: never counted
    CHECK_EQ(mem->mapped_refs(as->translate(0).pfn), int64_t(1));
    CHECK_EQ(mem->mapped_refs(as->translate(512).pfn), int64_t(1));
    CHECK_EQ(mem->mapped_refs(as->translate(600).pfn), int64_t(0));
    CHECK_MAPPED(*mem, as.get());
    std::vector<uint32_t> out(1);
    uint64_t done = 0;
    CHECK_OK(as->gup_fast(515, 1, GupFlags{true, true, false, false}, out.data(), &done));
    std::unique_ptr<AddressSpace> child, grandchild;
    CHECK_OK(as->fork(&child));  // shares all but the pinned page (early COW)
    CHECK_EQ(mem->mapped_refs(as->translate(0).pfn), int64_t(2));  // two leaves
    CHECK_EQ(mem->mapped_refs(as->translate(512).pfn), int64_t(2));
    CHECK_EQ(mem->mapped_refs(as->translate(515).pfn), int64_t(1));
    CHECK_OK(child->fork(&grandchild));  // three mappings of a small page: the overflow table
    CHECK_EQ(mem->mapped_refs(as->translate(512).pfn), int64_t(3));
    CHECK_MAPPED(*mem, as.get(), child.get(), grandchild.get());
    CHECK_OK(as->touch(512, 2, true));     // COW copies: the shared page loses one
    CHECK_OK(child->touch(100, 1, true));  // a THP COW splits the child's leaf, copies 4 KiB
    CHECK_OK(as->mprotect(256, 8, false)); // splits the parent's leaf
    CHECK_MAPPED(*mem, as.get(), child.get(), grandchild.get());
    grandchild.reset();
    CHECK_MAPPED(*mem, as.get(), child.get());
    uint64_t moved = 0;
    CHECK_OK(as->migrate(512, 16, &moved));
    CHECK(moved > 0);
    CHECK_OK(child->compact(&moved));
    CHECK_MAPPED(*mem, as.get(), child.get());
    CHECK_OK(as->zap(300, 20));
    CHECK_OK(child->munmap(0, 256));
    CHECK_MAPPED(*mem, as.get(), child.get());
    child.reset();
    CHECK_OK(as->unpin_user_pages(out.data(), done, true, false));
    CHECK_MAPPED(*mem, as.get());
    as.reset();
    for (uint64_t p = 0; p < mem->pages(); ++p) CHECK_EQ(mem->mapped_refs(p), int64_t(0));
    CHECK_EQ(mem->free_pages(), mem->pages() - 1);  // the zero page stays
  }
}

TEST(mapped_refs_of_shared_mappings_and_a_large_page_cache_folio) {
  auto mem = make_memory(Scheme::kHybrid, 1024);
  auto a = make_as(mem, 1024), b = make_as(mem, 1024);
  uint64_t head = 0;
  CHECK_OK(mem->alloc_folio(2, false, &head));  // the file's reference
  const uint32_t file[] = {uint32_t(head), uint32_t(head + 1), uint32_t(head + 2),
                           uint32_t(head + 3)};
  CHECK_OK(a->map_shared(0, file, 4, true));
  CHECK_OK(b->map_shared(10, file + 1, 2, false));
  CHECK_EQ(mem->mapped_refs(head + 3), int64_t(6));
  CHECK_EQ(mem->refcount(head), 7);
  CHECK_MAPPED(*mem, a.get(), b.get());
  CHECK_CODE(mem->split_folio(head), Code::kEBUSY);
  bool freed = false;
  CHECK_CODE(mem->put_page(head, 2, &freed), Code::kEBUSY);  // one of them is a mapping's
  CHECK_OK(a->zap(1, 2));
  CHECK_MAPPED(*mem, a.get(), b.get());
  // A map_shared that fails part way takes nothing: the mapped refs are given back too.
  uint64_t gone = 0;
  CHECK_OK(mem->alloc_folio(0, false, &gone));
  CHECK_OK(mem->put_page(gone, 1, &freed));
  const uint32_t bad[] = {uint32_t(head), uint32_t(gone)};
  CHECK_CODE(b->map_shared(100, bad, 2, true), Code::kEFREE);
  CHECK_MAPPED(*mem, a.get(), b.get());
  a.reset();
  b.reset();
  CHECK_EQ(mem->mapped_refs(head), int64_t(0));
  CHECK_OK(mem->split_folio(head));  // the file's alone now: unmapped, idle
}

TEST(a_folio_mapped_by_a_pmd_is_never_split_or_freed_by_a_put) {
  auto mem = make_memory(Scheme::kSeparate, 2048);
  auto as = make_as(mem, 1024);
  CHECK_OK(as->mmap(MmapArgs{0, 512, true, true, true}));
  const uint64_t head = as->translate(0).pfn;
  CHECK_OK(mem->get_page(head, 1));  // the caller's own reference: 2 (the leaf holds 1)
  bool freed = false;
  CHECK_CODE(mem->put_page(head + 9, 2, &freed), Code::kEBUSY);  // only one is the caller's
  CHECK_OK(mem->put_page(head + 9, 1, &freed));
  const Status st = mem->split_folio(head);
  CHECK_CODE(st, Code::kEBUSY);
  CHECK(st.reason == Reason::kFolioMapped);
  CHECK_CODE(mem->make_folio(head, 9), Code::kEBUSY);
  CHECK_EQ(mem->refcount(head), 1);  // the leaf's one reference
  CHECK(as->translate(511).huge);
  as.reset();
  CHECK_EQ(mem->free_pages(), mem->pages());
}

// Several address spaces over one page array change the same folios' mapped refs at once
// (fork shares, COW and munmap drop, migration moves) while a getter takes and puts FOLL_GET
// references of those pages: the put guard never refuses the getter's own puts, and at the
// end every count is back to zero.
TEST_TAGGED(mapped_refs_stay_exact_under_concurrent_forks_cow_and_puts, "concurrency") {
  for (Scheme s : {Scheme::kBias, Scheme::kHybrid}) {
    auto mem = make_memory(s, 8192);
    auto parent = make_as(mem, 2048);
    CHECK_OK(parent->mmap(MmapArgs{0, 512, true, true, true}));
    CHECK_OK(parent->mmap(MmapArgs{512, 64, true, true, false}));
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> bad{0}, gets{0};
    std::thread getter([&] {
      std::vector<uint32_t> out(64);
      GupFlags f;
      f.pin = false;
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed) || gets.load() < 200; ++i) {
        const int64_t start = (i % 2) ? 500 : 512;
        uint64_t done = 0;
        if (!parent->gup_fast(start, 40, f, out.data(), &done).ok()) continue;
        if (!parent->put_user_pages(out.data(), done).ok()) ++bad;
        gets.fetch_add(1, std::memory_order_relaxed);
      }
    });
    std::vector<std::thread> forkers;
    for (int t = 0; t < 2; ++t) {
      forkers.emplace_back([&, t] {
        std::mt19937 rng(uint32_t(t) + 11);
        for (int round = 0; round < 60; ++round) {
          std::unique_ptr<AddressSpace> child;
          if (!parent->fork(&child).ok()) {
            ++bad;
            continue;
          }
          if (!child->touch(512 + int64_t(rng() % 64), 1, true).ok()) ++bad;
          if (!child->touch(404 + int64_t(rng() % 108), 1, true).ok()) ++bad;  // never mprotected
          uint64_t moved = 0;
          if (!child->migrate(512, 64, &moved).ok()) ++bad;
          if (!child->munmap(int64_t(rng() % 500), 3).ok()) ++bad;
        }
      });
    }
    for (int round = 0; round < 60; ++round) {
      if (!parent->touch(512 + round % 64, 1, true).ok()) ++bad;
      if (!parent->mprotect(round % 400, 4, round % 2 == 0).ok()) ++bad;
    }
    for (auto& t : forkers) t.join();
    stop = true;
    getter.join();
    CHECK_EQ(bad.load(), uint64_t(0));
    CHECK_MAPPED(*mem, parent.get());
    parent.reset();
    for (uint64_t p = 0; p < mem->pages(); ++p) {
      if (mem->mapped_refs(p) != 0) {
        CHECK_EQ(mem->mapped_refs(p), int64_t(0));
        break;
      }
    }
    CHECK_EQ(mem->free_pages(), mem->pages());
  }
}

}  // namespace
}  // namespace pinlab::test
