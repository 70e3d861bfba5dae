// Replays every input kept under tests/fuzz/regressions/<target>/ (each once crashed a reader, hung it,
// or made it allocate without bound) and the committed seeds under tests/fuzz/seeds/<target>/ through
// the fuzz harnesses (tests/fuzz/harness.h): each must read or fail with an input/usage error. The
// sanitizer suite (scripts/test.sh --sanitize) replays them under ASan+UBSan.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <chrono>
#include <fstream>

#include "tests/fuzz/harness.h"

namespace {

std::vector<std::string> filesIn(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("every kept fuzz input replays cleanly through its harness", "[hardening][fuzz]") {
  const std::string root = std::string(PTQ_SOURCE_DIR) + "/tests/fuzz";
  size_t regressions = 0;
  for (const auto& t : ptq::fuzz::targets()) {
    for (const char* kind : {"regressions", "seeds"}) {
      for (const std::string& file : filesIn(root + "/" + kind + "/" + t.name)) {
        INFO(t.name << ": " << file);
        const std::string bytes = readAll(file);
        const auto t0 = std::chrono::steady_clock::now();
        CHECK_NOTHROW(t.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
        // Bounded work: no kept input may take long (the 4 GiB allocation took 12.9 s).
        CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5.0);
        regressions += std::string(kind) == "regressions";
      }
    }
  }
  CHECK(regressions >= 5);
}
