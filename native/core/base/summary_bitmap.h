// A bitmap with 64-ary summary levels over words someone else owns: bit i of level j+1 is set
// exactly when word i of level j is non-zero, up to a top level of one word. Setting, clearing
// and "the lowest set bit at or after x" cost O(log64 bits) word operations, and none of them
// allocates: the words are laid out once (words_for, attach) and only flipped afterwards.
//
// Not thread-safe: its owner serialises access (the buddy allocator's mutex).
#pragma once

#include <bit>
#include <cstdint>

namespace pinlab {

class SummaryBitmap {
 public:
  static constexpr uint32_t kMaxLevels = 7;  // 64^7 = 2^42 bits
  static constexpr uint64_t kNone = ~uint64_t{0};
  static constexpr uint64_t kMaxBits = uint64_t{1} << (6 * kMaxLevels);
  static_assert(kMaxBits >= (uint64_t{1} << 32), "room for every page of the largest array");

  // The words a bitmap of `bits` bits needs, summaries included (bits <= kMaxBits).
  static constexpr uint64_t words_for(uint64_t bits) {
    uint64_t total = 0;
    uint64_t words = words_of(bits);
    for (;;) {
      total += words;
      if (words <= 1) return total;
      words = words_of(words);
    }
  }

  // Lays a bitmap of `bits` bits over `words` (words_for(bits) of them, zeroed: all clear).
  void attach(uint64_t* words, uint64_t bits) {
    bits_ = bits;
    levels_ = 0;
    uint64_t n = bits;
    for (;;) {
      level_[levels_] = words;
      level_bits_[levels_] = n;
      ++levels_;
      words += words_of(n);
      if (words_of(n) <= 1) break;
      n = words_of(n);
    }
  }

  uint64_t bits() const { return bits_; }
  bool any() const noexcept { return bits_ != 0 && level_[levels_ - 1][0] != 0; }
  bool test(uint64_t i) const noexcept { return (level_[0][i >> 6] >> (i & 63)) & 1; }

  // Sets bit i (i < bits()), and the summary bits of the words it makes non-zero.
  void set(uint64_t i) noexcept {
    for (uint32_t j = 0; j < levels_; ++j, i >>= 6) {
      uint64_t& w = level_[j][i >> 6];
      const bool was_empty = w == 0;
      w |= bit(i);
      if (!was_empty) return;  // the levels above already say this word is non-zero
    }
  }

  // Clears bit i (i < bits()), and the summary bits of the words it leaves empty.
  void clear(uint64_t i) noexcept {
    for (uint32_t j = 0; j < levels_; ++j, i >>= 6) {
      uint64_t& w = level_[j][i >> 6];
      w &= ~bit(i);
      if (w != 0) return;  // still non-zero: the levels above stay as they are
    }
  }

  // The lowest set bit at or after `from`, or kNone.
  uint64_t find_next(uint64_t from) const noexcept {
    if (from >= bits_) return kNone;
    uint64_t i = from;
    uint32_t j = 0;
    // Climb while the rest of the word holding position i at level j is empty.
    for (;;) {
      const uint64_t w = level_[j][i >> 6] & (~uint64_t{0} << (i & 63));
      if (w != 0) {
        i = (i & ~uint64_t{63}) | uint64_t(std::countr_zero(w));
        break;
      }
      if (j + 1 == levels_) return kNone;
      i = (i >> 6) + 1;  // the next word of level j, as a position of level j+1
      ++j;
      if (i >= level_bits_[j]) return kNone;
    }
    // Descend: each summary bit names a non-zero word one level down; take its lowest bit.
    while (j > 0) {
      --j;
      i = (i << 6) | uint64_t(std::countr_zero(level_[j][i]));
    }
    return i;
  }

 private:
  static constexpr uint64_t words_of(uint64_t bits) { return (bits + 63) / 64; }
  static constexpr uint64_t bit(uint64_t i) { return uint64_t{1} << (i & 63); }

  uint64_t* level_[kMaxLevels] = {};
  uint64_t level_bits_[kMaxLevels] = {};
  uint64_t bits_ = 0;
  uint32_t levels_ = 0;
};

}  // namespace pinlab
