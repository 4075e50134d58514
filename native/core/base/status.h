// Errno-like status returned by every fallible core operation.
//
// The core never throws on its paths: it returns a Status naming what went wrong
// and the offending value, and the addon turns that into a PinlabError.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

namespace pinlab {

enum class Code : uint8_t {
  kOk = 0,
  kEINVAL,      // bad argument or option
  kERANGE,      // PFN outside the page array
  kEFREE,       // folio is free (refcount 0)
  kEOVERFLOW,   // a count would pass INT32_MAX (or is in the negative guard band)
  kEBUSY,       // folio is referenced or pinned and cannot change shape
  kEPINNED,     // debug: a plain put would eat a pin's references or free a pinned folio
  kENOTPINNED,  // unpin of a page that holds no such pin
  kENOMEM,      // allocation failed (arrays, or no free block of the order asked for)
  kEFAULT,      // a virtual address outside any region, a write to a read-only one, or a
                // shared mapping's page that is gone (SIGBUS)
  kEACCES,      // a file could not be opened or read for lack of permission
  kENOENT,      // a file does not exist
  kEAGAIN,      // a native thread could not be started (thread or memory limits)
};

// Which message template explains the failure; `value` and `limit` fill it in.
enum class Reason : uint8_t {
  kNone = 0,
  kOption,            // subject names the option, value is the bad value
  kOptionScheme,      // unknown scheme (no number to show)
  kPfnOutOfRange,     // value = pfn, limit = pages
  kRangeOutOfBounds,  // value = start, limit = count
  kBadRefs,           // value = refs
  kPageFree,          // value = pfn
  kRefcountOverflow,  // value = pfn
  kPincountOverflow,  // value = pfn
  kRefcountGuard,     // value = pfn (refcount negative: overflow guard band)
  kPutBelowZero,      // value = pfn, limit = refs
  kPutEatsPin,        // value = pfn (debug)
  kNotPinned,         // value = pfn
  kNotWritePinned,    // value = pfn (write-bias debug: write unpin without a write pin)
  kNotReadPinned,     // value = pfn (write-bias debug: read unpin without a read pin)
  kReleaseRaced,      // value = pfn (another call released these pins after validation)
  kRefsEaten,         // value = pfn (the pin's references were already put: a plain put ate them)
  kPutRaced,          // value = pfn (another call put these references after validation)
  kHeadMisaligned,    // value = head, limit = order
  kFolioTooLarge,     // value = head, limit = order
  kFolioStraddlesZones,  // value = head, limit = order
  kBadOrder,          // value = order
  kNotHead,           // value = pfn
  kNotLargeFolio,     // value = pfn
  kFolioNotIdle,      // value = pfn (makeFolio: a page is not order 0 / refcount 1 / unpinned)
  kFolioBusy,         // value = head (split: refcount != 1 or pinned)
  kFolioMapped,       // value = pfn (makeFolio/splitFolio: a page table maps it, or the zero page)
  kPutEatsMapping,    // value = pfn (a put would take references its mappings hold)
  kZeroPageCounted,   // value = pfn (get or put of the zero page, which is never counted)
  kNoMemory,          // value = bytes
  kNoFreeBlock,       // value = order
  kNoMapping,         // value = virtual page (no region there)
  kVaOutOfRange,      // value = start, limit = count
  kReadOnly,          // value = virtual page (write to a read-only region)
  kFlags,             // subject names the rule broken
  kMigrateBusy,       // value = virtual page (longterm: a page could not be migrated)
  kRegionOverlap,     // value = start, limit = count
  kBadCount,          // value = count
  kGupIncomplete,     // value = start, limit = pages done (benchmark: a partial gup)
  kSharedNoPage,      // value = virtual page (a shared mapping's hole: SIGBUS)
  kZeroPageShared,    // value = pfn (mapShared of the zero page)
  kZeroPageDirty,     // value = pfn (setDirty of the zero page)
  kDebugOnly,         // subject names the call that needs debug mode
  kThreadStart,       // value = threads started, limit = threads wanted, rule = the system's reason
  kCancelled,         // subject names the run stopped early by its caller (RunControl)
  kInternal,          // subject says what went wrong that should not have
  // Files (snapshot.h). `subject` is the path, interned: it stays valid for the process.
  kFileNotFound,      // subject = path
  kFileNoAccess,      // subject = path
  kKpageNoAccess,     // subject = path of /proc/kpagecount or /proc/kpageflags
  kNotRegularFile,    // subject = path, rule = what it is (a FIFO, a device, a directory, ...)
  kOutputPath,        // subject = path, rule = why pinlab will not write there
  kFileIo,            // subject = path, value = errno
  kKpageLengthOdd,    // subject = path, value = its length in bytes
  kKpageLengthDiffer, // value = kpagecount bytes, limit = kpageflags bytes
  kKpageShortRead,    // subject = path, value = byte where it ended, limit = bytes expected
  kSnapBadMagic,      // subject = path
  kSnapBadVersion,    // subject = path, value = version found, limit = version supported
  kSnapTruncated,     // subject = path, value = its length, limit = the length it needs
  kSnapTrailing,      // subject = path, value = its length, limit = the length it should have
  kSnapChecksum,      // subject = path
  kSnapBadHeader,     // subject = path, rule = the header field that is wrong
  kSnapBadRecord,     // subject = path, value = byte offset of the record, rule = what is wrong
  kSnapTooLarge,      // subject = path, value = its pages, limit = the most the reader takes
  kSnapFolioOrder,    // subject = path, value = pfn, limit = previous folio's end
  kSnapFolioBeyond,   // subject = path, value = pfn, limit = pages
  kSnapFolioOrderBad, // subject = path, value = order, limit = pfn
  kSnapFolioMisaligned,  // subject = path, value = pfn, limit = order
  kSnapFolioRefs,     // subject = path, value = refs, limit = pfn
  kSnapFolioFlags,    // subject = path, value = flags, limit = pfn
  // Op streams (engines/op_format.h). `subject` names the stream (a path, interned, or "ops").
  kOpsBadMagic,       // subject = source
  kOpsBadVersion,     // subject = source, value = version found, limit = version supported
  kOpsBadHeader,      // subject = source, value = the field's value, rule = the field and its rule
  kOpsTruncated,      // subject = source, value = its length, limit = the length its header needs
  kOpsTrailing,       // subject = source, value = its length, limit = the length it should have
  kOpsChecksum,       // subject = source, rule = "header" or "body"
  kOpsRecord,         // subject = source, value = record index, limit = the bad value, rule = what
  kOpsText,           // subject = source, value = line number, rule = what is wrong
  kOpsNoSpace,        // value = address-space id (its creation failed, so later ops cannot use it)
  kOpsStopped,        // subject = what was stopped (a replay, a conversion) at the caller's request
  kThreadStartOps,    // value = threads started, limit = threads wanted
  kHugetlb,           // subject says what the hugetlb pool or mapping refused (hugetlb_pool.h)
};

struct Status {
  Code code = Code::kOk;
  Reason reason = Reason::kNone;
  const char* subject = nullptr;  // option name for kOption
  int64_t value = 0;
  int64_t limit = 0;
  const char* rule = nullptr;  // for kOption: what the option must be

  bool ok() const { return code == Code::kOk; }
  static Status Ok() { return {}; }
  static Status Fail(Code c, Reason r, int64_t value = 0, int64_t limit = 0) {
    return Status{c, r, nullptr, value, limit};
  }
  static Status BadOption(const char* name, int64_t value, const char* rule) {
    return Status{Code::kEINVAL, Reason::kOption, name, value, 0, rule};
  }
};

// Cheap to return from hot loops: no heap, no destructor.
static_assert(std::is_trivially_copyable_v<Status>);

// "EINVAL", "ERANGE", ...
const char* code_name(Code code);

// A message that names the offending value, e.g. "pfn 70000 is out of range (pages: 65536)".
std::string describe(const Status& status);

}  // namespace pinlab
