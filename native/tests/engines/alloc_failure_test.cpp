// Host allocation failure where the core frees: the test binary's operator new throws
// std::bad_alloc on this thread while armed (not under ThreadSanitizer, which brings its own).
// - A hugetlb pool page's free allocates nothing: its free list has room for the whole pool,
//   also after the pool grew while some of its pages were in use.
// - A buddy allocator's give (its merges included) and a page-array folio freed by its last
//   put allocate nothing: the zones' bitmaps are mapped when the zone is made.
// - The op-stream executor's inline one-page ops (run_loop's single-page unpins, puts) free
//   without allocating, and nothing escapes run() (a replay thread would terminate the process).
#include <cstdlib>
#include <new>
#include <vector>

#include "check.h"
#include "engines/op_executor.h"
#include "engines/op_format.h"
#include "pages/buddy_allocator.h"

#if defined(__SANITIZE_THREAD__)
#define PINLAB_TEST_NEW 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PINLAB_TEST_NEW 0
#endif
#endif
#ifndef PINLAB_TEST_NEW
#define PINLAB_TEST_NEW 1
#endif

namespace pinlab::test {
namespace {
thread_local bool g_fail_new = false;
// Arms the failure for its scope (this thread only).
struct FailNew {
  FailNew() { g_fail_new = true; }
  ~FailNew() { g_fail_new = false; }
};
}  // namespace
}  // namespace pinlab::test

#if PINLAB_TEST_NEW
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // our new is malloc: free matches it
#endif
void* operator new(std::size_t n) {
  if (pinlab::test::g_fail_new) throw std::bad_alloc();
  if (void* p = std::malloc(n != 0 ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace pinlab::test {

namespace {

std::shared_ptr<PageArray> array_of(uint64_t pages, Scheme s) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages);
  cfg.scheme = s;
  cfg.populated = false;
  std::unique_ptr<PageArray> pa;
  CHECK_OK(PageArray::create(cfg, &pa));
  return std::shared_ptr<PageArray>(std::move(pa));
}

// operator new is ours: armed, it throws.
bool injection_works() {
  FailNew armed;
  try {
    std::vector<int> v(64);
    (void)v;
  } catch (const std::bad_alloc&) {
    return true;
  }
  return false;
}

// The last put of `head` while every host allocation fails: it must free the folio, whole.
void put_last_ref_allocating_nothing(PageArray& mem, uint64_t head, const char* what) {
  bool freed = false;
  FailNew armed;
  try {
    CHECK_OK(mem.put_page(head, 1, &freed));
  } catch (const std::bad_alloc&) {
    g_fail_new = false;
    fail(__FILE__, __LINE__, what);
  }
  CHECK(freed);
}

}  // namespace

TEST(hugetlb_pool_page_free_allocates_nothing) {
  if (!PINLAB_TEST_NEW) return;
  CHECK(injection_works());
  auto mem = array_of(uint64_t{1} << 13, Scheme::kHybrid);
  // A pool of 4, all in use; then 4 more (the free list held 0 when it grew).
  CHECK_OK(mem->hugetlb_set_pages(9, 4));
  std::vector<uint32_t> used;
  CHECK_OK(mem->hugetlb_alloc_pages(9, 4, &used));
  CHECK_OK(mem->hugetlb_set_pages(9, 8));
  // The 4 in use come back while every host allocation fails: each free is whole.
  for (uint32_t head : used) put_last_ref_allocating_nothing(*mem, head, "a hugetlb page's free allocated");
  HugetlbCounts c;
  CHECK_OK(mem->hugetlb_counts(9, &c));
  CHECK_EQ(c.total, uint64_t(8));
  CHECK_EQ(c.free, uint64_t(8));
}

TEST(ops_executor_one_page_free_allocates_nothing) {
  if (!PINLAB_TEST_NEW) return;
  using namespace pinlab::ops;
  for (const Scheme s : {Scheme::kBias, Scheme::kHybrid, Scheme::kSeparate}) {
    auto mem = array_of(1024, s);
    uint64_t a = 0, b = 0;
    CHECK_OK(mem->alloc_folio(0, false, &a));
    CHECK_OK(mem->alloc_folio(0, false, &b));
    // Split the zone's free blocks so that a's and b's frees have no buddy to merge with.
    uint64_t spare = 0;
    for (int i = 0; i < 3; ++i) CHECK_OK(mem->alloc_folio(0, false, &spare));
    SpaceTable table;
    Executor exec(mem, &table);
    std::vector<Record> r;
    r.push_back(make_op(Op::kPin, 0, 0, 0, uint32_t(a), 1, 0, 0));
    r.push_back(make_op(Op::kPut, 0, 0, 0, uint32_t(a), 1, 0, 0));    // the pin holds it
    r.push_back(make_op(Op::kUnpin, 0, 0, 0, uint32_t(a), 1, 0, 0));  // frees
    r.push_back(make_op(Op::kPut, 0, 0, 0, uint32_t(b), 1, 0, 0));    // frees
    r.push_back(make_op(Op::kGet, 0, 0, 0, 5000, 1, 0, 0));           // ERANGE: the run went on
    std::vector<int32_t> res(r.size());
    Tally t;
    RunOptions o;
    bool escaped = false;
    {
      FailNew armed;
      try {
        exec.run(r.data(), r.size(), o, res.data(), &t);
      } catch (const std::bad_alloc&) {
        escaped = true;
      }
    }
    CHECK(!escaped);
    CHECK_EQ(res[0], 1);
    CHECK_EQ(res[1], 0);
    CHECK_EQ(res[2], 1);  // a free allocates nothing: no ENOMEM
    CHECK_EQ(res[3], 1);
    CHECK_EQ(res[4], -int32_t(Code::kERANGE));
    CHECK_EQ(t.ops, uint64_t(5));
  }
}

TEST(buddy_allocator_free_allocates_nothing) {
  if (!PINLAB_TEST_NEW) return;
  CHECK(injection_works());
  BuddyAllocator z(0, 1024);
  z.add_whole_zone();
  // Blocks of several orders, lowest first: 0 (order 0), 1 (order 0), 2..3 (order 1),
  // 4..7 (order 2), 512..1023 (order 9; 8..511 stay free in pieces).
  std::vector<std::pair<uint64_t, uint32_t>> taken;
  for (const uint32_t order : {0u, 0u, 1u, 2u, 9u}) {
    uint64_t h = 0;
    CHECK(z.try_take(order, &h));
    taken.emplace_back(h, order);
  }
  CHECK_EQ(z.free_pages(), uint64_t(1024 - 520));
  auto give_armed = [&](uint64_t head, uint32_t order) {
    FailNew armed;
    try {
      z.give(head, order);
    } catch (const std::bad_alloc&) {
      g_fail_new = false;
      CHECK(!"a give allocated");
    }
  };
  auto blocks = [&] {
    std::vector<std::pair<uint64_t, uint32_t>> out;  // (unarmed: the listing's vector allocates)
    z.for_each_free_block([&](uint64_t h, uint32_t k) { out.emplace_back(h, k); });
    return out;
  };
  // 1 alone (its buddy 0 is taken): a new free block, no merge.
  give_armed(1, 0);
  CHECK(blocks().front() == std::make_pair(uint64_t(1), 0u));
  // 512 has no free buddy either; 0 then merges with 1 only (2 and 4 are still taken), and
  // the gives of 2 and 4 merge the block up with the free blocks above it.
  give_armed(512, 9);
  give_armed(0, 0);
  CHECK_EQ(z.free_pages(), uint64_t(1024 - 6));
  give_armed(2, 1);
  give_armed(4, 2);
  CHECK_EQ(z.free_pages(), uint64_t(1024));
  const auto whole = blocks();
  CHECK(whole.size() == 1 && whole[0] == std::make_pair(uint64_t(0), 10u));
}

TEST(page_array_folio_free_allocates_nothing) {
  if (!PINLAB_TEST_NEW) return;
  CHECK(injection_works());
  for (const Scheme s : {Scheme::kBias, Scheme::kHybrid, Scheme::kSeparate}) {
    auto mem = array_of(uint64_t{1} << 13, s);
    std::vector<uint64_t> heads;
    for (const int64_t order : {0, 0, 3, 9, 0}) {
      uint64_t h = 0;
      CHECK_OK(mem->alloc_folio(order, false, &h));
      heads.push_back(h);
    }
    CHECK(mem->free_pages() < (uint64_t{1} << 13));
    // Each last put frees its folio while every host allocation fails.
    for (const uint64_t head : heads) put_last_ref_allocating_nothing(*mem, head, "a folio's free allocated");
    CHECK_EQ(mem->free_pages(), uint64_t{1} << 13);
    for (const uint64_t head : heads) CHECK_EQ(mem->refcount(head), 0);
    uint64_t whole = 0;  // merged back: the zone is one block again
    CHECK_OK(mem->alloc_folio(13, false, &whole));
    CHECK_EQ(whole, uint64_t(0));
  }
}

}  // namespace pinlab::test

