// Op streams, format version 4: unpin-lists, the one all-or-nothing call of a write-bias
// owner's drop (reads, then writes), against the core call; its framing; and the version a
// stream is written in (the oldest that holds its ops).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "check.h"
#include "engines/op_executor.h"
#include "engines/op_files.h"
#include "engines/op_format.h"
#include "engines/op_state.h"
#include "fixtures.h"

namespace pinlab::test {

namespace {

using namespace pinlab::ops;

Status v4_framing(const std::vector<Record>& r, uint32_t version = kVersion) {
  FramingChecker c("ops", IdRules{}, version);
  if (Status st = c.feed(r.data(), r.size()); !st.ok()) return st;
  return c.finish();
}

void push(std::vector<Record>* out, Op op, uint8_t flags, uint32_t a, uint32_t b,
          const std::vector<uint32_t>& entries = {}, int32_t result = 0) {
  out->push_back(make_op(op, flags, 0, 0, a, b, uint32_t(entries.size()), result));
  append_data(0, entries.data(), entries.size(), out);
}

std::string v4_tmp(const char* name) {
  return "/tmp/pinlab-ops-v4-" + std::to_string(::getpid()) + "-" + name;
}

}  // namespace

// The records end in the state, with the results and statistics, of the core calls, under every
// scheme and with debug accounting on and off: a refused unpin-lists releases nothing and
// counts one rollback, as unpin_pages_both does.
TEST(ops_v4_unpin_lists_equals_the_core_call) {
  for (Scheme s : kAllSchemes) {
    for (bool debug : {false, true}) {
      auto a = std::shared_ptr<PageArray>(make_array(256, s, debug, 0));
      auto b = std::shared_ptr<PageArray>(make_array(256, s, debug, 0));
      std::vector<Record> recs;
      std::vector<int32_t> direct;
      const std::vector<uint32_t> reads{0, 1, 2, 3}, writes{4, 5, 6, 7};
      uint64_t pinned = 0;
      CHECK_OK(a->pin_pages(PageSet::range(0, 4), PinFlags{}, &pinned));
      CHECK_OK(a->pin_pages(PageSet::range(4, 4), PinFlags{true, false, false}, &pinned));
      push(&recs, Op::kPin, 0, 0, 4, {}, 4);
      push(&recs, Op::kPin, flag::kWrite, 4, 4, {}, 4);
      direct.push_back(4);
      direct.push_back(4);
      // One write pin more than held (page 8 holds none): refused whole.
      std::vector<uint32_t> too_many = writes;
      too_many.push_back(8);
      const Status refused = a->unpin_pages_both(reads.data(), reads.size(), too_many.data(), too_many.size());
      CHECK(!refused.ok());
      direct.push_back(-int32_t(refused.code));
      std::vector<uint32_t> both = reads;
      both.insert(both.end(), too_many.begin(), too_many.end());
      push(&recs, Op::kUnpinLists, 0, 4, 5, both);
      // Then the drop that fits.
      CHECK_OK(a->unpin_pages_both(reads.data(), reads.size(), writes.data(), writes.size()));
      direct.push_back(8);
      both = reads;
      both.insert(both.end(), writes.begin(), writes.end());
      push(&recs, Op::kUnpinLists, 0, 4, 4, both);

      CHECK_OK(v4_framing(recs));
      SpaceTable table;
      Executor exec(b, &table);
      std::vector<int32_t> got(direct.size());
      Tally tally;
      CHECK_EQ(exec.run(recs.data(), recs.size(), RunOptions{}, got.data(), &tally), recs.size());
      for (size_t k = 0; k < got.size(); ++k) CHECK_EQ(got[k], direct[k]);
      CHECK_EQ(tally.refused, uint64_t(1));
      const StateDigest da = digest_state(*a, {});
      const StateDigest db = digest_state(*b, {});
      CHECK_EQ(da.pages, db.pages);
      CHECK_EQ(da.free_blocks, db.free_blocks);
      CHECK(da.stats == db.stats);
      CHECK_EQ(b->stat(Stat::kRollbacks), a->stat(Stat::kRollbacks));
      CHECK(b->stat(Stat::kRollbacks) >= 1);
      for (uint32_t p = 0; p < 8; ++p) CHECK_EQ(b->refcount(p), 1);
    }
  }
}

// Its framing: a + b entries, the R flag only, and only in a version 4 stream.
TEST(ops_v4_framing_of_unpin_lists) {
  std::vector<Record> r;
  push(&r, Op::kUnpinLists, 0, 2, 1, {1, 2, 3});
  CHECK_OK(v4_framing(r));
  // Not in a version 3 stream.
  Status st = v4_framing(r, kVersionMm13);
  CHECK(st.reason == Reason::kOpsRecord);
  CHECK(std::string(st.rule).find("later format version") != std::string::npos);
  // Entries that are not a + b, either way; a + b that wraps around 2^32.
  for (auto [a, b] : {std::pair<uint32_t, uint32_t>{2, 2}, {3, 1}, {1, 1}, {0xffffffffu, 4}}) {
    r.clear();
    push(&r, Op::kUnpinLists, 0, a, b, {1, 2, 3});
    st = v4_framing(r);
    CHECK(st.reason == Reason::kOpsRecord);
    CHECK(std::string(st.rule).find("a + b") != std::string::npos);
  }
  // Flags: R only.
  for (uint8_t fl : {flag::kWrite, flag::kDirty, flag::kList, flag::kPerPage}) {
    r.clear();
    push(&r, Op::kUnpinLists, fl, 1, 0, {1});
    CHECK(v4_framing(r).reason == Reason::kOpsRecord);
  }
  // An empty call is one op without entries.
  r.clear();
  push(&r, Op::kUnpinLists, 0, 0, 0);
  CHECK_OK(v4_framing(r));
  // A text line whose list is not a + b is refused before its list is expanded: a few bytes
  // must not cost gigabytes (the bound refuses it naming the line, not ENOMEM).
  TextOp op;
  for (const char* line : {"unpin-lists 0 0 [0..4294967294]", "unpin-lists 1 1 [5]", "unpin-lists 4294967295 1"}) {
    st = parse_op_line(line, "t", 7, &op);
    CHECK(st.reason == Reason::kOpsText);
    CHECK_EQ(st.value, int64_t(7));
    CHECK(std::string(st.rule).find("a + b") != std::string::npos);
    CHECK(op.entries.empty());
  }
  // The text form round-trips it.
  CHECK_OK(parse_op_line("unpin-lists 2 1 [7 8 9] = 3", "t", 1, &op));
  CHECK_EQ(uint32_t(opcode_of(op.op)), uint32_t(Op::kUnpinLists));
  CHECK_EQ(op.op.w[2], 2u);
  CHECK_EQ(op.op.w[3], 1u);
  CHECK_EQ(op.entries.size(), size_t(3));
  std::string line;
  format_op_line(op.op, op.entries.data(), op.entries.size(), &line);
  CHECK(line == "unpin-lists 2 1 [7..9] = 3");
}

// A stream is written in the oldest version that holds its ops: 3 without unpin-lists, 4 with
// it, in both forms, and each reads back with that version.
TEST(ops_v4_streams_are_written_in_the_version_their_ops_need) {
  Header h;
  h.pages = 64;
  h.scheme = "write-bias";
  for (const char* ext : {".pkops", ".pkops.txt"}) {
    for (bool with_lists : {false, true}) {
      std::vector<Record> r;
      push(&r, Op::kPin, 0, 0, 2, {}, 2);
      if (with_lists) push(&r, Op::kUnpinLists, 0, 2, 0, {0, 1}, 2);
      const std::string path = v4_tmp((std::string(with_lists ? "with" : "without") + ext).c_str());
      OpWriter w;
      CHECK_OK(w.open(path, h));
      CHECK_OK(w.append(r.data(), r.size()));
      CHECK_OK(w.finish());
      const uint32_t want = with_lists ? 4u : 3u;
      OpStream s;
      CHECK_OK(read_op_stream(path, &s));
      CHECK_EQ(s.header.version, want);
      CHECK_EQ(s.records.size(), r.size());
      std::ifstream f(path, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(f)), {});
      if (std::string(ext) == ".pkops") {
        CHECK_EQ(uint32_t(uint8_t(bytes[8])), want);
      } else {
        CHECK(bytes.find("\npkops " + std::to_string(want) + " pages=64 ") != std::string::npos);
      }
      std::remove(path.c_str());
    }
  }
}

}  // namespace pinlab::test
