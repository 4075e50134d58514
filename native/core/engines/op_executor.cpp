// The op-stream executor: one switch over the opcode, each case the core call the addon makes
// for the JS call the record stands for.
#include "engines/op_executor.h"

#include <algorithm>
#include <new>

#include "engines/op_settings.h"
#include "pages/one_page.h"

namespace pinlab::ops {

namespace {

int32_t fail(const Status& st) { return -int32_t(st.code); }

// A count as a result: counts above INT32_MAX (a 2^31-page array's whole range) saturate.
int32_t count_result(uint64_t n) { return n > uint64_t(INT32_MAX) ? INT32_MAX : int32_t(n); }

int32_t ok_or(const Status& st, int32_t value) { return st.ok() ? value : fail(st); }

bool has(uint8_t flags, uint8_t bit) { return (flags & bit) != 0; }

}  // namespace

void Tally::add(const Tally& o) {
  ops += o.ops;
  refused += o.refused;
  diverged += o.diverged;
  for (size_t i = 0; i < by_code.size(); ++i) by_code[i] += o.by_code[i];
}

uint64_t count_ops(const Record* r, uint64_t n) {
  uint64_t ops = 0;
  for (uint64_t i = 0; i < n; i += 1 + data_records_for(entries_of(r[i]))) ++ops;
  return ops;
}

Executor::Executor(std::shared_ptr<PageArray> mem, SpaceTable* spaces)
    : mem_(std::move(mem)), debug_(mem_->debug()), spaces_(spaces), pages_(mem_->pages()) {}

AddressSpace* Executor::space(uint32_t id) const {
  if (id >= spaces_->by_id.size()) return nullptr;
  return spaces_->by_id[id];
}

Status Executor::create_space(uint32_t id, int64_t pages, uint32_t settings, int64_t swap_pages) {
  MmRules rules;
  uint32_t thp = 0;
  // The framing refused bad settings: a word that decodes to nothing here is EINVAL all the same.
  if (decode_space_settings(settings, &rules, &thp) != nullptr)
    return Status::BadOption("mm-new settings", settings, "rules and THP orders (op_settings.h)");
  // The pincount boundary is the array's (the header records it): the word does not carry it.
  rules.pincount_min_order =
      uint8_t(std::min<uint32_t>(mem_->pincount_min_order(), MmRules::kNoPincountOrder));
  std::unique_ptr<AddressSpace> as;
  if (Status st = AddressSpace::create(mem_, pages, rules, thp, swap_pages, &as); !st.ok()) return st;
  spaces_->adopt(id, std::move(as));
  return Status::Ok();
}

void Executor::note_output(uint32_t was, uint32_t now) {
  if (was >= pages_) return;
  if (xlat_.empty()) {
    if (was == now) return;  // still itself: nothing to remember
    if (!xlat_.allocate(pages_)) throw std::bad_alloc();
  }
  xlat_.data()[was] = was == now ? 0 : now + 1;
}

void Executor::reserve_translation() {
  if (xlat_.empty() && !xlat_.allocate(pages_)) throw std::bad_alloc();
}

Executor::TagOutputs& Executor::outputs_of(uint32_t tag) {
  if (outputs_.size() <= tag) outputs_.resize(size_t(tag) + 1);
  TagOutputs& t = outputs_[tag];
  if (t.ring.empty() && !t.ring.allocate(kOutputWindow)) throw std::bad_alloc();
  return t;
}

const uint32_t* Executor::entries(const Record& r, const Record* data, bool translate) {
  const uint32_t n = entries_of(r);
  list_.resize(n);
  uint32_t* out = list_.data();
  if (flags_of(r) & flag::kRefs) {
    // Output references (the framing checked each names one of the tag's last outputs).
    const TagOutputs& t = outputs_of(tag_of(r));
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t number = 0;
      const uint32_t e = data[i / kEntriesPerData].w[1 + i % kEntriesPerData];
      out[i] = resolve_output(e, t.produced, &number) ? t.ring.data()[number & (kOutputWindow - 1)] : kNoValue;
    }
    return out;
  }
  // Nothing to translate without a recorded output that moved a page: a plain copy.
  if (!translate || xlat_.empty()) {
    for (uint32_t i = 0, d = 0; i < n; ++d)
      for (uint32_t j = 0; j < kEntriesPerData && i < n; ++j, ++i) out[i] = data[d].w[1 + j];
    return out;
  }
  for (uint32_t i = 0; i < n; ++i) out[i] = map_pfn(data[i / kEntriesPerData].w[1 + i % kEntriesPerData]);
  return out;
}

PageSet Executor::pages_named(const Record& r, const Record* data) {
  if (flags_of(r) & flag::kList) return PageSet::pfns(entries(r, data, true), entries_of(r));
  const uint64_t start = r.w[2], count = r.w[3];
  if (count == 0 || start >= pages_ || start + count > pages_) return PageSet::range(start, count);
  // A range whose pages a recorded output moved: as the list of the pages it names now (the
  // same pages, in the same order, so the same runs where they are still contiguous).
  bool moved = false;
  for (uint64_t p = start; p < start + count && !moved; ++p) moved = map_pfn(uint32_t(p)) != p;
  if (!moved) return PageSet::range(start, count);
  list_.resize(count);
  for (uint64_t i = 0; i < count; ++i) list_[i] = map_pfn(uint32_t(start + i));
  return PageSet::pfns(list_.data(), count);
}

int32_t Executor::pin_or_unpin(const Record& r, const Record* data, bool pin) {
  const uint8_t fl = flags_of(r);
  const PinFlags f{has(fl, flag::kWrite), has(fl, flag::kPerPage), !pin && has(fl, flag::kDirty)};
  // The common case, a range with no recorded output to follow, straight to the core.
  const PageSet set = (fl & flag::kList) || !xlat_.empty() ? pages_named(r, data) : PageSet::range(r.w[2], r.w[3]);
  // The statistics into the run's tally, as the single-page ops'.
  if (pin) {
    uint64_t pinned = 0;
    const Status st = mem_->pin_pages(set, f, &pinned, &tally_);
    return ok_or(st, count_result(pinned));
  }
  return ok_or(mem_->unpin_pages(set, f, &tally_), count_result(set.count));
}

int32_t Executor::gup(const Record& r, const Record* data, AddressSpace& as) {
  const uint8_t fl = flags_of(r);
  const Op op = Op(opcode_of(r));
  GupFlags g;
  g.pin = op != Op::kGetUserFast;
  g.write = has(fl, flag::kWrite);
  g.fast_only = has(fl, flag::kFastOnly);
  g.longterm = has(fl, flag::kLongterm);
  const int64_t start = r.w[2], count = r.w[3];
  // As the addon: room for the pages only for a count the core can accept (it checks the
  // range before it writes anything).
  const uint64_t room = count > 0 && uint64_t(count) <= as.pages() ? uint64_t(count) : 1;
  if (room > out_capacity_) {
    out_.reset(new uint32_t[room]);  // default-initialised: untouched pages cost nothing
    out_capacity_ = room;
  }
  uint64_t done = 0;
  last_gup_done_ = 0;
  const Status st = op == Op::kPinUser ? as.gup_slow(start, count, g, out_.get(), &done)
                                       : as.gup_fast(start, count, g, out_.get(), &done);
  if (!st.ok()) done = 0;
  last_gup_done_ = done;
  const uint64_t recorded = entries_of(r);
  if (recorded > 0) {
    // The recorded outputs take the tag's next output numbers, whatever this run's result (the
    // framing numbered them so); each names the page this run returned in its place (the
    // recorded PFN where this run returned fewer, or failed).
    TagOutputs& t = outputs_of(tag_of(r));
    for (uint64_t i = 0; i < recorded; ++i) {
      const uint32_t was = data[i / kEntriesPerData].w[1 + i % kEntriesPerData];
      const uint32_t now = i < done ? out_[i] : was;
      t.ring.data()[(t.produced + i) & (kOutputWindow - 1)] = now;
      if (i < done) note_output(was, now);
    }
    t.produced += recorded;
  }
  return st.ok() ? count_result(done) : fail(st);
}

void Executor::number_last_gup_outputs(uint32_t tag) {
  if (last_gup_done_ == 0) return;
  TagOutputs& t = outputs_of(tag);
  for (uint64_t i = 0; i < last_gup_done_; ++i) t.ring.data()[(t.produced + i) & (kOutputWindow - 1)] = out_[i];
  t.produced += last_gup_done_;
}

int32_t Executor::madvise(const Record& r, const Record* data, AddressSpace& as) {
  const uint32_t advice = data[0].w[1];  // the framing checked it is below kAdvices
  if (advice == kAdviceCollapse) {
    uint64_t made = 0;
    const Status st = as.collapse(r.w[2], r.w[3], &made);
    return ok_or(st, count_result(made));
  }
  if (advice >= kAdvices) return fail(Status::BadOption("madvise advice", advice, "0..4"));
  return ok_or(as.madvise(r.w[2], r.w[3], Advice(advice)), 0);
}

int32_t Executor::hugetlb_alloc(const Record& r, const Record* data) {
  const uint32_t order = r.w[2];
  std::vector<uint32_t> heads;
  // Host memory first (the translation table and the heads' vector), so a bad_alloc (ENOMEM)
  // comes before the pool gives anything: a refused op changes nothing.
  if (entries_of(r) > 0) reserve_translation();
  if (Status st = mem_->hugetlb_alloc_pages(order, r.w[3], &heads); !st.ok()) return fail(st);
  // The heads this op returned when recorded (its entries) name the huge pages returned now,
  // page by page (the core accepted the order: 9 or 18).
  const uint64_t recorded = std::min<uint64_t>(entries_of(r), heads.size());
  const uint64_t n = uint64_t{1} << order;
  for (uint64_t k = 0; k < recorded; ++k) {
    const uint64_t was = data[k / kEntriesPerData].w[1 + k % kEntriesPerData];
    for (uint64_t i = 0; i < n && was + i < pages_; ++i) note_output(uint32_t(was + i), uint32_t(heads[k] + i));
  }
  return count_result(heads.size());
}

// get, put and try-get of one page: the core's steps (pages/one_page.h), compiled into the
// caller (run_loop's common ops besides the single-page pins). check_pfn's ERANGE first, as the
// addon's calls.
inline int32_t Executor::run_ref_op(const Record& r) {
  const uint32_t pfn = map_pfn(r.w[2]);
  if (pfn >= pages_) [[unlikely]] return -int32_t(Code::kERANGE);
  const int64_t refs = r.w[3];
  bool flag = false;
  Reason why;
  switch (Op(opcode_of(r))) {
    case Op::kGet: why = mem_->get_page_step(pfn, refs); break;
    case Op::kPut: why = mem_->put_page_step(pfn, refs, &flag); break;
    default: why = mem_->try_get_page_step(pfn, refs, &flag); break;
  }
  if (why != Reason::kNone) [[unlikely]] return -int32_t(PageArray::ref_refusal_code(why));
  return flag ? 1 : 0;
}

int32_t Executor::execute(const Record* rec) {
  const Record& r = rec[0];
  const Record* data = rec + 1;
  const uint8_t fl = flags_of(r);
  const uint32_t a = r.w[2], b = r.w[3];
  switch (Op(opcode_of(r))) {
    // One page by its fixed-size record (no list, count 1: most records of a stream), straight
    // to the core's single-page path, its statistics into the run's tally.
    case Op::kPin:
    case Op::kUnpin:
      if (is_single_page(r)) {
        return dispatch_scheme(mem_->scheme(), [&](auto tag) { return run_single_page<decltype(tag)::value>(r); });
      }
      return pin_or_unpin(r, data, Op(opcode_of(r)) == Op::kPin);
    case Op::kGet:
    case Op::kPut:
    case Op::kTryGet: return run_ref_op(r);
    case Op::kMakeFolio: {
      const uint32_t head = map_pfn(a);
      if (Status st = mem_->check_pfn(head); !st.ok()) return fail(st);
      return ok_or(mem_->make_folio(head, b), 0);
    }
    case Op::kSplitFolio: {
      const uint32_t head = map_pfn(a);
      if (Status st = mem_->check_pfn(head); !st.ok()) return fail(st);
      return ok_or(mem_->split_folio(head), 0);
    }
    case Op::kAllocFolio: {
      uint64_t head = 0;
      if (Status st = mem_->alloc_folio(b, has(fl, flag::kMovable), &head); !st.ok()) return fail(st);
      // The head this op returned when recorded (its data entry) names the folio returned
      // now, page by page.
      if (entries_of(r) == 1) {
        const uint64_t was = data[0].w[1];
        const uint64_t n = uint64_t{1} << b;
        for (uint64_t i = 0; i < n && was + i < pages_; ++i) note_output(uint32_t(was + i), uint32_t(head + i));
      }
      return count_result(head);
    }
    case Op::kSetDirty: {
      const uint32_t pfn = map_pfn(a);
      if (Status st = mem_->check_pfn(pfn); !st.ok()) return fail(st);
      return ok_or(mem_->set_dirty(pfn), 0);
    }
    case Op::kUnpinLists: {
      // One all-or-nothing call: the first a entries unpinned as reads, the next b as writes
      // (the framing checked a + b is the entries' count).
      const uint32_t* pfns = entries(r, data, true);
      return ok_or(mem_->unpin_pages_both(pfns, a, pfns + a, b), count_result(uint64_t{a} + b));
    }
    case Op::kHugetlbPool: return ok_or(mem_->hugetlb_set_pages(a, b), 0);
    case Op::kHugetlbAlloc: return hugetlb_alloc(r, data);
    case Op::kData: return fail(Status::Fail(Code::kEINVAL, Reason::kFlags));  // framing forbids it
    default: return execute_mm(rec);
  }
}

int32_t Executor::execute_mm(const Record* rec) {
  flush_stats();  // the array's statistics exact before anything else can look at them
  const Record& r = rec[0];
  const Record* data = rec + 1;
  const uint8_t fl = flags_of(r);
  const uint32_t a = r.w[2], b = r.w[3];
  if (Op(opcode_of(r)) == Op::kMmNew) {
    // Version 3: its one entry, if any, is the swap device's slots (else the default).
    const int64_t swap = entries_of(r) == 1 ? int64_t(data[0].w[1]) : AddressSpace::kDefaultSwap;
    return ok_or(create_space(r.w[1], a, b, swap), 0);
  }
  // Address-space ops: the framing checked the id was created earlier; its creation may have
  // failed, which the op reports (as a JS call on a space that does not exist could not run).
  AddressSpace* as = space(r.w[1]);
  if (as == nullptr) return fail(Status::Fail(Code::kEINVAL, Reason::kOpsNoSpace, r.w[1]));
  switch (Op(opcode_of(r))) {
    case Op::kMmap: {
      const MmapArgs m{a, b, has(fl, flag::kWrite), has(fl, flag::kPopulate), has(fl, flag::kHuge)};
      return ok_or(as->mmap(m), 0);
    }
    case Op::kMmapFile: {
      const uint32_t* pfns = entries(r, data, true);
      return ok_or(as->map_shared(a, pfns, entries_of(r), has(fl, flag::kWrite), !has(fl, flag::kShmem)), 0);
    }
    case Op::kMmapFilePrivate: {
      const uint32_t* pfns = entries(r, data, true);
      return ok_or(as->map_private(a, pfns, entries_of(r), has(fl, flag::kWrite), !has(fl, flag::kShmem)), 0);
    }
    case Op::kZapFile: return ok_or(as->zap_file(a, b, has(fl, flag::kEvenCows)), 0);
    case Op::kMadvise: return madvise(r, data, *as);
    case Op::kMremap: {
      // Entries: the new count, and the new start (2^32 - 1: none, as the JS call's -1).
      MremapArgs m;
      m.start = a;
      m.count = b;
      m.new_count = data[0].w[1];
      m.new_start = data[0].w[2] == kNoValue ? -1 : int64_t(data[0].w[2]);
      m.may_move = has(fl, flag::kMayMove);
      m.fixed = has(fl, flag::kFixed);
      m.dont_unmap = has(fl, flag::kDontUnmap);
      uint64_t at = 0;
      const Status st = as->mremap(m, &at);
      return ok_or(st, count_result(at));
    }
    case Op::kKhugepaged: {
      KhugepagedArgs k;
      k.max_ptes_none = a;
      k.max_ptes_shared = b;
      uint64_t made = 0, scanned = 0;
      const Status st = as->khugepaged(k, &made, &scanned);
      return ok_or(st, count_result(made));
    }
    case Op::kMmapHugetlb: {
      HugetlbMmapArgs h;
      h.start = a;
      h.count = b;
      h.order = data[0].w[1];
      h.write = has(fl, flag::kWrite);
      h.populate = has(fl, flag::kPopulate);
      h.shared = has(fl, flag::kShared);
      return ok_or(as->mmap_hugetlb(h), 0);
    }
    case Op::kMmapHugetlbFile: {
      const uint32_t* heads = entries(r, data, true);
      return ok_or(as->map_hugetlb_file(a, heads, entries_of(r), b, has(fl, flag::kWrite), has(fl, flag::kShared)), 0);
    }
    case Op::kMunmap: return ok_or(as->munmap(a, b), 0);
    case Op::kMprotect: return ok_or(as->mprotect(a, b, has(fl, flag::kWrite)), 0);
    case Op::kZap: return ok_or(as->zap(a, b), 0);
    case Op::kTouch: return ok_or(as->touch(a, b, has(fl, flag::kWrite)), 0);
    case Op::kPinUserFast:
    case Op::kPinUser:
    case Op::kGetUserFast: return gup(r, data, *as);
    case Op::kUnpinUser: {
      const uint32_t* pfns = entries(r, data, true);
      const uint32_t n = entries_of(r);
      return ok_or(as->unpin_user_pages(pfns, n, has(fl, flag::kWrite), has(fl, flag::kDirty)), count_result(n));
    }
    case Op::kPutUser: {
      const uint32_t* pfns = entries(r, data, true);
      const uint32_t n = entries_of(r);
      return ok_or(as->put_user_pages(pfns, n), count_result(n));
    }
    case Op::kFork: {
      std::unique_ptr<AddressSpace> child;
      if (Status st = as->fork(&child); !st.ok()) return fail(st);
      spaces_->adopt(a, std::move(child));
      return 0;
    }
    case Op::kMigrate: {
      uint64_t moved = 0;
      const Status st = as->migrate(a, b, &moved);
      return ok_or(st, count_result(moved));
    }
    case Op::kCompact: {
      uint64_t moved = 0;
      const Status st = as->compact(&moved);
      return ok_or(st, count_result(moved));
    }
    default: break;
  }
  return fail(Status::Fail(Code::kEINVAL, Reason::kFlags));  // framing checked every opcode
}

inline int32_t Executor::run_op_batched(const Record* r) noexcept {
  try {
    return execute(r);
  } catch (const std::bad_alloc&) {
    return -int32_t(Code::kENOMEM);
  } catch (const std::length_error&) {
    return -int32_t(Code::kENOMEM);
  }
}

int32_t Executor::run_op(const Record* r) noexcept {
  const int32_t res = run_op_batched(r);
  flush_stats();
  return res;
}

// A single-page pin or unpin record: the core's one-page step for scheme S (pages/one_page.h).
template <Scheme S>
inline int32_t Executor::run_single_page(const Record& r) {
  const uint8_t fl = flags_of(r);
  const uint32_t pfn = map_pfn(r.w[2]);
  Code code;
  if (opcode_of(r) == uint8_t(Op::kPin)) {
    code = mem_->pin_page_as<S>(pfn, (fl & flag::kWrite) != 0, &tally_);
  } else {
    const PinFlags f{(fl & flag::kWrite) != 0, (fl & flag::kPerPage) != 0, (fl & flag::kDirty) != 0};
    code = mem_->unpin_page_as<S>(pfn, f, &tally_);
  }
  return code == Code::kOk ? 1 : -int32_t(code);
}

// The loop of run(), compiled for its common shapes: a replay's (every op its thread's, some
// filtered out by tag, or its ops named by an index; no results kept) and a batch's (results
// kept, no tags). The per-op cost of the loop itself is a good part of a single-page op's, so it
// tests nothing it can know at compile time, and the array's scheme is chosen once, for the
// whole run, so the single-page grabs and releases are compiled into it.
template <Scheme S, bool kFiltered, bool kResults, bool kIndexed>
uint64_t Executor::run_loop(const Record* r, uint64_t n, const RunOptions& o, int32_t* results, Tally& t,
                            uint64_t* op_count, bool* stopped) {
  static_assert(!(kIndexed && (kFiltered || kResults)), "an index is one thread's ops, without results");
  uint64_t i = 0, k = 0, op_index = 0, since_check = 0, done_since = 0;
  while (kIndexed ? k < o.index_count : i < n) {
    if constexpr (kIndexed) i = o.index[k++];
    const Record& op = r[i];
    const uint64_t span = 1 + data_records_for(entries_of(op));
    if (!kFiltered || thread_of_tag(tag_of(op), o.tag_modulus) == o.tag_remainder) {
      // The single-page pins and unpins, gets and puts without the general dispatch
      // (execute's frame). A free allocates nothing (the zones' bitmaps are mapped up front),
      // but the general ops may meet std::bad_alloc (page tables, lists): -ENOMEM, as
      // run_op_batched.
      int32_t res;
      try {
        if (!debug_ && is_single_page_op(op)) res = run_single_page<S>(op);
        else if (is_ref_op(op)) res = run_ref_op(op);
        else res = execute(&r[i]);
      } catch (const std::bad_alloc&) {
        res = -int32_t(Code::kENOMEM);
      } catch (const std::length_error&) {
        res = -int32_t(Code::kENOMEM);
      }
      ++done_since;
      if (res < 0) [[unlikely]] {
        ++t.refused;
        ++t.by_code[std::min<size_t>(size_t(-int64_t(res)), kResultCodes - 1)];
      }
      if (res != result_of(op)) [[unlikely]] ++t.diverged;
      if constexpr (kResults) results[op_index] = res;
      if (res < 0 && o.stop_on_error) [[unlikely]] {
        *stopped = true;
        i += span;
        ++op_index;
        break;
      }
    }
    i += span;
    ++op_index;
    since_check += kIndexed ? 1 : span;
    if (since_check >= kStopCheckRecords) [[unlikely]] {
      since_check = 0;
      t.ops += done_since;
      // relaxed: progress and the stop request are advisory; nothing else is published.
      if (o.progress != nullptr) o.progress->fetch_add(done_since, std::memory_order_relaxed);
      done_since = 0;
      flush_stats();
      if (o.on_check != nullptr) (*o.on_check)();
      if (o.stop != nullptr && o.stop->load(std::memory_order_relaxed)) {
        *stopped = true;
        break;
      }
    }
  }
  t.ops += done_since;
  if (o.progress != nullptr) o.progress->fetch_add(done_since, std::memory_order_relaxed);
  *op_count = op_index;
  if constexpr (kIndexed) return *stopped ? i : n;  // an index's run has consumed the stream
  return i;
}

uint64_t Executor::run(const Record* r, uint64_t n, const RunOptions& o, int32_t* results,
                       Tally* tally) {
  Tally t;
  uint64_t op_index = 0;
  bool stopped = false;
  const bool filtered = o.tag_modulus != 0;
  const uint64_t i = dispatch_scheme(mem_->scheme(), [&](auto tag) {
    constexpr Scheme S = decltype(tag)::value;
    if (results != nullptr) {
      return filtered ? run_loop<S, true, true, false>(r, n, o, results, t, &op_index, &stopped)
                      : run_loop<S, false, true, false>(r, n, o, results, t, &op_index, &stopped);
    }
    if (o.index != nullptr) return run_loop<S, false, false, true>(r, n, o, results, t, &op_index, &stopped);
    return filtered ? run_loop<S, true, false, false>(r, n, o, results, t, &op_index, &stopped)
                    : run_loop<S, false, false, false>(r, n, o, results, t, &op_index, &stopped);
  });
  flush_stats();
  if (stopped && results != nullptr) {
    // The ops after the stop did not run.
    for (uint64_t k = i; k < n; k += 1 + data_records_for(entries_of(r[k]))) results[op_index++] = kNotRun;
  }
  if (tally != nullptr) tally->add(t);
  return i;
}

}  // namespace pinlab::ops
