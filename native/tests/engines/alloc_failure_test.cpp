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
#include "pages/freed_heads.h"

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


namespace pinlab::test {
namespace {

// n order-0 folios allocated one after another from a fresh array: consecutive PFNs.
uint64_t alloc_run(PageArray& mem, uint64_t n) {
  uint64_t first = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t h = 0;
    CHECK_OK(mem.alloc_folio(0, false, &h));
    if (i == 0) first = h;
    CHECK_EQ(h, first + i);
  }
  return first;
}

// Pins every page once, then puts the allocation's reference: each page's pin holds its last.
void pin_and_let_go(PageArray& mem, uint64_t first, uint64_t n) {
  for (uint64_t p = first; p < first + n; ++p) {
    uint64_t pinned = 0;
    CHECK_OK(mem.pin_pages(PageSet::range(p, 1), PinFlags{true, false, false}, &pinned));
    bool freed = true;
    CHECK_OK(mem.put_page(p, 1, &freed));
    CHECK(!freed);
  }
}

// Runs call with every host allocation failing: true if it was refused for memory (its
// std::bad_alloc, or ENOMEM), false if it ran.
template <typename Call>
bool refused_for_memory(Call&& call) {
  FailNew armed;
  try {
    const Status st = call();
    g_fail_new = false;
    if (st.code == Code::kENOMEM) return true;
    CHECK_OK(st);
    return false;
  } catch (const std::bad_alloc&) {
    return true;
  }
}

}  // namespace

// A multi-page unpin or put that takes folios to zero frees them after its release pass. The
// room to note them is made before the first release: with no memory for it the call changes
// nothing (no pin released, no folio lost), and a call of up to FreedHeads::kInline folios
// needs no memory at all.
TEST(unpin_and_put_calls_take_their_room_before_the_first_release) {
  if (!PINLAB_TEST_NEW) return;
  CHECK(injection_works());
  const PinFlags write{true, false, false};
  for (const Scheme s : {Scheme::kBias, Scheme::kHybrid, Scheme::kSeparate, Scheme::kWriteBias, Scheme::kSharded}) {
    for (const bool per_page : {false, true}) {
      auto mem = array_of(1024, s);
      const PinFlags flags{true, per_page, false};
      const uint64_t n = 40;
      const uint64_t first = alloc_run(*mem, n);
      pin_and_let_go(*mem, first, n);
      std::vector<int32_t> before;
      for (uint64_t p = first; p < first + n; ++p) before.push_back(mem->refcount(p));
      const uint64_t freed_before = mem->stat(Stat::kFoliosFreed);
      // A range of 40 folios: refused whole.
      CHECK(refused_for_memory([&] { return mem->unpin_pages(PageSet::range(first, n), flags); }));
      // ... and an ascending list of them.
      std::vector<uint32_t> list;
      for (uint64_t p = first; p < first + n; ++p) list.push_back(uint32_t(p));
      CHECK(refused_for_memory([&] { return mem->unpin_pages(PageSet::pfns(list.data(), n), flags); }));
      // ... and the reads and writes of both lists (the writes: the 40 pins; no reads).
      CHECK(refused_for_memory([&] { return mem->unpin_pages_both(nullptr, 0, list.data(), n); }));
      for (uint64_t p = first; p < first + n; ++p) {
        CHECK_EQ(mem->refcount(p), before[p - first]);
        CHECK(mem->maybe_dma_pinned(p));
      }
      CHECK_EQ(mem->stat(Stat::kFoliosFreed), freed_before);
      // FreedHeads::kInline folios in one call: nothing to allocate, all freed.
      const uint64_t k = FreedHeads::kInline;
      CHECK(!refused_for_memory([&] { return mem->unpin_pages(PageSet::range(first, k), write); }));
      CHECK_EQ(mem->stat(Stat::kFoliosFreed), freed_before + k);
      for (uint64_t p = first; p < first + k; ++p) CHECK_EQ(mem->refcount(p), 0);
      // The rest, with memory: all of them freed.
      CHECK_OK(mem->unpin_pages(PageSet::range(first + k, n - k), flags));
      CHECK_EQ(mem->stat(Stat::kFoliosFreed), freed_before + n);
    }
    // put_pages: the same for plain references.
    auto mem = array_of(1024, s);
    const uint64_t n = 20;
    const uint64_t first = alloc_run(*mem, n);
    std::vector<uint32_t> list;
    for (uint64_t p = first; p < first + n; ++p) list.push_back(uint32_t(p));
    CHECK(refused_for_memory([&] { return mem->put_pages(list.data(), n, -1); }));
    for (uint64_t p = first; p < first + n; ++p) CHECK_EQ(mem->refcount(p), 1);
    CHECK(!refused_for_memory([&] { return mem->put_pages(list.data(), FreedHeads::kInline, -1); }));
    CHECK_OK(mem->put_pages(list.data() + FreedHeads::kInline, n - FreedHeads::kInline, -1));
    for (uint64_t p = first; p < first + n; ++p) CHECK_EQ(mem->refcount(p), 0);
    CHECK_EQ(mem->stat(Stat::kFoliosFreed), n);
  }
}

}  // namespace pinlab::test
