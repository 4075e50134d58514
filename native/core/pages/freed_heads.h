// The folios one call's release pass took to zero, freed once the pass is done (unpin_pages,
// unpin_pages_both, put_pages: freeing reshapes a folio's pages under the pass's later runs, and
// debug mode frees outside the call's stripes). Internal to the core.
//
// Its room is made before the pass's first release, so the pass itself never allocates: a
// refused reservation is std::bad_alloc (the callers' ENOMEM) with nothing changed, never a
// pass that stops halfway with the folios it already took to zero lost. A short call keeps its
// heads inline (no allocation at all).
#pragma once

#include <cstdint>
#include <vector>

namespace pinlab {

class FreedHeads {
 public:
  static constexpr uint64_t kInline = 16;

  // `most`: how many folios the pass can take to zero at most (one per folio run the call
  // names; its validation held each one's total). std::bad_alloc if the room cannot be had.
  explicit FreedHeads(uint64_t most) {
    if (most > kInline) heap_.reserve(most - kInline);
  }
  FreedHeads(const FreedHeads&) = delete;
  FreedHeads& operator=(const FreedHeads&) = delete;

  // Notes head, or returns false when the room is full: only possible for a call whose
  // release landed on a folio freed and reused during the pass (pins it never validated, a
  // misuse outside debug mode); the caller frees that one at once.
  [[nodiscard]] bool try_add(uint64_t head) {
    if (n_ < kInline) {
      inline_[n_++] = head;
      return true;
    }
    if (heap_.size() == heap_.capacity()) return false;
    heap_.push_back(head);  // within the capacity reserved: never allocates
    return true;
  }

  template <typename F>
  void for_each(F&& f) const {
    for (uint64_t i = 0; i < n_; ++i) f(inline_[i]);
    for (uint64_t head : heap_) f(head);
  }

 private:
  uint64_t inline_[kInline];  // the first kInline heads (uninitialised beyond n_)
  uint64_t n_ = 0;
  std::vector<uint64_t> heap_;
};

}  // namespace pinlab
