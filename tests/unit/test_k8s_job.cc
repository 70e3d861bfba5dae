// scripts/k8s-batch-job.json, the example Kubernetes Indexed Job (there is no control plane here, so it
// is checked structurally): an Indexed Job whose pods run `ptq-tool batch --shard-count N` with
// JOB_COMPLETION_INDEX, N = completions; and that command line picks shard JOB_COMPLETION_INDEX of N.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/run_command.h"
#include "support/test_paths.h"

using nlohmann::json;
using namespace ptq::test;

TEST_CASE("the Kubernetes example is an Indexed Job running one batch shard per completion index", "[batch][k8s]") {
  std::ifstream f(std::string(PTQ_SOURCE_DIR) + "/scripts/k8s-batch-job.json");
  REQUIRE(f);
  const json j = json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
  CHECK(j["apiVersion"] == "batch/v1");
  CHECK(j["kind"] == "Job");
  const json& spec = j["spec"];
  CHECK(spec["completionMode"] == "Indexed");
  const int completions = spec["completions"];
  CHECK(completions >= 2);
  CHECK(spec["parallelism"].get<int>() >= 1);
  CHECK(spec["parallelism"].get<int>() <= completions);
  const json& pod = spec["template"]["spec"];
  CHECK(pod["restartPolicy"] == "Never");
  REQUIRE(pod["containers"].size() == 1);
  const json& c = pod["containers"][0];
  std::vector<std::string> cmd = c["command"].get<std::vector<std::string>>();
  REQUIRE(cmd.size() >= 3);
  CHECK(cmd[0] == "ptq-tool");
  CHECK(cmd[1] == "batch");
  const auto sc = std::find(cmd.begin(), cmd.end(), "--shard-count");
  REQUIRE(sc != cmd.end());
  REQUIRE(sc + 1 != cmd.end());
  CHECK(*(sc + 1) == std::to_string(completions));
  CHECK(std::find(cmd.begin(), cmd.end(), "--out-dir") != cmd.end());
  bool index_env = false;
  for (const json& e : c["env"])
    if (e["name"] == "JOB_COMPLETION_INDEX")
      index_env = e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']";
  CHECK(index_env);

  // The same arguments, on a local manifest, with each completion index: disjoint shards covering it.
  const std::string dir = tempDir("k8s_job");
  json m = {{"models", json::array()}};
  for (int i = 0; i < 9; ++i) m["models"].push_back({{"name", "m" + std::to_string(i)}, {"model", "x.onnx"}, {"config", "w8a16"}});
  std::ofstream(dir + "/manifest.json") << m.dump();
  std::multiset<std::string> seen;
  for (int i = 0; i < completions; ++i) {
    const auto r = runCommand("JOB_COMPLETION_INDEX=" + std::to_string(i) + " '" + toolPath() + "' batch '" + dir + "/manifest.json' --out-dir '" +
                              dir + "/out' --shard-count " + std::to_string(completions) + " --dry-run");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    std::istringstream in(r.output);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("run  ", 0) == 0) seen.insert(line.substr(5, line.find(' ', 5) - 5));
  }
  CHECK(seen.size() == 9);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 9);
}
