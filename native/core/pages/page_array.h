// PageArray: a dense, struct-of-arrays model of struct page for millions of base pages,
// with folios, plain references (FOLL_GET) and pins (FOLL_PIN) under a chosen scheme.
//
// Layout (bytes per base page):
//   refcount_  int32  the folio's count lives in its head's slot; tails' slots are unused
//                     except the first tail's, which holds a hybrid large folio's pincount
//                     (as the kernel keeps _pincount in page[1]).            4 bytes, always
//   meta_      uint8  bits 0-4: the folio's order (on every page, so head = pfn & ~mask costs
//                     one byte load); bit 5: dirty (on the head); bits 6-7: the folio's mapped
//                     references 0..2 (on the head; 3: more, counted in a side table, see
//                     mapped_refs).                                           1 byte, always
//   pincount_  int32  exact per-folio pincount in the head's slot.          4 bytes, separate
//                     (a kOwn scheme's store: kPinWords such arrays, word-major; 4 each)
//   dbg_pins_  int32  exact pins per subpage (the page_ext idea, seed 001). 4 bytes, debug
//   dbg_write_ int32  of those, write pins per subpage.      4 more bytes, debug + write-bias
//
// Thread safety: gets, puts, pins, unpins and queries may run concurrently from any number of
// threads; without debug mode they are lock-free. Debug mode serialises each folio's count
// changes with its debug accounting (striped_lock.h), so its detections are exact. makeFolio/splitFolio change a folio's shape and need the caller to own the pages
// (as the kernel needs the folio locked and frozen); they freeze the refcount while they work.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "pages/buddy_allocator.h"
#include "pages/hugetlb_pool.h"
#include "base/mapped_array.h"
#include "pages/scheme.h"
#include "base/stats.h"
#include "base/status.h"
#include "base/striped_lock.h"

namespace pinlab {

constexpr uint64_t kMaxPages = uint64_t{1} << 31;
constexpr uint32_t kMaxOrder = 30;
constexpr uint32_t kMinBias = 2;
constexpr uint32_t kMaxBias = uint32_t{1} << 20;
constexpr uint32_t kDefaultBias = uint32_t{1} << 10;  // GUP_PIN_COUNTING_BIAS
constexpr uint8_t kOrderMask = 0x1f;
constexpr uint8_t kFlagDirty = 0x20;
// The head's mapped references: 0..2 in the byte itself, kMapOverflow: 3 or more, the exact
// count in PageArray's overflow table (a PTE-mapped THP, whose 512 PTEs hold one each; a PMD
// leaf holds one, as in the kernel; a small page only when three page-table entries map it).
constexpr unsigned kMapShift = 6;
constexpr uint8_t kMapMask = 0xc0;
constexpr uint8_t kMapOverflow = 3;
static_assert((kOrderMask | kFlagDirty | kMapMask) == 0xff && !(kOrderMask & kFlagDirty) &&
                  !((kOrderMask | kFlagDirty) & kMapMask),
              "the meta byte's fields do not overlap");

static_assert(std::atomic_ref<int32_t>::is_always_lock_free, "refcounts must be lock-free");
static_assert(std::atomic_ref<int32_t>::required_alignment == sizeof(int32_t),
              "refcount slots are plain aligned int32s");
static_assert(std::atomic_ref<uint8_t>::is_always_lock_free, "meta flags must be lock-free");
static_assert(kMaxOrder <= kOrderMask, "order fits the meta byte");
// Headroom: even the largest bias leaves room for 2^10 pins of a small page, and the default
// one for 2^21 pins above 2^10 plain references (pin-semantics.md section 2).
static_assert((int64_t{INT32_MAX} >> 20) + 1 >= 1024, "max bias leaves 1024 pins");
static_assert((int64_t{INT32_MAX} + 1) / kDefaultBias == (int64_t{1} << 21), "2^21 pins at 1024");

class FreedHeads;  // pages/freed_heads.h

// A folio's exact pincount. Hybrid keeps it negated in the first tail's refcount slot: that
// slot is then never positive, so a speculative add-unless-zero that lands there through a
// stale order read always fails (a positive pincount would look like a live folio's count).
class PinSlot {
 public:
  PinSlot() = default;  // the scheme keeps no pincount for this folio
  PinSlot(int32_t* p, bool negated) : p_(p), negated_(negated) {}
  explicit operator bool() const { return p_ != nullptr; }
  int32_t load(std::memory_order mo) const { return sign(ref().load(mo)); }
  // Adds n pins (n may be negative) and returns the pincount before.
  int32_t fetch_add(int32_t n, std::memory_order mo) const { return sign(ref().fetch_add(sign(n), mo)); }
  // Adds n pins (n may be negative) unless the pincount would leave 0..INT32_MAX: then it
  // changes nothing and returns false. A CAS loop, so a refused change is never visible.
  // `success` orders the add; a refusal writes nothing and needs no order (relaxed).
  bool add_within(int64_t n, std::memory_order success) const {
    auto r = ref();
    int32_t raw = r.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t next = int64_t{sign(raw)} + n;
      if (next < 0 || next > INT32_MAX) return false;
      if (r.compare_exchange_weak(raw, sign(int32_t(next)), success, std::memory_order_relaxed))
        return true;
    }
  }

 private:
  std::atomic_ref<int32_t> ref() const { return std::atomic_ref<int32_t>(*p_); }
  int32_t sign(int32_t v) const { return negated_ ? -v : v; }  // |v| <= INT32_MAX
  int32_t* p_ = nullptr;
  bool negated_ = false;
};

// Signed fields so that a bad value from a caller is reported as given (e.g. pinBias -4).
struct PageArrayConfig {
  int64_t pages = 0;
  Scheme scheme = Scheme::kHybrid;
  int64_t pin_bias = kDefaultBias;
  int64_t pincount_min_order = 1;  // hybrid: 1 = 64-bit mainline, 2 = v5.7 / 32-bit
  int64_t folio_order = 0;         // initial folio order of every aligned block
  bool debug = false;
  bool populated = true;           // false: every page starts free, for the allocator
  int64_t movable_pages = 0;       // the top movable_pages PFNs form ZONE_MOVABLE
};

// The page list of a call: a PFN range, or a list of PFNs (any order, repeats allowed).
struct PageSet {
  const uint32_t* list = nullptr;
  uint64_t start = 0;
  uint64_t count = 0;

  static PageSet range(uint64_t start, uint64_t count) { return {nullptr, start, count}; }
  static PageSet pfns(const uint32_t* list, uint64_t count) { return {list, 0, count}; }
  bool is_list() const { return list != nullptr; }
  uint64_t first() const { return is_list() ? list[0] : start; }  // count >= 1
};

// The zero page and the huge zero folio as one word, so that checking a call against both is
// one load (and one compare while neither exists): bits 0-31 hold the zero page's PFN + 1,
// bits 32-63 the huge zero folio's head + 1; 0 where that one is not made yet. PFNs < 2^31.
struct ZeroPfns {
  static constexpr uint32_t kHugeOrder = 9;  // the PMD order: the huge zero folio's
  static constexpr uint64_t kHugePages = uint64_t{1} << kHugeOrder;
  uint64_t word = 0;

  bool none() const { return word == 0; }
  int64_t zero() const { return int64_t(uint32_t(word)) - 1; }
  int64_t huge_head() const { return int64_t(word >> 32) - 1; }
  uint64_t pages_held() const {
    return (uint32_t(word) != 0 ? 1 : 0) + ((word >> 32) != 0 ? kHugePages : 0);
  }
  bool names(uint64_t pfn) const {
    if (word == 0) [[likely]] return false;
    return uint32_t(word) == pfn + 1 ||
           ((word >> 32) != 0 && pfn - uint64_t(huge_head()) < kHugePages);  // unsigned wrap
  }
};
static_assert(sizeof(ZeroPfns) == sizeof(uint64_t), "one word, one load");

struct PinFlags {
  bool write = false;     // FOLL_WRITE: only write-bias counts it differently
  bool per_page = false;  // one grab per subpage instead of one per folio run (bvec)
  bool dirty = false;     // unpin only: mark the folios dirty first
};

// One bio_vec-like run: `count` physically consecutive subpages of one folio from `pfn`.
struct Bvec {
  uint64_t pfn;
  uint64_t count;
};

struct MemoryUse {
  uint64_t bytes;          // bytes reserved for the per-page arrays
  double bytes_per_page;   // bytes / pages (the per-page arrays only: zone_bytes are apart)
  uint64_t zone_bytes;     // the zones' free-block bitmaps (about a quarter of a byte per page,
                           // mapped lazily: what free blocks touch is what is committed)
};

class PageArray {
 public:
  // Validates `cfg` (EINVAL naming the option) and allocates the arrays (ENOMEM).
  static Status create(const PageArrayConfig& cfg, std::unique_ptr<PageArray>* out);

  uint64_t pages() const { return uint64_t(cfg_.pages); }
  Scheme scheme() const { return cfg_.scheme; }
  uint32_t pin_bias() const { return uint32_t(cfg_.pin_bias); }
  uint32_t pincount_min_order() const { return uint32_t(cfg_.pincount_min_order); }
  uint32_t initial_folio_order() const { return uint32_t(cfg_.folio_order); }
  bool debug() const { return cfg_.debug; }
  MemoryUse memory() const;

  // ERANGE unless pfn < pages. Every per-PFN query below requires a checked pfn.
  Status check_pfn(uint64_t pfn) const;
  // ERANGE unless every page of the set is in range (a range's two compares inline).
  Status check_page_set(const PageSet& set) const {
    if (!set.is_list() && set.start <= pages() && set.count <= pages() - set.start) [[likely]]
      return Status::Ok();
    return check_page_set_slow(set);
  }
  // EINVAL (kZeroPageCounted) if `set` names the zero page or a subpage of the huge zero folio
  // (those made so far, as `zeros` read them): pins and unpins never count them (gup hands
  // them out uncounted). One compare when neither exists.
  static Status refuse_zero_page(const PageSet& set, ZeroPfns zeros) {
    if (zeros.none()) [[likely]] return Status::Ok();
    return refuse_zero_page_slow(set, zeros);
  }

  uint32_t folio_order(uint64_t pfn) const { return load_order(pfn); }
  uint64_t folio_head(uint64_t pfn) const { return head_of(pfn, load_order(pfn)); }
  // The kernel's refcount: gets + mappings + the references pins hold (less the one a lazy
  // folio's mode keeps with no pin left: scheme_ops.h, lazy pins).
  int32_t refcount(uint64_t pfn) const;
  // Lazy pins (scheme_api.h, has_lazy_pins_of): whether pfn's folio is in lazy mode, and its
  // refcount word as stored (with the mode's reference). Snapshots, for tests and tools.
  bool lazy_folio(uint64_t pfn) const;
  int32_t refcount_word(uint64_t pfn) const;
  // Exact pins of pfn's folio where the scheme (or debug mode) counts them, else nullopt.
  std::optional<int64_t> pincount(uint64_t pfn) const;
  // The scheme's fuzzy answer: false positives allowed, false negatives not (but for read
  // pins under write-bias, which that scheme hides on purpose).
  bool maybe_dma_pinned(uint64_t pfn) const;
  bool is_dirty(uint64_t pfn) const;
  // set_page_dirty of a referenced page: marks pfn's folio dirty (EFREE on a free folio,
  // EINVAL for the zero page, which is never counted nor dirtied).
  Status set_dirty(uint64_t pfn);

  // Plain references, counted on the folio. The zero page is never counted: EINVAL for it.
  Status get_page(uint64_t pfn, int64_t refs);                     // EFREE on a free folio
  Status try_get_page(uint64_t pfn, int64_t refs, bool* got);      // add-unless-zero
  // EINVAL below 0; EBUSY where the put would take references that page-table entries hold
  // (only unmapping drops those: a put that did would free a page still mapped).
  Status put_page(uint64_t pfn, int64_t refs, bool* freed);
  // The same three as steps that name a refusal by its reason alone (kNone: done), for a
  // caller that runs many (an op stream's run loop) and needs only the code
  // (ref_refusal_code): defined in pages/one_page.h, which the caller includes. The PFN must
  // be in the array (check_pfn).
  Reason get_page_step(uint64_t pfn, int64_t refs);
  Reason try_get_page_step(uint64_t pfn, int64_t refs, bool* got);
  Reason put_page_step(uint64_t pfn, int64_t refs, bool* freed);
  static Code ref_refusal_code(Reason why) {
    switch (why) {
      case Reason::kNone: return Code::kOk;
      case Reason::kPageFree: return Code::kEFREE;
      case Reason::kRefcountGuard:
      case Reason::kRefcountOverflow: return Code::kEOVERFLOW;
      case Reason::kPutEatsPin: return Code::kEPINNED;
      case Reason::kPutEatsMapping: return Code::kEBUSY;
      default: return Code::kEINVAL;  // kBadRefs, kZeroPageCounted, kPutBelowZero
    }
  }
  // One put per listed PFN (skip_pfn excepted: the zero page, which gup hands out uncounted;
  // any other listing of it is EINVAL). The whole list is validated before the first put
  // (EINVAL, EBUSY, debug EPINNED: nothing changed); no put is ever taken back, and folios that
  // reach zero are freed after the pass. Only if another call put the same references after
  // validation is a put skipped: EINVAL (kPutRaced), the rest put.
  Status put_pages(const uint32_t* pfns, uint64_t count, int64_t skip_pfn);
  // Would put_pages(pfns, count, -1) be refused now? Its checks, nothing changed (the library's
  // files and bios ask before a change that ends in their puts, so that a refusal comes first).
  // The mapping check compares the count less the puts with the mappings' and pins' references:
  // unmapping or unpinning in between moves both sides alike and keeps the answer.
  Status check_put_pages(const uint32_t* pfns, uint64_t count) const;
  // Would put_pages(puts, n_puts, -1) be refused right after unpin_pages of `unpins` (write
  // pins if `write`)? One snapshot, nothing changed. A holder of pages both ways (a bio) asks
  // before its unpin: the puts are checked against the counts the unpins leave, so a put that
  // would fail only once the pins went (its reference put behind the holder's back, the pins'
  // references then the last ones) refuses the whole release up front, in every mode. The
  // unpins themselves are unpin_pages' to check; zero pages among them release nothing.
  Status check_put_pages_after_unpins(const uint32_t* puts, uint64_t n_puts, const uint32_t* unpins,
                                      uint64_t n_unpins, bool write) const;

  // Folio shape. The caller owns the pages: each must be idle (order 0, refcount 1, unpinned)
  // and mapped by no page table (EBUSY, nothing changed: a mapping's reference looks idle).
  Status make_folio(uint64_t head, int64_t order);
  Status split_folio(uint64_t head);  // EBUSY unless refcount 1, unpinned and unmapped

  // Pins. All or nothing. pin_pages grabs run by run and, refused midway, gives back what it
  // took. unpin_pages validates the whole set first (ENOTPINNED: nothing changed) and then
  // releases every run, never taking one back: only a run whose pins another call released
  // after validation is skipped (ENOTPINNED, kReleaseRaced; the rest released). pin_paths.cpp.
  Status pin_pages(const PageSet& set, const PinFlags& flags, uint64_t* pinned);
  Status unpin_pages(const PageSet& set, const PinFlags& flags);
  // The same with the pin, grab and refusal statistics into *tally (as pin_page's; nullptr:
  // the array's), for a caller that runs many calls and adds them with add_stats.
  Status pin_pages(const PageSet& set, const PinFlags& flags, uint64_t* pinned, StatTally* tally);
  Status unpin_pages(const PageSet& set, const PinFlags& flags, StatTally* tally);
  // unpin_pages of the read pins `reads` and the write pins `writes` (bvec path, no dirty) as
  // one call: both lists are validated against one snapshot, their effects on a folio summed,
  // before either is released, so a refusal changes nothing (write-bias tells the two kinds
  // apart, and an owner's drop releases both all or nothing, never re-pinning one to undo).
  Status unpin_pages_both(const uint32_t* reads, uint64_t n_reads, const uint32_t* writes,
                          uint64_t n_writes);
  Status to_bvecs(const PageSet& set, std::vector<Bvec>* out) const;
  Status count_maybe_dma_pinned(const PageSet& set, uint64_t* out) const;
  // pfnRuns: the maximal runs of consecutive ascending PFNs of a list, in list order (a run
  // may cross folios; repeats start new runs). ERANGE for a PFN >= pages. Two steps, so the
  // caller sizes its output exactly: count_pfn_runs, then write_pfn_runs fills 2 * runs
  // entries [pfn, count, ...] (of a list count_pfn_runs accepted).
  Status count_pfn_runs(const uint32_t* list, uint64_t n, uint64_t* runs) const;
  static void write_pfn_runs(const uint32_t* list, uint64_t n, uint32_t* out);

  // Debug mode only (EINVAL otherwise): the exact per-page pin counts (dbg_pins_), read as a
  // snapshot (exact while no pin or unpin runs). Pinned runs: maximal runs of consecutive
  // pages whose count is the same non-zero value, flat [pfn, count, pins, ...]. Page pins:
  // those of a range (ERANGE outside the array, negative values included).
  Status debug_pinned_runs(std::vector<uint32_t>* out) const;
  Status debug_page_pins(int64_t start, int64_t count, std::vector<int32_t>* out) const;

  uint64_t stat(Stat s) const { return stats_.read(s); }

  // ---- single pages, many calls at a time (an op stream's batch; pages/one_page.h) ----------
  // pin_pages / unpin_pages of the one page `pfn` (a range of one): the same checks, refusals,
  // effects and statistics, but the pin and grab statistics of a success or a refusal go to
  // *tally, which the caller adds to the array's with add_stats before anyone reads them
  // (statistics a free adds go to the array at once). Debug mode takes the general path. They
  // return the code of the Status that call returns (a batch reports codes; no Status to copy).
  Code pin_page(uint64_t pfn, bool write, StatTally* tally);
  Code unpin_page(uint64_t pfn, const PinFlags& flags, StatTally* tally);
  // The same for a caller that knows the array's scheme is S (scheme()), compiled into its
  // loop: defined in pages/one_page.h, which the caller includes.
  template <Scheme S>
  Code pin_page_as(uint64_t pfn, bool write, StatTally* tally);
  template <Scheme S>
  Code unpin_page_as(uint64_t pfn, const PinFlags& flags, StatTally* tally);
  void add_stats(StatTally* tally) { add_tally(stats_, tally); }

  // ---- the page allocator (allocator.cpp) -----------------------------------------------------
  // A free, aligned block of 2^order pages becomes one folio with refcount 1 (ENOMEM when none
  // is left). Movable allocations (user memory) prefer ZONE_MOVABLE and fall back to the normal
  // zone; others come from the normal zone only. A folio whose refcount reaches 0 returns to
  // its zone by itself (every put that reaches zero frees).
  Status alloc_folio(int64_t order, bool movable, uint64_t* head);
  // The lowest free block below PFN `below` (compaction's target); ENOMEM if there is none.
  Status alloc_folio_below(int64_t order, bool movable, uint64_t below, uint64_t* head);
  static constexpr uint64_t kNoLimit = ~uint64_t{0};
  // Pages in ZONE_MOVABLE may not be pinned long-term: FOLL_LONGTERM migrates them first.
  bool is_movable(uint64_t pfn) const { return pfn >= pages() - uint64_t(cfg_.movable_pages); }
  uint64_t free_pages() const;
  // The free pages an allocation with `movable` may take (alloc_folio's zones: ZONE_MOVABLE, then
  // the normal zone; the normal zone alone otherwise). A snapshot.
  uint64_t free_pages_for(bool movable) const;
  // The shared zero page, allocated (order 0, normal zone) on first use and never freed.
  Status zero_page(uint64_t* pfn);
  // The zero page's PFN, or -1 before first use.
  int64_t zero_pfn() const { return zero_pfns().zero(); }
  // The huge zero folio (mm's read faults of whole 2 MiB stretches of THP regions map it by a
  // PMD leaf): an order-9 folio of the normal zone, made on first use after the zero page (so
  // that a split of its leaf always finds the zero page), never freed, never counted: its
  // refcount is frozen at 0 before it is published, so no grab (add-unless-zero) can ever
  // take it, however a racing call named its pages. ENOMEM when no order-9 block is free
  // (the caller falls back to the zero page's PTEs).
  Status huge_zero_folio(uint64_t* head);
  // The huge zero folio's head, or -1 before first use.
  int64_t huge_zero_pfn() const { return zero_pfns().huge_head(); }
  // Both, read by one load. acquire: pairs with the release stores that publish each (once).
  ZeroPfns zero_pfns() const { return ZeroPfns{zero_pfns_.load(std::memory_order_acquire)}; }
  // Pages the zero page and the huge zero folio hold out of the free memory for good (0, 1,
  // 512 or 513): what a balanced array lacks of its free pages.
  uint64_t zero_pages_held() const { return zero_pfns().pages_held(); }
  bool populated() const { return cfg_.populated; }
  uint64_t movable_pages() const { return uint64_t(cfg_.movable_pages); }
  // Every free block of the allocator: fn(movable_zone, head, order), the normal zone first, then
  // ZONE_MOVABLE; within a zone order by order, lowest head first (for state comparisons).
  template <typename F>
  void for_each_free_block(F&& fn) const {
    normal_zone_->for_each_free_block([&](uint64_t head, uint32_t order) { fn(false, head, order); });
    if (movable_zone_)
      movable_zone_->for_each_free_block([&](uint64_t head, uint32_t order) { fn(true, head, order); });
  }

  // ---- building blocks for gup and the mm layer (gup_ops.h, mm_ops.cpp) --------------------
  // gup_fast's speculative grab: add-unless-zero of the whole cost of `refs` subpage pins (or
  // gets) in one CAS on the head of pfn's folio, then a check that pfn still belongs to that
  // folio (a freed folio's pages may have been reused in another shape). On success *head and
  // *order name the folio that release_folio_refs must release.
  template <Scheme S>
  bool try_grab_folio_fast(uint64_t pfn, int64_t refs, bool pin, bool write, uint64_t* head,
                           uint32_t* order);
  // The inverse of a grab (pin: unpin; get: put), freeing the folio if it reaches zero. A CAS
  // that never goes below zero: false (nothing changed) if another call's over-release took
  // what this one held.
  template <Scheme S>
  bool release_folio_refs(uint64_t pfn, uint64_t head, uint32_t order, int64_t refs, bool pin,
                          bool write);
  // Slow-path grab of a stable folio (the caller holds its mapping): refs gets or pins.
  Status grab_folio(uint64_t pfn, int64_t refs, bool pin, bool write);
  // Drops references a mapping held (unmap, COW): put_and_test, freeing at zero.
  void put_folio_refs(uint64_t head, int64_t refs);
  // Exact pins of a folio where known: debug mode, or an exact scheme for this folio.
  std::optional<int64_t> exact_folio_pins(uint64_t head, uint32_t order) const;
  // Debug mode: the exact write pins of a folio (write-bias tracks them apart), else 0.
  int64_t exact_folio_write_pins(uint64_t head, uint32_t order) const {
    return cfg_.debug ? debug_folio_write_pins(head, order) : 0;
  }
  // seq_cst for fork, whose read pairs with gup_fast's seq_cst grab (write_protect_seq).
  bool maybe_pinned_head(uint64_t head, uint32_t order,
                         std::memory_order mo = std::memory_order_relaxed) const;
  // Freezes a folio's refcount from `expected` to 0 (migration's protocol); false if it was not
  // exactly `expected` (a pin, a reference, or a gup_fast speculative grab is in the way).
  bool try_freeze(uint64_t head, int32_t expected);
  // Frees a frozen folio (refcount 0) into its zone.
  void free_frozen_folio(uint64_t head) { free_folio(head); }
  // A folio the caller allocated, took references on and never published (no entry maps it,
  // nobody else holds it): back to its zone as if it had never been taken, no statistic. A
  // failed call's allocations, given back so that the call leaves nothing behind.
  void give_back_unused(uint64_t head);
  // Mapped references: the part of a folio's refcount that page-table entries hold (a PTE
  // holds 1, and so does a PMD leaf, as the kernel's PMD mapping holds one reference until a
  // split makes it one per PTE): the kernel's mapcount, counted in references. The mm layer adds
  // them once it holds the references and subtracts them before it drops them, so a folio's
  // refcount never falls below them; a page array no address space maps has none. Updates of
  // one folio are serialised by its map lock (map_locks_); reads of 0..2 are lock-free.
  int64_t mapped_refs(uint64_t pfn) const;  // of pfn's folio
  bool folio_mapped(uint64_t pfn) const { return mapped_refs(pfn) != 0; }
  void add_mapped_refs(uint64_t head, int64_t n);  // n < 0 subtracts
  // The copy gets the original's dirty flag (migration, COW and early-COW copies).
  void copy_folio_flags(uint64_t from_head, uint64_t to_head);
  // gup's statistics land in the array's: logical subpage pins, as the kernel counts them.
  void add_stat(Stat s, uint64_t n) { stats_.add(s, n); }
  // Sets a folio's shape and plain references directly, for building a population before any
  // other thread sees the array (the profiler). refs 0 leaves the folio free (outside the
  // allocator: such arrays are not allocated from).
  void init_folio_unshared(uint64_t head, uint32_t order, int32_t refs);
  // The zero page, or a subpage of the huge zero folio: never counted (gup and unpin skip
  // them, get/put/pin refuse them), never freed, split or migrated.
  bool is_zero_page(uint64_t pfn) const { return zero_pfns().names(pfn); }

  // ---- the hugetlb pool (hugetlb.cpp; hugetlb_pool.h) ---------------------------------------
  // nr_hugepages for one size (order 9 or 18; EINVAL otherwise, or count outside
  // 0..pages >> order): grows by taking free blocks of the normal zone (ENOMEM if there are not
  // enough: nothing taken), shrinks by giving free, unreserved pool pages back to it (EBUSY if
  // pages in use or reserved stand in the way: nothing given). All or nothing.
  Status hugetlb_set_pages(int64_t order, int64_t count);
  Status hugetlb_counts(int64_t order, HugetlbCounts* out) const;
  // Reserves n free pages for a mapping (ENOMEM unless n free pages are unreserved).
  Status hugetlb_reserve(uint32_t order, uint64_t n);
  void hugetlb_unreserve(uint32_t order, uint64_t n);  // n <= reserved
  // A free pool page as a folio with refcount 1: one the caller reserved (`reserved`: the
  // reservation is used up), else one nobody reserved (ENOMEM when there is none).
  Status hugetlb_alloc(uint32_t order, bool reserved, uint64_t* head);
  // n pages for a hugetlb file (its fallocate), unreserved, all or nothing (ENOMEM: none
  // taken). Each has refcount 1: the file's reference.
  Status hugetlb_alloc_pages(int64_t order, int64_t n, std::vector<uint32_t>* heads);
  // Whether pfn lies in a pool page (free or in use).
  bool is_hugetlb(uint64_t pfn) const { return hugetlb_->owns(pfn); }

 private:
  explicit PageArray(const PageArrayConfig& cfg);
  Status allocate_and_populate();
  // The normal zone [0, movable_start) and the movable zone after it (if any): ENOMEM when
  // their bitmaps cannot be mapped.
  Status make_zones(uint64_t movable_start);
  // A put reached zero: return the folio's pages to their zone.
  void free_folio(uint64_t head);
  void return_to_zone(uint64_t head);  // free_folio without the statistic
  // mapped_refs of a head whose map lock the caller holds.
  int64_t mapped_refs_locked(uint64_t head) const;
  BuddyAllocator& zone_of(uint64_t pfn) {
    return movable_zone_ && movable_zone_->contains(pfn) ? *movable_zone_ : *normal_zone_;
  }

  // ---- one-line accessors over the arrays -------------------------------------------------
  std::atomic_ref<int32_t> ref_at(uint64_t pfn) const {
    return std::atomic_ref<int32_t>(refcount_.data()[pfn]);
  }
  std::atomic_ref<uint8_t> meta_at(uint64_t pfn) const {
    return std::atomic_ref<uint8_t>(meta_.data()[pfn]);
  }
  uint32_t load_order(uint64_t pfn) const {
    // relaxed: a folio's order only changes while its owner holds it frozen (make/split).
    return meta_at(pfn).load(std::memory_order_relaxed) & kOrderMask;
  }
  static uint64_t head_of(uint64_t pfn, uint32_t order) {
    return pfn & ~((uint64_t{1} << order) - 1);
  }
  // Asks for the lines of pfn's refcount and pin word (if the scheme keeps one) before the
  // order byte's load decides the head: for a small folio they are the lines the call's atomics
  // write, so their misses overlap the order's instead of following it. A read prefetch, not a
  // write one: the head of a lazy sharded folio must not be pulled exclusive (its pins write
  // only their own shard's line). A hint only: it never faults.
  void prefetch_counts(uint64_t pfn) const {
    __builtin_prefetch(refcount_.data() + pfn, 0, 3);
    if (pin_words_per_page_ != 0) __builtin_prefetch(pincount_.data() + pfn, 0, 3);
  }
  uint32_t bias_shift() const { return params_.bias_shift; }

  // ---- the scheme, specialised at compile time (scheme_ops.h) -------------------------------
  template <Scheme S>
  PinCost pin_cost(uint32_t order, int64_t refs, bool write) const;
  template <Scheme S>
  PinSlot pincount_slot(uint64_t head, uint32_t order) const;  // built-in homes only
  // The pin side, wherever the scheme keeps its pincount (scheme_ops.h): keeps_pins first,
  // then the others for a folio that keeps one. grab_pins and release_pins refuse with
  // nothing written (kPincountOverflow, kNotPinned).
  template <Scheme S>
  bool keeps_pins(uint32_t order) const;
  template <Scheme S>
  Reason grab_pins(uint64_t head, uint32_t order, int64_t pins, std::memory_order mo);
  // grab_pins by a caller that holds one reference of its own on the folio (gup_fast's
  // speculative grab), for a folio whose pins share one reference: where the pins go from none
  // to some, that reference becomes the pins' (*handed set) instead of a second one being
  // taken, so a first pin needs room for one reference, not two. Not handed: the caller still
  // owns it.
  template <Scheme S>
  Reason grab_pins_handing_ref(uint64_t head, uint32_t order, int64_t pins, std::memory_order mo,
                               bool* handed);
  template <Scheme S>
  Reason release_pins(uint64_t head, uint32_t order, int64_t pins, bool* last);
  template <Scheme S>
  int64_t load_pins(uint64_t head, uint32_t order, std::memory_order mo) const;
  // Unpin validation: whether the folio holds at least `pins` pins (a snapshot). A kOwn scheme
  // with an optional holds_pins answers it cheaper than load_pins (scheme_api.h).
  template <Scheme S>
  static constexpr bool kOwnHoldsPins = requires(const PinWords& w) {
    SchemePolicy<S>::holds_pins(w, uint64_t{0}, uint32_t{0}, int64_t{0});
  };
  template <Scheme S>
  bool holds_pins(uint64_t head, uint32_t order, int64_t pins) const;
  PinWords pin_words() const { return PinWords(pincount_.data(), pages()); }
  template <Scheme S>
  bool maybe_pinned_folio(uint64_t head, uint32_t order,
                          std::memory_order mo = std::memory_order_relaxed) const;
  template <Scheme S>
  Reason try_grab_pin(uint64_t head, uint32_t order, int64_t refs, bool write);
  template <Scheme S>
  Reason try_release_pin(uint64_t head, uint32_t order, int64_t refs, bool write, bool* freed);
  template <Scheme S>
  bool release_own_pin(uint64_t head, uint32_t order, int64_t refs, bool write);
  // fetch_sub of refs references we hold (acq_rel); true if that reached zero (caller frees).
  bool put_and_test(uint64_t head, int64_t refs);
  // The same for references gup_fast's speculative grab added and now gives back (a folio
  // that changed shape under it, a refused pincount, a sharing grab's own reference once its
  // pins hold theirs): by CAS, refusing below `refs` (false, nothing written) where someone
  // else's over-unpin or put ate them meanwhile, so a folio freed by that misuse is never taken
  // below zero. Partly eaten (0 < count < refs): nothing is given back, and what is left stays
  // (misuse that debug mode refuses).
  bool try_put_back_and_test(uint64_t head, int64_t refs);
  // Pins that share one reference (scheme_api.h, SharedRefPinStore; scheme_ops.h): whether a
  // folio's pins do; the references a release of `cost` needs the refcount to hold (validation:
  // cost.ref, or 1 for any pins of a sharing folio); the add-unless-zero of the one reference a
  // sharing grab takes on its none -> some transition; the give-back of it (kRefsEaten if a
  // plain put took it already, *freed when it was the last).
  template <Scheme S>
  bool pins_share_ref(uint32_t order) const;
  template <Scheme S>
  int64_t release_refs_needed(uint32_t order, const PinCost& cost) const;
  // (const: a settle or a lazy folio's frozen query takes one as a speculative reference.)
  Reason try_take_pin_ref(uint64_t head, std::memory_order mo) const;
  Reason give_back_pin_ref(uint64_t head, bool* freed);
  // Lazy pins (scheme_api.h, has_lazy_pins_of; scheme_ops.h): settles a lazy folio (head must
  // be a head), giving the mode's reference back if no pin is left; true if that was the last
  // reference (the caller frees). The reference the mode holds with no pin left, 0 or 1 (a
  // snapshot), which readers of the refcount discount. After a put or an unpin that left
  // `left` references: settles when one is left and the folio is lazy.
  // held: the caller holds a reference (no speculative one of our own is needed).
  [[gnu::noinline, gnu::cold]] bool settle_lazy_and_test(uint64_t head, bool held = false);
  int32_t lazy_ref_unpinned(uint64_t head, uint32_t order) const;
  // refcount() of a folio: the stored word (relaxed), less lazy_ref_unpinned where the folio
  // may be lazy, then read until it stands still.
  int32_t kernel_refcount(uint64_t head, uint32_t order) const {
    if (may_be_lazy(order)) return lazy_kernel_refcount(head, order);
    return ref_at(head).load(std::memory_order_relaxed);
  }
  int32_t lazy_kernel_refcount(uint64_t head, uint32_t order) const;
  // Whether the folio at head (of order `order`) is lazy: the scheme's snapshot, read with mo.
  bool lazy_at(uint64_t head, uint32_t order, std::memory_order mo) const;
  bool lazy_head(uint64_t head) const;  // head is a folio's head, and that folio is lazy
  // maybe_pinned_folio of a lazy folio whose shards show no pin: decided with them frozen, under
  // a speculative reference (the caller may hold none). May free the folio if every other
  // holder let go meanwhile (its put).
  template <Scheme S>
  [[gnu::noinline]] bool maybe_pinned_lazy_folio(uint64_t head, uint32_t order, std::memory_order mo) const;
  // (A put leaves one reference often; only a lazy folio pays for more than a compare: a read
  // of its mode, then the settle.)
  bool settle_lazy_if_last(uint64_t head, int64_t left) {
    return left == 1 && may_be_lazy_at(head) && lazy_head(head) ? settle_lazy_and_test(head) : false;
  }

  // put_page's CAS loop: drops refs unless the count would go below 0 (kPutBelowZero), below
  // owed_to_pins (kPutEatsPin), or below the references the folio's mappings hold
  // (kPutEatsMapping); nothing written then. Reports reaching zero; freeing is the caller's
  // (so a batch can defer it). pages/one_page.h.
  Reason put_refs(uint64_t head, int64_t refs, int64_t owed_to_pins, bool* reached_zero);
  // put_refs in debug mode, whose check that pins' references are not eaten holds the
  // folio's stripe (out of line: put_page's path stays short).
  [[gnu::noinline]] Reason put_refs_debug(uint64_t head, uint32_t order, int64_t refs, bool* reached_zero);
  // A refusal of get_page, try_get_page or put_page (a *_page_step's reason) as their Status.
  static Status ref_refusal(Reason why, uint64_t pfn, int64_t refs);
  // makeFolio: why pfn may not join a folio (kNone: an idle order-0 page: refcount 1,
  // unpinned, unmapped, not the zero page). A read, no change.
  Reason idle_page_fault(uint64_t pfn) const;
  // makeFolio: freezes an idle page (1 -> 0); false otherwise.
  bool try_freeze_idle_page(uint64_t pfn);

  // ---- debug accounting (debug_pins.cpp) ----------------------------------------------------
  void debug_note_pins(uint64_t pfn, uint64_t n, bool write);
  Status debug_take_pins(uint64_t pfn, uint64_t n, bool write);  // ENOTPINNED, no change
  void debug_drop_pins(uint64_t pfn, uint64_t n, bool write);  // unchecked inverse of note
  // The exact pins (all, and write pins where tracked apart) of one subpage, for validation.
  int32_t debug_pins_at(uint64_t pfn) const;
  int32_t debug_write_pins_at(uint64_t pfn) const;
  // Why releasing `taken` pins of a subpage that holds `pins` (of which `writes` write pins)
  // must be refused (kNone: they are there). As debug_take_pins decides, for a running total.
  Reason debug_unpin_refusal(int64_t taken, int64_t pins, int64_t writes, bool write) const;
  bool debug_tracks_writes() const { return !dbg_write_.empty(); }
  int64_t debug_folio_pins(uint64_t head, uint32_t order) const;
  int64_t debug_folio_write_pins(uint64_t head, uint32_t order) const;
  template <Scheme S>
  int64_t debug_pin_references(uint64_t head, uint32_t order) const;
  // Sets the folio's dirty flag; true if it was clean before.
  bool mark_dirty(uint64_t head);

  // ---- the paths (pin_paths.cpp) ------------------------------------------------------------
  // Validation of unpin_pages and put_pages: the whole call checked against one snapshot of
  // each folio before the first write, with the call's running total per folio (a list may
  // repeat one; call_tallies.h). kMapped: the keys
  // go back and forth (an unordered list), so the totals live in a map; unmapped validation
  // sets *unordered and stops when it meets such a list.
  template <Scheme S, bool kDebug, bool kMapped, typename Cursor>
  Status check_unpins(Cursor cursor, bool write, bool* unordered) const;
  template <Scheme S, bool kDebug, typename Cursor>
  Status validate_unpins(Cursor cursor, bool write) const;
  // put_pages' argument checks: every PFN in the array (ERANGE), none the zero page unless it
  // is skip_pfn (EINVAL).
  Status check_put_list(const uint32_t* pfns, uint64_t count, int64_t skip_pfn) const;
  // A folio and references: what unpins would release from it (check_put_pages_after_unpins).
  struct HeadRefs {
    uint64_t head;
    int64_t refs;
  };
  // The references unpin_pages(pfns, write) would release, per folio, sorted by head (a
  // snapshot: where the pins share one reference, it goes only with the folio's last pin).
  // The PFNs are checked (ERANGE) by the caller.
  std::vector<HeadRefs> refs_released_by_unpins(const uint32_t* pfns, uint64_t count, bool write) const;
  // The references `released` lists for `head` (0 if none).
  static int64_t released_refs_of(const std::vector<HeadRefs>& released, uint64_t head);
  // `released`: check against the counts those releases leave (null: the counts as they are).
  Status validate_puts(const uint32_t* pfns, uint64_t count, int64_t skip_pfn,
                       const std::vector<HeadRefs>* released = nullptr) const;
  template <bool kMapped>
  Status check_puts(const uint32_t* pfns, uint64_t count, int64_t skip_pfn, const std::vector<HeadRefs>* released,
                    bool* unordered) const;
  template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
  Status pin_walk(Cursor cursor, bool write, uint64_t* done, uint64_t* grabs);
  template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
  Status unpin_walk(Cursor cursor, const PinFlags& flags, uint64_t* done, uint64_t* grabs,
                    FreedHeads* freed);
  template <Scheme S, bool kDebug, typename Cursor>
  void release_own_pins(Cursor cursor, bool write);
  template <Scheme S, bool kPerPage, bool kDebug>
  Status pin_set(const PageSet& set, bool write, ZeroPfns zeros_at_check, StatTally* tally);
  template <Scheme S, bool kPerPage, bool kDebug>
  Status unpin_set(const PageSet& set, const PinFlags& flags, uint64_t* released, StatTally* tally);
  template <Scheme S, bool kPerPage, bool kDebug, typename Cursor>
  Status release_validated(Cursor cursor, const PinFlags& flags, uint64_t* released, HeldStripes& held,
                           StatTally* tally);
  // pin_pages / unpin_pages past their checks of the set: the scheme's path, whose Status is
  // built in place in the caller's.
  Status pin_checked(const PageSet& set, const PinFlags& flags, ZeroPfns zero, uint64_t* pinned,
                     StatTally* tally);
  Status unpin_checked(const PageSet& set, const PinFlags& flags, StatTally* tally);
  // A statistic into the caller's tally, or the array's when there is none.
  void add_stat(StatTally* tally, Stat s, uint64_t n) {
    if (tally != nullptr) tally->add(s, n);
    else stats_.add(s, n);
  }
  // A call of one page outside debug mode: the walks' semantics for one run, without their
  // machinery (pages/one_page.h).
  // Stats: where the statistics go (stats_, or a caller's StatTally).
  template <Scheme S, typename Stats>
  Status pin_one(uint64_t pfn, bool write, ZeroPfns zeros_at_check, Stats& stats);
  template <Scheme S, typename Stats>
  Status unpin_one(uint64_t pfn, const PinFlags& flags, uint64_t* released, Stats& stats);
  // check_page_set and refuse_zero_page past their one-compare answers (out of line).
  Status check_page_set_slow(const PageSet& set) const;
  static Status refuse_zero_page_slow(const PageSet& set, ZeroPfns zeros);
  // pin_page / unpin_page in debug mode or outside the array: pin_pages / unpin_pages of the
  // range of one (out of line: the single-page paths stay short).
  [[gnu::noinline]] Code pin_page_general(uint64_t pfn, bool write);
  [[gnu::noinline]] Code unpin_page_general(uint64_t pfn, const PinFlags& flags);
  template <Scheme S, bool kDebug>
  Status unpin_both(const PageSet& reads, const PageSet& writes, uint64_t* released);
  // unpin_both's validation: the read and write lists together, as check_unpins validates one
  // (a folio, or a subpage, may be in both: its read and write totals are checked together).
  template <Scheme S, bool kDebug, bool kMapped, typename Cursor>
  Status check_unpin_both(Cursor reads, Cursor writes, bool* unordered) const;

  PageArrayConfig cfg_;
  SchemeParams params_{10, 1};  // the scheme arithmetic's view of cfg_
  // The smallest order whose folios may go lazy (scheme_api.h, has_lazy_pins_of: the scheme's
  // shared-reference orders), 64 if none: then a put that leaves one reference, and an unpin of
  // a lazy folio that leaves one, settle the folio. One compare on the paths of smaller folios.
  uint32_t lazy_min_order_ = 64;
  bool may_be_lazy(uint32_t order) const { return order >= lazy_min_order_; }
  // The same for the folio at head, without reading its order where no folio may be lazy (every
  // scheme but a lazy one: the put paths of the others pay one compare).
  bool may_be_lazy_at(uint64_t head) const {
    return lazy_min_order_ <= kMaxOrder && may_be_lazy(load_order(head));
  }
  MappedArray<int32_t> refcount_;
  MappedArray<uint8_t> meta_;
  MappedArray<int32_t> pincount_;
  uint64_t pin_words_per_page_ = 0;  // pincount_'s words per page (scheme_info().pin_words)
  bool pin_words_span_folio_ = false;  // a kOwn store may use its folio's tail words too
  MappedArray<int32_t> dbg_pins_;
  MappedArray<int32_t> dbg_write_;
  mutable ShardedStats stats_;
  std::unique_ptr<StripedLocks> debug_locks_;  // debug mode only (striped_lock.h)
  // Mapped references: one lock per folio stripe orders each folio's updates (and a put's
  // check against them); counts of 3 or more live in the overflow table (map_mu_).
  std::unique_ptr<StripedLocks> map_locks_;
  mutable std::mutex map_mu_;
  std::unordered_map<uint64_t, int64_t> map_overflow_;
  std::unique_ptr<BuddyAllocator> normal_zone_;
  std::unique_ptr<BuddyAllocator> movable_zone_;  // only with movable_pages > 0
  // A folio of the normal zone with its refcount frozen at 0 (huge_zero_folio, under zero_mu_).
  Status alloc_frozen_folio(uint32_t order, uint64_t* head);
  std::atomic<uint64_t> zero_pfns_{0};  // ZeroPfns::word; each half set once, under zero_mu_
  std::mutex zero_mu_;
  std::unique_ptr<HugetlbPool> hugetlb_;  // always there; empty until hugetlb_set_pages
  // return_to_zone of a pool page: back to the pool's free list, shape kept.
  void return_to_hugetlb_pool(uint64_t head, uint32_t order);

  template <bool kPerPage>
  friend class RangeCursor;
  template <bool kPerPage>
  friend class ListCursor;
};

}  // namespace pinlab
