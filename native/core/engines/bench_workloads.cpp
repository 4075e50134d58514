#include "engines/bench_workloads.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "mm/address_space.h"
#include "pages/page_array.h"

namespace pinlab {

namespace {

// Which PFNs (or virtual pages) each thread works over, cut into calls.
class PageLayout {
 public:
  explicit PageLayout(const BenchSpec& s) : s_(s) {}

  uint64_t array_pages() const {
    const uint64_t b = s_.buffer_pages;
    return s_.sharing == BenchSharing::kPrivate ? b * s_.threads : b;
  }
  uint64_t pages_per_thread() const {
    return s_.sharing == BenchSharing::kInterleaved ? s_.buffer_pages / s_.threads
                                                    : s_.buffer_pages;
  }
  bool contiguous() const { return s_.sharing != BenchSharing::kInterleaved; }
  // The i-th page of thread t.
  uint64_t page(uint32_t t, uint64_t i) const {
    switch (s_.sharing) {
      case BenchSharing::kPrivate: return uint64_t(t) * s_.buffer_pages + i;
      case BenchSharing::kShared: return i;
      case BenchSharing::kInterleaved: return i * s_.threads + t;
    }
    return i;
  }
  // Pages per call: pages_per_call, or the thread's whole share.
  uint64_t call_pages() const {
    const uint64_t n = pages_per_thread();
    return s_.pages_per_call == 0 ? n : std::min(s_.pages_per_call, n);
  }

 private:
  const BenchSpec& s_;
};

// The page sets of every call of every thread (lists stored here, read in place).
class CallSets {
 public:
  void build(const BenchSpec& s, const PageLayout& layout) {
    const uint64_t n = layout.pages_per_thread();
    const bool lists = s.list_input || !layout.contiguous();  // strided pages need lists
    const uint64_t per_call = layout.call_pages();
    calls_.assign(s.threads, {});
    storage_.assign(s.threads, {});
    for (uint32_t t = 0; t < s.threads; ++t) {
      if (lists) {
        storage_[t].resize(n);
        for (uint64_t i = 0; i < n; ++i) storage_[t][i] = uint32_t(layout.page(t, i));
      }
      for (uint64_t i = 0; i < n; i += per_call) {
        const uint64_t c = std::min(per_call, n - i);
        calls_[t].push_back(lists ? PageSet::pfns(storage_[t].data() + i, c)
                                  : PageSet::range(layout.page(t, i), c));
      }
    }
  }
  const std::vector<PageSet>& of(uint32_t t) const { return calls_[t]; }

 private:
  std::vector<std::vector<PageSet>> calls_;
  std::vector<std::vector<uint32_t>> storage_;
};

uint32_t atomics_per_grab(Scheme scheme, uint32_t order) {
  // A grab is one RMW on the refcount, plus one on the pincount where the scheme keeps one;
  // where the folio's pins share one reference, one on the pin store only (the refcount only
  // on the store's none <-> some transitions).
  return dispatch_scheme(scheme, [&](auto tag) -> uint32_t {
    using P = SchemePolicy<decltype(tag)::value>;
    // hybrid: pincountMinOrder is 1 in the benchmark's arrays (the default).
    const bool pincount = P::kPincount != PincountHome::kNone && P::keeps_pincount({10, 1}, order);
    if (scheme_pins_share_ref(scheme, SchemeParams{10, 1}, order)) return 1;
    return pincount ? 2 : 1;
  });
}

// pin-unpin, get-put and mixed over a populated PageArray.
class ArrayWorkload : public Workload {
 public:
  explicit ArrayWorkload(const BenchSpec& s) : s_(s), layout_(s_) {}

  Status setup() override {
    PageArrayConfig cfg;
    cfg.pages = int64_t(layout_.array_pages());
    cfg.scheme = s_.scheme;
    cfg.folio_order = s_.order;
    std::unique_ptr<PageArray> pa;
    if (Status st = PageArray::create(cfg, &pa); !st.ok()) return st;
    mem_ = std::move(pa);
    sets_.build(s_, layout_);
    runs_.assign(s_.threads, {});
    for (uint32_t t = 0; t < s_.threads; ++t) {
      for (const PageSet& set : sets_.of(t)) {
        std::vector<Bvec> runs;
        if (Status st = mem_->to_bvecs(set, &runs); !st.ok()) return st;
        if (s_.per_page) runs = per_page_runs(runs);
        runs_[t].push_back(std::move(runs));
      }
    }
    return Status::Ok();
  }

  void begin_trial() override {
    acquired0_ = mem_->stat(Stat::kPinAcquired);
    released0_ = mem_->stat(Stat::kPinReleased);
    grabs0_ = mem_->stat(Stat::kGrabs);
    getput_runs_.store(0, std::memory_order_relaxed);
  }

  Status round(uint32_t t) override {
    const std::vector<PageSet>& calls = sets_.of(t);
    // mixed: every call pins and unpins, then gets and puts, the same pages: across threads
    // on a shared buffer, pins race plain references on the same heads.
    for (size_t c = 0; c < calls.size(); ++c) {
      if (s_.op != BenchOp::kGetPut)
        if (Status st = pin_unpin(calls[c]); !st.ok()) return st;
      if (s_.op != BenchOp::kPinUnpin)
        if (Status st = get_put(runs_[t][c]); !st.ok()) return st;
    }
    return Status::Ok();
  }

  std::string check(uint64_t rounds) override {
    (void)rounds;
    const uint64_t acquired = mem_->stat(Stat::kPinAcquired) - acquired0_;
    const uint64_t released = mem_->stat(Stat::kPinReleased) - released0_;
    if (acquired != released)
      return "pins acquired " + std::to_string(acquired) + " != released " +
             std::to_string(released);
    if (s_.op == BenchOp::kPinUnpin && acquired == 0) return "no pin was taken";
    for (uint64_t p : {uint64_t{0}, layout_.array_pages() - 1}) {
      if (mem_->refcount(p) != 1 || mem_->maybe_dma_pinned(p))
        return "pfn " + std::to_string(p) + " not back to refcount 1 (" +
               std::to_string(mem_->refcount(p)) + ")";
    }
    return {};
  }

  double atomics_per_page(uint64_t rounds) override {
    const double grabs = double(mem_->stat(Stat::kGrabs) - grabs0_);
    const double runs = double(getput_runs_.load(std::memory_order_relaxed));
    const double pages = double(rounds) * double(pages_per_thread()) * s_.threads;
    return (grabs * atomics_per_grab(s_.scheme, s_.order) + 2 * runs) / pages;
  }

  uint64_t pages_per_thread() const override { return layout_.pages_per_thread(); }

 private:
  static std::vector<Bvec> per_page_runs(const std::vector<Bvec>& runs) {
    std::vector<Bvec> out;
    for (const Bvec& r : runs)
      for (uint64_t k = 0; k < r.count; ++k) out.push_back(Bvec{r.pfn + k, 1});
    return out;
  }

  Status pin_unpin(const PageSet& set) {
    PinFlags f;
    f.write = true;  // so that write-bias adds its bias like the others
    f.per_page = s_.per_page;
    uint64_t pinned = 0;
    if (Status st = mem_->pin_pages(set, f, &pinned); !st.ok()) return st;
    return mem_->unpin_pages(set, f);
  }

  Status get_put(const std::vector<Bvec>& runs) {
    for (const Bvec& r : runs)
      if (Status st = mem_->get_page(r.pfn, int64_t(r.count)); !st.ok()) return st;
    for (const Bvec& r : runs) {
      bool freed = false;
      if (Status st = mem_->put_page(r.pfn, int64_t(r.count), &freed); !st.ok()) return st;
    }
    // relaxed: a statistic read after the threads joined.
    getput_runs_.fetch_add(runs.size(), std::memory_order_relaxed);
    return Status::Ok();
  }

  BenchSpec s_;
  PageLayout layout_;
  std::unique_ptr<PageArray> mem_;
  CallSets sets_;
  std::vector<std::vector<std::vector<Bvec>>> runs_;  // per thread, per call
  uint64_t acquired0_ = 0, released0_ = 0, grabs0_ = 0;
  std::atomic<uint64_t> getput_runs_{0};
};

// gup-fast: pinUserPagesFast + unpinUserPages through an AddressSpace (order 9: THP maps).
class GupWorkload : public Workload {
 public:
  explicit GupWorkload(const BenchSpec& s) : s_(s), layout_(s_) {}

  Status setup() override {
    PageArrayConfig cfg;
    cfg.pages = int64_t(layout_.array_pages());
    cfg.scheme = s_.scheme;
    cfg.populated = false;
    std::unique_ptr<PageArray> pa;
    if (Status st = PageArray::create(cfg, &pa); !st.ok()) return st;
    mem_ = std::shared_ptr<PageArray>(std::move(pa));
    if (Status st = AddressSpace::create(mem_, int64_t(layout_.array_pages()), &as_); !st.ok())
      return st;
    const bool huge = s_.order == kPmdOrder;
    const uint64_t regions = s_.sharing == BenchSharing::kPrivate ? s_.threads : 1;
    for (uint64_t r = 0; r < regions; ++r) {
      MmapArgs a{int64_t(r * s_.buffer_pages), int64_t(s_.buffer_pages), true, true, huge};
      if (Status st = as_->mmap(a); !st.ok()) return st;
    }
    calls_.assign(s_.threads, {});
    // Strided (interleaved) pages are not a virtual range: one page per call then.
    const uint64_t per_call = layout_.contiguous() ? layout_.call_pages() : 1;
    for (uint32_t t = 0; t < s_.threads; ++t) {
      const uint64_t n = layout_.pages_per_thread();
      for (uint64_t i = 0; i < n; i += per_call)
        calls_[t].push_back({layout_.page(t, i), std::min(per_call, n - i)});
    }
    out_.assign(s_.threads, std::vector<uint32_t>(per_call));
    return Status::Ok();
  }

  void begin_trial() override {
    acquired0_ = mem_->stat(Stat::kPinAcquired);
    released0_ = mem_->stat(Stat::kPinReleased);
    grabs0_ = mem_->stat(Stat::kGrabs);
    slow0_ = as_->stat(MmStat::kSlowFallbacks);
  }

  Status round(uint32_t t) override {
    GupFlags f;
    f.write = true;
    uint32_t* out = out_[t].data();
    for (const auto& [start, count] : calls_[t]) {
      uint64_t done = 0;
      if (Status st = as_->gup_fast(int64_t(start), int64_t(count), f, out, &done); !st.ok())
        return st;
      if (Status st = as_->unpin_user_pages(out, done, true, false); !st.ok()) return st;
      if (done != count)
        return Status::Fail(Code::kEBUSY, Reason::kGupIncomplete, int64_t(start), int64_t(done));
    }
    return Status::Ok();
  }

  std::string check(uint64_t rounds) override {
    (void)rounds;
    const uint64_t acquired = mem_->stat(Stat::kPinAcquired) - acquired0_;
    const uint64_t released = mem_->stat(Stat::kPinReleased) - released0_;
    if (acquired != released || acquired == 0)
      return "pins acquired " + std::to_string(acquired) + ", released " +
             std::to_string(released);
    if (as_->stat(MmStat::kSlowFallbacks) != slow0_)
      return "the fast path fell back to the slow path: not a fast-path figure";
    const Translation tr = as_->translate(0);
    const int32_t mapped = 1;  // one mapping: a PTE, or a PMD leaf's one reference
    if (!tr.present || mem_->refcount(tr.pfn) != mapped || mem_->maybe_dma_pinned(tr.pfn))
      return "virtual page 0 not back to its mapped refcount";
    return {};
  }

  double atomics_per_page(uint64_t rounds) override {
    const double grabs = double(mem_->stat(Stat::kGrabs) - grabs0_);
    const double pages = double(rounds) * double(pages_per_thread()) * s_.threads;
    return grabs * atomics_per_grab(s_.scheme, s_.order) / pages;
  }

  uint64_t pages_per_thread() const override { return layout_.pages_per_thread(); }

 private:
  BenchSpec s_;
  PageLayout layout_;
  std::shared_ptr<PageArray> mem_;
  std::unique_ptr<AddressSpace> as_;
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> calls_;  // (start, count)
  std::vector<std::vector<uint32_t>> out_;
  uint64_t acquired0_ = 0, released0_ = 0, grabs0_ = 0, slow0_ = 0;
};

// The raw baselines: plain int32 counts in the same layout, no PageArray.
class RawWorkload : public Workload {
 public:
  explicit RawWorkload(const BenchSpec& s) : s_(s), layout_(s_) {}

  Status setup() override {
    counts_.assign(layout_.array_pages(), 0);
    for (uint64_t p = 0; p < counts_.size(); p += folio()) counts_[p] = 1;
    sets_.build(s_, layout_);
    runs_.assign(s_.threads, {});
    for (uint32_t t = 0; t < s_.threads; ++t)
      for (const PageSet& set : sets_.of(t)) runs_[t].push_back(folio_runs(set));
    return Status::Ok();
  }
  void begin_trial() override {}

  Status round(uint32_t t) override {
    const std::vector<PageSet>& calls = sets_.of(t);
    for (size_t c = 0; c < calls.size(); ++c) {
      // relaxed: counting only, as the pin paths' grabs. Two passes, as a pin call then an
      // unpin call; the empty asm keeps the compiler from fusing them.
      if (s_.op == BenchOp::kRawPerPage) {
        for_each_page(calls[c], [&](uint64_t p) { add(head(p), 1); });
        asm volatile("" ::: "memory");
        for_each_page(calls[c], [&](uint64_t p) { add(head(p), -1); });
      } else {
        for (const Run& r : runs_[t][c]) add(r.head, int32_t(r.n));
        asm volatile("" ::: "memory");
        for (const Run& r : runs_[t][c]) add(r.head, -int32_t(r.n));
      }
    }
    return Status::Ok();
  }

  std::string check(uint64_t) override {
    for (uint64_t p = 0; p < counts_.size(); ++p)
      if (counts_[p] != (p % folio() == 0 ? 1 : 0))
        return "raw count " + std::to_string(p) + " not restored";
    return {};
  }

  double atomics_per_page(uint64_t) override {
    if (s_.op == BenchOp::kRawPerPage) return 2;
    uint64_t runs = 0;
    for (const auto& call : runs_[0]) runs += call.size();
    return 2.0 * double(runs) / double(pages_per_thread());
  }

  uint64_t pages_per_thread() const override { return layout_.pages_per_thread(); }

 private:
  uint64_t folio() const { return uint64_t{1} << s_.order; }
  uint64_t head(uint64_t p) const { return p & ~(folio() - 1); }
  void add(uint64_t p, int32_t n) {
    std::atomic_ref<int32_t>(counts_[p]).fetch_add(n, std::memory_order_relaxed);
  }
  template <typename F>
  void for_each_page(const PageSet& set, F&& f) const {
    if (set.is_list()) {
      for (uint64_t i = 0; i < set.count; ++i) f(set.list[i]);
    } else {
      for (uint64_t p = set.start; p < set.start + set.count; ++p) f(p);
    }
  }
  struct Run {
    uint64_t head;
    uint64_t n;
  };
  // Runs of consecutive pages of one folio, as the bvec path takes them (computed once).
  std::vector<Run> folio_runs(const PageSet& set) const {
    std::vector<Run> runs;
    auto at = [&](uint64_t k) { return set.is_list() ? uint64_t(set.list[k]) : set.start + k; };
    for (uint64_t i = 0; i < set.count;) {
      const uint64_t p = at(i), h = head(p);
      uint64_t n = 1;
      while (i + n < set.count && at(i + n) == p + n && head(p + n) == h) ++n;
      runs.push_back({h, n});
      i += n;
    }
    return runs;
  }

  BenchSpec s_;
  PageLayout layout_;
  std::vector<int32_t> counts_;
  CallSets sets_;
  std::vector<std::vector<std::vector<Run>>> runs_;  // per thread, per call
};

}  // namespace

std::unique_ptr<Workload> make_workload(const BenchSpec& spec) {
  switch (spec.op) {
    case BenchOp::kGupFast: return std::make_unique<GupWorkload>(spec);
    case BenchOp::kRawPerPage:
    case BenchOp::kRawPerFolio: return std::make_unique<RawWorkload>(spec);
    default: return std::make_unique<ArrayWorkload>(spec);
  }
}

}  // namespace pinlab
