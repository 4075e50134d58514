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
// A shard word holds a count (bits 0..28, at most shard_cap(order) = INT32_MAX / shards, so
// the folio holds at most pin_limit <= INT32_MAX pins), kLazy (bit 29, lazy mode, below) and
// kBusy (bit 30): a transition of its
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
//
// Lazy mode (percpu_ref's mode switch; scheme_api.h, has_lazy_pins_of). The summary's exact
// answer costs a write of its line on every transition, and a bvec pin+unpin of a shared folio
// is two transitions per call: that line then serialises the threads as one counter would. So
// a folio whose pins two threads hold at once (a shard's 0 -> non-zero transition that finds
// the summary non-zero) goes lazy: with every shard frozen, the summary becomes exactly kLazy
// (bit 29) and every shard takes the bit too. A lazy shard is never 0, so it has no
// transitions: a grab or release is one CAS of the thread's own shard (its mode bit in the
// expected value, so a mode change, which freezes every shard, makes a stale CAS fail), and no
// shared line is written at all. The pins' one reference is the mode's while it lasts, even with
// no pin left, so:
//   maybe_pinned: a shard read non-zero and not frozen is a pin held at that moment (counts are
//           never negative); if none is, every shard is frozen and the answer read from all of
//           them at once (an exact snapshot; the mode stays);
//   settle_lazy: every shard frozen, the summary set to the number of non-zero shards, the bit
//           cleared; *last if none is (the mode's reference goes back). The page array settles
//           where the refcount must be exact (scheme_ops.h, lazy pins): the put that leaves one
//           reference, the unpin that leaves the mode's reference alone, a freeze, a split.
// The mode changes only with every shard frozen, so it never changes under a transition, a slow
// path (which keeps each shard's bit) or the other mode change.
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
  // Lazy (percpu) mode, in the summary and in every shard: the summary counts nothing, the pins'
  // one reference is the mode's, and a shard moves between zero and non-zero without a
  // transition (header comment).
  static constexpr int32_t kLazy = int32_t{1} << 29;
  static constexpr int32_t kCountMask = kLazy - 1;  // a shard's (or the summary's) count bits

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
                                                   std::memory_order mo, TakeRef& take_ref,
                                                   bool* shared = nullptr) {
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
      if (c.compare_exchange_weak(cur, cur + delta, mo, std::memory_order_relaxed)) {
        if (shared != nullptr) *shared = true;  // other shards held pins: the folio is shared
        return Reason::kNone;
      }
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
  // the caller tries the slow path); a take_ref refusal (nothing written); kPageFree when the
  // folio no longer has the shape its caller read (nothing written).
  template <typename TakeRef, typename ShapeHolds>
  PINLAB_SHARD_INLINE static Reason try_grab_shard(const PinWords& w, uint64_t head, uint32_t order,
                                                   uint32_t s, int64_t pins, std::memory_order mo,
                                                   TakeRef& take_ref, ShapeHolds& shape_holds) {
    auto c = shard(w, head, s);
    int32_t cur = c.load(std::memory_order_relaxed);
    for (;;) {
      if (cur & kBusy) [[unlikely]] cur = load_settled(c);  // a transition or a freeze in flight
      if (int64_t{cur & kCountMask} + pins > shard_cap(order)) return Reason::kPincountOverflow;
      // The shape, asked before any word is written. A pin's caller vouches for its folio, but a
      // hostile one may pin a folio nobody holds while another thread splits it (a wait above
      // on a split's settle would widen that window), and these words are other pages' then.
      // One load of the head's order byte, which the caller has just read.
      if (!shape_holds()) [[unlikely]] return Reason::kPageFree;
      if (cur == 0) {
        // Another first pin is taking the reference: wait for it before holding our shard busy
        // (a wait while holding it would keep a word of a folio being split busy for as long),
        // then decide again from the top, the shape included.
        if (summary(w, head).load(std::memory_order_relaxed) == kBusy) [[unlikely]] {
          (void)load_settled(summary(w, head));
          cur = c.load(std::memory_order_relaxed);
          continue;
        }
        // The 0 -> non-zero transition (never in lazy mode: a lazy shard is never 0). acquire:
        // pairs with the release that ended the last transition or freeze of this shard, so our
        // summary add follows its summary change.
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        bool shared = false;
        const Reason why = summary_arrive(w, head, 1, mo, take_ref, &shared);
        // release: ends the transition (a refusal: the shard as it was, 0).
        c.store(why == Reason::kNone ? int32_t(pins) : 0, std::memory_order_release);
        // Another thread's pins were already there: the folio is shared, and its pins would
        // write the summary on every transition. Go lazy.
        if (shared) [[unlikely]] go_lazy(w, head, order);
        return why;
      }
      // A non-zero shard, or any lazy one (its mode bit in the expected value: a mode change,
      // which freezes every shard, makes this CAS fail). Such a shard keeps the folio from being
      // split, unless the folio was split before we read it and the word is another page's now:
      // hence the shape check above (one load of the head's order byte, which the caller has
      // just read). mo on success (seq_cst from gup_fast); relaxed on failure: nothing written.
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
      if ((cur & kCountMask) < pins) return false;
      if (cur == pins) {  // (never in lazy mode: the mode bit stays with a lazy count of 0)
        // The non-zero -> 0 transition. acquire: as in try_grab_shard.
        if (!c.compare_exchange_weak(cur, kBusy, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        *last = summary_depart(w, head, 1);
        c.store(0, std::memory_order_release);  // release: ends the transition
        return true;
      }
      // seq_cst (a release, and the store side of lazy mode's Dekker pair with a put: the page
      // array reads the refcount after this, a put reads the mode after its decrement; one of
      // them settles the folio): this unpin writes no refcount, so its use of the pages is
      // published here; the next change of the shard (an acquiring CAS) carries it on to the
      // summary's acq_rel step and the reference's give-back, so it happens before any free.
      // relaxed on failure.
      if (c.compare_exchange_weak(cur, int32_t(cur - pins), std::memory_order_seq_cst,
                                  std::memory_order_relaxed))
        return true;
    }
  }

  // ---- the slow path: the whole folio frozen ---------------------------------------------
  // Freezes every shard (in index order) and returns their counts.
  static void freeze_all(const PinWords& w, uint64_t head, uint32_t n, int32_t* counts,
                         std::memory_order mo = std::memory_order_acquire) {
    for (uint32_t s = 0; s < n; ++s) {
      auto c = shard(w, head, s);
      int32_t cur = c.load(std::memory_order_relaxed);
      for (;;) {
        if (cur & kBusy) [[unlikely]] cur = load_settled(c);
        // acquire: pairs with the release that ended the shard's last change (seq_cst where the
        // caller's read must be, as fork's maybe-pinned).
        if (c.compare_exchange_weak(cur, cur | kBusy, mo, std::memory_order_relaxed))
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
  // The shards that became non-zero minus those that became zero (0 in lazy mode: a lazy shard,
  // its mode bit set, is never 0, and the summary counts nothing).
  static int32_t summary_delta(uint32_t n, const int32_t* before, const int32_t* after) {
    int32_t delta = 0;
    for (uint32_t s = 0; s < n; ++s) delta += int32_t(after[s] != 0) - int32_t(before[s] != 0);
    return delta;
  }

  template <typename TakeRef, typename ShapeHolds>
  [[gnu::noinline]] static Reason slow_grab(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                                            std::memory_order mo, TakeRef& take_ref, ShapeHolds& shape_holds) {
    const uint32_t n = shard_count(order);
    const int32_t cap = shard_cap(order);
    int32_t before[kMaxShards], after[kMaxShards];
    freeze_all(w, head, n, before);
    if (!shape_holds()) {  // split while we waited (try_grab_shard): not this folio's words
      thaw_all(w, head, n, before);
      return Reason::kPageFree;
    }
    int64_t room = 0;
    for (uint32_t s = 0; s < n; ++s) room += cap - (before[s] & kCountMask);
    if (room < pins) {
      thaw_all(w, head, n, before);  // unchanged: nothing written
      return Reason::kPincountOverflow;
    }
    int64_t need = pins;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t s = (my_shard(order) + k) % n;
      const int64_t put = std::min<int64_t>(need, cap - (before[s] & kCountMask));
      after[s] = int32_t(before[s] + put);  // a lazy shard keeps its mode bit
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
    for (uint32_t s = 0; s < n; ++s) total += before[s] & kCountMask;
    if (total < pins) {
      thaw_all(w, head, n, before);  // unchanged: nothing written
      return Reason::kNotPinned;
    }
    int64_t need = pins;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t s = (my_shard(order) + k) % n;
      const int64_t take = std::min<int64_t>(need, before[s] & kCountMask);
      after[s] = int32_t(before[s] - take);  // a lazy shard keeps its mode bit
      need -= take;
    }
    if (const int32_t delta = summary_delta(n, before, after); delta < 0) *last = summary_depart(w, head, -delta);
    thaw_all(w, head, n, after);
    return Reason::kNone;
  }

  // ---- lazy (percpu) mode: a shared folio's shards move without the summary ------------------
  // Entered when a shard's 0 -> non-zero transition finds other shards' pins already there (two
  // threads' pins overlap: the folio is shared), and left by settle_lazy. Both change the mode
  // with every shard frozen, so a mode never changes under a transition, a slow path or the
  // other mode change, and every shard's mode bit agrees with the summary's whenever no shard is
  // frozen. While lazy, the summary is exactly kLazy and the pins' one reference is the mode's:
  // held even while the shards count no pin, until settle_lazy finds them all 0 and reports
  // *last (the page array then gives it back). The page array settles a lazy folio before
  // anything that needs its refcount exact (the put that leaves one reference, the unpin that
  // empties a shard while one reference is left, a freeze, split) and discounts the mode's
  // reference where it reads the refcount (lazy_ref_unpinned).
  [[gnu::noinline, gnu::cold]] static void go_lazy(const PinWords& w, uint64_t head, uint32_t order) {
    const uint32_t n = shard_count(order);
    int32_t counts[kMaxShards];
    freeze_all(w, head, n, counts);
    // relaxed: every shard is frozen, so no transition is in flight and the summary holds still.
    const int32_t sum = summary(w, head).load(std::memory_order_relaxed);
    if ((sum & kLazy) == 0 && sum > 0) {  // still atomic, and pinned: the reference is held
      // seq_cst: a release (the mode's reference, the pins' one already held, before the lazy
      // shards), and ordered before every lazy shard CAS of lazy mode's Dekker pairs.
      summary(w, head).store(kLazy, std::memory_order_seq_cst);
      for (uint32_t s = 0; s < n; ++s) counts[s] |= kLazy;
    }
    thaw_all(w, head, n, counts);
  }

  // Whether the folio is in lazy mode (a snapshot: it may change at once). relaxed by default:
  // a hint for the caller, which settles (under the freeze) or discounts; seq_cst from the
  // read side of lazy mode's Dekker pairs (a put's, after its decrement).
  PINLAB_SHARD_INLINE static bool lazy(const PinWords& w, uint64_t head, uint32_t order,
                                       std::memory_order mo = std::memory_order_relaxed) {
    return is_sharded(order) && (summary(w, head).load(mo) & kLazy) != 0;
  }

  // Leaves lazy mode: every shard frozen, the summary set to the number of non-zero shards
  // (maybe_pinned is one load again), the shards thawed without the mode bit. *last: no shard
  // counts a pin, so the mode's reference goes back (the caller gives it back). Returns whether
  // this call left the mode (false: the folio was not lazy, or another call settled it first).
  static bool settle_lazy(const PinWords& w, uint64_t head, uint32_t order, bool* last) {
    *last = false;
    // seq_cst: the load side of lazy mode's Dekker pair with a put (its refcount decrement
    // first) and of the unpin's (its shard CAS first, then its refcount read).
    if (!is_sharded(order) || (summary(w, head).load(std::memory_order_seq_cst) & kLazy) == 0) return false;
    const uint32_t n = shard_count(order);
    int32_t counts[kMaxShards];
    freeze_all(w, head, n, counts);
    // relaxed: under every shard's freeze the summary holds still.
    if ((summary(w, head).load(std::memory_order_relaxed) & kLazy) == 0) {
      thaw_all(w, head, n, counts);  // settled by another call meanwhile: unchanged
      return false;
    }
    int32_t nonzero = 0;
    for (uint32_t s = 0; s < n; ++s) {
      counts[s] &= ~kLazy;
      nonzero += counts[s] != 0;
    }
    // release: the exact count before the thaw; 0 reads not pinned from here on, and then the
    // caller gives the reference back (as a summary_depart that reaches zero).
    summary(w, head).store(nonzero, std::memory_order_release);
    *last = nonzero == 0;
    thaw_all(w, head, n, counts);
    return true;
  }

  // maybe_pinned of a lazy folio: exact without leaving the mode. A shard read non-zero and not
  // frozen counts a pin held at that moment (counts are never negative, and a frozen shard may
  // be mid-change): lazy_pin_seen, read-only. If none does, the answer is decided with every
  // shard frozen (pinned_frozen): a snapshot of all of them at once. The freeze writes the
  // folio's words, so its caller must hold the folio (the page array takes a speculative
  // reference first: a freeze of a folio freed and reused meanwhile would write another's).
  PINLAB_SHARD_INLINE static bool lazy_pin_seen(const PinWords& w, uint64_t head, uint32_t order,
                                                std::memory_order mo) {
    const uint32_t n = shard_count(order);
    for (uint32_t s = 0; s < n; ++s) {
      const int32_t v = shard(w, head, s).load(mo);
      if ((v & kBusy) == 0 && (v & kCountMask) != 0) return true;
    }
    return false;
  }
  // maybe_pinned without writing the store, from one read of the summary (scheme_api.h): 1
  // pinned, 0 not, -1 a lazy folio whose shards show no pin (the page array then decides it
  // frozen, holding the folio).
  PINLAB_SHARD_INLINE static int maybe_pinned_unfrozen(const PinWords& w, uint64_t head, uint32_t order,
                                                       std::memory_order mo) {
    if (!is_sharded(order)) return w.at(0, head).load(mo) > 0 ? 1 : 0;
    // kBusy alone (a first pin taking the reference) is not pinned yet: its count bits are 0.
    const int32_t sum = summary(w, head).load(mo);
    if (sum & kLazy) [[unlikely]] return lazy_pin_seen(w, head, order, mo) ? 1 : -1;
    return (sum & kCountMask) > 0 ? 1 : 0;
  }
  [[gnu::noinline]] static bool pinned_frozen(const PinWords& w, uint64_t head, uint32_t order,
                                              std::memory_order mo) {
    const uint32_t n = shard_count(order);
    int32_t counts[kMaxShards];
    freeze_all(w, head, n, counts, mo == std::memory_order_seq_cst ? mo : std::memory_order_acquire);
    // relaxed: under the freeze the summary holds still; if another call settled the folio
    // meanwhile, its count is exact.
    const int32_t sum = summary(w, head).load(std::memory_order_relaxed);
    bool pinned = (sum & kCountMask) != 0;
    if (sum & kLazy)
      for (uint32_t s = 0; s < n; ++s) pinned |= (counts[s] & kCountMask) != 0;
    thaw_all(w, head, n, counts);
    return pinned;
  }

  // ---- SharedRefPinStore --------------------------------------------------------------------
  struct AlwaysHolds {  // a caller that holds the folio: its shape cannot change
    bool operator()() const { return true; }
  };
  // shape_holds() (optional): whether the folio still has the order the caller read, asked
  // before the grab writes a word (kPageFree if not, nothing written).
  template <typename TakeRef, typename ShapeHolds = AlwaysHolds>
  PINLAB_SHARD_INLINE static Reason grab_pins(const PinWords& w, uint64_t head, uint32_t order, int64_t pins,
                                              std::memory_order mo, TakeRef&& take_ref,
                                              ShapeHolds&& shape_holds = {}) {
    if (!is_sharded(order)) {
      // The caller took its references first, so the shape holds still now; but a folio made
      // (make-folio) between its read of the order and that grab has its summary in this word.
      if (!shape_holds()) [[unlikely]] return Reason::kPageFree;
      return try_add_within(w.at(0, head), pins, mo) ? Reason::kNone : Reason::kPincountOverflow;
    }
    if (pins > pin_limit({}, order)) return Reason::kPincountOverflow;  // no shard split holds it
    const Reason why = try_grab_shard(w, head, order, my_shard(order), pins, mo, take_ref, shape_holds);
    if (why != Reason::kPincountOverflow) [[likely]]
      return why;
    return slow_grab(w, head, order, pins, mo, take_ref, shape_holds);
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
    // Undecided only for a lazy folio whose shards show no pin: then decided with them frozen.
    const int answer = maybe_pinned_unfrozen(w, head, order, mo);
    return answer >= 0 ? answer != 0 : pinned_frozen(w, head, order, mo);
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
// The mode bit is neither a count nor the lock, and a summary of kMaxShards non-zero shards
// never reads as lazy.
static_assert((ShardedScheme::kLazy & (ShardedScheme::kBusy | ShardedScheme::kCountMask)) == 0 &&
              ShardedScheme::kMaxShards < ShardedScheme::kLazy);
static_assert(has_lazy_pins_of<ShardedScheme>());

}  // namespace pinlab
