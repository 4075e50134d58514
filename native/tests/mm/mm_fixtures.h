// The mm tests' address space over a fresh page array (every page free), in one place.
#pragma once

#include <memory>

#include "fixtures.h"
#include "mm/address_space.h"

namespace pinlab::test {

struct Mm {
  std::shared_ptr<PageArray> mem;
  std::unique_ptr<AddressSpace> as;
};

// What make_test_mm builds; the defaults are the mm tests' usual world.
struct MmShape {
  uint64_t pages = 8192;
  uint64_t vpages = 4096;
  bool debug = true;
  MmRules rules = MmRules::mainline();
  int64_t thp_orders = kPmdThpOrders;
  int64_t swap_pages = AddressSpace::kDefaultSwap;
  uint64_t movable = 0;  // ZONE_MOVABLE pages (the array's last)
};

// The array counts hybrid's pincounts from the rules' boundary (create checks they agree).
inline Mm make_test_mm(Scheme scheme, const MmShape& shape = {}) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(shape.pages);
  cfg.scheme = scheme;
  cfg.debug = shape.debug;
  cfg.populated = false;  // every page free, for the allocator
  cfg.movable_pages = int64_t(shape.movable);
  cfg.pincount_min_order = shape.rules.pincount_min_order;
  std::unique_ptr<PageArray> pa;
  if (const Status st = PageArray::create(cfg, &pa); !st.ok()) fail(__FILE__, __LINE__, "array: " + describe(st));
  Mm mm{std::shared_ptr<PageArray>(std::move(pa)), nullptr};
  const Status st = AddressSpace::create(mm.mem, int64_t(shape.vpages), shape.rules,
                                         shape.thp_orders, shape.swap_pages, &mm.as);
  if (!st.ok()) fail(__FILE__, __LINE__, "create: " + describe(st));
  return mm;
}

}  // namespace pinlab::test
