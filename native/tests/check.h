// A minimal test harness: no third-party framework (nothing npm cannot install).
// TEST(name) registers a case; CHECK* record failures without aborting the case.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace pinlab::test {

struct Case {
  const char* name;
  const char* tags;  // "concurrency" marks the cases the ThreadSanitizer build runs
  std::function<void()> fn;
};

std::vector<Case>& registry();
void fail(const char* file, int line, const std::string& what);

struct Registrar {
  Registrar(const char* name, const char* tags, std::function<void()> fn) {
    registry().push_back({name, tags, std::move(fn)});
  }
};

}  // namespace pinlab::test

#define PL_CAT2(a, b) a##b
#define PL_CAT(a, b) PL_CAT2(a, b)
#define TEST_TAGGED(name, tags)                                                      \
  static void name();                                                                \
  static ::pinlab::test::Registrar PL_CAT(reg_, name)(#name, tags, name);            \
  static void name()
#define TEST(name) TEST_TAGGED(name, "")

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) ::pinlab::test::fail(__FILE__, __LINE__, "CHECK(" #cond ")");      \
  } while (0)

#define CHECK_EQ(a, b)                                                               \
  do {                                                                               \
    const auto va_ = (a);                                                            \
    const auto vb_ = (b);                                                            \
    if (!(va_ == vb_))                                                               \
      ::pinlab::test::fail(__FILE__, __LINE__,                                       \
                           std::string("CHECK_EQ(" #a ", " #b "): ") +              \
                               std::to_string(va_) + " != " + std::to_string(vb_)); \
  } while (0)

// Checks a Status has the expected code.
#define CHECK_CODE(status, expected)                                                 \
  do {                                                                               \
    const ::pinlab::Status st_ = (status);                                           \
    if (st_.code != (expected))                                                      \
      ::pinlab::test::fail(__FILE__, __LINE__,                                       \
                           std::string(#status " -> ") + ::pinlab::code_name(st_.code) + \
                               " (" + ::pinlab::describe(st_) + "), expected " +    \
                               ::pinlab::code_name(expected));                       \
  } while (0)
#define CHECK_OK(status) CHECK_CODE(status, ::pinlab::Code::kOk)
