#include "engines/op_state.h"

#include <algorithm>

#include "engines/op_format.h"

namespace pinlab::ops {

namespace {

// Words folded one at a time (the op stream's checksum: op_format.h).
class Fold {
 public:
  void add(uint64_t w) { c_.add_words(&w, 1); }
  uint64_t value() const { return c_.value(); }

 private:
  Checksum c_;
};

}  // namespace

const char* stat_key(Stat s) {
  switch (s) {
    case Stat::kPinAcquired: return "pinAcquired";
    case Stat::kPinReleased: return "pinReleased";
    case Stat::kGrabs: return "grabs";
    case Stat::kFoliosFreed: return "foliosFreed";
    case Stat::kOverflowRefusals: return "overflowRefusals";
    case Stat::kRollbacks: return "rollbacks";
    case Stat::kCount: break;
  }
  return "?";
}

const char* mm_stat_key(MmStat s) {
  switch (s) {
    case MmStat::kGupCalls: return "gupCalls";
    case MmStat::kFastPages: return "fastPathPages";
    case MmStat::kSlowFallbacks: return "slowPathFallbacks";
    case MmStat::kSlowPages: return "slowPathPages";
    case MmStat::kRecheckFailures: return "recheckFailures";
    case MmStat::kSeqRetries: return "seqRetries";
    case MmStat::kFaults: return "faults";
    case MmStat::kCowCopies: return "cowCopies";
    case MmStat::kCowReuses: return "cowReuses";
    case MmStat::kEarlyCowCopies: return "earlyCowCopies";
    case MmStat::kEarlyCowFalsePositives: return "earlyCowFalsePositives";
    case MmStat::kMigrated: return "migratedPages";
    case MmStat::kMigrationRefusals: return "migrationRefusals";
    case MmStat::kMigrationFalsePositives: return "migrationFalsePositives";
    case MmStat::kMigrationBusy: return "migrationBusy";
    case MmStat::kLongtermMigrations: return "longtermMigrations";
    case MmStat::kUnclassified: return "unclassified";
    case MmStat::kPagedOut: return "pagedOutPages";
    case MmStat::kPageoutRefusals: return "pageoutRefusals";
    case MmStat::kPageoutFalsePositives: return "pageoutFalsePositives";
    case MmStat::kPageoutBusy: return "pageoutBusy";
    case MmStat::kSwapIns: return "swapIns";
    case MmStat::kSwapCacheHits: return "swapCacheHits";
    case MmStat::kRemaps: return "remaps";
    case MmStat::kRemapMovedPages: return "remapMovedPages";
    case MmStat::kCollapses: return "collapses";
    case MmStat::kCollapseMaybePinned: return "collapseMaybePinned";
    case MmStat::kCollapseFalsePositives: return "collapseFalsePositives";
    case MmStat::kCollapseBusy: return "collapseBusy";
    case MmStat::kEarlyCowUnclassified: return "earlyCowUnclassified";
    case MmStat::kMigrationUnclassified: return "migrationUnclassified";
    case MmStat::kPageoutUnclassified: return "pageoutUnclassified";
    case MmStat::kCollapseUnclassified: return "collapseUnclassified";
    case MmStat::kCount: break;
  }
  return "?";
}

StateDigest digest_state(const PageArray& mem,
                         const std::vector<std::pair<uint32_t, const AddressSpace*>>& spaces) {
  StateDigest d;
  const uint64_t pages = mem.pages();
  Fold pf;
  for (uint64_t p = 0; p < pages; ++p) {
    const auto pins = mem.pincount(p);
    pf.add(mem.folio_head(p) | uint64_t(mem.folio_order(p)) << 32 | uint64_t(mem.is_dirty(p)) << 40 |
           uint64_t(mem.maybe_dma_pinned(p)) << 41 | uint64_t(pins.has_value()) << 42);
    pf.add(uint64_t(uint32_t(mem.refcount(p))) | uint64_t(pins.value_or(0)) << 32);
  }
  if (mem.debug()) {
    std::vector<int32_t> chunk;
    constexpr uint64_t kChunk = uint64_t{1} << 20;
    for (uint64_t p = 0; p < pages; p += kChunk) {
      const uint64_t n = std::min(kChunk, pages - p);
      (void)mem.debug_page_pins(int64_t(p), int64_t(n), &chunk);
      for (int32_t v : chunk) pf.add(uint32_t(v));
    }
  }
  d.pages = pf.value();
  Fold ff;
  mem.for_each_free_block([&](bool movable, uint64_t head, uint32_t order) {
    ff.add(head | uint64_t(order) << 40 | uint64_t(movable) << 48);
  });
  d.free_pages = mem.free_pages();
  d.zero_pfn = mem.zero_pfn();
  // The hugetlb pool's sizes, with the free lists' blocks (its free pages are in no zone).
  for (const int64_t order : {int64_t{9}, int64_t{18}}) {
    HugetlbCounts c;
    if (!mem.hugetlb_counts(order, &c).ok()) continue;
    ff.add(c.total);
    ff.add(c.free | c.reserved << 32);
  }
  d.free_blocks = ff.value();
  for (size_t s = 0; s < d.stats.size(); ++s) d.stats[s] = mem.stat(Stat(s));
  Fold sf;
  for (const auto& [id, as] : spaces) {
    sf.add(id);
    sf.add(as->pages());
    sf.add(as->regions());
    sf.add(as->mapped_pages());
    sf.add(as->has_pinned());
    for (uint64_t v = 0; v < as->pages(); ++v) {
      const Translation t = as->translate(v);
      if (!t.present) {
        // A swap entry (MADV_PAGEOUT): its slot and SWP_EXCLUSIVE.
        if (const auto e = as->swap_entry(v)) {
          sf.add(v | uint64_t{1} << 63);
          sf.add(e->slot | uint64_t(e->exclusive) << 32);
        }
        continue;
      }
      sf.add(v);
      sf.add(t.pfn | uint64_t(t.writable) << 40 | uint64_t(t.special) << 41 | uint64_t(t.huge) << 42 |
             uint64_t(t.shared) << 43 | uint64_t(t.page_cache) << 44);
    }
    // The file pages it holds unmapped: the next fault there maps them (or is SIGBUS).
    for (const auto& [v, pfn] : as->file_holds()) {
      sf.add(v | uint64_t{1} << 62);
      sf.add(pfn);
    }
    const SwapUsage u = as->swap_usage();
    sf.add(u.capacity);
    sf.add(u.used | u.cached << 32);
    for (size_t s = 0; s < d.mm_stats.size(); ++s) {
      const uint64_t v = as->stat(MmStat(s));
      sf.add(v);
      d.mm_stats[s] += v;
    }
  }
  d.spaces = sf.value();
  d.space_count = spaces.size();
  return d;
}

}  // namespace pinlab::ops
