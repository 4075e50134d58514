#include "engines/profile_engine.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <thread>

#include "mm/address_space.h"
#include "base/stats.h"
#include "base/threads.h"

namespace pinlab {

void ProfileTally::add(const ProfileTally& o) {
  pages += o.pages;
  unpinned_pages += o.unpinned_pages;
  false_positive_pages += o.false_positive_pages;
  pinned_pages += o.pinned_pages;
  false_negative_pages += o.false_negative_pages;
  read_only_pages += o.read_only_pages;
  hidden_read_pages += o.hidden_read_pages;
  folios += o.folios;
  unpinned_folios += o.unpinned_folios;
  false_positive_folios += o.false_positive_folios;
  pinned_folios += o.pinned_folios;
  false_negative_folios += o.false_negative_folios;
  read_only_folios += o.read_only_folios;
  hidden_read_folios += o.hidden_read_folios;
}

namespace {

// One thread's tallies, per (order, reference bucket) cell, on their own cache lines; the
// overall figure and the two breakdowns are sums of cells, made once at the end.
struct alignas(kCacheLine) ThreadTally {
  std::array<std::array<ProfileTally, kProfileRefBuckets>, kProfileOrders> cell{};
};

size_t ref_bucket(uint32_t refs) {
  return std::min<size_t>(std::bit_width(refs), kProfileRefBuckets - 1);
}

// Classifies folios [begin, end) of the population into t: one cell update per folio.
void classify(const PageArray& mem, const std::vector<PopFolio>& folios, size_t begin, size_t end,
              bool write_bias, ThreadTally* t) {
  for (size_t i = begin; i < end; ++i) {
    const PopFolio& f = folios[i];
    if (f.refs == 0) continue;  // free
    const uint64_t n = uint64_t{1} << f.order;
    const bool maybe = mem.maybe_pinned_head(f.head, f.order);
    const int64_t pins = mem.exact_folio_pins(f.head, f.order).value_or(0);
    const int64_t writes = write_bias ? mem.exact_folio_write_pins(f.head, f.order) : pins;
    ProfileTally& c = t->cell[f.order][ref_bucket(f.refs)];
    c.pages += n;
    c.folios += 1;
    if (pins == 0) {
      c.unpinned_pages += n;
      c.unpinned_folios += 1;
      c.false_positive_pages += maybe ? n : 0;
      c.false_positive_folios += maybe;
    } else if (writes == 0) {  // write-bias: read pins only, invisible by design
      c.read_only_pages += n;
      c.read_only_folios += 1;
      c.hidden_read_pages += maybe ? 0 : n;
      c.hidden_read_folios += !maybe;
    } else {
      c.pinned_pages += n;
      c.pinned_folios += 1;
      c.false_negative_pages += maybe ? 0 : n;
      c.false_negative_folios += !maybe;
    }
  }
}

// f(t) for t in 0..threads-1, one thread each. EAGAIN if a thread cannot be started: the
// started ones finish their part and are joined, the caller's results are incomplete.
template <typename F>
Status in_threads(uint32_t threads, F&& f) {
  ThreadGroup pool;
  for (uint32_t t = 0; t < threads; ++t)
    if (Status st = pool.start([&f, t] { f(t); }, threads); !st.ok()) return st;
  return Status::Ok();  // the pool joins
}

// count_maybe_dma_pinned over the whole array in `threads` slices: base pages per second.
Status scan_speed(const PageArray& mem, uint32_t threads, double* speed) {
  const uint64_t pages = mem.pages();
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {  // best of three: a scan is short
    const auto t0 = std::chrono::steady_clock::now();
    Status st = in_threads(threads, [&](uint32_t t) {
      const uint64_t lo = pages * t / threads, hi = pages * (t + 1) / threads;
      uint64_t n = 0;
      (void)mem.count_maybe_dma_pinned(PageSet::range(lo, hi - lo), &n);
    });
    if (!st.ok()) return st;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(pages) / std::max(s, 1e-9));
  }
  *speed = best;
  return Status::Ok();
}

// The kernel clients on a sample: the first `count` allocated folios of the population, each
// as one mapped 4 KiB page with the folio's plain references and pins. Then fork (early COW of
// maybe-pinned pages in an mm that has pinned), migration and reclaim (MADV_PAGEOUT, first,
// while every page is still exclusive: pageout keeps exclusive maybe-pinned folios) count the
// false positives they act on, known exactly through debug accounting. Pageout first changes
// neither fork's nor migration's count: the folios they act on are the maybe-pinned ones,
// which pageout keeps mapped as they were.
Status run_clients(const std::vector<PopFolio>& folios, Scheme scheme, uint32_t bias,
                   uint64_t count, ProfileRun* run) {
  std::vector<const PopFolio*> sample;
  for (const PopFolio& f : folios) {
    if (sample.size() == count) break;
    if (f.refs > 0) sample.push_back(&f);
  }
  if (sample.empty()) return Status::Ok();
  const uint64_t n = sample.size();
  PageArrayConfig cfg;
  cfg.pages = int64_t(n * 4 + 2048);  // the child's early-COW copies, migration, collapse
  cfg.scheme = scheme;
  cfg.pin_bias = bias;
  cfg.debug = true;
  cfg.populated = false;
  std::unique_ptr<PageArray> pa;
  if (Status st = PageArray::create(cfg, &pa); !st.ok()) return st;
  std::shared_ptr<PageArray> mem(std::move(pa));
  std::unique_ptr<AddressSpace> as;
  // Whole 2 MiB stretches (the tail's pages are plain ones), so that collapse checks every
  // sampled page below.
  const uint64_t span = (n + kPtesPerTable - 1) & ~(kPtesPerTable - 1);
  if (Status st = AddressSpace::create(mem, int64_t(span), &as); !st.ok()) return st;
  if (Status st = as->mmap(MmapArgs{0, int64_t(span), true, true, false}); !st.ok()) return st;
  for (uint64_t v = 0; v < n; ++v) {
    const PopFolio& f = *sample[v];
    const uint64_t pfn = as->translate(v).pfn;
    if (f.refs > 1) (void)mem->get_page(pfn, int64_t(f.refs) - 1);  // the mapping holds one
    for (uint32_t k = 0; k < f.reads + f.writes; ++k) {
      GupFlags g;
      g.write = k < f.writes;
      uint32_t out = 0;
      uint64_t done = 0;
      (void)as->gup_fast(int64_t(v), 1, g, &out, &done);  // a refused pin (overflow) is skipped
    }
  }
  if (Status st = as->madvise(0, int64_t(n), Advice::kPageOut); !st.ok()) return st;
  std::unique_ptr<AddressSpace> child;
  if (Status st = as->fork(&child); !st.ok()) return st;
  child.reset();
  uint64_t moved = 0;
  if (Status st = as->migrate(0, int64_t(n), &moved); !st.ok()) return st;
  run->sample_pages = n;
  run->sample_early_cow_fp = as->stat(MmStat::kEarlyCowFalsePositives);
  run->sample_migration_fp = as->stat(MmStat::kMigrationFalsePositives);
  run->sample_pageout_fp = as->stat(MmStat::kPageoutFalsePositives);
  // MADV_COLLAPSE over the sample: the kernel's refcount check turns away every page with
  // references beyond its mapping; those the scheme calls pinned without a pin are counted.
  // (After the pageout above: a stretch's swapped-out pages are swapped in by the collapse.)
  uint64_t made = 0;
  (void)as->collapse(0, int64_t(span), &made);  // EAGAIN where references are: the point
  run->sample_collapse_fp = as->stat(MmStat::kCollapseFalsePositives);
  return Status::Ok();
}

}  // namespace

Status validate_profile_config(const ProfileConfig& cfg) {
  if (cfg.threads < 1 || cfg.threads > kMaxProfileThreads)
    return Status::BadOption("threads", cfg.threads, "an integer in 1..1024");
  return Status::Ok();
}

Status run_profile(const std::vector<PopFolio>& folios, uint64_t pages, const ProfileConfig& cfg,
                   const ProfileProgress& progress, std::vector<ProfileRun>* out,
                   const RunControl* control) {
  if (Status st = validate_profile_config(cfg); !st.ok()) return st;
  const Status cancelled{Code::kEINVAL, Reason::kCancelled, "the profile run"};
  const uint32_t threads = std::max<uint32_t>(1, cfg.threads);
  const size_t total = cfg.schemes.size() * cfg.biases.size();
  size_t done = 0;
  out->clear();
  for (Scheme scheme : cfg.schemes) {
    for (uint32_t bias : cfg.biases) {
      if (stop_requested(control)) return cancelled;
      ProfileRun run;
      run.scheme = scheme;
      run.bias = bias;
      BuiltArray built;
      if (Status st = build_population_array(folios, pages, scheme, bias, &built, control);
          !st.ok())
        return st;
      run.pins_taken = built.pins_taken;
      run.overflow_refusals = built.overflow_refusals;
      const SchemeParams params{uint32_t(std::countr_zero(bias)), built.mem->pincount_min_order()};
      for (uint32_t k = 0; k < kProfileOrders; ++k)
        if (scheme_keeps_pincount(scheme, params, k)) run.exact_orders |= uint32_t{1} << k;
      run.pin_ref_cost = scheme_pin_cost(scheme, params, 0, 1, true).ref;
      run.read_pins_visible = scheme_info(scheme).read_pins_visible;
      std::vector<ThreadTally> tallies(threads);  // ~60 KB each
      if (Status st = in_threads(threads, [&](uint32_t t) {
            classify(*built.mem, folios, folios.size() * t / threads,
                     folios.size() * (t + 1) / threads, !scheme_info(scheme).read_pins_visible,
                     &tallies[t]);
          });
          !st.ok())
        return st;
      for (const ThreadTally& t : tallies) {
        for (size_t k = 0; k < kProfileOrders; ++k) {
          for (size_t b = 0; b < kProfileRefBuckets; ++b) {
            run.overall.add(t.cell[k][b]);
            run.by_order[k].add(t.cell[k][b]);
            run.by_refs[b].add(t.cell[k][b]);
          }
        }
      }
      if (Status st = scan_speed(*built.mem, threads, &run.scan_pages_per_second); !st.ok())
        return st;
      if (stop_requested(control)) return cancelled;
      built.mem.reset();  // free the big array before the clients' small one
      if (cfg.sample_folios > 0)
        if (Status st = run_clients(folios, scheme, bias, cfg.sample_folios, &run); !st.ok())
          return st;
      out->push_back(run);
      if (progress)
        progress(++done, total, std::string(scheme_name(scheme)) + " bias " + std::to_string(bias));
    }
  }
  return Status::Ok();
}

}  // namespace pinlab
