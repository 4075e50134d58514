#include "page_array_wrap.h"

#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace pinlab::addon {

namespace {

constexpr uint32_t kFlagWrite = 1, kFlagPerPage = 2, kFlagDirty = 4;

int64_t int_arg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int64Value();
}

PinFlags flags_arg(const Napi::CallbackInfo& info, size_t i) {
  const uint32_t bits = info[i].As<Napi::Number>().Uint32Value();
  return PinFlags{(bits & kFlagWrite) != 0, (bits & kFlagPerPage) != 0, (bits & kFlagDirty) != 0};
}

// A { start, count } range from two JS integers; negative values are out of range too.
PageSet range_arg(const Napi::CallbackInfo& info, size_t i) {
  const int64_t start = int_arg(info, i), count = int_arg(info, i + 1);
  if (start < 0 || count < 0)
    throw_status(info.Env(), Status::Fail(Code::kERANGE, Reason::kRangeOutOfBounds, start, count));
  return PageSet::range(uint64_t(start), uint64_t(count));
}

// A Uint32Array read in place: no copy of the PFN list.
PageSet list_arg(const Napi::CallbackInfo& info, size_t i) {
  auto arr = info[i].As<Napi::Uint32Array>();
  return PageSet::pfns(arr.Data(), arr.ElementLength());
}

Napi::Value bvecs_value(Napi::Env env, const std::vector<Bvec>& runs) {
  // Flattened [pfn, count, pfn, count, ...]: lib/ turns it into objects.
  auto out = Napi::Uint32Array::New(env, runs.size() * 2);
  for (size_t i = 0; i < runs.size(); ++i) {
    out[2 * i] = uint32_t(runs[i].pfn);
    out[2 * i + 1] = uint32_t(runs[i].count);
  }
  return out;
}

}  // namespace

Napi::Function PageArrayWrap::define(Napi::Env env) {
  return DefineClass(
      env, "NativePageArray",
      {
          InstanceMethod<&PageArrayWrap::info_>("info"),
          InstanceMethod<&PageArrayWrap::folio_head>("folioHead"),
          InstanceMethod<&PageArrayWrap::folio_order>("folioOrder"),
          InstanceMethod<&PageArrayWrap::refcount>("refcount"),
          InstanceMethod<&PageArrayWrap::pincount>("pincount"),
          InstanceMethod<&PageArrayWrap::maybe_dma_pinned>("maybeDmaPinned"),
          InstanceMethod<&PageArrayWrap::is_dirty>("isDirty"),
          InstanceMethod<&PageArrayWrap::set_dirty>("setDirty"),
          InstanceMethod<&PageArrayWrap::get_page>("getPage"),
          InstanceMethod<&PageArrayWrap::try_get_page>("tryGetPage"),
          InstanceMethod<&PageArrayWrap::put_page>("putPage"),
          InstanceMethod<&PageArrayWrap::make_folio>("makeFolio"),
          InstanceMethod<&PageArrayWrap::split_folio>("splitFolio"),
          InstanceMethod<&PageArrayWrap::pin_range>("pinRange"),
          InstanceMethod<&PageArrayWrap::pin_list>("pinList"),
          InstanceMethod<&PageArrayWrap::unpin_range>("unpinRange"),
          InstanceMethod<&PageArrayWrap::unpin_list>("unpinList"),
          InstanceMethod<&PageArrayWrap::bvecs_range>("bvecsRange"),
          InstanceMethod<&PageArrayWrap::bvecs_list>("bvecsList"),
          InstanceMethod<&PageArrayWrap::count_range>("countMaybeDmaPinnedRange"),
          InstanceMethod<&PageArrayWrap::count_list>("countMaybeDmaPinnedList"),
          InstanceMethod<&PageArrayWrap::pfn_runs_into>("pfnRunsInto"),
          InstanceMethod<&PageArrayWrap::debug_pinned_runs>("debugPinnedRuns"),
          InstanceMethod<&PageArrayWrap::debug_page_pins>("debugPagePins"),
          InstanceMethod<&PageArrayWrap::stats>("stats"),
          InstanceMethod<&PageArrayWrap::alloc_folio>("allocFolio"),
          InstanceMethod<&PageArrayWrap::free_pages>("freePages"),
          InstanceMethod<&PageArrayWrap::zero_pfn>("zeroPfn"),
          InstanceMethod<&PageArrayWrap::is_movable>("isMovable"),
      });
}

// new NativePageArray({ pages, scheme, pinBias, pincountMinOrder, folioOrder, debug })
PageArrayWrap::PageArrayWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PageArrayWrap>(info) {
  Napi::Env env = info.Env();
  auto opts = info[0].As<Napi::Object>();
  PageArrayConfig cfg;
  cfg.pages = opts.Get("pages").As<Napi::Number>().Int64Value();
  const std::string scheme = opts.Get("scheme").As<Napi::String>().Utf8Value();
  if (!parse_scheme(scheme.c_str(), &cfg.scheme))
    throw_status(env, unknown_scheme_status());
  cfg.pin_bias = opts.Get("pinBias").As<Napi::Number>().Int64Value();
  cfg.pincount_min_order = opts.Get("pincountMinOrder").As<Napi::Number>().Int64Value();
  cfg.folio_order = opts.Get("folioOrder").As<Napi::Number>().Int64Value();
  cfg.debug = opts.Get("debug").As<Napi::Boolean>().Value();
  cfg.populated = opts.Get("populated").As<Napi::Boolean>().Value();
  cfg.movable_pages = opts.Get("movablePages").As<Napi::Number>().Int64Value();
  std::unique_ptr<PageArray> pa;
  check(env, PageArray::create(cfg, &pa));
  core_ = std::move(pa);
}

uint64_t PageArrayWrap::pfn_arg(const Napi::CallbackInfo& info, size_t index) const {
  const int64_t pfn = int_arg(info, index);
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
  check(info.Env(), core_->get_page(pfn_arg(info, 0), int_arg(info, 1)));
  return info.Env().Undefined();
}
Napi::Value PageArrayWrap::try_get_page(const Napi::CallbackInfo& info) {
  bool got = false;
  check(info.Env(), core_->try_get_page(pfn_arg(info, 0), int_arg(info, 1), &got));
  return Napi::Boolean::New(info.Env(), got);
}
Napi::Value PageArrayWrap::put_page(const Napi::CallbackInfo& info) {
  bool freed = false;
  check(info.Env(), core_->put_page(pfn_arg(info, 0), int_arg(info, 1), &freed));
  return Napi::Boolean::New(info.Env(), freed);
}

Napi::Value PageArrayWrap::make_folio(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->make_folio(pfn_arg(info, 0), int_arg(info, 1)));
  return info.Env().Undefined();
}
Napi::Value PageArrayWrap::split_folio(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->split_folio(pfn_arg(info, 0)));
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::pin_range(const Napi::CallbackInfo& info) {
  uint64_t pinned = 0;
  check(info.Env(), core_->pin_pages(range_arg(info, 0), flags_arg(info, 2), &pinned));
  return Napi::Number::New(info.Env(), double(pinned));
}
Napi::Value PageArrayWrap::pin_list(const Napi::CallbackInfo& info) {
  uint64_t pinned = 0;
  check(info.Env(), core_->pin_pages(list_arg(info, 0), flags_arg(info, 1), &pinned));
  return Napi::Number::New(info.Env(), double(pinned));
}
Napi::Value PageArrayWrap::unpin_range(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->unpin_pages(range_arg(info, 0), flags_arg(info, 2)));
  return info.Env().Undefined();
}
Napi::Value PageArrayWrap::unpin_list(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->unpin_pages(list_arg(info, 0), flags_arg(info, 1)));
  return info.Env().Undefined();
}

Napi::Value PageArrayWrap::bvecs_range(const Napi::CallbackInfo& info) {
  std::vector<Bvec> runs;
  check(info.Env(), core_->to_bvecs(range_arg(info, 0), &runs));
  return bvecs_value(info.Env(), runs);
}
Napi::Value PageArrayWrap::bvecs_list(const Napi::CallbackInfo& info) {
  std::vector<Bvec> runs;
  check(info.Env(), core_->to_bvecs(list_arg(info, 0), &runs));
  return bvecs_value(info.Env(), runs);
}

Napi::Value PageArrayWrap::count_range(const Napi::CallbackInfo& info) {
  uint64_t n = 0;
  check(info.Env(), core_->count_maybe_dma_pinned(range_arg(info, 0), &n));
  return Napi::Number::New(info.Env(), double(n));
}
Napi::Value PageArrayWrap::count_list(const Napi::CallbackInfo& info) {
  uint64_t n = 0;
  check(info.Env(), core_->count_maybe_dma_pinned(list_arg(info, 0), &n));
  return Napi::Number::New(info.Env(), double(n));
}

// pfnRunsInto(list, out) -> entries written: pfnRuns into the caller's scratch buffer, which
// must hold 2 * list.length entries (the most a list can need). No allocation: the side table
// calls this on every owner-tracked pin and unpin.
Napi::Value PageArrayWrap::pfn_runs_into(const Napi::CallbackInfo& info) {
  auto arr = info[0].As<Napi::Uint32Array>();
  auto out = info[1].As<Napi::Uint32Array>();
  if (out.ElementLength() < 2 * arr.ElementLength())
    throw_status(info.Env(), Status::BadOption("out", int64_t(out.ElementLength()),
                                               "at least 2 entries per listed PFN"));
  uint64_t runs = 0;
  check(info.Env(), core_->count_pfn_runs(arr.Data(), arr.ElementLength(), &runs));
  PageArray::write_pfn_runs(arr.Data(), arr.ElementLength(), out.Data());
  return Napi::Number::New(info.Env(), double(runs * 2));
}

// debugPinnedRuns() -> Uint32Array [pfn, count, pins, ...]
Napi::Value PageArrayWrap::debug_pinned_runs(const Napi::CallbackInfo& info) {
  std::vector<uint32_t> runs;
  check(info.Env(), core_->debug_pinned_runs(&runs));
  auto out = Napi::Uint32Array::New(info.Env(), runs.size());
  std::memcpy(out.Data(), runs.data(), runs.size() * sizeof(uint32_t));
  return out;
}

// debugPagePins(start, count) -> Int32Array of the exact pins of each page
Napi::Value PageArrayWrap::debug_page_pins(const Napi::CallbackInfo& info) {
  std::vector<int32_t> pins;
  check(info.Env(), core_->debug_page_pins(int_arg(info, 0), int_arg(info, 1), &pins));
  auto out = Napi::Int32Array::New(info.Env(), pins.size());
  std::memcpy(out.Data(), pins.data(), pins.size() * sizeof(int32_t));
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
  check(info.Env(), core_->alloc_folio(int_arg(info, 0), info[1].As<Napi::Boolean>().Value(), &head));
  return Napi::Number::New(info.Env(), double(head));
}
Napi::Value PageArrayWrap::free_pages(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(core_->free_pages()));
}
Napi::Value PageArrayWrap::zero_pfn(const Napi::CallbackInfo& info) {
  const int64_t z = core_->zero_pfn();
  return z < 0 ? info.Env().Null() : Napi::Number::New(info.Env(), double(z));
}
Napi::Value PageArrayWrap::is_movable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), core_->is_movable(pfn_arg(info, 0)));
}

}  // namespace pinlab::addon
