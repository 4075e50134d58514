#include "pages/page_array.h"

#include <algorithm>
#include <bit>
#include <new>

#include "base/scan.h"
#include "base/summary_bitmap.h"
#include "pages/call_tallies.h"
#include "pages/freed_heads.h"
#include "pages/one_page.h"
#include "pages/scheme_ops.h"

namespace pinlab {

namespace {

Status validate(const PageArrayConfig& cfg) {
  if (cfg.pages < 1 || uint64_t(cfg.pages) > kMaxPages)
    return Status::BadOption("pages", cfg.pages, "an integer in 1..2147483648");
  if (cfg.pin_bias < kMinBias || cfg.pin_bias > kMaxBias ||
      !std::has_single_bit(uint64_t(cfg.pin_bias)))
    return Status::BadOption("pinBias", cfg.pin_bias, "a power of two in 2..1048576");
  if (cfg.pincount_min_order < 1 || cfg.pincount_min_order > int64_t{kMaxOrder} + 1)
    return Status::BadOption("pincountMinOrder", cfg.pincount_min_order, "an integer in 1..31");
  if (cfg.folio_order < 0 || cfg.folio_order > kMaxOrder ||
      (int64_t{1} << cfg.folio_order) > cfg.pages ||
      cfg.pages % (int64_t{1} << cfg.folio_order) != 0)
    return Status::BadOption("folioOrder", cfg.folio_order,
                             "an order in 0..30 whose folio size divides pages");
  // Folios never straddle zones: the boundary falls between initial folios.
  if (cfg.movable_pages < 0 || cfg.movable_pages > cfg.pages ||
      cfg.movable_pages % (int64_t{1} << cfg.folio_order) != 0)
    return Status::BadOption("movablePages", cfg.movable_pages,
                             "an integer in 0..pages, a multiple of the folio size");
  return Status::Ok();
}

// The smallest order whose folios may go lazy under scheme s (its shared-reference orders), 64
// if none (lazy_min_order_).
uint32_t lazy_min_order_of(Scheme s) {
  const SchemeInfo& info = scheme_info(s);
  return info.lazy_pins ? uint32_t(info.shared_ref_min_order) : 64;
}

}  // namespace

PageArray::PageArray(const PageArrayConfig& cfg)
    : cfg_(cfg),
      params_{uint32_t(std::countr_zero(uint64_t(cfg.pin_bias))), uint32_t(cfg.pincount_min_order)},
      lazy_min_order_(lazy_min_order_of(cfg.scheme)) {}

Status PageArray::create(const PageArrayConfig& cfg, std::unique_ptr<PageArray>* out) {
  if (Status st = validate(cfg); !st.ok()) return st;
  // std::bad_alloc (the object itself, its lock tables, a zone) is ENOMEM; *out untouched.
  try {
    std::unique_ptr<PageArray> pa(new PageArray(cfg));
    if (Status st = pa->allocate_and_populate(); !st.ok()) return st;
    *out = std::move(pa);
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(sizeof(PageArray)));
  }
  return Status::Ok();
}

Status PageArray::allocate_and_populate() {
  const uint64_t n = pages();
  auto fail = [](uint64_t bytes) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(bytes));
  };
  if (!refcount_.allocate(n)) return fail(n * sizeof(int32_t));
  if (!meta_.allocate(n)) return fail(n);
  // Pay only for what the configuration uses: the side arrays exist only when needed.
  const SchemeInfo& scheme = scheme_info(cfg_.scheme);
  // The pincount words (separate's side array, a kOwn scheme's store), word-major.
  pin_words_per_page_ = scheme.pin_words;
  pin_words_span_folio_ = scheme.pincount == PincountHome::kOwn;
  if (scheme.pin_words > 0 && !pincount_.allocate(n * scheme.pin_words))
    return fail(n * 4 * scheme.pin_words);
  if (cfg_.debug && !dbg_pins_.allocate(n)) return fail(n * 4);
  if (cfg_.debug) debug_locks_ = std::make_unique<StripedLocks>();
  map_locks_ = std::make_unique<StripedLocks>();  // 64 KiB, whatever the size
  hugetlb_ = std::make_unique<HugetlbPool>(n);  // 1 byte per 2 MiB: pool membership
  // A scheme whose read and write pins cost differently needs the write pins counted apart.
  if (cfg_.debug && !scheme.read_pins_visible && !dbg_write_.allocate(n))
    return fail(n * 4);

  const uint64_t movable_start = n - uint64_t(cfg_.movable_pages);
  if (Status st = make_zones(movable_start); !st.ok()) return st;
  if (!cfg_.populated) {
    // Every page free: refcount 0 and order 0 (the mapping is zeroed), all blocks in the zones.
    normal_zone_->add_whole_zone();
    if (movable_zone_) movable_zone_->add_whole_zone();
    return Status::Ok();
  }
  // Every aligned block of 2^folio_order pages is one allocated folio: refcount 1 on its
  // head, tails 0 (already zero from the mapping), and the order on every page. Plain stores:
  // nothing else can see the array before create() returns.
  std::fill_n(meta_.data(), n, uint8_t(cfg_.folio_order));
  if (cfg_.folio_order == 0) {
    std::fill_n(refcount_.data(), n, int32_t{1});
  } else {
    const uint64_t step = uint64_t{1} << cfg_.folio_order;
    for (uint64_t head = 0; head < n; head += step) refcount_.data()[head] = 1;
  }
  return Status::Ok();
}

static_assert(BuddyAllocator::kOrders == kMaxOrder + 1, "the zones keep a bitmap for every order");
static_assert(kMaxPages <= SummaryBitmap::kMaxBits, "a zone's order-0 bitmap covers every page");

Status PageArray::make_zones(uint64_t movable_start) {
  const uint64_t n = pages();
  // A zone maps its free-block bitmaps up front (so that a free never allocates); a refused
  // mapping, or a refused allocation of the zone itself, is ENOMEM naming the zones' bytes.
  try {
    normal_zone_ = std::make_unique<BuddyAllocator>(0, movable_start);
    if (movable_start < n) movable_zone_ = std::make_unique<BuddyAllocator>(movable_start, n);
  } catch (const std::bad_alloc&) {
    normal_zone_.reset();
    movable_zone_.reset();
    const uint64_t bytes = BuddyAllocator::bitmap_bytes(0, movable_start) +
                           BuddyAllocator::bitmap_bytes(movable_start, n);
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(bytes));
  }
  return Status::Ok();
}

MemoryUse PageArray::memory() const {
  const uint64_t bytes = refcount_.bytes() + meta_.bytes() + pincount_.bytes() +
                         dbg_pins_.bytes() + dbg_write_.bytes();
  const uint64_t zone_bytes =
      normal_zone_->bitmap_bytes() + (movable_zone_ ? movable_zone_->bitmap_bytes() : 0);
  return {bytes, double(bytes) / double(pages()), zone_bytes};
}

Status PageArray::check_pfn(uint64_t pfn) const {
  if (pfn >= pages())
    return Status::Fail(Code::kERANGE, Reason::kPfnOutOfRange, int64_t(pfn), cfg_.pages);
  return Status::Ok();
}

Status PageArray::check_page_set_slow(const PageSet& set) const {
  if (set.is_list()) {
    // Validate before we mutate: one branch-free pass (scan.h), and a search for the first
    // bad entry only when there is one, to name it.
    if (!any_at_least(set.list, set.count, uint32_t(pages()))) return Status::Ok();  // <= 2^31
    const uint32_t* bad = std::find_if(set.list, set.list + set.count,
                                       [n = pages()](uint32_t pfn) { return pfn >= n; });
    return check_pfn(*bad);
  }
  if (set.start > pages() || set.count > pages() - set.start)
    return Status::Fail(Code::kERANGE, Reason::kRangeOutOfBounds, int64_t(set.start),
                        int64_t(set.count));
  return Status::Ok();
}

int32_t PageArray::refcount(uint64_t pfn) const {
  const uint32_t order = load_order(pfn);
  // relaxed: a snapshot for the caller; nothing is published through it.
  return kernel_refcount(head_of(pfn, order), order);
}

// ---- lazy pins (scheme_ops.h): out of line, off every hot path -------------------------------

int32_t PageArray::lazy_kernel_refcount(uint64_t head, uint32_t order) const {
  // A lazy folio's mode holds its pins' reference with no pin left: not the kernel's count.
  // Read until the count stands still around the discount (a settle may give it back between).
  // acquire: orders the mode and pins reads after this read, and the re-read after them.
  int32_t cur = ref_at(head).load(std::memory_order_acquire);
  for (int tries = 0;; ++tries) {
    const int32_t extra = lazy_ref_unpinned(head, order);
    const int32_t again = ref_at(head).load(std::memory_order_acquire);
    if (again == cur || tries == 8) return again - extra;
    cur = again;
  }
}

bool PageArray::lazy_at(uint64_t head, uint32_t order, std::memory_order mo) const {
  return dispatch_scheme(cfg_.scheme, [&](auto tag) {
    using P = SchemePolicy<decltype(tag)::value>;
    if constexpr (has_lazy_pins_of<P>()) return P::lazy(pin_words(), head, order, mo);
    else return false;
  });
}

bool PageArray::lazy_head(uint64_t head) const {
  const uint32_t order = load_order(head);
  // seq_cst: the read side of lazy mode's Dekker pair, after a put's decrement.
  return head_of(head, order) == head && lazy_at(head, order, std::memory_order_seq_cst);
}

bool PageArray::settle_lazy_and_test(uint64_t head, bool held) {
  auto ref = ref_at(head);
  for (;;) {
    // A reference of our own while the shards are frozen: a put or an unpin settles after it let
    // go of its own, and the folio must not be freed and reused under the freeze (the other side
    // of the Dekker pair may be settling and freeing it). None: it is free, so nothing is left to
    // settle (unless the caller holds it).
    // seq_cst: a speculative reference, as gup_fast's (its Dekker pair with a freeze).
    const bool temp = try_take_pin_ref(head, std::memory_order_seq_cst) == Reason::kNone;
    if (!temp && !held) return false;
    // Stable now that we hold it: a folio with a reference is never split or reshaped.
    const uint32_t order = load_order(head);
    if (head_of(head, order) == head) {
      dispatch_scheme(cfg_.scheme, [&](auto tag) {
        using P = SchemePolicy<decltype(tag)::value>;
        if constexpr (has_lazy_pins_of<P>()) {
          bool last = false;
          if (P::settle_lazy(pin_words(), head, order, &last) && last) {
            // The mode's reference goes back. Ours (or the caller's) is still there, so this is
            // never the last: a CAS that refuses at one (a plain put ate the mode's reference:
            // the misuse debug mode refuses; nothing is given back twice). acq_rel: put_and_test.
            int32_t cur = ref.load(std::memory_order_relaxed);
            while (cur > 1 && !ref.compare_exchange_weak(cur, cur - 1, std::memory_order_acq_rel,
                                                         std::memory_order_relaxed)) {
            }
          }
        }
      });
    }
    if (!temp) return false;
    // Our reference goes as a put's: seq_cst, the store side of the Dekker pair; if it leaves one
    // on a folio that went lazy again meanwhile, settle again. A CAS that refuses below one, as
    // gup_fast's put-back: a misused put may have eaten ours meanwhile (then the folio may be
    // free already, and nothing of ours is left to give back).
    int32_t before = ref.load(std::memory_order_relaxed);
    do {
      if (before < 1) [[unlikely]] return false;
    } while (!ref.compare_exchange_weak(before, before - 1, std::memory_order_seq_cst, std::memory_order_relaxed));
    if (before == 1) return true;  // every other holder let go meanwhile: the caller frees
    if (before != 2 || !lazy_head(head)) return false;
  }
}

int32_t PageArray::lazy_ref_unpinned(uint64_t head, uint32_t order) const {
  if (!may_be_lazy(order)) return 0;
  return dispatch_scheme(cfg_.scheme, [&](auto tag) -> int32_t {
    using P = SchemePolicy<decltype(tag)::value>;
    if constexpr (has_lazy_pins_of<P>()) {
      // relaxed: a snapshot, as the refcount read it discounts.
      return P::lazy(pin_words(), head, order) && P::pins(pin_words(), head, order, std::memory_order_relaxed) == 0
                 ? 1
                 : 0;
    } else {
      return 0;
    }
  });
}

bool PageArray::lazy_folio(uint64_t pfn) const {
  const uint32_t order = load_order(pfn);
  return lazy_at(head_of(pfn, order), order, std::memory_order_relaxed);
}

int32_t PageArray::refcount_word(uint64_t pfn) const {
  // relaxed: a snapshot for the caller.
  return ref_at(folio_head(pfn)).load(std::memory_order_relaxed);
}

std::optional<int64_t> PageArray::pincount(uint64_t pfn) const {
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  return dispatch_scheme(cfg_.scheme, [&](auto tag) -> std::optional<int64_t> {
    constexpr Scheme S = decltype(tag)::value;
    if (keeps_pins<S>(order)) return load_pins<S>(head, order, std::memory_order_relaxed);
    if (cfg_.debug) return debug_folio_pins(head, order);
    return std::nullopt;
  });
}

bool PageArray::maybe_dma_pinned(uint64_t pfn) const {
  const uint32_t order = load_order(pfn);
  const uint64_t head = head_of(pfn, order);
  return dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return maybe_pinned_folio<decltype(tag)::value>(head, order);
  });
}

bool PageArray::is_dirty(uint64_t pfn) const {
  return (meta_at(folio_head(pfn)).load(std::memory_order_relaxed) & kFlagDirty) != 0;
}

Status PageArray::set_dirty(uint64_t pfn) {
  if (Status st = check_pfn(pfn); !st.ok()) return st;
  if (is_zero_page(pfn)) return Status::Fail(Code::kEINVAL, Reason::kZeroPageDirty, int64_t(pfn));
  const uint64_t head = folio_head(pfn);
  // relaxed: a liveness check for the caller's error, not a synchronisation point.
  if (ref_at(head).load(std::memory_order_relaxed) <= 0)
    return Status::Fail(Code::kEFREE, Reason::kPageFree, int64_t(pfn));
  mark_dirty(head);
  return Status::Ok();
}

bool PageArray::mark_dirty(uint64_t head) {
  auto meta = meta_at(head);
  // Test before set: a store on an already-dirty head would bounce its cache line for nothing.
  // relaxed: the flag is a fact about the data, ordered by the unpin's release that follows.
  if (meta.load(std::memory_order_relaxed) & kFlagDirty) return false;
  return (meta.fetch_or(kFlagDirty, std::memory_order_relaxed) & kFlagDirty) == 0;
}

Status PageArray::ref_refusal(Reason why, uint64_t pfn, int64_t refs) {
  switch (why) {
    case Reason::kBadRefs: return Status::Fail(Code::kEINVAL, why, refs);
    case Reason::kPutBelowZero: return Status::Fail(Code::kEINVAL, why, int64_t(pfn), refs);
    default: return Status::Fail(ref_refusal_code(why), why, int64_t(pfn));
  }
}

Status PageArray::get_page(uint64_t pfn, int64_t refs) {
  const Reason why = get_page_step(pfn, refs);
  return why == Reason::kNone ? Status::Ok() : ref_refusal(why, pfn, refs);
}

Status PageArray::try_get_page(uint64_t pfn, int64_t refs, bool* got) {
  const Reason why = try_get_page_step(pfn, refs, got);
  return why == Reason::kNone ? Status::Ok() : ref_refusal(why, pfn, refs);
}

Status PageArray::put_page(uint64_t pfn, int64_t refs, bool* freed) {
  const Reason why = put_page_step(pfn, refs, freed);
  return why == Reason::kNone ? Status::Ok() : ref_refusal(why, pfn, refs);
}

// relaxed loads: a snapshot to decide on; the puts that follow are CASes that check again.
template <bool kMapped>
Status PageArray::check_puts(const uint32_t* pfns, uint64_t count, int64_t skip_pfn,
                             const std::vector<HeadRefs>* released, bool* unordered) const {
  Tallies<kMapped> folios(count, 0);
  Status eats = Status::Ok();  // the first put that would eat a pin's or a mapping's reference
  for (uint64_t i = 0; i < count; ++i) {
    if (int64_t(pfns[i]) == skip_pfn) continue;
    const uint32_t order = load_order(pfns[i]);
    const uint64_t head = head_of(pfns[i], order);
    bool fresh = false;
    Tally* t = folios.find(head, &fresh);
    if (t == nullptr) [[unlikely]] {
      *unordered = true;
      return Status::Ok();
    }
    if (fresh) {
      // The count and the mappings' references read as one snapshot: under the folio's map
      // lock its mapped references hold still (as in put_refs). Lock-free when unmapped.
      // acquire: pairs with add_mapped_refs' release, for the byte's lock-free readers.
      const bool mapped = (meta_at(head).load(std::memory_order_acquire) & kMapMask) != 0;
      MaybeFolioGuard map_guard(mapped ? map_locks_.get() : nullptr, head);
      t->mapped = mapped ? mapped_refs_locked(head) : 0;
      // Less the reference a lazy folio's mode holds with no pin left (scheme_ops.h).
      t->count = kernel_refcount(head, order);
      // Debug: the references that pins hold may not be eaten by a plain put (seed 001).
      if (cfg_.debug) {
        t->pins = dispatch_scheme(cfg_.scheme, [&](auto tag) {
          return debug_pin_references<decltype(tag)::value>(head, order);
        });
      }
      // After the caller's unpins: their references gone from the count, and no longer owed
      // to pins (the mappings' stay).
      if (released != nullptr) {
        const int64_t gone = released_refs_of(*released, head);
        t->count -= gone;
        t->pins = std::max<int64_t>(0, t->pins - gone);
      }
    }
    t->total += 1;
    // More puts than references is the caller's plain error and wins: the other two are
    // reported only if the whole call stays above zero.
    if (t->count - t->total < 0)
      return Status::Fail(Code::kEINVAL, Reason::kPutBelowZero, int64_t(pfns[i]), 1);
    if (!eats.ok()) continue;
    if (t->count - t->total < t->pins)
      eats = Status::Fail(Code::kEPINNED, Reason::kPutEatsPin, int64_t(pfns[i]));
    // The references page-table entries hold are not the caller's to put (only unmapping
    // drops them): the put would free a page still mapped.
    else if (t->count - t->total < t->pins + t->mapped)
      eats = Status::Fail(Code::kEBUSY, Reason::kPutEatsMapping, int64_t(pfns[i]));
  }
  return eats;
}

Status PageArray::validate_puts(const uint32_t* pfns, uint64_t count, int64_t skip_pfn,
                                const std::vector<HeadRefs>* released) const {
  bool unordered = false;
  Status st = check_puts<false>(pfns, count, skip_pfn, released, &unordered);
  if (unordered) [[unlikely]]
    st = check_puts<true>(pfns, count, skip_pfn, released, &unordered);
  return st;
}

std::vector<PageArray::HeadRefs> PageArray::refs_released_by_unpins(const uint32_t* pfns, uint64_t count,
                                                                   bool write) const {
  std::vector<HeadRefs> pins;  // a folio's pins first (refs), then the references they release
  pins.reserve(count);
  for (uint64_t i = 0; i < count; ++i)
    if (!is_zero_page(pfns[i])) pins.push_back({folio_head(pfns[i]), 1});
  std::sort(pins.begin(), pins.end(), [](const HeadRefs& a, const HeadRefs& b) { return a.head < b.head; });
  std::vector<HeadRefs> out;
  for (const HeadRefs& p : pins) {
    if (!out.empty() && out.back().head == p.head) ++out.back().refs;
    else out.push_back(p);
  }
  for (HeadRefs& f : out) {
    const uint32_t order = load_order(f.head);
    f.refs = dispatch_scheme(cfg_.scheme, [&](auto tag) -> int64_t {
      constexpr Scheme S = decltype(tag)::value;
      // One reference for all the pins: released with the last (relaxed: a snapshot).
      if (pins_share_ref<S>(order)) return load_pins<S>(f.head, order, std::memory_order_relaxed) <= f.refs ? 1 : 0;
      return pin_cost<S>(order, f.refs, write).ref;
    });
  }
  return out;
}

int64_t PageArray::released_refs_of(const std::vector<HeadRefs>& released, uint64_t head) {
  const auto it = std::lower_bound(released.begin(), released.end(), head,
                                   [](const HeadRefs& f, uint64_t h) { return f.head < h; });
  return it != released.end() && it->head == head ? it->refs : 0;
}

Status PageArray::check_put_pages_after_unpins(const uint32_t* puts, uint64_t n_puts, const uint32_t* unpins,
                                               uint64_t n_unpins, bool write) const {
  if (Status st = check_put_list(puts, n_puts, -1); !st.ok()) return st;
  for (uint64_t i = 0; i < n_unpins; ++i)
    if (Status st = check_pfn(unpins[i]); !st.ok()) return st;
  const std::vector<HeadRefs> released = refs_released_by_unpins(unpins, n_unpins, write);
  return validate_puts(puts, n_puts, -1, &released);
}

Status PageArray::check_put_list(const uint32_t* pfns, uint64_t count, int64_t skip_pfn) const {
  for (uint64_t i = 0; i < count; ++i) {
    if (Status st = check_pfn(pfns[i]); !st.ok()) return st;
    if (is_zero_page(pfns[i]) && int64_t(pfns[i]) != skip_pfn)
      return Status::Fail(Code::kEINVAL, Reason::kZeroPageCounted, int64_t(pfns[i]));
  }
  return Status::Ok();
}

Status PageArray::check_put_pages(const uint32_t* pfns, uint64_t count) const {
  if (Status st = check_put_list(pfns, count, -1); !st.ok()) return st;
  return validate_puts(pfns, count, -1);
}

Status PageArray::put_pages(const uint32_t* pfns, uint64_t count, int64_t skip_pfn) {
  // validate before we mutate
  if (Status st = check_put_list(pfns, count, skip_pfn); !st.ok()) return st;
  // As unpin_pages (pin_paths.cpp): the whole call is validated before the first put, and no
  // put is ever taken back (a folio we let go of may be freed and reused by its other holders
  // at once). Debug mode holds the stripes of every folio of the call throughout.
  HeldStripes held(debug_locks_.get());
  held.lock_keys([&](auto&& f) {
    for (uint64_t i = 0; i < count; ++i)
      if (int64_t(pfns[i]) != skip_pfn) f(folio_head(pfns[i]));
  });
  if (Status st = validate_puts(pfns, count, skip_pfn); !st.ok()) {
    stats_.add(Stat::kRollbacks, 1);  // refused whole: nothing was written
    return st;
  }
  FreedHeads zeroed(count);  // room first: the pass never allocates (freed_heads.h)
  Status raced = Status::Ok();
  for (uint64_t i = 0; i < count; ++i) {
    if (int64_t(pfns[i]) == skip_pfn) continue;
    const uint64_t head = folio_head(pfns[i]);
    bool reached_zero = false;
    // Refused only if another call put these references since validation (a put of a
    // reference the caller did not hold): skip it, put the rest, report the first.
    if (put_refs(head, 1, 0, &reached_zero) != Reason::kNone) [[unlikely]] {
      if (raced.ok()) raced = Status::Fail(Code::kEINVAL, Reason::kPutRaced, int64_t(pfns[i]));
      continue;
    }
    if (reached_zero && !zeroed.try_add(head)) [[unlikely]]
      free_folio(head);  // never here: one zero per entry at most, and the room is count
  }
  held.unlock();
  zeroed.for_each([this](uint64_t head) { free_folio(head); });  // only now: the pass is done
  return raced;
}

Reason PageArray::put_refs_debug(uint64_t head, uint32_t order, int64_t refs, bool* reached_zero) {
  // Debug: the references that pins hold may not be eaten by a plain put (seed 001). The
  // folio's lock keeps its pins and refcount consistent while we compare them.
  FolioGuard<true> guard(debug_locks_.get(), head);
  const int64_t owed_to_pins = dispatch_scheme(cfg_.scheme, [&](auto tag) {
    return debug_pin_references<decltype(tag)::value>(head, order);
  });
  return put_refs(head, refs, owed_to_pins, reached_zero);
}

}  // namespace pinlab
