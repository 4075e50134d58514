// Op streams in the addon: the format's constants for lib/, submit (a batch of ops in one
// call), writing a recording, the state digest, and the asynchronous jobs (replay, synthesis,
// conversion) with progress and a cancel function. Argument conversion and checks only: the
// core (engines/op_*.h, replay.h) does the work.
#include "ops_wrap.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "address_space_wrap.h"
#include "args.h"
#include "async_run.h"
#include "engines/op_executor.h"
#include "engines/op_files.h"
#include "engines/op_format.h"
#include "engines/op_settings.h"
#include "engines/op_state.h"
#include "engines/op_synth.h"
#include "engines/replay.h"
#include "errors.h"
#include "page_array_wrap.h"

namespace pinlab::addon {

namespace {

using namespace pinlab::ops;

[[noreturn]] void bad_arg(Napi::Env env, const char* what) {
  throw_status(env, Status{Code::kEINVAL, Reason::kFlags, what});
}

// An integer argument in [lo, hi] (EINVAL naming `name` otherwise).
int64_t int_value(Napi::Env env, Napi::Value v, const char* name, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) throw_status(env, Status::BadOption(name, 0, "a number"));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= double(lo) && d <= double(hi)) || d != double(int64_t(d)))
    throw_status(env, Status::BadOption(name, int64_t(d), "an integer in range"));
  return int64_t(d);
}

bool bool_value(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsBoolean()) throw_status(env, Status::BadOption(name, 0, "a boolean"));
  return v.As<Napi::Boolean>().Value();
}

// A string argument, read once. A NUL byte inside it is refused (EINVAL): a path "a\0b" would
// otherwise reach open(2) as "a", another file than the one named.
std::string string_value(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsString()) throw_status(env, Status::BadOption(name, 0, "a string"));
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos)
    throw_invalid(env, std::string(name) + " must not contain a NUL byte (a path is taken as named)");
  return s;
}

// A typed array's elements, read with one Node-API call: false unless `v` is a real typed
// array of `type` (a DataView, or another view with the same element size, is not).
template <typename T>
bool typed_array_data(napi_env env, napi_value v, napi_typedarray_type type, T** data, size_t* length) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type t;
  void* p = nullptr;
  if (napi_get_typedarray_info(env, v, &t, length, &p, nullptr, nullptr) != napi_ok || t != type) return false;
  *data = static_cast<T*>(p);
  return true;
}

// Whether the typed array v's buffer is detached.
bool typed_array_detached(napi_env env, napi_value v) {
  napi_value buffer = nullptr;
  bool detached = false;
  if (napi_get_typedarray_info(env, v, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok || buffer == nullptr)
    return false;
  return napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached;
}

// A real Uint32Array whose length is a whole number of records.
struct RecordWords {
  const uint32_t* data;
  size_t words;
};
RecordWords records_value(Napi::Env env, Napi::Value v, const char* name) {
  uint32_t* data = nullptr;
  size_t n = 0;
  if (!typed_array_data(env, v, napi_uint32_array, &data, &n)) throw_status(env, Status::BadOption(name, 0, "a Uint32Array"));
  // A detached buffer reads as no words: refused, not run as an empty batch (as every list
  // argument's; asked only then, so the hot path stays one Node-API call).
  if (n == 0 && typed_array_detached(env, v))
    throw_invalid(env, std::string(name) + " is a Uint32Array whose buffer is detached");
  if (n % kRecordWords != 0) throw_status(env, Status::BadOption(name, int64_t(n), "a whole number of 6-word records"));
  return {data, n};
}

PageArrayWrap* page_array_value(Napi::Env env, Napi::Value v) {
  return PageArrayWrap::from(env, v, "mem");
}

AddressSpaceWrap* address_space_value(Napi::Env env, Napi::Value v) {
  return AddressSpaceWrap::from(env, v, "an address space");
}

// [[id, nativeAddressSpace], ...]: the live address spaces of a page array, by id. Each
// address space's core is held here (a getter met later in the list, or in another argument,
// may dispose an address space already read: the call then refuses it, see recheck_live).
struct LiveSpace {
  uint32_t id;
  AddressSpaceWrap* wrap;
  std::shared_ptr<AddressSpace> core;
};
std::vector<LiveSpace> spaces_value(Napi::Env env, Napi::Value v, const PageArray& mem) {
  std::vector<LiveSpace> out;
  if (v.IsNull() || v.IsUndefined()) return out;
  if (!v.IsArray()) bad_arg(env, "spaces must be an array of [id, address space] pairs");
  auto arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value e = arr.Get(i);
    if (!e.IsArray() || e.As<Napi::Array>().Length() != 2) bad_arg(env, "spaces must be an array of [id, address space] pairs");
    const auto pair = e.As<Napi::Array>();
    const auto id = uint32_t(int_value(env, pair.Get(uint32_t(0)), "address space id", 1, kMaxSpaces));
    AddressSpaceWrap* as = address_space_value(env, pair.Get(uint32_t(1)));
    if (&as->core()->mem() != &mem) bad_arg(env, "an address space of another page array");
    out.push_back({id, as, as->core()});
  }
  return out;
}

// After every argument was read (getters and Proxy traps have run): EINVAL if one of them
// disposed the page array or an address space the call names. Their cores are held, so this
// is the call's answer, not a memory-safety check.
void recheck_live(Napi::Env env, const PageArrayWrap* mem, const std::vector<LiveSpace>& live) {
  if (mem->disposed()) throw_disposed(env, "mem");
  for (const LiveSpace& s : live)
    if (s.wrap->disposed()) throw_disposed(env, "an address space");
}

// Hands an address space the executor created to JS, as fork() does.
Napi::Value wrap_new_space(Napi::Env env, std::unique_ptr<AddressSpace> as) {
  return AddressSpaceWrap::adopt(env, std::move(as));
}

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

Napi::Object stats_object(Napi::Env env, const std::array<uint64_t, size_t(Stat::kCount)>& s) {
  auto o = Napi::Object::New(env);
  for (size_t i = 0; i < s.size(); ++i) o.Set(stat_key(Stat(i)), double(s[i]));
  return o;
}

Napi::Object mm_stats_object(Napi::Env env, const std::array<uint64_t, size_t(MmStat::kCount)>& s) {
  auto o = Napi::Object::New(env);
  for (size_t i = 0; i < s.size(); ++i) o.Set(mm_stat_key(MmStat(i)), double(s[i]));
  return o;
}

Napi::Object digest_object(Napi::Env env, const StateDigest& d) {
  auto o = Napi::Object::New(env);
  o.Set("pages", hex(d.pages));
  o.Set("freeBlocks", hex(d.free_blocks));
  o.Set("freePages", double(d.free_pages));
  o.Set("zeroPfn", d.zero_pfn < 0 ? env.Null() : Napi::Number::New(env, double(d.zero_pfn)));
  o.Set("stats", stats_object(env, d.stats));
  o.Set("spaces", hex(d.spaces));
  o.Set("spaceCount", double(d.space_count));
  o.Set("mmStats", mm_stats_object(env, d.mm_stats));
  return o;
}

Napi::Object header_object(Napi::Env env, const Header& h) {
  auto o = Napi::Object::New(env);
  o.Set("pages", double(h.pages));
  o.Set("movablePages", double(h.movable_pages));
  o.Set("folioOrder", double(h.folio_order));
  o.Set("pincountMinOrder", double(h.pincount_min_order));
  o.Set("pinBias", double(h.pin_bias));
  o.Set("debug", h.debug());
  o.Set("populated", h.populated());
  o.Set("scheme", h.scheme);
  o.Set("threads", double(h.threads));
  o.Set("records", double(h.records));
  o.Set("ops", double(h.ops));
  return o;
}

Header header_value(Napi::Env env, Napi::Value v) {
  if (!v.IsObject()) bad_arg(env, "header must be an object");
  auto o = v.As<Napi::Object>();
  Header h;
  h.pages = uint64_t(int_value(env, o.Get("pages"), "pages", 1, int64_t(kMaxPages)));
  h.movable_pages = uint64_t(int_value(env, o.Get("movablePages"), "movablePages", 0, int64_t(kMaxPages)));
  h.folio_order = uint8_t(int_value(env, o.Get("folioOrder"), "folioOrder", 0, kMaxOrder));
  h.pincount_min_order = uint8_t(int_value(env, o.Get("pincountMinOrder"), "pincountMinOrder", 1, kMaxOrder + 1));
  h.pin_bias = uint32_t(int_value(env, o.Get("pinBias"), "pinBias", 0, UINT32_MAX));
  h.flags = (bool_value(env, o.Get("debug"), "debug") ? kHeaderDebug : 0) |
            (bool_value(env, o.Get("populated"), "populated") ? kHeaderPopulated : 0);
  h.scheme = string_value(env, o.Get("scheme"), "scheme");
  h.threads = 1;
  return h;
}

// ---- asynchronous jobs ---------------------------------------------------------------------------

// A job on a pool thread (an AsyncRun: safe against its environment's teardown) with progress
// events, a promise, and a cancel function that asks the run to stop (the control is shared:
// it outlives whichever of the two ends first).
class Job : public AsyncRun {
 public:
  Job(Napi::Env env, const char* name, Napi::Function on_progress)
      : AsyncRun(env, name, on_progress) {}

  // { promise, cancel }: queues the job.
  Napi::Object start(Napi::Env env) {
    auto o = Napi::Object::New(env);
    o.Set("promise", promise());
    std::shared_ptr<RunControl> control = shared_control();
    o.Set("cancel", Napi::Function::New(env, [control](const Napi::CallbackInfo& info) {
            control->request_stop();
            return info.Env().Undefined();
          }, "cancel"));
    Queue();
    return o;
  }

 protected:
  virtual Status run_job() = 0;
  const std::atomic<bool>* stop() const { return stop_; }
  void report(uint64_t done, uint64_t total, const std::string& label) {
    (*report_)(size_t(done), size_t(total), label);
  }

 private:
  Status run(const RunControl& control, const Report& report) final {  // no Node-API here
    stop_ = control.flag();
    report_ = &report;
    return run_job();
  }
  // The latest progress event is enough.
  void deliver(Napi::Env env, Napi::Function cb, const RunEvent* events, size_t n) override {
    if (n > 0) AsyncRun::deliver(env, cb, events + (n - 1), 1);
  }

  const std::atomic<bool>* stop_ = nullptr;
  const Report* report_ = nullptr;
};

class ReplayJob : public Job {
 public:
  ReplayJob(Napi::Env env, std::string file, ReplayRequest req, Napi::Function on_progress)
      : Job(env, "pinlab.replay", on_progress), file_(std::move(file)), req_(std::move(req)) {}

 protected:
  Status run_job() override {
    report(0, 1, "reading " + file_);
    if (Status st = read_op_stream(file_, &stream_, stop()); !st.ok()) return st;
    for (ReplayVariant& v : req_.variants) {  // the stream's own bias and rule where asked
      if (v.pin_bias == 0) v.pin_bias = stream_.header.pin_bias;
      if (v.pincount_min_order == kNoValue) v.pincount_min_order = stream_.header.pincount_min_order;
    }
    req_.stop = stop();
    return replay_stream(stream_, req_, [&](uint64_t done, uint64_t total, const std::string& what) {
      report(done, total, what);
    }, &results_);
  }

  Napi::Value result(Napi::Env env) override {
    auto o = Napi::Object::New(env);
    auto stream = header_object(env, stream_.header);
    stream.Set("bytes", double(stream_.bytes));  // what was read and checked, not a later stat
    o.Set("stream", stream);
    auto arr = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); ++i) {
      const ReplayResult& r = results_[i];
      auto e = Napi::Object::New(env);
      e.Set("scheme", scheme_name(r.variant.scheme));
      e.Set("bias", double(r.variant.pin_bias));
      e.Set("pincountMinOrder", double(r.variant.pincount_min_order));
      e.Set("debug", r.debug);
      e.Set("threads", double(r.threads));
      e.Set("ops", double(r.tally.ops));
      e.Set("refused", double(r.tally.refused));
      e.Set("diverged", double(r.tally.diverged));
      auto codes = Napi::Object::New(env);
      for (size_t c = 1; c < r.tally.by_code.size(); ++c)
        if (r.tally.by_code[c] > 0) codes.Set(code_name(Code(c)), double(r.tally.by_code[c]));
      e.Set("refusals", codes);
      e.Set("seconds", r.seconds);
      e.Set("cpuSeconds", r.cpu_seconds);
      e.Set("stats", stats_object(env, r.stats));
      e.Set("mmStats", mm_stats_object(env, r.mm_stats));
      e.Set("spaces", double(r.spaces));
      auto rc = Napi::Object::New(env);
      rc.Set("folios", double(r.reclaim.folios));
      rc.Set("maybePinned", double(r.reclaim.maybe_pinned));
      rc.Set("falsePositives", double(r.reclaim.false_positives));
      rc.Set("unclassified", double(r.reclaim.unclassified));
      rc.Set("missed", double(r.reclaim.missed));
      e.Set("reclaim", rc);
      e.Set("pinsOutstanding", double(r.pins_outstanding));
      e.Set("debugPinnedPages", double(r.debug_pinned_pages));
      e.Set("balanced", r.balanced);
      e.Set("digest", r.has_digest ? Napi::Value(digest_object(env, r.digest)) : env.Null());
      arr[i] = e;
    }
    o.Set("results", arr);
    return o;
  }

 private:
  std::string file_;
  ReplayRequest req_;
  OpStream stream_;
  std::vector<ReplayResult> results_;
};

class SynthJob : public Job {
 public:
  SynthJob(Napi::Env env, std::string path, SynthConfig c, Napi::Function on_progress)
      : Job(env, "pinlab.synth", on_progress), path_(std::move(path)), c_(c) {}

 protected:
  Status run_job() override {
    return synth_stream(c_, path_, stop(), [&](uint64_t done, uint64_t total) {
      report(done, total, "writing " + path_);
    }, &records_);
  }
  Napi::Value result(Napi::Env env) override {
    auto o = Napi::Object::New(env);
    o.Set("path", path_);
    o.Set("ops", double(c_.ops));
    o.Set("records", double(records_));
    return o;
  }

 private:
  std::string path_;
  SynthConfig c_;
  uint64_t records_ = 0;
};

class ConvertJob : public Job {
 public:
  ConvertJob(Napi::Env env, std::string in, std::string out, Napi::Function on_progress)
      : Job(env, "pinlab.convert", on_progress), in_(std::move(in)), out_(std::move(out)) {}

 protected:
  Status run_job() override {
    report(0, 1, "converting " + in_);
    Status st = convert_op_stream(in_, out_, stop(), &records_);
    if (st.ok()) report(1, 1, "done");
    return st;
  }
  Napi::Value result(Napi::Env env) override {
    auto o = Napi::Object::New(env);
    o.Set("records", double(records_));
    return o;
  }

 private:
  std::string in_, out_;
  uint64_t records_ = 0;
};

// ---- synchronous entry points ------------------------------------------------------------------

// opFormat() -> the format's constants, for lib/ (never restated there).
Napi::Value op_format(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("version", double(kVersion));
  o.Set("headerBytes", double(kHeaderBytes));
  o.Set("recordWords", double(kRecordWords));
  o.Set("entriesPerData", double(kEntriesPerData));
  o.Set("dataOpcode", double(uint8_t(Op::kData)));
  o.Set("outputWindow", double(kOutputWindow));
  o.Set("notRun", double(kNotRun));
  o.Set("noValue", double(kNoValue));
  auto ops = Napi::Object::New(env);
  for (const OpInfo& op : all_ops()) ops.Set(op.name, double(uint8_t(op.op)));
  o.Set("ops", ops);
  auto flags = Napi::Object::New(env);
  flags.Set("write", double(flag::kWrite));
  flags.Set("perPage", double(flag::kPerPage));
  flags.Set("dirty", double(flag::kDirty));
  flags.Set("list", double(flag::kList));
  flags.Set("movable", double(flag::kMovable));
  flags.Set("populate", double(flag::kPopulate));
  flags.Set("huge", double(flag::kHuge));
  flags.Set("fastOnly", double(flag::kFastOnly));
  flags.Set("longterm", double(flag::kLongterm));
  flags.Set("refs", double(flag::kRefs));
  flags.Set("shmem", double(flag::kShmem));
  flags.Set("shared", double(flag::kShared));
  flags.Set("mayMove", double(flag::kMayMove));
  flags.Set("fixed", double(flag::kFixed));
  flags.Set("dontUnmap", double(flag::kDontUnmap));
  flags.Set("evenCows", double(flag::kEvenCows));
  o.Set("flags", flags);
  auto codes = Napi::Array::New(env);
  const auto names = code_names();
  for (size_t i = 0; i < names.size(); ++i) codes[uint32_t(i)] = names[i];
  o.Set("codes", codes);
  return o;
}

// The records of a batch, copied once into memory pinlab owns: a buffer kept per thread and
// reused, so a small batch costs no allocation (a batch submitted from inside another, by a
// race hook, gets a buffer of its own).
struct BatchBuffer {
  std::vector<Record> records;
  int depth = 0;
};
thread_local BatchBuffer tl_batch;

class BatchCopy {
 public:
  BatchCopy(const uint32_t* words, size_t n) {
    std::vector<Record>& buf = tl_batch.depth++ == 0 ? tl_batch.records : own_;
    if (buf.size() < n) buf.resize(n);
    if (n > 0) std::memcpy(buf.data(), words, n * kRecordBytes);
    data_ = buf.data();
    n_ = n;
  }
  ~BatchCopy() { --tl_batch.depth; }
  BatchCopy(const BatchCopy&) = delete;
  BatchCopy& operator=(const BatchCopy&) = delete;
  const Record* data() const { return data_; }
  size_t size() const { return n_; }

 private:
  std::vector<Record> own_;
  const Record* data_ = nullptr;
  size_t n_ = 0;
};

// submitOps(mem, ops, stopOnError, spaces, firstNewId, scratch) -> the results: a number n when
// they fit in `scratch` (an Int32Array the caller keeps: results in scratch[0..n)), else a fresh
// Int32Array. When the batch creates address spaces: [that, created, nextId], created being
// [[id, nativeAddressSpace], ...] for the ones made (a failed creation uses up its id too) and
// nextId the id after them.
Napi::Value submit_ops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    PageArrayWrap* mem = page_array_value(env, info[0]);
    const std::shared_ptr<PageArray> mem_core = mem->core();  // held through the call
    // Arguments that can run JS (getters, Proxy traps: the spaces list) are read first, then
    // the typed arrays: a getter could otherwise detach or shrink the ops buffer under a
    // pointer already taken. The records are copied before anything else can run.
    const auto live = spaces_value(env, info[3], *mem_core);
    const bool stop_on_error = bool_value(env, info[2], "stopOnError");
    const auto first_new = uint32_t(int_value(env, info[4], "firstNewId", 1, kMaxSpaces));
    recheck_live(env, mem, live);
    const RecordWords ops = records_value(env, info[1], "ops");
    const BatchCopy recs(ops.data, ops.words / kRecordWords);
    size_t scratch_length = 0;
    int32_t* scratch = nullptr;
    if (!typed_array_data(env, info[5], napi_int32_array, &scratch, &scratch_length)) bad_arg(env, "scratch must be an Int32Array");
    IdRules rules;
    rules.first_new = first_new;
    if (!live.empty()) rules.live.assign(first_new, false);
    for (const LiveSpace& s : live) {
      if (s.id >= first_new) bad_arg(env, "a live address space id must be below firstNewId");
      rules.live[s.id] = true;
    }
    // Every record checked before the first op runs: a bad batch changes nothing.
    FramingChecker checker("ops", std::move(rules));
    check(env, checker.feed(recs.data(), recs.size()));
    check(env, checker.finish());
    const Framing& f = checker.framing();
    SpaceTable table;
    if (f.next_id > 1) table.resize(f.next_id);
    for (const LiveSpace& s : live) table.by_id[s.id] = s.core.get();
    // A live address space with a race hook runs JS during the batch's gups: that JS could
    // detach or shrink the scratch array, so the results then go to memory the addon owns and
    // are copied out after the run, into whatever array is there then.
    bool hooked = false;
    for (const LiveSpace& s : live) hooked = hooked || s.wrap->has_race_hook();
    // Every array the results may need is made before the first op runs: an allocation that
    // fails (a RangeError) then refuses a batch that changed nothing. A hooked batch gets its
    // fresh array up front too, in case its hook takes the scratch away.
    bool fits = scratch_length >= f.ops;
    std::vector<int32_t> owned_results(hooked ? f.ops : 0);
    Napi::Int32Array fresh = fits && !(hooked && f.ops > 0) ? Napi::Int32Array() : Napi::Int32Array::New(env, f.ops);
    int32_t* results = hooked ? owned_results.data() : fits ? scratch : fresh.Data();
    Executor exec(mem_core, &table);
    RunOptions o;
    o.stop_on_error = stop_on_error;
    exec.run(recs.data(), recs.size(), o, f.ops > 0 ? results : nullptr, nullptr);
    for (const LiveSpace& s : live) s.wrap->sync_memory();  // page tables the batch grew
    if (hooked && f.ops > 0) {
      fits = typed_array_data(env, info[5], napi_int32_array, &scratch, &scratch_length) &&
             scratch_length >= f.ops;
      std::memcpy(fits ? scratch : fresh.Data(), owned_results.data(), f.ops * sizeof(int32_t));
    } else if (hooked) {
      fits = true;
    }
    Napi::Value out = fits ? Napi::Value(Napi::Number::New(env, double(f.ops))) : Napi::Value(fresh);
    if (f.next_id == first_new) return out;
    // The next id counts the creations that ran (refused ones too: they use up their id), not
    // those after a stop: a later AddressSpace takes the id the first one that did not run
    // named, as a recording of what ran (and its replay) numbers it. Creations come in sequence.
    uint32_t next_id = first_new;
    {
      const int32_t* ran = hooked ? owned_results.data() : results;
      uint64_t k = 0;
      for (size_t i = 0; i < recs.size(); ++i) {
        const Record& r = recs.data()[i];
        const Op op = Op(opcode_of(r));
        if (op == Op::kData) continue;
        if ((op == Op::kMmNew || op == Op::kFork) && ran[k] != kNotRun) ++next_id;
        ++k;
      }
    }
    if (next_id == first_new) return out;
    auto created = Napi::Array::New(env);
    uint32_t k = 0;
    for (uint32_t id = first_new; id < next_id; ++id) {
      if (!table.owned[id]) continue;
      auto pair = Napi::Array::New(env, 2);
      pair[uint32_t(0)] = Napi::Number::New(env, id);
      pair[uint32_t(1)] = wrap_new_space(env, std::move(table.owned[id]));
      created[k++] = pair;
    }
    auto both = Napi::Array::New(env, 3);
    both[uint32_t(0)] = out;
    both[uint32_t(1)] = created;
    both[uint32_t(2)] = Napi::Number::New(env, next_id);
    return both;
  } catch (const std::bad_alloc&) {
    throw_status(env, Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0));
  }
}

// opSpaceSettings(nativeAddressSpace) -> mm-new's settings word for that address space's rules
// and THP orders (op_settings.h): what a recorder writes for its creation.
Napi::Value op_space_settings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddressSpaceWrap* as = address_space_value(env, info[0]);
  const std::shared_ptr<AddressSpace>& core = as->core();
  if (!core) bad_arg(env, "the address space is disposed");
  return Napi::Number::New(env, double(encode_space_settings(core->rules(), core->thp_orders())));
}

// writeOps(path, header, chunks) -> { records, ops, bytes }: a recording, written through a
// temporary renamed into place (binary or text by the path's extension).
Napi::Value write_ops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    const std::string path = string_value(env, info[0], "path");
    Header h = header_value(env, info[1]);
    if (!info[2].IsArray()) bad_arg(env, "chunks must be an array of Uint32Arrays");
    auto chunks = info[2].As<Napi::Array>();
    if (is_text_path(path)) {
      // The text header names its threads up front: the most any record can have.
      h.threads = kMaxTags;
      uint32_t max_tag = 0;
      for (uint32_t i = 0; i < chunks.Length(); ++i) {
        const RecordWords c = records_value(env, chunks.Get(i), "chunk");
        for (size_t r = 0; r + kRecordWords <= c.words; r += kRecordWords) max_tag = std::max(max_tag, c.data[r] >> 16);
      }
      h.threads = max_tag + 1;
    }
    OpWriter w;
    check(env, w.open(path, h));
    for (uint32_t i = 0; i < chunks.Length(); ++i) {
      const RecordWords c = records_value(env, chunks.Get(i), "chunk");
      if (c.words > 0) check(env, w.append(reinterpret_cast<const Record*>(c.data), c.words / kRecordWords));
    }
    const uint64_t records = w.records(), nops = w.ops();
    check(env, w.finish());
    auto o = Napi::Object::New(env);
    o.Set("records", double(records));
    o.Set("ops", double(nops));
    o.Set("bytes", double(w.bytes()));  // what was written, not a later stat of the path
    return o;
  } catch (const std::bad_alloc&) {
    throw_status(env, Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0));
  }
}

// stateDigest(mem, spaces) -> the digest of the array and the given address spaces.
Napi::Value state_digest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    PageArrayWrap* mem = page_array_value(env, info[0]);
    const std::shared_ptr<PageArray> mem_core = mem->core();  // held through the call
    const auto live = spaces_value(env, info[1], *mem_core);
    recheck_live(env, mem, live);
    std::vector<std::pair<uint32_t, const AddressSpace*>> spaces;
    for (const LiveSpace& s : live) spaces.emplace_back(s.id, s.core.get());
    std::sort(spaces.begin(), spaces.end());
    return digest_object(env, digest_state(*mem_core, spaces));
  } catch (const std::bad_alloc&) {
    throw_status(env, Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0));
  }
}

Scheme scheme_value(Napi::Env env, Napi::Value v) {
  Scheme s;
  if (!v.IsString() || !parse_scheme(v.As<Napi::String>().Utf8Value(), &s)) throw_status(env, unknown_scheme_status());
  return s;
}

// startReplay({ file, variants: [{ scheme, bias, pincountMinOrder }], threads, debug, digest },
//             onProgress?) -> { promise, cancel }
Napi::Value start_replay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) bad_arg(env, "replay request must be an object");
  auto req = info[0].As<Napi::Object>();
  const std::string file = string_value(env, req.Get("file"), "file");
  ReplayRequest r;
  if (!req.Get("variants").IsArray()) bad_arg(env, "variants must be an array");
  auto variants = req.Get("variants").As<Napi::Array>();
  if (variants.Length() == 0 || variants.Length() > 4096) bad_arg(env, "variants must hold 1..4096 entries");
  for (uint32_t i = 0; i < variants.Length(); ++i) {
    if (!variants.Get(i).IsObject()) bad_arg(env, "a variant must be an object");
    auto v = variants.Get(i).As<Napi::Object>();
    ReplayVariant rv;
    rv.scheme = scheme_value(env, v.Get("scheme"));
    // bias 0 and pincountMinOrder -1: the stream's own (its header is read by the job).
    rv.pin_bias = uint32_t(int_value(env, v.Get("bias"), "bias", 0, kMaxBias));
    if (rv.pin_bias != 0 && (rv.pin_bias < kMinBias || (rv.pin_bias & (rv.pin_bias - 1)) != 0))
      throw_status(env, Status::BadOption("bias", rv.pin_bias, "a power of two in 2..1048576"));
    const int64_t rule = int_value(env, v.Get("pincountMinOrder"), "pincountMinOrder", -1, kMaxOrder + 1);
    rv.pincount_min_order = rule < 0 ? kNoValue : uint32_t(rule);
    r.variants.push_back(rv);
  }
  r.threads = uint32_t(int_value(env, req.Get("threads"), "threads", 0, 1024));
  r.debug = int(int_value(env, req.Get("debug"), "debug", -1, 1));
  r.digest = bool_value(env, req.Get("digest"), "digest");
  auto* job = new ReplayJob(env, file, std::move(r), progress_arg(info, 1));
  return job->start(env);
}

// startSynth(path, { ops, seed, threads, pages, scheme, bias, debug, mix }, onProgress?)
Napi::Value start_synth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = string_value(env, info[0], "path");
  if (!info[1].IsObject()) bad_arg(env, "synth options must be an object");
  auto o = info[1].As<Napi::Object>();
  SynthConfig c;
  c.ops = uint64_t(int_value(env, o.Get("ops"), "ops", 1, int64_t{1} << 40));
  c.seed = uint64_t(int_value(env, o.Get("seed"), "seed", 0, int64_t{1} << 53));
  c.threads = uint32_t(int_value(env, o.Get("threads"), "threads", 1, 1024));
  c.pages = uint64_t(int_value(env, o.Get("pages"), "pages", 1, int64_t(kMaxPages)));
  c.scheme = scheme_value(env, o.Get("scheme"));
  c.pin_bias = uint32_t(int_value(env, o.Get("bias"), "bias", kMinBias, kMaxBias));
  c.debug = bool_value(env, o.Get("debug"), "debug");
  const std::string mix = string_value(env, o.Get("mix"), "mix");
  if (mix == "pages") c.mix = SynthMix::kPages;
  else if (mix == "mm") c.mix = SynthMix::kMm;
  else bad_arg(env, "mix must be 'pages' or 'mm'");
  check(env, validate_synth(c));
  check(env, check_op_output(path));  // a bad --out fails now
  auto* job = new SynthJob(env, path, c, progress_arg(info, 2));
  return job->start(env);
}

// startConvert(in, out, onProgress?)
Napi::Value start_convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string in = string_value(env, info[0], "in");
  const std::string out = string_value(env, info[1], "out");
  check(env, check_op_output(out));
  auto* job = new ConvertJob(env, in, out, progress_arg(info, 2));
  return job->start(env);
}

// Every entry point: an allocation that fails is ENOMEM, never a crash.
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return Fn(info);
  } catch (const std::bad_alloc&) {
    throw_status(info.Env(), Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0));
  } catch (const std::length_error&) {
    throw_status(info.Env(), Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0));
  }
}

}  // namespace

void define_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("opFormat", Napi::Function::New(env, guarded<op_format>, "opFormat"));
  exports.Set("submitOps", Napi::Function::New(env, guarded<submit_ops>, "submitOps"));
  exports.Set("opSpaceSettings", Napi::Function::New(env, guarded<op_space_settings>, "opSpaceSettings"));
  exports.Set("writeOps", Napi::Function::New(env, guarded<write_ops>, "writeOps"));
  exports.Set("stateDigest", Napi::Function::New(env, guarded<state_digest>, "stateDigest"));
  exports.Set("startReplay", Napi::Function::New(env, guarded<start_replay>, "startReplay"));
  exports.Set("startSynth", Napi::Function::New(env, guarded<start_synth>, "startSynth"));
  exports.Set("startConvert", Napi::Function::New(env, guarded<start_convert>, "startConvert"));
}

}  // namespace pinlab::addon
