// pinlab_gup_bench: the gup_fast path (pinUserPagesFast + unpinUserPages) in the native core,
// from 1 thread to all cores, on private and on shared regions.
//
//   pinlab_gup_bench [--threads 1,2,4,...] [--pages N] [--trials N] [--trial-ms MS]
//                    [--quick] [--json] [--strict]
//
// One round = AddressSpace::gup_fast (FOLL_PIN | FOLL_WRITE, no longterm, slow path allowed)
// of a whole populated region of `pages` virtual pages (default 16384 = 64 MiB), then
// AddressSpace::unpin_user_pages of the PFNs it returned (batched by folio run). The region is
// mapped with 4 KiB pages (PTEs) or with 2 MiB folios (order 9, PMD leaves: mmap huge=true),
// for each scheme (bias, hybrid, separate, write-bias). Figures are ns per 4 KiB page per
// round, per thread (time of a trial / rounds / pages per thread), and the aggregate
// throughput of all threads.
//
// Layout: per scheme and mapping, one PageArray (populated = false: every page starts free and
// the allocator hands them out at fault time) of max_threads x pages pages, and one
// AddressSpace over it with max_threads disjoint, 2 MiB-aligned regions of `pages` pages,
// each populated by mmap(populate, write). "private": thread t pins and unpins region t (one
// process, disjoint buffers: no shared folio, no shared page table page); "shared": every
// thread pins and unpins region 0 at once (the same folio heads, contended). With 1 thread the
// two are the same work and are measured once.
//
// Baseline: PageArray::pin_pages + unpin_pages (default bvec path, PFN list) of the PFNs gup
// returned for region 0: "PageArray.pinPages on the same pages", single thread, same array.
//
// Method (as pin_bench.cpp): steady clock; each configuration is checked, warmed up and
// calibrated to ~trial-ms per trial; trials are interleaved across configurations; each trial
// starts with one untimed warm-up round per thread; medians with [min .. max], never one
// sample. Threads start each trial together on a spin barrier; the trial's time is from the
// earliest start to the latest finish.
//
// Correctness is checked, not assumed (exit 2 on any failure): every Status; every gup must
// return all its pages, and all of them from the fast path (MmStat::kFastPages grows by exactly
// the pages asked for, kSlowFallbacks, kSlowPages, kRecheckFailures and kSeqRetries do not
// move: a figure that went through the slow path is not a fast-path figure); pinAcquired ==
// pinReleased and both grew by exactly rounds x threads x pages; sampled pages of every region
// used are back to their mapped refcount (1 for a 4 KiB mapping, 512 on a 2 MiB folio), pincount
// 0 where counted, and not maybe_dma_pinned. Once per configuration, before timing: the mapping
// really is made of PTEs or PMD leaves as asked, gup returns exactly the PFNs the page table
// maps, and after one pin sampled pages hold the exact refcount and pincount the scheme
// prescribes.
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
#include <thread>
#include <vector>

#include "mm/address_space.h"
#include "bench_util.h"
#include "pages/page_array.h"

using namespace pinlab;
using namespace pinlab::bench;

namespace {

// The host kernel's own pin_user_pages on the development machine (from the issue): context
// lines only, not measured here.
constexpr double kKernelNsPer4K = 80;
constexpr double kKernelNsPer4KOfThp = 6;

// ---- options --------------------------------------------------------------------------------

struct Options {
  int trials = 15;
  double trial_ms = -1;  // -1: default (20, --quick 2)
  bool json = false;
  bool quick = false;
  bool strict = false;
  uint64_t pages = 16384;      // per region (per thread when private)
  std::vector<int> threads;    // default {1, hardware_concurrency}
  unsigned hw = 1;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "pinlab_gup_bench: %s\n"
               "usage: pinlab_gup_bench [--threads 1,2,4,...] [--pages N] [--trials N] "
               "[--trial-ms MS]\n"
               "                        [--quick] [--json] [--strict]\n"
               "  --threads   thread counts to measure (default: 1 and hardware_concurrency)\n"
               "  --pages     pages per region, a multiple of 512 (default 16384 = 64 MiB)\n"
               "  --trials    trials per configuration (default 15, --quick 5)\n"
               "  --trial-ms  length of a trial (default 20, --quick 2)\n"
               "  --strict    exit 1 if a target is missed\n",
               why);
  std::exit(64);
}

uint64_t parse_u64(const char* opt, const char* v) {
  if (v == nullptr) usage(fmt("%s needs a value", opt).c_str());
  uint64_t x = 0;
  if (!parse_u64_value(v, &x)) usage(fmt("%s: bad number '%s'", opt, v).c_str());
  return x;
}

std::vector<int> parse_threads(const char* v) {
  if (v == nullptr) usage("--threads needs a value");
  std::vector<int> out;
  std::string s = v;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const std::string item = s.substr(pos, comma - pos);
    const uint64_t n = parse_u64("--threads", item.c_str());
    if (n < 1 || n > 1024) usage("--threads: each count must be in 1..1024");
    out.push_back(int(n));
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  o.hw = std::max(1u, std::thread::hardware_concurrency());
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
    } else if (a == "--trials") {
      o.trials = int(std::min<uint64_t>(parse_u64("--trials", next), 100000));
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
    } else if (a == "--threads") {
      o.threads = parse_threads(next);
      ++i;
    } else if (a == "--help" || a == "-h") {
      usage("help");
    } else {
      usage(fmt("unknown option '%s'", a.c_str()).c_str());
    }
  }
  if (o.quick && !trials_given) o.trials = 5;
  if (o.trials < 3) usage("--trials must be at least 3 (a median of fewer is not a median)");
  if (o.trial_ms < 0) o.trial_ms = o.quick ? 2 : 20;
  if (o.pages == 0 || o.pages % 512 != 0) usage("--pages must be a positive multiple of 512");
  if (o.threads.empty()) o.threads = o.hw > 1 ? std::vector<int>{1, int(o.hw)} : std::vector<int>{1};
  if (o.threads.front() != 1) o.threads.insert(o.threads.begin(), 1);  // targets need 1 thread
  // Every thread's region lives in one PageArray of 2^31 pages at most.
  if (uint64_t(o.threads.back()) * o.pages > kMaxPages) usage("--threads x --pages exceeds 2^31 pages");
  return o;
}

// ---- an arena: one scheme x mapping, its array, its address space, its regions -------------

struct Arena {
  Scheme scheme = Scheme::kBias;
  bool huge = false;
  uint64_t pages = 0;  // per region
  int regions = 0;     // = max threads
  std::shared_ptr<PageArray> pa;
  std::unique_ptr<AddressSpace> as;
  std::vector<std::vector<uint32_t>> out;  // one gup output buffer per thread
  std::vector<uint32_t> baseline_list;     // PFNs gup returned for region 0
  uint64_t baseline_runs = 0;              // bvec runs of baseline_list

  const char* mapping() const { return huge ? "2 MiB" : "4 KiB"; }
  int32_t mapped_ref() const { return huge ? 512 : 1; }
  uint64_t region_start(int t) const { return uint64_t(t) * pages; }
};

std::string arena_name(const Arena& a) {
  return fmt("%s mappings, %s", a.mapping(), scheme_name(a.scheme));
}

[[noreturn, gnu::cold]] void fail_status(const std::string& where, const char* what,
                                         const Status& st) {
  die("%s failed in [%s]: %s (%s)", what, where.c_str(), code_name(st.code), describe(st).c_str());
}

constexpr GupFlags kGupFlags{/*pin=*/true, /*write=*/true, /*longterm=*/false, /*fast_only=*/false};
constexpr bool kWrite = true;

std::unique_ptr<Arena> make_arena(Scheme scheme, bool huge, uint64_t pages, int regions) {
  auto a = std::make_unique<Arena>();
  a->scheme = scheme;
  a->huge = huge;
  a->pages = pages;
  a->regions = regions;
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages * uint64_t(regions));
  cfg.scheme = scheme;
  cfg.folio_order = 0;
  cfg.populated = false;
  std::unique_ptr<PageArray> pa;
  Status st = PageArray::create(cfg, &pa);
  if (!st.ok()) fail_status(arena_name(*a), "PageArray::create", st);
  a->pa = std::shared_ptr<PageArray>(std::move(pa));
  st = AddressSpace::create(a->pa, cfg.pages, &a->as);
  if (!st.ok()) fail_status(arena_name(*a), "AddressSpace::create", st);
  for (int t = 0; t < regions; ++t) {
    MmapArgs m;
    m.start = int64_t(a->region_start(t));
    m.count = int64_t(pages);
    m.write = true;
    m.populate = true;
    m.huge = huge;
    st = a->as->mmap(m);
    if (!st.ok()) fail_status(arena_name(*a), fmt("mmap of region %d", t).c_str(), st);
  }
  a->out.assign(size_t(regions), std::vector<uint32_t>(pages));
  // The mapping is what we asked for: every page present and writable, PMD leaves for huge
  // (each over an order-9 folio), PTEs over order-0 folios otherwise.
  for (uint64_t v = 0; v < pages * uint64_t(regions); ++v) {
    const Translation tr = a->as->translate(v);
    const uint32_t want_order = huge ? 9 : 0;
    if (!tr.present || !tr.writable || tr.special || tr.huge != huge ||
        a->pa->folio_order(tr.pfn) != want_order)
      die("[%s] vpage %" PRIu64 " after mmap(populate): present %d writable %d special %d "
          "huge %d folio order %u (want present, writable, huge %d, order %u)",
          arena_name(*a).c_str(), v, int(tr.present), int(tr.writable), int(tr.special),
          int(tr.huge), tr.present ? a->pa->folio_order(tr.pfn) : 0, int(huge), want_order);
  }
  return a;
}

// ---- statistics snapshots -------------------------------------------------------------------

struct Snap {
  uint64_t acquired = 0, released = 0, grabs = 0;
  uint64_t calls = 0, fast = 0, fallbacks = 0, slow = 0, rechecks = 0, seq = 0;
};

Snap snap(const Arena& a) {
  Snap s;
  s.acquired = a.pa->stat(Stat::kPinAcquired);
  s.released = a.pa->stat(Stat::kPinReleased);
  s.grabs = a.pa->stat(Stat::kGrabs);
  s.calls = a.as->stat(MmStat::kGupCalls);
  s.fast = a.as->stat(MmStat::kFastPages);
  s.fallbacks = a.as->stat(MmStat::kSlowFallbacks);
  s.slow = a.as->stat(MmStat::kSlowPages);
  s.rechecks = a.as->stat(MmStat::kRecheckFailures);
  s.seq = a.as->stat(MmStat::kSeqRetries);
  return s;
}

// Virtual pages to sample in a region: its ends, the ends of its first 2 MiB, the middle.
std::vector<uint64_t> sample_vpages(const Arena& a, int region) {
  const uint64_t n = a.pages, base = a.region_start(region);
  std::vector<uint64_t> v = {0, n - 1, n / 2, n / 2 + 1, 511, 512, n / 3};
  for (uint64_t& p : v) p = base + std::min(p, n - 1);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// The refcount and exact pincount of a mapped folio after one pin of each of its subpages.
struct Expect {
  int64_t ref;
  std::optional<int64_t> pins;
};
Expect expect_pinned(const Arena& a) {
  const int64_t m = a.mapped_ref();
  const int64_t k = a.huge ? 512 : 1;  // subpages of the folio pinned once each
  const int64_t bias = a.pa->pin_bias();
  return dispatch_scheme(a.scheme, [&](auto tag) -> Expect {
    using P = SchemePolicy<decltype(tag)::value>;
    const SchemeParams params{uint32_t(std::countr_zero(uint64_t(bias))), a.pa->pincount_min_order()};
    const PinCost cost = P::pin_cost(params, a.huge ? 9u : 0u, k, kWrite);
    const bool exact = P::kPincount != PincountHome::kNone && P::keeps_pincount(params, a.huge ? 9u : 0u);
    return {m + cost.ref, exact ? std::optional<int64_t>(cost.pin) : std::nullopt};
  });
}

void check_idle_region(const Arena& a, int region, const std::string& where) {
  for (uint64_t v : sample_vpages(a, region)) {
    const Translation tr = a.as->translate(v);
    if (!tr.present) die("[%s] %s: vpage %" PRIu64 " is no longer mapped", where.c_str(),
                         "idle check", v);
    const int32_t ref = a.pa->refcount(tr.pfn);
    const auto pins = a.pa->pincount(tr.pfn);
    const bool maybe = a.pa->maybe_dma_pinned(tr.pfn);
    if (ref != a.mapped_ref() || (pins && *pins != 0) || maybe)
      die("[%s] region %d, vpage %" PRIu64 " (pfn %" PRIu64 ") not back to its mapped state: "
          "refcount %d (want %d), pincount %lld (want 0), maybe_dma_pinned %d (want 0)",
          where.c_str(), region, v, uint64_t(tr.pfn), ref, a.mapped_ref(),
          pins ? (long long)*pins : 0LL, int(maybe));
  }
}

// ---- what one measured configuration does ---------------------------------------------------

enum class Kind { kGup, kPinPages };

struct Cell {
  Kind kind = Kind::kGup;
  Arena* a = nullptr;
  int threads = 1;
  bool shared = false;
  uint64_t rounds_per_trial = 1;
  std::vector<double> samples;  // ns per 4 KiB page per round, per thread
  Summary s;
};

std::string cell_name(const Cell& c) {
  if (c.kind == Kind::kPinPages)
    return fmt("%s, PageArray pin_pages+unpin_pages (same PFNs), 1 thread", arena_name(*c.a).c_str());
  return fmt("%s, gup_fast+unpin_user_pages, %d thread%s, %s", arena_name(*c.a).c_str(),
             c.threads, c.threads == 1 ? "" : "s", c.shared ? "shared" : "private");
}

int region_of(const Cell& c, int t) { return c.shared ? 0 : t; }

// One thread's rounds. Returns an empty string, or what failed (workers must not exit()).
std::string gup_rounds(Arena& a, int region, uint32_t* out, uint64_t rounds) {
  AddressSpace& as = *a.as;
  const int64_t start = int64_t(a.region_start(region)), n = int64_t(a.pages);
  for (uint64_t r = 0; r < rounds; ++r) {
    uint64_t done = 0;
    Status st = as.gup_fast(start, n, kGupFlags, out, &done);
    if (!st.ok()) [[unlikely]]
      return fmt("gup_fast: %s (%s)", code_name(st.code), describe(st).c_str());
    if (done != uint64_t(n)) [[unlikely]] {
      (void)as.unpin_user_pages(out, done, kWrite, false);
      return fmt("gup_fast returned %" PRIu64 " of %" PRId64 " pages", done, n);
    }
    st = as.unpin_user_pages(out, done, kWrite, false);
    if (!st.ok()) [[unlikely]]
      return fmt("unpin_user_pages: %s (%s)", code_name(st.code), describe(st).c_str());
  }
  return {};
}

std::string pin_pages_rounds(Arena& a, uint64_t rounds) {
  PageArray& pa = *a.pa;
  const PageSet set = PageSet::pfns(a.baseline_list.data(), a.baseline_list.size());
  PinFlags f;
  f.write = kWrite;
  for (uint64_t r = 0; r < rounds; ++r) {
    uint64_t pinned = 0;
    Status st = pa.pin_pages(set, f, &pinned);
    if (!st.ok()) [[unlikely]]
      return fmt("pin_pages: %s (%s)", code_name(st.code), describe(st).c_str());
    if (pinned != set.count) [[unlikely]]
      return fmt("pin_pages pinned %" PRIu64 " of %" PRIu64 " pages", pinned, set.count);
    st = pa.unpin_pages(set, f);
    if (!st.ok()) [[unlikely]]
      return fmt("unpin_pages: %s (%s)", code_name(st.code), describe(st).c_str());
  }
  return {};
}

std::string thread_rounds(Cell& c, int t, uint64_t rounds) {
  if (c.kind == Kind::kPinPages) return pin_pages_rounds(*c.a, rounds);
  return gup_rounds(*c.a, region_of(c, t), c.a->out[size_t(t)].data(), rounds);
}

// Threads wait here until all have arrived, so that they start their timed rounds together.
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    arrived_.fetch_add(1, std::memory_order_acq_rel);
    while (arrived_.load(std::memory_order_acquire) < n_) std::this_thread::yield();
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
};

// Runs one untimed warm-up round then `rounds` timed rounds on c.threads threads (the calling
// thread is thread 0). Returns the wall time of the timed part, from the earliest start to the
// latest finish. Dies (exit 2) on any failure, after every thread has stopped.
double run_trial(Cell& c, uint64_t rounds, bool warm_up) {
  const int T = c.threads;
  std::vector<Clock::time_point> t0(static_cast<size_t>(T)), t1(static_cast<size_t>(T));
  std::vector<std::string> err(static_cast<size_t>(T));
  SpinBarrier barrier(T);
  auto body = [&](int t) {
    if (warm_up) err[size_t(t)] = thread_rounds(c, t, 1);
    barrier.arrive_and_wait();
    clobber_memory();
    t0[size_t(t)] = Clock::now();
    if (err[size_t(t)].empty()) err[size_t(t)] = thread_rounds(c, t, rounds);
    clobber_memory();
    t1[size_t(t)] = Clock::now();
  };
  std::vector<std::thread> workers;
  workers.reserve(size_t(T - 1));
  for (int t = 1; t < T; ++t) workers.emplace_back(body, t);
  body(0);
  for (std::thread& w : workers) w.join();
  for (int t = 0; t < T; ++t)
    if (!err[size_t(t)].empty())
      die("[%s] thread %d: %s", cell_name(c).c_str(), t, err[size_t(t)].c_str());
  const auto first = *std::min_element(t0.begin(), t0.end());
  const auto last = *std::max_element(t1.begin(), t1.end());
  return elapsed_ns(first, last);
}

// ---- verification ---------------------------------------------------------------------------

// After `rounds` rounds per thread since `before`: exactly that work was done, all of it on the
// fast path, and every region used is back to its mapped state.
void verify_after(const Cell& c, const Snap& before, uint64_t rounds) {
  const Arena& a = *c.a;
  const Snap x = snap(a);
  const std::string name = cell_name(c);
  const uint64_t calls = rounds * uint64_t(c.threads), pins = calls * a.pages;
  if (x.acquired - before.acquired != pins || x.released - before.released != pins ||
      x.acquired != x.released)
    die("[%s] after %" PRIu64 " rounds x %d threads: pins acquired +%" PRIu64 ", released +%" PRIu64
        " (want +%" PRIu64 " each); totals acquired %" PRIu64 " released %" PRIu64,
        name.c_str(), rounds, c.threads, x.acquired - before.acquired,
        x.released - before.released, pins, x.acquired, x.released);
  if (c.kind == Kind::kPinPages) {
    if (x.grabs - before.grabs != rounds * 2 * a.baseline_runs)
      die("[%s] after %" PRIu64 " rounds: %" PRIu64 " grabs, want %" PRIu64
          " (2 x %" PRIu64 " bvec runs per round)",
          name.c_str(), rounds, x.grabs - before.grabs, rounds * 2 * a.baseline_runs,
          a.baseline_runs);
    if (x.calls != before.calls || x.fast != before.fast)
      die("[%s] the baseline moved the address space's gup statistics", name.c_str());
  } else {
    if (x.fallbacks != before.fallbacks || x.slow != before.slow)
      die("[%s] the fast path fell back to the slow path on a populated region: %" PRIu64
          " slow-path fallbacks, %" PRIu64 " slow pages in %" PRIu64
          " rounds; the figure would not be a fast-path figure",
          name.c_str(), x.fallbacks - before.fallbacks, x.slow - before.slow, rounds);
    if (x.rechecks != before.rechecks || x.seq != before.seq)
      die("[%s] %" PRIu64 " recheck failures and %" PRIu64
          " write_protect_seq retries on a region nobody changes",
          name.c_str(), x.rechecks - before.rechecks, x.seq - before.seq);
    if (x.calls - before.calls != calls || x.fast - before.fast != pins)
      die("[%s] after %" PRIu64 " rounds x %d threads: %" PRIu64 " gup calls, %" PRIu64
          " fast pages (want %" PRIu64 ", %" PRIu64 ")",
          name.c_str(), rounds, c.threads, x.calls - before.calls, x.fast - before.fast, calls,
          pins);
  }
  const int used = c.kind == Kind::kPinPages || c.shared ? 1 : c.threads;
  for (int r = 0; r < used; ++r) check_idle_region(a, r, name);
}

// Once per arena, before any timing: gup of region 0 returns the PFNs the page table maps,
// with the exact pinned state on sampled pages; the unpin restores the mapped state. Keeps the
// PFNs as the baseline's list.
void verify_arena(Arena& a) {
  const std::string name = arena_name(a);
  for (int r = 0; r < a.regions; ++r) check_idle_region(a, r, name + ", before the first pin");
  const Snap before = snap(a);
  std::vector<uint32_t>& out = a.out[0];
  uint64_t done = 0;
  Status st = a.as->gup_fast(0, int64_t(a.pages), kGupFlags, out.data(), &done);
  if (!st.ok()) fail_status(name, "gup_fast (setup)", st);
  if (done != a.pages) die("[%s] setup gup_fast returned %" PRIu64 " of %" PRIu64 " pages",
                           name.c_str(), done, a.pages);
  const Snap mid = snap(a);
  if (mid.fast - before.fast != a.pages || mid.fallbacks != before.fallbacks ||
      mid.acquired - before.acquired != a.pages)
    die("[%s] setup gup_fast: %" PRIu64 " fast pages, %" PRIu64 " fallbacks, %" PRIu64
        " pins acquired (want %" PRIu64 ", 0, %" PRIu64 ")",
        name.c_str(), mid.fast - before.fast, mid.fallbacks - before.fallbacks,
        mid.acquired - before.acquired, a.pages, a.pages);
  for (uint64_t v = 0; v < a.pages; ++v)
    if (out[v] != a.as->translate(v).pfn)
      die("[%s] setup gup_fast: out[%" PRIu64 "] = %u, but the page table maps pfn %" PRIu64,
          name.c_str(), v, out[v], uint64_t(a.as->translate(v).pfn));
  const Expect e = expect_pinned(a);
  for (uint64_t v : sample_vpages(a, 0)) {
    const uint64_t pfn = out[v];
    const int32_t ref = a.pa->refcount(pfn);
    const auto pins = a.pa->pincount(pfn);
    if (ref != e.ref || pins.has_value() != e.pins.has_value() || (pins && *pins != *e.pins) ||
        !a.pa->maybe_dma_pinned(pfn))
      die("[%s] after one gup pin, vpage %" PRIu64 " (pfn %" PRIu64 "): refcount %d (want %lld), "
          "pincount %lld (want %lld), maybe_dma_pinned %d (want 1)",
          name.c_str(), v, pfn, ref, (long long)e.ref, pins ? (long long)*pins : -1LL,
          e.pins ? (long long)*e.pins : -1LL, int(a.pa->maybe_dma_pinned(pfn)));
  }
  a.baseline_list = out;
  std::vector<Bvec> runs;
  st = a.pa->to_bvecs(PageSet::pfns(a.baseline_list.data(), a.baseline_list.size()), &runs);
  if (!st.ok()) fail_status(name, "to_bvecs", st);
  a.baseline_runs = runs.size();
  const uint64_t want_runs = a.huge ? a.pages / 512 : a.pages;
  if (a.baseline_runs != want_runs)
    die("[%s] the region's PFNs form %" PRIu64 " folio runs, want %" PRIu64, name.c_str(),
        a.baseline_runs, want_runs);
  st = a.as->unpin_user_pages(out.data(), done, kWrite, false);
  if (!st.ok()) fail_status(name, "unpin_user_pages (setup)", st);
  const Snap after = snap(a);
  if (after.released - mid.released != a.pages || after.acquired != after.released)
    die("[%s] setup unpin_user_pages released %" PRIu64 " pins, want %" PRIu64, name.c_str(),
        after.released - mid.released, a.pages);
  check_idle_region(a, 0, name + ", after one gup+unpin");
}

// ---- timing ---------------------------------------------------------------------------------

double timed_trial(Cell& c) {
  const Snap before = snap(*c.a);
  const double ns = run_trial(c, c.rounds_per_trial, /*warm_up=*/true);
  verify_after(c, before, c.rounds_per_trial + 1);
  return ns / double(c.rounds_per_trial) / double(c.a->pages);
}

void calibrate(Cell& c, double trial_ns) {
  uint64_t rounds = 1;
  double per_round = 0;
  for (;;) {
    const Snap before = snap(*c.a);
    const double t = run_trial(c, rounds, /*warm_up=*/false);
    verify_after(c, before, rounds);
    per_round = t / double(rounds);
    if (t >= std::max(trial_ns / 2, 2e6) || rounds >= (uint64_t{1} << 32)) break;
    rounds *= 2;
  }
  c.rounds_per_trial = std::max<uint64_t>(1, uint64_t(std::ceil(trial_ns / per_round)));
}

void measure(std::vector<Cell*>& cells, const Options& o) {
  const double trial_ns = o.trial_ms * 1e6;
  for (Cell* c : cells) calibrate(*c, trial_ns);
  for (int t = 0; t < o.trials; ++t)
    for (Cell* c : cells) c->samples.push_back(timed_trial(*c));
  for (Cell* c : cells) c->s = summarize(c->samples);
}

// ---- the report -----------------------------------------------------------------------------

// kSchemes: every registered scheme (pages/scheme.h).

struct Target {
  std::string id, what;
  double ratio;          // of the medians: the verdict
  double ratio_of_mins;  // of the best trials: context only
  double limit;
  bool at_most;
  bool met() const { return at_most ? ratio <= limit : ratio >= limit; }
};

// Pages per second summed over all threads, from a per-thread ns-per-page figure.
double aggregate(double ns_per_page, int threads) { return double(threads) * 1e9 / ns_per_page; }

std::string rate(double pages_per_s) {
  if (pages_per_s >= 1e9) return fmt("%.3g G/s", pages_per_s / 1e9);
  return fmt("%.3g M/s", pages_per_s / 1e6);
}

int run(const Options& o) {
  const int max_threads = o.threads.back();
  // Index of the arenas and cells: [huge][scheme].
  std::vector<std::unique_ptr<Arena>> arenas;
  struct Row {
    Arena* a;
    Cell base;                  // pinPages baseline, 1 thread
    std::vector<Cell> priv;     // per thread count (index as o.threads)
    std::vector<Cell> shared;   // per thread count; [0] (1 thread) unused: = priv[0]
  };
  std::vector<Row> rows;
  rows.reserve(8);
  if (!o.json)
    std::fprintf(stderr, "pinlab_gup_bench: mapping and populating 8 x %d regions of %" PRIu64
                 " pages...\n", max_threads, o.pages);
  for (bool huge : {false, true}) {
    for (Scheme s : kSchemes) {
      arenas.push_back(make_arena(s, huge, o.pages, max_threads));
      Arena* a = arenas.back().get();
      verify_arena(*a);
      Row r;
      r.a = a;
      r.base.kind = Kind::kPinPages;
      r.base.a = a;
      for (int t : o.threads) {
        Cell p;
        p.a = a;
        p.threads = t;
        r.priv.push_back(p);
        p.shared = true;
        r.shared.push_back(p);
      }
      rows.push_back(std::move(r));
    }
  }
  std::vector<Cell*> cells;
  for (Row& r : rows) {
    cells.push_back(&r.base);
    for (size_t i = 0; i < o.threads.size(); ++i) {
      cells.push_back(&r.priv[i]);
      if (o.threads[i] > 1) cells.push_back(&r.shared[i]);
    }
  }
  if (!o.json)
    std::fprintf(stderr, "pinlab_gup_bench: %zu configurations x %d trials of ~%.3g ms...\n",
                 cells.size(), o.trials, o.trial_ms);
  measure(cells, o);

  auto row = [&](bool huge, Scheme s) -> Row& {
    const size_t si = size_t(std::find(std::begin(kSchemes), std::end(kSchemes), s) -
                             std::begin(kSchemes));
    return rows[(huge ? 4 : 0) + si];
  };
  auto gup1 = [&](bool huge, Scheme s) -> const Summary& { return row(huge, s).priv[0].s; };

  std::vector<Target> targets;
  for (Scheme s : kSchemes) {
    const Summary &g = gup1(false, s), &b = row(false, s).base.s;
    targets.push_back({fmt("fast-vs-pinPages/%s", scheme_name(s)),
                       fmt("%s, 4 KiB mappings, 1 thread: gup_fast+unpin_user_pages vs "
                           "PageArray pin_pages+unpin_pages on the same PFNs",
                           scheme_name(s)),
                       g.median / b.median, g.min / b.min, 3, true});
  }
  for (Scheme s : kSchemes) {
    const Summary &k4 = gup1(false, s), &m2 = gup1(true, s);
    targets.push_back({fmt("2M-vs-4K/%s", scheme_name(s)),
                       fmt("%s, 1 thread: 2 MiB mappings cheaper per 4 KiB than 4 KiB mappings by",
                           scheme_name(s)),
                       k4.median / m2.median, k4.min / m2.min, 50, false});
  }
  const bool all_met =
      std::all_of(targets.begin(), targets.end(), [](const Target& t) { return t.met(); });

  if (o.json) {
    std::string out = "{\"mode\":\"gup\",";
    out += fmt("\"pagesPerRegion\":%" PRIu64 ",\"bytesPerRegion\":%" PRIu64
               ",\"trials\":%d,\"trialMs\":%g,\"hardwareConcurrency\":%u,\"threads\":[",
               o.pages, o.pages * 4096, o.trials, o.trial_ms, o.hw);
    for (size_t i = 0; i < o.threads.size(); ++i) out += fmt("%s%d", i ? "," : "", o.threads[i]);
    out += "],\"write\":true,\"private\":\"disjoint regions of one AddressSpace, one per thread\","
           "\"unit\":\"ns per 4 KiB page per gup+unpin round, per thread\",\"cells\":[";
    bool first = true;
    for (const Cell* c : cells) {
      if (!first) out += ",";
      first = false;
      out += fmt("{\"mapping\":\"%s\",\"scheme\":\"%s\",\"op\":\"%s\",\"threads\":%d,"
                 "\"region\":\"%s\",\"roundsPerTrial\":%" PRIu64
                 ",\"aggregatePagesPerSec\":%.6g,\"nsPerPage\":",
                 c->a->huge ? "2M" : "4K", scheme_name(c->a->scheme),
                 c->kind == Kind::kGup ? "gup_fast+unpin_user_pages" : "pin_pages+unpin_pages",
                 c->threads, c->kind == Kind::kPinPages ? "private" : c->shared ? "shared" : "private",
                 c->rounds_per_trial, aggregate(c->s.median, c->threads));
      out += json_summary(c->s) + "}";
    }
    out += fmt("],\"kernelReference\":{\"nsPer4K\":%g,\"nsPer4KOfThp\":%g},\"targets\":[",
               kKernelNsPer4K, kKernelNsPer4KOfThp);
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

  auto cellstr = [](const Summary& s) {
    return fmt("%7s [%s .. %s]", num(s.median).c_str(), num(s.min).c_str(), num(s.max).c_str());
  };
  std::printf("pinlab gup benchmark: gup_fast (FOLL_PIN | FOLL_WRITE) + unpin_user_pages of a "
              "populated %" PRIu64 "-page (%" PRIu64 " MiB) region per round\n",
              o.pages, o.pages * 4096 >> 20);
  std::printf("ns per 4 KiB page per round, per thread: median [min .. max] of %d trials "
              "(~%.3g ms each); hardware_concurrency %u\n",
              o.trials, o.trial_ms, o.hw);
  std::printf("private: each thread its own %" PRIu64 " MiB region (disjoint regions of one "
              "AddressSpace); shared: all threads the same region\n\n",
              o.pages * 4096 >> 20);

  std::printf("single thread, against PageArray pin_pages+unpin_pages of the same PFNs (PFN "
              "list, bvec path):\n");
  const char* h1 = "%-8s %-11s %-30s %-30s %s\n";
  std::printf(h1, "mapping", "scheme", "gup_fast+unpin_user_pages", "pin_pages+unpin_pages",
              "gup / pin_pages");
  for (bool huge : {false, true})
    for (Scheme s : kSchemes) {
      const Row& r = row(huge, s);
      std::printf(h1, r.a->mapping(), scheme_name(s), cellstr(r.priv[0].s).c_str(),
                  cellstr(r.base.s).c_str(),
                  fmt("%.2fx", r.priv[0].s.median / r.base.s.median).c_str());
    }

  std::printf("\nthreads (per-thread ns per page; agg = pages/s summed over threads; "
              "x1 = agg / 1-thread agg):\n");
  const char* h2 = "%-8s %-11s %7s  %-30s %-20s %-30s %s\n";
  std::printf(h2, "mapping", "scheme", "threads", "private", "agg", "shared", "agg");
  for (bool huge : {false, true})
    for (Scheme s : kSchemes) {
      const Row& r = row(huge, s);
      const double one = aggregate(r.priv[0].s.median, 1);
      for (size_t i = 0; i < o.threads.size(); ++i) {
        const int t = o.threads[i];
        const Summary& p = r.priv[i].s;
        const double pa = aggregate(p.median, t);
        std::string sh = "(= private)", sha = "";
        if (t > 1) {
          const Summary& q = r.shared[i].s;
          const double qa = aggregate(q.median, t);
          sh = cellstr(q);
          sha = fmt("%-9s x%.2f", rate(qa).c_str(), qa / one);
        }
        std::printf(h2, r.a->mapping(), scheme_name(s), std::to_string(t).c_str(),
                    cellstr(p).c_str(), fmt("%-9s x%.2f", rate(pa).c_str(), pa / one).c_str(),
                    sh.c_str(), sha.c_str());
      }
    }

  std::printf("\n4 KiB / 2 MiB mappings, 1 thread (per 4 KiB page):");
  for (Scheme s : kSchemes)
    std::printf("  %s %.1fx", scheme_name(s), gup1(false, s).median / gup1(true, s).median);
  std::printf("\nhost kernel pin_user_pages on the development machine (the issue's figures, "
              "context only, not measured here):\n"
              "  ~%g ns per 4 KiB page (4 KiB mappings), ~%g ns per 4 KiB of a 2 MiB THP "
              "(%.1fx); pinlab bias, 1 thread: %s ns and %s ns\n\n",
              kKernelNsPer4K, kKernelNsPer4KOfThp, kKernelNsPer4K / kKernelNsPer4KOfThp,
              num(gup1(false, Scheme::kBias).median).c_str(),
              num(gup1(true, Scheme::kBias).median).c_str());

  for (const Target& t : targets)
    std::printf("target %s: %s: %.3gx (%s %gx)  %s   [ratio of best trials: %.3gx]\n",
                t.id.c_str(), t.what.c_str(), t.ratio, t.at_most ? "limit <=" : "need >=",
                t.limit, t.met() ? "met" : "MISSED", t.ratio_of_mins);
  std::printf("(verdicts use the ratio of the medians)\n");
  std::printf("\nall state checks passed (every Status; every gup complete and all on the fast "
              "path; pins acquired = released = rounds x threads x pages; sampled pages back to "
              "their mapped refcount, unpinned, after every trial)\n");
  return o.strict && !all_met ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  return run(o);
}
