// Op streams in the addon (ops_wrap.cpp): opFormat, submitOps, writeOps, stateDigest, and the
// asynchronous startReplay, startSynth and startConvert.
#pragma once

#include <napi.h>

namespace pinlab::addon {

void define_ops(Napi::Env env, Napi::Object exports);

}  // namespace pinlab::addon
