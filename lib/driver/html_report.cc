#include "lib/driver/html_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

namespace ptq::driver {

namespace {

using nlohmann::json;

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

double num(const json& j, const char* key, double dflt = 0) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : dflt;
}

std::string str(const json& j, const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; }

std::string bytes(double b) {
  if (b >= 1e6) return fmt("%.2f MB", b / 1e6);
  return fmt("%.1f kB", b / 1e3);
}

const char* kStyle =
    "body{font:14px/1.4 sans-serif;margin:24px;color:#222;background:#fff}h1{font-size:20px}h2{font-size:16px;margin-top:28px}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eef}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#070;font-weight:bold}.fail{color:#b00;font-weight:bold}"
    ".ok{background:#e6f6e6}.bad{background:#fbe3e3}.warn{background:#fff3d6}.skip{background:#eef}"
    "svg text{font:11px sans-serif;fill:#222}.muted{color:#666}";

std::string page(const std::string& title, const std::string& body) {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(title) + "</title><style>" + kStyle +
         "</style></head><body>\n<h1>" + esc(title) + "</h1>\n" + body + "</body></html>\n";
}

// SQNR colour: red below 15 dB, amber below 25, green above.
const char* sqnrColour(double db) { return db < 15 ? "#d9534f" : db < 25 ? "#f0ad4e" : "#5cb85c"; }

struct Bar {
  std::string label;  // data-layer / data-model
  double value = 0;
  std::string text;   // printed at the bar's end
  std::string colour;
};

// Horizontal bars, one per item, scaled to [0, max_value].
std::string barChart(const std::vector<Bar>& bars, const std::string& kind, const std::string& data_attr, double max_value,
                     const std::string& axis) {
  if (bars.empty()) return "<p class=\"muted\">(nothing to draw)</p>\n";
  const int row = 18, left = 330, width = 460, top = 20;
  const int h = top + row * static_cast<int>(bars.size()) + 10;
  std::string s = "<svg width=\"" + std::to_string(left + width + 90) + "\" height=\"" + std::to_string(h) + "\" role=\"img\" aria-label=\"" +
                  esc(axis) + "\">\n";
  s += "<text x=\"" + std::to_string(left) + "\" y=\"12\">" + esc(axis) + " (bar length: 0 to " + fmt("%.4g", max_value) + ")</text>\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const int y = top + row * static_cast<int>(i);
    const double frac = max_value > 0 ? std::clamp(b.value / max_value, 0.0, 1.0) : 0.0;
    const int w = std::max(1, static_cast<int>(std::lround(frac * width)));
    std::string label = b.label.size() > 52 ? "…" + b.label.substr(b.label.size() - 51) : b.label;
    s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + std::to_string(y + 12) + "\" text-anchor=\"end\">" + esc(label) + "</text>";
    s += "<rect class=\"bar\" data-kind=\"" + kind + "\" " + data_attr + "=\"" + esc(b.label) + "\" x=\"" + std::to_string(left) + "\" y=\"" +
         std::to_string(y + 2) + "\" width=\"" + std::to_string(w) + "\" height=\"" + std::to_string(row - 5) + "\" fill=\"" + b.colour +
         "\"><title>" + esc(b.label + ": " + b.text) + "</title></rect>";
    s += "<text x=\"" + std::to_string(left + w + 4) + "\" y=\"" + std::to_string(y + 12) + "\">" + esc(b.text) + "</text>\n";
  }
  return s + "</svg>\n";
}

std::string gatesSection(const json& report) {
  if (!report.contains("gates")) return "";
  const json& gates = report["gates"];
  std::string s = "<h2>Accuracy gates</h2>\n";
  if (gates.empty()) return s + "<p class=\"muted\">No --max-drop gate was given.</p>\n";
  const bool passed = report.value("gates_passed", true);
  s += std::string("<p class=\"") + (passed ? "pass" : "fail") + "\">" + (passed ? "PASS: every gate holds" : "FAIL: a gate does not hold (exit 3)") +
       "</p>\n<table><tr><th>gate</th><th>measured</th><th>limit</th><th>margin</th><th>verdict</th><th>what</th></tr>\n";
  for (const json& g : gates) {
    const bool ok = g.value("pass", false);
    s += std::string("<tr class=\"") + (ok ? "ok" : "bad") + "\"><td>" + esc(str(g, "expression")) + "</td><td class=\"n\">" +
         fmt("%.6g", num(g, "measured")) + "</td><td class=\"n\">" + fmt("%.6g", num(g, "limit")) + "</td><td class=\"n\">" +
         fmt("%+.4g", num(g, "margin")) + "</td><td class=\"" + (ok ? "pass" : "fail") + "\">" + (ok ? "PASS" : "FAIL") + "</td><td>" +
         esc(str(g, "what")) + "</td></tr>\n";
  }
  return s + "</table>\n";
}

// Reference vs candidate figures of an eval document.
std::string metricsSection(const json& ev) {
  std::string s = "<h2>Metrics: reference vs candidate</h2>\n<p>" + esc(str(ev, "data")) + " (" + fmt("%.0f", num(ev, "samples")) + " samples, " +
                  fmt("%.2f s", num(ev, "seconds")) + ")</p>\n";
  s += "<table><tr><th>figure</th><th>reference</th><th>candidate</th><th>change</th></tr>\n";
  if (ev.contains("language_model")) {
    const json& lm = ev["language_model"];
    const double pr = num(lm, "perplexity_reference"), pc = num(lm, "perplexity_candidate");
    s += "<tr><td>perplexity (" + fmt("%.0f", num(lm, "windows")) + " windows of " + fmt("%.0f", num(lm, "seq")) + ")</td><td class=\"n\">" +
         fmt("%.4f", pr) + "</td><td class=\"n\">" + fmt("%.4f", pc) + "</td><td class=\"n\">" + fmt("%+.3f%%", 100 * (pc / pr - 1)) + "</td></tr>\n";
    s += "<tr><td>next-token accuracy</td><td class=\"n\">" + fmt("%.4f", num(lm, "accuracy_reference")) + "</td><td class=\"n\">" +
         fmt("%.4f", num(lm, "accuracy_candidate")) + "</td><td class=\"n\">" +
         fmt("%+.2f points", 100 * (num(lm, "accuracy_candidate") - num(lm, "accuracy_reference"))) + "</td></tr>\n";
    s += "<tr><td>next-token top-1 agreement</td><td class=\"n\">1</td><td class=\"n\">" + fmt("%.4f", num(lm, "top1_agreement")) + "</td><td></td></tr>\n";
  }
  for (const json& o : ev.value("outputs", json::array())) {
    const std::string n = esc(str(o, "name"));
    s += "<tr><td>" + n + ": SQNR / cosine / max-abs</td><td class=\"n\">–</td><td class=\"n\">" + fmt("%.2f dB", num(o, "sqnr_db")) + " / " +
         fmt("%.6f", num(o, "cosine")) + " / " + fmt("%.4g", num(o, "max_abs")) + "</td><td></td></tr>\n";
    if (o.contains("classifier")) {
      const json& c = o["classifier"];
      if (c.contains("accuracy_reference"))
        s += "<tr><td>" + n + ": accuracy (" + fmt("%.0f", num(c, "labels")) + " labels)</td><td class=\"n\">" + fmt("%.4f", num(c, "accuracy_reference")) +
             "</td><td class=\"n\">" + fmt("%.4f", num(c, "accuracy_candidate")) + "</td><td class=\"n\">" +
             fmt("%+.2f points", 100 * (num(c, "accuracy_candidate") - num(c, "accuracy_reference"))) + "</td></tr>\n";
      s += "<tr><td>" + n + ": top-1 / top-5 agreement</td><td class=\"n\">1</td><td class=\"n\">" + fmt("%.4f", num(c, "top1_agreement")) + " / " +
           fmt("%.4f", num(c, "top5_agreement")) + "</td><td></td></tr>\n";
    }
  }
  return s + "</table>\n";
}

std::string attributionSection(const json& ev) {
  if (!ev.contains("attribution")) return "";
  std::vector<Bar> bars;
  for (const json& a : ev["attribution"]) {
    const double db = num(a, "sqnr_db");
    bars.push_back({str(a, "node"), std::min(db, 80.0), fmt("%.2f dB", db), sqnrColour(db)});
  }
  std::string s = "<h2>Output-error attribution (per quantized layer, worst first)</h2>\n<p>SQNR of each layer's output in the candidate "
                  "against the reference's value of the same name (error accumulated up to that layer).</p>\n";
  s += barChart(bars, "output_sqnr", "data-layer", 80.0, "output SQNR, dB");
  std::string iso;
  for (const json& a : ev["attribution"]) {
    if (!a.contains("isolated")) continue;
    const json& x = a["isolated"];
    if (x.contains("note")) {
      iso += "<tr><td>" + esc(str(a, "node")) + "</td><td colspan=\"4\" class=\"muted\">" + esc(str(x, "note")) + "</td></tr>\n";
      continue;
    }
    iso += "<tr><td>" + esc(str(a, "node")) + "</td><td class=\"n\">" + fmt("%.2f", num(x, "sqnr_db")) + "</td><td class=\"n\">" +
           (num(x, "perplexity") > 0 ? fmt("%.4f", num(x, "perplexity")) : "–") + "</td><td class=\"n\">" + fmt("%.4f", num(x, "accuracy")) +
           "</td><td class=\"n\">" + fmt("%.4f", num(x, "agreement")) + "</td></tr>\n";
  }
  if (!iso.empty())
    s += "<h3>Only this layer quantized</h3>\n<table><tr><th>layer</th><th>output SQNR dB</th><th>perplexity</th><th>accuracy</th>"
         "<th>agreement</th></tr>\n" + iso + "</table>\n";
  if (!ev.value("attribution_unmatched", json::array()).empty())
    s += "<p class=\"muted\">Not matched: " + esc(ev["attribution_unmatched"].dump()) + "</p>\n";
  return s;
}

}  // namespace

std::string renderQuantizeHtml(const json& r) {
  const json summary = r.value("summary", json::object());
  std::string body = "<table><tr><th>input</th><td>" + esc(str(r, "input")) + "</td></tr><tr><th>output</th><td>" + esc(str(r, "output")) +
                     " (" + esc(str(r, "format")) + ")</td></tr><tr><th>tool</th><td>ptq-tool " + esc(str(r, "tool_version")) +
                     "</td></tr><tr><th>file size</th><td>" + bytes(num(summary, "input_bytes")) + " → " + bytes(num(summary, "output_bytes")) +
                     "</td></tr><tr><th>weights</th><td>" + bytes(num(summary, "weight_bytes_before")) + " → " +
                     bytes(num(summary, "weight_bytes_after")) + " (" + fmt("%.0f", num(summary, "layers_quantized")) + " of " +
                     fmt("%.0f", num(summary, "layers_total")) + " layers quantized)</td></tr></table>\n";
  body += gatesSection(r);
  if (r.contains("evaluation")) body += metricsSection(r["evaluation"]);

  // Per layer: weight SQNR bars, then the table of bits and bytes.
  std::vector<Bar> bars;
  std::map<std::string, double> output_sqnr;
  if (r.contains("evaluation") && r["evaluation"].contains("attribution"))
    for (const json& a : r["evaluation"]["attribution"]) output_sqnr[str(a, "node")] = num(a, "sqnr_db");
  std::string rows;
  for (const json& l : r.value("layers", json::array())) {
    const std::string name = str(l, "node").empty() ? str(l, "weight") : str(l, "node");
    const int bits = l.value("bits", 0);
    const double db = num(l, "sqnr_db");
    if (bits > 0) bars.push_back({name, std::min(db, 80.0), fmt("%.2f dB", db) + ", " + std::to_string(bits) + " bits", sqnrColour(db)});
    const auto o = output_sqnr.find(name);
    rows += std::string("<tr class=\"") + (bits > 0 ? "" : "skip") + "\"><td>" + esc(name) + "</td><td>" + esc(str(l, "op_type")) + "</td><td>" +
            esc(str(l, "action")) + "</td><td class=\"n\">" + (bits > 0 ? std::to_string(bits) : "–") + "</td><td>" + esc(str(l, "granularity")) +
            (l.value("group_size", 0) > 0 && str(l, "granularity") == "group" ? " " + std::to_string(l.value("group_size", 0)) : "") +
            "</td><td class=\"n\">" + bytes(num(l, "bytes_before")) + "</td><td class=\"n\">" + (bits > 0 ? bytes(num(l, "bytes_after")) : "–") +
            "</td><td class=\"n\">" + (bits > 0 ? fmt("%.2f", db) : "–") + "</td><td class=\"n\">" +
            (o != output_sqnr.end() ? fmt("%.2f", o->second) : "–") + "</td><td>" + esc(str(l, "form")) + "</td></tr>\n";
  }
  body += "<h2>Weight SQNR per quantized layer</h2>\n<p>10·log10(‖W‖² / ‖W − Q(W)‖²) of each layer's weight (plan order).</p>\n";
  body += barChart(bars, "weight_sqnr", "data-layer", 80.0, "weight SQNR, dB");
  if (r.contains("evaluation")) body += attributionSection(r["evaluation"]);
  body += "<h2>Layers</h2>\n<table><tr><th>layer</th><th>op</th><th>decision</th><th>bits</th><th>granularity</th><th>bytes before</th>"
          "<th>bytes after</th><th>weight SQNR dB</th><th>output SQNR dB</th><th>form</th></tr>\n" + rows + "</table>\n";
  if (!r.value("warnings", json::array()).empty()) {
    body += "<h2>Warnings</h2>\n<ul>";
    for (const json& w : r["warnings"]) body += "<li>" + esc(w.is_string() ? w.get<std::string>() : w.dump()) + "</li>";
    body += "</ul>\n";
  }
  return page("ptq-tool quantize report: " + str(r, "input"), body);
}

std::string renderEvalHtml(const json& ev) {
  std::string body = "<table><tr><th>reference</th><td>" + esc(str(ev, "reference")) + "</td></tr><tr><th>candidate</th><td>" +
                     esc(str(ev, "candidate")) + "</td></tr></table>\n";
  body += metricsSection(ev);
  body += attributionSection(ev);
  return page("ptq-tool eval report: " + str(ev, "candidate"), body);
}

std::string renderBatchHtml(const json& s) {
  const json& c = s["counts"];
  std::string body = "<p>" + std::to_string(c.value("ok", 0)) + " ok, " + std::to_string(c.value("gate_failed", 0)) + " gate failed, " +
                     std::to_string(c.value("failed", 0)) + " failed, " + std::to_string(c.value("skipped", 0)) + " skipped; exit code " +
                     std::to_string(s.value("exit_code", 0)) + "</p>\n";
  std::vector<Bar> bars;
  std::string rows;
  for (const json& m : s["models"]) {
    const std::string name = str(m, "name"), status = str(m, "status"), prev = str(m, "previous_status");
    const std::string effective = status == "skipped" ? prev : status;
    const char* cls = effective == "ok" ? "ok" : effective == "gate_failed" ? "warn" : effective == "failed" ? "bad" : "skip";
    const double ratio = num(m, "ratio");
    bars.push_back({name, ratio, ratio > 0 ? fmt("%.2f×", ratio) : "no output", effective == "ok" ? "#5cb85c" : effective == "gate_failed" ? "#f0ad4e" : "#d9534f"});
    std::string metrics;
    const json mm = m.value("metrics", json::object());
    if (mm.contains("ppl_reference"))
      metrics += "ppl " + fmt("%.3f", num(mm, "ppl_reference")) + " → " + fmt("%.3f", num(mm, "ppl_candidate")) + " (" + fmt("%+.2f%%", num(mm, "ppl_delta_pct")) + ") ";
    if (mm.contains("accuracy_reference"))
      metrics += "acc " + fmt("%.4f", num(mm, "accuracy_reference")) + " → " + fmt("%.4f", num(mm, "accuracy_candidate")) + " ";
    if (mm.contains("top1_agreement")) metrics += "agree " + fmt("%.4f", num(mm, "top1_agreement")) + " ";
    if (mm.contains("sqnr_db")) metrics += "SQNR " + fmt("%.1f dB", num(mm, "sqnr_db"));
    std::string gates;
    for (const json& g : m.value("gates", json::array()))
      gates += std::string("<span class=\"") + (g.value("pass", false) ? "pass" : "fail") + "\">" + (g.value("pass", false) ? "PASS " : "FAIL ") +
               esc(str(g, "expression")) + "</span> (" + fmt("%.4g", num(g, "measured")) + ")<br>";
    const std::string link = m.contains("report_html") ? "<a href=\"" + esc(name) + "/report.html\">" + esc(name) + "</a>" : esc(name);
    rows += std::string("<tr class=\"") + cls + "\"><td>" + link + "</td><td>" + esc(status) + (prev.empty() ? "" : " (" + esc(prev) + ")") +
            (m.contains("error") ? "<br><span class=\"muted\">" + esc(str(m, "error")) + "</span>" : "") + "</td><td class=\"n\">" +
            bytes(num(m, "bytes_before")) + "</td><td class=\"n\">" + (num(m, "bytes_after") > 0 ? bytes(num(m, "bytes_after")) : "–") +
            "</td><td class=\"n\">" + (ratio > 0 ? fmt("%.2f×", ratio) : "–") + "</td><td>" + esc(metrics) + "</td><td>" + (gates.empty() ? "–" : gates) +
            "</td><td class=\"n\">" + fmt("%.1f s", m.contains("previous_seconds") ? num(m, "previous_seconds") : num(m, "seconds")) + "</td></tr>\n";
  }
  double max_ratio = 1;
  for (const Bar& b : bars) max_ratio = std::max(max_ratio, b.value);
  body += "<table><tr><th>model</th><th>status</th><th>size before</th><th>size after</th><th>ratio</th><th>metrics</th><th>gates</th>"
          "<th>time</th></tr>\n" + rows + "</table>\n<h2>Compression ratio per model</h2>\n";
  body += barChart(bars, "ratio", "data-model", max_ratio, "size before / size after");
  return page("ptq-tool batch summary", body);
}

}  // namespace ptq::driver
