// The JS-facing PageArray: argument conversion, checked here (args.h: types, integer ranges,
// the real type of typed arrays; PFN lists copied once into memory the addon owns), whatever
// lib/ checked before; the core validates values and returns a Status, turned into a
// PinlabError here. Every method runs under guard(): std::bad_alloc is ENOMEM.
#pragma once

#include <napi.h>

#include <memory>

#include "args.h"
#include "pages/page_array.h"

namespace pinlab::addon {

class PageArrayWrap : public Napi::ObjectWrap<PageArrayWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit PageArrayWrap(const Napi::CallbackInfo& info);

  // Held by shared_ptr: address spaces over the array (and a running op batch) keep the core
  // alive past this object's dispose() or collection. The core's bytes are reported to V8
  // (napi_adjust_external_memory) from its creation until the last holder lets go of it.
  // Null once disposed (from() refuses a disposed object, so callers never see that).
  const std::shared_ptr<PageArray>& core() const { return core_; }
  bool disposed() const { return disposed_; }

  // The PageArrayWrap behind `v`, checked by its type tag (EINVAL naming `name` otherwise):
  // an object of another class, a plain object with NativePageArray's prototype, or a
  // disposed page array is refused.
  static PageArrayWrap* from(Napi::Env env, napi_value v, const char* name);

  PINLAB_DISPOSABLE_METHODS(PageArrayWrap, "this PageArray")

 private:
  // dispose(): idempotent; every later call is EINVAL. The core goes when its last holder does.
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value is_disposed(const Napi::CallbackInfo& info);
  void release() { core_.reset(); }
  void after_call() {}

  Napi::Value info_(const Napi::CallbackInfo& info);
  Napi::Value folio_head(const Napi::CallbackInfo& info);
  Napi::Value folio_order(const Napi::CallbackInfo& info);
  Napi::Value refcount(const Napi::CallbackInfo& info);
  Napi::Value pincount(const Napi::CallbackInfo& info);
  Napi::Value maybe_dma_pinned(const Napi::CallbackInfo& info);
  Napi::Value is_dirty(const Napi::CallbackInfo& info);
  Napi::Value set_dirty(const Napi::CallbackInfo& info);
  Napi::Value get_page(const Napi::CallbackInfo& info);
  Napi::Value try_get_page(const Napi::CallbackInfo& info);
  Napi::Value put_page(const Napi::CallbackInfo& info);
  Napi::Value check_put_pages(const Napi::CallbackInfo& info);
  Napi::Value make_folio(const Napi::CallbackInfo& info);
  Napi::Value split_folio(const Napi::CallbackInfo& info);
  Napi::Value pin_range(const Napi::CallbackInfo& info);
  Napi::Value pin_list(const Napi::CallbackInfo& info);
  Napi::Value unpin_range(const Napi::CallbackInfo& info);
  Napi::Value unpin_list(const Napi::CallbackInfo& info);
  Napi::Value unpin_lists(const Napi::CallbackInfo& info);
  Napi::Value bvecs_range(const Napi::CallbackInfo& info);
  Napi::Value bvecs_list(const Napi::CallbackInfo& info);
  Napi::Value count_range(const Napi::CallbackInfo& info);
  Napi::Value count_list(const Napi::CallbackInfo& info);
  Napi::Value pfn_runs_into(const Napi::CallbackInfo& info);
  Napi::Value debug_pinned_runs(const Napi::CallbackInfo& info);
  Napi::Value debug_page_pins(const Napi::CallbackInfo& info);
  Napi::Value stats(const Napi::CallbackInfo& info);
  Napi::Value alloc_folio(const Napi::CallbackInfo& info);
  Napi::Value free_pages(const Napi::CallbackInfo& info);
  Napi::Value zero_pfn(const Napi::CallbackInfo& info);
  Napi::Value huge_zero_pfn(const Napi::CallbackInfo& info);
  Napi::Value is_movable(const Napi::CallbackInfo& info);
  // hugetlb pool (hugetlb_wrap.cpp)
  Napi::Value hugetlb_set_pages(const Napi::CallbackInfo& info);
  Napi::Value hugetlb_counts(const Napi::CallbackInfo& info);
  Napi::Value hugetlb_alloc_pages(const Napi::CallbackInfo& info);

  // The checked pfn in argument 0 (ERANGE otherwise).
  uint64_t pfn_arg(const Napi::CallbackInfo& info, size_t index) const;

  std::shared_ptr<PageArray> core_;
  bool disposed_ = false;
  int depth_ = 0;  // calls in progress on this object
};

}  // namespace pinlab::addon
