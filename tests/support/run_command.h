// Runs a shell command from a test and captures its exit code and combined output.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "support/skip.h"

namespace ptq::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

inline CommandResult runCommand(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string toolPath() { return PTQ_TOOL_PATH; }

// node + onnxruntime-node from scripts/setup-deps.sh; empty when not available.
inline std::string ortScript() {
  const std::string script = std::string(PTQ_SOURCE_DIR) + "/scripts/ort/ort_run.js";
  const std::string mod = std::string(PTQ_SOURCE_DIR) + "/scripts/ort/node_modules/onnxruntime-node";
  if (std::system("command -v node >/dev/null 2>&1") != 0) return "";
  if (std::system(("test -d '" + mod + "'").c_str()) != 0) return "";
  return "node '" + script + "'";
}

}  // namespace ptq::test

// Skips the current test case (tests/support/skip.h) when ONNX Runtime is not there.
#define PTQ_REQUIRE_ORT()                                                           \
  do {                                                                              \
    if (::ptq::test::ortScript().empty())                                           \
      PTQ_SKIP("node or onnxruntime-node missing (run scripts/setup-deps.sh)");     \
  } while (0)
