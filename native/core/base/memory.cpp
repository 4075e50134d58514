#include "base/memory.h"

#include <unistd.h>

namespace pinlab {

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return UINT64_MAX;
  if (uint64_t(pages) > UINT64_MAX / uint64_t(page)) return UINT64_MAX;
  return uint64_t(pages) * uint64_t(page);
}

bool fits_in_memory(uint64_t count, uint64_t item_bytes) {
  if (item_bytes != 0 && count > UINT64_MAX / item_bytes) return false;
  return count * item_bytes <= physical_memory_bytes();
}

}  // namespace pinlab
