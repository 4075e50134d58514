// The hugetlb methods of the JS-facing PageArray and AddressSpace (pages/hugetlb_pool.h,
// mm/hugetlb.cpp): arguments checked here (args.h), values by the core.
#include <cstring>
#include <vector>

#include "address_space_wrap.h"
#include "errors.h"
#include "page_array_wrap.h"

namespace pinlab::addon {

// hugetlbSetPages(order, count): nr_hugepages of one size.
Napi::Value PageArrayWrap::hugetlb_set_pages(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->hugetlb_set_pages(int_arg(info, 0, "order"), int_arg(info, 1, "count")));
  return info.Env().Undefined();
}

// hugetlbCounts(order) -> { total, free, reserved }
Napi::Value PageArrayWrap::hugetlb_counts(const Napi::CallbackInfo& info) {
  HugetlbCounts c;
  check(info.Env(), core_->hugetlb_counts(int_arg(info, 0, "order"), &c));
  auto o = Napi::Object::New(info.Env());
  o.Set("total", double(c.total));
  o.Set("free", double(c.free));
  o.Set("reserved", double(c.reserved));
  return o;
}

// hugetlbAllocPages(order, count) -> Uint32Array of heads (a hugetlb file's pages).
Napi::Value PageArrayWrap::hugetlb_alloc_pages(const Napi::CallbackInfo& info) {
  std::vector<uint32_t> heads;
  check(info.Env(), core_->hugetlb_alloc_pages(int_arg(info, 0, "order"), int_arg(info, 1, "count"), &heads));
  auto out = Napi::Uint32Array::New(info.Env(), heads.size());
  if (!heads.empty()) std::memcpy(out.Data(), heads.data(), heads.size() * sizeof(uint32_t));
  return out;
}

// mmapHugetlb(start, count, order, write, populate, shared)
Napi::Value AddressSpaceWrap::mmap_hugetlb(const Napi::CallbackInfo& info) {
  HugetlbMmapArgs a;
  a.start = int_arg(info, 0, "start");
  a.count = int_arg(info, 1, "count");
  a.order = int_arg(info, 2, "hugetlb");
  a.write = bool_arg(info, 3, "write");
  a.populate = bool_arg(info, 4, "populate");
  a.shared = bool_arg(info, 5, "shared");
  check(info.Env(), core_->mmap_hugetlb(a));
  return info.Env().Undefined();
}

// mapHugetlbFile(start, heads: Uint32Array, order, write, shared): the list is copied first.
Napi::Value AddressSpaceWrap::map_hugetlb_file(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start");
  const PfnList heads(info, 1, "heads");
  const int64_t order = int_arg(info, 2, "hugetlb");
  const bool write = bool_arg(info, 3, "write");
  const bool shared = bool_arg(info, 4, "shared");
  check(info.Env(), core_->map_hugetlb_file(start, heads.data(), heads.size(), order, write, shared));
  return info.Env().Undefined();
}

}  // namespace pinlab::addon
