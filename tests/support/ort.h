// Running scripts/ort/ort_run.js from tests and reading its JSON answer.
#pragma once
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

#include "support/run_command.h"

namespace ptq::test {

// The last JSON object line of a script's output (null when there is none).
inline nlohmann::json lastJsonLine(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') last = line;
  return last.empty() ? nlohmann::json() : nlohmann::json::parse(last);
}

// Runs `ort_run.js ARGS`, requires success, and returns its last JSON line.
inline nlohmann::json ortJson(const std::string& args) {
  auto r = runCommand(ortScript() + " " + args);
  INFO("ort_run.js " << args << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  return lastJsonLine(r.output);
}

}  // namespace ptq::test
