#include "mm/page_table.h"

namespace pinlab {

PageTable::PageTable(uint64_t pages)
    : pmds_((pages + kPtesPerTable - 1) / kPtesPerTable),
      pmd_(new std::atomic<uint64_t>[pmds_]),
      tables_(new std::atomic<std::atomic<uint64_t>*>[pmds_]),
      owned_(new std::unique_ptr<std::atomic<uint64_t>[]>[pmds_]) {
  for (uint64_t i = 0; i < pmds_; ++i) {
    pmd_[i].store(0, std::memory_order_relaxed);
    tables_[i].store(nullptr, std::memory_order_relaxed);
  }
}

std::atomic<uint64_t>* PageTable::ensure_table(uint64_t pmd_index) {
  // relaxed: only the mmap lock holder stores the pointer, and we hold it.
  if (auto* t = tables_[pmd_index].load(std::memory_order_relaxed)) return t;
  owned_[pmd_index].reset(new std::atomic<uint64_t>[kPtesPerTable]);
  auto* t = owned_[pmd_index].get();
  for (uint64_t i = 0; i < kPtesPerTable; ++i) t[i].store(0, std::memory_order_relaxed);
  // relaxed: a statistic (memory_bytes), ordered by nothing.
  tables_allocated_.fetch_add(1, std::memory_order_relaxed);
  // release: a walker that loads the pointer (acquire) sees the zeroed entries.
  tables_[pmd_index].store(t, std::memory_order_release);
  return t;
}

}  // namespace pinlab
