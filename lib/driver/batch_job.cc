#include "lib/driver/batch_job.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <set>

#include <spdlog/spdlog.h>

#include "lib/driver/batch_manifest.h"
#include "lib/driver/html_report.h"
#include "lib/util/atomic_file.h"
#include "lib/util/error.h"

namespace ptq::driver {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_signal = 0;
extern "C" void onBatchSignal(int s) { g_signal = s; }

// SIGINT/SIGTERM set g_signal while a batch runs (no SA_RESTART needed: the loop polls).
class SignalGuard {
 public:
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = onBatchSignal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

int64_t fileSize(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

void makeDirs(const std::string& dir) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    cur = dir.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) throwOutput(dir + ": cannot create folder " + cur + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throwOutput(dir + ": not a folder");
  if (::access(dir.c_str(), W_OK) != 0) throwOutput(dir + ": folder is not writable");
}

std::optional<json> readJson(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  try {
    return json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// The last non-empty line of a log (the error a failed child printed).
std::string lastLine(const std::string& path) {
  std::ifstream f(path);
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  return last;
}

// The figures of a quantize report's evaluation worth a summary column.
json summaryMetrics(const json& report) {
  json m = json::object();
  if (!report.contains("evaluation")) return m;
  const json& ev = report["evaluation"];
  if (ev.contains("language_model")) {
    const json& lm = ev["language_model"];
    m["ppl_reference"] = lm["perplexity_reference"];
    m["ppl_candidate"] = lm["perplexity_candidate"];
    m["ppl_delta_pct"] = 100.0 * lm["perplexity_delta"].get<double>();
    m["top1_agreement"] = lm["top1_agreement"];
  }
  double min_sqnr = 1e300, min_cos = 1e300;
  for (const json& o : ev["outputs"]) {
    if (o["elements"].get<int64_t>() == 0) continue;
    min_sqnr = std::min(min_sqnr, o["sqnr_db"].get<double>());
    min_cos = std::min(min_cos, o["cosine"].get<double>());
    if (o.contains("classifier") && !m.contains("top1_agreement")) {
      const json& c = o["classifier"];
      m["top1_agreement"] = c["top1_agreement"];
      m["top5_agreement"] = c["top5_agreement"];
      if (c.contains("accuracy_reference")) {
        m["accuracy_reference"] = c["accuracy_reference"];
        m["accuracy_candidate"] = c["accuracy_candidate"];
      }
    }
  }
  if (min_sqnr < 1e300) {
    m["sqnr_db"] = min_sqnr;
    m["cosine"] = min_cos;
  }
  m["samples"] = ev["samples"];
  return m;
}

int exitCodeFor(const json& models, bool incomplete) {
  bool failed = incomplete, gate = false;
  for (const json& m : models) {
    const std::string s = m["status"];
    const std::string prev = m.value("previous_status", "");
    failed = failed || s == "failed";
    gate = gate || s == "gate_failed" || (s == "skipped" && prev == "gate_failed");
  }
  return failed ? static_cast<int>(ExitCode::kBatchFailed) : gate ? static_cast<int>(ExitCode::kAccuracyGate) : 0;
}

json counts(const json& models) {
  json c = {{"ok", 0}, {"failed", 0}, {"gate_failed", 0}, {"skipped", 0}};
  for (const json& m : models) c[m["status"].get<std::string>()] = c[m["status"].get<std::string>()].get<int>() + 1;
  return c;
}

std::string human(int64_t bytes) {
  char b[32];
  if (bytes >= 1000000) std::snprintf(b, sizeof b, "%.2f MB", bytes / 1e6);
  else std::snprintf(b, sizeof b, "%.1f kB", bytes / 1e3);
  return b;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string metricsCell(const json& m) {
  std::string s;
  auto add = [&](const std::string& x) { s += (s.empty() ? "" : ", ") + x; };
  if (m.contains("ppl_reference"))
    add("ppl " + fmt("%.3f", m["ppl_reference"]) + " → " + fmt("%.3f", m["ppl_candidate"]) + " (" + fmt("%+.2f%%", m["ppl_delta_pct"]) + ")");
  if (m.contains("accuracy_reference"))
    add("acc " + fmt("%.4f", m["accuracy_reference"]) + " → " + fmt("%.4f", m["accuracy_candidate"]));
  if (m.contains("top1_agreement")) add("agree " + fmt("%.4f", m["top1_agreement"]));
  if (m.contains("sqnr_db") && !m.contains("ppl_reference")) add("SQNR " + fmt("%.1f", m["sqnr_db"]) + " dB");
  return s.empty() ? "–" : s;
}

void writeSummary(const std::string& json_path, const std::string& md_path, const json& summary) {
  writeFileAtomically(json_path, summary.dump(2) + "\n");
  writeFileAtomically(md_path, batchSummaryMarkdown(summary));
}

struct Running {
  size_t entry;
  Clock::time_point start;
};

class BatchRun {
 public:
  BatchRun(const BatchOptions& o, const BatchManifest& m, const ShardSpec& shard) : o_(o), m_(m), shard_(shard) {}

  int run() {
    const auto t0 = Clock::now();
    std::vector<size_t> mine;
    for (size_t i = 0; i < m_.entries.size(); ++i)
      if (shardOf(m_.entries[i].name, shard_.count) == shard_.index) mine.push_back(i);
    if (shard_.count > 1)
      spdlog::info("batch: shard {}/{} (from {}): {} of {} models", shard_.index, shard_.count, shard_.source, mine.size(), m_.entries.size());
    records_.assign(m_.entries.size(), json());
    std::deque<size_t> queue;
    for (size_t i : mine) {
      const BatchEntry& e = m_.entries[i];
      const std::string dir = o_.out_dir + "/" + e.name;
      const std::string digest = entryDigest(e);
      digests_[i] = digest;
      const auto done = readJson(dir + "/done.json");
      const bool skip = done && done->value("digest", "") == digest && exists(dir + "/" + e.output_name) && done->contains("record");
      if (o_.dry_run) {
        std::cout << (skip ? "skip " : "run  ") << e.name << " (digest " << digest << ")\n";
        continue;
      }
      if (skip) {
        json r = (*done)["record"];
        r["previous_status"] = r["status"];
        r["status"] = "skipped";
        r["previous_seconds"] = r["seconds"];
        r["seconds"] = 0.0;
        records_[i] = r;
        spdlog::info("batch: {} unchanged since its earlier run ({}), skipped", e.name, r["previous_status"].get<std::string>());
      } else {
        queue.push_back(i);
      }
    }
    if (o_.dry_run) return 0;

    std::map<pid_t, Running> running;
    bool forwarded = false;
    const size_t total = queue.size();
    size_t finished = 0;
    try {
      while (!queue.empty() || !running.empty()) {
        while (!g_signal && !queue.empty() && static_cast<int>(running.size()) < std::max(1, o_.jobs)) {
          const size_t i = queue.front();
          queue.pop_front();
          const pid_t pid = launch(i);
          if (pid > 0) running[pid] = Running{i, Clock::now()};
        }
        if (g_signal && !forwarded) {
          spdlog::warn("batch: signal {}: forwarding it to {} running model(s) and waiting for them", static_cast<int>(g_signal), running.size());
          for (const auto& [pid, r] : running) ::kill(pid, g_signal);
          forwarded = true;
        }
        int status = 0;
        const pid_t p = ::waitpid(-1, &status, WNOHANG);
        if (p > 0 && running.count(p)) {
          const Running r = running[p];
          running.erase(p);
          finish(r.entry, status, std::chrono::duration<double>(Clock::now() - r.start).count());
          ++finished;
          const json& rec = records_[r.entry];
          spdlog::info("batch: [{}/{}] {}: {} (exit {}) in {:.1f} s", finished, total, m_.entries[r.entry].name, rec["status"].get<std::string>(),
                       rec["exit_code"].get<int>(), rec["seconds"].get<double>());
          continue;
        }
        // Interrupted with nothing left running: stop, whatever is still queued (checked first, so a
        // signal with models queued cannot spin on ECHILD forever).
        if (g_signal && running.empty()) break;
        if (p < 0 && errno == ECHILD && running.empty()) continue;
        struct timespec ts {0, 20 * 1000 * 1000};
        ::nanosleep(&ts, nullptr);
      }
    } catch (...) {
      // A model's folder could not be written (launch, finish): stop the others and wait for them
      // rather than leave them running unreaped behind an error exit.
      for (const auto& [pid, r] : running) ::kill(pid, SIGTERM);
      for (const auto& [pid, r] : running) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
      throw;
    }
    const bool interrupted = g_signal != 0;
    for (size_t i : queue) {  // never started (interrupted)
      records_[i] = baseRecord(i);
      records_[i]["status"] = "failed";
      records_[i]["error"] = "not started: the batch was interrupted";
    }

    json summary;
    summary["tool_version"] = PTQ_VERSION;
    summary["manifest"] = m_.path;
    summary["out_dir"] = o_.out_dir;
    summary["shard"] = {{"index", shard_.index}, {"count", shard_.count}, {"source", shard_.source}};
    summary["jobs"] = o_.jobs;
    summary["models"] = json::array();
    for (size_t i : mine)
      if (!records_[i].is_null()) summary["models"].push_back(records_[i]);
    summary["counts"] = counts(summary["models"]);
    summary["seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
    summary["interrupted"] = interrupted;
    int code = exitCodeFor(summary["models"], false);
    if (interrupted) code = 128 + static_cast<int>(g_signal);
    summary["exit_code"] = code;
    std::string json_path = o_.out_dir + "/summary.json", md_path = o_.out_dir + "/summary.md";
    if (shard_.count > 1) {
      makeDirs(o_.out_dir + "/shards");
      const std::string tag = std::to_string(shard_.index) + "-of-" + std::to_string(shard_.count);
      json_path = o_.out_dir + "/shards/summary-" + tag + ".json";
      md_path = o_.out_dir + "/shards/summary-" + tag + ".md";
    }
    writeSummary(json_path, md_path, summary);
    if (!o_.report_html.empty()) writeFileAtomically(o_.report_html, renderBatchHtml(summary));
    spdlog::info("batch: {} ok, {} gate failed, {} failed, {} skipped; wrote {}", summary["counts"]["ok"].get<int>(),
                 summary["counts"]["gate_failed"].get<int>(), summary["counts"]["failed"].get<int>(), summary["counts"]["skipped"].get<int>(),
                 json_path);
    summary_ = summary;
    return code;
  }

  const json& summary() const { return summary_; }

 private:
  json baseRecord(size_t i) const {
    const BatchEntry& e = m_.entries[i];
    json r;
    r["name"] = e.name;
    r["model"] = e.model;
    r["config"] = e.config_label;
    r["config_file"] = e.config;
    r["output"] = o_.out_dir + "/" + e.name + "/" + e.output_name;
    r["log"] = o_.out_dir + "/" + e.name + "/log.txt";
    r["status"] = "failed";
    r["exit_code"] = -1;
    r["bytes_before"] = fileSize(e.model);
    r["bytes_after"] = 0;
    r["ratio"] = 0.0;
    r["metrics"] = json::object();
    r["gates"] = json::array();
    r["seconds"] = 0.0;
    r["digest"] = digests_.count(i) ? digests_.at(i) : "";
    return r;
  }

  pid_t launch(size_t i) {
    const BatchEntry& e = m_.entries[i];
    const std::string dir = o_.out_dir + "/" + e.name;
    makeDirs(dir);
    ::unlink((dir + "/done.json").c_str());
    ::unlink((dir + "/report.json").c_str());
    ::unlink((dir + "/" + e.output_name).c_str());  // so an earlier run's output cannot stand in for a missing one
    std::vector<std::string> args = {o_.tool_path, "quantize"};
    args.insert(args.end(), e.quantize_args.begin(), e.quantize_args.end());
    for (const std::string& a : {std::string("-o"), dir + "/" + e.output_name, std::string("--report"), dir + "/report.json"}) args.push_back(a);
    const bool has_threads = e.resolved.contains("threads");
    if (!has_threads) {
      const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
      args.push_back("--threads");
      args.push_back(std::to_string(std::max(1L, cores / std::max(1, o_.jobs))));
    }
    if (!o_.report_html.empty()) {
      args.push_back("--report-html");
      args.push_back(dir + "/report.html");
    }
    const std::string log = dir + "/log.txt";
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throwOutput(log + ": cannot create: " + std::strerror(errno));
    std::string cmd = "#";
    for (const std::string& a : args) cmd += " " + a;
    cmd += "\n";
    if (::write(fd, cmd.data(), cmd.size()) < 0) {
      ::close(fd);
      throwOutput(log + ": cannot write: " + std::strerror(errno));
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string exe = o_.tool_path;
    std::fflush(nullptr);
    // SIGINT/SIGTERM stay blocked across fork until the child has its default handlers back: a signal
    // forwarded to the child before that would run the batch's handler in the child and be lost
    // (the child would then quantize to the end). Pending, it kills the child once unblocked.
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &block, &old_mask);
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      struct sigaction sa {};
      sa.sa_handler = SIG_DFL;
      ::sigaction(SIGINT, &sa, nullptr);
      ::sigaction(SIGTERM, &sa, nullptr);
      ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
      ::execv(exe.c_str(), argv.data());
      const char msg[] = "batch: exec of ptq-tool failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    const int fork_errno = errno;
    ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);  // a signal that came meanwhile is handled now
    ::close(fd);
    if (pid < 0) {
      errno = fork_errno;
      records_[i] = baseRecord(i);
      records_[i]["error"] = std::string("fork failed: ") + std::strerror(errno);
      return -1;
    }
    spdlog::info("batch: {} started (pid {})", e.name, pid);
    return pid;
  }

  void finish(size_t i, int status, double seconds) {
    const BatchEntry& e = m_.entries[i];
    const std::string dir = o_.out_dir + "/" + e.name;
    json r = baseRecord(i);
    r["seconds"] = seconds;
    if (WIFEXITED(status)) {
      const int code = WEXITSTATUS(status);
      r["exit_code"] = code;
      r["status"] = code == 0 ? "ok" : code == static_cast<int>(ExitCode::kAccuracyGate) ? "gate_failed" : "failed";
    } else if (WIFSIGNALED(status)) {
      r["exit_code"] = 128 + WTERMSIG(status);
      r["signal"] = WTERMSIG(status);
      r["status"] = "failed";
      r["error"] = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
    }
    if (r["status"] != "failed" && !exists(dir + "/" + e.output_name)) {
      r["status"] = "failed";
      r["error"] = "exit " + std::to_string(r["exit_code"].get<int>()) + " but no output was written";
    }
    if (r["status"] == "failed" && !r.contains("error")) r["error"] = lastLine(dir + "/log.txt");
    if (const auto report = readJson(dir + "/report.json"); report && r["status"] != "failed") {
      const json summary = report->value("summary", json::object());
      r["bytes_before"] = summary.value("input_bytes", r["bytes_before"].get<int64_t>());
      r["bytes_after"] = summary.value("output_bytes", int64_t{0});
      r["weight_bytes_before"] = summary.value("weight_bytes_before", int64_t{0});
      r["weight_bytes_after"] = summary.value("weight_bytes_after", int64_t{0});
      r["metrics"] = summaryMetrics(*report);
      if (report->contains("gates")) r["gates"] = (*report)["gates"];
      r["report"] = dir + "/report.json";
      if (!o_.report_html.empty()) r["report_html"] = dir + "/report.html";
    }
    const double after = static_cast<double>(r["bytes_after"].get<int64_t>());
    r["ratio"] = after > 0 ? static_cast<double>(r["bytes_before"].get<int64_t>()) / after : 0.0;
    records_[i] = r;
    if (r["status"] != "failed") {
      const json done = {{"digest", r["digest"]}, {"status", r["status"]}, {"record", r}};
      writeFileAtomically(dir + "/done.json", done.dump(2) + "\n");
    }
  }

  const BatchOptions& o_;
  const BatchManifest& m_;
  ShardSpec shard_;
  std::vector<json> records_;
  std::map<size_t, std::string> digests_;
  json summary_;
};

// The shard summaries of a batch folder: DIR/shards/summary-I-of-N.json, else DIR/summary.json.
std::vector<std::string> shardSummaries(const std::string& dir) {
  std::vector<std::string> files;
  if (DIR* d = ::opendir((dir + "/shards").c_str())) {
    while (const dirent* ent = ::readdir(d)) {
      const std::string n = ent->d_name;
      if (n.rfind("summary-", 0) == 0 && n.size() > 5 && n.substr(n.size() - 5) == ".json") files.push_back(dir + "/shards/" + n);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  if (files.empty() && exists(dir + "/summary.json")) files.push_back(dir + "/summary.json");
  return files;
}

int mergeBatch(const BatchOptions& o) {
  const std::string out = o.out_dir.empty() ? o.merge_dirs[0] : o.out_dir;
  json models = json::array();
  std::map<std::string, std::string> seen;  // model name -> summary file
  std::map<int64_t, std::set<int64_t>> shards;  // count -> indices seen
  json sources = json::array();
  for (const std::string& dir : o.merge_dirs) {
    const std::vector<std::string> files = shardSummaries(dir);
    if (files.empty()) throwInput(dir + ": no batch summary (shards/summary-I-of-N.json or summary.json)");
    for (const std::string& f : files) {
      const auto s = readJson(f);
      if (!s || !s->contains("models") || !(*s)["models"].is_array()) throwInput(f + ": not a batch summary");
      sources.push_back(f);
      if (s->contains("shard")) shards[(*s)["shard"].value("count", int64_t{1})].insert((*s)["shard"].value("index", int64_t{0}));
      for (const json& m : (*s)["models"]) {
        const std::string name = m.value("name", "");
        if (seen.count(name)) throwInput("model '" + name + "' is in both " + seen[name] + " and " + f + " (overlapping shards or runs)");
        seen[name] = f;
        models.push_back(m);
      }
    }
  }
  json missing = json::array();
  if (shards.size() > 1) throwInput("shard summaries of different shard counts cannot be merged");
  for (const auto& [count, got] : shards)
    for (int64_t i = 0; i < count; ++i)
      if (!got.count(i)) missing.push_back(std::to_string(i) + "/" + std::to_string(count));
  if (!missing.empty()) spdlog::warn("batch --merge: no summary for shard(s) {}", missing.dump());
  std::sort(models.begin(), models.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
  json summary;
  summary["tool_version"] = PTQ_VERSION;
  summary["merged_from"] = sources;
  summary["missing_shards"] = missing;
  summary["models"] = models;
  summary["counts"] = counts(models);
  const int code = exitCodeFor(models, !missing.empty());
  summary["exit_code"] = code;
  makeDirs(out);
  writeSummary(out + "/summary.json", out + "/summary.md", summary);
  if (!o.report_html.empty()) writeFileAtomically(o.report_html, renderBatchHtml(summary));
  spdlog::info("batch --merge: {} models from {} summaries -> {}/summary.json", models.size(), sources.size(), out);
  return code;
}

}  // namespace

std::string batchSummaryMarkdown(const json& summary) {
  std::string s = "# ptq-tool batch summary\n\n";
  const json& c = summary["counts"];
  s += std::to_string(c["ok"].get<int>()) + " ok, " + std::to_string(c["gate_failed"].get<int>()) + " gate failed, " +
       std::to_string(c["failed"].get<int>()) + " failed, " + std::to_string(c["skipped"].get<int>()) + " skipped";
  if (summary.contains("shard") && summary["shard"]["count"].get<int64_t>() > 1)
    s += " (shard " + std::to_string(summary["shard"]["index"].get<int64_t>()) + "/" + std::to_string(summary["shard"]["count"].get<int64_t>()) + ")";
  if (summary.contains("missing_shards") && !summary["missing_shards"].empty()) s += "; missing shards " + summary["missing_shards"].dump();
  s += "\n\n| model | status | size before | size after | ratio | metrics | gates | time |\n|---|---|---|---|---|---|---|---|\n";
  for (const json& m : summary["models"]) {
    std::string status = m["status"];
    if (m.contains("previous_status")) status += " (" + m["previous_status"].get<std::string>() + ")";
    if (m.contains("error")) {
      std::string err = m["error"];
      std::replace(err.begin(), err.end(), '|', '/');
      if (err.size() > 120) err = err.substr(0, 117) + "...";
      status += ": " + err;
    }
    std::string gates;
    for (const json& g : m["gates"])
      gates += (gates.empty() ? "" : "<br>") + std::string(g["pass"].get<bool>() ? "PASS " : "FAIL ") + g["expression"].get<std::string>() + " (" +
               fmt("%.4g", g["measured"]) + ")";
    const int64_t before = m["bytes_before"], after = m["bytes_after"];
    s += "| " + m["name"].get<std::string>() + " | " + status + " | " + human(before) + " | " + (after ? human(after) : "–") + " | " +
         (after ? fmt("%.2f×", m["ratio"]) : "–") + " | " + metricsCell(m["metrics"]) + " | " + (gates.empty() ? "–" : gates) + " | " +
         fmt("%.1f s", m.contains("previous_seconds") ? m["previous_seconds"] : m["seconds"]) + " |\n";
  }
  return s;
}

int runBatch(const BatchOptions& o) {
  if (!o.merge_dirs.empty()) return mergeBatch(o);
  if (o.manifest_path.empty()) throwUsage("batch: a manifest is required (or --merge DIR...)");
  if (o.out_dir.empty()) throwUsage("batch: --out-dir DIR is required");
  if (o.jobs < 1) throwUsage("--jobs must be at least 1");
  const BatchManifest m = loadBatchManifest(o.manifest_path);
  const ShardSpec shard = resolveShard(o.shard, o.shard_count);
  if (!o.dry_run) makeDirs(o.out_dir);
  SignalGuard guard;
  BatchRun run(o, m, shard);
  return run.run();
}

}  // namespace ptq::driver
