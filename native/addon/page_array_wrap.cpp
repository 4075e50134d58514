#include "page_array_wrap.h"

#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace pinlab::addon {

namespace {

constexpr uint32_t kFlagWrite = 1, kFlagPerPage = 2, kFlagDirty = 4;
constexpr int64_t kAllFlags = kFlagWrite | kFlagPerPage | kFlagDirty;

PinFlags flags_arg(const Napi::CallbackInfo& info, size_t i) {
  const auto bits = uint32_t(int_arg(info, i, "flags", 0, kAllFlags));
  return PinFlags{(bits & kFlagWrite) != 0, (bits & kFlagPerPage) != 0, (bits & kFlagDirty) != 0};
}

// A { start, count } range from two JS integers; negative values are out of range too.
PageSet range_arg(const Napi::CallbackInfo& info, size_t i) {
  const int64_t start = int_arg(info, i, "start"), count = int_arg(info, i + 1, "count");
  if (start < 0 || count < 0)
    throw_status(info.Env(), Status::Fail(Code::kERANGE, Reason::kRangeOutOfBounds, start, count));
  return PageSet::range(uint64_t(start), uint64_t(count));
}

PageSet list_set(const PfnList& list) { return PageSet::pfns(list.data(), list.size()); }

Napi::Value bvecs_value(Napi::Env env, const std::vector<Bvec>& runs) {
  // Flattened [pfn, count, pfn, count, ...]: lib/ turns it into objects.
  auto out = new_uint32_array(env, runs.size() * 2);
  uint32_t* d = out.Data();
  for (size_t i = 0; i < runs.size(); ++i) {
    d[2 * i] = uint32_t(runs[i].pfn);
    d[2 * i + 1] = uint32_t(runs[i].count);
  }
  return out;
}

}  // namespace

Napi::Function PageArrayWrap::define(Napi::Env env) {
  return DefineClass(
      env, "NativePageArray",
      {
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::info_>>("info"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::folio_head>>("folioHead"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::folio_order>>("folioOrder"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::refcount>>("refcount"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::pincount>>("pincount"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::maybe_dma_pinned>>("maybeDmaPinned"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::is_dirty>>("isDirty"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::set_dirty>>("setDirty"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::get_page>>("getPage"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::try_get_page>>("tryGetPage"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::put_page>>("putPage"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::check_put_pages>>("checkPutPages"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::make_folio>>("makeFolio"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::split_folio>>("splitFolio"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::pin_range>>("pinRange"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::pin_list>>("pinList"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::unpin_range>>("unpinRange"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::unpin_list>>("unpinList"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::unpin_lists>>("unpinLists"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::bvecs_range>>("bvecsRange"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::bvecs_list>>("bvecsList"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::count_range>>("countMaybeDmaPinnedRange"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::count_list>>("countMaybeDmaPinnedList"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::pfn_runs_into>>("pfnRunsInto"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::debug_pinned_runs>>("debugPinnedRuns"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::debug_page_pins>>("debugPagePins"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::stats>>("stats"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::alloc_folio>>("allocFolio"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::free_pages>>("freePages"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::zero_pfn>>("zeroPfn"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::huge_zero_pfn>>("hugeZeroPfn"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::is_movable>>("isMovable"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::hugetlb_set_pages>>("hugetlbSetPages"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::hugetlb_counts>>("hugetlbCounts"),
          InstanceMethod<&PageArrayWrap::guarded<&PageArrayWrap::hugetlb_alloc_pages>>("hugetlbAllocPages"),
          InstanceMethod<&PageArrayWrap::dispose>("dispose"),
          InstanceMethod<&PageArrayWrap::is_disposed>("isDisposed"),
      });
}

// new NativePageArray({ pages, scheme, pinBias, pincountMinOrder, folioOrder, debug, populated,
// movablePages })
PageArrayWrap::PageArrayWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PageArrayWrap>(info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    auto opts = object_value(env, info[0], "PageArray options");
    PageArrayConfig cfg;
    cfg.pages = int_value(env, option(opts, "pages"), "pages");
    const std::string scheme = string_value(env, option(opts, "scheme"), "scheme");
    if (!parse_scheme(scheme.c_str(), &cfg.scheme)) throw_status(env, unknown_scheme_status());
    cfg.pin_bias = int_value(env, option(opts, "pinBias"), "pinBias");
    cfg.pincount_min_order = int_value(env, option(opts, "pincountMinOrder"), "pincountMinOrder");
    cfg.folio_order = int_value(env, option(opts, "folioOrder"), "folioOrder");
    cfg.debug = bool_value(env, option(opts, "debug"), "debug");
    cfg.populated = bool_value(env, option(opts, "populated"), "populated");
    cfg.movable_pages = int_value(env, option(opts, "movablePages"), "movablePages");
    std::unique_ptr<PageArray> pa;
    check(env, PageArray::create(cfg, &pa));
    // The per-page arrays' bytes and the zones' free-block bitmaps, reported to V8 while the
    // core lives: so that dropping page arrays in a loop lets the GC see what they hold. The
    // deleter runs on the JS thread (every holder of the core is a JS object's, or a
    // synchronous call's).
    const MemoryUse mem = pa->memory();
    const int64_t bytes = int64_t(mem.bytes + mem.zone_bytes);
    adjust_external_memory(env, bytes);
    PageArray* raw = pa.release();
    core_ = std::shared_ptr<PageArray>(raw, [env = napi_env(env), bytes](PageArray* p) {
      delete p;
      adjust_external_memory(env, -bytes);
    });  // (bad_alloc: the deleter has run, the bytes are given back)
    // Tagged, so that NativeAddressSpace can tell a real page array from an impostor.
    napi_type_tag_object(env, info.This(), &kPageArrayTag);
    return env.Undefined();
  });
}

PageArrayWrap* PageArrayWrap::from(Napi::Env env, napi_value v, const char* name) {
  bool tagged = false;
  napi_valuetype t = napi_undefined;
  if (v == nullptr || napi_typeof(env, v, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, v, &kPageArrayTag, &tagged) != napi_ok || !tagged)
    throw_invalid(env, std::string(name) + " must be a NativePageArray (got " +
                           describe_value(env, v) + ")");
  void* p = nullptr;
  if (napi_unwrap(env, v, &p) != napi_ok || p == nullptr)
    throw_invalid(env, std::string(name) + " is not a live NativePageArray");
  auto* w = static_cast<PageArrayWrap*>(p);
  if (w->disposed_ || !w->core_) throw_invalid(env, std::string(name) + " was disposed");
  return w;
}

Napi::Value PageArrayWrap::dispose(const Napi::CallbackInfo& info) {
  disposed_ = true;
  if (depth_ == 0) release();  // else when the call in progress returns
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::is_disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed_);
}

uint64_t PageArrayWrap::pfn_arg(const Napi::CallbackInfo& info, size_t index) const {
  const int64_t pfn = int_arg(info, index, "pfn");
  if (pfn < 0)
    throw_status(info.Env(), Status::Fail(Code::kERANGE, Reason::kPfnOutOfRange, pfn,
                                          int64_t(core_->pages())));
  check(info.Env(), core_->check_pfn(uint64_t(pfn)));
  return uint64_t(pfn);
}

Napi::Value PageArrayWrap::info_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("pages", double(core_->pages()));
  o.Set("scheme", scheme_name(core_->scheme()));
  o.Set("pinBias", double(core_->pin_bias()));
  o.Set("pincountMinOrder", double(core_->pincount_min_order()));
  o.Set("folioOrder", double(core_->initial_folio_order()));
  o.Set("debug", core_->debug());
  o.Set("populated", core_->populated());
  o.Set("movablePages", double(core_->movable_pages()));
  const MemoryUse mem = core_->memory();
  o.Set("memoryBytes", double(mem.bytes));
  o.Set("bytesPerPage", mem.bytes_per_page);
  return o;
}

Napi::Value PageArrayWrap::folio_head(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(core_->folio_head(pfn_arg(info, 0))));
}
Napi::Value PageArrayWrap::folio_order(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_->folio_order(pfn_arg(info, 0)));
}
Napi::Value PageArrayWrap::refcount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_->refcount(pfn_arg(info, 0)));
}
Napi::Value PageArrayWrap::pincount(const Napi::CallbackInfo& info) {
  const auto n = core_->pincount(pfn_arg(info, 0));
  if (!n) return info.Env().Null();
  return Napi::Number::New(info.Env(), double(*n));
}
Napi::Value PageArrayWrap::maybe_dma_pinned(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), core_->maybe_dma_pinned(pfn_arg(info, 0)));
}
Napi::Value PageArrayWrap::is_dirty(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), core_->is_dirty(pfn_arg(info, 0)));
}
Napi::Value PageArrayWrap::set_dirty(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->set_dirty(pfn_arg(info, 0)));
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::get_page(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->get_page(pfn_arg(info, 0), int_arg(info, 1, "refs")));
  return info.Env().Undefined();
}
Napi::Value PageArrayWrap::try_get_page(const Napi::CallbackInfo& info) {
  bool got = false;
  check(info.Env(), core_->try_get_page(pfn_arg(info, 0), int_arg(info, 1, "refs"), &got));
  return Napi::Boolean::New(info.Env(), got);
}
Napi::Value PageArrayWrap::put_page(const Napi::CallbackInfo& info) {
  bool freed = false;
  check(info.Env(), core_->put_page(pfn_arg(info, 0), int_arg(info, 1, "refs"), &freed));
  return Napi::Boolean::New(info.Env(), freed);
}

// checkPutPages(pfns[, unpins, write]): would one put of each be refused now, or, given
// `unpins`, right after unpin_pages of them (write pins if `write`)? Changes nothing.
Napi::Value PageArrayWrap::check_put_pages(const Napi::CallbackInfo& info) {
  const PfnList pfns(info, 0, "pfns");
  if (info.Length() < 2 || info[1].IsUndefined()) {
    check(info.Env(), core_->check_put_pages(pfns.data(), pfns.size()));
    return info.Env().Undefined();
  }
  const PfnList unpins(info, 1, "unpins");
  const bool write = bool_arg(info, 2, "write");
  check(info.Env(), core_->check_put_pages_after_unpins(pfns.data(), pfns.size(), unpins.data(), unpins.size(), write));
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::make_folio(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->make_folio(pfn_arg(info, 0), int_arg(info, 1, "order")));
  return info.Env().Undefined();
}
Napi::Value PageArrayWrap::split_folio(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->split_folio(pfn_arg(info, 0)));
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::pin_range(const Napi::CallbackInfo& info) {
  const PageSet range = range_arg(info, 0);
  const PinFlags flags = flags_arg(info, 2);
  uint64_t pinned = 0;
  check(info.Env(), core_->pin_pages(range, flags, &pinned));
  return Napi::Number::New(info.Env(), double(pinned));
}
Napi::Value PageArrayWrap::pin_list(const Napi::CallbackInfo& info) {
  const PfnList list(info, 0, "pfns");
  const PinFlags flags = flags_arg(info, 1);
  uint64_t pinned = 0;
  check(info.Env(), core_->pin_pages(list_set(list), flags, &pinned));
  return Napi::Number::New(info.Env(), double(pinned));
}
Napi::Value PageArrayWrap::unpin_range(const Napi::CallbackInfo& info) {
  const PageSet range = range_arg(info, 0);
  const PinFlags flags = flags_arg(info, 2);
  check(info.Env(), core_->unpin_pages(range, flags));
  return info.Env().Undefined();
}
Napi::Value PageArrayWrap::unpin_list(const Napi::CallbackInfo& info) {
  const PfnList list(info, 0, "pfns");
  const PinFlags flags = flags_arg(info, 1);
  check(info.Env(), core_->unpin_pages(list_set(list), flags));
  return info.Env().Undefined();
}

// unpinLists(reads, writes): the read pins of one list and the write pins of the other, as one
// all-or-nothing call (an owner's drop under write-bias).
Napi::Value PageArrayWrap::unpin_lists(const Napi::CallbackInfo& info) {
  const PfnList reads(info, 0, "reads");
  const PfnList writes(info, 1, "writes");
  check(info.Env(), core_->unpin_pages_both(reads.data(), reads.size(), writes.data(), writes.size()));
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::bvecs_range(const Napi::CallbackInfo& info) {
  std::vector<Bvec> runs;
  check(info.Env(), core_->to_bvecs(range_arg(info, 0), &runs));
  return bvecs_value(info.Env(), runs);
}
Napi::Value PageArrayWrap::bvecs_list(const Napi::CallbackInfo& info) {
  std::vector<Bvec> runs;
  const PfnList list(info, 0, "pfns");
  check(info.Env(), core_->to_bvecs(list_set(list), &runs));
  return bvecs_value(info.Env(), runs);
}

Napi::Value PageArrayWrap::count_range(const Napi::CallbackInfo& info) {
  uint64_t n = 0;
  check(info.Env(), core_->count_maybe_dma_pinned(range_arg(info, 0), &n));
  return Napi::Number::New(info.Env(), double(n));
}
Napi::Value PageArrayWrap::count_list(const Napi::CallbackInfo& info) {
  uint64_t n = 0;
  const PfnList list(info, 0, "pfns");
  check(info.Env(), core_->count_maybe_dma_pinned(list_set(list), &n));
  return Napi::Number::New(info.Env(), double(n));
}

// pfnRunsInto(list, out) -> entries written: pfnRuns into the caller's scratch buffer, which
// must hold 2 * list.length entries (the most a list can need). No allocation: the side table
// calls this on every owner-tracked pin and unpin.
Napi::Value PageArrayWrap::pfn_runs_into(const Napi::CallbackInfo& info) {
  const PfnList list(info, 0, "pfns");
  const Uint32View out = uint32_array_value(info.Env(), info[1], "out");
  if (out.length < 2 * list.size())
    throw_status(info.Env(), Status::BadOption("out", int64_t(out.length),
                                               "at least 2 entries per listed PFN"));
  uint64_t runs = 0;
  check(info.Env(), core_->count_pfn_runs(list.data(), list.size(), &runs));
  PageArray::write_pfn_runs(list.data(), list.size(), out.data);
  return Napi::Number::New(info.Env(), double(runs * 2));
}

// debugPinnedRuns() -> Uint32Array [pfn, count, pins, ...]
Napi::Value PageArrayWrap::debug_pinned_runs(const Napi::CallbackInfo& info) {
  std::vector<uint32_t> runs;
  check(info.Env(), core_->debug_pinned_runs(&runs));
  auto out = new_uint32_array(info.Env(), runs.size());
  if (!runs.empty()) std::memcpy(out.Data(), runs.data(), runs.size() * sizeof(uint32_t));
  return out;
}

// debugPagePins(start, count) -> Int32Array of the exact pins of each page
Napi::Value PageArrayWrap::debug_page_pins(const Napi::CallbackInfo& info) {
  std::vector<int32_t> pins;
  check(info.Env(), core_->debug_page_pins(int_arg(info, 0, "start"), int_arg(info, 1, "count"), &pins));
  auto out = new_int32_array(info.Env(), pins.size());
  if (!pins.empty()) std::memcpy(out.Data(), pins.data(), pins.size() * sizeof(int32_t));
  return out;
}

Napi::Value PageArrayWrap::stats(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("pinAcquired", double(core_->stat(Stat::kPinAcquired)));
  o.Set("pinReleased", double(core_->stat(Stat::kPinReleased)));
  o.Set("grabs", double(core_->stat(Stat::kGrabs)));
  o.Set("foliosFreed", double(core_->stat(Stat::kFoliosFreed)));
  o.Set("overflowRefusals", double(core_->stat(Stat::kOverflowRefusals)));
  o.Set("rollbacks", double(core_->stat(Stat::kRollbacks)));
  return o;
}

Napi::Value PageArrayWrap::alloc_folio(const Napi::CallbackInfo& info) {
  uint64_t head = 0;
  const int64_t order = int_arg(info, 0, "order");
  const bool movable = bool_arg(info, 1, "movable");
  check(info.Env(), core_->alloc_folio(order, movable, &head));
  return Napi::Number::New(info.Env(), double(head));
}
Napi::Value PageArrayWrap::free_pages(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(core_->free_pages()));
}
Napi::Value PageArrayWrap::zero_pfn(const Napi::CallbackInfo& info) {
  const int64_t z = core_->zero_pfn();
  return z < 0 ? info.Env().Null() : Napi::Number::New(info.Env(), double(z));
}
Napi::Value PageArrayWrap::huge_zero_pfn(const Napi::CallbackInfo& info) {
  const int64_t h = core_->huge_zero_pfn();
  return h < 0 ? info.Env().Null() : Napi::Number::New(info.Env(), double(h));
}
Napi::Value PageArrayWrap::is_movable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), core_->is_movable(pfn_arg(info, 0)));
}

}  // namespace pinlab::addon
