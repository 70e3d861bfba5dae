// Where tests find things: the source tree, the zoo beside the checkout (may be absent), temp folders.
#pragma once
#include <cstdlib>
#include <string>
#include <sys/stat.h>

#include "support/skip.h"

namespace ptq::test {

inline bool fileExists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

// ../shared/zoo beside the checkout, or $PTQ_ZOO. Empty when neither exists (a user's clone), and when
// PTQ_ZOO is set to "" (PTQ_ZOO= ctest: the zoo tests skip as in a clone without the zoo).
inline std::string zooDir() {
  if (const char* env = std::getenv("PTQ_ZOO")) return env;  // "" when set empty
  const std::string d = std::string(PTQ_SOURCE_DIR) + "/../shared/zoo";
  return fileExists(d + "/README.md") ? d : "";
}

inline std::string zooFile(const std::string& name) {
  const std::string d = zooDir();
  return d.empty() ? "" : d + "/" + name;
}

// A PP-OCRv4 model file fetched by scripts/fetch-ocr-models.sh; empty when not fetched.
inline std::string ocrModel(const std::string& name) {
  const char* cache = std::getenv("PTQ_CACHE");
  const char* home = std::getenv("HOME");
  const std::string base = cache ? cache : std::string(home ? home : "/root") + "/.cache/ptq-tool";
  const std::string p = base + "/ocr/ocr-models-1.4.2/package/assets/" + name;
  return fileExists(p) ? p : "";
}

// A fresh empty folder under the build tree for one test.
inline std::string tempDir(const std::string& name) {
  const std::string d = std::string(PTQ_BINARY_DIR) + "/test-tmp/" + name;
  std::string cmd = "rm -rf '" + d + "' && mkdir -p '" + d + "'";
  if (std::system(cmd.c_str()) != 0) return "/tmp";
  return d;
}

}  // namespace ptq::test

// Skips the current test case (tests/support/skip.h) when the zoo is not there.
#define PTQ_REQUIRE_ZOO()                                                           \
  do {                                                                              \
    if (::ptq::test::zooDir().empty())                                              \
      PTQ_SKIP("../shared/zoo not found (set PTQ_ZOO to run this test)");           \
  } while (0)
