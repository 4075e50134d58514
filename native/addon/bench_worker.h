// runBench(specs, timing, onProgress) -> Promise<results>: the benchmark engine on a worker
// thread, reporting progress to JS through a thread-safe queue.
#pragma once

#include <napi.h>

namespace pinlab::addon {

Napi::Value run_bench_async(const Napi::CallbackInfo& info);

}  // namespace pinlab::addon
