// probeKernel({ bufferBytes, huge, trials }) -> Promise<result>: the host kernel's pin probe
// (io_uring buffer registration) on a worker thread.
#pragma once

#include <napi.h>

namespace pinlab::addon {

Napi::Value probe_kernel_async(const Napi::CallbackInfo& info);

}  // namespace pinlab::addon
