// Branch-free scans over PFN lists, the only per-entry work the bvec path does on a list:
// range validation, run detection, and finding the zero page (and pfnRuns' run splitting). They vectorise; on x86-64
// they are also compiled for AVX2 and picked at load time (function multiversioning).
#pragma once

#include <cstdint>

namespace pinlab {

// Whether any of p[0..n) is >= limit.
bool any_at_least(const uint32_t* p, uint64_t n, uint32_t limit);
// Whether any of p[0..n) equals value.
bool any_equal(const uint32_t* p, uint64_t n, uint32_t value);
// How many entries from p[0] read first, first+1, ... (at most limit; p[0] == first).
uint64_t consecutive_run(const uint32_t* p, uint64_t limit, uint32_t first);
// How many maximal runs of consecutive ascending values p[0..n) holds (0 for n = 0): one
// more than the entries that do not continue the one before.
uint64_t count_ascending_runs(const uint32_t* p, uint64_t n);
// The length of the run of consecutive ascending values from p[0] (1..n; n >= 1).
uint64_t ascending_run(const uint32_t* p, uint64_t n);
// Whether any of p[0..n) equals value or lies in [lo, lo + span) (span 0: no range): the zero
// page and the huge zero folio's 512 subpages in one pass.
bool any_equal_or_in(const uint32_t* p, uint64_t n, uint32_t value, uint32_t lo, uint32_t span);

}  // namespace pinlab
