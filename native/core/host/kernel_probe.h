// A probe of the host kernel's real FOLL_PIN | FOLL_LONGTERM pin and unpin, to set the
// model's figures beside the kernel's own.
//
// It registers a user buffer with io_uring (IORING_REGISTER_BUFFERS, which pins every page
// of it with pin_user_pages(FOLL_WRITE | FOLL_LONGTERM)) and unregisters it (which unpins),
// timing both with std::chrono::steady_clock, over 4 KiB pages or 2 MiB THP. The
// nr_foll_pin_acquired / nr_foll_pin_released counters of /proc/vmstat, read around every
// call, show the pins really happened. Raw syscalls only: no liburing.
//
// It never throws and never crashes: every failure returns available = false with a reason
// saying exactly why, having released the ring and the mapping. PINLAB_KERNEL_PROBE=off in
// the environment turns it off (before any io_uring call). Off Linux it is a stub that
// answers "not Linux".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/threads.h"

namespace pinlab {

struct KernelProbeConfig {
  uint64_t buffer_bytes = 64ull << 20;  // rounded up to 2 MiB
  bool huge = false;                    // THP buffer (2 MiB pages) instead of 4 KiB pages
  uint32_t trials = 7;                  // register+unregister rounds measured (after 1 warm-up)
  const RunControl* control = nullptr;  // may stop the probe between rounds ("cancelled")
};

struct KernelProbeResult {
  bool available = false;
  // Empty when available; else exactly why not, e.g. "not Linux", "disabled by
  // PINLAB_KERNEL_PROBE=off", "RLIMIT_MEMLOCK 8388608 bytes < buffer 67108864 bytes and no
  // CAP_IPC_LOCK", "io_uring_setup failed: EPERM (...)", "mmap of ... failed: ENOMEM", ...
  std::string reason;
  uint64_t pages = 0;                     // 4 KiB pages in the buffer
  std::vector<double> pin_ns_per_page;    // per trial: register time / pages
  std::vector<double> unpin_ns_per_page;  // per trial: unregister time / pages
  // Over the measured trials (the sum of the deltas around each call); -1 if /proc/vmstat
  // lacks the fields. The counters are system-wide: other pinning on the host adds to them.
  int64_t nr_foll_pin_acquired_delta = -1, nr_foll_pin_released_delta = -1;
  // The part of nr_foll_pin_released_delta seen during the register calls: io_uring keeps
  // one pin per large folio and drops the others at once, so this is about
  // trials * (pages - folios) for a THP buffer and 0 for 4 KiB pages. -1 as above.
  int64_t released_during_register_delta = -1;
  bool thp_confirmed = false;  // huge only: AnonHugePages covers the whole buffer
  uint64_t anon_huge_kb = 0;   // huge only: AnonHugePages of the mapping holding the buffer
};

KernelProbeResult probe_kernel_pins(const KernelProbeConfig& cfg);

// What the probe's one-entry ring itself charges to RLIMIT_MEMLOCK (its SQ/CQ rings and SQE
// array: 2 pages on 6.18; older kernels charge nothing, so this errs on the safe side).
inline constexpr uint64_t kKernelProbeRingBytes = 2 * 4096;

// The up-front memlock check, exposed for tests: "" when a buffer of `buffer_bytes` may be
// pinned, else the refusal. `memlock_limit` is RLIMIT_MEMLOCK's soft limit (UINT64_MAX for
// RLIM_INFINITY); CAP_IPC_LOCK exempts io_uring from the limit. Without it, the buffer and
// the ring must fit together. The limit is per user and shared with the user's other
// io_uring rings, so the kernel may still refuse (ENOMEM) where this check passes.
std::string kernel_probe_memlock_refusal(uint64_t buffer_bytes, uint64_t memlock_limit,
                                         bool cap_ipc_lock);

// Whether the calling thread has CAP_IPC_LOCK in its effective set (capget; false off Linux).
bool kernel_probe_has_cap_ipc_lock();

}  // namespace pinlab
