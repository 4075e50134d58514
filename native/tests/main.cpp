// Runs the registered native tests. `--tag concurrency` runs only the concurrency cases (the
// ThreadSanitizer build); `--filter S` runs cases whose name contains S; `--soak SECONDS` runs
// only the "history" cases, each for that long (the same as PINLAB_SOAK_SECONDS=SECONDS with
// `--tag history`). Prints one line per case and ends with "N passed, N failed"; exits
// non-zero on any failure.
#include <cstdlib>
#include <cstring>

#include "check.h"
#include "base/status.h"

namespace pinlab::test {

namespace {
int g_failures_in_case = 0;
}

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

void fail(const char* file, int line, const std::string& what) {
  ++g_failures_in_case;
  if (g_failures_in_case <= 10) std::fprintf(stderr, "    %s:%d: %s\n", file, line, what.c_str());
}

}  // namespace pinlab::test

int main(int argc, char** argv) {
  using namespace pinlab::test;
  const char* tag = nullptr;
  const char* filter = nullptr;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--tag") == 0) tag = argv[++i];
    else if (std::strcmp(argv[i], "--filter") == 0) filter = argv[++i];
    else if (std::strcmp(argv[i], "--soak") == 0) {
      setenv("PINLAB_SOAK_SECONDS", argv[++i], 1);  // read by the history cases
      tag = "history";
    }
  }
  int passed = 0, failed = 0;
  for (const Case& c : registry()) {
    if (tag != nullptr && std::strstr(c.tags, tag) == nullptr) continue;
    if (filter != nullptr && std::strstr(c.name, filter) == nullptr) continue;
    g_failures_in_case = 0;
    c.fn();
    if (g_failures_in_case == 0) {
      ++passed;
      std::printf("  ok    %s\n", c.name);
    } else {
      ++failed;
      std::printf("  FAIL  %s (%d failed checks)\n", c.name, g_failures_in_case);
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
