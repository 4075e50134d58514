// The workloads the benchmark engine times (bench_engine.h). Internal to the core.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engines/bench_engine.h"
#include "base/status.h"

namespace pinlab {

class Workload {
 public:
  virtual ~Workload() = default;
  // Builds arrays and page sets and checks the starting state.
  virtual Status setup() = 0;
  // Snapshots the counters the checks compare against.
  virtual void begin_trial() = 0;
  // One round of thread t over its pages (no allocation on this path).
  virtual Status round(uint32_t t) = 0;
  // After a trial of `rounds` rounds per thread: counts balance and pages are back where
  // they started. Empty when fine, else what is wrong.
  virtual std::string check(uint64_t rounds) = 0;
  // Atomic RMW operations on counts per page and round, from the last trial's counters.
  virtual double atomics_per_page(uint64_t rounds) = 0;
  virtual uint64_t pages_per_thread() const = 0;
};

std::unique_ptr<Workload> make_workload(const BenchSpec& spec);

}  // namespace pinlab
