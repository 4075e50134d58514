// Striped spinlocks keyed by folio head, used only in debug mode.
//
// Debug accounting must change together with the scheme's counts, or a concurrent checker
// compares two unrelated snapshots (a put racing an unpin would see the debug pins before
// the unpin and the refcount after it: a false EPINNED). Debug mode therefore makes each
// folio's grab+note, take+release and check+put one critical section. The fast, lock-free
// paths are the non-debug ones.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>

#include "base/stats.h"

namespace pinlab {

class StripedLocks {
 public:
  static constexpr size_t kStripes = 1024;

  void lock(uint64_t key) {
    auto& l = stripe(key).locked;
    // acquire: the critical section sees everything the previous holder did.
    while (l.exchange(true, std::memory_order_acquire)) {
      while (l.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
  }
  // release: publishes the critical section to the next holder (pairs with lock's acquire).
  void unlock(uint64_t key) { stripe(key).locked.store(false, std::memory_order_release); }

 private:
  struct alignas(kCacheLine) Stripe {
    std::atomic<bool> locked{false};
  };
  static_assert(sizeof(Stripe) == kCacheLine, "one lock per cache line");
  static_assert(std::atomic<bool>::is_always_lock_free);

  Stripe& stripe(uint64_t key) { return stripes_[(key * 0x9E3779B97F4A7C15ull) >> 54]; }
  Stripe stripes_[kStripes];
};
static_assert((uint64_t{1} << 10) == StripedLocks::kStripes, "stripe index is the top 10 bits");

// Holds the folio's stripe for a scope when `enabled` (debug mode); otherwise costs nothing.
template <bool kEnabled>
class FolioGuard {
 public:
  FolioGuard(StripedLocks* locks, uint64_t head) : locks_(locks), head_(head) {
    if constexpr (kEnabled) locks_->lock(head_);
  }
  ~FolioGuard() {
    if constexpr (kEnabled) locks_->unlock(head_);
  }
  FolioGuard(const FolioGuard&) = delete;
  FolioGuard& operator=(const FolioGuard&) = delete;

 private:
  StripedLocks* locks_;
  uint64_t head_;
};

// The same, decided at run time: locks when `locks` is non-null (debug mode), else nothing.
class MaybeFolioGuard {
 public:
  MaybeFolioGuard(StripedLocks* locks, uint64_t head) : locks_(locks), head_(head) {
    if (locks_ != nullptr) locks_->lock(head_);
  }
  ~MaybeFolioGuard() {
    if (locks_ != nullptr) locks_->unlock(head_);
  }
  MaybeFolioGuard(const MaybeFolioGuard&) = delete;
  MaybeFolioGuard& operator=(const MaybeFolioGuard&) = delete;

 private:
  StripedLocks* locks_;
  uint64_t head_;
};

}  // namespace pinlab
