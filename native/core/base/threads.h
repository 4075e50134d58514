// Native threads that cannot take the process down: starting one can fail (std::thread's
// constructor throws std::system_error at RLIMIT_NPROC, or when no memory is left for its
// stack), and a std::thread destroyed while joinable calls std::terminate. A ThreadGroup turns
// a failed start into a Status (EAGAIN naming how many threads did start) and always joins
// what it started; the owner tells the started threads to stop before joining them.
//
// RunControl lets the caller of a long run stop it early (the addon, when the JS environment
// that asked for the run is torn down): engines poll stop_requested() at safe points and
// return a kCancelled status.
#pragma once

#include <atomic>
#include <cstdint>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"

namespace pinlab {

class RunControl {
 public:
  bool stop_requested() const { return stop_.load(std::memory_order_acquire); }
  void request_stop() { stop_.store(true, std::memory_order_release); }
  // The flag itself, for engines that take a plain stop flag (the op-stream engines).
  const std::atomic<bool>* flag() const { return &stop_; }

 private:
  std::atomic<bool> stop_{false};
};

inline bool stop_requested(const RunControl* c) { return c != nullptr && c->stop_requested(); }

// CPU time the calling thread has used, in seconds (CLOCK_THREAD_CPUTIME_ID; 0 where the
// clock cannot be read). What a thread ran, excluding the time the machine gave to others.
double thread_cpu_seconds() noexcept;

// Test hook: after `n` more thread starts, every ThreadGroup::start fails with EAGAIN, as if
// the system refused (n < 0: never; the default). For deterministic tests of the paths that
// a real RLIMIT_NPROC or address-space limit takes. Process-wide.
void set_thread_start_limit_for_testing(int64_t n);
// True if the hook refuses this start (consumes one start otherwise).
bool thread_start_refused_for_testing();

class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() { join(); }

  // Starts fn() on a new thread. On failure nothing is started and the status is EAGAIN
  // (value: threads this group started, limit: `wanted`, for the message); the threads
  // already started keep running until the owner stops them, and are joined by join() or
  // the destructor.
  template <typename F>
  Status start(F&& fn, uint64_t wanted) noexcept {
    const char* why = nullptr;
    try {
      if (thread_start_refused_for_testing()) {
        why = "refused by the thread-start test hook";
      } else {
        // Room first, so that a failed start leaves the vector as it was.
        if (threads_.size() == threads_.capacity())
          threads_.reserve(threads_.capacity() < 8 ? 8 : 2 * threads_.capacity());
        threads_.emplace_back(std::forward<F>(fn));
        return Status::Ok();
      }
    } catch (const std::system_error&) {
      why = "the system refused a new thread: RLIMIT_NPROC, or no memory for its stack";
    } catch (const std::bad_alloc&) {
      why = "out of memory";
    } catch (...) {
      why = "unexpected failure";
    }
    return Status{Code::kEAGAIN, Reason::kThreadStart, nullptr, int64_t(threads_.size()),
                  int64_t(wanted), why};
  }

  void join() noexcept {
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  size_t size() const { return threads_.size(); }

 private:
  std::vector<std::thread> threads_;
};

}  // namespace pinlab
