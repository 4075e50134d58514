// Seeded synthetic op streams of any length, written as they are made (never held in memory):
// each tag (thread) works on its own slice of the pages, or its own address space, keeps a
// window of outstanding pins and references, releases them, and at the end releases what is
// left, so every stream ends balanced. The generator runs each op on a live page array as it
// writes it (the scheme given), so the stream carries the results and the PFNs its gups
// returned, exactly as a recording would.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "base/status.h"
#include "engines/op_files.h"
#include "pages/scheme.h"

namespace pinlab::ops {

enum class SynthMix : uint8_t {
  kPages,  // page-array ops: pins and unpins (single pages and runs, per-page and bvec, read
           // and write, dirty), gets, try-gets, puts, set-dirty, on a populated array
  kMm,     // address spaces: mmap (4 KiB and THP), touch, pin/get_user_pages_fast, unpin and
           // put, mprotect, migrate, fork of a pinning parent (early COW) and the child's exit
};

struct SynthConfig {
  uint64_t ops = 1000000;
  uint64_t seed = 1;
  uint32_t threads = 1;       // tags, 1..1024
  uint64_t pages = 1 << 20;   // the page array; kPages: split between the tags
  Scheme scheme = Scheme::kHybrid;
  uint32_t pin_bias = 1024;
  bool debug = false;
  SynthMix mix = SynthMix::kPages;
};

Status validate_synth(const SynthConfig& c);

using SynthProgress = std::function<void(uint64_t done, uint64_t total)>;

// Writes `c.ops` ops to `path` (binary or text by its extension) through an OpWriter (a
// temporary renamed into place at the end: a stopped or failed run leaves nothing).
Status synth_stream(const SynthConfig& c, const std::string& path, const std::atomic<bool>* stop,
                    const SynthProgress& progress, uint64_t* records);

}  // namespace pinlab::ops
