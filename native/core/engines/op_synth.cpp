// The synthetic stream generator (op_synth.h).
#include "engines/op_synth.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <new>

#include "engines/op_executor.h"
#include "engines/replay.h"

namespace pinlab::ops {

namespace {

// splitmix64: small, fast, and the same numbers for the same seed everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(uint32_t percent) { return below(100) < percent; }

 private:
  uint64_t s_;
};

// Something a tag holds and must give back: a pin (range or list), a plain reference, or
// pages from a gup.
struct Held {
  enum Kind : uint8_t { kPinRange, kPinList, kGet, kUserPin, kUserGet } kind;
  uint8_t flags = 0;
  uint32_t a = 0, b = 0;
  std::vector<uint32_t> pfns;  // a list's PFNs, or a gup's output references
};

constexpr size_t kWindow = 64;
constexpr uint32_t kMmPages = 4096;   // virtual pages per tag: 2048 of 4 KiB, then 4 THPs
constexpr uint32_t kThpStart = 2048;  // 2 MiB aligned

class Synth {
 public:
  Synth(const SynthConfig& c, std::shared_ptr<PageArray> mem, OpWriter* w)
      : c_(c), rng_(c.seed), mem_(mem), w_(w), exec_(mem, &spaces_), held_(c.threads), produced_(c.threads) {
    spaces_.resize(1);
  }

  // Runs one op (with its input entries) on the live array and writes it with its result;
  // a gup's returned PFNs are written as its entries. Returns the result.
  Status emit(Record op, const std::vector<uint32_t>& entries, int32_t* result) {
    recs_.clear();
    op.w[4] = uint32_t(entries.size());
    recs_.push_back(op);
    append_data(tag_of(op), entries.data(), entries.size(), &recs_);
    const int32_t res = exec_.run_op(recs_.data());
    recs_[0].w[5] = uint32_t(res);
    const Op code = Op(opcode_of(op));
    if ((code == Op::kPinUserFast || code == Op::kPinUser || code == Op::kGetUserFast) && res > 0) {
      recs_.resize(1);
      recs_[0].w[4] = uint32_t(exec_.last_gup_count());
      append_data(tag_of(op), exec_.last_gup_pfns(), exec_.last_gup_count(), &recs_);
      produced_[tag_of(op)] += exec_.last_gup_count();
      exec_.number_last_gup_outputs(tag_of(op));
    }
    ++written_;
    *result = res;
    return w_->append(recs_.data(), recs_.size());
  }
  Status emit(Record op, int32_t* result) { return emit(op, {}, result); }

  uint64_t written() const { return written_; }
  uint64_t outstanding() const {
    uint64_t n = 0;
    for (const auto& h : held_) n += h.size();
    return n;
  }

  Status setup() {
    if (c_.mix != SynthMix::kMm) return Status::Ok();
    spaces_.resize(c_.threads + 1);
    for (uint32_t t = 0; t < c_.threads; ++t) {
      const uint32_t id = t + 1;
      int32_t res = 0;
      if (Status st = emit(make_op(Op::kMmNew, 0, t, id, kMmPages, 0, 0, 0), &res); !st.ok()) return st;
      if (Status st = emit(make_op(Op::kMmap, flag::kWrite | flag::kPopulate, t, id, 0, kThpStart, 0, 0), &res); !st.ok())
        return st;
      if (Status st = emit(make_op(Op::kMmap, flag::kWrite | flag::kPopulate | flag::kHuge, t, id, kThpStart,
                                   kMmPages - kThpStart, 0, 0), &res);
          !st.ok())
        return st;
    }
    next_id_ = c_.threads + 1;
    return Status::Ok();
  }

  // One step: a release when the stream must end balanced or a tag's window is full, else a
  // take or a neutral op.
  Status step(uint64_t remaining) {
    const uint64_t out = outstanding();
    if (remaining <= out) return release_any();
    const uint32_t t = uint32_t(rng_.below(c_.threads));
    auto& h = held_[t];
    // A take needs room for its release in what remains (and fork takes 3 more ops).
    const bool must_release = h.size() >= kWindow || remaining <= out + 4;
    if (!h.empty() && (must_release || rng_.chance(45))) return release(t);
    if (remaining <= out + 4) return neutral(t);
    return c_.mix == SynthMix::kPages ? take_pages(t) : take_mm(t);
  }

  Status release_any() {
    for (uint32_t k = 0; k < c_.threads; ++k) {
      const uint32_t t = uint32_t((last_release_ + 1 + k) % c_.threads);
      if (!held_[t].empty()) {
        last_release_ = t;
        return release(t);
      }
    }
    return Status::Ok();
  }

 private:
  uint64_t slice_start(uint32_t t) const { return c_.pages * t / c_.threads; }
  uint64_t slice_pages(uint32_t t) const { return slice_start(t + 1) - slice_start(t); }
  uint32_t random_pfn(uint32_t t) { return uint32_t(slice_start(t) + rng_.below(slice_pages(t))); }

  Status neutral(uint32_t t) {
    int32_t res = 0;
    if (c_.mix == SynthMix::kMm) {
      const uint32_t count = 1 + uint32_t(rng_.below(8));
      const uint32_t start = uint32_t(rng_.below(kThpStart - count));
      return emit(make_op(Op::kTouch, rng_.chance(50) ? flag::kWrite : 0, t, t + 1, start, count, 0, 0), &res);
    }
    return emit(make_op(Op::kSetDirty, 0, t, 0, random_pfn(t), 0, 0, 0), &res);
  }

  Status take_pages(uint32_t t) {
    const uint64_t x = rng_.below(100);
    int32_t res = 0;
    Held h{};
    if (x < 3) return neutral(t);
    if (x < 73) {  // a pin of one page, or of a run
      const uint32_t span = uint32_t(std::min<uint64_t>(slice_pages(t), 16));
      const uint32_t count = x < 63 ? 1 : 1 + uint32_t(rng_.below(span));
      const uint32_t start = uint32_t(slice_start(t) + rng_.below(slice_pages(t) - count + 1));
      const uint8_t fl = (rng_.chance(50) ? flag::kWrite : 0) | (rng_.chance(20) ? flag::kPerPage : 0);
      if (Status st = emit(make_op(Op::kPin, fl, t, 0, start, count, 0, 0), &res); !st.ok()) return st;
      h = Held{Held::kPinRange, uint8_t(fl & flag::kWrite), start, count, {}};
    } else if (x < 78) {  // a pin of a PFN list (any order, repeats allowed)
      std::vector<uint32_t> pfns(2 + rng_.below(7));
      for (uint32_t& p : pfns) p = random_pfn(t);
      const uint8_t fl = flag::kList | (rng_.chance(50) ? flag::kWrite : 0);
      if (Status st = emit(make_op(Op::kPin, fl, t, 0, 0, 0, 0, 0), pfns, &res); !st.ok()) return st;
      h = Held{Held::kPinList, uint8_t(fl & flag::kWrite), 0, 0, std::move(pfns)};
    } else if (x < 93) {  // plain references
      const uint32_t pfn = random_pfn(t), refs = 1 + uint32_t(rng_.below(3));
      if (Status st = emit(make_op(Op::kGet, 0, t, 0, pfn, refs, 0, 0), &res); !st.ok()) return st;
      h = Held{Held::kGet, 0, pfn, refs, {}};
    } else {  // add-unless-zero
      const uint32_t pfn = random_pfn(t);
      if (Status st = emit(make_op(Op::kTryGet, 0, t, 0, pfn, 1, 0, 0), &res); !st.ok()) return st;
      if (res != 1) return Status::Ok();
      h = Held{Held::kGet, 0, pfn, 1, {}};
    }
    if (res >= 0) held_[t].push_back(std::move(h));
    return Status::Ok();
  }

  Status take_mm(uint32_t t) {
    const uint64_t x = rng_.below(1000);
    const uint32_t id = t + 1;
    int32_t res = 0;
    if (x < 20) return neutral(t);
    if (x < 22) {  // migrate part of the 4 KiB region or one THP
      const bool thp = rng_.chance(50);
      const uint32_t start = thp ? kThpStart + 512 * uint32_t(rng_.below(4)) : uint32_t(rng_.below(kThpStart - 64));
      return emit(make_op(Op::kMigrate, 0, t, id, start, thp ? 512 : 64, 0, 0), &res);
    }
    if (x == 22 && rng_.chance(10)) {  // fork; the child writes a little and exits
      const uint32_t child = next_id_++;
      spaces_.resize(next_id_);
      if (Status st = emit(make_op(Op::kFork, 0, t, id, child, 0, 0, 0), &res); !st.ok()) return st;
      const uint32_t start = uint32_t(rng_.below(kThpStart - 8));
      if (Status st = emit(make_op(Op::kTouch, flag::kWrite, t, child, start, 8, 0, 0), &res); !st.ok()) return st;
      return emit(make_op(Op::kMunmap, 0, t, child, 0, kMmPages, 0, 0), &res);
    }
    const bool thp = rng_.chance(20);
    const uint32_t count = thp ? uint32_t(64 + rng_.below(449)) : uint32_t(1 + rng_.below(16));
    const uint32_t start = thp ? kThpStart + 512 * uint32_t(rng_.below(4)) : uint32_t(rng_.below(kThpStart - count + 1));
    if (x < 850) {
      const uint8_t fl = (rng_.chance(50) ? flag::kWrite : 0) | (rng_.chance(10) ? flag::kLongterm : 0);
      if (Status st = emit(make_op(Op::kPinUserFast, fl, t, id, start, count, 0, 0), &res); !st.ok()) return st;
      if (res > 0) held_[t].push_back(Held{Held::kUserPin, uint8_t(fl & flag::kWrite), 0, 0, last_outputs(t, res)});
      return Status::Ok();
    }
    if (Status st = emit(make_op(Op::kGetUserFast, 0, t, id, start, std::min<uint32_t>(count, 8), 0, 0), &res); !st.ok())
      return st;
    if (res > 0) held_[t].push_back(Held{Held::kUserGet, 0, 0, 0, last_outputs(t, res)});
    return Status::Ok();
  }

  // The output references of the last gup's `n` outputs (the tag's latest numbers).
  std::vector<uint32_t> last_outputs(uint32_t t, int32_t n) const {
    std::vector<uint32_t> refs(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) refs[size_t(i)] = uint32_t(produced_[t] - uint64_t(n) + uint64_t(i));
    return refs;
  }

  Status release(uint32_t t) {
    Held h = std::move(held_[t].front());
    held_[t].pop_front();
    int32_t res = 0;
    const uint8_t dirty = rng_.chance(30) ? flag::kDirty : 0;
    switch (h.kind) {
      case Held::kPinRange:
        return emit(make_op(Op::kUnpin, h.flags | dirty | (rng_.chance(20) ? flag::kPerPage : 0), t, 0, h.a, h.b, 0, 0), &res);
      case Held::kPinList:
        return emit(make_op(Op::kUnpin, h.flags | dirty | flag::kList, t, 0, 0, 0, 0, 0), h.pfns, &res);
      case Held::kGet: return emit(make_op(Op::kPut, 0, t, 0, h.a, h.b, 0, 0), &res);
      case Held::kUserPin:
        return emit(make_op(Op::kUnpinUser, h.flags | dirty | flag::kRefs, t, t + 1, 0, 0, 0, 0), h.pfns, &res);
      case Held::kUserGet: return emit(make_op(Op::kPutUser, flag::kRefs, t, t + 1, 0, 0, 0, 0), h.pfns, &res);
    }
    return Status::Ok();
  }

  const SynthConfig& c_;
  Rng rng_;
  std::shared_ptr<PageArray> mem_;
  OpWriter* w_;
  SpaceTable spaces_;
  Executor exec_;
  std::vector<std::deque<Held>> held_;
  std::vector<Record> recs_;
  std::vector<uint64_t> produced_;  // by tag: gup outputs so far (output numbers)
  uint64_t written_ = 0;
  uint32_t next_id_ = 1;
  uint32_t last_release_ = 0;
};

}  // namespace

Status validate_synth(const SynthConfig& c) {
  if (c.ops < 1 || c.ops > (uint64_t{1} << 40)) return Status::BadOption("ops", int64_t(c.ops), "an integer in 1..2^40");
  if (c.threads < 1 || c.threads > 1024) return Status::BadOption("threads", c.threads, "an integer in 1..1024");
  if (c.pages < 1 || c.pages > kMaxPages) return Status::BadOption("pages", int64_t(c.pages), "an integer in 1..2^31");
  if (c.mix == SynthMix::kPages && c.pages < c.threads)
    return Status::BadOption("pages", int64_t(c.pages), "at least one page per thread");
  if (c.mix == SynthMix::kMm && c.pages < uint64_t(c.threads) * 3 * kMmPages)
    return Status::BadOption("pages", int64_t(c.pages), "at least 12288 pages per thread for the mm mix");
  if (c.mix == SynthMix::kMm && c.ops < uint64_t(c.threads) * 3)
    return Status::BadOption("ops", int64_t(c.ops), "at least 3 per thread for the mm mix (its setup)");
  return Status::Ok();
}

Status synth_stream(const SynthConfig& c, const std::string& path, const std::atomic<bool>* stop,
                    const SynthProgress& progress, uint64_t* records) {
  if (Status st = validate_synth(c); !st.ok()) return st;
  Header h;
  h.pages = c.pages;
  h.flags = (c.debug ? kHeaderDebug : 0) | (c.mix == SynthMix::kPages ? kHeaderPopulated : 0);
  h.pin_bias = c.pin_bias;
  h.scheme = scheme_name(c.scheme);
  h.threads = c.threads;
  try {
    std::unique_ptr<PageArray> pa;
    if (Status st = PageArray::create(replay_config(h, ReplayVariant{c.scheme, c.pin_bias, 1}, c.debug), &pa); !st.ok()) return st;
    OpWriter w;
    if (Status st = w.open(path, h); !st.ok()) return st;
    Synth s(c, std::shared_ptr<PageArray>(std::move(pa)), &w);
    if (Status st = s.setup(); !st.ok()) return st;
    uint64_t next_report = 0;
    while (s.written() < c.ops) {
      if (s.written() >= next_report) {
        // relaxed: an advisory request, checked between ops.
        if (stop != nullptr && stop->load(std::memory_order_relaxed))
          return Status{Code::kEINVAL, Reason::kOpsStopped, "the synthesis"};
        if (progress) progress(s.written(), c.ops);
        next_report = s.written() + (uint64_t{1} << 20);
      }
      if (Status st = s.step(c.ops - s.written()); !st.ok()) return st;
    }
    while (s.outstanding() > 0)  // cannot happen (steps release in time); never end unbalanced
      if (Status st = s.release_any(); !st.ok()) return st;
    if (progress) progress(c.ops, c.ops);
    *records = w.records();
    return w.finish();
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
}

}  // namespace pinlab::ops
