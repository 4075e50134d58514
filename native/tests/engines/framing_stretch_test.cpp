// The framing checker's stretch loop (FramingChecker::feed(records, n) counts a stretch of
// simple records in locals) refuses exactly the streams, with exactly the Status (record index,
// value, rule), and computes exactly the Framing that feeding the same records one at a time
// does, whatever the chunks the records arrive in (a file reader's). Seeded random streams of
// simple ops, ops with data records, mm ops and damaged records.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "engines/op_format.h"

namespace pinlab::test {

namespace {

using namespace pinlab::ops;

struct Outcome {
  Status st;
  Framing f;
  Status end;  // finish(), when every record was accepted
};

bool same_status(const Status& a, const Status& b) {
  const auto str_eq = [](const char* x, const char* y) { return x == y || (x && y && std::strcmp(x, y) == 0); };
  return a.code == b.code && a.reason == b.reason && a.value == b.value && a.limit == b.limit &&
         str_eq(a.rule, b.rule) && str_eq(a.subject, b.subject);
}

bool same_framing(const Framing& a, const Framing& b) {
  return a.records == b.records && a.ops == b.ops && a.max_tag == b.max_tag && a.next_id == b.next_id &&
         a.has_outputs == b.has_outputs;
}

// One record at a time (the reference: every record through feed(const Record&)).
Outcome one_by_one(const std::vector<Record>& r) {
  FramingChecker c("ops", IdRules{});
  Outcome o;
  for (const Record& rec : r) {
    o.st = c.feed(rec);
    if (!o.st.ok()) break;
  }
  if (o.st.ok()) o.end = c.finish();
  o.f = c.framing();
  return o;
}

// In chunks whose ends `cuts` names (the whole stream when empty).
Outcome in_chunks(const std::vector<Record>& r, const std::vector<size_t>& cuts) {
  FramingChecker c("ops", IdRules{});
  Outcome o;
  size_t at = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(r.size());
  for (size_t end : ends) {
    if (end < at) continue;
    o.st = c.feed(r.data() + at, end - at);
    at = end;
    if (!o.st.ok()) break;
  }
  if (o.st.ok()) o.end = c.finish();
  o.f = c.framing();
  return o;
}

std::vector<Record> random_stream(std::mt19937_64& rng, size_t ops, bool damage) {
  std::vector<Record> r;
  uint32_t next_id = 1;
  auto pick = [&](uint32_t n) { return uint32_t(rng() % n); };
  for (size_t i = 0; i < ops; ++i) {
    const uint32_t tag = pick(4) == 0 ? pick(70000) : pick(8);
    const uint32_t x = pick(damage ? 100 : 66);
    if (x < 45) {
      // Simple ops: single-page pins and unpins (some with flags), gets, puts, try-gets.
      const Op o = x < 15 ? Op::kPin : x < 25 ? Op::kUnpin : x < 32 ? Op::kGet : x < 39 ? Op::kPut : Op::kTryGet;
      uint8_t fl = 0;
      if ((o == Op::kPin || o == Op::kUnpin) && pick(3) == 0) fl |= flag::kWrite;
      if (o == Op::kUnpin && pick(4) == 0) fl |= flag::kDirty;
      r.push_back(make_op(o, fl, tag, 0, pick(1 << 20), o == Op::kPin || o == Op::kUnpin ? 1 + pick(3) : pick(5), 0, 0));
    } else if (x < 60) {
      // A list with its data records.
      std::vector<uint32_t> e(1 + pick(12));
      for (uint32_t& v : e) v = pick(1 << 16);
      r.push_back(make_op(pick(2) ? Op::kPin : Op::kUnpin, flag::kList, tag, 0, 0, 0, uint32_t(e.size()), 0));
      append_data(tag, e.data(), e.size(), &r);
    } else if (x < 66) {
      r.push_back(make_op(Op::kMmNew, 0, tag, next_id++, 16 + pick(64), 0, 0, 0));
    } else if (x < 72 && next_id > 1) {
      // An mm op on some id: its creator's tag or not (refused then).
      r.push_back(make_op(Op::kTouch, 0, pick(2) ? tag : pick(8), 1 + pick(next_id - 1), pick(16), 1 + pick(4), 0, 0));
    } else if (x < 80) {
      r.push_back(make_op(Op::kSetDirty, 0, tag, 0, pick(1 << 16), 0, 0, 0));
    } else if (x < 84) {
      r.push_back(make_op(Op::kAllocFolio, 0, tag, 0, 0, pick(4), 0, 0));
    } else {
      // Damage: a record of random words, or a simple op with one word or flag off.
      Record d = make_op(Op::kGet, 0, tag, 0, pick(100), 1, 0, 0);
      const uint32_t y = pick(6);
      if (y == 0) for (uint32_t& w : d.w) w = uint32_t(rng());
      else if (y == 1) d.w[1] = 1 + pick(5);        // an mm id on a page-array op
      else if (y == 2) d.w[4] = 1 + pick(3);        // entries owed: data records missing
      else if (y == 3) d.w[0] |= uint32_t(0x80) << 8;  // a flag get does not take
      else if (y == 4) d.w[0] = (d.w[0] & ~0xffu) | uint32_t(Op::kData);  // a data record without an op
      else d.w[0] = (d.w[0] & ~0xffu) | (0xf0u + pick(15));  // an unknown opcode
      r.push_back(d);
    }
  }
  return r;
}

}  // namespace

TEST(ops_framing_stretches_equal_record_by_record) {
  std::mt19937_64 rng(2121);
  uint64_t refused = 0, accepted = 0;
  for (int round = 0; round < 600; ++round) {
    // Undamaged streams a third of the time (simple ops, lists, mm-news), damaged ones else.
    std::vector<Record> r = random_stream(rng, 1 + rng() % 200, round % 3 != 0);
    if (round % 7 == 0 && !r.empty()) r.resize(rng() % r.size());  // cut anywhere, inside data too
    const Outcome want = one_by_one(r);
    std::vector<size_t> cuts;
    const Outcome whole = in_chunks(r, cuts);
    for (size_t k = 0, n = rng() % 6; k < n && !r.empty(); ++k) cuts.push_back(rng() % (r.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    const Outcome chunked = in_chunks(r, cuts);
    for (const Outcome* got : {&whole, &chunked}) {
      CHECK(same_status(got->st, want.st));
      CHECK(same_status(got->end, want.end));
      CHECK(same_framing(got->f, want.f));
    }
    (want.st.ok() && want.end.ok() ? accepted : refused) += 1;
  }
  // Both kinds were compared, many times.
  CHECK(accepted > 50);
  CHECK(refused > 200);
}

}  // namespace pinlab::test
