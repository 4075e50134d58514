// Op streams: the engine-level calls of a PageArray and its AddressSpaces as data, so a
// simulation recorded once can be replayed natively under every scheme, and JS can submit
// many calls in one native call. This header is the format (plain data: records, the header,
// the checksum, the framing rules, the text form); op_executor.h runs records, op_files.h
// reads and writes files, replay.h replays a stream under several schemes.
//
// ---- The .pkops file format, version 4 (reads versions 1, 2 and 3) ----
//
// All integers little-endian. Offsets in bytes.
//
//   0   magic            8 bytes "PKOPS1\0\0"
//   8   version          u32 = 3 or 4: a stream is written in the oldest version that holds
//                        its ops, 4 only for one with op 0a (3: the same layout without op 0a;
//                        2: as 3 without ops 2f..37, mm-new's swap argument and mmap-file's
//                        shmem flag; 1: as 2, mm-new's b always 0)
//   12  header_bytes     u32 = 96 (where the body starts)
//   16  record_bytes     u32 = 24
//   20  flags            u32: bit 0 debug, bit 1 populated; other bits 0
//   24  pages            u64: the page array's base pages, 1..2^31
//   32  movable_pages    u64: its ZONE_MOVABLE pages, 0..pages
//   40  records          u64: records in the body (op records and their data records)
//   48  ops              u64: op records, at most `records`
//   56  pin_bias         u32: the recording's GUP_PIN_COUNTING_BIAS (a power of two, 2..2^20)
//   60  threads          u32: tags in use, 1..65536 (every record's tag is below it)
//   64  folio_order      u8: initial folio order, 0..30
//   65  pincount_min_order u8: hybrid's smallest order with an exact pincount, 1..31
//   66  reserved         u16 = 0
//   68  scheme           12 bytes: the recording's scheme, a registered name, NUL-padded
//   80  body_checksum    u64: the checksum of the body (below)
//   88  header_checksum  u64: the checksum of bytes 0..87
//   96  body             records x 24 bytes
//
// The file is exactly 96 + 24 * records bytes. The checksum: h = 0xcbf29ce484222325, then
// for each little-endian u64 word w in order, h = (h ^ w) * 0x100000001b3 (mod 2^64), then
// h ^= h >> 32 (FNV-1a over words, folded so high bits reach the low ones). The body is 3
// words a record.
//
// A record is six little-endian u32 words:
//   w0  bits 0-7 opcode, bits 8-15 flags, bits 16-31 tag (the thread that replays it)
//   w1  mm: the address space the op runs on (an id >= 1), 0 for page-array ops
//   w2  a   } the op's arguments (table below); an argument the op does not take is 0
//   w3  b   }
//   w4  n: how many data entries follow the op, in ceil(n / 5) data records
//   w5  the result the op had when recorded (i32): a count, or -code (code_name below);
//       informational when executing (a replay counts the ops whose result differs)
// A data record: w0 = 0xff | k << 8 | tag << 16 with k = the entries it holds (1..5, 5 in
// all but the last), the same tag as its op; w1..w5 the entries, unused ones 0.
//
// Arguments that do not fit a u32 (negative, or 2^32 and above) are written as 2^32 - 1,
// which every op refuses as out of range, as it refused the original.
//
//   op  name           mm   a        b        entries          flags        result
//   01  pin            -    start    count    PFNs if list     W P L        pages pinned
//   02  unpin          -    start    count    PFNs if list     W P D L      pages unpinned
//   03  get            -    pfn      refs     -                -            0
//   04  put            -    pfn      refs     -                -            1 if freed
//   05  try-get        -    pfn      refs     -                -            1 if taken
//   06  make-folio     -    head     order    -                -            0
//   07  split-folio    -    head     -        -                -            0
//   08  alloc-folio    -    -        order    the head it gave M            the head
//   09  set-dirty      -    pfn      -        -                -            0
//   0a  unpin-lists    -    reads    writes   a + b PFNs       R            entries
//   20  mm-new         new  pages    settings -                -            0
//   21  mmap           id   start    count    -                W O H        0
//   22  mmap-file      id   start    -        the file's PFNs  W            0
//   23  munmap         id   start    count    -                -            0
//   24  mprotect       id   start    count    -                W            0
//   25  zap            id   start    count    -                -            0
//   26  touch          id   start    count    -                W            0
//   27  pin-user-fast  id   start    count    PFNs it returned W F T        pages taken
//   28  pin-user       id   start    count    PFNs it returned W F T        pages taken
//   29  get-user-fast  id   start    count    PFNs it returned W F T        pages taken
//   2a  unpin-user     id   -        -        PFNs             W D          entries
//   2b  put-user       id   -        -        PFNs             -            entries
//   2c  fork           id   child    -        -                -            0
//   2d  migrate        id   start    count    -                -            pages moved
//   2e  compact        id   -        -        -                -            pages moved
//   2f  madvise        id   start    count    [advice]         -            THPs made
//   30  mremap         id   start    count    [new-count new-start] V X U   its start now
//   31  khugepaged     id   none     shared   -                -            THPs made
//   32  mmap-hugetlb   id   start    count    [order]          W O S        0
//   33  mmap-hugetlb-file id start   order    the file's heads W S          0
//   34  mmap-file-private id start   -        the file's PFNs  W K          0
//   35  zap-file       id   start    count    -                C            0
//   36  hugetlb-pool   -    order    count    -                -            0
//   37  hugetlb-alloc  -    order    n        the heads it gave -           n
//   38..3f             reserved for further mm ops
//   40..fe             reserved; ff: a data record
// Flags: W write (1); P per-page path (2); D dirty (4); L the pages are a PFN list (8); M
// movable (4); O populate (2); H huge (4); F fast-only (2); T long-term (4); R the entries are
// output references (0x80: pin and unpin lists, unpin-lists, mmap-file, mmap-file-private,
// unpin-user, put-user); K shmem (2: mmap-file and mmap-file-private of a file without dirty
// tracking, a shmem or memfd file; version 3); S shared (4: MAP_SHARED); V may-move (1), X fixed (2), U
// dont-unmap (4): MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP; C even-cows (1: truncate
// drops the private copies made from the file's pages too, a hole punch keeps them).
//
// Arguments in brackets (version 3) are data entries, a fixed number of them: an op whose
// arguments do not fit a, b are carried as its entries (the text form writes them after a and
// b). madvise's advice: 0 dontneed, 1 dontfork, 2 dofork, 3 pageout, 4 collapse (the text form
// writes the name); mremap's new-start is 2^32 - 1 without fixed. mm-new takes one optional
// entry, the swap device's slots (swapPages), when they differ from its pages (the default).
// khugepaged's a and b are its max_ptes_none and max_ptes_shared. hugetlb-alloc's entries are
// the heads it returned when recorded (as alloc-folio's: each names the huge page returned in
// its place now); mmap-hugetlb-file's are the heads of the file's pages it maps.
//
// unpin-lists (version 4) is one all-or-nothing call: the read pins of its first a entries and
// the write pins of the next b, validated together before either list is released (a
// write-bias owner's drop). A refusal releases nothing, and counts as one call, as the call
// it records did. Its R flag covers both lists.
//
// mm-new's settings (version 2; 0 in version 1): the kernel rules and THP orders that differ
// from a default address space's (op_settings.h); a value no rule takes is refused with the
// stream. Version 1 streams replay as before: their b is 0, the defaults.
//
// Address spaces are named by id: the k-th mm-new or fork of a stream creates id k (after
// the ids already live, for a batch submitted to a live array), whether or not it succeeds;
// an op on an id no earlier record creates is refused with the stream. In a stream of more
// than one tag an address space belongs to the tag that created it, and only that tag's ops
// may name it, so tags can replay on threads of their own.
//
// Pages returned by an op, when the decisions of another scheme allocate differently. A gup's
// data entries are the PFNs it returned when recorded; they are numbered, per tag, in stream
// order (the tag's outputs 0, 1, 2, ...). An input list with the R flag (0x80) holds output
// numbers instead of PFNs (each the number's low 32 bits, within the last 2^20 outputs of the
// op's tag): it names exactly the pages those gups returned in this run, whatever their PFNs.
// A plain PFN that a gup (or alloc-folio's result) returned when recorded names the page the
// latest such op returned in this run; so does a PFN of the folio whose head an alloc-folio
// recorded as its one data entry (its result field alone names nothing: 0 is a head too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace pinlab::ops {

inline constexpr uint32_t kVersion = 4;
inline constexpr uint32_t kOldestVersion = 1;  // the oldest version this build reads
inline constexpr size_t kHeaderBytes = 96;
inline constexpr size_t kRecordWords = 6;
inline constexpr size_t kRecordBytes = kRecordWords * sizeof(uint32_t);
inline constexpr uint32_t kEntriesPerData = 5;
inline constexpr uint32_t kMaxTags = 65536;
inline constexpr uint32_t kNoValue = 0xffffffffu;  // an argument that did not fit
inline constexpr int32_t kNotRun = INT32_MIN;      // submit's result for ops after a stop
inline constexpr size_t kSchemeNameBytes = 12;
inline constexpr char kMagic[8] = {'P', 'K', 'O', 'P', 'S', '1', '\0', '\0'};

enum class Op : uint8_t {
  kPin = 0x01,
  kUnpin = 0x02,
  kGet = 0x03,
  kPut = 0x04,
  kTryGet = 0x05,
  kMakeFolio = 0x06,
  kSplitFolio = 0x07,
  kAllocFolio = 0x08,
  kSetDirty = 0x09,
  kUnpinLists = 0x0a,  // version 4
  kMmNew = 0x20,
  kMmap = 0x21,
  kMmapFile = 0x22,
  kMunmap = 0x23,
  kMprotect = 0x24,
  kZap = 0x25,
  kTouch = 0x26,
  kPinUserFast = 0x27,
  kPinUser = 0x28,
  kGetUserFast = 0x29,
  kUnpinUser = 0x2a,
  kPutUser = 0x2b,
  kFork = 0x2c,
  kMigrate = 0x2d,
  kCompact = 0x2e,
  // Version 3: the issue-13 mm calls.
  kMadvise = 0x2f,
  kMremap = 0x30,
  kKhugepaged = 0x31,
  kMmapHugetlb = 0x32,
  kMmapHugetlbFile = 0x33,
  kMmapFilePrivate = 0x34,
  kZapFile = 0x35,
  kHugetlbPool = 0x36,
  kHugetlbAlloc = 0x37,
  kData = 0xff,
};

namespace flag {
inline constexpr uint8_t kWrite = 1;
inline constexpr uint8_t kPerPage = 2;
inline constexpr uint8_t kPopulate = 2;
inline constexpr uint8_t kFastOnly = 2;
inline constexpr uint8_t kDirty = 4;
inline constexpr uint8_t kHuge = 4;
inline constexpr uint8_t kLongterm = 4;
inline constexpr uint8_t kMovable = 4;
inline constexpr uint8_t kList = 8;
inline constexpr uint8_t kRefs = 0x80;
inline constexpr uint8_t kShmem = 2;       // mmap-file, mmap-file-private: not dirty-tracked
inline constexpr uint8_t kShared = 4;      // mmap-hugetlb, mmap-hugetlb-file: MAP_SHARED
inline constexpr uint8_t kMayMove = 1;     // mremap
inline constexpr uint8_t kFixed = 2;       // mremap
inline constexpr uint8_t kDontUnmap = 4;   // mremap
inline constexpr uint8_t kEvenCows = 1;    // zap-file
}  // namespace flag

// madvise's advice entry (version 3): mm/address_space.h's Advice, then MADV_COLLAPSE.
inline constexpr uint32_t kAdviceCollapse = 4;
inline constexpr uint32_t kAdvices = 5;
// The first version with ops 2f..37, mm-new's swap entry and mmap-file's shmem flag.
inline constexpr uint32_t kVersionMm13 = 3;
// The first version with unpin-lists (op 0a).
inline constexpr uint32_t kVersionUnpinLists = 4;
// The version a stream is written in at least (a stream of older ops reads the same as 3).
inline constexpr uint32_t kOldestWrittenVersion = kVersionMm13;
static_assert(kOldestWrittenVersion <= kVersion && kVersionUnpinLists == kVersion);

// How many of a tag's latest outputs an output reference may name.
inline constexpr uint64_t kOutputWindow = uint64_t{1} << 20;
// The output number an entry names, given the outputs the tag has had so far (`produced`):
// the number below `produced`, within the window, whose low 32 bits are `entry`. False if none.
inline bool resolve_output(uint32_t entry, uint64_t produced, uint64_t* number) {
  if (produced == 0) return false;
  const uint64_t last = produced - 1;
  const uint64_t back = uint32_t(uint32_t(last) - entry);  // distance below the last, mod 2^32
  if (back >= kOutputWindow || back > last) return false;
  *number = last - back;
  return true;
}

// One record, in host byte order (the file's words are little-endian).
struct Record {
  uint32_t w[kRecordWords];
};
static_assert(sizeof(Record) == kRecordBytes);

inline uint8_t opcode_of(const Record& r) { return uint8_t(r.w[0]); }
inline uint8_t flags_of(const Record& r) { return uint8_t(r.w[0] >> 8); }
inline uint32_t tag_of(const Record& r) { return r.w[0] >> 16; }
inline uint32_t entries_of(const Record& r) { return r.w[4]; }
inline int32_t result_of(const Record& r) { return int32_t(r.w[5]); }
inline uint64_t data_records_for(uint64_t entries) {
  return (entries + kEntriesPerData - 1) / kEntriesPerData;
}
inline Record make_op(Op op, uint8_t flags, uint32_t tag, uint32_t mm, uint32_t a, uint32_t b,
                      uint32_t n, int32_t result) {
  return Record{{uint32_t(op) | uint32_t(flags) << 8 | tag << 16, mm, a, b, n, uint32_t(result)}};
}
// The data records of `n` entries (appended to *out).
void append_data(uint32_t tag, const uint32_t* entries, uint64_t n, std::vector<Record>* out);

// What a record's a and b words hold, for the text form and the checks.
enum class Arg : uint8_t { kNone, kValue, kSettings /* mm-new's b: op_settings.h */ };
// Where an op's data entries come from.
enum class Entries : uint8_t {
  kNone,      // the op has none
  kIfList,    // pin/unpin: a PFN list when the L flag is set (a and b are 0 then)
  kInput,     // a PFN list the op takes (mmap-file, unpin-user, put-user; unpin-lists: a + b)
  kOutput,    // the PFNs the op returned when recorded (gups: any number, numbered as the
              // tag's outputs; alloc-folio: its head, one at most, not numbered;
              // hugetlb-alloc: its heads, b at most, not numbered): optional
  kArgs,      // arguments beyond a and b: args_min..args_max plain values (version 3)
};

struct OpInfo {
  Op op;
  const char* name;
  bool mm;              // names an address space in w1
  bool creates;         // mm-new (w1 is the new id) and fork (a is the child's id)
  Arg a, b;
  Entries entries;
  uint8_t flags;        // the flag bits the op takes
  const char* flag_names[8];  // the text form's name of each bit it takes
  // Entries::kArgs: how many entries the op takes, and the text form's names of the first
  // one's values (null-terminated; null: numbers).
  uint8_t args_min = 0, args_max = 0;
  const char* const* arg_names = nullptr;
  uint32_t since = 1;   // the first format version with this op
};

// Every opcode, in opcode order.
std::span<const OpInfo> all_ops();
// The op with this opcode, or null (unknown, reserved, or the data opcode).
const OpInfo* op_info(uint8_t opcode);
const OpInfo* op_info(std::string_view name);

// ---- the header ------------------------------------------------------------------------------

inline constexpr uint32_t kHeaderDebug = 1;
inline constexpr uint32_t kHeaderPopulated = 2;

struct Header {
  uint32_t flags = kHeaderPopulated;
  uint64_t pages = 0;
  uint64_t movable_pages = 0;
  uint64_t records = 0;
  uint64_t ops = 0;
  uint32_t pin_bias = 1024;
  uint32_t threads = 1;
  // Whether a text header named `threads=`: then it must be above every record's tag, as a
  // binary header's (the text reader and the binary writer of a conversion refuse it
  // otherwise); unstated, a stream gets one thread per tag. Not part of the binary form.
  bool threads_stated = false;
  uint8_t folio_order = 0;
  uint8_t pincount_min_order = 1;
  uint32_t version = kVersion;    // as read; as written, the oldest that holds its ops (written_version)
  std::string scheme = "hybrid";  // the recording's scheme (a registered name)
  uint64_t body_checksum = 0;

  bool debug() const { return flags & kHeaderDebug; }
  bool populated() const { return flags & kHeaderPopulated; }
};

// Checks the values (a page array could be built from them) and writes the 96 bytes, the
// header checksum included.
Status encode_header(const Header& h, const char* source, uint8_t out[kHeaderBytes]);
// Reads and checks a header: magic, version, sizes, flags, every value's range, the scheme
// name, and the header checksum. `len` is what the source holds (a short header is truncated).
Status decode_header(const uint8_t* in, size_t len, const char* source, Header* out);
// The length a file with this header has.
inline uint64_t stream_bytes(const Header& h) { return kHeaderBytes + h.records * kRecordBytes; }
// The most records a header may claim (so stream_bytes cannot overflow).
inline constexpr uint64_t kMaxRecords = (uint64_t{1} << 58);

// ---- the checksum ----------------------------------------------------------------------------

class Checksum {
 public:
  void add_words(const uint64_t* words, size_t n) {
    uint64_t h = h_;
    for (size_t i = 0; i < n; ++i) h = (h ^ words[i]) * 0x100000001b3ull;
    h_ = h;
  }
  // Records as the file holds them: little-endian words (the host's on little-endian hosts).
  void add_records(const Record* r, size_t n);
  uint64_t value() const { return h_ ^ (h_ >> 32); }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

// ---- framing: ops, data records, tags, ids -----------------------------------------------------

// The address spaces a run of records may name before it creates any: ids [1, first_new) of
// which `live[id]` are usable (a batch for a live array), none for a fresh array.
struct IdRules {
  uint32_t first_new = 1;       // the id the stream's first mm-new/fork creates
  std::vector<bool> live;       // live[id]: the id names a live address space
};

// What a checked run of records holds.
struct Framing {
  uint64_t records = 0;
  uint64_t ops = 0;
  uint32_t max_tag = 0;
  uint32_t next_id = 1;       // one past the last id created
  bool has_outputs = false;   // some op carries recorded output PFNs (or alloc-folio's head)
  uint32_t newest_op_version = 1;  // the latest `since` of its ops: the version it needs
};
// The version a stream of these records is written in: the oldest that holds its ops.
inline uint32_t written_version(const Framing& f) {
  return f.newest_op_version > kOldestWrittenVersion ? f.newest_op_version : kOldestWrittenVersion;
}

// Checks records one by one: every opcode known, flags the op takes, unused words 0, data
// records framed (count, tag, k, unused entries 0), every id named created earlier (or live),
// creations in sequence, and each id created in the stream used by its creator's tag only. Errors name the record (its index from the start of the stream) and what is wrong.
class FramingChecker {
 public:
  // version: the stream's (mm-new's settings are 0 before version 2).
  FramingChecker(const char* source, IdRules rules, uint32_t version = kVersion);
  // For a reader that learns the version after construction (the text form's header line).
  void set_version(uint32_t version) { version_ = version; }
  Status feed(const Record& r);
  Status feed(const Record* r, size_t n);
  // The stream ends here: refused if an op's data records are missing.
  Status finish() const;
  const Framing& framing() const { return f_; }
  // The tag that created each id (for a replay's threads), by id.
  const std::vector<uint32_t>& creator_tags() const { return creator_tag_; }

 private:
  // The common op: a page-array op without entries, flags it takes, unused words 0.
  bool feed_simple(const Record& r);
  Status bad(const char* what, uint64_t value) const;
  Status check_op(const Record& r, const OpInfo& op);
  Status check_id(uint32_t id, uint32_t tag);

  const char* source_;
  IdRules rules_;
  uint32_t version_;
  Framing f_;
  std::vector<uint32_t> creator_tag_;  // by id; kNoValue for live ids
  uint64_t index_ = 0;                  // of the next record
  uint64_t data_left_ = 0;              // data records still owed by the last op
  uint32_t data_tag_ = 0;
  uint64_t entries_left_ = 0;           // entries those data records hold
  uint64_t op_index_ = 0;               // the op that owes them
  bool data_refs_ = false;              // ... and their entries are output references
  // What the next data record's first entry must be (madvise's advice: below kAdvices).
  enum class ArgCheck : uint8_t { kNone, kAdvice };
  ArgCheck arg_check_ = ArgCheck::kNone;
  std::vector<uint64_t> outputs_;       // by tag: recorded outputs so far
};

// The most address spaces a stream may create (a bound on the id tables a replay allocates).
inline constexpr uint32_t kMaxSpaces = uint32_t{1} << 24;

// ---- the text form (.pkops.txt) ----------------------------------------------------------------
//
// One line per op, `#` starts a comment, blank lines are skipped. The first line that is not
// a comment is the header:
//   pkops 3 pages=65536 movable=0 folio-order=0 pincount-min-order=1 bias=1024 debug=1
//         populated=0 scheme=hybrid threads=1
// (one line), then one line per op:
//   [@TAG] [mm#ID] NAME [A [B]] [[ENTRIES]] [FLAG...] [= RESULT]
// with the arguments the op takes (table above) in order, ENTRIES a space-separated list
// in brackets where `P..Q` stands for P, P+1, ..., Q and `&K` for output reference K (a list
// is all references or all PFNs; `&P..&Q` a run of them), flags by name (write, per-page, dirty,
// list, movable, populate, huge, fast-only, longterm, shmem, shared, may-move, fixed,
// dont-unmap, even-cows), the bracketed arguments of version 3's ops as more numbers after A
// and B (madvise's advice by name; mm-new's swap entry as swap=N), and RESULT a number or an error code
// name (EINVAL, ...). A tag defaults to 0, a result to 0; pin and unpin with a list set L
// themselves. Examples:
//   pin 100 1 write per-page = 1
//   unpin [7 8 9] dirty = 3
//   mm#1 mm-new 16384
//   mm#1 pin-user-fast 0 512 [2048..2559] write longterm = 512
//   @1 mm#2 unpin-user [4096 4097] write = 2
//   mm#1 madvise 0 512 pageout
//   mm#1 mremap 0 512 1024 4294967295 may-move = 2048

// One op with its entries, for the text form.
struct TextOp {
  Record op;
  std::vector<uint32_t> entries;
};

std::string format_header_line(const Header& h);
// Appends the op's line (without a newline) to *out.
void format_op_line(const Record& op, const uint32_t* entries, uint64_t n, std::string* out);
// Parses the header line. `line_no` names it in errors.
Status parse_header_line(std::string_view line, const char* source, uint64_t line_no, Header* out);
// Parses an op line into *out (entries replaced).
// `expanded_before`: the list entries the stream's earlier lines expanded, so that a list is
// refused (ENOMEM) when the stream's lists together would not fit in half of the memory.
Status parse_op_line(std::string_view line, const char* source, uint64_t line_no, TextOp* out,
                     uint64_t expanded_before = 0);

// The name of an error result (-code): "EINVAL", ...; null if it names no code.
const char* result_code_name(int32_t result);
// The codes results use, by number (index 0 is OK): for the JS side's names.
std::vector<std::string> code_names();

// A path or other source name kept for the life of the process (Status holds bare pointers).
const char* intern_source(const std::string& s);

}  // namespace pinlab::ops
