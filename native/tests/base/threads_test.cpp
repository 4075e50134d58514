// ThreadGroup: a thread that cannot be started is a Status (EAGAIN), the started ones are
// joined, never left joinable (std::terminate); the test hook refuses starts deterministically.
#include <atomic>

#include "base/threads.h"
#include "check.h"

namespace pinlab::test {
namespace {

// Restores "no limit" when a case ends, whatever it checked.
struct NoThreadLimitAfter {
  ~NoThreadLimitAfter() { set_thread_start_limit_for_testing(-1); }
};

TEST_TAGGED(thread_group_reports_a_refused_start_and_joins_the_rest, "concurrency") {
  NoThreadLimitAfter restore;
  set_thread_start_limit_for_testing(3);
  std::atomic<int> ran{0};
  std::atomic<bool> release{false};
  ThreadGroup g;
  Status st;
  int started = 0;
  for (int i = 0; i < 8 && st.ok(); ++i) {
    st = g.start([&] {
      while (!release.load()) std::this_thread::yield();
      ran.fetch_add(1);
    }, 8);
    if (st.ok()) ++started;
  }
  CHECK_EQ(started, 3);
  CHECK_CODE(st, Code::kEAGAIN);
  CHECK(st.reason == Reason::kThreadStart);
  CHECK_EQ(st.value, 3);
  CHECK_EQ(st.limit, 8);
  CHECK(describe(st).find("could not start native thread 4 of 8") != std::string::npos);
  release.store(true);
  g.join();
  CHECK_EQ(ran.load(), 3);
  CHECK_EQ(g.size(), size_t{0});
}

TEST(thread_start_limit_counts_down_and_resets) {
  NoThreadLimitAfter restore;
  set_thread_start_limit_for_testing(1);
  CHECK(!thread_start_refused_for_testing());
  CHECK(thread_start_refused_for_testing());
  CHECK(thread_start_refused_for_testing());
  set_thread_start_limit_for_testing(-1);
  CHECK(!thread_start_refused_for_testing());
}

TEST(run_control_stop_is_seen) {
  RunControl c;
  CHECK(!c.stop_requested());
  CHECK(!stop_requested(&c));
  CHECK(!stop_requested(nullptr));
  c.request_stop();
  CHECK(stop_requested(&c));
}

}  // namespace
}  // namespace pinlab::test
