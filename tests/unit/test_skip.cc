// The skip mechanism itself (tests/support/skip.h, tests/main.cc): hidden test cases ([.skip-selftest],
// not discovered by ctest) run in a child ptq-tests process, and their exit codes are what ctest sees.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <string>

#include "support/run_command.h"
#include "support/skip.h"

namespace {

void skipFromHelper() { PTQ_SKIP("from a helper, reason " << 42); }

ptq::test::CommandResult runSelf(const std::string& spec) {
  char self[4096] = {};
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  REQUIRE(n > 0);
  return ptq::test::runCommand("'" + std::string(self, static_cast<size_t>(n)) + "' '" + spec + "'");
}

}  // namespace

TEST_CASE("skip-selftest: skips at once", "[.skip-selftest]") { PTQ_SKIP("nothing to run here"); }

TEST_CASE("skip-selftest: skips in a helper after passing assertions", "[.skip-selftest]") {
  CHECK(1 + 1 == 2);
  REQUIRE(true);
  skipFromHelper();
  FAIL("not reached: the skip ends the test case");
}

TEST_CASE("skip-selftest: fails then skips", "[.skip-selftest]") {
  CHECK(1 + 1 == 3);
  PTQ_SKIP("after a failed assertion");
}

TEST_CASE("skip-selftest: passes", "[.skip-selftest]") { CHECK(true); }

TEST_CASE("a skipped test case exits 77 and does not count as passed and a failure wins over a skip", "[skip]") {
  auto r = runSelf("skip-selftest: skips at once");
  INFO(r.output);
  CHECK(r.exit_code == ptq::test::kSkipExitCode);
  CHECK_THAT(r.output, Catch::Contains("skipped: nothing to run here"));

  r = runSelf("skip-selftest: skips in a helper after passing assertions");
  INFO(r.output);
  CHECK(r.exit_code == ptq::test::kSkipExitCode);
  CHECK_THAT(r.output, Catch::Contains("from a helper, reason 42"));
  CHECK_THAT(r.output, !Catch::Contains("not reached"));

  r = runSelf("skip-selftest: fails then skips");
  INFO(r.output);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code != ptq::test::kSkipExitCode);

  r = runSelf("skip-selftest: passes");
  CHECK(r.exit_code == 0);

  // Several test cases at once: the reasons and the counts are printed; non-zero only for a failure.
  r = runSelf("[skip-selftest]");
  INFO(r.output);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code != ptq::test::kSkipExitCode);
  CHECK_THAT(r.output, Catch::Contains("SKIPPED: skip-selftest: skips at once -- nothing to run here"));
  CHECK_THAT(r.output, Catch::Contains("4 test cases: 1 passed, 1 failed, 2 skipped"));
  r = runSelf("[skip-selftest]~skip-selftest: fails then skips");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("3 test cases: 1 passed, 0 failed, 2 skipped"));
}
