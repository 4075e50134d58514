// pinlab_bench: single-thread pin+unpin cost of every scheme and path, in the native core.
//
//   pinlab_bench [--trials N] [--trial-ms MS] [--quick] [--json] [--strict]
//       The table: pin+unpin rounds over 64 MiB (16384 base pages) made of 4 KiB folios
//       (order 0) and of 2 MiB folios (order 9), for each scheme x path x input kind
//       ({start,count} range, or a PFN list of the same pages in order), in ns per 4 KiB page
//       per pin+unpin round; next to raw-atomic baselines over the same array shape; then
//       the targets as met/MISSED lines. --strict: exit 1 if a target is missed.
//
//   pinlab_bench --single [--pages N] [--count N] [--scheme S] [--folio-order K]
//                [--path per-page|bvec] [--input range|list] [--write] [--json] [--trials N]
//       One configuration only, timed per call: each round is pin_pages + unpin_pages of the
//       first `count` pages (range {0, count}, or the list 0..count-1) of an array of `pages`.
//       This is the native twin of one JS pinPages+unpinPages round (bench/js-calls.bench.mjs).
//
// Method: steady clock; every configuration is calibrated to ~trial-ms per trial (warm-up
// first), then trials are interleaved across configurations (trial t of every cell, then
// t+1, ...) so that a burst of noise on this shared machine hits all cells alike. Each trial
// starts with one untimed warm-up round. We report the median over trials and the spread
// (min..max, and the quartiles in JSON), never a single sample.
//
// Correctness is checked, not assumed: every Status is checked (a failure exits 2), every pin
// call must report all its pages pinned, each configuration is verified once up front (after
// one pin every sampled page reads pinned with the exact refcount and pincount the scheme
// prescribes; after the unpin it is back to its initial state), and after every trial the
// statistics must show exactly the work asked for (pins acquired = released = rounds x pages,
// grabs = rounds x 2 x the runs the path must take: that proves per-page really took one
// atomic per page and bvec one per folio run) and sampled pages must be back to refcount 1,
// pincount 0, not pinned.
#include <algorithm>
#include <bit>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "pages/page_array.h"

using namespace pinlab;
using namespace pinlab::bench;

namespace {

// ---- options --------------------------------------------------------------------------------

struct Options {
  int trials = 15;
  double trial_ms = -1;  // -1: the mode's default
  bool json = false;
  bool quick = false;
  bool strict = false;
  bool single = false;
  // The table: array size (must be a multiple of the 2 MiB folio, 512 pages).
  // --single: array size and pages per call.
  uint64_t pages = 0;  // 0: the mode's default
  uint64_t count = 0;  // --single: 0 = pages
  Scheme scheme = Scheme::kBias;
  uint32_t folio_order = 0;
  bool per_page = false;
  bool list = false;
  bool write = false;
};

[[noreturn]] void usage(const char* why) {
  std::string schemes;  // the registered names, "bias|hybrid|..."
  for (Scheme s : kSchemes) schemes += (schemes.empty() ? "" : "|") + std::string(scheme_name(s));
  std::fprintf(stderr,
               "pinlab_bench: %s\n"
               "usage: pinlab_bench [--trials N] [--trial-ms MS] [--quick] [--json] [--strict]\n"
               "       pinlab_bench --single [--pages N] [--count N] [--scheme %s]\n"
               "                    [--folio-order K] [--path per-page|bvec] [--input range|list]"
               " [--write]\n"
               "                    [--trials N] [--trial-ms MS] [--json]\n",
               why, schemes.c_str());
  std::exit(64);
}

uint64_t parse_u64(const char* opt, const char* v) {
  if (v == nullptr) usage(fmt("%s needs a value", opt).c_str());
  uint64_t x = 0;
  if (!parse_u64_value(v, &x)) usage(fmt("%s: bad number '%s'", opt, v).c_str());
  return x;
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool trials_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--json") {
      o.json = true;
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--strict") {
      o.strict = true;
    } else if (a == "--single") {
      o.single = true;
    } else if (a == "--write") {
      o.write = true;
    } else if (a == "--trials") {
      o.trials = int(parse_u64("--trials", next));
      trials_given = true;
      ++i;
    } else if (a == "--trial-ms") {
      if (next == nullptr) usage("--trial-ms needs a value");
      o.trial_ms = std::atof(next);
      if (!(o.trial_ms > 0)) usage("--trial-ms must be positive");
      ++i;
    } else if (a == "--pages") {
      o.pages = parse_u64("--pages", next);
      ++i;
    } else if (a == "--count") {
      o.count = parse_u64("--count", next);
      ++i;
    } else if (a == "--scheme") {
      if (next == nullptr || !parse_scheme(next, &o.scheme)) usage("--scheme: unknown scheme");
      ++i;
    } else if (a == "--folio-order") {
      o.folio_order = uint32_t(parse_u64("--folio-order", next));
      ++i;
    } else if (a == "--path") {
      if (next == nullptr) usage("--path needs a value");
      if (std::strcmp(next, "per-page") == 0) o.per_page = true;
      else if (std::strcmp(next, "bvec") == 0) o.per_page = false;
      else usage("--path: per-page or bvec");
      ++i;
    } else if (a == "--input") {
      if (next == nullptr) usage("--input needs a value");
      if (std::strcmp(next, "list") == 0) o.list = true;
      else if (std::strcmp(next, "range") == 0) o.list = false;
      else usage("--input: range or list");
      ++i;
    } else if (a == "--help" || a == "-h") {
      usage("help");
    } else {
      usage(fmt("unknown option '%s'", a.c_str()).c_str());
    }
  }
  if (o.quick && !trials_given) o.trials = 5;
  if (o.trials < 3) usage("--trials must be at least 3 (a median of fewer is not a median)");
  if (o.trial_ms < 0) o.trial_ms = o.single ? (o.quick ? 5 : 20) : (o.quick ? 1 : 6);
  if (o.pages == 0) o.pages = o.single ? 262144 : 16384;
  if (!o.single && o.pages % 512 != 0) usage("--pages must be a multiple of 512 (2 MiB folios)");
  if (o.count == 0) o.count = o.pages;
  if (o.count > o.pages) usage("--count must not exceed --pages");
  return o;
}

const char* folio_label(uint32_t order) {
  switch (order) {
    case 0: return "4 KiB";
    case 9: return "2 MiB";
    case 18: return "1 GiB";
    default: return "order";
  }
}

// ---- what one measured configuration does ---------------------------------------------------

enum class Kind {
  kCore,         // PageArray::pin_pages + unpin_pages
  kRawPerPage,   // one relaxed fetch_add per page, then one fetch_sub per page
  kRawPerFolio,  // one fetch_add of the run length per folio, then one fetch_sub per folio
};

struct Cell {
  Kind kind = Kind::kCore;
  uint32_t order = 0;
  Scheme scheme = Scheme::kBias;
  bool per_page = false;
  bool list = false;
  PageArray* pa = nullptr;
  PageSet set;
  PinFlags pin, unpin;
  uint64_t pages = 0;          // base pages per round
  uint64_t runs_per_call = 0;  // grabs one pin (or unpin) call must make
  int32_t* raw = nullptr;      // raw baselines: the refcount array
  uint64_t rounds_per_trial = 1;
  std::vector<double> samples;  // ns per page per round, one per trial
  Summary s;
};

std::string cell_name(const Cell& c) {
  const char* path = c.kind == Kind::kRawPerPage    ? "raw atomics, 1 per page"
                     : c.kind == Kind::kRawPerFolio ? "raw atomics, 1 per folio"
                     : c.per_page                   ? "per-page"
                                                    : "bvec";
  if (c.kind != Kind::kCore) return fmt("%s folios, %s", folio_label(c.order), path);
  return fmt("%s folios, %s, %s, %s", folio_label(c.order), scheme_name(c.scheme), path,
             c.list ? "PFN list" : "range");
}

[[noreturn, gnu::cold, gnu::noinline]] void fail_status(const Cell& c, const char* what,
                                                        const Status& st) {
  die("%s failed in [%s]: %s (%s)", what, cell_name(c).c_str(), code_name(st.code),
      describe(st).c_str());
}

// The raw baselines. The mask and the deltas go through do_not_optimize, so the compiler
// cannot see that the 512 pages of a 2 MiB folio hit one address; the barrier after each
// atomic stops it from merging neighbouring atomics into one. Each atomic's result is used
// (lock xadd, as the core's overflow check needs), not discarded (lock add).
[[gnu::noinline]] void raw_per_page_rounds(int32_t* a, uint64_t n, uint64_t mask, int32_t delta,
                                           uint64_t rounds) {
  do_not_optimize(a);
  do_not_optimize(n);
  do_not_optimize(mask);
  do_not_optimize(delta);
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint64_t p = 0; p < n; ++p) {
      int32_t old = std::atomic_ref<int32_t>(a[p & mask]).fetch_add(delta, std::memory_order_relaxed);
      do_not_optimize(old);
    }
    for (uint64_t p = 0; p < n; ++p) {
      int32_t old = std::atomic_ref<int32_t>(a[p & mask]).fetch_sub(delta, std::memory_order_relaxed);
      do_not_optimize(old);
    }
  }
}

[[gnu::noinline]] void raw_per_folio_rounds(int32_t* a, uint64_t n, uint64_t step, int32_t delta,
                                            uint64_t rounds) {
  do_not_optimize(a);
  do_not_optimize(n);
  do_not_optimize(step);
  do_not_optimize(delta);
  const int32_t run = int32_t(step) * delta;
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint64_t head = 0; head < n; head += step) {
      int32_t old = std::atomic_ref<int32_t>(a[head]).fetch_add(run, std::memory_order_relaxed);
      do_not_optimize(old);
    }
    for (uint64_t head = 0; head < n; head += step) {
      int32_t old = std::atomic_ref<int32_t>(a[head]).fetch_sub(run, std::memory_order_relaxed);
      do_not_optimize(old);
    }
  }
}

void run_rounds(Cell& c, uint64_t rounds) {
  switch (c.kind) {
    case Kind::kCore:
      for (uint64_t r = 0; r < rounds; ++r) {
        uint64_t pinned = 0;
        Status st = c.pa->pin_pages(c.set, c.pin, &pinned);
        if (!st.ok()) [[unlikely]] fail_status(c, "pin_pages", st);
        if (pinned != c.set.count) [[unlikely]]
          die("[%s] pin_pages pinned %" PRIu64 " of %" PRIu64 " pages", cell_name(c).c_str(),
              pinned, c.set.count);
        st = c.pa->unpin_pages(c.set, c.unpin);
        if (!st.ok()) [[unlikely]] fail_status(c, "unpin_pages", st);
      }
      break;
    case Kind::kRawPerPage:
      raw_per_page_rounds(c.raw, c.pages, ~((uint64_t{1} << c.order) - 1), int32_t(kDefaultBias),
                          rounds);
      break;
    case Kind::kRawPerFolio:
      raw_per_folio_rounds(c.raw, c.pages, uint64_t{1} << c.order, int32_t(kDefaultBias), rounds);
      break;
  }
}

// ---- verification ---------------------------------------------------------------------------

struct Snap {
  uint64_t acquired = 0, released = 0, grabs = 0;
};

Snap snap(const Cell& c) {
  if (c.kind != Kind::kCore) return {};
  return {c.pa->stat(Stat::kPinAcquired), c.pa->stat(Stat::kPinReleased), c.pa->stat(Stat::kGrabs)};
}

// A few pages spread over the set: first, last, the ends of the first folio, and the middle.
std::vector<uint64_t> sample_pfns(const Cell& c) {
  const uint64_t n = c.pages, f = uint64_t{1} << c.order;
  std::vector<uint64_t> v = {0, n - 1, n / 2, n / 2 + 1, f - 1, f, n / 3};
  for (uint64_t& p : v) p = std::min(p, n - 1);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// The refcount and exact pincount of a folio of 2^order pages fully pinned once (the pages
// start at refcount 1, no pins), as pin-semantics.md section 2 prescribes.
struct Expect {
  int64_t ref;
  std::optional<int64_t> pins;
};
Expect expect_pinned(const Cell& c, uint64_t pinned_subpages) {
  const int64_t k = int64_t(pinned_subpages), bias = c.pa->pin_bias();
  return dispatch_scheme(c.scheme, [&](auto tag) -> Expect {
    using P = SchemePolicy<decltype(tag)::value>;
    const SchemeParams params{uint32_t(std::countr_zero(uint64_t(bias))), c.pa->pincount_min_order()};
    const PinCost cost = P::pin_cost(params, c.order, k, c.pin.write);
    const bool exact = P::kPincount != PincountHome::kNone && P::keeps_pincount(params, c.order);
    // Pins that share one reference (scheme_api.h): one for all of them, not cost.ref.
    const bool shared = scheme_pins_share_ref(c.scheme, params, c.order);
    return {1 + (shared ? (cost.pin > 0 ? 1 : 0) : cost.ref), exact ? std::optional<int64_t>(cost.pin) : std::nullopt};
  });
}

void check_idle_pages(const Cell& c, const char* when) {
  for (uint64_t pfn : sample_pfns(c)) {
    const int32_t ref = c.pa->refcount(pfn);
    const auto pins = c.pa->pincount(pfn);
    const bool maybe = c.pa->maybe_dma_pinned(pfn);
    if (ref != 1 || (pins && *pins != 0) || maybe)
      die("[%s] %s: pfn %" PRIu64 " not back to its initial state: refcount %d (want 1), "
          "pincount %lld (want 0), maybe_dma_pinned %d (want 0)",
          cell_name(c).c_str(), when, pfn, ref, pins ? (long long)*pins : 0LL, int(maybe));
  }
}

// Once per configuration, before any timing: one pin and one unpin, with the exact effect of
// each checked on sample pages, and the grab count of each call checked against the path.
void verify_setup(Cell& c) {
  if (c.kind != Kind::kCore) return;
  check_idle_pages(c, "before the first pin");
  const Snap a = snap(c);
  uint64_t pinned = 0;
  Status st = c.pa->pin_pages(c.set, c.pin, &pinned);
  if (!st.ok()) fail_status(c, "pin_pages (setup)", st);
  if (pinned != c.set.count) die("[%s] setup pin pinned %" PRIu64, cell_name(c).c_str(), pinned);
  const Snap b = snap(c);
  if (b.acquired - a.acquired != c.set.count || b.grabs - a.grabs != c.runs_per_call)
    die("[%s] setup pin: %" PRIu64 " pins acquired in %" PRIu64 " grabs, want %" PRIu64
        " in %" PRIu64,
        cell_name(c).c_str(), b.acquired - a.acquired, b.grabs - a.grabs, c.set.count,
        c.runs_per_call);
  const uint64_t f = uint64_t{1} << c.order;
  for (uint64_t pfn : sample_pfns(c)) {
    // Every page of the set (PFNs 0..pages-1) is pinned once, so a sampled folio holds one
    // pin per subpage of it inside the set.
    const uint64_t head = pfn & ~(f - 1);
    const Expect e = expect_pinned(c, std::min(head + f, c.pages) - head);
    const int32_t ref = c.pa->refcount(pfn);
    const auto pins = c.pa->pincount(pfn);
    if (ref != e.ref || pins.has_value() != e.pins.has_value() || (pins && *pins != *e.pins) ||
        !c.pa->maybe_dma_pinned(pfn))
      die("[%s] after one pin, pfn %" PRIu64 ": refcount %d (want %lld), pincount %lld (want "
          "%lld), maybe_dma_pinned %d (want 1)",
          cell_name(c).c_str(), pfn, ref, (long long)e.ref, pins ? (long long)*pins : -1LL,
          e.pins ? (long long)*e.pins : -1LL, int(c.pa->maybe_dma_pinned(pfn)));
  }
  st = c.pa->unpin_pages(c.set, c.unpin);
  if (!st.ok()) fail_status(c, "unpin_pages (setup)", st);
  const Snap d = snap(c);
  if (d.released - b.released != c.set.count || d.grabs - b.grabs != c.runs_per_call)
    die("[%s] setup unpin: %" PRIu64 " pins released in %" PRIu64 " grabs, want %" PRIu64
        " in %" PRIu64,
        cell_name(c).c_str(), d.released - b.released, d.grabs - b.grabs, c.set.count,
        c.runs_per_call);
  check_idle_pages(c, "after one pin+unpin");
}

// After `rounds` rounds since `before`: exactly that work was done, and nothing is left over.
void verify_after(const Cell& c, const Snap& before, uint64_t rounds) {
  if (c.kind != Kind::kCore) {
    const uint64_t step = uint64_t{1} << c.order;
    for (uint64_t p = 0; p < c.pages; ++p) {
      const int32_t want = p % step == 0 ? 1 : 0;
      if (c.raw[p] != want)
        die("[%s] raw array slot %" PRIu64 " is %d after a trial, want %d", cell_name(c).c_str(),
            p, c.raw[p], want);
    }
    return;
  }
  const Snap a = snap(c);
  const uint64_t want_pins = rounds * c.set.count, want_grabs = rounds * 2 * c.runs_per_call;
  if (a.acquired - before.acquired != want_pins || a.released - before.released != want_pins ||
      a.grabs - before.grabs != want_grabs || a.acquired != a.released)
    die("[%s] after %" PRIu64 " rounds: acquired +%" PRIu64 ", released +%" PRIu64
        ", grabs +%" PRIu64 " (want +%" PRIu64 ", +%" PRIu64 ", +%" PRIu64
        "); totals acquired %" PRIu64 " released %" PRIu64,
        cell_name(c).c_str(), rounds, a.acquired - before.acquired, a.released - before.released,
        a.grabs - before.grabs, want_pins, want_pins, want_grabs, a.acquired, a.released);
  check_idle_pages(c, "after a trial");
}

// ---- timing ---------------------------------------------------------------------------------

// One trial: an untimed warm-up round, then `rounds` timed rounds. Returns ns per round.
double timed_trial(Cell& c, uint64_t rounds) {
  const Snap before = snap(c);
  run_rounds(c, 1);
  clobber_memory();
  const auto t0 = Clock::now();
  run_rounds(c, rounds);
  clobber_memory();
  const auto t1 = Clock::now();
  verify_after(c, before, rounds + 1);
  return elapsed_ns(t0, t1) / double(rounds);
}

// Finds how many rounds fill about `trial_ns`, after warming the caches and the branch
// predictors up for a few milliseconds.
void calibrate(Cell& c, double trial_ns) {
  verify_setup(c);
  uint64_t rounds = 1;
  double per_round = 0;
  for (;;) {
    const auto t0 = Clock::now();
    run_rounds(c, rounds);
    const double t = elapsed_ns(t0, Clock::now());
    per_round = t / double(rounds);
    if (t >= std::max(trial_ns / 2, 2e6) || rounds >= (uint64_t{1} << 32)) break;
    rounds *= 2;
  }
  verify_after(c, snap(c), 0);  // (checks the idle state; the counts were not snapshotted)
  c.rounds_per_trial = std::max<uint64_t>(1, uint64_t(std::ceil(trial_ns / per_round)));
}

void measure(std::vector<Cell*>& cells, const Options& o) {
  const double trial_ns = o.trial_ms * 1e6;
  for (Cell* c : cells) calibrate(*c, trial_ns);
  for (int t = 0; t < o.trials; ++t)
    for (Cell* c : cells)
      c->samples.push_back(timed_trial(*c, c->rounds_per_trial) / double(c->pages));
  for (Cell* c : cells) c->s = summarize(c->samples);
}

// ---- set-up ---------------------------------------------------------------------------------

std::unique_ptr<PageArray> make_array(uint64_t pages, Scheme scheme, uint32_t order) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages);
  cfg.scheme = scheme;
  cfg.folio_order = order;
  std::unique_ptr<PageArray> pa;
  const Status st = PageArray::create(cfg, &pa);
  if (!st.ok())
    die("PageArray::create(pages %" PRIu64 ", %s, folio order %u): %s (%s)", pages,
        scheme_name(scheme), order, code_name(st.code), describe(st).c_str());
  return pa;
}

Cell core_cell(PageArray* pa, uint32_t order, bool per_page, bool list, bool write,
               const std::vector<uint32_t>& pfns, uint64_t count) {
  Cell c;
  c.kind = Kind::kCore;
  c.order = order;
  c.scheme = pa->scheme();
  c.per_page = per_page;
  c.list = list;
  c.pa = pa;
  c.set = list ? PageSet::pfns(pfns.data(), count) : PageSet::range(0, count);
  c.pin = PinFlags{write, per_page, false};
  c.unpin = PinFlags{write, per_page, false};
  c.pages = count;
  // The set starts at PFN 0 (folio-aligned) and lists its pages in order, so bvec takes one
  // run per folio it touches.
  const uint64_t f = uint64_t{1} << order;
  c.runs_per_call = per_page ? count : (count + f - 1) / f;
  return c;
}

std::vector<uint32_t> identity_list(uint64_t n) {
  std::vector<uint32_t> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = uint32_t(i);
  return v;
}

// ---- the table ------------------------------------------------------------------------------

// kSchemes: every registered scheme (pages/scheme.h).
constexpr uint32_t kOrders[] = {0, 9};

struct Target {
  std::string id, what;
  double ratio;          // of the medians: the verdict
  double ratio_of_mins;  // of the best trials: context on this noisy machine, no verdict
  double limit;
  bool at_most;  // ratio <= limit, else ratio >= limit
  bool met() const { return at_most ? ratio <= limit : ratio >= limit; }
};

int run_table(const Options& o) {
  const uint64_t n = o.pages;
  const std::vector<uint32_t> pfns = identity_list(n);

  std::vector<std::unique_ptr<PageArray>> arrays;
  std::vector<std::vector<int32_t>> raws;
  raws.reserve(std::size(kOrders));
  std::vector<Cell> all;
  all.reserve(64);
  // Index: [order][scheme][per_page][list]
  auto idx = [](size_t oi, size_t si, bool pp, bool list) {
    return ((oi * 4 + si) * 2 + (pp ? 1 : 0)) * 2 + (list ? 1 : 0);
  };
  all.resize(2 * 4 * 2 * 2);
  for (size_t oi = 0; oi < std::size(kOrders); ++oi) {
    for (size_t si = 0; si < std::size(kSchemes); ++si) {
      arrays.push_back(make_array(n, kSchemes[si], kOrders[oi]));
      for (bool pp : {true, false})
        for (bool list : {false, true})
          all[idx(oi, si, pp, list)] =
              core_cell(arrays.back().get(), kOrders[oi], pp, list, /*write=*/true, pfns, n);
    }
  }
  std::vector<Cell> raw_cells;
  for (uint32_t order : kOrders) {
    std::vector<int32_t> a(n, 0);
    for (uint64_t h = 0; h < n; h += uint64_t{1} << order) a[h] = 1;
    raws.push_back(std::move(a));
    for (Kind k : {Kind::kRawPerPage, Kind::kRawPerFolio}) {
      Cell c;
      c.kind = k;
      c.order = order;
      c.raw = raws.back().data();
      c.pages = n;
      raw_cells.push_back(c);
    }
  }

  std::vector<Cell*> cells;
  for (Cell& c : all) cells.push_back(&c);
  for (Cell& c : raw_cells) cells.push_back(&c);
  if (!o.json)
    std::fprintf(stderr, "pinlab_bench: %zu configurations x %d trials of ~%.3g ms...\n",
                 cells.size(), o.trials, o.trial_ms);
  measure(cells, o);

  auto cell = [&](size_t oi, Scheme s, bool pp, bool list) -> const Summary& {
    const size_t si = size_t(std::find(std::begin(kSchemes), std::end(kSchemes), s) -
                             std::begin(kSchemes));
    return all[idx(oi, si, pp, list)].s;
  };
  auto med = [&](size_t oi, Scheme s, bool pp, bool list) { return cell(oi, s, pp, list).median; };
  auto raw = [&](size_t oi, Kind k) -> const Summary& {
    return raw_cells[oi * 2 + (k == Kind::kRawPerFolio ? 1 : 0)].s;
  };
  auto target = [](const char* id, const char* what, const Summary& num, const Summary& den,
                   double limit, bool at_most) {
    return Target{id, what, num.median / den.median, num.min / den.min, limit, at_most};
  };

  std::vector<Target> targets;
  targets.push_back(target("1",
                           "bias per-page pin+unpin (range, 4 KiB folios) vs raw per-page "
                           "atomics (1 fetch_add + 1 fetch_sub per page)",
                           cell(0, Scheme::kBias, true, false), raw(0, Kind::kRawPerPage), 1.5,
                           true));
  targets.push_back(target("2", "bias bvec vs per-page over 2 MiB folios, range: bvec faster by",
                           cell(1, Scheme::kBias, true, false),
                           cell(1, Scheme::kBias, false, false), 100, false));
  targets.push_back(target("3",
                           "bias bvec vs per-page over 2 MiB folios, PFN list: bvec faster by",
                           cell(1, Scheme::kBias, true, true), cell(1, Scheme::kBias, false, true),
                           10, false));
  targets.push_back(target("4",
                           "separate vs bias per page (per-page path, 4 KiB folios, range)",
                           cell(0, Scheme::kSeparate, true, false),
                           cell(0, Scheme::kBias, true, false), 2.2, true));
  const bool all_met =
      std::all_of(targets.begin(), targets.end(), [](const Target& t) { return t.met(); });

  if (o.json) {
    std::string out = "{\"mode\":\"table\",";
    out += fmt("\"pages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"trials\":%d,\"trialMs\":%g,"
               "\"write\":true,\"unit\":\"ns per 4 KiB page per pin+unpin round\",\"cells\":[",
               n, n * 4096, o.trials, o.trial_ms);
    bool first = true;
    for (const Cell* c : cells) {
      if (!first) out += ",";
      first = false;
      const char* path = c->kind == Kind::kRawPerPage    ? "raw-per-page"
                         : c->kind == Kind::kRawPerFolio ? "raw-per-folio"
                         : c->per_page                   ? "per-page"
                                                         : "bvec";
      out += fmt("{\"folioOrder\":%u,\"scheme\":%s,\"path\":\"%s\",\"input\":%s,"
                 "\"roundsPerTrial\":%" PRIu64 ",\"nsPerPage\":",
                 c->order,
                 c->kind == Kind::kCore ? fmt("\"%s\"", scheme_name(c->scheme)).c_str() : "null",
                 path, c->kind == Kind::kCore ? (c->list ? "\"list\"" : "\"range\"") : "null",
                 c->rounds_per_trial);
      out += json_summary(c->s) + "}";
    }
    out += "],\"bvecSpeedup2M\":{";
    for (size_t si = 0; si < std::size(kSchemes); ++si) {
      const Scheme s = kSchemes[si];
      out += fmt("%s\"%s\":{\"range\":%.6g,\"list\":%.6g}", si ? "," : "", scheme_name(s),
                 med(1, s, true, false) / med(1, s, false, false),
                 med(1, s, true, true) / med(1, s, false, true));
    }
    out += "},\"targets\":[";
    for (size_t i = 0; i < targets.size(); ++i) {
      const Target& t = targets[i];
      out += fmt("%s{\"id\":\"%s\",\"what\":\"%s\",\"ratio\":%.6g,\"ratioOfMinima\":%.6g,"
                 "\"limit\":%g,\"op\":\"%s\",\"met\":%s}",
                 i ? "," : "", t.id.c_str(), t.what.c_str(), t.ratio, t.ratio_of_mins, t.limit,
                 t.at_most ? "<=" : ">=", t.met() ? "true" : "false");
    }
    out += fmt("],\"allMet\":%s}\n", all_met ? "true" : "false");
    std::fputs(out.c_str(), stdout);
    return o.strict && !all_met ? 1 : 0;
  }

  std::printf(
      "pinlab native benchmark: pin+unpin of %" PRIu64 " pages (%" PRIu64
      " MiB), single thread, write pins\n"
      "ns per 4 KiB page per pin+unpin round: median [min .. max] of %d trials (~%.3g ms "
      "each)\n\n",
      n, n * 4096 >> 20, o.trials, o.trial_ms);
  const char* hdr = "%-7s %-11s %-26s %-30s %-30s\n";
  std::printf(hdr, "folios", "scheme", "path", "{start,count} range", "PFN list (uint32)");
  auto cellstr = [](const Cell& c) {
    return fmt("%8s [%s .. %s]", num(c.s.median).c_str(), num(c.s.min).c_str(),
               num(c.s.max).c_str());
  };
  for (size_t oi = 0; oi < std::size(kOrders); ++oi) {
    for (size_t si = 0; si < std::size(kSchemes); ++si)
      for (bool pp : {true, false})
        std::printf(hdr, folio_label(kOrders[oi]), scheme_name(kSchemes[si]),
                    pp ? "per-page" : "bvec", cellstr(all[idx(oi, si, pp, false)]).c_str(),
                    cellstr(all[idx(oi, si, pp, true)]).c_str());
    std::printf(hdr, folio_label(kOrders[oi]), "(baseline)", "raw atomics, 1 per page",
                cellstr(raw_cells[oi * 2]).c_str(), "");
    std::printf(hdr, folio_label(kOrders[oi]), "(baseline)", "raw atomics, 1 per folio",
                cellstr(raw_cells[oi * 2 + 1]).c_str(), "");
    std::printf("\n");
  }

  std::printf("bvec speedup over per-page, 2 MiB folios (per-page median / bvec median):\n");
  for (Scheme s : kSchemes)
    std::printf("  %-11s range %7.1fx   PFN list %6.1fx\n", scheme_name(s),
                med(1, s, true, false) / med(1, s, false, false),
                med(1, s, true, true) / med(1, s, false, true));
  std::printf("cost relative to bias, per-page path, 4 KiB folios, range:\n ");
  for (Scheme s : kSchemes)
    std::printf(" %s %.2fx", scheme_name(s),
                med(0, s, true, false) / med(0, Scheme::kBias, true, false));
  std::printf("\n\n");

  for (const Target& t : targets)
    std::printf("target %s: %s: %.3gx (%s %gx)  %s   [ratio of best trials: %.3gx]\n",
                t.id.c_str(), t.what.c_str(), t.ratio, t.at_most ? "limit <=" : "need >=",
                t.limit, t.met() ? "met" : "MISSED", t.ratio_of_mins);
  std::printf("(verdicts use the ratio of the medians)\n");
  std::printf("\nall state checks passed (every Status, pinned counts, stats balanced, "
              "pages back to refcount 1 after every trial)\n");
  return o.strict && !all_met ? 1 : 0;
}

// ---- --single: the native twin of one JS call -----------------------------------------------

int run_single(const Options& o) {
  auto pa = make_array(o.pages, o.scheme, o.folio_order);
  const std::vector<uint32_t> pfns = o.list ? identity_list(o.count) : std::vector<uint32_t>{};
  Cell c = core_cell(pa.get(), o.folio_order, o.per_page, o.list, o.write, pfns, o.count);
  std::vector<Cell*> cells = {&c};
  measure(cells, o);
  // Samples are ns per page; per round = x count.
  std::vector<double> per_round;
  for (double s : c.samples) per_round.push_back(s * double(c.pages));
  const Summary r = summarize(per_round);
  if (o.json) {
    std::printf("{\"mode\":\"single\",\"pages\":%" PRIu64 ",\"count\":%" PRIu64
                ",\"scheme\":\"%s\",\"folioOrder\":%u,\"path\":\"%s\",\"input\":\"%s\","
                "\"write\":%s,\"trials\":%d,\"roundsPerTrial\":%" PRIu64
                ",\"samplesNsPerRound\":[",
                o.pages, o.count, scheme_name(o.scheme), o.folio_order,
                o.per_page ? "per-page" : "bvec", o.list ? "list" : "range",
                o.write ? "true" : "false", o.trials, c.rounds_per_trial);
    for (size_t i = 0; i < per_round.size(); ++i)
      std::printf("%s%.6g", i ? "," : "", per_round[i]);
    std::printf("],\"nsPerRound\":%s,\"nsPerPage\":%s}\n", json_summary(r).c_str(),
                json_summary(c.s).c_str());
  } else {
    std::printf("%s: pin+unpin of %" PRIu64 " pages per round: %s ns per round [%s .. %s], "
                "%s ns per page (%d trials x %" PRIu64 " rounds)\n",
                cell_name(c).c_str(), o.count, num(r.median).c_str(), num(r.min).c_str(),
                num(r.max).c_str(), num(c.s.median).c_str(), o.trials, c.rounds_per_trial);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  return o.single ? run_single(o) : run_table(o);
}
