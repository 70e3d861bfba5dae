// Nothing lost, nothing half-written (issue 13): kill -9 at any moment of quantize leaves no file or
// the complete old one (model and external data together), the next run removes stray temporaries,
// and a full disk (tmpfs) or a file-size limit is exit 4 naming the path with nothing left behind.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "lib/util/atomic_file.h"
#include "support/run_command.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return "<absent>";
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

int countTemps(const std::string& dir) {
  int n = 0;
  for (const auto& name : listDir(dir)) n += name.find(".ptq-tmp.") != std::string::npos;
  return n;
}

const std::string kModel = std::string(PTQ_SOURCE_DIR) + "/tests/data/digits_cnn.onnx";

std::string quantizeCmd(const std::string& preset, const std::string& out) {
  return test::toolPath() + " quantize '" + kModel + "' -c " + preset + " --external-data -q -o '" + out + "'";
}

struct Pair {
  std::string model, data;
  bool operator==(const Pair& o) const { return model == o.model && data == o.data; }
};
Pair readPair(const std::string& out) { return {readAll(out), readAll(out + ".data")}; }

// Starts `argv` with `env` set (fork/exec) and returns its pid.
pid_t spawn(const std::vector<std::string>& argv, const std::string& env = "") {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!env.empty()) ::putenv(const_cast<char*>(env.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

std::vector<std::string> quantizeArgv(const std::string& preset, const std::string& out) {
  return {test::toolPath(), "quantize", kModel, "-c", preset, "--external-data", "-q", "-o", out};
}

}  // namespace

TEST_CASE("kill -9 during quantize with external data leaves the old pair or nothing, never a mix", "[hardening][atomic]") {
  const std::string dir = test::tempDir("atomic_kill");
  const std::string ref_dir = test::tempDir("atomic_kill_ref");
  const std::string out = dir + "/model.onnx";
  // The new output, written undisturbed under the same file name (the data location inside names it).
  REQUIRE(test::runCommand(quantizeCmd("w4a16", ref_dir + "/model.onnx")).exit_code == 0);
  const Pair fresh = readPair(ref_dir + "/model.onnx");
  REQUIRE(fresh.data.size() > 1000);

  auto makeOld = [&] {
    REQUIRE(test::runCommand(quantizeCmd("w8a16", out)).exit_code == 0);
    return readPair(out);
  };
  const Pair old = makeOld();
  REQUIRE_FALSE(old == fresh);

  SECTION("at each step of the write") {
    // Before the old model is removed the old pair is intact; after it, no model until the new one.
    const std::vector<std::pair<std::string, bool>> points = {
        {"save:data-partial", true},     {"save:model-written", true}, {"save:both-finished", true},
        {"save:old-model-removed", false}, {"save:data-renamed", false}, {"save:done", false}};
    for (const auto& [point, old_kept] : points) {
      INFO("crash point " << point);
      makeOld();
      const pid_t pid = spawn(quantizeArgv("w4a16", out), "PTQ_TEST_CRASH_AT=" + point);
      int status = 0;
      REQUIRE(::waitpid(pid, &status, 0) == pid);
      REQUIRE(WIFSIGNALED(status));
      CHECK(WTERMSIG(status) == SIGKILL);
      const Pair now = readPair(out);
      if (point == "save:done") CHECK(now == fresh);
      else if (old_kept) CHECK(now == old);
      else CHECK(now.model == "<absent>");
      // The next run cleans up what the killed one left and writes the new pair.
      REQUIRE(test::runCommand(quantizeCmd("w4a16", out)).exit_code == 0);
      CHECK(readPair(out) == fresh);
      CHECK(countTemps(dir) == 0);
    }
  }
  SECTION("at arbitrary moments") {
    // Time one run, then kill runs at fractions of it: whatever state it is in, the output path holds
    // nothing, the complete old pair or the complete new pair.
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(test::runCommand(quantizeCmd("w4a16", dir + "/timing.onnx")).exit_code == 0);
    const double full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int absent = 0, kept = 0, done = 0;
    for (int i = 0; i < 12; ++i) {
      makeOld();
      const pid_t pid = spawn(quantizeArgv("w4a16", out));
      std::this_thread::sleep_for(std::chrono::duration<double>(full * (0.3 + 0.07 * i)));
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      const Pair now = readPair(out);
      const bool ok = now.model == "<absent>" || now == old || now == fresh;
      CHECK(ok);
      absent += now.model == "<absent>";
      kept += now == old;
      done += now == fresh;
    }
    INFO("absent " << absent << ", old kept " << kept << ", new done " << done);
    CHECK(absent + kept + done == 12);
    REQUIRE(test::runCommand(quantizeCmd("w4a16", out)).exit_code == 0);
    CHECK(countTemps(dir) == 0);
  }
}

TEST_CASE("stale temporaries of dead writers are removed, live writers' are kept", "[hardening][atomic]") {
  const std::string dir = test::tempDir("atomic_stale");
  const std::string out = dir + "/out.bin";
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid that no longer runs
  const std::string dead = dir + "/.out.bin.ptq-tmp." + std::to_string(child) + ".abc123";
  const std::string live = dir + "/.out.bin.ptq-tmp." + std::to_string(::getpid()) + ".def456";
  const std::string other = dir + "/.other.bin.ptq-tmp." + std::to_string(child) + ".abc123";
  for (const auto& p : {dead, live, other}) std::ofstream(p) << "x";
  writeFileAtomically(out, "hello");
  CHECK(readAll(out) == "hello");
  CHECK_FALSE(test::fileExists(dead));
  CHECK(test::fileExists(live));
  CHECK(test::fileExists(other));  // another target's temporaries are its own writer's business
}

TEST_CASE("a file-size limit (EFBIG) is exit 4 naming the path, nothing written, temporary removed", "[hardening][atomic]") {
  const std::string dir = test::tempDir("atomic_efbig");
  for (const std::string ext : {"", " --external-data"}) {
    INFO("flags:" << ext);
    // ulimit -f counts 1 KiB blocks: 64 KiB is far less than the ~1 MB model.
    const auto r = test::runCommand("ulimit -f 64; " + test::toolPath() + " quantize '" + kModel + "' -c w8a16" + ext +
                                    " -o '" + dir + "/out.onnx'");
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.output, Catch::Contains(dir + "/out.onnx") && Catch::Contains("File too large"));
    CHECK(listDir(dir).empty());
  }
}

TEST_CASE("a full disk (small tmpfs) is exit 4 naming the path, nothing at the output, temporary removed", "[hardening][atomic]") {
  const std::string dir = test::tempDir("atomic_full_disk");
  if (::geteuid() != 0 || ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k") != 0)
    PTQ_SKIP("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN); the EFBIG test covers the same write path");
  struct Unmount {
    std::string d;
    ~Unmount() { ::umount(d.c_str()); }
  } unmount{dir};
  for (const std::string ext : {"", " --external-data"}) {
    INFO("flags:" << ext);
    const auto r =
        test::runCommand(test::toolPath() + " quantize '" + kModel + "' -c w8a16" + ext + " -o '" + dir + "/out.onnx'");
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.output, Catch::Contains(dir + "/out.onnx") && Catch::Contains("No space left on device"));
    CHECK(listDir(dir).empty());
  }
  // The old output survives a failed overwrite.
  std::ofstream(dir + "/old.onnx") << "old";
  const auto r = test::runCommand(test::toolPath() + " quantize '" + kModel + "' -c w8a16 -o '" + dir + "/old.onnx'");
  CHECK(r.exit_code == 4);
  CHECK(readAll(dir + "/old.onnx") == "old");
  CHECK(listDir(dir) == std::vector<std::string>{"old.onnx"});
}
