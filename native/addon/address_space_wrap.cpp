#include "address_space_wrap.h"

#include <cstring>
#include <new>
#include <string>
#include <vector>
#include <algorithm>

#include "async_run.h"
#include "errors.h"
#include "page_array_wrap.h"
#include "engines/stress.h"

namespace pinlab::addon {

namespace {

constexpr uint32_t kGupWrite = 1, kGupLongterm = 2, kGupFastOnly = 4, kGupPin = 8,
                   kGupSlowOnly = 16;

// A forked child on its way from fork() to the constructor.
struct ForkedChild {
  std::unique_ptr<AddressSpace> as;
};

// The kernel rules of a new address space: undefined (mainline), a preset's name ('mainline',
// '2019'), or an object of named switches over mainline's. EINVAL for an unknown preset, key or
// value: the constructor then creates nothing.
// pincountMinOrder is the array's (`array_order`) unless the switch itself states it (then
// create checks it against the array): the boundary belongs to the page array, so a preset
// takes the array's too, and 'mainline' or '2019' over any array never conflicts.
MmRules rules_value(Napi::Env env, Napi::Value v, uint32_t array_order) {
  const uint8_t arrays = uint8_t(std::min<uint32_t>(array_order, MmRules::kNoPincountOrder));
  MmRules unstated = MmRules::mainline();
  unstated.pincount_min_order = arrays;
  if (v.IsUndefined()) return unstated;
  if (v.IsString()) {
    const std::string name = v.As<Napi::String>().Utf8Value();
    MmRules preset = name == "2019" ? MmRules::v2019() : MmRules::mainline();
    preset.pincount_min_order = arrays;
    if (name == "mainline" || name == "2019") return preset;
    throw_invalid(env, "rules must be 'mainline', '2019' or an object of rule switches (got '" +
                           name + "')");
  }
  Napi::Object o = object_value(env, v, "rules");
  MmRules r = unstated;
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = Napi::Value(keys[i]).ToString().Utf8Value();
    const Napi::Value val = option(o, key.c_str());
    if (key == "zeroPageUnshare") {
      r.zero_page_unshare = bool_value(env, val, "rules.zeroPageUnshare");
    } else if (key == "migratePteMappedThp") {
      r.migrate_pte_mapped_thp = bool_value(env, val, "rules.migratePteMappedThp");
    } else if (key == "anonExclusive") {
      r.anon_exclusive = bool_value(env, val, "rules.anonExclusive");
    } else if (key == "hugeZeroPage") {
      r.huge_zero_page = bool_value(env, val, "rules.hugeZeroPage");
    } else if (key == "pincountMinOrder") {
      // null: no order has an exact pincount (the 2019 kernels); else 1..30 (31 is null too).
      r.pincount_min_order =
          val.IsNull() ? MmRules::kNoPincountOrder
                       : uint8_t(int_value(env, val, "rules.pincountMinOrder", 1,
                                           MmRules::kNoPincountOrder));
    } else if (key == "longtermFileWrites") {
      const std::string w = string_value(env, val, "rules.longtermFileWrites");
      if (w != "refuse" && w != "allow")
        throw_invalid(env, "rules.longtermFileWrites must be 'refuse' or 'allow' (got '" + w + "')");
      r.longterm_file_writes = w == "refuse" ? LongtermFileWrites::kRefuse : LongtermFileWrites::kAllow;
    } else {
      throw_invalid(env, "rules: unknown rule '" + key +
                             "' (known: zeroPageUnshare, longtermFileWrites, migratePteMappedThp, "
                             "anonExclusive, pincountMinOrder, hugeZeroPage)");
    }
  }
  return r;
}

Napi::Object rules_object(Napi::Env env, const MmRules& r) {
  auto o = Napi::Object::New(env);
  o.Set("zeroPageUnshare", r.zero_page_unshare);
  o.Set("longtermFileWrites",
        r.longterm_file_writes == LongtermFileWrites::kRefuse ? "refuse" : "allow");
  o.Set("migratePteMappedThp", r.migrate_pte_mapped_thp);
  o.Set("anonExclusive", r.anon_exclusive);
  o.Set("hugeZeroPage", r.huge_zero_page);
  if (r.pincount_min_order >= MmRules::kNoPincountOrder) o.Set("pincountMinOrder", env.Null());
  else o.Set("pincountMinOrder", double(r.pincount_min_order));
  return o;
}

constexpr int64_t kGupAllFlags = kGupWrite | kGupLongterm | kGupFastOnly | kGupPin | kGupSlowOnly;

// Up to this many pages a gup's result is written straight into the JS array it returns (the
// hot path); a bigger call walks in chunks of this size (see gup()).
constexpr int64_t kGupDirect = int64_t{1} << 16;

}  // namespace

Napi::Function AddressSpaceWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeAddressSpace",
                     {
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::mmap>>("mmap"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::munmap>>("munmap"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::mprotect>>("mprotect"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::map_shared>>("mapShared"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::check_can_map>>("checkCanMap"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::zap>>("zap"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::mmap_hugetlb>>("mmapHugetlb"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::map_hugetlb_file>>("mapHugetlbFile"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::madvise>>("madvise"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::touch>>("touch"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::gup>>("gup"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::unpin_user_pages>>("unpinUserPages"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::put_user_pages>>("putUserPages"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::fork>>("fork"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::migrate>>("migrate"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::compact>>("compact"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::translate>>("translate"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::stats>>("stats"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::info_>>("info"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::set_race_hook>>("setRaceHook"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::swap_entry>>("swapEntry"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::swap_usage>>("swapUsage"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::mremap>>("mremap"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::collapse>>("collapse"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::khugepaged>>("khugepaged"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::map_private>>("mapPrivate"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::zap_file>>("zapFile"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::check_madv_remove>>("checkMadvRemove"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::region_runs>>("regionRuns"),
                         InstanceMethod<&AddressSpaceWrap::guarded<&AddressSpaceWrap::held_pages>>("heldPages"),
                         InstanceMethod<&AddressSpaceWrap::dispose>("dispose"),
                         InstanceMethod<&AddressSpaceWrap::is_disposed>("isDisposed"),
                     });
}

AddressSpaceWrap::AddressSpaceWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<AddressSpaceWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    if (info[0].IsExternal()) {  // a child from fork(): only an External fork() tagged
      bool tagged = false;
      if (napi_check_object_type_tag(env, info[0], &kForkedSpaceTag, &tagged) != napi_ok ||
          !tagged)
        throw_invalid(env, "NativeAddressSpace: an external that is not a forked address space");
      auto* slot = static_cast<ForkedChild*>(info[0].As<Napi::External<void>>().Data());
      if (slot == nullptr || !slot->as)
        throw_invalid(env, "NativeAddressSpace: this fork was already adopted");
      core_ = std::move(slot->as);  // adopted exactly once; the External's finalizer frees the rest
    } else {
      PageArrayWrap* mem = PageArrayWrap::from(env, info[0], "page array");
      const int64_t pages = int_arg(info, 1, "pages");
      const MmRules rules = rules_value(env, info[2], mem->core()->pincount_min_order());
      const int64_t thp_orders =
          info[3].IsUndefined() ? int64_t(kPmdThpOrders) : int_arg(info, 3, "thpOrders");
      // swapPages: undefined keeps the default (as many slots as pages).
      const int64_t swap_pages = info[4].IsUndefined()
                                     ? AddressSpace::kDefaultSwap
                                     : int_arg(info, 4, "swapPages", 0, int64_t(kMaxPages));
      std::unique_ptr<AddressSpace> as;
      check(env, AddressSpace::create(mem->core(), pages, rules, thp_orders, swap_pages, &as));
      core_ = std::move(as);
    }
    // Tagged, so that the op batches can tell a real address space from an impostor.
    napi_type_tag_object(env, info.This(), &kAddressSpaceTag);
    sync_memory();  // its page table, reported to V8 (a fork's copy included)
    return env.Undefined();
  });
}

AddressSpaceWrap::~AddressSpaceWrap() {
  // Collected without dispose(): the bytes reported go back with it (core_ frees the rest).
  adjust_external_memory(env_, -reported_);
  reported_ = 0;
}

void AddressSpaceWrap::sync_memory() {
  if (!core_) return;
  const int64_t now = int64_t(core_->memory_bytes());
  if (now == reported_) return;
  adjust_external_memory(env_, now - reported_);
  reported_ = now;
}

void AddressSpaceWrap::release() {
  if (!core_) return;
  core_->set_race_hook(nullptr);
  race_hook_.Reset();
  adjust_external_memory(env_, -reported_);
  reported_ = 0;
  core_.reset();  // unmaps everything; the page array's core goes with its last holder
}

Napi::Value AddressSpaceWrap::dispose(const Napi::CallbackInfo& info) {
  disposed_ = true;
  if (depth_ == 0) release();  // else when the call in progress returns (a race hook's dispose)
  return info.Env().Undefined();
}

Napi::Value AddressSpaceWrap::is_disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed_);
}

// mmap(start, count, write, populate, huge)
Napi::Value AddressSpaceWrap::mmap(const Napi::CallbackInfo& info) {
  MmapArgs a{int_arg(info, 0, "start"), int_arg(info, 1, "count"), bool_arg(info, 2, "write"),
             bool_arg(info, 3, "populate"), bool_arg(info, 4, "huge")};
  check(info.Env(), core_->mmap(a));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::munmap(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->munmap(int_arg(info, 0, "start"), int_arg(info, 1, "count")));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::mprotect(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  check(info.Env(), core_->mprotect(start, count, bool_arg(info, 2, "write")));
  return info.Env().Undefined();
}
// mapShared(start, pfns: Uint32Array, write, dirtyTracked = true): the list is copied first, since map_shared
// reads it three times (validate, take references, install) and a SharedArrayBuffer could
// change under it in between.
Napi::Value AddressSpaceWrap::map_shared(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start");
  const PfnList pfns(info, 1, "pfns");
  const bool write = bool_arg(info, 2, "write");
  const bool dirty_tracked = info[3].IsUndefined() || bool_arg(info, 3, "dirtyTracked");
  check(info.Env(), core_->map_shared(start, pfns.data(), pfns.size(), write, dirty_tracked));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::zap(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->zap(int_arg(info, 0, "start"), int_arg(info, 1, "count")));
  return info.Env().Undefined();
}
// madvise(start, count, advice): 0 MADV_DONTNEED, 1 MADV_DONTFORK, 2 MADV_DOFORK, 3 MADV_PAGEOUT.
Napi::Value AddressSpaceWrap::madvise(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  const auto advice = Advice(int_arg(info, 2, "advice", 0, int64_t(Advice::kPageOut)));
  check(info.Env(), core_->madvise(start, count, advice));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::check_can_map(const Napi::CallbackInfo& info) {
  check(info.Env(), core_->check_can_map(int_arg(info, 0, "start"), int_arg(info, 1, "count")));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::touch(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  check(info.Env(), core_->touch(start, count, bool_arg(info, 2, "write")));
  return info.Env().Undefined();
}

// gup(start, count, flags) -> Uint32Array of the PFNs taken (its length is the count done).
Napi::Value AddressSpaceWrap::gup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  const auto bits = uint32_t(int_arg(info, 2, "flags", 0, kGupAllFlags));
  GupFlags f;
  f.write = bits & kGupWrite;
  f.longterm = bits & kGupLongterm;
  f.fast_only = bits & kGupFastOnly;
  f.pin = bits & kGupPin;
  const bool slow_only = (bits & kGupSlowOnly) != 0;
  auto walk = [&](uint32_t* out, uint64_t* done) {
    return slow_only ? core_->gup_slow(start, count, f, out, done)
                     : core_->gup_fast(start, count, f, out, done);
  };
  // What the call took, given back (the caller gets an exception instead of the pages).
  auto give_back = [&](const uint32_t* pfns, uint64_t done) {
    if (done == 0) return;
    if (f.pin) (void)core_->unpin_user_pages(pfns, done, f.write, false);
    else (void)core_->put_user_pages(pfns, done);
  };
  auto rethrow_hook_error = [&] {
    std::unique_ptr<Napi::Error> err = std::move(hook_error_);
    throw *err;
  };
  // The range is checked against the address space before any result is allocated (the
  // core's own check, EFAULT / EINVAL, is the same: it runs before the walk touches `out`).
  const uint64_t pages = core_->pages();
  const bool in_range = count >= 0 && start >= 0 && uint64_t(start) <= pages &&
                        uint64_t(count) <= pages - uint64_t(start);
  if (!in_range || count == 0 || count <= kGupDirect) {
    auto out = Napi::Uint32Array::New(env, in_range ? size_t(count) : 0);
    uint64_t done = 0;
    const Status st = walk(in_range ? out.Data() : nullptr, &done);
    if (hook_error_) {
      // The walk finished cleanly; now the hook's exception surfaces.
      give_back(out.Data(), done);
      rethrow_hook_error();
    }
    check(env, st);
    return Napi::Uint32Array::New(env, size_t(done), out.ArrayBuffer(), 0);
  }
  // A big call runs in chunks of kGupDirect pages into memory the addon owns, grown as pages
  // are taken: a count the mapping cannot fill allocates nothing for the pages it lacks. It
  // stops where a chunk comes back short (the end of what is mapped, or fast-only's end), as
  // the single call would; an error after some pages is partial success, as in the core.
  // (Each chunk is a gup call of its own in the statistics, like the kernel's batches.)
  std::vector<uint32_t> pfns;
  uint64_t done = 0;
  Status st = Status::Ok();
  try {
    while (done < uint64_t(count)) {
      const uint64_t chunk = std::min<uint64_t>(uint64_t(kGupDirect), uint64_t(count) - done);
      pfns.resize(size_t(done + chunk));
      uint64_t got = 0;
      st = slow_only ? core_->gup_slow(start + int64_t(done), int64_t(chunk), f, pfns.data() + done, &got)
                     : core_->gup_fast(start + int64_t(done), int64_t(chunk), f, pfns.data() + done, &got);
      done += got;
      if (hook_error_ || !st.ok() || got < chunk) break;
    }
  } catch (...) {  // no memory to grow the list: give back what was taken, then ENOMEM
    give_back(pfns.data(), done);
    throw;
  }
  if (hook_error_) {
    give_back(pfns.data(), done);
    rethrow_hook_error();
  }
  if (done == 0) check(env, st);
  Napi::Uint32Array result;
  try {
    result = new_uint32_array(env, size_t(done));
  } catch (const Napi::Error&) {
    give_back(pfns.data(), done);  // a refused call changes nothing
    throw;
  }
  if (done > 0) std::memcpy(result.Data(), pfns.data(), size_t(done) * sizeof(uint32_t));
  return result;
}

Napi::Value AddressSpaceWrap::unpin_user_pages(const Napi::CallbackInfo& info) {
  const PfnList pfns(info, 0, "pfns");
  const bool write = bool_arg(info, 1, "write"), dirty = bool_arg(info, 2, "dirty");
  check(info.Env(), core_->unpin_user_pages(pfns.data(), pfns.size(), write, dirty));
  return info.Env().Undefined();
}
Napi::Value AddressSpaceWrap::put_user_pages(const Napi::CallbackInfo& info) {
  const PfnList pfns(info, 0, "pfns");
  check(info.Env(), core_->put_user_pages(pfns.data(), pfns.size()));
  return info.Env().Undefined();
}

Napi::Value AddressSpaceWrap::fork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unique_ptr<AddressSpace> child;
  check(env, core_->fork(&child));
  return adopt(env, std::move(child));
}

Napi::Value AddressSpaceWrap::adopt(Napi::Env env, std::unique_ptr<AddressSpace> as) {
  auto* data = env.GetInstanceData<InstanceData>();
  // The address space travels to the constructor in a tagged External that owns it until
  // adopted (its finalizer frees one the constructor never took).
  auto slot = std::make_unique<ForkedChild>();
  slot->as = std::move(as);
  auto ext = Napi::External<ForkedChild>::New(env, slot.get(),
                                              [](Napi::Env, ForkedChild* c) { delete c; });
  slot.release();
  napi_type_tag_object(env, ext, &kForkedSpaceTag);
  return data->address_space_ctor.New({ext});
}

AddressSpaceWrap* AddressSpaceWrap::from(Napi::Env env, napi_value v, const char* name) {
  bool tagged = false;
  napi_valuetype t = napi_undefined;
  if (v == nullptr || napi_typeof(env, v, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, v, &kAddressSpaceTag, &tagged) != napi_ok || !tagged)
    throw_invalid(env, std::string(name) + " must be a NativeAddressSpace (got " +
                           describe_value(env, v) + ")");
  void* p = nullptr;
  if (napi_unwrap(env, v, &p) != napi_ok || p == nullptr)
    throw_invalid(env, std::string(name) + " is not a live NativeAddressSpace");
  auto* w = static_cast<AddressSpaceWrap*>(p);
  if (w->disposed_ || !w->core_) throw_invalid(env, std::string(name) + " was disposed");
  return w;
}

// mremap(start, count, newCount, newStart (-1: none), flags: 1 MAYMOVE, 2 FIXED, 4 DONTUNMAP)
// -> the range's new start.
Napi::Value AddressSpaceWrap::mremap(const Napi::CallbackInfo& info) {
  MremapArgs a;
  a.start = int_arg(info, 0, "start");
  a.count = int_arg(info, 1, "count");
  a.new_count = int_arg(info, 2, "newCount");
  a.new_start = int_arg(info, 3, "newStart");
  const auto flags = uint32_t(int_arg(info, 4, "flags", 0, 7));
  a.may_move = (flags & 1) != 0;
  a.fixed = (flags & 2) != 0;
  a.dont_unmap = (flags & 4) != 0;
  uint64_t at = 0;
  check(info.Env(), core_->mremap(a, &at));
  return Napi::Number::New(info.Env(), double(at));
}
// collapse(start, count) -> THPs made (MADV_COLLAPSE).
Napi::Value AddressSpaceWrap::collapse(const Napi::CallbackInfo& info) {
  uint64_t made = 0;
  check(info.Env(), core_->collapse(int_arg(info, 0, "start"), int_arg(info, 1, "count"), &made));
  return Napi::Number::New(info.Env(), double(made));
}
// khugepaged(maxPtesNone, maxPtesShared) -> { collapsed, scanned }.
Napi::Value AddressSpaceWrap::khugepaged(const Napi::CallbackInfo& info) {
  KhugepagedArgs a;
  a.max_ptes_none = int_arg(info, 0, "maxPtesNone");
  a.max_ptes_shared = int_arg(info, 1, "maxPtesShared");
  uint64_t made = 0, scanned = 0;
  check(info.Env(), core_->khugepaged(a, &made, &scanned));
  auto o = Napi::Object::New(info.Env());
  o.Set("collapsed", double(made));
  o.Set("scanned", double(scanned));
  return o;
}

Napi::Value AddressSpaceWrap::migrate(const Napi::CallbackInfo& info) {
  uint64_t moved = 0;
  check(info.Env(), core_->migrate(int_arg(info, 0, "start"), int_arg(info, 1, "count"), &moved));
  return Napi::Number::New(info.Env(), double(moved));
}
Napi::Value AddressSpaceWrap::compact(const Napi::CallbackInfo& info) {
  uint64_t moved = 0;
  check(info.Env(), core_->compact(&moved));
  return Napi::Number::New(info.Env(), double(moved));
}

Napi::Value AddressSpaceWrap::translate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t v = int_arg(info, 0, "vpage");
  const Translation tr = v < 0 ? Translation{} : core_->translate(uint64_t(v));
  if (!tr.present) return env.Null();
  auto o = Napi::Object::New(env);
  o.Set("pfn", double(tr.pfn));
  o.Set("writable", tr.writable);
  o.Set("zeroPage", tr.special);
  o.Set("huge", tr.huge);
  o.Set("shared", tr.shared);
  // Only where it says more than `shared`: a private file mapping's page-cache page.
  if (tr.page_cache && !tr.shared) o.Set("pageCache", true);
  return o;
}

Napi::Value AddressSpaceWrap::stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  const AddressSpace& as = *core_;
  auto set = [&](const char* name, MmStat s) { o.Set(name, double(as.stat(s))); };
  set("gupCalls", MmStat::kGupCalls);
  set("fastPathPages", MmStat::kFastPages);
  set("slowPathFallbacks", MmStat::kSlowFallbacks);
  set("slowPathPages", MmStat::kSlowPages);
  set("recheckFailures", MmStat::kRecheckFailures);
  set("seqRetries", MmStat::kSeqRetries);
  set("faults", MmStat::kFaults);
  set("cowCopies", MmStat::kCowCopies);
  set("cowReuses", MmStat::kCowReuses);
  set("earlyCowCopies", MmStat::kEarlyCowCopies);
  set("earlyCowFalsePositives", MmStat::kEarlyCowFalsePositives);
  set("migratedPages", MmStat::kMigrated);
  set("migrationRefusals", MmStat::kMigrationRefusals);
  set("migrationFalsePositives", MmStat::kMigrationFalsePositives);
  set("migrationBusy", MmStat::kMigrationBusy);
  set("longtermMigrations", MmStat::kLongtermMigrations);
  set("unclassified", MmStat::kUnclassified);
  set("pagedOutPages", MmStat::kPagedOut);
  set("pageoutRefusals", MmStat::kPageoutRefusals);
  set("pageoutFalsePositives", MmStat::kPageoutFalsePositives);
  set("pageoutBusy", MmStat::kPageoutBusy);
  set("swapIns", MmStat::kSwapIns);
  set("swapCacheHits", MmStat::kSwapCacheHits);
  set("remaps", MmStat::kRemaps);
  set("remapMovedPages", MmStat::kRemapMovedPages);
  set("collapses", MmStat::kCollapses);
  set("collapseMaybePinned", MmStat::kCollapseMaybePinned);
  set("collapseFalsePositives", MmStat::kCollapseFalsePositives);
  set("collapseBusy", MmStat::kCollapseBusy);
  set("earlyCowUnclassified", MmStat::kEarlyCowUnclassified);
  set("migrationUnclassified", MmStat::kMigrationUnclassified);
  set("pageoutUnclassified", MmStat::kPageoutUnclassified);
  set("collapseUnclassified", MmStat::kCollapseUnclassified);
  return o;
}

Napi::Value AddressSpaceWrap::info_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("pages", double(core_->pages()));
  o.Set("hasPinned", core_->has_pinned());
  o.Set("regions", double(core_->regions()));
  o.Set("mappedPages", double(core_->mapped_pages()));
  o.Set("rules", rules_object(env, core_->rules()));
  o.Set("thpOrders", double(core_->thp_orders()));
  o.Set("swappedPages", double(core_->swapped_pages()));
  return o;
}

// swapEntry(vpage) -> { slot, exclusive } | null: the swap entry MADV_PAGEOUT left there.
Napi::Value AddressSpaceWrap::swap_entry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t v = int_arg(info, 0, "vpage");
  const std::optional<SwapEntryInfo> se = v < 0 ? std::nullopt : core_->swap_entry(uint64_t(v));
  if (!se) return env.Null();
  auto o = Napi::Object::New(env);
  o.Set("slot", double(se->slot));
  o.Set("exclusive", se->exclusive);
  return o;
}

// swapUsage() -> { pages, used, cached }: the swap device of this address space's fork family.
Napi::Value AddressSpaceWrap::swap_usage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const SwapUsage u = core_->swap_usage();
  auto o = Napi::Object::New(env);
  o.Set("pages", double(u.capacity));
  o.Set("used", double(u.used));
  o.Set("cached", double(u.cached));
  return o;
}

// setRaceHook(fn | null): fn(point, vpage) runs synchronously inside the walk.
Napi::Value AddressSpaceWrap::set_race_hook(const Napi::CallbackInfo& info) {
  if (info[0].IsNull() || info[0].IsUndefined()) {
    core_->set_race_hook(nullptr);
    race_hook_.Reset();
    return info.Env().Undefined();
  }
  if (!is_function(info.Env(), info[0]))
    throw_invalid(info.Env(), "setRaceHook: the hook must be a function or null (got " +
                                  describe_value(info.Env(), info[0]) + ")");
  race_hook_ = Napi::Persistent(info[0].As<Napi::Function>());
  Napi::Env env = info.Env();
  core_->set_race_hook([this, env](RacePoint point, uint64_t vpage) {
    if (hook_error_) return;  // the hook already threw during this walk: stay out of JS
    static const char* const kNames[] = {"beforeGrab", "beforeRecheck", "beforeSeqCheck"};
    try {
      race_hook_.Call({Napi::String::New(env, kNames[size_t(point)]),
                       Napi::Number::New(env, double(vpage))});
    } catch (const Napi::Error& e) {
      hook_error_ = std::make_unique<Napi::Error>(e);
    }
  });
  return env.Undefined();
}

// ---- the stress harness, asynchronously ------------------------------------------------------

namespace {

class StressWorker : public AsyncRun {
 public:
  StressWorker(Napi::Env env, const StressConfig& cfg)
      : AsyncRun(env, "pinlab.runStress", Napi::Function()), cfg_(cfg) {}

 private:
  Status run(const RunControl& control, const Report&) override {
    return run_stress(cfg_, &report_, &control);
  }

  Napi::Value result(Napi::Env env) override {
    const StressReport& r = report_;
    auto o = Napi::Object::New(env);
    o.Set("pinCalls", double(r.pin_calls));
    o.Set("pinnedPages", double(r.pinned_pages));
    o.Set("partialCalls", double(r.partial_calls));
    o.Set("failedCalls", double(r.failed_calls));
    o.Set("pinsChecked", double(r.pins_checked));
    o.Set("fastPathPages", double(r.fast_pages));
    o.Set("slowPathFallbacks", double(r.slow_fallbacks));
    o.Set("recheckFailures", double(r.recheck_failures));
    o.Set("seqRetries", double(r.seq_retries));
    o.Set("munmaps", double(r.munmaps));
    o.Set("madvises", double(r.madvises));
    o.Set("pageouts", double(r.pageouts));
    o.Set("pagedOutPages", double(r.paged_out));
    o.Set("swapIns", double(r.swap_ins));
    o.Set("mremaps", double(r.mremaps));
    o.Set("collapseCalls", double(r.collapse_calls));
    o.Set("collapsed", double(r.collapsed));
    o.Set("fileTruncates", double(r.file_truncates));
    o.Set("mprotects", double(r.mprotects));
    o.Set("forks", double(r.forks));
    o.Set("cowCopies", double(r.cow_copies));
    o.Set("earlyCowCopies", double(r.early_cow_copies));
    o.Set("migratedPages", double(r.migrated));
    o.Set("migrationRefusals", double(r.migration_refusals));
    o.Set("migrationBusy", double(r.migration_busy));
    o.Set("compactions", double(r.compactions));
    o.Set("pinAcquired", double(r.pin_acquired));
    o.Set("pinReleased", double(r.pin_released));
    o.Set("violations", double(r.violations));
    o.Set("firstViolation", r.first_violation.empty() ? env.Null()
                                                      : Napi::String::New(env, r.first_violation));
    o.Set("balanced", r.balanced);
    return o;
  }

  StressConfig cfg_;
  StressReport report_;
};

}  // namespace

// runStress({ scheme, threads, durationMs, regionPages, regions, seed, debug })
Napi::Value run_stress_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = object_value(env, info[0], "stress options");
  StressConfig cfg;
  const std::string scheme = string_value(env, option(o, "scheme"), "scheme");
  if (!parse_scheme(scheme.c_str(), &cfg.scheme))
    throw_status(env, unknown_scheme_status());
  // Integers read checked (no wrapping); their ranges are validate_stress's.
  cfg.threads = int_value(env, option(o, "threads"), "threads");
  cfg.duration_ms = int_value(env, option(o, "durationMs"), "durationMs");
  cfg.region_pages = int_value(env, option(o, "regionPages"), "regionPages");
  cfg.regions = int_value(env, option(o, "regions"), "regions");
  cfg.seed = int_value(env, option(o, "seed"), "seed", -kMaxSafeInteger, kMaxSafeInteger);
  cfg.debug = bool_value(env, option(o, "debug"), "debug");
  check(env, validate_stress(cfg));  // bad options throw now, before any thread starts
  auto* worker = new StressWorker(env, cfg);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace pinlab::addon

namespace pinlab::addon {

// mapPrivate(start, pfns: Uint32Array, write, dirtyTracked = true): MAP_PRIVATE of a file's
// pages; the list is copied first, as for mapShared.
Napi::Value AddressSpaceWrap::map_private(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start");
  const PfnList pfns(info, 1, "pfns");
  const bool write = bool_arg(info, 2, "write");
  const bool dirty_tracked = info[3].IsUndefined() || bool_arg(info, 3, "dirtyTracked");
  check(info.Env(), core_->map_private(start, pfns.data(), pfns.size(), write, dirty_tracked));
  return info.Env().Undefined();
}

// zapFile(start, count, evenCows): the file dropped these pages (truncate: evenCows true).
Napi::Value AddressSpaceWrap::zap_file(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  check(info.Env(), core_->zap_file(start, count, bool_arg(info, 2, "evenCows")));
  return info.Env().Undefined();
}

// checkMadvRemove(start, count): MADV_REMOVE's checks of the range's regions; changes nothing.
Napi::Value AddressSpaceWrap::check_madv_remove(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  check(info.Env(), core_->check_madv_remove(start, count));
  return info.Env().Undefined();
}

// regionRuns(start, count) -> Float64Array of (start, count) pairs: the range's stretches in regions.
Napi::Value AddressSpaceWrap::region_runs(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  std::vector<uint64_t> runs;
  check(info.Env(), core_->region_runs(start, count, &runs));
  auto out = Napi::Float64Array::New(info.Env(), runs.size());
  for (size_t i = 0; i < runs.size(); ++i) out[i] = double(runs[i]);
  return out;
}

// heldPages(start, count) -> Uint32Array: the file pages held without an entry in the range.
Napi::Value AddressSpaceWrap::held_pages(const Napi::CallbackInfo& info) {
  const int64_t start = int_arg(info, 0, "start"), count = int_arg(info, 1, "count");
  std::vector<uint32_t> pfns;
  check(info.Env(), core_->held_pages(start, count, &pfns));
  auto out = Napi::Uint32Array::New(info.Env(), pfns.size());
  if (!pfns.empty()) std::memcpy(out.Data(), pfns.data(), pfns.size() * sizeof(uint32_t));
  return out;
}

}  // namespace pinlab::addon
