// Op streams, issue 14's remainder: the executor's single-page fast path against the general
// path, and format version 2 (mm-new's rules and THP orders), old streams included.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "engines/op_executor.h"
#include "engines/op_files.h"
#include "engines/op_format.h"
#include "engines/op_settings.h"
#include "engines/op_state.h"
#include "engines/replay.h"
#include "fixtures.h"

namespace pinlab::test {

namespace {

using namespace pinlab::ops;

std::shared_ptr<PageArray> v2_array(uint64_t pages, Scheme s, bool debug, bool populated = true) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages);
  cfg.populated = populated;
  cfg.scheme = s;
  cfg.debug = debug;
  std::unique_ptr<PageArray> pa;
  CHECK_OK(PageArray::create(cfg, &pa));
  return std::shared_ptr<PageArray>(std::move(pa));
}

bool same_state(const StateDigest& a, const StateDigest& b) {
  return a.pages == b.pages && a.free_blocks == b.free_blocks && a.free_pages == b.free_pages &&
         a.zero_pfn == b.zero_pfn && a.stats == b.stats && a.spaces == b.spaces &&
         a.space_count == b.space_count && a.mm_stats == b.mm_stats;
}

std::string v2_tmp(const std::string& name) {
  return "/tmp/pinlab-ops-v2-test-" + std::to_string(::getpid()) + "-" + name;
}

Status framing_of(const std::vector<Record>& r, uint32_t version) {
  FramingChecker c("ops", IdRules{}, version);
  if (Status st = c.feed(r.data(), r.size()); !st.ok()) return st;
  return c.finish();
}

}  // namespace

// Single-page pins and unpins (every flag, pages out of range, the zero page, unpins of
// unpinned pages, pins up to the bias) through a batch end in the state, statistics included,
// and with the results that the core's general calls give one by one.
TEST(ops_single_page_fast_path_equals_the_core_calls) {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      constexpr uint64_t kPages = 512;
      // Unpopulated, 24 pages allocated (the rest free: EFREE), then the zero page.
      auto a = v2_array(kPages, s, debug, false), b = v2_array(kPages, s, debug, false);
      for (int i = 0; i < 24; ++i) {
        uint64_t ha = 0, hb = 0;
        CHECK_OK(a->alloc_folio(0, false, &ha));
        CHECK_OK(b->alloc_folio(0, false, &hb));
        CHECK_EQ(ha, hb);
      }
      uint64_t za = 0, zb = 0;
      CHECK_OK(a->zero_page(&za));
      CHECK_OK(b->zero_page(&zb));
      CHECK_EQ(za, zb);
      std::mt19937_64 rng(uint64_t(s) * 7 + debug);
      std::vector<Record> batch;
      std::vector<int32_t> direct;
      for (int i = 0; i < 6000; ++i) {
        // Few pages, so pins pile up and unpins mostly find them; some out of range; the zero page.
        uint32_t pfn = uint32_t(rng() % 28);
        if (rng() % 50 == 0) pfn = uint32_t(kPages + rng() % 4);
        if (rng() % 50 == 0) pfn = uint32_t(za);
        const uint8_t fl = uint8_t(rng() % 8);  // write, per-page, dirty (unpin)
        const bool pin = rng() % 2 == 0;
        if (pin) {
          uint64_t pinned = 0;
          const Status st = a->pin_pages(PageSet::range(pfn, 1), PinFlags{bool(fl & 1), bool(fl & 2), false}, &pinned);
          direct.push_back(st.ok() ? int32_t(pinned) : -int32_t(st.code));
          batch.push_back(make_op(Op::kPin, fl & 3, 0, 0, pfn, 1, 0, 0));
        } else {
          const Status st = a->unpin_pages(PageSet::range(pfn, 1), PinFlags{bool(fl & 1), bool(fl & 2), bool(fl & 4)});
          direct.push_back(st.ok() ? 1 : -int32_t(st.code));
          batch.push_back(make_op(Op::kUnpin, fl, 0, 0, pfn, 1, 0, 0));
        }
      }
      CHECK_OK(framing_of(batch, kVersion));
      SpaceTable table;
      Executor exec(b, &table);
      std::vector<int32_t> results(batch.size());
      Tally t;
      exec.run(batch.data(), batch.size(), RunOptions{}, results.data(), &t);
      CHECK(results == direct);
      CHECK(t.refused > 0);  // ENOTPINNED, ERANGE, EFREE and EINVAL (the zero page) among them
      CHECK(t.ops - t.refused > t.ops / 4);  // and most pins and many unpins done
      CHECK(same_state(digest_state(*a, {}), digest_state(*b, {})));
    }
  }
}

// The statistics of a batch's single-page ops are in the array's before an address-space op
// runs (a race hook there may read them) and when the run returns.
TEST(ops_fast_path_statistics_are_added_before_mm_ops_and_at_the_end) {
  auto mem = v2_array(256, Scheme::kHybrid, false);
  std::vector<Record> batch;
  batch.push_back(make_op(Op::kPin, 0, 0, 0, 5, 1, 0, 0));
  batch.push_back(make_op(Op::kMmNew, 0, 0, 1, 16, 0, 0, 0));
  SpaceTable table;
  table.resize(2);
  Executor exec(mem, &table);
  exec.run(batch.data(), 1, RunOptions{}, nullptr, nullptr);
  CHECK_EQ(mem->stat(Stat::kPinAcquired), uint64_t(1));
  CHECK_EQ(mem->stat(Stat::kGrabs), uint64_t(1));
  batch[0] = make_op(Op::kUnpin, 0, 0, 0, 5, 1, 0, 0);
  exec.run(batch.data(), 1, RunOptions{}, nullptr, nullptr);
  CHECK_EQ(mem->stat(Stat::kPinReleased), uint64_t(1));
  // run_op (one op at a time) adds them at once too.
  CHECK_EQ(exec.run_op(&batch[0]), -int32_t(Code::kENOTPINNED));
  CHECK_EQ(mem->stat(Stat::kRollbacks), uint64_t(1));
}

TEST(ops_space_settings_encode_decode_and_refuse_bad_values) {
  // Every rule combination and THP set: a round trip, and 0 for the defaults.
  CHECK_EQ(encode_space_settings(MmRules::mainline(), kPmdThpOrders), 0u);
  for (uint32_t thp = 0; thp <= kAllThpOrders; thp += 4) {
    for (int z = 0; z < 2; ++z) {
      for (int f = 0; f < 2; ++f) {
        for (int m = 0; m < 2; ++m) {
          MmRules r;
          r.zero_page_unshare = z;
          r.longterm_file_writes = LongtermFileWrites(f);
          r.migrate_pte_mapped_thp = m;
          const uint32_t w = encode_space_settings(r, thp);
          MmRules back;
          uint32_t thp_back = 0;
          CHECK(decode_space_settings(w, &back, &thp_back) == nullptr);
          CHECK_EQ(thp_back, thp);
          CHECK_EQ(back.zero_page_unshare, r.zero_page_unshare);
          CHECK(back.longterm_file_writes == r.longterm_file_writes);
          CHECK_EQ(back.migrate_pte_mapped_thp, r.migrate_pte_mapped_thp);
        }
      }
    }
  }
  MmRules r;
  uint32_t thp = 0;
  CHECK(decode_space_settings(1u << 0, &r, &thp) != nullptr);                // THP order 0
  CHECK(decode_space_settings(1u << 12, &r, &thp) != nullptr);               // bits 10-15
  CHECK(decode_space_settings(2u << 16, &r, &thp) != nullptr);               // zero-page-unshare = 2
  CHECK(decode_space_settings(3u << 18, &r, &thp) != nullptr);               // longterm-file-writes = 3
  CHECK(decode_space_settings(1u << 31, &r, &thp) != nullptr);               // a rule not known
  // The framing refuses them naming the record, and a version 1 stream takes none at all.
  const uint32_t v2019 = encode_space_settings(MmRules::v2019(), 0x210);
  std::vector<Record> recs{make_op(Op::kPin, 0, 0, 0, 1, 1, 0, 0), make_op(Op::kMmNew, 0, 0, 1, 64, v2019, 0, 0)};
  CHECK_OK(framing_of(recs, 2));
  const Status v1 = framing_of(recs, 1);
  CHECK(v1.reason == Reason::kOpsRecord);
  CHECK_EQ(v1.value, int64_t(1));
  for (uint32_t bad : {1u, 2u << 16, 3u << 18, 2u << 20, 2u << 22, 2u << 24, 1u << 26, 0x400u}) {
    recs[1].w[3] = bad;
    const Status st = framing_of(recs, 2);
    CHECK_CODE(st, Code::kEINVAL);
    CHECK(st.reason == Reason::kOpsRecord);
    CHECK_EQ(st.value, int64_t(1));
    CHECK(st.rule != nullptr && std::strstr(st.rule, "mm-new settings") != nullptr);
  }
}

// An mm-new's settings make the address space the recording had: its rules and THP orders.
TEST(ops_mm_new_creates_the_recorded_rules_and_thp_orders) {
  auto mem = v2_array(1 << 14, Scheme::kHybrid, true);
  MmRules r = MmRules::v2019();
  r.migrate_pte_mapped_thp = true;
  std::vector<Record> recs{make_op(Op::kMmNew, 0, 0, 1, 4096, encode_space_settings(r, 0x210), 0, 0),
                           make_op(Op::kMmNew, 0, 0, 2, 4096, 0, 0, 0),
                           make_op(Op::kFork, 0, 0, 1, 3, 0, 0, 0)};
  CHECK_OK(framing_of(recs, kVersion));
  SpaceTable table;
  table.resize(4);
  Executor exec(mem, &table);
  std::vector<int32_t> res(3);
  exec.run(recs.data(), recs.size(), RunOptions{}, res.data(), nullptr);
  CHECK(res == std::vector<int32_t>({0, 0, 0}));
  const AddressSpace* one = table.by_id[1];
  CHECK(one != nullptr);
  CHECK_EQ(one->thp_orders(), 0x210u);
  CHECK(!one->rules().zero_page_unshare);
  CHECK(one->rules().longterm_file_writes == LongtermFileWrites::kAllow);
  CHECK(one->rules().migrate_pte_mapped_thp);
  CHECK_EQ(table.by_id[2]->thp_orders(), kPmdThpOrders);  // 0: the defaults
  CHECK(table.by_id[2]->rules().zero_page_unshare);
  CHECK_EQ(table.by_id[3]->thp_orders(), 0x210u);  // fork inherits
  CHECK(!table.by_id[3]->rules().zero_page_unshare);
  // A word the framing would refuse is EINVAL from the executor too, nothing created.
  SpaceTable t2;
  t2.resize(2);
  Executor e2(mem, &t2);
  const Record bad = make_op(Op::kMmNew, 0, 0, 1, 4096, 2u << 16, 0, 0);
  CHECK_EQ(e2.run_op(&bad), -int32_t(Code::kEINVAL));
  CHECK(t2.by_id[1] == nullptr);
}

TEST(ops_space_settings_in_the_text_form) {
  MmRules r = MmRules::v2019();
  const Record rec = make_op(Op::kMmNew, 0, 0, 1, 4096, encode_space_settings(r, 0x210), 0, 0);
  std::string line;
  format_op_line(rec, nullptr, 0, &line);
  CHECK(line == "mm#1 mm-new 4096 thp-orders=4,9 zero-page-unshare=0 longterm-file-writes=allow migrate-pte-mapped-thp=0 anon-exclusive=0");
  TextOp op;
  CHECK_OK(parse_op_line(line, "t", 1, &op));
  CHECK_EQ(op.op.w[3], rec.w[3]);
  line.clear();
  format_op_line(make_op(Op::kMmNew, 0, 0, 1, 4096, encode_space_settings(MmRules::mainline(), 0), 0, 0), nullptr, 0, &line);
  CHECK(line == "mm#1 mm-new 4096 thp-orders=none");
  CHECK_OK(parse_op_line("mm#1 mm-new 16", "t", 1, &op));
  CHECK_EQ(op.op.w[3], 0u);
  for (const char* bad : {"mm#1 mm-new 16 thp-orders=1", "mm#1 mm-new 16 thp-orders=9,9", "mm#1 mm-new 16 thp-orders=",
                          "mm#1 mm-new 16 longterm-file-writes=sometimes", "mm#1 mm-new 16 colour=blue",
                          "mm#1 mm-new 16 zero-page-unshare=2", "mm#1 mm-new 16 =3"}) {
    const Status st = parse_op_line(bad, "t", 7, &op);
    CHECK(st.reason == Reason::kOpsText);
    CHECK_EQ(st.value, int64_t(7));
  }
  // A list that, with what the stream's earlier lines expanded, would not fit in half of the
  // memory is ENOMEM naming its line, whatever its own size; the same list alone is expanded.
  {
    const Status big = parse_op_line("pin [0..9] = 10", "t", 9, &op, uint64_t{1} << 60);
    CHECK(big.code == Code::kENOMEM);
    CHECK(big.reason == Reason::kOpsText);
    CHECK_EQ(big.value, int64_t(9));
    CHECK_OK(parse_op_line("pin [0..9] = 10", "t", 9, &op));
    CHECK_EQ(op.entries.size(), size_t{10});
    CHECK(parse_op_line("pin [0..4294967294] = 3", "t", 2, &op).code == Code::kENOMEM);
  }
  // settings=N takes the raw word: the framing then judges it (naming the record).
  CHECK_OK(parse_op_line("mm#1 mm-new 16 settings=131072", "t", 1, &op));
  CHECK_EQ(op.op.w[3], 2u << 16);
  CHECK(framing_of({op.op}, kVersion).reason == Reason::kOpsRecord);
  // A version 1 text stream takes no settings; version 2 does.
  const std::string txt = v2_tmp("v.pkops.txt");
  auto write_text = [&](const std::string& s) {
    std::ofstream out(txt, std::ios::trunc);
    out << s;
  };
  const std::string body = "mm#1 mm-new 4096 longterm-file-writes=allow\nmm#1 mmap 0 16 write\n";
  OpStream s;
  write_text("pkops 1 pages=65536 scheme=bias\n" + body);
  const Status v1 = read_op_stream(txt, &s);
  CHECK(v1.reason == Reason::kOpsRecord);
  CHECK_EQ(v1.value, int64_t(0));
  write_text("pkops 2 pages=65536 scheme=bias\n" + body);
  CHECK_OK(read_op_stream(txt, &s));
  CHECK_EQ(s.header.version, 2u);
  write_text("pkops " + std::to_string(kVersion + 1) + " pages=65536 scheme=bias\n" + body);
  CHECK(read_op_stream(txt, &s).reason == Reason::kOpsText);
  std::remove(txt.c_str());
}

// Version 1 files (as the last build wrote them) still read and replay as before; a version 1
// file with settings is refused naming the record; files are written as version 2.
TEST(ops_version_1_files_still_replay) {
  std::vector<Record> recs{make_op(Op::kMmNew, 0, 0, 1, 4096, 0, 0, 0),
                           make_op(Op::kMmap, flag::kWrite | flag::kPopulate, 0, 1, 0, 64, 0, 0),
                           make_op(Op::kPinUserFast, flag::kWrite | flag::kLongterm, 0, 1, 0, 8, 0, 8),
                           make_op(Op::kPin, 0, 0, 0, 3, 1, 0, 1),
                           make_op(Op::kUnpin, 0, 0, 0, 3, 1, 0, 1)};
  Header h;
  h.pages = 1 << 14;
  h.scheme = "bias";
  h.flags = 0;
  const std::string path = v2_tmp("v1.pkops");
  auto write_stream = [&](const std::vector<Record>& r, uint32_t version) {
    OpWriter w;
    CHECK_OK(w.open(path, h));
    CHECK_OK(w.append(r.data(), r.size()));
    CHECK_OK(w.finish());
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    // Written in the oldest version that holds its ops (no unpin-lists: 3).
    CHECK_EQ(uint32_t(uint8_t(bytes[8])), kOldestWrittenVersion);
    bytes[8] = char(version);
    // The header checksum over the patched bytes 0..87 (FNV-1a over words, folded).
    uint64_t words[11];
    std::memcpy(words, bytes.data(), sizeof words);
    Checksum c;
    c.add_words(words, 11);
    const uint64_t sum = c.value();
    std::memcpy(bytes.data() + 88, &sum, 8);
    f.seekp(0);
    f.write(bytes.data(), std::streamsize(bytes.size()));
  };
  write_stream(recs, 1);
  OpStream s;
  CHECK_OK(read_op_stream(path, &s));
  CHECK_EQ(s.header.version, 1u);
  ReplayRequest req;
  for (Scheme sc : kAllSchemes) req.variants.push_back(ReplayVariant{sc, 1024, 1});
  std::vector<ReplayResult> out;
  CHECK_OK(replay_stream(s, req, nullptr, &out));
  for (const ReplayResult& r : out) {
    CHECK_EQ(r.tally.refused, uint64_t(0));
    CHECK_EQ(r.tally.diverged, uint64_t(0));
  }
  // Converted, it becomes a version 3 file with the same records.
  const std::string conv = v2_tmp("v1-conv.pkops");
  uint64_t records = 0;
  CHECK_OK(convert_op_stream(path, conv, nullptr, &records));
  OpStream s2;
  CHECK_OK(read_op_stream(conv, &s2));
  CHECK_EQ(s2.header.version, kOldestWrittenVersion);
  CHECK_EQ(s2.records.size(), s.records.size());
  CHECK(std::memcmp(s2.records.data(), s.records.data(), s.records.size() * kRecordBytes) == 0);
  // Settings in a version 1 file: refused, naming the record.
  recs[0].w[3] = encode_space_settings(MmRules::v2019(), kPmdThpOrders);
  write_stream(recs, 1);
  const Status st = read_op_stream(path, &s);
  CHECK(st.reason == Reason::kOpsRecord);
  CHECK_EQ(st.value, int64_t(0));
  // A version past this build's is refused.
  write_stream(recs, kVersion + 1);
  CHECK(read_op_stream(path, &s).reason == Reason::kOpsBadVersion);
  std::remove(path.c_str());
  std::remove(conv.c_str());
}

}  // namespace pinlab::test
