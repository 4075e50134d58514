// The io_uring probe of the host kernel's pin_user_pages(FOLL_WRITE | FOLL_LONGTERM): see
// kernel_probe.h. Each step is one small function that returns "" or the reason it failed;
// the ring fd and the mapping are owned by RAII holders, so every return releases them.
#include "host/kernel_probe.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#if defined(__linux__)
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <optional>

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#define PINLAB_HAVE_IO_URING_H 1
#endif
#endif

namespace pinlab {

namespace {

bool disabled_by_env() {
  const char* v = std::getenv("PINLAB_KERNEL_PROBE");
  return v != nullptr && std::strcmp(v, "off") == 0;
}

}  // namespace

std::string kernel_probe_memlock_refusal(uint64_t buffer_bytes, uint64_t memlock_limit,
                                         bool cap_ipc_lock) {
  if (cap_ipc_lock || memlock_limit == UINT64_MAX) return "";
  const std::string head = "RLIMIT_MEMLOCK " + std::to_string(memlock_limit) + " bytes < buffer " +
                           std::to_string(buffer_bytes) + " bytes";
  if (buffer_bytes > memlock_limit) return head + " and no CAP_IPC_LOCK";
  if (buffer_bytes + kKernelProbeRingBytes > memlock_limit)
    return head + " + " + std::to_string(kKernelProbeRingBytes) +
           " bytes of io_uring ring and no CAP_IPC_LOCK";
  return "";
}

#if defined(__linux__)

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPageBytes = 4096;
constexpr uint64_t kHugeBytes = 2ull << 20;
constexpr uint64_t kMaxBufferBytes = 1ull << 40;  // 1 TiB: keeps the rounding exact
constexpr uint64_t kMaxIovecBytes = 1ull << 30;   // io_uring's limit for one registered iovec
constexpr uint32_t kMaxTrials = 1000;

// ---- io_uring ABI: from <linux/io_uring.h> when present, else the few values we use. ----
#if defined(PINLAB_HAVE_IO_URING_H)
using RingParams = io_uring_params;
constexpr unsigned kRegisterBuffers = IORING_REGISTER_BUFFERS;
constexpr unsigned kUnregisterBuffers = IORING_UNREGISTER_BUFFERS;
#else
struct RingParams {  // struct io_uring_params: 120 bytes, all zero on input here
  uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
  uint32_t resv[3];
  uint64_t sq_off[5], cq_off[5];
};
static_assert(sizeof(RingParams) == 120, "struct io_uring_params is 120 bytes");
constexpr unsigned kRegisterBuffers = 0;
constexpr unsigned kUnregisterBuffers = 1;
#endif
#if !defined(__NR_io_uring_setup)
#define __NR_io_uring_setup 425  // the same on every architecture but alpha
#define __NR_io_uring_register 427
#endif

// ---- errno names ----
std::string errno_name(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(e)) return name;
#else
  static const struct {
    int code;
    const char* name;
  } kNames[] = {{EPERM, "EPERM"},   {ENOENT, "ENOENT"},   {EINTR, "EINTR"},
                {EBADF, "EBADF"},   {EAGAIN, "EAGAIN"},   {ENOMEM, "ENOMEM"},
                {EACCES, "EACCES"}, {EFAULT, "EFAULT"},   {EBUSY, "EBUSY"},
                {EEXIST, "EEXIST"}, {ENXIO, "ENXIO"},     {EINVAL, "EINVAL"},
                {ENFILE, "ENFILE"}, {EMFILE, "EMFILE"},   {ENOSYS, "ENOSYS"},
                {EOVERFLOW, "EOVERFLOW"}, {EOPNOTSUPP, "EOPNOTSUPP"}};
  for (const auto& n : kNames)
    if (n.code == e) return n.name;
#endif
  return "errno " + std::to_string(e);
}

// ---- the syscalls, each wrapped once ----
long sys_io_uring_setup(unsigned entries, RingParams* params) {
  return syscall(__NR_io_uring_setup, entries, params);
}

long sys_io_uring_register(int fd, unsigned opcode, const void* arg, unsigned nr_args) {
  return syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
}

bool sys_capget_effective(uint32_t* effective, unsigned words) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};  // pid 0: this thread
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  for (unsigned i = 0; i < words && i < _LINUX_CAPABILITY_U32S_3; ++i)
    effective[i] = data[i].effective;
  return true;
}

// ---- small /proc readers ----

// The value after `key` in a "key value" file (/proc/vmstat, /proc/meminfo), or nullopt.
std::optional<int64_t> read_proc_field(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string name;
  int64_t value = 0;
  while (in >> name >> value) {
    if (name == key) return value;
    in.ignore(4096, '\n');  // the " kB" of /proc/meminfo
  }
  return std::nullopt;
}

std::optional<int64_t> read_proc_int(const char* path) {
  std::ifstream in(path);
  int64_t value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

// Folds the per-CPU vmstat deltas into the global counters, so that /proc/vmstat is exact
// rather than up to (threshold x CPUs) behind. Root only; best effort, outside any timing.
void refresh_vm_stats() {
  const int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, "1\n", 2) < 0) {
    // Not root, or an old kernel: the counters are then read as they are.
  }
  close(fd);
}

struct PinCounters {
  std::optional<int64_t> acquired, released;
};

PinCounters read_pin_counters() {
  refresh_vm_stats();
  return {read_proc_field("/proc/vmstat", "nr_foll_pin_acquired"),
          read_proc_field("/proc/vmstat", "nr_foll_pin_released")};
}

// AnonHugePages (kB) of the /proc/self/smaps mapping that contains `addr`.
std::optional<uint64_t> anon_huge_kb_at(uintptr_t addr) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    uintptr_t start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &start, &end) == 2) {
      inside = start <= addr && addr < end;  // a mapping's header line
    } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      return std::strtoull(line.c_str() + std::strlen("AnonHugePages:"), nullptr, 10);
    }
  }
  return std::nullopt;
}

uint64_t memlock_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
  return uint64_t(rl.rlim_cur);
}

// ---- RAII holders ----
class RingFd {
 public:
  RingFd() = default;
  RingFd(const RingFd&) = delete;
  RingFd& operator=(const RingFd&) = delete;
  ~RingFd() {
    if (fd_ >= 0) close(fd_);  // also unregisters anything still registered
  }
  void reset(int fd) { fd_ = fd; }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (base_ != nullptr) munmap(base_, len_);
  }
  void reset(void* base, size_t len) {
    base_ = base;
    len_ = len;
  }

 private:
  void* base_ = nullptr;
  size_t len_ = 0;
};

// ---- the steps ----

std::string validate(const KernelProbeConfig& cfg) {
  if (cfg.buffer_bytes == 0) return "buffer_bytes is 0";
  if (cfg.buffer_bytes > kMaxBufferBytes)
    return "buffer_bytes " + std::to_string(cfg.buffer_bytes) + " > 1 TiB";
  if (cfg.trials == 0) return "trials is 0";
  if (cfg.trials > kMaxTrials)
    return "trials " + std::to_string(cfg.trials) + " > " + std::to_string(kMaxTrials);
  const long page = sysconf(_SC_PAGESIZE);
  if (page != long(kPageBytes))
    return "kernel page size " + std::to_string(page) + " bytes, not 4096";
  return "";
}

// Touching more than half of what the kernel thinks is available risks the OOM killer.
std::string check_memory_available(uint64_t bytes) {
  const std::optional<int64_t> kb = read_proc_field("/proc/meminfo", "MemAvailable:");
  if (!kb || uint64_t(*kb) * 1024 / 2 >= bytes) return "";
  return "buffer " + std::to_string(bytes) + " bytes > half of MemAvailable (" +
         std::to_string(uint64_t(*kb) * 1024) + " bytes)";
}

// A 2 MiB-aligned anonymous buffer of `bytes`, advised for THP or against it, every 4 KiB
// page written. The mapping keeps the slack around it; madvise splits the buffer's VMA off.
std::string map_buffer(uint64_t bytes, bool huge, Mapping* holder, unsigned char** buffer) {
  const size_t span = size_t(bytes + kHugeBytes);
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return "mmap of " + std::to_string(span) + " bytes failed: " + errno_name(errno);
  holder->reset(raw, span);
  const uintptr_t start = (uintptr_t(raw) + kHugeBytes - 1) & ~uintptr_t(kHugeBytes - 1);
  auto* buf = reinterpret_cast<unsigned char*>(start);
  if (madvise(buf, size_t(bytes), huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    const int err = errno;
    // A kernel without THP refuses both advices with EINVAL; its pages are 4 KiB anyway.
    if (huge || err != EINVAL)
      return std::string("madvise(") + (huge ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE") +
             ") failed: " + errno_name(err);
  }
  volatile unsigned char* p = buf;
  for (uint64_t off = 0; off < bytes; off += kPageBytes) p[off] = 1;
  *buffer = buf;
  return "";
}

std::string setup_ring(RingFd* ring) {
  RingParams params{};
  const long fd = sys_io_uring_setup(1, &params);
  if (fd >= 0) {
    ring->reset(int(fd));
    return "";
  }
  const int err = errno;
  std::string reason = "io_uring_setup failed: " + errno_name(err);
  if (err == EPERM) {
    const std::optional<int64_t> disabled = read_proc_int("/proc/sys/kernel/io_uring_disabled");
    if (disabled && *disabled != 0)
      reason += " (io_uring disabled: /proc/sys/kernel/io_uring_disabled=" +
                std::to_string(*disabled) + ")";
    else if (disabled)
      reason += " (/proc/sys/kernel/io_uring_disabled=0: refused by a seccomp filter or LSM)";
  } else if (err == ENOSYS) {
    reason += " (kernel without io_uring, or a seccomp filter)";
  }
  return reason;
}

// The buffer as iovecs of at most 1 GiB each.
std::vector<iovec> iovecs_for(unsigned char* buf, uint64_t bytes) {
  std::vector<iovec> iov;
  for (uint64_t off = 0; off < bytes; off += kMaxIovecBytes)
    iov.push_back({buf + off, size_t(std::min(kMaxIovecBytes, bytes - off))});
  return iov;
}

struct TimedCall {
  long rc = 0;
  int err = 0;
  double ns = 0;
};

TimedCall timed_register(int fd, unsigned opcode, const void* arg, unsigned nr_args) {
  const Clock::time_point t0 = Clock::now();
  const long rc = sys_io_uring_register(fd, opcode, arg, nr_args);
  const int err = errno;
  const Clock::time_point t1 = Clock::now();
  return {rc, rc < 0 ? err : 0, std::chrono::duration<double, std::nano>(t1 - t0).count()};
}

std::string register_failure(const TimedCall& call, const std::vector<iovec>& iov,
                             uint64_t bytes) {
  std::string reason = "io_uring_register(IORING_REGISTER_BUFFERS, " +
                       std::to_string(iov.size()) + " iovecs, " + std::to_string(bytes) +
                       " bytes) failed: " + errno_name(call.err);
  if (call.err == ENOMEM && !kernel_probe_has_cap_ipc_lock())
    reason += " (RLIMIT_MEMLOCK " + std::to_string(memlock_limit()) +
              " bytes is shared by all of this user's io_uring pins)";
  return reason;
}

// The counters' movement over the measured calls; unset once any read misses a field.
struct PinDeltas {
  bool known = true;
  int64_t acquired = 0, released = 0, released_in_register = 0;

  void add(const PinCounters& before, const PinCounters& after, bool in_register) {
    if (!before.acquired || !before.released || !after.acquired || !after.released) {
      known = false;
      return;
    }
    acquired += *after.acquired - *before.acquired;
    released += *after.released - *before.released;
    if (in_register) released_in_register += *after.released - *before.released;
  }
};

// One register + unregister round; records its timings and counter deltas when `measured`.
std::string pin_round(int fd, const std::vector<iovec>& iov, uint64_t bytes, bool measured,
                      KernelProbeResult* r, PinDeltas* deltas) {
  const PinCounters c0 = measured ? read_pin_counters() : PinCounters{};
  const TimedCall reg = timed_register(fd, kRegisterBuffers, iov.data(), unsigned(iov.size()));
  if (reg.rc < 0) return register_failure(reg, iov, bytes);
  const PinCounters c1 = measured ? read_pin_counters() : PinCounters{};
  const TimedCall unreg = timed_register(fd, kUnregisterBuffers, nullptr, 0);
  if (unreg.rc < 0)
    return "io_uring_register(IORING_UNREGISTER_BUFFERS) failed: " + errno_name(unreg.err);
  if (!measured) return "";
  const PinCounters c2 = read_pin_counters();
  deltas->add(c0, c1, true);
  deltas->add(c1, c2, false);
  r->pin_ns_per_page.push_back(reg.ns / double(r->pages));
  r->unpin_ns_per_page.push_back(unreg.ns / double(r->pages));
  return "";
}

std::string probe(const KernelProbeConfig& cfg, KernelProbeResult* r) {
  if (disabled_by_env()) return "disabled by PINLAB_KERNEL_PROBE=off";
  if (std::string why = validate(cfg); !why.empty()) return why;
  const uint64_t bytes = (cfg.buffer_bytes + kHugeBytes - 1) & ~(kHugeBytes - 1);
  r->pages = bytes / kPageBytes;
  if (std::string why = kernel_probe_memlock_refusal(bytes, memlock_limit(),
                                                     kernel_probe_has_cap_ipc_lock());
      !why.empty())
    return why;
  if (std::string why = check_memory_available(bytes); !why.empty()) return why;

  Mapping mapping;
  unsigned char* buf = nullptr;
  if (std::string why = map_buffer(bytes, cfg.huge, &mapping, &buf); !why.empty()) return why;
  if (cfg.huge) {
    r->anon_huge_kb = anon_huge_kb_at(uintptr_t(buf)).value_or(0);
    r->thp_confirmed = r->anon_huge_kb * 1024 >= bytes;
  }

  RingFd ring;
  if (std::string why = setup_ring(&ring); !why.empty()) return why;
  const std::vector<iovec> iov = iovecs_for(buf, bytes);
  PinDeltas deltas;
  r->pin_ns_per_page.reserve(cfg.trials);
  r->unpin_ns_per_page.reserve(cfg.trials);
  for (uint32_t t = 0; t <= cfg.trials; ++t) {  // round 0 is the warm-up
    if (stop_requested(cfg.control)) return "cancelled";
    if (std::string why = pin_round(ring.get(), iov, bytes, t > 0, r, &deltas); !why.empty())
      return why;
  }
  if (deltas.known) {
    r->nr_foll_pin_acquired_delta = deltas.acquired;
    r->nr_foll_pin_released_delta = deltas.released;
    r->released_during_register_delta = deltas.released_in_register;
  }
  return "";
}

}  // namespace

bool kernel_probe_has_cap_ipc_lock() {
  uint32_t effective[2] = {0, 0};
  if (!sys_capget_effective(effective, 2)) return false;
  return (effective[CAP_IPC_LOCK / 32] >> (CAP_IPC_LOCK % 32)) & 1u;
}

KernelProbeResult probe_kernel_pins(const KernelProbeConfig& cfg) {
  KernelProbeResult r;
  try {
    r.reason = probe(cfg, &r);
  } catch (const std::bad_alloc&) {
    r.reason = "out of memory";  // short literals: no allocation while handling it
  } catch (...) {
    r.reason = "exception";
  }
  r.available = r.reason.empty();
  if (!r.available) {
    r.pin_ns_per_page.clear();
    r.unpin_ns_per_page.clear();
  }
  return r;
}

#else  // not Linux: a stub

bool kernel_probe_has_cap_ipc_lock() { return false; }

KernelProbeResult probe_kernel_pins(const KernelProbeConfig&) {
  KernelProbeResult r;
  r.reason = disabled_by_env() ? "disabled by PINLAB_KERNEL_PROBE=off" : "not Linux";
  return r;
}

#endif

}  // namespace pinlab
