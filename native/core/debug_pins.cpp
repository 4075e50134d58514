// Debug accounting: an exact pin count per subpage, kept beside whatever the scheme does
// (the page_ext idea of seed 001), so that silent corruption becomes an error.
//
// Every change here happens together with the scheme's count change, under the folio's
// debug lock (striped_lock.h): a checker holding that lock sees both in step, so the checks
// are exact under concurrency too. The atomics keep lock-free readers (pincount queries) sound.
#include <atomic>

#include "page_array.h"

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

}  // namespace pinlab
