// Host allocation failure where the core frees: the test binary's operator new throws
// std::bad_alloc on this thread while armed (not under ThreadSanitizer, which brings its own).
// - A hugetlb pool page's free allocates nothing: its free list has room for the whole pool,
//   also after the pool grew while some of its pages were in use.
// - The op-stream executor's inline one-page ops (run_loop's single-page unpins, puts) meet a
//   throwing free as -ENOMEM and the run goes on: nothing escapes run() (a replay thread would
//   terminate the process).
#include <cstdlib>
#include <new>
#include <vector>

#include "check.h"
#include "engines/op_executor.h"
#include "engines/op_format.h"

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
  for (uint32_t head : used) {
    bool freed = false;
    FailNew armed;
    try {
      CHECK_OK(mem->put_page(head, 1, &freed));
    } catch (const std::bad_alloc&) {
      g_fail_new = false;
      CHECK(!"a hugetlb page's free allocated");
    }
    CHECK(freed);
  }
  HugetlbCounts c;
  CHECK_OK(mem->hugetlb_counts(9, &c));
  CHECK_EQ(c.total, uint64_t(8));
  CHECK_EQ(c.free, uint64_t(8));
}

TEST(ops_executor_one_page_free_failure_is_enomem) {
  if (!PINLAB_TEST_NEW) return;
  using namespace pinlab::ops;
  for (const Scheme s : {Scheme::kBias, Scheme::kHybrid, Scheme::kSeparate}) {
    auto mem = array_of(1024, s);
    uint64_t a = 0, b = 0;
    CHECK_OK(mem->alloc_folio(0, false, &a));
    CHECK_OK(mem->alloc_folio(0, false, &b));
    // Split the zone's free blocks so that a's and b's frees insert a node (no buddy to merge).
    uint64_t spare = 0;
    for (int i = 0; i < 3; ++i) CHECK_OK(mem->alloc_folio(0, false, &spare));
    SpaceTable table;
    Executor exec(mem, &table);
    std::vector<Record> r;
    r.push_back(make_op(Op::kPin, 0, 0, 0, uint32_t(a), 1, 0, 0));
    r.push_back(make_op(Op::kPut, 0, 0, 0, uint32_t(a), 1, 0, 0));    // the pin holds it
    r.push_back(make_op(Op::kUnpin, 0, 0, 0, uint32_t(a), 1, 0, 0));  // frees: may meet ENOMEM
    r.push_back(make_op(Op::kPut, 0, 0, 0, uint32_t(b), 1, 0, 0));    // frees: may meet ENOMEM
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
    CHECK(res[2] == 1 || res[2] == -int32_t(Code::kENOMEM));
    CHECK(res[3] == 1 || res[3] == -int32_t(Code::kENOMEM));
    CHECK_EQ(res[4], -int32_t(Code::kERANGE));
    CHECK_EQ(t.ops, uint64_t(5));
  }
}

}  // namespace pinlab::test
