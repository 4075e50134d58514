// The vectorised list scans (base/scan.h): runs of consecutive ascending PFNs.
#include <cstdint>
#include <vector>

#include "base/scan.h"
#include "check.h"

namespace pinlab::test {
namespace {

TEST(pfn_run_scans_agree_at_every_length_and_at_the_top_of_the_pfn_space) {
  // Runs of every length 1..300 (the 16-entry probe, 64-entry blocks and the tail block), at
  // offsets 0..3 in the list, between breaking neighbours.
  for (uint32_t len = 1; len <= 300; ++len) {
    for (uint32_t off = 0; off < 4; ++off) {
      std::vector<uint32_t> list;
      for (uint32_t k = 0; k < off; ++k) list.push_back(1000 + 7 * k);  // runs of one
      for (uint32_t k = 0; k < len; ++k) list.push_back(5000 + k);
      list.push_back(5000 + len + 1);  // breaks the run
      CHECK_EQ(ascending_run(list.data() + off, len + 1), uint64_t(len));
      CHECK_EQ(ascending_run(list.data() + off, len), uint64_t(len));  // run to the end
      CHECK_EQ(count_ascending_runs(list.data(), list.size()), uint64_t(off) + 2);
    }
  }
  CHECK_EQ(count_ascending_runs(nullptr, 0), uint64_t(0));
  const uint32_t one = 7;
  CHECK_EQ(count_ascending_runs(&one, 1), uint64_t(1));
  CHECK_EQ(ascending_run(&one, 1), uint64_t(1));
  // The largest PFNs: the two scans must agree with each other (write_pfn_runs relies on it).
  const uint32_t top[] = {UINT32_MAX - 1, UINT32_MAX, 0, 1, UINT32_MAX};
  uint64_t written = 0;
  for (uint64_t i = 0; i < 5; i += ascending_run(top + i, 5 - i)) ++written;
  CHECK_EQ(written, count_ascending_runs(top, 5));
}

}  // namespace
}  // namespace pinlab::test
