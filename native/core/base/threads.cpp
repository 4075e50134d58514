#include "base/threads.h"

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

}  // namespace pinlab
