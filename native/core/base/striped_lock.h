// Striped spinlocks keyed by folio head, used only in debug mode.
//
// Debug accounting must change together with the scheme's counts, or a concurrent checker
// compares two unrelated snapshots (a put racing an unpin would see the debug pins before
// the unpin and the refcount after it: a false EPINNED). Debug mode therefore makes each
// folio's grab+note, take+release and check+put one critical section, and a multi-folio call
// (pin_pages, unpin_pages, put_pages) holds the stripes of all its folios from its validation
// to its last change (HeldStripes). The fast, lock-free paths are the non-debug ones.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "base/stats.h"

namespace pinlab {

class StripedLocks {
 public:
  static constexpr size_t kStripes = 1024;

  // acquire (in lock_at): the critical section sees everything the previous holder did.
  void lock(uint64_t key) { lock_at(stripe_index(key)); }
  // release: publishes the critical section to the next holder (pairs with lock's acquire).
  void unlock(uint64_t key) { stripe(key).locked.store(false, std::memory_order_release); }

  // Multi-folio calls (debug mode) hold every stripe they touch for the whole call. They take
  // them in ascending stripe order and single-folio holders never wait for a second stripe,
  // so no two holders can wait for each other.
  static uint16_t stripe_index(uint64_t key) {
    return uint16_t((key * 0x9E3779B97F4A7C15ull) >> 54);
  }
  // Sorts and dedups `stripes`, then locks them in that order.
  void lock_stripes(std::vector<uint16_t>* stripes) {
    std::sort(stripes->begin(), stripes->end());
    stripes->erase(std::unique(stripes->begin(), stripes->end()), stripes->end());
    for (uint16_t i : *stripes) lock_at(i);
  }
  void unlock_stripes(const std::vector<uint16_t>& stripes) {
    // release: publishes the call's critical section, as unlock().
    for (uint16_t i : stripes) stripes_[i].locked.store(false, std::memory_order_release);
  }

 private:
  void lock_at(uint16_t i) {
    auto& l = stripes_[i].locked;
    // acquire: as lock().
    while (l.exchange(true, std::memory_order_acquire)) {
      while (l.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
  }

  struct alignas(kCacheLine) Stripe {
    std::atomic<bool> locked{false};
  };
  static_assert(sizeof(Stripe) == kCacheLine, "one lock per cache line");
  static_assert(std::atomic<bool>::is_always_lock_free);

  Stripe& stripe(uint64_t key) { return stripes_[stripe_index(key)]; }
  Stripe stripes_[kStripes];
};
static_assert((uint64_t{1} << 10) == StripedLocks::kStripes, "stripe index is the top 10 bits");

// The stripes one multi-folio call holds (debug mode), in ascending order; unlocked at the end
// of the scope or by unlock(). With no locks (not debug mode) it does nothing.
class HeldStripes {
 public:
  explicit HeldStripes(StripedLocks* locks) : locks_(locks) {}
  ~HeldStripes() { unlock(); }
  HeldStripes(const HeldStripes&) = delete;
  HeldStripes& operator=(const HeldStripes&) = delete;

  // Locks the stripe of every key that for_each_key(f) passes to f. The keys are read again
  // under the locks until they are the ones locked: a key computed from state that changed
  // before we held its lock (a folio freed and reused in another shape) is not ours to use.
  template <typename ForEachKey>
  void lock_keys(ForEachKey&& for_each_key) {
    if (locks_ == nullptr) return;
    for (;;) {
      stripes_.clear();
      for_each_key([&](uint64_t key) {
        const uint16_t i = StripedLocks::stripe_index(key);
        if (stripes_.empty() || stripes_.back() != i) stripes_.push_back(i);
      });
      locks_->lock_stripes(&stripes_);
      held_ = true;
      bool all = true;
      for_each_key([&](uint64_t key) {
        all = all && std::binary_search(stripes_.begin(), stripes_.end(),
                                        StripedLocks::stripe_index(key));
      });
      if (all) return;
      unlock();
    }
  }
  void unlock() {
    if (held_) locks_->unlock_stripes(stripes_);
    held_ = false;
  }

 private:
  StripedLocks* locks_;
  std::vector<uint16_t> stripes_;
  bool held_ = false;
};

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
