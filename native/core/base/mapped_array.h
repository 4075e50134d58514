// A zero-filled array in anonymous memory, backed by transparent huge pages where the
// host allows it. The page array is gigabytes; on 4 KiB pages its random accesses pay a
// TLB miss each, so we ask for THP and reserve lazily (MAP_NORESERVE): untouched parts
// cost nothing, which is how a scheme pays only for the arrays it uses. An array smaller
// than a huge page is mapped in 4 KiB pages (a huge page would cost 2 MiB at its first
// touch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace pinlab {

class MappedBytes {
 public:
  MappedBytes() = default;
  ~MappedBytes();
  MappedBytes(const MappedBytes&) = delete;
  MappedBytes& operator=(const MappedBytes&) = delete;
  MappedBytes(MappedBytes&& other) noexcept { *this = std::move(other); }
  MappedBytes& operator=(MappedBytes&& other) noexcept;

  // Maps `bytes` zeroed bytes. Returns false (and stays empty) if the mapping fails.
  bool map(size_t bytes);
  void* data() const { return data_; }
  size_t size() const { return size_; }
  // The mapping's length: size() rounded up to 4 KiB below 2 MiB, to 2 MiB from there.
  size_t mapped() const { return mapped_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;
};

// Typed view over MappedBytes. Elements are plain integers: all concurrent access goes
// through std::atomic_ref, so initialisation can use ordinary (vectorised) stores.
template <typename T>
class MappedArray {
 public:
  bool allocate(size_t count) {
    if (!bytes_.map(count * sizeof(T))) return false;
    count_ = count;
    return true;
  }
  T* data() const { return static_cast<T*>(bytes_.data()); }
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  size_t bytes() const { return count_ * sizeof(T); }
  size_t mapped_bytes() const { return bytes_.mapped(); }

 private:
  MappedBytes bytes_;
  size_t count_ = 0;
};

}  // namespace pinlab
