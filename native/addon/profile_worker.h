// runProfile(request, onProgress) -> Promise<runs>: the false-positive profiler on a worker
// thread; takeSnapshot(request, onProgress) -> Promise<summary>: a host page snapshot.
#pragma once

#include <napi.h>

namespace pinlab::addon {

Napi::Value run_profile_async(const Napi::CallbackInfo& info);
Napi::Value distribution_tail_sync(const Napi::CallbackInfo& info);
Napi::Value take_snapshot_async(const Napi::CallbackInfo& info);

}  // namespace pinlab::addon
