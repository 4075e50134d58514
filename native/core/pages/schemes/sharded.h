// sharded: +1 on the refcount per pin, as separate, and an exact pincount that a large folio
// keeps in per-thread shards with an exact non-zero summary (SNZI-style: Ellen, Lev, Luchangco
// and Moir, PODC 2007; the shards as Refcache's per-core counts, Clements et al., EuroSys 2013).
//
// Store: one int32 word per page (PincountHome::kOwn, kPinWords = 1: the same 4 bytes a page as
// separate's side array). A folio below kShardMinOrder keeps its exact pincount in its head's
// word, as separate does. A folio of order >= kShardMinOrder spans at least 8 cache lines of
// words, of which the head's word is the only one any other scheme uses: its head word becomes
// the *summary* (the number of shards whose count is non-zero) and the first word of each
// following line of the folio a *shard* (a power of two of them: 4 at order 7, 8 at order 8,
// kMaxShards = 16 from order 9). So the shard state costs no memory
// at all, and exists exactly for the folios large enough to be shared by many pinning threads.
// Every word of an unpinned folio is 0 (the page array zeroes a freed folio's words; split and
// make-folio only run on unpinned folios, whose tail words are then a plain 0 pincount).
//
// A shard word holds a count (bits 0..29) and kBusy (bit 30): a transition of its count between
// zero and non-zero in flight (count 0), or the whole folio frozen by a slow path (count kept).
//   grab    on the thread's own shard: a CAS of count -> count + pins; only the 0 -> non-zero
//           transition writes the summary: shard 0 -> kBusy, summary + 1, shard -> pins.
//   release from the thread's own shard, else from any one shard holding all `pins`, by a CAS
//           that refuses below the count; count -> 0: shard -> kBusy, summary - 1, shard -> 0.
//   slow    (a release spread over shards, an over-unpin, a grab no shard has room for): freeze
//           every shard in index order (kBusy kept with the count), decide on the exact total,
//           move the summary once by the number of shards that changed between zero and
//           non-zero, unfreeze with the new counts. A refusal unfreezes the counts unchanged:
//           no count is ever added and undone. Freezing in index order cannot deadlock: a
//           slow path waits only for transitions (bounded) and for lower-indexed freezes.
// Hence the summary equals the number of non-zero shards whenever no shard is busy, and
//   maybe_pinned = summary > 0: exact and linearizable (a pin counts from its summary increment
//   or its shard CAS, an unpin stops counting at its summary decrement or its shard CAS);
//   pins = the sum of the shards' counts (a snapshot, as every pincount read).
// A thread's shard: a registration index taken on its first pin (a process-wide counter),
// modulo the folio's shard count; threads beyond kMaxShards share shards, still exactly.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <cstdint>
#include <thread>

#include "pages/schemes/scheme_api.h"

// The per-page path calls a grab and a release per subpage: their fast paths must not be calls.
#define PINLAB_SHARD_INLINE [[gnu::always_inline]] inline

namespace pinlab {

struct ShardedScheme {
  static constexpr std::string_view kName = "sharded";
  static constexpr std::string_view kSummary =
      "+1 on the refcount; large folios count pins in per-thread shards with an exact non-zero summary";
  static constexpr PincountHome kPincount = PincountHome::kOwn;
  static constexpr bool kReadPinsVisible = true;
  static constexpr uint32_t kPinWords = 1;

  static constexpr uint32_t kLineWords = 64 / sizeof(int32_t);  // words per cache line
  static constexpr uint32_t kShardMinOrder = 7;  // 128 pages, 8 lines: summary + 4 shards
  static constexpr uint32_t kMaxShards = 16;     // from order 9 (2 MiB) up
  static constexpr int32_t kBusy = int32_t{1} << 30;
  static constexpr int32_t kShardMax = kBusy - 1;  // the most pins one shard counts

  static constexpr PinCost pin_cost(const SchemeParams&, uint32_t, int64_t refs, bool) {
    return {refs, refs};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return true; }

  // ---- layout ----------------------------------------------------------------------------
  static constexpr bool is_sharded(uint32_t order) { return order >= kShardMinOrder; }
  // The largest power of two of shards whose lines fit after the summary's: 4 at order 7, 8 at
  // order 8, kMaxShards from order 9.
  static constexpr uint32_t shard_count_pow2(uint32_t order) {
    return uint32_t{1} << std::min<uint32_t>(order - 5, std::countr_zero(kMaxShards));
  }
  static constexpr uint32_t shard_count(uint32_t order) { return shard_count_pow2(order); }
  static std::atomic_ref<int32_t> summary(const PinWords& w, uint64_t head) { return w.at(0, head); }
  static std::atomic_ref<int32_t> shard(const PinWords& w, uint64_t head, uint32_t s) {
    return w.at(0, head + uint64_t{kLineWords} * (s + 1));
  }
  // This thread's registration index, taken on its first pin of a sharded folio from a
  // process-wide counter (threads registered one after another get different shards). Kept
  // +1 in a zero-initialised initial-exec TLS word: one load, no guard, no __tls_get_addr.
  static inline std::atomic<uint32_t> next_thread_{0};
  [[gnu::tls_model("initial-exec")]] static inline thread_local uint32_t thread_index_plus1_ = 0;
  [[gnu::noinline, gnu::cold]] static uint32_t register_thread() {
    // relaxed: only uniqueness matters, not order.
    thread_index_plus1_ = next_thread_.fetch_add(1, std::memory_order_relaxed) + 1;
    return thread_index_plus1_;
  }
  PINLAB_SHARD_INLINE static uint32_t thread_index() {
    const uint32_t v = thread_index_plus1_;
    return (v != 0 ? v : register_thread()) - 1;
  }
  PINLAB_SHARD_INLINE static uint32_t my_shard(uint32_t order) {
    return thread_index() & (shard_count(order) - 1);
  }
  [[gnu::noinline, gnu::cold]] static void cpu_relax() { std::this_thread::yield(); }

  // ---- small folios: one exact count in the head's word, as separate's side array -----------
  PINLAB_SHARD_INLINE static bool try_add_within(std::atomic_ref<int32_t> c, int64_t delta, std::memory_order mo) {
    int32_t cur = c.load(std::memory_order_relaxed);
    do {
      const int64_t next = int64_t{cur} + delta;
      if (next < 0 || next > INT32_MAX) return false;  // refused: nothing written
      // mo on success (seq_cst from gup_fast); relaxed on failure: nothing written.
    } while (!c.compare_exchange_weak(cur, int32_t(cur + delta), mo, std::memory_order_relaxed));
    return true;
  }

  // ---- one shard, lock-free -------------------------------------------------------------
  // Adds pins to shard s unless it has no room (false: nothing written).
  PINLAB_SHARD_INLINE static bool try_grab_shard(const PinWords& w, uint64_t head, uint32_t s, int64_t pins,
                             std::memory_order mo) {
    auto c = shard(w, head, s);
    int32_t cur = c.load(std::memory_order_relaxed);
    for (;;) {
      if (cur & kBusy) {  // a transition or a freeze in flight: wait for its end
        cpu_relax();
        cur = c.load(std::memory_order_relaxed);
        continue;
      }
      if (int64_t{cur} + pins > kShardMax) return false;
      if (cur == 0) {
        // The 0 -> non-zero transition. acquire: pairs with the release that ended the last
        // transition or freeze of this shard, so our summary add follows its summary change.
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        summary(w, head).fetch_add(1, mo);  // mo: seq_cst from gup_fast (pairs with fork's read)
        c.store(int32_t(pins), std::memory_order_release);  // release: ends the transition
        return true;
      }
      // mo on success (seq_cst from gup_fast); relaxed on failure: nothing written.
      if (c.compare_exchange_weak(cur, int32_t(cur + pins), mo, std::memory_order_relaxed)) return true;
    }
  }

  // Takes pins from shard s unless it holds fewer (false: nothing written).
  PINLAB_SHARD_INLINE static bool try_release_shard(const PinWords& w, uint64_t head, uint32_t s, int64_t pins) {
    auto c = shard(w, head, s);
    int32_t cur = c.load(std::memory_order_relaxed);
    for (;;) {
      if (cur & kBusy) {
        cpu_relax();
        cur = c.load(std::memory_order_relaxed);
        continue;
      }
      if (cur < pins) return false;
      if (cur == pins) {
        // The non-zero -> 0 transition. acquire: as in try_grab_shard.
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        // relaxed: the refcount release that follows carries the unpin's ordering; the
        // summary's own modification order is what maybe_pinned reads.
        summary(w, head).fetch_sub(1, std::memory_order_relaxed);
        c.store(0, std::memory_order_release);  // release: ends the transition
        return true;
      }
      // relaxed: counting only; the refcount release that follows orders the unpin.
      if (c.compare_exchange_weak(cur, int32_t(cur - pins), std::memory_order_relaxed,
                                  std::memory_order_relaxed))
        return true;
    }
  }

  // ---- the slow path: the whole folio frozen ---------------------------------------------
  // Freezes every shard (in index order) and returns their counts.
  static void freeze_all(const PinWords& w, uint64_t head, uint32_t n, int32_t* counts) {
    for (uint32_t s = 0; s < n; ++s) {
      auto c = shard(w, head, s);
      int32_t cur = c.load(std::memory_order_relaxed);
      for (;;) {
        if (cur & kBusy) {
          cpu_relax();
          cur = c.load(std::memory_order_relaxed);
          continue;
        }
        // acquire: pairs with the release that ended the shard's last change.
        if (c.compare_exchange_weak(cur, cur | kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          break;
      }
      counts[s] = cur;
    }
  }
  static void thaw_all(const PinWords& w, uint64_t head, uint32_t n, const int32_t* counts) {
    // release: publishes the new counts (and the summary change before them) to the next
    // thread that changes each shard.
    for (uint32_t s = 0; s < n; ++s) shard(w, head, s).store(counts[s], std::memory_order_release);
  }
  // Moves the summary by the shards that became non-zero minus those that became zero: one
  // atomic step, so maybe_pinned sees the whole call at once.
  static void move_summary(const PinWords& w, uint64_t head, uint32_t n, const int32_t* before,
                           const int32_t* after, std::memory_order mo) {
    int32_t delta = 0;
    for (uint32_t s = 0; s < n; ++s) delta += int32_t(after[s] != 0) - int32_t(before[s] != 0);
    if (delta != 0) summary(w, head).fetch_add(delta, mo);
  }

  [[gnu::noinline]] static Reason slow_grab(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                          std::memory_order mo) {
    const uint32_t n = shard_count(order);
    int32_t before[kMaxShards], after[kMaxShards];
    freeze_all(w, head, n, before);
    int64_t room = 0;
    for (uint32_t s = 0; s < n; ++s) room += kShardMax - before[s];
    if (room < pins) {
      thaw_all(w, head, n, before);  // unchanged: nothing written
      return Reason::kPincountOverflow;
    }
    int64_t need = pins;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t s = (my_shard(order) + k) % n;
      const int64_t put = std::min<int64_t>(need, kShardMax - before[s]);
      after[s] = int32_t(before[s] + put);
      need -= put;
    }
    move_summary(w, head, n, before, after, mo);
    thaw_all(w, head, n, after);
    return Reason::kNone;
  }

  [[gnu::noinline]] static Reason slow_release(const PinWords& w, uint64_t head, uint32_t order, int64_t pins) {
    const uint32_t n = shard_count(order);
    int32_t before[kMaxShards], after[kMaxShards];
    freeze_all(w, head, n, before);
    int64_t total = 0;
    for (uint32_t s = 0; s < n; ++s) total += before[s];
    if (total < pins) {
      thaw_all(w, head, n, before);  // unchanged: nothing written
      return Reason::kNotPinned;
    }
    int64_t need = pins;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t s = (my_shard(order) + k) % n;
      const int64_t take = std::min<int64_t>(need, before[s]);
      after[s] = int32_t(before[s] - take);
      need -= take;
    }
    // relaxed: the refcount release that follows orders the unpin.
    move_summary(w, head, n, before, after, std::memory_order_relaxed);
    thaw_all(w, head, n, after);
    return Reason::kNone;
  }

  // ---- OwnPinStore ----------------------------------------------------------------------
  PINLAB_SHARD_INLINE static Reason grab_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                          std::memory_order mo) {
    if (!is_sharded(order))
      return try_add_within(w.at(0, head), pins, mo) ? Reason::kNone : Reason::kPincountOverflow;
    if (try_grab_shard(w, head, my_shard(order), pins, mo)) return Reason::kNone;
    return slow_grab(w, head, order, pins, mo);
  }

  PINLAB_SHARD_INLINE static Reason release_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t pins) {
    if (!is_sharded(order)) {
      // relaxed: the refcount release that follows carries the ordering for the whole unpin.
      return try_add_within(w.at(0, head), -pins, std::memory_order_relaxed) ? Reason::kNone
                                                                             : Reason::kNotPinned;
    }
    const uint32_t n = shard_count(order);
    const uint32_t mine = my_shard(order);
    // Our own shard first, then any one shard holding all of them (pins taken on one thread and
    // given back on another, as I/O completions do), then the frozen folio.
    for (uint32_t k = 0; k < n; ++k)
      if (try_release_shard(w, head, (mine + k) % n, pins)) return Reason::kNone;
    return slow_release(w, head, order, pins);
  }

  static int64_t pins(const PinWords& w, uint64_t head, uint32_t order, std::memory_order mo) {
    if (!is_sharded(order)) return w.at(0, head).load(mo);
    int64_t sum = 0;
    for (uint32_t s = 0; s < shard_count(order); ++s) sum += shard(w, head, s).load(mo) & kShardMax;
    return sum;
  }

  // Unpin validation (optional member of OwnPinStore): the caller's own shard usually holds
  // the pins it releases, and then no other thread's line is read.
  PINLAB_SHARD_INLINE static bool holds_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t n) {
    if (!is_sharded(order)) return w.at(0, head).load(std::memory_order_relaxed) >= n;
    // relaxed: a snapshot; the releases that follow check again.
    if ((shard(w, head, my_shard(order)).load(std::memory_order_relaxed) & kShardMax) >= n) return true;
    return pins(w, head, order, std::memory_order_relaxed) >= n;
  }

  PINLAB_SHARD_INLINE static bool maybe_pinned(const PinWords& w, uint64_t head, uint32_t order, std::memory_order mo) {
    if (!is_sharded(order)) return w.at(0, head).load(mo) > 0;
    return summary(w, head).load(mo) > 0;
  }
};

static_assert(PinScheme<ShardedScheme>);
// A power of two of shards (a mask picks the thread's), each on a line of its own after the
// summary's, within the folio's own words.
static_assert((ShardedScheme::kMaxShards & (ShardedScheme::kMaxShards - 1)) == 0);
static_assert(ShardedScheme::shard_count_pow2(ShardedScheme::kShardMinOrder) + 1 <= (uint64_t{1} << ShardedScheme::kShardMinOrder) / ShardedScheme::kLineWords);
// The shards of a sharded folio hold any pincount a refcount can (P <= R <= INT32_MAX).
static_assert(int64_t{ShardedScheme::kShardMax} * ShardedScheme::shard_count_pow2(ShardedScheme::kShardMinOrder) >= INT32_MAX);

}  // namespace pinlab
