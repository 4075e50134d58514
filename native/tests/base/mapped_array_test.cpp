// MappedArray's mappings: huge pages only for an array of at least one (a small array in a
// 2 MiB mapping advised huge took a whole huge page at its first touch, 64 times what an
// 8192-page array's refcounts need, and far beyond the bytes reported to V8).
#include <cstdint>

#include "base/mapped_array.h"
#include "check.h"

namespace pinlab::test {
namespace {

constexpr size_t kHuge = size_t{2} << 20;

TEST(mapped_arrays_below_a_huge_page_map_in_base_pages) {
  MappedArray<int32_t> small;
  CHECK(small.allocate(8192));
  CHECK_EQ(small.bytes(), size_t{32768});
  CHECK_EQ(small.mapped_bytes(), size_t{32768});
  MappedArray<uint8_t> odd;
  CHECK(odd.allocate(5000));
  CHECK_EQ(odd.mapped_bytes(), size_t{8192});  // rounded up to 4 KiB
  CHECK_EQ(odd.data()[4999], 0);               // zero-filled
  MappedArray<uint8_t> edge;
  CHECK(edge.allocate(kHuge - 1));
  CHECK_EQ(edge.mapped_bytes(), kHuge);
}

TEST(mapped_arrays_of_a_huge_page_or_more_map_whole_huge_pages) {
  MappedArray<int32_t> big;
  CHECK(big.allocate(kHuge / 4 + 1));  // one int past 2 MiB
  CHECK_EQ(big.mapped_bytes(), 2 * kHuge);
  big.data()[kHuge / 4] = 7;
  CHECK_EQ(big.data()[kHuge / 4], 7);
  MappedArray<uint8_t> exact;
  CHECK(exact.allocate(kHuge));
  CHECK_EQ(exact.mapped_bytes(), kHuge);
  MappedArray<uint8_t> none;
  CHECK(!none.allocate(0));  // nothing to map
  CHECK(none.empty());
}

}  // namespace
}  // namespace pinlab::test
