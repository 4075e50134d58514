#include "base/mapped_array.h"

#include <sys/mman.h>

namespace pinlab {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kBasePage = size_t{4} << 10;
size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

MappedBytes::~MappedBytes() {
  if (data_ != nullptr) munmap(data_, mapped_);
}

MappedBytes& MappedBytes::operator=(MappedBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, mapped_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

bool MappedBytes::map(size_t bytes) {
  if (bytes == 0) return false;
  // Huge pages only for an array of at least one: a smaller one would take a whole 2 MiB page
  // at its first touch, 64 times what an 8192-page array's refcounts need and far beyond the
  // bytes reported to V8 (thousands of small page arrays held 4 MiB of RSS each).
  const bool huge = bytes >= kHugePage;
  const size_t len = round_up(bytes, huge ? kHugePage : kBasePage);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) return false;
#ifdef MADV_HUGEPAGE
  // Advisory: a host with THP disabled just keeps 4 KiB pages.
  if (huge) madvise(p, len, MADV_HUGEPAGE);
#endif
  if (data_ != nullptr) munmap(data_, mapped_);
  data_ = p;
  size_ = bytes;
  mapped_ = len;
  return true;
}

}  // namespace pinlab
