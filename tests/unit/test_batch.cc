// `ptq-tool batch`: manifest errors, a batch with a broken model (the rest finish, exit 6), a crashed
// child, resume (finished models skipped, a changed config redone), shards (disjoint and covering for
// N = 1..5, from --shard, Slurm and Kubernetes variables) and --merge, and SIGTERM forwarding.
#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lib/driver/batch_manifest.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;
using nlohmann::json;

namespace {
const std::string kData = std::string(PTQ_SOURCE_DIR) + "/tests/data";
const std::string kDigits = kData + "/digits_cnn.onnx";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void writeFile(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

// A folder with the digits CNN, its data, and a manifest.
std::string setup(const std::string& name, const json& manifest) {
  const std::string dir = tempDir(name);
  REQUIRE(std::system(("cp '" + kDigits + "' '" + kData + "/digits_test_x_256x1x20x20_f32.bin' '" + kData + "/digits_test_y_256_i64.bin' '" + dir + "/'").c_str()) == 0);
  writeFile(dir + "/manifest.json", manifest.dump(2));
  return dir;
}

CommandResult batch(const std::string& dir, const std::string& args, const std::string& env = "") {
  return runCommand(env + " '" + toolPath() + "' batch '" + dir + "/manifest.json' --out-dir '" + dir + "/out' " + args);
}

json digitsEntry(const std::string& name, const std::string& config) {
  return {{"name", name}, {"model", "digits_cnn.onnx"}, {"config", config}, {"eval_data", {"x=digits_test_x_256x1x20x20_f32.bin"}},
          {"eval_labels", "digits_test_y_256_i64.bin"}, {"eval_samples", 64}};
}

std::map<std::string, json> byName(const json& summary) {
  std::map<std::string, json> m;
  for (const json& r : summary["models"]) m[r["name"]] = r;
  return m;
}

std::set<std::string> dryRunNames(const std::string& out) {
  std::set<std::string> names;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("run  ", 0) == 0 || line.rfind("skip ", 0) == 0) names.insert(line.substr(5, line.find(' ', 5) - 5));
  return names;
}
}  // namespace

TEST_CASE("batch manifest errors are exit 1 naming models[i].key", "[batch]") {
  struct Case {
    json manifest;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"colour", "red"}}}}}, "models[0].colour: unknown key"},
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w8a16"}}, {{"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"eval_seq", "128"}}}}},
       "models[1].eval_seq: must be an integer"},
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"eval_tokens", "t.i64"}, {"max_drop", {"ppl:2%"}}}}}}, "models[0].max_drop[0]"},
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w8a16"}}, {{"model", "digits_cnn.onnx"}, {"config", "w4a16"}}}}}, "models[1].name: 'digits_cnn' is used"},
      {{{"models", {{{"model", "digits_cnn.onnx"}}}}}, "models[0].config: required"},
      {{{"models", {{{"config", "w8a16"}}}}}, "models[0].model: required"},
      {{{"models", {{{"name", "../x"}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}}}}}, "models[0].name"},
      {{{"models", json::array()}, {"defaults", {{"thread", 2}}}}, "defaults.thread: unknown key"},
      {{{"model", json::array()}}, "model: unknown key"},
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"max_drop", {"top1:-1"}}}}}}, "models[0].max_drop: needs eval_tokens or eval_data"},
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"eval_data", "x=a.bin"}, {"eval_attribution", 1}}}}}, "models[0].eval_attribution: must be true or false"},
      {{{"models", {{{"model", "digits_cnn.onnx"}, {"config", "w9a16"}}}}}, "models[0].config: 'w9a16' is neither a file beside the manifest nor a preset (presets: mixed-3bit"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string dir = setup("batch_errors", cases[i].manifest);
    const auto r = batch(dir, "");
    INFO(i << ": " << r.output);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Catch::Contains(cases[i].says));
    CHECK_FALSE(fileExists(dir + "/out/summary.json"));
  }
  const std::string dir = setup("batch_errors", json{{"models", json::array()}});
  writeFile(dir + "/manifest.json", "{\"models\": [");
  const auto r = batch(dir, "");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Catch::Contains("not valid JSON"));
}

TEST_CASE("batch with a truncated model finishes the others, reports each and exits 6", "[batch]") {
  json m = {{"defaults", {{"threads", 1}}},
            {"models", {digitsEntry("ok8", "w8a16"), digitsEntry("gate4", "w4a16"),
                        {{"name", "broken"}, {"model", "broken.onnx"}, {"config", "w8a16"}},
                        {{"name", "packed"}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"format", "packed"}}}}};
  m["models"][0]["max_drop"] = {"top1:-2", "agree:>=0.95"};
  m["models"][0]["eval_attribution"] = true;
  m["models"][1]["max_drop"] = {"sqnr:>=60"};
  const std::string dir = setup("batch_broken", m);
  // A truncated copy: the first 20 kB of the model.
  const std::string bytes = readAll(kDigits);
  writeFile(dir + "/broken.onnx", bytes.substr(0, 20000));
  auto r = batch(dir, "--jobs 2");
  INFO(r.output);
  CHECK(r.exit_code == 6);
  const json s = json::parse(readAll(dir + "/out/summary.json"));
  auto rec = byName(s);
  REQUIRE(rec.size() == 4);
  CHECK(rec["ok8"]["status"] == "ok");
  CHECK(rec["ok8"]["exit_code"] == 0);
  CHECK(rec["ok8"]["gates"].size() == 2);
  CHECK(json::parse(readAll(dir + "/out/ok8/report.json"))["evaluation"]["attribution"].size() == 7);
  CHECK(rec["ok8"]["metrics"]["accuracy_reference"].get<double>() > 0.9);
  CHECK(rec["ok8"]["ratio"].get<double>() > 2.5);
  CHECK(rec["ok8"]["bytes_before"].get<int64_t>() == static_cast<int64_t>(bytes.size()));
  CHECK(rec["gate4"]["status"] == "gate_failed");
  CHECK(rec["gate4"]["exit_code"] == 3);
  CHECK(rec["gate4"]["gates"][0]["pass"] == false);
  CHECK(rec["broken"]["status"] == "failed");
  CHECK(rec["broken"]["exit_code"] == 2);
  CHECK_THAT(rec["broken"]["error"].get<std::string>(), Catch::Contains("broken.onnx"));
  CHECK(rec["packed"]["status"] == "ok");
  CHECK(fileExists(dir + "/out/packed/digits_cnn.ptq"));
  CHECK(fileExists(dir + "/out/ok8/digits_cnn.onnx"));
  CHECK(fileExists(dir + "/out/gate4/digits_cnn.onnx"));  // a failed gate still writes the model
  CHECK(fileExists(dir + "/out/ok8/report.json"));
  CHECK_THAT(readAll(dir + "/out/broken/log.txt"), Catch::Contains("truncated"));
  CHECK(s["counts"]["ok"] == 2);
  CHECK(s["counts"]["failed"] == 1);
  CHECK(s["counts"]["gate_failed"] == 1);
  const std::string md = readAll(dir + "/out/summary.md");
  CHECK_THAT(md, Catch::Contains("| ok8 | ok |"));
  CHECK_THAT(md, Catch::Contains("| broken | failed"));
  CHECK_THAT(md, Catch::Contains("FAIL sqnr:>=60"));

  // Again: the finished ones are skipped (the gate verdict carried), the broken one is retried.
  r = batch(dir, "--jobs 2");
  INFO(r.output);
  CHECK(r.exit_code == 6);
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["ok8"]["status"] == "skipped");
  CHECK(rec["ok8"]["previous_status"] == "ok");
  CHECK(rec["gate4"]["status"] == "skipped");
  CHECK(rec["gate4"]["previous_status"] == "gate_failed");
  CHECK(rec["broken"]["status"] == "failed");
  // Without the broken one the exit code says a gate failed (3), even though that model was skipped.
  m["models"].erase(2);
  writeFile(dir + "/manifest.json", m.dump());
  r = batch(dir, "");
  INFO(r.output);
  CHECK(r.exit_code == 3);
}

TEST_CASE("batch resume: an unchanged model is skipped, a changed config or model is redone", "[batch]") {
  json m = {{"models", {{{"name", "a"}, {"model", "digits_cnn.onnx"}, {"config", "mine.json"}},
                        {{"name", "b"}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"threads", 1}}}}};
  const std::string dir = setup("batch_resume", m);
  writeFile(dir + "/mine.json", R"({"weights": {"bits": 8}})");
  auto r = batch(dir, "");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["a"]["status"] == "ok");
  CHECK(rec["b"]["status"] == "ok");
  const std::string digest_a = rec["a"]["digest"];

  r = batch(dir, "");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["a"]["status"] == "skipped");
  CHECK(rec["b"]["status"] == "skipped");
  CHECK(rec["a"]["digest"] == digest_a);

  // The config file changes: a is redone, b is not.
  writeFile(dir + "/mine.json", R"({"weights": {"bits": 4}})");
  r = batch(dir, "");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["a"]["status"] == "ok");
  CHECK(rec["a"]["digest"] != digest_a);
  CHECK(rec["b"]["status"] == "skipped");
  // The entry changes (a seed), and an output removed: both redone.
  m["models"][1]["seed"] = 3;
  writeFile(dir + "/manifest.json", m.dump());
  REQUIRE(std::remove((dir + "/out/a/digits_cnn.onnx").c_str()) == 0);
  r = batch(dir, "--jobs 2");
  INFO(r.output);
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["a"]["status"] == "ok");
  CHECK(rec["b"]["status"] == "ok");
  // The model file changes: redone.
  r = batch(dir, "");
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["a"]["status"] == "skipped");
  writeFile(dir + "/digits_cnn.onnx", readAll(kDigits) + std::string(1, '\0'));
  (void)batch(dir, "");
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["a"]["status"] != "skipped");
}

TEST_CASE("batch resume: an evaluation file rewritten in place redoes the model, and a preset name ignores the current directory", "[batch]") {
  json m = {{"models", {digitsEntry("e", "w8a16")}}};
  m["models"][0]["eval_data"] = {"x=./sub/../digits_test_x_256x1x20x20_f32.bin"};
  const std::string dir = setup("batch_resume_data", m);
  REQUIRE(std::system(("mkdir -p '" + dir + "/sub' '" + dir + "/cwd'").c_str()) == 0);
  // A file named like the preset in the batch's working directory must not be read as its config.
  writeFile(dir + "/cwd/w8a16", "not a config");
  auto run = [&] { return runCommand("cd '" + dir + "/cwd' && '" + toolPath() + "' batch ../manifest.json --out-dir ../out"); };
  auto r = run();
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["e"]["status"] == "ok");
  CHECK(rec["e"]["config"] == "w8a16");
  CHECK_THAT(rec["e"]["config_file"].get<std::string>(), Catch::EndsWith("configs/w8a16.json"));
  CHECK_THAT(readAll(dir + "/out/e/log.txt"), Catch::Contains("--eval-data x=../digits_test_x_256x1x20x20_f32.bin"));
  r = run();
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["e"]["status"] == "skipped");
  // Same path, other bytes (the last sample's first float): redone.
  std::string x = readAll(dir + "/digits_test_x_256x1x20x20_f32.bin");
  x[x.size() - 400 * 4] ^= 0x01;
  writeFile(dir + "/digits_test_x_256x1x20x20_f32.bin", x);
  r = run();
  INFO(r.output);
  rec = byName(json::parse(readAll(dir + "/out/summary.json")));
  CHECK(rec["e"]["status"] == "ok");
}

TEST_CASE("batch: a child killed by a signal is a failed model, exit 6", "[batch]") {
  const std::string dir = setup("batch_crash", json{{"models", {{{"name", "a"}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}}}}});
  const auto r = batch(dir, "", "PTQ_TEST_CRASH_AT=save:model-written");
  INFO(r.output);
  CHECK(r.exit_code == 6);
  const json s = json::parse(readAll(dir + "/out/summary.json"));
  CHECK(s["models"][0]["status"] == "failed");
  CHECK(s["models"][0]["signal"] == SIGKILL);
  CHECK_THAT(s["models"][0]["error"].get<std::string>(), Catch::Contains("signal 9"));
}

TEST_CASE("batch shards are disjoint and cover a 7-entry manifest for N = 1..5, from --shard, Slurm and Kubernetes variables", "[batch][shard]") {
  json m = {{"models", json::array()}};
  for (int i = 0; i < 7; ++i) m["models"].push_back({{"name", "model-" + std::to_string(i)}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}});
  const std::string dir = setup("batch_shards", m);
  std::set<std::string> all;
  for (const json& e : m["models"]) all.insert(e["name"].get<std::string>());
  for (int n = 1; n <= 5; ++n) {
    std::set<std::string> seen;
    size_t total = 0;
    for (int i = 0; i < n; ++i) {
      const std::string shard = std::to_string(i) + "/" + std::to_string(n);
      const auto r = batch(dir, "--dry-run --shard " + shard);
      INFO(shard << ": " << r.output);
      REQUIRE(r.exit_code == 0);
      const std::set<std::string> names = dryRunNames(r.output);
      for (const std::string& nm : names) CHECK(ptq::driver::shardOf(nm, n) == i);
      total += names.size();
      seen.insert(names.begin(), names.end());
      // The same shard from a Slurm array task (with an offset) and from a Kubernetes Indexed Job.
      const auto slurm = batch(dir, "--dry-run", "SLURM_ARRAY_TASK_ID=" + std::to_string(i + 10) + " SLURM_ARRAY_TASK_MIN=10 SLURM_ARRAY_TASK_COUNT=" + std::to_string(n));
      CHECK(dryRunNames(slurm.output) == names);
      const auto k8s = batch(dir, "--dry-run --shard-count " + std::to_string(n), "JOB_COMPLETION_INDEX=" + std::to_string(i));
      CHECK(dryRunNames(k8s.output) == names);
    }
    CHECK(total == 7);  // disjoint
    CHECK(seen == all);  // covering
  }
  CHECK(batch(dir, "--dry-run --shard 3/3").exit_code == 1);
  CHECK(batch(dir, "--dry-run --shard x").exit_code == 1);
  CHECK(batch(dir, "--dry-run --shard-count 2").exit_code == 1);  // no JOB_COMPLETION_INDEX
  CHECK(batch(dir, "--dry-run", "SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=4").exit_code == 1);
}

TEST_CASE("batch shards sharing a folder write their own summaries, and --merge joins them", "[batch][shard]") {
  json m = {{"defaults", {{"config", "w8a16"}, {"threads", 1}}}, {"models", json::array()}};
  for (int i = 0; i < 5; ++i) m["models"].push_back({{"name", "m" + std::to_string(i)}, {"model", "digits_cnn.onnx"}});
  const std::string dir = setup("batch_merge", m);
  for (int i = 0; i < 3; ++i) {
    const auto r = batch(dir, "--shard " + std::to_string(i) + "/3");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(fileExists(dir + "/out/shards/summary-" + std::to_string(i) + "-of-3.json"));
  }
  CHECK_FALSE(fileExists(dir + "/out/summary.json"));
  // Two of three shards: merged, with the missing shard named and exit 6.
  const std::string tool = "'" + toolPath() + "' batch --merge '" + dir + "/out'";
  std::rename((dir + "/out/shards/summary-2-of-3.json").c_str(), (dir + "/away.json").c_str());
  auto r = runCommand(tool + " --out-dir '" + dir + "/partial'");
  INFO(r.output);
  CHECK(r.exit_code == 6);
  CHECK(json::parse(readAll(dir + "/partial/summary.json"))["missing_shards"] == json::array({"2/3"}));
  std::rename((dir + "/away.json").c_str(), (dir + "/out/shards/summary-2-of-3.json").c_str());
  r = runCommand(tool);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  const json s = json::parse(readAll(dir + "/out/summary.json"));
  REQUIRE(s["models"].size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(s["models"][i]["name"] == "m" + std::to_string(i));
  CHECK(s["counts"]["ok"] == 5);
  CHECK(fileExists(dir + "/out/summary.md"));
  // The same folder twice: every model appears twice, an error naming it.
  r = runCommand(tool + " '" + dir + "/out' --out-dir '" + dir + "/dup'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("is in both"));
}

TEST_CASE("batch forwards SIGTERM to its running children and waits for them", "[batch][zoo]") {
  PTQ_REQUIRE_ZOO();
  // A model that takes seconds: GPTQ on gpt-fortunes.
  const std::string dir = tempDir("batch_signal");
  // Two of them at --jobs 1, so the second is still queued when the signal comes (a batch once spun
  // forever there).
  json slow = {{"name", "slow"}, {"model", zooFile("gpt-fortunes.onnx")}, {"config", "w4a16-gptq"}, {"threads", 1},
               {"calib", {zooFile("gpt-fortunes.calib.i64")}}, {"calib_shape", "64x128"}};
  json queued = slow;
  queued["name"] = "queued";
  const json m = {{"models", {slow, queued}}};
  writeFile(dir + "/manifest.json", m.dump());
  const std::string cmd = "'" + toolPath() + "' batch '" + dir + "/manifest.json' --out-dir '" + dir + "/out' > '" + dir +
                          "/batch.log' 2>&1 & pid=$!; "
                          // The signal comes 0.3 s after the child started (seen in the log), not
                          // at a fixed time: a fast machine once finished the model first.
                          "for i in $(seq 1 600); do grep -q 'started (pid' '" + dir + "/batch.log' && break; sleep 0.05; done; "
                          "sleep 0.3; kill -TERM $pid; wait $pid; echo exit=$?";
  // (the test's own timeout is the guard against the spin)
  const auto r = runCommand(cmd);
  const std::string log = readAll(dir + "/batch.log");
  INFO(r.output << log);
  CHECK_THAT(r.output, Catch::Contains("exit=143"));
  CHECK_THAT(log, Catch::Contains("forwarding it to 1 running"));
  const json s = json::parse(readAll(dir + "/out/summary.json"));
  CHECK(s["interrupted"] == true);
  CHECK(s["models"][0]["status"] == "failed");
  CHECK(s["models"][0]["signal"] == SIGTERM);
  REQUIRE(s["models"].size() == 2);
  CHECK(s["models"][1]["status"] == "failed");  // never started
  // The child is gone (waited for), not orphaned.
  const auto pos = log.find("started (pid ");
  REQUIRE(pos != std::string::npos);
  const std::string pid = log.substr(pos + 13, log.find(')', pos) - pos - 13);
  CHECK(runCommand("kill -0 " + pid).exit_code != 0);
}

TEST_CASE("the zoo manifest of scripts/eval-zoo.sh is a valid batch manifest", "[batch]") {
  const std::string dir = tempDir("batch_zoo_manifest");
  const auto r = runCommand("'" + toolPath() + "' batch '" + std::string(PTQ_SOURCE_DIR) + "/scripts/zoo/manifest.json' --out-dir '" + dir +
                            "/out' --dry-run");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(dryRunNames(r.output).size() == 20);
}

TEST_CASE("batch digest reads only regular files: a manifest naming /dev/zero or a FIFO does not hang", "[batch][hardening]") {
  json m = {{"models", {{{"name", "z"}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}, {"calib", {"x=/dev/zero", "y=fifo"}}}}}};
  const std::string dir = setup("batch_devzero", m);
  REQUIRE(std::system(("mkfifo '" + dir + "/fifo'").c_str()) == 0);
  const auto r = batch(dir, "--dry-run");  // the test's timeout is the guard
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(dryRunNames(r.output) == std::set<std::string>{"z"});
}
