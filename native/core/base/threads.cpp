#include "base/threads.h"

#include <ctime>

namespace pinlab {

namespace {
std::atomic<int64_t> g_starts_left{-1};  // < 0: no limit
}  // namespace

void set_thread_start_limit_for_testing(int64_t n) {
  g_starts_left.store(n < 0 ? -1 : n, std::memory_order_relaxed);
}

bool thread_start_refused_for_testing() {
  int64_t left = g_starts_left.load(std::memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) return true;
    if (g_starts_left.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) return false;
  }
  return false;
}

double thread_cpu_seconds() noexcept {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

}  // namespace pinlab
