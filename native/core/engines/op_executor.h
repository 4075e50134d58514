// Runs op-stream records (op_format.h) against a PageArray and its AddressSpaces through
// their public core methods: the same call, with the same arguments, that the addon makes for
// the JS call the record stands for, so a batch and the same calls one by one end in the same
// state with the same results. Records must have passed a FramingChecker first (opcodes,
// flags, data framing, ids); values (PFN ranges, orders, refs, virtual ranges) are checked by
// the core methods themselves, and a refused op changes nothing, as the call would not.
//
// One Executor per thread: it keeps the scratch lists and the PFN translation of recorded
// outputs (op_format.h: a PFN an op returned when recorded names the page it returned now).
// Several executors may share a page array and a SpaceTable as long as each address space is
// used by one executor at a time (a stream's tags own the spaces they create).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "base/mapped_array.h"
#include "base/status.h"
#include "engines/op_format.h"
#include "mm/address_space.h"
#include "pages/page_array.h"

namespace pinlab::ops {

// Address spaces by id (index 0 unused). Sized before a run (resize): creations fill their
// slots. `by_id` is what ops use: spaces the caller keeps alive (a submit's live address
// spaces) or the ones this table created, which `owned` holds until someone takes them.
struct SpaceTable {
  std::vector<AddressSpace*> by_id;
  std::vector<std::unique_ptr<AddressSpace>> owned;
  void resize(size_t ids) {
    by_id.resize(ids, nullptr);
    owned.resize(ids);
  }
  void adopt(uint32_t id, std::unique_ptr<AddressSpace> as) {
    by_id[id] = as.get();
    owned[id] = std::move(as);
  }
};

inline constexpr size_t kResultCodes = size_t(Code::kEAGAIN) + 1;

// What ran: ops, refusals by code (index = code), and the results that differ from the ones
// recorded in the records.
struct Tally {
  uint64_t ops = 0;
  uint64_t refused = 0;
  uint64_t diverged = 0;
  std::array<uint64_t, kResultCodes> by_code{};
  void add(const Tally& o);
};

struct RunOptions {
  bool stop_on_error = false;
  // Only ops whose tag % tag_modulus == tag_remainder run (tag_modulus 0: every op).
  uint32_t tag_modulus = 0;
  uint32_t tag_remainder = 0;
  // Checked every kStopCheckRecords records; the run returns early once it reads true.
  const std::atomic<bool>* stop = nullptr;
  // Ops done, added every kStopCheckRecords records (for progress), if set.
  std::atomic<uint64_t>* progress = nullptr;
  // Called every kStopCheckRecords records, if set (on the running thread: a progress report).
  const std::function<void()>* on_check = nullptr;
  // If set (and no results are asked for): only the ops whose first records these are run, in
  // this order (ascending), instead of a walk over every record; the tag filter is not applied
  // (the index is the thread's already: thread_op_index in replay.cpp).
  const uint32_t* index = nullptr;
  uint64_t index_count = 0;
};
inline constexpr uint64_t kStopCheckRecords = 1 << 16;

// The thread (of `threads`) that runs tag's ops: tag % threads. A tag below the count is its
// own thread, without a division (one thread per tag, the common replay).
inline uint32_t thread_of_tag(uint32_t tag, uint32_t threads) {
  return tag < threads ? tag : tag % threads;
}

// One per thread, and written on every op (tally_): aligned to a cache line and a whole number
// of lines long, so two threads' executors, which a replay allocates one after another, never
// share a line (padded per-thread counters).
class alignas(64) Executor {
 public:
  Executor(std::shared_ptr<PageArray> mem, SpaceTable* spaces);

  // Runs the op at r[0] (its data records follow it) and returns its result: a count, or
  // -code. Allocation failure is -ENOMEM.
  int32_t run_op(const Record* r) noexcept;

  // Runs the ops of records [0, n) (a framed run) in order. results[k] (if not null) is the
  // k-th op's result, kNotRun for ops after a stop. Returns the records consumed (n unless
  // stopped early by RunOptions::stop or stop_on_error).
  uint64_t run(const Record* r, uint64_t n, const RunOptions& o, int32_t* results, Tally* tally);

  // The PFNs the last gup op returned (valid until the next op).
  const uint32_t* last_gup_pfns() const { return out_.get(); }
  uint64_t last_gup_count() const { return last_gup_done_; }
  // Numbers the last gup's PFNs as its tag's next outputs, as if the op had carried them as
  // recorded outputs (for a generator that writes what it runs).
  void number_last_gup_outputs(uint32_t tag);

 private:
  int32_t execute(const Record* r);
  // run()'s loop for one shape of run (tags filtered or not, results kept or not, ops named by
  // an index or not), for an array of scheme S; returns the records consumed, the ops passed in
  // *op_count.
  template <Scheme S, bool kFiltered, bool kResults, bool kIndexed>
  uint64_t run_loop(const Record* r, uint64_t n, const RunOptions& o, int32_t* results, Tally& t,
                    uint64_t* op_count, bool* stopped);
  // run_op without adding the statistics of single-page ops to the array's (run() adds them
  // at its end, and before each address-space op).
  int32_t run_op_batched(const Record* r) noexcept;
  // A pin or unpin of one page by its record alone: no list, count 1.
  static bool is_single_page(const Record& r) {
    return (flags_of(r) & flag::kList) == 0 && r.w[3] == 1;
  }
  static bool is_single_page_op(const Record& r) {
    const uint8_t code = opcode_of(r);
    return (code == uint8_t(Op::kPin) || code == uint8_t(Op::kUnpin)) && is_single_page(r);
  }
  // Runs such a record: the core's single-page path (for an array of scheme S, compiled into
  // the caller), its statistics into tally_. A free allocates nothing (pages/buddy_allocator.h);
  // the caller still catches std::bad_alloc around it, as run_op_batched does.
  template <Scheme S>
  [[gnu::always_inline]] int32_t run_single_page(const Record& r);
  // get, put and try-get: one page each, never a list.
  static bool is_ref_op(const Record& r) {
    const uint8_t code = opcode_of(r);
    return code == uint8_t(Op::kGet) || code == uint8_t(Op::kPut) || code == uint8_t(Op::kTryGet);
  }
  [[gnu::always_inline]] int32_t run_ref_op(const Record& r);
  void flush_stats() {
    if (!tally_.empty()) mem_->add_stats(&tally_);
  }
  // The address-space ops (out of line: the page-array ops' path stays short).
  [[gnu::noinline]] int32_t execute_mm(const Record* r);
  int32_t pin_or_unpin(const Record& r, const Record* data, bool pin);
  // The pages a pin or unpin names: its list, or its range (as the pages recorded outputs moved
  // it to, if any).
  [[gnu::noinline]] PageSet pages_named(const Record& r, const Record* data);
  int32_t gup(const Record& r, const Record* data, AddressSpace& as);
  // The entries of an op from its data records, translated where `translate`.
  const uint32_t* entries(const Record& r, const Record* data, bool translate);
  // A recorded PFN as the page it names now (itself unless a recorded output moved it).
  uint32_t map_pfn(uint32_t pfn) const {
    if (xlat_.empty() || pfn >= pages_) return pfn;
    const uint32_t v = xlat_.data()[pfn];
    return v == 0 ? pfn : v - 1;
  }
  // Notes that recorded PFN `was` is page `now` in this run.
  void note_output(uint32_t was, uint32_t now);
  // Maps the translation table now (all pages themselves), so the notes of an op that
  // allocates cannot fail after its allocation (std::bad_alloc before it instead).
  void reserve_translation();
  AddressSpace* space(uint32_t id) const;
  // mm-new: an address space of `pages` with the record's settings (op_settings.h) and swap
  // device (AddressSpace::kDefaultSwap: as many slots as pages).
  Status create_space(uint32_t id, int64_t pages, uint32_t settings, int64_t swap_pages);
  // madvise (MADV_COLLAPSE included): its advice entry to the core call.
  int32_t madvise(const Record& r, const Record* data, AddressSpace& as);
  // hugetlb-alloc: a hugetlb file's pages; its recorded heads name the ones returned now.
  int32_t hugetlb_alloc(const Record& r, const Record* data);

  std::shared_ptr<PageArray> mem_;
  const bool debug_;  // mem_'s debug mode
  StatTally tally_;  // the single-page ops' statistics not yet added to the array's
  SpaceTable* spaces_;
  uint64_t pages_;
  std::vector<uint32_t> list_;  // an op's input entries
  // A gup's output PFNs: room for the count asked, never initialised (only what the gup writes
  // is touched, so a huge count over a sparse mapping costs no memory).
  std::unique_ptr<uint32_t[]> out_;
  uint64_t out_capacity_ = 0;
  uint64_t last_gup_done_ = 0;
  MappedArray<uint32_t> xlat_;  // recorded PFN -> page now + 1 (0: itself); mapped on first use
  // Per tag: the outputs its gups returned in this run, the last kOutputWindow of them, by
  // output number (for lists of output references).
  struct TagOutputs {
    uint64_t produced = 0;
    MappedArray<uint32_t> ring;
  };
  std::vector<TagOutputs> outputs_;
  TagOutputs& outputs_of(uint32_t tag);
};

static_assert(alignof(Executor) == 64 && sizeof(Executor) % 64 == 0, "an executor owns its cache lines");

// Ops in records [0, n) of a framed run (the data records not counted).
uint64_t count_ops(const Record* r, uint64_t n);

}  // namespace pinlab::ops
