// How much memory this machine has, for refusing sizes that cannot be held before allocating
// them: an allocation past physical memory is refused by the kernel (bad_alloc) at best, and at
// worst granted lazily and then fatal to fill (the OOM killer).
#pragma once

#include <cstdint>

namespace pinlab {

// Physical memory in bytes (sysconf), or UINT64_MAX if it cannot be told.
uint64_t physical_memory_bytes();

// Whether `count` items of `item_bytes` each fit in physical memory (no overflow either).
bool fits_in_memory(uint64_t count, uint64_t item_bytes);

}  // namespace pinlab
