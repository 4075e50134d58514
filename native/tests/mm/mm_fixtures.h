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
};

inline Mm make_test_mm(Scheme scheme, const MmShape& shape = {}) {
  Mm mm{std::shared_ptr<PageArray>(make_array(shape.pages, scheme, shape.debug, 0, 1,
                                              kDefaultBias, /*populated=*/false)),
        nullptr};
  const Status st = AddressSpace::create(mm.mem, int64_t(shape.vpages), shape.rules,
                                         shape.thp_orders, shape.swap_pages, &mm.as);
  if (!st.ok()) fail(__FILE__, __LINE__, "create: " + describe(st));
  return mm;
}

}  // namespace pinlab::test
