// The kernel probe: its refusals (PINLAB_KERNEL_PROBE=off, RLIMIT_MEMLOCK without
// CAP_IPC_LOCK) and small real runs over io_uring. A host without io_uring (or not Linux)
// passes the real runs and prints why they could not run.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include "check.h"
#include "host/kernel_probe.h"

#if defined(__linux__)
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pinlab::test {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// Sets PINLAB_KERNEL_PROBE for one scope, then puts back what was there.
class ProbeEnv {
 public:
  explicit ProbeEnv(const char* value) {
    if (const char* old = std::getenv("PINLAB_KERNEL_PROBE")) {
      had_ = true;
      old_ = old;
    }
    setenv("PINLAB_KERNEL_PROBE", value, 1);
  }
  ~ProbeEnv() {
    if (had_) setenv("PINLAB_KERNEL_PROBE", old_.c_str(), 1);
    else unsetenv("PINLAB_KERNEL_PROBE");
  }

 private:
  bool had_ = false;
  std::string old_;
};

// PINLAB_KERNEL_PROBE=off in the environment turns the real probes off, tests included.
bool probe_turned_off() {
  const char* v = std::getenv("PINLAB_KERNEL_PROBE");
  if (v == nullptr || std::string(v) != "off") return false;
  std::printf("        PINLAB_KERNEL_PROBE=off: not probing\n");
  return true;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Without root the counters can trail by the per-CPU vmstat deltas (stat_refresh folds them).
int64_t vmstat_slack() {
#if defined(__linux__)
  if (access("/proc/sys/vm/stat_refresh", W_OK) == 0) return 0;
  return 125 * int64_t(std::max(1L, sysconf(_SC_NPROCESSORS_CONF)));
#else
  return 0;
#endif
}

void print_run(const char* what, const KernelProbeResult& r) {
  if (!r.available) {
    std::printf("        %s: probe unavailable: %s\n", what, r.reason.c_str());
    return;
  }
  std::printf("        %s: %llu pages, pin %.1f ns/page, unpin %.1f ns/page (median of %zu), "
              "nr_foll_pin_acquired +%lld, nr_foll_pin_released +%lld (%lld during register)\n",
              what, (unsigned long long)r.pages, median(r.pin_ns_per_page),
              median(r.unpin_ns_per_page), r.pin_ns_per_page.size(),
              (long long)r.nr_foll_pin_acquired_delta, (long long)r.nr_foll_pin_released_delta,
              (long long)r.released_during_register_delta);
}

// What every available run must show: per-trial figures, and pins the kernel counted.
void check_run(const KernelProbeResult& r, uint32_t trials, uint64_t pages) {
  CHECK(r.reason.empty());
  CHECK_EQ(r.pages, pages);
  CHECK_EQ(r.pin_ns_per_page.size(), size_t(trials));
  CHECK_EQ(r.unpin_ns_per_page.size(), size_t(trials));
  for (double ns : r.pin_ns_per_page) CHECK(ns > 0 && std::isfinite(ns));
  for (double ns : r.unpin_ns_per_page) CHECK(ns > 0 && std::isfinite(ns));
  const int64_t expected = int64_t(trials) * int64_t(pages) - vmstat_slack();
  if (r.nr_foll_pin_acquired_delta >= 0) {
    CHECK(r.nr_foll_pin_acquired_delta >= expected);
    CHECK(r.nr_foll_pin_released_delta >= expected);
  } else {
    std::printf("        /proc/vmstat has no nr_foll_pin_acquired/released\n");
  }
}

uint64_t memlock_soft_limit() {
#if defined(__linux__)
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    return uint64_t(rl.rlim_cur);
#endif
  return UINT64_MAX;
}

// Runs the probe on a thread that has dropped CAP_IPC_LOCK from its effective set
// (capabilities are per thread, and the thread ends with it). Sets *dropped when it could.
KernelProbeResult probe_without_cap_ipc_lock(const KernelProbeConfig& cfg, bool* dropped) {
  KernelProbeResult r;
  *dropped = false;
#if defined(__linux__)
  std::thread t([&] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capget, &header, data) != 0) return;
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (syscall(SYS_capset, &header, data) != 0) return;
    *dropped = !kernel_probe_has_cap_ipc_lock();
    if (*dropped) r = probe_kernel_pins(cfg);
  });
  t.join();
#else
  (void)cfg;
#endif
  return r;
}

}  // namespace

TEST(kernel_probe_off_refuses) {
  ProbeEnv env("off");
  const KernelProbeResult r = probe_kernel_pins(KernelProbeConfig{8 * kMiB, false, 1});
  CHECK(!r.available);
  CHECK(r.reason == "disabled by PINLAB_KERNEL_PROBE=off");
  CHECK(r.pin_ns_per_page.empty());
  CHECK(r.unpin_ns_per_page.empty());
}

TEST(kernel_probe_memlock_refusal_message) {
  CHECK(kernel_probe_memlock_refusal(64 * kMiB, 8 * kMiB, false) ==
        "RLIMIT_MEMLOCK 8388608 bytes < buffer 67108864 bytes and no CAP_IPC_LOCK");
  CHECK(kernel_probe_memlock_refusal(64 * kMiB, 8 * kMiB, true).empty());
  // The ring's own pages are charged too: a buffer exactly at the limit does not fit.
  CHECK(kernel_probe_memlock_refusal(8 * kMiB, 8 * kMiB, false) ==
        "RLIMIT_MEMLOCK 8388608 bytes < buffer 8388608 bytes + 8192 bytes of io_uring ring "
        "and no CAP_IPC_LOCK");
  CHECK(kernel_probe_memlock_refusal(8 * kMiB, 8 * kMiB, true).empty());
  CHECK(kernel_probe_memlock_refusal(6 * kMiB, 8 * kMiB, false).empty());
  CHECK(kernel_probe_memlock_refusal(64 * kMiB, UINT64_MAX, false).empty());
}

TEST(kernel_probe_refuses_over_memlock) {
  if (probe_turned_off()) return;
  const uint64_t limit = memlock_soft_limit();
  if (limit == UINT64_MAX) {
    std::printf("        RLIMIT_MEMLOCK unlimited (or not Linux): no refusal to check\n");
    return;
  }
  // Over the limit even after the probe rounds the buffer up to 2 MiB.
  const uint64_t over = (limit / (2 * kMiB) + 1) * (2 * kMiB);
  const KernelProbeConfig cfg{over, false, 1};
  const std::string refusal = kernel_probe_memlock_refusal(over, limit, false);
  CHECK(!refusal.empty());

  if (!kernel_probe_has_cap_ipc_lock()) {
    const KernelProbeResult r = probe_kernel_pins(cfg);
    CHECK(!r.available);
    CHECK(r.reason == refusal);
    return;
  }
  // With CAP_IPC_LOCK the limit does not apply: the probe must not refuse for it.
  if (over <= 64 * kMiB) {
    const KernelProbeResult r = probe_kernel_pins(cfg);
    CHECK(!starts_with(r.reason, "RLIMIT_MEMLOCK"));
    if (!r.available) std::printf("        over RLIMIT_MEMLOCK with CAP_IPC_LOCK: %s\n",
                                  r.reason.c_str());
  }
  // And on a thread that has dropped the capability, it must refuse up front.
  bool dropped = false;
  const KernelProbeResult r = probe_without_cap_ipc_lock(cfg, &dropped);
  if (dropped) {
    CHECK(!r.available);
    CHECK(r.reason == refusal);
  } else {
    std::printf("        could not drop CAP_IPC_LOCK on a thread: refusal not exercised\n");
  }
}

TEST(kernel_probe_small_run_4k) {
  const KernelProbeResult r = probe_kernel_pins(KernelProbeConfig{8 * kMiB, false, 3});
  print_run("8 MiB, 4 KiB pages", r);
  if (!r.available) {
    CHECK(!r.reason.empty());
    return;
  }
  check_run(r, 3, 2048);
  CHECK(!r.thp_confirmed);
  CHECK_EQ(r.anon_huge_kb, uint64_t(0));
}

TEST(kernel_probe_small_run_thp) {
  const KernelProbeResult r = probe_kernel_pins(KernelProbeConfig{8 * kMiB, true, 3});
  print_run("8 MiB, THP", r);
  if (!r.available) {
    CHECK(!r.reason.empty());
    return;
  }
  std::printf("        thp_confirmed %s, AnonHugePages %llu kB\n",
              r.thp_confirmed ? "true" : "false", (unsigned long long)r.anon_huge_kb);
  check_run(r, 3, 2048);
  CHECK(r.thp_confirmed == (r.anon_huge_kb >= 8 * 1024));
}

}  // namespace pinlab::test
