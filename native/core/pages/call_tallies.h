// Running totals of one call per key (a folio head; a subpage for debug mode's exact pins),
// for the validation pass of pin_pages / unpin_pages / put_pages. Internal to the core.
//
// A call is checked as a whole before its first write: for each folio, the sum of what the
// call adds or takes (a list may name one folio many times, in any order) against one snapshot
// of the folio's counts, taken when the folio is first met. Ranges and ascending lists meet each
// key in one stretch, so only the current key is kept (no memory, no hashing on the hot path);
// an unordered list is validated again with a map (kMapped).
#pragma once

#include <cstdint>
#include <unordered_map>

namespace pinlab {

struct Tally {
  int64_t total = 0;   // what the call adds or takes so far
  int64_t count = 0;   // the snapshot: refcount (or debug pins of a subpage)
  int64_t pins = 0;    // the snapshot: pincount (or debug write pins of a subpage)
  bool exact = false;  // the folio keeps a pincount (pins is meaningful)
};

template <bool kMapped>
class Tallies;

// Keys that never decrease: only the current key's tally (kept in registers on the hot path).
template <>
class Tallies<false> {
 public:
  // The tally of `key`; *fresh says it was just created (take its snapshot). nullptr when a
  // key decreases: validate again, mapped.
  [[gnu::always_inline]] Tally* find(uint64_t key, bool* fresh) {
    if (key == key_) [[likely]] {
      *fresh = false;
      return &cur_;
    }
    if (key < key_ && key_ != kNone) [[unlikely]]
      return nullptr;
    key_ = key;
    cur_ = Tally{};
    *fresh = true;
    return &cur_;
  }

 private:
  static constexpr uint64_t kNone = ~uint64_t{0};  // no PFN is this large
  uint64_t key_ = kNone;
  Tally cur_;
};

// Any order: a map.
template <>
class Tallies<true> {
 public:
  Tally* find(uint64_t key, bool* fresh) {
    auto [it, inserted] = map_.try_emplace(key);
    *fresh = inserted;
    return &it->second;  // unordered_map: stable across rehashing
  }

 private:
  std::unordered_map<uint64_t, Tally> map_;
};

}  // namespace pinlab
