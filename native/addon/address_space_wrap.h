// The JS-facing AddressSpace and the stress harness's async entry point. Argument
// conversion, checked here (args.h) whatever lib/ checked; values are checked in the core.
#pragma once

#include <napi.h>

#include <memory>

#include "args.h"
#include "mm/address_space.h"

namespace pinlab::addon {

class AddressSpaceWrap : public Napi::ObjectWrap<AddressSpaceWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  // new NativeAddressSpace(nativePageArray, pages), or (External<AddressSpace>) from fork.
  explicit AddressSpaceWrap(const Napi::CallbackInfo& info);
  ~AddressSpaceWrap() override;

  PINLAB_DISPOSABLE_METHODS(AddressSpaceWrap, "this AddressSpace")

  // The NativeAddressSpace `v` (EINVAL naming `name` for anything else, impostors and disposed
  // address spaces included).
  static AddressSpaceWrap* from(Napi::Env env, napi_value v, const char* name);
  bool disposed() const { return disposed_; }
  bool has_race_hook() const { return !race_hook_.IsEmpty(); }
  // Reports to V8 what the address space's native memory grew by since the last report.
  void sync_memory();
  // A new NativeAddressSpace that owns `as` (fork, and the address spaces an op batch makes).
  static Napi::Value adopt(Napi::Env env, std::unique_ptr<AddressSpace> as);

  // The core address space (op streams' submit runs ops on it). Null once disposed (from()
  // refuses a disposed object).
  const std::shared_ptr<AddressSpace>& core() const { return core_; }

 private:
  // dispose(): idempotent; unmaps everything (pins taken through it stay valid) and frees the
  // page table; every later call is EINVAL.
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value is_disposed(const Napi::CallbackInfo& info);
  void release();
  void after_call() { sync_memory(); }

  Napi::Value mmap(const Napi::CallbackInfo& info);
  Napi::Value munmap(const Napi::CallbackInfo& info);
  Napi::Value mprotect(const Napi::CallbackInfo& info);
  Napi::Value map_shared(const Napi::CallbackInfo& info);
  Napi::Value zap(const Napi::CallbackInfo& info);
  Napi::Value mmap_hugetlb(const Napi::CallbackInfo& info);      // hugetlb_wrap.cpp
  Napi::Value map_hugetlb_file(const Napi::CallbackInfo& info);  // hugetlb_wrap.cpp
  Napi::Value madvise(const Napi::CallbackInfo& info);
  Napi::Value check_can_map(const Napi::CallbackInfo& info);
  Napi::Value touch(const Napi::CallbackInfo& info);
  Napi::Value gup(const Napi::CallbackInfo& info);
  Napi::Value unpin_user_pages(const Napi::CallbackInfo& info);
  Napi::Value put_user_pages(const Napi::CallbackInfo& info);
  Napi::Value fork(const Napi::CallbackInfo& info);
  Napi::Value migrate(const Napi::CallbackInfo& info);
  Napi::Value compact(const Napi::CallbackInfo& info);
  Napi::Value translate(const Napi::CallbackInfo& info);
  Napi::Value stats(const Napi::CallbackInfo& info);
  Napi::Value info_(const Napi::CallbackInfo& info);
  Napi::Value set_race_hook(const Napi::CallbackInfo& info);
  Napi::Value swap_entry(const Napi::CallbackInfo& info);
  Napi::Value swap_usage(const Napi::CallbackInfo& info);
  Napi::Value mremap(const Napi::CallbackInfo& info);
  Napi::Value collapse(const Napi::CallbackInfo& info);
  Napi::Value khugepaged(const Napi::CallbackInfo& info);
  Napi::Value map_private(const Napi::CallbackInfo& info);
  Napi::Value zap_file(const Napi::CallbackInfo& info);
  Napi::Value check_madv_remove(const Napi::CallbackInfo& info);
  Napi::Value region_runs(const Napi::CallbackInfo& info);
  Napi::Value held_pages(const Napi::CallbackInfo& info);

  std::shared_ptr<AddressSpace> core_;
  // The JS race hook, and an exception it threw during a walk (rethrown after the walk, since
  // the core must finish its protocol: unwinding through it would leak grabs).
  Napi::FunctionReference race_hook_;
  std::unique_ptr<Napi::Error> hook_error_;
  napi_env env_;
  int64_t reported_ = 0;  // bytes reported to V8 for this address space
  bool disposed_ = false;
  int depth_ = 0;  // calls in progress on this object
};

// runStress(options) -> Promise<report>: the harness runs on a worker thread.
Napi::Value run_stress_async(const Napi::CallbackInfo& info);

}  // namespace pinlab::addon
