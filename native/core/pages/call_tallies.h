// Running totals of one call per key (a folio head; a subpage for debug mode's exact pins),
// for the validation pass of unpin_pages and put_pages. Internal to the core.
//
// A call is checked as a whole before its first write: for each folio, the sum of what the
// call adds or takes (a list may name one folio many times, in any order) against one snapshot
// of the folio's counts, taken when the folio is first met. Ranges and ascending lists meet each
// key in one stretch, so only the current key is kept (no memory, no hashing on the hot path);
// an unordered list is validated again with a hash table (kMapped).
#pragma once

#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

#include "base/memory.h"

namespace pinlab {

struct Tally {
  int64_t total = 0;   // what the call adds or takes so far
  int64_t count = 0;   // the snapshot: refcount (or debug pins of a subpage)
  int64_t pins = 0;    // the snapshot: pincount (or debug write pins of a subpage)
  int64_t mapped = 0;  // the snapshot: references the folio's mappings hold (puts only)
  bool exact = false;  // the folio keeps a pincount (pins is meaningful)
};

// T: what is kept per key (Tally; an unpin of read and write pins keeps both totals).
template <bool kMapped, typename T = Tally>
class Tallies;

// Keys that never decrease: only the current key's tally (kept in registers on the hot path).
template <typename T>
class Tallies<false, T> {
 public:
  Tallies(uint64_t, int) {}
  // The tally of `key`; *fresh says it was just created (take its snapshot). nullptr when a
  // key decreases: validate again, mapped.
  [[gnu::always_inline]] T* find(uint64_t key, bool* fresh) {
    if (key == key_) [[likely]] {
      *fresh = false;
      return &cur_;
    }
    if (key < key_ && key_ != kNone) [[unlikely]]
      return nullptr;
    key_ = key;
    cur_ = T{};
    *fresh = true;
    return &cur_;
  }

 private:
  static constexpr uint64_t kNone = ~uint64_t{0};  // no PFN is this large
  uint64_t key_ = kNone;
  T cur_;
};

// Any order: up to kSmallKeys keys a linear search in an array of its own (uninitialised until
// used: a short list, the common unordered one, costs neither hashing nor clearing a table);
// more, an open-addressing table (linear probing) in a buffer each thread keeps, so an unordered
// list costs no allocation once the thread has met one as long.
template <typename T>
class Tallies<true, T> {
 public:
  // `keys`: at most this many distinct keys will be met (the call's entries or pages); 0: no
  // table at all (find must not be called: debug mode's subpages outside debug mode).
  // `table`: which of the thread's two buffers (a validation uses at most two tables).
  // std::bad_alloc (the callers' ENOMEM, before anything changed) for a table this machine's
  // memory cannot hold: assigning it would touch every page of it, and meet the OOM killer.
  Tallies(uint64_t keys, int table) {
    if (keys == 0) return;
    if (keys <= kSmallKeys) {
      small_ = true;
      return;
    }
    uint64_t cap = 16;
    while (cap < 2 * keys) cap <<= 1;
    mask_ = cap - 1;
    // A long list gets a table of its own, freed after the call: the thread's buffer stays small.
    // Only such a table can outgrow memory, so only it asks how much there is (sysinfo(2)).
    if (cap > kKeptSlots && !fits_in_memory(cap, sizeof(Slot))) throw std::bad_alloc();
    std::vector<Slot>& b = cap <= kKeptSlots ? buffer(table) : own_;
    b.assign(cap, Slot{});
    slots_ = b.data();
  }
  T* find(uint64_t key, bool* fresh) {
    if (small_) {
      for (uint32_t i = 0; i < small_count_; ++i) {
        if (small_keys_[i] == key) {
          *fresh = false;
          return small_tally(i);
        }
      }
      // At most kSmallKeys distinct keys: the caller's bound (its entries).
      small_keys_[small_count_] = key;
      *fresh = true;
      return new (small_tallies_[small_count_++].bytes) T{};
    }
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == key) {
        *fresh = false;
        return &s.tally;
      }
      if (s.key == kNone) {
        s.key = key;
        *fresh = true;
        return &s.tally;
      }
    }
  }

 private:
  static constexpr uint64_t kNone = ~uint64_t{0};  // no PFN is this large
  struct Slot {
    uint64_t key = kNone;
    T tally;
  };
  // Two per thread: a validation never nests in another on the same thread.
  static std::vector<Slot>& buffer(int table) {
    // Initial-exec TLS, as the statistics' ticket (base/stats.h): no __tls_get_addr per call.
    [[gnu::tls_model("initial-exec")]] thread_local std::vector<Slot> b[2];
    return b[table];
  }
  static constexpr uint64_t kKeptSlots = uint64_t{1} << 12;  // 160 KiB a table
  static constexpr uint32_t kSmallKeys = 16;
  static_assert(std::is_trivially_destructible_v<T>, "small tallies are never destroyed");
  struct RawTally {
    alignas(T) unsigned char bytes[sizeof(T)];
  };
  T* small_tally(uint32_t i) { return std::launder(reinterpret_cast<T*>(small_tallies_[i].bytes)); }
  bool small_ = false;
  uint32_t small_count_ = 0;
  uint64_t small_keys_[kSmallKeys];     // [0, small_count_) in use; the rest never read
  RawTally small_tallies_[kSmallKeys];  // constructed as their keys arrive
  std::vector<Slot> own_;
  Slot* slots_ = nullptr;
  uint64_t mask_ = 0;
};

}  // namespace pinlab
