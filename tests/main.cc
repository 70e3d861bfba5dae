// The test runner: Catch2's, plus skips (tests/support/skip.h). A test case that called PTQ_SKIP
// and had no failed assertion is "skipped", never "passed": the runner lists the skipped test cases
// with their reasons and a passed/failed/skipped count. ctest runs each test case in its own process;
// when that one test case was skipped the exit code is kSkipExitCode (77), which ctest reports as
// "Skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt). Several test cases run at once exit non-zero
// only on failures. Failures win: any failed assertion gives Catch2's own non-zero exit code (never 77).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "support/skip.h"

namespace {

struct Outcome {
  std::string name;
  bool failed = false;
  std::vector<std::string> skips;
};

std::vector<Outcome>& outcomes() {
  static std::vector<Outcome> all;
  return all;
}

struct SkipListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(const Catch::TestCaseInfo& info) override {
    ptq::test::currentSkips().clear();
    TestEventListenerBase::testCaseStarting(info);
  }

  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    outcomes().push_back({stats.testInfo.name, stats.totals.testCases.failed > 0, ptq::test::currentSkips()});
    ptq::test::currentSkips().clear();
    TestEventListenerBase::testCaseEnded(stats);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(SkipListener)

int main(int argc, char* argv[]) {
  Catch::Session session;
  const int rc = session.run(argc, argv);
  if (outcomes().empty()) return rc;  // listing, --help, or nothing matched: Catch2's answer

  size_t passed = 0, failed = 0, skipped = 0;
  // Machine-readable reporters own stdout; the skip report then goes to stderr.
  const std::string reporter = session.configData().reporterName;
  FILE* out = reporter.empty() || reporter == "console" || reporter == "compact" ? stdout : stderr;
  for (const Outcome& o : outcomes()) {
    if (o.failed) {
      ++failed;
    } else if (!o.skips.empty()) {
      ++skipped;
      std::fprintf(out, "SKIPPED: %s -- %s\n", o.name.c_str(), o.skips.front().c_str());
    } else {
      ++passed;
    }
  }
  if (skipped > 0)
    std::fprintf(out, "ptq-tests: %zu test cases: %zu passed, %zu failed, %zu skipped (Catch2's summary above counts skipped as passed)\n",
                 outcomes().size(), passed, failed, skipped);
  std::fflush(out);

  if (rc != 0 || failed > 0) return rc == 0 || rc == ptq::test::kSkipExitCode ? 1 : rc;
  return outcomes().size() == 1 && skipped == 1 ? ptq::test::kSkipExitCode : 0;
}
