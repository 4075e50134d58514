// Op streams, format version 3: the executor's cases for issue 13's calls (madvise of every
// advice, mremap, khugepaged, hugetlb, private file mappings, file zaps, shmem, swap slots)
// against the core calls themselves, their framing checks, and their text form.
#include <string>
#include <vector>

#include "check.h"
#include "engines/op_executor.h"
#include "engines/op_format.h"
#include "engines/op_state.h"
#include "fixtures.h"

namespace pinlab::test {

namespace {

using namespace pinlab::ops;

std::shared_ptr<PageArray> v3_array(Scheme s) {
  return std::shared_ptr<PageArray>(make_array(1 << 13, s, /*debug=*/true, 0, 1, kDefaultBias, /*populated=*/false));
}

Status v3_framing(const std::vector<Record>& r, uint32_t version = kVersion) {
  FramingChecker c("ops", IdRules{}, version);
  if (Status st = c.feed(r.data(), r.size()); !st.ok()) return st;
  return c.finish();
}

// One op and its entries, appended to *out.
void push(std::vector<Record>* out, Op op, uint8_t flags, uint32_t mm, uint32_t a, uint32_t b,
          const std::vector<uint32_t>& entries = {}, int32_t result = 0) {
  out->push_back(make_op(op, flags, 0, mm, a, b, uint32_t(entries.size()), result));
  append_data(0, entries.data(), entries.size(), out);
}

int32_t result_of_status(const Status& st, int32_t ok) { return st.ok() ? ok : -int32_t(st.code); }

// A call's result with the count it wrote (the call first, then the count read).
template <typename F>
int32_t counted(F&& call, const uint64_t& count) {
  const Status st = call();
  return result_of_status(st, int32_t(count));
}

}  // namespace

// The records of issue 13's calls end in the state, with the results, of the core calls they
// stand for, under every scheme.
TEST(ops_v3_records_equal_the_core_calls) {
  for (Scheme s : kAllSchemes) {
    auto a = v3_array(s), b = v3_array(s);
    std::vector<int32_t> direct;
    std::vector<Record> recs;
    // A file's pages (as a page cache allocates them), the same on both arrays.
    std::vector<uint32_t> file;
    for (int i = 0; i < 8; ++i) {
      uint64_t h = 0, hb = 0;
      CHECK_OK(a->alloc_folio(0, false, &h));
      CHECK_OK(b->alloc_folio(0, false, &hb));
      CHECK_EQ(h, hb);
      file.push_back(uint32_t(h));
    }
    // The pool, a hugetlb file's pages, an address space with 40 swap slots.
    direct.push_back(result_of_status(a->hugetlb_set_pages(9, 4), 0));
    push(&recs, Op::kHugetlbPool, 0, 0, 9, 4);
    std::vector<uint32_t> heads;
    direct.push_back(result_of_status(a->hugetlb_alloc_pages(9, 1, &heads), 1));
    CHECK_EQ(heads.size(), size_t(1));
    push(&recs, Op::kHugetlbAlloc, 0, 0, 9, 1, heads);
    std::unique_ptr<AddressSpace> as;
    CHECK_OK(AddressSpace::create(a, 4096, MmRules::mainline(), kPmdThpOrders, 40, &as));
    direct.push_back(0);
    push(&recs, Op::kMmNew, 0, 1, 4096, 0, {40});
    // Hugetlb: anonymous private and shared, the file mapped private; a bad order.
    direct.push_back(result_of_status(as->mmap_hugetlb(HugetlbMmapArgs{0, 512, 9, true, false, false}), 0));
    push(&recs, Op::kMmapHugetlb, flag::kWrite, 1, 0, 512, {9});
    direct.push_back(result_of_status(as->mmap_hugetlb(HugetlbMmapArgs{512, 512, 9, true, false, true}), 0));
    push(&recs, Op::kMmapHugetlb, flag::kWrite | flag::kShared, 1, 512, 512, {9});
    direct.push_back(result_of_status(as->mmap_hugetlb(HugetlbMmapArgs{3584, 512, 10, true, false, false}), 0));
    push(&recs, Op::kMmapHugetlb, flag::kWrite, 1, 3584, 512, {10});
    direct.push_back(result_of_status(as->map_hugetlb_file(1024, heads.data(), 1, 9, true, false), 0));
    push(&recs, Op::kMmapHugetlbFile, flag::kWrite, 1, 1024, 9, heads);
    direct.push_back(result_of_status(as->touch(0, 512, true), 0));
    push(&recs, Op::kTouch, flag::kWrite, 1, 0, 512);
    direct.push_back(result_of_status(as->touch(1024, 4, true), 0));  // COW of the file's page
    push(&recs, Op::kTouch, flag::kWrite, 1, 1024, 4);
    // A file's pages mapped private (shmem: not dirty-tracked) and shared, then zapped.
    direct.push_back(result_of_status(as->map_private(1536, file.data(), 8, true, false), 0));
    push(&recs, Op::kMmapFilePrivate, flag::kWrite | flag::kShmem, 1, 1536, 0, file);
    direct.push_back(result_of_status(as->map_shared(1600, file.data(), 8, true, false), 0));
    push(&recs, Op::kMmapFile, flag::kWrite | flag::kShmem, 1, 1600, 0, file);
    direct.push_back(result_of_status(as->touch(1536, 2, true), 0));
    push(&recs, Op::kTouch, flag::kWrite, 1, 1536, 2);
    direct.push_back(result_of_status(as->zap_file(1536, 4, true), 0));
    push(&recs, Op::kZapFile, flag::kEvenCows, 1, 1536, 4);
    direct.push_back(result_of_status(as->zap_file(1540, 4, false), 0));
    push(&recs, Op::kZapFile, 0, 1, 1540, 4);
    // A THP made PTE-mapped, collapsed back; pageout, dontneed, dontfork, dofork; swap-ins.
    direct.push_back(result_of_status(as->mmap(MmapArgs{2048, 1024, true, true, true}), 0));
    push(&recs, Op::kMmap, flag::kWrite | flag::kPopulate | flag::kHuge, 1, 2048, 1024);
    for (bool w : {false, true}) {
      direct.push_back(result_of_status(as->mprotect(2049, 1, w), 0));
      push(&recs, Op::kMprotect, w ? flag::kWrite : 0, 1, 2049, 1);
    }
    uint64_t made = 0;
    const Status collapsed = as->collapse(2048, 512, &made);
    CHECK_EQ(made, uint64_t(1));
    direct.push_back(result_of_status(collapsed, int32_t(made)));
    push(&recs, Op::kMadvise, 0, 1, 2048, 512, {kAdviceCollapse});
    for (uint32_t adv = 0; adv < 4; ++adv) {
      const int64_t start = 2560 + 64 * adv;
      direct.push_back(result_of_status(as->madvise(start, 64, Advice(adv)), 0));
      push(&recs, Op::kMadvise, 0, 1, uint32_t(start), 64, {adv});
    }
    direct.push_back(result_of_status(as->madvise(2560, 512, Advice::kPageOut), 0));
    push(&recs, Op::kMadvise, 0, 1, 2560, 512, {3});
    direct.push_back(result_of_status(as->mmap(MmapArgs{3300, 64, true, true, false}), 0));
    push(&recs, Op::kMmap, flag::kWrite | flag::kPopulate, 1, 3300, 64);
    direct.push_back(result_of_status(as->madvise(3300, 48, Advice::kPageOut), 0));
    push(&recs, Op::kMadvise, 0, 1, 3300, 48, {3});
    direct.push_back(result_of_status(as->touch(3300, 16, false), 0));  // swap-ins
    push(&recs, Op::kTouch, 0, 1, 3300, 16);
    // mremap: move (lowest free area), fixed, dont_unmap, a refused one; khugepaged.
    uint64_t at = 0;
    MremapArgs m{2560, 64, 128, -1, true, false, false};
    direct.push_back(counted([&] { return as->mremap(m, &at); }, at));
    push(&recs, Op::kMremap, flag::kMayMove, 1, 2560, 64, {128, kNoValue});
    m = MremapArgs{2624, 32, 32, 3000, true, true, false};
    direct.push_back(counted([&] { return as->mremap(m, &at); }, at));
    push(&recs, Op::kMremap, flag::kMayMove | flag::kFixed, 1, 2624, 32, {32, 3000});
    m = MremapArgs{2700, 16, 16, -1, true, false, true};
    direct.push_back(counted([&] { return as->mremap(m, &at); }, at));
    push(&recs, Op::kMremap, flag::kMayMove | flag::kDontUnmap, 1, 2700, 16, {16, kNoValue});
    m = MremapArgs{2800, 8, 8, 2802, true, true, false};  // overlaps itself: EINVAL
    direct.push_back(counted([&] { return as->mremap(m, &at); }, at));
    push(&recs, Op::kMremap, flag::kMayMove | flag::kFixed, 1, 2800, 8, {8, 2802});
    uint64_t scanned = 0;
    direct.push_back(counted([&] { return as->khugepaged(KhugepagedArgs{511, 256}, &made, &scanned); }, made));
    push(&recs, Op::kKhugepaged, 0, 1, 511, 256);
    direct.push_back(counted([&] { return as->khugepaged(KhugepagedArgs{512, 0}, &made, &scanned); }, made));
    push(&recs, Op::kKhugepaged, 0, 1, 512, 0);

    CHECK_OK(v3_framing(recs));
    SpaceTable table;
    table.resize(2);
    Executor exec(b, &table);
    std::vector<int32_t> got(direct.size());
    Tally tally;
    CHECK_EQ(exec.run(recs.data(), recs.size(), RunOptions{}, got.data(), &tally), recs.size());
    for (size_t k = 0; k < got.size(); ++k) CHECK_EQ(got[k], direct[k]);
    CHECK(tally.refused >= 2);  // the bad order and the overlapping mremap
    const StateDigest da = digest_state(*a, {{1, as.get()}});
    const StateDigest db = digest_state(*b, {{1, table.by_id[1]}});
    CHECK_EQ(da.pages, db.pages);
    CHECK_EQ(da.free_blocks, db.free_blocks);
    CHECK_EQ(da.spaces, db.spaces);
    CHECK(da.stats == db.stats);
    CHECK(da.mm_stats == db.mm_stats);
    CHECK_EQ(table.by_id[1]->swap_usage().capacity, uint64_t(40));
    CHECK(table.by_id[1]->swapped_pages() > 0);
    // ...and the digest sees what these ops change: one more swapped page differs.
    CHECK_OK(table.by_id[1]->madvise(3340, 1, Advice::kPageOut));
    CHECK(digest_state(*b, {{1, table.by_id[1]}}).spaces != da.spaces);
  }
}

// A recorded hugetlb-alloc head names the page allocated in its place now, wherever it is.
TEST(ops_v3_hugetlb_alloc_heads_follow_the_pages) {
  auto mem = v3_array(Scheme::kHybrid);
  std::vector<Record> recs;
  push(&recs, Op::kHugetlbPool, 0, 0, 9, 2);
  push(&recs, Op::kHugetlbAlloc, 0, 0, 9, 1, {4096}, 1);  // recorded elsewhere: 4096
  push(&recs, Op::kMmNew, 0, 1, 2048, 0);
  push(&recs, Op::kMmapHugetlbFile, flag::kWrite | flag::kShared, 1, 0, 9, {4096});
  push(&recs, Op::kPut, 0, 0, 4096, 1);  // the file's close
  CHECK_OK(v3_framing(recs));
  SpaceTable table;
  table.resize(2);
  Executor exec(mem, &table);
  std::vector<int32_t> got(5);
  exec.run(recs.data(), recs.size(), RunOptions{}, got.data(), nullptr);
  CHECK(got == std::vector<int32_t>({0, 1, 0, 0, 0}));
  const Translation t = table.by_id[1]->translate(0);
  CHECK(t.present);
  CHECK(mem->is_hugetlb(t.pfn));
  CHECK_EQ(mem->refcount(t.pfn), int64_t(1));  // the mapping's (the file's was put)
}

// The framing refuses what no call can record: bad advice codes (naming the op record),
// argument entries of the wrong number, heads past the count, the new ops, flag and entries in
// earlier versions.
TEST(ops_v3_framing_refuses_hostile_records) {
  const Record mm_new = make_op(Op::kMmNew, 0, 0, 1, 64, 0, 0, 0);
  auto refused = [&](std::vector<Record> tail, uint32_t version, int64_t record, const char* rule) {
    std::vector<Record> r{mm_new};
    r.insert(r.end(), tail.begin(), tail.end());
    const Status st = v3_framing(r, version);
    CHECK(st.reason == Reason::kOpsRecord);
    CHECK_EQ(st.value, record);
    CHECK(std::string(st.rule).find(rule) != std::string::npos);
  };
  std::vector<Record> t;
  push(&t, Op::kMadvise, 0, 1, 0, 4, {5});
  refused(t, kVersion, 1, "advice must be 0..4");
  t.clear();
  push(&t, Op::kMadvise, 0, 1, 0, 4, {kNoValue});
  refused(t, kVersion, 1, "advice must be 0..4");
  t.clear();
  push(&t, Op::kMadvise, 0, 1, 0, 4);
  refused(t, kVersion, 1, "argument entries");
  t.clear();
  push(&t, Op::kMremap, flag::kMayMove, 1, 0, 4, {8, 0, 0});
  refused(t, kVersion, 1, "argument entries");
  t.clear();
  push(&t, Op::kMmNew, 0, 2, 64, 0, {1, 2});
  refused(t, kVersion, 1, "argument entries");
  t.clear();
  push(&t, Op::kHugetlbAlloc, 0, 0, 9, 1, {0, 512});
  refused(t, kVersion, 1, "more heads");
  t.clear();
  push(&t, Op::kZapFile, 2, 1, 0, 4);
  refused(t, kVersion, 1, "flag bits");
  t.clear();
  push(&t, Op::kKhugepaged, 0, 9, 1, 1);
  refused(t, kVersion, 1, "no such address space");
  // Version 2 streams: the new ops, mmap-file's shmem flag and mm-new's swap entry.
  t.clear();
  push(&t, Op::kKhugepaged, 0, 1, 1, 1);
  refused(t, 2, 1, "later format version");
  t.clear();
  push(&t, Op::kMmapFile, flag::kShmem, 1, 0, 0, {3});
  refused(t, 2, 1, "shmem flag");
  t.clear();
  push(&t, Op::kMmNew, 0, 2, 64, 0, {3});
  refused(t, 2, 1, "before version 3");
  // Valid in version 3; the simple shapes do not let a new page-array op past the version check.
  t.clear();
  push(&t, Op::kHugetlbPool, 0, 0, 9, 1);
  CHECK_OK(v3_framing(t));
  CHECK(v3_framing(t, 2).reason == Reason::kOpsRecord);
  CHECK(v3_framing(t, 1).reason == Reason::kOpsRecord);
}

// Every new op's text line parses back to the same record and entries.
TEST(ops_v3_text_form_round_trips) {
  std::vector<Record> recs;
  push(&recs, Op::kMmNew, 0, 1, 4096, 0, {40});
  push(&recs, Op::kMmNew, 0, 2, 4096, 0);
  for (uint32_t adv = 0; adv < kAdvices; ++adv) push(&recs, Op::kMadvise, 0, 1, 10, 20, {adv}, adv == kAdviceCollapse ? 1 : 0);
  push(&recs, Op::kMremap, flag::kMayMove | flag::kFixed, 1, 0, 16, {32, 100}, 100);
  push(&recs, Op::kMremap, flag::kMayMove | flag::kDontUnmap, 1, 0, 16, {16, kNoValue}, -int32_t(Code::kEFAULT));
  push(&recs, Op::kKhugepaged, 0, 1, 511, 256, {}, 2);
  push(&recs, Op::kMmapHugetlb, flag::kWrite | flag::kPopulate | flag::kShared, 1, 0, 512, {18});
  push(&recs, Op::kMmapHugetlbFile, flag::kShared, 1, 512, 9, {1024, 1536});
  push(&recs, Op::kMmapFilePrivate, flag::kWrite | flag::kShmem, 1, 2048, 0, {7, 8, 9});
  push(&recs, Op::kMmapFile, flag::kShmem, 1, 3000, 0, {7});
  push(&recs, Op::kZapFile, flag::kEvenCows, 1, 2048, 3);
  push(&recs, Op::kHugetlbPool, 0, 0, 9, 4);
  push(&recs, Op::kHugetlbAlloc, 0, 0, 9, 2, {1024, 1536}, 2);
  CHECK_OK(v3_framing(recs));
  std::vector<std::string> lines;
  for (size_t i = 0; i < recs.size(); i += 1 + data_records_for(entries_of(recs[i]))) {
    const uint32_t n = entries_of(recs[i]);
    std::vector<uint32_t> e(n);
    for (uint32_t k = 0; k < n; ++k) e[k] = recs[i + 1 + k / kEntriesPerData].w[1 + k % kEntriesPerData];
    std::string line;
    format_op_line(recs[i], e.data(), n, &line);
    lines.push_back(line);
    TextOp back;
    CHECK_OK(parse_op_line(line, "t", 1, &back));
    for (size_t w = 0; w < kRecordWords; ++w) CHECK_EQ(back.op.w[w], recs[i].w[w]);
    CHECK(back.entries == e);
  }
  CHECK(lines[0] == "mm#1 mm-new 4096 swap=40");
  CHECK(lines[2] == "mm#1 madvise 10 20 dontneed");
  CHECK(lines[6] == "mm#1 madvise 10 20 collapse = 1");
  CHECK(lines[7] == "mm#1 mremap 0 16 32 100 may-move fixed = 100");
  CHECK(lines[8] == "mm#1 mremap 0 16 16 4294967295 may-move dont-unmap = EFAULT");
  CHECK(lines[10] == "mm#1 mmap-hugetlb 0 512 18 write populate shared");
  CHECK(lines[11] == "mm#1 mmap-hugetlb-file 512 9 [1024 1536] shared");
  CHECK(lines[12] == "mm#1 mmap-file-private 2048 [7..9] write shmem");
  CHECK(lines[14] == "mm#1 zap-file 2048 3 even-cows");
  CHECK(lines[16] == "hugetlb-alloc 9 2 [1024 1536] = 2");
  // Advice by number parses too (the framing then judges it); a name it does not know does not.
  TextOp op;
  CHECK_OK(parse_op_line("mm#1 madvise 0 4 3", "t", 1, &op));
  CHECK_EQ(op.entries.size(), size_t(1));
  CHECK_EQ(op.entries[0], 3u);
  CHECK(parse_op_line("mm#1 madvise 0 4 hugepage", "t", 5, &op).reason == Reason::kOpsText);
  CHECK(parse_op_line("mm#1 mremap 0 4 8", "t", 5, &op).reason == Reason::kOpsText);
  CHECK(parse_op_line("mm#1 mremap 0 4 8 0 [1]", "t", 5, &op).reason == Reason::kOpsText);
  CHECK(parse_op_line("mm#1 mm-new 4 swap=x", "t", 5, &op).reason == Reason::kOpsText);
}

}  // namespace pinlab::test
