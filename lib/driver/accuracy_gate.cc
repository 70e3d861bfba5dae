#include "lib/driver/accuracy_gate.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "lib/util/error.h"

namespace ptq::driver {

namespace {

using Metric = AccuracyGate::Metric;
using Limit = AccuracyGate::Limit;

[[noreturn]] void bad(const std::string& flag, const std::string& e, const std::string& why) {
  throwUsage(flag + " '" + e + "': " + why +
             " (forms: ppl:+2%, ppl:+0.5, top1:-0.5, agree:>=0.995, cos:>=0.999, sqnr:>=20)");
}

// A whole-string finite number.
bool parseNumber(const std::string& s, double* out) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

const char* metricName(Metric m) {
  switch (m) {
    case Metric::kPerplexity: return "ppl";
    case Metric::kTop1: return "top1";
    case Metric::kAgreement: return "agree";
    case Metric::kCosine: return "cos";
    case Metric::kSqnr: return "sqnr";
  }
  return "?";
}

// The first classifier output, or null.
const OutputEval* classifier(const EvalResult& r) {
  for (const OutputEval& o : r.outputs)
    if (o.classifier) return &o;
  return nullptr;
}

}  // namespace

AccuracyGate parseAccuracyGate(const std::string& e, const std::string& flag) {
  const auto colon = e.find(':');
  if (colon == std::string::npos) bad(flag, e, "expected METRIC:LIMIT");
  const std::string m = e.substr(0, colon);
  std::string rest = e.substr(colon + 1);
  AccuracyGate g;
  g.expression = e;
  if (m == "ppl") g.metric = Metric::kPerplexity;
  else if (m == "top1") g.metric = Metric::kTop1;
  else if (m == "agree") g.metric = Metric::kAgreement;
  else if (m == "cos") g.metric = Metric::kCosine;
  else if (m == "sqnr") g.metric = Metric::kSqnr;
  else bad(flag, e, "unknown metric '" + m + "'");

  if (g.metric == Metric::kPerplexity) {
    if (rest.empty() || rest[0] != '+') bad(flag, e, "a perplexity limit is a rise: +N% (relative) or +N (absolute)");
    const bool relative = rest.back() == '%';
    const std::string n = rest.substr(1, rest.size() - 1 - (relative ? 1 : 0));
    if (!parseNumber(n, &g.value) || g.value < 0) bad(flag, e, "'" + rest + "' is not a non-negative rise");
    g.limit = relative ? Limit::kRelativeRise : Limit::kAbsoluteRise;
    return g;
  }
  if (g.metric == Metric::kTop1) {
    if (rest.empty() || rest[0] != '-' || rest.back() == '%')
      bad(flag, e, "a top-1 limit is a drop in points of accuracy: -N (e.g. -0.5)");
    if (!parseNumber(rest.substr(1), &g.value) || g.value < 0 || g.value > 100)
      bad(flag, e, "'" + rest + "' is not a drop of 0..100 points");
    g.limit = Limit::kAbsoluteDrop;
    return g;
  }
  if (rest.rfind(">=", 0) == 0) rest = rest.substr(2);
  if (!parseNumber(rest, &g.value)) bad(flag, e, "'" + e.substr(colon + 1) + "' is not >=NUMBER");
  if ((g.metric == Metric::kAgreement && (g.value < 0 || g.value > 1)) || (g.metric == Metric::kCosine && (g.value < -1 || g.value > 1)))
    bad(flag, e, "the limit must lie in " + std::string(g.metric == Metric::kAgreement ? "[0, 1]" : "[-1, 1]"));
  g.limit = Limit::kAtLeast;
  return g;
}

bool gateNeedsTokens(const AccuracyGate& g) { return g.metric == Metric::kPerplexity; }

GateVerdict checkAccuracyGate(const AccuracyGate& g, const EvalResult& r) {
  GateVerdict v;
  v.expression = g.expression;
  v.metric = metricName(g.metric);
  v.limit = g.value;
  auto unmeasurable = [&](const std::string& why) -> void { throwUsage("--max-drop '" + g.expression + "': " + why); };
  const OutputEval* cls = classifier(r);
  switch (g.metric) {
    case Metric::kPerplexity: {
      if (!r.language_model) unmeasurable("perplexity needs --eval-tokens (a language-model evaluation)");
      v.reference = r.ref_ppl.perplexity();
      v.candidate = r.cand_ppl.perplexity();
      if (g.limit == Limit::kRelativeRise) {
        v.what = "perplexity rise, %";
        v.measured = 100.0 * (v.candidate / v.reference - 1.0);
      } else {
        v.what = "perplexity rise";
        v.measured = v.candidate - v.reference;
      }
      v.pass = v.measured <= v.limit;
      v.margin = v.limit - v.measured;
      break;
    }
    case Metric::kTop1: {
      if (r.language_model) {
        const double n = static_cast<double>(std::max<int64_t>(1, r.ref_ppl.count));
        v.reference = r.lm_ref_correct / n;
        v.candidate = r.lm_cand_correct / n;
        v.what = "next-token top-1 accuracy drop, points";
      } else if (cls && cls->classes.labelled) {
        v.reference = cls->classes.refAccuracy();
        v.candidate = cls->classes.candAccuracy();
        v.what = "top-1 accuracy drop (" + cls->name + "), points";
      } else if (cls) {
        v.reference = 1.0;
        v.candidate = cls->classes.top1Agreement();
        v.what = "top-1 disagreement with the reference (" + cls->name + ", no labels), points";
      } else {
        unmeasurable("no classifier output (float [N, C]) and no language model to measure top-1 on");
      }
      v.measured = 100.0 * (v.reference - v.candidate);
      v.pass = v.measured <= v.limit;
      v.margin = v.limit - v.measured;
      break;
    }
    case Metric::kAgreement: {
      if (r.language_model) {
        v.candidate = r.ref_ppl.count ? static_cast<double>(r.lm_top1_agree) / static_cast<double>(r.ref_ppl.count) : 0.0;
        v.what = "next-token top-1 agreement";
      } else if (cls) {
        v.candidate = cls->classes.top1Agreement();
        v.what = "top-1 agreement (" + cls->name + ")";
      } else {
        unmeasurable("no classifier output (float [N, C]) and no language model to measure agreement on");
      }
      v.reference = 1.0;
      v.measured = v.candidate;
      v.pass = v.measured >= v.limit;
      v.margin = v.measured - v.limit;
      break;
    }
    case Metric::kCosine:
    case Metric::kSqnr: {
      const bool cos = g.metric == Metric::kCosine;
      std::string worst;
      double m = 0;
      for (const OutputEval& o : r.outputs) {
        if (o.error.count == 0) continue;
        const double x = cos ? o.error.cosineSimilarity() : o.error.sqnr();
        if (worst.empty() || x < m) {
          m = x;
          worst = o.name;
        }
      }
      if (worst.empty()) unmeasurable("no numeric graph output was compared");
      v.what = std::string(cos ? "cosine similarity" : "SQNR, dB") + " (worst output: " + worst + ")";
      v.measured = m;
      v.candidate = m;
      v.reference = cos ? 1.0 : eval::kMaxSqnrDb;
      v.pass = v.measured >= v.limit;
      v.margin = v.measured - v.limit;
      break;
    }
  }
  const bool at_least = g.limit == Limit::kAtLeast;
  v.detail = std::string(v.pass ? "PASS " : "FAIL ") + g.expression + ": " + v.what + " " + num(v.measured) + (at_least ? " >= " : " <= ") +
             num(v.limit) + " is " + (v.pass ? "true" : "false") + " (margin " + num(v.margin) + ")";
  if (g.metric == Metric::kPerplexity || g.metric == Metric::kTop1)
    v.detail += "; reference " + num(v.reference) + ", candidate " + num(v.candidate);
  return v;
}

nlohmann::json GateVerdict::toJson() const {
  return nlohmann::json{{"expression", expression}, {"metric", metric},       {"what", what},
                        {"measured", measured},     {"limit", limit},         {"pass", pass},
                        {"margin", margin},         {"reference", reference}, {"candidate", candidate},
                        {"detail", detail}};
}

}  // namespace ptq::driver
