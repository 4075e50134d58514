// Debug accounting: an exact pin count per subpage, kept beside whatever the scheme does
// (the page_ext idea of seed 001), so that silent corruption becomes an error.
//
// Every change here happens together with the scheme's count change, under the folio's
// debug lock (striped_lock.h): a checker holding that lock sees both in step, so the checks
// are exact under concurrency too. The atomics keep lock-free readers (pincount queries) sound.
#include <atomic>

#include "pages/page_array.h"

namespace pinlab {

namespace {
std::atomic_ref<int32_t> slot(const MappedArray<int32_t>& a, uint64_t pfn) {
  return std::atomic_ref<int32_t>(a.data()[pfn]);
}
}  // namespace

// relaxed throughout: these are counters; the scheme's refcount operations order the pin.
void PageArray::debug_note_pins(uint64_t pfn, uint64_t n, bool write) {
  for (uint64_t p = pfn; p < pfn + n; ++p) {
    slot(dbg_pins_, p).fetch_add(1, std::memory_order_relaxed);
    if (write && debug_tracks_writes()) slot(dbg_write_, p).fetch_add(1, std::memory_order_relaxed);
  }
}

void PageArray::debug_drop_pins(uint64_t pfn, uint64_t n, bool write) {
  for (uint64_t p = pfn; p < pfn + n; ++p) {
    slot(dbg_pins_, p).fetch_sub(1, std::memory_order_relaxed);
    if (write && debug_tracks_writes()) slot(dbg_write_, p).fetch_sub(1, std::memory_order_relaxed);
  }
}

Status PageArray::debug_take_pins(uint64_t pfn, uint64_t n, bool write) {
  for (uint64_t p = pfn; p < pfn + n; ++p) {
    Reason missing = Reason::kNone;
    if (debug_tracks_writes()) {
      // write-bias: a write unpin needs a write pin, a read unpin a read pin.
      const int32_t writes = slot(dbg_write_, p).load(std::memory_order_relaxed);
      const int32_t total = slot(dbg_pins_, p).load(std::memory_order_relaxed);
      if (write && writes <= 0) missing = Reason::kNotWritePinned;
      if (!write && total - writes <= 0) missing = Reason::kNotReadPinned;
    }
    if (missing == Reason::kNone) {
      if (slot(dbg_pins_, p).fetch_sub(1, std::memory_order_relaxed) <= 0) {
        slot(dbg_pins_, p).fetch_add(1, std::memory_order_relaxed);
        missing = Reason::kNotPinned;
      } else if (write && debug_tracks_writes()) {
        slot(dbg_write_, p).fetch_sub(1, std::memory_order_relaxed);
      }
    }
    if (missing != Reason::kNone) {
      debug_note_pins(pfn, p - pfn, write);  // give back what this call took
      return Status::Fail(Code::kENOTPINNED, missing, int64_t(p));
    }
  }
  return Status::Ok();
}

int32_t PageArray::debug_pins_at(uint64_t pfn) const {
  return slot(dbg_pins_, pfn).load(std::memory_order_relaxed);
}

int32_t PageArray::debug_write_pins_at(uint64_t pfn) const {
  return debug_tracks_writes() ? slot(dbg_write_, pfn).load(std::memory_order_relaxed) : 0;
}

Reason PageArray::debug_unpin_refusal(int64_t taken, int64_t pins, int64_t writes,
                                      bool write) const {
  if (debug_tracks_writes()) {
    // write-bias: a write unpin needs a write pin, a read unpin a read pin.
    if (write && taken > writes) return Reason::kNotWritePinned;
    if (!write && taken > pins - writes) return Reason::kNotReadPinned;
  }
  return taken > pins ? Reason::kNotPinned : Reason::kNone;
}

int64_t PageArray::debug_folio_pins(uint64_t head, uint32_t order) const {
  int64_t sum = 0;
  for (uint64_t p = head; p < head + (uint64_t{1} << order); ++p)
    sum += slot(dbg_pins_, p).load(std::memory_order_relaxed);
  return sum;
}

int64_t PageArray::debug_folio_write_pins(uint64_t head, uint32_t order) const {
  if (!debug_tracks_writes()) return 0;
  int64_t sum = 0;
  for (uint64_t p = head; p < head + (uint64_t{1} << order); ++p)
    sum += slot(dbg_write_, p).load(std::memory_order_relaxed);
  return sum;
}

namespace {
Status debug_only(const char* call) {
  return Status{Code::kEINVAL, Reason::kDebugOnly, call};
}
}  // namespace

// relaxed: a snapshot of counters, no more (see page_array.h).
Status PageArray::debug_pinned_runs(std::vector<uint32_t>* out) const {
  if (!cfg_.debug) return debug_only("debugPinnedRuns");
  out->clear();
  const uint64_t n = pages();
  for (uint64_t p = 0; p < n;) {
    const int32_t pins = slot(dbg_pins_, p).load(std::memory_order_relaxed);
    uint64_t q = p + 1;
    if (pins == 0) {
      p = q;
      continue;
    }
    while (q < n && slot(dbg_pins_, q).load(std::memory_order_relaxed) == pins) ++q;
    out->insert(out->end(), {uint32_t(p), uint32_t(q - p), uint32_t(pins)});
    p = q;
  }
  return Status::Ok();
}

Status PageArray::debug_page_pins(int64_t start, int64_t count, std::vector<int32_t>* out) const {
  if (!cfg_.debug) return debug_only("debugPagePins");
  if (start < 0 || count < 0)
    return Status::Fail(Code::kERANGE, Reason::kRangeOutOfBounds, start, count);
  const PageSet range = PageSet::range(uint64_t(start), uint64_t(count));
  if (Status st = check_page_set(range); !st.ok()) return st;
  out->resize(range.count);
  for (uint64_t i = 0; i < range.count; ++i)
    (*out)[i] = slot(dbg_pins_, range.start + i).load(std::memory_order_relaxed);
  return Status::Ok();
}

}  // namespace pinlab
