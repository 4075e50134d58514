#include "base/status.h"

#include <cstring>
#include <string>

namespace pinlab {

const char* code_name(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kEINVAL: return "EINVAL";
    case Code::kERANGE: return "ERANGE";
    case Code::kEFREE: return "EFREE";
    case Code::kEOVERFLOW: return "EOVERFLOW";
    case Code::kEBUSY: return "EBUSY";
    case Code::kEPINNED: return "EPINNED";
    case Code::kENOTPINNED: return "ENOTPINNED";
    case Code::kENOMEM: return "ENOMEM";
    case Code::kEFAULT: return "EFAULT";
    case Code::kEACCES: return "EACCES";
    case Code::kENOENT: return "ENOENT";
    case Code::kEAGAIN: return "EAGAIN";
  }
  return "EUNKNOWN";
}

std::string describe(const Status& s) {
  const std::string v = std::to_string(s.value);
  const std::string l = std::to_string(s.limit);
  const std::string subj = s.subject ? s.subject : "?";
  switch (s.reason) {
    case Reason::kNone: return code_name(s.code);
    case Reason::kOption:
      return std::string("invalid option ") + (s.subject ? s.subject : "?") + ": " + v +
             (s.rule ? std::string(" (must be ") + s.rule + ")" : std::string());
    case Reason::kOptionScheme:
      return std::string("invalid option scheme: must be ") + (s.rule ? s.rule : "a registered scheme");
    case Reason::kPfnOutOfRange: return "pfn " + v + " is out of range (pages: " + l + ")";
    case Reason::kRangeOutOfBounds:
      return "page range start " + v + " count " + l + " is out of range";
    case Reason::kBadRefs: return "refs " + v + " is invalid (must be 1..2147483647)";
    case Reason::kPageFree: return "pfn " + v + " is in a free folio (refcount 0)";
    case Reason::kRefcountOverflow:
      return "refcount of the folio of pfn " + v + " would pass 2^31-1";
    case Reason::kPincountOverflow:
      return "pincount of the folio of pfn " + v + " would pass 2^31-1";
    case Reason::kRefcountGuard:
      return "refcount of the folio of pfn " + v + " is negative (overflow guard band)";
    case Reason::kPutBelowZero:
      return "put of " + l + " references on pfn " + v + " would take its refcount below 0";
    case Reason::kPutEatsPin:
      return "put on pfn " + v + " would release references that belong to pins (use unpin)";
    case Reason::kNotPinned: return "pfn " + v + " is not pinned";
    case Reason::kNotWritePinned: return "pfn " + v + " holds no write pin";
    case Reason::kNotReadPinned: return "pfn " + v + " holds no read pin";
    case Reason::kReleaseRaced:
      return "pins of pfn " + v +
             " were released by another call after this one validated them (the rest of "
             "this call was released)";
    case Reason::kRefsEaten:
      return "pin of pfn " + v +
             " left the pincount, but its references were already gone: a plain put ate them";
    case Reason::kPutRaced:
      return "references of pfn " + v +
             " were put by another call after this one validated them (the rest of this "
             "call was put)";
    case Reason::kHeadMisaligned:
      return "head " + v + " is not aligned to order " + l;
    case Reason::kFolioTooLarge:
      return "folio at head " + v + " of order " + l + " does not fit in the page array";
    case Reason::kFolioStraddlesZones:
      return "folio at head " + v + " of order " + l + " would straddle the ZONE_MOVABLE boundary";
    case Reason::kBadOrder: return "order " + v + " is invalid (must be 0..30)";
    case Reason::kNotHead: return "pfn " + v + " is not the head of its folio";
    case Reason::kNotLargeFolio: return "pfn " + v + " is not in a large folio (order 0)";
    case Reason::kFolioNotIdle:
      return "pfn " + v + " is not an idle order-0 page (refcount 1, unpinned)";
    case Reason::kFolioMapped:
      return "pfn " + v + " is mapped by an address space (or is the zero page): munmap it first";
    case Reason::kPutEatsMapping:
      return "put on pfn " + v +
             " would release references that its page-table mappings hold (munmap drops those)";
    case Reason::kZeroPageCounted:
      return "pfn " + v + " is the zero page (or the huge zero folio's head: its 512 pages), which "
             "is never counted (no get, put, pin or unpin)";
    case Reason::kFolioBusy:
      return "folio at head " + v + " is busy (refcount must be 1 and no pins)";
    case Reason::kNoMemory:  // 0: a size the failing call could not tell (a refused mmap, a thread's)
      return s.value > 0 ? "could not allocate " + v + " bytes" : std::string("out of host memory (an allocation was refused)");
    case Reason::kNoFreeBlock: return "no free block of order " + v + " is left";
    case Reason::kNoMapping: return "virtual page " + v + " is not in any mapped region";
    case Reason::kVaOutOfRange:
      return "virtual range start " + v + " count " + l + " is outside the address space";
    case Reason::kReadOnly: return "virtual page " + v + " is in a read-only region";
    case Reason::kFlags: return std::string("invalid flags: ") + (s.subject ? s.subject : "?");
    case Reason::kHugetlb: return std::string("hugetlb: ") + (s.subject ? s.subject : "?");
    case Reason::kRegionOverlap:
      return "range start " + v + " count " + l + " overlaps a mapped region";
    case Reason::kGupIncomplete:
      return "gup from virtual page " + v + " took only " + l + " pages";
    case Reason::kSharedNoPage:
      return "virtual page " + v + " of a shared mapping has no page (truncated)";
    case Reason::kZeroPageShared:
      return "pfn " + v + " is the zero page, which a shared mapping cannot map";
    case Reason::kZeroPageDirty:
      return "pfn " + v + " is the zero page, which is never dirtied (nor counted)";
    case Reason::kDebugOnly:
      return std::string(s.subject ? s.subject : "?") +
             " needs debug mode (create the page array with debug: true)";
    case Reason::kThreadStart:
      return "could not start native thread " + std::to_string(s.value + 1) + " of " + l + " (" +
             (s.rule ? s.rule : "thread limit") + ")";
    case Reason::kCancelled: return std::string(s.subject ? s.subject : "the run") + " was cancelled";
    case Reason::kInternal: return std::string("internal error: ") + (s.subject ? s.subject : "?");
    case Reason::kBadCount: return "count " + v + " is invalid (must be at least 1)";
    case Reason::kMigrateBusy:
      return "virtual page " + v + " is in ZONE_MOVABLE and could not be migrated for a long-term pin";
    case Reason::kFileNotFound: return "no such file: " + subj;
    case Reason::kFileNoAccess: return "permission denied: " + subj;
    case Reason::kKpageNoAccess: return "needs root (CAP_SYS_ADMIN) to read " + subj;
    case Reason::kNotRegularFile:
      return subj + " is " + (s.rule ? s.rule : "not a regular file") + ", not a regular file";
    case Reason::kOutputPath:
      return "will not write " + subj + ": " + (s.rule ? s.rule : "bad output path");
    case Reason::kFileIo:
      return "I/O error on " + subj + ": " + std::strerror(static_cast<int>(s.value)) + " (errno " +
             v + ")";
    case Reason::kKpageLengthOdd:
      return subj + " is " + v + " bytes long, not a multiple of 8 (one u64 per pfn)";
    case Reason::kKpageLengthDiffer:
      return "kpagecount (" + v + " bytes) and kpageflags (" + l + " bytes) differ in length";
    case Reason::kKpageShortRead:
      return subj + " ended at byte " + v + " (expected " + l + " bytes)";
    case Reason::kSnapBadMagic: return subj + " is not a pinlab snapshot (bad magic)";
    case Reason::kSnapBadVersion:
      return subj + ": unsupported snapshot version " + v + " (this build reads version " + l + ")";
    case Reason::kSnapTruncated:
      return subj + " is truncated at byte " + v + " (needs " + l + " bytes)";
    case Reason::kSnapTrailing:
      return subj + " has trailing bytes: " + v + " bytes long, expected " + l;
    case Reason::kSnapChecksum: return subj + ": checksum mismatch (the file is corrupt)";
    case Reason::kSnapBadHeader:
      return subj + ": bad header: " + (s.rule ? s.rule : "?");
    case Reason::kSnapBadRecord:
      return subj + ": bad folio record at byte " + v + ": " + (s.rule ? s.rule : "?");
    case Reason::kSnapTooLarge:
      return subj + " spans " + v + " pages, more than the " + l + " this can use";
    case Reason::kSnapFolioOrder:
      return subj + ": folio at pfn " + v + " is out of order (previous folio ends at pfn " + l + ")";
    case Reason::kSnapFolioBeyond:
      return subj + ": folio at pfn " + v + " extends beyond pages " + l;
    case Reason::kSnapFolioOrderBad:
      return subj + ": folio at pfn " + l + " has bad order " + v + " (must be 0..30)";
    case Reason::kSnapFolioMisaligned:
      return subj + ": folio at pfn " + v + " is not aligned to its order " + l;
    case Reason::kSnapFolioRefs:
      return subj + ": folio at pfn " + l + " has bad refs " + v + " (must be 1..2147483647)";
    case Reason::kSnapFolioFlags:
      return subj + ": folio at pfn " + l + " has unknown flag bits " + v;
    case Reason::kOpsBadMagic: return subj + " is not a pinlab op stream (bad magic)";
    case Reason::kOpsBadVersion:
      return subj + ": unsupported op stream version " + v + " (this build reads version " + l + ")";
    case Reason::kOpsBadHeader:
      return subj + ": bad header: " + (s.rule ? s.rule : "?") + " (found " + v + ")";
    case Reason::kOpsTruncated:
      return subj + " is truncated: " + v + " bytes, its header needs " + l;
    case Reason::kOpsTrailing:
      return subj + " has trailing bytes: " + v + " bytes long, its header says " + l;
    case Reason::kOpsChecksum:
      return subj + ": " + (s.rule ? s.rule : "?") + " checksum mismatch (the stream is corrupt)";
    case Reason::kOpsRecord:
      return subj + ": record " + v + ": " + (s.rule ? s.rule : "?") + " (" + l + ")";
    case Reason::kOpsText: return subj + ": line " + v + ": " + (s.rule ? s.rule : "?");
    case Reason::kOpsNoSpace:
      return "address space " + v + " does not exist (its mm-new or fork failed)";
    case Reason::kOpsStopped: return subj + " stopped at the caller's request";
    case Reason::kThreadStartOps:
      return "could not start native thread " + v + " of " + l + " (thread or memory limits)";
  }
  return code_name(s.code);
}

}  // namespace pinlab
