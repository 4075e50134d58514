// The stress harness (engines/stress.h): every registered scheme races pins, munmap, fork and
// migration on native threads and must end balanced. Tagged for the ThreadSanitizer build.
#include <deque>
#include <string>

#include "engines/stress.h"
#include "fixtures.h"

namespace pinlab::test {
namespace {

void stress_case(Scheme s, int64_t ms) {
  StressConfig cfg;
  cfg.scheme = s;
  cfg.duration_ms = ms;
  cfg.threads = 4;
  cfg.region_pages = 1024;
  StressReport r;
  const Status st = run_stress(cfg, &r);
  CHECK(st.ok());
  if (!r.balanced) fail(__FILE__, __LINE__, "stress: " + r.first_violation);
  CHECK(r.pin_calls > 0);
  CHECK(r.pageouts > 0);  // MADV_PAGEOUT raced the pins (and the end checked every slot free)
  CHECK_EQ(r.pin_acquired, r.pin_released);
}

// One case per registered scheme (stress_bias, stress_hybrid, ...): a new scheme gets its own.
const bool registered = [] {
  static std::deque<std::string> names;  // case names need stable storage
  for (Scheme s : kAllSchemes) {
    std::string name = std::string("stress_") + scheme_name(s);
    for (char& c : name) c = c == '-' ? '_' : c;
    names.push_back(name);
    registry().push_back({names.back().c_str(), "concurrency", [s] { stress_case(s, 300); }});
  }
  return true;
}();

}  // namespace
}  // namespace pinlab::test
