// The build's layering check (scripts/check-layers.sh, run by the check_layers target before any part
// compiles): the tree is clean, and a wrong-way include planted in a copy of it is caught and named.
#include <catch2/catch.hpp>

#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;

namespace {
const std::string kSrc = PTQ_SOURCE_DIR;
const std::string kCheck = kSrc + "/scripts/check-layers.sh";
}  // namespace

TEST_CASE("the source tree has no wrong-way include", "[layers]") {
  auto r = runCommand("'" + kCheck + "' '" + kSrc + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
}

TEST_CASE("a wrong-way include fails the layering check and names the file and the arrow", "[layers]") {
  struct Plant {
    const char* file;
    const char* include;
    const char* message;
  };
  const Plant plants[] = {
      {"lib/quant/grid.cc", "#include \"lib/ir/graph.h\"", "lib/quant/grid.cc includes \"lib/ir/graph.h\": quant must not depend on ir"},
      {"lib/ir/graph.cc", "#include <onnx/onnx_pb.h>", "lib/ir/graph.cc includes ONNX/protobuf headers"},
      {"lib/runtime/session.cc", "#include \"lib/pipeline/config.h\"", "runtime must not depend on pipeline"},
      {"passes/rtn.cc", "#include \"formats/onnx/onnx_io.h\"", "passes must not depend on formats"},
      {"formats/onnx/writer.cc", "#include \"lib/pipeline/report.h\"", "formats must not depend on pipeline"},
  };
  for (const Plant& p : plants) {
    INFO(p.file << ": " << p.include);
    const std::string dir = tempDir("layers");
    REQUIRE(runCommand("cp -r '" + kSrc + "/lib' '" + kSrc + "/passes' '" + kSrc + "/formats' '" + kSrc + "/apps' '" + dir + "'")
                .exit_code == 0);
    REQUIRE(runCommand("printf '%s\\n' '" + std::string(p.include) + "' >> '" + dir + "/" + p.file + "'").exit_code == 0);
    auto r = runCommand("'" + kCheck + "' '" + dir + "'");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Catch::Contains(p.message));
  }
}
