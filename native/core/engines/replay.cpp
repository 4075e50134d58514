// replay_stream: one fresh page array per variant, the stream's tags on native threads.
#include "engines/replay.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <new>
#include <system_error>
#include <thread>

#include "base/threads.h"

namespace pinlab::ops {

namespace {

constexpr uint32_t kMaxReplayThreads = 1024;

// relaxed: a test hook's counter; tests set it while no replay runs.
std::atomic<int64_t> g_starts_left{-1};

// Whether the test hook refuses this start (it consumes one start otherwise).
bool start_refused_for_testing() {
  int64_t left = g_starts_left.load(std::memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) return true;
    if (g_starts_left.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) return false;
  }
  return false;
}

// The threads of one variant's run: started up front and held at a barrier, so a failed start
// (EAGAIN) lets the ones already started go home before any op runs; then released together.
class ReplayThreads {
 public:
  ~ReplayThreads() { release_and_join(true); }

  // Starts fn(index) for index 1..n-1 on threads of their own, each waiting for go().
  template <typename F>
  Status start(uint32_t n, F fn) {
    try {
      pool_.reserve(n);
    } catch (const std::bad_alloc&) {
      return Status::Fail(Code::kENOMEM, Reason::kNoMemory, int64_t(n) * int64_t(sizeof(std::thread)));
    }
    for (uint32_t t = 1; t < n; ++t) {
      try {
        if (start_refused_for_testing()) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
        pool_.emplace_back([this, fn, t] {
          // acquire: pairs with go()'s release, so the thread sees everything set up before it.
          while (!go_.load(std::memory_order_acquire)) std::this_thread::yield();
          // relaxed: abandon_ was written before go_ was released.
          if (!abandon_.load(std::memory_order_relaxed)) fn(t);
        });
      } catch (const std::system_error&) {
        release_and_join(true);
        return Status::Fail(Code::kEAGAIN, Reason::kThreadStartOps, t, n);
      } catch (const std::bad_alloc&) {
        release_and_join(true);
        return Status::Fail(Code::kEAGAIN, Reason::kThreadStartOps, t, n);
      }
    }
    return Status::Ok();
  }
  void go() { go_.store(true, std::memory_order_release); }
  void release_and_join(bool abandon) {
    if (abandon) abandon_.store(true, std::memory_order_relaxed);
    go_.store(true, std::memory_order_release);
    for (std::thread& t : pool_)
      if (t.joinable()) t.join();
    pool_.clear();
  }

 private:
  std::vector<std::thread> pool_;
  std::atomic<bool> go_{false};
  std::atomic<bool> abandon_{false};
};

ReclaimScan scan_reclaim(const PageArray& mem) {
  ReclaimScan r;
  const uint64_t pages = mem.pages();
  for (uint64_t p = 0; p < pages;) {
    const uint32_t order = mem.folio_order(p);
    const uint64_t head = mem.folio_head(p);
    if (head == p && mem.refcount(head) > 0 && !mem.is_zero_page(head)) {
      ++r.folios;
      const bool maybe = mem.maybe_pinned_head(head, order);
      const auto exact = mem.exact_folio_pins(head, order);
      if (maybe) {
        ++r.maybe_pinned;
        if (!exact) ++r.unclassified;
        else if (*exact == 0) ++r.false_positives;
      } else if (exact && *exact > 0) {
        ++r.missed;
      }
    }
    p = head + (uint64_t{1} << order);
    if (p <= head) break;  // cannot happen for a consistent array; never loop forever
  }
  return r;
}

// Per thread of a multi-thread replay, the first record of each op it runs (tag % threads), in
// stream order: a thread then walks its own ops, not every record of the stream (at 16 tags, 16
// records read for each op run). Empty when there is one thread, when the stream has 2^32
// records or more, or when the memory (4 bytes an op) cannot be had: the threads then filter
// by tag as they walk, with the same result.
std::vector<std::vector<uint32_t>> thread_op_index(const OpStream& s, uint32_t threads) {
  std::vector<std::vector<uint32_t>> index;
  const uint64_t n = s.records.size();
  if (threads <= 1 || n > UINT32_MAX) return index;
  const auto thread_of = [threads](const Record& r) { return thread_of_tag(tag_of(r), threads); };
  try {
    std::vector<uint64_t> counts(threads, 0);
    for (uint64_t i = 0; i < n; i += 1 + data_records_for(entries_of(s.records[i])))
      ++counts[thread_of(s.records[i])];
    index.resize(threads);
    for (uint32_t t = 0; t < threads; ++t) index[t].reserve(counts[t]);
    for (uint64_t i = 0; i < n; i += 1 + data_records_for(entries_of(s.records[i])))
      index[thread_of(s.records[i])].push_back(uint32_t(i));
  } catch (const std::bad_alloc&) {
    index.clear();
  }
  return index;
}

std::string variant_label(const ReplayVariant& v) {
  return std::string(scheme_name(v.scheme)) + " bias " + std::to_string(v.pin_bias) +
         (v.scheme == Scheme::kHybrid ? " min-order " + std::to_string(v.pincount_min_order) : "");
}

const Status kStopped{Code::kEINVAL, Reason::kOpsStopped, "the replay"};

bool stop_requested(const std::atomic<bool>* stop) {
  // relaxed: an advisory request; the replay's own state is joined before it returns.
  return stop != nullptr && stop->load(std::memory_order_relaxed);
}

Status replay_variant(const OpStream& s, const ReplayRequest& req, const ReplayVariant& v, bool debug,
                      uint32_t threads, const std::vector<std::vector<uint32_t>>& index,
                      const std::function<void(uint64_t)>& report, ReplayResult* out) {
  std::unique_ptr<PageArray> pa;
  if (Status st = PageArray::create(replay_config(s.header, v, debug), &pa); !st.ok()) return st;
  std::shared_ptr<PageArray> mem(std::move(pa));
  SpaceTable table;
  table.resize(std::max<uint32_t>(1, s.framing.next_id));
  std::vector<std::unique_ptr<Executor>> execs;
  for (uint32_t t = 0; t < threads; ++t) execs.push_back(std::make_unique<Executor>(mem, &table));
  std::vector<Tally> tallies(threads);
  std::vector<double> cpu(threads, 0.0);  // each written by its own thread only, read after the join
  std::atomic<uint64_t> done{0};
  const std::function<void()> tick = [&] { report(done.load(std::memory_order_relaxed)); };
  auto run_thread = [&](uint32_t t) {
    RunOptions o;
    o.tag_modulus = threads == 1 ? 0 : threads;
    o.tag_remainder = t;
    o.stop = req.stop;
    o.progress = &done;
    o.on_check = t == 0 ? &tick : nullptr;
    if (t < index.size()) {
      static constexpr uint32_t kNoOps = 0;  // a thread with no ops still runs by its index
      o.index = index[t].empty() ? &kNoOps : index[t].data();
      o.index_count = index[t].size();
    }
    const double cpu0 = thread_cpu_seconds();
    execs[t]->run(s.records.data(), s.records.size(), o, nullptr, &tallies[t]);
    cpu[t] = thread_cpu_seconds() - cpu0;
  };
  double seconds = 0;
  {
    ReplayThreads pool;
    if (Status st = pool.start(threads, run_thread); !st.ok()) return st;
    const auto t0 = std::chrono::steady_clock::now();
    pool.go();
    run_thread(0);
    pool.release_and_join(false);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (stop_requested(req.stop)) return kStopped;
  ReplayResult r;
  r.variant = v;
  r.debug = debug;
  r.threads = threads;
  for (const Tally& t : tallies) r.tally.add(t);
  r.seconds = seconds;
  for (double c : cpu) r.cpu_seconds += c;
  for (size_t i = 0; i < r.stats.size(); ++i) r.stats[i] = mem->stat(Stat(i));
  std::vector<std::pair<uint32_t, const AddressSpace*>> spaces;
  for (uint32_t id = 1; id < table.by_id.size(); ++id) {
    if (table.by_id[id] == nullptr) continue;
    spaces.emplace_back(id, table.by_id[id]);
    for (size_t i = 0; i < r.mm_stats.size(); ++i) r.mm_stats[i] += table.by_id[id]->stat(MmStat(i));
  }
  r.spaces = spaces.size();
  r.reclaim = scan_reclaim(*mem);
  r.pins_outstanding = int64_t(r.stats[size_t(Stat::kPinAcquired)]) - int64_t(r.stats[size_t(Stat::kPinReleased)]);
  if (debug) {
    std::vector<uint32_t> runs;
    (void)mem->debug_pinned_runs(&runs);
    for (size_t i = 0; i + 2 < runs.size(); i += 3) r.debug_pinned_pages += runs[i + 1];
  }
  r.balanced = r.pins_outstanding == 0 && r.debug_pinned_pages == 0;
  if (req.digest) {
    r.digest = digest_state(*mem, spaces);
    r.has_digest = true;
  }
  *out = r;
  return Status::Ok();
}

}  // namespace

void set_replay_thread_starts_for_testing(int64_t n) { g_starts_left.store(n, std::memory_order_relaxed); }

PageArrayConfig replay_config(const Header& h, const ReplayVariant& v, bool debug) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(h.pages);
  cfg.scheme = v.scheme;
  cfg.pin_bias = v.pin_bias;
  cfg.pincount_min_order = v.pincount_min_order;
  cfg.folio_order = h.folio_order;
  cfg.debug = debug;
  cfg.populated = h.populated();
  cfg.movable_pages = int64_t(h.movable_pages);
  return cfg;
}

Status replay_stream(const OpStream& s, const ReplayRequest& req, const ReplayProgress& progress,
                     std::vector<ReplayResult>* out) {
  out->clear();
  if (req.threads > kMaxReplayThreads)
    return Status::BadOption("threads", req.threads, "an integer in 1..1024 (0: one per tag)");
  const uint32_t tags = s.framing.max_tag + 1;
  const uint32_t threads = std::min(req.threads == 0 ? tags : req.threads, std::min(tags, kMaxReplayThreads));
  const bool debug = req.debug < 0 ? s.header.debug() : req.debug != 0;
  const uint64_t ops = s.framing.ops;
  const uint64_t total = ops * req.variants.size();
  try {
    out->reserve(req.variants.size());
    const std::vector<std::vector<uint32_t>> index = thread_op_index(s, threads);
    for (size_t k = 0; k < req.variants.size(); ++k) {
      if (stop_requested(req.stop)) return kStopped;
      const ReplayVariant& v = req.variants[k];
      const std::string label = variant_label(v);
      if (progress) progress(k * ops, total, label);
      ReplayResult r;
      const auto report = [&](uint64_t done) {
        if (progress) progress(k * ops + std::min(done, ops), total, label);
      };
      if (Status st = replay_variant(s, req, v, debug, threads, index, report, &r); !st.ok()) return st;
      out->push_back(r);
    }
    if (progress) progress(total, total, "done");
  } catch (const std::bad_alloc&) {
    out->clear();
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
  return Status::Ok();
}

}  // namespace pinlab::ops
