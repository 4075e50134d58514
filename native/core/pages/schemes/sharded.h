// sharded: an exact pincount that a large folio keeps in per-thread shards with an exact
// non-zero summary (SNZI-style: Ellen, Lev, Luchangco and Moir, PODC 2007; the shards as
// Refcache's per-core counts, Clements et al., EuroSys 2013), whose pins share ONE reference on
// the folio's refcount (scheme_api.h, SharedRefPinStore): taken when the summary goes from zero
// to non-zero, given back when it returns to zero. A folio below kShardMinOrder is separate's:
// +1 on the refcount per pin and one exact count.
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
// A shard word holds a count (bits 0..29, at most shard_cap(order) = INT32_MAX / shards, so
// the folio holds at most pin_limit <= INT32_MAX pins) and kBusy (bit 30): a transition of its
// count between zero and non-zero in flight (count 0), or the whole folio frozen by a slow path
// (count kept). The summary word is a count of non-zero shards, or exactly kBusy while its own
// 0 -> non-zero transition takes the pins' reference (the summary's lock: one CAS on the
// refcount, bounded).
//   grab    on the thread's own shard: a CAS of count -> count + pins; only the 0 -> non-zero
//           transition writes the summary: shard 0 -> kBusy, summary + 1, shard -> pins. The
//           summary's own 0 -> 1 is summary 0 -> kBusy, take_ref(), summary -> 1 (a refused
//           take_ref: summary -> 0, shard -> 0, exactly as they were). No other line is written:
//           the refcount only on the summary's transitions.
//   release from the thread's own shard, else from any one shard holding all `pins`, by a CAS
//           that refuses below the count; count -> 0: shard -> kBusy, summary - 1, shard -> 0;
//           the summary's 1 -> 0 reports *last, and the page array gives the reference back.
//   slow    (a release spread over shards, an over-unpin, a grab no shard has room for): freeze
//           every shard in index order (kBusy kept with the count), decide on the exact total,
//           move the summary once by the number of shards that changed between zero and
//           non-zero (taking or reporting the reference as above), unfreeze with the new
//           counts. A refusal unfreezes the counts unchanged: no count is ever added and undone.
//           Freezing in index order cannot deadlock: a slow path waits only for transitions
//           (bounded) and for lower-indexed freezes; the summary's lock is only ever taken by a
//           thread holding a shard, and released after one CAS on the refcount.
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
  static constexpr int32_t kCountMask = kBusy - 1;  // a shard's (or the summary's) count bits

  static constexpr PinCost pin_cost(const SchemeParams&, uint32_t order, int64_t refs, bool) {
    // A sharded folio's pins share one reference (taken and given back by the summary's
    // transitions), so a pin adds nothing to the refcount itself.
    return {is_sharded(order) ? 0 : refs, refs};
  }
  static constexpr bool keeps_pincount(const SchemeParams&, uint32_t) { return true; }
  // SharedRefPinStore: the pins of a sharded folio hold one reference between them.
  static constexpr bool pins_share_ref(const SchemeParams&, uint32_t order) { return is_sharded(order); }
  static constexpr int64_t pin_limit(const SchemeParams&, uint32_t order) {
    return is_sharded(order) ? int64_t{shard_cap(order)} * shard_count(order) : INT32_MAX;
  }

  // ---- layout ----------------------------------------------------------------------------
  static constexpr bool is_sharded(uint32_t order) { return order >= kShardMinOrder; }
  // The largest power of two of shards whose lines fit after the summary's: 4 at order 7, 8 at
  // order 8, kMaxShards from order 9.
  static constexpr uint32_t shard_count_pow2(uint32_t order) {
    return uint32_t{1} << std::min<uint32_t>(order - 5, std::countr_zero(kMaxShards));
  }
  static constexpr uint32_t shard_count(uint32_t order) { return shard_count_pow2(order); }
  // The most pins one shard counts: the shards together never pass INT32_MAX (no refcount
  // bounds a sharded folio's pins any more).
  static constexpr int32_t shard_cap(uint32_t order) { return int32_t(INT32_MAX / shard_count(order)); }
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
  // Word c once no transition or freeze holds it busy: waits for the end of one in flight.
  // relaxed: a value to decide on; the CAS that acts on it orders what it must.
  [[gnu::noinline, gnu::cold]] static int32_t load_settled(std::atomic_ref<int32_t> c) {
    int32_t cur = c.load(std::memory_order_relaxed);
    while (cur & kBusy) {
      cpu_relax();
      cur = c.load(std::memory_order_relaxed);
    }
    return cur;
  }

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

  // ---- the summary: a count of non-zero shards, and the pins' one reference ------------------
  // Moves the summary up by delta (> 0 shards became non-zero; the caller holds them busy).
  // From 0 it takes the pins' reference first, under the summary's lock (0 -> kBusy): only one
  // thread ever takes it, and a refusal puts the summary back to 0 with no count changed.
  template <typename TakeRef>
  PINLAB_SHARD_INLINE static Reason summary_arrive(const PinWords& w, uint64_t head, int32_t delta,
                                                   std::memory_order mo, TakeRef& take_ref) {
    auto c = summary(w, head);
    int32_t cur = c.load(std::memory_order_relaxed);
    for (;;) {
      // Another first pin is taking the reference (the summary is busy only as kBusy alone).
      if (cur == kBusy) [[unlikely]] cur = load_settled(c);
      if (cur == 0) {
        // acquire: pairs with the release that ended the summary's last change (its reference
        // given back or taken before ours).
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        const Reason why = take_ref();
        // release (seq_cst from gup_fast, pairing with fork's read): publishes the reference
        // before the pins become visible; a refusal restores 0, so no count ever moved.
        c.store(why == Reason::kNone ? delta : 0,
                mo == std::memory_order_seq_cst ? mo : std::memory_order_release);
        return why;
      }
      // mo on success (seq_cst from gup_fast); relaxed on failure: nothing written.
      if (c.compare_exchange_weak(cur, cur + delta, mo, std::memory_order_relaxed)) return Reason::kNone;
    }
  }
  // Moves the summary down by delta (> 0 shards became zero; the caller holds them busy, and they
  // were counted, so the summary is a count >= delta and never busy here). Returns whether it
  // reached zero: the caller reports *last and the page array gives the reference back.
  PINLAB_SHARD_INLINE static bool summary_depart(const PinWords& w, uint64_t head, int32_t delta) {
    // acq_rel: release orders the unpinning thread's use of the pages before the count that
    // lets the reference go; acquire lets the thread that reaches zero (and gives the reference
    // back) see every other departure's.
    const int32_t before = summary(w, head).fetch_sub(delta, std::memory_order_acq_rel);
    return before == delta;
  }

  // ---- one shard, lock-free -------------------------------------------------------------
  // Adds pins to shard s: kNone; kPincountOverflow when the shard has no room (nothing written:
  // the caller tries the slow path); a take_ref refusal (nothing written).
  template <typename TakeRef>
  PINLAB_SHARD_INLINE static Reason try_grab_shard(const PinWords& w, uint64_t head, uint32_t order,
                                                   uint32_t s, int64_t pins, std::memory_order mo,
                                                   TakeRef& take_ref) {
    auto c = shard(w, head, s);
    int32_t cur = c.load(std::memory_order_relaxed);
    for (;;) {
      if (cur & kBusy) [[unlikely]] cur = load_settled(c);  // a transition or a freeze in flight
      if (int64_t{cur} + pins > shard_cap(order)) return Reason::kPincountOverflow;
      if (cur == 0) {
        // The 0 -> non-zero transition. acquire: pairs with the release that ended the last
        // transition or freeze of this shard, so our summary add follows its summary change.
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        const Reason why = summary_arrive(w, head, 1, mo, take_ref);
        // release: ends the transition (a refusal: the shard as it was, 0).
        c.store(why == Reason::kNone ? int32_t(pins) : 0, std::memory_order_release);
        return why;
      }
      // mo on success (seq_cst from gup_fast); relaxed on failure: nothing written.
      if (c.compare_exchange_weak(cur, int32_t(cur + pins), mo, std::memory_order_relaxed)) return Reason::kNone;
    }
  }

  // Takes pins from shard s unless it holds fewer (false: nothing written). *last: the
  // summary reached zero (the folio's last pins).
  PINLAB_SHARD_INLINE static bool try_release_shard(const PinWords& w, uint64_t head, uint32_t s, int64_t pins,
                                                    bool* last) {
    auto c = shard(w, head, s);
    int32_t cur = c.load(std::memory_order_relaxed);
    for (;;) {
      if (cur & kBusy) [[unlikely]] cur = load_settled(c);
      if (cur < pins) return false;
      if (cur == pins) {
        // The non-zero -> 0 transition. acquire: as in try_grab_shard.
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        *last = summary_depart(w, head, 1);
        c.store(0, std::memory_order_release);  // release: ends the transition
        return true;
      }
      // release: this unpin writes no refcount, so its use of the pages is published here; the
      // next change of the shard (an acquiring CAS) carries it on to the summary's acq_rel
      // step and the reference's give-back, so it happens before any free. relaxed on failure.
      if (c.compare_exchange_weak(cur, int32_t(cur - pins), std::memory_order_release,
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
        if (cur & kBusy) [[unlikely]] cur = load_settled(c);
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
  // The shards that became non-zero minus those that became zero.
  static int32_t summary_delta(uint32_t n, const int32_t* before, const int32_t* after) {
    int32_t delta = 0;
    for (uint32_t s = 0; s < n; ++s) delta += int32_t(after[s] != 0) - int32_t(before[s] != 0);
    return delta;
  }

  template <typename TakeRef>
  [[gnu::noinline]] static Reason slow_grab(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                                            std::memory_order mo, TakeRef& take_ref) {
    const uint32_t n = shard_count(order);
    const int32_t cap = shard_cap(order);
    int32_t before[kMaxShards], after[kMaxShards];
    freeze_all(w, head, n, before);
    int64_t room = 0;
    for (uint32_t s = 0; s < n; ++s) room += cap - before[s];
    if (room < pins) {
      thaw_all(w, head, n, before);  // unchanged: nothing written
      return Reason::kPincountOverflow;
    }
    int64_t need = pins;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t s = (my_shard(order) + k) % n;
      const int64_t put = std::min<int64_t>(need, cap - before[s]);
      after[s] = int32_t(before[s] + put);
      need -= put;
    }
    // One summary step for the whole grab, so maybe_pinned sees it at once (a grab never
    // makes a shard zero: delta >= 0).
    if (const int32_t delta = summary_delta(n, before, after); delta > 0) {
      if (const Reason why = summary_arrive(w, head, delta, mo, take_ref); why != Reason::kNone) {
        thaw_all(w, head, n, before);  // refused: unchanged
        return why;
      }
    }
    thaw_all(w, head, n, after);
    return Reason::kNone;
  }

  [[gnu::noinline]] static Reason slow_release(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                                               bool* last) {
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
    if (const int32_t delta = summary_delta(n, before, after); delta < 0) *last = summary_depart(w, head, -delta);
    thaw_all(w, head, n, after);
    return Reason::kNone;
  }

  // ---- SharedRefPinStore --------------------------------------------------------------------
  template <typename TakeRef>
  PINLAB_SHARD_INLINE static Reason grab_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                                              std::memory_order mo, TakeRef&& take_ref) {
    if (!is_sharded(order))
      return try_add_within(w.at(0, head), pins, mo) ? Reason::kNone : Reason::kPincountOverflow;
    if (pins > pin_limit({}, order)) return Reason::kPincountOverflow;  // no shard split holds it
    const Reason why = try_grab_shard(w, head, order, my_shard(order), pins, mo, take_ref);
    if (why != Reason::kPincountOverflow) [[likely]]
      return why;
    return slow_grab(w, head, order, pins, mo, take_ref);
  }

  PINLAB_SHARD_INLINE static Reason release_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                                                 bool* last) {
    if (!is_sharded(order)) {
      // relaxed: the refcount release that follows carries the ordering for the whole unpin.
      return try_add_within(w.at(0, head), -pins, std::memory_order_relaxed) ? Reason::kNone
                                                                             : Reason::kNotPinned;
    }
    if (pins > pin_limit({}, order)) return Reason::kNotPinned;
    const uint32_t n = shard_count(order);
    const uint32_t mine = my_shard(order);
    // Our own shard first, then any one shard holding all of them (pins taken on one thread and
    // given back on another, as I/O completions do), then the frozen folio.
    for (uint32_t k = 0; k < n; ++k)
      if (try_release_shard(w, head, (mine + k) % n, pins, last)) return Reason::kNone;
    return slow_release(w, head, order, pins, last);
  }

  static int64_t pins(const PinWords& w, uint64_t head, uint32_t order, std::memory_order mo) {
    if (!is_sharded(order)) return w.at(0, head).load(mo);
    int64_t sum = 0;
    for (uint32_t s = 0; s < shard_count(order); ++s) sum += shard(w, head, s).load(mo) & kCountMask;
    return sum;
  }

  // Unpin validation (optional member of OwnPinStore): the caller's own shard usually holds
  // the pins it releases, and then no other thread's line is read.
  PINLAB_SHARD_INLINE static bool holds_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t n) {
    if (!is_sharded(order)) return w.at(0, head).load(std::memory_order_relaxed) >= n;
    // relaxed: a snapshot; the releases that follow check again.
    if ((shard(w, head, my_shard(order)).load(std::memory_order_relaxed) & kCountMask) >= n) return true;
    return pins(w, head, order, std::memory_order_relaxed) >= n;
  }

  PINLAB_SHARD_INLINE static bool maybe_pinned(const PinWords& w, uint64_t head, uint32_t order, std::memory_order mo) {
    if (!is_sharded(order)) return w.at(0, head).load(mo) > 0;
    // kBusy alone (a first pin taking the reference) is not pinned yet: its count bits are 0.
    return (summary(w, head).load(mo) & kCountMask) > 0;
  }
};

static_assert(PinScheme<ShardedScheme>);
// A power of two of shards (a mask picks the thread's), each on a line of its own after the
// summary's, within the folio's own words.
static_assert((ShardedScheme::kMaxShards & (ShardedScheme::kMaxShards - 1)) == 0);
static_assert(ShardedScheme::shard_count_pow2(ShardedScheme::kShardMinOrder) + 1 <= (uint64_t{1} << ShardedScheme::kShardMinOrder) / ShardedScheme::kLineWords);
static_assert(SharedRefPinStore<ShardedScheme>);
// A shard's cap fits its count bits, and the shards together never pass INT32_MAX.
static_assert(ShardedScheme::shard_cap(ShardedScheme::kShardMinOrder) <= ShardedScheme::kCountMask);
static_assert(ShardedScheme::pin_limit({}, ShardedScheme::kShardMinOrder) <= INT32_MAX &&
              ShardedScheme::pin_limit({}, 30) <= INT32_MAX);
// The summary's lock is distinct from any count of shards.
static_assert(ShardedScheme::kMaxShards < ShardedScheme::kBusy);

}  // namespace pinlab
