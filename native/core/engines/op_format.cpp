// The op stream format: the opcode table, the header, the checksum, framing checks and the
// text form. See op_format.h for the layout.
#include "engines/op_format.h"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <mutex>
#include <set>

#include "base/memory.h"
#include "engines/op_settings.h"
#include "pages/page_array.h"
#include "pages/scheme.h"

namespace pinlab::ops {

namespace {

using A = Arg;
using E = Entries;

// Flag names per bit (index = bit number); null where the op does not take the bit.
#define PL_FLAGS(b0, b1, b2, b3) {b0, b1, b2, b3, nullptr, nullptr, nullptr, nullptr}

// madvise's advice entry by name (op_format.h: kAdvices of them).
constexpr const char* kAdviceNames[] = {"dontneed", "dontfork", "dofork", "pageout", "collapse", nullptr};
static_assert(std::size(kAdviceNames) == kAdvices + 1);
static_assert(uint32_t(Advice::kDontNeed) == 0 && uint32_t(Advice::kDontFork) == 1 &&
                  uint32_t(Advice::kDoFork) == 2 && uint32_t(Advice::kPageOut) == 3 &&
                  kAdviceCollapse == 4,
              "the advice entry is mm's Advice, then MADV_COLLAPSE");

constexpr OpInfo kOps[] = {
    {Op::kPin, "pin", false, false, A::kValue, A::kValue, E::kIfList, 1 | 2 | 8 | 0x80,
     PL_FLAGS("write", "per-page", nullptr, "list")},
    {Op::kUnpin, "unpin", false, false, A::kValue, A::kValue, E::kIfList, 1 | 2 | 4 | 8 | 0x80,
     PL_FLAGS("write", "per-page", "dirty", "list")},
    {Op::kGet, "get", false, false, A::kValue, A::kValue, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kPut, "put", false, false, A::kValue, A::kValue, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kTryGet, "try-get", false, false, A::kValue, A::kValue, E::kNone, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kMakeFolio, "make-folio", false, false, A::kValue, A::kValue, E::kNone, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kSplitFolio, "split-folio", false, false, A::kValue, A::kNone, E::kNone, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kAllocFolio, "alloc-folio", false, false, A::kNone, A::kValue, E::kOutput, 4,
     PL_FLAGS(nullptr, nullptr, "movable", nullptr)},
    {Op::kSetDirty, "set-dirty", false, false, A::kValue, A::kNone, E::kNone, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    // Version 4: a write-bias owner's drop, one all-or-nothing call (a reads, then b writes).
    {Op::kUnpinLists, "unpin-lists", false, false, A::kValue, A::kValue, E::kInput, 0x80,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr), 0, 0, nullptr, kVersionUnpinLists},
    // Its one optional entry (version 3): the swap device's slots, when not the default.
    {Op::kMmNew, "mm-new", true, true, A::kValue, A::kSettings, E::kArgs, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr), 0, 1},
    {Op::kMmap, "mmap", true, false, A::kValue, A::kValue, E::kNone, 1 | 2 | 4,
     PL_FLAGS("write", "populate", "huge", nullptr)},
    {Op::kMmapFile, "mmap-file", true, false, A::kValue, A::kNone, E::kInput, 1 | 2 | 0x80,
     PL_FLAGS("write", "shmem", nullptr, nullptr)},
    {Op::kMunmap, "munmap", true, false, A::kValue, A::kValue, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kMprotect, "mprotect", true, false, A::kValue, A::kValue, E::kNone, 1,
     PL_FLAGS("write", nullptr, nullptr, nullptr)},
    {Op::kZap, "zap", true, false, A::kValue, A::kValue, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kTouch, "touch", true, false, A::kValue, A::kValue, E::kNone, 1, PL_FLAGS("write", nullptr, nullptr, nullptr)},
    {Op::kPinUserFast, "pin-user-fast", true, false, A::kValue, A::kValue, E::kOutput, 1 | 2 | 4,
     PL_FLAGS("write", "fast-only", "longterm", nullptr)},
    {Op::kPinUser, "pin-user", true, false, A::kValue, A::kValue, E::kOutput, 1 | 2 | 4,
     PL_FLAGS("write", "fast-only", "longterm", nullptr)},
    {Op::kGetUserFast, "get-user-fast", true, false, A::kValue, A::kValue, E::kOutput, 1 | 2 | 4,
     PL_FLAGS("write", "fast-only", "longterm", nullptr)},
    {Op::kUnpinUser, "unpin-user", true, false, A::kNone, A::kNone, E::kInput, 1 | 4 | 0x80,
     PL_FLAGS("write", nullptr, "dirty", nullptr)},
    {Op::kPutUser, "put-user", true, false, A::kNone, A::kNone, E::kInput, 0x80, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kFork, "fork", true, true, A::kValue, A::kNone, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kMigrate, "migrate", true, false, A::kValue, A::kValue, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    {Op::kCompact, "compact", true, false, A::kNone, A::kNone, E::kNone, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr)},
    // Version 3: the issue-13 mm calls.
    {Op::kMadvise, "madvise", true, false, A::kValue, A::kValue, E::kArgs, 0, PL_FLAGS(nullptr, nullptr, nullptr, nullptr),
     1, 1, kAdviceNames, kVersionMm13},
    {Op::kMremap, "mremap", true, false, A::kValue, A::kValue, E::kArgs, 1 | 2 | 4,
     PL_FLAGS("may-move", "fixed", "dont-unmap", nullptr), 2, 2, nullptr, kVersionMm13},
    {Op::kKhugepaged, "khugepaged", true, false, A::kValue, A::kValue, E::kNone, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr), 0, 0, nullptr, kVersionMm13},
    {Op::kMmapHugetlb, "mmap-hugetlb", true, false, A::kValue, A::kValue, E::kArgs, 1 | 2 | 4,
     PL_FLAGS("write", "populate", "shared", nullptr), 1, 1, nullptr, kVersionMm13},
    {Op::kMmapHugetlbFile, "mmap-hugetlb-file", true, false, A::kValue, A::kValue, E::kInput, 1 | 4,
     PL_FLAGS("write", nullptr, "shared", nullptr), 0, 0, nullptr, kVersionMm13},
    {Op::kMmapFilePrivate, "mmap-file-private", true, false, A::kValue, A::kNone, E::kInput, 1 | 2 | 0x80,
     PL_FLAGS("write", "shmem", nullptr, nullptr), 0, 0, nullptr, kVersionMm13},
    {Op::kZapFile, "zap-file", true, false, A::kValue, A::kValue, E::kNone, 1,
     PL_FLAGS("even-cows", nullptr, nullptr, nullptr), 0, 0, nullptr, kVersionMm13},
    {Op::kHugetlbPool, "hugetlb-pool", false, false, A::kValue, A::kValue, E::kNone, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr), 0, 0, nullptr, kVersionMm13},
    {Op::kHugetlbAlloc, "hugetlb-alloc", false, false, A::kValue, A::kValue, E::kOutput, 0,
     PL_FLAGS(nullptr, nullptr, nullptr, nullptr), 0, 0, nullptr, kVersionMm13},
};
#undef PL_FLAGS

// Opcode -> index into kOps (or -1), built at compile time (no guard on the hot path).
constexpr std::array<int16_t, 256> make_op_index() {
  std::array<int16_t, 256> by_code{};
  for (auto& i : by_code) i = -1;
  for (size_t i = 0; i < std::size(kOps); ++i) by_code[uint8_t(kOps[i].op)] = int16_t(i);
  return by_code;
}
constexpr std::array<int16_t, 256> kOpIndex = make_op_index();

// What a "simple" record of each opcode looks like, for the framing check's fast path: a
// page-array op without entries (pin and unpin of a range included) whose flags are among
// `flags` and whose words under the masks are 0. `ok` false: always the full check.
struct SimpleShape {
  bool ok = false;
  uint8_t flags = 0;
  uint32_t a_zero = 0, b_zero = 0;  // all ones where the word must be 0
};
constexpr std::array<SimpleShape, 256> make_simple_shapes() {
  std::array<SimpleShape, 256> shapes{};
  for (const OpInfo& op : kOps) {
    // Ops of later versions take the full check (it refuses them in older streams).
    if (op.mm || (op.entries != Entries::kNone && op.entries != Entries::kIfList) || op.since > 1) continue;
    SimpleShape& sh = shapes[uint8_t(op.op)];
    sh.ok = true;
    sh.flags = uint8_t(op.flags & ~(flag::kList | flag::kRefs));
    sh.a_zero = op.a == Arg::kNone ? 0xffffffffu : 0;
    sh.b_zero = op.b == Arg::kNone ? 0xffffffffu : 0;
  }
  return shapes;
}
constexpr std::array<SimpleShape, 256> kSimple = make_simple_shapes();

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

uint64_t header_checksum(const uint8_t* bytes) {
  uint64_t words[11];
  for (size_t i = 0; i < 11; ++i) words[i] = get_u64(bytes + 8 * i);
  Checksum c;
  c.add_words(words, 11);
  return c.value();
}

Status header_field(const char* source, const char* rule, int64_t value) {
  return Status{Code::kEINVAL, Reason::kOpsBadHeader, source, value, 0, rule};
}

// The header's values as a page array would check them (so a header that decodes builds).
Status check_header_values(const Header& h, const char* source) {
  if (h.version < kOldestVersion || h.version > kVersion)
    return header_field(source, "version must be 1..4", h.version);
  if (h.flags & ~(kHeaderDebug | kHeaderPopulated))
    return header_field(source, "flags has unknown bits", h.flags);
  if (h.pages < 1 || h.pages > kMaxPages) return header_field(source, "pages must be 1..2^31", int64_t(h.pages));
  if (h.movable_pages > h.pages)
    return header_field(source, "movable_pages must be at most pages", int64_t(h.movable_pages));
  if (h.records > kMaxRecords) return header_field(source, "records must be below 2^58", int64_t(h.records));
  if (h.ops > h.records) return header_field(source, "ops must be at most records", int64_t(h.ops));
  if (h.pin_bias < kMinBias || h.pin_bias > kMaxBias || !std::has_single_bit(h.pin_bias))
    return header_field(source, "pin_bias must be a power of two in 2..2^20", h.pin_bias);
  if (h.threads < 1 || h.threads > kMaxTags) return header_field(source, "threads must be 1..65536", h.threads);
  if (h.folio_order > kMaxOrder) return header_field(source, "folio_order must be 0..30", h.folio_order);
  // 31 (kMaxOrder + 1): no folio keeps an exact pincount, the 2019 kernels (as PageArray takes).
  // As the page array it builds (a header that decodes builds): 1..31.
  if (h.pincount_min_order < 1 || h.pincount_min_order > kMaxOrder + 1)
    return header_field(source, "pincount_min_order must be 1..31", h.pincount_min_order);
  Scheme s;
  if (h.scheme.size() >= kSchemeNameBytes || !parse_scheme(h.scheme, &s))
    return header_field(source, "scheme must be a registered scheme name", int64_t(h.scheme.size()));
  return Status::Ok();
}

}  // namespace

std::span<const OpInfo> all_ops() { return {kOps, std::size(kOps)}; }

const OpInfo* op_info(uint8_t opcode) {
  const int16_t i = kOpIndex[opcode];
  return i < 0 ? nullptr : &kOps[i];
}

const OpInfo* op_info(std::string_view name) {
  for (const OpInfo& op : kOps)
    if (name == op.name) return &op;
  return nullptr;
}

void append_data(uint32_t tag, const uint32_t* entries, uint64_t n, std::vector<Record>* out) {
  for (uint64_t i = 0; i < n; i += kEntriesPerData) {
    const uint32_t k = uint32_t(std::min<uint64_t>(kEntriesPerData, n - i));
    Record r{{uint32_t(Op::kData) | k << 8 | tag << 16, 0, 0, 0, 0, 0}};
    for (uint32_t j = 0; j < k; ++j) r.w[1 + j] = entries[i + j];
    out->push_back(r);
  }
}

// ---- header ------------------------------------------------------------------------------------

Status encode_header(const Header& h, const char* source, uint8_t out[kHeaderBytes]) {
  if (Status st = check_header_values(h, source); !st.ok()) return st;
  std::memset(out, 0, kHeaderBytes);
  std::memcpy(out, kMagic, 8);
  put_u32(out + 8, h.version);  // the writer's: the oldest that holds the stream's ops
  put_u32(out + 12, uint32_t(kHeaderBytes));
  put_u32(out + 16, uint32_t(kRecordBytes));
  put_u32(out + 20, h.flags);
  put_u64(out + 24, h.pages);
  put_u64(out + 32, h.movable_pages);
  put_u64(out + 40, h.records);
  put_u64(out + 48, h.ops);
  put_u32(out + 56, h.pin_bias);
  put_u32(out + 60, h.threads);
  out[64] = h.folio_order;
  out[65] = h.pincount_min_order;
  std::memcpy(out + 68, h.scheme.data(), h.scheme.size());
  put_u64(out + 80, h.body_checksum);
  put_u64(out + 88, header_checksum(out));
  return Status::Ok();
}

Status decode_header(const uint8_t* in, size_t len, const char* source, Header* out) {
  if (len < kHeaderBytes)
    return Status{Code::kEINVAL, Reason::kOpsTruncated, source, int64_t(len), int64_t(kHeaderBytes)};
  if (std::memcmp(in, kMagic, 8) != 0) return Status{Code::kEINVAL, Reason::kOpsBadMagic, source};
  const uint32_t version = get_u32(in + 8);
  if (version < kOldestVersion || version > kVersion)
    return Status{Code::kEINVAL, Reason::kOpsBadVersion, source, version, kVersion};
  if (get_u32(in + 12) != kHeaderBytes)
    return header_field(source, "header_bytes must be 96", get_u32(in + 12));
  if (get_u32(in + 16) != kRecordBytes)
    return header_field(source, "record_bytes must be 24", get_u32(in + 16));
  if (get_u64(in + 88) != header_checksum(in))
    return Status{Code::kEINVAL, Reason::kOpsChecksum, source, 0, 0, "header"};
  Header h;
  h.flags = get_u32(in + 20);
  h.pages = get_u64(in + 24);
  h.movable_pages = get_u64(in + 32);
  h.records = get_u64(in + 40);
  h.ops = get_u64(in + 48);
  h.pin_bias = get_u32(in + 56);
  h.threads = get_u32(in + 60);
  h.folio_order = in[64];
  h.pincount_min_order = in[65];
  if (in[66] != 0 || in[67] != 0) return header_field(source, "reserved bytes 66..67 must be 0", in[66] | in[67] << 8);
  const char* name = reinterpret_cast<const char*>(in + 68);
  const size_t name_len = strnlen(name, kSchemeNameBytes);
  for (size_t i = name_len; i < kSchemeNameBytes; ++i)
    if (in[68 + i] != 0) return header_field(source, "scheme must be NUL-padded", int64_t(i));
  h.scheme.assign(name, name_len);
  h.body_checksum = get_u64(in + 80);
  h.version = version;
  if (Status st = check_header_values(h, source); !st.ok()) return st;
  *out = std::move(h);
  return Status::Ok();
}

// ---- checksum ----------------------------------------------------------------------------------

void Checksum::add_records(const Record* r, size_t n) {
  static_assert(kRecordBytes % 8 == 0);
  if constexpr (std::endian::native == std::endian::little) {
    // Three words a record; memcpy keeps the loads legal for any alignment of the records.
    uint64_t h = h_;
    const auto* bytes = reinterpret_cast<const unsigned char*>(r);
    for (size_t i = 0; i < n * 3; ++i) {
      uint64_t w;
      std::memcpy(&w, bytes + 8 * i, 8);
      h = (h ^ w) * 0x100000001b3ull;
    }
    h_ = h;
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint64_t w[3];
      for (size_t j = 0; j < 3; ++j) w[j] = uint64_t(r[i].w[2 * j]) | uint64_t(r[i].w[2 * j + 1]) << 32;
      add_words(w, 3);
    }
  }
}

// ---- framing -----------------------------------------------------------------------------------

// unpin-lists holds exactly its a reads and b writes: the framing's rule, which the text
// parser also applies before it expands a line's list. Null if n entries fit, else why not.
static const char* unpin_lists_entries_refusal(uint32_t a, uint32_t b, uint64_t n) {
  return uint64_t{a} + b == n ? nullptr : "unpin-lists' entries are not its reads and writes (a + b)";
}

FramingChecker::FramingChecker(const char* source, IdRules rules, uint32_t version)
    : source_(source), rules_(std::move(rules)), version_(version) {
  f_.next_id = rules_.first_new;
}

Status FramingChecker::bad(const char* what, uint64_t value) const {
  return Status{Code::kEINVAL, Reason::kOpsRecord, source_, int64_t(index_ - 1),
                int64_t(value), what};
}

Status FramingChecker::check_id(uint32_t id, uint32_t tag) {
  if (id == 0) return bad("an mm op names no address space (id 0)", id);
  if (id < rules_.first_new) {
    if (id >= rules_.live.size() || !rules_.live[id]) return bad("no such address space", id);
    return Status::Ok();
  }
  if (id >= f_.next_id) return bad("no such address space (no earlier record creates it)", id);
  if (creator_tag_[id - rules_.first_new] != tag)
    return bad("an address space used by a tag other than the one that created it", id);
  return Status::Ok();
}

Status FramingChecker::check_op(const Record& r, const OpInfo& op) {
  const uint8_t fl = flags_of(r);
  const uint32_t tag = tag_of(r), mm = r.w[1], a = r.w[2], b = r.w[3], n = entries_of(r);
  if (op.since > version_) return bad("an op of a later format version than the stream's", version_);
  f_.newest_op_version = std::max(f_.newest_op_version, op.since);
  if (fl & ~op.flags) return bad("flag bits the op does not take", fl & ~op.flags);
  if (version_ < kVersionMm13 && (op.op == Op::kMmapFile && (fl & flag::kShmem)))
    return bad("mmap-file's shmem flag in a stream before version 3", fl);
  if (op.a == Arg::kNone && a != 0) return bad("argument a of an op that takes none is not 0", a);
  if (op.b == Arg::kNone && b != 0) return bad("argument b of an op that takes none is not 0", b);
  if (op.b == Arg::kSettings && b != 0) {
    if (version_ < 2) return bad("mm-new settings in a version 1 stream (b must be 0)", b);
    MmRules rules;
    uint32_t thp = 0;
    if (const char* what = decode_space_settings(b, &rules, &thp)) return bad(what, b);
  }
  switch (op.entries) {
    case Entries::kNone:
      if (n != 0) return bad("entries on an op that takes none", n);
      break;
    case Entries::kIfList:
      if ((fl & flag::kRefs) && !(fl & flag::kList)) return bad("output references on a range op (no list flag)", fl);
      if (fl & flag::kList) {
        if (a != 0 || b != 0) return bad("a list op's start and count are not 0", a != 0 ? a : b);
      } else if (n != 0) {
        return bad("entries on a range op (no list flag)", n);
      }
      break;
    case Entries::kInput:
      if (op.op == Op::kUnpinLists)
        if (const char* why = unpin_lists_entries_refusal(a, b, n)) return bad(why, n);
      break;
    case Entries::kArgs:
      if (n < op.args_min || n > op.args_max) return bad("the op's argument entries are not as many as it takes", n);
      if (n > 0 && version_ < kVersionMm13) return bad("argument entries in a stream before version 3", n);
      if (op.op == Op::kMadvise) arg_check_ = ArgCheck::kAdvice;
      break;
    case Entries::kOutput:
      if (op.op == Op::kAllocFolio) {  // the head it returned, if recorded: not numbered
        if (n > 1) return bad("alloc-folio records one head at most", n);
        if (n > 0) f_.has_outputs = true;
        break;
      }
      if (op.op == Op::kHugetlbAlloc) {  // the heads it returned, if recorded: not numbered
        if (n > b) return bad("hugetlb-alloc records more heads than it asked for", n);
        if (n > 0) f_.has_outputs = true;
        break;
      }
      if (n > b) return bad("more recorded PFNs than pages asked for", n);
      if (n > 0) f_.has_outputs = true;
      if (outputs_.size() <= tag) outputs_.resize(size_t(tag) + 1, 0);
      outputs_[tag] += n;
      break;
  }
  if (!op.mm) {
    if (mm != 0) return bad("an address space on a page-array op", mm);
    return Status::Ok();
  }
  uint32_t created = 0;
  if (op.op == Op::kMmNew) {
    created = mm;
  } else {
    if (Status st = check_id(mm, tag); !st.ok()) return st;
    if (op.op == Op::kFork) created = a;
  }
  if (op.creates) {
    if (created != f_.next_id) return bad("an address space must be created with the next id", created);
    if (f_.next_id - rules_.first_new >= kMaxSpaces) return bad("too many address spaces (2^24)", created);
    creator_tag_.push_back(tag);
    ++f_.next_id;
  }
  return Status::Ok();
}

// The common op, whatever the checker's state: one table lookup and a few tests; anything
// else, valid or not, takes the full check.
inline bool is_simple_record(const Record& r) {
  const SimpleShape& sh = kSimple[opcode_of(r)];
  return sh.ok && (flags_of(r) & ~sh.flags) == 0 &&
         (r.w[1] | r.w[4] | (r.w[2] & sh.a_zero) | (r.w[3] & sh.b_zero)) == 0;
}

inline bool FramingChecker::feed_simple(const Record& r) {
  if (data_left_ != 0 || !is_simple_record(r)) return false;
  ++index_;
  ++f_.ops;
  ++f_.records;
  if (tag_of(r) > f_.max_tag) f_.max_tag = tag_of(r);
  return true;
}

Status FramingChecker::feed(const Record* r, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (data_left_ == 0) {
      // A stretch of common ops (most of a stream), counted in locals: the members would be
      // stored on every record.
      const size_t first = i;
      uint32_t max_tag = f_.max_tag;
      for (; i < n && is_simple_record(r[i]); ++i) max_tag = std::max(max_tag, tag_of(r[i]));
      index_ += i - first;
      f_.ops += i - first;
      f_.records += i - first;
      f_.max_tag = max_tag;
      if (i == n) break;
    }
    if (Status st = feed(r[i]); !st.ok()) return st;
    ++i;
  }
  return Status::Ok();
}

Status FramingChecker::feed(const Record& r) {
  if (feed_simple(r)) return Status::Ok();
  ++index_;
  const uint8_t code = opcode_of(r);
  if (data_left_ > 0) [[unlikely]] {
    if (code != uint8_t(Op::kData)) return bad("a data record is missing (its op owes more entries)", op_index_);
    const uint32_t k = uint32_t(std::min<uint64_t>(kEntriesPerData, entries_left_));
    if (flags_of(r) != k) return bad("a data record holds the wrong number of entries", flags_of(r));
    if (tag_of(r) != data_tag_) return bad("a data record's tag differs from its op's", tag_of(r));
    for (uint32_t j = k; j < kEntriesPerData; ++j)
      if (r.w[1 + j] != 0) return bad("an unused data entry is not 0", r.w[1 + j]);
    if (arg_check_ == ArgCheck::kAdvice && r.w[1] >= kAdvices)  // the first entry: the advice
      return Status{Code::kEINVAL, Reason::kOpsRecord, source_, int64_t(op_index_), int64_t(r.w[1]),
                    "madvise's advice must be 0..4 (dontneed, dontfork, dofork, pageout, collapse)"};
    arg_check_ = ArgCheck::kNone;
    if (data_refs_) {
      const uint64_t produced = data_tag_ < outputs_.size() ? outputs_[data_tag_] : 0;
      uint64_t number = 0;
      for (uint32_t j = 0; j < k; ++j)
        if (!resolve_output(r.w[1 + j], produced, &number))
          return bad("an output reference names no output of the last 2^20 of its tag", r.w[1 + j]);
    }
    entries_left_ -= k;
    --data_left_;
    ++f_.records;
    return Status::Ok();
  }
  if (code == uint8_t(Op::kData)) return bad("a data record without an op", 0);
  const OpInfo* op = op_info(code);
  if (op == nullptr) return bad("unknown opcode", code);
  arg_check_ = ArgCheck::kNone;
  if (Status st = check_op(r, *op); !st.ok()) return st;
  ++f_.ops;
  ++f_.records;
  f_.max_tag = std::max(f_.max_tag, tag_of(r));
  entries_left_ = entries_of(r);
  data_left_ = data_records_for(entries_left_);
  data_tag_ = tag_of(r);
  data_refs_ = (flags_of(r) & flag::kRefs) != 0;
  op_index_ = index_ - 1;
  return Status::Ok();
}

Status FramingChecker::finish() const {
  if (data_left_ > 0)
    return Status{Code::kEINVAL, Reason::kOpsRecord, source_, int64_t(index_), int64_t(op_index_),
                  "the stream ends before the data records of its last op (record shown)"};
  return Status::Ok();
}

// ---- codes and sources -------------------------------------------------------------------------

const char* result_code_name(int32_t result) {
  if (result >= 0 || result < -int32_t(Code::kEAGAIN)) return nullptr;
  return code_name(Code(-result));
}

std::vector<std::string> code_names() {
  std::vector<std::string> out;
  for (int c = 0; c <= int(Code::kEAGAIN); ++c) out.emplace_back(code_name(Code(c)));
  return out;
}

const char* intern_source(const std::string& s) {
  static std::mutex* mu = new std::mutex;
  static std::set<std::string>* strings = new std::set<std::string>;
  std::lock_guard<std::mutex> lock(*mu);
  return strings->insert(s).first->c_str();
}

// ---- text form ---------------------------------------------------------------------------------

namespace {

void append_num(std::string* out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out->append(buf, end);
}

void append_entries(std::string* out, const uint32_t* e, uint64_t n, bool refs) {
  out->push_back('[');
  for (uint64_t i = 0; i < n;) {
    uint64_t j = i + 1;
    while (j < n && e[j - 1] != UINT32_MAX && e[j] == e[j - 1] + 1) ++j;
    if (i > 0) out->push_back(' ');
    if (refs) out->push_back('&');
    append_num(out, e[i]);
    if (j - i >= 3) {
      out->append(refs ? "..&" : "..");
      append_num(out, e[j - 1]);
    } else {
      j = i + 1;
    }
    i = j;
  }
  out->push_back(']');
}

Status text_bad(const char* source, uint64_t line, const char* what) {
  return Status{Code::kEINVAL, Reason::kOpsText, source, int64_t(line), 0, what};
}

bool parse_u64(std::string_view s, uint64_t* out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_u32(std::string_view s, uint32_t* out) {
  uint64_t v;
  if (!parse_u64(s, &v) || v > UINT32_MAX) return false;
  *out = uint32_t(v);
  return true;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\r') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::string format_header_line(const Header& h) {
  std::string s = "pkops " + std::to_string(h.version) + " pages=";
  append_num(&s, h.pages);
  s += " movable=";
  append_num(&s, h.movable_pages);
  s += " folio-order=";
  append_num(&s, h.folio_order);
  s += " pincount-min-order=";
  append_num(&s, h.pincount_min_order);
  s += " bias=";
  append_num(&s, h.pin_bias);
  s += h.debug() ? " debug=1" : " debug=0";
  s += h.populated() ? " populated=1" : " populated=0";
  s += " scheme=" + h.scheme + " threads=";
  append_num(&s, h.threads);
  return s;
}

void format_op_line(const Record& r, const uint32_t* entries, uint64_t n, std::string* out) {
  const OpInfo* op = op_info(opcode_of(r));
  if (op == nullptr) return;  // framing checked before formatting
  const uint8_t fl = flags_of(r);
  if (tag_of(r) != 0) {
    out->push_back('@');
    append_num(out, tag_of(r));
    out->push_back(' ');
  }
  if (op->mm) {
    out->append("mm#");
    append_num(out, r.w[1]);
    out->push_back(' ');
  }
  out->append(op->name);
  const bool list = op->entries == Entries::kIfList && (fl & flag::kList);
  if (!list) {
    if (op->a == Arg::kValue) {
      out->push_back(' ');
      append_num(out, r.w[2]);
    }
    if (op->b == Arg::kValue) {
      out->push_back(' ');
      append_num(out, r.w[3]);
    }
    if (op->b == Arg::kSettings) format_space_settings(r.w[3], out);
  }
  if (op->entries == Entries::kArgs) {
    for (uint64_t i = 0; i < n; ++i) {
      out->append(op->op == Op::kMmNew ? " swap=" : " ");
      if (i == 0 && op->arg_names != nullptr && entries[i] < kAdvices) {
        out->append(op->arg_names[entries[i]]);
      } else {
        append_num(out, entries[i]);
      }
    }
  }
  if (list || op->entries == Entries::kInput || (op->entries == Entries::kOutput && n > 0)) {
    out->push_back(' ');
    append_entries(out, entries, n, (fl & flag::kRefs) != 0);
  }
  for (unsigned bit = 0; bit < 8; ++bit) {
    if (!(fl & (1u << bit)) || (1u << bit) == flag::kList || (1u << bit) == flag::kRefs) continue;
    out->push_back(' ');
    out->append(op->flag_names[bit]);
  }
  const int32_t res = result_of(r);
  if (res != 0) {
    out->append(" = ");
    if (const char* name = result_code_name(res)) {
      out->append(name);
    } else if (res < 0) {
      out->push_back('-');
      append_num(out, uint64_t(-int64_t(res)));
    } else {
      append_num(out, uint64_t(res));
    }
  }
}

Status parse_header_line(std::string_view line, const char* source, uint64_t line_no, Header* out) {
  const auto tokens = split_ws(line);
  if (tokens.size() < 2 || tokens[0] != "pkops")
    return text_bad(source, line_no, "the first line must be the header: pkops 1 pages=N ...");
  if (tokens[1].size() != 1 || tokens[1][0] < '0' + int(kOldestVersion) || tokens[1][0] > '0' + int(kVersion))
    return text_bad(source, line_no, "unsupported text version (this build reads 1, 2, 3 and 4)");
  static_assert(kVersion <= 9, "the text header's version is one digit");
  Header h;
  h.version = uint32_t(tokens[1][0] - '0');
  bool pages = false;
  for (size_t i = 2; i < tokens.size(); ++i) {
    const std::string_view t = tokens[i];
    const size_t eq = t.find('=');
    if (eq == std::string_view::npos) return text_bad(source, line_no, "header fields are key=value");
    const std::string_view key = t.substr(0, eq), val = t.substr(eq + 1);
    // Each field once: a repeated one would silently override the first (which one a reader
    // meant is not ours to guess).
    for (size_t j = 2; j < i; ++j)
      if (tokens[j].substr(0, tokens[j].find('=')) == key)
        return text_bad(source, line_no, "a header field is repeated");
    uint64_t v = 0;
    if (key == "scheme") {
      h.scheme = std::string(val);
      continue;
    }
    if (!parse_u64(val, &v)) return text_bad(source, line_no, "a header value is not a number");
    if (key == "pages") {
      h.pages = v;
      pages = true;
    } else if (key == "movable") {
      h.movable_pages = v;
    } else if (key == "folio-order") {
      if (v > 255) return text_bad(source, line_no, "folio-order must be 0..30");
      h.folio_order = uint8_t(v);
    } else if (key == "pincount-min-order") {
      if (v < 1 || v > 255) return text_bad(source, line_no, "pincount-min-order must be 1..31");
      h.pincount_min_order = uint8_t(v);
    } else if (key == "bias") {
      if (v > UINT32_MAX) return text_bad(source, line_no, "bias must be a power of two in 2..2^20");
      h.pin_bias = uint32_t(v);
    } else if (key == "debug" || key == "populated") {
      if (v > 1) return text_bad(source, line_no, "debug and populated are 0 or 1");
      const uint32_t bit = key == "debug" ? kHeaderDebug : kHeaderPopulated;
      h.flags = v ? (h.flags | bit) : (h.flags & ~bit);
    } else if (key == "threads") {
      if (v < 1 || v > kMaxTags) return text_bad(source, line_no, "threads must be 1..65536");
      h.threads = uint32_t(v);
      h.threads_stated = true;
    } else {
      return text_bad(source, line_no, "unknown header field");
    }
  }
  if (!pages) return text_bad(source, line_no, "the header needs pages=N");
  if (Status st = check_header_values(h, source); !st.ok()) return st;
  *out = std::move(h);
  return Status::Ok();
}

// The most entries a text line's list may hold for its op, checked before the list is expanded:
// an op's recorded outputs are at most the pages it asked for (b; alloc-folio: one head), as
// FramingChecker::check_op refuses later, a hugetlb file's heads map at most 2^32 pages, and
// unpin-lists holds exactly its a + b.
static Status check_list_bound(const OpInfo& op, uint32_t a, uint32_t b, uint64_t listed, const char* source,
                               uint64_t line_no) {
  if (op.op == Op::kUnpinLists)
    if (const char* why = unpin_lists_entries_refusal(a, b, listed)) return text_bad(source, line_no, why);
  if (op.entries == Entries::kOutput) {
    const uint64_t most = op.op == Op::kAllocFolio ? 1 : b;
    if (listed > most) return text_bad(source, line_no, "more recorded outputs than the op asked for");
  }
  if (op.op == Op::kMmapHugetlbFile && b < 32 && listed > ((uint64_t{1} << 32) >> b))
    return text_bad(source, line_no, "more hugetlb heads than 2^32 pages hold");
  return Status::Ok();
}

Status parse_op_line(std::string_view line, const char* source, uint64_t line_no, TextOp* out,
                     uint64_t expanded_before) {
  out->entries.clear();
  // The bracketed list, if any, is cut out first; the rest is whitespace-separated words.
  std::string rest(line);
  bool has_list = false;
  int refs = -1;  // -1: no entry yet; 0: PFNs; 1: output references
  // The list's runs, expanded only once the op is known and its bound checked: a run of a few
  // bytes (0..4294967294) must not allocate 16 GiB for an op that takes no list or fewer entries.
  std::vector<std::pair<uint32_t, uint32_t>> runs;
  uint64_t listed = 0;
  if (const size_t open = rest.find('['); open != std::string::npos) {
    const size_t close = rest.find(']', open);
    if (close == std::string::npos) return text_bad(source, line_no, "a '[' list without its ']'");
    if (rest.find('[', open + 1) < close || rest.find('[', close) != std::string::npos)
      return text_bad(source, line_no, "one list per line");
    for (std::string_view e : split_ws(std::string_view(rest).substr(open + 1, close - open - 1))) {
      const int is_ref = e.starts_with('&') ? 1 : 0;
      if (refs >= 0 && refs != is_ref)
        return text_bad(source, line_no, "a list is all output references (&K) or all PFNs");
      refs = is_ref;
      if (is_ref) e.remove_prefix(1);
      const size_t dots = e.find("..");
      uint32_t lo = 0, hi = 0;
      if (dots == std::string_view::npos) {
        if (!parse_u32(e, &lo)) return text_bad(source, line_no, "a list entry is not a number below 2^32");
        ++listed;
        runs.emplace_back(lo, lo);
        continue;
      }
      std::string_view second = e.substr(dots + 2);
      if (is_ref && !second.starts_with('&')) return text_bad(source, line_no, "a run of references is &P..&Q");
      if (is_ref) second.remove_prefix(1);
      if (!parse_u32(e.substr(0, dots), &lo) || !parse_u32(second, &hi) || hi < lo)
        return text_bad(source, line_no, "a list run P..Q needs numbers P <= Q below 2^32");
      listed += uint64_t(hi) - lo + 1;
      if (listed >= (uint64_t{1} << 32)) return text_bad(source, line_no, "a list longer than 2^32 entries");
      runs.emplace_back(lo, hi);
    }
    rest.erase(open, close - open + 1);
    has_list = true;
  }
  const auto words = split_ws(rest);
  size_t i = 0;
  uint32_t tag = 0, mm = 0;
  bool has_mm = false;
  if (i < words.size() && words[i].starts_with('@')) {
    if (!parse_u32(words[i].substr(1), &tag) || tag >= kMaxTags)
      return text_bad(source, line_no, "a tag is @N with N below 65536");
    ++i;
  }
  if (i < words.size() && words[i].starts_with("mm#")) {
    if (!parse_u32(words[i].substr(3), &mm)) return text_bad(source, line_no, "an address space is mm#N");
    if (mm == 0) return text_bad(source, line_no, "address space ids start at 1 (mm#0 names none)");
    has_mm = true;
    ++i;
  }
  if (i >= words.size()) return text_bad(source, line_no, "an op name is missing");
  const OpInfo* op = op_info(words[i++]);
  if (op == nullptr) return text_bad(source, line_no, "unknown op name");
  if (op->mm != has_mm)
    return text_bad(source, line_no, op->mm ? "this op needs mm#ID" : "a page-array op takes no mm#ID");
  const bool list = op->entries == Entries::kIfList && has_list;
  if (has_list && (op->entries == Entries::kNone || op->entries == Entries::kArgs))
    return text_bad(source, line_no, "this op takes no list");
  uint32_t args[2] = {0, 0};
  const Arg kinds[2] = {op->a, op->b};
  for (int k = 0; k < 2; ++k) {
    if (kinds[k] != Arg::kValue || list) continue;
    if (i >= words.size() || !parse_u32(words[i], &args[k]))
      return text_bad(source, line_no, "an argument is missing or not a number below 2^32");
    ++i;
  }
  // Arguments beyond a and b (version 3), in order; the first by name where it has names.
  if (op->entries == Entries::kArgs && op->op != Op::kMmNew) {
    for (uint32_t k = 0; k < op->args_max; ++k) {
      uint32_t v = 0;
      bool named = false;
      if (i < words.size() && k == 0 && op->arg_names != nullptr) {
        for (uint32_t j = 0; op->arg_names[j] != nullptr; ++j) {
          if (words[i] == op->arg_names[j]) {
            v = j;
            named = true;
          }
        }
      }
      if (!named && (i >= words.size() || !parse_u32(words[i], &v)))
        return text_bad(source, line_no, "an argument is missing or not a number below 2^32");
      out->entries.push_back(v);
      ++i;
    }
  }
  if (Status st = check_list_bound(*op, args[0], args[1], listed, source, line_no); !st.ok()) return st;
  // Expanded, each entry costs 4 bytes here and its share of a data record twice over (the
  // line's records, then the stream's). A list that, with the stream's earlier ones, would not
  // fit in half of this machine's memory is refused before a byte of it is expanded: a few
  // bytes of text, [0..4294967294], must not fill the memory and meet the OOM killer.
  constexpr uint64_t kExpandedEntryBytes = sizeof(uint32_t) + 2 * (kRecordBytes + kEntriesPerData - 1) / kEntriesPerData;
  if (!fits_in_memory(2 * (expanded_before + listed), kExpandedEntryBytes))
    return Status{Code::kENOMEM, Reason::kOpsText, source, int64_t(line_no), 0,
                  "a list too long to expand in this machine's memory"};
  for (const auto& [lo, hi] : runs)
    for (uint64_t p = lo; p <= hi; ++p) out->entries.push_back(uint32_t(p));
  uint8_t fl = list ? flag::kList : 0;
  if (refs == 1) {
    if (!(op->flags & flag::kRefs)) return text_bad(source, line_no, "this op takes no output references");
    fl |= flag::kRefs;
  }
  int32_t result = 0;
  for (; i < words.size(); ++i) {
    if (words[i] == "=") {
      if (i + 2 != words.size()) return text_bad(source, line_no, "'= RESULT' ends the line");
      const std::string_view r = words[i + 1];
      bool named = false;
      for (int c = 1; c <= int(Code::kEAGAIN); ++c) {
        if (r == code_name(Code(c))) {
          result = -c;
          named = true;
        }
      }
      if (!named) {
        const bool neg = r.starts_with('-');
        uint64_t v = 0;
        if (!parse_u64(neg ? r.substr(1) : r, &v) || v > (neg ? uint64_t{1} << 31 : uint64_t{INT32_MAX}))
          return text_bad(source, line_no, "a result is an error code name or a 32-bit number");
        result = neg ? int32_t(-int64_t(v)) : int32_t(v);
      }
      i = words.size();
      break;
    }
    if (op->op == Op::kMmNew && words[i].starts_with("swap=")) {
      uint32_t v = 0;
      if (!out->entries.empty() || !parse_u32(words[i].substr(5), &v))
        return text_bad(source, line_no, "mm-new takes one swap=N, N below 2^32");
      out->entries.push_back(v);
      continue;
    }
    if (op->b == Arg::kSettings && words[i].find('=') != std::string_view::npos) {
      const char* what = nullptr;
      if (!parse_space_setting(words[i], &args[1], &what)) return text_bad(source, line_no, what);
      continue;
    }
    bool known = false;
    for (unsigned bit = 0; bit < 8; ++bit) {
      if (op->flag_names[bit] != nullptr && words[i] == op->flag_names[bit] && (1u << bit) != flag::kList &&
          (1u << bit) != flag::kRefs) {
        fl |= uint8_t(1u << bit);
        known = true;
      }
    }
    if (!known) return text_bad(source, line_no, "unknown flag (or too many arguments) for this op");
  }
  if (out->entries.size() > UINT32_MAX) return text_bad(source, line_no, "a list longer than 2^32-1 entries");
  out->op = make_op(op->op, fl, tag, mm, args[0], args[1], uint32_t(out->entries.size()), result);
  return Status::Ok();
}

}  // namespace pinlab::ops
