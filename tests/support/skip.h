// Skipping a test case that cannot run here (no zoo, no ONNX Runtime, no PP-OCRv4 models, ...):
// PTQ_SKIP("why" << detail) prints the reason, records the skip and ends the test case. tests/main.cc
// reports skipped test cases separately from passed ones and exits with kSkipExitCode when the one test
// case it ran was skipped (ctest runs one test case per process, SKIP_RETURN_CODE in CMakeLists.txt).
// A failed assertion in the same test case, before the skip, makes it a failure, not a skip.
#pragma once
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

namespace ptq::test {

constexpr int kSkipExitCode = 77;  // tests/CMakeLists.txt: SKIP_RETURN_CODE 77

// The reasons the running test case was skipped for (tests/main.cc clears it at each test case).
inline std::vector<std::string>& currentSkips() {
  static std::vector<std::string> skips;
  return skips;
}

// Records the skip and ends the test case. Catch2 v2 has no skip of its own; TestFailureException is
// what a failed REQUIRE throws after it has recorded the failure, so the runner ends the test case
// without recording anything more. Works from helper functions too, not only from the TEST_CASE body.
[[noreturn]] inline void skipTestCase(const std::string& why) {
  currentSkips().push_back(why);
  throw Catch::TestFailureException{};
}

}  // namespace ptq::test

#define PTQ_SKIP(msg)                                     \
  do {                                                    \
    std::ostringstream ptq_skip_reason_;                  \
    ptq_skip_reason_ << msg;                              \
    WARN("skipped: " << ptq_skip_reason_.str());          \
    ::ptq::test::skipTestCase(ptq_skip_reason_.str());    \
  } while (0)
