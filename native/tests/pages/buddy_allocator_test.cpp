// The buddy allocator itself (pages/buddy_allocator.h): its per-order bitmaps against a plain
// ordered-set model, over seeded random sequences; zones far bigger than the tests use pages
// of (2^26 pages, an order-30 block), which must cost only what they touch.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "check.h"
#include "pages/buddy_allocator.h"

namespace pinlab::test {
namespace {

constexpr uint32_t kOrders = BuddyAllocator::kOrders;

// The reference: one ordered set of free heads per order, the same contract written plainly.
class ModelBuddy {
 public:
  ModelBuddy(uint64_t start, uint64_t end) : start_(start), end_(end) {}
  void add_whole_zone() {
    for (uint64_t pfn = start_; pfn < end_;) {
      uint32_t k = kOrders - 1;
      while ((pfn & ((uint64_t{1} << k) - 1)) != 0 || pfn + (uint64_t{1} << k) > end_) --k;
      free_[k].insert(pfn);
      free_pages_ += uint64_t{1} << k;
      pfn += uint64_t{1} << k;
    }
  }
  bool try_take(uint32_t order, uint64_t* head) {
    for (uint32_t k = order; k < kOrders; ++k)
      if (!free_[k].empty()) return *head = take(*free_[k].begin(), k, order), true;
    return false;
  }
  bool try_take_lowest(uint32_t order, uint64_t below, uint64_t* head) {
    uint32_t best_k = kOrders;
    uint64_t best = below;
    for (uint32_t k = order; k < kOrders; ++k)
      if (!free_[k].empty() && *free_[k].begin() < best && *free_[k].begin() + (uint64_t{1} << order) <= below)
        best = *free_[k].begin(), best_k = k;
    if (best_k == kOrders) return false;
    *head = take(best, best_k, order);
    return true;
  }
  void give(uint64_t head, uint32_t order) {
    free_pages_ += uint64_t{1} << order;
    for (; order + 1 < kOrders; ++order) {
      const uint64_t size = uint64_t{1} << order, buddy = head ^ size;
      if (buddy < start_ || buddy + size > end_ || free_[order].erase(buddy) == 0) break;
      head &= ~size;
    }
    free_[order].insert(head);
  }
  uint64_t free_pages() const { return free_pages_; }
  std::vector<std::pair<uint64_t, uint32_t>> blocks() const {
    std::vector<std::pair<uint64_t, uint32_t>> out;
    for (uint32_t k = 0; k < kOrders; ++k)
      for (uint64_t h : free_[k]) out.emplace_back(h, k);
    return out;
  }

 private:
  uint64_t take(uint64_t block, uint32_t k, uint32_t order) {
    free_[k].erase(block);
    while (k > order) --k, free_[k].insert(block + (uint64_t{1} << k));
    free_pages_ -= uint64_t{1} << order;
    return block;
  }
  uint64_t start_, end_;
  std::set<uint64_t> free_[kOrders];
  uint64_t free_pages_ = 0;
};

std::vector<std::pair<uint64_t, uint32_t>> blocks_of(const BuddyAllocator& z) {
  std::vector<std::pair<uint64_t, uint32_t>> out;
  z.for_each_free_block([&](uint64_t head, uint32_t order) { out.emplace_back(head, order); });
  return out;
}

// One seeded run over the zone [start, end): every result, free_pages and (every 64 ops and at
// the end) the whole free-block listing must match the model's.
void differential_run(uint64_t start, uint64_t end, uint64_t seed, int ops) {
  BuddyAllocator z(start, end);
  ModelBuddy m(start, end);
  z.add_whole_zone();
  m.add_whole_zone();
  CHECK(blocks_of(z) == m.blocks());
  std::mt19937_64 rng(seed);
  std::vector<std::pair<uint64_t, uint32_t>> held;
  const uint32_t max_order = std::min<uint32_t>(kOrders - 1, uint32_t(std::bit_width(end - start)));
  bool same = true;
  for (int i = 0; i < ops && same; ++i) {
    const uint64_t what = rng() % 10;
    // Small orders mostly, as folios are; now and then a large one.
    const uint32_t order = rng() % 8 == 0 ? uint32_t(rng() % (max_order + 1)) : uint32_t(rng() % 4);
    if (what < 4 || held.empty()) {
      uint64_t a = ~uint64_t{0}, b = ~uint64_t{0};
      const bool ga = z.try_take(order, &a), gb = m.try_take(order, &b);
      same = ga == gb && (!ga || a == b);
      if (ga) held.emplace_back(a, order);
    } else if (what < 6) {
      const uint64_t below = start + rng() % (end - start + 1);
      uint64_t a = ~uint64_t{0}, b = ~uint64_t{0};
      const bool ga = z.try_take_lowest(order, below, &a), gb = m.try_take_lowest(order, below, &b);
      same = ga == gb && (!ga || (a == b && a < below));
      if (ga) held.emplace_back(a, order);
    } else {
      const size_t at = size_t(rng() % held.size());
      std::swap(held[at], held.back());
      z.give(held.back().first, held.back().second);
      m.give(held.back().first, held.back().second);
      held.pop_back();
    }
    same = same && z.free_pages() == m.free_pages();
    if (i % 64 == 0) same = same && blocks_of(z) == m.blocks();
  }
  CHECK(same);
  CHECK(blocks_of(z) == m.blocks());
  // Everything back: the zone is whole again.
  for (const auto& [h, k] : held) z.give(h, k), m.give(h, k);
  CHECK_EQ(z.free_pages(), end - start);
  CHECK(blocks_of(z) == m.blocks());
}

}  // namespace

TEST(buddy_allocator_matches_an_ordered_set_model) {
  // Aligned and unaligned zones (a movable zone starts wherever the normal one ends), one
  // smaller than a summary word, some spanning several summary levels.
  const std::pair<uint64_t, uint64_t> zones[] = {
      {0, 1024}, {0, 1000}, {3, 67}, {1000, 5000}, {4096, 4096 + 3 * 64 * 64 + 17},
      {0, uint64_t{1} << 18}, {12345, 12345 + 300000}};
  uint64_t seed = 1;
  for (const auto& [start, end] : zones)
    for (int run = 0; run < 3; ++run) differential_run(start, end, seed++, 4000);
}

// try_take_lowest hands out only pages wholly below `below`, also when `below` is not aligned
// to the order, and a block that straddles it is not split for it.
TEST(buddy_allocator_take_lowest_stays_below) {
  BuddyAllocator z(0, 16);
  z.add_whole_zone();
  uint64_t h = 99;
  CHECK(!z.try_take_lowest(3, 5, &h));  // pages 0..7 do not all lie below 5
  CHECK(!z.try_take_lowest(3, 7, &h));
  CHECK_EQ(z.free_pages(), uint64_t{16});
  CHECK(z.try_take_lowest(2, 5, &h));  // 0..3 do
  CHECK_EQ(h, uint64_t{0});
  CHECK(z.try_take_lowest(3, 16, &h));  // 4..7 are free but of order 2: the next order-3 block
  CHECK_EQ(h, uint64_t{8});
  CHECK(!z.try_take_lowest(2, 7, &h));
  CHECK(z.try_take_lowest(2, 8, &h));
  CHECK_EQ(h, uint64_t{4});
  // A corrupt order or a head outside the zone is ignored, never written past the bitmaps.
  z.give(0, BuddyAllocator::kOrders);
  z.give(16, 0);
  CHECK_EQ(z.free_pages(), uint64_t{0});
}

TEST(buddy_allocator_big_zone_is_cheap) {
  // 2^26 pages: the bitmaps (16 MiB, mapped lazily) are touched only where blocks come and go.
  const uint64_t n = uint64_t{1} << 26;
  BuddyAllocator z(0, n);
  CHECK_EQ(z.bitmap_bytes(), BuddyAllocator::bitmap_bytes(0, n));
  CHECK(z.bitmap_bytes() < n / 3);  // about a quarter of a byte a page
  z.add_whole_zone();
  CHECK_EQ(z.free_pages(), n);
  std::vector<std::pair<uint64_t, uint32_t>> held;
  for (uint32_t order : {0u, 9u, 0u, 3u, 20u, 0u}) {
    uint64_t h = 0;
    CHECK(z.try_take(order, &h));
    CHECK_EQ(h & ((uint64_t{1} << order) - 1), uint64_t(0));
    held.emplace_back(h, order);
  }
  uint64_t low = 0;
  CHECK(z.try_take_lowest(0, n, &low));  // the lowest page left: right after the first ones
  held.emplace_back(low, 0);
  uint64_t high = 0;
  CHECK(!z.try_take_lowest(25, 1 << 20, &high));  // nothing that large down there
  for (const auto& [h, k] : held) z.give(h, k);
  CHECK_EQ(z.free_pages(), n);
  const auto blocks = blocks_of(z);
  CHECK_EQ(blocks.size(), size_t(1));
  CHECK(blocks.size() == 1 && blocks[0].first == 0 && blocks[0].second == 26);
}

TEST(buddy_allocator_order_30_block) {
  // The largest order: a zone with exactly one order-30 block, and one with it after a tail.
  for (const uint64_t start : {uint64_t{0}, uint64_t{1} << 30}) {
    const uint64_t end = start + (uint64_t{1} << 30);
    BuddyAllocator z(start, end);
    z.add_whole_zone();
    CHECK_EQ(z.free_pages(), uint64_t{1} << 30);
    uint64_t h = 0;
    CHECK(z.try_take(30, &h));
    CHECK_EQ(h, start);
    CHECK_EQ(z.free_pages(), uint64_t(0));
    uint64_t none = 0;
    CHECK(!z.try_take(0, &none));
    z.give(h, 30);
    CHECK_EQ(z.free_pages(), uint64_t{1} << 30);
    CHECK(z.try_take_lowest(30, end, &h));
    CHECK_EQ(h, start);
    z.give(h, 30);
    // Split all the way down and merged all the way up again.
    CHECK(z.try_take(0, &h));
    CHECK_EQ(h, start);
    CHECK_EQ(blocks_of(z).size(), size_t(30));
    z.give(h, 0);
    const auto blocks = blocks_of(z);
    CHECK(blocks.size() == 1 && blocks[0].first == start && blocks[0].second == 30);
  }
}

TEST(buddy_allocator_take_give_timing_at_2_24_pages) {
  // Printed, not asserted: 2^21 single-page takes from a whole 2^24-page zone (lowest first,
  // splitting), then the same pages given back in a shuffled order (merging as buddies meet).
  const uint64_t n = uint64_t{1} << 24;
  const uint64_t m = uint64_t{1} << 21;
  BuddyAllocator z(0, n);
  z.add_whole_zone();
  std::vector<uint64_t> heads(m);
  bool took = true;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < m; ++i) took = z.try_take(0, &heads[i]) && took;
  const auto t1 = std::chrono::steady_clock::now();
  CHECK(took);
  std::shuffle(heads.begin(), heads.end(), std::mt19937_64(7));
  const auto t2 = std::chrono::steady_clock::now();
  for (uint64_t h : heads) z.give(h, 0);
  const auto t3 = std::chrono::steady_clock::now();
  CHECK_EQ(z.free_pages(), n);
  CHECK_EQ(blocks_of(z).size(), size_t(1));
  auto ns = [&](auto a, auto b) {
    return std::chrono::duration<double, std::nano>(b - a).count() / double(m);
  };
  std::printf("    buddy allocator at 2^24 pages: take %.1f ns, give %.1f ns (shuffled, merging)\n",
              ns(t0, t1), ns(t2, t3));
}

}  // namespace pinlab::test
