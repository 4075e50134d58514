// Host page snapshots: kpagecount/kpageflags fixtures read into folios, the .pksnap format
// (built here by hand from its documentation, so the test checks the format, not just a
// round trip), every malformed file refused, and a small real read of /proc when readable.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "host/snapshot.h"

namespace pinlab::test {
namespace {

// KPF_* bits (pagemap.rst), written out again here so the test does not trust snapshot.cpp.
constexpr uint64_t LRU = 1ull << 5, UPTODATE = 1ull << 3, SLAB = 1ull << 7, BUDDY = 1ull << 10,
                   MMAP = 1ull << 11, ANON = 1ull << 12, HEAD = 1ull << 15, TAIL = 1ull << 16,
                   HUGE = 1ull << 17, NOPAGE = 1ull << 20, THP = 1ull << 22,
                   OFFLINE = 1ull << 23, ZERO = 1ull << 24;

// A temporary directory, removed (with the files the tests put in it) at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/pinlab-snapshot-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    path_ = d ? d : "/tmp";
  }
  ~TempDir() {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(path_.c_str());
  }
  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

void write_bytes(const std::string& path, const void* data, size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  write_bytes(path, b.data(), b.size());
}
std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

struct Kpage {
  std::vector<uint64_t> count, flags;
  explicit Kpage(size_t n) : count(n, 0), flags(n, 0) {}
  void set(size_t from, size_t to, uint64_t f, uint64_t c = 0) {  // [from, to)
    for (size_t i = from; i < to; ++i) {
      flags[i] = f;
      count[i] = c;
    }
  }
  void folio(size_t head, size_t len, uint64_t f, uint64_t c) {
    set(head, head + 1, HEAD | f, c);
    set(head + 1, head + len, TAIL | f, c);
  }
  void save(const std::string& cpath, const std::string& fpath) const {
    write_bytes(cpath, count.data(), count.size() * 8);
    write_bytes(fpath, flags.data(), flags.size() * 8);
  }
};

// The known layout of 4096 PFNs.
Kpage fixture() {
  Kpage k(4096);
  k.set(0, 16, NOPAGE);                          // a hole
  k.set(16, 17, ANON | MMAP | LRU | UPTODATE, 1);  // anon, map counts 1..3
  k.set(17, 18, ANON | MMAP | LRU | UPTODATE, 2);
  k.set(18, 19, ANON | MMAP | LRU | UPTODATE, 3);
  k.set(19, 20, LRU | UPTODATE, 0);  // page cache, not mapped
  k.set(20, 21, LRU | MMAP, 2);      // page cache, mapped twice
  k.set(21, 22, ZERO, 0);            // the zero page
  k.set(22, 23, SLAB, 0);
  k.set(23, 24, 0, 0);             // a flagless kernel page, no free block before it
  k.folio(24, 8, 0, 0);            // a kernel compound page of order 3
  k.set(32, 48, BUDDY);            // a free block of order 4: every page reads BUDDY
  k.set(48, 49, ANON, 1ull << 40);  // map count past 2^31-1: clamped
  k.folio(49, 3, SLAB, 0);         // odd run: 3 pages
  k.set(52, 53, SLAB, 0);          // ends that run
  k.set(53, 54, TAIL | SLAB, 0);   // a headless tail
  k.folio(54, 2, 0, 0);            // order 1, aligned
  k.set(56, 57, ANON, 1);
  k.folio(57, 2, 0, 0);            // order 1 run at an odd pfn: misaligned
  k.set(59, 60, 0, 0);             // flagless after a compound run: a kernel page
  k.set(60, 62, BUDDY);            // free: 60, 61; 62 is blank in a short run: allocated
  k.set(63, 64, ANON, 1);
  k.set(64, 512, NOPAGE);
  k.folio(512, 512, THP | ANON | MMAP | LRU, 1);  // anon THP
  // 1024..2047 blank: a whole aligned block of 2^10, not yet handed to the allocator: free
  k.folio(2048, 512, HUGE, 0);                    // hugetlb, in the pool
  k.set(2560, 2576, OFFLINE);
  k.set(2576, 3072, NOPAGE);
  k.folio(3072, 512, THP | MMAP | LRU, 2);  // file THP mapped twice
  k.set(3584, 4096, BUDDY);                 // free to the end
  return k;
}

std::vector<SnapshotFolio> fixture_folios() {
  const uint16_t A = kSnapAnon, F = kSnapFile, O = kSnapOther, S = kSnapSlab;
  return {
      {16, 0, 1, A},   {17, 0, 2, A},   {18, 0, 3, A},          {19, 0, 1, F},
      {20, 0, 2, F},   {21, 0, 1, kSnapZero}, {22, 0, 1, S},    {23, 0, 1, O},
      {24, 3, 1, O},   {48, 0, 2147483647u, A}, {49, 0, 1, S},  {50, 0, 1, S},
      {51, 0, 1, S},   {52, 0, 1, S},   {53, 0, 1, S},          {54, 1, 1, O},
      {56, 0, 1, A},   {57, 0, 1, O},   {58, 0, 1, O},          {59, 0, 1, O},
      {62, 0, 1, O},   {63, 0, 1, A},
      {512, 9, 1, uint16_t(kSnapThp | A)},
      {2048, 9, 1, kSnapHuge},
      {3072, 9, 2, uint16_t(kSnapThp | F)},
  };
}

bool mentions(const Status& st, const std::string& what) {
  const std::string msg = describe(st);
  if (msg.find(what) != std::string::npos) return true;
  std::fprintf(stderr, "    message \"%s\" does not mention \"%s\"\n", msg.c_str(), what.c_str());
  return false;
}

void check_folios(const std::vector<SnapshotFolio>& got, const std::vector<SnapshotFolio>& want) {
  CHECK_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (got[i] == want[i]) continue;
    fail(__FILE__, __LINE__,
         "folio " + std::to_string(i) + ": got {" + std::to_string(got[i].pfn) + ", " +
             std::to_string(got[i].order) + ", " + std::to_string(got[i].refs) + ", " +
             std::to_string(got[i].flags) + "}, want {" + std::to_string(want[i].pfn) + ", " +
             std::to_string(want[i].order) + ", " + std::to_string(want[i].refs) + ", " +
             std::to_string(want[i].flags) + "}");
  }
}

TEST(snapshot_reads_fixture_layout) {
  TempDir dir;
  const std::string c = dir.file("kpagecount"), f = dir.file("kpageflags");
  fixture().save(c, f);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  HostSnapshot snap;
  CHECK_OK(read_host_snapshot(c, f, 0, [&](uint64_t d, uint64_t t) { calls.push_back({d, t}); },
                              &snap));
  CHECK_EQ(snap.pages, 4096u);
  CHECK_EQ(snap.odd_runs, 3u);  // 49..51 (length 3), 53 (headless), 57..58 (misaligned)
  CHECK_EQ(snap.blank_free, 1024u);
  check_folios(snap.folios, fixture_folios());
  CHECK(!calls.empty());
  if (!calls.empty()) {
    CHECK_EQ(calls.back().first, 4096u);
    CHECK_EQ(calls.back().second, 4096u);
  }
  CHECK(snap.source.find(c) != std::string::npos);
}

TEST(snapshot_max_pages_cuts_the_span) {
  TempDir dir;
  const std::string c = dir.file("kpagecount"), f = dir.file("kpageflags");
  fixture().save(c, f);
  HostSnapshot snap;
  // 600: the THP at 512 is cut, so its 88 pages read are order-0 folios (an odd run).
  CHECK_OK(read_host_snapshot(c, f, 600, nullptr, &snap));
  CHECK_EQ(snap.pages, 600u);
  CHECK_EQ(snap.odd_runs, 4u);
  CHECK_EQ(snap.folios.size(), 22u + 88u);
  CHECK_EQ(snap.folios.back().pfn, 599u);
  CHECK_EQ(snap.folios.back().order, 0);
  CHECK_EQ(snap.folios.back().flags, kSnapThp | kSnapAnon);
  // 1024: the THP is whole (pfn 1024 is blank, not a tail).
  CHECK_OK(read_host_snapshot(c, f, 1024, nullptr, &snap));
  CHECK_EQ(snap.odd_runs, 3u);
  CHECK_EQ(snap.folios.size(), 23u);
  CHECK_EQ(snap.folios.back().order, 9);
  CHECK_EQ(snap.blank_free, 0u);
  // 1500: the blank block from 1024 is cut, but blank past the span to its end: free.
  CHECK_OK(read_host_snapshot(c, f, 1500, nullptr, &snap));
  CHECK_EQ(snap.folios.size(), 23u);
  CHECK_EQ(snap.blank_free, 476u);
  // 63: pfn 62, a blank page between a free page and an anon one, is allocated.
  CHECK_OK(read_host_snapshot(c, f, 63, nullptr, &snap));
  CHECK_EQ(snap.folios.size(), 21u);
  CHECK_EQ(snap.folios.back().pfn, 62u);
  // More than the files hold: all of them.
  CHECK_OK(read_host_snapshot(c, f, 1u << 30, nullptr, &snap));
  CHECK_EQ(snap.pages, 4096u);
  check_folios(snap.folios, fixture_folios());
}

// Runs and free blocks that straddle the 64 Ki-entry read blocks.
TEST(snapshot_state_crosses_read_blocks) {
  TempDir dir;
  const std::string c = dir.file("kpagecount"), f = dir.file("kpageflags");
  const size_t n = 262144 + 1000;
  Kpage k(n);
  k.set(0, n, ANON, 1);
  k.set(64000, 67800, 0, 0);         // blank: blocks 64512..67583 free, the ends allocated
  k.set(67800, 67811, TAIL, 0);      // headless tails
  k.folio(131072, 131072, HUGE, 0);  // hugetlb of order 17: 131072..262143
  k.save(c, f);
  std::vector<SnapshotFolio> want;
  for (uint64_t p = 0; p < 64000; ++p) want.push_back({p, 0, 1, kSnapAnon});
  for (uint64_t p = 64000; p < 64512; ++p) want.push_back({p, 0, 1, kSnapOther});
  for (uint64_t p = 67584; p < 67811; ++p) want.push_back({p, 0, 1, kSnapOther});
  for (uint64_t p = 67811; p < 131072; ++p) want.push_back({p, 0, 1, kSnapAnon});
  want.push_back({131072, 17, 1, kSnapHuge});
  for (uint64_t p = 262144; p < n; ++p) want.push_back({p, 0, 1, kSnapAnon});
  int calls = 0;
  uint64_t last = 0;
  bool monotone = true;
  HostSnapshot snap;
  CHECK_OK(read_host_snapshot(c, f, 0, [&](uint64_t d, uint64_t t) {
    ++calls;
    monotone = monotone && d > last && t == n;
    last = d;
  }, &snap));
  CHECK_EQ(snap.odd_runs, 1u);
  CHECK_EQ(snap.blank_free, 3072u);
  check_folios(snap.folios, want);
  CHECK_EQ(calls, 5);
  CHECK(monotone);
  CHECK_EQ(last, n);
  // Spans that end inside the blank run: the partial block is free only if it is blank to
  // its end past the span.
  CHECK_OK(read_host_snapshot(c, f, 65000, nullptr, &snap));
  CHECK_EQ(snap.blank_free, 65000u - 64512u);
  CHECK_EQ(snap.folios.size(), 64512u);
  CHECK_OK(read_host_snapshot(c, f, 64300, nullptr, &snap));
  CHECK_EQ(snap.blank_free, 0u);
  CHECK_EQ(snap.folios.size(), 64300u);
  // A span ending inside the hugetlb folio: odd, page by page.
  CHECK_OK(read_host_snapshot(c, f, 131072 + 100, nullptr, &snap));
  CHECK_EQ(snap.odd_runs, 2u);
  CHECK_EQ(snap.folios.back().pfn, 131171u);
  CHECK_EQ(snap.folios.back().flags, kSnapHuge);
}

TEST(snapshot_read_host_errors) {
  TempDir dir;
  const std::string c = dir.file("kpagecount"), f = dir.file("kpageflags");
  const std::string missing = dir.file("missing");
  fixture().save(c, f);
  HostSnapshot snap;
  Status st = read_host_snapshot(missing, f, 0, nullptr, &snap);
  CHECK_CODE(st, Code::kENOENT);
  CHECK(mentions(st, missing));
  st = read_host_snapshot(c, missing, 0, nullptr, &snap);
  CHECK_CODE(st, Code::kENOENT);
  CHECK(mentions(st, missing));

  const std::string odd = dir.file("odd"), shorter = dir.file("shorter");
  write_bytes(odd, std::vector<uint8_t>(4096 * 8 + 4, 0));
  st = read_host_snapshot(odd, f, 0, nullptr, &snap);
  CHECK_CODE(st, Code::kEINVAL);
  CHECK(mentions(st, odd + " is 32772 bytes long, not a multiple of 8"));
  write_bytes(shorter, std::vector<uint8_t>(4095 * 8, 0));
  st = read_host_snapshot(c, shorter, 0, nullptr, &snap);
  CHECK_CODE(st, Code::kEINVAL);
  CHECK(mentions(st, "differ in length"));

  // An empty pair reads as an empty span.
  const std::string e1 = dir.file("e1"), e2 = dir.file("e2");
  write_bytes(e1, nullptr, 0);
  write_bytes(e2, nullptr, 0);
  int calls = 0;
  CHECK_OK(read_host_snapshot(e1, e2, 0, [&](uint64_t, uint64_t) { ++calls; }, &snap));
  CHECK_EQ(snap.pages, 0u);
  CHECK(snap.folios.empty());
  CHECK_EQ(calls, 1);

  const std::string locked = dir.file("locked");
  fixture().save(locked, f);
  ::chmod(locked.c_str(), 0);
  if (::geteuid() == 0) {
    std::printf("        running as root: chmod 000 does not stop reads, EACCES not checked\n");
  } else {
    st = read_host_snapshot(locked, f, 0, nullptr, &snap);
    CHECK_CODE(st, Code::kEACCES);
    CHECK(mentions(st, "needs root (CAP_SYS_ADMIN) to read " + locked));
    st = read_snapshot(locked, &snap);
    CHECK_CODE(st, Code::kEACCES);
    CHECK(mentions(st, locked));
  }
}

// ---- the .pksnap format, built by hand from snapshot.h ----

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
void le(std::vector<uint8_t>& b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void varint(std::vector<uint8_t>& b, uint64_t v) {
  for (; v >= 0x80; v >>= 7) b.push_back(uint8_t(v | 0x80));
  b.push_back(uint8_t(v));
}
struct Run {
  uint64_t gap, order, flags, refs, count;
};
std::vector<uint8_t> make_file(uint64_t pages, uint64_t folios, uint64_t odd,
                               const std::string& source, const std::vector<Run>& runs,
                               uint32_t version = 1, uint64_t blank = 0) {
  std::vector<uint8_t> body;
  for (const Run& r : runs) {
    varint(body, r.gap);
    varint(body, r.order);
    varint(body, r.flags);
    varint(body, r.refs);
    varint(body, r.count);
  }
  std::vector<uint8_t> b = {'P', 'K', 'S', 'N', 'A', 'P', '1', 0};
  le(b, version, 4);
  le(b, 0, 4);
  le(b, pages, 8);
  le(b, folios, 8);
  le(b, odd, 8);
  le(b, blank, 8);
  le(b, body.size(), 8);
  le(b, source.size(), 4);
  b.insert(b.end(), source.begin(), source.end());
  b.insert(b.end(), body.begin(), body.end());
  le(b, fnv1a(b.data(), b.size()), 8);
  return b;
}
void reseal(std::vector<uint8_t>& b) {  // recomputes the checksum after an edit
  b.resize(b.size() - 8);
  le(b, fnv1a(b.data(), b.size()), 8);
}

TEST(snapshot_format_matches_its_documentation) {
  TempDir dir;
  const std::string path = dir.file("hand.pksnap");
  // 3 anon pages at 16..18 (refs 1), a gap to an order-9 THP at 512 (refs 2), 2 order-0
  // file pages right after it.
  write_bytes(path, make_file(4096, 6, 1, "hand",
                              {{16, 0, kSnapAnon, 1, 3},
                               {512 - 19, 9, kSnapThp | kSnapAnon, 2, 1},
                               {0, 0, kSnapFile, 1, 2}},
                              1, 2048));
  HostSnapshot snap;
  CHECK_OK(read_snapshot(path, &snap));
  CHECK_EQ(snap.pages, 4096u);
  CHECK_EQ(snap.odd_runs, 1u);
  CHECK_EQ(snap.blank_free, 2048u);
  CHECK(snap.source == "hand");
  check_folios(snap.folios, {{16, 0, 1, kSnapAnon},
                             {17, 0, 1, kSnapAnon},
                             {18, 0, 1, kSnapAnon},
                             {512, 9, 2, uint16_t(kSnapThp | kSnapAnon)},
                             {1024, 0, 1, kSnapFile},
                             {1025, 0, 1, kSnapFile}});
  // write_snapshot produces exactly these bytes.
  const std::string again = dir.file("again.pksnap");
  CHECK_OK(write_snapshot(again, snap));
  CHECK(read_bytes(again) == read_bytes(path));
}

TEST(snapshot_round_trip) {
  TempDir dir;
  const std::string c = dir.file("kpagecount"), f = dir.file("kpageflags");
  fixture().save(c, f);
  HostSnapshot snap, back;
  CHECK_OK(read_host_snapshot(c, f, 0, nullptr, &snap));
  const std::string path = dir.file("fixture.pksnap");
  CHECK_OK(write_snapshot(path, snap));
  CHECK_OK(read_snapshot(path, &back));
  CHECK(back == snap);

  // Extremes: order 30, refs 2^31-1, every flag, a long source, an empty snapshot.
  HostSnapshot big;
  big.pages = 1ull << 31;
  big.source = std::string(1000, 'x') + " \xc3\xa9";
  big.odd_runs = 7;
  big.blank_free = 1ull << 30;
  big.folios = {{0, 0, 2147483647u, kSnapAllFlags}, {1ull << 30, 30, 1, kSnapHuge}};
  CHECK_OK(write_snapshot(path, big));
  CHECK_OK(read_snapshot(path, &back));
  CHECK(back == big);
  CHECK_OK(write_snapshot(path, HostSnapshot{}));
  CHECK_OK(read_snapshot(path, &back));
  CHECK(back == HostSnapshot{});
}

TEST(snapshot_write_refuses_bad_snapshots) {
  TempDir dir;
  const std::string path = dir.file("bad.pksnap");
  auto refused = [&](std::vector<SnapshotFolio> folios, const char* what) {
    HostSnapshot s;
    s.pages = 64;
    s.folios = std::move(folios);
    const Status st = write_snapshot(path, s);
    CHECK_CODE(st, Code::kEINVAL);
    CHECK(mentions(st, what));
  };
  refused({{10, 0, 1, kSnapAnon}, {5, 0, 1, kSnapAnon}}, "pfn 5 is out of order");
  refused({{0, 3, 1, kSnapAnon}, {4, 0, 1, kSnapAnon}}, "pfn 4 is out of order");
  refused({{0, 0, 1, kSnapAnon}, {0, 0, 1, kSnapAnon}}, "pfn 0 is out of order");
  refused({{8, 4, 1, kSnapAnon}}, "pfn 8 is not aligned to its order 4");
  refused({{64, 0, 1, kSnapAnon}}, "pfn 64 extends beyond pages 64");
  refused({{0, 31, 1, kSnapAnon}}, "bad order 31");
  refused({{1, 0, 0, kSnapAnon}}, "bad refs 0");
  refused({{1, 0, 1, 128}}, "unknown flag bits 128");
  CHECK(::access(path.c_str(), F_OK) != 0);  // nothing written
  const std::string nodir = dir.file("no-such-dir") + "/x.pksnap";
  CHECK_CODE(write_snapshot(nodir, HostSnapshot{}), Code::kENOENT);
}

TEST(snapshot_malformed_files_refused) {
  TempDir dir;
  const std::string path = dir.file("m.pksnap");
  const std::vector<uint8_t> good =
      make_file(4096, 4, 0, "src", {{16, 0, kSnapAnon, 1, 3}, {493, 9, kSnapThp, 1, 1}});
  HostSnapshot snap;
  write_bytes(path, good);
  CHECK_OK(read_snapshot(path, &snap));
  const size_t size = good.size();

  auto refused = [&](const std::vector<uint8_t>& bytes, const std::string& what) {
    write_bytes(path, bytes);
    HostSnapshot s;
    s.pages = 99;
    const Status st = read_snapshot(path, &s);
    CHECK_CODE(st, Code::kEINVAL);
    CHECK(mentions(st, path));
    CHECK(mentions(st, what));
    CHECK(s == HostSnapshot{});  // left empty
  };
  // Truncated anywhere.
  for (size_t cut : {size_t{0}, size_t{5}, size_t{8}, size_t{59}, size_t{60}, size_t{62},
                     size - 8, size - 1}) {
    std::vector<uint8_t> b(good.begin(), good.begin() + long(cut));
    refused(b, "truncated at byte " + std::to_string(cut) + " (needs " +
                   std::to_string(cut < 60 ? 60 : size) + " bytes)");
  }
  std::vector<uint8_t> b = good;
  b.push_back(0);
  refused(b, "trailing bytes");
  // A flipped byte anywhere past the version: checksum.
  for (size_t at : {size_t{16}, size_t{40}, size_t{61}, size - 9, size - 1}) {
    b = good;
    b[at] ^= 0x20;
    refused(b, "checksum mismatch");
  }
  b = good;
  b[0] = 'X';
  refused(b, "not a pinlab snapshot (bad magic)");
  refused(std::vector<uint8_t>{'G', 'I', 'F'}, "bad magic");
  refused(make_file(4096, 4, 0, "src", {{16, 0, kSnapAnon, 1, 3}}, 2),
          "unsupported snapshot version 2 (this build reads version 1)");
  b = good;
  b[12] = 1;
  reseal(b);
  refused(b, "reserved field is not 0");
  // Sealed with a valid checksum, but wrong inside.
  refused(make_file(16, 17, 0, "", {}), "more folios than pages");
  refused(make_file(16, 0, 0, "", {}, 1, 17), "blank_free is more than pages");
  refused(make_file((1ull << 40) + 1, 0, 0, "", {}), "pages is over 2^40");
  refused(make_file(4096, 4, 0, "", {{16, 0, kSnapAnon, 1, 3}}), "folio count does not match");
  refused(make_file(4096, 1, 0, "", {{16, 0, kSnapAnon, 1, 3}}),
          "more folios than the header says");
  refused(make_file(4096, 1, 0, "", {{16, 0, kSnapAnon, 1, 0}}), "folio count is 0");
  refused(make_file(4096, 1, 0, "", {{4096, 0, kSnapAnon, 1, 1}}),
          "folio at pfn 4096 extends beyond pages 4096");
  refused(make_file(4096, 1, 0, "", {{0, 13, kSnapAnon, 1, 1}}),
          "folio at pfn 0 extends beyond pages 4096");
  refused(make_file(4096, 3, 0, "", {{4094, 0, kSnapAnon, 1, 3}}),
          "folio at pfn 4096 extends beyond pages 4096");
  refused(make_file(1ull << 40, 1, 0, "", {{0, 31, kSnapAnon, 1, 1}}), "bad order 31");
  refused(make_file(4096, 1, 0, "", {{16, 9, kSnapAnon, 1, 1}}),
          "folio at pfn 16 is not aligned to its order 9");
  refused(make_file(4096, 1, 0, "", {{16, 0, kSnapAnon, 0, 1}}), "bad refs 0");
  refused(make_file(4096, 1, 0, "", {{16, 0, kSnapAnon, 1ull << 31, 1}}), "bad refs 2147483648");
  refused(make_file(4096, 1, 0, "", {{16, 0, 200, 1, 1}}), "unknown flag bits 200");
  b = make_file(4096, 1, 0, "", {{16, 0, kSnapAnon, 1, 1}});
  b[b.size() - 9] |= 0x80;  // the last varint says "more follows"
  reseal(b);
  refused(b, "a varint runs past the end of the body");
  std::vector<uint8_t> body(11, 0xff);
  body.push_back(0);
  b = make_file(4096, 0, 0, "", {});
  b.resize(b.size() - 8);
  b.insert(b.end(), body.begin(), body.end());
  for (int i = 0; i < 8; ++i) b[48 + i] = uint8_t(i == 0 ? body.size() : 0);
  le(b, 0, 8);
  reseal(b);
  refused(b, "a varint is longer than 64 bits");

  // Open errors.
  const std::string missing = dir.file("missing.pksnap");
  Status st = read_snapshot(missing, &snap);
  CHECK_CODE(st, Code::kENOENT);
  CHECK(mentions(st, "no such file: " + missing));
}

// A real read of the first 64 Ki PFNs of this host, when /proc lets us.
TEST(snapshot_real_host_first_65536) {
  const int fd = ::open("/proc/kpageflags", O_RDONLY);
  if (fd < 0) {
    std::printf("        /proc/kpageflags not readable (%s): real read skipped\n",
                std::strerror(errno));
    return;
  }
  ::close(fd);
  HostSnapshot snap;
  uint64_t last_done = 0, last_total = 0;
  const Status st = read_host_snapshot("/proc/kpagecount", "/proc/kpageflags", 65536,
                                       [&](uint64_t d, uint64_t t) {
                                         last_done = d;
                                         last_total = t;
                                       },
                                       &snap);
  CHECK_OK(st);
  if (!st.ok()) return;
  CHECK(snap.pages <= 65536u);
  CHECK_EQ(last_done, snap.pages);
  CHECK_EQ(last_total, snap.pages);
  uint64_t by_flag[7] = {}, pages_in = 0, max_order = 0;
  for (const SnapshotFolio& f : snap.folios) {
    for (int b = 0; b < 7; ++b)
      if (f.flags & (1u << b)) ++by_flag[b];
    pages_in += 1ull << f.order;
    if (f.order > max_order) max_order = f.order;
  }
  std::printf("        %s: %llu pfns, %zu folios covering %llu pages (max order %llu, %llu odd "
              "runs, %llu blank pages free); anon %llu file %llu thp %llu huge %llu zero %llu slab %llu other %llu\n",
              snap.source.c_str(), (unsigned long long)snap.pages, snap.folios.size(),
              (unsigned long long)pages_in, (unsigned long long)max_order,
              (unsigned long long)snap.odd_runs, (unsigned long long)snap.blank_free,
              (unsigned long long)by_flag[0],
              (unsigned long long)by_flag[1], (unsigned long long)by_flag[2],
              (unsigned long long)by_flag[3], (unsigned long long)by_flag[4],
              (unsigned long long)by_flag[5], (unsigned long long)by_flag[6]);
  // What was read is a valid snapshot: it writes and reads back equal.
  TempDir dir;
  const std::string path = dir.file("host.pksnap");
  CHECK_OK(write_snapshot(path, snap));
  HostSnapshot back;
  CHECK_OK(read_snapshot(path, &back));
  CHECK(back == snap);
}

}  // namespace
}  // namespace pinlab::test

// ---- sizes checked before anything is allocated ----

namespace pinlab::test {
namespace {

void put_varint_bytes(std::vector<uint8_t>& b, uint64_t v) {
  while (v >= 0x80) {
    b.push_back(uint8_t(v | 0x80));
    v >>= 7;
  }
  b.push_back(uint8_t(v));
}

// A .pksnap with one run record (gap 0, flags 1, refs 1) and the header's pages and folios.
std::vector<uint8_t> one_run_file(uint64_t pages, uint64_t folios, uint64_t order, uint64_t count) {
  std::vector<uint8_t> body;
  for (uint64_t v : {uint64_t{0}, order, uint64_t{1}, uint64_t{1}, count}) put_varint_bytes(body, v);
  std::vector<uint8_t> f(60, 0);
  std::memcpy(f.data(), "PKSNAP1\0", 8);
  auto put = [&](size_t at, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) f[at + i] = uint8_t(v >> (8 * i));
  };
  put(8, 1, 4);
  put(16, pages, 8);
  put(24, folios, 8);
  put(48, body.size(), 8);
  for (uint8_t c : body) f.push_back(c);
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t c : f) h = (h ^ c) * 0x100000001b3ull;
  for (int i = 0; i < 8; ++i) f.push_back(uint8_t(h >> (8 * i)));
  return f;
}

std::string write_bytes(const std::string& dir, const char* name, const std::vector<uint8_t>& b) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  return path;
}

TEST(snapshot_sizes_are_checked_before_allocating) {
  char tmpl[] = "/tmp/pinlab-snaplimits-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  HostSnapshot snap;
  // A few bytes claiming 2^40 folios: refused by a reader that takes at most 2^31 pages,
  // before any folio is decoded; the format's own limit still reads the header.
  const std::string huge = write_bytes(dir, "huge.pksnap", one_run_file(uint64_t{1} << 40, uint64_t{1} << 40, 0, uint64_t{1} << 40));
  Status st = read_snapshot(huge, &snap, uint64_t{1} << 31);
  CHECK_CODE(st, Code::kEINVAL);
  CHECK(st.reason == Reason::kSnapTooLarge);
  CHECK(snap.folios.empty());
  // Read with the format's limit: 16 TiB of folios cannot be held: ENOMEM, not an attempt.
  st = read_snapshot(huge, &snap);
  CHECK_CODE(st, Code::kENOMEM);
  CHECK(snap.folios.empty() && snap.pages == 0);
  // Records that add up to fewer folios than the header claims are refused in the first
  // pass, before the list is allocated at the claimed size.
  const std::string short_by_one =
      write_bytes(dir, "short.pksnap", one_run_file(uint64_t{1} << 40, (uint64_t{1} << 40) - 1, 0, 1));
  CHECK_CODE(read_snapshot(short_by_one, &snap), Code::kEINVAL);
  // A small honest file still reads.
  const std::string small = write_bytes(dir, "small.pksnap", one_run_file(1024, 2, 9, 2));
  CHECK_OK(read_snapshot(small, &snap, 1024));
  CHECK_EQ(snap.folios.size(), size_t{2});
  CHECK_CODE(read_snapshot(small, &snap, 1023), Code::kEINVAL);
  // A FIFO is refused at once (opening it used to wait for a writer forever).
  const std::string fifo = dir + "/fifo.pksnap";
  if (::mkfifo(fifo.c_str(), 0600) == 0) {
    CHECK_CODE(read_snapshot(fifo, &snap), Code::kEINVAL);
    ::unlink(fifo.c_str());
  }
  for (const std::string& p : {huge, short_by_one, small}) ::unlink(p.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace pinlab::test
