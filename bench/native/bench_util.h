// Small helpers for the native benchmark: optimisation barriers, a steady clock, robust
// summaries of repeated trials, and loud failure. No third-party benchmark framework.
#pragma once

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

namespace pinlab::bench {

// Forces `value` to be materialised (in a register or memory) at this point, and tells the
// compiler that any memory may have been read or written: loads and atomics cannot be moved
// across it, merged with their neighbours, or deleted. (The DoNotOptimize idiom.)
template <typename T>
inline void do_not_optimize(T& value) {
  if constexpr (sizeof(T) <= sizeof(void*) && std::is_trivially_copyable_v<T>)
    asm volatile("" : "+r"(value) : : "memory");
  else
    asm volatile("" : "+m"(value) : : "memory");
}
// A compiler-only full memory barrier: emits no instruction.
inline void clobber_memory() { asm volatile("" : : : "memory"); }

using Clock = std::chrono::steady_clock;
static_assert(Clock::is_steady, "benchmark timing needs a monotonic clock");

inline double elapsed_ns(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::nano>(to - from).count();
}

// Prints a message and exits with status 2: a benchmark whose work failed must not print
// figures as if it had measured something.
[[noreturn]] inline void die(const char* fmt, ...) {
  std::fflush(stdout);
  std::fputs("pinlab_bench: FATAL: ", stderr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::exit(2);
}

// A whole, non-negative decimal or 0x number with nothing after it; false otherwise (a
// minus sign too: strtoull would wrap it).
inline bool parse_u64_value(const char* v, uint64_t* out) {
  if (v == nullptr || v[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v, &end, 0);
  if (errno != 0 || end == v || *end != '\0') return false;
  *out = x;
  return true;
}

// Median, quartiles and extremes of a set of trial results (linear interpolation between
// order statistics, as numpy's default).
struct Summary {
  double median = 0, min = 0, max = 0, q1 = 0, q3 = 0;
  size_t n = 0;
};

inline double quantile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = pos - double(lo);
  return v[lo] + (v[hi] - v[lo]) * frac;
}

inline Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = quantile_sorted(v, 0.5);
  s.q1 = quantile_sorted(v, 0.25);
  s.q3 = quantile_sorted(v, 0.75);
  return s;
}

inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// A figure with 3 or 4 significant digits, for tables of nanoseconds.
inline std::string num(double x) {
  if (x >= 1000) return fmt("%.0f", x);
  if (x >= 100) return fmt("%.1f", x);
  if (x >= 10) return fmt("%.2f", x);
  if (x >= 1) return fmt("%.3f", x);
  return fmt("%.4f", x);
}

inline std::string json_summary(const Summary& s) {
  return fmt("{\"median\":%.6g,\"min\":%.6g,\"max\":%.6g,\"q1\":%.6g,\"q3\":%.6g,\"n\":%zu}",
             s.median, s.min, s.max, s.q1, s.q3, s.n);
}

}  // namespace pinlab::bench
