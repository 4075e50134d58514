// Small helpers shared by the native tests.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "check.h"
#include "pages/page_array.h"

namespace pinlab::test {

inline std::unique_ptr<PageArray> make_array(uint64_t pages, Scheme scheme, bool debug = false,
                                             uint32_t folio_order = 0, uint32_t min_order = 1,
                                             uint32_t bias = kDefaultBias, bool populated = true) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages);
  cfg.scheme = scheme;
  cfg.debug = debug;
  cfg.folio_order = folio_order;
  cfg.pincount_min_order = min_order;
  cfg.pin_bias = bias;
  cfg.populated = populated;  // false: every page free, for the allocator
  std::unique_ptr<PageArray> pa;
  const Status st = PageArray::create(cfg, &pa);
  if (!st.ok()) fail(__FILE__, __LINE__, "create: " + describe(st));
  return pa;
}

// Every registered scheme (pages/schemes/registry.h).
inline constexpr const auto& kAllSchemes = kSchemes;

// Runs body(t) on n threads that start together (so they really overlap), and joins them.
inline void run_threads(int n, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      // acq_rel start barrier: every thread starts together, so they really overlap.
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (ready.load(std::memory_order_acquire) < n) std::this_thread::yield();
      body(t);
    });
  }
  for (auto& th : threads) th.join();
}

inline PinFlags bvec(bool write = false) { return PinFlags{write, false, false}; }
inline PinFlags per_page(bool write = false) { return PinFlags{write, true, false}; }

}  // namespace pinlab::test
