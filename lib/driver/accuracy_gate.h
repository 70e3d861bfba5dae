// Accuracy gates of `ptq-tool quantize --max-drop EXPR`: what a quantized model may lose against its
// input model, checked on the figures of `eval` (EvalResult). Pure functions: parse an expression,
// measure it on an EvalResult; the quantize job decides the exit code (3 when any gate fails).
//
//   ppl:+2%       candidate perplexity at most 2% above the reference's (relative rise)
//   ppl:+0.5      at most 0.5 above it (absolute)
//   top1:-0.5     top-1 accuracy at most 0.5 points (of 100) below the reference's: classifier accuracy
//                 with labels, next-token accuracy for a language model; without labels, a classifier's
//                 top-1 disagreement with the reference counts as the drop (100·(1 − agreement))
//   agree:>=0.995 top-1 agreement with the reference (classifier arg-max, or next-token arg-max)
//   cos:>=0.999   cosine similarity of every graph output
//   sqnr:>=20     SQNR (dB) of every graph output
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/driver/eval_job.h"

namespace ptq::driver {

struct AccuracyGate {
  enum class Metric { kPerplexity, kTop1, kAgreement, kCosine, kSqnr };
  enum class Limit { kRelativeRise, kAbsoluteRise, kAbsoluteDrop, kAtLeast };
  std::string expression;  // as given
  Metric metric = Metric::kPerplexity;
  Limit limit = Limit::kAtLeast;
  double value = 0;  // the number in the expression (2 for "+2%", 0.5 for "-0.5", 0.995 for ">=0.995")
};

struct GateVerdict {
  std::string expression;
  std::string metric;       // ppl | top1 | agree | cos | sqnr
  std::string what;         // what was measured, e.g. "perplexity rise, %"
  double measured = 0;      // in the unit of the limit
  double limit = 0;
  bool pass = false;
  double margin = 0;        // how far inside (> 0) or beyond (< 0) the limit, same unit
  double reference = 0;     // the reference's figure (when there is one)
  double candidate = 0;     // the candidate's figure
  std::string detail;       // one readable line
  nlohmann::json toJson() const;
};

// Throws Error(kUsage) naming `flag` and the expression when it is not one of the forms above.
AccuracyGate parseAccuracyGate(const std::string& expression, const std::string& flag = "--max-drop");

// True when the gate needs a language-model evaluation (--eval-tokens).
bool gateNeedsTokens(const AccuracyGate& g);

// Measures one gate. Throws Error(kUsage) when the evaluation has no such figure (a perplexity
// gate on --eval-data, agreement without a classifier output), naming the expression.
GateVerdict checkAccuracyGate(const AccuracyGate& gate, const EvalResult& eval);

}  // namespace ptq::driver
