#include "base/scan.h"

// Function multiversioning: an AVX2 clone and the baseline, resolved once at load time.
// Not under ThreadSanitizer (its runtime and ifunc resolvers do not mix well) nor off x86-64.
#if defined(__SANITIZE_THREAD__)
#define PINLAB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PINLAB_TSAN 1
#endif
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(PINLAB_TSAN)
#define PINLAB_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PINLAB_SIMD_CLONES
#endif

namespace pinlab {

PINLAB_SIMD_CLONES bool any_at_least(const uint32_t* p, uint64_t n, uint32_t limit) {
  uint32_t any = 0;
  for (uint64_t i = 0; i < n; ++i) any |= uint32_t(p[i] >= limit);
  return any != 0;
}

PINLAB_SIMD_CLONES bool any_equal(const uint32_t* p, uint64_t n, uint32_t value) {
  uint32_t any = 0;
  for (uint64_t i = 0; i < n; ++i) any |= uint32_t(p[i] == value);
  return any != 0;
}

PINLAB_SIMD_CLONES bool any_equal_or_in(const uint32_t* p, uint64_t n, uint32_t value,
                                        uint32_t lo, uint32_t span) {
  uint32_t any = 0;  // unsigned wrap: p[i] - lo < span iff lo <= p[i] < lo + span
  for (uint64_t i = 0; i < n; ++i) any |= uint32_t(p[i] == value) | uint32_t(p[i] - lo < span);
  return any != 0;
}

namespace {
// Whether p[from..from+64) reads first+from, first+from+1, ... (an OR of XORs: vectorised).
inline bool block_matches(const uint32_t* p, uint64_t from, uint32_t first) {
  uint32_t diff = 0;
  for (uint64_t k = 0; k < 64; ++k) diff |= p[from + k] ^ (first + uint32_t(from + k));
  return diff == 0;
}
}  // namespace

PINLAB_SIMD_CLONES uint64_t consecutive_run(const uint32_t* p, uint64_t limit, uint32_t first) {
  // Whole blocks of 64 from the start (a 2 MiB folio is 8 of them), then one block ending at
  // the limit (overlapping what matched already), and only then entry by entry.
  uint64_t n = 0;
  while (n + 64 <= limit && block_matches(p, n, first)) n += 64;
  if (n == limit) return n;
  if (n + 64 > limit && limit >= 64 && block_matches(p, limit - 64, first)) return limit;
  while (n < limit && p[n] == first + uint32_t(n)) ++n;
  return n;
}

PINLAB_SIMD_CLONES uint64_t count_ascending_runs(const uint32_t* p, uint64_t n) {
  if (n == 0) return 0;
  uint64_t breaks = 0;
  for (uint64_t i = 1; i < n; ++i) breaks += uint64_t(p[i] != p[i - 1] + 1);
  return breaks + 1;
}

uint64_t ascending_run(const uint32_t* p, uint64_t n) {
  // A few entries one by one (a scattered list's runs are short: no block scan wasted on
  // them), then whole blocks for a long run: O(run length) either way.
  constexpr uint64_t kProbe = 16;
  uint64_t k = 1;
  while (k < n && k < kProbe && p[k] == p[0] + uint32_t(k)) ++k;
  if (k < kProbe || k == n) return k;
  return k + consecutive_run(p + k, n - k, p[0] + uint32_t(k));
}

}  // namespace pinlab
