// The base of the addon's asynchronous runs (runStress, runBench, runProfile, takeSnapshot,
// probeKernel): node-addon-api's AsyncProgressQueueWorker, made safe against everything that
// used to take the whole process down with it.
//
//  - run() (on a libuv pool thread) calls only the core; it returns a Status, and a C++
//    exception it lets out (std::bad_alloc: ENOMEM) becomes one too.
//  - The JS environment may go away while the run is in flight: worker.terminate(), or
//    process.exit() in a worker thread. Its completion and progress callbacks then run while
//    the environment is being torn down, where every call into JS fails; an exception thrown
//    out of them reached std::terminate ("terminate called after throwing an instance of
//    'Napi::Error'"). Here they never throw: the run is abandoned quietly (nothing built,
//    the promise left unsettled, as the environment that would see it is gone).
//  - Node waits for the run's pool thread before tearing the environment down, so a long run
//    would hold worker.terminate() (and the process exit behind it) for its whole length.
//    While a run is in flight a watchdog thread posts a probe to the JS thread every
//    kProbeMs through the worker's thread-safe function; the first probe that finds the
//    environment unable to run JS asks the engines to stop (RunControl), and they return at
//    their next check (between trials, runs, blocks; the stress threads' loop).
//  - A progress callback that throws stops the run as well, and the promise rejects with
//    the callback's exception.
#pragma once

#include <napi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/threads.h"
#include "errors.h"

namespace pinlab::addon {

struct RunEvent {
  bool probe = false;  // a watchdog probe, not progress
  size_t done = 0;
  size_t total = 0;
  std::string label;
};

// Whether `env` can still call into JS: a property set (which Node-API refuses once the
// environment is terminating) on a fresh object.
inline bool env_can_run_js(napi_env env) {
  napi_value o = nullptr, v = nullptr;
  if (napi_create_object(env, &o) != napi_ok || napi_get_boolean(env, true, &v) != napi_ok)
    return false;
  return napi_set_named_property(env, o, "alive", v) == napi_ok;
}

class AsyncRun : public Napi::AsyncProgressQueueWorker<RunEvent> {
 public:
  static constexpr int kProbeMs = 25;

  AsyncRun(Napi::Env env, const char* name, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<RunEvent>(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        control_(std::make_shared<RunControl>()) {
    if (!on_progress.IsEmpty()) on_progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  // Reports progress from any thread of the run.
  using Report = std::function<void(size_t done, size_t total, const std::string& label)>;

 protected:
  // The run's stop control, for a cancel function that JS may call after the run ended.
  std::shared_ptr<RunControl> shared_control() const { return control_; }
  // The run itself, on a pool thread: the core only, no Node-API.
  virtual Status run(const RunControl& control, const Report& report) = 0;
  // The resolved value, on the JS thread, once run() returned ok.
  virtual Napi::Value result(Napi::Env env) = 0;
  // Calls the progress callback for queued events (default: cb(done, total, label) each).
  virtual void deliver(Napi::Env env, Napi::Function cb, const RunEvent* events, size_t n) {
    for (size_t i = 0; i < n; ++i)
      cb.Call({Napi::Number::New(env, double(events[i].done)),
               Napi::Number::New(env, double(events[i].total)),
               Napi::String::New(env, events[i].label)});
  }

 private:
  void Execute(const ExecutionProgress& progress) final {
    // The watchdog (best effort: without it a run still ends, only not early).
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    std::thread watchdog;
    try {
      watchdog = std::thread([&] {
        const RunEvent probe{true, 0, 0, {}};
        std::unique_lock<std::mutex> lock(mu);
        while (!cv.wait_for(lock, std::chrono::milliseconds(kProbeMs), [&] { return finished; })) {
          try {
            progress.Send(&probe, 1);
          } catch (...) {  // no memory for the probe: try again next time
          }
        }
      });
    } catch (...) {
    }
    try {
      const Report report = [&](size_t done, size_t total, const std::string& label) {
        try {
          const RunEvent e{false, done, total, label};
          progress.Send(&e, 1);
        } catch (...) {  // no memory for the event: progress is optional
        }
      };
      status_ = run(*control_, report);
    } catch (const std::bad_alloc&) {
      status_ = Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
    } catch (const std::length_error&) {
      status_ = Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
    } catch (...) {
      status_ = Status{Code::kEINVAL, Reason::kInternal, "an unexpected C++ exception in a native run"};
    }
    if (watchdog.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        finished = true;
      }
      cv.notify_all();
      watchdog.join();
    }
  }

  void OnProgress(const RunEvent* events, size_t count) final {
    try {
      progress_events(events, count);
    } catch (...) {  // nothing may escape into Node: stop the run instead
      control_->request_stop();
    }
  }

  void progress_events(const RunEvent* events, size_t count) {
    if (abandoned_) return;
    Napi::Env env = Env();
    std::vector<RunEvent> pending;  // the progress events among them, delivered together
    for (size_t i = 0; i < count; ++i) {
      if (events[i].probe) {
        if (!env_can_run_js(env)) abandon();
        continue;
      }
      if (!on_progress_.IsEmpty() && !control_->stop_requested()) pending.push_back(events[i]);
    }
    if (abandoned_ || pending.empty()) return;
    try {
      Napi::HandleScope scope(env);
      deliver(env, on_progress_.Value(), pending.data(), pending.size());
    } catch (const Napi::Error& e) {
      if (!env_can_run_js(env)) {
        abandon();
        return;
      }
      // The callback threw: stop the run, reject with its exception.
      try {
        if (progress_error_.IsEmpty()) progress_error_ = Napi::Reference<Napi::Value>::New(Napi::Value(e.Value()), 1);
      } catch (...) {
      }
      control_->request_stop();
    } catch (...) {
      control_->request_stop();
    }
  }

  void OnOK() final { settle(); }
  void OnError(const Napi::Error&) final { settle(); }

  void settle() {
    Napi::Env env = Env();
    if (abandoned_ || !env_can_run_js(env)) return;  // the environment is going away
    try {
      Napi::HandleScope scope(env);
      if (!progress_error_.IsEmpty()) {
        deferred_.Reject(progress_error_.Value());
      } else if (!status_.ok()) {
        deferred_.Reject(status_error(env, status_));
      } else {
        deferred_.Resolve(result(env));
      }
    } catch (const Napi::Error& e) {
      // Building the result failed (ENOMEM), or the environment stopped meanwhile.
      try {
        if (env_can_run_js(env)) deferred_.Reject(e.Value());
      } catch (...) {
      }
    } catch (...) {
      try {
        if (env_can_run_js(env))
          deferred_.Reject(status_error(env, Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0)));
      } catch (...) {
      }
    }
  }

  void abandon() {
    abandoned_ = true;
    control_->request_stop();
  }

  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_progress_;
  Napi::Reference<Napi::Value> progress_error_;
  std::shared_ptr<RunControl> control_;  // shared: a cancel function may outlive the run
  Status status_;
  bool abandoned_ = false;  // JS thread only
};

// The progress callback argument `i` of info, or an empty function: absent, undefined and
// null mean none; anything else must be a function (EINVAL).
Napi::Function progress_arg(const Napi::CallbackInfo& info, size_t i);

}  // namespace pinlab::addon
