// The page allocator (pages/allocator.cpp, pages/buddy_allocator.h): aligned blocks out of the
// zones, merged back when their folios are freed.
#include "fixtures.h"

namespace pinlab::test {
namespace {

TEST(allocator_hands_out_aligned_blocks_and_merges_them_back) {
  auto pa = make_array(1024, Scheme::kHybrid, false, 0, 1, kDefaultBias, /*populated=*/false);
  PageArray& mem = *pa;
  CHECK_EQ(mem.free_pages(), uint64_t(1024));
  uint64_t a = 0, b = 0, big = 0;
  CHECK(mem.alloc_folio(0, false, &a).ok());
  CHECK(mem.alloc_folio(9, false, &b).ok());
  CHECK_EQ(b % 512, uint64_t(0));
  CHECK_EQ(mem.refcount(b + 7), 1);
  CHECK_EQ(mem.folio_order(b + 7), uint32_t(9));
  CHECK(mem.alloc_folio(10, false, &big).code == Code::kENOMEM);
  bool freed = false;
  CHECK(mem.put_page(a, 1, &freed).ok());
  CHECK(freed);
  CHECK(mem.put_page(b, 1, &freed).ok());
  CHECK_EQ(mem.free_pages(), uint64_t(1024));
  CHECK(mem.alloc_folio(10, false, &big).ok());  // merged back into one block
  CHECK_EQ(big, uint64_t(0));
}

}  // namespace
}  // namespace pinlab::test
