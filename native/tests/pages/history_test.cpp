// Linearizability of the counters. ThreadSanitizer finds data races, not wrong answers: here
// many threads run random operations on a few shared folios (pins and unpins, over-unpins that
// must be refused, gup_fast grabs and their releases, gets, puts, over-puts, add-unless-zero,
// pins that overflow a count raised near INT32_MAX, and the queries maybe-pinned, refcount and
// pincount). Every call is recorded with its arguments, its result and the ticks of a global
// clock taken just before and just after it; a checker then verifies that every result is
// explained by some sequential order consistent with real time (the model of Jepsen's and
// Porcupine's checkers).
//
// The counts are commutative, so the check reduces to bounds per folio and counter. A call
// linearizes somewhere in [start, end]. Every successful change that ended before its start
// is in effect there; every one that started after its end is not; one that overlaps it may
// be either way. So at the linearization point the refcount (and the pincount) lies in
//     base + sum(before) + sum(overlapping negative deltas)
//  .. base + sum(before) + sum(overlapping positive deltas)
// and a result is a violation if no value in that range explains it: a refusal where even
// the most favourable value had room, a success where none had, a maybe-pinned false while a
// pin was surely held throughout, a read outside the range. Refused calls change nothing in
// the model: an add-then-undo shows up as the transient values it makes others see. The box
// treats the refcount and the pincount independently, a superset of the real states: the
// check is sound (no false alarms) and fast (two sorts, then a binary search per call).
//
// Tag "concurrency": it also runs under ThreadSanitizer (fewer calls). Tag "history": the soak,
// `npm run test:soak` (PINLAB_SOAK_SECONDS, default 60), runs it with fresh seeds until the
// time is up.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fixtures.h"
#include "pages/gup_ops.h"

namespace pinlab::test {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kOpsPerThread = 5000;
#else
constexpr int kOpsPerThread = 25000;
#endif
constexpr int kThreads = 4;

// ---- the history ----------------------------------------------------------------------------

enum class Kind : uint8_t {
  kPin,        // pin_pages of `refs` subpages of one folio (one bvec run)
  kUnpin,      // unpin_pages of the same
  kFastPin,    // try_grab_folio_fast (gup_fast's speculative grab), a pin
  kFastUnpin,  // release_folio_refs of such a grab
  kGet,        // get_page
  kPut,        // put_page
  kTryGet,     // try_get_page (add-unless-zero)
  kMaybePinned,
  kRefcount,
  kPincount,
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kPin: return "pin";
    case Kind::kUnpin: return "unpin";
    case Kind::kFastPin: return "gup_fast grab";
    case Kind::kFastUnpin: return "gup_fast release";
    case Kind::kGet: return "get";
    case Kind::kPut: return "put";
    case Kind::kTryGet: return "try_get";
    case Kind::kMaybePinned: return "maybe_pinned";
    case Kind::kRefcount: return "refcount";
    case Kind::kPincount: return "pincount";
  }
  return "?";
}

struct Op {
  uint64_t start = 0, end = 0;  // global clock ticks just before and just after the call
  Kind kind = Kind::kRefcount;
  uint8_t folio = 0;
  bool ok = false;      // succeeded (gets/pins/unpins/puts; try_get: got), or the bool answer
  Code code = Code::kOk;
  int64_t refs = 0;     // subpages (pins) or references (gets, puts)
  int64_t value = 0;    // reads: the value read
};

// A folio of the scenario: its head and what one subpage pin costs it, measured at setup.
struct Folio {
  uint64_t head = 0;
  uint32_t order = 0;
  int64_t pin_ref = 0;  // refcount per subpage pin
  int64_t pin_pin = 0;  // pincount per subpage pin (0: no exact pincount)
  bool exact = false;
  // Pins that share one reference (scheme_api.h, SharedRefPinStore): pin_ref is 0, and the
  // refcount is the references of gets (the counter, base_ref) plus 1 while any pin is held,
  // plus, for the moment of a transition, the reference a release is about to give back or a
  // gup_fast grab holds of its own: at most one per pin or unpin call in flight.
  bool shared_ref = false;
  // Lazy pins (scheme_api.h, has_lazy_pins_of): a put or a query may also hold a speculative
  // reference of its own for a moment (a settle, or a lazy folio's frozen query).
  bool lazy = false;
  int64_t pin_limit = INT32_MAX;  // the most pins such a folio holds
  int64_t base_ref = 0, base_pin = 0;  // before the threads start
};

// The effect of a successful call on (refcount, pincount).
void effect(const Op& op, const Folio& f, int64_t* dref, int64_t* dpin) {
  *dref = *dpin = 0;
  if (!op.ok) return;
  switch (op.kind) {
    case Kind::kPin:
    case Kind::kFastPin:
      *dref = op.refs * f.pin_ref;
      *dpin = op.refs * f.pin_pin;
      break;
    case Kind::kUnpin:
    case Kind::kFastUnpin:
      *dref = -op.refs * f.pin_ref;
      *dpin = -op.refs * f.pin_pin;
      break;
    case Kind::kGet:
    case Kind::kTryGet:
      *dref = op.refs;
      break;
    case Kind::kPut:
      *dref = -op.refs;
      break;
    default:
      break;
  }
}

// ---- the checker ----------------------------------------------------------------------------

bool is_pin_call(Kind k) {
  return k == Kind::kPin || k == Kind::kUnpin || k == Kind::kFastPin || k == Kind::kFastUnpin;
}
// A call that may hold a transient reference of its own on a folio whose pins share one (a
// settle's, for a lazy folio: a put, a query, or a get that would overflow).
bool holds_transient_ref(Kind k, const Folio& f) {
  return is_pin_call(k) || (f.lazy && (k == Kind::kPut || k == Kind::kMaybePinned || k == Kind::kGet));
}

// One counter of one folio: the successful changes, by start and by end, with prefix sums of
// their positive and negative parts.
class Counter {
 public:
  void add(uint64_t start, uint64_t end, int64_t delta) {
    if (delta != 0) changes_.push_back({start, end, delta});
  }
  void build() {
    by_start_ = by_end_ = changes_;
    std::sort(by_start_.begin(), by_start_.end(),
              [](const Change& a, const Change& b) { return a.start < b.start; });
    std::sort(by_end_.begin(), by_end_.end(),
              [](const Change& a, const Change& b) { return a.end < b.end; });
    prefix(by_start_, &pos_start_, &neg_start_);
    prefix(by_end_, &pos_end_, &neg_end_);
  }
  // The range of the counter at a point in [start, end] of a call whose own change is `own`.
  void bounds(int64_t base, uint64_t start, uint64_t end, int64_t own, int64_t* lo,
              int64_t* hi) const {
    // Ended before the call started: surely in effect (ticks are unique).
    const size_t before = size_t(
        std::lower_bound(by_end_.begin(), by_end_.end(), start,
                         [](const Change& c, uint64_t t) { return c.end < t; }) -
        by_end_.begin());
    // Started before the call ended: maybe in effect (a superset of `before`, and of the call
    // itself, which is not in effect at its own linearization point).
    const size_t started = size_t(
        std::lower_bound(by_start_.begin(), by_start_.end(), end,
                         [](const Change& c, uint64_t t) { return c.start < t; }) -
        by_start_.begin());
    const int64_t sure = base + pos_end_[before] + neg_end_[before];
    *lo = sure + (neg_start_[started] - neg_end_[before] - std::min<int64_t>(own, 0));
    *hi = sure + (pos_start_[started] - pos_end_[before] - std::max<int64_t>(own, 0));
  }
  int64_t total() const {
    int64_t t = 0;
    for (const Change& c : changes_) t += c.delta;
    return t;
  }

 private:
  struct Change {
    uint64_t start, end;
    int64_t delta;
  };
  static void prefix(const std::vector<Change>& v, std::vector<int64_t>* pos,
                     std::vector<int64_t>* neg) {
    pos->assign(v.size() + 1, 0);
    neg->assign(v.size() + 1, 0);
    for (size_t i = 0; i < v.size(); ++i) {
      (*pos)[i + 1] = (*pos)[i] + std::max<int64_t>(v[i].delta, 0);
      (*neg)[i + 1] = (*neg)[i] + std::min<int64_t>(v[i].delta, 0);
    }
  }
  std::vector<Change> changes_, by_start_, by_end_;
  std::vector<int64_t> pos_start_, neg_start_, pos_end_, neg_end_;
};

// Some value in [max(lo, a), min(hi, b)]: whether the range meets [a, b].
bool meets(int64_t lo, int64_t hi, int64_t a, int64_t b) { return std::max(lo, a) <= std::min(hi, b); }

// Why `op` cannot be explained with the refcount in [rlo, rhi] and the pincount in [plo, phi]
// (nullptr: it can). bias: the maybe-pinned threshold of schemes without a pincount.
const char* unexplained(const Op& op, const Folio& f, int64_t bias, int64_t rlo, int64_t rhi,
                        int64_t plo, int64_t phi) {
  constexpr int64_t kMax = INT32_MAX;
  const int64_t cr = op.refs * f.pin_ref, cp = op.refs * f.pin_pin;
  if (f.shared_ref) {
    // The pins share one reference: a pin needs room for it only as the folio's first (and
    // gup_fast for its own, held around the grab); the pin limit bounds the pincount.
    const int64_t cp1 = op.refs;
    // The refcount's highest value in a state with no pin (then without the pins' reference).
    const int64_t rhi_unpinned = rhi - (phi > 0 ? 1 : 0);
    switch (op.kind) {
      case Kind::kPin:
      case Kind::kFastPin: {
        const bool first_fits = plo <= 0 && meets(rlo, rhi_unpinned, 1, kMax - 1);
        const bool fits = plo <= f.pin_limit - cp1 &&
                          (op.kind == Kind::kFastPin ? meets(rlo, rhi, 1, kMax - 1) : phi >= 1 || first_fits);
        if (op.ok) return fits ? nullptr : "a pin succeeded where none could";
        const bool overflow = phi > f.pin_limit - cp1 || rlo < 0 ||
                              (op.kind == Kind::kFastPin ? rhi > kMax - 1 : plo <= 0 && rhi_unpinned > kMax - 1);
        const bool free = plo <= 0 && rlo <= 0;
        if (op.kind == Kind::kFastPin) return overflow || rlo <= 0 ? nullptr : "a gup_fast grab that fits refused";
        if (op.code == Code::kEOVERFLOW) return overflow ? nullptr : "a pin that fits refused (EOVERFLOW)";
        if (op.code == Code::kEFREE) return free ? nullptr : "a pin of a live folio refused (EFREE)";
        return "a pin refused with an unexpected code";
      }
      case Kind::kUnpin:
      case Kind::kFastUnpin: {
        if (op.ok) return phi >= cp1 && rhi >= 1 ? nullptr : "an unpin succeeded where no pin was";
        if (op.kind == Kind::kUnpin && op.code != Code::kENOTPINNED)
          return "an unpin refused with an unexpected code";
        return plo < cp1 || rlo < 1 ? nullptr : "an unpin of held pins refused";
      }
      default:
        break;  // gets, puts and queries: as for every scheme, on the refcount's range
    }
  }
  switch (op.kind) {
    case Kind::kPin:
    case Kind::kFastPin: {
      const bool fits = meets(rlo, rhi, 1, kMax - cr) && (!f.exact || plo <= kMax - cp);
      if (op.ok) return fits ? nullptr : "a pin succeeded where none could";
      const bool overflow = rhi > kMax - cr || (f.exact && phi > kMax - cp) || rlo < 0;
      const bool free = rlo <= 0;
      if (op.kind == Kind::kFastPin) return overflow || free ? nullptr : "a gup_fast grab that fits refused";
      if (op.code == Code::kEOVERFLOW) return overflow ? nullptr : "a pin that fits refused (EOVERFLOW)";
      if (op.code == Code::kEFREE) return free ? nullptr : "a pin of a live folio refused (EFREE)";
      return "a pin refused with an unexpected code";
    }
    case Kind::kUnpin:
    case Kind::kFastUnpin: {
      const bool held = rhi >= cr && (!f.exact || phi >= cp);
      const bool short_ = rlo < cr || (f.exact && plo < cp);
      if (op.ok) return held ? nullptr : "an unpin succeeded where no pin was";
      if (op.kind == Kind::kUnpin && op.code != Code::kENOTPINNED)
        return "an unpin refused with an unexpected code";
      return short_ ? nullptr : "an unpin of held pins refused";
    }
    case Kind::kGet:
      if (op.ok) return meets(rlo, rhi, 1, kMax - op.refs) ? nullptr : "a get succeeded where none could";
      if (op.code == Code::kEOVERFLOW)
        return rhi > kMax - op.refs || rlo < 0 ? nullptr : "a get that fits refused (EOVERFLOW)";
      if (op.code == Code::kEFREE) return rlo <= 0 ? nullptr : "a get of a live folio refused (EFREE)";
      return "a get refused with an unexpected code";
    case Kind::kTryGet:
      if (op.code == Code::kEOVERFLOW)
        return rhi > kMax - op.refs ? nullptr : "a try_get that fits refused (EOVERFLOW)";
      if (op.code != Code::kOk) return "a try_get refused with an unexpected code";
      if (op.ok) return meets(rlo, rhi, 1, kMax - op.refs) ? nullptr : "a try_get got where none could";
      return rlo <= 0 ? nullptr : "a try_get of a live folio got nothing";
    case Kind::kPut:
      if (op.ok) return rhi >= op.refs ? nullptr : "a put succeeded below zero";
      if (op.code != Code::kEINVAL) return "a put refused with an unexpected code";
      return rlo < op.refs ? nullptr : "a put of held references refused (EINVAL)";
    case Kind::kMaybePinned:
      // Exact where the folio keeps a pincount; else the unsigned compare with the bias.
      if (f.exact) {
        if (op.ok) return phi > 0 ? nullptr : "maybe pinned true with no pin possible";
        return plo <= 0 ? nullptr : "maybe pinned false while a pin was held throughout";
      }
      if (op.ok) return rhi >= bias ? nullptr : "maybe pinned true below the bias";
      return rlo < bias ? nullptr : "maybe pinned false at or above the bias throughout";
    case Kind::kRefcount:
      return op.value >= rlo && op.value <= rhi ? nullptr : "a refcount no order explains";
    case Kind::kPincount:
      return op.value >= plo && op.value <= phi ? nullptr : "a pincount no order explains";
  }
  return "unknown call";
}

struct Verdict {
  size_t ops = 0;
  size_t violations = 0;
  std::map<std::string, size_t> by_reason;
  std::vector<std::string> examples;
};

Verdict check_history(const std::vector<Op>& ops, const std::vector<Folio>& folios,
                      int64_t bias) {
  std::vector<Counter> refs(folios.size()), pins(folios.size()), pin_calls(folios.size());
  for (const Op& op : ops) {
    int64_t dref = 0, dpin = 0;
    effect(op, folios[op.folio], &dref, &dpin);
    refs[op.folio].add(op.start, op.end, dref);
    pins[op.folio].add(op.start, op.end, dpin);
    pin_calls[op.folio].add(op.start, op.end, holds_transient_ref(op.kind, folios[op.folio]) ? 1 : 0);
  }
  for (auto& c : refs) c.build();
  for (auto& c : pins) c.build();
  for (auto& c : pin_calls) c.build();
  Verdict v;
  v.ops = ops.size();
  for (const Op& op : ops) {
    const Folio& f = folios[op.folio];
    int64_t dref = 0, dpin = 0, rlo = 0, rhi = 0, plo = 0, phi = 0;
    effect(op, f, &dref, &dpin);
    refs[op.folio].bounds(f.base_ref, op.start, op.end, dref, &rlo, &rhi);
    pins[op.folio].bounds(f.base_pin, op.start, op.end, dpin, &plo, &phi);
    if (f.shared_ref) {
      // The refcount: the gets' counter, plus the pins' one reference where a pin is surely
      // (maybe) held, plus at most one transient reference per pin call (or, lazy, put or query) in flight (Folio).
      int64_t clo = 0, chi = 0;
      pin_calls[op.folio].bounds(0, op.start, op.end, holds_transient_ref(op.kind, f) ? 1 : 0, &clo, &chi);
      rlo += plo > 0 ? 1 : 0;
      rhi += (phi > 0 ? 1 : 0) + (chi - clo);
    }
    if (const char* why = unexplained(op, f, bias, rlo, rhi, plo, phi)) {
      ++v.by_reason[why];
      if (v.violations++ < 4) {
        char line[400];
        std::snprintf(line, sizeof line,
                      "%s [ticks %llu..%llu] folio %u refs %lld -> %s (code %s, value %lld); "
                      "refcount could be %lld..%lld, pincount %lld..%lld: %s",
                      kind_name(op.kind), (unsigned long long)op.start,
                      (unsigned long long)op.end, unsigned(op.folio), (long long)op.refs,
                      op.ok ? "ok/true" : "refused/false", code_name(op.code),
                      (long long)op.value, (long long)rlo, (long long)rhi, (long long)plo,
                      (long long)phi, why);
        v.examples.push_back(line);
      }
    }
  }
  return v;
}

// ---- the workload ---------------------------------------------------------------------------

struct Scenario {
  Scheme scheme;
  uint32_t min_order;  // hybrid: 1, so the big folio keeps an exact pincount
  bool near_limit;     // counts raised to INT32_MAX - 3 subpage pins; pins of 4 overflow
  uint32_t big_order;  // 3, or 9: a 2 MiB folio, large enough for a scheme to shard its count
};

std::string scenario_name(const Scenario& s) {
  return std::string(scheme_name(s.scheme)) + (s.near_limit ? ", near INT32_MAX" : ", low counts") +
         ", order " + std::to_string(s.big_order);
}

// What one thread holds, so that most of its releases are legitimate.
struct Held {
  int64_t pins[2] = {0, 0};  // subpages pinned through pin_pages
  int64_t gets[2] = {0, 0};
  struct Fast {
    uint64_t pfn, head;
    uint32_t order;
    int64_t refs;
    uint8_t folio;
  };
  std::vector<Fast> fast;
};

class Workload {
 public:
  Workload(PageArray& pa, const Scenario& sc, std::vector<Folio>& folios)
      : pa_(pa), sc_(sc), folios_(folios) {}

  // Runs `ops` random calls from thread t's generator, then releases what it holds.
  void run(uint32_t seed, int ops, std::vector<Op>* out) {
    std::mt19937 rng(seed);
    Held held;
    for (int i = 0; i < ops; ++i) one(rng, &held, out);
    for (uint8_t f = 0; f < 2; ++f) {
      while (held.pins[f] > 0) call_unpin(f, 1, &held, out);
      if (held.gets[f] > 0) call_put(f, held.gets[f], &held, out);
    }
    while (!held.fast.empty()) call_fast_unpin(held.fast.size() - 1, &held, out);
  }

 private:
  // The global clock: a seq_cst RMW before and after each call, so a call whose end tick is
  // below another's start tick happened before it (the RMWs synchronize).
  static std::atomic<uint64_t>& clock() {
    static std::atomic<uint64_t> c{0};
    return c;
  }
  template <typename F>
  void record(std::vector<Op>* out, Op op, F&& call) {
    op.start = clock().fetch_add(1, std::memory_order_seq_cst);
    call(op);
    op.end = clock().fetch_add(1, std::memory_order_seq_cst);
    out->push_back(op);
  }

  // A thread holds at most one subpage pin of the big folio at a time (pin or gup_fast), so
  // base 2 + 4 threads stays below the 8 of a whole-folio over-unpin: always refused.
  bool may_pin_big(const Held& h) const {
    int64_t fast = 0;
    for (const auto& x : h.fast) fast += x.folio == 1 ? x.refs : 0;
    return h.pins[1] + fast == 0;
  }

  void call_pin(uint8_t f, int64_t refs, Held* h, std::vector<Op>* out) {
    Op op{0, 0, Kind::kPin, f, false, Code::kOk, refs, 0};
    record(out, op, [&](Op& o) {
      uint64_t n = 0;
      const Status st = pa_.pin_pages(PageSet::range(folios_[f].head, uint64_t(refs)), bvec(true), &n);
      o.ok = st.ok();
      o.code = st.code;
    });
    if (out->back().ok) h->pins[f] += refs;
  }
  void call_unpin(uint8_t f, int64_t refs, Held* h, std::vector<Op>* out) {
    Op op{0, 0, Kind::kUnpin, f, false, Code::kOk, refs, 0};
    record(out, op, [&](Op& o) {
      const Status st = pa_.unpin_pages(PageSet::range(folios_[f].head, uint64_t(refs)), bvec(true));
      o.ok = st.ok();
      o.code = st.code;
    });
    // Ours, refused or not: what we held of it is gone (another thread's over-unpin may have
    // taken it, and then ours is refused). An over-unpin of more than we hold that succeeded
    // took ours too; one that was refused took nothing: we still hold ours. (Forgetting them
    // there leaked a pin at every refused whole-folio over-unpin, until the pins held passed a
    // whole folio's worth and those over-unpins, "always refused", succeeded.)
    if (out->back().ok || refs <= h->pins[f]) h->pins[f] = std::max<int64_t>(0, h->pins[f] - refs);
  }
  void call_fast_pin(uint8_t f, int64_t refs, Held* h, std::vector<Op>* out) {
    Op op{0, 0, Kind::kFastPin, f, false, Code::kOk, refs, 0};
    uint64_t head = 0;
    uint32_t order = 0;
    const uint64_t pfn = folios_[f].head;
    record(out, op, [&](Op& o) {
      o.ok = dispatch_scheme(pa_.scheme(), [&](auto tag) {
        return pa_.try_grab_folio_fast<decltype(tag)::value>(pfn, refs, true, true, &head, &order);
      });
    });
    if (out->back().ok) h->fast.push_back({pfn, head, order, refs, f});
  }
  void call_fast_unpin(size_t i, Held* h, std::vector<Op>* out) {
    const Held::Fast x = h->fast[i];
    h->fast.erase(h->fast.begin() + long(i));
    Op op{0, 0, Kind::kFastUnpin, x.folio, false, Code::kOk, x.refs, 0};
    record(out, op, [&](Op& o) {
      o.ok = dispatch_scheme(pa_.scheme(), [&](auto tag) {
        return pa_.release_folio_refs<decltype(tag)::value>(x.pfn, x.head, x.order, x.refs, true, true);
      });
    });
  }
  void call_get(uint8_t f, int64_t k, Held* h, std::vector<Op>* out) {
    Op op{0, 0, Kind::kGet, f, false, Code::kOk, k, 0};
    record(out, op, [&](Op& o) {
      const Status st = pa_.get_page(folios_[f].head, k);
      o.ok = st.ok();
      o.code = st.code;
    });
    if (out->back().ok) h->gets[f] += k;
  }
  void call_try_get(uint8_t f, int64_t k, Held* h, std::vector<Op>* out) {
    Op op{0, 0, Kind::kTryGet, f, false, Code::kOk, k, 0};
    record(out, op, [&](Op& o) {
      bool got = false;
      const Status st = pa_.try_get_page(folios_[f].head, k, &got);
      o.ok = st.ok() && got;
      o.code = st.code;
    });
    if (out->back().ok) h->gets[f] += k;
  }
  void call_put(uint8_t f, int64_t k, Held* h, std::vector<Op>* out) {
    Op op{0, 0, Kind::kPut, f, false, Code::kOk, k, 0};
    record(out, op, [&](Op& o) {
      bool freed = false;
      const Status st = pa_.put_page(folios_[f].head, k, &freed);
      o.ok = st.ok();
      o.code = st.code;
    });
    // Only a put that went through gives references up: the refused over-put of 2^30 used to
    // forget what this thread held, and those references then stayed on the folio for good.
    // Over a soak they added up past a whole-folio over-unpin's worth under bias (8 x 1024 at
    // order 3), which then succeeded, took every pin (a gup_fast grab's speculative reference
    // in flight among them), let the folio be freed under that grab, and left the checker's
    // model (a refused grab changes nothing). Held references stay bounded (at most 3 a
    // thread), so the over-unpins these scenarios call "always refused" are.
    if (out->back().ok) h->gets[f] = std::max<int64_t>(0, h->gets[f] - k);
  }
  void call_query(Kind kind, uint8_t f, std::vector<Op>* out) {
    Op op{0, 0, kind, f, false, Code::kOk, 0, 0};
    const uint64_t head = folios_[f].head;
    record(out, op, [&](Op& o) {
      if (kind == Kind::kMaybePinned) o.ok = pa_.maybe_dma_pinned(head);
      else if (kind == Kind::kRefcount) o.value = pa_.refcount(head);
      else o.value = pa_.pincount(head).value_or(0);
    });
  }

  void one(std::mt19937& rng, Held* h, std::vector<Op>* out) {
    const uint8_t f = uint8_t(rng() % 2);  // 0: order 0, 1: the big folio (order 3 or 9)
    const int64_t subpages = int64_t{1} << folios_[f].order;
    const uint32_t dice = rng() % 100;
    if (sc_.near_limit) {
      // Pins of one subpage fit (room for 3); pins of 4 never do.
      if (dice < 14) {
        if (f == 0 ? h->pins[0] < 1 : may_pin_big(*h)) call_pin(f, 1, h, out);
      } else if (dice < 28) {
        if (f == 1) call_pin(f, 4, h, out);  // always EOVERFLOW: 4 pins > room for 3
        else call_fast_pin(f, 1, h, out);
      } else if (dice < 40) {
        if (h->pins[f] > 0) call_unpin(f, 1, h, out);
        // An over-unpin where a pincount refuses it (without one it would eat the plain
        // references that hold the count near the limit: legal, but the scenario would drift).
        else if (folios_[f].exact) call_unpin(f, f == 1 ? subpages : 1, h, out);
      } else if (dice < 50) {
        if (f == 1 && may_pin_big(*h)) call_fast_pin(f, rng() % 4 == 0 ? 4 : 1, h, out);
      } else if (dice < 58) {
        if (!h->fast.empty()) call_fast_unpin(rng() % h->fast.size(), h, out);
      } else if (dice < 64) {
        if (h->gets[f] == 0) call_get(f, 1, h, out);
        else call_put(f, 1, h, out);
      } else if (dice < 68) {
        if (h->gets[f] == 0) call_try_get(f, 1, h, out);
      } else if (dice < 84) {
        call_query(Kind::kRefcount, f, out);
      } else if (dice < 92) {
        call_query(Kind::kMaybePinned, f, out);
      } else {
        call_query(Kind::kPincount, f, out);
      }
      return;
    }
    if (dice < 14) {
      if (f == 0 ? h->pins[0] < 2 : may_pin_big(*h)) call_pin(f, 1, h, out);
    } else if (dice < 26) {
      if (h->pins[f] > 0) call_unpin(f, 1, h, out);
    } else if (dice < 42) {
      // Over-unpins: the whole big folio (never that many pins: always refused), or one
      // subpage of a folio this thread holds no pin of (refused, or it takes another's pin).
      // On a 2 MiB folio, also one subpage while holding none: it takes another thread's pin
      // (pins counted in another thread's shard, where a scheme shards them) or is refused.
      if (f == 1 && sc_.big_order >= 9 && h->pins[1] == 0 && rng() % 2 == 0) call_unpin(f, 1, h, out);
      else if (f == 1) call_unpin(f, subpages, h, out);
      else if (h->pins[0] == 0) call_unpin(f, 1, h, out);
    } else if (dice < 50) {
      if (f == 0 || may_pin_big(*h)) call_fast_pin(f, 1, h, out);
    } else if (dice < 58) {
      if (!h->fast.empty()) call_fast_unpin(rng() % h->fast.size(), h, out);
    } else if (dice < 64) {
      if (h->gets[f] < 2) call_get(f, 1 + rng() % 2, h, out);
    } else if (dice < 70) {
      if (h->gets[f] > 0) call_put(f, 1 + int64_t(rng() % uint64_t(h->gets[f])), h, out);
    } else if (dice < 73) {
      call_put(f, int64_t{1} << 30, h, out);  // an over-put: always EINVAL at these counts
    } else if (dice < 76) {
      if (h->gets[f] < 2) call_try_get(f, 1, h, out);
    } else if (dice < 90) {
      call_query(Kind::kMaybePinned, f, out);
    } else if (dice < 95) {
      call_query(Kind::kRefcount, f, out);
    } else {
      call_query(Kind::kPincount, f, out);
    }
  }

  PageArray& pa_;
  const Scenario& sc_;
  std::vector<Folio>& folios_;
};

// Builds the scenario's array and folios, runs the threads, checks the history and the final
// counts. Returns the number of violations (printing the first few).
size_t run_scenario(const Scenario& sc, uint32_t seed, int ops_per_thread) {
  const uint32_t bias = sc.near_limit ? (1u << 20) : kDefaultBias;
  const uint64_t big = uint64_t{1} << sc.big_order;
  auto pa = make_array(std::max<uint64_t>(64, 2 * big), sc.scheme, false, 0, sc.min_order, bias);
  CHECK_OK(pa->make_folio(big, sc.big_order));
  std::vector<Folio> folios(2);
  folios[0].head = 0;
  folios[1].head = big;
  folios[1].order = sc.big_order;
  for (Folio& f : folios) {
    // What one subpage pin costs this folio, measured: the checker's model of the scheme.
    const int32_t r0 = pa->refcount(f.head);
    const int64_t p0 = pa->pincount(f.head).value_or(0);
    uint64_t n = 0;
    CHECK_OK(pa->pin_pages(PageSet::range(f.head, 1), bvec(true), &n));
    f.pin_ref = pa->refcount(f.head) - r0;
    f.exact = pa->pincount(f.head).has_value();
    f.pin_pin = f.exact ? *pa->pincount(f.head) - p0 : 0;
    // A second pin that adds no reference: the folio's pins share the first one's.
    CHECK_OK(pa->pin_pages(PageSet::range(f.head, 1), bvec(true), &n));
    f.shared_ref = f.exact && f.pin_ref == 1 && pa->refcount(f.head) == r0 + 1;
    CHECK_EQ(f.shared_ref, scheme_pins_share_ref(sc.scheme, SchemeParams{10, sc.min_order}, f.order));
    f.lazy = f.shared_ref && scheme_info(sc.scheme).lazy_pins;
    if (f.shared_ref) {
      f.pin_ref = 0;
      f.pin_limit = scheme_pin_limit(sc.scheme, SchemeParams{10, sc.min_order}, f.order);
    }
    CHECK_OK(pa->unpin_pages(PageSet::range(f.head, 1), bvec(true)));
    CHECK_OK(pa->unpin_pages(PageSet::range(f.head, 1), bvec(true)));
    if (sc.near_limit && f.shared_ref) {
      // Room for the pins' one reference and one more (a get, or gup_fast's own reference):
      // a first pin fits, and a get or a gup_fast grab beside a held pin is near the edge.
      CHECK_OK(pa->get_page(f.head, INT32_MAX - 2 - pa->refcount(f.head)));
    } else if (sc.near_limit) {
      // Room for exactly 3 subpage pins above plain references.
      CHECK_OK(pa->get_page(f.head, INT32_MAX - 3 * f.pin_ref - pa->refcount(f.head)));
    } else {
      // Two pins nobody releases: a maybe-pinned false is then a false negative.
      CHECK_OK(pa->pin_pages(PageSet::range(f.head, 1), bvec(true), &n));
      CHECK_OK(pa->pin_pages(PageSet::range(f.head, 1), bvec(true), &n));
    }
    f.base_pin = pa->pincount(f.head).value_or(0);
    // Sharing pins: the counter is the gets' references, without the pins' one.
    f.base_ref = pa->refcount(f.head) - (f.shared_ref && f.base_pin > 0 ? 1 : 0);
  }
  Workload w(*pa, sc, folios);
  std::vector<std::vector<Op>> per_thread(kThreads);
  for (auto& v : per_thread) v.reserve(size_t(ops_per_thread) + 64);
  run_threads(kThreads, [&](int t) { w.run(seed * 7919u + uint32_t(t), ops_per_thread, &per_thread[size_t(t)]); });
  std::vector<Op> ops;
  for (auto& v : per_thread) ops.insert(ops.end(), v.begin(), v.end());
  const Verdict v = check_history(ops, folios, bias);
  if (v.violations > 0)
    std::fprintf(stderr, "    %s (seed %u): %zu of %zu calls unexplained, e.g.\n",
                 scenario_name(sc).c_str(), seed, v.violations, v.ops);
  for (const std::string& line : v.examples) std::fprintf(stderr, "      %s\n", line.c_str());
  for (const auto& [why, n] : v.by_reason) std::fprintf(stderr, "      %6zu x %s\n", n, why.c_str());
  size_t bad = v.violations;
  // The low-count workload's own premise: a whole-folio over-unpin is always refused (held
  // pins and references stay bounded). Should it hold no more, the checker would be judging a
  // drifting scenario (under bias, a folio freed under a gup_fast grab in flight): say so
  // rather than blame the model. (Near INT32_MAX, pins that share one reference are not bounded
  // by the refcount: there pins of 4 succeed, add up, and a whole-folio unpin may take them.)
  const int64_t whole = int64_t{1} << sc.big_order;
  for (const Op& op : ops) {
    if (!sc.near_limit && op.kind == Kind::kUnpin && op.folio == 1 && op.refs == whole && op.ok) {
      std::fprintf(stderr, "    %s (seed %u): a whole-folio over-unpin succeeded: the workload leaks\n",
                   scenario_name(sc).c_str(), seed);
      ++bad;
      break;
    }
  }
  // The final counts are the base plus every successful change: nothing refused left a trace.
  for (uint8_t i = 0; i < 2; ++i) {
    int64_t dref = 0, dpin = 0;
    for (const Op& op : ops) {
      if (op.folio != i) continue;
      int64_t r = 0, p = 0;
      effect(op, folios[i], &r, &p);
      dref += r;
      dpin += p;
    }
    const Folio& f = folios[i];
    if (f.shared_ref && f.base_pin + dpin > 0) dref += 1;  // the pins' one reference
    if (pa->refcount(f.head) != f.base_ref + dref || pa->pincount(f.head).value_or(0) != f.base_pin + dpin) {
      std::fprintf(stderr, "    %s: folio %u ends at refcount %d pincount %lld, the history says %lld, %lld\n",
                   scenario_name(sc).c_str(), unsigned(i), pa->refcount(f.head),
                   (long long)pa->pincount(f.head).value_or(0), (long long)(f.base_ref + dref),
                   (long long)(f.base_pin + dpin));
      ++bad;
    }
  }
  return bad;
}

std::vector<Scenario> scenarios() {
  std::vector<Scenario> v;
  for (Scheme s : kAllSchemes)
    for (uint32_t big_order : {3u, 9u})
      for (bool near : {false, true}) v.push_back({s, 1, near, big_order});
  return v;
}

TEST_TAGGED(every_concurrent_history_is_linearizable, "concurrency history") {
  const char* soak = std::getenv("PINLAB_SOAK_SECONDS");
  const double seconds = soak != nullptr ? std::atof(soak) : 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint32_t seed = 1;
  uint64_t runs = 0, violations = 0;
  do {
    for (const Scenario& sc : scenarios()) {
      violations += run_scenario(sc, seed, seconds > 0 ? 4 * kOpsPerThread : kOpsPerThread);
      ++runs;
    }
    ++seed;
  } while (std::chrono::steady_clock::now() < until);
  if (seconds > 0)
    std::printf("  soak: %llu scenario runs of %d threads, %llu violations\n",
                (unsigned long long)runs, kThreads, (unsigned long long)violations);
  CHECK_EQ(violations, uint64_t{0});
}

// The checker itself: histories that no sequential order explains must be caught, and
// sequential ones must pass (a checker that cannot fail proves nothing).
TEST(the_history_checker_rejects_what_no_order_explains) {
  std::vector<Folio> folios(1);
  folios[0].pin_ref = 1;
  folios[0].pin_pin = 1;
  folios[0].exact = true;
  folios[0].base_ref = 2;  // one pin held throughout, plus the folio's own reference
  folios[0].base_pin = 1;
  auto op = [](uint64_t s, uint64_t e, Kind k, bool ok, Code c, int64_t refs, int64_t value = 0) {
    return Op{s, e, k, 0, ok, c, refs, value};
  };
  // A refused over-unpin of 2 overlapping a maybe-pinned false: the false negative.
  std::vector<Op> h = {op(1, 4, Kind::kUnpin, false, Code::kENOTPINNED, 2),
                       op(2, 3, Kind::kMaybePinned, false, Code::kOk, 0)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});
  // The same false overlapping a successful unpin of the held pin: explained.
  h[0] = op(1, 4, Kind::kUnpin, true, Code::kOk, 1);
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{0});
  // ...but not once that unpin ended before the query started and a pin came back before.
  h = {op(1, 2, Kind::kUnpin, true, Code::kOk, 1), op(3, 4, Kind::kPin, true, Code::kOk, 1),
       op(5, 6, Kind::kMaybePinned, false, Code::kOk, 0)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});
  // An unpin of the held pin refused while nothing overlaps it; a put of a held reference
  // refused; a read of a transient value; a pin that fits refused for overflow.
  h = {op(1, 2, Kind::kUnpin, false, Code::kENOTPINNED, 1), op(3, 4, Kind::kPut, false, Code::kEINVAL, 1),
       op(5, 6, Kind::kRefcount, true, Code::kOk, 0, -1), op(7, 8, Kind::kPin, false, Code::kEOVERFLOW, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{4});
  // The transient read is explained while an over-unpin that succeeded overlaps it.
  h = {op(1, 4, Kind::kUnpin, true, Code::kOk, 1), op(2, 3, Kind::kRefcount, true, Code::kOk, 0, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{0});
  // A pin refused for overflow near the limit is explained only if the count could be there.
  folios[0].base_ref = INT32_MAX - 1;
  h = {op(1, 2, Kind::kPin, false, Code::kEOVERFLOW, 2), op(3, 4, Kind::kPin, true, Code::kOk, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{0});
  h = {op(1, 2, Kind::kPin, true, Code::kOk, 1), op(3, 4, Kind::kPin, true, Code::kOk, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});  // the second cannot fit
  // Pins that share one reference: the refcount is the gets' plus one while any pin is held.
  Folio& sf = folios[0];
  sf.pin_ref = 0;
  sf.shared_ref = true;
  sf.pin_limit = INT32_MAX - 15;
  sf.base_ref = 1;  // the owner's reference (the counter: gets only)
  sf.base_pin = 1;  // one pin held throughout: its reference is in the refcount
  h = {op(1, 2, Kind::kRefcount, true, Code::kOk, 0, 1), op(3, 4, Kind::kRefcount, true, Code::kOk, 0, 2),
       op(5, 6, Kind::kRefcount, true, Code::kOk, 0, 3)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{2});  // 1: the pins' is missing; 3: one too many
  // A release in flight may still hold the reference it is about to give back...
  h = {op(1, 4, Kind::kUnpin, true, Code::kOk, 1), op(2, 3, Kind::kRefcount, true, Code::kOk, 0, 2)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{0});
  // ...but not once it ended.
  h = {op(1, 2, Kind::kUnpin, true, Code::kOk, 1), op(3, 4, Kind::kRefcount, true, Code::kOk, 0, 2)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});
  // A full refcount refuses only a first pin: pins of a pinned folio add no reference.
  sf.base_ref = INT32_MAX - 1;
  h = {op(1, 2, Kind::kPin, true, Code::kOk, 5), op(3, 4, Kind::kPin, false, Code::kEOVERFLOW, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});  // the refusal had room
  sf.base_pin = 0;
  sf.base_ref = INT32_MAX;
  h = {op(1, 2, Kind::kPin, true, Code::kOk, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});  // no room for the reference
  // The pin limit bounds the pincount.
  sf.base_ref = 1;
  sf.base_pin = INT32_MAX - 16;
  h = {op(1, 2, Kind::kPin, false, Code::kEOVERFLOW, 2), op(3, 4, Kind::kPin, true, Code::kOk, 1)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{0});
  h = {op(1, 2, Kind::kPin, true, Code::kOk, 2)};
  CHECK_EQ(check_history(h, folios, 1024).violations, size_t{1});
}

}  // namespace
}  // namespace pinlab::test
