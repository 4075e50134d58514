// Host page snapshots: reading /proc/kpagecount + /proc/kpageflags, and the .pksnap format.
// See snapshot.h for the grouping rules and the file format.
#include "host/snapshot.h"

#include "base/memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <stdexcept>

namespace pinlab {

namespace {

// KPF_* bit numbers of /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst).
constexpr uint64_t kpf(unsigned bit) { return uint64_t{1} << bit; }
constexpr uint64_t KPF_SLAB = kpf(7);
constexpr uint64_t KPF_LRU = kpf(5);
constexpr uint64_t KPF_BUDDY = kpf(10);
constexpr uint64_t KPF_MMAP = kpf(11);
constexpr uint64_t KPF_ANON = kpf(12);
constexpr uint64_t KPF_SWAPCACHE = kpf(13);
constexpr uint64_t KPF_COMPOUND_HEAD = kpf(15);
constexpr uint64_t KPF_COMPOUND_TAIL = kpf(16);
constexpr uint64_t KPF_HUGE = kpf(17);
constexpr uint64_t KPF_NOPAGE = kpf(20);
constexpr uint64_t KPF_THP = kpf(22);
constexpr uint64_t KPF_OFFLINE = kpf(23);
constexpr uint64_t KPF_ZERO_PAGE = kpf(24);

constexpr uint64_t kBlockEntries = 64 * 1024;  // PFNs per read of each file (512 KiB)
constexpr unsigned kMaxOrder = 30;
constexpr uint32_t kMaxRefs = 0x7fffffffu;

// Status::subject is a bare pointer (Status stays trivially copyable), so the paths named in
// errors are interned for the life of the process. Only failures intern, so this stays tiny.
const char* intern(const std::string& s) {
  static std::mutex* mu = new std::mutex;
  static std::set<std::string>* strings = new std::set<std::string>;
  std::lock_guard<std::mutex> lock(*mu);
  return strings->insert(s).first->c_str();
}

Status path_fail(Code c, Reason r, const std::string& path, int64_t value = 0, int64_t limit = 0,
                 const char* rule = nullptr) {
  return Status{c, r, intern(path), value, limit, rule};
}

// errno from open/read of `path` as a Status. `kpage`: a kpagecount/kpageflags file, whose
// permission failures say what is needed.
Status errno_status(int err, const std::string& path, bool kpage) {
  if (err == ENOENT || err == ENOTDIR) return path_fail(Code::kENOENT, Reason::kFileNotFound, path);
  if (err == EACCES || err == EPERM)
    return path_fail(Code::kEACCES, kpage ? Reason::kKpageNoAccess : Reason::kFileNoAccess, path);
  if (err == ENOMEM) return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  return path_fail(Code::kEINVAL, Reason::kFileIo, path, err);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads up to `bytes` at `offset`, retrying short reads and EINTR; *got = bytes read (less
// only at end of file). Returns 0 or an errno.
int pread_full(int fd, void* buf, size_t bytes, uint64_t offset, size_t* got) {
  *got = 0;
  auto* p = static_cast<char*>(buf);
  while (*got < bytes) {
    const ssize_t n = ::pread(fd, p + *got, bytes - *got, static_cast<off_t>(offset + *got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;
    *got += static_cast<size_t>(n);
  }
  return 0;
}

// The length in bytes of a kpage file. /proc files report size 0, so where fstat says 0 the
// end is found by probing: an 8-byte read at or past the end returns nothing.
Status kpage_length(int fd, const std::string& path, uint64_t* bytes) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_status(errno, path, true);
  if (st.st_size > 0) {
    *bytes = static_cast<uint64_t>(st.st_size);
    return Status::Ok();
  }
  uint64_t word = 0;
  size_t got = 0;
  int err = 0;
  auto readable = [&](uint64_t entry) {
    err = pread_full(fd, &word, 8, entry * 8, &got);
    return err == 0 && got == 8;
  };
  if (!readable(0)) {
    if (err != 0) return errno_status(err, path, true);
    *bytes = got;  // empty (or shorter than one entry: refused by the caller)
    return Status::Ok();
  }
  uint64_t lo = 0, hi = 1;  // entry lo exists; entry hi is being tested
  while (readable(hi)) {
    lo = hi;
    if (hi >= (uint64_t{1} << 52)) break;
    hi *= 2;
  }
  if (err != 0) return errno_status(err, path, true);
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (readable(mid)) lo = mid;
    else if (err != 0) return errno_status(err, path, true);
    else hi = mid;
  }
  *bytes = (lo + 1) * 8;
  return Status::Ok();
}

// MAX_PAGE_ORDER from the number of order columns of /proc/buddyinfo, else the default.
unsigned host_max_buddy_order() {
  std::ifstream in("/proc/buddyinfo");
  std::string line;
  if (!std::getline(in, line)) return kSnapMaxBuddyOrder;
  std::istringstream words(line);
  std::string w;
  int columns = 0, index = 0;
  while (words >> w) {
    // "Node 0, zone DMA c0 c1 ... cN"
    if (++index > 4) ++columns;
  }
  if (columns < 1 || columns > static_cast<int>(kMaxOrder) + 1) return kSnapMaxBuddyOrder;
  return static_cast<unsigned>(columns - 1);
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

uint16_t classify(uint64_t k) {
  const bool anon = (k & (KPF_ANON | KPF_SWAPCACHE)) != 0;
  const uint16_t backing =
      anon ? uint16_t{kSnapAnon} : ((k & (KPF_LRU | KPF_MMAP)) ? uint16_t{kSnapFile} : uint16_t{0});
  if (k & KPF_ZERO_PAGE) return kSnapZero | ((k & KPF_THP) ? uint16_t{kSnapThp} : uint16_t{0});
  if (k & KPF_HUGE) return kSnapHuge | backing;
  if (k & KPF_THP) return kSnapThp | backing;
  if (k & KPF_SLAB) return kSnapSlab;
  return backing ? backing : uint16_t{kSnapOther};
}

uint32_t refs_of(uint64_t map_count) {
  if (map_count == 0) return 1;  // allocated but unmapped: see SnapshotFolio::refs
  return map_count > kMaxRefs ? kMaxRefs : static_cast<uint32_t>(map_count);
}

bool is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }
unsigned log2u(uint64_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }

// A page with no flags and map count 0: see "blank" in snapshot.h.
bool is_blank(uint64_t count, uint64_t k) { return k == 0 && count == 0; }

// Turns the (map count, KPF bits) of PFNs 0.. in order into folios. See snapshot.h.
class FolioBuilder {
 public:
  FolioBuilder(HostSnapshot* out, unsigned block_order)
      : out_(out), block_(uint64_t{1} << block_order) {}

  void page(uint64_t pfn, uint64_t count, uint64_t k) {
    if (run_open_) {
      if ((k & KPF_COMPOUND_TAIL) && !(k & KPF_COMPOUND_HEAD)) {
        run_.push_back({count, k});
        return;
      }
      close_run(false);
    }
    if (is_blank(count, k)) {
      if (!blank_open_) {
        blank_open_ = true;
        blank_start_ = pfn;
      }
      return;
    }
    if (blank_open_) close_blank(pfn, pfn);
    if (k & (KPF_NOPAGE | KPF_OFFLINE | KPF_BUDDY)) return;  // hole, given back, or free
    if (k & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL)) {
      run_open_ = true;
      run_headless_ = !(k & KPF_COMPOUND_HEAD);
      run_start_ = pfn;
      run_.clear();
      run_.push_back({count, k});
      return;
    }
    emit(pfn, 0, count, k);
  }

  // End of the span at `end`. `run_cut`: the page after the span is a tail, so an open
  // compound run goes on past it (and is odd). `blank_through`: where the open blank run
  // really ends, looking past the span (end when the files end there).
  void finish(uint64_t end, bool run_cut, uint64_t blank_through) {
    if (run_open_) close_run(run_cut);
    if (blank_open_) close_blank(end, blank_through);
  }

 private:
  struct Raw {
    uint64_t count, kpf;
  };

  void emit(uint64_t pfn, unsigned order, uint64_t count, uint64_t k) {
    out_->folios.push_back(
        SnapshotFolio{pfn, static_cast<uint8_t>(order), refs_of(count), classify(k)});
  }

  void close_run(bool cut) {
    run_open_ = false;
    const uint64_t len = run_.size();
    if (!cut && !run_headless_ && is_pow2(len) && log2u(len) <= kMaxOrder &&
        run_start_ % len == 0) {
      emit(run_start_, log2u(len), run_[0].count, run_[0].kpf);
      return;
    }
    ++out_->odd_runs;
    for (uint64_t i = 0; i < len; ++i) emit(run_start_ + i, 0, run_[i].count, run_[i].kpf);
  }

  // Blank pages [blank_start_, end), of a blank run that goes on to `seen_end`: the whole
  // aligned blocks of block_ pages in it are free; the rest are allocated kernel pages.
  void close_blank(uint64_t end, uint64_t seen_end) {
    blank_open_ = false;
    const uint64_t a = (blank_start_ + block_ - 1) / block_ * block_;  // first whole block
    const uint64_t b = seen_end / block_ * block_;                     // end of the last
    uint64_t free_from = end, free_to = end;
    if (a < b && a < end) {
      free_from = a;
      free_to = std::min(b, end);
    }
    for (uint64_t p = blank_start_; p < free_from; ++p) emit(p, 0, 0, 0);
    out_->blank_free += free_to - free_from;
    for (uint64_t p = free_to; p < end; ++p) emit(p, 0, 0, 0);
  }

  HostSnapshot* out_;
  const uint64_t block_;
  bool run_open_ = false, run_headless_ = false;
  uint64_t run_start_ = 0;
  std::vector<Raw> run_;
  bool blank_open_ = false;
  uint64_t blank_start_ = 0;
};

// ---- .pksnap ----

constexpr char kMagic[8] = {'P', 'K', 'S', 'N', 'A', 'P', '1', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 60;  // up to the source string
constexpr uint32_t kMaxSource = 65536;
constexpr uint64_t kMaxPages = kSnapMaxPages;

uint64_t fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_varint(std::vector<uint8_t>& b, uint64_t v) {
  while (v >= 0x80) {
    b.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  b.push_back(static_cast<uint8_t>(v));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

// Checks a folio as read_snapshot would; `prev_end` is where the previous folio ends.
Status check_folio(const std::string& path, uint64_t pages, uint64_t prev_end,
                   const SnapshotFolio& f) {
  if (f.order > kMaxOrder)
    return path_fail(Code::kEINVAL, Reason::kSnapFolioOrderBad, path, f.order,
                     static_cast<int64_t>(f.pfn));
  if (f.pfn < prev_end)
    return path_fail(Code::kEINVAL, Reason::kSnapFolioOrder, path, static_cast<int64_t>(f.pfn),
                     static_cast<int64_t>(prev_end));
  const uint64_t size = uint64_t{1} << f.order;
  if (f.pfn >= pages || size > pages - f.pfn)
    return path_fail(Code::kEINVAL, Reason::kSnapFolioBeyond, path, static_cast<int64_t>(f.pfn),
                     static_cast<int64_t>(pages));
  if (f.pfn % size != 0)
    return path_fail(Code::kEINVAL, Reason::kSnapFolioMisaligned, path,
                     static_cast<int64_t>(f.pfn), f.order);
  if (f.refs == 0 || f.refs > kMaxRefs)
    return path_fail(Code::kEINVAL, Reason::kSnapFolioRefs, path, f.refs,
                     static_cast<int64_t>(f.pfn));
  if (f.flags & ~kSnapAllFlags)
    return path_fail(Code::kEINVAL, Reason::kSnapFolioFlags, path, f.flags,
                     static_cast<int64_t>(f.pfn));
  return Status::Ok();
}

Status encode(const std::string& path, const HostSnapshot& snap, std::vector<uint8_t>* file) {
  if (snap.pages > kMaxPages)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0, "pages is over 2^40");
  if (snap.source.size() > kMaxSource)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0,
                     "source string is over 65536 bytes");
  if (snap.blank_free > snap.pages)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0,
                     "blank_free is more than pages");
  std::vector<uint8_t> body;
  body.reserve(64 + snap.folios.size() / 4);
  uint64_t prev_end = 0;  // end of the previous folio
  uint64_t run_end = 0;   // end of the previous run (where its gap counts from)
  size_t i = 0;
  while (i < snap.folios.size()) {
    const SnapshotFolio& f = snap.folios[i];
    if (Status st = check_folio(path, snap.pages, prev_end, f); !st.ok()) return st;
    const uint64_t size = uint64_t{1} << f.order;
    // Extend the run over identical, contiguous folios.
    size_t j = i + 1;
    uint64_t end = f.pfn + size;
    while (j < snap.folios.size()) {
      const SnapshotFolio& g = snap.folios[j];
      if (g.pfn != end || g.order != f.order || g.refs != f.refs || g.flags != f.flags) break;
      if (Status st = check_folio(path, snap.pages, end, g); !st.ok()) return st;
      end += size;
      ++j;
    }
    put_varint(body, f.pfn - run_end);
    put_varint(body, f.order);
    put_varint(body, f.flags);
    put_varint(body, f.refs);
    put_varint(body, j - i);
    run_end = prev_end = end;
    i = j;
  }
  std::vector<uint8_t>& b = *file;
  b.clear();
  b.reserve(kHeaderBytes + snap.source.size() + body.size() + 8);
  b.insert(b.end(), kMagic, kMagic + 8);
  put_u32(b, kVersion);
  put_u32(b, 0);
  put_u64(b, snap.pages);
  put_u64(b, snap.folios.size());
  put_u64(b, snap.odd_runs);
  put_u64(b, snap.blank_free);
  put_u64(b, body.size());
  put_u32(b, static_cast<uint32_t>(snap.source.size()));
  b.insert(b.end(), snap.source.begin(), snap.source.end());
  b.insert(b.end(), body.begin(), body.end());
  put_u64(b, fnv1a64(b.data(), b.size()));
  return Status::Ok();
}

// Reads one LEB128 varint from body[*pos..end).
bool get_varint(const uint8_t* p, size_t end, size_t* pos, uint64_t* v, const char** why) {
  uint64_t x = 0;
  for (unsigned shift = 0;; shift += 7) {
    if (*pos >= end) {
      *why = "a varint runs past the end of the body";
      return false;
    }
    const uint8_t byte = p[(*pos)++];
    if (shift == 63 && (byte & 0x7e) != 0) {  // the 10th byte may carry only bit 63
      *why = "a varint is longer than 64 bits";
      return false;
    }
    x |= uint64_t{byte & 0x7fu} << shift;
    if (!(byte & 0x80)) break;
    if (shift == 63) {
      *why = "a varint is longer than 64 bits";
      return false;
    }
  }
  *v = x;
  return true;
}

Status decode(const std::string& path, const std::vector<uint8_t>& b, uint64_t max_pages,
              HostSnapshot* out) {
  const uint64_t size = b.size();
  if (size > 0 && std::memcmp(b.data(), kMagic, std::min<uint64_t>(size, 8)) != 0)
    return path_fail(Code::kEINVAL, Reason::kSnapBadMagic, path);
  if (size < kHeaderBytes)
    return path_fail(Code::kEINVAL, Reason::kSnapTruncated, path, static_cast<int64_t>(size),
                     kHeaderBytes);
  const uint8_t* p = b.data();
  const uint32_t version = get_u32(p + 8);
  if (version != kVersion)
    return path_fail(Code::kEINVAL, Reason::kSnapBadVersion, path, version, kVersion);
  if (get_u32(p + 12) != 0)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0, "reserved field is not 0");
  const uint64_t pages = get_u64(p + 16);
  const uint64_t folios = get_u64(p + 24);
  const uint64_t odd_runs = get_u64(p + 32);
  const uint64_t blank_free = get_u64(p + 40);
  const uint64_t body_bytes = get_u64(p + 48);
  const uint32_t source_len = get_u32(p + 56);
  if (source_len > kMaxSource)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0,
                     "source length is over 65536");
  if (body_bytes > (uint64_t{1} << 56))
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0, "body length is absurd");
  const uint64_t expected = kHeaderBytes + source_len + body_bytes + 8;
  if (size < expected)
    return path_fail(Code::kEINVAL, Reason::kSnapTruncated, path, static_cast<int64_t>(size),
                     static_cast<int64_t>(expected));
  if (size > expected)
    return path_fail(Code::kEINVAL, Reason::kSnapTrailing, path, static_cast<int64_t>(size),
                     static_cast<int64_t>(expected));
  if (fnv1a64(p, size - 8) != get_u64(p + size - 8))
    return path_fail(Code::kEINVAL, Reason::kSnapChecksum, path);
  if (pages > kMaxPages)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0, "pages is over 2^40");
  if (pages > max_pages)
    return path_fail(Code::kEINVAL, Reason::kSnapTooLarge, path, static_cast<int64_t>(pages),
                     static_cast<int64_t>(max_pages));
  if (folios > pages)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0,
                     "more folios than pages");
  if (blank_free > pages)
    return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0,
                     "blank_free is more than pages");

  // Two passes over the records: the first checks every record and that their folios add up
  // to the header's count, allocating nothing; only then is the folio list allocated, once,
  // at its exact size. A few bytes of runs can stand for billions of folios: a count that
  // physical memory cannot hold is refused (ENOMEM) before anything is allocated.
  const size_t body_start = kHeaderBytes + source_len;
  const size_t end = body_start + body_bytes;
  auto records = [&](bool emit) -> Status {
    size_t pos = body_start;
    uint64_t run_end = 0, seen = 0;
    while (pos < end) {
      const size_t at = pos;
      uint64_t gap, order, flags, refs, count;
      const char* why = nullptr;
      if (!get_varint(p, end, &pos, &gap, &why) || !get_varint(p, end, &pos, &order, &why) ||
          !get_varint(p, end, &pos, &flags, &why) || !get_varint(p, end, &pos, &refs, &why) ||
          !get_varint(p, end, &pos, &count, &why))
        return path_fail(Code::kEINVAL, Reason::kSnapBadRecord, path, static_cast<int64_t>(at),
                         0, why);
      if (count == 0)
        return path_fail(Code::kEINVAL, Reason::kSnapBadRecord, path, static_cast<int64_t>(at), 0,
                         "folio count is 0");
      if (count > folios - seen)
        return path_fail(Code::kEINVAL, Reason::kSnapBadRecord, path, static_cast<int64_t>(at), 0,
                         "more folios than the header says");
      if (gap > pages - run_end)
        return path_fail(
            Code::kEINVAL, Reason::kSnapFolioBeyond, path,
            static_cast<int64_t>(std::min<uint64_t>(gap, INT64_MAX - run_end) + run_end),
            static_cast<int64_t>(pages));
      const uint64_t pfn = run_end + gap;
      if (order > kMaxOrder)
        return path_fail(Code::kEINVAL, Reason::kSnapFolioOrderBad, path,
                         static_cast<int64_t>(std::min<uint64_t>(order, INT64_MAX)),
                         static_cast<int64_t>(pfn));
      if (flags > kSnapAllFlags)
        return path_fail(Code::kEINVAL, Reason::kSnapFolioFlags, path,
                         static_cast<int64_t>(std::min<uint64_t>(flags, INT64_MAX)),
                         static_cast<int64_t>(pfn));
      if (refs == 0 || refs > kMaxRefs)
        return path_fail(Code::kEINVAL, Reason::kSnapFolioRefs, path,
                         static_cast<int64_t>(std::min<uint64_t>(refs, INT64_MAX)),
                         static_cast<int64_t>(pfn));
      const uint64_t fsize = uint64_t{1} << order;
      if (pfn % fsize != 0)
        return path_fail(Code::kEINVAL, Reason::kSnapFolioMisaligned, path,
                         static_cast<int64_t>(pfn), static_cast<int64_t>(order));
      // The whole run must fit: count * fsize <= pages - pfn, without overflow.
      const uint64_t room = pages - pfn;
      if (count > room / fsize) {
        const uint64_t bad = pfn + (room / fsize) * fsize;
        return path_fail(Code::kEINVAL, Reason::kSnapFolioBeyond, path, static_cast<int64_t>(bad),
                         static_cast<int64_t>(pages));
      }
      if (emit) {
        for (uint64_t i = 0; i < count; ++i)
          out->folios.push_back(SnapshotFolio{pfn + i * fsize, static_cast<uint8_t>(order),
                                              static_cast<uint32_t>(refs),
                                              static_cast<uint16_t>(flags)});
      }
      seen += count;
      run_end = pfn + count * fsize;
    }
    if (seen != folios)
      return path_fail(Code::kEINVAL, Reason::kSnapBadHeader, path, 0, 0,
                       "folio count does not match the records");
    return Status::Ok();
  };
  if (Status st = records(false); !st.ok()) return st;
  if (!fits_in_memory(folios, sizeof(SnapshotFolio)))
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory,
                        static_cast<int64_t>(std::min<uint64_t>(
                            folios, uint64_t(INT64_MAX) / sizeof(SnapshotFolio)) *
                                             sizeof(SnapshotFolio)));
  out->pages = pages;
  out->odd_runs = odd_runs;
  out->blank_free = blank_free;
  out->source.assign(reinterpret_cast<const char*>(p + kHeaderBytes), source_len);
  out->folios.reserve(folios);
  return records(true);
}

}  // namespace

Status read_host_snapshot(const std::string& kpagecount, const std::string& kpageflags,
                          uint64_t max_pages, const SnapshotProgress& progress,
                          HostSnapshot* out, const RunControl* control) {
  *out = HostSnapshot{};
  Fd cfd(::open(kpagecount.c_str(), O_RDONLY | O_CLOEXEC));
  if (cfd.get() < 0) return errno_status(errno, kpagecount, true);
  Fd ffd(::open(kpageflags.c_str(), O_RDONLY | O_CLOEXEC));
  if (ffd.get() < 0) return errno_status(errno, kpageflags, true);

  uint64_t cbytes = 0, fbytes = 0;
  if (Status st = kpage_length(cfd.get(), kpagecount, &cbytes); !st.ok()) return st;
  if (Status st = kpage_length(ffd.get(), kpageflags, &fbytes); !st.ok()) return st;
  if (cbytes % 8 != 0)
    return path_fail(Code::kEINVAL, Reason::kKpageLengthOdd, kpagecount,
                     static_cast<int64_t>(cbytes));
  if (fbytes % 8 != 0)
    return path_fail(Code::kEINVAL, Reason::kKpageLengthOdd, kpageflags,
                     static_cast<int64_t>(fbytes));
  if (cbytes != fbytes)
    return Status::Fail(Code::kEINVAL, Reason::kKpageLengthDiffer, static_cast<int64_t>(cbytes),
                        static_cast<int64_t>(fbytes));
  const uint64_t entries = cbytes / 8;
  const uint64_t pages = max_pages == 0 ? entries : std::min(max_pages, entries);

  const bool host = kpagecount.rfind("/proc/", 0) == 0 && kpageflags.rfind("/proc/", 0) == 0;
  try {
    if (host) {
      struct utsname u {};
      const std::string release = ::uname(&u) == 0 ? u.release : "unknown";
      out->source = "/proc (host kernel " + release + ", " + utc_now() + ")";
    } else {
      out->source = kpagecount + " + " + kpageflags + " (read " + utc_now() + ")";
    }
    const unsigned block_order = host ? host_max_buddy_order() : kSnapMaxBuddyOrder;
    FolioBuilder builder(out, block_order);
    std::vector<uint64_t> counts(std::max<uint64_t>(kBlockEntries, uint64_t{1} << block_order));
    std::vector<uint64_t> flags(counts.size());
    uint64_t done = 0;
    while (done < pages) {
      if (stop_requested(control)) {
        *out = HostSnapshot{};
        return Status{Code::kEINVAL, Reason::kCancelled, "the snapshot"};
      }
      const uint64_t n = std::min(kBlockEntries, pages - done);
      size_t got = 0;
      if (int err = pread_full(cfd.get(), counts.data(), n * 8, done * 8, &got); err != 0)
        return errno_status(err, kpagecount, true);
      if (got != n * 8)
        return path_fail(Code::kEINVAL, Reason::kKpageShortRead, kpagecount,
                         static_cast<int64_t>(done * 8 + got), static_cast<int64_t>(pages * 8));
      if (int err = pread_full(ffd.get(), flags.data(), n * 8, done * 8, &got); err != 0)
        return errno_status(err, kpageflags, true);
      if (got != n * 8)
        return path_fail(Code::kEINVAL, Reason::kKpageShortRead, kpageflags,
                         static_cast<int64_t>(done * 8 + got), static_cast<int64_t>(pages * 8));
      for (uint64_t i = 0; i < n; ++i) builder.page(done + i, counts[i], flags[i]);
      done += n;
      if (progress) progress(done, pages);
    }
    // Look past the span (one block at most): does an open compound run or blank run go on?
    bool run_cut = false;
    uint64_t blank_through = pages;
    if (pages < entries) {
      const uint64_t n = std::min<uint64_t>(uint64_t{1} << block_order, entries - pages);
      size_t got1 = 0, got2 = 0;
      if (pread_full(cfd.get(), counts.data(), n * 8, pages * 8, &got1) == 0 &&
          pread_full(ffd.get(), flags.data(), n * 8, pages * 8, &got2) == 0 && got1 == n * 8 &&
          got2 == n * 8) {
        run_cut = (flags[0] & KPF_COMPOUND_TAIL) && !(flags[0] & KPF_COMPOUND_HEAD);
        uint64_t i = 0;
        while (i < n && is_blank(counts[i], flags[i])) ++i;
        blank_through = pages + i;
      }
    }
    builder.finish(pages, run_cut, blank_through);
    out->pages = pages;
    if (pages == 0 && progress) progress(0, 0);
  } catch (const std::bad_alloc&) {
    *out = HostSnapshot{};
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
  return Status::Ok();
}

static const char* file_kind(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

Status check_snapshot_output(const std::string& path) {
  if (path.empty() || path.back() == '/')
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "it names a directory");
  struct stat st {};
  // lstat: the path itself, never what a link points to.
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, file_kind(st.st_mode));
  } else if (errno != ENOENT) {
    return errno_status(errno, path, false);
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0) return errno_status(errno, dir, false);
  if (!S_ISDIR(st.st_mode))
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "its folder is not a directory");
  if (::access(dir.c_str(), W_OK) != 0) return errno_status(errno, dir, false);
  return Status::Ok();
}

namespace {

// A temporary name next to `path` that nobody can have planted: pid, a counter and clock bits.
std::string temp_name_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  // relaxed: uniqueness only.
  const uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  const auto t = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, ".tmp-%d-%llx-%llx", int(::getpid()),
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(t & 0xffffffffffULL));
  return path + suffix;
}

}  // namespace

Status write_snapshot(const std::string& path, const HostSnapshot& snap) {
  if (Status st = check_snapshot_output(path); !st.ok()) return st;
  std::vector<uint8_t> file;
  try {
    if (Status st = encode(path, snap, &file); !st.ok()) return st;
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
  // O_EXCL | O_NOFOLLOW: a name planted in the folder (a link, a FIFO, a file) is never opened;
  // we retry with a fresh name rather than write through it. rename() then replaces the target
  // entry itself and never follows a link there.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    tmp = temp_name_for(path);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST && errno != ELOOP) return errno_status(errno, path, false);
  }
  if (fd < 0) return errno_status(EEXIST, path, false);
  size_t put = 0;
  while (put < file.size()) {
    const ssize_t n = ::write(fd, file.data() + put, file.size() - put);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return errno_status(err, path, false);
    }
    put += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return errno_status(err, path, false);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return errno_status(err, path, false);
  }
  return Status::Ok();
}

Status read_snapshot(const std::string& path, HostSnapshot* out, uint64_t max_pages) {
  *out = HostSnapshot{};
  // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; anything but a regular
  // file is refused by the fstat below before a byte is read.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return errno_status(errno, path, false);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status(errno, path, false);
  if (!S_ISREG(st.st_mode))
    return path_fail(Code::kEINVAL, Reason::kNotRegularFile, path, 0, 0, file_kind(st.st_mode));
  // The whole file is read into memory: one that physical memory cannot hold is refused.
  if (!fits_in_memory(static_cast<uint64_t>(st.st_size), 1))
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, static_cast<int64_t>(st.st_size));
  try {
    std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
    size_t got = 0;
    if (int err = pread_full(fd.get(), bytes.data(), bytes.size(), 0, &got); err != 0)
      return errno_status(err, path, false);
    bytes.resize(got);
    Status s = decode(path, bytes, max_pages, out);
    if (!s.ok()) *out = HostSnapshot{};
    return s;
  } catch (const std::bad_alloc&) {
    *out = HostSnapshot{};
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  } catch (const std::length_error&) {
    *out = HostSnapshot{};
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
}

}  // namespace pinlab
